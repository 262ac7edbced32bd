"""``save``: write images as Docker 25+ does — an OCI image layout plus the legacy
``manifest.json`` and ``repositories`` — so new and old ``docker load`` read it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import BinaryIO

from dockyard import mediatypes
from dockyard.archive.tarwrite import TarWriter
from dockyard.digest import Digest
from dockyard.errors import DockyardError, ImageNotFound, NotFound
from dockyard.oci.config import dumps
from dockyard.ops.lookup import resolve_image
from dockyard.reference import Reference, is_full_id, parse_normalized
from dockyard.store import records
from dockyard.store.store import Store


@dataclass
class _Selected:
    image_id: str
    refs: list[Reference] = field(default_factory=list)


class ReferenceDoesNotExist(NotFound):
    def __init__(self) -> None:
        super().__init__("reference does not exist")


def select(store: Store, names: list[str]) -> list[_Selected]:
    """Docker's rules: ``name:tag`` saves that tag, a bare name saves every tag of
    the repository, an ID saves the image without tags."""
    chosen: dict[str, _Selected] = {}

    def add(image_id: str, ref: Reference | None) -> None:
        entry = chosen.setdefault(image_id, _Selected(image_id))
        if ref is not None and ref not in entry.refs:
            entry.refs.append(ref)

    for name in names:
        if is_full_id(name):
            add(resolve_image(store, name), None)
            continue
        try:
            ref = parse_normalized(name)
        except DockyardError:
            if not name.startswith("sha256:"):
                raise
            add(resolve_image(store, name), None)
            continue
        if ref.tag is None and ref.digest is None:
            rows = store.conn.execute(
                "SELECT tag, image FROM tags WHERE repo = ? ORDER BY tag", (ref.name,)
            ).fetchall()
            for tag, image_id in rows:
                add(image_id, ref.with_tag(tag))
            if not rows:  # a bare name that no repository has: an ID prefix
                add(resolve_image(store, name), None)
            continue
        image_id = store.lookup_ref(ref)
        if image_id is None:
            raise ReferenceDoesNotExist()
        add(image_id, ref if ref.tag is not None else None)
    return list(chosen.values())


def save(store: Store, names: list[str], out: BinaryIO, writeback: bool = False) -> None:
    selected = select(store, names)
    if not selected:
        raise ImageNotFound(" ".join(names))
    conn = store.conn
    images = {r.id: r for r in records.load_images(conn, [s.image_id for s in selected], True)}
    blobs: dict[str, float] = {}  # digest -> mtime
    manifest_json = []
    index_manifests = []
    repositories: dict[str, dict[str, str]] = {}
    for sel in selected:
        image = images[sel.image_id]
        layer_blobs = []
        for diff_id in image.diff_ids:
            layer = store.layer(diff_id)
            if layer is None:
                raise DockyardError(f"store is missing layer {diff_id} of image {image.id}")
            layer_blobs.append(layer.blob)
            blobs.setdefault(layer.blob, image.created_ts)
        blobs.setdefault(image.id, image.created_ts)
        blobs.setdefault(image.manifest, image.created_ts)
        manifest_size = store.blobs.size(image.manifest)
        item: dict[str, object] = {
            "Config": _path(image.id),
            "RepoTags": [r.familiar() for r in sel.refs] or None,
            "Layers": [_path(b) for b in layer_blobs],
        }
        parent = image.parent
        if parent and any(s.image_id == parent for s in selected):
            item["Parent"] = parent
        manifest_json.append(item)
        desc = {
            "mediaType": mediatypes.OCI_MANIFEST,
            "digest": image.manifest,
            "size": manifest_size,
        }
        if not sel.refs:
            index_manifests.append(desc)
        for ref in sel.refs:
            assert ref.tag is not None
            index_manifests.append(
                {
                    **desc,
                    "annotations": {
                        "io.containerd.image.name": str(ref),
                        "org.opencontainers.image.ref.name": ref.tag,
                    },
                }
            )
            top = Digest(layer_blobs[-1]).hex if layer_blobs else Digest(image.id).hex
            repositories.setdefault(ref.familiar_name, {})[ref.tag] = top
    index = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": index_manifests,
    }
    tar = TarWriter(out, writeback=writeback)
    tar.add_dir("blobs")
    tar.add_dir("blobs/sha256")
    for digest in sorted(blobs, key=lambda d: Digest(d).hex):
        tar.add_file(_path(digest), str(store.blobs.path(digest)), blobs[digest])
    tar.add_bytes("index.json", dumps(index) + b"\n")
    tar.add_bytes("manifest.json", dumps(manifest_json) + b"\n")
    tar.add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    if repositories:
        tar.add_bytes(
            "repositories", json.dumps(repositories, separators=(",", ":")).encode() + b"\n"
        )
    tar.close()


def _path(digest: str) -> str:
    d = Digest(digest)
    return f"blobs/{d.algorithm}/{d.hex}"
