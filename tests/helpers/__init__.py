"""Shared helpers for the integration tests: crafted archives (good and bad) and
store snapshots.  Import as ``tests.helpers.archives`` / ``tests.helpers.store``."""
