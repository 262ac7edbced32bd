"""dockyard's ASGI server (dockyard.httpd) as a real process, driven over real sockets.

The app is tests/helpers/asgi_app.py. Framing is read by a small parser here, so
what is checked is the bytes on the wire: keep-alive, pipelining, chunked bodies
both ways, 100-continue, HEAD, sendfile of files large and small, errors, and the
worker processes (respawn, graceful stop, no orphan after the supervisor is killed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(
        self, workers: int = 1, uds: Path | None = None, stall: float | None = None
    ) -> None:
        self.workers = workers
        self.uds = uds
        self.port = _free_port()
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
        if stall is not None:
            env["ASGI_APP_STALL"] = str(stall)
        argv = [sys.executable, "-m", "tests.helpers.asgi_app", str(self.port), str(workers)]
        if uds is not None:
            argv.append(str(uds))
        self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=True,
                                     stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            with contextlib.suppress(OSError):
                self.connect().close()
                return
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def connect(self) -> socket.socket:
        if self.uds is not None:
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(self.uds))
        else:
            s = socket.create_connection(("127.0.0.1", self.port))
        s.settimeout(10)
        return s

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


class Reader:
    """Reads HTTP/1.1 responses off one socket, one after another."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(1 << 20)
        self.buf += data
        return bool(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(self.buf)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(self.buf)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head_request: bool = False) -> tuple[int, dict[str, str], bytes]:
        status = int(self._line().split()[1])
        headers: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if head_request or status in (100, 204, 304):
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._line(), 16):
                body += self._take(size)
                assert self._take(2) == b"\r\n"
            assert self._line() == b""
            return status, headers, body
        return status, headers, self._take(int(headers["content-length"]))

    def closed(self) -> bool:
        while not self.buf:
            try:
                if not self._fill():
                    return True
            except ConnectionResetError:
                return True
        return False


def _request(method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def test_keep_alive_and_pipelining(server: Server) -> None:
    with server.connect() as s:
        r = Reader(s)
        s.sendall(_request("POST", "/echo", b"first"))
        assert r.response()[2] == b"first"
        s.sendall(_request("POST", "/echo", b"second"))  # the same connection
        assert r.response()[2] == b"second"
        # three at once: answered in order
        s.sendall(_request("POST", "/echo", b"a" * 100_000) + _request("GET", "/state")
                  + _request("POST", "/echo", b"c"))  # fmt: skip
        assert r.response()[2] == b"a" * 100_000
        assert r.response()[2] == b"hello from startup"  # the lifespan's state
        assert r.response()[2] == b"c"


def test_chunked_request_body_and_response(server: Server) -> None:
    with server.connect() as s:
        r = Reader(s)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")  # fmt: skip
        status, _, body = r.response()
        assert (status, body) == (200, b"hello world")
        s.sendall(_request("GET", "/stream"))
        status, headers, body = r.response()
        assert headers["transfer-encoding"] == "chunked"
        assert body == b"one,two,three"
        assert "date" in headers


def test_expect_100_continue(server: Server) -> None:
    with server.connect() as s:
        r = Reader(s)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                  b"Expect: 100-continue\r\n\r\n")  # fmt: skip
        assert r.response()[0] == 100  # before any body byte was sent
        s.sendall(b"body")
        assert r.response()[2] == b"body"
        # an answer that needs no body: no 100, and the unread body closes the connection
        s.sendall(b"POST /ignore-body HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                  b"Expect: 100-continue\r\n\r\n")  # fmt: skip
        assert r.response()[:3:2] == (200, b"ignored")
        assert r.closed()


def test_early_answer_drops_the_rest_of_the_body(server: Server) -> None:
    with server.connect() as s:
        r = Reader(s)
        s.sendall(b"POST /ignore-body HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"
                  + b"x" * 300)  # fmt: skip
        assert r.response()[:3:2] == (200, b"ignored")  # answered before the end
        s.sendall(b"y" * 700 + _request("POST", "/echo", b"next"))  # the rest, then more
        assert r.response()[2] == b"next"  # the same connection goes on


@pytest.mark.parametrize("size", [0, 1000, 70_000, 5_000_000])
def test_pathsend(server: Server, tmp_path: Path, size: int) -> None:
    f = tmp_path / "blob"
    data = os.urandom(size)
    f.write_bytes(data)
    r = httpx.get(f"{server.url}/file", params={"path": str(f)})
    assert r.status_code == 200
    assert int(r.headers["content-length"]) == size
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()
    with server.connect() as s:  # HEAD: the length, no body, and the connection lives on
        rd = Reader(s)
        s.sendall(_request("HEAD", f"/file?path={f}") + _request("POST", "/echo", b"x"))
        status, headers, body = rd.response(head_request=True)
        assert (status, headers["content-length"], body) == (200, str(size), b"")
        assert rd.response()[2] == b"x"


def test_zerocopysend_of_a_range(server: Server, tmp_path: Path) -> None:
    f = tmp_path / "blob"
    data = os.urandom(3 << 20)
    f.write_bytes(data)
    with server.connect() as s:
        r = Reader(s)
        s.sendall(_request("GET", f"/range?path={f}&offset=1000&count=2000000")
                  + _request("GET", f"/range?path={f}&offset=0&count=10"))  # fmt: skip
        status, _, body = r.response()
        assert (status, body == data[1000:2_001_000]) == (206, True)
        assert r.response()[2] == data[:10]


def test_app_error_is_500(server: Server) -> None:
    r = httpx.get(f"{server.url}/boom")
    assert r.status_code == 500
    assert r.headers["connection"] == "close"
    assert httpx.get(f"{server.url}/state").text == "hello from startup"  # still serving


def test_bad_request_is_400_and_close(server: Server) -> None:
    with server.connect() as s:
        r = Reader(s)
        s.sendall(b"GARBAGE\x00 / HTTP/1.1\r\n\r\n")
        assert r.response()[0] == 400
        assert r.closed()


def test_oversized_head_is_431(server: Server) -> None:
    with server.connect() as s:
        r = Reader(s)
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (70 << 10) + b"\r\n\r\n")
        assert r.response()[0] == 431
        assert r.closed()


