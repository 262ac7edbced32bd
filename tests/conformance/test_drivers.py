"""The storage driver suite: every driver (vfs, overlay, btrfs) passes the same tests.

Three crafted layers (files, dirs, symlinks, hardlinks, a device, a fifo,
whiteouts, opaque dirs, type changes) must give the same root filesystem on
every driver; the same activity in a container must give the same changes and
the same diff, and the diff applied on the parent must give back the
container's tree.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockyard.drivers.base import Change, StorageDriver
from dockyard.drivers.common import mounts_under
from dockyard.drivers.select import DRIVERS
from dockyard.errors import Conflict, InvalidArgument, NotFound

pytestmark = pytest.mark.needs_root

MTIME = 1_700_000_000


def chain_id(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


L1, L2, L3 = chain_id("layer1"), chain_id("layer1+2"), chain_id("layer1+2+3")
CID, CID2 = "c0ffee" * 10 + "0001", "c0ffee" * 10 + "0002"


# -- crafted layers ------------------------------------------------------------------------


@dataclass(frozen=True)
class E:
    """One tar member: kind f(ile) d(ir) l(symlink) h(ardlink) c(har dev) p(fifo)."""

    name: str
    kind: str = "f"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""
    dev: tuple[int, int] = (0, 0)
    xattrs: tuple[tuple[str, str], ...] = ()


def D(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> E:
    return E(name, "d", mode=mode, uid=uid, gid=gid)


def WH(name: str) -> E:
    return E(name, "f", mode=0o644)


_TYPES = {
    "f": tarfile.REGTYPE,
    "d": tarfile.DIRTYPE,
    "l": tarfile.SYMTYPE,
    "h": tarfile.LNKTYPE,
    "c": tarfile.CHRTYPE,
    "p": tarfile.FIFOTYPE,
}


def layer_tar(entries: list[E]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name + ("/" if e.kind == "d" and e.name != "." else ""))
            info.type = _TYPES[e.kind]
            info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, MTIME
            info.linkname = e.target
            info.devmajor, info.devminor = e.dev
            if e.xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs}
            info.size = len(e.data) if e.kind == "f" else 0
            tar.addfile(info, io.BytesIO(e.data) if e.kind == "f" else None)
    return buf.getvalue()


PASSWD = b"root:x:0:0:root:/root:/bin/sh\n"

LAYER1 = [
    D("bin"),
    E("bin/busybox", data=b"busybox-v1", mode=0o755),
    E("bin/ls", "h", target="bin/busybox", mode=0o755),
    E("bin/sh", "l", target="busybox", mode=0o777),
    E("bin/su", data=b"su", mode=0o4755),
    D("dev"),
    E("dev/null", "c", mode=0o666, dev=(1, 3)),
    D("etc"),
    E("etc/passwd", data=PASSWD),
    E("etc/shadow", data=b"root:*:19000::::::\n", mode=0o640, gid=42),
    E("etc/hostname", data=b"base\n"),
    E("etc/motd", data=b"hello\n"),
    D("home"),
    D("home/user", mode=0o750, uid=1000, gid=1000),
    E("home/user/.profile", data=b"PS1='$ '\n", uid=1000, gid=1000),
    E("lib", "l", target="usr/lib", mode=0o777),
    D("run"),
    E("run/fifo", "p", mode=0o600),
    D("srv"),
    D("srv/www"),
    E("srv/www/index.html", data=b"old site\n"),
    D("tmp", mode=0o1777),
    D("usr"),
    D("usr/lib"),
    E("usr/lib/libc.so.6", data=b"libc", mode=0o755),
    D("usr/share"),
    D("usr/share/doc"),
    D("usr/share/doc/a"),
    E("usr/share/doc/a/README", data=b"a\n"),
    D("usr/share/doc/b"),
    E("usr/share/doc/b/README", data=b"b\n"),
    D("var"),
    D("var/cache"),
    D("var/cache/apt"),
    E("var/cache/apt/pkgcache.bin", data=b"cache"),
    D("var/log"),
    E("var/log/old.log", data=b"old\n"),
]

LAYER2 = [
    D(".", mode=0o711),
    D("etc"),
    WH("etc/.wh.hostname"),
    E("etc/passwd", data=PASSWD + b"user:x:1000:1000::/home/user:/bin/sh\n"),
    D("etc/motd"),  # a file becomes a directory
    E("etc/motd/10-welcome", data=b"welcome\n", xattrs=(("user.origin", "layer2"),)),
    D("opt"),
    D("opt/app"),
    E("opt/app/config.json", data=b"{}", mode=0o600),
    E("opt/app/run", data=b"#!/bin/sh\n", mode=0o755),
    E("opt/app/start", "h", target="opt/app/run", mode=0o755),
    E("opt/app/current", "l", target="/opt/app/run", mode=0o777),
    E("srv", data=b"srv is a file now\n"),  # a directory becomes a file
    D("usr"),
    D("usr/share"),
    D("usr/share/doc"),
    WH("usr/share/doc/.wh..wh..opq"),  # hides a/ and b/
    D("usr/share/doc/c"),
    E("usr/share/doc/c/README", data=b"c\n"),
    D("var"),
    WH("var/.wh.cache"),  # a whole directory
]

LAYER3 = [
    D("bin"),
    E("bin/ls", data=b"ls-v2", mode=0o755),  # replaces one name of a hardlinked pair
    D("etc"),
    E("etc/hostname", data=b"layer3\n"),  # back after its whiteout in layer 2
    D("opt"),
    D("opt/app"),
    WH("opt/app/.wh.config.json"),
    D("usr"),
    D("usr/lib"),
    E("usr/lib/libc.so.6", data=b"libc", mode=0o644),  # mode change only
    D("var"),
    D("var/log", mode=0o700),
    WH("var/log/.wh..wh..opq"),
    E("var/log/new.log", data=b"new\n"),
]

# path -> (kind, mode, uid, gid, payload); payload: content, link target or (major, minor)
Tree = dict[str, tuple[Any, ...]]

EXPECTED: Tree = {
    ".": ("d", 0o711, 0, 0, None),
    "bin": ("d", 0o755, 0, 0, None),
    "bin/busybox": ("f", 0o755, 0, 0, b"busybox-v1"),
    "bin/ls": ("f", 0o755, 0, 0, b"ls-v2"),
    "bin/sh": ("l", 0o777, 0, 0, "busybox"),
    "bin/su": ("f", 0o4755, 0, 0, b"su"),
    "dev": ("d", 0o755, 0, 0, None),
    "dev/null": ("c", 0o666, 0, 0, (1, 3)),
    "etc": ("d", 0o755, 0, 0, None),
    "etc/hostname": ("f", 0o644, 0, 0, b"layer3\n"),
    "etc/motd": ("d", 0o755, 0, 0, None),
    "etc/motd/10-welcome": ("f", 0o644, 0, 0, b"welcome\n"),
    "etc/passwd": ("f", 0o644, 0, 0, PASSWD + b"user:x:1000:1000::/home/user:/bin/sh\n"),
    "etc/shadow": ("f", 0o640, 0, 42, b"root:*:19000::::::\n"),
    "home": ("d", 0o755, 0, 0, None),
    "home/user": ("d", 0o750, 1000, 1000, None),
    "home/user/.profile": ("f", 0o644, 1000, 1000, b"PS1='$ '\n"),
    "lib": ("l", 0o777, 0, 0, "usr/lib"),
    "opt": ("d", 0o755, 0, 0, None),
    "opt/app": ("d", 0o755, 0, 0, None),
    "opt/app/current": ("l", 0o777, 0, 0, "/opt/app/run"),
    "opt/app/run": ("f", 0o755, 0, 0, b"#!/bin/sh\n"),
    "opt/app/start": ("f", 0o755, 0, 0, b"#!/bin/sh\n"),
    "run": ("d", 0o755, 0, 0, None),
    "run/fifo": ("p", 0o600, 0, 0, None),
    "srv": ("f", 0o644, 0, 0, b"srv is a file now\n"),
    "tmp": ("d", 0o1777, 0, 0, None),
    "usr": ("d", 0o755, 0, 0, None),
    "usr/lib": ("d", 0o755, 0, 0, None),
    "usr/lib/libc.so.6": ("f", 0o644, 0, 0, b"libc"),
    "usr/share": ("d", 0o755, 0, 0, None),
    "usr/share/doc": ("d", 0o755, 0, 0, None),
    "usr/share/doc/c": ("d", 0o755, 0, 0, None),
    "usr/share/doc/c/README": ("f", 0o644, 0, 0, b"c\n"),
    "var": ("d", 0o755, 0, 0, None),
    "var/log": ("d", 0o700, 0, 0, None),
    "var/log/new.log": ("f", 0o644, 0, 0, b"new\n"),
}
EXPECTED_LINKS = [["opt/app/run", "opt/app/start"]]


# -- looking at trees ------------------------------------------------------------------------


def _kind(mode: int) -> str:
    for test, k in (
        (stat.S_ISREG, "f"),
        (stat.S_ISDIR, "d"),
        (stat.S_ISLNK, "l"),
        (stat.S_ISCHR, "c"),
        (stat.S_ISBLK, "b"),
        (stat.S_ISFIFO, "p"),
        (stat.S_ISSOCK, "s"),
    ):
        if test(mode):
            return k
    raise AssertionError(f"unknown file type {mode:o}")


@dataclass
class Walk:
    tree: Tree  # path -> (kind, mode, uid, gid, payload)
    links: list[list[str]]  # hardlink groups
    xattrs: dict[str, list[tuple[str, bytes]]]  # path -> xattrs, where any
    mtimes: dict[str, int]  # regular files only, whole seconds

    def same_as(self, other: Walk, mtimes: bool = True) -> None:
        assert self.tree == other.tree
        assert self.links == other.links
        assert self.xattrs == other.xattrs
        if mtimes:
            assert self.mtimes == other.mtimes


def walk(root: Path) -> Walk:
    tree: Tree = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    xattrs: dict[str, list[tuple[str, bytes]]] = {}
    mtimes: dict[str, int] = {}

    def visit(path: Path, rel: str) -> None:
        st = os.lstat(path)
        kind = _kind(st.st_mode)
        payload: Any = None
        if kind == "f":
            payload = path.read_bytes()
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            mtimes[rel] = int(st.st_mtime)
        elif kind == "l":
            payload = os.readlink(path)
        elif kind in "cb":
            payload = (os.major(st.st_rdev), os.minor(st.st_rdev))
        mode = 0o777 if kind == "l" else stat.S_IMODE(st.st_mode)
        tree[rel] = (kind, mode, st.st_uid, st.st_gid, payload)
        if kind != "l":
            names = sorted(os.listxattr(path, follow_symlinks=False))
            found = [(n, os.getxattr(path, n, follow_symlinks=False)) for n in names]
            if found:
                xattrs[rel] = found
        if kind == "d":
            for name in sorted(os.listdir(path)):
                visit(path / name, name if rel == "." else f"{rel}/{name}")

    visit(root, ".")
    links = sorted(sorted(group) for group in inodes.values() if len(group) > 1)
    return Walk(tree, links, xattrs, mtimes)


def tar_members(data: bytes) -> list[tuple[str, str, int, int, int, str, str]]:
    """(name, type, mode, uid, gid, link target, sha256 of content) of each member, by name."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for m in tar:
            content = tar.extractfile(m).read() if m.isreg() else b""  # type: ignore[union-attr]
            kind = {tarfile.AREGTYPE: tarfile.REGTYPE}.get(m.type, m.type).decode()
            out.append(
                (
                    m.name.rstrip("/"),
                    kind,
                    m.mode & 0o7777,
                    m.uid,
                    m.gid,
                    m.linkname,
                    hashlib.sha256(content).hexdigest()[:16],
                )
            )
    return sorted(out)


