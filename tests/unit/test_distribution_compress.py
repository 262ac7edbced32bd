"""Deterministic parallel compression of pushed layers."""

from __future__ import annotations

import gzip
import io
import random

import pytest
import zstandard

from dockyard.archive.compression import decompressed
from dockyard.distribution.compress import BLOCK, compress, compression_of, layer_media_type


def _data(n: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    # half random, half repetitive: blocks compress differently
    return (rng.randbytes(n // 2) + b"dockyard layer " * (n // 30))[:n]


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12345])
def test_same_bytes_for_any_thread_count(kind: str, size: int) -> None:
    data = _data(size)
    outputs = set()
    for threads in (1, 2, 5):
        out = io.BytesIO()
        result = compress(io.BytesIO(data), out, kind, size=len(data), threads=threads)
        raw = out.getvalue()
        assert result.size == len(raw)
        outputs.add((result.digest, raw))
        if kind == "gzip":
            assert gzip.decompress(raw) == data
            assert raw[4:8] == b"\0\0\0\0"  # mtime 0
        else:
            assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read() == data
        plain, found = decompressed(io.BytesIO(raw))
        assert found == kind and plain.read() == data
    assert len(outputs) == 1


def test_progress_counts_input() -> None:
    seen: list[int] = []
    data = _data(2 * BLOCK + 10)
    compress(io.BytesIO(data), io.BytesIO(), "gzip", progress=seen.append, threads=2)
    assert seen[-1] == len(data)
    assert seen == sorted(seen)


def test_media_types() -> None:
    assert layer_media_type("gzip") == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert layer_media_type("zstd") == "application/vnd.oci.image.layer.v1.tar+zstd"
    assert compression_of("application/vnd.oci.image.layer.v1.tar+gzip") == "gzip"
    assert compression_of("application/vnd.oci.image.layer.v1.tar") == ""
