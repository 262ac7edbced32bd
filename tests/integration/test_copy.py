"""``dockyard copy SRC DST`` between transports, against real peers on 127.0.0.1:
Debian's ``docker-registry`` (distribution 2.8, open and with htpasswd), dockyard's
own registry, ``skopeo`` and ``umoci`` reading what copy writes and writing what it reads.

CLI contract under test (skopeo's):
  copy [--src-creds U:P] [--dest-creds U:P] [--src-tls-verify=B] [--dest-tls-verify=B]
       [--dest-compress-format gzip|zstd] [--override-arch A] [--platform P] [-q] SRC DST
  SRC/DST: docker://HOST/NAME[:TAG|@DIGEST], docker-archive:PATH[:NAME:TAG],
           oci-archive:PATH[:REF], oci:DIR[:REF], dockyard:NAME[:TAG]
  output: "Copying blob sha256:...", "Copying config sha256:<image ID>",
          "Writing manifest to image destination" (none with -q)
  errors: one line, exit 1: "Invalid source name X: ...", "Invalid destination name X: ...",
          "initializing source X: ...", "writing to destination X: ..."
The image ID (config digest) is the same at both ends of every copy.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import Dockyard, Skopeo, umoci, worker_id

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.helpers.registries import Distribution, htpasswd, require_docker_registry  # noqa: E402
from tests.imagegen import docker_archive, image_config, layer_tar, sha  # noqa: E402

pytestmark = pytest.mark.integration

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
INDEX_HTML = b"<h1>b1</h1>\n"


# --------------------------------------------------------------------------- #
# fixtures and helpers
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    require_docker_registry()
    reg = Distribution(tmp_path_factory.mktemp(f"copy-registry-{worker_id()}")).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    """distribution with htpasswd auth: copier / s3cret."""
    require_docker_registry()
    work = tmp_path_factory.mktemp(f"copy-registry-basic-{worker_id()}")
    path = htpasswd(work / "htpasswd", {"copier": "s3cret"})
    reg = Distribution(
        work / "reg", auth={"htpasswd": {"realm": "basic-realm", "path": str(path)}}
    ).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def dockyard_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from registry_server import RegistryServer

    reg = RegistryServer(tmp_path_factory.mktemp(f"copy-dyreg-{worker_id()}") / "data").start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def two_layers(busybox_tar: Path) -> list[bytes]:
    """busybox + index.html: two layers."""
    top = layer_tar({"data/www/html/index.html": INDEX_HTML},
                    dirs=("data/", "data/www/", "data/www/html/"))
    return [busybox_tar.read_bytes(), top]


def load_two(dy: Dockyard, layers: list[bytes], ref: str) -> str:
    path = dy.root.parent / "two-src.tar"
    path.write_bytes(docker_archive([(layers, [ref])]))
    dy.run("load", "-i", path)
    path.unlink()
    return sha(image_config(layers, created="2026-01-01T00:00:00Z"))


def inspect(dy: Dockyard, ref: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(dy.run("inspect", ref).stdout)
    return data[0]


def copy(dy: Dockyard, *args: str | Path) -> list[str]:
    return dy.run("copy", *args).stdout.splitlines()


def copy_fails(dy: Dockyard, *args: str | Path) -> str:
    """The one error line of a failed copy (exit status 1)."""
    proc = dy.run("copy", *args, check=False)
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def assert_clean(dy: Dockyard) -> None:
    out = dy.run("system", "check").stdout
    assert "problem" not in out, out


def listing(path: Path) -> list[str]:
    """Every path under ``path`` (relative), to show nothing was left behind."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def layout_entries(layout: Path) -> dict[str, str]:
    """ref.name -> manifest digest of an OCI layout's index.json."""
    index = json.loads((layout / "index.json").read_text())
    return {
        (m.get("annotations") or {}).get("org.opencontainers.image.ref.name", ""): m["digest"]
        for m in index["manifests"]
    }


def manifest_of(registry: Any, repo: str, ref: str) -> dict[str, Any]:
    import httpx

    accept = ("application/vnd.oci.image.manifest.v1+json, "
              "application/vnd.docker.distribution.manifest.v2+json")
    r = httpx.get(f"{registry.url}/v2/{repo}/manifests/{ref}", headers={"Accept": accept})
    r.raise_for_status()
    data: dict[str, Any] = r.json()
    return data


# --------------------------------------------------------------------------- #
# store <-> archives and layouts
# --------------------------------------------------------------------------- #


