"""Build image archives, layer tars and decompression bombs for tests, and edit
existing archives member by member.

Everything is written with Python's tarfile, which keeps member names exactly
as given (``../evil``, ``/abs/path``), so hostile archives are easy to make.
Bombs are written by repeating one compressed chunk (gzip members, zstd frames
and xz streams may all be concatenated), so a multi-GiB bomb costs a few MB and
a few milliseconds to make.
"""

from __future__ import annotations

import copy
import functools
import gzip
import hashlib
import io
import json
import lzma
import os
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

GiB = 1 << 30
MiB = 1 << 20
BLOCK = 512

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


# --------------------------------------------------------------------------- #
# digests
# --------------------------------------------------------------------------- #


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def blob_path(digest: str) -> str:
    algo, hexpart = digest.split(":", 1)
    return f"blobs/{algo}/{hexpart}"


# --------------------------------------------------------------------------- #
# tar entries
# --------------------------------------------------------------------------- #


@dataclass
class Entry:
    """One tar member: its header and (for regular files) its data."""

    info: tarfile.TarInfo
    data: bytes | None = None

    @property
    def name(self) -> str:
        return self.info.name

    def copy(self) -> Entry:
        return Entry(copy.copy(self.info), self.data)


def file_entry(name: str, data: bytes, mode: int = 0o644, mtime: int = 0) -> Entry:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = mtime
    return Entry(info, data)


def dir_entry(name: str) -> Entry:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return Entry(info)


def link_entry(name: str, target: str, hard: bool = False) -> Entry:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    info.mode = 0o777
    return Entry(info)


def read_entries(path: Path) -> list[Entry]:
    """Every member of a (small, possibly compressed) tar, data in memory."""
    out = []
    with tarfile.open(path, "r:*") as tar:
        for info in tar:
            data = None
            if info.isreg():
                f = tar.extractfile(info)
                assert f is not None
                data = f.read()
            out.append(Entry(info, data))
    return out


def write_tar(entries: Iterable[Entry], out: BinaryIO) -> None:
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = copy.copy(e.info)
            if e.data is not None:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)


def tar_bytes(entries: Iterable[Entry]) -> bytes:
    buf = io.BytesIO()
    write_tar(entries, buf)
    return buf.getvalue()


def write_entries(entries: Iterable[Entry], dest: Path) -> Path:
    with dest.open("wb") as f:
        write_tar(entries, f)
    return dest


@dataclass(frozen=True)
class MemberSpan:
    name: str
    header: int  # offset of the member's (first) header block
    data: int  # offset of its data
    size: int


def member_spans(src: Path | bytes) -> list[MemberSpan]:
    """Where each member's header and data sit in an uncompressed tar (file or bytes)."""
    f = io.BytesIO(src) if isinstance(src, bytes) else src.open("rb")
    with f, tarfile.open(fileobj=f, mode="r:") as tar:
        return [MemberSpan(i.name, i.offset, i.offset_data, i.size) for i in tar]


# --------------------------------------------------------------------------- #
# images
# --------------------------------------------------------------------------- #


