"""dockyard's save/load against the real tools, both directions.

CLI contract under test (docker's verbs):
  dockyard import FILE NAME:TAG      -> prints sha256:<64 hex> (the image ID)
  dockyard images -q                 -> 12-hex short IDs, one per image
  dockyard inspect IMG               -> Docker's JSON list ([{"Id": ..., "RepoTags": ...}])
  dockyard tag SRC DST, dockyard rmi IMG...
  dockyard save -o FILE IMG...       -> Docker 25+ archive: OCI layout (oci-layout,
                                        index.json, blobs/) + manifest.json + repositories
  dockyard load -i FILE              -> "Loaded image: name:tag" per tag
                                        (or "Loaded image ID: sha256:..." if untagged)
Image ID = digest of the config blob, as docker and podman define it.
"""

from __future__ import annotations

import json
import re
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from peers import (
    SECOND_IMAGE_FILE,
    Dockerd,
    Dockyard,
    PeerArchive,
    Skopeo,
    make_modified_tar,
    run_command,
    tar_names,
    umoci,
)

pytestmark = pytest.mark.integration

IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")
EXTRA_FILES = {"data/www/html/index.html": SECOND_IMAGE_FILE}


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def split_ref(ref: str) -> tuple[str, str]:
    """("name", "tag") of a name[:tag] reference (tag defaults to latest)."""
    if ":" in ref.rsplit("/", 1)[-1]:
        name, tag = ref.rsplit(":", 1)
        return name, tag
    return ref, "latest"


def normalize(ref: str) -> str:
    """docker.io/library/busybox:latest for busybox, as docker/containerd spell it."""
    name, tag = split_ref(ref)
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = "docker.io/library/" + name
    elif not ("." in first or ":" in first or first == "localhost"):
        name = "docker.io/" + name
    return f"{name}:{tag}"


def loaded(stdout: str) -> tuple[set[str], set[str]]:
    """Names and IDs from `load` output ("Loaded image: x:y", "Loaded image ID: sha256:...")."""
    names, ids = set(), set()
    for line in stdout.splitlines():
        if line.startswith("Loaded image ID: "):
            ids.add(line.removeprefix("Loaded image ID: ").strip())
        elif line.startswith("Loaded image: "):
            names.add(line.removeprefix("Loaded image: ").strip())
    return names, ids


def dy_import(dockyard: Dockyard, tar: Path, ref: str) -> str:
    out = dockyard.run("import", tar, ref).stdout.strip()
    assert IMAGE_ID.fullmatch(out), f"import printed {out!r}, expected sha256:<64 hex>"
    return out


def dy_inspect(dockyard: Dockyard, ref: str) -> dict[str, Any]:
    data = json.loads(dockyard.run("inspect", ref).stdout)
    assert isinstance(data, list) and len(data) == 1, data
    info: dict[str, Any] = data[0]
    return info


