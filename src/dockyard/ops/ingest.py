"""Turn staged layers and a config into a recorded image: the one way images enter the store.

Every blob is written to a staging dir, fsynced and hashed while it was
copied; only after the config's diff_ids match the layers are the blobs
renamed into place and the records written in one transaction. A process
killed before that transaction leaves nothing visible but garbage blobs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from dockyard import mediatypes
from dockyard.archive.compression import decompressed
from dockyard.archive.layer import LayerInfo, ingest_layer
from dockyard.digest import Digest
from dockyard.errors import ArchiveError, DigestMismatch
from dockyard.oci.config import dumps
from dockyard.oci.timefmt import parse_ns
from dockyard.reference import Reference
from dockyard.store import durability
from dockyard.store.store import LayerRecord, NewImage, Store

if TYPE_CHECKING:
    from dockyard.distribution.pull import ReadAhead


@dataclass
class StagedLayer:
    path: Path | None  # None when the store already had this layer
    info: LayerInfo
    synced: bool = True  # False: written but not fsynced (see store.durability)

    def record(self) -> LayerRecord:
        return LayerRecord(
            diff_id=self.info.diff_id,
            blob=self.info.diff_id,
            content_size=self.info.content_size,
            tar_size=self.info.tar_size,
        )


WRITEBACK_EVERY = 16 << 20


class _Writeback:
    """Writes to a file and asks the kernel to start writing it out every
    WRITEBACK_EVERY bytes, so that the fsync before the blob is adopted finds little
    left to do instead of the whole layer (the disk works while we unpack)."""

    def __init__(self, f: BinaryIO) -> None:
        from dockyard.archive.tarwrite import start_writeback

        self._f = f
        self._pending = 0
        self._start = start_writeback

    def write(self, data: bytes) -> int:
        n = self._f.write(data)
        self._pending += len(data)
        if self._pending >= WRITEBACK_EVERY:
            self._f.flush()
            self._start(self._f.fileno())
            self._pending = 0
        return n


INFLATE_PIECE = 1 << 20
INFLATE_AHEAD = 16  # pieces


def _inflate_ahead(src: BinaryIO, what: str) -> tuple[ReadAhead, list[str]]:
    """The uncompressed bytes of ``src`` (with the bomb guard of ``decompressed``),
    decompressed on a thread of its own; the list gets the compression found."""
    from dockyard.distribution.pull import ReadAhead  # only pulls (httpx) need it

    kind: list[str] = []
    plain: list[BinaryIO] = []

    def produce() -> bytes:
        if not plain:
            stream, found = decompressed(src, what)
            plain.append(stream)
            kind.append(found)
        return plain[0].read(INFLATE_PIECE)

    return ReadAhead(produce, "inflate", INFLATE_AHEAD), kind


def stage_layer(
    store: Store, staging: Path, src: BinaryIO, what: str, *, inflate_ahead: bool = False
) -> StagedLayer:
    """Copy a (possibly compressed) layer stream into staging as an uncompressed tar.

    ``inflate_ahead``: decompress on another thread while this one checks, hashes and
    writes the tar (pulls: ``src`` is a network stream; ``info.compressed_digest`` is
    then not computed, the caller verifies the blob itself).
    """
    fd, name = _mkstemp(staging, "layer")
    with os.fdopen(fd, "wb") as f:
        out = cast(BinaryIO, _Writeback(f))
        if inflate_ahead:
            plain, kind = _inflate_ahead(src, what)
            try:
                info = ingest_layer(cast(BinaryIO, plain), out, what)
            finally:
                plain.close()
            info = replace(info, compression=kind[0] if kind else "")
        else:
            info = ingest_layer(src, out, what)
        f.flush()
        os.fsync(f.fileno())
    path = Path(name)
    if store.blobs.exists(info.diff_id):
        path.unlink()
        return StagedLayer(None, info)
    final = staging / f"layer-{info.diff_id.hex}"
    os.rename(path, final)
    return StagedLayer(final, info)


def _mkstemp(staging: Path, prefix: str) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(prefix=prefix + "-", dir=staging)


def parse_config(raw: bytes, what: str = "image config") -> dict[str, Any]:
    try:
        config = json.loads(raw)
    except ValueError as e:
        raise ArchiveError(f"{what}: invalid JSON: {e}") from e
    if not isinstance(config, dict):
        raise ArchiveError(f"{what}: not a JSON object")
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
        raise ArchiveError(f"{what}: no rootfs.diff_ids")
    return config


def oci_manifest(config_digest: str, config_size: int, layers: list[LayerRecord]) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {
            "mediaType": mediatypes.OCI_CONFIG,
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {"mediaType": mediatypes.OCI_LAYER_TAR, "digest": layer.blob, "size": layer.tar_size}
            for layer in layers
        ],
    }
    return dumps(manifest)


@dataclass
class PendingImage:
    """An image whose blobs are staged and not yet visible."""

    config_raw: bytes
    layers: list[StagedLayer]
    tags: list[Reference] = field(default_factory=list)
    parent: str = ""
    what: str = "image"
    digests: list[Reference] = field(default_factory=list)  # name@digest (RepoDigests)

    @property
    def id(self) -> str:
        return Digest.of_bytes(self.config_raw)


def check_image(image: PendingImage) -> dict[str, Any]:
    """Raise unless the config's diff_ids are exactly the staged layers."""
    what = image.what
    config = parse_config(image.config_raw, f"{what}: config")
    diff_ids = [str(d) for d in config["rootfs"]["diff_ids"]]
    got = [layer.info.diff_id for layer in image.layers]
    if len(diff_ids) != len(got):
        raise DigestMismatch(
            f"{what}: config lists {len(diff_ids)} layers but the archive has {len(got)}"
        )
    for i, (want, have) in enumerate(zip(diff_ids, got, strict=True)):
        if want != have:
            raise DigestMismatch(
                f"{what}: layer {i + 1} does not match its diff_id: "
                f"config says {want}, content is {have}"
            )
    return config