# -- building blocks ------------------------------------------------------------------------


def build_chain(driver: StorageDriver) -> None:
    assert driver.create_layer(L1, None, io.BytesIO(layer_tar(LAYER1))) >= 0
    assert driver.create_layer(L2, L1, io.BytesIO(layer_tar(LAYER2))) >= 0
    assert driver.create_layer(L3, L2, io.BytesIO(layer_tar(LAYER3))) >= 0


def activity(root: Path) -> None:
    """What a container does to its root filesystem (like a Dockerfile RUN)."""
    for d in ("data", "data/www", "data/www/html"):
        os.mkdir(root / d)
        os.chmod(root / d, 0o755)
    (root / "data/www/html/index.html").write_bytes(b"<h1>hi</h1>\n")
    os.symlink("html", root / "data/www/current")
    with open(root / "etc/passwd", "ab") as f:  # modify a lower file
        f.write(b"www:x:33:33::/data/www:/bin/false\n")
    os.chmod(root / "etc/shadow", 0o600)  # metadata only
    os.unlink(root / "etc/hostname")  # a file becomes a symlink
    os.symlink("/proc/sys/kernel/hostname", root / "etc/hostname")
    os.unlink(root / "bin/su")  # delete a lower file
    shutil.rmtree(root / "usr/share/doc")  # delete a lower directory
    shutil.rmtree(root / "home/user")  # replace a lower directory (opaque on overlay)
    os.mkdir(root / "home/user")
    os.chmod(root / "home/user", 0o755)
    (root / "home/user/notes.txt").write_bytes(b"notes\n")