def docker_inspect(dockerd: Dockerd, ref: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(dockerd.cli("image", "inspect", ref).stdout)[0]
    return info


def short_ids(ids: set[str] | list[str]) -> set[str]:
    return {i.removeprefix("sha256:")[:12] for i in ids}


def dy_short_ids(dockyard: Dockyard) -> set[str]:
    return set(dockyard.run("images", "-q").stdout.split())


def read_member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tf:
        f = tf.extractfile(name)
        assert f is not None, f"{name} missing or not a regular file in {archive}"
        return f.read()


def index_ref_names(archive: Path, refs: list[str]) -> dict[str, str]:
    """The org.opencontainers.image.ref.name that index.json gives each of refs.

    Docker 25+ writes ref.name = the tag and io.containerd.image.name = the full
    name; a full name in ref.name (podman, skopeo) is accepted too.
    """
    index = json.loads(read_member(archive, "index.json"))
    found: dict[str, str] = {}
    for ref in refs:
        for desc in index["manifests"]:
            ann = desc.get("annotations") or {}
            ref_name = ann.get("org.opencontainers.image.ref.name")
            full = ann.get("io.containerd.image.name")
            if ref_name is None:
                continue
            if full == normalize(ref) or (
                full is None and ref_name in {ref, normalize(ref), split_ref(ref)[1]}
            ):
                found[ref] = ref_name
                break
        else:
            pytest.fail(f"index.json has no ref.name entry for {ref}: {json.dumps(index)}")
    return found


def assert_docker25_layout(archive: Path) -> list[str]:
    names = tar_names(archive)
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= set(names), names
    assert len(names) == len(set(names)), "duplicate members in the archive"
    assert json.loads(read_member(archive, "oci-layout"))["imageLayoutVersion"] == "1.0.0"
    return names


@pytest.fixture
def extra_tar(busybox_tar: Path, tmp_path: Path) -> Path:
    """busybox plus /data/www/html/index.html (a different single layer)."""
    return make_modified_tar(busybox_tar, tmp_path / "busybox-extra.tar", EXTRA_FILES)


# --------------------------------------------------------------------------- #
# (a) real docker loads what dockyard saves
# --------------------------------------------------------------------------- #


def test_docker_loads_dockyard_save(
    dockyard: Dockyard, dockerd: Dockerd, busybox_tar: Path, extra_tar: Path, tmp_path: Path
) -> None:
    p = f"dyi{uuid.uuid4().hex[:8]}"  # names unique in the session's dockerd
    busybox, dup, extra = f"{p}/busybox:latest", f"{p}/dup:v1", f"{p}/extra:v2"
    ids = {
        busybox: dy_import(dockyard, busybox_tar, busybox),
        dup: dy_import(dockyard, busybox_tar, dup),  # same layer as busybox
        extra: dy_import(dockyard, extra_tar, extra),
    }
    archive = tmp_path / "dockyard-save.tar"
    dockyard.run("save", "-o", archive, busybox, dup, extra)
    assert_docker25_layout(archive)

    try:
        names, _ = loaded(dockerd.cli("load", "-i", archive).stdout)
        assert names == set(ids)
        for ref, image_id in ids.items():
            info = docker_inspect(dockerd, ref)
            assert info["Id"] == image_id, ref
            assert ref in info["RepoTags"]
            assert info["RootFS"]["Layers"] == dy_inspect(dockyard, ref)["RootFS"]["Layers"]
        layers = {ref: docker_inspect(dockerd, ref)["RootFS"]["Layers"] for ref in ids}
        assert layers[busybox] == layers[dup]
        assert layers[busybox] != layers[extra]
    finally:
        dockerd.cli("rmi", *ids, check=False)


# --------------------------------------------------------------------------- #
# (b) dockyard loads what the peers save
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "fixture",
    ["docker_save_archive", "podman_save_m_archive", "podman_oci_archive", "skopeo_oci_archive"],
)
def test_dockyard_loads_peer_archive(
    fixture: str, dockyard: Dockyard, request: pytest.FixtureRequest
) -> None:
    archive: PeerArchive = request.getfixturevalue(fixture)
    names, _ = loaded(dockyard.run("load", "-i", archive.path).stdout)
    assert names == archive.refs, f"{archive.producer}: {archive.path}"
    for image in archive.images:
        info = dy_inspect(dockyard, image.ref)
        assert info["Id"] == image.id, f"{image.ref} from {archive.producer}"
        assert image.ref in info["RepoTags"]
    assert dy_short_ids(dockyard) == short_ids([i.id for i in archive.images])


def test_dockyard_load_matches_docker_inspect(
    dockyard: Dockyard, dockerd: Dockerd, docker_save_archive: PeerArchive
) -> None:
    """After loading docker's archive, dockyard's inspect agrees with docker's own."""
    dockyard.run("load", "-i", docker_save_archive.path)
    for image in docker_save_archive.images:
        mine, theirs = dy_inspect(dockyard, image.ref), docker_inspect(dockerd, image.ref)
        for key in ("Id", "Created", "Architecture", "Os", "RootFS"):
            assert mine[key] == theirs[key], f"{image.ref}: {key}"
        assert sorted(mine["RepoTags"]) == sorted(theirs["RepoTags"])
        for key in ("Env", "Cmd"):
            assert mine["Config"].get(key) == theirs["Config"].get(key), f"{image.ref}: {key}"
    b1, busybox = dy_inspect(dockyard, "me/b1:v1"), dy_inspect(dockyard, "busybox:latest")
    assert b1["RootFS"]["Layers"][:1] == busybox["RootFS"]["Layers"]


# --------------------------------------------------------------------------- #
# (c) skopeo and umoci read dockyard's archive (both as docker-archive and OCI)
# --------------------------------------------------------------------------- #


