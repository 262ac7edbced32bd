"""Storage drivers: read-only layers unpacked once per chain, writable layers per container.

``open_driver(root, name)`` picks and opens the store's driver (see select.py);
every driver implements ``StorageDriver`` (base.py) and passes
tests/conformance/test_drivers.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dockyard.drivers.base import Change, StorageDriver

if TYPE_CHECKING:
    from dockyard.drivers.select import open_driver

__all__ = ["Change", "StorageDriver", "open_driver"]


def __getattr__(name: str) -> Any:
    # the drivers import the archive code and ctypes: load them only when a store opens one
    if name == "open_driver":
        from dockyard.drivers.select import open_driver

        return open_driver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
