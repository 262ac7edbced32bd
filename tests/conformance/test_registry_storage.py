"""The registry storage suite: every storage driver passes the same tests.

Only the filesystem driver exists now; a new driver (S3) is done when it passes
this suite. ``DRIVERS`` below names how to open a driver on a fresh root, so that
a test can also open a second instance on the same root (a server restart).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard.digest import Digest
from dockyard.errors import DigestMismatch, InvalidArgument
from dockyard.registry.storage import (
    StorageDriver,
    StorageNotFound,
    blob_path,
    digest_of_blob_path,
    make_driver,
)

DRIVERS = ["filesystem"]

Opener = Callable[[], StorageDriver]
UID = "0b0e3a1e-1d3c-4b7e-9f6a-2c5d8e7f9a01"
UID2 = "0b0e3a1e-1d3c-4b7e-9f6a-2c5d8e7f9a02"


def digest_of(data: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}")


@pytest.fixture(params=DRIVERS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the driver on this test's root; call again for a fresh instance (a restart)."""
    name: str = request.param
    return lambda: make_driver(name, tmp_path / "data")


@pytest.fixture
def storage(opener: Opener) -> Iterator[StorageDriver]:
    yield opener()


def read(storage: StorageDriver, path: str, offset: int = 0) -> bytes:
    with storage.get(path, offset) as f:
        return f.read()


# -- whole files -----------------------------------------------------------------------


def test_put_get_stat(storage: StorageDriver) -> None:
    storage.put("a/b/c", b"hello world")
    assert read(storage, "a/b/c") == b"hello world"
    assert read(storage, "a/b/c", 6) == b"world"
    info = storage.stat("a/b/c")
    assert (info.path, info.size) == ("a/b/c", 11)
    assert abs(info.modified - time.time()) < 60


def test_put_replaces_whole(storage: StorageDriver) -> None:
    storage.put("x", b"first version, long")
    storage.put("x", b"second")
    assert read(storage, "x") == b"second"
    assert storage.stat("x").size == 6
    assert storage.list("") == ["x"]  # no temp files visible


def test_missing_paths(storage: StorageDriver) -> None:
    for call in (
        lambda: storage.get("nope"),
        lambda: storage.stat("nope"),
        lambda: storage.delete("nope"),
        lambda: storage.move("nope", "other"),
    ):
        with pytest.raises(StorageNotFound):
            call()
    storage.put("dir/file", b"x")
    with pytest.raises(StorageNotFound):
        storage.stat("dir")  # a prefix is not a file
    assert storage.list("absent") == []


@pytest.mark.parametrize("path", ["", "/abs", "a/../b", "../b", "a//b", "a/./b", "a/"])
def test_bad_paths_refused(storage: StorageDriver, path: str) -> None:
    with pytest.raises(InvalidArgument):
        storage.put(path, b"x")


def test_list_is_recursive_and_sorted(storage: StorageDriver) -> None:
    for path in ("p/b", "p/a/2", "p/a/1", "q/z", "pp"):
        storage.put(path, path.encode())
    assert storage.list("p") == ["p/a/1", "p/a/2", "p/b"]
    assert storage.list("p/a") == ["p/a/1", "p/a/2"]
    assert storage.list("") == ["p/a/1", "p/a/2", "p/b", "pp", "q/z"]


def test_move_and_delete(storage: StorageDriver) -> None:
    storage.put("src/f", b"data")
    storage.move("src/f", "dst/g/f")
    assert read(storage, "dst/g/f") == b"data"
    with pytest.raises(StorageNotFound):
        storage.stat("src/f")
    storage.put("dst/g/h", b"more")
    storage.delete("dst/g/f")
    assert storage.list("dst") == ["dst/g/h"]
    storage.delete("dst")  # a whole prefix
    assert storage.list("dst") == []


