"""Accounts of the registry server: users, organizations, teams, access tokens, visibility.

The model is Docker Hub's:

    user            a name, a bcrypt password, an ``admin`` flag; owns the namespace
                    of its name (``alice/app``)
    organization    owns the namespace of its name (``acme/app``); its ``owners`` team
                    (admin on every repository of the org) always has a member
    team            in one organization: read | write | admin on all of the org's
                    repositories or on selected ones, and a set of member users
    access token    a secret for CI (basic-auth password or /token credential): a name,
                    an owner (user or org), scopes (``repository:acme/app:pull,push``,
                    names may end in ``*``) and an optional expiry; it never grants
                    more than its owner has
    visibility      repositories are private unless made public; anyone may pull a
                    public one, anonymous clients included

What a subject may do on a repository (``Accounts.actions``), from the table

    pull    public repository, or read/write/admin through a team, or own namespace
    push    write/admin through a team, or own namespace (this also creates the
            repository on first push)
    delete  admin through a team (org owners included), or own namespace
    all     users with the admin flag, and htpasswd users (as distribution's htpasswd)

``registry:catalog:*`` (the full ``/v2/_catalog``) is for admins; other subjects get
the catalog filtered to the repositories they may pull (``Accounts.may_catalog``).

Tables are plain SQL (portable to PostgreSQL) created through ``db.ensure_schema``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.registry.access import Principal
from dockyard.registry.db import Database, ensure_schema

ALL_ACTIONS = frozenset({"pull", "push", "delete"})
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset({"pull"}),
    "write": frozenset({"pull", "push"}),
    "admin": ALL_ACTIONS,
}
OWNERS_TEAM = "owners"
CATALOG_SCOPE = "registry:catalog:*"
TOKEN_PREFIX = "dyt_"
BCRYPT_ROUNDS = 10
MAX_PASSWORD_BYTES = 72  # bcrypt's limit; longer passwords are refused, never truncated

_NAME = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(_NAME, re.ASCII)
_REPO_RE = re.compile(rf"{_NAME}(?:/{_NAME})*", re.ASCII)
_REPO_PATTERN_RE = re.compile(r"[a-z0-9._/-]*\*?", re.ASCII)
_TOKEN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
_SCOPE_TYPE_RE = re.compile(r"[a-z0-9]+(?:\([a-z0-9]+\))?", re.ASCII)
_ACTION_RE = re.compile(r"[a-z]*|\*", re.ASCII)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS users(
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    created_ts DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS organizations(
    name TEXT PRIMARY KEY,
    created_ts DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS teams(
    org TEXT NOT NULL REFERENCES organizations(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    permission TEXT NOT NULL,
    all_repositories INTEGER NOT NULL,
    PRIMARY KEY(org, name)
);
CREATE TABLE IF NOT EXISTS team_repositories(
    org TEXT NOT NULL,
    team TEXT NOT NULL,
    repository TEXT NOT NULL,
    PRIMARY KEY(org, team, repository),
    FOREIGN KEY(org, team) REFERENCES teams(org, name) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS team_members(
    org TEXT NOT NULL,
    team TEXT NOT NULL,
    username TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    PRIMARY KEY(org, team, username),
    FOREIGN KEY(org, team) REFERENCES teams(org, name) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS team_members_by_user ON team_members(username);
CREATE TABLE IF NOT EXISTS access_tokens(
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    owner_kind TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_ts DOUBLE PRECISION NOT NULL,
    expires_ts DOUBLE PRECISION,
    last_used_ts DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS access_tokens_by_owner ON access_tokens(owner);
CREATE TABLE IF NOT EXISTS refresh_tokens(
    token_hash TEXT PRIMARY KEY,
    subject_kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    service TEXT NOT NULL,
    created_ts DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS refresh_tokens_by_subject ON refresh_tokens(subject_kind, subject);
CREATE TABLE IF NOT EXISTS repository_visibility(
    repository TEXT PRIMARY KEY,
    public INTEGER NOT NULL
)
"""


# --------------------------------------------------------------------------- #
# values
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Scope:
    """One resource scope (scope.md): ``type[(class)]:name:action[,action]*``."""

    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    def matches(self, type_: str, name: str) -> bool:
        """True when this scope covers ``name`` (a trailing ``*`` matches any suffix)."""
        if self.type != type_:
            return False
        if self.name.endswith("*"):
            return name.startswith(self.name[:-1])
        return self.name == name


