"""Content-addressed blobs in an OCI image layout (``blobs/sha256/<hex>``).

A blob becomes visible only by rename after it was written, fsynced and its
digest checked, so a reader never sees a partial blob. Putting a blob that is
already there is a no-op (idempotent).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dockyard.digest import Digest, Sized, hash_file
from dockyard.errors import BlobNotFound, DigestMismatch


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via a temp file, fsync and rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "blobs" / "sha256"

    def path(self, digest: str) -> Path:
        return self.dir / Digest(digest).hex

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError as e:
            raise BlobNotFound(f"blob unknown: {digest}") from e

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError as e:
            raise BlobNotFound(f"blob unknown: {digest}") from e

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def put_bytes(self, data: bytes, staging: Path) -> Digest:
        """Store small content (configs, manifests) and return its digest."""
        digest = Digest.of_bytes(data)
        if self.exists(digest):
            return digest
        tmp = staging / f"bytes-{digest.hex}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.adopt(tmp, digest, len(data), verified=True)
        return digest

    def adopt(self, tmp: Path, digest: str, size: int, verified: bool = False) -> None:
        """Move a fully written (and fsynced) temp file into place as ``digest``.

        Unless ``verified``, the file is hashed again first. The temp file must
        be on the store's filesystem.
        """
        if not verified:
            actual = hash_file(str(tmp))
            if actual != Sized(Digest(digest), size):
                raise DigestMismatch(
                    f"blob {digest}: content is {actual.digest} ({actual.size} bytes)"
                )
        dest = self.path(digest)
        if dest.exists():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            return
        os.chmod(tmp, 0o644)
        os.rename(tmp, dest)

    def sync(self) -> None:
        fsync_dir(self.dir)

    def delete(self, digest: str) -> bool:
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def __iter__(self) -> Iterator[Digest]:
        for entry in os.scandir(self.dir):
            if entry.is_file() and len(entry.name) == 64:
                try:
                    yield Digest("sha256:" + entry.name)
                except Exception:
                    continue

    def stray_files(self) -> Iterator[Path]:
        """Files in the blob directory that are not named like a digest."""
        for entry in os.scandir(self.dir):
            name = entry.name
            if len(name) != 64 or not all(c in "0123456789abcdef" for c in name):
                yield Path(entry.path)
