"""Image, tag and layer records in SQLite (WAL)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS images(
    id TEXT PRIMARY KEY,              -- sha256 of the config blob (Docker's image ID)
    manifest TEXT NOT NULL,           -- digest of the stored OCI manifest
    created TEXT NOT NULL,            -- config's created, as written
    created_ts REAL NOT NULL,
    size INTEGER NOT NULL,            -- sum of the layers' content sizes
    parent TEXT NOT NULL DEFAULT '',  -- local parent image (commit, build, legacy load)
    labels TEXT,                      -- JSON object or NULL
    added REAL NOT NULL,
    last_tag_time TEXT
);
CREATE TABLE IF NOT EXISTS image_layers(
    image TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    diff_id TEXT NOT NULL,
    PRIMARY KEY(image, idx)
);
CREATE INDEX IF NOT EXISTS image_layers_diff ON image_layers(diff_id);
CREATE TABLE IF NOT EXISTS layers(
    diff_id TEXT PRIMARY KEY,
    blob TEXT NOT NULL,               -- blob holding the uncompressed tar
    content_size INTEGER NOT NULL,
    tar_size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tags(
    repo TEXT NOT NULL,               -- full name: docker.io/library/busybox
    tag TEXT NOT NULL,
    image TEXT NOT NULL REFERENCES images(id),
    PRIMARY KEY(repo, tag)
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image);
CREATE TABLE IF NOT EXISTS repo_digests(
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    image TEXT NOT NULL REFERENCES images(id),
    PRIMARY KEY(repo, digest)
);
CREATE INDEX IF NOT EXISTS repo_digests_image ON repo_digests(image);
CREATE INDEX IF NOT EXISTS images_parent ON images(parent);
CREATE TABLE IF NOT EXISTS containers(
    id TEXT PRIMARY KEY,              -- 64 hex
    name TEXT NOT NULL UNIQUE,        -- without Docker's leading "/"
    image TEXT NOT NULL,              -- image ID the container was made from
    image_name TEXT NOT NULL,         -- as the user named it
    created TEXT NOT NULL,
    driver TEXT NOT NULL,
    chain TEXT NOT NULL DEFAULT '',   -- chain ID hex of the image's top layer
    config TEXT NOT NULL,             -- JSON: Docker's container Config
    host_config TEXT NOT NULL,        -- JSON: HostConfig
    state TEXT NOT NULL,              -- JSON: State
    network TEXT                      -- JSON: the endpoint (IP, gateway, ports)
);
CREATE INDEX IF NOT EXISTS containers_image ON containers(image);
CREATE TABLE IF NOT EXISTS layer_sources(  -- where a layer's compressed form is known to be
    diff_id TEXT NOT NULL,            -- the uncompressed layer (layers.diff_id)
    digest TEXT NOT NULL,             -- digest of the compressed blob
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    registry TEXT NOT NULL,           -- API host[:port]; '' = compressed here by a push
    repo TEXT NOT NULL,               -- repository path on that registry; '' with registry ''
    seen REAL NOT NULL,
    PRIMARY KEY(diff_id, digest, registry, repo)
);
CREATE INDEX IF NOT EXISTS layer_sources_digest ON layer_sources(digest);
CREATE TABLE IF NOT EXISTS unsynced_blobs(  -- in place, not yet fsynced (store.durability)
    digest TEXT PRIMARY KEY,
    boot_id TEXT NOT NULL,            -- the kernel's boot_id when written
    added REAL NOT NULL
);
"""
SCHEMA_VERSION = 4


@dataclass
class ImageRecord:
    id: str
    manifest: str
    created: str
    created_ts: float
    size: int
    parent: str
    labels: dict[str, str] | None
    added: float
    last_tag_time: str | None
    tags: list[tuple[str, str]] = field(default_factory=list)  # (repo, tag), full names
    digests: list[tuple[str, str]] = field(default_factory=list)  # (repo, digest)
    diff_ids: list[str] = field(default_factory=list)


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if mode != "wal":
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                conn.executescript(
                    f"BEGIN;{SCHEMA}PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
                )
            else:
                conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return conn


def delete_image_rows(conn: sqlite3.Connection, image_id: str) -> None:
    """Remove an image's records (tags, digests, layers list; children lose their
    parent), inside the caller's transaction. Blobs are the sweep's business."""
    conn.execute("DELETE FROM tags WHERE image = ?", (image_id,))
    conn.execute("DELETE FROM repo_digests WHERE image = ?", (image_id,))
    conn.execute("UPDATE images SET parent = '' WHERE parent = ?", (image_id,))
    conn.execute("DELETE FROM image_layers WHERE image = ?", (image_id,))
    conn.execute("DELETE FROM images WHERE id = ?", (image_id,))


_IMAGE_COLS = "id, manifest, created, created_ts, size, parent, labels, added, last_tag_time"


def _image(row: tuple[object, ...]) -> ImageRecord:
    labels = row[6]
    return ImageRecord(
        id=str(row[0]),
        manifest=str(row[1]),
        created=str(row[2]),
        created_ts=float(row[3]),  # type: ignore[arg-type]
        size=int(row[4]),  # type: ignore[call-overload]
        parent=str(row[5]),
        labels=json.loads(labels) if isinstance(labels, str) else None,
        added=float(row[7]),  # type: ignore[arg-type]
        last_tag_time=None if row[8] is None else str(row[8]),
    )


def load_images(
    conn: sqlite3.Connection, ids: list[str] | None = None, with_layers: bool = False
) -> list[ImageRecord]:
    """All images (or those in ``ids``) with their tags and digests, in a few queries."""
    if ids is None:
        rows = conn.execute(f"SELECT {_IMAGE_COLS} FROM images").fetchall()
        tag_rows = conn.execute("SELECT image, repo, tag FROM tags").fetchall()
        dig_rows = conn.execute("SELECT image, repo, digest FROM repo_digests").fetchall()
        layer_rows = (
            conn.execute("SELECT image, diff_id FROM image_layers ORDER BY image, idx").fetchall()
            if with_layers
            else []
        )
    else:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            f"SELECT {_IMAGE_COLS} FROM images WHERE id IN ({marks})", ids
        ).fetchall()
        tag_rows = conn.execute(
            f"SELECT image, repo, tag FROM tags WHERE image IN ({marks})", ids
        ).fetchall()
        dig_rows = conn.execute(
            f"SELECT image, repo, digest FROM repo_digests WHERE image IN ({marks})", ids
        ).fetchall()
        layer_rows = (
            conn.execute(
                f"SELECT image, diff_id FROM image_layers WHERE image IN ({marks}) "
                "ORDER BY image, idx",
                ids,
            ).fetchall()
            if with_layers
            else []
        )
    images = {r[0]: _image(r) for r in rows}
    for image, repo, tag in tag_rows:
        if image in images:
            images[image].tags.append((repo, tag))
    for image, repo, digest in dig_rows:
        if image in images:
            images[image].digests.append((repo, digest))
    for image, diff_id in layer_rows:
        if image in images:
            images[image].diff_ids.append(diff_id)
    return list(images.values())


def children_of(conn: sqlite3.Connection, image_id: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT id FROM images WHERE parent = ?", (image_id,))]


def image_diff_ids(conn: sqlite3.Connection, image_id: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT diff_id FROM image_layers WHERE image = ? ORDER BY idx", (image_id,)
        )
    ]
