"""The one layer extractor: apply an OCI layer tar to a directory, for every driver.

``apply_layer(src, dest, whiteouts=...)`` streams an uncompressed layer tar
into ``dest``. The two whiteout modes are the two ways a driver stores layers
(as umoci's ``oci/layer`` does):

``"overlay"``
    ``dest`` is an empty overlayfs layer directory. ``.wh.<name>`` becomes a
    0/0 character device ``<name>``; ``<dir>/.wh..wh..opq`` sets
    ``trusted.overlay.opaque=y`` on ``<dir>``.
``"delete"``
    ``dest`` already holds the parent's files (vfs, btrfs snapshots).
    ``.wh.<name>`` deletes ``<name>``; an opaque marker deletes everything in
    the directory that existed before this layer (what this layer adds, before
    or after the marker, stays).

Safety: nothing outside ``dest`` is ever written, chmod-ed, chown-ed, touched
or deleted, whatever the tar says.

- Member names (and hardlink targets) that are absolute or contain ``..`` are
  refused (ArchiveError), as :func:`safe_member_name` does at ingest.
- Parent directories are resolved inside ``dest`` with chroot semantics
  (Docker's ``FollowSymlinkInScope``): a symlink met on the way, whether this
  layer made it or the parent layer did, is followed *within* ``dest`` --
  absolute targets start at ``dest``, ``..`` stops at ``dest``. Each step is
  an ``openat(O_NOFOLLOW | O_DIRECTORY)`` relative to the previous directory,
  so the walk itself never leaves the tree.
- The entry itself is created with ``*at`` calls relative to that directory
  fd and is never followed: an existing symlink (or anything else) in its
  place is removed first, so a link swapped in cannot redirect a write.
- Metadata is set through the new file's own fd where there is one, else
  with ``AT_SYMLINK_NOFOLLOW``.

Other rules, chosen to match Docker where it has one:

- Later duplicates win, as with tar. An existing directory is kept (and its
  metadata updated) when the entry is a directory; anything else in the way is
  removed.
- Missing parent directories are created (0755, root) as Docker does; a
  parent path that runs into a non-directory is an ArchiveError.
- Hardlink targets must already exist in ``dest`` (resolved like any other
  path) and not be directories. The link takes the target's metadata; the
  hardlink header's own mode/owner/times are ignored (they describe the same
  inode in every real tar).
- Ownership is numeric (uname/gname are ignored); chown comes before chmod so
  setuid/setgid bits survive, and before xattrs so ``security.capability``
  survives.
- Directory times are set last, deepest first, because filling a directory
  changes its mtime. atime = mtime.
- Xattrs come from pax ``SCHILY.xattr.<name>`` records. Overlay's own
  namespaces (``trusted.overlay.*``, ``user.overlay.*``) are never taken from
  a tar: in an overlay layer they would change how the union is assembled.
  ``security.*`` xattrs the filesystem or kernel refuses (EPERM, ENOTSUP: no
  SELinux, no IMA, ...) and ``user.*`` xattrs on symlinks or devices (which
  Linux forbids) are skipped with a log line; any other failure is an
  ArchiveError, as in Docker (a layer whose ``user.*`` xattrs cannot be kept
  is not silently changed).
- AUFS metadata (names starting ``.wh..wh.`` other than the opaque marker)
  is skipped, as Docker does. Sockets are not in tars; unknown member types
  are an ArchiveError.
- OSErrors that come from the environment (ENOSPC, EDQUOT, EIO, EROFS,
  ENOMEM) propagate unchanged; any other OSError while applying an entry is
  reported as an ArchiveError naming the member.

The return value is the layer's size as Docker counts it: bytes of regular
files plus the lengths of symlink targets (the same figure ingest computes).

Limits (shared with Docker's overlay2 and containerd):

- In ``"overlay"`` mode ``dest`` holds only this layer, so a path is resolved
  against this layer's own entries: ``lib/x`` under a parent layer's
  ``lib -> usr/lib`` makes a directory ``lib`` in this layer (hiding the
  link), where ``"delete"`` mode writes ``usr/lib/x``; and a parent directory
  this layer does not list is made 0755 root-owned, which then shadows the
  lower directory's mode and owner. Layers written by Docker, buildah and
  dockyard list every parent directory and never go through links.
- overlayfs ignores the opaque xattr on a layer's root, so a root-level
  ``.wh..wh..opq`` hides nothing in ``"overlay"`` mode.
- AUFS hardlink directories (``.wh..wh.plnk``) are skipped, so a hardlink into
  one is an ArchiveError (Docker resolves them; only pre-2016 AUFS images have
  them).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from dockyard.archive.tarstream import TarHeader, TarReader, safe_member_name
from dockyard.errors import ArchiveError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
XATTR_PAX_PREFIX = "SCHILY.xattr."

# xattrs that describe how overlayfs assembles layers; never read from or written to a tar
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
MAX_SYMLINKS = 255

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM}
_CACHE_MAX = 512

Whiteouts = Literal["overlay", "delete"]


def is_overlay_xattr(name: str) -> bool:
    return name.startswith(OVERLAY_XATTR_PREFIXES)


def is_whiteout_device(st: os.stat_result) -> bool:
    """An overlayfs whiteout: a character device 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _mtime_ns(header: TarHeader) -> int:
    return round(header.mtime * 1_000_000_000)


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _NotADir(Exception):
    """A path component that must be a directory is something else."""


