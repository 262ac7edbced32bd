"""``commit``: a container's writable layer becomes a new image on top of its image."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from typing import Any, BinaryIO

from dockyard.errors import DockyardError
from dockyard.oci.config import container_config, image_config_bytes
from dockyard.oci.timefmt import format_ns, now_ns
from dockyard.ops import container_records as records
from dockyard.ops.changes import apply_changes
from dockyard.ops.container_records import Container
from dockyard.ops.containers import _runc, driver_for, reconcile
from dockyard.ops.ingest import PendingImage, StagedLayer, commit_images, stage_layer
from dockyard.reference import Reference
from dockyard.store.store import Store

# sha256 of an empty tar (two zero blocks): Docker's "empty layer"
EMPTY_TAR_DIGEST = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def _stage_diff(store: Store, staging: Any, container: Container) -> StagedLayer:
    """Stream the driver's diff through a pipe into staging, hashing on the way."""
    driver = driver_for(store)
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=1 << 20) as out:
                driver.diff(container.id, out)
        except BaseException as e:  # reported by the consumer
            errors.append(e)

    thread = threading.Thread(target=produce, name="diff", daemon=True)
    thread.start()
    try:
        with os.fdopen(read_fd, "rb", buffering=1 << 20) as src:
            staged = stage_layer(store, staging, src, f"container {container.short_id} diff")
    finally:
        thread.join()
    if errors:
        raise errors[0]
    return staged


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
    from dockyard.archive.layer import LayerInfo
    from dockyard.digest import Digest

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


__all__ = ["BinaryIO", "commit", "records"]
