"""Read an image archive (docker-archive or OCI layout in a tar) in one pass.

The archive may be a pipe and may be compressed. Small members (JSON,
manifests, small layers) are kept in memory; large ones are staged at once as
uncompressed layer tars, hashed on the way. Nothing touches the store's
visible state here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from dockyard.archive.compression import decompressed
from dockyard.archive.tarstream import TarReader, resolve_link, safe_member_name
from dockyard.digest import CHUNK, Digest
from dockyard.errors import ArchiveError
from dockyard.ops.ingest import StagedLayer, stage_layer
from dockyard.store.store import Store

SMALL = 1 << 20  # members up to this size are read into memory
MAX_SMALL_TOTAL = 256 << 20
MAX_LINK_DEPTH = 16


@dataclass
class Member:
    name: str
    size: int
    data: bytes | None = None  # small members
    layer: StagedLayer | None = None  # large members, staged
    error: str = ""  # a large member that is not a layer tar
    raw_digest: str = ""

    def blob_digest(self) -> str:
        """Digest of the member's bytes as stored in the archive."""
        if self.raw_digest:
            return self.raw_digest
        assert self.layer is not None
        info = self.layer.info
        return info.compressed_digest or info.diff_id


@dataclass
class ArchiveContents:
    members: dict[str, Member] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # name -> resolved target name
    dirs: set[str] = field(default_factory=set)

    def has(self, name: str) -> bool:
        try:
            self.get(name)
        except ArchiveError:
            return False
        return True

    def get(self, name: str) -> Member:
        clean = safe_member_name(name)
        for _ in range(MAX_LINK_DEPTH):
            if clean in self.members:
                return self.members[clean]
            if clean not in self.links:
                raise ArchiveError(f"archive has no file {name}")
            clean = self.links[clean]
        raise ArchiveError(f"archive: too many levels of links at {name}")

    def read_small(self, name: str, limit: int = SMALL) -> bytes:
        member = self.get(name)
        if member.data is None:
            raise ArchiveError(
                f"archive: {name} is too large ({member.size} bytes, at most {limit})"
            )
        return member.data

    def layer(self, store: Store, staging: Path, name: str) -> StagedLayer:
        """The member as a staged layer (small members are staged on demand)."""
        member = self.get(name)
        if member.error:
            raise ArchiveError(member.error)
        if member.layer is None:
            assert member.data is not None
            member.layer = stage_layer(store, staging, io.BytesIO(member.data), f"layer {name}")
        return member.layer


def read_archive(src: BinaryIO, store: Store, staging: Path) -> ArchiveContents:
    plain, _kind = decompressed(src, "archive")
    reader = TarReader(plain, "archive")
    contents = ArchiveContents()
    small_total = 0
    for header, data in reader:
        name = safe_member_name(header.name)
        if not name:
            continue
        if header.is_dir:
            contents.dirs.add(name)
            continue
        if name in contents.members or name in contents.links:
            raise ArchiveError(f"archive: duplicate entry {name}")
        if header.is_symlink:
            contents.links[name] = resolve_link(name, header.linkname)
            continue
        if header.is_hardlink:
            contents.links[name] = safe_member_name(header.linkname)
            continue
        if not header.is_file:
            continue  # devices and fifos have no place in an image archive
        if header.size <= SMALL:
            small_total += header.size
            if small_total > MAX_SMALL_TOTAL:
                raise ArchiveError("archive: too many small members")
            blob = data.read(header.size)
            contents.members[name] = Member(
                name, header.size, data=blob, raw_digest=Digest.of_bytes(blob)
            )
            continue
        member = Member(name, header.size)
        try:
            member.layer = stage_layer(store, staging, data, f"layer {name}")  # type: ignore[arg-type]
        except ArchiveError as e:
            member.error = str(e)
            while data.read(CHUNK):
                pass
        contents.members[name] = member
    reader.drain()
    return contents
