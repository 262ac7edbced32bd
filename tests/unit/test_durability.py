"""store.durability: blobs recorded before they reach the disk are fsynced by a
detached syncer; after a crash (another boot_id) they are checked, and a lost
one takes its images with it."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from dockyard.ops.importer import import_image
from dockyard.ops.system import check
from dockyard.reference import parse_with_default_tag
from dockyard.store import durability
from dockyard.store.store import Store
from tests.imagegen import layer_tar, sha


def _image(store: Store, files: dict[str, bytes], name: str) -> tuple[str, str]:
    layer = layer_tar(files)
    ref = parse_with_default_tag(name)
    return import_image(store, io.BytesIO(layer), tag=ref), sha(layer)


def _rows(store: Store) -> list[tuple[str, str]]:
    return store.conn.execute("SELECT digest, boot_id FROM unsynced_blobs").fetchall()


def _crash_mark(store: Store, digest: str) -> None:
    """As if ``digest`` had been written in a boot that ended before its fsync."""
    store.conn.execute(
        "INSERT INTO unsynced_blobs(digest, boot_id, added) VALUES (?, 'an-earlier-boot', 0)",
        (digest,),
    )


def test_the_detached_syncer_clears_this_boots_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    _, layer = _image(store, {"a": b"1"}, "one")
    with store.transaction() as conn:
        durability.mark_unsynced(conn, [layer])
    assert _rows(store) == [(layer, durability.boot_id())]
    durability.sync_later(store.root)
    deadline = time.monotonic() + 30
    while _rows(store) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _rows(store) == []


def test_after_a_crash_a_good_blob_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = Store(root)
    image_id, layer = _image(store, {"a": b"1"}, "one")
    _crash_mark(store, layer)
    store.close()
    reopened = Store(root)
    assert _rows(reopened) == []
    assert reopened.image(image_id) is not None
    assert check(reopened).clean


def test_after_a_crash_a_lost_blob_takes_its_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "store"
    store = Store(root)
    kept_id, _ = _image(store, {"k": b"keep"}, "kept")
    lost_id, layer = _image(store, {"a": b"1" * 5000}, "lost")
    _crash_mark(store, layer)
    store.blobs.path(layer).write_bytes(b"\0" * 1024)  # what a crash can leave
    store.close()
    reopened = Store(root)
    assert _rows(reopened) == []
    assert reopened.image(lost_id) is None
    assert reopened.image(kept_id) is not None
    assert not reopened.blobs.exists(layer)
    assert f"blob {layer} was written just before the machine went down" in capsys.readouterr().err
    reopened.sweep(wait=True)
    assert check(reopened).clean
