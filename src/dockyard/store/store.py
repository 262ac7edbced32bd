"""The local image store: an OCI image layout of blobs plus SQLite records.

Layout under the root::

    oci-layout, index.json   an OCI image layout (index.json derived from the records)
    blobs/sha256/<hex>       configs, manifests and uncompressed layer tars
    dockyard.db              records (SQLite, WAL)
    tmp/op-*/                staging of running operations (garbage once their lock is free)
    tmp/pull/, tmp/push/     partial downloads and upload sessions, kept to resume
    lock, gc.lock            see store.locks
    sync.lock                see store.durability
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dockyard.digest import Digest
from dockyard.reference import Reference
from dockyard.store import durability, records
from dockyard.store.blobs import BlobStore, fsync_dir, write_atomic
from dockyard.store.locks import flocked, try_flocked

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
# tmp/ dirs that outlive an operation on purpose: partial downloads and upload
# sessions kept so that an interrupted pull or push resumes (distribution.*)
RESUME_DIRS = ("pull", "push")


def data_home(name: str, env_var: str) -> Path:
    """``$env_var``, else /var/lib/NAME for root, else $XDG_DATA_HOME/NAME."""
    env = os.environ.get(env_var)
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib") / name
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(xdg) / name


def default_root() -> Path:
    return data_home("dockyard", "DOCKYARD_ROOT")


@dataclass
class LayerRecord:
    diff_id: str
    blob: str
    content_size: int
    tar_size: int


@dataclass
class NewImage:
    """What an operation hands to the store once every blob is in place."""

    id: str
    manifest: str
    created: str
    created_ts: float
    layers: list[LayerRecord]
    parent: str = ""
    labels: dict[str, str] | None = None


def chain_ids(diff_ids: list[str]) -> list[str]:
    """Docker's ChainIDs: chain[0] = diff[0]; chain[i] = sha256(chain[i-1] + ' ' + diff[i])."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else Digest.of_bytes(f"{out[-1]} {d}".encode()))
    return out


