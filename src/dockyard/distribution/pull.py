"""Pulling: resolve a reference to an image manifest (multi-arch indexes by
platform) and read blobs resumably.

``ResumableBlob`` is a readable stream over one blob: it first returns what
``<partial dir>/<hex>.partial`` holds from an earlier, interrupted attempt
(re-hashing it), then asks the registry for the rest with ``Range`` and
appends what arrives to the partial file while returning it. Network failures
in the middle reconnect at the current offset (a few times). Everything read is
hashed; ``verify()`` checks digest and size, and only then is the partial file
removed. The file is locked while in use, so two pulls of the same blob wait for
each other instead of mixing their bytes.

With ``prefetch=True`` a thread of its own does the fetching (network, partial
file, hashing) a few MiB ahead of the reader, so that a reader that decompresses
and unpacks works while the next bytes arrive.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard import mediatypes
from dockyard.digest import Digest
from dockyard.distribution.client import BlobBody, Manifest, Registry
from dockyard.distribution.errors import RegistryError, TransportError
from dockyard.distribution.progress import Event, Reporter, ignore, short_id
from dockyard.distribution.push import retries, retry_delay
from dockyard.errors import DigestMismatch, DockyardError, InvalidArgument

PREFETCH_READ = 256 << 10  # largest piece the prefetch thread reads at once
PREFETCH_PIECES = 64  # pieces it may hold ahead of the reader (network pieces are <= 64 KiB)

LAYER_TYPES = {
    mediatypes.OCI_LAYER_TAR,
    mediatypes.OCI_LAYER_GZIP,
    mediatypes.OCI_LAYER_ZSTD,
    mediatypes.OCI_LAYER_NONDIST_TAR,
    mediatypes.OCI_LAYER_NONDIST_GZIP,
    mediatypes.DOCKER_LAYER_GZIP,
    mediatypes.DOCKER_LAYER_FOREIGN,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def parse_platform(text: str | None) -> Platform:
    """``os/arch[/variant]`` (default: this host, as Docker does)."""
    if not text:
        from dockyard.oci.config import host_architecture

        return Platform("linux", host_architecture())
    parts = text.lower().split("/")
    if len(parts) == 1:
        parts = ["linux", parts[0]]
    if len(parts) > 3 or not all(parts):
        raise InvalidArgument(f'"{text}": unknown operating system or architecture')
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}.get(parts[1], parts[1])
    return Platform(parts[0], arch, parts[2] if len(parts) > 2 else "")


def _variant(arch: str, variant: str) -> str:
    if arch == "arm64" and variant in ("", "v8"):
        return "v8"
    if arch == "arm" and not variant:
        return "v7"
    return variant


def platform_matches(want: Platform, have: dict[str, Any]) -> bool:
    if str(have.get("os", "")) != want.os or str(have.get("architecture", "")) != want.architecture:
        return False
    if not want.variant and want.architecture not in ("arm", "arm64"):
        return True
    return _variant(want.architecture, want.variant) == _variant(
        want.architecture, str(have.get("variant", ""))
    )


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int

    @classmethod
    def parse(cls, raw: Any, what: str) -> Descriptor:
        if not isinstance(raw, dict):
            raise DockyardError(f"invalid manifest: {what} is not an object")
        try:
            return cls(str(raw.get("mediaType", "")), Digest(str(raw["digest"])), int(raw["size"]))
        except (KeyError, TypeError, ValueError, InvalidArgument) as e:
            raise DockyardError(f"invalid manifest: bad {what} descriptor: {e}") from e


@dataclass(frozen=True)
class Resolved:
    """An image manifest and what the reference pointed at (an index, for multi-arch)."""

    manifest: Manifest
    digest: Digest  # the reference's digest: RepoDigests and "Digest:" show this
    config: Descriptor
    layers: list[Descriptor]


def resolve(registry: Registry, repo: str, reference: str, platform: Platform) -> Resolved:
    """Fetch the manifest for ``reference`` (tag or digest), following an index."""
    if not reference.startswith("sha256:"):
        found = registry.head_manifest(repo, reference)
        if found is not None:
            reference = found
    top = registry.get_manifest(repo, reference)
    manifest = top
    data = top.parsed()
    if top.media_type in mediatypes.INDEXES or "manifests" in data:
        chosen = None
        for entry in data.get("manifests") or []:
            if isinstance(entry, dict) and platform_matches(platform, entry.get("platform") or {}):
                chosen = Descriptor.parse(entry, "index entry")
                break
        if chosen is None:
            raise DockyardError(
                f"no matching manifest for {platform} in the manifest list entries"
            )
        manifest = registry.get_manifest(repo, chosen.digest)
        data = manifest.parsed()
    if manifest.media_type not in mediatypes.MANIFESTS:
        if data.get("schemaVersion") == 1 or "schema1" in manifest.media_type:
            raise DockyardError(
                "unsupported manifest format: schema 1 manifests are not supported"
            )
        if "config" not in data or "layers" not in data:
            raise DockyardError(f"unsupported manifest media type {manifest.media_type!r}")
    config = Descriptor.parse(data.get("config"), "config")
    layers_raw = data.get("layers")
    if not isinstance(layers_raw, list):
        raise DockyardError("invalid manifest: no layers")
    layers = [Descriptor.parse(x, f"layer {i + 1}") for i, x in enumerate(layers_raw)]
    for layer in layers:
        if layer.media_type and layer.media_type not in LAYER_TYPES:
            raise DockyardError(f"unsupported layer media type {layer.media_type!r}")
    return Resolved(manifest, top.digest, config, layers)


class ReadAhead:
    """A reader of the pieces ``produce`` returns (b"" at the end), which a thread of
    its own calls up to ``ahead`` pieces before the reader needs them. What
    ``produce`` raises reaches the reader in stream order, after the bytes before it.
    The thread starts at the first read; ``close`` stops it."""

    def __init__(self, produce: Callable[[], bytes], name: str, ahead: int) -> None:
        self._produce = produce
        self._name = name
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(ahead)
        self._thread: threading.Thread | None = None
        self._stop = False
        self._buf = b""
        self._off = 0
        self._eof = False

    def _run(self) -> None:
        try:
            while not self._stop:
                data = self._produce()
                self._queue.put(data)
                if not data:
                    return
        except BaseException as e:  # the reader raises it
            self._queue.put(e)

    def read(self, n: int = -1) -> bytes:
        if self._off >= len(self._buf):
            if self._eof:
                return b""
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            if not item:
                self._eof = True
                return b""
            self._buf, self._off = item, 0
        start = self._off
        data = self._buf[start : start + n] if n >= 0 else self._buf[start:]  # no copy if whole
        self._off = start + len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stop = True
        while thread.is_alive():  # unblock a put() on a full queue
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        thread.join()
        self._thread = None


class ResumableBlob:
    """A readable stream of one blob, resumed from (and kept in) a partial file."""

    def __init__(
        self,
        registry: Registry,
        repo: str,
        desc: Descriptor,
        partial_dir: Path,
        report: Reporter = ignore,
        prefetch: bool = False,
    ) -> None:
        self.registry = registry
        self.repo = repo
        self.desc = desc
        self.path = partial_dir / f"{desc.digest.hex}.partial"
        self.report = report
        self.sid = short_id(desc.digest)
        self.pos = 0
        self.have = 0  # bytes the partial file held when we started
        self.fetched = 0  # bytes that came over the network in this run
        self._hash = hashlib.sha256()
        self._fd = -1
        self._body: BlobBody | None = None
        self._chunks: Any = None
        self._stack = contextlib.ExitStack()
        self._attempt = 0
        self._ahead = (
            ReadAhead(lambda: self._read_direct(PREFETCH_READ), f"fetch-{self.sid}",
                      PREFETCH_PIECES)
            if prefetch
            else None
        )  # fmt: skip

    def __enter__(self) -> ResumableBlob:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.have = os.fstat(self._fd).st_size
        if self.have > self.desc.size:
            os.ftruncate(self._fd, 0)
            self.have = 0
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ahead is not None:
            self._ahead.close()
        self._close_body()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def locked_elsewhere_done(self) -> bool:
        """After waiting for the lock: another process finished and removed the file."""
        return not self.path.exists()

    def _close_body(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self._body = None
        self._chunks = None

    def _open_body(self) -> None:
        body = self._stack.enter_context(
            self.registry.open_blob(self.repo, self.desc.digest, self.pos)
        )
        if body.start < 0:  # 416: the registry has no bytes past our offset
            raise DigestMismatch(
                f"filesystem layer verification failed for digest {self.desc.digest}"
            )
        skip = self.pos - body.start  # a registry that ignores Range sends it all again
        self._body = body
        self._chunks = body.chunks(None)  # as they arrive: read() cuts them
        while skip > 0:
            data = next(self._chunks, b"")
            if not data:
                raise TransportError("unexpected EOF")
            if len(data) > skip:
                self._pending = data[skip:]
                skip = 0
                return
            skip -= len(data)
        self._pending = b""

    _pending = b""

    def _next_network_chunk(self) -> bytes:
        while True:
            try:
                if self._chunks is None:
                    self._open_body()
                if self._pending:
                    data, self._pending = self._pending, b""
                else:
                    data = next(self._chunks, b"")
                if not data:
                    raise TransportError(
                        f'GET "{self.registry.url(f"/v2/{self.repo}/blobs/{self.desc.digest}")}":'
                        " unexpected EOF"
                    )
                return data
            except TransportError as e:
                self._close_body()
                self._attempt += 1
                if not e.retryable or self._attempt > retries():
                    text = "unexpected EOF" if "EOF" in e.message else e.message
                    raise TransportError(text) from e
                delay = retry_delay(self._attempt)
                for left in range(delay, 0, -1):
                    plural = "s" if left > 1 else ""
                    self.report(Event(self.sid, f"Retrying in {left} second{plural}"))
                    time.sleep(1)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 20
        if self._ahead is not None:
            return self._ahead.read(n)
        return self._read_direct(n)

    def _read_direct(self, n: int) -> bytes:
        size = self.desc.size
        if self.pos >= size:
            return b""
        if self.pos < self.have:
            data = os.pread(self._fd, min(n, self.have - self.pos), self.pos)
            if not data:  # the partial file shrank under us: fetch the rest
                self.have = self.pos
                return self._read_direct(n)
        else:
            data = self._next_network_chunk()
            if len(data) > n:
                self._pending, data = data[n:], data[:n]
            if self.pos + len(data) > size:
                data = data[: size - self.pos]
            os.pwrite(self._fd, data, self.pos)
            self.fetched += len(data)
            self.report(Event(self.sid, "Downloading", self.pos + len(data), size, progress=True))
        self.pos += len(data)
        self._hash.update(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def verify(self) -> None:
        """Raise DigestMismatch (and drop the partial file) unless every byte was right."""
        self.drain()
        actual = "sha256:" + self._hash.hexdigest()
        if self.pos != self.desc.size or actual != self.desc.digest:
            self.discard()
            raise DigestMismatch(
                f"filesystem layer verification failed for digest {self.desc.digest}"
            )

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def done(self) -> None:
        """The blob is safely elsewhere: drop the partial file."""
        self.discard()


def pull_blob_bytes(registry: Registry, repo: str, desc: Descriptor, limit: int) -> bytes:
    if desc.size > limit:
        raise DockyardError(f"blob {desc.digest} is too big ({desc.size} bytes)")
    data = registry.get_blob(repo, desc.digest, limit)
    if len(data) != desc.size:
        raise DigestMismatch(f"filesystem layer verification failed for digest {desc.digest}")
    return data


__all__ = [
    "Descriptor",
    "Platform",
    "ReadAhead",
    "RegistryError",
    "Resolved",
    "ResumableBlob",
    "parse_platform",
    "platform_matches",
    "pull_blob_bytes",
    "resolve",
]
