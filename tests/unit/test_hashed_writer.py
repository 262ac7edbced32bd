"""HashedWriter: the hash and the file are exactly the bytes given, in order,
however writes and file copies interleave across its buffers."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from dockyard.archive import hashed_writer
from dockyard.archive.hashed_writer import HashedWriter


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small buffers so that a few MB cycle through every buffer many times."""
    monkeypatch.setattr(hashed_writer, "PIECE", 64 << 10)


def test_hash_and_file_match_the_input(tmp_path: Path) -> None:
    rng = random.Random(7)
    sources = []
    for i in range(40):
        path = tmp_path / f"src{i}"
        path.write_bytes(rng.randbytes(rng.choice([0, 1, 511, 70_000, 300_000])))
        sources.append(path)
    want = hashlib.sha256()
    out_path = tmp_path / "out"
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        writer = HashedWriter(fd)
        for path in sources:
            header = rng.randbytes(rng.choice([1, 512, 100_000]))
            writer.write(header)
            want.update(header)
            data = path.read_bytes()
            src = os.open(path, os.O_RDONLY)
            try:
                writer.copy_from(src, len(data))
            finally:
                os.close(src)
            want.update(data)
        digest, size = writer.finish()
    finally:
        os.close(fd)
    content = out_path.read_bytes()
    assert size == len(content)
    assert digest == want.hexdigest() == hashlib.sha256(content).hexdigest()


def test_a_shrunk_file_is_an_error(tmp_path: Path) -> None:
    src_path = tmp_path / "src"
    src_path.write_bytes(b"x" * 1000)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    src = os.open(src_path, os.O_RDONLY)
    try:
        writer = HashedWriter(fd)
        with pytest.raises(OSError, match="shrank"):
            writer.copy_from(src, 5000)
        writer.abandon()
    finally:
        os.close(src)
        os.close(fd)


def test_a_write_error_reaches_the_caller(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "out", os.O_RDONLY | os.O_CREAT, 0o600)  # not writable
    try:
        writer = HashedWriter(fd)
        with pytest.raises(OSError):
            for _ in range(20):
                writer.write(b"y" * (64 << 10))
            writer.finish()
    finally:
        os.close(fd)