def parse_scope(text: str) -> Scope:
    """Parse one resource scope; the name may hold one ``:`` (a registry host's port).

    Raises InvalidArgument for anything that is not the grammar of scope.md.
    """
    first = text.find(":")
    last = text.rfind(":")
    if first <= 0 or last == first:
        raise InvalidArgument(f"invalid scope {text!r}: want type:name:actions")
    type_, name, actions_text = text[:first], text[first + 1:last], text[last + 1:]
    if not _SCOPE_TYPE_RE.fullmatch(type_) or not name or name.count(":") > 1:
        raise InvalidArgument(f"invalid scope {text!r}")
    actions = frozenset(a for a in actions_text.split(",") if a)
    if not all(_ACTION_RE.fullmatch(a) for a in actions):
        raise InvalidArgument(f"invalid scope {text!r}: bad action")
    if "(" in type_:  # repository(plugin) -> repository; the class does not change access
        type_ = type_[:type_.index("(")]
    return Scope(type_, name, actions)


def parse_scopes(texts: Iterable[str]) -> list[Scope]:
    """Parse space-separated scope lists, silently dropping malformed entries (token.md)."""
    out: list[Scope] = []
    for text in texts:
        for item in text.split():
            try:
                out.append(parse_scope(item))
            except InvalidArgument:
                continue
    return out


@dataclass(frozen=True)
class User:
    name: str
    admin: bool
    created: float


@dataclass(frozen=True)
class Team:
    org: str
    name: str
    permission: str  # read | write | admin
    repositories: tuple[str, ...] | None  # None = every repository of the org
    members: tuple[str, ...]


@dataclass(frozen=True)
class Organization:
    name: str
    owners: tuple[str, ...]
    created: float


@dataclass(frozen=True)
class AccessToken:
    name: str
    owner: str
    owner_kind: str  # user | org
    scopes: tuple[Scope, ...]
    created: float
    expires: float | None
    last_used: float | None

    def expired(self, now: float | None = None) -> bool:
        if self.expires is None:
            return False
        return (now if now is not None else time.time()) >= self.expires


@dataclass(frozen=True)
class Subject:
    """Who is asking: an anonymous client, a user, or an access token (robot)."""

    kind: str = "anonymous"  # anonymous | user | robot
    name: str = ""
    admin: bool = False  # users only (DB admin flag or an htpasswd user)
    token: AccessToken | None = None  # robots only

    @property
    def principal(self) -> Principal:
        return Principal(self.name, self.kind)

    @property
    def claim(self) -> str:
        """The JWT ``sub``: "" anonymous, the user name, or ``robot$NAME``."""
        return f"robot${self.name}" if self.kind == "robot" else self.name


ANONYMOUS = Subject()


def check_name(name: str, what: str = "name") -> str:
    if len(name) > 64 or not _NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"invalid {what} {name!r}: lowercase letters, digits and . _ - separators, "
            "at most 64 characters")
    return name


def check_repository(name: str) -> str:
    if len(name) > 255 or not _REPO_RE.fullmatch(name):
        raise InvalidArgument(f"invalid repository name {name!r}")
    return name


def check_password(password: str) -> bytes:
    raw = password.encode()
    if not raw:
        raise InvalidArgument("the password must not be empty")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise InvalidArgument(f"the password must be at most {MAX_PASSWORD_BYTES} bytes (bcrypt)")
    return raw


def namespace_of(repository: str) -> str | None:
    """The owning namespace of ``org/app`` or ``user/a/b``; None for a top-level name."""
    head, sep, _ = repository.partition("/")
    return head if sep else None


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w``, ``1y`` -> seconds."""
    m = re.fullmatch(r"([0-9]+)([smhdwy])", text.strip())
    if m is None:
        raise InvalidArgument(f"invalid duration {text!r}: want a number and s, m, h, d, w or y")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}[m[2]]
    return float(int(m[1]) * unit)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- #
# htpasswd (bcrypt entries only, as distribution)
# --------------------------------------------------------------------------- #


class Htpasswd:
    """A distribution-style htpasswd file: ``user:$2y$...`` lines, re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._entries: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def _load(self) -> dict[str, bytes]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_mtime, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                entries: dict[str, bytes] = {}
                for line in self.path.read_text().splitlines():
                    line = line.strip()
                    if not line or line.startswith("#") or ":" not in line:
                        continue
                    user, _, hashed = line.partition(":")
                    if hashed.startswith(("$2y$", "$2a$", "$2b$")):
                        entries[user] = hashed.encode()
                self._entries, self._stamp = entries, stamp
            return self._entries

    def hash_of(self, user: str) -> bytes | None:
        return self._load().get(user)

    def __contains__(self, user: str) -> bool:
        return user in self._load()


