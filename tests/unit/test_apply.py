"""The extractor: every member type, whiteouts in both modes, hostile tars that
try to write outside the destination, and overlay vs delete-mode round trips."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.archive.apply import OPAQUE_XATTR, apply_layer
from dockyard.errors import ArchiveError
from tests.helpers.fstree import (
    IS_ROOT,
    TarBuilder,
    overlay,
    snapshot,
    supports_user_xattrs,
    tmpfs,
)

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="the extractor tests need root")

T = 1_600_000_000


def apply(tb: TarBuilder, dest: Path, whiteouts: str = "delete") -> int:
    dest.mkdir(parents=True, exist_ok=True)
    return apply_layer(tb.stream(), dest, whiteouts=whiteouts)  # type: ignore[arg-type]


@pytest.fixture
def xroot(tmp_path: Path) -> Iterator[Path]:
    """A directory whose filesystem keeps user.* xattrs (a tmpfs when tmp_path's does not)."""
    if supports_user_xattrs(tmp_path):
        yield tmp_path
    else:
        with tmpfs(tmp_path / "fs") as d:
            yield d


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Path]:
    """A sentinel directory beside the destinations; checked untouched afterwards,
    together with /etc/passwd."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"keep")
    passwd = Path("/etc/passwd")
    before = (passwd.read_bytes(), passwd.stat().st_mtime_ns, snapshot(outside, times="ns"))
    yield outside
    assert (passwd.read_bytes(), passwd.stat().st_mtime_ns, snapshot(outside, times="ns")) \
        == before


# -- member types ---------------------------------------------------------------------------


def test_every_member_type(xroot: Path) -> None:
    dest = xroot / "dest"
    tb = (
        TarBuilder()
        .dir("bin/", mode=0o755, mtime=T + 1)
        .file("bin/su", b"#!su\n", mode=0o4755, uid=0, gid=0, mtime=T + 2)
        .file("bin/tool", b"x" * 3_000_000, mode=0o750, uid=1000, gid=1001, mtime=T + 3,
              xattrs={"user.origin": b"layer", "trusted.note": b"\x00\xffbin"})
        .hardlink("bin/tool2", "bin/tool")
        .symlink("bin/sh", "busybox", uid=5, gid=6, mtime=T + 4)
        .dir("tmp", mode=0o1777, mtime=T + 5, xattrs={"user.dir": b"yes"})
        .dir("dev/", mtime=T + 6)
        .chardev("dev/null", 1, 3, mode=0o666, mtime=T + 7)
        .blockdev("dev/loop0", 7, 0, mode=0o660, gid=6)
        .fifo("dev/initctl", mode=0o600)
        .file("tmp/late", b"written after tmp's header")
    )
    size = apply(tb, dest)
    assert size == 5 + 3_000_000 + len("busybox") + len("written after tmp's header")

    su = (dest / "bin/su").lstat()
    assert stat.S_IMODE(su.st_mode) == 0o4755 and su.st_mtime_ns == (T + 2) * 10**9
    tool = (dest / "bin/tool").lstat()
    assert (stat.S_IMODE(tool.st_mode), tool.st_uid, tool.st_gid) == (0o750, 1000, 1001)
    assert (dest / "bin/tool").read_bytes() == b"x" * 3_000_000
    assert os.getxattr(dest / "bin/tool", "user.origin") == b"layer"
    assert os.getxattr(dest / "bin/tool", "trusted.note") == b"\x00\xffbin"
    assert (dest / "bin/tool2").lstat().st_ino == tool.st_ino
    sh = (dest / "bin/sh").lstat()
    assert stat.S_ISLNK(sh.st_mode) and os.readlink(dest / "bin/sh") == "busybox"
    assert (sh.st_uid, sh.st_gid, sh.st_mtime_ns) == (5, 6, (T + 4) * 10**9)
    tmp = (dest / "tmp").lstat()
    assert stat.S_IMODE(tmp.st_mode) == 0o1777
    assert tmp.st_mtime_ns == (T + 5) * 10**9  # set after tmp/late was written
    assert os.getxattr(dest / "tmp", "user.dir") == b"yes"
    assert (dest / "bin").lstat().st_mtime_ns == (T + 1) * 10**9
    null = (dest / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666 and null.st_mtime_ns == (T + 7) * 10**9
    loop = (dest / "dev/loop0").lstat()
    assert stat.S_ISBLK(loop.st_mode) and os.major(loop.st_rdev) == 7 and loop.st_gid == 6
    assert stat.S_ISFIFO((dest / "dev/initctl").lstat().st_mode)


def test_root_entry_and_missing_parents(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    apply(TarBuilder().dir("./", mode=0o700, mtime=T).file("a/b/c", b"c"), dest)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700 and dest.stat().st_mtime_ns == T * 10**9
    assert stat.S_IMODE((dest / "a").stat().st_mode) == 0o755  # made as Docker does
    assert (dest / "a/b/c").read_bytes() == b"c"


def test_later_duplicates_win(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    (dest / "olddir").mkdir(parents=True)
    (dest / "olddir/child").write_bytes(b"x")
    (dest / "keepdir").mkdir()
    (dest / "keepdir/child").write_bytes(b"kept")
    (dest / "wasfile").write_bytes(b"file")
    tb = (
        TarBuilder()
        .file("f", b"one").file("f", b"two")
        .file("olddir", b"now a file")
        .dir("keepdir", mode=0o700)
        .dir("wasfile")
        .dir("d").file("d", b"dir replaced by file")
        .file("s", b"file").symlink("s", "target")
    )
    apply(tb, dest)
    assert (dest / "f").read_bytes() == b"two"
    assert (dest / "olddir").read_bytes() == b"now a file"
    assert (dest / "keepdir/child").read_bytes() == b"kept"
    assert stat.S_IMODE((dest / "keepdir").stat().st_mode) == 0o700
    assert (dest / "wasfile").is_dir()
    assert (dest / "d").read_bytes() == b"dir replaced by file"
    assert os.readlink(dest / "s") == "target"


def test_hardlink_to_existing_file_and_errors(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "parentfile").write_bytes(b"from the parent layer")
    apply(TarBuilder().hardlink("link", "parentfile"), dest)
    assert (dest / "link").stat().st_ino == (dest / "parentfile").stat().st_ino
    with pytest.raises(ArchiveError, match="does not exist"):
        apply(TarBuilder().hardlink("x", "missing"), dest)
    (dest / "adir").mkdir()
    with pytest.raises(ArchiveError, match="directory"):
        apply(TarBuilder().hardlink("y", "adir"), dest)


def test_user_xattr_refused_is_an_error_but_security_is_skipped(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs") as fs:
        if supports_user_xattrs(fs):
            dest = fs / "sym"
            # user.* on a symlink is refused by Linux: skipped, not an error
            apply(TarBuilder().symlink("l", "x", xattrs={"user.a": b"1"}), dest)
            assert os.path.islink(dest / "l")
        dest = fs / "sec"
        apply(TarBuilder().file("f", b"1", xattrs={"security.ima": b"\x03bogus"}), dest)
        assert (dest / "f").read_bytes() == b"1"
    # overlay's own xattrs are never taken from a tar
    dest = tmp_path / "ovl"
    apply(TarBuilder().dir("d", xattrs={"trusted.overlay.opaque": b"y",
                                        "trusted.overlay.redirect": b"/etc"}), dest, "overlay")
    assert [x for x in os.listxattr(dest / "d") if x.startswith("trusted.overlay.")] == []


def test_bad_tar_and_unknown_type(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ArchiveError):
        apply_layer(io.BytesIO(b"not a tar" * 100), dest, whiteouts="delete")
    data = TarBuilder().file("big", b"y" * 100_000).bytes()
    with pytest.raises(ArchiveError, match="EOF"):
        apply_layer(io.BytesIO(data[:50_000]), dest, whiteouts="delete")
    with pytest.raises(ArchiveError, match="unsupported"):
        apply(TarBuilder()._add("sparse", b"S"), dest)


# -- whiteouts --------------------------------------------------------------------------------


def _parent_tree(dest: Path) -> None:
    for rel in ("gone", "d/a", "d/b", "d/sub/deep", "keep/x", "opq/old1", "opq/sub/old2",
                "opq/same"):
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"old " + rel.encode())


def test_whiteouts_delete_mode(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    _parent_tree(dest)
    tb = (
        TarBuilder()
        .whiteout("gone").whiteout("d").whiteout("keep/not-there")
        .dir("opq/").file("opq/before", b"b").file("opq/same", b"new same")
        .dir("opq/sub/").file("opq/sub/new", b"n")
        .opaque("opq")
        .file("opq/after", b"a")
        .whiteout("never/existed/x")
        .opaque("nowhere")
    )
    apply(tb, dest)
    assert not (dest / "gone").exists() and not (dest / "d").exists()
    assert (dest / "keep/x").exists()
    assert sorted(os.listdir(dest / "opq")) == ["after", "before", "same", "sub"]
    assert (dest / "opq/same").read_bytes() == b"new same"
    assert os.listdir(dest / "opq/sub") == ["new"]  # old2 came from the parent: gone
    assert not (dest / "never").exists() and not (dest / "nowhere").exists()


def test_whiteouts_overlay_mode(tmp_path: Path) -> None:
    dest = tmp_path / "layer"
    tb = (
        TarBuilder()
        .whiteout("gone", uid=3, gid=4)
        .dir("opq/").opaque("opq").file("opq/new", b"n")
        .whiteout("deep/dir/x")
        .whiteout("redo").dir("redo/")  # deleted then recreated in one layer: opaque
        .opaque("")
        .whiteout("w").file("w/x", b"under a deleted name")
    )
    apply(tb, dest, "overlay")
    assert os.getxattr(dest / "w", OPAQUE_XATTR) == b"y"
    assert (dest / "w/x").read_bytes() == b"under a deleted name"
    st = (dest / "gone").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and (st.st_uid, st.st_gid) == (3, 4)
    assert os.getxattr(dest / "opq", OPAQUE_XATTR) == b"y"
    assert stat.S_ISCHR((dest / "deep/dir/x").lstat().st_mode)
    assert os.getxattr(dest / "redo", OPAQUE_XATTR) == b"y"
    assert os.getxattr(dest, OPAQUE_XATTR) == b"y"
    assert not list(dest.rglob(".wh.*"))


# -- hostile tars ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../../x", "a/../b", "/etc/passwd"])
@pytest.mark.parametrize("whiteouts", ["delete", "overlay"])
def test_refuses_names_outside(tmp_path: Path, watch: Path, name: str, whiteouts: str) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError):
        apply(TarBuilder().file(name, b"evil"), dest, whiteouts)
    with pytest.raises(ArchiveError):
        apply(TarBuilder().whiteout(name), dest, whiteouts)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("whiteouts", ["delete", "overlay"])
def test_symlinks_resolve_inside_dest(tmp_path: Path, watch: Path, whiteouts: str) -> None:
    dest = tmp_path / "dest"
    out = str(watch)
    tb = (
        TarBuilder()
        .symlink("evil", "/etc").file("evil/passwd", b"root::0:0::/:/bin/sh\n")
        .symlink("up", "../../..").file("up/x", b"x")
        .symlink("out", out).file("out/keep", b"clobbered?").file("out/new", b"n")
        .symlink("rel", "a/../../../" + out.lstrip("/")).file("rel/new2", b"n2")
        .dir("swap/").file("swap/a", b"a").symlink("swap", out).file("swap/b", b"b")
        .symlink("self", ".").file("self/self/selfish", b"s")
        .symlink("back", out).file("back/first", b"f").dir("back/").file("back/y", b"y")
    )
    apply(tb, dest, whiteouts)
    assert (dest / "etc/passwd").read_bytes() == b"root::0:0::/:/bin/sh\n"
    assert (dest / "x").read_bytes() == b"x"
    inside = dest / out.lstrip("/")
    assert (inside / "keep").read_bytes() == b"clobbered?"
    assert sorted(os.listdir(inside)) == ["b", "first", "keep", "new", "new2"]
    assert (dest / "back").is_dir() and os.listdir(dest / "back") == ["y"]
    assert (dest / "selfish").read_bytes() == b"s"


@pytest.mark.parametrize("whiteouts", ["delete", "overlay"])
def test_hostile_hardlinks(tmp_path: Path, watch: Path, whiteouts: str) -> None:
    dest = tmp_path / "dest"
    for target in ("/etc/passwd", "../../outside/keep", "a/../../outside/keep"):
        with pytest.raises(ArchiveError):
            apply(TarBuilder().hardlink("pw", target), dest, whiteouts)
    # through a symlink, the target resolves inside dest, where it does not exist
    with pytest.raises(ArchiveError, match="does not exist"):
        apply(TarBuilder().symlink("evil", "/etc").hardlink("pw", "evil/passwd"), dest, whiteouts)
    with pytest.raises(ArchiveError, match="does not exist"):
        apply(TarBuilder().symlink("o", str(watch)).hardlink("k", "o/keep"), dest, whiteouts)
    assert (Path("/etc/passwd").stat().st_nlink, (watch / "keep").stat().st_nlink) == (1, 1)
    # a final symlink is linked itself, not what it points at
    apply(TarBuilder().symlink("ln", "/etc/passwd").hardlink("ln2", "ln"), dest, whiteouts)
    assert os.readlink(dest / "ln2") == "/etc/passwd"


def test_parent_layer_symlinks_are_followed_in_scope(tmp_path: Path, watch: Path) -> None:
    dest = tmp_path / "dest"
    (dest / "usr/lib").mkdir(parents=True)
    (dest / "lib").symlink_to("/usr/lib")
    (dest / "out").symlink_to(watch)
    (dest / "file").symlink_to(watch / "keep")
    tb = (
        TarBuilder()
        .file("lib/x", b"lib x").file("out/keep", b"no").whiteout("out/keep")
        .file("file", b"replaces the link, not written through")
        .opaque("out")
    )
    apply(tb, dest)
    assert (dest / "usr/lib/x").read_bytes() == b"lib x"
    assert os.path.islink(dest / "lib")
    assert (dest / "file").read_bytes() == b"replaces the link, not written through"
    assert os.listdir(dest / str(watch).lstrip("/")) == []


@pytest.mark.parametrize("whiteouts", ["delete", "overlay"])
def test_symlink_loops_and_non_dirs(tmp_path: Path, watch: Path, whiteouts: str) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError, match="symbolic links"):
        apply(TarBuilder().symlink("a", "b").symlink("b", "a").file("a/x", b""), dest, whiteouts)
    with pytest.raises(ArchiveError, match="not a directory"):
        apply(TarBuilder().file("f", b"").file("f/x", b""), dest, whiteouts)


def test_whiteout_and_opaque_through_symlinks_stay_inside(tmp_path: Path, watch: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "o").symlink_to(watch)
    (dest / "up").symlink_to("../..")
    apply(TarBuilder().whiteout("o/keep").opaque("up").whiteout("up/outside"), dest)
    assert os.listdir(dest) == []  # "up" resolved to dest itself, made opaque: all cleared
    assert (watch / "keep").read_bytes() == b"keep"


# -- round trip: delete mode == overlay of overlay-mode layers --------------------------------


def _layers() -> list[TarBuilder]:
    base = (
        TarBuilder()
        .dir("etc/", mtime=T).file("etc/passwd", b"root:x:0:0\n", mtime=T)
        .file("etc/motd", b"hello\n").file("etc/issue", b"x")
        .dir("opt/", mtime=T).dir("opt/app/", mtime=T).file("opt/app/bin", b"bin", mode=0o755)
        .dir("opt/app/lib/", mtime=T).file("opt/app/lib/a.so", b"so")
        .dir("var/", mtime=T).dir("var/cache/", mtime=T).file("var/cache/c", b"c")
        .dir("usr/", mtime=T).dir("usr/lib/", mtime=T).symlink("lib", "usr/lib")
        .file("usr/lib/libc.so", b"libc", xattrs={"user.k": b"v"})
        .hardlink("usr/lib/libc.so.6", "usr/lib/libc.so")
        .file("tofile", b"").dir("todir/", mtime=T).file("todir/x", b"x")
        .dir("dev/", mtime=T).chardev("dev/null", 1, 3, mode=0o666).fifo("dev/fifo")
    )
    top = (
        TarBuilder()
        .dir("etc/", mtime=T + 10).file("etc/passwd", b"root:x:0:0\nme:x:1000\n", mtime=T + 10)
        .whiteout("etc/motd", mtime=T + 10)
        .dir("opt/", mtime=T + 10).dir("opt/app/", mtime=T + 10).opaque("opt/app")
        .file("opt/app/bin", b"new bin", mode=0o700).dir("opt/app/new/", mtime=T + 10)
        .whiteout("var")
        .dir("tofile/", mtime=T + 10).file("tofile/inside", b"i")
        .file("todir", b"now a file")
        .dir("usr/", mtime=T + 10).dir("usr/lib/", mtime=T + 10)
        .file("usr/lib/added", b"a").symlink("usr/lib/libc.so", "libc.so.6")
        .dir("srv/", mode=0o700, uid=33, gid=33, mtime=T + 10)
        .file("srv/index.html", b"<h1>", uid=33, gid=33, xattrs={"user.srv": b"1"})
        .hardlink("srv/index2.html", "srv/index.html")
    )
    return [base, top]


def test_delete_mode_equals_overlay_of_layer_dirs(xroot: Path) -> None:
    layers = _layers()
    datas = [tb.bytes() for tb in layers]
    vfs = xroot / "vfs"
    vfs.mkdir()
    dirs = []
    for i, data in enumerate(datas):
        apply_layer(io.BytesIO(data), vfs, whiteouts="delete")
        d = xroot / f"layer{i}"
        d.mkdir()
        apply_layer(io.BytesIO(data), d, whiteouts="overlay")
        dirs.append(d)
    with overlay(xroot / "merged", list(reversed(dirs))) as merged:
        want = snapshot(merged)
    got = snapshot(vfs)
    assert got == want
    assert "/var" not in got and "/etc/motd" not in got and "/opt/app/lib" not in got
    assert (vfs / "srv/index.html").stat().st_ino == (vfs / "srv/index2.html").stat().st_ino


def test_large_layer_is_streamed(tmp_path: Path) -> None:
    """A file bigger than any buffer arrives intact (chunked copy)."""
    blob = hashlib.sha256(b"seed").digest() * (5 * (1 << 20) // 32 + 7)
    dest = tmp_path / "dest"
    assert apply(TarBuilder().file("big", blob), dest) == len(blob)
    assert (dest / "big").read_bytes() == blob
