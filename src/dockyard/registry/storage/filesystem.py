"""The filesystem storage driver: files under one root directory.

Every file that becomes visible is written as a temp file in the same directory,
fsynced, then renamed into place (and the directory fsynced), so a crash leaves
the old file or the new one plus a ``.tmp-*`` leftover, never a half file.

An upload is ``uploads/<uuid>/data``, appended in place under an exclusive
``flock`` (one writer per upload at a time, across server processes). The
running hash of an upload is kept in memory between requests, keyed by the data
file's inode, size and mtime; hashlib objects cannot be saved, so a writer that
finds no matching entry (after a restart, or when another worker process wrote
last) hashes the bytes already written again. Committing fsyncs the data file
and renames it to ``blobs/<algorithm>/<xx>/<hex>`` on the same filesystem. So that
this fsync finds little left to write, appending asks the kernel to start writing
the file out every WRITEBACK bytes and at the end of each request
(``sync_file_range``, a hint only: the fsync is what makes the blob durable).
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from dockyard.archive.tarwrite import start_writeback
from dockyard.digest import CHUNK, Digest, Sized
from dockyard.errors import DigestMismatch, InvalidArgument
from dockyard.registry.storage.base import (
    UPLOAD_ID_RE,
    FileInfo,
    StorageNotFound,
    blob_path,
    upload_path,
)

if TYPE_CHECKING:
    from hashlib import _Hash

_HASH_CACHE_SIZE = 256
WRITEBACK = 8 << 20  # appended bytes between two starts of writeback (sync_file_range)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemDriver:
    """Blob storage in a local directory (the embedded default)."""

    name = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._hashes: collections.OrderedDict[str, tuple[tuple[int, int, int], _Hash]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    # -- paths -------------------------------------------------------------------------

    def _full(self, path: str) -> Path:
        parts = path.split("/")
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise InvalidArgument(f"invalid storage path: {path!r}")
        return self.root.joinpath(*parts)

    def local_path(self, path: str) -> Path | None:
        return self._full(path)

    # -- whole files -------------------------------------------------------------------

    def put(self, path: str, data: bytes) -> None:
        full = self._full(path)
        full.parent.mkdir(parents=True, exist_ok=True)
        tmp = full.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, full)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(full.parent)

    def get(self, path: str, offset: int = 0) -> BinaryIO:
        try:
            f = open(self._full(path), "rb")  # noqa: SIM115 - the caller closes it
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StorageNotFound(path) from None
        if offset:
            f.seek(offset)
        return f

    def stat(self, path: str) -> FileInfo:
        try:
            st = os.stat(self._full(path))
        except (FileNotFoundError, NotADirectoryError):
            raise StorageNotFound(path) from None
        if not os.path.isfile(self._full(path)):
            raise StorageNotFound(path)
        return FileInfo(path, st.st_size, st.st_mtime)

    def list(self, prefix: str) -> list[str]:
        top = self._full(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if top.is_file():
            return [prefix]
        out: list[str] = []
        for dirpath, _dirs, files in os.walk(top):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                if not name.startswith(".tmp-"):
                    out.append(name if rel == "." else f"{rel}/{name}")
        out.sort()
        return out

    def move(self, src: str, dst: str) -> None:
        source, target = self._full(src), self._full(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(source, target)
        except FileNotFoundError:
            raise StorageNotFound(src) from None
        _fsync_dir(target.parent)
        if source.parent != target.parent:
            _fsync_dir(source.parent)

    def delete(self, path: str) -> None:
        full = self._full(path)
        try:
            if full.is_dir():
                shutil.rmtree(full)
            else:
                full.unlink()
        except FileNotFoundError:
            raise StorageNotFound(path) from None

    # -- uploads -----------------------------------------------------------------------

    def writer(
        self, upload_id: str, *, resume: bool = False, algorithm: str = "sha256"
    ) -> FilesystemWriter:
        if not UPLOAD_ID_RE.fullmatch(upload_id):
            raise StorageNotFound(upload_path(upload_id))
        if algorithm not in ("sha256", "sha512"):
            raise InvalidArgument(f"unsupported digest algorithm: {algorithm}")
        directory = self._full(upload_path(upload_id))
        if resume:
            try:
                fd = os.open(directory / "data", os.O_RDWR)
            except FileNotFoundError:
                raise StorageNotFound(upload_path(upload_id)) from None
        else:
            directory.mkdir(parents=True)
            fd = os.open(directory / "data", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if resume and not (directory / "data").exists():  # cancelled while we waited
                raise StorageNotFound(upload_path(upload_id))
        except BaseException:
            os.close(fd)
            raise
        return FilesystemWriter(self, upload_id, directory, fd, algorithm)

    def _cached_hash(self, upload_id: str, key: tuple[int, int, int]) -> _Hash | None:
        with self._lock:
            entry = self._hashes.get(upload_id)
            if entry is None or entry[0] != key:
                return None
            return entry[1].copy()

    def _remember_hash(self, upload_id: str, key: tuple[int, int, int], h: _Hash) -> None:
        with self._lock:
            self._hashes[upload_id] = (key, h.copy())
            self._hashes.move_to_end(upload_id)
            while len(self._hashes) > _HASH_CACHE_SIZE:
                self._hashes.popitem(last=False)

    def _forget_hash(self, upload_id: str) -> None:
        with self._lock:
            self._hashes.pop(upload_id, None)


def _file_key(fd: int) -> tuple[int, int, int]:
    st = os.fstat(fd)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class FilesystemWriter:
    """An open upload; not thread-safe (one request drives it)."""

    def __init__(
        self, driver: FilesystemDriver, upload_id: str, directory: Path, fd: int, algorithm: str
    ) -> None:
        self._driver = driver
        self._id = upload_id
        self._dir = directory
        self._fd: int | None = fd
        self._algorithm = algorithm
        self._size = os.fstat(fd).st_size
        self._written_back = self._size  # where writeback was last started
        self._hash: _Hash | None = driver._cached_hash(upload_id, _file_key(fd))

    @property
    def id(self) -> str:
        return self._id

    @property
    def size(self) -> int:
        return self._size

    def _open_fd(self) -> int:
        if self._fd is None:
            raise InvalidArgument(f"upload {self._id} is closed")
        return self._fd

    def _running_hash(self, algorithm: str | None = None) -> _Hash:
        """The hash of the bytes written so far (rehashing them when not cached)."""
        algorithm = algorithm or self._algorithm
        if algorithm == self._algorithm and self._hash is not None:
            return self._hash
        fd = self._open_fd()
        h = hashlib.new(algorithm)
        pos = 0
        while pos < self._size:
            data = os.pread(fd, min(CHUNK, self._size - pos), pos)
            if not data:
                break
            h.update(data)
            pos += len(data)
        if algorithm == self._algorithm:
            self._hash = h
        return h

    def append(self, data: bytes) -> None:
        fd = self._open_fd()
        h = self._running_hash()
        view = memoryview(data)
        pos = self._size
        while view:
            n = os.pwrite(fd, view, pos)
            view = view[n:]
            pos += n
        h.update(data)
        self._size = pos
        if pos - self._written_back >= WRITEBACK:
            self._start_writeback()

    def _start_writeback(self) -> None:
        """Have the kernel start writing what was appended since the last call, so
        the fsync of ``commit`` finds little left to do (a hint, no durability)."""
        fd = self._open_fd()
        if self._size > self._written_back:
            start_writeback(fd)
        self._written_back = self._size

    def truncate(self, size: int) -> None:
        fd = self._open_fd()
        if size < 0 or size > self._size:
            raise InvalidArgument(f"cannot truncate upload of {self._size} bytes to {size}")
        if size == self._size:
            return
        os.ftruncate(fd, size)
        self._size = size
        self._written_back = min(self._written_back, size)
        self._hash = None

    def commit(self, expected: Digest) -> Sized:
        fd = self._open_fd()
        h = self._running_hash(expected.algorithm)
        actual = Digest(f"{expected.algorithm}:{h.hexdigest()}")
        if actual != expected:
            raise DigestMismatch(f"digest mismatch: expected {expected}, got {actual}")
        target = self._driver._full(blob_path(expected))
        target.parent.mkdir(parents=True, exist_ok=True)
        placed = False
        if target.exists():
            # already stored: renew it, so garbage collection sees it as fresh (these
            # bytes are dropped, so they need no fsync)
            with contextlib.suppress(FileNotFoundError):
                os.utime(target)
                placed = True
        if not placed:
            os.fsync(fd)
            os.rename(self._dir / "data", target)
            os.utime(target)
            _fsync_dir(target.parent)
        size = self._size
        self._finish()
        return Sized(actual, size)

    def close(self) -> None:
        if self._fd is None:
            return
        self._start_writeback()  # the tail of this request's chunk too
        if self._hash is not None:
            self._driver._remember_hash(self._id, _file_key(self._fd), self._hash)
        else:
            self._driver._forget_hash(self._id)
        os.close(self._fd)
        self._fd = None

    def cancel(self) -> None:
        self._finish()

    def _finish(self) -> None:
        """Remove the upload directory (still holding the lock), then close."""
        self._driver._forget_hash(self._id)
        shutil.rmtree(self._dir, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        # a writer dropped without close() (a cancelled request) must not keep its lock
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FilesystemWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

