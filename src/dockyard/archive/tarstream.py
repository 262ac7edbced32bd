"""A streaming tar reader that never seeks, and safe member-name checks.

Python's tarfile in stream mode cannot tell a truncated archive from a short
one and hides raw bytes; this reader parses the 512-byte headers itself (ustar,
GNU long names, pax records), hands out each member's data as a bounded
stream, and raises ArchiveError on anything malformed.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from dockyard.errors import ArchiveError

BLOCK = 512
CHUNK = 1 << 20

REGTYPES = (b"0", b"\x00", b"7")
LNKTYPE = b"1"
SYMTYPE = b"2"
DIRTYPE = b"5"


@dataclass
class TarHeader:
    name: str
    typeflag: bytes
    size: int
    linkname: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: float = 0.0
    pax: dict[str, str] = field(default_factory=dict)
    devmajor: int = 0  # character and block devices ('3', '4')
    devminor: int = 0

    @property
    def is_file(self) -> bool:
        return self.typeflag in REGTYPES

    @property
    def is_dir(self) -> bool:
        return self.typeflag == DIRTYPE

    @property
    def is_symlink(self) -> bool:
        return self.typeflag == SYMTYPE

    @property
    def is_hardlink(self) -> bool:
        return self.typeflag == LNKTYPE


def _nts(b: bytes) -> str:
    return b.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _number(b: bytes, what: str) -> int:
    if b and b[0] & 0x80:  # GNU base-256
        n = int.from_bytes(b[1:], "big")
        if b[0] & 0x40:
            n -= 1 << (8 * (len(b) - 1) + 6)
        return n
    s = b.split(b"\x00", 1)[0].strip(b" \x00")
    if not s:
        return 0
    try:
        return int(s, 8)
    except ValueError as e:
        raise ArchiveError(f"{what}: invalid tar header (bad number field {s!r})") from e


def _checksum_ok(block: bytes) -> bool:
    stored = block[148:156].split(b"\x00", 1)[0].strip(b" \x00")
    if not stored:
        return False
    try:
        want = int(stored, 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    return want == unsigned


def _parse_pax(data: bytes, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            break
        try:
            length = int(data[pos:sp])
        except ValueError as e:
            raise ArchiveError(f"{what}: invalid pax header") from e
        if length <= 0:
            raise ArchiveError(f"{what}: invalid pax header")
        record = data[sp + 1 : pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


class _MemberStream:
    """Reads exactly one member's data from the archive stream."""

    def __init__(self, reader: TarReader, size: int) -> None:
        self._reader = reader
        self.remaining = size

    def read(self, n: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        if n < 0 or n > self.remaining:
            n = self.remaining
        data = self._reader._read_exact(n)
        self.remaining -= len(data)
        return data

    def readable(self) -> bool:
        return True

    def copy_to(self, fd: int) -> None:
        """Write the rest of the member's data to ``fd``: by the kernel
        (copy_file_range) when the archive is a regular file, else read and write."""
        src = self._reader._src
        if self.remaining and self._reader.regular_file:
            start = src.tell()
            done = 0
            while done < self.remaining:
                n = os.copy_file_range(src.fileno(), fd, self.remaining - done, start + done)
                if n == 0:
                    raise ArchiveError(
                        f"{self._reader._what}: unexpected EOF (truncated tar archive)"
                    )
                done += n
            src.seek(done, os.SEEK_CUR)
            self._reader.offset += done
            self.remaining = 0
            return
        while self.remaining:
            view = memoryview(self.read(min(CHUNK, self.remaining)))
            while view:
                view = view[os.write(fd, view) :]


def _is_regular_file(src: object) -> bool:
    """A plain, seekable file on disk (a blob), not a pipe or a decompressor."""
    try:
        return bool(src.seekable()) and stat.S_ISREG(os.fstat(src.fileno()).st_mode)  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


class TarReader:
    """Iterate over a tar stream's members; each member's ``data`` must be read
    before asking for the next one (whatever is left is skipped)."""

    def __init__(self, src: BinaryIO, what: str = "archive") -> None:
        self._src = src
        self._what = what
        self.offset = 0
        self.ended = False
        self.regular_file = _is_regular_file(src)

    def _read_exact(self, n: int) -> bytes:
        data = self._src.read(n)
        if len(data) < n:
            parts = [data]
            got = len(data)
            while got < n:
                more = self._src.read(n - got)
                if not more:
                    raise ArchiveError(f"{self._what}: unexpected EOF (truncated tar archive)")
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        self.offset += n
        return data

    def _skip(self, n: int) -> None:
        seek = getattr(self._src, "seek", None)
        if n > 0 and seek is not None and getattr(self._src, "seekable", lambda: False)():
            seek(n, 1)  # a regular file: no need to read what is skipped
            self.offset += n
            return
        while n > 0:
            k = min(n, CHUNK)
            self._read_exact(k)
            n -= k

    def _header_block(self) -> bytes | None:
        first = self._src.read(BLOCK)
        if not first:
            if self.offset == 0:
                raise ArchiveError(f"{self._what}: empty file, not a tar archive")
            raise ArchiveError(f"{self._what}: unexpected EOF (truncated tar archive)")
        block = first
        if len(block) < BLOCK:
            rest = self._src.read(BLOCK - len(block))
            block += rest
            while rest and len(block) < BLOCK:
                rest = self._src.read(BLOCK - len(block))
                block += rest
            if len(block) < BLOCK:
                if self.offset == 0:
                    raise ArchiveError(f"{self._what}: not a tar archive (too short)")
                raise ArchiveError(f"{self._what}: unexpected EOF (truncated tar archive)")
        self.offset += BLOCK
        return block

    def __iter__(self) -> Iterator[tuple[TarHeader, _MemberStream]]:
        long_name: str | None = None
        long_link: str | None = None
        pax: dict[str, str] = {}
        global_pax: dict[str, str] = {}
        while True:
            at = self.offset
            block = self._header_block()
            assert block is not None
            if block == b"\x00" * BLOCK:
                # End of archive: one zero block, usually two, then padding.
                self._second_end_block()
                self.ended = True
                return
            if not _checksum_ok(block):
                if at == 0:
                    raise ArchiveError(f"{self._what}: not a tar archive (invalid header)")
                raise ArchiveError(f"{self._what}: invalid tar header at offset {at}")
            typeflag = block[156:157]
            size = _number(block[124:136], self._what)
            if size < 0:
                raise ArchiveError(f"{self._what}: invalid tar header (negative size)")
            padded = (size + BLOCK - 1) // BLOCK * BLOCK
            if typeflag in (b"L", b"K", b"x", b"g"):
                data = self._read_exact(padded)[:size]
                if typeflag == b"L":
                    long_name = _nts(data)
                elif typeflag == b"K":
                    long_link = _nts(data)
                elif typeflag == b"x":
                    pax.update(_parse_pax(data, self._what))
                else:
                    global_pax.update(_parse_pax(data, self._what))
                continue
            name = _nts(block[0:100])
            magic = block[257:263]
            if magic.startswith(b"ustar") and block[345:500].strip(b"\x00"):
                prefix = _nts(block[345:500])
                if magic == b"ustar\x00":  # POSIX prefix field (GNU uses it for atime)
                    name = prefix + "/" + name
            linkname = _nts(block[157:257])
            merged = {**global_pax, **pax}
            if long_name is not None:
                name = long_name
            if long_link is not None:
                linkname = long_link
            name = merged.get("path", name)
            linkname = merged.get("linkpath", linkname)
            if "size" in merged:
                try:
                    size = int(merged["size"])
                except ValueError as e:
                    raise ArchiveError(f"{self._what}: invalid pax size") from e
                padded = (size + BLOCK - 1) // BLOCK * BLOCK
            if typeflag in (LNKTYPE, SYMTYPE, DIRTYPE, b"3", b"4", b"6"):
                # header-only types carry no data, whatever the size field says (as Go reads them)
                size, padded = 0, 0
            header = TarHeader(
                name=name,
                typeflag=typeflag,
                size=size,
                linkname=linkname,
                mode=_number(block[100:108], self._what),
                uid=int(merged["uid"]) if "uid" in merged else _number(block[108:116], self._what),
                gid=int(merged["gid"]) if "gid" in merged else _number(block[116:124], self._what),
                mtime=float(merged["mtime"])
                if "mtime" in merged
                else float(_number(block[136:148], self._what)),
                pax=merged,
                devmajor=_number(block[329:337], self._what) if typeflag in (b"3", b"4") else 0,
                devminor=_number(block[337:345], self._what) if typeflag in (b"3", b"4") else 0,
            )
            long_name = long_link = None
            pax = {}
            stream = _MemberStream(self, size)
            yield header, stream
            self._skip(stream.remaining)
            self._skip(padded - size)

    def _second_end_block(self) -> None:
        """A lone zero block at EOF is accepted (as Go and GNU tar do); a partial
        second block means the archive was cut short."""
        block = self._src.read(BLOCK)
        while block and len(block) < BLOCK:
            more = self._src.read(BLOCK - len(block))
            if not more:
                raise ArchiveError(f"{self._what}: unexpected EOF (truncated tar archive)")
            block += more
        self.offset += len(block)

    def drain(self) -> None:
        """Read whatever follows the end-of-archive marker (hashing tees see it)."""
        while self._src.read(CHUNK):
            pass


def safe_member_name(name: str, what: str = "archive") -> str:
    """Normalise a member name, refusing absolute paths and ``..`` escapes.

    Returns the clean relative path ('' for the root itself).
    """
    if "\x00" in name:
        raise ArchiveError(f"{what}: member name contains a NUL byte: {name!r}")
    if name.startswith("/"):
        raise ArchiveError(f"{what}: refusing member with absolute path: {name}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{what}: refusing member with '..' in its path: {name}")
    return "/".join(parts)


def resolve_link(member: str, target: str, what: str = "archive") -> str:
    """Resolve a symlink inside the archive's own namespace, refusing escapes."""
    if target.startswith("/"):
        joined = target.lstrip("/")
    else:
        joined = posixpath.join(posixpath.dirname(member), target)
    norm = posixpath.normpath(joined)
    if norm == ".." or norm.startswith("../") or norm.startswith("/"):
        raise ArchiveError(
            f"{what}: refusing link {member} -> {target}: it points outside the archive"
        )
    return "" if norm == "." else norm