EXPECTED_CHANGES = [
    Change("C", "/bin"),
    Change("D", "/bin/su"),
    Change("A", "/data"),
    Change("A", "/data/www"),
    Change("A", "/data/www/current"),
    Change("A", "/data/www/html"),
    Change("A", "/data/www/html/index.html"),
    Change("C", "/etc"),
    Change("C", "/etc/hostname"),
    Change("C", "/etc/passwd"),
    Change("C", "/etc/shadow"),
    Change("C", "/home"),
    Change("C", "/home/user"),
    Change("D", "/home/user/.profile"),
    Change("A", "/home/user/notes.txt"),
    Change("C", "/usr"),
    Change("C", "/usr/share"),
    Change("D", "/usr/share/doc"),
]


def diff_bytes(driver: StorageDriver, cid: str) -> bytes:
    out = io.BytesIO()
    driver.diff(cid, out)
    return out.getvalue()


def container_with_activity(driver: StorageDriver, cid: str = CID) -> Path:
    build_chain(driver)
    driver.create_rw(cid, L3)
    root = driver.mount(cid)
    activity(root)
    return root


class Unreadable(io.RawIOBase):
    """A tar that must not be read (the layer already exists)."""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        raise AssertionError("create_layer read the tar of a layer it already has")


def mounted_at(path: Path) -> bool:
    return str(path) in mounts_under(path)