def test_store_docker_archive_store(
    dy: Dockyard, two_layers: list[bytes], skopeo: Skopeo, tmp_path: Path
) -> None:
    image_id = load_two(dy, two_layers, "me/two:v1")
    out = tmp_path / "out"
    out.mkdir()
    lines = copy(dy, "dockyard:me/two:v1", f"docker-archive:{out}/a.tar")
    assert lines == [
        *(f"Copying blob {sha(layer)}" for layer in two_layers),
        f"Copying config {image_id}",
        "Writing manifest to image destination",
    ]
    # no REF: the source's name; the very bytes `save` writes
    dy.run("save", "-o", out / "saved.tar", "me/two:v1")
    assert (out / "a.tar").read_bytes() == (out / "saved.tar").read_bytes()
    assert skopeo.config_digest(f"docker-archive:{out}/a.tar:me/two:v1") == image_id

    # another RepoTag, and -q
    assert copy(dy, "-q", "dockyard:me/two:v1", f"docker-archive:{out}/b.tar:other/name:x") == []
    other = dy.sibling("other")
    assert other.run("load", "-i", out / "b.tar").stdout == "Loaded image: other/name:x\n"
    assert inspect(other, "other/name:x")["Id"] == image_id

    # back into a store under a new name (named and index selection)
    back = dy.sibling("back")
    copy(back, f"docker-archive:{out}/a.tar:me/two:v1", "dockyard:back/two:v2")
    copy(back, f"docker-archive:{out}/b.tar:@0", "dockyard:back/two:v3")
    copy(back, f"docker-archive:{out}/a.tar", "dockyard:back/two")
    assert {inspect(back, f"back/two:{t}")["Id"] for t in ("v2", "v3", "latest")} == {image_id}
    assert inspect(back, "back/two:v2")["RootFS"]["Layers"] == [sha(x) for x in two_layers]
    assert listing(out) == ["a.tar", "b.tar", "saved.tar"]
    assert_clean(back)
    # store to store: a tag, same image
    copy(back, "dockyard:back/two:v2", "dockyard:again:1")
    assert inspect(back, "again:1")["Id"] == image_id


def test_store_oci_layout_store(
    dy: Dockyard, two_layers: list[bytes], busybox_tar: Path, skopeo: Skopeo, tmp_path: Path
) -> None:
    image_id = load_two(dy, two_layers, "me/two:v1")
    bb_id = dy.run("import", busybox_tar, "me/bb:v1").stdout.strip()
    layout = tmp_path / "layout"
    copy(dy, "dockyard:me/two:v1", f"oci:{layout}:v1")  # made, whole
    copy(dy, "dockyard:me/bb:v1", f"oci:{layout}:v2")  # added
    copy(dy, "dockyard:me/bb:v1", f"oci:{layout}:v1")  # replaces v1
    entries = layout_entries(layout)
    assert sorted(entries) == ["v1", "v2"] and entries["v1"] == entries["v2"]
    assert not [p for p in listing(layout) if ".tmp" in p or "partial" in p]
    assert sorted(umoci("ls", "--layout", layout).stdout.split()) == ["v1", "v2"]
    assert skopeo.config_digest(f"oci:{layout}:v1") == bb_id
    copy(dy, "dockyard:me/two:v1", f"oci:{layout}:two")
    assert skopeo.config_digest(f"oci:{layout}:two") == image_id
    bundle = tmp_path / "bundle"
    umoci("unpack", "--image", f"{layout}:two", bundle)
    assert (bundle / "rootfs/data/www/html/index.html").read_bytes() == INDEX_HTML
    assert (bundle / "rootfs/bin/busybox").exists()

    # skopeo copies it into its own layout (gzip'd layers); copy reads that back
    theirs = tmp_path / "skopeo-layout"
    skopeo.copy(f"oci:{layout}:two", f"oci:{theirs}:x", "--dest-compress")
    manifest = skopeo.inspect_raw(f"oci:{theirs}:x")
    assert all(x["mediaType"].endswith("+gzip") for x in manifest["layers"])
    back = dy.sibling("back")
    copy(back, f"oci:{theirs}:x", "dockyard:back/two:v1")
    copy(back, f"oci:{layout}:v2", "dockyard:back/bb:v1")
    assert inspect(back, "back/two:v1")["Id"] == image_id
    assert inspect(back, "back/bb:v1")["Id"] == bb_id
    assert_clean(back)
    # a layout with one image needs no REF
    copy(back, f"oci:{theirs}", "dockyard:back/two:only")
    assert inspect(back, "back/two:only")["Id"] == image_id


