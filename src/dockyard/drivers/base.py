"""The one protocol every storage driver implements (vfs, overlay, btrfs).

Layers are keyed by chain ID hex (Docker's ChainID without ``sha256:``), so a
layer is unpacked once per chain and shared by every image and container on
it. A container's writable layer sits on top of one chain.

Every driver passes the shared suite in tests/conformance/test_drivers.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Literal, NamedTuple, Protocol

from dockyard.archive.tarwrite import TarStats


class Change(NamedTuple):
    """One line of ``dockyard diff``: A(dded), C(hanged) or D(eleted) and an absolute path."""

    kind: Literal["A", "C", "D"]
    path: str


class StorageDriver(Protocol):
    name: str  # "overlay", "btrfs", "vfs"
    home: Path  # the driver's own directory under the store root

    def status(self) -> list[tuple[str, str]]:
        """Lines for ``info`` under "Storage Driver", e.g. [("Backing Filesystem", "extfs")]."""
        ...

    # -- read-only layers ---------------------------------------------------------

    def has_layer(self, chain_id: str) -> bool: ...

    def unsynced_marker(self, chain_id: str) -> Path:
        """The file in a new layer that says its files may not be on the disk yet
        (it holds the boot ID); whoever syncs the filesystem removes it. On open, a
        driver drops layers still marked by an earlier boot."""
        ...

    def create_layer(self, chain_id: str, parent: str | None, tar: BinaryIO) -> int:
        """Unpack an (uncompressed) OCI layer tar on top of ``parent``'s chain.

        Atomic (built in a temp dir, renamed into place) and idempotent. Returns
        the layer's size in bytes."""
        ...

    def remove_layer(self, chain_id: str) -> None:
        """Delete a layer; Conflict while a layer or container sits on it; missing: no-op."""
        ...

    def layers(self) -> list[str]: ...

    # -- writable container layers ---------------------------------------------------

    def create_rw(self, container_id: str, parent: str | None) -> None:
        """Make the writable layer (``parent`` None: on scratch). Atomic; a no-op if it exists."""
        ...

    def mount(self, container_id: str) -> Path:
        """Make the container's root filesystem available; returns its path.

        Idempotent, not refcounted: mounting a mounted layer returns the same
        path, and one ``unmount`` unmounts it (whoever mounted it)."""
        ...

    def unmount(self, container_id: str) -> None:
        """Idempotent (unmounted stays unmounted); lazily detaches a busy mount."""
        ...

    def remove_rw(self, container_id: str) -> None:
        """Unmount if needed (lazily when busy) and delete the writable layer. Missing: no-op."""
        ...

    def changes(self, container_id: str) -> list[Change]:
        """What the container changed, sorted by path (``dockyard diff``)."""
        ...

    def diff(self, container_id: str, out: BinaryIO) -> TarStats:
        """Write the writable layer as an OCI layer tar (whiteouts for deletions)."""
        ...

    def cleanup(self) -> None:
        """Delete what a killed process left behind (half-built layers, stale links).

        Also done when the driver is opened; safe while other processes use the
        store (their work in progress is locked and kept)."""
        ...

    def graph_data(self, container_id: str | None, chain_id: str | None) -> dict[str, str]:
        """``GraphDriver.Data`` for inspect (LowerDir/UpperDir/MergedDir/WorkDir on overlay)."""
        ...
