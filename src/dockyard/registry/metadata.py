"""What the registry knows, in SQL: repositories, blobs and their links, manifests,
tags, references between them, and unfinished uploads.

Blob and manifest bytes live in the storage driver (content-addressed); these
tables say which repository may serve which of them. A blob is visible in a
repository once linked (``repo_blobs``); a manifest is stored only when every
blob and child manifest it names is linked in its repository, checked in the
same transaction that stores it, so garbage collection (gc.py), which deletes
unreferenced rows in its own transactions, can run while clients push.

The SQL is kept portable to PostgreSQL (plain types, ``ON CONFLICT`` upserts);
only ``BEGIN IMMEDIATE`` is SQLite's, in ``_write``. Tags and repository names
sort bytewise (SQLite's BINARY collation; ``COLLATE "C"`` on PostgreSQL), which
is the order the distribution spec asks for.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dockyard.registry.db import Database, ensure_schema
from dockyard.registry.errors import ManifestBlobUnknown, RegistryError

SCHEMA_NAME = "registry_metadata"
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS repositories (
    name VARCHAR(255) PRIMARY KEY,
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (
    digest VARCHAR(200) PRIMARY KEY,
    size BIGINT NOT NULL,
    pushed DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS repo_blobs (
    repo VARCHAR(255) NOT NULL REFERENCES repositories(name) ON DELETE CASCADE,
    digest VARCHAR(200) NOT NULL REFERENCES blobs(digest) ON DELETE CASCADE,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX IF NOT EXISTS repo_blobs_digest ON repo_blobs(digest);
CREATE TABLE IF NOT EXISTS manifests (
    repo VARCHAR(255) NOT NULL REFERENCES repositories(name) ON DELETE CASCADE,
    digest VARCHAR(200) NOT NULL,
    media_type VARCHAR(255) NOT NULL,
    size BIGINT NOT NULL,
    subject VARCHAR(200),
    artifact_type VARCHAR(255),
    annotations TEXT,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX IF NOT EXISTS manifests_digest ON manifests(digest);
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests(repo, subject);
CREATE TABLE IF NOT EXISTS tags (
    repo VARCHAR(255) NOT NULL,
    name VARCHAR(128) NOT NULL,
    digest VARCHAR(200) NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (repo, name),
    FOREIGN KEY (repo, digest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS tags_manifest ON tags(repo, digest);
CREATE TABLE IF NOT EXISTS manifest_refs (
    repo VARCHAR(255) NOT NULL,
    manifest VARCHAR(200) NOT NULL,
    child VARCHAR(200) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    PRIMARY KEY (repo, manifest, child),
    FOREIGN KEY (repo, manifest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS manifest_refs_child ON manifest_refs(child);
CREATE TABLE IF NOT EXISTS uploads (
    id VARCHAR(64) PRIMARY KEY,
    repo VARCHAR(255) NOT NULL,
    received BIGINT NOT NULL,
    algorithm VARCHAR(32) NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL
)
"""

BLOB = "blob"
MANIFEST = "manifest"


@dataclass(frozen=True)
class BlobRecord:
    digest: str
    size: int


@dataclass(frozen=True)
class ManifestRecord:
    repo: str
    digest: str
    media_type: str
    size: int
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    created: float = 0.0


@dataclass(frozen=True)
class Reference:
    """A descriptor a manifest names: a blob (config, layer) or a child manifest."""

    digest: str
    size: int
    kind: str  # BLOB | MANIFEST


@dataclass(frozen=True)
class Upload:
    id: str
    repo: str
    received: int  # the offset: bytes received in whole requests
    algorithm: str
    created: float
    updated: float


@dataclass
class Page:
    items: list[str] = field(default_factory=list)
    more: bool = False  # entries exist after the last one


