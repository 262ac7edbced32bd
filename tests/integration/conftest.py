"""Fixtures for the integration tests: real peers (dockerd, podman, skopeo, umoci)
and a runner for dockyard's own CLI.

Session fixtures are per pytest-xdist worker (each worker starts its own
dockerd and podman store under its own tmp_path_factory dir), so `-n N` works.
Peers need root and the Debian packages docker.io, containerd, runc, podman,
skopeo, umoci, busybox-static; tests needing a missing peer are skipped, or
fail when DOCKYARD_REQUIRE_PEERS=1 (set it on CI).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `import peers` from the test modules, any import mode
    sys.path.insert(0, str(HERE))

from peers import (  # noqa: E402
    Dockerd,
    DockerImages,
    Dockyard,
    PeerArchive,
    Podman,
    PodmanImages,
    Skopeo,
    docker_make_images,
    docker_save,
    make_busybox_rootfs_tar,
    podman_make_images,
    podman_save_multi,
    podman_save_oci,
    skopeo_docker_to_oci_archive,
    worker_id,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


def require(*tools: str, root: bool = True) -> None:
    """Skip (or fail with DOCKYARD_REQUIRE_PEERS=1) unless tools exist and we are root."""
    problems = [f"{t} not found" for t in tools if shutil.which(t) is None]
    if root and os.geteuid() != 0:
        problems.append("needs root")
    if problems:
        msg = "peers unavailable: " + ", ".join(problems)
        if os.environ.get("DOCKYARD_REQUIRE_PEERS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bench/make.sh busybox rootfs tar (deterministic bytes), built once."""
    require("tar", root=False)
    if not Path("/bin/busybox").exists():
        require("busybox")  # skips/fails with a clear reason
    return make_busybox_rootfs_tar(tmp_path_factory.mktemp("busybox") / "busybox.tar")


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """A private dockerd 20.10 (+ its own containerd), started once per worker."""
    require("dockerd", "containerd", "runc")
    daemon = Dockerd()
    daemon.start(tmp_path_factory.mktemp(f"dockerd-{worker_id()}"))
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """podman with isolated storage/config, once per worker."""
    require("podman")
    pm = Podman()
    pm.start(tmp_path_factory.mktemp(f"podman-{worker_id()}"))
    try:
        yield pm
    finally:
        pm.stop()


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    require("skopeo", root=False)
    return Skopeo(tmp_path_factory.mktemp(f"skopeo-{worker_id()}"))


@pytest.fixture
def dy(tmp_path: Path) -> Dockyard:
    """dockyard on a fresh store for registry clients: its own DOCKER_CONFIG, no
    retries (quick failures), and none of the caller's insecure-registry, fast-path
    or store-root settings."""
    d = Dockyard(tmp_path / "store")
    d.env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")
    d.env["DOCKYARD_TRANSFER_RETRIES"] = "0"
    for var in ("DOCKYARD_INSECURE_REGISTRIES", "DOCKYARD_NO_FAST", "DOCKYARD_ROOT"):
        d.env.pop(var, None)
    return d


@pytest.fixture
def dockyard(tmp_path: Path) -> Dockyard:
    """dockyard's CLI on a fresh store: `dockyard.run(*args)`, `dockyard.root`."""
    return Dockyard(tmp_path / "dockyard-root")


# --------------------------------------------------------------------------- #
# archives written by the real peers (what dockyard's load must read)
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="session")
def docker_images(
    dockerd: Dockerd, busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory
) -> DockerImages:
    return docker_make_images(dockerd, busybox_tar, tmp_path_factory.mktemp("docker-images"))


@pytest.fixture(scope="session")
def docker_save_archive(
    dockerd: Dockerd, docker_images: DockerImages, tmp_path_factory: pytest.TempPathFactory
) -> PeerArchive:
    """`docker save` (20.10, legacy format) of busybox:latest, me/b1:v1, me/b1:latest;
    me/b1 shares busybox's layer (stored once, a symlink in the archive)."""
    dest = tmp_path_factory.mktemp("docker-save") / "docker-save.tar"
    return docker_save(dockerd, (docker_images.busybox, *docker_images.second), dest)


@pytest.fixture(scope="session")
def podman_images(
    podman: Podman, busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory
) -> PodmanImages:
    return podman_make_images(podman, busybox_tar, tmp_path_factory.mktemp("podman-images"))


@pytest.fixture(scope="session")
def podman_save_m_archive(
    podman: Podman, podman_images: PodmanImages, tmp_path_factory: pytest.TempPathFactory
) -> PeerArchive:
    """`podman save -m` docker-archive of localhost/me/b1:v1 and localhost/busybox:latest."""
    dest = tmp_path_factory.mktemp("podman-save-m") / "podman-save-m.tar"
    return podman_save_multi(podman, (podman_images.second, podman_images.busybox), dest)


@pytest.fixture(scope="session")
def podman_oci_archive(
    podman: Podman, podman_images: PodmanImages, tmp_path_factory: pytest.TempPathFactory
) -> PeerArchive:
    """`podman save --format oci-archive` of localhost/me/b1:v1 (gzip layers)."""
    dest = tmp_path_factory.mktemp("podman-oci") / "podman-oci.tar"
    return podman_save_oci(podman, podman_images.second, dest)


@pytest.fixture(scope="session")
def skopeo_oci_archive(
    skopeo: Skopeo, docker_save_archive: PeerArchive, tmp_path_factory: pytest.TempPathFactory
) -> PeerArchive:
    """`skopeo copy docker-archive:<docker save>:me/b1:v1 oci-archive:...:me/b1:v1`."""
    dest = tmp_path_factory.mktemp("skopeo-oci") / "skopeo-oci.tar"
    return skopeo_docker_to_oci_archive(skopeo, docker_save_archive, "me/b1:v1", dest)
