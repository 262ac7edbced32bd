"""Registries for the registry-client tests, all on 127.0.0.1 with free ports.

* ``Distribution``: Debian's ``docker-registry`` (distribution 2.8) under
  ``env -i`` with its own YAML config and filesystem storage in a tmp dir; open,
  with htpasswd (bcrypt), or with ``auth: token`` pointing at a ``TokenIssuer``.
  Stopped by PID.
* ``TokenIssuer``: a tiny Docker token server (RS256 JWTs whose ``kid`` is the
  libtrust key ID of the certificate handed to the registry); GET with Basic
  auth (``offline_token`` gives a refresh token), POST with a refresh token.
  Counts its requests.
* ``FaultProxy``: a TCP proxy that counts bytes each way and can cut every
  connection once N bytes went one way; ``buffer_requests`` forwards a request
  only once its whole body arrived (as nginx does by default), so a cut request
  never reaches the registry.
* ``FakeRegistry``: serves fixed manifests and blobs, and can lie (wrong bytes)
  or cut a body short.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import os
import secrets
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


def require_docker_registry() -> None:
    """Skip (fail with DOCKYARD_REQUIRE_PEERS=1) where Debian's registry is missing."""
    import pytest

    if not Path("/usr/bin/docker-registry").exists():
        msg = "docker-registry not installed (apt-get install docker-registry)"
        if os.environ.get("DOCKYARD_REQUIRE_PEERS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer: it is up
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def htpasswd(path: Path, users: dict[str, str]) -> Path:
    import bcrypt

    lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=5)).decode()}" for u, p in
             users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- #
# distribution
# --------------------------------------------------------------------------- #


@dataclass
class Distribution:
    workdir: Path
    auth: dict[str, Any] | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    def start(self) -> Distribution:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
        }
        if self.auth:
            config["auth"] = self.auth
        path = self.workdir / "config.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        log = (self.workdir / "registry.log").open("ab")
        self.proc = subprocess.Popen(
            ["env", "-i", "/usr/bin/docker-registry", "serve", str(path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        wait_http(self.url + "/v2/")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / "registry.log").read_text(errors="replace")[-5000:]
        return ""


# --------------------------------------------------------------------------- #
# token issuer
# --------------------------------------------------------------------------- #


def libtrust_key_id(public_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    s = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i : i + 4] for i in range(0, len(s), 4))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class TokenIssuer:
    workdir: Path
    users: dict[str, str] = field(default_factory=dict)
    service: str = "test-registry"
    issuer: str = "test-issuer"
    expires_in: int = 300
    public_prefix: str = "pub/"  # anonymous users may pull these
    requests: list[dict[str, Any]] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    _server: _Server | None = None

    def start(self) -> TokenIssuer:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token-issuer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.cert_path = self.workdir / "issuer.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.kid = libtrust_key_id(self.key.public_key())
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                q = parse_qs(urlsplit(self.path).query)
                user = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
                    if issuer.users.get(u) != p:
                        issuer.requests.append({"method": "GET", "denied": u})
                        self._answer(401, {"details": "incorrect username or password"})
                        return
                    user = u
                scopes = q.get("scope", [])
                issuer.requests.append({"method": "GET", "user": user, "scopes": scopes})
                body = issuer.token(user, scopes)
                if user and q.get("offline_token") == ["true"]:
                    refresh = secrets.token_hex(16)
                    issuer.refresh_tokens[refresh] = user
                    body["refresh_token"] = refresh
                self._answer(200, body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                grant = form.get("grant_type", [""])[0]
                scopes = " ".join(form.get("scope", [])).split()
                user = None
                if grant == "refresh_token":
                    user = issuer.refresh_tokens.get(form.get("refresh_token", [""])[0])
                elif grant == "password":
                    u = form.get("username", [""])[0]
                    if issuer.users.get(u) == form.get("password", [""])[0]:
                        user = u
                issuer.requests.append({"method": "POST", "user": user, "scopes": scopes})
                if user is None:
                    self._answer(401, {"details": "invalid refresh token"})
                    return
                body = issuer.token(user, scopes)
                body["refresh_token"] = form.get("refresh_token", [""])[0]
                self._answer(200, body)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> dict[str, Any]:
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.cert_path),
            }
        }

    def token(self, user: str | None, scopes: list[str]) -> dict[str, Any]:
        import jwt

        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            if user is None:
                wanted = [a for a in wanted if a == "pull" and name.startswith(self.public_prefix)]
            if wanted:
                access.append({"type": kind, "name": name, "actions": wanted})
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": user or "", "aud": self.service,
            "exp": now + self.expires_in, "nbf": now - 5, "iat": now,
            "jti": secrets.token_hex(8), "access": access,
        }  # fmt: skip
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        return {"token": token, "access_token": token, "expires_in": self.expires_in,
                "issued_at": datetime.datetime.now(datetime.UTC).isoformat()}

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# --------------------------------------------------------------------------- #
# a TCP proxy that counts and cuts
# --------------------------------------------------------------------------- #


