"""Pushing blobs and manifests: skip what the registry has, mount what another
repository of it has, compress the rest deterministically and upload it in
chunks that survive interruptions.

Upload sessions are kept in ``<workdir>/uploads/<key>.json`` (the registry's
latest upload URL for a (registry, repository, digest)), so that a push cut
off in the middle continues, in this process or a later one, from the offset
the registry reports (``GET`` on the upload URL, then ``PATCH`` the rest).
Compressed layers wait in ``<workdir>/blobs/`` until their upload is done.

Note on distribution 2.8 (Docker's registry): it signs the offset into the
upload URL and cancels an upload whose stored size differs from it, so after a
cut in the middle of a ``PATCH`` it forgets the upload and the layer is sent
again from zero; it resumes from the last complete chunk when the interrupted
request never reached it (a buffering proxy in front, the client killed between
chunks). Registries that report their true offset resume at that byte.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

from dockyard import mediatypes
from dockyard.digest import Digest, Sized, hash_file
from dockyard.distribution.client import Registry
from dockyard.distribution.compress import compress, compression_of, layer_media_type
from dockyard.distribution.errors import RegistryError, TransportError
from dockyard.distribution.progress import Event, Reporter, short_id

DEFAULT_CHUNK = 16 << 20
CHUNK_ENV = "DOCKYARD_PUSH_CHUNK_SIZE"
RETRIES_ENV = "DOCKYARD_TRANSFER_RETRIES"
DEFAULT_RETRIES = 3

T = TypeVar("T")


def chunk_size() -> int:
    try:
        return max(4096, int(os.environ.get(CHUNK_ENV, DEFAULT_CHUNK)))
    except ValueError:
        return DEFAULT_CHUNK


def retries() -> int:
    try:
        return max(0, int(os.environ.get(RETRIES_ENV, DEFAULT_RETRIES)))
    except ValueError:
        return DEFAULT_RETRIES


def retry_delay(attempt: int) -> int:
    """Seconds before the ``attempt``-th retry (Docker waits 5, 10, 15...; we are quicker)."""
    return min(attempt, 5)


STALE_AFTER = 7 * 86400


def prune_stale(*dirs: Path, max_age: float = STALE_AFTER) -> None:
    """Forget resume files (partial downloads, upload sessions, compressed layers) that
    nothing touched for a week: their pushes and pulls were abandoned."""
    now = time.time()
    for d in dirs:
        if not d.is_dir():
            continue
        for entry in d.iterdir():
            with contextlib.suppress(OSError):
                if entry.is_file() and now - entry.stat().st_mtime > max_age:
                    entry.unlink()


@dataclass(frozen=True)
class BlobSource:
    """Where a layer's compressed form is known to be (``registry`` "" = made here)."""

    digest: str
    media_type: str
    size: int
    registry: str = ""
    repo: str = ""


@dataclass
class LayerJob:
    diff_id: str
    path: Path  # the uncompressed tar
    tar_size: int
    sources: list[BlobSource] = field(default_factory=list)

    @property
    def short(self) -> str:
        return short_id(self.diff_id)


@dataclass(frozen=True)
class PushedBlob:
    diff_id: str
    digest: str
    media_type: str
    size: int
    how: str  # pushed | exists | mounted
    compressed_here: bool = False


def retrying(
    what: Callable[[], T], report: Reporter, sid: str, attempts: int | None = None
) -> T:
    """Run ``what``; on a network error wait and run it again (Docker's 'Retrying in')."""
    limit = retries() if attempts is None else attempts
    attempt = 0
    while True:
        try:
            return what()
        except TransportError as e:
            if not e.retryable:
                raise
            attempt += 1
            if attempt > limit:
                raise
            delay = retry_delay(attempt)
            for left in range(delay, 0, -1):
                report(Event(sid, f"Retrying in {left} second{'s' if left > 1 else ''}"))
                time.sleep(1)


