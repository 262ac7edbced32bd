"""dockyard login/logout/push/pull/search against real registries (Debian's
``docker-registry``, distribution 2.8) and real peers, all on 127.0.0.1.

CLI contract under test (Docker's words):
  push NAME[:TAG]   "The push refers to repository [NAME]", "<id>: Preparing",
                    "<id>: Pushed" | "Layer already exists" | "Mounted from <repo>",
                    "<tag>: digest: sha256:... size: N"
  pull NAME[:TAG]   "<tag>: Pulling from <path>", "<id>: Pull complete" | "Already exists",
                    "Digest: sha256:...", "Status: Downloaded newer image for ..." |
                    "Status: Image is up to date for ...", then the full reference
  login / logout    "Login Succeeded", Docker's config.json, "Removing login credentials for"
After a push or a pull, RepoDigests / `images --digests` show name@sha256:...
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import Dockerd, Dockyard, Podman, Skopeo, worker_id

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.helpers.registries import (  # noqa: E402
    Distribution,
    FakeRegistry,
    FaultProxy,
    TokenIssuer,
    htpasswd,
    require_docker_registry,
)
from tests.imagegen import docker_archive, image_config, layer_tar, sha  # noqa: E402

pytestmark = pytest.mark.integration

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
INDEX_HTML = b"<h1>b1</h1>\n"
MiB = 1 << 20


# --------------------------------------------------------------------------- #
# fixtures
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    """An open distribution registry (one per xdist worker)."""
    require_docker_registry()
    reg = Distribution(tmp_path_factory.mktemp(f"registry-{worker_id()}")).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    """distribution with htpasswd auth: anchoruser / anchorpass."""
    require_docker_registry()
    work = tmp_path_factory.mktemp(f"registry-basic-{worker_id()}")
    path = htpasswd(work / "htpasswd", {"anchoruser": "anchorpass"})
    reg = Distribution(
        work / "reg", auth={"htpasswd": {"realm": "basic-realm", "path": str(path)}}
    ).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Distribution, TokenIssuer]]:
    """distribution with `auth: token`, and its token issuer (alice / wonderland)."""
    require_docker_registry()
    work = tmp_path_factory.mktemp(f"registry-token-{worker_id()}")
    issuer = TokenIssuer(work / "issuer", users={"alice": "wonderland"}).start()
    reg = Distribution(work / "reg", auth=issuer.registry_auth()).start()
    yield reg, issuer
    reg.stop()
    issuer.stop()


@pytest.fixture(scope="session")
def dockyard_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """dockyard's own registry server (tests/integration/registry_server.py)."""
    try:
        from registry_server import RegistryServer
    except ImportError:
        pytest.skip("dockyard's registry server harness is not there")
    reg = RegistryServer(tmp_path_factory.mktemp(f"dyreg-{worker_id()}") / "data").start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def two_layers(busybox_tar: Path) -> list[bytes]:
    """The layers of a 2-layer image: busybox + index.html."""
    top = layer_tar({"data/www/html/index.html": INDEX_HTML}, dirs=("data/", "data/www/",
                                                                     "data/www/html/"))
    return [busybox_tar.read_bytes(), top]


def load_two(dy: Dockyard, layers: list[bytes], ref: str) -> str:
    """Load the 2-layer image as ``ref`` (one `load`); returns its image ID."""
    path = dy.root.parent / f"two-{abs(hash(ref))}.tar"
    path.write_bytes(docker_archive([(layers, [ref])]))
    dy.run("load", "-i", path)
    path.unlink()
    return sha(image_config(layers, created="2026-01-01T00:00:00Z"))


def manifest_of(registry: Distribution, repo: str, ref: str) -> dict[str, Any]:
    import httpx

    accept = ("application/vnd.oci.image.manifest.v1+json, "
              "application/vnd.docker.distribution.manifest.v2+json")
    r = httpx.get(f"{registry.url}/v2/{repo}/manifests/{ref}", headers={"Accept": accept})
    r.raise_for_status()
    data: dict[str, Any] = r.json()
    return data