# -- the suite ------------------------------------------------------------------------------


def test_layers_give_the_expected_rootfs(driver: StorageDriver) -> None:
    build_chain(driver)
    assert driver.layers() == sorted([L1, L2, L3])
    assert all(driver.has_layer(c) for c in (L1, L2, L3))
    driver.create_rw(CID, L3)
    got = walk(driver.mount(CID))
    assert got.tree == EXPECTED
    assert got.links == EXPECTED_LINKS
    assert got.xattrs == {"etc/motd/10-welcome": [("user.origin", b"layer2")]}
    assert set(got.mtimes.values()) == {MTIME}
    assert driver.changes(CID) == []  # a fresh writable layer changed nothing


def test_each_layer_alone(driver: StorageDriver) -> None:
    """A container on a lower layer of the chain sees that layer, not the ones above."""
    build_chain(driver)
    driver.create_rw(CID, L1)
    driver.create_rw(CID2, L2)
    one, two = walk(driver.mount(CID)).tree, walk(driver.mount(CID2)).tree
    assert one["etc/hostname"][4] == b"base\n" and one["bin/ls"][4] == b"busybox-v1"
    assert one["srv"][0] == "d" and "usr/share/doc/a/README" in one
    assert "etc/hostname" not in two and two["etc/motd"][0] == "d"
    assert two["opt/app/config.json"][4] == b"{}" and "var/cache" not in two
    assert walk(driver.mount(CID)).links == [["bin/busybox", "bin/ls"]]


def test_changes(driver: StorageDriver) -> None:
    container_with_activity(driver)
    assert driver.changes(CID) == EXPECTED_CHANGES
    driver.unmount(CID)
    assert driver.changes(CID) == EXPECTED_CHANGES  # the same with the layer unmounted


