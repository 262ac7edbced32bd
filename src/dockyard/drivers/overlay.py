"""overlay: Docker's overlay2 layout on the kernel's overlay filesystem.

Each layer is unpacked once, as a diff (whiteouts as 0/0 character devices,
opaque directories as ``trusted.overlay.opaque=y``), and a container's root is
an overlay mount of its chain's diffs under its own upper dir::

    l/<short>  -> ../layers/<chain>/diff      short names keep mount options small
    layers/<chain>/diff                      the layer's own files
    layers/<chain>/link                      <short>
    layers/<chain>/lower                     l/<parent short>:l/<grandparent short>:...
    containers/<id>/{upper,work,merged}
    empty/                                   the lower dir of a container on scratch

The mount options name lower dirs relative to the home (``/bin/mount`` runs with
the home as its working directory), so 128 layers take ~2 KB of the 4 KB the
kernel accepts. Mounted with redirect_dir=off, index=off and metacopy=off, so
the upper dir alone says what changed (Docker's "Native Overlay Diff").
Mounting is idempotent (mount returns the existing mount); there is no refcount.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import stat
import subprocess
from pathlib import Path
from typing import BinaryIO

from dockyard.archive.apply import apply_layer
from dockyard.archive.diff import overlay_changes, write_layer_tar
from dockyard.archive.tarwrite import TarStats
from dockyard.drivers.base import Change
from dockyard.drivers.common import (
    DriverBase,
    fs_name,
    read_text,
    supports_d_type,
    umount,
    write_text,
)
from dockyard.errors import DockyardError, InvalidArgument, StoreCorrupt

_MAX_OPTIONS = 4095  # mount(2) copies one page of option data
_OPTIONS = "index=off,redirect_dir=off,metacopy=off"
_UNSUPPORTED_HOMES = {"overlayfs", "aufs", "ecryptfs", "nfs"}  # as Docker's overlay2 refuses


def _overlay_in_kernel() -> bool:
    def listed() -> bool:
        try:
            with open("/proc/filesystems", encoding="ascii") as f:
                return any(line.split()[-1:] == ["overlay"] for line in f)
        except OSError:
            return False

    if listed():
        return True
    if shutil.which("modprobe"):
        subprocess.run(["modprobe", "overlay"], capture_output=True, check=False)
    return listed()


def unusable_reason(home: Path) -> str | None:
    """Why the overlay driver cannot run with this home, or None."""
    if os.geteuid() != 0:
        return "overlay mounts need root"
    if not _overlay_in_kernel():
        return "the kernel has no overlay filesystem (not in /proc/filesystems)"
    found = fs_name(home)
    if found in _UNSUPPORTED_HOMES:
        return f"{home} is on {found}, which cannot hold overlay upper dirs"
    return None


def _short_name() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode()[:12]


class OverlayDriver(DriverBase):
    name = "overlay"

    def __init__(self, home: Path) -> None:
        reason = unusable_reason(home)
        if reason:
            raise InvalidArgument(f"overlay storage driver unavailable: {reason}")
        super().__init__(home)
        (self.home / "l").mkdir(exist_ok=True)
        (self.home / "empty").mkdir(exist_ok=True)
        self._d_type = supports_d_type(self.home)
        if not self._d_type:
            raise InvalidArgument(
                f"overlay storage driver unavailable: {self.home} is on a filesystem "
                "without d_type support (xfs needs ftype=1)"
            )

    # -- layers -------------------------------------------------------------------------------

    def _diff_dir(self, chain_id: str) -> Path:
        return self._layer_dir(chain_id) / "diff"

    def _new_root(self, dest: Path, parent: str | None) -> None:
        """An empty dir with the attributes of the chain's root directory.

        The merged root takes its mode and owner from the top dir only, so each
        diff (and upper) root carries the chain's: the last ``./`` member's."""
        dest.mkdir(mode=0o755)
        if parent is None:
            dest.chmod(0o755)
            return
        st = os.stat(self._diff_dir(parent))
        os.chown(dest, st.st_uid, st.st_gid)
        dest.chmod(stat.S_IMODE(st.st_mode))

    def _fill_layer(self, tmp: Path, parent: str | None, tar: BinaryIO) -> int:
        self._new_root(tmp / "diff", parent)
        size = apply_layer(tar, tmp / "diff", whiteouts="overlay")
        link = _short_name()
        while os.path.lexists(self.home / "l" / link):
            link = _short_name()
        write_text(tmp / "link", link)
        if parent is not None:
            write_text(tmp / "lower", ":".join(self._lower_links(parent)))
        return size

    def _lower_links(self, top: str) -> list[str]:
        """``l/<short>`` of ``top`` and each of its ancestors, top first."""
        layer = self._layer_dir(top)
        links = [f"l/{read_text(layer / 'link')}"]
        with contextlib.suppress(FileNotFoundError):
            links += read_text(layer / "lower").split(":")
        return links

    def _layer_published(self, chain_id: str) -> None:
        link = read_text(self._layer_dir(chain_id) / "link")
        with contextlib.suppress(FileExistsError):
            os.symlink(f"../layers/{chain_id}/diff", self.home / "l" / link)

    def _layer_retired(self, chain_id: str, tmp: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.home / "l" / read_text(tmp / "link")).unlink()

    def _repair_links(self) -> None:
        """Re-make missing short links (a crash between a layer's rename and its link)."""
        for chain_id in self.layers():
            self._layer_published(chain_id)

    def cleanup(self) -> None:
        super().cleanup()
        links = self.home / "l"
        if links.is_dir():
            for entry in os.scandir(links):
                if entry.is_symlink() and not os.path.exists(entry.path):
                    Path(entry.path).unlink(missing_ok=True)  # its layer was removed

    # -- containers -------------------------------------------------------------------------

    def _fill_rw(self, tmp: Path, parent: str | None) -> None:
        self._new_root(tmp / "upper", parent)
        for sub in ("work", "merged"):
            (tmp / sub).mkdir(mode=0o755)

    def _lowers(self, container_id: str) -> list[Path]:
        """Absolute lower dirs of a container, top first (``empty/`` on scratch)."""
        chain = self._chain(self._rw_parent(container_id))
        if not chain:
            return [self.home / "empty"]
        return [self._diff_dir(c) for c in chain]

    def mount(self, container_id: str) -> Path:
        with self._lock():
            rw = self._existing_rw(container_id)
            merged = rw / "merged"
            if os.path.ismount(merged):
                return merged
            parent = self._rw_parent(container_id)
            lowers = ["empty"] if parent is None else self._lower_links(parent)
            if not all(os.path.exists(self.home / link) for link in lowers):
                self._repair_links()
                missing = [x for x in lowers if not os.path.exists(self.home / x)]
                if missing:
                    raise StoreCorrupt(f"overlay: lower dirs missing: {', '.join(missing)}")
            rel = f"containers/{container_id}"
            options = (
                f"lowerdir={':'.join(lowers)},upperdir={rel}/upper,workdir={rel}/work,{_OPTIONS}"
            )
            if len(options) > _MAX_OPTIONS:
                raise InvalidArgument(
                    f"overlay: too many layers to mount ({len(lowers)}); "
                    "the mount options exceed one page"
                )
            proc = subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
                cwd=self.home,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise DockyardError(f"overlay: mount {merged}: {proc.stderr.strip()}")
            return merged

    def _unmount_locked(self, container_id: str) -> None:
        umount(self._rw_dir(container_id) / "merged")

    def unmount(self, container_id: str) -> None:
        with self._lock():
            self._existing_rw(container_id)
            self._unmount_locked(container_id)

    def changes(self, container_id: str) -> list[Change]:
        upper = self._existing_rw(container_id) / "upper"
        return overlay_changes(upper, self._lowers(container_id))

    def diff(self, container_id: str, out: BinaryIO) -> TarStats:
        """The upper dir's changes as a layer tar, read from the upper dir alone.

        Deletions are written as one ``.wh.<name>`` each, as vfs and btrfs write
        them, rather than as overlay2's opaque markers (``overlay_layer_tar``),
        so a commit gives the same layer, byte for byte, on every driver."""
        upper = self._existing_rw(container_id) / "upper"
        return write_layer_tar(upper, self.changes(container_id), out)

    # -- info -----------------------------------------------------------------------------------

    def status(self) -> list[tuple[str, str]]:
        return [
            ("Backing Filesystem", fs_name(self.home)),
            ("Supports d_type", str(self._d_type).lower()),
            ("Native Overlay Diff", "true"),
            ("userxattr", "false"),
        ]

    def graph_data(self, container_id: str | None, chain_id: str | None) -> dict[str, str]:
        """Docker's overlay2 shape: LowerDir (absent on scratch), MergedDir, UpperDir, WorkDir."""
        if container_id is not None:
            rw = self._existing_rw(container_id)
            chain = self._chain(self._rw_parent(container_id))
            data = {"MergedDir": rw / "merged", "UpperDir": rw / "upper", "WorkDir": rw / "work"}
        elif chain_id is not None:
            self._require_layer(chain_id)
            layer = self._layer_dir(chain_id)
            chain = self._chain(chain_id)[1:]
            data = {
                "MergedDir": layer / "merged",
                "UpperDir": layer / "diff",
                "WorkDir": layer / "work",
            }
        else:
            return {}
        out = {k: str(v) for k, v in data.items()}
        if chain:
            out["LowerDir"] = ":".join(str(self._diff_dir(c)) for c in chain)
        return dict(sorted(out.items()))
