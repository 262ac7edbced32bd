"""Blobs made durable after the command that wrote them has returned.

``commit`` writes a container's layer (hundreds of MB) into the page cache and
records the image at once; forcing the layer to the disk first would double the
time of a commit (Docker never forces it at all). Instead the image is recorded
together with a row ``unsynced_blobs(digest, boot_id)`` in the same transaction,
and a detached ``python -m dockyard.store.durability ROOT`` fsyncs the blob and
deletes the row, usually within a second.

Why this keeps the store consistent: a process killed at any point loses no
written data (the page cache belongs to the kernel), so a row only matters if
the machine itself went down before the fsync. That shows as a row whose
``boot_id`` is not the running kernel's. The next process to open the store
then hashes each such blob: a good one is fsynced and its row dropped; a bad one
is deleted together with the images that use it, with a warning.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from dockyard.digest import hash_file
from dockyard.durable import boot_id, syncfs

LOCK_NAME = "sync.lock"


def mark_unsynced(conn: sqlite3.Connection, digests: Iterable[str]) -> None:
    """In the caller's transaction: these blobs are in place but not yet on disk."""
    boot, now = boot_id(), time.time()
    conn.executemany(
        "INSERT OR REPLACE INTO unsynced_blobs(digest, boot_id, added) VALUES (?, ?, ?)",
        [(d, boot, now) for d in digests],
    )


def sync_later(root: Path, markers: Iterable[Path] = ()) -> None:
    """Start the detached syncer for ``root`` (it waits for any running one).

    ``markers``: files whose presence says "not on disk yet" (a driver's unpacked
    layers): the syncer flushes their filesystems, then removes them."""
    subprocess.Popen(
        [sys.executable, "-m", __name__, str(root), *map(str, markers)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def _blob_path(root: Path, digest: str) -> Path:
    return root / "blobs" / "sha256" / digest.removeprefix("sha256:")


def _fsync(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def sync_pending(root: Path, conn: sqlite3.Connection, markers: Iterable[Path] = ()) -> int:
    """Flush the filesystems of ``markers`` and remove them (`clear_markers`), then
    fsync every blob written since this boot that is not yet on disk; returns how
    many blobs. Holds ``sync.lock`` (one syncer at a time; a second one waits)."""
    done = 0
    with open(root / LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        clear_markers(markers)
        boot = boot_id()
        while True:
            rows = conn.execute(
                "SELECT digest FROM unsynced_blobs WHERE boot_id = ?", (boot,)
            ).fetchall()
            if not rows:
                return done
            for (digest,) in rows:
                _fsync(_blob_path(root, digest))
                conn.execute("DELETE FROM unsynced_blobs WHERE digest = ?", (digest,))
                done += 1


def recover(root: Path, conn: sqlite3.Connection) -> list[str]:
    """After a crash: check the blobs that were not known to be on disk when the
    machine went down. Returns the digests that were lost (now removed, with the
    images that used them). Cheap when there is nothing to do (one query)."""
    boot = boot_id()
    stale = conn.execute(
        "SELECT digest FROM unsynced_blobs WHERE boot_id != ?", (boot,)
    ).fetchall()
    if not stale:
        return []
    lost: list[str] = []
    with open(root / LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for (digest,) in stale:
            path = _blob_path(root, digest)
            try:
                good = hash_file(str(path)).digest == digest
            except FileNotFoundError:
                good = True  # removed since; nothing to keep
            if good:
                _fsync(path)
            else:
                path.unlink(missing_ok=True)
                lost.append(digest)
            conn.execute("DELETE FROM unsynced_blobs WHERE digest = ?", (digest,))
        if lost:
            from dockyard.store import records

            conn.execute("BEGIN IMMEDIATE")
            try:
                images = {
                    row[0]
                    for d in lost
                    for row in conn.execute(
                        "SELECT image FROM image_layers WHERE diff_id = ? "
                        "UNION SELECT id FROM images WHERE id = ? OR manifest = ?",
                        (d, d, d),
                    )
                }
                for image_id in images:
                    records.delete_image_rows(conn, image_id)
                conn.executemany("DELETE FROM layers WHERE diff_id = ?", [(d,) for d in lost])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            for digest in lost:
                print(
                    f"dockyard: blob {digest} was written just before the machine went down "
                    f"and did not reach the disk; removed it and {len(images)} image(s) using it",
                    file=sys.stderr,
                )
    return lost


def clear_markers(markers: Iterable[Path]) -> None:
    """Flush the filesystems holding ``markers`` (one syncfs each), then remove
    the markers this boot wrote."""
    markers = list(markers)
    seen: set[int] = set()
    for marker in markers:
        try:
            dev = os.stat(marker.parent).st_dev
        except FileNotFoundError:
            continue
        if dev not in seen:
            seen.add(dev)
            syncfs(marker.parent)
    boot = boot_id()
    for marker in markers:
        try:
            if marker.read_text().strip() == boot:
                marker.unlink()
        except (FileNotFoundError, NotADirectoryError):
            continue


def main(argv: list[str]) -> int:
    from dockyard.store import records

    root = Path(argv[0])
    conn = records.connect(root / "dockyard.db")
    try:
        sync_pending(root, conn, [Path(m) for m in argv[1:]])
        return 0
    finally:
        conn.close()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
