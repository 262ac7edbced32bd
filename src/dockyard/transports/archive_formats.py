"""Find the images in a read archive: docker-archive ``manifest.json`` or an OCI ``index.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dockyard import mediatypes
from dockyard.digest import Digest
from dockyard.errors import ArchiveError, DigestMismatch, DockyardError
from dockyard.oci.config import host_architecture
from dockyard.ops.ingest import PendingImage
from dockyard.reference import Reference, parse_normalized
from dockyard.store.store import Store
from dockyard.transports.tarball import ArchiveContents


def _json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as e:
        raise ArchiveError(f"archive: {what} is not valid JSON: {e}") from e


def _tag(name: str, what: str) -> Reference:
    try:
        ref = parse_normalized(name)
    except DockyardError as e:
        raise ArchiveError(f"archive: {what}: invalid reference {name!r}: {e}") from e
    if ref.tag is None:
        raise ArchiveError(f"archive: {what}: {name!r} has no tag")
    return Reference(ref.domain, ref.path, ref.tag)


def images_in(contents: ArchiveContents, store: Store, staging: Path) -> list[PendingImage]:
    if contents.has("manifest.json"):
        return from_manifest_json(contents, store, staging)
    if contents.has("index.json"):
        return from_oci_index(contents, store, staging)
    if contents.has("repositories"):
        raise ArchiveError(
            "archive: a pre-1.10 Docker archive (repositories without manifest.json) "
            "is not supported"
        )
    raise ArchiveError("archive: neither manifest.json nor index.json found: not an image archive")


def from_manifest_json(
    contents: ArchiveContents, store: Store, staging: Path
) -> list[PendingImage]:
    items = _json(contents.read_small("manifest.json"), "manifest.json")
    if not isinstance(items, list):
        raise ArchiveError("archive: manifest.json is not a list")
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("Config"), str):
            raise ArchiveError(f"archive: manifest.json entry {n} has no Config")
        what = f"image {n + 1} ({item['Config']})"
        config_raw = contents.read_small(item["Config"])
        layers_paths = item.get("Layers") or []
        if not isinstance(layers_paths, list):
            raise ArchiveError(f"archive: {what}: Layers is not a list")
        layers = [contents.layer(store, staging, str(p)) for p in layers_paths]
        tags = [_tag(str(t), what) for t in (item.get("RepoTags") or [])]
        parent = item.get("Parent") or ""
        out.append(PendingImage(config_raw, layers, tags, str(parent), what))
    return out


def _blob(contents: ArchiveContents, desc: dict[str, Any], what: str) -> bytes:
    digest = _desc_digest(desc, what)
    raw = contents.read_small(f"blobs/{digest.algorithm}/{digest.hex}")
    if Digest.of_bytes(raw) != digest:
        raise DigestMismatch(f"archive: {what} {digest}: content does not match its digest")
    size = desc.get("size")
    if isinstance(size, int) and size != len(raw):
        raise DigestMismatch(f"archive: {what} {digest}: size {len(raw)} is not {size}")
    return raw


def _desc_digest(desc: dict[str, Any], what: str) -> Digest:
    try:
        return Digest(str(desc.get("digest")))
    except DockyardError as e:
        raise ArchiveError(f"archive: {what}: {e}") from e


def _platform_ok(desc: dict[str, Any]) -> bool:
    platform = desc.get("platform")
    if not isinstance(platform, dict):
        return True
    arch = platform.get("architecture", host_architecture())
    return bool(platform.get("os", "linux") == "linux" and arch == host_architecture())


def _ref_from_annotations(annotations: dict[str, str]) -> Reference | None:
    name = annotations.get("io.containerd.image.name")
    if not name:
        ref_name = annotations.get("org.opencontainers.image.ref.name", "")
        # A bare tag ("latest", "v0.2") names no repository; a full name does.
        if "/" in ref_name or ":" in ref_name:
            name = ref_name
    if not name:
        return None
    try:
        return _tag(name, "index.json")
    except ArchiveError:
        return None


def from_oci_index(contents: ArchiveContents, store: Store, staging: Path) -> list[PendingImage]:
    index = _json(contents.read_small("index.json"), "index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise ArchiveError("archive: index.json has no manifests")
    by_manifest: dict[str, PendingImage] = {}
    order: list[str] = []

    def visit(desc: dict[str, Any], tag: Reference | None, depth: int) -> None:
        media = desc.get("mediaType", "")
        what = f"manifest {desc.get('digest')}"
        if media in mediatypes.INDEXES:
            if depth > 4:
                raise ArchiveError("archive: index nesting too deep")
            nested = _json(_blob(contents, desc, "index"), what)
            chosen = [m for m in nested.get("manifests") or [] if _platform_ok(m)]
            if not chosen:
                raise ArchiveError(
                    f"archive: {what}: no image for platform linux/{host_architecture()}"
                )
            visit(chosen[0], tag, depth + 1)
            return
        if media and media not in mediatypes.MANIFESTS:
            return  # artifacts and other media types are not images
        digest = _desc_digest(desc, what)
        if digest in by_manifest:
            if tag is not None:
                by_manifest[digest].tags.append(tag)
            return
        manifest = _json(_blob(contents, desc, "manifest"), what)
        config_desc = manifest.get("config")
        if not isinstance(config_desc, dict):
            raise ArchiveError(f"archive: {what} has no config")
        config_raw = _blob(contents, config_desc, "config")
        layers = []
        for layer_desc in manifest.get("layers") or []:
            ldigest = _desc_digest(layer_desc, what)
            name = f"blobs/{ldigest.algorithm}/{ldigest.hex}"
            staged = contents.layer(store, staging, name)
            member = contents.get(name)
            if member.blob_digest() != ldigest:
                raise DigestMismatch(
                    f"archive: layer {ldigest}: content does not match its digest "
                    f"(content is {member.blob_digest()})"
                )
            size = layer_desc.get("size")
            if isinstance(size, int) and size != member.size:
                raise DigestMismatch(f"archive: layer {ldigest}: size {member.size} is not {size}")
            layers.append(staged)
        image = PendingImage(config_raw, layers, [tag] if tag else [], "", what)
        by_manifest[digest] = image
        order.append(digest)

    for desc in index["manifests"]:
        if not isinstance(desc, dict):
            raise ArchiveError("archive: index.json entry is not an object")
        annotations = desc.get("annotations") or {}
        visit(desc, _ref_from_annotations(annotations), 0)
    return [by_manifest[d] for d in order]