def test_local_path_is_the_file_or_none(storage: StorageDriver) -> None:
    storage.put("blobs/x", b"served")
    local = storage.local_path("blobs/x")
    if local is not None:
        assert local.read_bytes() == b"served"


def test_blob_paths() -> None:
    d = digest_of(b"x")
    assert blob_path(d) == f"blobs/sha256/{d.hex[:2]}/{d.hex}"
    assert digest_of_blob_path(blob_path(d)) == d
    assert digest_of_blob_path("blobs/sha256/zz/abc") is None
    assert digest_of_blob_path("uploads/x/data") is None


# -- writers ---------------------------------------------------------------------------


def test_writer_appends_and_commits(storage: StorageDriver) -> None:
    data = os.urandom(300_000)
    w = storage.writer(UID)
    assert (w.id, w.size) == (UID, 0)
    for i in range(0, len(data), 70_000):
        w.append(data[i : i + 70_000])
    assert w.size == len(data)
    sized = w.commit(digest_of(data))
    assert sized == (digest_of(data), len(data))
    assert read(storage, blob_path(digest_of(data))) == data
    assert storage.list("uploads") == []
    with pytest.raises(StorageNotFound):
        storage.writer(UID, resume=True)


def test_empty_blob(storage: StorageDriver) -> None:
    w = storage.writer(UID)
    assert w.commit(digest_of(b"")).size == 0
    assert read(storage, blob_path(digest_of(b""))) == b""


def test_wrong_digest_keeps_the_upload(storage: StorageDriver) -> None:
    w = storage.writer(UID)
    w.append(b"abc")
    with pytest.raises(DigestMismatch):
        w.commit(digest_of(b"abd"))
    assert storage.list("blobs") == []  # nothing visible
    w.close()
    w = storage.writer(UID, resume=True)
    assert w.size == 3
    w.commit(digest_of(b"abc"))
    assert read(storage, blob_path(digest_of(b"abc"))) == b"abc"


def test_truncate_drops_a_failed_chunk(storage: StorageDriver) -> None:
    w = storage.writer(UID)
    w.append(b"good ")
    w.append(b"half a chu")
    w.truncate(5)
    assert w.size == 5
    w.append(b"rest")
    w.commit(digest_of(b"good rest"))
    with pytest.raises(StorageNotFound):
        storage.writer(UID, resume=True)
    assert read(storage, blob_path(digest_of(b"good rest"))) == b"good rest"


def test_resume_in_the_same_process(storage: StorageDriver) -> None:
    w = storage.writer(UID)
    w.append(b"part one, ")
    w.close()
    w = storage.writer(UID, resume=True)
    assert w.size == 10
    w.append(b"part two")
    w.close()
    w = storage.writer(UID, resume=True)
    w.commit(digest_of(b"part one, part two"))


def test_resume_after_restart(opener: Opener) -> None:
    first = opener()
    data = os.urandom(2_500_000)
    w = first.writer(UID, algorithm="sha256")
    w.append(data[:1_000_000])
    w.close()
    del first, w  # the hash state is gone with the process

    second = opener()
    w = second.writer(UID, resume=True)
    assert w.size == 1_000_000
    w.append(data[1_000_000:])
    w.commit(digest_of(data))
    assert read(second, blob_path(digest_of(data))) == data


def test_truncate_after_restart(opener: Opener) -> None:
    w = opener().writer(UID)
    w.append(b"keep this|drop that")
    w.close()
    w = opener().writer(UID, resume=True)
    w.truncate(10)
    w.append(b"more")
    w.commit(digest_of(b"keep this|more"))


def test_cancel(storage: StorageDriver) -> None:
    w = storage.writer(UID)
    w.append(b"abandoned")
    w.cancel()
    with pytest.raises(StorageNotFound):
        storage.writer(UID, resume=True)
    assert storage.list("") == []


def test_unknown_or_malformed_upload_ids(storage: StorageDriver) -> None:
    for upload_id in (UID2, "../../etc", "not-a-uuid", ""):
        with pytest.raises(StorageNotFound):
            storage.writer(upload_id, resume=True)


