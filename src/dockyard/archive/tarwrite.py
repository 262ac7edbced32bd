"""Write tar streams whose file data is copied by the kernel (sendfile) where it can be."""

from __future__ import annotations

import os
import tarfile
from typing import Any, BinaryIO

BLOCK = 512


_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing a file's dirty pages now (sync_file_range), so
    a final fsync finds little left to do. A no-op where the call is unavailable."""
    global _sync_file_range
    if _sync_file_range is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.sync_file_range
            fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            _sync_file_range = fn
        except (OSError, AttributeError):
            _sync_file_range = False
    if _sync_file_range:
        _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


_sync_file_range: Any = None


class TarWriter:
    def __init__(self, out: BinaryIO, writeback: bool = False) -> None:
        """``writeback``: start flushing each file's bytes to disk as soon as they are
        written (for outputs that will be fsynced)."""
        self._out = out
        self._writeback = writeback
        self._fd: int | None
        try:
            self._fd = out.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None
        self.written = 0

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self.written += len(data)

    def _header(self, name: str, size: int, mode: int, mtime: float, kind: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = mode
        info.mtime = int(mtime)
        info.type = kind
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        self._write(info.tobuf(format=tarfile.PAX_FORMAT))

    def add_dir(self, name: str, mtime: float = 0) -> None:
        self._header(name.rstrip("/") + "/", 0, 0o755, mtime, tarfile.DIRTYPE)

    def add_bytes(self, name: str, data: bytes, mtime: float = 0) -> None:
        self._header(name, len(data), 0o644, mtime, tarfile.REGTYPE)
        self._write(data)
        self._pad(len(data))

    def add_file(self, name: str, path: str, mtime: float = 0) -> None:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self._header(name, size, 0o644, mtime, tarfile.REGTYPE)
            self._copy(f, size)
        self._pad(size)
        if self._writeback and self._fd is not None:
            self._out.flush()
            start_writeback(self._fd)

    def add_member(self, info: tarfile.TarInfo, fd: int | None = None) -> None:
        """Write ``info`` exactly as given (PAX where needed); for a regular file
        copy ``info.size`` bytes from the start of the open file ``fd``."""
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if info.size:
            if fd is None:
                raise ValueError(f"{info.name}: data needed for a {info.size}-byte member")
            self._copy_fd(fd, info.size)
            self._pad(info.size)

    def _copy_fd(self, fd: int, size: int) -> None:
        if self._fd is not None:
            self._out.flush()
            offset = 0
            try:
                while offset < size:
                    sent = os.sendfile(self._fd, fd, offset, min(size - offset, 1 << 30))
                    if sent == 0:
                        raise OSError(f"file shrank while being written ({offset} of {size})")
                    offset += sent
                self.written += size
                return
            except OSError:
                if offset:
                    raise
        done = 0
        while done < size:
            data = os.pread(fd, min(1 << 20, size - done), done)
            if not data:
                raise OSError(f"file shrank while being written ({done} of {size})")
            self._write(data)
            done += len(data)

    def _copy(self, f: BinaryIO, size: int) -> None:
        if self._fd is not None:
            self._out.flush()
            offset = 0
            try:
                while offset < size:
                    sent = os.sendfile(self._fd, f.fileno(), offset, min(size - offset, 1 << 30))
                    if sent == 0:
                        raise OSError("sendfile: source ended early")
                    offset += sent
                self.written += size
                return
            except OSError:
                if offset:
                    raise
        done = 0
        while done < size:
            data = f.read(min(1 << 20, size - done))
            if not data:
                raise OSError("blob shrank while it was being written")
            self._write(data)
            done += len(data)

    def _pad(self, size: int) -> None:
        rem = size % BLOCK
        if rem:
            self._write(b"\x00" * (BLOCK - rem))

    def close(self) -> None:
        self._write(b"\x00" * (BLOCK * 2))
        self._out.flush()