def test_diff_applied_on_the_parent_gives_the_container_back(driver: StorageDriver) -> None:
    root = container_with_activity(driver)
    before = walk(root)
    data = diff_bytes(driver, CID)
    names = [m[0] for m in tar_members(data)]
    assert "data/www/html/index.html" in names and "bin/.wh.su" in names
    assert "usr/share/.wh.doc" in names and "etc/motd" not in names

    committed = chain_id("committed")
    driver.create_layer(committed, L3, io.BytesIO(data))
    driver.create_rw(CID2, committed)
    after = walk(driver.mount(CID2))
    after.same_as(before)
    assert driver.changes(CID2) == []


def test_container_on_scratch(driver: StorageDriver) -> None:
    driver.create_rw(CID, None)
    root = driver.mount(CID)
    assert os.listdir(root) == []
    (root / "hello").write_bytes(b"hello\n")
    os.mkdir(root / "etc")
    os.chmod(root / "etc", 0o755)
    assert driver.changes(CID) == [Change("A", "/etc"), Change("A", "/hello")]
    members = tar_members(diff_bytes(driver, CID))
    assert [(m[0], m[1]) for m in members] == [("etc", "5"), ("hello", "0")]
    assert driver.graph_data(CID, None).get("LowerDir") is None


@pytest.mark.btrfs
def test_same_everywhere(all_drivers: dict[str, StorageDriver]) -> None:
    """Trees, changes and diffs compared across the drivers, not only with expectations."""
    walks, changes, diffs = {}, {}, {}
    for name, d in all_drivers.items():
        walks[name] = walk(container_with_activity(d))
        changes[name] = d.changes(CID)
        diffs[name] = tar_members(diff_bytes(d, CID))
    first = next(iter(all_drivers))
    for name in all_drivers:
        walks[name].same_as(walks[first], mtimes=False)
        assert changes[name] == changes[first], name
        assert diffs[name] == diffs[first], name


def test_create_layer_is_idempotent(driver: StorageDriver) -> None:
    build_chain(driver)
    inode = os.stat(driver.home / "layers" / L2).st_ino
    size = driver.create_layer(L2, L1, io.BytesIO(layer_tar(LAYER2)))
    assert driver.create_layer(L2, L1, io.BufferedReader(Unreadable())) == size
    assert os.stat(driver.home / "layers" / L2).st_ino == inode
    assert driver.layers() == sorted([L1, L2, L3])
    with pytest.raises(Conflict):  # same chain id, another parent: refused
        driver.create_layer(L2, L3, io.BufferedReader(Unreadable()))
    assert not [p for p in os.listdir(driver.home) if p.startswith("tmp-")]


def test_concurrent_create_layer(driver: StorageDriver) -> None:
    data = layer_tar(LAYER1)
    sizes: list[int] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            sizes.append(driver.create_layer(L1, None, io.BytesIO(data)))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(sizes)) == 1 and driver.layers() == [L1]
    assert not [p for p in os.listdir(driver.home) if p.startswith("tmp-")]


def test_shared_layer_unpacked_once(driver: StorageDriver) -> None:
    build_chain(driver)
    for cid in (CID, CID2):  # the second image pull finds the chain there
        for chain, parent in ((L1, None), (L2, L1), (L3, L2)):
            if not driver.has_layer(chain):
                driver.create_layer(chain, parent, io.BufferedReader(Unreadable()))
        driver.create_rw(cid, L3)
    one, two = driver.mount(CID), driver.mount(CID2)
    assert one != two
    (one / "only-in-one").write_bytes(b"1")
    os.unlink(one / "etc/passwd")
    assert not (two / "only-in-one").exists()
    assert (two / "etc/passwd").read_bytes().startswith(PASSWD)
    assert driver.changes(CID2) == []
    assert len(driver.layers()) == 3


