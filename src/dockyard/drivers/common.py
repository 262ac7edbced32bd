"""What every driver shares: the on-disk layout, id checks, staging, locks and mounts.

A driver's home looks the same on every driver::

    <home>/lock                     flock'd while records change (short sections only)
    <home>/layers/<chain id>/       one read-only layer: ``parent``, ``size`` + driver files
    <home>/containers/<id>/         one writable layer: ``parent`` + driver files
    <home>/tmp-<random>/            staging: a layer or container being built or removed

A record is built in ``tmp-<random>`` and renamed into place, and removed by
renaming it back to ``tmp-<random>`` first, so it appears and disappears
atomically. Every staging dir is flock'd (the lock follows the inode through the
renames) while its owner works on it; one whose lock can be taken belongs to a
dead process and :meth:`DriverBase.cleanup` deletes it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from dockyard.durable import boot_id
from dockyard.errors import Conflict, InvalidArgument, NotFound, StoreCorrupt

_CHAIN_ID = re.compile(r"[0-9a-f]{64}")
_CONTAINER_ID = re.compile(r"[0-9a-f]{1,64}")
_TMP_PREFIX = "tmp-"
UNSYNCED = "unsynced"  # in a layer dir: its files may not be on the disk yet (boot ID)


def check_chain_id(chain_id: str) -> str:
    """A chain ID is 64 lowercase hex digits (no ``sha256:``); anything else is refused."""
    if not isinstance(chain_id, str) or not _CHAIN_ID.fullmatch(chain_id):
        raise InvalidArgument(f"invalid layer chain id {chain_id!r}: want 64 hex digits")
    return chain_id


def check_container_id(container_id: str) -> str:
    if not isinstance(container_id, str) or not _CONTAINER_ID.fullmatch(container_id):
        raise InvalidArgument(f"invalid container id {container_id!r}: want 1-64 hex digits")
    return container_id


# -- filesystem facts ---------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)

# statfs f_type -> the names Docker prints as "Backing Filesystem"
FS_NAMES = {
    0xEF53: "extfs",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0x01021994: "tmpfs",
    0x794C7630: "overlayfs",
    0x858458F6: "ramfs",
    0x2FC12FC1: "zfs",
    0x6969: "nfs",
    0xF2F52010: "f2fs",
    0x73717368: "squashfs",
    0x61756673: "aufs",
    0xF15F: "ecryptfs",
    0x65735546: "fuse",
    0x5346544E: "ntfs",
    0x4D44: "msdos",
}


def _raise_errno(what: str, path: Path | str) -> NoReturn:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}", str(path))


def fs_magic(path: Path) -> int:
    """statfs(2)'s f_type of the filesystem holding ``path`` (or its nearest existing parent)."""
    path = existing_ancestor(path)
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _libc.statfs(os.fsencode(path), buf) != 0:
        _raise_errno("statfs", path)
    # f_type is the first field (__fsword_t, a long) on every 64-bit Linux ABI
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def fs_name(path: Path) -> str:
    magic = fs_magic(path)
    return FS_NAMES.get(magic, f"<unknown 0x{magic:x}>")


def existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class _Dirent(ctypes.Structure):  # glibc's struct dirent on 64-bit Linux
    _fields_ = (
        ("d_ino", ctypes.c_uint64),
        ("d_off", ctypes.c_int64),
        ("d_reclen", ctypes.c_ushort),
        ("d_type", ctypes.c_ubyte),
        ("d_name", ctypes.c_char * 256),
    )


_libc.opendir.restype = ctypes.c_void_p
_libc.opendir.argtypes = (ctypes.c_char_p,)
_libc.readdir.restype = ctypes.POINTER(_Dirent)
_libc.readdir.argtypes = (ctypes.c_void_p,)
_libc.closedir.argtypes = (ctypes.c_void_p,)


