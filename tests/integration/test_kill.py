"""SIGKILL ``dockyard load`` / ``dockyard import`` at many moments, and run writers
side by side: the store never shows a half image.

The big input is busybox plus a layer of incompressible data (made once per
worker).  Each run starts on a copy of a store holding ``busybox:latest`` and is
killed after a fixed delay, part way through a run timed on this machine, or at a
moment found by polling the store as fast as Python can: a staging dir appears in
tmp/, a staged layer is half written, a new blob appears in blobs/sha256 (the
commit is under way), the SQLite WAL grows (the records are being committed), or
index.json's temp file appears (records committed, index not yet rewritten).

Then: busybox is still there; either no new image is listed or the complete one is
(``inspect`` and ``save`` work); ``system check`` is clean (and index.json agrees
with the images) or reports only what a dead process leaves (unreferenced blobs,
staging dirs, index.json's temp file, an index.json not yet rewritten); after
``--repair`` it is clean; and a retried load gives the same image ID (import: the
same diff_id).  Also: two loads at once, ``tag`` in a loop while ``rmi`` runs, and
``rmi`` during a load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from peers import Dockyard, dockyard_command  # noqa: E402

from tests.helpers import archives as ar  # noqa: E402
from tests.helpers.store import (  # noqa: E402
    assert_clean,
    check,
    garbage_only,
    index_image_ids,
)

pytestmark = pytest.mark.integration

BIG = 64 * ar.MiB  # big enough that a load takes a while, small enough to keep this fast
POLL_TIMEOUT = 30.0


@dataclass
class KillWorld:
    dir: Path
    template: Path  # store root holding busybox:latest
    busybox_id: str
    busybox_tar: Path
    big_archive: ar.BuiltArchive  # big:v1 = [busybox layer, big layer]
    small_archive: ar.BuiltArchive  # small:v1 = [busybox layer, small layer]
    big_rootfs: Path  # busybox rootfs + the big file, for import
    big_rootfs_diff_id: str
    run_seconds: float  # how long a full load of big_archive takes here
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="session")
def kw(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> KillWorld:
    d = tmp_path_factory.mktemp("kill")
    template = Dockyard(d / "template")
    busybox_id = template.run("import", busybox_tar, "busybox:latest").stdout.strip()
    data = ar.write_random(d / "big.bin", BIG)
    big_layer = d / "big-layer.tar"
    with tarfile.open(big_layer, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(ar.dir_entry("big").info)
        tar.add(data, arcname="big/data.bin")
    big = ar.image_archive(d / "big.tar", [busybox_tar, big_layer], ["big:v1"])
    small_layer = ar.tar_bytes([ar.file_entry("small/hello.txt", b"small\n")])
    small = ar.image_archive(d / "small.tar", [busybox_tar, small_layer], ["small:v1"])
    rootfs = d / "big-rootfs.tar"
    with tarfile.open(busybox_tar) as src, tarfile.open(rootfs, "w",
                                                       format=tarfile.PAX_FORMAT) as out:
        for info in src:
            out.addfile(info, src.extractfile(info) if info.isreg() else None)
        out.add(data, arcname="big.bin")
    big_layer.unlink()
    data.unlink()
    scratch = Dockyard(d / "scratch")
    shutil.copytree(template.root, scratch.root, dirs_exist_ok=True)
    t0 = time.monotonic()
    scratch.run("load", "-i", big.path)
    run_seconds = time.monotonic() - t0
    shutil.rmtree(scratch.root)
    argv, env = dockyard_command()
    return KillWorld(d, template.root, busybox_id, busybox_tar, big, small, rootfs,
                     ar.sha256_file(rootfs), run_seconds, argv, env)


@pytest.fixture
def store(kw: KillWorld, tmp_path: Path) -> Dockyard:
    root = tmp_path / "store"
    shutil.copytree(kw.template, root)
    return Dockyard(root)


def start(kw: KillWorld, store: Dockyard, *args: str | os.PathLike[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*kw.argv, "--root", os.fspath(store.root), *(os.fspath(a) for a in args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kw.env,
    )


# --------------------------------------------------------------------------- #
# when to kill: each waits for its moment and says what it saw ("" if the process
# ended first)
# --------------------------------------------------------------------------- #

Trigger = Callable[[subprocess.Popen[str], Path], str]


@dataclass(frozen=True)
class AtFraction:
    """Kill ``f`` of the way through a full run (timed once per session on this machine)."""

    f: float


def after(seconds: float) -> Trigger:
    def wait(proc: subprocess.Popen[str], root: Path) -> str:
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return f"after {seconds:.2f}s"
        return ""

    return wait


def _poll(proc: subprocess.Popen[str], seen: Callable[[], str]) -> str:
    deadline = time.monotonic() + POLL_TIMEOUT
    n = 0
    while time.monotonic() < deadline:
        try:
            what = seen()
        except FileNotFoundError:
            what = ""
        if what:
            return what
        n += 1
        if n % 64 == 0 and proc.poll() is not None:
            return ""
    raise AssertionError("the moment to kill never came")


def staging_appears(proc: subprocess.Popen[str], root: Path) -> str:
    tmp = root / "tmp"

    def seen() -> str:
        with os.scandir(tmp) as it:
            for entry in it:
                return f"staging dir {entry.name} appeared"
        return ""

    return _poll(proc, seen)


def staged_bytes(at_least: int) -> Trigger:
    def wait(proc: subprocess.Popen[str], root: Path) -> str:
        tmp = root / "tmp"

        def seen() -> str:
            with os.scandir(tmp) as ops:
                for op in ops:
                    with os.scandir(op.path) as files:
                        for f in files:
                            if f.name.startswith("layer") and f.stat().st_size >= at_least:
                                return f"staged {f.name} reached {at_least} bytes"
            return ""

        return _poll(proc, seen)

    return wait


def new_blob(proc: subprocess.Popen[str], root: Path) -> str:
    blobs = root / "blobs" / "sha256"
    before = set(os.listdir(blobs))

    def seen() -> str:
        with os.scandir(blobs) as it:
            for entry in it:
                if entry.name not in before:
                    return f"blob {entry.name[:12]} appeared"
        return ""

    return _poll(proc, seen)


def records_written(proc: subprocess.Popen[str], root: Path) -> str:
    """The SQLite WAL grows: the image's transaction is committing (index.json, which
    is rewritten from the records right after, is not yet)."""
    wal = root / "dockyard.db-wal"

    def seen() -> str:
        size = wal.stat().st_size
        return f"WAL grew to {size} bytes" if size > 32 else ""

    return _poll(proc, seen)


def index_rewrite(proc: subprocess.Popen[str], root: Path) -> str:
    """The records are committed and index.json is being rewritten (its temp file
    exists): the last moment before the operation is done."""

    def seen() -> str:
        with os.scandir(root) as it:
            for entry in it:
                if entry.name.startswith(".index.json."):
                    return f"{entry.name} appeared"
        return ""

    return _poll(proc, seen)


TRIGGERS: dict[str, Trigger | AtFraction] = {
    "after_0.05s": after(0.05),
    "after_0.2s": after(0.2),
    "after_0.5s": after(0.5),
    "at_60%_of_a_run": AtFraction(0.6),
    "staging_appears": staging_appears,
    "staged_half": staged_bytes(BIG // 2),
    "new_blob": new_blob,
    "records_written": records_written,
    "index_rewrite": index_rewrite,
}


def kill_at(kw: KillWorld, store: Dockyard, trigger: Trigger | AtFraction,
            *args: str | os.PathLike[str]) -> str:
    if isinstance(trigger, AtFraction):
        trigger = after(trigger.f * kw.run_seconds)
    proc = start(kw, store, *args)
    try:
        where = trigger(proc, store.root)
    finally:
        if proc.poll() is None:
            proc.kill()  # SIGKILL, our own child, by PID
        _out, err = proc.communicate()
    if not where or proc.returncode == 0:  # it may finish between the moment and the kill
        assert proc.returncode == 0, err
        return f"{where} but completed before the kill" if where else "completed before the kill"
    assert proc.returncode == -9, err
    return where


# --------------------------------------------------------------------------- #
# what must hold after a kill
# --------------------------------------------------------------------------- #


def image_ids(store: Dockyard) -> set[str]:
    return set(store.run("images", "-a", "-q", "--no-trunc").stdout.split())


def inspect(store: Dockyard, name: str) -> dict[str, object]:
    out = json.loads(store.run("inspect", name).stdout)
    assert isinstance(out, list) and len(out) == 1 and isinstance(out[0], dict)
    return out[0]


def assert_whole(store: Dockyard, name: str, want_id: str | None, diff_ids: list[str],
                 tmp: Path) -> str:
    """The image is complete: inspect shows its layers, save writes all of them."""
    info = inspect(store, name)
    if want_id is not None:
        assert info["Id"] == want_id
    assert info["RootFS"] == {"Type": "layers", "Layers": diff_ids}
    out = tmp / "saved.tar"
    store.run("save", "-o", out, name)
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        manifest = tar.extractfile("manifest.json")
        assert manifest is not None
        layers = json.loads(manifest.read())[0]["Layers"]
    assert [f"sha256:{p.rsplit('/', 1)[1]}" for p in layers] == diff_ids
    assert set(layers) <= names
    out.unlink()
    return str(info["Id"])


def assert_garbage_then_repair(store: Dockyard, ids: set[str]) -> str:
    """``system check`` finds nothing but garbage; after ``--repair`` it is clean, and
    index.json names exactly the listed images. Returns the first check's output."""
    res = check(store)
    if res.returncode != 0:
        assert not garbage_only(res.stdout), f"more than garbage after a kill:\n{res.stdout}"
    else:
        assert index_image_ids(store.root) == ids, "check is clean, but index.json is stale"
    repair = check(store, repair=True)
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert_clean(store)
    assert not list((store.root / "tmp").iterdir()), "repair left staging behind"
    assert not list(store.root.glob(".*.tmp")), "repair left temp files behind"
    assert index_image_ids(store.root) == ids, "index.json disagrees with the images"
    return res.stdout


