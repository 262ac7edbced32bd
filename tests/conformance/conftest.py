"""Fixtures for the conformance suites: every storage driver on a fresh home.

``driver`` yields each driver in turn (vfs, overlay, btrfs) on its own empty
home; ``all_drivers`` yields all three at once, for comparing them. vfs and
overlay homes live on the ordinary tmp filesystem; btrfs homes live on a
btrfs filesystem that the session makes once per pytest-xdist worker: a 1 GiB
sparse file, ``mkfs.btrfs``, a loop device, a mount.

The drivers need root (mounts, chown, device nodes) and btrfs-progs. Tests
needing them are marked ``needs_root`` (and ``btrfs``); without root they are
skipped, or fail when DOCKYARD_REQUIRE_PEERS=1 (set on CI, which runs as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.drivers.base import StorageDriver
from dockyard.drivers.common import mounts_under, remove_tree, umount

DRIVER_NAMES = ("vfs", "overlay", "btrfs")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_root: needs root (mounts, chown, device nodes)")
    config.addinivalue_line("markers", "btrfs: needs btrfs-progs and a loop device")


def require_root(*tools: str) -> None:
    problems = [f"{t} not found" for t in tools if shutil.which(t) is None]
    if os.geteuid() != 0:
        problems.append("needs root")
    if problems:
        msg = "storage drivers unavailable: " + ", ".join(problems)
        if os.environ.get("DOCKYARD_REQUIRE_PEERS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(autouse=True)
def _requirements(request: pytest.FixtureRequest) -> None:
    """Tests marked ``needs_root`` or ``btrfs`` skip (or fail on CI) without them."""
    if request.node.get_closest_marker("btrfs"):
        require_root("mkfs.btrfs", "losetup", "btrfs")
    elif request.node.get_closest_marker("needs_root"):
        require_root()


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="session")
def btrfs_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A mounted 1 GiB btrfs filesystem, for this worker's whole session."""
    require_root("mkfs.btrfs", "losetup", "btrfs")
    base = tmp_path_factory.mktemp("btrfs")
    image, mnt = base / "btrfs.img", base / "mnt"
    mnt.mkdir()
    with image.open("wb") as f:
        f.truncate(1 << 30)
    _run("mkfs.btrfs", "-q", str(image))
    loop = _run("losetup", "--find", "--show", str(image))
    try:
        _run("mount", "-t", "btrfs", loop, str(mnt))
        try:
            # detaching a mounted loop device sets autoclear: the kernel frees it at the
            # umount, so even a killed session leaks no loop device once unmounted
            _run("losetup", "-d", loop)
            yield mnt
        finally:
            for point in reversed(mounts_under(mnt)):
                umount(Path(point))
    finally:
        attached = _run("losetup", "-j", str(image))
        if attached:
            subprocess.run(["losetup", "-d", loop], check=False, capture_output=True)
        image.unlink(missing_ok=True)


def new_driver(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> StorageDriver:
    from dockyard.drivers.select import DRIVERS

    if name == "btrfs":
        root: Path = request.getfixturevalue("btrfs_root") / f"store-{uuid.uuid4().hex[:12]}"
    else:
        require_root()
        root = tmp_path / f"store-{name}"
    return DRIVERS[name](root / name)


def dispose(driver: StorageDriver) -> None:
    """Remove everything the test left through the driver, then check nothing is left."""
    home = driver.home
    try:
        for cid in os.listdir(home / "containers"):
            driver.remove_rw(cid)
        # children before parents: deepest first (every driver keeps layers/<chain>/parent)
        parents = {c: (home / "layers" / c / "parent").read_text().strip() for c in driver.layers()}

        def depth(chain: str) -> int:
            return 0 if not chain else 1 + depth(parents.get(chain, ""))

        for chain in sorted(parents, key=depth, reverse=True):
            driver.remove_layer(chain)
    finally:
        leftover = mounts_under(home)
        for point in reversed(leftover):
            umount(Path(point))
        remove_tree(home.parent)
    assert not leftover, f"mounts left behind: {leftover}"


_PARAMS = [pytest.param(n, marks=[pytest.mark.btrfs] if n == "btrfs" else []) for n in DRIVER_NAMES]


@pytest.fixture(params=_PARAMS)
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageDriver]:
    d = new_driver(request.param, request, tmp_path)
    yield d
    dispose(d)


@pytest.fixture
def overlay_driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageDriver]:
    """For what only overlay has (short links, mount option limits)."""
    d = new_driver("overlay", request, tmp_path)
    yield d
    dispose(d)


@pytest.fixture
def all_drivers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[dict[str, StorageDriver]]:
    drivers: dict[str, StorageDriver] = {}
    try:
        for name in DRIVER_NAMES:
            drivers[name] = new_driver(name, request, tmp_path)
        yield drivers
    finally:
        for d in drivers.values():
            dispose(d)
