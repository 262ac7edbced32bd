"""The registry HTTP API (distribution spec v2) over one httpx client.

``Registry`` is one endpoint (``https://host`` or ``http://host``) with its
authentication; its methods are the API's verbs and nothing more: manifests,
blobs (with ``Range``), uploads (monolithic, chunked, resumed from the
registry's offset, cross-repository mount), tags, catalog and the v1 search.
Push and pull (distribution.push, distribution.pull) are built on it.

Every network failure becomes ``TransportError`` with Go's ``Method "url": reason``
text; every error answer becomes ``RegistryError`` (``code: message``).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urljoin

import httpx

from dockyard import mediatypes
from dockyard.digest import Digest
from dockyard.distribution.auth import RegistryAuth, parse_challenges
from dockyard.distribution.credentials import AuthEntry
from dockyard.distribution.endpoints import Endpoint, RegistryConfig
from dockyard.distribution.errors import RegistryError, TransportError
from dockyard.errors import DigestMismatch, DockyardError

USER_AGENT = "dockyard/0.1 (distribution client)"
MANIFEST_ACCEPT = ", ".join(
    [
        mediatypes.OCI_INDEX,
        mediatypes.DOCKER_MANIFEST_LIST,
        mediatypes.OCI_MANIFEST,
        mediatypes.DOCKER_MANIFEST,
    ]
)
MAX_MANIFEST = 4 << 20
MAX_CONFIG = 64 << 20
IO_CHUNK = 256 << 10
UPLOAD_PIECE = 1 << 20  # a PATCH body is sent in pieces of this size


@dataclass(frozen=True)
class Manifest:
    raw: bytes
    media_type: str
    digest: Digest

    def parsed(self) -> dict[str, Any]:
        try:
            data = json.loads(self.raw)
        except ValueError as e:
            raise DockyardError(f"invalid manifest {self.digest}: {e}") from e
        if not isinstance(data, dict):
            raise DockyardError(f"invalid manifest {self.digest}: not a JSON object")
        return data


def go_op(method: str) -> str:
    """Go's url.Error spelling of a method: ``Get``, ``Head``, ``Patch``."""
    return method[:1] + method[1:].lower()