def after_kill(kw: KillWorld, store: Dockyard, new_name: str, diff_ids: list[str],
               want_id: str | None, tmp: Path) -> tuple[bool, list[str]]:
    """Check the store after a killed run; returns whether the new image was listed
    and the problems ``system check`` reported before the repair."""
    ids = image_ids(store)
    assert kw.busybox_id in ids, "the image that was there before is gone"
    new = ids - {kw.busybox_id}
    assert len(new) <= 1, f"more than one new image: {new}"
    if new:
        assert assert_whole(store, new_name, want_id, diff_ids, tmp) in new
    said = assert_garbage_then_repair(store, ids)
    problems = sorted({re.sub(r"sha256:[0-9a-f]+|op-\S+|\.\d+\.", "*", line)
                       for line in said.splitlines() if line.startswith("problem:")})
    return bool(new), problems


@pytest.mark.parametrize("when", list(TRIGGERS))
def test_kill_load(when: str, kw: KillWorld, store: Dockyard, tmp_path: Path) -> None:
    big = kw.big_archive
    where = kill_at(kw, store, TRIGGERS[when], "load", "-i", big.path)
    listed, problems = after_kill(kw, store, "big:v1", big.diff_ids, big.image_id, tmp_path)
    print(f"load killed: {where}; image listed: {listed}; check said: {problems}")
    res = store.run("load", "-i", big.path)
    assert res.stdout == "Loaded image: big:v1\n"
    assert inspect(store, "big:v1")["Id"] == big.image_id
    assert image_ids(store) == {kw.busybox_id, big.image_id}
    assert_clean(store)


