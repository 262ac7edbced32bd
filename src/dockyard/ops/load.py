"""``load``: docker-archive (new and legacy), OCI archives, compressed or not."""

from __future__ import annotations

from typing import BinaryIO

from dockyard.ops.ingest import commit_images
from dockyard.store.store import Store
from dockyard.transports.archive_formats import images_in
from dockyard.transports.tarball import read_archive


def load(store: Store, src: BinaryIO) -> list[str]:
    """Load every image in the archive; returns Docker's report lines."""
    lines: list[str] = []
    with store.ingest_lock(), store.staging() as staging:
        contents = read_archive(src, store, staging)
        images = images_in(contents, store, staging)
        for image in images:
            for ref in image.tags:
                old = store.lookup_ref(ref)
                if old is not None and old != image.id:
                    lines.append(
                        f"The image {ref.familiar()} already exists, renaming the old one "
                        f"with ID {old} to empty string"
                    )
        commit_images(store, staging, images)
    for image in images:
        if image.tags:
            lines.extend(f"Loaded image: {ref.familiar()}" for ref in image.tags)
        else:
            lines.append(f"Loaded image ID: {image.id}")
    return lines
