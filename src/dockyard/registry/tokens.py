"""Authentication of the registry: Docker token auth (a JWT issuer at /token) and basic auth.

    AuthConfig      the ``auth`` option of the server's config (none | basic | token)
    SigningKey      the token signing key (ECDSA P-256) and its self-signed X.509
                    certificate, generated into DATA/auth/ at first start
    TokenService    /token: GET (token.md, Basic credentials or anonymous) and POST
                    (oauth.md: grant_type=password | refresh_token); the JWT carries only
                    the requested actions the subject may have (scope.md), never an error
    TokenAccess     the AccessController for ``auth: token``: verifies the bearer JWT
                    (signature, audience = service, issuer, expiry) and its access claims
    BasicAccess     the AccessController for ``auth: basic``: users, access tokens as
                    passwords, and optionally an htpasswd file of bcrypt entries
    setup_auth      everything app.py needs: controller, routes (/token and /api/) and
                    the middleware that tells challenges the request's origin

Token format (jwt.md), chosen so that distribution's registry (2.8 and 3.x) configured
with ``auth: token`` and ``rootcertbundle: DATA/auth/token.crt`` accepts our tokens:
``alg`` ES256; ``kid`` the libtrust fingerprint of the public key (what 2.8 looks up
for kid-only tokens); ``x5c`` the self-signed certificate (what both 2.8 and 3.x verify
first, against the root bundle; 3.x no longer reads libtrust key ids).
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import datetime as dt
import fcntl
import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from dockyard.errors import InvalidArgument
from dockyard.registry.access import AccessController, AllowAll, Denied, Grant, Unauthorized
from dockyard.registry.accounts import (
    ALL_ACTIONS,
    ANONYMOUS,
    Accounts,
    Subject,
    check_repository,
    parse_scopes,
)
from dockyard.registry.accounts import Scope as ResourceScope
from dockyard.registry.db import Database

ALGORITHM = "ES256"
LEEWAY = 5  # seconds of clock skew tolerated on exp/nbf (issuer and verifier share a clock)
BASIC_REALM = "dockyard"
CATALOG = "catalog:*"  # the repository argument the routes pass for /v2/_catalog


# --------------------------------------------------------------------------- #
# configuration
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class AuthConfig:
    """The ``auth`` option: a mode name, or a mapping with ``mode`` and these keys."""

    mode: str = "none"  # none | basic | token
    service: str = "dockyard-registry"  # the token audience; ?service= at /token
    issuer: str = "dockyard-token-issuer"
    realm: str | None = None  # default: <scheme>://<request Host>/token
    expiration: int = 300  # access token lifetime, seconds (at least 60, token.md)
    htpasswd: Path | None = None  # bcrypt htpasswd users, besides the database's
    key: Path | None = None  # signing key PEM; default DATA/auth/token.key (+ token.crt)

    @classmethod
    def from_value(cls, value: object) -> AuthConfig:
        if value is None:
            return cls()
        if isinstance(value, str):
            value = {"mode": value}
        if not isinstance(value, Mapping):
            raise InvalidArgument("auth: want none, basic, token or a mapping with a mode")
        known = {"mode", "service", "issuer", "realm", "expiration", "htpasswd", "key"}
        unknown = set(value) - known
        if unknown:
            raise InvalidArgument(f"auth: unknown option(s) {', '.join(sorted(unknown))}")
        mode = str(value.get("mode", "basic" if value.get("htpasswd") else "none"))
        if mode not in ("none", "basic", "token"):
            raise InvalidArgument(f"auth: unknown mode {mode!r}: want none, basic or token")
        expiration = int(value.get("expiration", 300))
        if expiration < 60:
            raise InvalidArgument("auth: expiration must be at least 60 seconds")
        htpasswd, key = value.get("htpasswd"), value.get("key")
        return cls(mode=mode,
                   service=str(value.get("service", cls.service)),
                   issuer=str(value.get("issuer", cls.issuer)),
                   realm=str(value["realm"]) if value.get("realm") else None,
                   expiration=expiration,
                   htpasswd=Path(htpasswd) if htpasswd else None,
                   key=Path(key) if key else None)


# --------------------------------------------------------------------------- #
# the signing key
# --------------------------------------------------------------------------- #


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """docker/libtrust's key id: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits,
    base32, in 12 groups of 4 joined by ':' (jwt.md, "kid")."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