def test_skopeo_and_umoci_read_dockyard_save(
    dockyard: Dockyard, skopeo: Skopeo, busybox_tar: Path, extra_tar: Path, tmp_path: Path
) -> None:
    busybox, extra = "busybox:latest", "me/extra:v2"  # distinct tags: unique ref.names
    ids = {
        busybox: dy_import(dockyard, busybox_tar, busybox),
        extra: dy_import(dockyard, extra_tar, extra),
    }
    archive = tmp_path / "dockyard-save.tar"
    dockyard.run("save", "-o", archive, busybox, extra)
    assert_docker25_layout(archive)

    # the docker-archive view (manifest.json)
    for ref, image_id in ids.items():
        assert skopeo.config_digest(f"docker-archive:{archive}:{ref}") == image_id
        diff_ids = skopeo.inspect_config(f"docker-archive:{archive}:{ref}")["rootfs"]["diff_ids"]
        assert diff_ids == dy_inspect(dockyard, ref)["RootFS"]["Layers"]

    # the OCI view of the very same file (index.json + blobs/)
    ref_names = index_ref_names(archive, list(ids))
    for ref, image_id in ids.items():
        assert skopeo.config_digest(f"oci-archive:{archive}:{ref_names[ref]}") == image_id

    # copied into an OCI layout by skopeo, then unpacked by umoci
    layout = tmp_path / "oci-layout"
    skopeo.copy(f"docker-archive:{archive}:{extra}", f"oci:{layout}:extra")
    assert "extra" in umoci("ls", "--layout", layout).stdout.split()
    bundle = tmp_path / "bundle-skopeo"
    umoci("unpack", "--image", f"{layout}:extra", bundle)
    assert (bundle / "rootfs/data/www/html/index.html").read_bytes() == SECOND_IMAGE_FILE
    assert (bundle / "rootfs/bin/busybox").is_file()
    diff_ids = skopeo.inspect_config(f"oci:{layout}:extra")["rootfs"]["diff_ids"]
    assert diff_ids == dy_inspect(dockyard, extra)["RootFS"]["Layers"]

    # umoci reads dockyard's archive, extracted, as an OCI layout directly
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    run_command(["tar", "-xf", archive, "-C", extracted])
    listed = umoci("ls", "--layout", extracted).stdout.split()
    assert set(ref_names.values()) <= set(listed)
    bundle = tmp_path / "bundle-dockyard"
    umoci("unpack", "--image", f"{extracted}:{ref_names[busybox]}", bundle)
    assert (bundle / "rootfs/bin/sh").readlink() == Path("/bin/busybox")
    assert not (bundle / "rootfs/data").exists()


# --------------------------------------------------------------------------- #
# (d) save -> rmi -> load round trip inside dockyard
# --------------------------------------------------------------------------- #


def test_save_rmi_load_keeps_ids_and_tags(
    dockyard: Dockyard, busybox_tar: Path, extra_tar: Path, tmp_path: Path
) -> None:
    busybox_id = dy_import(dockyard, busybox_tar, "busybox:latest")
    dockyard.run("tag", "busybox:latest", "other/name:t1")
    extra_id = dy_import(dockyard, extra_tar, "extra:v1")
    refs = ["busybox:latest", "other/name:t1", "extra:v1"]
    assert dy_short_ids(dockyard) == short_ids([busybox_id, extra_id])

    def state() -> dict[str, tuple[str, list[str], list[str]]]:
        out = {}
        for ref in refs:
            info = dy_inspect(dockyard, ref)
            out[ref] = (info["Id"], sorted(info["RepoTags"]), info["RootFS"]["Layers"])
        return out

    before = state()
    assert before["busybox:latest"][0] == before["other/name:t1"][0] == busybox_id
    assert before["busybox:latest"][1] == ["busybox:latest", "other/name:t1"]
    assert before["extra:v1"][0] == extra_id

    archive = tmp_path / "roundtrip.tar"
    dockyard.run("save", "-o", archive, *refs)
    assert_docker25_layout(archive)
    manifest = json.loads(read_member(archive, "manifest.json"))
    assert sorted(t for entry in manifest for t in entry["RepoTags"]) == sorted(refs)

    dockyard.run("rmi", *refs)
    assert dy_short_ids(dockyard) == set()
    assert dockyard.run("inspect", "busybox:latest", check=False).returncode != 0

    names, _ = loaded(dockyard.run("load", "-i", archive).stdout)
    assert names == set(refs)
    assert state() == before
    assert dy_short_ids(dockyard) == short_ids([busybox_id, extra_id])
