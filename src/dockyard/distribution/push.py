"""Pushing blobs and manifests: skip what the registry has, mount what another
repository of it has, and compress the rest deterministically while uploading it
in chunks that survive interruptions.

A layer is compressed on a thread into an unnamed spool file (in
``<workdir>/blobs/``, gone when the push ends, however it ends) while the
uploader sends what is ready, chunk by chunk (``PATCH``), so compression and the
upload overlap; the digest is known when compression ends and goes into the
final ``PUT``. The spool is temporary data: it is never fsynced.

Upload sessions are kept in ``<workdir>/uploads/<key>.json`` (the registry's
latest upload URL for a (registry, repository, layer, compression)), so that a
push cut off in the middle continues, in this process or a later one, from the
offset the registry reports (``GET`` on the upload URL). Within a process the
spool still holds every byte; a later process compresses the layer again (the
same bytes: compression is deterministic) and sends only what the registry does
not hold. The registry checks the digest of the whole blob at the ``PUT``.

Note on distribution 2.8 (Docker's registry): it signs the offset into the
upload URL and cancels an upload whose stored size differs from it, so after a
cut in the middle of a ``PATCH`` it forgets the upload and the layer is sent
again from zero; it resumes from the last complete chunk when the interrupted
request never reached it (a buffering proxy in front, the client killed between
chunks). Registries that report their true offset resume at that byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO, TypeVar, cast

from dockyard.digest import Digest, Sized
from dockyard.distribution.client import Registry
from dockyard.distribution.compress import compress, compression_of, layer_media_type
from dockyard.distribution.errors import RegistryError, TransportError
from dockyard.distribution.manifest import image_manifest
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
        # 3. compress while uploading (resuming a session an earlier attempt left)
        blob = self._stream(job, kind)
        self.report(Event(sid, "Pushed"))
        return PushedBlob(job.diff_id, blob.digest, media_type, blob.size, "pushed", True)

    # -- uploads ---------------------------------------------------------------------

    def _state_path(self, key: str) -> Path:
        name = hashlib.sha256(f"{self.registry.host}/{self.repo}@{key}".encode()).hexdigest()
        return self.workdir / "uploads" / f"{name[:32]}.json"

    def _save_state(self, key: str, location: str) -> None:
        path = self._state_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        record = {
            "registry": self.registry.host,
            "repo": self.repo,
            "layer": key,
            "location": location,
        }
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)

    def _load_state(self, key: str) -> str | None:
        try:
            record = json.loads(self._state_path(key).read_text())
        except (OSError, ValueError):
            return None
        location = record.get("location") if isinstance(record, dict) else None
        return location if isinstance(location, str) else None

    def _drop_state(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._state_path(key).unlink()

    def _stream(self, job: LayerJob, kind: str) -> Sized:
        """Compress ``job``'s tar into a spool on a thread while uploading the spool."""
        sid = job.short
        blobs = self.workdir / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)

        def consumed(n: int) -> None:  # Docker's push bar counts the layer's own bytes
            self.report(Event(sid, "Pushing", n, job.tar_size, progress=True))

        with _Spool(blobs) as spool:
            worker = threading.Thread(
                target=spool.fill,
                args=(job.path, kind, job.tar_size, consumed),
                name=f"compress-{sid}",
                daemon=True,
            )
            worker.start()
            try:
                return self._upload(spool, f"{job.diff_id}.{kind}", sid)
            finally:
                spool.cancel()  # stops the compressor if the upload failed
                worker.join()

    def _upload(self, spool: _Spool, key: str, sid: str) -> Sized:
        """Send the spool's bytes as they come; finish with the digest compression gave."""
        reg = self.registry
        location: str | None = None
        offset = 0
        resumed = False
        saved = self._load_state(key)
        if saved is not None:
            found = retrying(lambda: reg.upload_offset(saved), self.report, sid)
            if found is not None:
                location, offset, resumed = saved, found, found > 0
            else:
                self._drop_state(key)
        attempt = 0
        reader = spool.reader()
        while True:
            try:
                if location is None:
                    location = reg.start_upload(self.repo)
                    assert location is not None
                    offset = 0
                    self._save_state(key, location)
                while True:
                    ready = spool.wait(offset + self.chunk)
                    n = min(self.chunk, ready - offset)
                    if n <= 0:
                        break
                    location = reg.upload_chunk(location, cast(BinaryIO, reader), offset, n)
                    offset += n
                    self._save_state(key, location)
                blob = spool.result()
                if offset != blob.size:  # the registry holds more than the blob: start over
                    reg.cancel_upload(location)
                    location, resumed = None, False
                    continue
                try:
                    reg.finish_upload(location, blob.digest)
                except RegistryError:
                    if not resumed:
                        raise
                    # what an earlier process sent is not what was made now (a different
                    # compression library?): send it all again, once
                    reg.cancel_upload(location)
                    location, resumed = None, False
                    continue
                self._drop_state(key)
                return blob
            except TransportError as e:
                attempt += 1
                if not e.retryable or attempt > retries():
                    raise
                delay = retry_delay(attempt)
                for left in range(delay, 0, -1):
                    self.report(Event(sid, f"Retrying in {left} second{'s' if left > 1 else ''}"))
                    time.sleep(1)
                if location is not None:
                    try:
                        found = reg.upload_offset(location)
                    except TransportError:
                        found = offset  # ask again on the next round
                    if found is None:
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