@pytest.mark.parametrize("when", list(TRIGGERS))
def test_kill_import(when: str, kw: KillWorld, store: Dockyard, tmp_path: Path) -> None:
    diff_ids = [kw.big_rootfs_diff_id]
    where = kill_at(kw, store, TRIGGERS[when], "import", kw.big_rootfs, "bigroot:v1")
    listed, problems = after_kill(kw, store, "bigroot:v1", diff_ids, None, tmp_path)
    print(f"import killed: {where}; image listed: {listed}; check said: {problems}")
    image_id = store.run("import", kw.big_rootfs, "bigroot:v1").stdout.strip()
    info = inspect(store, "bigroot:v1")
    assert info["Id"] == image_id
    assert info["RootFS"] == {"Type": "layers", "Layers": diff_ids}
    assert_clean(store)


def test_retry_before_repair(kw: KillWorld, store: Dockyard) -> None:
    """A load retried straight after a kill (garbage still there) succeeds too."""
    big = kw.big_archive
    kill_at(kw, store, new_blob, "load", "-i", big.path)
    res = store.run("load", "-i", big.path)
    assert res.stdout == "Loaded image: big:v1\n"
    assert inspect(store, "big:v1")["Id"] == big.image_id
    ids = image_ids(store)
    assert ids == {kw.busybox_id, big.image_id}
    assert_garbage_then_repair(store, ids)


# --------------------------------------------------------------------------- #
# writers side by side
# --------------------------------------------------------------------------- #


