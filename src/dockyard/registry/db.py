"""SQLite connections for the registry (WAL, one connection per thread).

Schema modules (metadata.py, accounts.py) each own their tables and call
``ensure_schema(conn, name, version, sql)``; plain SQL kept portable to PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)

    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn


def ensure_schema(conn: sqlite3.Connection, name: str, version: int, sql: str) -> None:
    """Create ``name``'s tables once per version (idempotent, safe across processes)."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_versions(name TEXT PRIMARY KEY, version INT)")
    row = conn.execute("SELECT version FROM schema_versions WHERE name = ?", (name,)).fetchone()
    if row is not None and row[0] >= version:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT version FROM schema_versions WHERE name = ?", (name,)).fetchone()
        if row is None or row[0] < version:
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR REPLACE INTO schema_versions(name, version) VALUES (?, ?)",
                         (name, version))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