class _Spool:
    """Compressed bytes as they are made: an unnamed temp file that one thread fills
    (``fill``: compress a file into it) while another reads what is there (``wait``
    for enough bytes, then ``reader()``). Every byte stays until the spool is closed,
    so an upload can go back to any offset."""

    def __init__(self, directory: Path) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (closed by __exit__)
        self._fd = self._file.fileno()
        self._size = 0
        self._done = False
        self._cancelled = False
        self._error: BaseException | None = None
        self._result: Sized | None = None
        self._cond = threading.Condition()

    def __enter__(self) -> _Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    # the compressor's side
    def write(self, data: bytes | memoryview) -> int:
        if self._cancelled:
            raise _Cancelled()
        view = memoryview(data)
        pos = self._size
        while view:
            n = os.pwrite(self._fd, view, pos)
            view, pos = view[n:], pos + n
        with self._cond:
            self._size = pos
            self._cond.notify_all()
        return len(data)

    def flush(self) -> None:
        pass

    def fill(self, path: Path, kind: str, size: int, consumed: Callable[[int], None]) -> None:
        result: Sized | None = None
        error: BaseException | None = None
        try:
            with open(path, "rb") as src:
                result = compress(src, cast(BinaryIO, self), kind, size=size, progress=consumed)
        except BaseException as e:  # handed to the uploader, which raises it
            error = e
        with self._cond:
            self._result, self._error, self._done = result, error, True
            self._cond.notify_all()

    def cancel(self) -> None:
        self._cancelled = True

    # the uploader's side
    def wait(self, want: int) -> int:
        """Bytes ready once there are ``want`` of them or compression is over."""
        with self._cond:
            while self._size < want and not self._done:
                self._cond.wait()
            if self._error is not None:
                raise self._error
            return self._size

    def result(self) -> Sized:
        with self._cond:
            while not self._done:
                self._cond.wait()
            if self._error is not None:
                raise self._error
            assert self._result is not None
            return self._result

    def reader(self) -> _SpoolReader:
        return _SpoolReader(self._fd)


class _Cancelled(Exception):
    pass


class _SpoolReader:
    """``seek`` + ``read`` on the spool with pread (the writer keeps its own offset)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pos = 0

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos if whence == 0 else self._pos + pos
        return self._pos

    def read(self, n: int = -1) -> bytes:
        data = os.pread(self._fd, n if n >= 0 else 1 << 30, self._pos)
        self._pos += len(data)
        return data


__all__ = [
    "BlobSource",
    "LayerJob",
    "PushedBlob",
    "Pusher",
    "image_manifest",
    "prune_stale",
    "retrying",
]