def test_store_oci_archive(
    dy: Dockyard, two_layers: list[bytes], skopeo: Skopeo, tmp_path: Path
) -> None:
    image_id = load_two(dy, two_layers, "me/two:v1")
    archive = tmp_path / "two.oci.tar"
    copy(dy, "dockyard:me/two:v1", f"oci-archive:{archive}:me/two:v1")
    raw = skopeo.inspect_raw(f"oci-archive:{archive}:me/two:v1")
    assert raw["config"]["digest"] == image_id
    assert [x["digest"] for x in raw["layers"]] == [sha(x) for x in two_layers]
    # skopeo turns it into a docker-archive that dockyard loads
    skopeo.copy(f"oci-archive:{archive}:me/two:v1", f"docker-archive:{tmp_path}/d.tar:me/two:v1")
    other = dy.sibling("other")
    other.run("load", "-i", tmp_path / "d.tar")
    assert inspect(other, "me/two:v1")["RootFS"]["Layers"] == [sha(x) for x in two_layers]
    # and copy reads it back (by REF), with the same ID
    copy(other, f"oci-archive:{archive}:me/two:v1", "dockyard:from/oci:v1")
    assert inspect(other, "from/oci:v1")["Id"] == image_id
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["d.tar", "two.oci.tar"]


def test_platform_choice_in_an_index(
    dy: Dockyard, two_layers: list[bytes], busybox_tar: Path, tmp_path: Path
) -> None:
    """An index in a layout: this host's image by default, another with --override-arch."""
    two_id = load_two(dy, two_layers, "me/two:v1")
    bb_id = dy.run("import", busybox_tar, "me/bb:v1").stdout.strip()
    layout = tmp_path / "layout"
    copy(dy, "dockyard:me/two:v1", f"oci:{layout}:amd")
    copy(dy, "dockyard:me/bb:v1", f"oci:{layout}:arm")
    index = json.loads((layout / "index.json").read_text())
    by_name = {m["annotations"]["org.opencontainers.image.ref.name"]: m
               for m in index["manifests"]}
    nested = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            dict(by_name["arm"], platform={"os": "linux", "architecture": "arm64"}),
            dict(by_name["amd"], platform={"os": "linux", "architecture": "amd64"}),
        ],
    }).encode()
    (layout / "blobs/sha256" / sha(nested)[7:]).write_bytes(nested)
    index["manifests"].append({
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha(nested),
        "size": len(nested), "annotations": {"org.opencontainers.image.ref.name": "multi"},
    })
    (layout / "index.json").write_text(json.dumps(index))
    copy(dy, f"oci:{layout}:multi", "dockyard:picked:host")
    copy(dy, "--override-arch", "arm64", f"oci:{layout}:multi", "dockyard:picked:arm")
    copy(dy, "--platform", "linux/arm64", f"oci:{layout}:multi", "dockyard:picked:arm2")
    assert inspect(dy, "picked:host")["Id"] == two_id
    assert inspect(dy, "picked:arm")["Id"] == bb_id
    assert inspect(dy, "picked:arm2")["Id"] == bb_id
    line = copy_fails(dy, "--override-arch", "s390x", f"oci:{layout}:multi", "dockyard:no:pe")
    assert line == (f"initializing source oci:{layout}:multi: no image found in image index "
                    'for architecture s390x, variant "", OS linux')