def test_mount_is_idempotent_and_remove_rw_leaves_nothing(driver: StorageDriver) -> None:
    build_chain(driver)
    driver.create_rw(CID, L3)
    driver.create_rw(CID, L3)  # again: a no-op
    root = driver.mount(CID)
    assert driver.mount(CID) == root
    if driver.name == "overlay":
        assert mounts_under(driver.home) == [str(root)]
    (root / "file").write_bytes(b"x")
    busy = open(root / "file", "rb")  # noqa: SIM115 - keeps the mount busy
    try:
        driver.remove_rw(CID)  # busy: falls back to a lazy unmount
    finally:
        busy.close()
    assert mounts_under(driver.home) == []
    assert os.listdir(driver.home / "containers") == []
    assert not [p for p in os.listdir(driver.home) if p.startswith("tmp-")]
    driver.remove_rw(CID)  # missing: a no-op
    with pytest.raises(NotFound):
        driver.mount(CID)


def test_unmount_then_mount_again(driver: StorageDriver) -> None:
    root = container_with_activity(driver)
    before = walk(root)
    driver.unmount(CID)
    driver.unmount(CID)
    if driver.name == "overlay":
        assert not mounted_at(root)
    walk(driver.mount(CID)).same_as(before)


def test_remove_layer(driver: StorageDriver) -> None:
    build_chain(driver)
    driver.create_rw(CID, L3)
    with pytest.raises(Conflict, match="container"):
        driver.remove_layer(L3)
    with pytest.raises(Conflict, match="layer"):
        driver.remove_layer(L2)
    driver.remove_rw(CID)
    for chain in (L3, L2, L1):
        driver.remove_layer(chain)
        assert not driver.has_layer(chain)
    driver.remove_layer(L1)  # missing: a no-op
    assert driver.layers() == []
    assert os.listdir(driver.home / "layers") == []
    if driver.name == "overlay":
        assert os.listdir(driver.home / "l") == []


def test_missing_and_invalid(driver: StorageDriver) -> None:
    tar = layer_tar(LAYER1)
    with pytest.raises(NotFound):
        driver.create_layer(L2, L1, io.BytesIO(tar))
    with pytest.raises(NotFound):
        driver.create_rw(CID, L1)
    for call in (driver.mount, driver.changes, driver.unmount):
        with pytest.raises(NotFound):
            call(CID)
    bad = ["../../etc", "", "A" * 64, chain_id("x")[:63] + "/", "sha256:" + chain_id("x")]
    for b in bad:
        with pytest.raises(InvalidArgument):
            driver.create_layer(b, None, io.BytesIO(tar))
        with pytest.raises(InvalidArgument):
            driver.has_layer(b)
        with pytest.raises(InvalidArgument):
            driver.remove_layer(b)
        with pytest.raises(InvalidArgument):
            driver.create_rw(b, None)
        with pytest.raises(InvalidArgument):
            driver.remove_rw(b)
        with pytest.raises(InvalidArgument):
            driver.create_rw(CID, b or "x")
    assert driver.layers() == [] and os.listdir(driver.home / "containers") == []


