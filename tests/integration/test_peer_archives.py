"""Sanity checks of the peer fixtures themselves: the peers run on this machine
and the archives they write (which dockyard's load tests consume) look as
expected.  None of this needs dockyard."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from peers import (
    Dockerd,
    PeerArchive,
    Podman,
    Skopeo,
    make_busybox_rootfs_tar,
    sha256_file,
    tar_names,
)

pytestmark = pytest.mark.integration


def member_json(archive: Path, name: str) -> Any:
    with tarfile.open(archive) as tf:
        f = tf.extractfile(name)
        assert f is not None, f"{name} is not a regular file in {archive}"
        return json.loads(f.read())


def oci_entries(archive: PeerArchive) -> list[tuple[str | None, str]]:
    """(ref.name annotation, config digest) for each manifest in an OCI archive's index."""
    index = member_json(archive.path, "index.json")
    out = []
    for desc in index["manifests"]:
        manifest = member_json(archive.path, "blobs/sha256/" + desc["digest"].split(":", 1)[1])
        ref = (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name")
        out.append((ref, manifest["config"]["digest"]))
    return out


def test_busybox_tar_is_deterministic(busybox_tar: Path, tmp_path: Path) -> None:
    again = make_busybox_rootfs_tar(tmp_path / "again.tar")
    assert sha256_file(again) == sha256_file(busybox_tar)
    with tarfile.open(busybox_tar) as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert members["./bin/busybox"].isreg()
    assert members["./bin/sh"].issym() and members["./bin/sh"].linkname == "/bin/busybox"
    assert members["./bin/httpd"].issym()
    assert members["./tmp"].mode == 0o1777
    assert {"./etc/passwd", "./etc/group", "./var/www", "./root", "./home"} <= set(members)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members.values())
    print(f"busybox.tar {sha256_file(busybox_tar)} {len(members)} entries")


def test_dockerd_answers(dockerd: Dockerd, record_property: Any) -> None:
    versions = dockerd.cli(
        "version", "--format", "{{.Client.APIVersion}} {{.Server.APIVersion}} {{.Server.Version}}"
    ).stdout.split()
    assert versions[1] == "1.41", versions
    assert dockerd.storage_driver in ("overlay2", "vfs")
    record_property("dockerd_startup_seconds", dockerd.startup_seconds)
    print(
        f"dockerd {versions[2]} (client API {versions[0]}, {dockerd.client}) "
        f"driver={dockerd.storage_driver} started in {dockerd.startup_seconds:.2f}s"
    )


def test_podman_answers(podman: Podman) -> None:
    assert podman.storage_driver in ("overlay", "vfs")
    assert podman.root is not None
    graph_root = podman.cli("info", "--format", "{{.Store.GraphRoot}}").stdout.strip()
    assert Path(graph_root) == podman.root


def test_docker_save_archive(docker_save_archive: PeerArchive) -> None:
    names = tar_names(docker_save_archive.path)
    assert "manifest.json" in names and "repositories" in names
    manifest = member_json(docker_save_archive.path, "manifest.json")
    tags = {t: entry["Config"] for entry in manifest for t in entry["RepoTags"] or []}
    assert set(tags) == docker_save_archive.refs == {"busybox:latest", "me/b1:v1", "me/b1:latest"}
    for image in docker_save_archive.images:  # legacy format: <hex>.json is the config
        assert tags[image.ref] == image.id.removeprefix("sha256:") + ".json"
        assert tags[image.ref] in names
    by_config = {e["Config"]: e["Layers"] for e in manifest}
    ids = docker_save_archive.ids()
    busybox_layers = by_config[ids["busybox:latest"].removeprefix("sha256:") + ".json"]
    b1_layers = by_config[ids["me/b1:v1"].removeprefix("sha256:") + ".json"]
    assert len(busybox_layers) == 1 and len(b1_layers) == 2


def test_podman_save_m_archive(podman_save_m_archive: PeerArchive) -> None:
    names = tar_names(podman_save_m_archive.path)
    assert "manifest.json" in names
    manifest = member_json(podman_save_m_archive.path, "manifest.json")
    assert len(manifest) == 2
    tags = {t: entry["Config"] for entry in manifest for t in entry["RepoTags"]}
    assert set(tags) == podman_save_m_archive.refs
    assert podman_save_m_archive.refs == {"localhost/busybox:latest", "localhost/me/b1:v1"}
    for image in podman_save_m_archive.images:
        assert tags[image.ref] == image.id.removeprefix("sha256:") + ".json"


@pytest.mark.parametrize("fixture", ["podman_oci_archive", "skopeo_oci_archive"])
def test_oci_archives(fixture: str, request: pytest.FixtureRequest) -> None:
    archive: PeerArchive = request.getfixturevalue(fixture)
    names = tar_names(archive.path)
    assert {"oci-layout", "index.json"} <= set(names)
    assert "manifest.json" not in names
    assert oci_entries(archive) == [(i.ref, i.id) for i in archive.images]


def test_skopeo_reads_peer_archives(
    skopeo: Skopeo, docker_save_archive: PeerArchive, podman_save_m_archive: PeerArchive
) -> None:
    for archive in (docker_save_archive, podman_save_m_archive):
        for image in archive.images:
            ref = f"docker-archive:{archive.path}:{image.ref}"
            assert skopeo.config_digest(ref) == image.id