class _Extractor:
    def __init__(self, dest: Path, whiteouts: Whiteouts, what: str) -> None:
        self.what = what
        self.overlay = whiteouts == "overlay"
        self.root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        # raw parent path (as named in the tar) -> (fd, path it resolved to inside dest)
        self.cache: dict[str, tuple[int, str]] = {}
        self.stale: list[int] = []
        self.dir_times: dict[str, int] = {}  # resolved dir path -> mtime ns
        self.added: set[str] = set()  # resolved paths this layer created ("delete" mode)
        self.size = 0

    # -- bookkeeping --------------------------------------------------------------

    def close(self) -> None:
        self.invalidate()
        self.drop_stale()
        os.close(self.root_fd)

    def invalidate(self) -> None:
        """Forget resolved parents (something on a cached path may have been removed).

        The fds are closed at the next entry: the current entry may still use one."""
        self.stale.extend(fd for fd, _ in self.cache.values())
        self.cache.clear()

    def drop_stale(self) -> None:
        for fd in self.stale:
            os.close(fd)
        self.stale.clear()

    def note_added(self, rel: str) -> None:
        if not self.overlay:
            self.added.add(rel)

    # -- path resolution ------------------------------------------------------------

    def resolve_dir(self, raw: str, *, create: bool = True) -> tuple[int, str]:
        """The directory named ``raw`` (tar namespace), resolved inside dest.

        Returns (fd, resolved path); the fd belongs to the cache. With
        ``create``, missing directories are made; otherwise FileNotFoundError.
        Raises _NotADir when a component is not a directory."""
        if raw == "":
            return self.root_fd, ""
        hit = self.cache.get(raw)
        if hit is not None:
            return hit
        fds: list[int] = []
        names: list[str] = []
        todo = raw.split("/")
        todo.reverse()  # a stack: next component last
        links = 0
        try:
            while todo:
                part = todo.pop()
                if part in ("", "."):
                    continue
                if part == "..":
                    if names:
                        names.pop()
                        os.close(fds.pop())
                    continue
                cur = fds[-1] if fds else self.root_fd
                try:
                    st: os.stat_result | None = os.stat(part, dir_fd=cur, follow_symlinks=False)
                except FileNotFoundError:
                    if not create:
                        raise
                    st = None
                if st is not None and stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise ArchiveError(
                            f"{self.what}: too many levels of symbolic links in {raw}"
                        )
                    target = os.readlink(part, dir_fd=cur)
                    if target.startswith("/"):
                        for fd in fds:
                            os.close(fd)
                        fds.clear()
                        names.clear()
                    parts = target.split("/")
                    parts.reverse()
                    todo.extend(parts)
                    continue
                opaque = False
                if st is not None and not stat.S_ISDIR(st.st_mode):
                    if not (create and self.overlay and is_whiteout_device(st)):
                        raise _NotADir(_join("/".join(names), part))
                    # this layer deleted the name and now puts a directory there
                    os.unlink(part, dir_fd=cur)
                    st, opaque = None, True
                if st is None:
                    os.mkdir(part, 0o755, dir_fd=cur)
                    fd = os.open(part, _DIR_FLAGS, dir_fd=cur)
                    os.fchmod(fd, 0o755)
                    if opaque:
                        os.setxattr(fd, OPAQUE_XATTR, b"y")
                    self.note_added(_join("/".join(names), part))
                else:
                    fd = os.open(part, _DIR_FLAGS, dir_fd=cur)
                fds.append(fd)
                names.append(part)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        for fd in fds[:-1]:
            os.close(fd)
        if not fds:  # the path resolved to dest itself (say, a link to "/")
            return self.root_fd, ""
        if len(self.cache) >= _CACHE_MAX:
            self.invalidate()
        result = (fds[-1], "/".join(names))
        self.cache[raw] = result
        return result

    def parent_of(self, raw_parent: str, member: str) -> tuple[int, str]:
        try:
            return self.resolve_dir(raw_parent)
        except _NotADir as e:
            raise ArchiveError(
                f"{self.what}: cannot extract {member}: {e.args[0]} is not a directory"
            ) from None

    # -- removal --------------------------------------------------------------------

    def remove(self, dfd: int, name: str, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=dfd)
            self.invalidate()
        else:
            os.unlink(name, dir_fd=dfd)
            if stat.S_ISLNK(st.st_mode):
                self.invalidate()

    def clear_in_way(self, dfd: int, name: str) -> os.stat_result | None:
        """Remove whatever is at ``name``; returns what was there."""
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        self.remove(dfd, name, st)
        return st

    # -- metadata -------------------------------------------------------------------

    def set_xattrs(self, target: int | str, header: TarHeader, plain: bool) -> None:
        """``target`` is an fd, or a /proc/self/fd path for things that have none.
        ``plain``: a regular file or directory (user.* xattrs are allowed)."""
        for key, value in header.pax.items():
            if not key.startswith(XATTR_PAX_PREFIX):
                continue
            name = key[len(XATTR_PAX_PREFIX) :]
            if is_overlay_xattr(name):
                continue
            raw = value.encode("utf-8", "surrogateescape")
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, raw)
                else:
                    os.setxattr(target, name, raw, follow_symlinks=False)
            except OSError as e:
                refused = e.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP)
                if refused and (
                    name.startswith("security.") or (name.startswith("user.") and not plain)
                ):
                    log.info("%s: %s: xattr %s not kept: %s", self.what, header.name, name,
                             e.strerror)
                    continue
                raise ArchiveError(
                    f"{self.what}: cannot set xattr {name} on {header.name}: {e.strerror}"
                ) from e

    def proc_path(self, dfd: int, name: str) -> str:
        return f"/proc/self/fd/{dfd}/{name}"

    # -- entries --------------------------------------------------------------------

    def apply(self, header: TarHeader, data: _Readable) -> None:
        rel = safe_member_name(header.name, self.what)
        parent, _, name = rel.rpartition("/")
        if header.is_file:
            self.size += header.size
        elif header.is_symlink:
            self.size += len(header.linkname.encode("utf-8", "surrogateescape"))
        if name == "":
            self.root_entry(header)
            return
        if WHITEOUT_META_PREFIX in parent and any(
            p.startswith(WHITEOUT_META_PREFIX) for p in parent.split("/")
        ):
            return  # inside AUFS metadata (.wh..wh.plnk/...)
        if name.startswith(WHITEOUT_PREFIX):
            if name == WHITEOUT_OPAQUE:
                self.opaque(parent, header)
            elif not name.startswith(WHITEOUT_META_PREFIX):
                self.whiteout(parent, name[len(WHITEOUT_PREFIX) :], header)
            return
        dfd, resolved = self.parent_of(parent, header.name)
        crel = _join(resolved, name)
        if header.is_file:
            self.regular(dfd, name, header, data)
        elif header.is_dir:
            self.directory(dfd, name, crel, header)
        elif header.is_symlink:
            self.symlink(dfd, name, header)
        elif header.is_hardlink:
            self.hardlink(dfd, name, header)
        elif header.typeflag in (b"3", b"4", b"6"):
            self.special(dfd, name, header)
        else:
            raise ArchiveError(
                f"{self.what}: {header.name}: unsupported tar member type {header.typeflag!r}"
            )
        self.note_added(crel)

    def root_entry(self, header: TarHeader) -> None:
        if not header.is_dir:
            raise ArchiveError(f"{self.what}: member {header.name!r} names the root: not a dir")
        os.fchown(self.root_fd, header.uid, header.gid)
        os.fchmod(self.root_fd, header.mode & 0o7777)
        self.set_xattrs(self.root_fd, header, True)
        self.dir_times[""] = _mtime_ns(header)

    def regular(self, dfd: int, name: str, header: TarHeader, data: _Readable) -> None:
        try:
            fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=dfd)
        except FileExistsError:
            self.clear_in_way(dfd, name)
            fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=dfd)
        try:
            copy_to = getattr(data, "copy_to", None)
            if copy_to is not None:  # a TarReader member: the kernel copies it
                copy_to(fd)
            else:
                remaining = header.size
                while remaining:
                    chunk = data.read(min(CHUNK, remaining))
                    if not chunk:
                        raise ArchiveError(f"{self.what}: unexpected EOF in {header.name}")
                    remaining -= len(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            os.fchown(fd, header.uid, header.gid)
            os.fchmod(fd, header.mode & 0o7777)
            self.set_xattrs(fd, header, True)
            mtime = _mtime_ns(header)
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)

    def directory(self, dfd: int, name: str, crel: str, header: TarHeader) -> None:
        try:
            st: os.stat_result | None = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        opaque = False
        if st is not None and not stat.S_ISDIR(st.st_mode):
            # a directory over a whiteout of the same layer hides the lower one, as overlayfs does
            opaque = self.overlay and is_whiteout_device(st)
            self.remove(dfd, name, st)
            st = None
        if st is None:
            os.mkdir(name, 0o700, dir_fd=dfd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        try:
            os.fchown(fd, header.uid, header.gid)
            os.fchmod(fd, header.mode & 0o7777)
            if opaque:
                os.setxattr(fd, OPAQUE_XATTR, b"y")
            self.set_xattrs(fd, header, True)
        finally:
            os.close(fd)
        self.dir_times[crel] = _mtime_ns(header)

    def symlink(self, dfd: int, name: str, header: TarHeader) -> None:
        try:
            os.symlink(header.linkname, name, dir_fd=dfd)
        except FileExistsError:
            self.clear_in_way(dfd, name)
            os.symlink(header.linkname, name, dir_fd=dfd)
        os.chown(name, header.uid, header.gid, dir_fd=dfd, follow_symlinks=False)
        self.set_xattrs(self.proc_path(dfd, name), header, False)
        mtime = _mtime_ns(header)
        os.utime(name, ns=(mtime, mtime), dir_fd=dfd, follow_symlinks=False)

    def hardlink(self, dfd: int, name: str, header: TarHeader) -> None:
        target = safe_member_name(header.linkname, self.what)
        if target == "":
            raise ArchiveError(f"{self.what}: hardlink {header.name} to the root")
        tparent, _, tname = target.rpartition("/")
        try:
            tfd, _ = self.resolve_dir(tparent, create=False)
            tst = os.stat(tname, dir_fd=tfd, follow_symlinks=False)
        except (FileNotFoundError, _NotADir):
            raise ArchiveError(
                f"{self.what}: hardlink {header.name} -> {header.linkname}: "
                "target does not exist in the layer"
            ) from None
        if stat.S_ISDIR(tst.st_mode):
            raise ArchiveError(
                f"{self.what}: hardlink {header.name} -> {header.linkname}: target is a directory"
            )
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if (st.st_dev, st.st_ino) == (tst.st_dev, tst.st_ino):
                return
            self.remove(dfd, name, st)
            # removing may have dropped the cache; tfd stays open until the next entry
        os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=dfd, follow_symlinks=False)

    def special(self, dfd: int, name: str, header: TarHeader) -> None:
        kind = {b"3": stat.S_IFCHR, b"4": stat.S_IFBLK, b"6": stat.S_IFIFO}[header.typeflag]
        dev = os.makedev(header.devmajor, header.devminor) if kind != stat.S_IFIFO else 0
        try:
            os.mknod(name, kind | 0o600, dev, dir_fd=dfd)
        except FileExistsError:
            self.clear_in_way(dfd, name)
            os.mknod(name, kind | 0o600, dev, dir_fd=dfd)
        os.chown(name, header.uid, header.gid, dir_fd=dfd, follow_symlinks=False)
        os.chmod(name, header.mode & 0o7777, dir_fd=dfd, follow_symlinks=False)
        self.set_xattrs(self.proc_path(dfd, name), header, False)
        mtime = _mtime_ns(header)
        os.utime(name, ns=(mtime, mtime), dir_fd=dfd, follow_symlinks=False)

    # -- whiteouts ------------------------------------------------------------------

    def whiteout(self, parent: str, name: str, header: TarHeader) -> None:
        if name in ("", ".", ".."):
            raise ArchiveError(f"{self.what}: invalid whiteout {header.name}")
        if self.overlay:
            dfd, _ = self.parent_of(parent, header.name)
            self.clear_in_way(dfd, name)
            os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=dfd)
            os.chown(name, header.uid, header.gid, dir_fd=dfd, follow_symlinks=False)
            return
        try:
            dfd, _ = self.resolve_dir(parent, create=False)
        except (FileNotFoundError, _NotADir):
            return  # nothing there to delete
        self.clear_in_way(dfd, name)

    def opaque(self, parent: str, header: TarHeader) -> None:
        if self.overlay:
            dfd, _ = self.parent_of(parent, header.name)
            os.setxattr(dfd, OPAQUE_XATTR, b"y")
            return
        try:
            dfd, resolved = self.resolve_dir(parent, create=False)
        except (FileNotFoundError, _NotADir):
            return
        self.clear_older(dfd, resolved)
        self.invalidate()

    def clear_older(self, dfd: int, rel: str) -> None:
        """Delete everything under the directory that this layer did not put there."""
        for name in os.listdir(dfd):
            crel = _join(rel, name)
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if crel not in self.added:
                self.remove(dfd, name, st)
            elif stat.S_ISDIR(st.st_mode):
                sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
                try:
                    self.clear_older(sub, crel)
                finally:
                    os.close(sub)

    # -- the end --------------------------------------------------------------------

    def finish_dir_times(self) -> None:
        for rel, mtime in sorted(self.dir_times.items(), key=lambda kv: -kv[0].count("/")):
            if rel == "":
                os.utime(self.root_fd, ns=(mtime, mtime))
                continue
            fds: list[int] = []
            try:
                cur = self.root_fd
                for part in rel.split("/"):
                    cur = os.open(part, _DIR_FLAGS, dir_fd=cur)
                    fds.append(cur)
                os.utime(cur, ns=(mtime, mtime))
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    raise
                # replaced or deleted by a later member: nothing to date
            finally:
                for fd in fds:
                    os.close(fd)


def apply_layer(
    src: BinaryIO, dest: Path, *, whiteouts: Whiteouts, what: str = "layer"
) -> int:
    """Apply the uncompressed OCI layer tar ``src`` to the directory ``dest``.

    Returns the layer's size (regular file bytes + symlink target lengths).
    Raises ArchiveError for a malformed tar or a member that would escape
    ``dest``; see the module docstring for the rules."""
    ex = _Extractor(dest, whiteouts, what)
    try:
        for header, data in TarReader(src, what):
            ex.drop_stale()
            try:
                ex.apply(header, data)
            except ArchiveError:
                raise
            except OSError as e:
                if e.errno in _ENVIRONMENT_ERRNOS:
                    raise
                raise ArchiveError(
                    f"{what}: cannot extract {header.name}: {e.strerror or e}"
                ) from e
            except (OverflowError, ValueError) as e:  # NUL in a link name, absurd ids/times
                raise ArchiveError(f"{what}: cannot extract {header.name}: {e}") from e
        ex.finish_dir_times()
    finally:
        ex.close()
    return ex.size