def supports_d_type(directory: Path) -> bool:
    """Whether readdir(3) reports file types here (xfs made with ftype=0 does not)."""
    probe = directory / f".d_type-{secrets.token_hex(4)}"
    probe.mkdir()
    try:
        handle = _libc.opendir(os.fsencode(directory))
        if not handle:
            _raise_errno("opendir", directory)
        try:
            while True:
                entry = _libc.readdir(handle)
                if not entry:
                    return False
                if entry.contents.d_name == os.fsencode(probe.name):
                    return int(entry.contents.d_type) != 0  # DT_UNKNOWN
        finally:
            _libc.closedir(handle)
    finally:
        probe.rmdir()


# -- mounts -------------------------------------------------------------------------------

MNT_DETACH = 2


def mount_points() -> list[str]:
    """Mount points of this mount namespace, from /proc/self/mountinfo."""
    points = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            raw = line.split(b" ")[4]
            points.append(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), raw))
    return [os.fsdecode(p) for p in points]


def mounts_under(path: Path) -> list[str]:
    top = str(path.absolute())
    return [p for p in mount_points() if p == top or p.startswith(top + "/")]


def umount(path: Path) -> None:
    """Unmount everything stacked on ``path``; lazily (MNT_DETACH) when it is busy."""
    target = os.fsencode(path)
    for _ in range(64):
        if not os.path.ismount(path):
            return
        if _libc.umount2(target, 0) == 0:
            continue
        err = ctypes.get_errno()
        if err == errno.EINVAL:  # not a mount point after all
            return
        if err != errno.EBUSY or _libc.umount2(target, MNT_DETACH) != 0:
            _raise_errno("umount", path)
    raise StoreCorrupt(f"{path}: still mounted after 64 unmounts")


# -- trees --------------------------------------------------------------------------------


def remove_tree(path: Path) -> None:
    """rm -rf that also copes with read-only directories and entries vanishing underneath."""

    def retry(func: Callable[..., Any], name: str, error: BaseException) -> None:
        if isinstance(error, FileNotFoundError):
            return
        if isinstance(error, PermissionError) and func is not os.open:
            os.chmod(os.path.dirname(name), 0o700)
            func(name)
            return
        raise error

    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.exists():
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=retry)
        else:
            shutil.rmtree(path, onerror=lambda f, n, info: retry(f, n, info[1]))


def write_text(path: Path, text: str) -> None:
    """A small record file, fsync'd (a record must not come back empty after a crash)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()


@contextlib.contextmanager
def flocked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _lock_dir(path: Path, blocking: bool) -> int | None:
    """An exclusive flock on a directory; None if it is taken (non-blocking) or gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        # still the same directory? (someone may have deleted or renamed it meanwhile)
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise FileNotFoundError(path)
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


# -- the shared part of every driver --------------------------------------------------------


