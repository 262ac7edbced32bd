"""The streaming tar reader, name safety, compression detection and the bomb guard."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import tarfile

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.archive.compression import decompressed, sniff
from dockyard.archive.layer import ingest_layer
from dockyard.archive.tarstream import TarReader, resolve_link, safe_member_name
from dockyard.archive.tarwrite import TarWriter, ustar_header
from dockyard.errors import ArchiveError
from tests.imagegen import layer_tar


def members(data: bytes) -> list[tuple[str, bytes]]:
    out = []
    for header, stream in TarReader(io.BytesIO(data)):
        out.append((header.name, stream.read()))
    return out


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_reader_agrees_with_tarfile(fmt: int) -> None:
    long_name = "d/" + "x" * 150 + "/file"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in [("a", b"1"), ("b/c", b"22" * 400)] + (
            [] if fmt == tarfile.USTAR_FORMAT else [(long_name, b"3")]
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    got = members(buf.getvalue())
    assert got[:2] == [("a", b"1"), ("b/c", b"22" * 400)]
    if fmt != tarfile.USTAR_FORMAT:
        assert got[2] == (long_name, b"3")


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text("abc/", min_size=1, max_size=20).filter(
    lambda s: not s.startswith("/") and "//" not in s and not s.endswith("/")),
    st.binary(max_size=2000), max_size=5))
def test_reader_reads_what_tarfile_writes(files: dict[str, bytes]) -> None:
    data = layer_tar(files)
    assert dict(members(data)) == files


def test_truncated_and_not_tar() -> None:
    data = layer_tar({"a": b"x" * 5000})
    with pytest.raises(ArchiveError, match="too short"):
        members(data[:100])
    for cut in (600, 1100, 3000):
        with pytest.raises(ArchiveError, match="unexpected EOF"):
            members(data[:cut])
    with pytest.raises(ArchiveError, match="not a tar"):
        members(b"hello world\n" * 100)
    with pytest.raises(ArchiveError, match="empty"):
        members(b"")


@pytest.mark.parametrize(
    ("name", "ok"),
    [("a/b", "a/b"), ("./a/./b/", "a/b"), (".", ""), ("a/../b", None), ("../x", None),
     ("/etc/passwd", None), ("a/b/../../..", None)],
)
def test_safe_member_name(name: str, ok: str | None) -> None:
    if ok is None:
        with pytest.raises(ArchiveError):
            safe_member_name(name)
    else:
        assert safe_member_name(name) == ok


def test_resolve_link() -> None:
    assert resolve_link("a/layer.tar", "../b/layer.tar") == "b/layer.tar"
    with pytest.raises(ArchiveError, match="outside"):
        resolve_link("a/layer.tar", "../../etc/passwd")


@pytest.mark.parametrize(
    ("compress", "kind"),
    [(gzip.compress, "gzip"), (zstandard.compress, "zstd"), (lzma.compress, "xz"),
     (lambda b: b, "")],
)
def test_decompressed_streams(compress: object, kind: str) -> None:
    raw = b"payload " * 10000
    packed = compress(raw)  # type: ignore[operator]
    assert sniff(packed[:6]) == kind
    reader, found = decompressed(io.BytesIO(packed))
    assert found == kind
    out = b""
    while chunk := reader.read(4096):
        out += chunk
    assert out == raw


def test_bomb_guard_stops_a_gzip_bomb() -> None:
    # 300 MB of zeros packs into ~300 kB: far past the ratio limit.
    comp = zstandard.ZstdCompressor(level=3).compressobj()
    parts = [comp.compress(b"\0" * (1 << 20)) for _ in range(300)]
    parts.append(comp.flush())
    bomb = b"".join(parts)
    reader, _ = decompressed(io.BytesIO(bomb))
    with pytest.raises(ArchiveError, match="bomb"):
        while reader.read(1 << 20):
            pass


def test_truncated_gzip_is_an_archive_error() -> None:
    packed = gzip.compress(layer_tar({"a": b"x" * 100000}))
    with pytest.raises(ArchiveError):
        ingest_layer(io.BytesIO(packed[: len(packed) // 2]), None)


def test_ingest_layer_hashes_uncompressed_and_compressed() -> None:
    tar = layer_tar({"a": b"abc"}, symlinks={"l": "a"})
    packed = gzip.compress(tar)
    out = io.BytesIO()
    info = ingest_layer(io.BytesIO(packed), out)
    assert out.getvalue() == tar
    assert info.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert info.compressed_digest == "sha256:" + hashlib.sha256(packed).hexdigest()
    assert (info.content_size, info.entries, info.compression) == (3 + 1, 2, "gzip")


def test_tar_writer_output_is_read_by_tarfile(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "blob"
    path.write_bytes(b"z" * 1234)
    out = io.BytesIO()
    tar = TarWriter(out)
    tar.add_dir("blobs")
    tar.add_file("blobs/x", str(path))
    tar.add_bytes("index.json", b"{}")
    tar.close()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as t:
        assert t.getnames() == ["blobs", "blobs/x", "index.json"]
        assert t.extractfile("blobs/x").read() == b"z" * 1234  # type: ignore[union-attr]


_names = st.text(st.characters(min_codepoint=32, max_codepoint=0x24F), min_size=1, max_size=120)


@settings(max_examples=400, deadline=None)
@given(
    name=_names,
    linkname=st.one_of(st.just(""), _names),
    kind=st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                          tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE]),
    mode=st.integers(0, 0o177777),
    uid=st.one_of(st.integers(0, 5000), st.integers(0, 8**8)),
    gid=st.integers(0, 8**7 + 5),
    size=st.one_of(st.integers(0, 1 << 20), st.integers(8**11 - 2, 8**11 + 2)),
    mtime=st.one_of(st.integers(-5, 2**34), st.floats(0, 2**33)),
    dev=st.tuples(st.integers(0, 8**7 + 1), st.integers(0, 300)),
    owner=st.sampled_from(["", "root", "a" * 40, "é"]),
    xattr=st.booleans(),
)
def test_ustar_header_is_tarfiles_pax_header(
    name: str, linkname: str, kind: bytes, mode: int, uid: int, gid: int, size: int,
    mtime: float, dev: tuple[int, int], owner: str, xattr: bool,
) -> None:
    """The fast header is byte for byte what tarfile writes, or None (then tarfile writes)."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    info.uid, info.gid, info.size, info.mtime = uid, gid, size, mtime
    info.devmajor, info.devminor = dev
    info.uname = info.gname = owner
    if xattr:
        info.pax_headers = {"SCHILY.xattr.user.a": "b"}
    fast = ustar_header(info)
    try:
        slow = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    except ValueError:  # a device number tarfile cannot write either
        assert fast is None
        return
    if fast is not None:
        assert fast == slow
    else:
        assert xattr or len(slow) > 512 or kind in (tarfile.CHRTYPE, tarfile.BLKTYPE)


def test_ustar_header_covers_the_common_entries() -> None:
    for kind in (tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE):
        info = tarfile.TarInfo("usr/lib/x86_64-linux-gnu/libc.so.6")
        info.type, info.size, info.mtime, info.mode = kind, 0, 1700000000, 0o755
        info.linkname = "libc-2.36.so" if kind == tarfile.SYMTYPE else ""
        info.devmajor, info.devminor = 1, 3
        assert ustar_header(info) == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
