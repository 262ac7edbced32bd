"""Content digests (``sha256:<hex>``) and hashing while copying."""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO, NamedTuple

from dockyard.errors import DigestMismatch, InvalidArgument

CHUNK = 1 << 20
_HEX = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


class Digest(str):
    """A validated digest string such as ``sha256:abc...``; compares as a plain str."""

    __slots__ = ()

    def __new__(cls, value: str) -> Digest:
        m = _DIGEST_RE.match(value)
        if not m:
            raise InvalidArgument(f"invalid digest format: {value!r}")
        algo, hexpart = m.group(1), m.group(2)
        want = _HEX.get(algo)
        if want is None:
            raise InvalidArgument(f"unsupported digest algorithm: {algo}")
        if len(hexpart) != want or not re.fullmatch(r"[a-f0-9]+", hexpart):
            raise InvalidArgument(f"invalid checksum digest length or format: {value!r}")
        return super().__new__(cls, value)

    @classmethod
    def from_hex(cls, hexpart: str, algorithm: str = "sha256") -> Digest:
        return cls(f"{algorithm}:{hexpart}")

    @classmethod
    def of_bytes(cls, data: bytes) -> Digest:
        return cls("sha256:" + hashlib.sha256(data).hexdigest())

    @property
    def algorithm(self) -> str:
        return self.split(":", 1)[0]

    @property
    def hex(self) -> str:
        return self.split(":", 1)[1]

    def short(self) -> str:
        """The 12-character form Docker prints for image IDs."""
        return self.hex[:12]


def is_digest(value: str) -> bool:
    try:
        Digest(value)
    except InvalidArgument:
        return False
    return True


class Sized(NamedTuple):
    digest: Digest
    size: int


class HashingReader:
    """Wraps a binary stream; hashes and counts every byte read through it."""

    def __init__(self, raw: BinaryIO, algorithm: str = "sha256") -> None:
        self._raw = raw
        self._hash = hashlib.new(algorithm)
        self._algorithm = algorithm
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._hash.update(data)
            self.size += len(data)
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        view = memoryview(buf)
        data = self._raw.read(len(view))
        n = len(data)
        view[:n] = data
        if n:
            self._hash.update(data)
            self.size += n
        return n

    def readable(self) -> bool:
        return True

    def digest(self) -> Digest:
        return Digest(f"{self._algorithm}:{self._hash.hexdigest()}")

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def copy_hashing(src: BinaryIO, dst: BinaryIO, limit: int | None = None) -> Sized:
    """Copy ``src`` to ``dst`` (at most ``limit`` bytes), returning digest and size."""
    h = hashlib.sha256()
    size = 0
    while True:
        want = CHUNK if limit is None else min(CHUNK, limit - size)
        if want <= 0:
            break
        data = src.read(want)
        if not data:
            break
        h.update(data)
        dst.write(data)
        size += len(data)
    return Sized(Digest("sha256:" + h.hexdigest()), size)


def hash_file(path: str) -> Sized:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while data := f.read(CHUNK):
            h.update(data)
            size += len(data)
    return Sized(Digest("sha256:" + h.hexdigest()), size)


def verify(
    expected: str, actual: Sized, expected_size: int | None = None, what: str = "blob"
) -> None:
    """Raise DigestMismatch unless ``actual`` matches what was promised."""
    if expected_size is not None and expected_size >= 0 and actual.size != expected_size:
        raise DigestMismatch(
            f"{what} {expected}: size mismatch: expected {expected_size} bytes, got {actual.size}"
        )
    if actual.digest != expected:
        raise DigestMismatch(f"{what}: digest mismatch: expected {expected}, got {actual.digest}")
