"""The fast ``images`` path prints exactly what the full command line prints."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.cli.fast import _parse, rows
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
