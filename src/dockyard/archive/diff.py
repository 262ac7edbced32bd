"""The one differ: what a container changed, and the OCI layer tar of it.

Two ways to find the changes, one answer (the driver suite checks they agree):

- :func:`naive_changes` compares a container's whole root with its parent's
  by metadata, like containers/storage's naive differ (``drivers/fsdiff.go``);
  every driver gets it for free.
- :func:`overlay_changes` reads an overlayfs upper dir and looks names up in
  the lower dirs; only overlay needs it.

The rules both follow (Docker's ``docker diff``):

- A path absent before is ``A``, and so is everything under a new directory.
- A path present before and gone is ``D`` (only the top of a deleted tree).
- A non-directory present on both sides is ``C`` when its type, mode, owner,
  size, mtime (ns), device number, symlink target or xattrs differ (naive);
  overlay reports ``C`` for every non-directory in the upper dir that the
  lowers have, as Docker does (a copy-up is a change).
- A directory present on both sides is ``C`` when its own metadata (type,
  mode, owner, mtime, xattrs) changed or anything below it changed, so the
  parents of every change are listed (``C /etc`` before ``C /etc/passwd``).
  A directory replaced by a new one (``rm -rf d; mkdir d``; an opaque dir in
  overlay) is compared like any other: what the old one held and the new one
  lacks is ``D``.
- The root itself is never listed. Xattrs that are overlay bookkeeping
  (``trusted.overlay.*``, ``user.overlay.*``) or host labels
  (``security.selinux``) are not part of a layer and are ignored.

Output order is a depth-first walk with siblings in byte order: a
directory comes right before what is under it (the order ``docker diff``
prints). Paths are absolute (``/data/www``).

Known differences between the two (neither arises from ordinary writes):
opening a lower file for writing without changing it, or hardlinking a lower
file, copies it up, so overlay says ``C`` where the naive differ sees no
metadata change; overlay's ``redirect_dir`` and ``metacopy`` features must be
off (they are by default on Debian), as Docker requires for its native diff.

Writing the layer: :func:`write_layer_tar` turns a change list into an OCI
layer tar read from a tree; :func:`overlay_layer_tar` is overlay's fast path,
a tar of the upper dir itself (whiteout devices -> ``.wh.`` files, opaque
dirs -> ``.wh..wh..opq``). Both never follow symlinks while reading (every
path is opened component by component with ``O_NOFOLLOW``), write numeric
owners with empty user/group names, whole-second mtimes, xattrs as pax
``SCHILY.xattr.*``, hardlinks within the layer as tar hardlinks, and are
deterministic for a given tree.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Literal

from dockyard.archive.apply import (
    OPAQUE_XATTR,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
    XATTR_PAX_PREFIX,
    is_overlay_xattr,
    is_whiteout_device,
)
from dockyard.archive.tarstream import safe_member_name
from dockyard.archive.tarwrite import TarStats, TarWriter
from dockyard.drivers.base import Change

log = logging.getLogger(__name__)

HOST_XATTRS = frozenset({"security.selinux"})
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


# -- shared helpers ------------------------------------------------------------------------


def change_order(change: Change) -> tuple[bytes, ...]:
    """Sort key giving the order both differs return (``sorted(changes, key=change_order)``)."""
    return tuple(os.fsencode(p) for p in change.path.split("/"))


def layer_xattr(name: str) -> bool:
    """Whether an xattr belongs in a layer (and counts as a change)."""
    return not is_overlay_xattr(name) and name not in HOST_XATTRS


def read_xattrs(path: str) -> dict[str, bytes]:
    """The layer xattrs of ``path`` (never following a final symlink), sorted by name."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    out: dict[str, bytes] = {}
    for name in sorted(names):
        if not layer_xattr(name):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as e:
            if e.errno != errno.ENODATA:  # removed meanwhile
                raise
    return out


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise


def _names(path: str) -> list[str]:
    return sorted(os.listdir(path), key=os.fsencode)


