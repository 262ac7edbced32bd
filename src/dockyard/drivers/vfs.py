"""vfs: every layer is a full copy of its parent's tree with the layer applied.

Slow and big, but needs nothing from the kernel: it works on any filesystem, as
any user who may create the files. ``cp -a --reflink=auto`` makes the copies
(hardlinks, devices, owners, xattrs and timestamps preserved; extents shared on
filesystems that can). The btrfs driver is this driver with subvolume snapshots
instead of copies.

    layers/<chain>/root         the layer's whole tree
    containers/<id>/root        the container's whole tree (it is its own mount)
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import BinaryIO

from dockyard.archive.apply import apply_layer
from dockyard.archive.diff import naive_changes, write_layer_tar
from dockyard.archive.tarwrite import TarStats
from dockyard.drivers.base import Change
from dockyard.drivers.common import DriverBase
from dockyard.errors import DockyardError


def run(argv: list[str], what: str) -> str:
    """Run a helper program; its stderr becomes the error message."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
        raise DockyardError(f"{what}: {detail}")
    return proc.stdout


class VfsDriver(DriverBase):
    name = "vfs"

    # -- how a tree is made; btrfs overrides these three -----------------------------------

    def _new_root(self, dest: Path) -> None:
        dest.mkdir(mode=0o755)
        dest.chmod(0o755)  # whatever the umask

    def _clone_root(self, src: Path, dest: Path) -> None:
        run(["cp", "-a", "--reflink=auto", "--", str(src), str(dest)], f"{self.name}: copy {src}")

    # -- trees --------------------------------------------------------------------------------

    def _layer_root(self, chain_id: str) -> Path:
        return self._layer_dir(chain_id) / "root"

    def _rw_root(self, container_id: str) -> Path:
        return self._existing_rw(container_id) / "root"

    def _fill_tree(self, dest: Path, parent: str | None) -> None:
        if parent is None:
            self._new_root(dest)
        else:
            self._clone_root(self._layer_root(parent), dest)

    def _fill_layer(self, tmp: Path, parent: str | None, tar: BinaryIO) -> int:
        self._fill_tree(tmp / "root", parent)
        return apply_layer(tar, tmp / "root", whiteouts="delete")

    def _fill_rw(self, tmp: Path, parent: str | None) -> None:
        self._fill_tree(tmp / "root", parent)

    # -- protocol -------------------------------------------------------------------------------

    def status(self) -> list[tuple[str, str]]:
        return []

    def mount(self, container_id: str) -> Path:
        """The container's tree is a plain directory: nothing to mount."""
        return self._rw_root(container_id)

    def unmount(self, container_id: str) -> None:
        self._existing_rw(container_id)

    def changes(self, container_id: str) -> list[Change]:
        parent = self._rw_parent(container_id)
        lower = None if parent is None else self._layer_root(parent)
        return naive_changes(lower, self._rw_root(container_id))

    def diff(self, container_id: str, out: BinaryIO) -> TarStats:
        root = self._rw_root(container_id)
        return write_layer_tar(root, self.changes(container_id), out)

    def graph_data(self, container_id: str | None, chain_id: str | None) -> dict[str, str]:
        """Docker reports no GraphDriver data for vfs (and btrfs)."""
        if container_id is not None:
            self._existing_rw(container_id)
        elif chain_id is not None:
            self._require_layer(chain_id)
        return {}