def image_config(diff_ids: list[str], created: str = "2026-01-02T03:04:05Z",
                 cmd: list[str] | None = None) -> bytes:
    config: dict[str, Any] = {
        "architecture": _host_arch(),
        "config": {"Cmd": cmd or ["/bin/sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "created": created,
        "history": [{"created": created, "created_by": f"layer {i}"} for i in range(len(diff_ids))],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def _host_arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


@dataclass
class Layer:
    """A layer blob as it goes into an archive: bytes in memory or a file on disk."""

    digest: str
    size: int
    data: bytes | None = None
    path: Path | None = None

    @classmethod
    def of(cls, src: bytes | Path) -> Layer:
        if isinstance(src, bytes):
            return cls(sha256(src), len(src), data=src)
        return cls(sha256_file(src), src.stat().st_size, path=src)


@dataclass
class BuiltArchive:
    path: Path
    image_id: str  # config digest
    diff_ids: list[str]
    manifest_digest: str
    tags: list[str] = field(default_factory=list)


def image_archive(dest: Path, layers: list[bytes | Path], tags: list[str],
                  created: str = "2026-01-02T03:04:05Z", docker_manifest: bool = True,
                  oci_index: bool = True, diff_ids: list[str] | None = None) -> BuiltArchive:
    """A one-image archive in Docker 25's layout (what ``dockyard save`` writes):
    uncompressed layers at blobs/sha256/<hex>, the OCI index.json and oci-layout,
    and the legacy manifest.json and repositories.  Large layers may be files.
    ``diff_ids`` overrides the config's (for mismatch tests)."""
    blobs = [Layer.of(src) for src in layers]
    ids = diff_ids if diff_ids is not None else [b.digest for b in blobs]
    config = image_config(ids, created)
    config_digest = sha256(config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": b.digest, "size": b.size} for b in blobs],
    }, separators=(",", ":")).encode()
    manifest_digest = sha256(manifest)
    index_descs = []
    for tag in tags:
        name, _, t = tag.rpartition(":")
        index_descs.append({
            "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest),
            "annotations": {"io.containerd.image.name": _full_name(name) + ":" + t,
                            "org.opencontainers.image.ref.name": t},
        })
    if not tags:
        index_descs.append({"mediaType": OCI_MANIFEST, "digest": manifest_digest,
                            "size": len(manifest)})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_descs},
                       separators=(",", ":")).encode()
    with dest.open("wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(dir_entry("blobs").info)
        tar.addfile(dir_entry("blobs/sha256").info)
        small = {config_digest: config, manifest_digest: manifest}
        seen = set()
        for b in blobs:
            if b.digest in seen:
                continue
            seen.add(b.digest)
            info = tarfile.TarInfo(blob_path(b.digest))
            info.size = b.size
            info.mode = 0o644
            if b.data is not None:
                tar.addfile(info, io.BytesIO(b.data))
            else:
                assert b.path is not None
                with b.path.open("rb") as src:
                    tar.addfile(info, src)
        for digest, data in small.items():
            tar.addfile(file_entry(blob_path(digest), data).info, io.BytesIO(data))
        if oci_index:
            tar.addfile(file_entry("index.json", index).info, io.BytesIO(index))
        if docker_manifest:
            items = [{"Config": blob_path(config_digest), "RepoTags": tags or None,
                      "Layers": [blob_path(b.digest) for b in blobs]}]
            raw = json.dumps(items).encode()
            tar.addfile(file_entry("manifest.json", raw).info, io.BytesIO(raw))
        layout = b'{"imageLayoutVersion":"1.0.0"}'
        tar.addfile(file_entry("oci-layout", layout).info, io.BytesIO(layout))
    return BuiltArchive(dest, config_digest, ids, manifest_digest, list(tags))


def _full_name(name: str) -> str:
    first = name.split("/", 1)[0]
    if "/" not in name:
        return "docker.io/library/" + name
    if "." in first or ":" in first or first == "localhost":
        return name
    return "docker.io/" + name


class ArchiveEdit:
    """An archive's members in memory, to be edited and written back out."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = [e.copy() for e in entries]

    @classmethod
    def load(cls, path: Path) -> ArchiveEdit:
        return cls(read_entries(path))

    def copy(self) -> ArchiveEdit:
        return ArchiveEdit(self.entries)

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def get(self, name: str) -> Entry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)

    def data(self, name: str) -> bytes:
        data = self.get(name).data
        assert data is not None
        return data

    def json(self, name: str) -> Any:
        return json.loads(self.data(name))

    def put(self, name: str, data: bytes) -> None:
        """Replace a member's data in place (or append a new member)."""
        for e in self.entries:
            if e.name == name:
                e.data = data
                e.info.size = len(data)
                return
        self.entries.append(file_entry(name, data))

    def put_json(self, name: str, value: Any) -> None:
        self.put(name, json.dumps(value, separators=(",", ":")).encode())

    def remove(self, name: str) -> None:
        before = len(self.entries)
        self.entries = [e for e in self.entries if e.name != name]
        assert len(self.entries) < before, f"no member {name}"

    def append(self, entry: Entry) -> None:
        self.entries.append(entry)

    def put_blob(self, data: bytes) -> str:
        digest = sha256(data)
        self.put(blob_path(digest), data)
        return digest

    # -- the OCI side ----------------------------------------------------------

    def oci_manifest_digest(self, n: int = 0) -> str:
        return str(self.json("index.json")["manifests"][n]["digest"])

    def edit_oci_manifest(self, fn: Callable[[dict[str, Any]], None], n: int = 0) -> str:
        """Rewrite the n-th index entry's manifest with ``fn`` and point index.json at
        the new blob (the old one is removed). Returns the new digest."""
        index = self.json("index.json")
        old = index["manifests"][n]["digest"]
        manifest = json.loads(self.data(blob_path(old)))
        fn(manifest)
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        self.remove(blob_path(old))
        new = self.put_blob(raw)
        for desc in index["manifests"]:
            if desc["digest"] == old:
                desc["digest"] = new
                desc["size"] = len(raw)
        self.put_json("index.json", index)
        return new

    def oci_only(self) -> ArchiveEdit:
        """Drop manifest.json and repositories, so a loader must use index.json."""
        for name in ("manifest.json", "repositories"):
            if name in self.names():
                self.remove(name)
        return self

    def write(self, dest: Path) -> Path:
        return write_entries(self.entries, dest)


# --------------------------------------------------------------------------- #
# compression and bombs
# --------------------------------------------------------------------------- #


def compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "zstd":
        import zstandard

        return bytes(zstandard.ZstdCompressor().compress(data))
    if kind == "xz":
        return lzma.compress(data)
    raise ValueError(kind)


def compress_file(src: Path, dest: Path, kind: str) -> Path:
    dest.write_bytes(compress(src.read_bytes(), kind))
    return dest


def zero_file_tar_bomb(out: BinaryIO, kind: str, size: int = 4 * GiB, name: str = "zeros",
                       chunk: int = 8 * MiB) -> int:
    """Write a compressed tar holding one file of ``size`` zero bytes: each piece is
    its own gzip member / zstd frame / xz stream, and the chunk of zeros is
    compressed once and repeated. Returns the compressed size."""
    assert size % chunk == 0 and chunk % BLOCK == 0
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    zeros = compress(bytes(chunk), kind)
    tail = compress(bytes(2 * BLOCK), kind)
    written = 0
    for piece in (compress(header, kind), *([zeros] * (size // chunk)), tail):
        out.write(piece)
        written += len(piece)
    return written


@functools.lru_cache(maxsize=16)
def bomb_bytes(kind: str, size: int = 4 * GiB, name: str = "zeros") -> bytes:
    """A compressed tar with one ``size``-byte zero file (gzip: ~1 MB per GiB)."""
    buf = io.BytesIO()
    zero_file_tar_bomb(buf, kind, size, name)
    return buf.getvalue()


def write_random(dest: Path, size: int, seed: bytes = b"dockyard") -> Path:
    """``size`` bytes of incompressible data, quickly: a random block, varied per MiB."""
    block = os.urandom(4 * MiB)
    with dest.open("wb") as f:
        done = 0
        n = 0
        while done < size:
            piece = block[: min(len(block), size - done)]
            f.write(hashlib.sha256(seed + n.to_bytes(8, "big")).digest() + piece[32:])
            done += len(piece)
            n += 1
    return dest
