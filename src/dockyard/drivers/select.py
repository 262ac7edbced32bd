"""Which storage driver a store uses.

The first of: the name asked for, ``"storage-driver"`` in ``<root>/config.json``,
``$DOCKYARD_STORAGE_DRIVER``. Without any: the driver that already has layers or
containers under the root, else btrfs when the root is on btrfs, else overlay
when the kernel and the root's filesystem allow it, else vfs. A store keeps
its driver: choosing another while one has content is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from dockyard.drivers import btrfs, overlay
from dockyard.drivers.base import StorageDriver
from dockyard.drivers.btrfs import BtrfsDriver
from dockyard.drivers.overlay import OverlayDriver
from dockyard.drivers.vfs import VfsDriver
from dockyard.errors import InvalidArgument

DRIVERS: dict[str, Callable[[Path], StorageDriver]] = {
    "overlay": OverlayDriver,
    "btrfs": BtrfsDriver,
    "vfs": VfsDriver,
}
ALIASES = {"overlay2": "overlay"}
ENV = "DOCKYARD_STORAGE_DRIVER"


def _normalise(name: str, source: str) -> str:
    name = ALIASES.get(name.strip(), name.strip())
    if name not in DRIVERS:
        known = ", ".join(DRIVERS)
        raise InvalidArgument(f"unknown storage driver {name!r} (from {source}); known: {known}")
    return name


def _configured(root: Path, name: str | None) -> tuple[str, str] | None:
    """(driver, where the choice came from), or None when nothing was chosen."""
    if name:
        return _normalise(name, "the command line"), "the command line"
    config = root / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"{config}: cannot read: {e}") from e
    chosen = data.get("storage-driver") if isinstance(data, dict) else None
    if chosen:
        if not isinstance(chosen, str):
            raise InvalidArgument(f"{config}: storage-driver must be a string")
        return _normalise(chosen, str(config)), str(config)
    if os.environ.get(ENV):
        return _normalise(os.environ[ENV], f"${ENV}"), f"${ENV}"
    return None


def in_use(root: Path) -> list[str]:
    """Drivers that have layers or containers under ``root``."""
    found = []
    for name in DRIVERS:
        for sub in ("layers", "containers"):
            try:
                if any(True for _ in os.scandir(root / name / sub)):
                    found.append(name)
                    break
            except (FileNotFoundError, NotADirectoryError):
                continue
    return found


def default_driver(root: Path) -> str:
    """The driver a fresh store at ``root`` gets."""
    if btrfs.unusable_reason(root) is None:
        return "btrfs"
    if overlay.unusable_reason(root) is None:
        return "overlay"
    return "vfs"


def open_driver(root: Path, name: str | None = None) -> StorageDriver:
    """The store's driver, with home ``<root>/<name>``."""
    chosen = _configured(root, name)
    existing = in_use(root)
    if chosen is not None:
        driver, source = chosen
        if existing and driver not in existing:
            raise InvalidArgument(
                f"storage driver {driver!r} (from {source}) cannot be used: {root} already "
                f"has layers of the {' and '.join(existing)} driver; remove them "
                f"(or the store) first, or use {existing[0]!r}"
            )
    elif len(existing) > 1:
        raise InvalidArgument(
            f"{root} has layers of several storage drivers ({', '.join(existing)}); "
            f"choose one with storage-driver in {root / 'config.json'} or ${ENV}"
        )
    elif existing:
        driver = existing[0]
    else:
        driver = default_driver(root)
    return DRIVERS[driver](root / driver)