# --------------------------------------------------------------------------- #
# registries
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("which", ["registry", "dockyard_registry"])
def test_oci_archive_to_registry_and_back(
    dy: Dockyard, two_layers: list[bytes], skopeo: Skopeo, tmp_path: Path, which: str,
    request: pytest.FixtureRequest,
) -> None:
    reg = request.getfixturevalue(which)
    host = reg.host
    image_id = load_two(dy, two_layers, "me/two:v1")
    archive = tmp_path / "two.oci.tar"
    copy(dy, "-q", "dockyard:me/two:v1", f"oci-archive:{archive}:v1")

    # oci-archive -> docker:// (gzip, schema2 as `push` writes)
    pusher = dy.sibling("pusher")
    lines = copy(pusher, f"oci-archive:{archive}:v1", f"docker://{host}/copy/two:v1")
    assert lines[-1] == "Writing manifest to image destination"
    assert f"Copying config {image_id}" in lines
    manifest = manifest_of(reg, "copy/two", "v1")
    assert manifest["config"]["digest"] == image_id
    assert {x["mediaType"] for x in manifest["layers"]} == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"}
    raw = json.loads(skopeo.cli("inspect", "--raw", "--tls-verify=false",
                                f"docker://{host}/copy/two:v1").stdout)
    assert raw["config"]["digest"] == image_id
    cfg = json.loads(skopeo.cli("inspect", "--config", "--tls-verify=false",
                                f"docker://{host}/copy/two:v1").stdout)
    assert cfg["rootfs"]["diff_ids"] == [sha(x) for x in two_layers]
    # zstd: OCI media types, still the same config
    copy(pusher, "--dest-compress-format", "zstd", f"oci-archive:{archive}:v1",
         f"docker://{host}/copy/two:zstd")
    manifest = manifest_of(reg, "copy/two", "zstd")
    assert manifest["config"]["digest"] == image_id
    assert {x["mediaType"] for x in manifest["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+zstd"}

    # docker:// -> oci: (skopeo and umoci read it), docker:// -> the store
    layout = tmp_path / "from-registry"
    copy(pusher, f"docker://{host}/copy/two:v1", f"oci:{layout}:v1")
    assert skopeo.config_digest(f"oci:{layout}:v1") == image_id
    assert umoci("ls", "--layout", layout).stdout.split() == ["v1"]
    puller = dy.sibling("puller")
    copy(puller, f"docker://{host}/copy/two:zstd", "dockyard:local/two:z")
    info = inspect(puller, "local/two:z")
    assert info["Id"] == image_id
    assert info["RepoTags"] == ["local/two:z"]
    digest = DIGEST.search(str(info["RepoDigests"]))
    assert info["RepoDigests"] == [f"{host}/copy/two@{digest.group(0) if digest else ''}"]
    # the store now knows where the layers are: a push elsewhere in that registry mounts
    puller.run("tag", "local/two:z", f"{host}/copy/other:z")
    out = puller.run("push", "--compression-format", "zstd", f"{host}/copy/other:z").stdout
    assert out.count("Mounted from copy/two") == 2, out
    assert_clean(puller)
    # by digest
    by_digest = f"{host}/copy/two@{digest.group(0) if digest else ''}"
    copy(dy.sibling("third"), f"docker://{by_digest}", f"oci-archive:{tmp_path}/bd.tar:x")
    assert skopeo.config_digest(f"oci-archive:{tmp_path}/bd.tar:x") == image_id


def test_store_and_docker_archive_to_registry_with_credentials(
    dy: Dockyard, two_layers: list[bytes], basic_registry: Distribution, skopeo: Skopeo,
    tmp_path: Path,
) -> None:
    host = basic_registry.host
    image_id = load_two(dy, two_layers, "me/two:v1")
    # store -> docker:// with --dest-creds: RepoDigests learns the pushed digest
    copy(dy, "--dest-creds", "copier:s3cret", "dockyard:me/two:v1", f"docker://{host}/a/two:v1")
    digests = inspect(dy, "me/two:v1")["RepoDigests"]
    assert len(digests) == 1 and digests[0].startswith(f"{host}/a/two@sha256:")
    # docker-archive (written by skopeo) -> docker://, layers mounted from a/two
    archive = tmp_path / "skopeo.tar"
    skopeo.copy(f"docker://{host}/a/two:v1", f"docker-archive:{archive}:me/two:v1",
                "--src-tls-verify=false", "--src-creds", "copier:s3cret")
    other = dy.sibling("other")
    copy(other, "--dest-creds", "copier:s3cret", f"docker-archive:{archive}",
         f"docker://{host}/b/two:v1")
    out = json.loads(skopeo.cli("inspect", "--raw", "--tls-verify=false", "--creds",
                                "copier:s3cret", f"docker://{host}/b/two:v1").stdout)
    assert out["config"]["digest"] == image_id
    # registry -> registry with both sides' credentials
    copy(other, "--src-creds", "copier:s3cret", "--dest-creds", "copier:s3cret",
         f"docker://{host}/b/two:v1", f"docker://{host}/c/two:v1")
    out = json.loads(skopeo.cli("inspect", "--raw", "--tls-verify=false", "--creds",
                                "copier:s3cret", f"docker://{host}/c/two:v1").stdout)
    assert out["config"]["digest"] == image_id
    # no credentials: refused, and nothing was written
    line = copy_fails(dy.sibling("nocreds"), f"docker-archive:{archive}",
                      f"docker://{host}/d/two:v1")
    assert line.startswith(f"writing to destination docker://{host}/d/two:v1: "), line
    assert "no basic auth credentials" in line or "unauthorized" in line, line
    # --dest-tls-verify=true: this registry speaks plain http
    line = copy_fails(other, "--dest-tls-verify=true", "--dest-creds", "copier:s3cret",
                      f"docker-archive:{archive}", f"docker://{host}/e/two:v1")
    assert line.startswith(f"writing to destination docker://{host}/e/two:v1: "), line
    import httpx

    r = httpx.get(f"{basic_registry.url}/v2/_catalog", auth=("copier", "s3cret"))
    assert sorted(r.json()["repositories"]) == ["a/two", "b/two", "c/two"]


# --------------------------------------------------------------------------- #
# bad input: one line, exit 1, nothing half-written
# --------------------------------------------------------------------------- #


def test_bad_names(dy: Dockyard, tmp_path: Path) -> None:
    assert copy_fails(dy, "foo:bar", "oci:x") == (
        'Invalid source name foo:bar: Invalid image name "foo:bar", unknown transport "foo"')
    assert copy_fails(dy, "busybox", "oci:x") == (
        'Invalid source name busybox: Invalid image name "busybox", '
        "expected colon-separated transport:reference")
    assert copy_fails(dy, "docker://BAD/Ref", "oci:x") == (
        "Invalid source name docker://BAD/Ref: invalid reference format: "
        "repository name must be lowercase")
    assert copy_fails(dy, "docker:x", "oci:x") == (
        "Invalid source name docker:x: docker: image reference x does not start with //")
    assert copy_fails(dy, "oci:x:bad@@", "oci:y") == (
        "Invalid source name oci:x:bad@@: Invalid image bad@@")
    assert copy_fails(dy, "dockyard:me/x", "docker-archive:y.tar:a@sha256:" + "0" * 64) == (
        f"Invalid destination name docker-archive:y.tar:a@sha256:{'0' * 64}: "
        "docker-archive doesn't support digest references")
    assert copy_fails(dy, "dockyard:me/x", "dockyard:sha256:" + "0" * 64).startswith(
        "Invalid destination name dockyard:sha256:")
    assert copy_fails(dy, "dockyard:me/x", "docker://h.io/x@sha256:" + "0" * 64).startswith(
        "Invalid destination name docker://h.io/x@sha256:")
    assert copy_fails(dy, "dockyard:me/x", "nope:y") == (
        'Invalid destination name nope:y: Invalid image name "nope:y", unknown transport "nope"')
    assert list(tmp_path.glob("*.tar")) == [] and not (tmp_path / "x").exists()


def test_missing_sources_leave_nothing(
    dy: Dockyard, two_layers: list[bytes], tmp_path: Path
) -> None:
    load_two(dy, two_layers, "me/two:v1")
    out = tmp_path / "out"
    out.mkdir()
    assert copy_fails(dy, f"docker-archive:{tmp_path}/nope.tar", f"oci:{out}/o") == (
        f"initializing source docker-archive:{tmp_path}/nope.tar: "
        f"open {tmp_path}/nope.tar: no such file or directory")
    assert copy_fails(dy, f"oci:{tmp_path}/nodir:v1", f"oci-archive:{out}/o.tar") == (
        f"initializing source oci:{tmp_path}/nodir:v1: "
        f"open {tmp_path}/nodir/index.json: no such file or directory")
    assert copy_fails(dy, "dockyard:me/none", f"oci:{out}/o") == (
        "initializing source dockyard:me/none: No such image: me/none:latest")
    layout = tmp_path / "layout"
    copy(dy, "dockyard:me/two:v1", f"oci:{layout}:v1")
    copy(dy, "dockyard:me/two:v1", f"oci:{layout}:v2")
    before = listing(layout)
    assert copy_fails(dy, f"oci:{layout}:v3", f"docker-archive:{out}/a.tar") == (
        f'initializing source oci:{layout}:v3: no descriptor found for reference "v3"')
    assert copy_fails(dy, f"oci:{layout}", f"docker-archive:{out}/a.tar") == (
        f"initializing source oci:{layout}: more than one image in oci, choose an image")
    copy(dy, "dockyard:me/two:v1", f"docker-archive:{out}/two.tar")
    assert copy_fails(dy, f"docker-archive:{out}/two.tar:me/other:v1", "dockyard:x:y") == (
        f"initializing source docker-archive:{out}/two.tar:me/other:v1: "
        'Tag "docker.io/me/other:v1" not found')
    # destinations that cannot be written
    assert copy_fails(dy, "dockyard:me/two:v1", f"docker-archive:{out}").startswith(
        f"writing to destination docker-archive:{out}: ")
    assert copy_fails(dy, "dockyard:me/two:v1", f"oci-archive:{tmp_path}/no/a.tar") == (
        f"writing to destination oci-archive:{tmp_path}/no/a.tar: "
        f"open {tmp_path}/no/a.tar: no such file or directory")
    assert copy_fails(dy, "dockyard:me/two:v1", f"oci:{tmp_path}/no/such/dir:v1") == (
        f"writing to destination oci:{tmp_path}/no/such/dir:v1: "
        f"open {tmp_path}/no/such: no such file or directory")
    assert copy_fails(dy, "--dest-compress-format", "zstd", "dockyard:me/two:v1",
                      f"oci:{out}/z").startswith(f"writing to destination oci:{out}/z: ")
    assert listing(out) == ["two.tar"]
    assert listing(layout) == before
    assert_clean(dy)


def test_corrupt_sources_and_blobs_leave_nothing(
    dy: Dockyard, two_layers: list[bytes], tmp_path: Path
) -> None:
    image_id = load_two(dy, two_layers, "me/two:v1")
    layout = tmp_path / "layout"
    copy(dy, "dockyard:me/two:v1", f"oci:{layout}:v1")
    out = tmp_path / "out"
    out.mkdir()
    # a layer of the layout whose bytes are not its digest
    top = layout / "blobs/sha256" / sha(two_layers[1])[7:]
    good = top.read_bytes()
    top.write_bytes(layer_tar({"evil": b"x"}))
    line = copy_fails(dy, f"oci:{layout}:v1", f"oci-archive:{out}/o.tar")
    assert line.startswith(f"initializing source oci:{layout}:v1: layer {sha(two_layers[1])}: "
                           "content does not match its digest"), line
    line = copy_fails(dy, f"oci:{layout}:v1", f"oci:{out}/new:v1")
    assert "content does not match its digest" in line
    # gzip'd bytes of another layer under the digest: also refused
    top.write_bytes(gzip.compress(good))
    assert "does not match" in copy_fails(dy, f"oci:{layout}:v1", "dockyard:bad:v1")
    top.write_bytes(good)
    assert listing(out) == []
    # a store blob corrupted on disk is caught while the archive is written
    blob = dy.root / "blobs/sha256" / sha(two_layers[1])[7:]
    saved = blob.read_bytes()
    blob.write_bytes(saved[:-512] + b"\x01" * 512)
    line = copy_fails(dy, "dockyard:me/two:v1", f"docker-archive:{out}/a.tar")
    assert line.startswith(f"writing to destination docker-archive:{out}/a.tar: layer "), line
    line = copy_fails(dy, "dockyard:me/two:v1", f"oci:{out}/dir:v1")
    assert "changed or corrupt" in line
    assert listing(out) == []
    blob.write_bytes(saved)
    copy(dy, "dockyard:me/two:v1", f"oci:{out}/dir:v1")
    assert layout_entries(out / "dir") == layout_entries(layout)
    assert inspect(dy, "me/two:v1")["Id"] == image_id
    assert "bad:v1" not in dy.run("images").stdout
    assert_clean(dy)


def test_registry_errors(dy: Dockyard, registry: Distribution, two_layers: list[bytes],
                         tmp_path: Path) -> None:
    host = registry.host
    line = copy_fails(dy, f"docker://{host}/no/such:v1", f"oci:{tmp_path}/o")
    assert line.startswith(f"initializing source docker://{host}/no/such:v1: "), line
    assert "unknown" in line, line
    load_two(dy, two_layers, "me/two:v1")
    copy(dy, "dockyard:me/two:v1", f"docker://{host}/err/two:v1")
    line = copy_fails(dy, "--src-tls-verify=true", f"docker://{host}/err/two:v1",
                      f"oci:{tmp_path}/o")
    assert line.startswith(f"initializing source docker://{host}/err/two:v1: "), line
    assert not (tmp_path / "o").exists()
    assert_clean(dy)