@contextlib.contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _chunks(items: Sequence[str], n: int = 400) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class Metadata:
    """The registry's SQL records; every method is one short transaction (or a read)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        ensure_schema(db.conn(), SCHEMA_NAME, SCHEMA_VERSION, SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        return self.db.conn()

    # -- repositories ------------------------------------------------------------------

    @staticmethod
    def _ensure_repo(conn: sqlite3.Connection, repo: str, now: float) -> None:
        conn.execute(
            "INSERT INTO repositories(name, created) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (repo, now),
        )

    def repo_exists(self, repo: str) -> bool:
        row = self._conn().execute("SELECT 1 FROM repositories WHERE name = ?", (repo,)).fetchone()
        return row is not None

    def repositories(self, last: str | None = None, n: int | None = None) -> Page:
        return self._page("SELECT name FROM repositories", "name", (), last, n)

    def _page(
        self, base: str, column: str, args: tuple[Any, ...], last: str | None, n: int | None
    ) -> Page:
        sql, params = base, list(args)
        if last is not None:
            sql += (" AND " if " WHERE " in base else " WHERE ") + f"{column} > ?"
            params.append(last)
        sql += f" ORDER BY {column}"
        if n is not None:
            sql += " LIMIT ?"
            params.append(n + 1)
        names = [r[0] for r in self._conn().execute(sql, params)]
        if n is not None and len(names) > n:
            return Page(names[:n], True)
        return Page(names, False)

    # -- blobs -------------------------------------------------------------------------

    def blob_in_repo(self, repo: str, digest: str) -> BlobRecord | None:
        row = self._conn().execute(
            "SELECT b.digest, b.size FROM repo_blobs l JOIN blobs b ON b.digest = l.digest"
            " WHERE l.repo = ? AND l.digest = ?",
            (repo, digest),
        ).fetchone()
        return BlobRecord(row[0], row[1]) if row else None

    def _link_blob(
        self, conn: sqlite3.Connection, repo: str, digest: str, size: int, now: float
    ) -> None:
        self._ensure_repo(conn, repo, now)
        conn.execute(
            "INSERT INTO blobs(digest, size, pushed) VALUES (?, ?, ?)"
            " ON CONFLICT(digest) DO UPDATE SET pushed = excluded.pushed",
            (digest, size, now),
        )
        conn.execute(
            "INSERT INTO repo_blobs(repo, digest) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (repo, digest),
        )

    def add_blob(self, repo: str, digest: str, size: int) -> None:
        """Record a blob just written to storage and link it into ``repo``."""
        now = time.time()
        with _write(self._conn()) as conn:
            self._link_blob(conn, repo, digest, size, now)

    def mount_blob(self, repo: str, digest: str, source: str) -> BlobRecord | None:
        """Link a blob that ``source`` has into ``repo`` (None if ``source`` lacks it)."""
        now = time.time()
        with _write(self._conn()) as conn:
            row = conn.execute(
                "SELECT b.digest, b.size FROM repo_blobs l JOIN blobs b ON b.digest = l.digest"
                " WHERE l.repo = ? AND l.digest = ?",
                (source, digest),
            ).fetchone()
            if row is None:
                return None
            self._ensure_repo(conn, repo, now)
            conn.execute("UPDATE blobs SET pushed = ? WHERE digest = ?", (now, digest))
            conn.execute(
                "INSERT INTO repo_blobs(repo, digest) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (repo, digest),
            )
            return BlobRecord(row[0], row[1])

    def repos_with_blob(self, digest: str, limit: int = 10) -> list[str]:
        rows = self._conn().execute(
            "SELECT repo FROM repo_blobs WHERE digest = ? ORDER BY repo LIMIT ?", (digest, limit)
        )
        return [r[0] for r in rows]

    def unlink_blob(self, repo: str, digest: str) -> bool:
        with _write(self._conn()) as conn:
            cur = conn.execute(
                "DELETE FROM repo_blobs WHERE repo = ? AND digest = ?", (repo, digest)
            )
            return cur.rowcount > 0

    # -- uploads -----------------------------------------------------------------------

    def create_upload(self, upload_id: str, repo: str, algorithm: str = "sha256") -> Upload:
        now = time.time()
        with _write(self._conn()) as conn:
            conn.execute(
                "INSERT INTO uploads(id, repo, received, algorithm, created, updated)"
                " VALUES (?, ?, 0, ?, ?, ?)",
                (upload_id, repo, algorithm, now, now),
            )
        return Upload(upload_id, repo, 0, algorithm, now, now)

    def upload(self, upload_id: str) -> Upload | None:
        row = self._conn().execute(
            "SELECT id, repo, received, algorithm, created, updated FROM uploads WHERE id = ?",
            (upload_id,),
        ).fetchone()
        return Upload(*row) if row else None

    def set_upload_received(self, upload_id: str, received: int) -> None:
        with _write(self._conn()) as conn:
            conn.execute(
                "UPDATE uploads SET received = ?, updated = ? WHERE id = ?",
                (received, time.time(), upload_id),
            )

    def delete_upload(self, upload_id: str) -> None:
        with _write(self._conn()) as conn:
            conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))

    def finish_upload(self, upload_id: str, repo: str, digest: str, size: int) -> None:
        """The upload became a blob: record and link it, and forget the upload."""
        now = time.time()
        with _write(self._conn()) as conn:
            self._link_blob(conn, repo, digest, size, now)
            conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))

    def uploads_older_than(self, cutoff: float) -> list[Upload]:
        rows = self._conn().execute(
            "SELECT id, repo, received, algorithm, created, updated FROM uploads"
            " WHERE updated < ? ORDER BY id",
            (cutoff,),
        )
        return [Upload(*r) for r in rows]

    def upload_ids(self) -> set[str]:
        return {r[0] for r in self._conn().execute("SELECT id FROM uploads")}

    # -- manifests ---------------------------------------------------------------------

    def put_manifest(
        self, record: ManifestRecord, refs: Iterable[Reference], tags: Iterable[str] = ()
    ) -> None:
        """Store a manifest whose bytes are in storage, after checking what it names.

        Raises ManifestBlobUnknown listing every blob or child manifest that
        ``record.repo`` lacks, or MANIFEST_INVALID when a descriptor's size is wrong.
        """
        now = time.time()
        refs = list({r.digest: r for r in refs}.values())
        repo = record.repo
        with _write(self._conn()) as conn:
            missing: list[str] = []
            for ref in refs:
                if ref.kind == BLOB:
                    row = conn.execute(
                        "SELECT b.size FROM repo_blobs l JOIN blobs b ON b.digest = l.digest"
                        " WHERE l.repo = ? AND l.digest = ?",
                        (repo, ref.digest),
                    ).fetchone()
                else:
                    row = conn.execute(
                        "SELECT size FROM manifests WHERE repo = ? AND digest = ?",
                        (repo, ref.digest),
                    ).fetchone()
                if row is None:
                    missing.append(ref.digest)
                elif row[0] != ref.size:
                    raise RegistryError(
                        "MANIFEST_INVALID",
                        detail=f"descriptor of {ref.digest} has size {ref.size}, "
                        f"the registry has {row[0]} bytes",
                    )
            if missing:
                raise ManifestBlobUnknown(missing)
            self._ensure_repo(conn, repo, now)
            annotations = json.dumps(record.annotations) if record.annotations else None
            conn.execute(
                "INSERT INTO manifests(repo, digest, media_type, size, subject, artifact_type,"
                " annotations, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(repo, digest) DO NOTHING",
                (repo, record.digest, record.media_type, record.size, record.subject,
                 record.artifact_type, annotations, now),
            )  # fmt: skip
            for ref in refs:
                conn.execute(
                    "INSERT INTO manifest_refs(repo, manifest, child, kind) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (repo, record.digest, ref.digest, ref.kind),
                )
            for tag in tags:
                conn.execute(
                    "INSERT INTO tags(repo, name, digest, updated) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT(repo, name) DO UPDATE SET digest = excluded.digest,"
                    " updated = excluded.updated",
                    (repo, tag, record.digest, now),
                )

    def manifest(self, repo: str, digest: str) -> ManifestRecord | None:
        row = self._conn().execute(
            "SELECT repo, digest, media_type, size, subject, artifact_type, annotations, created"
            " FROM manifests WHERE repo = ? AND digest = ?",
            (repo, digest),
        ).fetchone()
        return _manifest(row) if row else None

    def tag(self, repo: str, tag: str) -> str | None:
        row = self._conn().execute(
            "SELECT digest FROM tags WHERE repo = ? AND name = ?", (repo, tag)
        ).fetchone()
        return str(row[0]) if row else None

    def tags(self, repo: str, last: str | None = None, n: int | None = None) -> Page:
        return self._page("SELECT name FROM tags WHERE repo = ?", "name", (repo,), last, n)

    def delete_tag(self, repo: str, tag: str) -> bool:
        with _write(self._conn()) as conn:
            cur = conn.execute("DELETE FROM tags WHERE repo = ? AND name = ?", (repo, tag))
            return cur.rowcount > 0

    def delete_manifest(self, repo: str, digest: str) -> bool:
        """Delete a manifest and every tag pointing at it."""
        with _write(self._conn()) as conn:
            cur = conn.execute(
                "DELETE FROM manifests WHERE repo = ? AND digest = ?", (repo, digest)
            )
            return cur.rowcount > 0

    def referrers(
        self, repo: str, subject: str, artifact_type: str | None = None
    ) -> list[ManifestRecord]:
        sql = (
            "SELECT repo, digest, media_type, size, subject, artifact_type, annotations, created"
            " FROM manifests WHERE repo = ? AND subject = ?"
        )
        args: list[Any] = [repo, subject]
        if artifact_type is not None:
            sql += " AND artifact_type = ?"
            args.append(artifact_type)
        return [_manifest(r) for r in self._conn().execute(sql + " ORDER BY digest", args)]

    # -- garbage collection ------------------------------------------------------------

    def untagged_manifests(self, cutoff: float) -> list[tuple[str, str]]:
        """(repo, digest) of manifests created before ``cutoff`` that nothing keeps:
        no tag, no parent index in the repository, and no subject still present."""
        rows = self._conn().execute(
            "SELECT m.repo, m.digest FROM manifests m WHERE m.created < ?"
            " AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)"
            " AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = m.repo"
            "                 AND r.child = m.digest AND r.kind = 'manifest')"
            " AND (m.subject IS NULL OR NOT EXISTS (SELECT 1 FROM manifests s"
            "                 WHERE s.repo = m.repo AND s.digest = m.subject))"
            " ORDER BY m.repo, m.digest",
            (cutoff,),
        )
        return [(r[0], r[1]) for r in rows]

    def delete_manifests_if_untagged(self, items: Sequence[tuple[str, str]]) -> int:
        """Delete the given manifests unless a tag or parent appeared meanwhile."""
        deleted = 0
        with _write(self._conn()) as conn:
            for repo, digest in items:
                cur = conn.execute(
                    "DELETE FROM manifests WHERE repo = ? AND digest = ?"
                    " AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = ? AND t.digest = ?)"
                    " AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = ?"
                    "                 AND r.child = ? AND r.kind = 'manifest')",
                    (repo, digest, repo, digest, repo, digest),
                )
                deleted += cur.rowcount
        return deleted

    def unreferenced_blobs(self, cutoff: float) -> list[BlobRecord]:
        """Blobs pushed before ``cutoff`` that no manifest of any repository names."""
        rows = self._conn().execute(
            "SELECT b.digest, b.size FROM blobs b WHERE b.pushed < ?"
            " AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.child = b.digest)"
            " AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest)"
            " ORDER BY b.digest",
            (cutoff,),
        )
        return [BlobRecord(r[0], r[1]) for r in rows]

    def delete_blobs_if_unreferenced(self, digests: Sequence[str], cutoff: float) -> list[str]:
        """Delete blob rows (and their links) still unreferenced and old; returns them."""
        deleted: list[str] = []
        with _write(self._conn()) as conn:
            for digest in digests:
                cur = conn.execute(
                    "DELETE FROM blobs WHERE digest = ? AND pushed < ?"
                    " AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.child = ?)"
                    " AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = ?)",
                    (digest, cutoff, digest, digest),
                )
                if cur.rowcount:
                    deleted.append(digest)
        return deleted

    def is_stored(self, digest: str) -> bool:
        """Whether any row still needs the bytes of ``digest`` (as a blob or a manifest)."""
        conn = self._conn()
        if conn.execute("SELECT 1 FROM blobs WHERE digest = ?", (digest,)).fetchone():
            return True
        return conn.execute(
            "SELECT 1 FROM manifests WHERE digest = ? LIMIT 1", (digest,)
        ).fetchone() is not None

    def known_digests(self) -> set[str]:
        conn = self._conn()
        digests = {r[0] for r in conn.execute("SELECT digest FROM blobs")}
        digests.update(r[0] for r in conn.execute("SELECT DISTINCT digest FROM manifests"))
        return digests

    def delete_empty_repositories(self) -> list[str]:
        with _write(self._conn()) as conn:
            names = [r[0] for r in conn.execute(
                "SELECT name FROM repositories r"
                " WHERE NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo = r.name)"
                " AND NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.repo = r.name)"
                " ORDER BY name"
            )]  # fmt: skip
            for chunk in _chunks(names):
                marks = ",".join("?" * len(chunk))
                conn.execute(f"DELETE FROM repositories WHERE name IN ({marks})", list(chunk))
        return names


def _manifest(row: Sequence[Any]) -> ManifestRecord:
    annotations = json.loads(row[6]) if row[6] else None
    return ManifestRecord(row[0], row[1], row[2], row[3], row[4], row[5], annotations, row[7])
