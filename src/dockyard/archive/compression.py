"""Detect and undo gzip / zstd / xz compression on a stream, with a bomb guard."""

from __future__ import annotations

import io
from typing import BinaryIO, cast

from dockyard.errors import ArchiveError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
BZIP2_MAGIC = b"BZh"

# A stream that expands more than MAX_RATIO times once past RATIO_GRACE bytes
# of output is refused as a decompression bomb.  Real layers stay far below:
# text-heavy filesystems compress about 5-10x, zero-filled files about 1000x.
MAX_RATIO = 1000
RATIO_GRACE = 64 << 20
READINTO_MAX = 64 << 10


class PeekReader(io.RawIOBase):
    """A reader that lets the caller look at the first bytes before consuming them."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._head = b""

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            more = self._raw.read(n - len(self._head))
            if not more:
                break
            self._head += more
        return self._head[:n]

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(b)
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._raw.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                out = self._head + self._raw.read()
                self._head = b""
                return out
            out = self._head[:n]
            self._head = self._head[n:]
            if len(out) < n:
                out += self._raw.read(n - len(out))
            return out
        return self._raw.read(n)


def sniff(head: bytes) -> str:
    """Name the compression of a stream from its first bytes: gzip, zstd, xz, bzip2 or ''."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(BZIP2_MAGIC) and len(head) >= 4 and head[3:4].isdigit():
        return "bzip2"
    return ""


class CountingReader:
    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.count += len(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:
        # isal's gzip reader fills its buffer (512 KiB) with readinto; short reads
        # keep the count close to what was decompressed, so the bomb guard fires early
        view = memoryview(b).cast("B")[:READINTO_MAX]
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


class BombGuard:
    """Counts decompressed bytes against compressed bytes and stops a bomb."""

    def __init__(self, inner: BinaryIO, counter: CountingReader, what: str) -> None:
        self._inner = inner
        self._counter = counter
        self._what = what
        self.out = 0

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._inner.read(n)
        except EOFError as e:
            raise ArchiveError(f"{self._what}: truncated compressed stream: unexpected EOF") from e
        except OSError as e:
            raise ArchiveError(f"{self._what}: corrupt compressed stream: {e}") from e
        except Exception as e:  # zstd and lzma raise their own error types
            if type(e).__name__ in ("ZstdError", "LZMAError"):
                raise ArchiveError(f"{self._what}: corrupt compressed stream: {e}") from e
            raise
        self.out += len(data)
        if self.out > RATIO_GRACE and self.out > MAX_RATIO * max(self._counter.count, 1):
            raise ArchiveError(
                f"{self._what}: refusing decompression bomb "
                f"(expands more than {MAX_RATIO}x: {self._counter.count} -> {self.out}+ bytes)"
            )
        return data

    def readable(self) -> bool:
        return True


def _zstd_reader(raw: BinaryIO) -> BinaryIO:
    import zstandard

    reader: BinaryIO = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return reader


def _gzip_reader(raw: BinaryIO) -> BinaryIO:
    try:
        from isal import igzip

        return cast(BinaryIO, igzip.IGzipFile(fileobj=raw, mode="rb"))  # type: ignore[no-untyped-call]
    except ImportError:  # pragma: no cover - isal is a declared dependency
        import gzip

        return cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb"))


def decompressed(raw: BinaryIO, what: str = "archive") -> tuple[BinaryIO, str]:
    """Return a reader of ``raw``'s uncompressed bytes and the compression found.

    ``raw`` may be a pipe: only the first few bytes are peeked.
    """
    peek = PeekReader(raw)
    kind = sniff(peek.peek(6))
    if not kind:
        return cast(BinaryIO, peek), ""
    counter = CountingReader(cast(BinaryIO, peek))
    source = cast(BinaryIO, counter)
    inner: BinaryIO
    if kind == "gzip":
        inner = _gzip_reader(source)
    elif kind == "zstd":
        inner = _zstd_reader(source)
    elif kind == "xz":
        import lzma

        inner = cast(BinaryIO, lzma.LZMAFile(source, "rb"))  # noqa: SIM115
    else:
        import bz2

        inner = cast(BinaryIO, bz2.BZ2File(source, "rb"))
    return cast(BinaryIO, BombGuard(inner, counter, what)), kind
