"""``copy``: one image from any transport to any other, as ``skopeo copy`` does.

A copy reads the source into a checked image — the exact config bytes and one
uncompressed, verified tar per layer — and hands it to the destination:

* sources: the local store (its blobs are used in place), a registry (layers
  download in parallel, resumably, and are unpacked into the store's staging
  dir), a docker-archive or oci-archive (read as ``load`` reads them), an OCI
  layout directory (each blob decompressed and hashed into staging);
* destinations: the local store (``commit_images``, as pull and load), a
  registry (``Pusher``: compressed with gzip or zstd, skipping and mounting what
  the registry has), a docker-archive (what ``save`` writes), an oci-archive
  and an OCI layout directory (uncompressed layers, as dockyard's archives).

The config bytes never change, so the image ID survives every copy. Staging
lives under the store root (``tmp/op-*``), so a killed copy leaves garbage that
``system check --repair`` removes. Every layer is hashed again while it is
written to an archive or a layout; archives are written to a temp file renamed
into place, a new layout directory is built beside its final name and renamed,
and an existing layout gets its blobs first and its ``index.json`` last.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tarfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dockyard import mediatypes
from dockyard.archive.layer import LayerInfo
from dockyard.archive.tarwrite import TarWriter
from dockyard.digest import CHUNK, Digest, HashingReader
from dockyard.distribution.client import MAX_CONFIG, MAX_MANIFEST, Registry, open_endpoint
from dockyard.distribution.credentials import AuthEntry, CredentialStore
from dockyard.distribution.endpoints import Endpoint, RegistryConfig, api_host
from dockyard.distribution.errors import NoBasicAuthCredentials
from dockyard.distribution.progress import ignore
from dockyard.distribution.pull import (
    Descriptor,
    Platform,
    parse_platform,
    platform_matches,
    pull_blob_bytes,
    resolve,
)
from dockyard.distribution.push import BlobSource, LayerJob, PushedBlob, Pusher, image_manifest
from dockyard.distribution.push import prune_stale as prune_stale_files
from dockyard.errors import ArchiveError, DigestMismatch, DockyardError, InvalidArgument, NotFound
from dockyard.oci.config import dumps
from dockyard.oci.timefmt import parse_ns
from dockyard.ops.ingest import (
    PendingImage,
    StagedLayer,
    check_image,
    commit_images,
    oci_manifest,
    parse_config,
    stage_layer,
)
from dockyard.ops.lookup import resolve_image
from dockyard.ops.pull import (
    MAX_CONCURRENT_DOWNLOADS,
    ROOTFS_MISMATCH,
    existing_layer,
    fetch_layer,
)
from dockyard.ops.push import MAX_CONCURRENT_UPLOADS, layer_sources, record_sources
from dockyard.reference import Reference
from dockyard.store.blobs import fsync_dir, write_atomic
from dockyard.store.store import LayerRecord, Store
from dockyard.transports.archive_formats import images_in
from dockyard.transports.names import (
    DockerArchiveName,
    ImageName,
    OciArchiveName,
    OciLayoutName,
    RegistryName,
    StoreName,
)
from dockyard.transports.tarball import ArchiveContents, read_archive

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
MAX_INDEX = 4 << 20

Say = Callable[[str], None]


def quiet(line: str) -> None:
    """A ``say`` that prints nothing."""


@dataclass(frozen=True)
class Side:
    """How to reach one side's registry: credentials and TLS (None: the registry config's
    rule, i.e. https, with plain http allowed for insecure and loopback hosts)."""

    creds: AuthEntry | None = None
    tls_verify: bool | None = None


@dataclass(frozen=True)
class CopyOptions:
    src: Side = field(default_factory=Side)
    dest: Side = field(default_factory=Side)
    compression: str = "gzip"  # layers pushed to a registry
    platform: str | None = None  # os/arch[/variant] chosen from an index (default: this host)


@dataclass(frozen=True)
class CopyResult:
    image_id: str
    manifest_digest: str  # of the manifest the destination holds


class CopyError(DockyardError):
    """A failed copy; ``stage`` is "source" or "destination"."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass
class _Source:
    """A checked image: its layers are staged files, or blobs of the store (path None)."""

    image: PendingImage
    name: Reference | None = None  # the source's name:tag, the default RepoTag of an archive
    in_store: bool = False  # the image is the store's own
    blob_sources: dict[str, list[BlobSource]] = field(default_factory=dict)  # diff_id -> blobs


