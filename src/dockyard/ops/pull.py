"""``pull``: fetch images from a registry into the store, as Docker does.

Layers download in parallel and are unpacked while they arrive, each on three
threads: ``ResumableBlob`` fetches (keeping the compressed bytes in
``<root>/tmp/pull/<hex>.partial`` and hashing them), ``ingest.stage_layer``
decompresses on a second and checks, hashes and writes the tar into a staging dir
on the third. Only when the blob digest, its size and the layer's diff_id are
all right, for every layer, does ``commit_images`` make the image visible (with
its tag and ``name@digest``).
A pull that is killed or cut off leaves the partial files, and the next pull
continues them with ``Range`` requests.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from dockyard.archive.layer import LayerInfo
from dockyard.digest import Digest
from dockyard.distribution.client import MAX_CONFIG, Registry, open_endpoint
from dockyard.distribution.credentials import AuthEntry, CredentialStore
from dockyard.distribution.endpoints import RegistryConfig
from dockyard.distribution.errors import ManifestNotFound, NoBasicAuthCredentials, RegistryError
from dockyard.distribution.progress import Event, Reporter, ignore, short_id
from dockyard.distribution.pull import (
    Descriptor,
    Platform,
    Resolved,
    ResumableBlob,
    parse_platform,
    pull_blob_bytes,
    resolve,
)
from dockyard.distribution.push import prune_stale
from dockyard.errors import ArchiveError, DigestMismatch, DockyardError, InvalidArgument
from dockyard.ops.ingest import PendingImage, StagedLayer, commit_images, parse_config, stage_layer
from dockyard.ops.push import record_sources
from dockyard.reference import Reference, parse_normalized
from dockyard.store.store import Store

MAX_CONCURRENT_DOWNLOADS = 3  # Docker's max-concurrent-downloads
ROOTFS_MISMATCH = "layers from manifest don't match image configuration"


@dataclass(frozen=True)
class PullResult:
    ref: Reference  # what was asked for (with tag or digest)
    image_id: str
    digest: str
    downloaded: bool  # False: "Image is up to date"


def pull(
    store: Store,
    name: str,
    *,
    all_tags: bool = False,
    platform: str | None = None,
    report: Reporter = ignore,
    credentials: CredentialStore | None = None,
) -> list[PullResult]:
    ref = parse_normalized(name)
    if all_tags and (ref.tag is not None or ref.digest is not None):
        raise InvalidArgument("tag can't be used with --all-tags/-a")
    if ref.tag is not None and ref.digest is not None:
        ref = Reference(ref.domain, ref.path, None, ref.digest)  # Docker's ParseDockerRef
    if not all_tags and ref.tag is None and ref.digest is None:
        report(Event(status="Using default tag: latest"))
        ref = ref.with_tag("latest")
    want = parse_platform(platform)
    prune_stale(store.root / "tmp" / "pull")
    config = RegistryConfig.load(store.root)
    creds = (credentials or CredentialStore()).get(ref.domain)
    try:
        if all_tags:
            return _pull_all(store, ref, want, config, creds, report)
        registry, resolved = _open(ref, ref.digest or ref.tag or "latest", want, config, creds)
        assert resolved is not None
        with registry:
            result = _pull_one(store, registry, ref, resolved, report)
    except RegistryError as e:
        raise _translate(e, ref) from e
    status = "Downloaded newer image for" if result.downloaded else "Image is up to date for"
    report(Event(status=f"Status: {status} {ref.familiar()}"))
    return [result]


def _pull_all(
    store: Store,
    ref: Reference,
    want: Platform,
    config: RegistryConfig,
    creds: AuthEntry | None,
    report: Reporter,
) -> list[PullResult]:
    registry, _ = _open(ref, None, want, config, creds)
    results = []
    with registry:
        for tag in sorted(registry.tags(ref.path)):
            tagged = ref.with_tag(tag)
            resolved = resolve(registry, ref.path, tag, want)
            results.append(_pull_one(store, registry, tagged, resolved, report))
    status = (
        "Downloaded newer image for"
        if any(r.downloaded for r in results)
        else "Image is up to date for"
    )
    report(Event(status=f"Status: {status} {ref.familiar_name}"))
    return results


def _open(
    ref: Reference,
    reference: str | None,
    want: Platform,
    config: RegistryConfig,
    creds: AuthEntry | None,
) -> tuple[Registry, Resolved | None]:
    """The first endpoint (mirrors first) that has the reference."""
    last: DockyardError | None = None
    for endpoint in config.pull_endpoints(ref.domain):
        try:
            registry = open_endpoint(endpoint, config, creds)
        except DockyardError as e:
            last = e
            continue
        if reference is None:
            return registry, None
        try:
            return registry, resolve(registry, ref.path, reference, want)
        except DockyardError as e:
            registry.close()
            last = e
            if not endpoint.mirror:
                raise
    assert last is not None
    raise last


def _translate(e: RegistryError, ref: Reference) -> DockyardError:
    """Docker's notFoundError texts."""
    if e.code == "MANIFEST_UNKNOWN":
        return ManifestNotFound(f"manifest for {ref.familiar()} not found: {e.message}", e.code)
    if e.code == "NAME_UNKNOWN":
        return ManifestNotFound(f"repository {ref.familiar_name} not found: {e.message}", e.code)
    if e.code == "DENIED":
        return RegistryError(
            f"pull access denied for {ref.familiar_name}, repository does not exist or may "
            f"require 'docker login': {e.message}",
            e.code,
            e.status,
        )
    return e


