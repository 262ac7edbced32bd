"""File trees for the extractor and differ tests: crafted layer tars, tree
snapshots to compare, and overlay mounts that are always unmounted."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dockyard.archive.diff import read_xattrs

IS_ROOT = os.geteuid() == 0


class TarBuilder:
    """A layer tar member by member, names kept exactly as given."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(  # noqa: SIM115 -- closed by bytes()
            fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT
        )

    def _add(self, name: str, kind: bytes, data: bytes = b"", *, mode: int = 0o644,
             uid: int = 0, gid: int = 0, mtime: float = 1_600_000_000,
             linkname: str = "", xattrs: dict[str, bytes] | None = None,
             devmajor: int = 0, devminor: int = 0) -> TarBuilder:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.mtime = mtime
        info.linkname = linkname
        info.devmajor, info.devminor = devmajor, devminor
        info.size = len(data)
        if xattrs:
            info.pax_headers = {
                "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()
            }
        self.tar.addfile(info, io.BytesIO(data) if data else None)
        return self

    def file(self, name: str, data: bytes = b"", **kw: Any) -> TarBuilder:
        return self._add(name, tarfile.REGTYPE, data, **kw)

    def dir(self, name: str, **kw: Any) -> TarBuilder:
        kw.setdefault("mode", 0o755)
        return self._add(name, tarfile.DIRTYPE, **kw)

    def symlink(self, name: str, target: str, **kw: Any) -> TarBuilder:
        kw.setdefault("mode", 0o777)
        return self._add(name, tarfile.SYMTYPE, linkname=target, **kw)

    def hardlink(self, name: str, target: str, **kw: Any) -> TarBuilder:
        return self._add(name, tarfile.LNKTYPE, linkname=target, **kw)

    def chardev(self, name: str, major: int, minor: int, **kw: Any) -> TarBuilder:
        return self._add(name, tarfile.CHRTYPE, devmajor=major, devminor=minor, **kw)

    def blockdev(self, name: str, major: int, minor: int, **kw: Any) -> TarBuilder:
        return self._add(name, tarfile.BLKTYPE, devmajor=major, devminor=minor, **kw)

    def fifo(self, name: str, **kw: Any) -> TarBuilder:
        return self._add(name, tarfile.FIFOTYPE, **kw)

    def whiteout(self, name: str, **kw: Any) -> TarBuilder:
        parent, sep, base = name.rpartition("/")
        return self.file(f"{parent}{sep}.wh.{base}", mode=0, **kw)

    def opaque(self, directory: str, **kw: Any) -> TarBuilder:
        d = directory.rstrip("/")
        return self.file(f"{d}/.wh..wh..opq" if d else ".wh..wh..opq", mode=0, **kw)

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()

    def stream(self) -> io.BytesIO:
        return io.BytesIO(self.bytes())


def entry_facts(path: Path, st: os.stat_result, *, times: str) -> tuple[Any, ...]:
    """What a layer must reproduce of one entry. ``times``: "ns", "s" (whole
    seconds, what a tar keeps) or "none"."""
    mode = st.st_mode
    if times == "ns":
        mtime: int | None = st.st_mtime_ns
    elif times == "s":
        mtime = st.st_mtime_ns // 1_000_000_000
    else:
        mtime = None
    content: Any = None
    if stat.S_ISREG(mode):
        content = (st.st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    elif stat.S_ISLNK(mode):
        content = os.readlink(path)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        content = (os.major(st.st_rdev), os.minor(st.st_rdev))
    return (stat.filemode(mode), st.st_uid, st.st_gid, mtime, content,
            tuple(sorted(read_xattrs(str(path)).items())))


def snapshot(root: Path, *, times: str = "s") -> dict[str, tuple[Any, ...]]:
    """Every entry under ``root`` (not ``root`` itself), by relative path."""
    out: dict[str, tuple[Any, ...]] = {}

    def walk(d: Path, rel: str) -> None:
        for name in sorted(os.listdir(d)):
            p = d / name
            st = p.lstat()
            r = f"{rel}/{name}"
            out[r] = entry_facts(p, st, times=times)
            if stat.S_ISDIR(st.st_mode):
                walk(p, r)

    walk(root, "")
    return out


def hardlink_groups(root: Path) -> list[list[str]]:
    """Regular files sharing an inode, as sorted lists of paths."""
    by_inode: dict[tuple[int, int], list[str]] = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            st = p.lstat()
            if stat.S_ISREG(st.st_mode):
                by_inode.setdefault((st.st_dev, st.st_ino), []).append(str(p.relative_to(root)))
    return sorted(sorted(g) for g in by_inode.values() if len(g) > 1)


def copy_tree(src: Path, dst: Path) -> None:
    """An exact copy (owners, modes, ns times, xattrs, hardlinks, devices)."""
    subprocess.run(["cp", "-a", "--", str(src), str(dst)], check=True)


@contextlib.contextmanager
def overlay(target: Path, lowers: list[Path], upper: Path | None = None,
            work: Path | None = None) -> Iterator[Path]:
    """Mount overlayfs at ``target`` (lowers top first; read-only without
    ``upper``), unmounted on exit whatever happens."""
    target.mkdir(parents=True, exist_ok=True)
    opts = "lowerdir=" + ":".join(str(p) for p in lowers)
    if upper is not None:
        assert work is not None
        upper.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        opts += f",upperdir={upper},workdir={work}"
    opts += ",redirect_dir=off,metacopy=off,index=off"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


@contextlib.contextmanager
def tmpfs(target: Path) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def supports_user_xattrs(d: Path) -> bool:
    probe = d / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except OSError:
        return False
    finally:
        probe.unlink()