class DriverBase:
    """Layout, records, staging and removal; the drivers fill in the trees.

    Subclasses provide ``name``, ``_fill_layer``, ``_fill_rw`` and the mount,
    changes, diff, status and graph_data methods of the protocol.
    """

    name = ""

    def __init__(self, home: Path) -> None:
        self.home = home.absolute()
        for sub in ("layers", "containers"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self.cleanup()

    # -- hooks ----------------------------------------------------------------------------

    def _fill_layer(self, tmp: Path, parent: str | None, tar: BinaryIO) -> int:
        """Build the layer's files in the (empty, locked) staging dir; returns its size."""
        raise NotImplementedError

    def _fill_rw(self, tmp: Path, parent: str | None) -> None:
        raise NotImplementedError

    def _layer_published(self, chain_id: str) -> None:
        """Called after a layer was renamed into place (overlay makes its short link)."""

    def _layer_retired(self, chain_id: str, tmp: Path) -> None:
        """Called after a layer was renamed away to ``tmp``, before it is deleted."""

    def _unmount_locked(self, container_id: str) -> None:
        """Unmount the container's root filesystem (the home lock is held)."""

    def _discard(self, path: Path) -> None:
        """Delete a staging dir (btrfs deletes its subvolumes first)."""
        remove_tree(path)

    # -- paths and records ----------------------------------------------------------------

    def _layer_dir(self, chain_id: str) -> Path:
        return self.home / "layers" / check_chain_id(chain_id)

    def _rw_dir(self, container_id: str) -> Path:
        return self.home / "containers" / check_container_id(container_id)

    def _existing_rw(self, container_id: str) -> Path:
        path = self._rw_dir(container_id)
        if not path.is_dir():
            raise NotFound(f"{self.name}: no writable layer for container {container_id}")
        return path

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return flocked(self.home / "lock")

    def _layer_parent(self, chain_id: str) -> str | None:
        try:
            return read_text(self._layer_dir(chain_id) / "parent") or None
        except FileNotFoundError:
            raise NotFound(f"{self.name}: no such layer {chain_id}") from None

    def _rw_parent(self, container_id: str) -> str | None:
        return read_text(self._existing_rw(container_id) / "parent") or None

    def _chain(self, top: str | None) -> list[str]:
        """``top`` and its ancestors, top first."""
        chain: list[str] = []
        while top is not None:
            if len(chain) > 4096 or top in chain:
                raise StoreCorrupt(f"{self.name}: layer {chain[0]} has a broken parent chain")
            chain.append(top)
            top = self._layer_parent(top)
        return chain

    def _require_layer(self, chain_id: str | None) -> None:
        if chain_id is not None and not self.has_layer(chain_id):
            raise NotFound(f"{self.name}: no such layer {chain_id}")

    # -- staging ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Path]:
        """A fresh locked ``tmp-<random>`` dir; deleted on the way out unless renamed away."""
        while True:
            tmp = self.home / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
            tmp.mkdir(mode=0o700)
            fd = _lock_dir(tmp, blocking=True)
            if fd is not None:
                break  # (None: a cleanup elsewhere took it between mkdir and flock)
        try:
            yield tmp
        finally:
            try:
                if tmp.exists():
                    self._discard(tmp)
            finally:
                os.close(fd)

    def _publish(self, tmp: Path, dest: Path) -> bool:
        """Rename a staging dir into place; False if ``dest`` already exists."""
        try:
            os.rename(tmp, dest)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY) and dest.exists():
                return False
            raise
        return True

    def _retire(self, dest: Path) -> tuple[Path, int] | None:
        """Rename a record away to a locked ``tmp-<random>``; None if it is gone."""
        fd = _lock_dir(dest, blocking=True)
        if fd is None:
            return None
        tmp = self.home / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            os.rename(dest, tmp)
        except BaseException:
            os.close(fd)
            raise
        return tmp, fd

    def unsynced_marker(self, chain_id: str) -> Path:
        """The file that says a layer's files may not be on the disk yet; whoever
        syncs the filesystem afterwards removes it."""
        return self._layer_dir(chain_id) / UNSYNCED

    def _discard_unsynced_of_old_boots(self) -> None:
        """A layer unpacked but not yet synced when the machine went down may have
        lost files: it goes (it is unpacked again from its blob when needed),
        unless something sits on it."""
        boot = boot_id()
        removed = True
        while removed:  # a layer kept for its child goes once the child went
            removed = False
            for chain_id in self.layers():
                try:
                    written = read_text(self.unsynced_marker(chain_id))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if written == boot:
                    continue
                with contextlib.suppress(Conflict):
                    self.remove_layer(chain_id)
                    removed = True

    def cleanup(self) -> None:
        """Delete what a crash left behind: staging dirs whose owner is gone, layers
        that may not have reached the disk."""
        self._discard_unsynced_of_old_boots()
        for entry in os.scandir(self.home):
            if not entry.name.startswith(_TMP_PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            fd = _lock_dir(Path(entry.path), blocking=False)
            if fd is None:
                continue  # in use by a live process
            try:
                self._discard(Path(entry.path))
            finally:
                os.close(fd)

    # -- read-only layers -------------------------------------------------------------------

    def has_layer(self, chain_id: str) -> bool:
        return self._layer_dir(chain_id).is_dir()

    def layers(self) -> list[str]:
        return sorted(
            e.name
            for e in os.scandir(self.home / "layers")
            if _CHAIN_ID.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
        )

    def _existing_size(self, chain_id: str, parent: str | None) -> int:
        found = self._layer_parent(chain_id)
        if found != parent:
            raise Conflict(f"{self.name}: layer {chain_id} exists on parent {found}, not {parent}")
        return int(read_text(self._layer_dir(chain_id) / "size"))

    def create_layer(self, chain_id: str, parent: str | None, tar: BinaryIO) -> int:
        dest = self._layer_dir(chain_id)
        if parent is not None and check_chain_id(parent) == chain_id:
            raise InvalidArgument(f"{self.name}: layer {chain_id} cannot be its own parent")
        if dest.is_dir():
            return self._existing_size(chain_id, parent)
        self._require_layer(parent)
        with self._staging() as tmp:
            size = self._fill_layer(tmp, parent, tar)
            write_text(tmp / "parent", parent or "")
            write_text(tmp / "size", str(size))
            # not synced here: the caller has it synced later (store.durability) and
            # the marker says which boot wrote it; see _discard_unsynced_of_old_boots
            write_text(tmp / UNSYNCED, boot_id())
            with self._lock():
                self._require_layer(parent)  # not removed while we unpacked
                if not self._publish(tmp, dest):
                    return self._existing_size(chain_id, parent)
        self._layer_published(chain_id)
        return size

    def _users(self, chain_id: str) -> list[str]:
        """Layers and containers directly on ``chain_id``."""
        users = []
        for kind in ("layers", "containers"):
            for entry in os.scandir(self.home / kind):
                try:
                    if read_text(Path(entry.path) / "parent") == chain_id:
                        users.append(f"{kind[:-1]} {entry.name}")
                except (FileNotFoundError, NotADirectoryError):
                    continue
        return users

    def remove_layer(self, chain_id: str) -> None:
        """Delete a layer; refused while a layer or container sits on it. Missing: no-op."""
        dest = self._layer_dir(chain_id)
        with self._lock():
            if not dest.is_dir():
                return
            users = self._users(chain_id)
            if users:
                raise Conflict(
                    f"{self.name}: layer {chain_id} is in use by {', '.join(sorted(users))}"
                )
            retired = self._retire(dest)
        if retired is None:
            return
        tmp, fd = retired
        try:
            self._layer_retired(chain_id, tmp)
            self._discard(tmp)
        finally:
            os.close(fd)

    # -- writable layers --------------------------------------------------------------------

    def create_rw(self, container_id: str, parent: str | None) -> None:
        """Make a container's writable layer on ``parent``; a no-op if it already exists."""
        dest = self._rw_dir(container_id)
        if dest.is_dir():
            self._check_rw_parent(container_id, parent)
            return
        self._require_layer(parent)
        with self._staging() as tmp:
            self._fill_rw(tmp, parent)
            write_text(tmp / "parent", parent or "")
            with self._lock():
                self._require_layer(parent)
                published = self._publish(tmp, dest)
        if not published:
            self._check_rw_parent(container_id, parent)

    def _check_rw_parent(self, container_id: str, parent: str | None) -> None:
        found = self._rw_parent(container_id)
        if found != parent:
            raise Conflict(
                f"{self.name}: container {container_id} already has a writable layer "
                f"on {found or 'scratch'}"
            )

    def remove_rw(self, container_id: str) -> None:
        """Unmount (lazily if busy) and delete the writable layer. Missing: no-op."""
        dest = self._rw_dir(container_id)
        with self._lock():
            if not dest.is_dir():
                return
            self._unmount_locked(container_id)
            retired = self._retire(dest)
        if retired is None:
            return
        tmp, fd = retired
        try:
            self._discard(tmp)
        finally:
            os.close(fd)