def existing_layer(store: Store, diff_id: str) -> StagedLayer | None:
    layer = store.layer(diff_id)
    if layer is None or not store.blobs.exists(layer.blob):
        return None
    info = LayerInfo(
        diff_id=Digest(diff_id),
        tar_size=layer.tar_size,
        content_size=layer.content_size,
        entries=0,
        compression="",
        compressed_digest=None,
        compressed_size=0,
    )
    return StagedLayer(None, info)


def _pull_one(
    store: Store, registry: Registry, ref: Reference, resolved: Resolved, report: Reporter
) -> PullResult:
    repo = ref.path
    label = ref.digest or ref.tag or "latest"
    report(Event(status=f"{label}: Pulling from {repo}"))
    config_raw = pull_blob_bytes(registry, repo, resolved.config, MAX_CONFIG)
    config = parse_config(config_raw, f"image config {resolved.config.digest}")
    diff_ids = [str(d) for d in config["rootfs"]["diff_ids"]]
    if len(diff_ids) != len(resolved.layers):
        raise DigestMismatch(ROOTFS_MISMATCH)
    image_id = Digest.of_bytes(config_raw)
    have_image = store.image(image_id, with_layers=False) is not None
    tag_ref = ref if ref.tag is not None else None
    old = store.lookup_ref(tag_ref) if tag_ref is not None else None
    partial_dir = store.root / "tmp" / "pull"
    with store.ingest_lock(), store.staging() as staging:
        staged: list[StagedLayer | None] = [None] * len(diff_ids)
        todo: list[int] = []
        for i, diff_id in enumerate(diff_ids):
            found = existing_layer(store, diff_id)
            if found is not None:
                staged[i] = found
                if not have_image:
                    report(Event(short_id(resolved.layers[i].digest), "Already exists"))
            else:
                todo.append(i)
        seen: dict[str, int] = {}
        for i in todo:
            sid = short_id(resolved.layers[i].digest)
            if resolved.layers[i].digest not in seen:
                report(Event(sid, "Pulling fs layer"))
            seen.setdefault(resolved.layers[i].digest, i)
        for n, i in enumerate(seen.values()):
            if n >= MAX_CONCURRENT_DOWNLOADS:
                report(Event(short_id(resolved.layers[i].digest), "Waiting"))
        if seen:
            with ThreadPoolExecutor(MAX_CONCURRENT_DOWNLOADS, thread_name_prefix="pull") as pool:
                futures: dict[int, Future[StagedLayer]] = {
                    i: pool.submit(
                        fetch_layer,
                        store,
                        registry,
                        repo,
                        resolved.layers[i],
                        diff_ids[i],
                        staging,
                        partial_dir,
                        report,
                    )
                    for i in seen.values()
                }
                first_error: BaseException | None = None
                for i, future in futures.items():
                    try:
                        staged[i] = future.result()
                    except BaseException as e:
                        if first_error is None:
                            first_error = e
                if first_error is not None:
                    raise first_error
            for i in todo:
                if staged[i] is None:  # the same blob twice in one image
                    staged[i] = staged[seen[resolved.layers[i].digest]]
        layers = [s for s in staged if s is not None]
        pending = PendingImage(
            config_raw,
            layers,
            tags=[tag_ref] if tag_ref is not None else [],
            digests=[ref.name_only().with_digest(resolved.digest)],
            what=f"image {ref.familiar()}",
        )
        commit_images(store, staging, [pending])
    record_sources(
        store,
        [
            (diff_ids[i], d.digest, d.media_type, d.size, registry.host, repo)
            for i, d in enumerate(resolved.layers)
        ],
    )
    report(Event(status=f"Digest: {resolved.digest}"))
    downloaded = not have_image or (tag_ref is not None and old != image_id)
    return PullResult(ref, image_id, resolved.digest, downloaded)


def fetch_layer(
    store: Store,
    registry: Registry,
    repo: str,
    desc: Descriptor,
    diff_id: str,
    staging: Path,
    partial_dir: Path,
    report: Reporter,
) -> StagedLayer:
    sid = short_id(desc.digest)
    with ResumableBlob(registry, repo, desc, partial_dir, report, prefetch=True) as blob:
        # another pull may have finished it while we waited (own connection: a thread)
        peek = Store(store.root, store.driver_name)
        try:
            found = existing_layer(peek, diff_id) if peek.blobs.exists(diff_id) else None
        finally:
            peek.close()
        if found is not None:
            report(Event(sid, "Already exists"))
            return found
        try:
            staged = stage_layer(
                store, staging, cast(BinaryIO, blob), f"layer {desc.digest}", inflate_ahead=True
            )
        except ArchiveError:
            blob.verify()  # content that is not what its digest says: say that
            raise
        blob.verify()
        report(Event(sid, "Verifying Checksum"))
        report(Event(sid, "Download complete"))
        if staged.info.diff_id != diff_id:
            blob.discard()
            raise DigestMismatch(ROOTFS_MISMATCH)
        blob.done()
    report(Event(sid, "Pull complete"))
    return staged


__all__ = ["NoBasicAuthCredentials", "PullResult", "pull"]