class FaultProxy:
    """127.0.0.1:<port> -> target. ``cut_up``/``cut_down``: after that many bytes
    client->server / server->client (counted from when it was set), close every
    connection and refuse new ones until ``heal()``."""

    def __init__(
        self, target_port: int, buffer_requests: bool = False, refuse_after_cut: bool = True
    ) -> None:
        self.target = ("127.0.0.1", target_port)
        self.buffer_requests = buffer_requests
        self.refuse_after_cut = refuse_after_cut
        self.up = 0
        self.down = 0
        self.cut_up: int | None = None
        self.cut_down: int | None = None
        self.stall_down: int | None = None  # stop forwarding (keep the connection) there
        self.cuts = 0
        self.broken = False
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def reset_counts(self) -> None:
        with self._lock:
            self.up = self.down = 0

    def heal(self) -> None:
        with self._lock:
            self.broken = False
            self.cut_up = self.cut_down = self.stall_down = None
        self._flowing.set()

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def _break(self) -> None:
        self.cuts += 1
        self.broken = self.refuse_after_cut
        self.cut_up = self.cut_down = None
        for s in list(self._socks):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.broken:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _count(self, n: int, upward: bool) -> int:
        """Account n bytes; returns how many may pass (less when a cut point is hit)."""
        with self._lock:
            if self.broken:
                return 0
            if upward:
                allowed = n if self.cut_up is None else max(0, min(n, self.cut_up - self.up))
                self.up += allowed
                hit = self.cut_up is not None and self.up >= self.cut_up
            else:
                limit = self.cut_down if self.cut_down is not None else self.stall_down
                allowed = n if limit is None else max(0, min(n, limit - self.down))
                self.down += allowed
                hit = self.cut_down is not None and self.down >= self.cut_down
                if self.stall_down is not None and self.down >= self.stall_down:
                    self._flowing.clear()
            if hit:
                self._break()
            return allowed

    def _wait_flowing(self) -> None:
        self._flowing.wait()

    def _pump(self, src: socket.socket, dst: socket.socket, upward: bool) -> None:
        buffered = self.buffer_requests and upward
        pending = bytearray()
        need: int | None = None  # length of the request at the head of ``pending``
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                allowed = self._count(len(data), upward)
                if buffered and not pending and data[:1] == b"\x16":
                    buffered = False  # a TLS handshake (the client's https probe): pass it
                if buffered:
                    pending += data[:allowed]
                    if allowed < len(data):
                        break
                    while True:  # forward every complete request (Content-Length bodies)
                        if need is None:
                            end = pending.find(b"\r\n\r\n")
                            if end < 0:
                                break
                            length = 0
                            for line in bytes(pending[:end]).split(b"\r\n")[1:]:
                                k, _, v = line.partition(b":")
                                if k.strip().lower() == b"content-length":
                                    length = int(v.strip())
                            need = end + 4 + length
                        if len(pending) < need:
                            break
                        dst.sendall(pending[:need])
                        del pending[:need]
                        need = None
                else:
                    if allowed:
                        dst.sendall(data[:allowed])
                    if allowed < len(data):
                        if upward or not self.stalled:
                            break
                        self._wait_flowing()  # stalled: hold the rest until healed
                        rest = data[allowed:]
                        self._count(len(rest), upward)
                        dst.sendall(rest)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._break()


# --------------------------------------------------------------------------- #
# a registry that lies
# --------------------------------------------------------------------------- #


@dataclass
class FakeRegistry:
    """Serves ``manifests`` (reference -> (media type, bytes)) and ``blobs``
    (digest -> bytes) for any repository; ``corrupt``/``truncate`` name blobs
    whose bytes are flipped or cut short (Content-Length stays the true size)."""

    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)
    truncate: set[str] = field(default_factory=set)
    hook: Callable[[str], None] | None = None
    _server: _Server | None = None

    def start(self) -> FakeRegistry:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str],
                      head: bool = False, cut: bool = False) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                if head:
                    return
                if cut:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def _route(self, head: bool) -> None:
                path = urlsplit(self.path).path
                if fake.hook:
                    fake.hook(path)
                if path == "/v2/":
                    self._send(200, b"{}", "application/json", {}, head)
                    return
                if "/manifests/" in path:
                    ref = path.rsplit("/manifests/", 1)[1]
                    found = fake.manifests.get(ref)
                    for candidate in fake.manifests.values():
                        if found is None and ref == "sha256:" + hashlib.sha256(
                            candidate[1]
                        ).hexdigest():
                            found = candidate
                    if found is None:
                        body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN",
                                                       "message": "manifest unknown"}]}).encode()
                        self._send(404, body, "application/json", {}, head)
                        return
                    ctype, raw = found
                    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
                    self._send(200, raw, ctype, {"Docker-Content-Digest": digest}, head)
                    return
                if "/blobs/" in path:
                    digest = path.rsplit("/blobs/", 1)[1]
                    data = fake.blobs.get(digest)
                    if data is None:
                        self._send(404, b"{}", "application/json", {}, head)
                        return
                    if digest in fake.corrupt:
                        data = bytes([data[0] ^ 0xFF]) + data[1:-1] + bytes([data[-1] ^ 0x01])
                    self._send(200, data, "application/octet-stream",
                               {"Docker-Content-Digest": digest}, head,
                               cut=digest in fake.truncate)
                    return
                self._send(404, b"{}", "application/json", {}, head)

            def do_GET(self) -> None:
                self._route(False)

            def do_HEAD(self) -> None:
                self._route(True)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@contextlib.contextmanager
def running(*things: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for t in things:
            t.stop()


__all__ = [
    "Distribution",
    "FakeRegistry",
    "FaultProxy",
    "TokenIssuer",
    "free_port",
    "htpasswd",
    "os",
]
