"""Write tar streams whose file data is copied by the kernel (sendfile) where it can be."""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from typing import Any, BinaryIO

BLOCK = 512
_OCTAL_7 = 8**7
_OCTAL_11 = 8**11
_DEVICES = (tarfile.CHRTYPE, tarfile.BLKTYPE)
_NO_DEVICE = b"\0" * 16
_TAIL = b"ustar\x0000"


def ustar_header(info: tarfile.TarInfo) -> bytes | None:
    """``info.tobuf(PAX_FORMAT)`` byte for byte, built directly, for the common
    entry that needs no PAX record (ASCII names that fit, no float or oversized
    numbers, no PAX headers); None for any other, which tarfile then writes.

    Writing a layer of thousands of small files spent most of its time in
    tarfile's general header code; a unit test holds the two equal."""
    if info.pax_headers:
        return None
    name, linkname, uname, gname = info.name, info.linkname, info.uname, info.gname
    kind = info.type
    if kind == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    uid, gid, size, mtime = info.uid, info.gid, info.size, info.mtime
    if not (
        len(name) <= 100
        and len(linkname) <= 100
        and len(uname) <= 32
        and len(gname) <= 32
        and name.isascii()
        and linkname.isascii()
        and uname.isascii()
        and gname.isascii()
        and type(uid) is int
        and type(gid) is int
        and type(size) is int
        and type(mtime) is int
        and 0 <= uid < _OCTAL_7
        and 0 <= gid < _OCTAL_7
        and 0 <= size < _OCTAL_11
        and 0 <= mtime < _OCTAL_11
    ):
        return None
    if kind in _DEVICES:
        major, minor = info.devmajor, info.devminor
        if not (0 <= major < _OCTAL_7 and 0 <= minor < _OCTAL_7):
            return None
        devices = b"%07o\0%07o\0" % (major, minor)
    else:
        devices = _NO_DEVICE
    buf = b"".join((
        name.encode().ljust(100, b"\0"),
        b"%07o\0%07o\0%07o\0%011o\0%011o\0        " % (info.mode & 0o7777, uid, gid, size, mtime),
        kind,
        linkname.encode().ljust(100, b"\0"),
        _TAIL,
        uname.encode().ljust(32, b"\0"),
        gname.encode().ljust(32, b"\0"),
        devices,
        bytes(167),
    ))  # fmt: skip
    return b"%s%06o\0%s" % (buf[:148], sum(buf), buf[155:])


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


@dataclass(frozen=True)
class TarStats:
    """What a finished tar holds: its length, Docker's content size, its entries."""

    written: int
    content_size: int
    entries: int


class TarWriter:
    def __init__(self, out: BinaryIO, writeback: bool = False) -> None:
        """``writeback``: start flushing each file's bytes to disk as soon as they are
        written (for outputs that will be fsynced).

        File data goes by ``out.copy_from(fd, size)`` where the output has it,
        else by sendfile into a real output file, else through ``write``.
        ``content_size`` (file sizes plus symlink target lengths, Docker's layer
        size) and ``entries`` are counted as members are added."""
        self._out = out
        self._writeback = writeback
        self.content_size = 0
        self.entries = 0
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
            self._copy_fd(f.fileno(), size)
        self._pad(size)
        if self._writeback and self._fd is not None:
            self._out.flush()
            start_writeback(self._fd)

    def add_member(self, info: tarfile.TarInfo, fd: int | None = None) -> None:
        """Write ``info`` exactly as given (PAX where needed); for a regular file
        copy ``info.size`` bytes from the start of the open file ``fd``."""
        header = ustar_header(info)
        if header is None:
            header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        self._write(header)
        self.entries += 1
        if info.type == tarfile.SYMTYPE:
            self.content_size += len(info.linkname.encode("utf-8", "surrogateescape"))
        elif info.type in tarfile.REGULAR_TYPES:
            self.content_size += info.size
        if info.size:
            if fd is None:
                raise ValueError(f"{info.name}: data needed for a {info.size}-byte member")
            self._copy_fd(fd, info.size)
            self._pad(info.size)

    def _copy_fd(self, fd: int, size: int) -> None:
        copy_from = getattr(self._out, "copy_from", None)
        if copy_from is not None:  # an output that reads the file into its own buffer
            copy_from(fd, size)
            self.written += size
            return
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

    def _pad(self, size: int) -> None:
        rem = size % BLOCK
        if rem:
            self._write(b"\x00" * (BLOCK - rem))

    def close(self) -> TarStats:
        self._write(b"\x00" * (BLOCK * 2))
        self._out.flush()
        return TarStats(self.written, self.content_size, self.entries)
