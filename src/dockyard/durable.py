"""Durability helpers below the store and the drivers.

The running kernel's boot ID: data written without an fsync survives a killed
process (it is in the page cache) but not the machine going down, which shows as
a different boot ID. store.durability and the drivers use it to tell the two.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


_libc: ctypes.CDLL | None = None


def syncfs(path: Path) -> None:
    """Flush the whole filesystem holding ``path`` (one call for many files)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {path}: {os.strerror(err)}")
    finally:
        os.close(fd)
