"""Containers: OCI runtime spec, runc, the per-container monitor, networking."""