def test_half_close_mid_body_is_a_disconnect_that_can_be_answered(server: Server) -> None:
    with server.connect() as s:
        r = Reader(s)
        s.sendall(b"POST /count-body HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"
                  + b"x" * 300)  # fmt: skip
        s.shutdown(socket.SHUT_WR)
        status, _, body = r.response()
        assert status == 200
        assert json.loads(body) == {"received": 300, "end": "disconnect"}


def test_unix_socket(tmp_path: Path) -> None:
    uds = tmp_path / "api.sock"
    uds.write_bytes(b"")  # a stale regular file is not a socket: refused, not removed
    with pytest.raises(AssertionError):
        Server(uds=uds)
    uds.unlink()
    s = Server(uds=uds)
    try:
        with s.connect() as sock:
            r = Reader(sock)
            sock.sendall(_request("POST", "/echo", b"over a unix socket"))
            assert r.response()[2] == b"over a unix socket"
    finally:
        s.stop()
    assert s.proc.returncode == 0
    assert not uds.exists()  # its socket file goes with it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(FileNotFoundError):  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False


def _worker_pids(s: Server, want: int) -> set[int]:
    pids: set[int] = set()
    deadline = time.monotonic() + 15
    while len(pids) < want and time.monotonic() < deadline:
        with httpx.Client() as c:  # a new connection each time: any worker may take it
            pids.add(int(c.get(f"{s.url}/pid", headers={"connection": "close"}).text))
    assert len(pids) == want
    return pids


def test_workers_respawn_and_stop_gracefully() -> None:
    s = Server(workers=2)
    try:
        pids = _worker_pids(s, 2)
        assert s.proc.pid not in pids  # the supervisor serves nothing itself
        victim = next(iter(pids))
        os.kill(victim, signal.SIGKILL)
        # a new worker takes its place
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            current = _worker_pids(s, 2)
            if victim not in current:
                break
        assert victim not in current
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(15) == 0
        assert not any(_alive(p) for p in current)
    finally:
        s.stop()


def test_workers_die_with_a_killed_supervisor() -> None:
    s = Server(workers=2)
    try:
        pids = _worker_pids(s, 2)
        os.kill(s.proc.pid, signal.SIGKILL)  # only the supervisor
        s.proc.wait(5)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in pids)
    finally:
        s.stop()