def _meta_differs(old: os.stat_result, old_path: str, new: os.stat_result, new_path: str) -> bool:
    if old.st_mode != new.st_mode or old.st_uid != new.st_uid or old.st_gid != new.st_gid:
        return True
    if old.st_mtime_ns != new.st_mtime_ns:
        return True
    if not stat.S_ISDIR(new.st_mode):
        if old.st_size != new.st_size or old.st_rdev != new.st_rdev:
            return True
        if stat.S_ISLNK(new.st_mode) and os.readlink(old_path) != os.readlink(new_path):
            return True
    return read_xattrs(old_path) != read_xattrs(new_path)


def _all_added(path: str, rel: str, out: list[Change], *, skip_whiteouts: bool) -> None:
    for name in _names(path):
        child = f"{path}/{name}"
        st = os.lstat(child)
        if skip_whiteouts and is_whiteout_device(st):
            continue
        out.append(Change("A", f"{rel}/{name}"))
        if stat.S_ISDIR(st.st_mode):
            _all_added(child, f"{rel}/{name}", out, skip_whiteouts=skip_whiteouts)


# -- naive ---------------------------------------------------------------------------------


def naive_changes(lower: Path | None, upper: Path) -> list[Change]:
    """Changes from ``lower`` (the parent's full root; None: nothing) to
    ``upper`` (the container's full root), by comparing metadata."""
    out: list[Change] = []
    if lower is None:
        _all_added(str(upper), "", out, skip_whiteouts=False)
    else:
        _naive_dir(str(lower), str(upper), "", out)
    return out


def _naive_dir(old: str | None, new: str, rel: str, out: list[Change]) -> None:
    new_names = os.listdir(new)
    old_names = set(os.listdir(old)) if old is not None else set()
    new_set = set(new_names)
    for name in sorted(new_set | old_names, key=os.fsencode):
        crel = f"{rel}/{name}"
        if name not in new_set:
            out.append(Change("D", crel))
            continue
        npath = f"{new}/{name}"
        nst = os.lstat(npath)
        if name not in old_names:
            out.append(Change("A", crel))
            if stat.S_ISDIR(nst.st_mode):
                _all_added(npath, crel, out, skip_whiteouts=False)
            continue
        opath = f"{old}/{name}"
        ost = os.lstat(opath)
        if stat.S_ISDIR(nst.st_mode):
            sub: list[Change] = []
            _naive_dir(opath if stat.S_ISDIR(ost.st_mode) else None, npath, crel, sub)
            if sub or _meta_differs(ost, opath, nst, npath):
                out.append(Change("C", crel))
                out.extend(sub)
        elif _meta_differs(ost, opath, nst, npath):
            out.append(Change("C", crel))


# -- overlay -------------------------------------------------------------------------------


def _old_child(olds: list[str], name: str) -> tuple[os.stat_result | None, str, list[str]]:
    """Look ``name`` up in the merged lower dirs ``olds`` (top first), as overlayfs does.

    Returns (stat of the visible entry or None, its path, the lower dirs that
    make it up when it is a directory)."""
    first: os.stat_result | None = None
    first_path = ""
    dirs: list[str] = []
    for d in olds:
        path = f"{d}/{name}"
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if first is None:
            if is_whiteout_device(st):
                return None, "", []
            first, first_path = st, path
            if not stat.S_ISDIR(st.st_mode):
                return first, path, []
        elif not stat.S_ISDIR(st.st_mode):
            break  # a non-directory (or whiteout) under a directory ends the merge
        dirs.append(path)
        if _is_opaque(path):
            break
    return first, first_path, dirs


def _old_names(olds: list[str]) -> set[str]:
    """The names visible in the merged lower directory ``olds``."""
    seen: dict[str, bool] = {}
    for d in olds:
        for name in os.listdir(d):
            if name not in seen:
                seen[name] = not is_whiteout_device(os.lstat(f"{d}/{name}"))
    return {name for name, visible in seen.items() if visible}


def overlay_changes(upper: Path, lowers: list[Path]) -> list[Change]:
    """Changes recorded in the overlay upper dir ``upper`` over ``lowers`` (top first)."""
    out: list[Change] = []
    _overlay_dir(str(upper), "", [str(p) for p in lowers], False, out)
    return out


