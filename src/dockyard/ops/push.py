"""``push``: send local images to a registry, as Docker does.

Layers are stored uncompressed; a push compresses each one (gzip, or zstd with
OCI media types) unless the registry already has, or can mount, a compressed
form recorded in the store's ``layer_sources`` table. After the manifest is in,
``RepoDigests`` gets ``name@digest`` and ``layer_sources`` learns where each
compressed layer now lives (cross-repository mounts and skipped uploads next time).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from dockyard.digest import Digest
from dockyard.distribution.client import connect
from dockyard.distribution.compress import COMPRESSIONS
from dockyard.distribution.credentials import CredentialStore
from dockyard.distribution.endpoints import RegistryConfig
from dockyard.distribution.errors import NoBasicAuthCredentials, TransportError
from dockyard.distribution.progress import Event, Reporter, ignore
from dockyard.distribution.push import (
    BlobSource,
    LayerJob,
    PushedBlob,
    Pusher,
    image_manifest,
    prune_stale,
)
from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.reference import Reference, parse_normalized
from dockyard.store.store import Store

MAX_CONCURRENT_UPLOADS = 5  # Docker's max-concurrent-uploads


class NoLocalImage(NotFound):
    def __init__(self, ref: Reference) -> None:
        super().__init__(f"An image does not exist locally with the tag: {ref.familiar_name}")


@dataclass(frozen=True)
class PushResult:
    ref: Reference  # name:tag
    image_id: str
    digest: str
    size: int


# -- the layer_sources table ------------------------------------------------------------


def layer_sources(
    store: Store, diff_ids: Iterable[str], registry: str
) -> dict[str, list[BlobSource]]:
    """Known compressed forms of each layer on ``registry`` (and those made here)."""
    wanted = list(dict.fromkeys(diff_ids))
    out: dict[str, list[BlobSource]] = {d: [] for d in wanted}
    if not wanted:
        return out
    marks = ",".join("?" * len(wanted))
    rows = store.conn.execute(
        "SELECT diff_id, digest, media_type, size, registry, repo FROM layer_sources "
        f"WHERE diff_id IN ({marks}) AND registry IN (?, '') ORDER BY registry DESC, seen DESC",
        [*wanted, registry],
    ).fetchall()
    for diff_id, digest, media_type, size, reg, repo in rows:
        out[diff_id].append(BlobSource(digest, media_type, int(size), reg, repo))
    return out


def record_sources(
    store: Store, rows: Iterable[tuple[str, str, str, int, str, str]]
) -> None:
    """Remember (diff_id, digest, media_type, size, registry, repo) rows."""
    now = time.time()
    with store.transaction() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO layer_sources"
            "(diff_id, digest, media_type, size, registry, repo, seen) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*row, now) for row in rows],
        )


# -- push -------------------------------------------------------------------------------


def push(
    store: Store,
    name: str,
    *,
    all_tags: bool = False,
    compression: str = "gzip",
    report: Reporter = ignore,
    credentials: CredentialStore | None = None,
) -> list[PushResult]:
    """Push ``name[:tag]`` (every tag of the repository with ``all_tags``)."""
    if compression not in COMPRESSIONS:
        raise InvalidArgument(
            f"invalid compression format {compression!r}: use one of {', '.join(COMPRESSIONS)}"
        )
    ref = parse_normalized(name)
    if ref.digest is not None:
        raise InvalidArgument("cannot push a digest reference")
    if all_tags and ref.tag is not None:
        raise InvalidArgument("tag can't be used with --all-tags/-a")
    repo = ref.name_only()
    report(Event(status=f"The push refers to repository [{repo.name}]"))
    if all_tags:
        rows = store.conn.execute(
            "SELECT tag, image FROM tags WHERE repo = ? ORDER BY tag", (repo.name,)
        ).fetchall()
        targets = [(repo.with_tag(tag), image) for tag, image in rows]
        if not targets:
            raise NoLocalImage(repo)
    else:
        tagged = ref if ref.tag is not None else ref.with_tag("latest")
        image_id = store.lookup_ref(tagged)
        if image_id is None:
            raise NoLocalImage(repo)
        targets = [(tagged, image_id)]
    config = RegistryConfig.load(store.root)
    creds = (credentials or CredentialStore()).get(ref.domain)
    try:
        registry = connect(ref.domain, config, creds)
    except NoBasicAuthCredentials as e:
        raise TransportError(e.short) from e
    results = []
    workdir = store.root / "tmp" / "push"
    prune_stale(workdir / "blobs", workdir / "uploads")
    try:
        with registry, store.ingest_lock():
            pusher = Pusher(registry, ref.path, workdir, report)
            for tagged, image_id in targets:
                results.append(_push_image(store, pusher, tagged, image_id, compression))
    except NoBasicAuthCredentials as e:
        raise TransportError(e.short) from e
    return results


def _push_image(
    store: Store, pusher: Pusher, ref: Reference, image_id: str, compression: str
) -> PushResult:
    report = pusher.report
    record = store.image(image_id, with_layers=True)
    if record is None:
        raise NoLocalImage(ref.name_only())
    config_raw = store.blobs.read(image_id)
    host = pusher.registry.host
    sources = layer_sources(store, record.diff_ids, host)
    jobs: dict[str, LayerJob] = {}
    for diff_id in record.diff_ids:
        if diff_id in jobs:
            continue
        layer = store.layer(diff_id)
        if layer is None:
            raise DockyardError(f"store is missing layer {diff_id} of image {image_id}")
        jobs[diff_id] = LayerJob(
            diff_id, store.blobs.path(layer.blob), layer.tar_size, sources.get(diff_id, [])
        )
    ordered = list(jobs.values())
    for job in reversed(ordered):
        report(Event(job.short, "Preparing"))
    for job in reversed(ordered[: max(0, len(ordered) - MAX_CONCURRENT_UPLOADS)]):
        report(Event(job.short, "Waiting"))
    pushed: dict[str, PushedBlob] = {}
    first_error: BaseException | None = None
    with ThreadPoolExecutor(MAX_CONCURRENT_UPLOADS, thread_name_prefix="push") as pool:
        futures = {
            job.diff_id: pool.submit(pusher.push_layer, job, compression)
            for job in reversed(ordered)
        }
        for diff_id, future in futures.items():
            try:
                pushed[diff_id] = future.result()
            except BaseException as e:  # keep the others going; report the first
                if first_error is None:
                    first_error = e
    rows = [
        (b.diff_id, b.digest, b.media_type, b.size, "", "")
        for b in pushed.values()
        if b.compressed_here
    ]
    if first_error is not None:
        if rows:
            record_sources(store, rows)
        raise first_error
    pusher.push_config(config_raw)
    layers = [pushed[d] for d in record.diff_ids]
    raw, media_type = image_manifest(config_raw, layers, compression)
    assert ref.tag is not None
    digest = pusher.push_manifest(ref.tag, raw, media_type)
    rows += [(b.diff_id, b.digest, b.media_type, b.size, host, pusher.repo) for b in layers]
    record_sources(store, rows)
    with store.transaction() as conn:
        if conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone():
            store.add_repo_digest(conn, ref.name_only().with_digest(digest), image_id)
    report(Event(status=f"{ref.tag}: digest: {digest} size: {len(raw)}"))
    return PushResult(ref, image_id, Digest(digest), len(raw))