def _bcrypt_check(password: str, hashed: bytes) -> bool:
    raw = password.encode()
    if not raw or len(raw) > MAX_PASSWORD_BYTES:
        return False
    try:
        return bcrypt.checkpw(raw, hashed)
    except ValueError:
        return False


# --------------------------------------------------------------------------- #
# the accounts store
# --------------------------------------------------------------------------- #


class Accounts:
    """Users, organizations, teams, access tokens and repository visibility, in SQL."""

    def __init__(self, db: Database, htpasswd: Path | None = None) -> None:
        self.db = db
        self.htpasswd = Htpasswd(htpasswd) if htpasswd is not None else None
        ensure_schema(db.conn(), "accounts", SCHEMA_VERSION, SCHEMA)
        # (user, sha256(password)) -> the bcrypt hash it was checked against: a password
        # is bcrypt-checked once per hash, not on every request of a basic-auth push
        self._verified: dict[tuple[str, str], bytes] = {}
        self._verified_lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        return self.db.conn()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _name_taken(self, conn: sqlite3.Connection, name: str) -> str | None:
        if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
            return "user"
        if conn.execute("SELECT 1 FROM organizations WHERE name = ?", (name,)).fetchone():
            return "organization"
        return None

    # -- users ------------------------------------------------------------------

    def add_user(self, name: str, password: str, admin: bool = False) -> User:
        check_name(name, "user name")
        hashed = bcrypt.hashpw(check_password(password), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()
        now = time.time()
        with self._write() as conn:
            taken = self._name_taken(conn, name)
            if taken:
                raise Conflict(f"{taken} {name!r} already exists")
            conn.execute("INSERT INTO users(name, password_hash, admin, created_ts) "
                         "VALUES (?, ?, ?, ?)", (name, hashed, int(admin), now))
        return User(name, admin, now)

    def user(self, name: str) -> User | None:
        row = self._conn().execute(
            "SELECT name, admin, created_ts FROM users WHERE name = ?", (name,)).fetchone()
        return User(row[0], bool(row[1]), row[2]) if row else None

    def users(self) -> list[User]:
        rows = self._conn().execute("SELECT name, admin, created_ts FROM users ORDER BY name")
        return [User(r[0], bool(r[1]), r[2]) for r in rows]

    def remove_user(self, name: str) -> None:
        with self._write() as conn:
            if not conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise NotFound(f"no such user: {name}")
            for (org,) in conn.execute(
                    "SELECT org FROM team_members WHERE team = ? AND username = ?",
                    (OWNERS_TEAM, name)).fetchall():
                if self._owner_count(conn, org) <= 1:
                    raise Conflict(f"user {name!r} is the last owner of organization {org!r}: "
                                   "add another owner or remove the organization first")
            conn.execute("DELETE FROM team_members WHERE username = ?", (name,))
            conn.execute("DELETE FROM access_tokens WHERE owner = ? AND owner_kind = 'user'",
                         (name,))
            conn.execute("DELETE FROM refresh_tokens WHERE subject = ? AND subject_kind = 'user'",
                         (name,))
            conn.execute("DELETE FROM users WHERE name = ?", (name,))

    def set_password(self, name: str, password: str) -> None:
        hashed = bcrypt.hashpw(check_password(password), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()
        with self._write() as conn:
            cur = conn.execute("UPDATE users SET password_hash = ? WHERE name = ?", (hashed, name))
            if cur.rowcount == 0:
                raise NotFound(f"no such user: {name}")
            # a new password ends the sessions (refresh tokens) the old one opened
            conn.execute("DELETE FROM refresh_tokens WHERE subject = ? AND subject_kind = 'user'",
                         (name,))

    def set_admin(self, name: str, admin: bool) -> None:
        with self._write() as conn:
            cur = conn.execute("UPDATE users SET admin = ? WHERE name = ?", (int(admin), name))
            if cur.rowcount == 0:
                raise NotFound(f"no such user: {name}")

    # -- organizations and teams ----------------------------------------------------

    def _owner_count(self, conn: sqlite3.Connection, org: str) -> int:
        row = conn.execute("SELECT COUNT(*) FROM team_members WHERE org = ? AND team = ?",
                           (org, OWNERS_TEAM)).fetchone()
        return int(row[0])

    def add_org(self, name: str, owner: str) -> Organization:
        check_name(name, "organization name")
        now = time.time()
        with self._write() as conn:
            taken = self._name_taken(conn, name)
            if taken:
                raise Conflict(f"{taken} {name!r} already exists")
            if not conn.execute("SELECT 1 FROM users WHERE name = ?", (owner,)).fetchone():
                raise NotFound(f"no such user: {owner}")
            conn.execute("INSERT INTO organizations(name, created_ts) VALUES (?, ?)", (name, now))
            conn.execute("INSERT INTO teams(org, name, permission, all_repositories) "
                         "VALUES (?, ?, 'admin', 1)", (name, OWNERS_TEAM))
            conn.execute("INSERT INTO team_members(org, team, username) VALUES (?, ?, ?)",
                         (name, OWNERS_TEAM, owner))
        return Organization(name, (owner,), now)

    def orgs(self) -> list[Organization]:
        conn = self._conn()
        owners: dict[str, list[str]] = {}
        for org, user in conn.execute(
                "SELECT org, username FROM team_members WHERE team = ? ORDER BY username",
                (OWNERS_TEAM,)):
            owners.setdefault(org, []).append(user)
        return [Organization(name, tuple(owners.get(name, ())), created)
                for name, created in conn.execute(
                    "SELECT name, created_ts FROM organizations ORDER BY name")]

    def is_org(self, name: str) -> bool:
        return self._conn().execute(
            "SELECT 1 FROM organizations WHERE name = ?", (name,)).fetchone() is not None

    def remove_org(self, name: str) -> None:
        with self._write() as conn:
            if not conn.execute("SELECT 1 FROM organizations WHERE name = ?", (name,)).fetchone():
                raise NotFound(f"no such organization: {name}")
            conn.execute("DELETE FROM access_tokens WHERE owner = ? AND owner_kind = 'org'",
                         (name,))
            conn.execute("DELETE FROM organizations WHERE name = ?", (name,))

    def _team_repos(self, org: str, repositories: Iterable[str]) -> list[str]:
        out = []
        for repo in repositories:
            full = repo if repo.startswith(f"{org}/") else f"{org}/{repo}"
            out.append(check_repository(full))
        return sorted(set(out))

    def add_team(self, org: str, team: str, permission: str,
                 repositories: Iterable[str] | None = None) -> Team:
        """Create (or redefine) a team; ``repositories`` None = all of the org's."""
        check_name(team, "team name")
        if permission not in PERMISSIONS:
            raise InvalidArgument(f"invalid permission {permission!r}: want read, write or admin")
        repos = None if repositories is None else self._team_repos(org, repositories)
        if repos is not None and not repos:
            repos = None
        if team == OWNERS_TEAM and (permission != "admin" or repos is not None):
            raise InvalidArgument("the owners team is admin on every repository")
        with self._write() as conn:
            if not conn.execute("SELECT 1 FROM organizations WHERE name = ?", (org,)).fetchone():
                raise NotFound(f"no such organization: {org}")
            conn.execute(
                "INSERT INTO teams(org, name, permission, all_repositories) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(org, name) DO UPDATE SET permission = excluded.permission, "
                "all_repositories = excluded.all_repositories",
                (org, team, permission, int(repos is None)))
            conn.execute("DELETE FROM team_repositories WHERE org = ? AND team = ?", (org, team))
            conn.executemany(
                "INSERT INTO team_repositories(org, team, repository) VALUES (?, ?, ?)",
                [(org, team, r) for r in repos or ()])
        found = self.team(org, team)
        assert found is not None
        return found

    def remove_team(self, org: str, team: str) -> None:
        if team == OWNERS_TEAM:
            raise Conflict("the owners team cannot be removed (remove the organization)")
        with self._write() as conn:
            cur = conn.execute("DELETE FROM teams WHERE org = ? AND name = ?", (org, team))
            if cur.rowcount == 0:
                raise NotFound(f"no such team: {org}/{team}")

    def team(self, org: str, team: str) -> Team | None:
        return next((t for t in self.teams(org) if t.name == team), None)

    def teams(self, org: str) -> list[Team]:
        conn = self._conn()
        if not conn.execute("SELECT 1 FROM organizations WHERE name = ?", (org,)).fetchone():
            raise NotFound(f"no such organization: {org}")
        repos: dict[str, list[str]] = {}
        for team, repo in conn.execute(
                "SELECT team, repository FROM team_repositories WHERE org = ? ORDER BY repository",
                (org,)):
            repos.setdefault(team, []).append(repo)
        members: dict[str, list[str]] = {}
        for team, user in conn.execute(
                "SELECT team, username FROM team_members WHERE org = ? ORDER BY username", (org,)):
            members.setdefault(team, []).append(user)
        return [Team(org, name, perm, None if all_repos else tuple(repos.get(name, ())),
                     tuple(members.get(name, ())))
                for name, perm, all_repos in conn.execute(
                    "SELECT name, permission, all_repositories FROM teams WHERE org = ? "
                    "ORDER BY name", (org,))]

    def add_member(self, org: str, team: str, user: str) -> None:
        with self._write() as conn:
            if not conn.execute("SELECT 1 FROM teams WHERE org = ? AND name = ?",
                                (org, team)).fetchone():
                raise NotFound(f"no such team: {org}/{team}")
            if not conn.execute("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone():
                raise NotFound(f"no such user: {user}")
            conn.execute("INSERT INTO team_members(org, team, username) VALUES (?, ?, ?) "
                         "ON CONFLICT DO NOTHING", (org, team, user))

    def remove_member(self, org: str, team: str, user: str) -> None:
        with self._write() as conn:
            if team == OWNERS_TEAM and self._owner_count(conn, org) <= 1:
                raise Conflict(f"{user!r} is the last owner of organization {org!r}")
            cur = conn.execute("DELETE FROM team_members WHERE org = ? AND team = ? "
                               "AND username = ?", (org, team, user))
            if cur.rowcount == 0:
                raise NotFound(f"{user} is not a member of {org}/{team}")

    # -- access tokens --------------------------------------------------------------

    def add_token(self, name: str, owner: str, scopes: Iterable[str | Scope],
                  expires: float | None = None) -> tuple[AccessToken, str]:
        """Create an access token; returns it and its secret (shown once, stored hashed)."""
        if not _TOKEN_NAME_RE.fullmatch(name):
            raise InvalidArgument(f"invalid token name {name!r}")
        parsed = [s if isinstance(s, Scope) else parse_scope(s) for s in scopes]
        if not parsed:
            raise InvalidArgument("a token needs at least one --scope")
        for scope in parsed:
            if scope.type == "repository":
                if not _REPO_PATTERN_RE.fullmatch(scope.name):
                    raise InvalidArgument(f"invalid repository in scope {scope}")
                bad = scope.actions - ALL_ACTIONS - {"*"}
                if bad:
                    raise InvalidArgument(f"unknown action(s) {', '.join(sorted(bad))} in {scope}")
            elif str(scope) != CATALOG_SCOPE:
                raise InvalidArgument(f"unsupported scope {scope}: want repository:NAME:ACTIONS "
                                      f"or {CATALOG_SCOPE}")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (owner,)).fetchone():
                kind = "user"
            elif conn.execute("SELECT 1 FROM organizations WHERE name = ?", (owner,)).fetchone():
                kind = "org"
            else:
                raise NotFound(f"no such user or organization: {owner}")
            if conn.execute("SELECT 1 FROM access_tokens WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"token {name!r} already exists")
            conn.execute(
                "INSERT INTO access_tokens(name, owner, owner_kind, secret_hash, scopes, "
                "created_ts, expires_ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, owner, kind, _sha256(secret), " ".join(str(s) for s in parsed), now,
                 expires))
        return AccessToken(name, owner, kind, tuple(parsed), now, expires, None), secret

    @staticmethod
    def _token_row(row: tuple[str, str, str, str, float, float | None, float | None]
                   ) -> AccessToken:
        name, owner, kind, scopes, created, expires, last_used = row
        return AccessToken(name, owner, kind, tuple(parse_scopes([scopes])), created, expires,
                           last_used)

    _TOKEN_COLUMNS = "name, owner, owner_kind, scopes, created_ts, expires_ts, last_used_ts"

    def tokens(self, owner: str | None = None) -> list[AccessToken]:
        sql = f"SELECT {self._TOKEN_COLUMNS} FROM access_tokens"
        args: tuple[str, ...] = ()
        if owner is not None:
            sql, args = sql + " WHERE owner = ?", (owner,)
        return [self._token_row(r) for r in self._conn().execute(sql + " ORDER BY name", args)]

    def token(self, name: str) -> AccessToken | None:
        row = self._conn().execute(
            f"SELECT {self._TOKEN_COLUMNS} FROM access_tokens WHERE name = ?", (name,)).fetchone()
        return self._token_row(row) if row else None

    def remove_token(self, name: str) -> None:
        with self._write() as conn:
            if conn.execute("DELETE FROM access_tokens WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"no such token: {name}")
            conn.execute("DELETE FROM refresh_tokens WHERE subject = ? AND subject_kind = 'robot'",
                         (name,))

    # -- repository visibility ------------------------------------------------------

    def set_visibility(self, repository: str, public: bool) -> None:
        check_repository(repository)
        with self._write() as conn:
            conn.execute("INSERT INTO repository_visibility(repository, public) VALUES (?, ?) "
                         "ON CONFLICT(repository) DO UPDATE SET public = excluded.public",
                         (repository, int(public)))

    def is_public(self, repository: str) -> bool:
        row = self._conn().execute("SELECT public FROM repository_visibility WHERE repository = ?",
                                   (repository,)).fetchone()
        return bool(row and row[0])

    def public_repositories(self) -> list[str]:
        return [r[0] for r in self._conn().execute(
            "SELECT repository FROM repository_visibility WHERE public = 1 ORDER BY repository")]

    # -- authentication -------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> Subject | None:
        """A user (DB, then htpasswd) or an access token (secret as password); None if wrong.

        For a token the username may be the token's name or its owner's name.
        """
        if password.startswith(TOKEN_PREFIX):
            return self._authenticate_token(username, password)
        row = self._conn().execute("SELECT password_hash, admin FROM users WHERE name = ?",
                                   (username,)).fetchone()
        if row is not None:
            hashed = row[0].encode()
            if self._password_ok(username, password, hashed):
                return Subject("user", username, admin=bool(row[1]))
            return None
        if self.htpasswd is not None:
            entry = self.htpasswd.hash_of(username)
            if entry is not None and self._password_ok(f"htpasswd:{username}", password, entry):
                return Subject("user", username, admin=True)
        return None

    def _password_ok(self, key: str, password: str, hashed: bytes) -> bool:
        cache_key = (key, _sha256(password))
        with self._verified_lock:
            cached = self._verified.get(cache_key)
        if cached is not None and hmac.compare_digest(cached, hashed):
            return True
        if not _bcrypt_check(password, hashed):
            return False
        with self._verified_lock:
            if len(self._verified) > 4096:
                self._verified.clear()
            self._verified[cache_key] = hashed
        return True

    def _authenticate_token(self, username: str, secret: str) -> Subject | None:
        row = self._conn().execute(
            f"SELECT {self._TOKEN_COLUMNS} FROM access_tokens WHERE secret_hash = ?",
            (_sha256(secret),)).fetchone()
        if row is None:
            return None
        token = self._token_row(row)
        if username not in ("", token.name, token.owner) or token.expired():
            return None
        now = time.time()
        if token.last_used is None or now - token.last_used > 60:
            self._conn().execute("UPDATE access_tokens SET last_used_ts = ? WHERE name = ?",
                                 (now, token.name))
        return Subject("robot", token.name, token=token)

    def subject(self, kind: str, name: str) -> Subject | None:
        """The current state of a subject named in a JWT or a refresh token (None: gone)."""
        if kind == "anonymous":
            return ANONYMOUS
        if kind == "user":
            user = self.user(name)
            if user is not None:
                return Subject("user", name, admin=user.admin)
            if self.htpasswd is not None and name in self.htpasswd:
                return Subject("user", name, admin=True)
            return None
        if kind == "robot":
            token = self.token(name)
            if token is None or token.expired():
                return None
            return Subject("robot", name, token=token)
        return None

    def subject_from_claim(self, sub: str) -> Subject | None:
        if not sub:
            return ANONYMOUS
        if sub.startswith("robot$"):
            return self.subject("robot", sub[len("robot$"):])
        return self.subject("user", sub)

    # -- refresh tokens (oauth.md) --------------------------------------------------

    def issue_refresh_token(self, subject: Subject, service: str) -> str:
        if subject.kind == "anonymous":
            raise InvalidArgument("anonymous clients get no refresh token")
        token = secrets.token_urlsafe(32)
        with self._write() as conn:
            conn.execute("INSERT INTO refresh_tokens(token_hash, subject_kind, subject, service, "
                         "created_ts) VALUES (?, ?, ?, ?, ?)",
                         (_sha256(token), subject.kind, subject.name, service, time.time()))
        return token

    def redeem_refresh_token(self, token: str, service: str) -> Subject | None:
        row = self._conn().execute(
            "SELECT subject_kind, subject, service FROM refresh_tokens WHERE token_hash = ?",
            (_sha256(token),)).fetchone()
        if row is None or row[2] != service:
            return None
        return self.subject(row[0], row[1])

    # -- authorization --------------------------------------------------------------

    def _user_actions(self, user: str, repository: str) -> frozenset[str]:
        namespace = namespace_of(repository)
        if namespace is None:
            return frozenset()
        if namespace == user:
            return ALL_ACTIONS
        conn = self._conn()
        granted: set[str] = set()
        for team, perm, all_repos in conn.execute(
                "SELECT t.name, t.permission, t.all_repositories FROM teams t "
                "JOIN team_members m ON m.org = t.org AND m.team = t.name "
                "WHERE t.org = ? AND m.username = ?", (namespace, user)).fetchall():
            if all_repos or conn.execute(
                    "SELECT 1 FROM team_repositories WHERE org = ? AND team = ? AND repository = ?",
                    (namespace, team, repository)).fetchone():
                granted |= PERMISSIONS[perm]
        return frozenset(granted)

    def _owner_ceiling(self, token: AccessToken, repository: str) -> frozenset[str]:
        if token.owner_kind == "org":
            return ALL_ACTIONS if namespace_of(repository) == token.owner else frozenset()
        owner = self.user(token.owner)
        if owner is None:
            return frozenset()
        if owner.admin:
            return ALL_ACTIONS
        return self._user_actions(owner.name, repository)

    def actions(self, subject: Subject, repository: str) -> frozenset[str]:
        """What ``subject`` may do on ``repository``: a subset of pull, push, delete."""
        public = frozenset({"pull"}) if self.is_public(repository) else frozenset()
        if subject.kind == "user":
            if subject.admin:
                return ALL_ACTIONS
            return public | self._user_actions(subject.name, repository)
        if subject.kind == "robot" and subject.token is not None:
            token = subject.token
            scoped: set[str] = set()
            for scope in token.scopes:
                if scope.matches("repository", repository):
                    scoped |= ALL_ACTIONS if "*" in scope.actions else scope.actions
            return public | (frozenset(scoped) & self._owner_ceiling(token, repository))
        return public

    def may_catalog(self, subject: Subject) -> bool:
        """The whole catalog (``registry:catalog:*``): admins, and tokens of admins with
        that scope. Everyone else sees only what they may pull."""
        if subject.kind == "user":
            return subject.admin
        if subject.kind == "robot" and subject.token is not None:
            token = subject.token
            if not any(str(s) == CATALOG_SCOPE for s in token.scopes):
                return False
            owner = self.user(token.owner) if token.owner_kind == "user" else None
            return owner is not None and owner.admin
        return False

    def may_pull(self, subject: Subject, repository: str) -> bool:
        return "pull" in self.actions(subject, repository)


DB_FILENAME = "registry.db"


def open_accounts(data_dir: Path, htpasswd: Path | None = None) -> Accounts:
    """The accounts of the registry whose data directory is ``data_dir``."""
    return Accounts(Database(data_dir / DB_FILENAME), htpasswd)