def _overlay_dir(up: str, rel: str, olds: list[str], hidden: bool, out: list[Change]) -> None:
    """``hidden``: this directory (or one above) is opaque, so everything the
    lowers had here that the upper dir lacks is gone."""
    upper_names = set(os.listdir(up))
    names = upper_names | _old_names(olds) if hidden else upper_names
    for name in sorted(names, key=os.fsencode):
        crel = f"{rel}/{name}"
        if name not in upper_names:
            out.append(Change("D", crel))
            continue
        upath = f"{up}/{name}"
        ust = os.lstat(upath)
        ost, opath, child_olds = _old_child(olds, name)
        if is_whiteout_device(ust):
            if ost is not None:
                out.append(Change("D", crel))
            continue
        if ost is None:
            out.append(Change("A", crel))
            if stat.S_ISDIR(ust.st_mode):
                _all_added(upath, crel, out, skip_whiteouts=True)
        elif stat.S_ISDIR(ust.st_mode):
            sub: list[Change] = []
            _overlay_dir(upath, crel, child_olds, hidden or _is_opaque(upath), sub)
            if sub or _meta_differs(ost, opath, ust, upath):
                out.append(Change("C", crel))
                out.extend(sub)
        else:
            out.append(Change("C", crel))


# -- writing layers ------------------------------------------------------------------------


def _key(rel: str) -> tuple[bytes, ...]:
    return tuple(os.fsencode(p) for p in rel.split("/"))


class _LayerWriter:
    """Writes tar entries for paths of a tree, opening each directory on the
    way with O_NOFOLLOW (a stack of fds along the current path)."""

    def __init__(self, root: Path, out: BinaryIO, *, overlay: bool) -> None:
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.tar = TarWriter(out)
        self.overlay = overlay  # root is an overlay upper dir: whiteout devices, opaque dirs
        self.names: list[str] = []
        self.fds: list[int] = []
        self.links: dict[tuple[int, int], str] = {}
        self.opaque: set[str] = set()

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()
        self.names.clear()
        os.close(self.root_fd)

    def dir_fd(self, parent: str) -> int:
        parts = parent.split("/") if parent else []
        common = 0
        while (
            common < len(self.names)
            and common < len(parts)
            and self.names[common] == parts[common]
        ):
            common += 1
        while len(self.names) > common:
            self.names.pop()
            os.close(self.fds.pop())
        for part in parts[common:]:
            fd = os.open(part, _DIR_FLAGS, dir_fd=self.fds[-1] if self.fds else self.root_fd)
            self.names.append(part)
            self.fds.append(fd)
        return self.fds[-1] if self.fds else self.root_fd

    def _info(self, name: str, st: os.stat_result, xattrs: dict[str, bytes]) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = st.st_mtime_ns // 1_000_000_000
        if xattrs:
            info.pax_headers = {
                XATTR_PAX_PREFIX + k: v.decode("utf-8", "surrogateescape")
                for k, v in xattrs.items()
            }
        return info

    def under_opaque(self, rel: str) -> bool:
        parts = rel.split("/")
        return any("/".join(parts[:i]) in self.opaque for i in range(1, len(parts)))

    def whiteout(self, rel: str) -> None:
        parent, _, name = rel.rpartition("/")
        if self.overlay and self.under_opaque(rel):
            return  # the opaque marker above deletes it
        pst = os.fstat(self.dir_fd(parent))
        info = tarfile.TarInfo(f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else
                               WHITEOUT_PREFIX + name)
        info.mode = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = pst.st_mtime_ns // 1_000_000_000
        self.tar.add_member(info)

    def entry(self, rel: str) -> None:
        parent, _, name = rel.rpartition("/")
        dfd = self.dir_fd(parent)
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if self.overlay and is_whiteout_device(st):
            self.whiteout(rel)
            return
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            log.info("%s: sockets are not put in layers", rel)
            return
        proc = f"/proc/self/fd/{dfd}/{name}"
        info = self._info(rel, st, read_xattrs(proc))
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1:
                first = self.links.get(key)
                if first is not None:
                    info.type = tarfile.LNKTYPE
                    info.linkname = first
                    self.tar.add_member(info)
                    return
                self.links[key] = rel
            fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
            try:
                fst = os.fstat(fd)
                if not stat.S_ISREG(fst.st_mode) or fst.st_ino != st.st_ino:
                    raise OSError(errno.ESTALE, f"{rel} changed while the layer was written")
                info.type = tarfile.REGTYPE
                info.size = fst.st_size
                self.tar.add_member(info, fd)
            finally:
                os.close(fd)
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
            info.name = rel + "/"
            self.tar.add_member(info)
            if self.overlay and _is_opaque(proc):
                self.opaque.add(rel)
                marker = tarfile.TarInfo(f"{rel}/{WHITEOUT_OPAQUE}")
                marker.mode = info.mode & 0o777
                marker.uid, marker.gid = info.uid, info.gid
                marker.uname = marker.gname = ""
                marker.mtime = info.mtime
                self.tar.add_member(marker)
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(name, dir_fd=dfd)
            self.tar.add_member(info)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tar.add_member(info)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
            self.tar.add_member(info)