def test_a_taken_port_is_refused_not_shared() -> None:
    s = Server(workers=2)
    try:
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
        second = subprocess.run(
            [sys.executable, "-m", "tests.helpers.asgi_app", str(s.port), "2"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert second.returncode != 0
        assert "Address already in use" in second.stderr
    finally:
        s.stop()


def test_workers_share_a_burst_of_connections() -> None:
    """32 connections opened at once land on both workers (SO_REUSEPORT per worker)."""
    s = Server(workers=2)
    try:
        _worker_pids(s, 2)  # both listening (the server is up once one of them is)
        socks = [s.connect() for _ in range(32)]
        seen: dict[int, int] = {}
        for sock in socks:
            r = Reader(sock)
            sock.sendall(_request("GET", "/pid"))
            pid = int(r.response()[2])
            seen[pid] = seen.get(pid, 0) + 1
            sock.close()
        assert len(seen) == 2
        assert min(seen.values()) >= 6, seen  # far from all on one worker
    finally:
        s.stop()


def _rest(r: Reader) -> bytes:
    """What is left on the socket, up to the server's close (a timeout if it stays open)."""
    while r._fill():
        pass
    out, r.buf = r.buf, b""
    return out


def test_an_upgrade_request_ends_the_http_on_its_connection(server: Server) -> None:
    """httptools reads no body after an Upgrade (or CONNECT) head and goes on parsing
    what follows as new requests: a body could smuggle a request in. Such a body is
    refused, and nothing after such a head is read as HTTP."""
    smuggled = _request("GET", "/pid")
    with server.connect() as s:
        s.settimeout(3)
        r = Reader(s)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(smuggled))  # fmt: skip
        time.sleep(0.2)  # the body in a read of its own
        with contextlib.suppress(OSError):
            s.sendall(smuggled)
        assert r.response()[0] == 400
        assert str(server.proc.pid).encode() not in _rest(r)
    with server.connect() as s:  # no body: answered as plain HTTP, then the end
        s.settimeout(3)
        r = Reader(s)
        s.sendall(b"GET /state HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        time.sleep(0.2)
        s.sendall(smuggled)
        status, headers, body = r.response()
        assert (status, body, headers["connection"]) == (200, b"hello from startup", "close")
        assert _rest(r) == b""
    with server.connect() as s:  # CONNECT: what follows is the tunnel, never a request
        s.settimeout(3)
        r = Reader(s)
        s.sendall(b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n")
        time.sleep(0.2)
        s.sendall(smuggled)
        assert r.response()[0] == 400  # (its target is no path)
        assert _rest(r) == b""


def test_an_endless_header_line_is_431(server: Server) -> None:
    """httptools keeps a header line until its end: one that never ends must not grow
    without limit."""
    with server.connect() as s:
        s.settimeout(5)
        r = Reader(s)
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: ")
        with contextlib.suppress(OSError):  # the server may close before the last parts
            for _ in range(40):
                s.sendall(b"a" * (16 << 10))
                time.sleep(0.01)
        assert r.response()[0] == 431
        assert r.closed()


def test_receive_after_the_response_is_a_disconnect(server: Server) -> None:
    """The app answers without the body (the client waits for 100 Continue) and then
    calls receive(): http.disconnect, not a wait for a body that never comes."""
    with server.connect() as s:
        s.settimeout(3)
        r = Reader(s)
        s.sendall(b"POST /answer-then-receive HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                  b"Expect: 100-continue\r\n\r\n")  # fmt: skip
        assert r.response()[:3:2] == (200, b"answered")
        assert r.closed()


def test_a_body_shorter_than_its_content_length_closes_the_connection(server: Server) -> None:
    with server.connect() as s:
        s.settimeout(3)
        r = Reader(s)
        s.sendall(_request("GET", "/wrong-length?n=4") + _request("GET", "/pid"))
        status, headers, _ = r.response(head_request=True)
        assert (status, headers["content-length"]) == (200, "10")
        assert _rest(r) == b"xxxx"  # then the end: the client knows it is short


def test_a_body_longer_than_its_content_length_is_not_sent(server: Server) -> None:
    with server.connect() as s:
        s.settimeout(3)
        r = Reader(s)
        s.sendall(_request("GET", "/wrong-length?n=20") + _request("GET", "/pid"))
        assert r.response()[0] == 500
        assert _rest(r) == b""


def test_an_error_after_the_response_start_is_500(server: Server) -> None:
    with server.connect() as s:
        s.settimeout(3)
        r = Reader(s)
        s.sendall(_request("GET", "/start-then-boom"))
        status, headers, _ = r.response()
        assert (status, headers["connection"]) == (500, "close")
        assert r.closed()


def test_a_header_value_with_crlf_is_refused(server: Server) -> None:
    with server.connect() as s:
        s.settimeout(3)
        r = Reader(s)
        s.sendall(_request("GET", "/bad-header"))
        status, headers, _ = r.response()
        assert status == 500
        assert "x-injected" not in headers


def test_http_1_0_clients(server: Server) -> None:
    with server.connect() as s:  # no chunked framing for HTTP/1.0: the close ends the body
        s.settimeout(3)
        r = Reader(s)
        s.sendall(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _ = r.response(head_request=True)
        assert (status, headers["connection"]) == (200, "close")
        assert "transfer-encoding" not in headers
        assert _rest(r) == b"one,two,three"
    with server.connect() as s:  # keep-alive asked for: said, and kept
        s.settimeout(3)
        r = Reader(s)
        for body in (b"one", b"two"):
            s.sendall(b"POST /echo HTTP/1.0\r\nConnection: keep-alive\r\n"
                      b"Content-Length: 3\r\n\r\n" + body)  # fmt: skip
            status, headers, got = r.response()
            assert (status, headers["connection"], got) == (200, "keep-alive", body)
    with server.connect() as s:  # not asked for: closed after the answer
        s.settimeout(3)
        r = Reader(s)
        s.sendall(b"GET /state HTTP/1.0\r\n\r\n")
        assert r.response()[2] == b"hello from startup"
        assert r.closed()


def test_the_path_is_percent_decoded_as_utf8(server: Server) -> None:
    with server.connect() as s:
        r = Reader(s)
        s.sendall(_request("GET", "/echo-path/caf%C3%A9%20au%20lait"))
        assert r.response()[2] == "/echo-path/café au lait".encode()


def test_a_client_gone_in_the_middle_of_a_sendfile_is_no_app_error(tmp_path: Path) -> None:
    """A client that goes away during a big pathsend (a cancelled pull) ends the
    response quietly: no 'error while answering' with a traceback in the log."""
    f = tmp_path / "blob"
    f.write_bytes(os.urandom(32 << 20))
    s = Server()
    try:
        for _ in range(3):
            with s.connect() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(_request("GET", f"/file?path={f}"))
                sock.recv(4096)
                time.sleep(0.2)  # the server is blocked in sendfile: the client is full
                # a reset, not a FIN: the sendfile fails at once
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.5)
        assert httpx.get(f"{s.url}/state").text == "hello from startup"
    finally:
        s.stop()
    assert s.proc.stderr is not None
    log = s.proc.stderr.read().decode()
    assert "error while answering" not in log, log


def test_a_supervisor_whose_workers_cannot_start_gives_up() -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "ASGI_APP_FAIL": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.helpers.asgi_app", str(_free_port()), "2"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "this app cannot start" in proc.stderr
    assert "workers in a row ended as they started" in proc.stderr


def test_stalled_clients_are_dropped() -> None:
    """A body that stops coming, and a client that stops reading, hold a connection
    for the stall timeout (here 1 s), not forever."""
    s = Server(stall=1.0)
    try:
        with s.connect() as sock:
            r = Reader(sock)
            started = time.monotonic()
            sock.sendall(b"POST /count-body HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            assert r.closed()  # given up on (the app saw http.disconnect)
            assert 0.9 < time.monotonic() - started < 5
        with s.connect() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
            sock.sendall(_request("GET", "/big?n=256"))
            time.sleep(3)  # read nothing
            got = 0
            with contextlib.suppress(ConnectionResetError):
                while data := sock.recv(1 << 20):
                    got += len(data)
            assert got < 256 << 20  # cut off: the server gave up on this reader
        assert httpx.get(f"{s.url}/state").text == "hello from startup"
    finally:
        s.stop()


def test_a_bad_request_behind_a_good_one_waits_its_turn(server: Server) -> None:
    with server.connect() as s:
        r = Reader(s)
        s.sendall(_request("POST", "/echo", b"first") + _request("GET", "/state")
                  + b"GARBAGE\x00 / HTTP/1.1\r\n\r\n")  # fmt: skip
        assert r.response()[2] == b"first"
        assert r.response()[2] == b"hello from startup"
        assert r.response()[0] == 400
        assert r.closed()
