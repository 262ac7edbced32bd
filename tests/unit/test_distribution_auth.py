"""The auth flow's pieces, and the whole flow against a small real token server."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from dockyard.distribution.auth import RegistryAuth, parse_challenges, scopes_for
from dockyard.distribution.client import Registry
from dockyard.distribution.credentials import AuthEntry
from dockyard.distribution.endpoints import Endpoint, RegistryConfig
from dockyard.distribution.errors import NoBasicAuthCredentials, RegistryError


def test_parse_challenges() -> None:
    found = parse_challenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull",error="insufficient_scope"'
    )
    assert len(found) == 1 and found[0].scheme == "bearer"
    assert found[0].realm == "https://auth.docker.io/token"
    assert found[0].params["scope"] == "repository:library/busybox:pull"
    assert found[0].params["error"] == "insufficient_scope"
    assert [c.scheme for c in parse_challenges('Basic realm="basic-realm"')] == ["basic"]


def test_scopes() -> None:
    assert scopes_for("GET", "/v2/me/x/manifests/v1") == ["repository:me/x:pull"]
    assert scopes_for("HEAD", "/v2/a/b/c/blobs/sha256:00") == ["repository:a/b/c:pull"]
    assert scopes_for("PATCH", "/v2/me/x/blobs/uploads/u") == ["repository:me/x:pull,push"]
    assert scopes_for("POST", "/v2/me/x/blobs/uploads/", b"mount=sha256:00&from=me/y") == [
        "repository:me/x:pull,push",
        "repository:me/y:pull",
    ]
    assert scopes_for("GET", "/v2/_catalog") == ["registry:catalog:*"]
    assert scopes_for("GET", "/v2/") == []
    # a repository named like an endpoint
    assert scopes_for("GET", "/v2/blobs/tags/tags/list") == ["repository:blobs/tags:pull"]


def test_insecure_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_INSECURE_REGISTRIES", "reg.lan:5000, 192.168.0.0/16")
    cfg = RegistryConfig.load(None)
    for host in ("localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000",
                 "reg.lan:5000", "192.168.7.7:80"):
        assert [e.scheme for e in cfg.endpoints(host)] == ["https", "http"], host
    assert [e.scheme for e in cfg.endpoints("reg.lan:5001")] == ["https"]
    assert cfg.endpoints("docker.io")[0].host == "registry-1.docker.io"
    cfg.mirrors = ["http://127.0.0.1:5000", "https://mirror.example/prefix/"]
    eps = cfg.pull_endpoints("docker.io")
    assert [(e.base_url, e.mirror) for e in eps] == [
        ("http://127.0.0.1:5000", True),
        ("https://mirror.example/prefix", True),
        ("https://registry-1.docker.io", False),
    ]
    assert [e.mirror for e in cfg.pull_endpoints("quay.io")] == [False]


class _World:
    """A protected registry endpoint and its token server, in one HTTP server."""

    def __init__(self, scheme: str, expires_in: int = 300) -> None:
        self.scheme = scheme
        self.expires_in = expires_in
        self.token_requests: list[dict[str, Any]] = []
        self.seen_auth: list[str] = []
        self.counter = 0
        world = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                auth = self.headers.get("Authorization", "")
                if url.path == "/token":
                    q = parse_qs(url.query)
                    world.token_requests.append({"scope": q.get("scope", []), "auth": auth})
                    if auth and auth != "Basic " + base64.b64encode(b"u:p").decode():
                        self._send(401, {"details": "incorrect username or password"}, {})
                        return
                    world.counter += 1
                    self._send(200, {"token": f"t{world.counter}",
                                     "expires_in": world.expires_in}, {})
                    return
                world.seen_auth.append(auth)
                ok = (auth.startswith("Bearer t") if world.scheme == "bearer"
                      else auth == "Basic " + base64.b64encode(b"u:p").decode())
                if ok:
                    self._send(200, {}, {})
                    return
                port = self.server.server_address[1]
                challenge = (
                    f'Bearer realm="http://127.0.0.1:{port}/token",service="svc"'
                    if world.scheme == "bearer" else 'Basic realm="r"'
                )
                self._send(401, {"errors": [{"code": "UNAUTHORIZED",
                                             "message": "authentication required"}]},
                           {"WWW-Authenticate": challenge})

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def client(self, creds: AuthEntry | None) -> Registry:
        reg = Registry(Endpoint(self.host, "http", False), RegistryAuth(creds))
        reg.ping()
        return reg

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bearer() -> Iterator[_World]:
    world = _World("bearer", expires_in=1)
    yield world
    world.close()


def test_bearer_flow_caches_per_scope_and_refreshes(bearer: _World) -> None:
    with bearer.client(AuthEntry("u", "p")) as reg:
        for _ in range(3):
            reg.request("GET", "/v2/me/x/manifests/v1")
        assert len(bearer.token_requests) == 1
        assert bearer.token_requests[0]["scope"] == ["repository:me/x:pull"]
        reg.request("GET", "/v2/me/y/manifests/v1")  # another scope: another token
        assert len(bearer.token_requests) == 2
        time.sleep(1.1)  # expired: fetched again before the request goes out
        reg.request("GET", "/v2/me/x/manifests/v1")
        assert len(bearer.token_requests) == 3
        assert all(a.startswith("Bearer ") for a in bearer.seen_auth[-3:])


def test_bearer_wrong_password(bearer: _World) -> None:
    with bearer.client(AuthEntry("u", "wrong")) as reg, pytest.raises(RegistryError) as e:
        reg.request("GET", "/v2/me/x/manifests/v1")
    assert e.value.message == "unauthorized: incorrect username or password"


def test_basic_flow() -> None:
    world = _World("basic")
    try:
        with world.client(AuthEntry("u", "p")) as reg:
            reg.request("GET", "/v2/me/x/manifests/v1")
            reg.check_login()
        with world.client(None) as reg, pytest.raises(NoBasicAuthCredentials) as e:
            reg.request("HEAD", "/v2/me/x/manifests/v1")
        assert str(e.value) == (
            f'Head "http://{world.host}/v2/me/x/manifests/v1": no basic auth credentials'
        )
        with world.client(AuthEntry("u", "bad")) as reg, pytest.raises(RegistryError) as e2:
            reg.check_login()
        assert e2.value.message == (
            f"login attempt to http://{world.host}/v2/ failed with status: 401 Unauthorized"
        )
    finally:
        world.close()
