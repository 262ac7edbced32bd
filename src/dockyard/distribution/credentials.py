"""Registry credentials in Docker's client config (``$DOCKER_CONFIG/config.json``,
default ``~/.docker/config.json``), read and written the way the docker CLI does.

* ``auths``: ``{"<server>": {"auth": base64("user:password")}}``; after a token
  login that returned a refresh token, ``{"auth": base64("user:"), "identitytoken": ...}``.
  Docker Hub's key is ``https://index.docker.io/v1/``; other registries use the
  host[:port] as typed. Lookups also accept keys written as URLs
  (``http://host``, ``https://host/v1/``), as Docker's ConvertToHostname does.
* ``credsStore`` / ``credHelpers``: secrets live in a ``docker-credential-<name>``
  helper (protocol: ``get``/``store``/``erase`` with the server URL or a JSON
  ``{"ServerURL", "Username", "Secret"}`` on stdin); ``auths`` then holds ``{}``
  for the server so ``logout`` knows about it. A helper username ``<token>``
  means the secret is an identity token.

The file is written with mode 0600, tab-indented, via a temp file and rename,
keeping every key dockyard does not manage.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.distribution.endpoints import DOCKER_HUB_API, DOCKER_HUB_AUTH_KEY, api_host
from dockyard.errors import DockyardError

TOKEN_USERNAME = "<token>"
_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_AUTH_KEY}


@dataclass(frozen=True)
class AuthEntry:
    username: str = ""
    password: str = ""
    identity_token: str = ""

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token)


class CredentialsError(DockyardError):
    pass


def config_dir() -> Path:
    env = os.environ.get("DOCKER_CONFIG")
    if env:
        return Path(env)
    return Path(os.path.expanduser("~")) / ".docker"


def server_key(server: str | None) -> str:
    """The ``auths`` key ``docker login SERVER`` writes (Docker Hub's legacy URL for Hub)."""
    if not server or server.rstrip("/") in {n.rstrip("/") for n in _HUB_NAMES}:
        return DOCKER_HUB_AUTH_KEY
    return server


def to_hostname(key: str) -> str:
    """Docker's ConvertToHostname: ``https://host/v1/`` -> ``host``."""
    rest = key
    for prefix in ("http://", "https://"):
        if rest.startswith(prefix):
            rest = rest[len(prefix) :]
            break
    return rest.split("/", 1)[0]


class CredentialStore:
    """Docker's config.json plus credential helpers."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory if directory is not None else config_dir()
        self.path = self.dir / "config.json"

    # -- the file -------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise CredentialsError(f"loading config file {self.path}: {e}") from e
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except ValueError as e:
            raise CredentialsError(f"loading config file {self.path}: {e}") from e
        if not isinstance(data, dict):
            raise CredentialsError(f"loading config file {self.path}: not a JSON object")
        return data

    def save(self, data: dict[str, Any]) -> None:
        ordered = {"auths": data.get("auths", {})}
        ordered.update((k, v) for k, v in data.items() if k != "auths")
        text = json.dumps(ordered, indent="\t")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    # -- lookups ----------------------------------------------------------------

    def _helper_for(self, data: dict[str, Any], key: str) -> str | None:
        helpers = data.get("credHelpers") or {}
        if isinstance(helpers, dict):
            found = helpers.get(key) or helpers.get(to_hostname(key))
            if isinstance(found, str) and found:
                return found
        store = data.get("credsStore")
        return store if isinstance(store, str) and store else None

    def get(self, domain: str) -> AuthEntry | None:
        """Credentials for the registry serving ``domain`` (``docker.io``, ``host:port``)."""
        data = self.load()
        host = api_host(domain)
        key = DOCKER_HUB_AUTH_KEY if host == DOCKER_HUB_API else domain
        auths = data.get("auths") or {}
        if not isinstance(auths, dict):
            auths = {}
        candidates = [key]
        if key != DOCKER_HUB_AUTH_KEY:
            candidates += [k for k in auths if k != key and to_hostname(k) == key]
        helper = self._helper_for(data, key)
        if helper is not None:
            entry = helper_get(helper, key)
            if entry is not None:
                return entry
        for candidate in candidates:
            raw = auths.get(candidate)
            if isinstance(raw, dict):
                entry = _decode_entry(raw)
                if not entry.empty:
                    return entry
        return None

    def logged_in_keys(self, server: str) -> list[str]:
        """The ``auths`` keys that ``logout SERVER`` removes (Docker's list of spellings)."""
        data = self.load()
        auths = data.get("auths") or {}
        key = server_key(server)
        tries = [key]
        if key != DOCKER_HUB_AUTH_KEY:
            host = to_hostname(key)
            tries = [host, "http://" + host, "https://" + host]
        return [k for k in tries if isinstance(auths, dict) and k in auths]

    # -- changes ----------------------------------------------------------------

    def store(self, server: str, entry: AuthEntry) -> None:
        key = server_key(server)
        data = self.load()
        auths = data.get("auths")
        if not isinstance(auths, dict):
            auths = {}
        helper = self._helper_for(data, key)
        if helper is not None:
            helper_store(helper, key, entry)
            auths[key] = {}
        else:
            record: dict[str, str] = {}
            secret = "" if entry.identity_token else entry.password
            record["auth"] = base64.b64encode(f"{entry.username}:{secret}".encode()).decode()
            if entry.identity_token:
                record["identitytoken"] = entry.identity_token
            auths[key] = record
        data["auths"] = auths
        self.save(data)

    def erase(self, key: str) -> None:
        data = self.load()
        auths = data.get("auths")
        helper = self._helper_for(data, key)
        if helper is not None:
            helper_erase(helper, key)
        if isinstance(auths, dict):
            auths.pop(key, None)
            data["auths"] = auths
        self.save(data)

    @property
    def uses_plain_file(self) -> bool:
        data = self.load()
        return not data.get("credsStore")


def _decode_entry(raw: dict[str, Any]) -> AuthEntry:
    username = str(raw.get("username") or "")
    password = str(raw.get("password") or "")
    auth = raw.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth + "=" * (-len(auth) % 4)).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as e:
            raise CredentialsError(f"invalid auth configuration file: {e}") from e
        user, sep, secret = decoded.partition(":")
        if not sep:
            raise CredentialsError("invalid auth configuration file")
        username, password = user, secret
    token = str(raw.get("identitytoken") or "")
    return AuthEntry(username, password, token)


# -- docker-credential-* helpers ------------------------------------------------


def _helper(name: str, action: str, payload: str) -> subprocess.CompletedProcess[str]:
    program = f"docker-credential-{name}"
    try:
        return subprocess.run(
            [program, action],
            input=payload,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except FileNotFoundError as e:
        raise CredentialsError(
            f'error getting credentials - err: exec: "{program}": executable file not found '
            "in $PATH, out: ``"
        ) from e


def helper_get(name: str, server: str) -> AuthEntry | None:
    proc = _helper(name, "get", server)
    if proc.returncode != 0:
        out = proc.stdout.strip()
        if "credentials not found" in out.lower():
            return None
        raise CredentialsError(
            f"error getting credentials - err: exit status {proc.returncode}, out: `{out}`"
        )
    try:
        data = json.loads(proc.stdout)
    except ValueError as e:
        raise CredentialsError(f"error getting credentials - bad helper output: {e}") from e
    user = str(data.get("Username") or "")
    secret = str(data.get("Secret") or "")
    if user == TOKEN_USERNAME:
        return AuthEntry("", "", secret)
    return AuthEntry(user, secret)


def helper_store(name: str, server: str, entry: AuthEntry) -> None:
    if entry.identity_token:
        user, secret = TOKEN_USERNAME, entry.identity_token
    else:
        user, secret = entry.username, entry.password
    payload = json.dumps({"ServerURL": server, "Username": user, "Secret": secret})
    proc = _helper(name, "store", payload)
    if proc.returncode != 0:
        raise CredentialsError(
            f"error storing credentials - err: exit status {proc.returncode}, "
            f"out: `{proc.stdout.strip()}`"
        )


def helper_erase(name: str, server: str) -> None:
    proc = _helper(name, "erase", server)
    if proc.returncode != 0:
        raise CredentialsError(
            f"error erasing credentials - err: exit status {proc.returncode}, "
            f"out: `{proc.stdout.strip()}`"
        )