def commit_images(store: Store, staging: Path, images: list[PendingImage]) -> list[bool]:
    """Check every image, then move all blobs into place and record all images in one
    transaction. Returns, per image, whether it is new. Nothing changes if a check fails."""
    configs = [check_image(image) for image in images]
    news: list[NewImage] = []
    unsynced: list[str] = []
    for image, config in zip(images, configs, strict=True):
        records = []
        for layer in image.layers:
            if layer.path is not None and layer.path.exists():
                store.blobs.adopt(
                    layer.path, layer.info.diff_id, layer.info.tar_size, verified=True
                )
                if not layer.synced:
                    unsynced.append(layer.info.diff_id)
            known = store.layer(layer.info.diff_id)
            records.append(known if known is not None else layer.record())
        image_id = store.blobs.put_bytes(image.config_raw, staging)
        manifest_raw = oci_manifest(image_id, len(image.config_raw), records)
        manifest = store.blobs.put_bytes(manifest_raw, staging)
        created = str(config.get("created") or "")
        labels = (config.get("config") or {}).get("Labels") or None
        news.append(
            NewImage(
                id=image_id,
                manifest=manifest,
                created=created,
                created_ts=parse_ns(created) / 1e9,
                layers=records,
                labels=labels if isinstance(labels, dict) else None,
            )
        )
    store.blobs.sync()
    out = []
    with store.transaction() as conn:
        durability.mark_unsynced(conn, unsynced)
        for new in news:
            out.append(store.add_image(conn, new))
        for image in images:
            if image.parent:
                store.set_parent(conn, image.id, image.parent)
            for ref in image.tags:
                store.set_tag(conn, ref, image.id)
            for ref in image.digests:
                store.add_repo_digest(conn, ref, image.id)
    if unsynced:
        durability.sync_later(store.root)
    return out


__all__ = [
    "PendingImage",
    "StagedLayer",
    "check_image",
    "commit_images",
    "oci_manifest",
    "parse_config",
    "stage_layer",
]
