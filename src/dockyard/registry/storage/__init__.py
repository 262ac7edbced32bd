"""Blob storage drivers behind one protocol (base.py): filesystem now, S3 later.

``DRIVERS`` maps a driver name (the ``storage`` setting of the registry config) to
a constructor taking the registry's data directory and the driver's options.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.registry.storage.base import (
    BlobWriter,
    FileInfo,
    StorageDriver,
    StorageNotFound,
    blob_path,
    digest_of_blob_path,
    upload_path,
)
from dockyard.registry.storage.filesystem import FilesystemDriver


def _filesystem(data_dir: Path, options: Mapping[str, Any]) -> StorageDriver:
    root = options.get("root")
    return FilesystemDriver(Path(root) if root else data_dir / "storage")


DRIVERS: dict[str, Callable[[Path, Mapping[str, Any]], StorageDriver]] = {
    "filesystem": _filesystem,
}


def make_driver(
    name: str, data_dir: Path, options: Mapping[str, Any] | None = None
) -> StorageDriver:
    factory = DRIVERS.get(name)
    if factory is None:
        raise InvalidArgument(f"unknown storage driver {name!r} (known: {', '.join(DRIVERS)})")
    return factory(data_dir, options or {})


__all__ = [
    "DRIVERS",
    "BlobWriter",
    "FileInfo",
    "FilesystemDriver",
    "StorageDriver",
    "StorageNotFound",
    "blob_path",
    "digest_of_blob_path",
    "make_driver",
    "upload_path",
]
