"""The fast ``images`` path prints exactly what the full command line prints."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.cli.fast import _parse, _split_root, rows
from dockyard.ops.images import list_images
from dockyard.ops.load import load
from dockyard.reference import parse_normalized
from dockyard.store.store import Store
from tests.imagegen import docker_archive, random_layer


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store")
    base = random_layer(1)
    archive = docker_archive(
        [([base], []), ([base, random_layer(2)], ["me/app:v1", "me/app:v2", "busybox:latest"]),
         ([random_layer(3)], []), ([random_layer(4)], ["127.0.0.1:5000/x/y:t"])],
        parent_of={1: 0},
    )
    load(s, io.BytesIO(archive))
    image = list_images(s, filters=["reference=busybox"])[0].image.id
    with s.transaction() as conn:
        s.add_repo_digest(conn, parse_normalized("busybox@sha256:" + "b" * 64), image)
        s.add_repo_digest(conn, parse_normalized("other/repo@sha256:" + "c" * 64), image)
    return s


@pytest.mark.parametrize("all_images", [False, True])
def test_rows_match_list_images(store: Store, all_images: bool) -> None:
    slow = [(r.image.id, r.image.created_ts, r.image.size, r.repository, r.tag, r.digest)
            for r in list_images(store, all_images=all_images)]
    assert rows(str(store.root / "dockyard.db"), all_images) == slow
    assert len(slow) == (7 if all_images else 6)


@pytest.mark.parametrize("args", [["images"], ["images", "-a", "--digests"], ["image", "ls", "-q"],
                                  ["images", "--no-trunc", "-aq"]])
def test_fast_and_full_cli_print_the_same(store: Store, args: list[str]) -> None:
    root = ["--root", str(store.root)]
    assert _parse(root + args) is not None
    fast = subprocess.run([sys.executable, "-m", "dockyard.cli.fast", *root, *args],
                          capture_output=True, text=True, check=True).stdout
    full = subprocess.run([sys.executable, "-m", "dockyard.cli.main", *root, *args],
                          capture_output=True, text=True, check=True).stdout
    assert fast == full
    assert fast.strip()


def test_other_commands_take_the_full_path() -> None:
    for argv in (["images", "--filter", "dangling=true"], ["images", "busybox"], ["inspect", "x"],
                 ["images", "--help"], ["--root"]):
        assert _parse(argv) is None


# -- push ---------------------------------------------------------------------------------


NAMES = [
    "busybox", "busybox:1.36", "me/app", "me/app:v1", "docker.io/busybox", "index.docker.io/me/x",
    "docker.io/library/busybox:latest", "localhost/x", "localhost:5000/a/b:t", "127.0.0.1:5000/x",
    "127.0.0.1:5000/a/b/c:V1.0_rc-2", "reg.example.com/a__b/c-d.e:t", "a.b/c", "a_b.com/x",
    "reg:5000/x", "Reg.example.com/x", "me/App", "me/app:", "me/app:-x",
    "me/app@sha256:" + "a" * 64,
    "me/app:t@sha256:" + "a" * 64, "a" * 64, "A" * 64, "me/a--b", "me/a---b", "me/a..b", "me/a_b",
    "me/a___b", "me/-a", "me/a-", "/x", "x/", "", "x//y", "[::1]:5000/x", "me/app:" + "t" * 128,
    "me/app:" + "t" * 129, "reg:port/x", "reg:/x", "re-g.example-.com/x", "-reg.com/x", "x:1:2",
    "127.0.0.1:5000/" + "p" * 250, "me/" + "p" * 260, "me/app:t:u", "ümlaut/x", "me/ap\u0130p",
]


@pytest.mark.parametrize("name", NAMES)
def test_fast_push_names_normalize_as_the_full_path(name: str) -> None:
    from dockyard.cli.fast_push import normalize
    from dockyard.errors import InvalidReference
    from dockyard.reference import parse_normalized

    fast = normalize(name)
    try:
        ref = parse_normalized(name)
    except InvalidReference:
        assert fast is None
        return
    if fast is None:  # unusual but valid: the full path takes it
        assert ref.digest is not None or not ref.domain.islower() or len(ref.name) > 200, name
        return
    domain, path, tag, defaulted = fast
    assert (domain, path) == (ref.domain, ref.path)
    assert tag == (ref.tag or "latest") and defaulted == (ref.tag is None)


def test_fast_push_arguments() -> None:
    from dockyard.cli.fast_push import parse_args

    assert parse_args(["push", "x"]) == ("x", False)
    assert parse_args(["push", "-q", "x"]) == ("x", True)
    assert parse_args(["push", "x", "--quiet"]) == ("x", True)
    assert parse_args(["push", "--compression-format", "gzip", "x"]) == ("x", False)
    assert parse_args(["push", "--compression-format=gzip", "-q", "x"]) == ("x", True)
    for argv in (["push"], ["push", "-a", "x"], ["push", "x", "y"], ["push", "--help"],
                 ["push", "--compression-format", "zstd", "x"], ["push", "-qa", "x"],
                 ["push", "--compression-format"], ["pull", "x"], ["push", "--", "x"]):
        assert parse_args(argv) is None, argv
    split = _split_root(["--root", "/r", "push", "x"])
    assert split == ("/r", ["push", "x"])


def test_fast_push_constants_are_the_full_paths() -> None:
    from dockyard.cli import fast_push
    from dockyard.distribution.client import USER_AGENT
    from dockyard.distribution.compress import layer_media_type
    from dockyard.ops.push import MAX_CONCURRENT_UPLOADS
    from dockyard.store.records import SCHEMA_VERSION

    assert fast_push.SCHEMA_VERSION == SCHEMA_VERSION
    assert fast_push.USER_AGENT == USER_AGENT
    assert layer_media_type("gzip") == fast_push.DOCKER_LAYER_GZIP
    assert fast_push.MAX_CONCURRENT_UPLOADS == MAX_CONCURRENT_UPLOADS


def test_fast_push_heads_what_the_full_path_heads(store: Store) -> None:
    """plan() picks, for every layer, the source Pusher.push_layer would HEAD first, and
    takes the image only when that source is this registry and repository."""
    import random

    from dockyard.cli.fast_push import Fallback, open_store, plan
    from dockyard.distribution.compress import compression_of
    from dockyard.ops.push import layer_sources, record_sources

    host, repo = "127.0.0.1:5000", "x/y"
    name = "docker.io/me/app"  # 2 layers (plan() takes the name apart from host and repo)
    image = store.image(store.lookup_ref(parse_normalized(f"{name}:v1")) or "")
    assert image is not None and len(image.diff_ids) == 2
    diff_ids = image.diff_ids
    rng = random.Random(3)
    taken = 0
    gzip, zstd = "application/vnd.docker.image.rootfs.diff.tar.gzip", "x+zstd"
    for _ in range(40):
        with store.transaction() as conn:
            conn.execute("DELETE FROM layer_sources")
        for d in diff_ids:
            rows = [(d, "sha256:" + rng.randbytes(32).hex(), rng.choice([gzip, gzip, zstd]),
                     rng.randrange(100), *rng.choice([(host, repo)] * 4 + [
                         (host, "other"), ("", ""), ("elsewhere:1", repo)]))
                    for _ in range(rng.randrange(4))]  # fmt: skip
            for row in rows:
                record_sources(store, [row])  # a `seen` each
        firsts = {}
        for d, sources in layer_sources(store, diff_ids, host).items():
            tried = [s for s in sources if compression_of(s.media_type) == "gzip"
                     and s.registry in ("", host) and s.repo in ("", repo)]  # fmt: skip
            firsts[d] = tried[0] if tried else None
        simple = all(s is not None and (s.registry, s.repo) == (host, repo)
                     for s in firsts.values())  # fmt: skip
        conn = open_store(str(store.root / "dockyard.db"))
        try:
            if not simple:
                with pytest.raises(Fallback):
                    plan(conn, name, "v1", host, repo)
                continue
            _, layers, unique = plan(conn, name, "v1", host, repo)
            taken += 1
        finally:
            conn.close()
        assert [(b.diff_id, b.digest, b.size) for b in layers] == [
            (d, firsts[d].digest, firsts[d].size) for d in diff_ids  # type: ignore[union-attr]
        ]
        assert [b.diff_id for b in unique] == list(dict.fromkeys(diff_ids))
    assert 0 < taken < 40


@pytest.mark.parametrize("host", [
    "127.0.0.1:5000", "127.1.2.3", "127.0.0.01:5000", "128.0.0.1:5000", "localhost:5000",
    "a.localhost", "::1", "10.1.2.3:5000", "10.2.0.1", "reg.example.com", "reg.example.com:5000",
    "other.example.com", "192.168.7.7:443", "1.2.3.4.5", "256.0.0.1",
])
def test_fast_push_plain_http_hosts(host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    ) -> None:  # fmt: skip
    import json

    from dockyard.cli.fast_push import plain_http
    from dockyard.distribution.endpoints import RegistryConfig

    (tmp_path / "config.json").write_text(json.dumps(
        {"insecure-registries": ["10.1.2.3:5000", "http://reg.example.com/", "192.168.0.0/16"]}))
    monkeypatch.setenv("DOCKYARD_INSECURE_REGISTRIES", "reg.example.com:5000, 10.2.0.1")
    assert plain_http(host, str(tmp_path)) == RegistryConfig.load(tmp_path).is_insecure(host)


def test_image_manifest_is_json_dumps() -> None:
    """The schema2 manifest written out is byte for byte json.dumps(indent=3)."""
    import json
    import random

    from dockyard import mediatypes
    from dockyard.distribution import push
    from dockyard.distribution.manifest import image_manifest
    from dockyard.distribution.push import PushedBlob

    assert push.image_manifest is image_manifest
    rng = random.Random(5)
    for _ in range(200):
        layers = [
            PushedBlob("sha256:x", rng.choice(["sha256:" + rng.randbytes(32).hex(), 'q"\\é\n']),
                       mediatypes.DOCKER_LAYER_GZIP, rng.randrange(1 << 40), "exists")
            for _ in range(rng.randrange(4))
        ]  # fmt: skip
        config = rng.randbytes(rng.randrange(2000))
        want = {
            "schemaVersion": 2,
            "mediaType": mediatypes.DOCKER_MANIFEST,
            "config": {"mediaType": mediatypes.DOCKER_CONFIG, "size": len(config),
                       "digest": "sha256:" + hashlib.sha256(config).hexdigest()},
            "layers": [{"mediaType": mediatypes.DOCKER_LAYER_GZIP, "size": b.size,
                        "digest": b.digest} for b in layers],
        }  # fmt: skip
        assert image_manifest(config, layers, "gzip") == (
            json.dumps(want, indent=3).encode(), mediatypes.DOCKER_MANIFEST)


def test_fast_push_imports_little() -> None:
    code = (
        "import sys, dockyard.cli.fast_push as f\n"
        "f.normalize('127.0.0.1:5000/a/b:c'); f.plain_http('127.0.0.1:5000', '/nonexistent')\n"
        "f.image_manifest(b'{}', [], 'gzip'); f.open_store\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    heavy = {"click", "httpx", "json", "re", "enum", "typing", "dataclasses", "socket", "hashlib",
             "ipaddress", "sqlite3", "http.client", "dockyard.reference", "dockyard.store"}
    assert not loaded & heavy


@pytest.mark.parametrize("text", ["{", "[]", '{"insecure-registries": "x"}',
                                  '{"registry-mirrors": [1]}'])
def test_fast_push_leaves_a_bad_config_to_the_full_path(text: str, tmp_path: Path) -> None:
    from dockyard.cli.fast_push import Fallback, plain_http
    from dockyard.distribution.endpoints import RegistryConfig
    from dockyard.errors import InvalidArgument

    (tmp_path / "config.json").write_text(text)
    with pytest.raises(InvalidArgument):
        RegistryConfig.load(tmp_path)
    with pytest.raises(Fallback):
        plain_http("127.0.0.1:5000", str(tmp_path))
