"""dockyard: a container image engine and registry."""

__version__ = "0.1.0"
