"""The differ: the same container activity in an overlay mount and in a plain
copied tree gives the same changes, and the layer written from either, applied
to the parent, rebuilds the container's tree."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dockyard.archive.apply import apply_layer
from dockyard.archive.diff import (
    change_order,
    naive_changes,
    overlay_changes,
    overlay_layer_tar,
    write_layer_tar,
)
from dockyard.archive.tarwrite import TarStats
from dockyard.drivers.base import Change
from tests.helpers.fstree import (
    IS_ROOT,
    TarBuilder,
    copy_tree,
    hardlink_groups,
    overlay,
    snapshot,
)

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="overlay mounts need root")

T = 1_600_000_000


@dataclass
class Container:
    """One parent image (as vfs tree and as overlay layer dirs) and a container
    on it twice: an overlay mount (upper over the layer dirs) and a copy."""

    parent: Path  # the parent's full tree (vfs)
    lowers: list[Path]  # overlay layer dirs, top first
    upper: Path
    merged: Path  # overlay mount of upper over lowers
    copy: Path  # a copy of parent, the container's root on vfs
    scratch: Path

    def run(self, ops: Callable[[Path], object]) -> None:
        ops(self.merged)
        ops(self.copy)

    def parent_copy(self, name: str) -> Path:
        dest = self.scratch / name
        copy_tree(self.parent, dest)
        return dest


@contextlib.contextmanager
def make_container(tmp_path: Path, layers: list[TarBuilder]) -> Iterator[Container]:
    datas = [tb.bytes() for tb in layers]
    parent = tmp_path / "parent"
    parent.mkdir()
    lowers: list[Path] = []
    for i, data in enumerate(datas):
        apply_layer(io.BytesIO(data), parent, whiteouts="delete")
        d = tmp_path / f"layer{i}"
        d.mkdir()
        apply_layer(io.BytesIO(data), d, whiteouts="overlay")
        lowers.insert(0, d)
    copy = tmp_path / "copy"
    copy_tree(parent, copy)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    upper = tmp_path / "upper"
    with overlay(tmp_path / "merged", lowers, upper, tmp_path / "work") as merged:
        yield Container(parent, lowers, upper, merged, copy, scratch)


def base_layers() -> list[TarBuilder]:
    base = (
        TarBuilder()
        .dir("bin/", mtime=T).file("bin/sh", b"#!sh", mode=0o755, mtime=T)
        .dir("etc/", mtime=T).file("etc/passwd", b"root:x:0:0\n", mtime=T)
        .file("etc/group", b"root:x:0:\n", mtime=T).file("etc/shadow", b"", mode=0o640, mtime=T)
        .file("etc/issue", b"x", mtime=T).file("etc/motd", b"m", mtime=T)
        .dir("tmp/", mode=0o1777, mtime=T)
        .dir("opt/", mtime=T).dir("opt/app/", mtime=T).file("opt/app/bin", b"v1", mtime=T)
        .dir("opt/app/lib/", mtime=T).file("opt/app/lib/a.so", b"a", mtime=T)
        .dir("var/", mtime=T).dir("var/cache/", mtime=T).file("var/cache/c", b"c", mtime=T)
        .file("tofile", b"f", mtime=T).dir("todir/", mtime=T).file("todir/x", b"x", mtime=T)
        .dir("usr/", mtime=T).dir("usr/lib/", mtime=T)
        .file("usr/lib/libc.so", b"libc", mtime=T).file("usr/lib/libm.so", b"libm", mtime=T)
        .dir("srv/", mtime=T).file("srv/old", b"old", mtime=T)
    )
    top = (
        TarBuilder()
        .dir("etc/", mtime=T + 1).whiteout("etc/motd", mtime=T + 1)
        .dir("srv/", mtime=T + 1).opaque("srv").file("srv/new", b"new", mtime=T + 1)
    )
    return [base, top]


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    with make_container(tmp_path, base_layers()) as c:
        yield c


def check_everything(c: Container) -> list[Change]:
    """The two differs agree, and each way of writing the layer rebuilds the container."""
    assert snapshot(c.merged, times="none") == snapshot(c.copy, times="none")
    ov = overlay_changes(c.upper, c.lowers)
    naive = naive_changes(c.parent, c.copy)
    assert ov == naive
    assert ov == sorted(ov, key=change_order)

    merged_want = snapshot(c.merged)
    copy_want = snapshot(c.copy)
    tars: dict[str, tuple[Callable[[io.BytesIO], TarStats], object]] = {
        "naive": (lambda out: write_layer_tar(c.copy, naive, out), copy_want),
        "upper": (lambda out: write_layer_tar(c.upper, ov, out), merged_want),
        "upper-opaque": (
            lambda out: write_layer_tar(c.upper, ov, out, whiteouts_from="overlay"),
            merged_want,
        ),
        "fast": (lambda out: overlay_layer_tar(c.upper, c.lowers, out), merged_want),
    }
    for name, (writer, want) in tars.items():
        buf = io.BytesIO()
        stats = writer(buf)
        data = buf.getvalue()
        assert stats.written == len(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = tar.getmembers()
        assert stats.entries == len(members)
        assert stats.content_size == sum(m.size for m in members if m.isreg()) + sum(
            len(m.linkname.encode()) for m in members if m.issym()
        )
        again = io.BytesIO()
        writer(again)
        assert again.getvalue() == data, f"{name}: not deterministic"
        dest = c.parent_copy(f"apply-{name}")
        apply_layer(io.BytesIO(data), dest, whiteouts="delete")
        assert snapshot(dest) == want, name
        # the same tar as an overlay layer dir on top of the parent's
        layer = c.scratch / f"layer-{name}"
        layer.mkdir()
        apply_layer(io.BytesIO(data), layer, whiteouts="overlay")
        with overlay(c.scratch / f"mnt-{name}", [layer, *c.lowers]) as mnt:
            assert snapshot(mnt) == want, name + " (overlay)"
    return ov


def tar_members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


# -- docker diff examples ---------------------------------------------------------------------


def test_new_tree_like_docker(container: Container) -> None:
    def ops(root: Path) -> None:
        (root / "data/www/html").mkdir(parents=True)
        (root / "data/www/html/index.html").write_text("<h1>b1</h1>\n")

    container.run(ops)
    changes = check_everything(container)
    assert changes == [
        Change("A", "/data"),
        Change("A", "/data/www"),
        Change("A", "/data/www/html"),
        Change("A", "/data/www/html/index.html"),
    ]
    buf = io.BytesIO()
    write_layer_tar(container.copy, changes, buf)
    members = tar_members(buf.getvalue())
    assert [m.name for m in members] == ["data", "data/www", "data/www/html",
                                         "data/www/html/index.html"]
    raw = buf.getvalue()
    assert b"data/\x00" in raw[:512]  # directory names end with a slash
    assert all((m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "") for m in members)
    assert [m.size for m in members] == [0, 0, 0, 12]
    assert members[0].isdir() and members[3].isfile()


def test_modified_file_lists_its_dir(container: Container) -> None:
    container.run(lambda root: (root / "etc/passwd").open("a").write("me:x:1000:1000\n"))
    assert check_everything(container) == [Change("C", "/etc"), Change("C", "/etc/passwd")]


def test_nothing_changed(container: Container) -> None:
    container.run(lambda root: [p.read_bytes() for p in root.rglob("*") if p.is_file()])
    assert check_everything(container) == []


# -- everything at once -----------------------------------------------------------------------


def scenario(root: Path) -> None:
    with (root / "etc/passwd").open("a") as f:  # modify
        f.write("me:x:1000:1000\n")
    (root / "etc/issue").unlink()  # delete a file
    shutil.rmtree(root / "var")  # delete a tree
    shutil.rmtree(root / "opt/app")  # replace a directory: overlay makes it opaque
    (root / "opt/app").mkdir()
    (root / "opt/app/bin").write_bytes(b"v2")
    os.chmod(root / "etc/group", 0o600)  # metadata only
    os.chown(root / "etc/shadow", 0, 42)
    os.symlink("../etc/passwd", root / "bin/pw")  # new symlink
    (root / "tofile").unlink()  # file -> directory
    (root / "tofile").mkdir()
    (root / "tofile/x").write_bytes(b"x")
    shutil.rmtree(root / "todir")  # directory -> file
    (root / "todir").write_bytes(b"now a file")
    (root / "data/www").mkdir(parents=True)  # new tree with a hardlink inside
    (root / "data/www/index.html").write_bytes(b"<h1>")
    os.link(root / "data/www/index.html", root / "data/www/index2.html")
    os.setxattr(root / "usr/lib/libm.so", "user.note", b"set in the container")
    os.mkfifo(root / "tmp/fifo")
    (root / "tmp/scratch").write_bytes(b"")  # created and deleted: only tmp's mtime moves
    (root / "tmp/scratch").unlink()
    (root / "etc/motd").write_bytes(b"back")  # deleted by the parent's top layer, made again
    (root / "srv/old").write_bytes(b"hidden by the parent's opaque srv")
    (root / "srv/new").unlink()


def test_scenario(container: Container) -> None:
    container.run(scenario)
    changes = check_everything(container)
    assert changes == [
        Change("C", "/bin"),
        Change("A", "/bin/pw"),
        Change("A", "/data"),
        Change("A", "/data/www"),
        Change("A", "/data/www/index.html"),
        Change("A", "/data/www/index2.html"),
        Change("C", "/etc"),
        Change("C", "/etc/group"),
        Change("D", "/etc/issue"),
        Change("A", "/etc/motd"),
        Change("C", "/etc/passwd"),
        Change("C", "/etc/shadow"),
        Change("C", "/opt"),
        Change("C", "/opt/app"),
        Change("C", "/opt/app/bin"),
        Change("D", "/opt/app/lib"),
        Change("C", "/srv"),
        Change("D", "/srv/new"),
        Change("A", "/srv/old"),
        Change("C", "/tmp"),
        Change("A", "/tmp/fifo"),
        Change("C", "/todir"),
        Change("C", "/tofile"),
        Change("A", "/tofile/x"),
        Change("C", "/usr"),
        Change("C", "/usr/lib"),
        Change("C", "/usr/lib/libm.so"),
        Change("D", "/var"),
    ]
    buf = io.BytesIO()
    overlay_layer_tar(container.upper, container.lowers, buf)
    names = [m.name for m in tar_members(buf.getvalue())]
    assert "opt/app/.wh..wh..opq" in names and "var/.wh.." not in names
    assert names.index("opt/app/.wh..wh..opq") == names.index("opt/app") + 1
    assert ".wh.var" in names and "etc/.wh.issue" in names
    buf = io.BytesIO()
    write_layer_tar(container.copy, changes, buf)
    members = {m.name: m for m in tar_members(buf.getvalue())}
    assert members["data/www/index2.html"].islnk()
    assert members["data/www/index2.html"].linkname == "data/www/index.html"
    wh = members["opt/app/.wh.lib"]
    assert (wh.isfile(), wh.size, wh.mode, wh.uid) == (True, 0, 0, 0)
    assert members["usr/lib/libm.so"].pax_headers["SCHILY.xattr.user.note"] == \
        "set in the container"
    dest = container.parent_copy("hardlinks")
    apply_layer(io.BytesIO(buf.getvalue()), dest, whiteouts="delete")
    assert hardlink_groups(dest) == [["data/www/index.html", "data/www/index2.html"]]


def test_write_never_follows_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real/f").write_bytes(b"inside")
    (root / "link").symlink_to("/etc")
    with pytest.raises(OSError):  # a change list naming a path under a symlink
        write_layer_tar(root, [Change("A", "/link/passwd")], io.BytesIO())
    buf = io.BytesIO()
    write_layer_tar(root, [Change("A", "/link"), Change("A", "/real/f")], buf)
    members = tar_members(buf.getvalue())
    assert [(m.name, m.type) for m in members] == [
        ("link", tarfile.SYMTYPE), ("real", tarfile.DIRTYPE), ("real/f", tarfile.REGTYPE)]


def test_odd_names_round_trip(tmp_path: Path) -> None:
    """Non-UTF-8 and long names, long link targets, binary xattrs: pax records."""
    root = tmp_path / "root"
    root.mkdir()
    odd = os.fsdecode(b"caf\xe9-\xff")
    deep = root / ("d" * 120) / ("e" * 120)
    deep.mkdir(parents=True)
    (deep / odd).write_bytes(b"odd")
    os.setxattr(deep / odd, "user.bin", b"\x00\xff\xfe")
    os.setxattr(deep / odd, "trusted.overlay.origin", b"not in a layer")
    (root / "link").symlink_to("t" * 300)
    os.utime(root / "link", ns=(T * 10**9, T * 10**9), follow_symlinks=False)
    for p in (deep / odd, deep, deep.parent):
        os.utime(p, (T, T))
    buf = io.BytesIO()
    write_layer_tar(root, naive_changes(None, root), buf)
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_layer(io.BytesIO(buf.getvalue()), dest, whiteouts="delete")
    assert snapshot(dest) == snapshot(root)
    assert os.listxattr(dest / deep.relative_to(root) / odd) == ["user.bin"]


def test_naive_without_parent(tmp_path: Path) -> None:
    (tmp_path / "a/b").mkdir(parents=True)
    (tmp_path / "a/b/c").write_bytes(b"")
    (tmp_path / "a-b").write_bytes(b"")
    assert naive_changes(None, tmp_path) == [
        Change("A", "/a"), Change("A", "/a/b"), Change("A", "/a/b/c"), Change("A", "/a-b")]


# -- random trees and activity ----------------------------------------------------------------

NAMES = ["a", "b"]
paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), paths, st.binary(max_size=20)),
        st.tuples(st.just("append"), paths),
        st.tuples(st.just("delete"), paths),
        st.tuples(st.just("mkdir"), paths),
        st.tuples(st.just("symlink"), paths, paths),
        st.tuples(st.just("chmod"), paths),
    ),
    min_size=1,
    max_size=10,
)
trees = st.dictionaries(paths, st.one_of(st.binary(max_size=10), st.none(), paths), min_size=2,
                        max_size=10)


def tree_layer(tree: dict[str, bytes | str | None]) -> TarBuilder:
    """``None``: a directory, bytes: a file, str: a symlink. Parents made as needed."""
    tb = TarBuilder()
    made: set[str] = set()
    for path, what in sorted(tree.items()):
        parts = path.split("/")
        if any("/".join(parts[:i]) in made and tree.get("/".join(parts[:i])) is not None
               for i in range(1, len(parts))):
            continue  # under a file or symlink
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in made:
                tb.dir(d + "/", mtime=T)
                made.add(d)
        if path in made:
            continue
        made.add(path)
        if what is None:
            tb.dir(path + "/", mtime=T)
        elif isinstance(what, bytes):
            tb.file(path, what, mtime=T)
        else:
            tb.symlink(path, what, mtime=T)
    return tb


def do(root: Path, op: tuple[object, ...]) -> None:
    kind, path = op[0], root / str(op[1])
    try:
        if kind == "write":
            path.parent.mkdir(parents=True, exist_ok=True)
            assert isinstance(op[2], bytes)
            path.write_bytes(op[2])
        elif kind == "append":
            with path.open("ab") as f:
                f.write(b"+")
        elif kind == "delete":
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        elif kind == "mkdir":
            path.mkdir(parents=True)
        elif kind == "symlink":
            path.symlink_to(str(op[2]))
        elif kind == "chmod" and not path.is_symlink():
            # only real changes: a chmod that changes nothing (or undoes an earlier one)
            # still copies the file up, and overlay reports that as C, as Docker does
            mode = stat.S_IMODE(path.stat().st_mode)
            if not mode & 0o010:
                path.chmod(mode | 0o010)
    except OSError:
        pass  # the same failure happens on both sides


def do_all(root: Path, activity: list[tuple[str, ...]]) -> None:
    for op in activity:
        do(root, op)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tree=trees, activity=ops)
def test_random_activity(tmp_path_factory: pytest.TempPathFactory,
                         tree: dict[str, bytes | str | None],
                         activity: list[tuple[str, ...]]) -> None:
    tmp = tmp_path_factory.mktemp("random")
    with make_container(tmp, [tree_layer(tree)]) as c:
        c.run(lambda root: do_all(root, activity))
        changes = check_everything(c)
        event(f"{min(len(changes), 6)} changes")
        for kind in sorted({ch.kind for ch in changes}):
            event(f"has {kind}")