@contextlib.contextmanager
def locked_dir(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def test_crash_leftovers_are_cleaned(driver: StorageDriver) -> None:
    build_chain(driver)
    dead, alive = driver.home / "tmp-0123456789abcdef", driver.home / "tmp-fedcba9876543210"
    for tmp in (dead, alive):
        tmp.mkdir()
        if driver.name == "btrfs":  # killed half-way through a snapshot
            subprocess.run(
                [
                    "btrfs",
                    "subvolume",
                    "snapshot",
                    str(driver.home / "layers" / L3 / "root"),
                    str(tmp / "root"),
                ],
                check=True,
                capture_output=True,
            )
        else:
            (tmp / "root" / "etc").mkdir(parents=True)
            (tmp / "root" / "etc" / "passwd").write_bytes(PASSWD)
            os.chmod(tmp / "root" / "etc", 0o500)
    with locked_dir(alive):  # a live process is still building this one
        driver.cleanup()
        assert not dead.exists() and alive.exists()
    DRIVERS[driver.name](driver.home)  # opening the driver cleans up too
    assert not alive.exists()
    assert driver.layers() == sorted([L1, L2, L3])


def test_layers_unsynced_at_a_crash_are_dropped(driver: StorageDriver) -> None:
    """A new layer carries the boot ID until its filesystem is flushed; one still
    marked by an earlier boot may have lost files, so opening the driver drops it
    (unless something sits on it), and it can be unpacked again."""
    from dockyard.durable import boot_id
    from dockyard.store.durability import clear_markers

    build_chain(driver)
    markers = {c: driver.unsynced_marker(c) for c in (L1, L2, L3)}
    assert all(m.read_text() == boot_id() for m in markers.values())
    clear_markers([markers[L1]])  # synced before the crash
    assert not markers[L1].exists()
    markers[L2].write_text("an-earlier-boot")
    markers[L3].write_text("an-earlier-boot")
    driver.create_rw("c" * 64, L2)  # a container sits on L2: it stays
    DRIVERS[driver.name](driver.home)  # open after the "crash"
    assert driver.layers() == sorted([L1, L2])
    driver.remove_rw("c" * 64)
    DRIVERS[driver.name](driver.home)  # now nothing holds L2
    assert driver.layers() == [L1]
    driver.create_layer(L2, L1, io.BytesIO(layer_tar(LAYER2)))
    driver.create_layer(L3, L2, io.BytesIO(layer_tar(LAYER3)))
    driver.create_rw(CID, L3)
    assert walk(driver.mount(CID)).tree == EXPECTED


KILLED_WRITER = """
import sys
from pathlib import Path
from dockyard.drivers.select import DRIVERS
DRIVERS[sys.argv[1]](Path(sys.argv[2])).create_layer(sys.argv[3], None, sys.stdin.buffer)
"""


def test_killed_create_layer_leaves_only_garbage(driver: StorageDriver) -> None:
    data = layer_tar(LAYER1)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, driver.name, str(driver.home), L1],
        stdin=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(data[: len(data) // 2])  # half a tar: the unpacker waits for more
        proc.stdin.flush()
        deadline = time.monotonic() + 20
        while not list(driver.home.glob("tmp-*/*")):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    assert not driver.has_layer(L1) and driver.layers() == []
    assert list(driver.home.glob("tmp-*"))
    driver.cleanup()
    assert not list(driver.home.glob("tmp-*"))
    driver.create_layer(L1, None, io.BytesIO(data))  # and the layer can still be made
    assert driver.has_layer(L1)


def test_overlay_repairs_its_short_links(overlay_driver: StorageDriver) -> None:
    driver = overlay_driver
    build_chain(driver)
    links = driver.home / "l"
    (links / (driver.home / "layers" / L2 / "link").read_text()).unlink()  # killed before link
    (links / "DANGLINGLINK").symlink_to("../layers/" + chain_id("gone") + "/diff")
    driver.cleanup()
    assert not (links / "DANGLINGLINK").is_symlink()
    driver.create_rw(CID, L3)
    assert walk(driver.mount(CID)).tree == EXPECTED
    assert len(os.listdir(links)) == 3


def test_status_and_graph_data(driver: StorageDriver) -> None:
    build_chain(driver)
    driver.create_rw(CID, L3)
    status = dict(driver.status())
    data = driver.graph_data(CID, None)
    if driver.name == "overlay":
        assert status == {
            "Backing Filesystem": status["Backing Filesystem"],
            "Supports d_type": "true",
            "Native Overlay Diff": "true",
            "userxattr": "false",
        }
        assert status["Backing Filesystem"] in ("extfs", "xfs", "btrfs", "tmpfs")
        rw = driver.home / "containers" / CID
        assert data == {
            "LowerDir": ":".join(str(driver.home / "layers" / c / "diff") for c in (L3, L2, L1)),
            "MergedDir": str(rw / "merged"),
            "UpperDir": str(rw / "upper"),
            "WorkDir": str(rw / "work"),
        }
        image = driver.graph_data(None, L1)
        assert image["UpperDir"] == str(driver.home / "layers" / L1 / "diff")
        assert "LowerDir" not in image
    elif driver.name == "btrfs":
        assert status["Build Version"].startswith("Btrfs v")
        assert data == {}
    else:
        assert status == {} and data == {}


def test_overlay_128_layers(overlay_driver: StorageDriver) -> None:
    """Deep chains are a matter of overlay's mount options (one page); the others copy."""
    driver = overlay_driver
    parent = None
    for i in range(128):
        chain = chain_id(f"deep-{i}")
        entries = [D("layers"), E(f"layers/{i:03d}", data=str(i).encode())]
        if i:
            entries.append(WH(f"layers/.wh.{i - 1:03d}.gone"))
        entries.append(E(f"layers/{i:03d}.gone", data=b"x"))
        driver.create_layer(chain, parent, io.BytesIO(layer_tar(entries)))
        parent = chain
    driver.create_rw(CID, parent)
    root = driver.mount(CID)
    names = sorted(os.listdir(root / "layers"))
    assert names == [f"{i:03d}" for i in range(128)] + ["127.gone"]
    assert (root / "layers" / "000").read_bytes() == b"0"
    (root / "layers" / "000").write_bytes(b"changed")
    assert driver.changes(CID) == [Change("C", "/layers"), Change("C", "/layers/000")]


# -- choosing a driver ---------------------------------------------------------------------------


def test_open_driver_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockyard.drivers.select import open_driver

    monkeypatch.delenv("DOCKYARD_STORAGE_DRIVER", raising=False)
    assert open_driver(tmp_path / "a", None).name == "overlay"  # root, ext4/xfs/tmpfs
    assert open_driver(tmp_path / "b", "overlay2").name == "overlay"
    monkeypatch.setenv("DOCKYARD_STORAGE_DRIVER", "vfs")
    assert open_driver(tmp_path / "c", None).name == "vfs"
    (tmp_path / "d").mkdir()
    (tmp_path / "d/config.json").write_text('{"storage-driver": "overlay"}')
    assert open_driver(tmp_path / "d", None).name == "overlay"  # config beats env
    assert open_driver(tmp_path / "d", "vfs").name == "vfs"  # the caller beats both
    with pytest.raises(InvalidArgument, match="unknown storage driver"):
        open_driver(tmp_path / "e", "aufs")
    with pytest.raises(InvalidArgument, match="btrfs"):
        open_driver(tmp_path / "e", "btrfs")


def test_open_driver_keeps_the_store_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dockyard.drivers.select import open_driver

    monkeypatch.delenv("DOCKYARD_STORAGE_DRIVER", raising=False)
    vfs = open_driver(tmp_path, "vfs")
    vfs.create_layer(L1, None, io.BytesIO(layer_tar(LAYER1[:3])))
    assert open_driver(tmp_path, None).name == "vfs"  # auto-detects the store's driver
    with pytest.raises(InvalidArgument, match="already has layers of the vfs driver"):
        open_driver(tmp_path, "overlay")
    monkeypatch.setenv("DOCKYARD_STORAGE_DRIVER", "overlay")
    with pytest.raises(InvalidArgument, match="already has layers"):
        open_driver(tmp_path, None)
    vfs.remove_layer(L1)
    assert open_driver(tmp_path, None).name == "overlay"


@pytest.mark.btrfs
def test_open_driver_on_btrfs(btrfs_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockyard.drivers.select import open_driver

    monkeypatch.delenv("DOCKYARD_STORAGE_DRIVER", raising=False)
    root = btrfs_root / "select-test"
    try:
        assert open_driver(root, None).name == "btrfs"
        assert open_driver(root, "overlay").name == "overlay"  # overlay on btrfs works too
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_overlay_refuses_a_home_on_overlayfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dockyard.drivers.overlay import OverlayDriver
    from dockyard.drivers.select import open_driver

    monkeypatch.delenv("DOCKYARD_STORAGE_DRIVER", raising=False)
    for d in ("lower", "upper", "work", "merged"):
        (tmp_path / d).mkdir()
    subprocess.run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={tmp_path}/lower,upperdir={tmp_path}/upper,workdir={tmp_path}/work",
            str(tmp_path / "merged"),
        ],
        check=True,
    )
    try:
        with pytest.raises(InvalidArgument, match="overlayfs"):
            OverlayDriver(tmp_path / "merged/store/overlay")
        assert open_driver(tmp_path / "merged/store", None).name == "vfs"
    finally:
        subprocess.run(["umount", str(tmp_path / "merged")], check=True)