def _write_private(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


@dataclass(frozen=True)
class SigningKey:
    private_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    cert_path: Path

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    @property
    def kid(self) -> str:
        return libtrust_key_id(self.public_key)

    @property
    def x5c(self) -> list[str]:
        return [base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER))
                .decode()]

    @classmethod
    def load_or_create(cls, key_path: Path) -> SigningKey:
        """Load ``key_path`` (PEM) and the certificate beside it (``.crt``), creating both
        once (under a lock, so that several server processes agree on one key)."""
        cert_path = key_path.with_suffix(".crt")
        key_path.parent.mkdir(parents=True, exist_ok=True)
        with open(key_path.parent / ".token-key.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not key_path.exists():
                private = ec.generate_private_key(ec.SECP256R1())
                _write_private(key_path, private.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption()), 0o600)
            loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(
                    loaded.curve, ec.SECP256R1):
                raise InvalidArgument(f"{key_path}: the token key must be an ECDSA P-256 key")
            cert: x509.Certificate | None = None
            if cert_path.exists():
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
                if cert.public_key() != loaded.public_key():
                    cert = None  # a new key: certify it again
            if cert is None:
                cert = _self_signed(loaded)
                _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return cls(loaded, cert, cert_path)


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockyard token signer"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dockyard registry")])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))


# --------------------------------------------------------------------------- #
# the request's origin (for the realm of challenges)
# --------------------------------------------------------------------------- #

request_origin: contextvars.ContextVar[str] = contextvars.ContextVar(
    "dockyard_request_origin", default="")