def copy(
    store: Store,
    src: ImageName,
    dst: ImageName,
    options: CopyOptions | None = None,
    say: Say = quiet,
) -> CopyResult:
    """Copy the image ``src`` names to ``dst``; ``store`` is the local store (a source
    or destination itself, and the place of staging and resumable transfers)."""
    options = options or CopyOptions()
    if options.compression not in ("gzip", "zstd"):
        raise InvalidArgument(f"unknown compression format {options.compression!r}")
    with store.ingest_lock(), store.staging() as staging:
        try:
            source = _read(store, staging, src, options)
            check_image(source.image)
        except NoBasicAuthCredentials as e:
            raise CopyError("source", e.short) from e
        except DockyardError as e:
            raise CopyError("source", e.message) from e
        except OSError as e:
            raise CopyError("source", _os_error(e)) from e
        try:
            return _write(store, staging, source, dst, options, say)
        except NoBasicAuthCredentials as e:
            raise CopyError("destination", e.short) from e
        except DockyardError as e:
            raise CopyError("destination", e.message) from e
        except OSError as e:
            raise CopyError("destination", _os_error(e)) from e


def _os_error(e: OSError) -> str:
    if e.filename is not None and e.strerror:
        return f"open {e.filename}: {e.strerror.lower()}"
    return str(e)


# -- sources ------------------------------------------------------------------------------


def _read(store: Store, staging: Path, src: ImageName, options: CopyOptions) -> _Source:
    if isinstance(src, StoreName):
        return _from_store(store, src)
    if isinstance(src, RegistryName):
        return _from_registry(store, staging, src, options)
    if isinstance(src, DockerArchiveName):
        return _from_docker_archive(store, staging, src)
    if isinstance(src, OciArchiveName):
        with open(src.path, "rb") as f:
            contents = read_archive(f, store, staging)
        blobs: _Blobs = _ArchiveBlobs(contents, store, staging)
        return _Source(_from_layout(blobs, src.ref_name, parse_platform(options.platform)))
    assert isinstance(src, OciLayoutName)
    blobs = _DirBlobs(Path(src.path), store, staging)
    return _Source(_from_layout(blobs, src.ref_name, parse_platform(options.platform)))


def _from_store(store: Store, src: StoreName) -> _Source:
    image_id = resolve_image(store, src.name)
    record = store.image(image_id, with_layers=True)
    if record is None:  # removed since
        raise NotFound(f"No such image: {src.name}")
    config_raw = store.blobs.read(image_id)
    if Digest.of_bytes(config_raw) != image_id:
        raise DigestMismatch(f"store: config of image {image_id} does not match its digest")
    layers = []
    for diff_id in record.diff_ids:
        layer = store.layer(diff_id)
        if layer is None:
            raise DockyardError(f"store is missing layer {diff_id} of image {image_id}")
        info = LayerInfo(Digest(diff_id), layer.tar_size, layer.content_size, 0, "", None, 0)
        layers.append(StagedLayer(None, info))
    ref = src.ref
    named = ref if ref is not None and ref.tag and store.lookup_ref(ref) == image_id else None
    image = PendingImage(config_raw, layers, parent=record.parent, what=f"image {image_id}")
    return _Source(image, named, in_store=True)


def _endpoints(config: RegistryConfig, domain: str, tls_verify: bool | None) -> list[Endpoint]:
    if tls_verify is None:
        return config.endpoints(domain)
    host = api_host(domain)
    if tls_verify:
        return [Endpoint(host, "https", True)]
    return [Endpoint(host, "https", False), Endpoint(host, "http", False)]


def _connect(store: Store, ref: Reference, side: Side) -> Registry:
    """The first endpoint of the reference's registry that answers ``GET /v2/``."""
    config = RegistryConfig.load(store.root)
    creds = side.creds if side.creds is not None else CredentialStore().get(ref.domain)
    last: DockyardError | None = None
    for endpoint in _endpoints(config, ref.domain, side.tls_verify):
        try:
            return open_endpoint(endpoint, config, creds)
        except DockyardError as e:
            last = e
    assert last is not None
    raise last