@pytest.fixture(scope="session")
def big_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rootfs tar of 6 MiB of random bytes: a layer that does not compress."""
    import io
    import random
    import tarfile

    rng = random.Random(7)
    path = tmp_path_factory.mktemp("big") / "big.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        data = rng.randbytes(6 * MiB)
        info = tarfile.TarInfo("big.bin")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="session")
def big_pushed(
    registry: Distribution, big_tar: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str]:
    """The big image pushed once to the open registry: (repository, image ID)."""
    pusher = Dockyard(tmp_path_factory.mktemp("big-pusher") / "store")
    repo = f"{registry.host}/me/bigpull"
    image_id = import_image(pusher, big_tar, f"{repo}:v1")
    pusher.run("push", f"{repo}:v1")
    return "me/bigpull", image_id


def import_image(dy: Dockyard, tar: Path, ref: str) -> str:
    return dy.run("import", tar, ref).stdout.strip()


def inspect(dy: Dockyard, ref: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(dy.run("inspect", ref).stdout)
    return data[0]


def images(dy: Dockyard) -> list[str]:
    return dy.run("images", "-q", "--no-trunc").stdout.split()


def fail(
    dy: Dockyard, *args: str | Path, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = dy.run(*args, check=False, input=input)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    return proc


def assert_check_garbage_only(dy: Dockyard) -> None:
    """`system check`: clean, or only what a dead process leaves."""
    proc = dy.run("system", "check", check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("problem:"):
            assert re.match(
                r"problem: (blob sha256:[0-9a-f]{64} is referenced by nothing"
                r"|leftover staging directory \S+"
                r"|leftover temp file \.index\.json\.\d+\.tmp"
                r"|index\.json does not match the image records)$",
                line,
            ), proc.stdout


# --------------------------------------------------------------------------- #
# round trips
# --------------------------------------------------------------------------- #


def test_push_pull_round_trip(
    dy: Dockyard, registry: Distribution, busybox_tar: Path, two_layers: list[bytes]
) -> None:
    host = registry.host
    bb_id = import_image(dy, busybox_tar, f"{host}/me/bb:v1")
    two_id = load_two(dy, two_layers, f"{host}/me/two:v1")

    out = dy.run("push", f"{host}/me/bb:v1").stdout.splitlines()
    assert out[0] == f"The push refers to repository [{host}/me/bb]"
    assert out[1] == "ebd005e7fdf8: Preparing"  # busybox's diff_id, as in Docker's transcript
    assert out[2] == "ebd005e7fdf8: Pushed"
    m = re.fullmatch(r"v1: digest: (sha256:[0-9a-f]{64}) size: (\d+)", out[-1])
    assert m, out
    bb_digest = m.group(1)

    # the 2-layer image shares busybox's layer: mounted from me/bb, not sent again
    out = dy.run("push", f"{host}/me/two:v1").stdout.splitlines()
    assert "ebd005e7fdf8: Mounted from me/bb" in out, out
    assert sum(1 for line in out if line.endswith(": Pushed")) == 1, out
    two_digest = DIGEST.search(out[-1]).group(0)  # type: ignore[union-attr]

    # again: everything exists
    out = dy.run("push", f"{host}/me/two:v1").stdout.splitlines()
    assert [line for line in out if line.endswith("Layer already exists")] and not [
        line for line in out if line.endswith(": Pushed")
    ], out
    assert out[-1].startswith(f"v1: digest: {two_digest} size: ")
    assert inspect(dy, f"{host}/me/two:v1")["RepoDigests"] == [f"{host}/me/two@{two_digest}"]
    digests = dy.run("images", "--digests").stdout
    assert bb_digest in digests and two_digest in digests

    # a fresh store pulls the same images
    other = dy.sibling("other")
    out = other.run("pull", f"{host}/me/two:v1").stdout.splitlines()
    assert out[0] == "v1: Pulling from me/two"
    assert out[-3] == f"Digest: {two_digest}"
    assert out[-2] == f"Status: Downloaded newer image for {host}/me/two:v1"
    assert out[-1] == f"{host}/me/two:v1"
    assert sum(1 for line in out if line.endswith(": Pull complete")) == 2
    info = inspect(other, f"{host}/me/two:v1")
    assert info["Id"] == two_id
    assert info["RepoDigests"] == [f"{host}/me/two@{two_digest}"]
    assert other.run("images", "--digests").stdout.count(two_digest) == 1

    out = other.run("pull", f"{host}/me/bb:v1").stdout.splitlines()
    assert any(line.endswith(": Already exists") for line in out), out
    assert inspect(other, f"{host}/me/bb:v1")["Id"] == bb_id

    out = other.run("pull", f"{host}/me/two:v1").stdout.splitlines()
    assert out[-2] == f"Status: Image is up to date for {host}/me/two:v1"

    # by digest, in a third store; and -q
    third = dy.sibling("third")
    ref = f"{host}/me/bb@{bb_digest}"
    out = third.run("pull", ref).stdout.splitlines()
    assert out[0] == f"{bb_digest}: Pulling from me/bb"
    assert out[-1] == ref
    assert inspect(third, ref)["Id"] == bb_id
    assert inspect(third, ref)["RepoTags"] == []
    assert third.run("pull", "-q", f"{host}/me/two:v1").stdout == f"{host}/me/two:v1\n"
    for store in (other, third):
        assert "clean" in store.run("system", "check").stdout


def test_round_trip_dockyard_registry(
    dy: Dockyard, dockyard_registry: Any, busybox_tar: Path, two_layers: list[bytes]
) -> None:
    host = dockyard_registry.host
    bb_id = import_image(dy, busybox_tar, f"{host}/me/bb:v1")
    two_id = load_two(dy, two_layers, f"{host}/me/two:v1")
    assert "ebd005e7fdf8: Pushed" in dy.run("push", f"{host}/me/bb:v1").stdout
    out = dy.run("push", f"{host}/me/two:v1").stdout
    assert "ebd005e7fdf8: Mounted from me/bb" in out, out
    digest = DIGEST.search(out.splitlines()[-1]).group(0)  # type: ignore[union-attr]
    other = dy.sibling("other")
    out = other.run("pull", f"{host}/me/two:v1").stdout
    assert f"Digest: {digest}" in out
    assert inspect(other, f"{host}/me/two:v1")["Id"] == two_id
    assert inspect(other, f"{host}/me/two:v1")["RepoDigests"] == [f"{host}/me/two@{digest}"]
    other.run("pull", f"{host}/me/bb:v1")
    assert inspect(other, f"{host}/me/bb:v1")["Id"] == bb_id
    assert dy.run("search", f"{host}/two").stdout.splitlines()[1].split()[0] == f"{host}/me/two"


def test_push_all_tags_and_pull_all_tags(
    dy: Dockyard, registry: Distribution, busybox_tar: Path
) -> None:
    host = registry.host
    import_image(dy, busybox_tar, f"{host}/me/multi:a")
    dy.run("tag", f"{host}/me/multi:a", f"{host}/me/multi:b")
    out = dy.run("push", "-a", f"{host}/me/multi").stdout
    assert re.search(r"^a: digest: sha256:[0-9a-f]{64} size: \d+$", out, re.M), out
    assert re.search(r"^b: digest: sha256:[0-9a-f]{64} size: \d+$", out, re.M), out
    assert dy.run("push", "-q", f"{host}/me/multi:a").stdout == f"{host}/me/multi:a\n"
    other = dy.sibling("other")
    out = other.run("pull", "-a", f"{host}/me/multi").stdout.splitlines()
    assert out[-1] == f"{host}/me/multi"
    tags = {r["Tag"] for r in map(json.loads, other.run(
        "images", "--format", "{{json .}}").stdout.splitlines())}
    assert tags == {"a", "b"}


def test_deterministic_compression(
    dy: Dockyard, registry: Distribution, two_layers: list[bytes]
) -> None:
    """Two stores (no shared history) push the same image to different repos: the same
    compressed layers, for gzip and for zstd."""
    host = registry.host
    layers: dict[str, list[dict[str, Any]]] = {}
    for n in (1, 2):
        store = dy.sibling(f"det-{n}")
        load_two(store, two_layers, f"{host}/det/img{n}:v1")
        for fmt in ("gzip", "zstd"):
            store.run("tag", f"{host}/det/img{n}:v1", f"{host}/det/{fmt}{n}:v1")
            out = store.run("push", "--compression-format", fmt, f"{host}/det/{fmt}{n}:v1").stdout
            assert out.count(": Pushed") == 2, out
            layers[f"{fmt}{n}"] = manifest_of(registry, f"det/{fmt}{n}", "v1")["layers"]
    assert layers["gzip1"] == layers["gzip2"]
    assert layers["zstd1"] == layers["zstd2"]
    assert {x["mediaType"] for x in layers["gzip1"]} == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"}
    assert {x["mediaType"] for x in layers["zstd1"]} == {
        "application/vnd.oci.image.layer.v1.tar+zstd"}
    # and zstd images pull back
    other = dy.sibling("zstd-pull")
    other.run("pull", f"{host}/det/zstd1:v1")
    assert inspect(other, f"{host}/det/zstd1:v1")["Id"] == sha(
        image_config(two_layers, created="2026-01-01T00:00:00Z"))


# --------------------------------------------------------------------------- #
# errors
# --------------------------------------------------------------------------- #


def test_errors_and_nothing_stored(dy: Dockyard, registry: Distribution) -> None:
    host = registry.host
    proc = fail(dy, "push", f"{host}/nosuch/repo:v1")
    assert proc.stdout == f"The push refers to repository [{host}/nosuch/repo]\n"
    assert proc.stderr == f"An image does not exist locally with the tag: {host}/nosuch/repo\n"
    proc = fail(dy, "pull", f"{host}/nosuch/repo:v1")
    assert proc.stderr == (
        f"Error response from daemon: manifest for {host}/nosuch/repo:v1 not found: "
        "manifest unknown: manifest unknown\n"
    )
    proc = fail(dy, "pull", "nosuch.invalid/me/x:v1")
    assert proc.stderr.startswith(
        'Error response from daemon: Get "https://nosuch.invalid/v2/": dial tcp: lookup '
        "nosuch.invalid"
    ), proc.stderr
    assert "no such host" in proc.stderr
    assert images(dy) == []


def test_lying_registry(dy: Dockyard, busybox_tar: Path) -> None:
    """Wrong bytes and short bodies: Docker's texts, nothing stored, no partial kept
    for bad bytes."""
    import gzip
    import hashlib

    def sha(b: bytes) -> str:
        return "sha256:" + hashlib.sha256(b).hexdigest()

    layer = busybox_tar.read_bytes()
    blob = gzip.compress(layer, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": len(config), "digest": sha(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(blob), "digest": sha(blob)}],
    }).encode()
    fake = FakeRegistry(
        manifests={"v1": ("application/vnd.docker.distribution.manifest.v2+json", manifest)},
        blobs={sha(config): config, sha(blob): blob},
        corrupt={sha(blob)},
    ).start()
    try:
        proc = fail(dy, "pull", f"{fake.host}/me/liar:v1")
        assert proc.stderr == f"filesystem layer verification failed for digest {sha(blob)}\n"
        assert "Pulling fs layer" in proc.stdout
        assert images(dy) == []
        assert not list((dy.root / "tmp" / "pull").glob("*.partial")) or all(
            p.stat().st_size == 0 for p in (dy.root / "tmp" / "pull").glob("*.partial"))
        fake.corrupt.clear()
        fake.truncate = {sha(blob)}
        proc = fail(dy, "pull", f"{fake.host}/me/liar:v1")
        assert proc.stderr == "unexpected EOF\n"
        assert images(dy) == []
        assert_check_garbage_only(dy)
        # a manifest that is not what its digest says
        proc = fail(dy, "pull", f"{fake.host}/me/liar@sha256:{'0' * 64}")
        assert "manifest unknown" in proc.stderr
        fake.manifests["sha256:" + "1" * 64] = fake.manifests["v1"]
        proc = fail(dy, "pull", f"{fake.host}/me/liar@sha256:{'1' * 64}")
        assert proc.stderr == (
            f"Error response from daemon: manifest verification failed for digest "
            f"sha256:{'1' * 64}\n"
        )
        # an honest registry at last: the kept prefix of the short body is resumed
        fake.truncate.clear()
        dy.run("pull", f"{fake.host}/me/liar:v1")
        assert inspect(dy, f"{fake.host}/me/liar:v1")["Id"] == sha(config)
    finally:
        fake.stop()


# --------------------------------------------------------------------------- #
# authentication
# --------------------------------------------------------------------------- #


def test_login_basic(
    dy: Dockyard, basic_registry: Distribution, busybox_tar: Path
) -> None:
    host = basic_registry.host
    config = Path(dy.env["DOCKER_CONFIG"]) / "config.json"
    import_image(dy, busybox_tar, f"{host}/me/b1server:v0.2")

    proc = fail(dy, "push", f"{host}/me/b1server:v0.2")
    assert proc.stdout.splitlines() == [
        f"The push refers to repository [{host}/me/b1server]",
        "ebd005e7fdf8: Preparing",
    ]
    assert proc.stderr == "no basic auth credentials\n"

    proc = fail(dy, "login", "-u", "anchoruser", "-p", "wrongpass", host)
    assert proc.stderr == (
        "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n"
        f"Error response from daemon: login attempt to http://{host}/v2/ failed with status: "
        "401 Unauthorized\n"
    )
    assert not config.exists() or "anchoruser" not in config.read_text()

    proc = dy.run("login", "-u", "anchoruser", "--password-stdin", host, input="anchorpass\n")
    assert proc.stdout == "Login Succeeded\n"
    assert proc.stderr.startswith(
        f"WARNING! Your password will be stored unencrypted in {config}.\n")
    expected = '{\n\t"auths": {\n\t\t"HOST": {\n\t\t\t"auth": "YW5jaG9ydXNlcjphbmNob3JwYXNz"\n'
    assert config.read_text() == expected.replace("HOST", host) + "\t\t}\n\t}\n}"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    out = dy.run("push", f"{host}/me/b1server:v0.2").stdout
    assert "ebd005e7fdf8: Pushed" in out
    other = dy.sibling("other")
    other.run("pull", f"{host}/me/b1server:v0.2")

    assert dy.run("logout", host).stdout == f"Removing login credentials for {host}\n"
    assert json.loads(config.read_text()) == {"auths": {}}
    assert dy.run("logout", host).stdout == f"Not logged in to {host}\n"
    third = dy.sibling("third")
    proc = fail(third, "pull", f"{host}/me/b1server:v0.2")
    assert proc.stderr == (
        f'Error response from daemon: Head "http://{host}/v2/me/b1server/manifests/v0.2": '
        "no basic auth credentials\n"
    )
    assert images(third) == []


def test_login_token(
    dy: Dockyard, token_registry: tuple[Distribution, TokenIssuer], busybox_tar: Path,
    two_layers: list[bytes],
) -> None:
    reg, issuer = token_registry
    host = reg.host
    config = Path(dy.env["DOCKER_CONFIG"]) / "config.json"
    import_image(dy, busybox_tar, f"{host}/alice/bb:v1")
    proc = fail(dy, "push", f"{host}/alice/bb:v1")
    assert proc.stderr == "unauthorized: authentication required\n"

    proc = fail(dy, "login", "-u", "alice", "--password-stdin", host, input="nope")
    assert proc.stderr == (
        f'Error response from daemon: Get "http://{host}/v2/": unauthorized: '
        "incorrect username or password\n"
    )
    assert not config.exists() or "alice" not in config.read_text()

    proc = dy.run("login", "-u", "alice", "--password-stdin", host, input="wonderland")
    assert proc.stdout == "Login Succeeded\n"
    saved = json.loads(config.read_text())["auths"][host]
    assert saved["identitytoken"] in issuer.refresh_tokens  # the refresh token is kept
    assert "WARNING! Your password" not in proc.stderr

    assert "Pushed" in dy.run("push", f"{host}/alice/bb:v1").stdout
    # a cross-repository mount asks for both repositories' scopes
    load_two(dy, two_layers, f"{host}/alice/two:v1")
    before = len(issuer.requests)
    out = dy.run("push", f"{host}/alice/two:v1").stdout
    assert "ebd005e7fdf8: Mounted from alice/bb" in out, out
    scopes = [s for r in issuer.requests[before:] for s in r.get("scopes", [])]
    assert "repository:alice/two:pull,push" in scopes and "repository:alice/bb:pull" in scopes
    assert all(r["method"] == "POST" for r in issuer.requests[before:])  # identity token

    other = dy.sibling("other")
    other.run("pull", f"{host}/alice/two:v1")
    dy.run("logout", host)
    third = dy.sibling("third")
    proc = fail(third, "pull", f"{host}/alice/two:v1")
    assert proc.stderr == "Error response from daemon: unauthorized: authentication required\n"


def test_token_cache_and_refresh(token_registry: tuple[Distribution, TokenIssuer]) -> None:
    """One token per scope while it is fresh; a new one once it expired."""
    from dockyard.distribution.client import connect
    from dockyard.distribution.credentials import AuthEntry
    from dockyard.distribution.endpoints import RegistryConfig

    reg, issuer = token_registry
    old = issuer.expires_in
    issuer.expires_in = 2
    try:
        client = connect(reg.host, RegistryConfig(), AuthEntry("alice", "wonderland"))
        with client:
            digest = client.put_blob("alice/cache", b"hello")
            start = len(issuer.requests)
            for _ in range(3):
                assert client.blob_size("alice/cache", digest) == 5
            assert len(issuer.requests) - start == 1  # pull scope, once
            time.sleep(2.1)
            assert client.blob_size("alice/cache", digest) == 5
            assert len(issuer.requests) - start == 2  # expired: fetched again
    finally:
        issuer.expires_in = old


# --------------------------------------------------------------------------- #
# faults: cut connections, SIGKILL
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kind", ["distribution", "dockyard"])
def test_push_resumes_after_cut(
    request: pytest.FixtureRequest, kind: str, dy: Dockyard, big_tar: Path
) -> None:
    """A push cut in the middle of a layer; the next run continues from the last chunk
    the registry kept. distribution 2.8 forgets an upload whose PATCH was cut half way,
    so it sits behind a request-buffering proxy (as behind nginx); dockyard's registry
    keeps whole chunks and gets a plain byte-cutting proxy."""
    registry = request.getfixturevalue("registry" if kind == "distribution"
                                       else "dockyard_registry")
    proxy = FaultProxy(registry.port, buffer_requests=kind == "distribution")
    try:
        ref = f"{proxy.host}/me/big:v1"
        image_id = import_image(dy, big_tar, ref)
        dy.env["DOCKYARD_PUSH_CHUNK_SIZE"] = str(MiB)
        proxy.cut_up = int(3.5 * MiB)
        proc = fail(dy, "push", ref)
        assert "Preparing" in proc.stdout and "Pushed" not in proc.stdout
        assert list((dy.root / "tmp" / "push" / "uploads").glob("*.json"))
        first = proxy.up
        proxy.heal()
        proxy.reset_counts()
        out = dy.run("push", ref).stdout
        assert ": Pushed" in out
        # the blob is ~6 MiB: run 2 sent the rest, not everything again
        assert proxy.up < 6 * MiB - 2 * MiB, (first, proxy.up)
        assert not list((dy.root / "tmp" / "push" / "uploads").glob("*.json"))
        other = dy.sibling("other")
        other.run("pull", f"{registry.host}/me/big:v1")
        assert inspect(other, f"{registry.host}/me/big:v1")["Id"] == image_id
    finally:
        proxy.stop()


def test_push_retries_within_a_run(
    dy: Dockyard, registry: Distribution, big_tar: Path
) -> None:
    proxy = FaultProxy(registry.port, buffer_requests=True, refuse_after_cut=False)
    try:
        ref = f"{proxy.host}/me/big-retry:v1"
        import_image(dy, big_tar, ref)
        dy.env["DOCKYARD_PUSH_CHUNK_SIZE"] = str(MiB)
        dy.env["DOCKYARD_TRANSFER_RETRIES"] = "2"
        proxy.cut_up = int(2.5 * MiB)
        out = dy.run("push", ref).stdout
        assert "Retrying in 1 second" in out and ": Pushed" in out, out
        assert proxy.cuts == 1
        assert proxy.up < 6 * MiB + 3 * MiB  # not all sent twice
    finally:
        proxy.stop()


def _partials(dy: Dockyard) -> list[Path]:
    return sorted((dy.root / "tmp" / "pull").glob("*.partial"))


def test_pull_resumes_after_cut(
    dy: Dockyard, registry: Distribution, big_pushed: tuple[str, str]
) -> None:
    repo, image_id = big_pushed
    proxy = FaultProxy(registry.port)
    try:
        ref = f"{proxy.host}/{repo}:v1"
        proxy.cut_down = int(3.5 * MiB)
        proc = fail(dy, "pull", ref)
        assert proc.stderr.strip() == "unexpected EOF" or "EOF" in proc.stderr, proc.stderr
        assert images(dy) == []
        partial = _partials(dy)
        assert len(partial) == 1 and partial[0].stat().st_size > 2 * MiB
        assert_check_garbage_only(dy)
        proxy.heal()
        proxy.reset_counts()
        dy.run("pull", ref)
        assert proxy.down < 6 * MiB - 2 * MiB, proxy.down
        assert inspect(dy, ref)["Id"] == image_id
        assert _partials(dy) == []
        # and within one run, with retries
        other = dy.sibling("other")
        other.env["DOCKYARD_TRANSFER_RETRIES"] = "2"
        once = FaultProxy(registry.port, refuse_after_cut=False)
        try:
            once.cut_down = 2 * MiB
            out = other.run("pull", f"{once.host}/{repo}:v1").stdout
            assert "Retrying in 1 second" in out, out
            assert once.cuts == 1 and once.down < 6 * MiB + 3 * MiB
        finally:
            once.stop()
    finally:
        proxy.stop()


def test_sigkill_during_pull(
    dy: Dockyard, registry: Distribution, big_pushed: tuple[str, str]
) -> None:
    repo, image_id = big_pushed
    proxy = FaultProxy(registry.port)
    try:
        ref = f"{proxy.host}/{repo}:v1"
        proxy.stall_down = 3 * MiB
        proc = subprocess.Popen(
            [*dy.argv, "--root", str(dy.root), "pull", ref], env=dy.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            partial = _partials(dy)
            if proxy.stalled and partial and partial[0].stat().st_size > 2 * MiB:
                break
            time.sleep(0.05)
        else:
            proc.kill()
            pytest.fail("the pull never got half way")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proxy.heal()
        assert images(dy) == []
        assert_check_garbage_only(dy)
        size = _partials(dy)[0].stat().st_size
        proxy.reset_counts()
        dy.run("pull", ref)
        assert proxy.down < 6 * MiB - size + MiB, (proxy.down, size)
        assert inspect(dy, ref)["Id"] == image_id
        assert_check_garbage_only(dy)
    finally:
        proxy.stop()


# --------------------------------------------------------------------------- #
# peers
# --------------------------------------------------------------------------- #


def test_skopeo_and_podman_pull_what_dockyard_pushed(
    dy: Dockyard, registry: Distribution, two_layers: list[bytes], skopeo: Skopeo,
    podman: Podman, tmp_path: Path,
) -> None:
    host = registry.host
    ref = f"{host}/peers/two:v1"
    image_id = load_two(dy, two_layers, ref)
    dy.run("push", ref)
    dy.run("tag", ref, f"{host}/peers/two:zstd")
    dy.run("push", "--compression-format", "zstd", f"{host}/peers/two:zstd")
    # skopeo: the OCI (zstd) image is copied as is; the Docker schema2 (gzip) one is
    # converted to OCI on the way into oci: (its config rewritten), same layers
    diff_ids = inspect(dy, ref)["RootFS"]["Layers"]
    for tag in ("zstd", "v1"):
        out = tmp_path / f"oci-{tag}"
        skopeo.copy(f"docker://{host}/peers/two:{tag}", f"oci:{out}:{tag}",
                    "--src-tls-verify=false")
        index = json.loads((out / "index.json").read_text())
        blobs = out / "blobs" / "sha256"
        manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
        config = json.loads((blobs / manifest["config"]["digest"][7:]).read_text())
        assert config["rootfs"]["diff_ids"] == diff_ids
        if tag == "zstd":
            assert manifest["config"]["digest"] == image_id
    # podman keeps the config: the same image ID
    for tag in ("v1", "zstd"):
        podman.cli("pull", "--tls-verify=false", f"{host}/peers/two:{tag}")
        assert podman.image_id(f"{host}/peers/two:{tag}") == image_id
        podman.cli("rmi", f"{host}/peers/two:{tag}")


def test_docker_pulls_what_dockyard_pushed(
    dy: Dockyard, registry: Distribution, two_layers: list[bytes], dockerd: Dockerd
) -> None:
    host = registry.host
    ref = f"{host}/peers/docker:v1"
    image_id = load_two(dy, two_layers, ref)
    dy.run("push", ref)
    out = dockerd.cli("pull", ref).stdout
    assert f"Status: Downloaded newer image for {ref}" in out
    assert dockerd.image_id(ref) == image_id
    digest = inspect(dy, ref)["RepoDigests"][0]
    repo_digests = dockerd.cli("image", "inspect", "--format", "{{json .RepoDigests}}", ref)
    assert json.loads(repo_digests.stdout) == [digest]
    dockerd.cli("rmi", ref)


def test_dockyard_pulls_what_skopeo_pushed(
    dy: Dockyard, registry: Distribution, two_layers: list[bytes], skopeo: Skopeo,
    tmp_path: Path,
) -> None:
    ref = f"{registry.host}/skopeo/two:v1"
    archive = tmp_path / "two.tar"
    archive.write_bytes(docker_archive([(two_layers, ["me/two:v1"])]))
    skopeo.copy(f"docker-archive:{archive}:me/two:v1", f"docker://{ref}",
                "--dest-tls-verify=false")
    raw = json.loads(skopeo.cli("inspect", "--raw", "--tls-verify=false",
                                f"docker://{ref}").stdout)
    out = dy.run("pull", ref).stdout
    assert out.count("Pull complete") == 2
    assert inspect(dy, ref)["Id"] == raw["config"]["digest"]


# --------------------------------------------------------------------------- #
# mirrors, multi-arch, search
# --------------------------------------------------------------------------- #


def test_registry_mirror_for_docker_hub(
    dy: Dockyard, registry: Distribution, busybox_tar: Path
) -> None:
    pusher = dy.sibling("pusher")
    image_id = import_image(pusher, busybox_tar, f"{registry.host}/library/busybox:latest")
    pusher.run("push", f"{registry.host}/library/busybox:latest")
    (dy.root / "config.json").write_text(
        json.dumps({"registry-mirrors": [f"http://{registry.host}"]}))
    out = dy.run("pull", "busybox").stdout.splitlines()
    assert out[0] == "Using default tag: latest"
    assert out[1] == "latest: Pulling from library/busybox"
    assert out[-1] == "docker.io/library/busybox:latest"
    info = inspect(dy, "busybox")
    assert info["Id"] == image_id
    assert info["RepoTags"] == ["busybox:latest"]
    assert info["RepoDigests"][0].startswith("busybox@sha256:")


def test_multi_arch_index_by_platform(dy: Dockyard, registry: Distribution) -> None:
    from dockyard.distribution.client import connect
    from dockyard.distribution.endpoints import RegistryConfig

    repo = "multi/arch"
    client = connect(registry.host, RegistryConfig(), None)
    entries = []
    ids = {}
    with client:
        for arch in ("arm64", "amd64"):
            import gzip
            import hashlib

            layer = layer_tar({f"{arch}.txt": arch.encode()})
            blob = gzip.compress(layer, mtime=0)
            config = json.dumps({"architecture": arch, "os": "linux", "config": {},
                                 "rootfs": {"type": "layers", "diff_ids": [
                                     "sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()
            client.put_blob(repo, blob)
            cdigest = client.put_blob(repo, config)
            ids[arch] = cdigest
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": cdigest, "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": "sha256:" + hashlib.sha256(blob).hexdigest(),
                            "size": len(blob)}],
            }).encode()
            mdigest = client.put_manifest(repo, arch, manifest,
                                          "application/vnd.oci.image.manifest.v1+json")
            entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "digest": mdigest, "size": len(manifest),
                            "platform": {"architecture": arch, "os": "linux"}})
        index = json.dumps({"schemaVersion": 2,
                            "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": entries}).encode()
        index_digest = client.put_manifest(repo, "v1", index,
                                           "application/vnd.oci.image.index.v1+json")
    ref = f"{registry.host}/{repo}:v1"
    out = dy.run("pull", "--platform", "linux/amd64", ref).stdout
    assert f"Digest: {index_digest}" in out
    assert inspect(dy, ref)["Id"] == ids["amd64"]
    assert inspect(dy, ref)["RepoDigests"] == [f"{registry.host}/{repo}@{index_digest}"]
    other = dy.sibling("arm")
    other.run("pull", "--platform", "linux/arm64", ref)
    assert inspect(other, ref)["Id"] == ids["arm64"]
    proc = fail(dy.sibling("s390x"), "pull", "--platform", "linux/s390x", ref)
    assert "no matching manifest for linux/s390x in the manifest list entries" in proc.stderr


def test_search_catalog_fallback(
    dy: Dockyard, registry: Distribution, busybox_tar: Path
) -> None:
    import_image(dy, busybox_tar, f"{registry.host}/search/findme:v1")
    dy.run("push", f"{registry.host}/search/findme:v1")
    out = dy.run("search", f"{registry.host}/findme").stdout.splitlines()
    assert out[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"]
    assert out[1].split() == [f"{registry.host}/search/findme", "0"]
    assert dy.run("search", f"{registry.host}/nothing-like-this").stdout.count("\n") == 1


def test_search_v1_api(dy: Dockyard) -> None:
    """A registry with Docker Hub's /v1/search: Docker's columns, truncation, filters."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    results = [
        {"name": "busybox", "description": "Busybox base image. " * 4, "star_count": 3000,
         "is_official": True, "is_automated": False},
        {"name": "someone/busybox", "description": "mine", "star_count": 2,
         "is_official": False, "is_automated": True},
    ]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/v2/"):
                body = b"{}"
            else:
                body = json.dumps({"num_results": 2, "query": "busybox",
                                   "results": results}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        out = dy.run("search", f"{host}/busybox").stdout.splitlines()
        assert out[1].startswith("busybox ")
        assert "Busybox base image. Busybox base image. Busy…" in out[1]
        assert out[1].rstrip().endswith("3000      [OK]")
        assert out[2].rstrip().endswith("[OK]")
        out = dy.run("search", "--filter", "is-official=true", f"{host}/busybox").stdout
        assert "someone/busybox" not in out and "busybox" in out
        out = dy.run("search", "--no-trunc", "--filter", "stars=10", f"{host}/busybox").stdout
        assert ("Busybox base image. " * 4).strip() in out
        assert "someone" not in out
    finally:
        server.shutdown()
        server.server_close()


def test_insecure_registries_from_config(dy: Dockyard, registry: Distribution) -> None:
    """A non-loopback name is https only unless listed in insecure-registries."""
    from dockyard.distribution.endpoints import RegistryConfig

    (dy.root / "config.json").write_text(json.dumps({"insecure-registries": ["10.0.0.0/8",
                                                                              "reg.lan:5000"]}))
    cfg = RegistryConfig.load(dy.root)
    assert [e.scheme for e in cfg.endpoints("reg.lan:5000")] == ["https", "http"]
    assert [e.scheme for e in cfg.endpoints("10.1.2.3:5000")] == ["https", "http"]
    assert [e.scheme for e in cfg.endpoints("example.com")] == ["https"]
    assert [e.scheme for e in cfg.endpoints(registry.host)] == ["https", "http"]
    assert shutil.which("docker-registry")
