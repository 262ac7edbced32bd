"""Registry authentication as one httpx auth flow (anonymous, basic, bearer tokens).

The flow (httpx ``Auth``: it yields requests and receives responses)::

    request --(known challenge: add Basic, or a cached/fresh Bearer token)--> registry
      401 + WWW-Authenticate: Bearer realm=..,service=..,scope=..
        --> GET realm?service=..&scope=..   (Basic user:password, or anonymous)
            POST realm grant_type=refresh_token  (with an identity token)
        <-- {"token", "expires_in", "issued_at", "refresh_token"}
      retry the request with "Authorization: Bearer <token>"
      401 + WWW-Authenticate: Basic --> retry with Basic, or "no basic auth credentials"

Tokens are cached per (realm, service, scopes) and fetched again shortly before
they expire. Scopes come from the request: ``repository:<name>:pull`` for GET
and HEAD, ``repository:<name>:pull,push`` for writes, plus
``repository:<from>:pull`` for a cross-repository mount, and
``registry:catalog:*`` for ``_catalog``. Requests whose body is a stream
cannot be sent twice: for them the flow authenticates before sending (once the
registry's challenge is known) and otherwise returns the 401 to the caller,
which retries after the token has been cached.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode

import httpx

from dockyard.distribution.credentials import AuthEntry
from dockyard.distribution.errors import NoBasicAuthCredentials, RegistryError, Unauthorized

CLIENT_ID = "dockyard"
DEFAULT_EXPIRY = 60.0
_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" | "basic" (lowercase)
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")


def parse_challenges(header: str) -> list[Challenge]:
    """``WWW-Authenticate`` values: ``Bearer realm="..",service="..", Basic realm=".."``."""
    out: list[Challenge] = []
    pos = 0
    text = header.strip()
    while pos < len(text):
        m = re.match(r"\s*([A-Za-z][A-Za-z0-9_-]*)\s*", text[pos:])
        if not m:
            break
        scheme = m.group(1).lower()
        pos += m.end()
        params: dict[str, str] = {}
        while pos < len(text):
            pm = _PARAM_RE.match(text, pos)
            if not pm or pm.end() == pos:
                break
            # a bare word followed by a space is the next scheme, not a parameter
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
            pos = pm.end()
        out.append(Challenge(scheme, params))
    return out


_REPO_PATH = re.compile(
    r"^/v2/(.+)/(manifests/[^/]+|blobs/uploads/.*|blobs/[^/]+|tags/list|referrers/[^/]+)$"
)


def scopes_for(method: str, path: str, query: bytes | str = b"") -> list[str]:
    """The token scopes a request needs (Docker's choice for each endpoint)."""
    if isinstance(query, bytes):
        query = query.decode("ascii", "replace")
    m = re.search(r"/v2/.*", path)
    if m is None:
        return []
    path = m.group(0)
    if path.startswith("/v2/_catalog"):
        return ["registry:catalog:*"]
    pm = _REPO_PATH.match(path)
    if pm is None:
        return []
    name = pm.group(1)
    if method in ("GET", "HEAD"):
        scopes = [f"repository:{name}:pull"]
    elif method == "DELETE":
        scopes = [f"repository:{name}:delete"]
    else:
        scopes = [f"repository:{name}:pull,push"]
    source = parse_qs(query).get("from")
    if source and method == "POST":
        scopes.append(f"repository:{source[0]}:pull")
    return scopes


@dataclass
class Token:
    value: str
    expires_at: float
    lifetime: float

    def fresh(self, now: float) -> bool:
        margin = min(10.0, self.lifetime * 0.1)
        return now < self.expires_at - margin


def basic_header(username: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _replayable(request: httpx.Request) -> bool:
    return isinstance(request.stream, httpx.ByteStream)


class RegistryAuth(httpx.Auth):
    """Authentication for one registry (one ``httpx.Client``); safe across threads."""

    def __init__(self, credentials: AuthEntry | None = None, login: bool = False) -> None:
        self.credentials = credentials if credentials and not credentials.empty else None
        self.login = login  # ask the token server for a refresh token (docker login)
        self.challenge: Challenge | None = None
        self.refresh_token = ""  # what a login got back, kept as the identity token
        self.token_requests = 0
        self._tokens: dict[tuple[str, str, str], Token] = {}
        self._lock = threading.Lock()
        self._fetch_locks: dict[tuple[str, str, str], threading.Lock] = {}

    # -- the flow ---------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        scopes = scopes_for(request.method, request.url.path, request.url.query)
        challenge = self.challenge
        sent_basic = False
        if challenge is not None and challenge.scheme == "bearer":
            token = yield from self._token(challenge, scopes)
            request.headers["Authorization"] = f"Bearer {token.value}"
        elif challenge is not None and challenge.scheme == "basic" and self._basic_header():
            request.headers["Authorization"] = self._basic_header()
            sent_basic = True
        response = yield request
        if response.status_code != 401:
            return
        found = self._pick(parse_challenges(response.headers.get("WWW-Authenticate", "")))
        if found is None:
            return
        self.challenge = found
        if found.scheme == "basic":
            if sent_basic:
                return  # wrong credentials: the 401 stands
            header = self._basic_header()
            if not header:
                raise NoBasicAuthCredentials(request.method, str(request.url))
            if not _replayable(request):
                return
            request.headers["Authorization"] = header
            yield request
            return
        # bearer: the registry may name the scope it wants (keep ours too)
        wanted = list(scopes)
        for extra in found.params.get("scope", "").split():
            if extra not in wanted:
                wanted.append(extra)
        key = self._key(found, wanted)
        with self._lock:
            stale = self._tokens.pop(key, None)
        if stale is not None and "error" in found.params and self.credentials is None:
            return  # the token we had was refused and nothing better is to be had
        token = yield from self._token(found, wanted)
        if not _replayable(request):
            return
        request.headers["Authorization"] = f"Bearer {token.value}"
        yield request

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise NotImplementedError("RegistryAuth is for the synchronous client")

    # -- pieces -------------------------------------------------------------------

    @staticmethod
    def _pick(challenges: list[Challenge]) -> Challenge | None:
        for scheme in ("bearer", "basic"):
            for c in challenges:
                if c.scheme == scheme and (scheme == "basic" or c.realm):
                    return c
        return None

    def _basic_header(self) -> str:
        creds = self.credentials
        if creds is None or not creds.username:
            return ""
        return basic_header(creds.username, creds.password)

    @staticmethod
    def _key(challenge: Challenge, scopes: list[str]) -> tuple[str, str, str]:
        return (challenge.realm, challenge.service, " ".join(sorted(scopes)))

    def _token(
        self, challenge: Challenge, scopes: list[str]
    ) -> Generator[httpx.Request, httpx.Response, Token]:
        key = self._key(challenge, scopes)
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.fresh(time.monotonic()):
                return token
            fetch_lock = self._fetch_locks.setdefault(key, threading.Lock())
        with fetch_lock:  # one fetch per scope at a time; the others take its result
            with self._lock:
                token = self._tokens.get(key)
            if token is not None and token.fresh(time.monotonic()):
                return token
            token = yield from self._fetch(challenge, scopes)
            with self._lock:
                self._tokens[key] = token
            return token

    def _fetch(
        self, challenge: Challenge, scopes: list[str]
    ) -> Generator[httpx.Request, httpx.Response, Token]:
        creds = self.credentials
        self.token_requests += 1
        started = time.monotonic()
        if creds is not None and creds.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "service": challenge.service,
                "client_id": CLIENT_ID,
                "access_type": "offline",
            }
            if scopes:
                form["scope"] = " ".join(scopes)
            response = yield httpx.Request(
                "POST",
                challenge.realm,
                content=urlencode(form).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        else:
            params: list[tuple[str, str]] = []
            if challenge.service:
                params.append(("service", challenge.service))
            params.extend(("scope", s) for s in scopes)
            headers = {}
            if creds is not None and creds.username:
                params.append(("account", creds.username))
                headers["Authorization"] = self._basic_header()
                if self.login:
                    params += [("client_id", CLIENT_ID), ("offline_token", "true")]
            sep = "&" if "?" in challenge.realm else "?"
            url = challenge.realm + (sep + urlencode(params) if params else "")
            response = yield httpx.Request("GET", url, headers=headers)
        body = response.read()
        if response.status_code != 200:
            raise RegistryError.from_response(response.status_code, body, response.reason_phrase)
        try:
            data = response.json()
            value = str(data.get("token") or data.get("access_token") or "")
        except (ValueError, AttributeError) as e:
            raise Unauthorized(f"unauthorized: bad token response: {e}", "UNAUTHORIZED", 401) from e
        if not value:
            raise Unauthorized("unauthorized: token server sent no token", "UNAUTHORIZED", 401)
        try:
            lifetime = float(data.get("expires_in") or DEFAULT_EXPIRY)
        except (TypeError, ValueError):
            lifetime = DEFAULT_EXPIRY
        if lifetime <= 0:
            lifetime = DEFAULT_EXPIRY
        refresh = data.get("refresh_token")
        if isinstance(refresh, str) and refresh:
            self.refresh_token = refresh
        return Token(value, started + lifetime, lifetime)
