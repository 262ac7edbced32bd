"""The blob storage protocol every registry storage driver implements.

A driver stores opaque files under slash-separated paths (``blobs/sha256/ab/abcd...``,
``uploads/<uuid>/data``) and knows nothing of repositories: those live in the SQL
metadata. Contract, checked by tests/conformance/test_registry_storage.py:

- ``put`` is atomic and idempotent: readers see the old content or the new, never a
  part; a crash leaves no visible half file.
- ``get(path, offset)`` reads from ``offset`` to the end; ``stat`` gives size and
  modification time; ``list(prefix)`` every file below ``prefix`` (recursive, sorted);
  ``move`` is atomic; ``delete`` removes a file or everything below a prefix.
  Missing paths raise ``StorageNotFound``.
- ``writer(upload_id)`` starts an upload (``resume=True`` reopens one, also after a
  restart). ``append`` adds bytes and hashes them as they come; ``truncate`` drops a
  failed chunk; ``close`` keeps the upload for later; ``commit(digest)`` verifies
  the content against ``digest`` (``DigestMismatch`` otherwise, the upload kept)
  and moves it to ``blob_path(digest)``, where it appears whole; ``cancel``
  deletes the upload. Committing content that is already stored is fine: the
  stored blob is kept, and counts as just written (its modification time is
  renewed, which garbage collection's grace period relies on).
- ``local_path`` names a file on this machine the server may send with
  sendfile/pathsend, or None when the driver has none (then ``get`` streams).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from dockyard.digest import Digest, Sized
from dockyard.errors import NotFound

UPLOAD_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class StorageNotFound(NotFound):
    def __init__(self, path: str) -> None:
        super().__init__(f"storage path not found: {path}")
        self.path = path


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    modified: float  # seconds since the epoch


def blob_path(digest: Digest) -> str:
    """Where a blob lives: ``blobs/<algorithm>/<first two hex>/<hex>``."""
    return f"blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def digest_of_blob_path(path: str) -> Digest | None:
    """The digest a ``blob_path`` names, or None for anything else."""
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "blobs" or parts[2] != parts[3][:2]:
        return None
    try:
        return Digest(f"{parts[1]}:{parts[3]}")
    except Exception:
        return None


def upload_path(upload_id: str) -> str:
    return f"uploads/{upload_id}"


class BlobWriter(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def size(self) -> int:
        """Bytes written so far."""
        ...

    def append(self, data: bytes) -> None: ...

    def truncate(self, size: int) -> None:
        """Forget everything after ``size`` bytes (a chunk that did not arrive whole)."""
        ...

    def commit(self, expected: Digest) -> Sized:
        """Verify against ``expected`` and move into ``blob_path(expected)``; ends the writer."""
        ...

    def close(self) -> None:
        """Release the writer; the upload stays and can be resumed."""
        ...

    def cancel(self) -> None:
        """Delete the upload; ends the writer."""
        ...


class StorageDriver(Protocol):
    name: str

    def put(self, path: str, data: bytes) -> None: ...

    def get(self, path: str, offset: int = 0) -> BinaryIO: ...

    def stat(self, path: str) -> FileInfo: ...

    def list(self, prefix: str) -> list[str]: ...

    def move(self, src: str, dst: str) -> None: ...

    def delete(self, path: str) -> None: ...

    def writer(
        self, upload_id: str, *, resume: bool = False, algorithm: str = "sha256"
    ) -> BlobWriter: ...

    def local_path(self, path: str) -> Path | None: ...