def test_two_loads_at_once(kw: KillWorld, tmp_path: Path) -> None:
    """Two loads into one empty store; both carry busybox's layer, so they race to
    write the same blob and the same layer record."""
    store = Dockyard(tmp_path / "store")
    store.run("images")  # create the store first, so the two do not race to make it
    procs = [start(kw, store, "load", "-i", a.path) for a in (kw.big_archive, kw.small_archive)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    assert outs[0][0] == "Loaded image: big:v1\n"
    assert outs[1][0] == "Loaded image: small:v1\n"
    assert image_ids(store) == {kw.big_archive.image_id, kw.small_archive.image_id}
    assert_clean(store)
    for a in (kw.big_archive, kw.small_archive):
        assert inspect(store, a.tags[0])["RootFS"]["Layers"] == a.diff_ids  # type: ignore[index]


def _tag_loop(kw: KillWorld, store: Dockyard, source: str, stop: threading.Event,
              results: list[tuple[str, int, str]]) -> None:
    n = 0
    while not stop.is_set():
        target = f"loop:{n}"
        p = start(kw, store, "tag", source, target)
        _out, err = p.communicate(timeout=60)
        results.append((target, p.returncode, err))
        n += 1


def _wait_for(results: list[tuple[str, int, str]], n: int) -> None:
    deadline = time.monotonic() + 60
    while len(results) < n and time.monotonic() < deadline:
        time.sleep(0.01)


def _during_tag_loop(kw: KillWorld, store: Dockyard, source: str,
                     action: Callable[[], None]) -> tuple[list[tuple[str, int, str]], int]:
    """Run ``action`` while a loop tags ``source``: some tags finish before it starts
    and some start after it ends. Returns the results and how many began before the
    action ended."""
    stop = threading.Event()
    results: list[tuple[str, int, str]] = []
    thread = threading.Thread(target=_tag_loop, args=(kw, store, source, stop, results))
    thread.start()
    try:
        _wait_for(results, 2)
        action()
        done = len(results) + 1  # the tag in flight may have started before the action ended
        _wait_for(results, done + 2)
    finally:
        stop.set()
        thread.join(timeout=60)
    return results, done


def test_tag_loop_while_rmi(kw: KillWorld, store: Dockyard) -> None:
    store.run("load", "-i", kw.small_archive.path)
    small_id = kw.small_archive.image_id

    # rmi of another image (sharing busybox's layer) while busybox gets tags
    def rmi_small() -> None:
        res = store.run("rmi", "small:v1")
        assert f"Deleted: {small_id}" in res.stdout

    results, _ = _during_tag_loop(kw, store, kw.busybox_id, rmi_small)
    assert len(results) >= 4 and all(rc == 0 for _t, rc, _e in results), results
    assert_clean(store)
    assert image_ids(store) == {kw.busybox_id}
    tags = set(inspect(store, kw.busybox_id)["RepoTags"])  # type: ignore[arg-type]
    assert {f"{t}" for t, _rc, _e in results} <= tags

    # rmi -f of the image being tagged: tags before it succeed, tags after it find
    # no image; nothing dangles
    def rmi_busybox() -> None:
        res = store.run("rmi", "-f", kw.busybox_id)
        assert f"Deleted: {kw.busybox_id}" in res.stdout

    results, done = _during_tag_loop(kw, store, kw.busybox_id, rmi_busybox)
    for target, rc, err in results:
        assert rc == 0 or (rc == 1 and err.count("\n") == 1 and "No such image" in err), (
            target, rc, err)
    assert all(rc == 0 for _t, rc, _e in results[:2]), results
    assert all(rc == 1 for _t, rc, _e in results[done:]), results
    assert image_ids(store) == set()
    assert store.run("images", "-a", "-q").stdout == ""
    assert_clean(store)


def test_rmi_during_load(kw: KillWorld, store: Dockyard) -> None:
    """rmi of busybox while a load of an image on top of busybox's layer is staging:
    the load completes whole; what the rmi could not sweep is only garbage."""
    proc = start(kw, store, "load", "-i", kw.big_archive.path)
    try:
        staged_bytes(1 << 20)(proc, store.root)
        res = store.run("rmi", "busybox:latest")
        assert f"Deleted: {kw.busybox_id}" in res.stdout
    finally:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out == "Loaded image: big:v1\n"
    ids = image_ids(store)
    assert ids == {kw.big_archive.image_id}
    assert inspect(store, "big:v1")["RootFS"]["Layers"] == kw.big_archive.diff_ids  # type: ignore[index]
    assert_garbage_then_repair(store, ids)
    assert image_ids(store) == ids