def write_layer_tar(
    root: Path,
    changes: Iterable[Change],
    out: BinaryIO,
    *,
    whiteouts_from: Literal["changes", "overlay"] = "changes",
) -> TarStats:
    """Write the OCI layer tar of ``changes``, reading added and changed paths
    from ``root``. Returns its length, content size and entry count.

    Every parent directory of a change is an entry too; ``D`` changes become
    ``.wh.<name>`` (empty regular file, mode 0, owner 0:0, the parent's mtime).

    ``whiteouts_from="changes"``: ``root`` is any tree holding the new state
    (a container's root, or an overlay upper dir); each ``D`` is a ``.wh.``.
    ``whiteouts_from="overlay"``: ``root`` is an overlay upper dir; a directory
    marked opaque there is followed by ``<dir>/.wh..wh..opq`` (owner, mode and
    mtime of the dir, as Docker writes it) and the deletions under it are left
    to that marker.
    """
    present: set[str] = set()
    deleted: set[str] = set()
    for change in changes:
        rel = safe_member_name(change.path.lstrip("/"), "changes")
        if rel:
            (deleted if change.kind == "D" else present).add(rel)
    for rel in list(present) + list(deleted):
        parts = rel.split("/")
        for i in range(1, len(parts)):
            present.add("/".join(parts[:i]))
    deleted -= present
    writer = _LayerWriter(root, out, overlay=whiteouts_from == "overlay")
    try:
        for rel in sorted(present | deleted, key=_key):
            if rel in deleted:
                writer.whiteout(rel)
            else:
                writer.entry(rel)
        return writer.tar.close()
    finally:
        writer.close()


def overlay_layer_tar(upper: Path, lowers: list[Path], out: BinaryIO) -> TarStats:
    """Overlay's fast path: the upper dir itself as a layer tar, as Docker's
    overlay2 writes it (no comparison with the lowers, except that a whiteout
    hiding nothing in ``lowers`` is left out)."""
    writer = _LayerWriter(upper, out, overlay=True)
    try:
        _overlay_tar_dir(writer, "", [str(p) for p in lowers])
        return writer.tar.close()
    finally:
        writer.close()


def _overlay_tar_dir(writer: _LayerWriter, rel: str, olds: list[str]) -> None:
    dfd = writer.dir_fd(rel)
    for name in sorted(os.listdir(dfd), key=os.fsencode):
        crel = f"{rel}/{name}" if rel else name
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if is_whiteout_device(st):
            if _old_child(olds, name)[0] is not None:
                writer.whiteout(crel)
            continue
        writer.entry(crel)
        if stat.S_ISDIR(st.st_mode):
            _overlay_tar_dir(writer, crel, _old_child(olds, name)[2])
            dfd = writer.dir_fd(rel)