class Store:
    def __init__(self, root: Path | None = None, driver_name: str | None = None) -> None:
        self.root = (Path(root) if root is not None else default_root()).absolute()
        self.driver_name = driver_name  # --storage-driver; None: config file, env, detection
        self.blobs = BlobStore(self.root)
        self._conn: sqlite3.Connection | None = None

    # -- set-up --------------------------------------------------------------

    def _ensure_layout(self) -> None:
        if (self.root / "oci-layout").exists():
            return
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        if not (self.root / "index.json").exists():
            write_atomic(self.root / "index.json", b'{"schemaVersion":2,"manifests":[]}')
        write_atomic(self.root / "oci-layout", OCI_LAYOUT)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._ensure_layout()
            self._conn = records.connect(self.root / "dockyard.db")
            if durability.recover(self.root, self._conn):
                with self.write_lock():
                    self._write_index()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- locks and staging ------------------------------------------------------

    def write_lock(self) -> contextlib.AbstractContextManager[None]:
        self.conn  # noqa: B018 - make sure the layout exists
        return flocked(self.root / "lock")

    def ingest_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held (shared) while an operation writes blobs it has not recorded yet."""
        self.conn  # noqa: B018
        return flocked(self.root / "gc.lock", exclusive=False)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A private directory on the store's filesystem, removed afterwards."""
        self.conn  # noqa: B018
        path = self.root / "tmp" / f"op-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        path.mkdir(parents=True)
        fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
            os.close(fd)

    def stale_staging(self) -> list[Path]:
        """Staging dirs whose owning process is gone."""
        out: list[Path] = []
        tmp = self.root / "tmp"
        if not tmp.exists():
            return out
        for entry in sorted(tmp.iterdir()):
            if entry.name in RESUME_DIRS and entry.is_dir():
                continue
            lock = entry / ".lock"
            if not entry.is_dir() or not lock.exists():
                out.append(entry)
                continue
            with try_flocked(lock) as free:
                if free:
                    out.append(entry)
        return out

    # -- records ------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction under the store's write lock; index.json follows."""
        with self.write_lock():
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._write_index()

    def add_image(self, conn: sqlite3.Connection, image: NewImage) -> bool:
        """Record an image whose blobs are all present. Returns False if it existed."""
        exists = conn.execute("SELECT 1 FROM images WHERE id = ?", (image.id,)).fetchone()
        missing = [
            d
            for d in [image.id, image.manifest, *(layer.blob for layer in image.layers)]
            if not self.blobs.exists(d)
        ]
        if missing:
            from dockyard.errors import StoreCorrupt

            raise StoreCorrupt(f"blob {missing[0]} vanished before the image was recorded")
        for layer in image.layers:
            conn.execute(
                "INSERT OR IGNORE INTO layers(diff_id, blob, content_size, tar_size) "
                "VALUES (?, ?, ?, ?)",
                (layer.diff_id, layer.blob, layer.content_size, layer.tar_size),
            )
        if exists:
            return False
        conn.execute(
            "INSERT INTO images(id, manifest, created, created_ts, size, parent, labels, added) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                image.id,
                image.manifest,
                image.created,
                image.created_ts,
                sum(layer.content_size for layer in image.layers),
                image.parent,
                json.dumps(image.labels) if image.labels else None,
                time.time(),
            ),
        )
        conn.executemany(
            "INSERT INTO image_layers(image, idx, diff_id) VALUES (?, ?, ?)",
            [(image.id, i, layer.diff_id) for i, layer in enumerate(image.layers)],
        )
        return True

    def set_parent(self, conn: sqlite3.Connection, image_id: str, parent: str) -> bool:
        """Record a local parent, as Docker does, only if the parent exists and its
        layers are a strict prefix of the child's."""
        if not conn.execute("SELECT 1 FROM images WHERE id = ?", (parent,)).fetchone():
            return False
        mine = records.image_diff_ids(conn, image_id)
        theirs = records.image_diff_ids(conn, parent)
        if len(theirs) >= len(mine) or mine[: len(theirs)] != theirs:
            return False
        conn.execute("UPDATE images SET parent = ? WHERE id = ?", (parent, image_id))
        return True

    def set_tag(self, conn: sqlite3.Connection, ref: Reference, image_id: str) -> str | None:
        """Point ``ref`` (which has a tag) at ``image_id``; returns the image it pointed to."""
        assert ref.tag is not None
        old = conn.execute(
            "SELECT image FROM tags WHERE repo = ? AND tag = ?", (ref.name, ref.tag)
        ).fetchone()
        conn.execute(
            "INSERT OR REPLACE INTO tags(repo, tag, image) VALUES (?, ?, ?)",
            (ref.name, ref.tag, image_id),
        )
        now = _now_rfc3339()
        conn.execute("UPDATE images SET last_tag_time = ? WHERE id = ?", (now, image_id))
        return None if old is None or old[0] == image_id else str(old[0])

    def add_repo_digest(self, conn: sqlite3.Connection, ref: Reference, image_id: str) -> None:
        assert ref.digest is not None
        conn.execute(
            "INSERT OR REPLACE INTO repo_digests(repo, digest, image) VALUES (?, ?, ?)",
            (ref.name, ref.digest, image_id),
        )

    def lookup_ref(self, ref: Reference) -> str | None:
        if ref.digest is not None:
            row = self.conn.execute(
                "SELECT image FROM repo_digests WHERE repo = ? AND digest = ?",
                (ref.name, ref.digest),
            ).fetchone()
        else:
            row = self.conn.execute(
                "SELECT image FROM tags WHERE repo = ? AND tag = ?", (ref.name, ref.tag or "latest")
            ).fetchone()
        return None if row is None else str(row[0])

    def search_id(self, prefix: str) -> list[str]:
        """Image IDs starting with ``prefix`` (hex, with or without ``sha256:``)."""
        hexpart = prefix.removeprefix("sha256:")
        if not hexpart or any(c not in "0123456789abcdef" for c in hexpart):
            return []
        like = "sha256:" + hexpart + "%"
        return [
            r[0]
            for r in self.conn.execute("SELECT id FROM images WHERE id LIKE ? LIMIT 2", (like,))
        ]

    def image(self, image_id: str, with_layers: bool = True) -> records.ImageRecord | None:
        found = records.load_images(self.conn, [image_id], with_layers=with_layers)
        return found[0] if found else None

    def images(self, with_layers: bool = False) -> list[records.ImageRecord]:
        return records.load_images(self.conn, with_layers=with_layers)

    def layer(self, diff_id: str) -> LayerRecord | None:
        row = self.conn.execute(
            "SELECT diff_id, blob, content_size, tar_size FROM layers WHERE diff_id = ?", (diff_id,)
        ).fetchone()
        return None if row is None else LayerRecord(*row)

    # -- removal --------------------------------------------------------------

    def delete_image_records(self, conn: sqlite3.Connection, image_id: str) -> list[str]:
        """Delete an image's records; returns the chain IDs of layers no image uses now."""
        diff_ids = records.image_diff_ids(conn, image_id)
        conn.execute("DELETE FROM tags WHERE image = ?", (image_id,))
        conn.execute("DELETE FROM repo_digests WHERE image = ?", (image_id,))
        conn.execute("UPDATE images SET parent = '' WHERE parent = ?", (image_id,))
        conn.execute("DELETE FROM image_layers WHERE image = ?", (image_id,))
        conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
        # A chain is released when no other image starts with the same layers.
        chains = chain_ids(diff_ids)
        remaining = {
            tuple(records.image_diff_ids(conn, other))
            for (other,) in conn.execute(
                "SELECT DISTINCT image FROM image_layers WHERE idx = 0 AND diff_id = ?",
                (diff_ids[0],) if diff_ids else ("",),
            )
        }
        removed = []
        for i in range(len(diff_ids) - 1, -1, -1):
            prefix = tuple(diff_ids[: i + 1])
            if any(other[: i + 1] == prefix for other in remaining):
                break
            removed.append(chains[i])
        conn.execute("DELETE FROM layers WHERE diff_id NOT IN (SELECT diff_id FROM image_layers)")
        return removed

    def referenced_blobs(self) -> set[str]:
        conn = self.conn
        out: set[str] = set()
        for image_id, manifest in conn.execute("SELECT id, manifest FROM images"):
            out.add(image_id)
            out.add(manifest)
        for (blob,) in conn.execute("SELECT blob FROM layers"):
            out.add(blob)
        return out

    def sweep(self, wait: bool = False) -> tuple[int, int] | None:
        """Delete blobs no record references. Returns (count, bytes), or None when
        another operation is ingesting and ``wait`` is false (garbage stays for later)."""
        lock = self.root / "gc.lock"
        if wait:
            with flocked(lock):
                return self._sweep_locked()
        with try_flocked(lock) as free:
            if not free:
                return None
            return self._sweep_locked()

    def _sweep_locked(self) -> tuple[int, int]:
        keep = self.referenced_blobs()
        count = size = 0
        for digest in list(self.blobs):
            if digest not in keep:
                with contextlib.suppress(FileNotFoundError):
                    size += self.blobs.path(digest).stat().st_size
                if self.blobs.delete(digest):
                    count += 1
        if count:
            self.blobs.sync()
        return count, size

    # -- the OCI index -----------------------------------------------------------

    def _write_index(self) -> None:
        """Rewrite index.json from the records (caller holds the write lock)."""
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": self.index_manifests(),
        }
        write_atomic(self.root / "index.json", json.dumps(index, separators=(",", ":")).encode())

    def index_manifests(self) -> list[dict[str, object]]:
        """The descriptors index.json must hold, as the records say."""
        conn = self.conn
        manifests = []
        sizes: dict[str, int] = {}
        rows = conn.execute(
            "SELECT i.id, i.manifest, t.repo, t.tag FROM images i "
            "LEFT JOIN tags t ON t.image = i.id ORDER BY i.id, t.repo, t.tag"
        ).fetchall()
        for _image_id, manifest, repo, tag in rows:
            if manifest not in sizes:
                try:
                    sizes[manifest] = self.blobs.size(manifest)
                except Exception:
                    continue
            desc: dict[str, object] = {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest,
                "size": sizes[manifest],
            }
            if repo is not None:
                desc["annotations"] = {
                    "io.containerd.image.name": f"{repo}:{tag}",
                    "org.opencontainers.image.ref.name": f"{repo}:{tag}",
                }
            manifests.append(desc)
        return manifests


def _now_rfc3339() -> str:
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{base}.{frac:09d}".rstrip("0").rstrip(".") + "Z"


__all__ = ["LayerRecord", "NewImage", "Store", "chain_ids", "default_root", "fsync_dir"]