def _from_registry(
    store: Store, staging: Path, src: RegistryName, options: CopyOptions
) -> _Source:
    ref = src.ref
    repo = ref.path
    want = parse_platform(options.platform)
    with _connect(store, ref, options.src) as registry:
        resolved = resolve(registry, repo, ref.digest or ref.tag or "latest", want)
        config_raw = pull_blob_bytes(registry, repo, resolved.config, MAX_CONFIG)
        config = parse_config(config_raw, f"image config {resolved.config.digest}")
        diff_ids = [str(d) for d in config["rootfs"]["diff_ids"]]
        if len(diff_ids) != len(resolved.layers):
            raise DigestMismatch(ROOTFS_MISMATCH)
        partial = store.root / "tmp" / "pull"
        prune_stale_files(partial)
        staged: dict[str, StagedLayer] = {}
        todo: dict[str, tuple[Descriptor, str]] = {}
        for desc, diff_id in zip(resolved.layers, diff_ids, strict=True):
            found = existing_layer(store, diff_id)
            if found is not None:
                staged[desc.digest] = found
            else:
                todo.setdefault(desc.digest, (desc, diff_id))
        if todo:
            with ThreadPoolExecutor(MAX_CONCURRENT_DOWNLOADS, thread_name_prefix="copy") as pool:
                futures: dict[str, Future[StagedLayer]] = {
                    digest: pool.submit(
                        fetch_layer, store, registry, repo, desc, diff_id, staging, partial, ignore
                    )
                    for digest, (desc, diff_id) in todo.items()
                }
                staged.update(_results(futures))
        host = registry.host
    layers = [staged[desc.digest] for desc in resolved.layers]
    sources = {
        diff_id: [BlobSource(desc.digest, desc.media_type, desc.size, host, repo)]
        for desc, diff_id in zip(resolved.layers, diff_ids, strict=True)
    }
    image = PendingImage(
        config_raw,
        layers,
        what=f"image {ref.familiar()}",
        digests=[ref.name_only().with_digest(resolved.digest)],
    )
    return _Source(image, ref if ref.tag is not None else None, blob_sources=sources)


def _results(futures: dict[str, Future[Any]]) -> dict[str, Any]:
    """Every future's result; the first error is raised once all have finished."""
    out: dict[str, Any] = {}
    first: BaseException | None = None
    for key, future in futures.items():
        try:
            out[key] = future.result()
        except BaseException as e:  # keep the others going; report the first
            if first is None:
                first = e
    if first is not None:
        raise first
    return out


def _from_docker_archive(store: Store, staging: Path, src: DockerArchiveName) -> _Source:
    with open(src.path, "rb") as f:
        contents = read_archive(f, store, staging)
    images = images_in(contents, store, staging)
    if src.ref is not None:
        for image in images:
            if src.ref in image.tags:
                return _Source(image, src.ref)
        raise NotFound(f'Tag "{src.ref}" not found')
    if src.index is not None:
        if src.index >= len(images):
            raise NotFound(
                f"Invalid source index @{src.index}, only {len(images)} manifest items available"
            )
        image = images[src.index]
    elif len(images) != 1:
        raise InvalidArgument(
            f"archive holds {len(images)} images: choose one with :NAME:TAG or :@INDEX"
        )
    else:
        image = images[0]
    return _Source(image, image.tags[0] if len(image.tags) == 1 else None)


class _Blobs(Protocol):
    """The blobs of an OCI image layout, each checked against its descriptor."""

    def index(self) -> bytes: ...

    def small(self, desc: Descriptor, limit: int) -> bytes: ...

    def layer(self, desc: Descriptor) -> StagedLayer: ...