class RequestOrigin:
    """ASGI middleware: remember ``scheme://host`` of the request for challenge realms."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = ""
        for name, value in scope.get("headers", ()):
            if name == b"host":
                host = value.decode("latin-1")
                break
        if not host and scope.get("server"):
            server_host, port = scope["server"]
            host = f"{server_host}:{port}"
        token = request_origin.set(f"{scope.get('scheme', 'http')}://{host}")
        try:
            await self.app(scope, receive, send)
        finally:
            request_origin.reset(token)


# --------------------------------------------------------------------------- #
# issuing and verifying tokens
# --------------------------------------------------------------------------- #


def _rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scope_string(access: Iterable[Mapping[str, Any]]) -> str:
    return " ".join(f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in access)


@dataclass
class Claims:
    subject: str
    access: list[dict[str, Any]]

    def actions(self, type_: str, name: str) -> set[str]:
        held: set[str] = set()
        for entry in self.access:
            if entry.get("type") == type_ and entry.get("name") == name:
                acts = entry.get("actions") or []
                held.update(ALL_ACTIONS if "*" in acts else (a for a in acts
                                                              if isinstance(a, str)))
        return held

    def has(self, type_: str, name: str, action: str) -> bool:
        return any(e.get("type") == type_ and e.get("name") == name
                   and (action in (e.get("actions") or []) or "*" in (e.get("actions") or []))
                   for e in self.access)


class InvalidToken(Exception):
    """A bearer token that does not verify (signature, audience, issuer, expiry)."""


class TokenSigner:
    """Signs access tokens (jwt.md) and verifies the ones we signed."""

    def __init__(self, key: SigningKey, issuer: str, service: str, expiration: int) -> None:
        self.key = key
        self.issuer = issuer
        self.service = service
        self.expiration = expiration

    def sign(self, subject: Subject, access: list[dict[str, Any]],
             now: float | None = None, expiration: int | None = None) -> tuple[str, float]:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject.claim,
            "aud": self.service,
            "exp": issued + (expiration if expiration is not None else self.expiration),
            "nbf": issued,
            "iat": issued,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        token = jwt.encode(claims, self.key.private_key, algorithm=ALGORITHM,
                           headers={"kid": self.key.kid, "x5c": self.key.x5c})
        return token, float(issued)

    def verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") not in (None, self.key.kid):
                raise InvalidToken("token signed by an unknown key")
            payload = jwt.decode(
                token, self.key.public_key, algorithms=[ALGORITHM], audience=self.service,
                issuer=self.issuer, leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError as e:
            raise InvalidToken("token expired") from e
        except jwt.PyJWTError as e:
            raise InvalidToken(f"invalid token: {e}") from e
        access = payload.get("access") or []
        if not isinstance(access, list):
            raise InvalidToken("invalid token: access is not a list")
        return Claims(str(payload.get("sub", "")),
                      [a for a in access if isinstance(a, dict)])


def grant_access(accounts: Accounts, subject: Subject,
                 scopes: Iterable[ResourceScope]) -> list[dict[str, Any]]:
    """The access claim for ``scopes``: each requested action the subject may have.

    Unknown resource types, malformed names and forbidden actions are dropped (token.md:
    a partial grant is never an error)."""
    merged: dict[tuple[str, str], set[str]] = {}
    for scope in scopes:
        merged.setdefault((scope.type, scope.name), set()).update(scope.actions)
    access: list[dict[str, Any]] = []
    for (type_, name), requested in merged.items():
        if type_ == "repository":
            try:
                check_repository(name)
            except InvalidArgument:
                continue
            wanted = ALL_ACTIONS if "*" in requested else frozenset(requested)
            granted = wanted & accounts.actions(subject, name)
            if granted:
                access.append({"type": "repository", "name": name,
                               "actions": sorted(granted)})
        elif ((type_, name) == ("registry", "catalog") and "*" in requested
              and accounts.may_catalog(subject)):
            access.append({"type": "registry", "name": "catalog", "actions": ["*"]})
    return access


# --------------------------------------------------------------------------- #
# credentials in headers
# --------------------------------------------------------------------------- #


def parse_basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def parse_bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _scope_for(repository: str, actions: set[str]) -> str:
    if repository == CATALOG:
        return "registry:catalog:*"
    if not repository:
        return ""
    return f"repository:{repository}:{','.join(sorted(actions))}"


# --------------------------------------------------------------------------- #
# access controllers
# --------------------------------------------------------------------------- #


class BasicAccess:
    """``auth: basic``: Basic credentials (user password, access token, htpasswd user).

    Anonymous clients may pull public repositories and list them in the catalog;
    ``GET /v2/`` needs valid credentials (so that ``docker login`` checks them)."""

    def __init__(self, accounts: Accounts, realm: str = BASIC_REALM) -> None:
        self.accounts = accounts
        self.challenge = f'Basic realm="{realm}"'

    def authenticate(self, authorization: str | None) -> Subject:
        if not authorization:
            return ANONYMOUS
        creds = parse_basic(authorization)
        subject = self.accounts.authenticate(*creds) if creds else None
        if subject is None:
            raise Unauthorized("incorrect username or password", self.challenge)
        return subject

    def check(self, authorization: str | None, repository: str, actions: set[str]) -> Grant:
        subject = self.authenticate(authorization)
        if repository == "":
            if subject.kind == "anonymous":
                raise Unauthorized("authentication required", self.challenge)
            return Grant(subject.principal, {"pull"})
        if repository == CATALOG:
            return _catalog_grant(self.accounts, subject, self.accounts.may_catalog(subject))
        allowed = self.accounts.actions(subject, repository)
        if actions <= allowed:
            return Grant(subject.principal, set(allowed))
        if subject.kind == "anonymous":
            raise Unauthorized("authentication required", self.challenge)
        raise Denied("requested access to the resource is denied")


def _catalog_grant(accounts: Accounts, subject: Subject, whole: bool) -> Grant:
    grant = Grant(subject.principal, {"pull"})
    if not whole:
        grant.catalog_filter = lambda repository: accounts.may_pull(subject, repository)
    return grant


class TokenAccess:
    """``auth: token``: a bearer JWT signed by our key, with the access the request needs.

    Missing or invalid token -> 401 with a Bearer challenge naming the scope. A valid token
    lacking the access -> 401 ``insufficient_scope`` when its subject could get it (so the
    client fetches a wider token), 403 when the subject may not have it."""

    def __init__(self, accounts: Accounts, signer: TokenSigner, realm: str | None) -> None:
        self.accounts = accounts
        self.signer = signer
        self.realm = realm

    def _challenge(self, repository: str, actions: set[str], error: str = "") -> str:
        realm = self.realm or f"{request_origin.get() or 'http://localhost'}/token"
        parts = [f'Bearer realm="{realm}"', f'service="{self.signer.service}"']
        scope = _scope_for(repository, actions)
        if scope:
            parts.append(f'scope="{scope}"')
        if error:
            parts.append(f'error="{error}"')
        return ",".join(parts)

    def check(self, authorization: str | None, repository: str, actions: set[str]) -> Grant:
        raw = parse_bearer(authorization)
        if raw is None:
            raise Unauthorized("authentication required", self._challenge(repository, actions))
        try:
            claims = self.signer.verify(raw)
        except InvalidToken as e:
            raise Unauthorized(str(e), self._challenge(repository, actions, "invalid_token")
                               ) from e
        subject = self.accounts.subject_from_claim(claims.subject)
        if subject is None:  # the user or access token is gone since the token was issued
            raise Unauthorized("unknown subject",
                               self._challenge(repository, actions, "invalid_token"))
        if repository == "":
            return Grant(subject.principal, {"pull"})
        if repository == CATALOG:
            return _catalog_grant(self.accounts, subject,
                                  claims.has("registry", "catalog", "*"))
        held = claims.actions("repository", repository)
        if actions <= held:
            return Grant(subject.principal, held & ALL_ACTIONS)
        if subject.kind == "anonymous" or actions <= self.accounts.actions(subject, repository):
            raise Unauthorized("insufficient scope",
                               self._challenge(repository, actions, "insufficient_scope"))
        raise Denied("requested access to the resource is denied")


# --------------------------------------------------------------------------- #
# the /token endpoint
# --------------------------------------------------------------------------- #


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None
           ) -> JSONResponse:
    return JSONResponse({"errors": [{"code": code, "message": message}]}, status_code=status,
                        headers=headers)


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


@dataclass
class TokenService:
    """/token (token.md GET, oauth.md POST)."""

    accounts: Accounts
    signer: TokenSigner

    def issue(self, subject: Subject, scopes: list[str], refresh: str | None) -> dict[str, Any]:
        access = grant_access(self.accounts, subject, parse_scopes(scopes))
        token, issued = self.signer.sign(subject, access)
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": self.signer.expiration,
            "issued_at": _rfc3339(issued),
            "scope": scope_string(access),
        }
        if refresh:
            body["refresh_token"] = refresh
        return body

    def _wrong_service(self, service: str | None) -> bool:
        return bool(service) and service != self.signer.service

    async def get(self, request: Request) -> Response:
        params = request.query_params
        if self._wrong_service(params.get("service")):
            return _error(400, "INVALID_REQUEST", f"unknown service {params.get('service')!r}")
        authorization = request.headers.get("authorization")
        subject = ANONYMOUS
        if authorization:
            creds = parse_basic(authorization)
            found = await _threaded(self.accounts.authenticate, *creds) if creds else None
            if found is None:
                return _error(401, "UNAUTHORIZED", "incorrect username or password",
                              {"WWW-Authenticate": f'Basic realm="{BASIC_REALM}"'})
            subject = found
        refresh = None
        if params.get("offline_token", "").lower() == "true" and subject.kind != "anonymous":
            refresh = await _threaded(self.accounts.issue_refresh_token, subject,
                                      self.signer.service)
        body = await _threaded(self.issue, subject, params.getlist("scope"), refresh)
        return JSONResponse(body)

    async def post(self, request: Request) -> Response:
        # application/x-www-form-urlencoded (oauth.md), parsed here: no multipart needed
        body = await request.body()
        if len(body) > 64 * 1024:
            return _oauth_error(400, "invalid_request", "request too large")
        values = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"),
                                                keep_blank_values=True).items()}
        grant_type = values.get("grant_type", "")
        service = values.get("service", "")
        if not service or self._wrong_service(service):
            return _oauth_error(400, "invalid_request", "service missing or unknown")
        subject: Subject | None
        if grant_type == "password":
            subject = await _threaded(self.accounts.authenticate, values.get("username", ""),
                                      values.get("password", ""))
            if subject is None:
                return _oauth_error(401, "invalid_grant", "incorrect username or password")
            refresh = None
            if values.get("access_type") == "offline":
                refresh = await _threaded(self.accounts.issue_refresh_token, subject, service)
        elif grant_type == "refresh_token":
            refresh = values.get("refresh_token", "")
            subject = await _threaded(self.accounts.redeem_refresh_token, refresh, service)
            if subject is None:
                return _oauth_error(401, "invalid_grant", "invalid refresh token")
        else:
            return _oauth_error(400, "unsupported_grant_type",
                                "grant_type must be password or refresh_token")
        body = await _threaded(self.issue, subject, [values.get("scope", "")], refresh)
        return JSONResponse(body)

    async def endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.post(request)
        return await self.get(request)


async def _threaded(fn: Callable[..., Any], *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


def token_routes(service: TokenService) -> list[BaseRoute]:
    """``GET /token`` and ``POST /token``."""
    return [Route("/token", service.endpoint, methods=["GET", "POST"])]


# --------------------------------------------------------------------------- #
# wiring
# --------------------------------------------------------------------------- #


@dataclass
class Auth:
    """What the app needs: the controller, the routes to include, the middleware to add."""

    config: AuthConfig
    accounts: Accounts
    controller: AccessController
    routes: list[BaseRoute] = field(default_factory=list)
    middleware: list[Middleware] = field(default_factory=list)
    signer: TokenSigner | None = None


def setup_auth(config: object, data_dir: Path, db: Database) -> Auth:
    """Build the auth of a server from its ``auth`` config value (see AuthConfig)."""
    from dockyard.registry.admin_api import admin_routes

    cfg = config if isinstance(config, AuthConfig) else AuthConfig.from_value(config)
    accounts = Accounts(db, cfg.htpasswd)
    signer = None
    controller: AccessController
    routes: list[BaseRoute] = []
    if cfg.mode == "token":
        key = SigningKey.load_or_create(cfg.key or data_dir / "auth" / "token.key")
        signer = TokenSigner(key, cfg.issuer, cfg.service, cfg.expiration)
        controller = TokenAccess(accounts, signer, cfg.realm)
        routes += token_routes(TokenService(accounts, signer))
    elif cfg.mode == "basic":
        controller = BasicAccess(accounts)
    else:
        controller = AllowAll()
    routes += admin_routes(accounts, signer)
    return Auth(cfg, accounts, controller, routes, [Middleware(RequestOrigin)], signer)