def test_sha512(storage: StorageDriver) -> None:
    w = storage.writer(UID, algorithm="sha512")
    w.append(b"long hash")
    d = digest_of(b"long hash", "sha512")
    w.commit(d)
    assert blob_path(d).startswith("blobs/sha512/")
    assert read(storage, blob_path(d)) == b"long hash"


def test_commit_with_another_algorithm_rehashes(storage: StorageDriver) -> None:
    w = storage.writer(UID)  # hashed as sha256 while appending
    w.append(b"either way")
    w.commit(digest_of(b"either way", "sha512"))
    assert read(storage, blob_path(digest_of(b"either way", "sha512"))) == b"either way"


def test_commit_of_a_stored_blob_renews_it(storage: StorageDriver) -> None:
    path = blob_path(digest_of(b"same"))
    w = storage.writer(UID)
    w.append(b"same")
    w.commit(digest_of(b"same"))
    local = storage.local_path(path)
    if local is not None:  # make it look old
        os.utime(local, (time.time() - 7200, time.time() - 7200))
    started = time.time()
    w = storage.writer(UID2)
    w.append(b"same")
    w.commit(digest_of(b"same"))
    assert read(storage, path) == b"same"
    assert storage.stat(path).modified >= started - 1
    assert storage.list("uploads") == []


def test_one_writer_per_upload_at_a_time(storage: StorageDriver) -> None:
    w = storage.writer(UID)
    w.append(b"a")
    got: list[int] = []

    def second() -> None:
        w2 = storage.writer(UID, resume=True)
        got.append(w2.size)
        w2.append(b"c")
        w2.close()

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.2)
    assert got == []  # waiting for the first writer
    w.append(b"b")
    w.close()
    t.join(10)
    assert got == [2]
    w = storage.writer(UID, resume=True)
    w.commit(digest_of(b"abc"))


def test_writers_of_different_uploads_are_independent(storage: StorageDriver) -> None:
    a, b = storage.writer(UID), storage.writer(UID2)
    a.append(b"AAA")
    b.append(b"BB")
    a.commit(digest_of(b"AAA"))
    b.commit(digest_of(b"BB"))
    assert sorted(storage.list("blobs")) == sorted(
        [blob_path(digest_of(b"AAA")), blob_path(digest_of(b"BB"))]
    )


@pytest.mark.parametrize("name", DRIVERS)
@pytest.mark.parametrize("what", ["put", "commit"])
def test_a_killed_writer_leaves_no_half_file(tmp_path: Path, name: str, what: str) -> None:
    """SIGKILL a process writing 64 MiB files over and over: a file is whole or absent."""
    root = tmp_path / "data"
    data_size = 64 << 20
    script = textwrap.dedent(f"""
        import hashlib, uuid, sys
        from pathlib import Path
        from dockyard.digest import Digest
        from dockyard.registry.storage import make_driver, blob_path
        s = make_driver({name!r}, Path({str(root)!r}))
        data = bytes(range(256)) * ({data_size} // 256)
        d = Digest("sha256:" + hashlib.sha256(data).hexdigest())
        print("ready", flush=True)
        while True:
            if {what!r} == "put":
                s.put("victim", data)
            else:
                w = s.writer(str(uuid.uuid4()))
                for i in range(0, len(data), 1 << 20):
                    w.append(data[i:i + (1 << 20)])
                w.commit(d)
                s.delete(blob_path(d))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.4)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    storage = make_driver(name, root)
    want = hashlib.sha256(bytes(range(256)) * (data_size // 256)).hexdigest()
    for path in storage.list(""):
        if path.startswith("uploads/"):
            continue  # an unfinished upload: resumable, not visible
        assert storage.stat(path).size == data_size, path
        assert hashlib.sha256(read(storage, path)).hexdigest() == want
