"""The fast ``push`` path (dockyard.cli.fast_push) against real registries on 127.0.0.1:
a push into a registry that has every blob prints, records and sends what the full
path does; anything else (a lost blob, auth) goes to the full path, which does it.

Which path ran is seen with ``python -X importtime``: the full path imports httpx,
the fast one does not. ``DOCKYARD_NO_FAST=1`` forces the full path.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import Dockyard, worker_id

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.helpers.registries import Distribution, htpasswd, require_docker_registry  # noqa: E402
from tests.imagegen import docker_archive, random_layer  # noqa: E402

pytestmark = pytest.mark.integration

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    require_docker_registry()
    reg = Distribution(tmp_path_factory.mktemp(f"fast-registry-{worker_id()}")).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def dockyard_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from registry_server import RegistryServer

    reg = RegistryServer(tmp_path_factory.mktemp(f"fast-dyreg-{worker_id()}") / "data").start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    require_docker_registry()
    work = tmp_path_factory.mktemp(f"fast-registry-basic-{worker_id()}")
    path = htpasswd(work / "htpasswd", {"fastuser": "fastpass"})
    reg = Distribution(
        work / "reg", auth={"htpasswd": {"realm": "basic-realm", "path": str(path)}}
    ).start()
    yield reg
    reg.stop()


def push(dy: Dockyard, *args: str, fast: bool = True) -> tuple[str, bool]:
    """`dockyard --root R push ARGS` through the console entry point: (stdout, whether
    the full path ran, i.e. httpx was imported)."""
    env = dict(dy.env)
    if not fast:
        env["DOCKYARD_NO_FAST"] = "1"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dockyard.cli.fast", "--root", str(dy.root),
         "push", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    full = any(line.split("|")[-1].strip() in ("httpx", "click")
               for line in proc.stderr.splitlines() if line.startswith("import time:"))
    return proc.stdout, full


def load(dy: Dockyard, layers: list[bytes], ref: str) -> None:
    path = dy.root.parent / "image.tar"
    path.write_bytes(docker_archive([(layers, [ref])]))
    dy.run("load", "-i", path)
    path.unlink()


def records(dy: Dockyard) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], dict[str, float]]:
    """(layer_sources without `seen`, repo_digests, seen by (diff_id, registry, repo))."""
    conn = sqlite3.connect(dy.root / "dockyard.db")
    try:
        sources = conn.execute(
            "SELECT diff_id, digest, media_type, size, registry, repo FROM layer_sources "
            "ORDER BY 1, 2, 5, 6").fetchall()
        seen = {f"{r[0]} {r[1]} {r[2]}": r[3] for r in conn.execute(
            "SELECT diff_id, registry, repo, seen FROM layer_sources")}
        digests = conn.execute("SELECT repo, digest, image FROM repo_digests ORDER BY 1, 2"
                               ).fetchall()
    finally:
        conn.close()
    return sources, digests, seen


def manifest(url: str, repo: str, tag: str) -> bytes:
    import httpx

    r = httpx.get(f"{url}/v2/{repo}/manifests/{tag}", headers={"Accept": DOCKER_MANIFEST})
    r.raise_for_status()
    return r.content


def falls_back_untouched(dy: Dockyard, ref: str) -> None:
    """The fast path, in this process, gives up on ``ref`` and leaves the store as it was."""
    from dockyard.cli.fast_push import Fallback, push

    before = records(dy)
    with pytest.raises(Fallback):
        push(str(dy.root), ref, False)
    assert records(dy) == before


def unordered_exists(out: str) -> list[str]:
    """The lines with the "Layer already exists" block sorted: the full path's worker
    threads report in the order their HEADs come back."""
    lines = out.splitlines()
    block = [i for i, line in enumerate(lines) if line.endswith(": Layer already exists")]
    if block:
        assert block == list(range(block[0], block[-1] + 1)), out
        lines[block[0] : block[-1] + 1] = sorted(lines[block[0] : block[-1] + 1])
    return lines


@pytest.mark.parametrize("server", ["distribution", "dockyard"])
def test_push_again_is_fast_and_the_same(
    dy: Dockyard, server: str, request: pytest.FixtureRequest
) -> None:
    reg = request.getfixturevalue("distribution" if server == "distribution" else
                                  "dockyard_registry")
    host = reg.host
    base = 20 + (10 if server == "dockyard" else 0)
    # 7 distinct layers (Docker's 5 uploads at a time: 2 "Waiting"), one of them twice
    layers = [random_layer(base + i) for i in range(7)]
    layers.insert(4, layers[1])
    repo = f"{host}/fast/many"
    load(dy, layers, f"{repo}:v1")

    out, full = push(dy, f"{repo}:v1")
    assert full and out.count(": Pushed") == 7, out
    first_records = records(dy)
    pushed = manifest(reg.url, "fast/many", "v1")

    slow, full = push(dy, f"{repo}:v1", fast=False)
    assert full
    slow_records = records(dy)
    fast, full = push(dy, f"{repo}:v1")
    assert not full, "the fast path was not taken"
    fast_records = records(dy)

    assert unordered_exists(fast) == unordered_exists(slow)
    lines = fast.splitlines()
    assert lines[0] == f"The push refers to repository [{repo}]"
    assert sum(line.endswith(": Waiting") for line in lines) == 2
    assert lines[-1].endswith(f"size: {len(pushed)}")
    assert lines[-1] == slow.splitlines()[-1]
    assert manifest(reg.url, "fast/many", "v1") == pushed  # the registry's manifest unchanged
    assert fast_records[:2] == slow_records[:2] == first_records[:2]
    pushed_here = [k for k in fast_records[2] if f" {host} " in k]  # not the '' rows
    assert len(pushed_here) == 7
    assert all(fast_records[2][k] > slow_records[2][k] for k in pushed_here)  # seen again
    digest = lines[-1].split()[2]
    info = json.loads(dy.run("inspect", f"{repo}:v1").stdout)[0]
    assert info["RepoDigests"] == [f"{repo}@{digest}"]

    # -q, and the default tag
    assert push(dy, "-q", f"{repo}:v1") == (f"{repo}:v1\n", False)
    assert push(dy, "-q", f"{repo}:v1", fast=False) == (f"{repo}:v1\n", True)
    dy.run("tag", f"{repo}:v1", repo)
    push(dy, repo)
    slow, _ = push(dy, repo, fast=False)
    fast, full = push(dy, repo)
    assert not full
    assert fast.splitlines()[0] == "Using default tag: latest"
    assert unordered_exists(fast) == unordered_exists(slow)
    assert "clean" in dy.run("system", "check").stdout


def test_a_lost_blob_goes_to_the_full_path(dy: Dockyard, distribution: Distribution) -> None:
    import httpx

    host = distribution.host
    layers = [random_layer(50), random_layer(51)]
    repo = f"{host}/fast/lost"
    load(dy, layers, f"{repo}:v1")
    push(dy, f"{repo}:v1")
    assert not push(dy, f"{repo}:v1")[1]
    conn = sqlite3.connect(dy.root / "dockyard.db")
    (lost,) = conn.execute(
        "SELECT digest FROM layer_sources WHERE registry = ? AND diff_id = ?",
        (host, "sha256:" + __import__("hashlib").sha256(layers[1]).hexdigest()),
    ).fetchone()
    conn.close()
    r = httpx.delete(f"{distribution.url}/v2/fast/lost/blobs/{lost}")
    assert r.status_code == 202, r.text
    assert httpx.head(f"{distribution.url}/v2/fast/lost/blobs/{lost}").status_code == 404

    falls_back_untouched(dy, f"{repo}:v1")
    out, full = push(dy, f"{repo}:v1")
    assert full
    assert out.count(": Pushed") == 1 and out.count(": Layer already exists") == 1, out
    assert httpx.head(f"{distribution.url}/v2/fast/lost/blobs/{lost}").status_code == 200
    # and the next push is all HEADs again: fast
    assert not push(dy, f"{repo}:v1")[1]


def test_a_fresh_registry_goes_to_the_full_path(dy: Dockyard, tmp_path: Path) -> None:
    require_docker_registry()
    reg = Distribution(tmp_path / "reg1").start()
    try:
        repo = f"{reg.host}/fast/fresh"
        load(dy, [random_layer(60)], f"{repo}:v1")
        push(dy, f"{repo}:v1")
        reg.stop()
        port = reg.port
        reg = Distribution(tmp_path / "reg2")
        reg.port = port
        start_on(reg, port)
        falls_back_untouched(dy, f"{repo}:v1")
        out, full = push(dy, f"{repo}:v1")  # same host:port, nothing there
        assert full and ": Pushed" in out, out
        assert not push(dy, f"{repo}:v1")[1]
    finally:
        reg.stop()


def start_on(reg: Distribution, port: int) -> None:
    """Start ``reg`` on ``port`` (Distribution.start picks a free port)."""
    import tests.helpers.registries as registries

    saved = registries.free_port
    registries.free_port = lambda: port
    try:
        reg.start()
    finally:
        registries.free_port = saved


def test_auth_goes_to_the_full_path(dy: Dockyard, basic_registry: Distribution) -> None:
    host = basic_registry.host
    repo = f"{host}/fast/auth"
    load(dy, [random_layer(70)], f"{repo}:v1")
    dy.run("login", "-u", "fastuser", "--password-stdin", host, input="fastpass\n")
    out, full = push(dy, f"{repo}:v1")
    assert full and ": Pushed" in out
    falls_back_untouched(dy, f"{repo}:v1")
    out, full = push(dy, f"{repo}:v1")
    assert full, "a 401 must go to the full path"
    assert ": Layer already exists" in out and out.startswith("The push refers"), out
    digest = out.splitlines()[-1].split()[2]
    info = json.loads(dy.run("inspect", f"{repo}:v1").stdout)[0]
    assert info["RepoDigests"] == [f"{repo}@{digest}"]
