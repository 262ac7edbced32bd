"""``commit``: a container's writable layer becomes a new image on top of its image."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from dockyard.archive.hashed_writer import HashedWriter
from dockyard.archive.layer import LayerInfo
from dockyard.digest import Digest
from dockyard.errors import DockyardError
from dockyard.oci.config import container_config, image_config_bytes
from dockyard.oci.timefmt import format_ns, now_ns
from dockyard.ops.changes import apply_changes
from dockyard.ops.container_records import Container
from dockyard.ops.containers import _runc, driver_for, reconcile
from dockyard.ops.ingest import PendingImage, StagedLayer, commit_images
from dockyard.reference import Reference
from dockyard.store.store import Store

# sha256 of an empty tar (two zero blocks): Docker's "empty layer"
EMPTY_TAR_DIGEST = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def _stage_diff(store: Store, staging: Path, container: Container) -> StagedLayer:
    """Write the driver's diff straight into a staging file, hashed and written
    by other threads, counted by the tar writer (one pass; the tar is ours, so
    it is not parsed again). Not fsynced here: ``commit_images`` records it as
    unsynced and a detached syncer forces it to disk (store.durability)."""
    driver = driver_for(store)
    fd, name = tempfile.mkstemp(prefix="diff-", dir=staging)
    path = Path(name)
    try:
        out = HashedWriter(fd)
        try:
            stats = driver.diff(container.id, out)  # type: ignore[arg-type]
        except BaseException:
            out.abandon()
            raise
        hexdigest, size = out.finish()
    finally:
        os.close(fd)
    if size != stats.written:
        raise DockyardError(f"commit: wrote {stats.written} bytes but hashed {size}")
    diff_id = Digest("sha256:" + hexdigest)
    info = LayerInfo(diff_id, size, stats.content_size, stats.entries, "", None, size)
    if store.blobs.exists(diff_id):
        path.unlink()
        return StagedLayer(None, info)
    final = staging / f"layer-{diff_id.hex}"
    os.rename(path, final)
    return StagedLayer(final, info, synced=False)


def commit(
    store: Store,
    container: Container,
    *,
    tag: Reference | None = None,
    author: str = "",
    message: str = "",
    changes: list[str] | None = None,
    pause: bool = True,
) -> str:
    """Commit the container; returns the new image ID."""
    container = reconcile(store, container)
    paused_here = False
    runc = _runc(store)
    if pause and container.running and not container.state.get("Paused"):
        runc.pause(container.id)
        paused_here = True
    try:
        base_raw = store.blobs.read(container.image)
        base: dict[str, Any] = json.loads(base_raw)
        container_cfg = container_config(container.config)
        new_config = container_config(apply_changes(container_cfg, changes or []))
        created = format_ns(now_ns())
        with store.ingest_lock(), store.staging() as staging:
            layer = _stage_diff(store, staging, container)
            empty = layer.info.diff_id == EMPTY_TAR_DIGEST
            history = list(base.get("history") or [])
            entry: dict[str, Any] = {"created": created}
            if author:
                entry["author"] = author
            entry["created_by"] = " ".join(container.config.get("Cmd") or [])
            if message:
                entry["comment"] = message
            if empty:
                entry["empty_layer"] = True
            history.append(entry)
            diff_ids = list((base.get("rootfs") or {}).get("diff_ids") or [])
            if not empty:
                diff_ids.append(layer.info.diff_id)
            image: dict[str, Any] = {
                "architecture": base.get("architecture", "amd64"),
                "config": new_config,
                "container": container.id,
                "container_config": container_cfg,
                "created": created,
                "history": history,
                "os": base.get("os", "linux"),
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
            if author:
                image["author"] = author
            if message:
                image["comment"] = message
            if base.get("variant"):
                image["variant"] = base["variant"]
            layers = _base_layers(store, container.image)
            if not empty:
                layers.append(layer)
            pending = PendingImage(
                image_config_bytes(image),
                layers,
                [tag] if tag else [],
                parent=container.image,
                what="commit",
            )
            commit_images(store, staging, [pending])
    finally:
        if paused_here:
            with contextlib.suppress(DockyardError):
                runc.resume(container.id)
    return pending.id


def _base_layers(store: Store, image_id: str) -> list[StagedLayer]:
    """The parent's layers as already-present staged layers (nothing to move)."""
    image = store.image(image_id)
    if image is None:
        raise DockyardError(f"image {image_id} of the container is gone")
    out = []
    for diff_id in image.diff_ids:
        layer = store.layer(diff_id)
        if layer is None:
            raise DockyardError(f"layer {diff_id} is missing from the store")
        info = LayerInfo(Digest(diff_id), layer.tar_size, layer.content_size, 0, "", None, 0)
        out.append(StagedLayer(None, info))
    return out

