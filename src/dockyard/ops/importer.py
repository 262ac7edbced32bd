"""``import``: a rootfs tarball becomes a one-layer image, as ``docker import`` makes it."""

from __future__ import annotations

from typing import BinaryIO

from dockyard.oci.config import (
    container_config,
    docker_image_config,
    host_architecture,
    image_config_bytes,
)
from dockyard.oci.timefmt import format_ns, now_ns
from dockyard.ops.changes import apply_changes
from dockyard.ops.ingest import PendingImage, commit_images, stage_layer
from dockyard.reference import Reference
from dockyard.store.store import Store


def import_image(
    store: Store,
    src: BinaryIO,
    *,
    source: str = "-",
    tag: Reference | None = None,
    changes: list[str] | None = None,
    message: str = "",
    architecture: str | None = None,
    os_name: str = "linux",
) -> str:
    """Import a (plain, gzip, zstd or xz) rootfs tar; returns the new image ID."""
    config = container_config(apply_changes(container_config(None), changes or []))
    comment = message or f"Imported from {source}"
    with store.ingest_lock(), store.staging() as staging:
        layer = stage_layer(store, staging, src, "import")
        created = format_ns(now_ns())
        image = docker_image_config(
            created=created,
            diff_ids=[layer.info.diff_id],
            config=config,
            history=[{"created": created, "comment": comment}],
            comment=comment,
            architecture=architecture or host_architecture(),
            os_name=os_name,
        )
        pending = PendingImage(
            image_config_bytes(image), [layer], [tag] if tag else [], what="import"
        )
        commit_images(store, staging, [pending])
    return pending.id