def _blob_name(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


def _check_bytes(raw: bytes, desc: Descriptor) -> bytes:
    if len(raw) != desc.size:
        raise DigestMismatch(f"blob {desc.digest}: size {len(raw)} is not {desc.size}")
    if Digest.of_bytes(raw) != desc.digest:
        raise DigestMismatch(f"blob {desc.digest}: content does not match its digest")
    return raw


class _ArchiveBlobs:
    """An oci-archive, read (and its large members staged) by ``read_archive``."""

    def __init__(self, contents: ArchiveContents, store: Store, staging: Path) -> None:
        self.contents = contents
        self.store = store
        self.staging = staging

    def index(self) -> bytes:
        return self.contents.read_small("index.json")

    def small(self, desc: Descriptor, limit: int) -> bytes:
        return _check_bytes(self.contents.read_small(_blob_name(desc.digest)), desc)

    def layer(self, desc: Descriptor) -> StagedLayer:
        name = _blob_name(desc.digest)
        staged = self.contents.layer(self.store, self.staging, name)
        member = self.contents.get(name)
        if member.blob_digest() != desc.digest or member.size != desc.size:
            raise DigestMismatch(
                f"layer {desc.digest}: content does not match its digest "
                f"(content is {member.blob_digest()}, {member.size} bytes)"
            )
        return staged


class _DirBlobs:
    """An OCI layout directory; a layer is decompressed and hashed into staging."""

    def __init__(self, root: Path, store: Store, staging: Path) -> None:
        self.root = root
        self.store = store
        self.staging = staging

    def index(self) -> bytes:
        with open(self.root / "index.json", "rb") as f:
            raw = f.read(MAX_INDEX + 1)
        if len(raw) > MAX_INDEX:
            raise ArchiveError(f"{self.root}/index.json is too large")
        return raw

    def small(self, desc: Descriptor, limit: int) -> bytes:
        if desc.size > limit:
            raise ArchiveError(f"blob {desc.digest} is too big ({desc.size} bytes)")
        with open(self.root / _blob_name(desc.digest), "rb") as f:
            return _check_bytes(f.read(limit + 1), desc)

    def layer(self, desc: Descriptor) -> StagedLayer:
        with open(self.root / _blob_name(desc.digest), "rb") as f:
            reader = HashingReader(f)
            staged = stage_layer(self.store, self.staging, reader, f"layer {desc.digest}")  # type: ignore[arg-type]
            reader.drain()
        if reader.size != desc.size or reader.digest() != desc.digest:
            raise DigestMismatch(
                f"layer {desc.digest}: content does not match its digest "
                f"(content is {reader.digest()}, {reader.size} bytes)"
            )
        return staged


def _json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ArchiveError(f"{what} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ArchiveError(f"{what} is not a JSON object")
    return data


def _from_layout(blobs: _Blobs, ref_name: str | None, want: Platform) -> PendingImage:
    """skopeo's choice in an OCI layout: the entry whose ref.name is ``ref_name``, or the
    only one; an index in between is resolved by platform."""
    index = _json(blobs.index(), "index.json")
    entries = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
    if ref_name:
        named = [d for d in entries if (d.get("annotations") or {}).get(REF_NAME) == ref_name]
        if not named:
            raise NotFound(f'no descriptor found for reference "{ref_name}"')
        entry = named[0]
    elif len(entries) == 1:
        entry = entries[0]
    elif not entries:
        raise NotFound("no image in the layout's index.json")
    else:
        raise InvalidArgument("more than one image in oci, choose an image")
    desc = Descriptor.parse(entry, "index.json entry")
    for _ in range(4):
        if desc.media_type not in mediatypes.INDEXES:
            break
        nested = _json(blobs.small(desc, MAX_MANIFEST), f"index {desc.digest}")
        chosen = [
            m
            for m in nested.get("manifests") or []
            if isinstance(m, dict) and platform_matches(want, m.get("platform") or _os_of(want))
        ]
        if not chosen:
            raise NotFound(
                f"no image found in image index for architecture {want.architecture}, "
                f'variant "{want.variant}", OS {want.os}'
            )
        desc = Descriptor.parse(chosen[0], "index entry")
    if desc.media_type and desc.media_type not in mediatypes.MANIFESTS:
        raise ArchiveError(f"unsupported manifest media type {desc.media_type!r}")
    manifest = _json(blobs.small(desc, MAX_MANIFEST), f"manifest {desc.digest}")
    config_desc = Descriptor.parse(manifest.get("config"), "config")
    layer_descs = manifest.get("layers")
    if not isinstance(layer_descs, list):
        raise ArchiveError(f"manifest {desc.digest} has no layers")
    config_raw = blobs.small(config_desc, MAX_CONFIG)
    layers = [blobs.layer(Descriptor.parse(d, f"layer {i + 1}")) for i, d in enumerate(layer_descs)]
    return PendingImage(config_raw, layers, what=f"image {desc.digest}")


def _os_of(want: Platform) -> dict[str, str]:
    """An index entry without a platform matches any (as in ``load``)."""
    return {"os": want.os, "architecture": want.architecture, "variant": want.variant}


# -- destinations -------------------------------------------------------------------------


def _write(
    store: Store,
    staging: Path,
    source: _Source,
    dst: ImageName,
    options: CopyOptions,
    say: Say,
) -> CopyResult:
    if isinstance(dst, StoreName):
        return _to_store(store, staging, source, dst, say)
    if isinstance(dst, RegistryName):
        return _to_registry(store, source, dst, options, say)
    if options.compression != "gzip":
        raise InvalidArgument(
            f"{options.compression} compression is for registries: "
            "dockyard writes archives and layouts with uncompressed layers"
        )
    out = _Output.of(store, source.image)
    if isinstance(dst, DockerArchiveName):
        ref = dst.ref or source.name
        _write_archive(Path(dst.path), lambda tar: _docker_archive_tar(tar, out, ref), say, out)
    elif isinstance(dst, OciArchiveName):
        entry = out.descriptor(dst.ref_name)
        _write_archive(Path(dst.path), lambda tar: _layout_tar(tar, out, [entry]), say, out)
    else:
        assert isinstance(dst, OciLayoutName)
        _write_layout_dir(Path(dst.path), out, dst.ref_name, say)
    return CopyResult(source.image.id, out.manifest_digest)


def _to_store(
    store: Store, staging: Path, source: _Source, dst: StoreName, say: Say
) -> CopyResult:
    assert dst.ref is not None and dst.ref.tag is not None
    image = source.image
    for layer in image.layers:
        say(f"Copying blob {layer.info.diff_id}")
    say(f"Copying config {image.id}")
    if source.in_store:
        with store.transaction() as conn:
            store.set_tag(conn, dst.ref, image.id)
    else:
        pending = PendingImage(
            image.config_raw,
            image.layers,
            tags=[dst.ref],
            parent=image.parent,
            what=image.what,
            digests=image.digests,
        )
        commit_images(store, staging, [pending])
        record_sources(
            store,
            [
                (diff_id, b.digest, b.media_type, b.size, b.registry, b.repo)
                for diff_id, blobs in source.blob_sources.items()
                for b in blobs
            ],
        )
    say("Writing manifest to image destination")
    record = store.image(image.id, with_layers=False)
    assert record is not None
    return CopyResult(image.id, record.manifest)


def _layer_file(store: Store, layer: StagedLayer) -> Path:
    """The uncompressed tar of a source layer: staged, or the store's blob."""
    if layer.path is not None:
        return layer.path
    record = store.layer(layer.info.diff_id)
    return store.blobs.path(record.blob if record is not None else layer.info.diff_id)


def _to_registry(
    store: Store, source: _Source, dst: RegistryName, options: CopyOptions, say: Say
) -> CopyResult:
    ref = dst.ref
    assert ref.tag is not None
    image = source.image
    kind = options.compression
    workdir = store.root / "tmp" / "push"
    prune_stale_files(workdir / "blobs", workdir / "uploads")
    jobs: dict[str, LayerJob] = {}
    with _connect(store, ref, options.dest) as registry:
        known = layer_sources(store, [x.info.diff_id for x in image.layers], registry.host)
        for layer in image.layers:
            diff_id = layer.info.diff_id
            if diff_id not in jobs:
                sources = source.blob_sources.get(diff_id, []) + known.get(diff_id, [])
                path = _layer_file(store, layer)
                jobs[diff_id] = LayerJob(diff_id, path, layer.info.tar_size, sources)
        pusher = Pusher(registry, ref.path, workdir, ignore)
        with ThreadPoolExecutor(MAX_CONCURRENT_UPLOADS, thread_name_prefix="copy") as pool:
            futures = {d: pool.submit(pusher.push_layer, job, kind) for d, job in jobs.items()}
            for future in futures.values():
                future.add_done_callback(lambda f: _said_blob(f, say))
            try:
                pushed: dict[str, PushedBlob] = _results(futures)
            finally:
                done = [f.result() for f in futures.values() if f.done() and not f.exception()]
                record_sources(
                    store,
                    [(b.diff_id, b.digest, b.media_type, b.size, "", "") for b in done
                     if b.compressed_here],
                )
        say(f"Copying config {image.id}")
        pusher.push_config(image.config_raw)
        layers = [pushed[x.info.diff_id] for x in image.layers]
        raw, media_type = image_manifest(image.config_raw, layers, kind)
        say("Writing manifest to image destination")
        digest = pusher.push_manifest(ref.tag, raw, media_type)
        host, repo = registry.host, pusher.repo
    record_sources(store, [(b.diff_id, b.digest, b.media_type, b.size, host, repo) for b in layers])
    if source.in_store:
        with store.transaction() as conn:
            if conn.execute("SELECT 1 FROM images WHERE id = ?", (image.id,)).fetchone():
                store.add_repo_digest(conn, ref.name_only().with_digest(digest), image.id)
    return CopyResult(image.id, digest)


def _said_blob(future: Future[PushedBlob], say: Say) -> None:
    if not future.cancelled() and future.exception() is None:
        blob = future.result()
        suffix = {"exists": " skipped: already exists", "mounted": " mounted"}.get(blob.how, "")
        say(f"Copying blob {blob.digest}{suffix}")


@dataclass
class _Output:
    """What a layout or archive holds for one image: config, manifest, layer tars."""

    config_raw: bytes
    image_id: Digest
    manifest_raw: bytes
    manifest_digest: Digest
    layers: dict[str, tuple[Path, int]]  # diff_id -> (uncompressed tar, size), in order
    mtime: float

    @classmethod
    def of(cls, store: Store, image: PendingImage) -> _Output:
        records = [
            LayerRecord(x.info.diff_id, x.info.diff_id, x.info.content_size, x.info.tar_size)
            for x in image.layers
        ]
        # the manifest the store keeps for this image: same bytes, same digest
        manifest = oci_manifest(image.id, len(image.config_raw), records)
        config = json.loads(image.config_raw)
        layers = {
            str(x.info.diff_id): (_layer_file(store, x), x.info.tar_size) for x in image.layers
        }
        return cls(
            image.config_raw,
            Digest(image.id),
            manifest,
            Digest.of_bytes(manifest),
            layers,
            parse_ns(str(config.get("created") or "")) / 1e9,
        )

    def descriptor(self, ref_name: str | None, ref: Reference | None = None) -> dict[str, Any]:
        desc: dict[str, Any] = {
            "mediaType": mediatypes.OCI_MANIFEST,
            "digest": self.manifest_digest,
            "size": len(self.manifest_raw),
        }
        annotations = {}
        if ref is not None:
            annotations[CONTAINERD_NAME] = str(ref)
        if ref_name:
            annotations[REF_NAME] = ref_name
        if annotations:
            desc["annotations"] = annotations
        return desc


def _copy_verified(path: Path, write: Callable[[bytes], Any], digest: str, size: int) -> None:
    """Copy a layer tar, hashing it on the way; raise unless it is ``digest`` (``size``)."""
    h = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        while done < size:
            data = f.read(min(CHUNK, size - done))
            if not data:
                break
            h.update(data)
            write(data)
            done += len(data)
        extra = f.read(1)
    if done != size or extra or "sha256:" + h.hexdigest() != digest:
        raise DigestMismatch(f"layer {digest}: {path} does not hold it (changed or corrupt)")


class _Tar(TarWriter):
    """save's tar writer, plus layer members that are hashed while written."""

    def add_layer(self, name: str, path: Path, digest: str, size: int, mtime: float) -> None:
        self._header(name, size, 0o644, mtime, tarfile.REGTYPE)
        _copy_verified(path, self._write, digest, size)
        self._pad(size)


def _layout_tar(tar: _Tar, out: _Output, entries: list[dict[str, Any]]) -> None:
    """An OCI image layout in a tar (what ``save`` writes, less the docker files)."""
    tar.add_dir("blobs")
    tar.add_dir("blobs/sha256")
    small: dict[str, bytes] = {out.image_id: out.config_raw, out.manifest_digest: out.manifest_raw}
    for digest in sorted([*small, *out.layers], key=lambda d: Digest(d).hex):
        name = _blob_name(Digest(digest))
        if digest in out.layers:
            path, size = out.layers[digest]
            tar.add_layer(name, path, digest, size, out.mtime)
        else:
            tar.add_bytes(name, small[digest], out.mtime)
    index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries}
    tar.add_bytes("index.json", dumps(index) + b"\n")


def _docker_archive_tar(tar: _Tar, out: _Output, ref: Reference | None) -> None:
    """``save``'s format: the OCI layout plus ``manifest.json`` and ``repositories``."""
    assert ref is None or ref.tag is not None
    _layout_tar(tar, out, [out.descriptor(ref.tag if ref else None, ref)])
    layer_paths = [_blob_name(Digest(d)) for d in out.layers]
    item = {
        "Config": _blob_name(out.image_id),
        "RepoTags": [ref.familiar()] if ref is not None else None,
        "Layers": layer_paths,
    }
    tar.add_bytes("manifest.json", dumps([item]) + b"\n")
    tar.add_bytes("oci-layout", OCI_LAYOUT)
    if ref is not None:
        assert ref.tag is not None
        top = Digest(list(out.layers)[-1]).hex if out.layers else out.image_id.hex
        repositories = {ref.familiar_name: {ref.tag: top}}
        tar.add_bytes(
            "repositories", json.dumps(repositories, separators=(",", ":")).encode() + b"\n"
        )


def _write_archive(path: Path, fill: Callable[[_Tar], None], say: Say, out: _Output) -> None:
    """Write an archive under a temp name beside ``path`` and rename it when complete."""
    if path.is_dir():
        raise InvalidArgument(f"{path} is a directory")
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as f:
            tar = _Tar(f, writeback=True)
            _say_blobs(say, out)
            fill(tar)
            tar.close()
        say("Writing manifest to image destination")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _say_blobs(say: Say, out: _Output) -> None:
    for diff_id in out.layers:
        say(f"Copying blob {diff_id}")
    say(f"Copying config {out.image_id}")


def _write_layout_dir(root: Path, out: _Output, ref_name: str | None, say: Say) -> None:
    """Add the image to the layout at ``root`` (made if missing): blobs first, then
    ``index.json``, where it replaces an entry of the same ref name."""
    if root.exists() and not root.is_dir():
        raise InvalidArgument(f"{root} is not a directory")
    if not root.exists():
        # a new layout is built beside its name and appears whole
        if not root.parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(root.parent))
        tmp = root.with_name(f".{root.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
        tmp.mkdir()
        try:
            _fill_layout(tmp, out, ref_name, say)
            try:
                os.rename(tmp, root)
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                # another copy made it meanwhile: add to that one below
            else:
                fsync_dir(root.parent)
                return
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    _fill_layout(root, out, ref_name, say)


def _fill_layout(root: Path, out: _Output, ref_name: str | None, say: Say) -> None:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    with _dir_locked(root):
        _say_blobs(say, out)
        for diff_id, (path, size) in out.layers.items():
            _put_blob(blobs, Digest(diff_id), size, _LayerFill(path, diff_id, size))
        for raw in (out.config_raw, out.manifest_raw):
            _put_blob(blobs, Digest.of_bytes(raw), len(raw), _BytesFill(raw))
        fsync_dir(blobs)
        say("Writing manifest to image destination")
        layout = root / "oci-layout"
        if not layout.exists():
            write_atomic(layout, OCI_LAYOUT)
        try:
            index = _json((root / "index.json").read_bytes(), f"{root}/index.json")
        except FileNotFoundError:
            index = {"schemaVersion": 2, "manifests": []}
        old = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
        entry = out.descriptor(ref_name)
        if ref_name:
            keep = [d for d in old if (d.get("annotations") or {}).get(REF_NAME) != ref_name]
        else:  # an unnamed image is added once
            keep = [d for d in old if d.get("annotations") or d.get("digest") != entry["digest"]]
        index = {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            **index,
            "manifests": [*keep, entry],
        }
        write_atomic(root / "index.json", dumps(index))


Write = Callable[[bytes], Any]


@dataclass(frozen=True)
class _LayerFill:
    path: Path
    digest: str
    size: int

    def __call__(self, write: Write) -> None:
        _copy_verified(self.path, write, self.digest, self.size)


@dataclass(frozen=True)
class _BytesFill:
    data: bytes

    def __call__(self, write: Write) -> None:
        write(self.data)


def _put_blob(blobs: Path, digest: Digest, size: int, fill: Callable[[Write], None]) -> None:
    """Write a blob via a temp file (fsynced) and rename; keep one that is already there."""
    final = blobs / digest.hex
    with contextlib.suppress(FileNotFoundError):
        if final.stat().st_size == size:
            return
    tmp = blobs / f".{digest.hex}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            fill(f.write)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def _dir_locked(path: Path) -> Iterator[None]:
    """An exclusive flock on the directory itself: one writer of index.json at a time."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


__all__ = ["CopyError", "CopyOptions", "CopyResult", "Side", "copy", "quiet"]
