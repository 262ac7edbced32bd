"""btrfs: every layer and writable layer is a subvolume snapshot of its parent.

The vfs driver with copy-on-write snapshots instead of copies, so a layer costs
only what it changes and a container starts in constant time. The home must be
on btrfs. Uses btrfs-progs (``btrfs subvolume create|snapshot|delete``).

    layers/<chain>/root         subvolume: snapshot of the parent's root + the layer
    containers/<id>/root        subvolume: snapshot of the top layer's root
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

from dockyard.drivers.common import fs_name, remove_tree
from dockyard.drivers.vfs import VfsDriver, run
from dockyard.errors import InvalidArgument

_SUBVOLUME_INO = 256  # BTRFS_FIRST_FREE_OBJECTID: the root directory of every subvolume


def unusable_reason(home: Path) -> str | None:
    """Why the btrfs driver cannot run with this home, or None."""
    if shutil.which("btrfs") is None:
        return "the btrfs command (btrfs-progs) is not installed"
    found = fs_name(home)
    if found != "btrfs":
        return f"{home} is on {found}, not on a btrfs filesystem"
    return None


@functools.cache
def _progs_version() -> str:
    out = run(["btrfs", "--version"], "btrfs --version").split()
    return out[1] if len(out) > 1 else "-"  # "btrfs-progs v6.2"


def is_subvolume(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return st.st_ino == _SUBVOLUME_INO and os.path.isdir(path) and not os.path.islink(path)


class BtrfsDriver(VfsDriver):
    name = "btrfs"

    def __init__(self, home: Path) -> None:
        reason = unusable_reason(home)
        if reason:
            raise InvalidArgument(f"btrfs storage driver unavailable: {reason}")
        super().__init__(home)

    def _new_root(self, dest: Path) -> None:
        run(["btrfs", "subvolume", "create", str(dest)], "btrfs subvolume create")
        dest.chmod(0o755)

    def _clone_root(self, src: Path, dest: Path) -> None:
        run(["btrfs", "subvolume", "snapshot", str(src), str(dest)], "btrfs subvolume snapshot")

    def _delete_subvolume(self, path: Path) -> None:
        try:
            run(["btrfs", "subvolume", "delete", str(path)], "btrfs subvolume delete")
        except Exception:
            # a container may have made subvolumes inside its own: delete those first
            nested = [
                Path(d) / n
                for d, dirs, _ in os.walk(path)
                for n in dirs
                if is_subvolume(Path(d) / n)
            ]
            if not nested:
                raise
            for sub in sorted(nested, key=lambda p: -len(p.parts)):
                if sub.exists():
                    self._delete_subvolume(sub)
            run(["btrfs", "subvolume", "delete", str(path)], "btrfs subvolume delete")

    def _discard(self, path: Path) -> None:
        root = path / "root"
        if is_subvolume(root):
            self._delete_subvolume(root)
        remove_tree(path)

    def status(self) -> list[tuple[str, str]]:
        version = _progs_version()
        return [("Build Version", f"Btrfs {version}")] if version != "-" else []
