"""Ingest a layer tar: undo compression, hash, copy, and check every member."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, BinaryIO

from dockyard.archive.compression import decompressed
from dockyard.archive.tarstream import TarReader, safe_member_name
from dockyard.digest import CHUNK, Digest


@dataclass(frozen=True)
class LayerInfo:
    diff_id: Digest  # sha256 of the uncompressed tar
    tar_size: int  # bytes of the uncompressed tar
    content_size: int  # bytes of files and symlink targets: Docker's layer "Size"
    entries: int
    compression: str  # what the input was compressed with ('' for none)
    compressed_digest: Digest | None  # digest of the input bytes when compressed
    compressed_size: int


class _Tee:
    """Everything read through it is hashed and copied to ``dst``."""

    def __init__(self, src: BinaryIO, dst: BinaryIO | None) -> None:
        self._src = src
        self._dst = dst
        self.hash: Any = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        if data:
            if self.hash is not None:
                self.hash.update(data)
            self.size += len(data)
            if self._dst is not None:
                self._dst.write(data)
        return data

    def readable(self) -> bool:
        return True


def ingest_layer(src: BinaryIO, dst: BinaryIO | None, what: str = "layer") -> LayerInfo:
    """Copy the uncompressed form of the layer in ``src`` to ``dst``.

    Checks each member name (no absolute paths, no ``..``, hardlinks stay
    inside) and raises ArchiveError on a malformed or truncated tar.
    """
    outer = _Tee(src, None)
    plain, kind = decompressed(outer, what)  # type: ignore[arg-type]
    if not kind:
        outer.hash = None  # uncompressed: the inner tee's hash is the same; hash once
    tee = _Tee(plain, dst)
    reader = TarReader(tee, what)  # type: ignore[arg-type]
    content = 0
    entries = 0
    for header, data in reader:
        safe_member_name(header.name, what)
        if header.is_hardlink:
            safe_member_name(header.linkname, what)
        if header.is_file:
            content += header.size
        elif header.is_symlink:
            content += len(header.linkname.encode("utf-8", "surrogateescape"))
        entries += 1
        while data.read(CHUNK):
            pass
    reader.drain()
    if kind:
        outer_rest = outer.read(CHUNK)
        while outer_rest:
            outer_rest = outer.read(CHUNK)
    return LayerInfo(
        diff_id=Digest("sha256:" + tee.hash.hexdigest()),
        tar_size=tee.size,
        content_size=content,
        entries=entries,
        compression=kind,
        compressed_digest=Digest("sha256:" + outer.hash.hexdigest()) if kind else None,
        compressed_size=outer.size,
    )