class Pusher:
    """Pushes blobs into one repository of one registry."""

    def __init__(
        self, registry: Registry, repo: str, workdir: Path, report: Reporter
    ) -> None:
        self.registry = registry
        self.repo = repo
        self.workdir = workdir
        self.report = report
        self.chunk = chunk_size()

    # -- layers ---------------------------------------------------------------------

    def push_layer(self, job: LayerJob, kind: str) -> PushedBlob:
        sid = job.short
        reg = self.registry
        wanted = [s for s in job.sources if compression_of(s.media_type) == kind]
        media_type = layer_media_type(kind)
        checked: set[str] = set()
        # 1. known to be here already, or known from an earlier compression: HEAD
        for s in wanted:
            if s.registry in ("", reg.host) and s.repo in ("", self.repo):
                if s.digest in checked:
                    continue
                checked.add(s.digest)
                size = retrying(partial(reg.blob_size, self.repo, s.digest), self.report, sid)
                if size is not None:
                    self.report(Event(sid, "Layer already exists"))
                    return PushedBlob(job.diff_id, s.digest, media_type, s.size, "exists")
        # 2. in another repository of this registry: mount it
        for s in wanted:
            if s.registry == reg.host and s.repo and s.repo != self.repo:
                try:
                    location = reg.start_upload(self.repo, mount=s.digest, from_repo=s.repo)
                except RegistryError:
                    continue
                if location is None:
                    self.report(Event(sid, f"Mounted from {s.repo}"))
                    return PushedBlob(job.diff_id, s.digest, media_type, s.size, "mounted")
                reg.cancel_upload(location)
        # 3. compress (or reuse what an interrupted push compressed), then upload
        path, blob = self._compressed(job, kind)
        if blob.digest not in checked:
            size = retrying(lambda: reg.blob_size(self.repo, blob.digest), self.report, sid)
            if size is not None:
                self.report(Event(sid, "Layer already exists"))
                self._forget(path)
                return PushedBlob(job.diff_id, blob.digest, media_type, blob.size, "exists", True)
        self.upload_file(path, blob, sid)
        self._forget(path)
        self.report(Event(sid, "Pushed"))
        return PushedBlob(job.diff_id, blob.digest, media_type, blob.size, "pushed", True)

    def _compressed(self, job: LayerJob, kind: str) -> tuple[Path, Sized]:
        blobs = self.workdir / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        final = blobs / f"{Digest(job.diff_id).hex}.{kind}"
        with _flocked(final.with_name(final.name + ".lock")):
            if final.exists():
                return final, hash_file(str(final))
            tmp = blobs / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
            sid = job.short
            try:
                with open(job.path, "rb") as src, open(tmp, "wb") as dst:
                    sized = compress(
                        src,
                        dst,
                        kind,
                        size=job.tar_size,
                        progress=lambda n: self.report(
                            Event(sid, "Compressing", n, job.tar_size, progress=True)
                        ),
                    )
                    dst.flush()
                    os.fsync(dst.fileno())
                os.rename(tmp, final)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                raise
            return final, sized

    def _forget(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + ".lock").unlink()

    # -- uploads ---------------------------------------------------------------------

    def _state_path(self, digest: str) -> Path:
        key = hashlib.sha256(f"{self.registry.host}/{self.repo}@{digest}".encode()).hexdigest()
        return self.workdir / "uploads" / f"{key[:32]}.json"

    def _save_state(self, digest: str, location: str) -> None:
        path = self._state_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        record = {
            "registry": self.registry.host,
            "repo": self.repo,
            "digest": digest,
            "location": location,
        }
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)

    def _load_state(self, digest: str) -> str | None:
        try:
            record = json.loads(self._state_path(digest).read_text())
        except (OSError, ValueError):
            return None
        location = record.get("location") if isinstance(record, dict) else None
        return location if isinstance(location, str) else None

    def _drop_state(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._state_path(digest).unlink()

    def upload_file(self, path: Path, blob: Sized, sid: str) -> None:
        """Upload a file as ``blob``, resuming a session an earlier attempt left."""
        reg = self.registry
        size = blob.size
        location: str | None = None
        offset = 0
        saved = self._load_state(blob.digest)
        if saved is not None:
            found = retrying(lambda: reg.upload_offset(saved), self.report, sid)
            if found is not None and found <= size:
                location, offset = saved, found
            else:
                self._drop_state(blob.digest)
        attempt = 0
        done = [offset]

        def sent(n: int) -> None:
            done[0] += n
            self.report(Event(sid, "Pushing", done[0], size, progress=True))

        with open(path, "rb") as src:
            while True:
                try:
                    if location is None:
                        location = reg.start_upload(self.repo)
                        assert location is not None
                        offset = 0
                        self._save_state(blob.digest, location)
                    done[0] = offset
                    while offset < size:
                        n = min(self.chunk, size - offset)
                        location = reg.upload_chunk(location, src, offset, n, sent)
                        offset += n
                        self._save_state(blob.digest, location)
                    reg.finish_upload(location, blob.digest)
                    self._drop_state(blob.digest)
                    return
                except TransportError as e:
                    attempt += 1
                    if not e.retryable or attempt > retries():
                        raise
                    delay = retry_delay(attempt)
                    for left in range(delay, 0, -1):
                        self.report(
                            Event(sid, f"Retrying in {left} second{'s' if left > 1 else ''}")
                        )
                        time.sleep(1)
                    if location is not None:
                        try:
                            found = reg.upload_offset(location)
                        except TransportError:
                            found = offset  # ask again on the next round
                        if found is None or found > size:
                            location = None
                        else:
                            offset = found

    # -- config and manifest -------------------------------------------------------------

    def push_config(self, data: bytes) -> Digest:
        digest = Digest.of_bytes(data)
        reg = self.registry
        if retrying(lambda: reg.blob_size(self.repo, digest), self.report, "") is None:
            retrying(lambda: reg.put_blob(self.repo, data), self.report, "")
        return digest

    def push_manifest(self, tag: str, raw: bytes, media_type: str) -> Digest:
        reg = self.registry
        return retrying(
            lambda: reg.put_manifest(self.repo, tag, raw, media_type), self.report, ""
        )


def image_manifest(config: bytes, layers: list[PushedBlob], kind: str) -> tuple[bytes, str]:
    """The manifest a push writes: Docker schema2 (as Docker indents it) for gzip,
    OCI (compact) for zstd."""
    config_digest = Digest.of_bytes(config)
    if kind == "gzip":
        manifest = {
            "schemaVersion": 2,
            "mediaType": mediatypes.DOCKER_MANIFEST,
            "config": {
                "mediaType": mediatypes.DOCKER_CONFIG,
                "size": len(config),
                "digest": config_digest,
            },
            "layers": [
                {"mediaType": mediatypes.DOCKER_LAYER_GZIP, "size": b.size, "digest": b.digest}
                for b in layers
            ],
        }
        return json.dumps(manifest, indent=3).encode(), mediatypes.DOCKER_MANIFEST
    oci = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {
            "mediaType": mediatypes.OCI_CONFIG,
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [
            {"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in layers
        ],
    }
    return json.dumps(oci, separators=(",", ":")).encode(), mediatypes.OCI_MANIFEST


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


__all__ = [
    "BlobSource",
    "LayerJob",
    "PushedBlob",
    "Pusher",
    "image_manifest",
    "prune_stale",
    "retrying",
]
