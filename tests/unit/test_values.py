"""Digests, -c change instructions, timestamps."""

from __future__ import annotations

import io

import pytest

from dockyard.digest import Digest, HashingReader, copy_hashing, is_digest, verify
from dockyard.errors import DigestMismatch, InvalidArgument
from dockyard.oci.timefmt import format_ns, parse_ns
from dockyard.ops.changes import apply_changes

HEX = "a" * 64


def test_digest_validation() -> None:
    d = Digest(f"sha256:{HEX}")
    assert (d.algorithm, d.hex, d.short()) == ("sha256", HEX, HEX[:12])
    for bad in ("sha256:abc", f"md5:{HEX}", HEX, f"sha256:{HEX.upper()}"):
        assert not is_digest(bad)


def test_hash_while_copying_and_verify() -> None:
    data = b"x" * 3_000_000
    out = io.BytesIO()
    got = copy_hashing(io.BytesIO(data), out)
    assert got.size == len(data) and out.getvalue() == data
    assert got.digest == Digest.of_bytes(data)
    reader = HashingReader(io.BytesIO(data))
    reader.drain()
    assert reader.digest() == got.digest
    verify(got.digest, got, len(data))
    with pytest.raises(DigestMismatch, match="size"):
        verify(got.digest, got, 5)
    with pytest.raises(DigestMismatch, match="digest"):
        verify(f"sha256:{HEX}", got)


def test_timestamps_round_trip() -> None:
    ns = parse_ns("2026-11-27T22:04:41.329482654Z")
    assert format_ns(ns) == "2026-11-27T22:04:41.329482654Z"
    assert format_ns(parse_ns("2026-11-27T22:04:41.5Z")) == "2026-11-27T22:04:41.5Z"
    assert parse_ns("2026-11-27T23:04:41+01:00") == parse_ns("2026-11-27T22:04:41Z")
    assert parse_ns("garbage") == 0


def test_changes_shell_and_json_forms() -> None:
    cfg = apply_changes({}, ["CMD echo hi", "ENTRYPOINT [\"/bin/sh\"]", "ONBUILD RUN x"])
    assert cfg["Entrypoint"] == ["/bin/sh"] and cfg["Cmd"] is None
    assert apply_changes({}, ["CMD echo hi"])["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert cfg["OnBuild"] == ["RUN x"]
    assert apply_changes({"WorkingDir": "/a"}, ["WORKDIR b"])["WorkingDir"] == "/a/b"
    assert apply_changes({"Env": ["A=1"]}, ["ENV A 2"])["Env"] == ["A=2"]
    assert apply_changes({}, ["LABEL a=\"x y\" b=2"])["Labels"] == {"a": "x y", "b": "2"}
    assert sorted(apply_changes({}, ["EXPOSE 8000-8002"])["ExposedPorts"]) == [
        "8000/tcp", "8001/tcp", "8002/tcp"]


@pytest.mark.parametrize(
    ("change", "message"),
    [("FOO bar", "unknown instruction: FOO"), ("RUN echo", "run is not a valid change command"),
     ("EXPOSE 99999", "invalid containerPort"), ("EXPOSE 80/xyz", "invalid proto"),
     ("ONBUILD FROM x", "isn't allowed as an ONBUILD trigger")],
)
def test_bad_changes(change: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        apply_changes({}, [change])