def describe(exc: BaseException, host: str = "") -> str:
    """Go-like words for what went wrong on the wire."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return f"dial tcp: lookup {host.rsplit(':', 1)[0] if host else ''}: no such host"
        if isinstance(cause, ConnectionRefusedError):
            return f"dial tcp {host}: connect: connection refused"
        if isinstance(cause, ssl.SSLError):
            if "WRONG_VERSION_NUMBER" in str(cause) or "wrong version number" in str(cause):
                return "http: server gave HTTP response to HTTPS client"
            return f"tls: {cause}"
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    low = text.lower()
    if "name or service not known" in low or "nodename nor servname" in low or (
        "temporary failure in name resolution" in low
    ):
        return f"dial tcp: lookup {host.rsplit(':', 1)[0]}: no such host"
    if "connection refused" in low:
        return f"dial tcp {host}: connect: connection refused"
    if "wrong_version_number" in low or "wrong version number" in low:
        return "http: server gave HTTP response to HTTPS client"
    if isinstance(exc, httpx.TimeoutException):
        return "net/http: request canceled (Client.Timeout exceeded)"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return "unexpected EOF"
    return text or type(exc).__name__


class Registry:
    """One registry endpoint with its auth; thread-safe (one connection pool)."""

    def __init__(
        self,
        endpoint: Endpoint,
        auth: RegistryAuth | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 60.0,
    ) -> None:
        self.endpoint = endpoint
        self.auth = auth if auth is not None else RegistryAuth()
        self.client = httpx.Client(
            base_url=endpoint.base_url,
            auth=self.auth,
            verify=verify,
            follow_redirects=True,
            timeout=httpx.Timeout(timeout, connect=15.0),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            headers={"User-Agent": USER_AGENT},
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def host(self) -> str:
        return self.endpoint.host

    def url(self, path: str) -> str:
        return self.endpoint.base_url + path

    # -- plumbing -----------------------------------------------------------------

    def _fail(self, method: str, url: str, exc: BaseException) -> TransportError:
        return TransportError(f'{go_op(method)} "{url}": {describe(exc, self.host)}')

    def request(
        self,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...] = (200,),
        auth: bool = True,
        **kw: Any,
    ) -> httpx.Response:
        """Send and read a request; raise RegistryError unless the status is in ``ok``."""
        full = url if "://" in url else self.url(url)
        try:
            if auth:
                response = self.client.request(method, full, **kw)
            else:
                response = self.client.request(method, full, auth=None, **kw)
        except DockyardError:
            raise
        except (httpx.HTTPError, OSError) as e:
            raise self._fail(method, full, e) from e
        if response.status_code not in ok:
            raise RegistryError.from_response(
                response.status_code, response.content, response.reason_phrase
            )
        return response

    @contextlib.contextmanager
    def stream(
        self, method: str, url: str, *, ok: tuple[int, ...] = (200,), **kw: Any
    ) -> Iterator[httpx.Response]:
        full = url if "://" in url else self.url(url)
        try:
            with self.client.stream(method, full, **kw) as response:
                if response.status_code not in ok:
                    body = response.read()
                    raise RegistryError.from_response(
                        response.status_code, body, response.reason_phrase
                    )
                yield response
        except DockyardError:
            raise
        except (httpx.HTTPError, OSError) as e:
            raise self._fail(method, full, e) from e

    # -- base -------------------------------------------------------------------

    def ping(self) -> None:
        """``GET /v2/`` without credentials: learn the auth challenge, check it is a registry."""
        response = self.request("GET", "/v2/", ok=(200, 401), auth=False)
        if response.status_code == 401:
            challenges = parse_challenges(response.headers.get("WWW-Authenticate", ""))
            self.auth.challenge = RegistryAuth._pick(challenges)

    def check_login(self) -> None:
        """``GET /v2/`` with credentials; raises on refusal (``docker login``)."""
        url = self.url("/v2/")
        response = self.request("GET", url, ok=(200, 401))
        if response.status_code == 401:
            raise RegistryError(
                f"login attempt to {url} failed with status: 401 Unauthorized", "UNAUTHORIZED", 401
            )

    # -- manifests ------------------------------------------------------------------

    def get_manifest(self, repo: str, reference: str) -> Manifest:
        path = f"/v2/{repo}/manifests/{reference}"
        response = self.request("GET", path, headers={"Accept": MANIFEST_ACCEPT})
        raw = response.content
        if len(raw) > MAX_MANIFEST:
            raise DockyardError(f"manifest too big: {len(raw)} bytes")
        computed = Digest.of_bytes(raw)
        claimed = response.headers.get("Docker-Content-Digest", "")
        expected = reference if reference.startswith("sha256:") else claimed
        if expected and expected.startswith("sha256:") and expected != computed:
            raise DigestMismatch(f"manifest verification failed for digest {expected}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            declared = json.loads(raw).get("mediaType")
        except (ValueError, AttributeError):
            declared = None
        if isinstance(declared, str) and declared:
            media_type = declared
        return Manifest(raw, media_type, computed)

    def head_manifest(self, repo: str, reference: str) -> Digest | None:
        path = f"/v2/{repo}/manifests/{reference}"
        response = self.request(
            "HEAD", path, ok=(200, 404), headers={"Accept": MANIFEST_ACCEPT}
        )
        if response.status_code == 404:
            return None
        value = response.headers.get("Docker-Content-Digest", "")
        return Digest(value) if value else None

    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> Digest:
        path = f"/v2/{repo}/manifests/{reference}"
        response = self.request(
            "PUT", path, ok=(200, 201, 202), content=raw, headers={"Content-Type": media_type}
        )
        computed = Digest.of_bytes(raw)
        claimed = response.headers.get("Docker-Content-Digest", "")
        if claimed and claimed != computed:
            raise DigestMismatch(
                f"registry stored manifest {claimed}, but its content is {computed}"
            )
        return computed

    # -- blobs ------------------------------------------------------------------------

    def blob_size(self, repo: str, digest: str) -> int | None:
        """HEAD a blob: its size, or None when the repository does not have it."""
        response = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", ok=(200, 404))
        if response.status_code == 404:
            return None
        try:
            return int(response.headers.get("Content-Length", "-1"))
        except ValueError:
            return -1

    def get_blob(self, repo: str, digest: str, limit: int = MAX_CONFIG) -> bytes:
        """A small blob (a config), verified."""
        response = self.request("GET", f"/v2/{repo}/blobs/{digest}")
        data = response.content
        if len(data) > limit:
            raise DockyardError(f"blob {digest} is too big ({len(data)} bytes)")
        if Digest.of_bytes(data) != digest:
            raise DigestMismatch(f"filesystem layer verification failed for digest {digest}")
        return data

    @contextlib.contextmanager
    def open_blob(self, repo: str, digest: str, offset: int = 0) -> Iterator[BlobBody]:
        """Stream a blob from ``offset`` (``Range``); ``body.start`` is where it really starts."""
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with self.stream(
            "GET", f"/v2/{repo}/blobs/{digest}", ok=(200, 206, 416), headers=headers
        ) as response:
            start = 0
            if response.status_code == 206:
                m = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
                start = int(m.group(1)) if m else offset
            elif response.status_code == 416:
                start = -1
            yield BlobBody(self, response, start)

    # -- uploads -----------------------------------------------------------------------

    def start_upload(self, repo: str, mount: str = "", from_repo: str = "") -> str | None:
        """POST an upload; None when a cross-repository mount did it (201)."""
        params = {"mount": mount, "from": from_repo} if mount and from_repo else None
        response = self.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/",
            ok=(201, 202),
            params=params,
            headers={"Content-Length": "0"},
        )
        if response.status_code == 201:
            return None
        return self._location(response)

    def _location(self, response: httpx.Response) -> str:
        location = response.headers.get("Location")
        if not location:
            raise DockyardError("registry sent no Location for the upload")
        return str(urljoin(str(response.url), location))

    def upload_offset(self, location: str) -> int | None:
        """Bytes the registry holds for an upload, or None if it forgot the upload."""
        try:
            response = self.request("GET", location, ok=(200, 204))
        except RegistryError as e:
            if e.status in (400, 404, 410, 416):
                return None
            raise
        m = re.match(r"(?:bytes=)?0-(\d+)", response.headers.get("Range", ""))
        if not m:
            return 0
        end = int(m.group(1))
        return 0 if end == 0 else end + 1

    def upload_chunk(
        self,
        location: str,
        src: BinaryIO,
        start: int,
        length: int,
        sent: Callable[[int], None] | None = None,
    ) -> str:
        """PATCH bytes [start, start+length) of ``src``; returns the next location."""

        def body() -> Iterator[bytes]:
            src.seek(start)
            left = length
            while left > 0:
                data = src.read(min(UPLOAD_PIECE, left))
                if not data:
                    raise DockyardError("upload source ended early")
                left -= len(data)
                if sent is not None:
                    sent(len(data))
                yield data

        response = self.request(
            "PATCH",
            location,
            ok=(202, 204),
            content=body(),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(length),
                "Content-Range": f"{start}-{start + length - 1}",
            },
        )
        return self._location(response)

    def finish_upload(self, location: str, digest: str, data: bytes = b"") -> None:
        url = str(httpx.URL(location).copy_merge_params({"digest": digest}))
        response = self.request(
            "PUT",
            url,
            ok=(201, 204),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        claimed = response.headers.get("Docker-Content-Digest", "")
        if claimed and claimed != digest:
            raise DigestMismatch(f"registry stored {claimed} for blob {digest}")

    def cancel_upload(self, location: str) -> None:
        with contextlib.suppress(DockyardError):
            self.request("DELETE", location, ok=(200, 202, 204, 404))

    def put_blob(self, repo: str, data: bytes) -> Digest:
        """A small blob in one request (POST then PUT with the content)."""
        digest = Digest.of_bytes(data)
        location = self.start_upload(repo)
        assert location is not None
        self.finish_upload(location, digest, data)
        return digest

    # -- listings ------------------------------------------------------------------------

    def _paged(self, path: str, key: str, params: dict[str, Any]) -> list[str]:
        out: list[str] = []
        url: str | None = path
        first = True
        while url:
            response = self.request("GET", url, params=params if first else None)
            first = False
            data = response.json()
            out.extend(str(x) for x in (data.get(key) or []))
            link = response.headers.get("Link", "")
            m = re.match(r'\s*<([^>]+)>\s*;\s*rel="?next"?', link)
            url = urljoin(str(response.url), m.group(1)) if m else None
        return out

    def tags(self, repo: str) -> list[str]:
        return self._paged(f"/v2/{repo}/tags/list", "tags", {})

    def catalog(self, page: int = 1000) -> list[str]:
        return self._paged("/v2/_catalog", "repositories", {"n": page})


class BlobBody:
    """An open blob response; iterate raw bytes (no content decoding)."""

    def __init__(self, registry: Registry, response: httpx.Response, start: int) -> None:
        self.registry = registry
        self.response = response
        self.start = start

    def chunks(self, size: int | None = IO_CHUNK) -> Iterator[bytes]:
        """Raw bytes in pieces of ``size`` (None: as they come off the connection)."""
        url = str(self.response.url)
        try:
            yield from self.response.iter_raw(size)
        except (httpx.HTTPError, OSError) as e:
            raise self.registry._fail("GET", url, e) from e


def open_endpoint(
    endpoint: Endpoint, config: RegistryConfig, credentials: AuthEntry | None, login: bool = False
) -> Registry:
    """A pinged Registry for one endpoint."""
    creds = None if endpoint.mirror else credentials
    registry = Registry(endpoint, RegistryAuth(creds, login=login), config.ssl_context(endpoint))
    try:
        registry.ping()
    except BaseException:
        registry.close()
        raise
    return registry


def connect(
    domain: str, config: RegistryConfig, credentials: AuthEntry | None, *, login: bool = False
) -> Registry:
    """The first endpoint of ``domain`` that answers ``GET /v2/`` (https, then http if the
    host is insecure)."""
    last: DockyardError | None = None
    for endpoint in config.endpoints(domain):
        try:
            return open_endpoint(endpoint, config, credentials, login)
        except DockyardError as e:
            last = e
    assert last is not None
    raise last


def login(
    server: str, username: str, password: str, config: RegistryConfig
) -> AuthEntry:
    """Check credentials the way ``docker login`` does; returns what to store (with the
    identity token a token server handed out, if any). Raises with Docker's texts."""
    from dockyard.distribution.credentials import to_hostname
    from dockyard.distribution.endpoints import DOCKER_HUB

    key_host = to_hostname(server)
    domain = DOCKER_HUB if key_host in ("index.docker.io", "registry-1.docker.io") else key_host
    entry = AuthEntry(username, password)
    registry = connect(domain, config, entry, login=True)
    with registry:
        try:
            registry.check_login()
        except RegistryError as e:
            if e.message.startswith("login attempt"):
                raise
            raise RegistryError(
                f'Get "{registry.url("/v2/")}": {e.message}', e.code, e.status
            ) from e
        token = registry.auth.refresh_token
    return AuthEntry(username, password, token)
