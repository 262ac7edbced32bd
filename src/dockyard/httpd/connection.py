"""One HTTP/1.1 connection running an ASGI app.

httptools feeds the callbacks below; each request becomes a ``Cycle`` whose
``receive``/``send`` are the ASGI channel. Requests on one connection run one at a
time, in order (pipelined ones wait, and reading pauses meanwhile). A body is queued
as it arrives and reading pauses while more than ``HIGH_WATER`` bytes wait for the
app. ``http.response.pathsend`` goes out with ``loop.sendfile`` (sendfile(2) on a
plain socket): the file's bytes never enter the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import os
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]

log = logging.getLogger("dockyard.httpd")
access = logging.getLogger("dockyard.httpd.access")

HIGH_WATER = 4 << 20  # request body bytes queued for the app before reading pauses
LOW_WATER = 1 << 20  # ... and resumes
MAX_HEAD = 64 << 10  # request line + headers
KEEPALIVE = 75.0  # seconds an idle connection (or one sending its head) is kept
SMALL = 64 << 10  # a body this small is written in one piece with the response head
DISCARD_MAX = 16 << 20  # unread request body dropped after an early answer, at most...
DISCARD_TIME = 5.0  # ... and for at most this long
STALL_TIMEOUT = 120.0  # see Context.stall_timeout

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110 5.1)
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # no CR, LF, NUL in a header value
_PHRASES = {s.value: s.phrase.encode() for s in http.HTTPStatus}
_BODY_MESSAGES = ("http.response.body", "http.response.pathsend", "http.response.zerocopysend")
_date: tuple[int, bytes] = (0, b"")


def _date_header() -> bytes:
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n")
    return _date[1]


@dataclass
class Context:
    """What the connections of one worker share."""

    app: ASGIApp
    state: dict[str, Any] = field(default_factory=dict)  # lifespan state, copied per request
    access_log: bool = False
    connections: set[Connection] = field(default_factory=set)
    # seconds a request body may pause, or a client stop reading the response, before
    # the connection is closed (a sendfile is not watched: the kernel sends it)
    stall_timeout: float = STALL_TIMEOUT


class _HeadTooLarge(Exception):
    pass


class Connection(asyncio.Protocol):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int | None] | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.in_head = False  # between a request's first byte and the end of its head
        self.progressed = False  # the parser reported part of the head in this read
        self.stalled = 0  # head bytes read since the parser last reported any
        self.upgraded = False  # after an Upgrade or CONNECT head nothing more is HTTP
        self.refusal = 0  # the status for a bad request that waits for those before it
        self.parsing: Cycle | None = None  # the request whose body the parser is in
        self.active: Cycle | None = None  # the request the app is answering
        self.waiting: deque[Cycle] = deque()  # pipelined requests, in order
        self.read_paused = False
        self.write_paused = False
        self.drained: asyncio.Future[None] | None = None
        self.closed = False
        self.idle: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server = _address(transport.get_extra_info("sockname"))  # (path, None): unix
        self.client = _address(transport.get_extra_info("peername"))
        self.ctx.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ctx.connections.discard(self)
        self._disarm_idle()
        for cycle in (self.active, *self.waiting):
            if cycle is not None:
                cycle.lost()
        self.waiting.clear()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.upgraded or self.refusal:
            return  # not HTTP (any more): dropped until the answers and the close
        self.progressed = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no protocol upgrades: the request is answered as plain HTTP
        except _HeadTooLarge:
            self._refuse(431)
        except httptools.HttpParserError as e:
            if isinstance(e.__context__, _HeadTooLarge):
                self._refuse(431)
            else:
                self._refuse(400)
        else:
            # httptools keeps a header line whole until its end: a line that never
            # ends is counted here, read by read
            if self.in_head:
                self.stalled = 0 if self.progressed else self.stalled + len(data)
                if self.head_size + self.stalled > MAX_HEAD:
                    self._refuse(431)

    def eof_received(self) -> bool | None:
        """A client that half-closes after its request still gets the answer."""
        if self.active is not None:
            self.active.keep_alive = False
            if not self.active.body_complete:
                self.active.cut()  # the rest of its body can never come; it may be answered
            return True  # keep the transport open for writing; closed once answered
        return None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    # -- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_size = 0
        self.in_head = self.progressed = True
        self.stalled = 0
        self._disarm_idle()
        self._arm_idle()  # the head must arrive within KEEPALIVE too

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._grow_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))
        self._grow_head(len(name) + len(value) + 4)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._disarm_idle()
        parser = self.parser
        upgrade = parser.should_upgrade()
        if upgrade and any(
            n == b"transfer-encoding" or (n == b"content-length" and v.strip(b" \t") != b"0")
            for n, v in self.headers
        ):
            # httptools reads no body after an Upgrade or CONNECT head and parses what
            # follows as new requests: such a body could smuggle one in
            raise httptools.HttpParserError("a body after an Upgrade or CONNECT head")
        try:
            parsed = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            raise httptools.HttpParserError("invalid request target") from None
        raw_path = parsed.path or b"/"
        path = raw_path.decode("latin-1")
        if "%" in path or not path.isascii():  # ASGI: percent-decoded, then UTF-8
            path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
        method = parser.get_method().decode("ascii")
        scope: Message = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": parser.get_http_version(),
            "server": self.server,
            "client": self.client,
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": parsed.query or b"",
            "headers": self.headers,
            "extensions": {"http.response.pathsend": {}, "http.response.zerocopysend": {}},
            "state": dict(self.ctx.state),
        }
        expect = any(n == b"expect" and v.lower() == b"100-continue" for n, v in self.headers)
        keep_alive = parser.should_keep_alive() and not upgrade
        cycle = Cycle(self, scope, keep_alive=keep_alive, expect_100=expect)
        if upgrade:
            self.upgraded = True  # answered as plain HTTP; what follows is not read
        self.parsing = cycle
        if self.active is None:
            self._start(cycle)
        else:
            self.waiting.append(cycle)
            self._pause_reading()  # pipelined: its turn comes when the previous is answered

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.feed(body)

    def on_message_complete(self) -> None:
        if self.parsing is not None:
            self.parsing.finish_body()
            self.parsing = None

    # -- the cycles ------------------------------------------------------------------

    def _start(self, cycle: Cycle) -> None:
        self.active = cycle
        task = self.loop.create_task(cycle.run())
        task.add_done_callback(lambda _t: self._answered(cycle))

    def _answered(self, cycle: Cycle) -> None:
        self.active = None
        if self.closed:
            return
        if not cycle.keep_alive or (cycle.expect_100 and not cycle.body_complete):
            self.close()  # (a client that waited for 100 Continue sends no body now)
            return
        if not cycle.body_complete:
            # answered before the end of the body (a 401 to an upload, say): read and
            # drop the rest, so the client is not reset before it reads the answer,
            # then carry on; a long rest or a slow client only gets the close
            cycle.discard()
            self._resume_reading()
            self._disarm_idle()
            self._arm_idle(DISCARD_TIME)
            return
        self._next()

    def _next(self) -> None:
        """The connection is free for the next request."""
        if self.waiting:
            self._start(self.waiting.popleft())
            if not self.waiting and self.active is not None and not self.active.body_full():
                self._resume_reading()
        elif self.refusal:
            self._refuse(self.refusal)
        else:
            self._resume_reading()
            self._arm_idle()

    # -- helpers ---------------------------------------------------------------------

    def _grow_head(self, n: int) -> None:
        self.progressed = True
        self.head_size += n
        if self.head_size > MAX_HEAD:
            raise _HeadTooLarge

    def _refuse(self, status: int) -> None:
        """Answer a request that could not be parsed, and close. Requests before it
        that arrived whole are answered first, in order."""
        if self.transport is None or self.closed:
            return
        if self.active is not None and self.active.body_complete and self.parsing is None:
            self.refusal = status  # its turn comes after theirs (see _next)
            self._pause_reading()
            return
        if self.active is None or not self.active.started:
            phrase = _PHRASES.get(status, b"")
            body = phrase + b"\n"
            self.transport.write(
                b"HTTP/1.1 %d %s\r\n%bcontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%b"
                % (status, phrase, _date_header(), len(body), body)
            )
        if self.active is not None:
            self.active.lost()
        self.close()

    def abort(self) -> None:
        """Close now, dropping what is still buffered (a client that is not reading)."""
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def close_if_idle(self) -> None:
        """Close now unless a request is being answered (then after it: shutdown)."""
        if self.active is None:
            self.close()
        else:
            self.active.keep_alive = False

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    def _arm_idle(self, seconds: float = KEEPALIVE) -> None:
        if self.idle is None:
            self.idle = self.loop.call_later(seconds, self.close)

    def _disarm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            self.drained = self.loop.create_future()
            try:
                async with asyncio.timeout(self.ctx.stall_timeout):
                    await self.drained
            except TimeoutError:  # the client stopped reading
                self.abort()
        if self.closed:
            raise ConnectionResetError("the client closed the connection")


class Cycle:
    """One request and its response: the ASGI ``receive`` and ``send``."""

    def __init__(self, conn: Connection, scope: Message, *, keep_alive: bool, expect_100: bool):
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_100 = expect_100
        self.head_request = scope["method"] == "HEAD"
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.body_complete = False
        self.told_end = False  # the app got its more_body=False
        self.body_cut = False
        self.discarding = False
        self.discarded = 0
        self.disconnected = False
        self.changed = asyncio.Event()  # body arrived, body complete, or disconnect
        self.started = False
        self.complete = False
        self.chunked = False
        self.remaining: int | None = None  # body bytes the Content-Length still promises
        self.status = 0
        self.head = b""  # the response head, until the first body part goes with it

    # -- fed by the connection -------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self.discarding:
            self.discarded += len(data)
            if self.discarded > DISCARD_MAX:
                self.conn.close()
            return
        self.body.append(data)
        self.buffered += len(data)
        self.changed.set()
        if self.body_full():
            self.conn._pause_reading()

    def body_full(self) -> bool:
        return self.buffered > HIGH_WATER

    def finish_body(self) -> None:
        self.body_complete = True
        self.changed.set()
        if self.discarding and not self.conn.closed:
            self.conn._disarm_idle()
            self.conn._next()

    def discard(self) -> None:
        """Drop the body queued and still to come (the response is sent)."""
        self.discarding = True
        self.body.clear()
        self.buffered = 0

    def lost(self) -> None:
        self.disconnected = True
        self.changed.set()

    def cut(self) -> None:
        """The client half-closed before the end of the body."""
        self.body_cut = True
        self.changed.set()

    # -- the app ---------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.conn.ctx.app(self.scope, self.receive, self.send)
        except BaseException as e:
            if not self.disconnected and not isinstance(e, asyncio.CancelledError):
                log.exception("error while answering %s %s", self.scope["method"],
                              self.scope["path"])  # fmt: skip
            if isinstance(e, KeyboardInterrupt | SystemExit):
                raise
        finally:
            if not self.complete and not self.disconnected:
                if not self.started or self.head:  # nothing of the response went out
                    await self._error_response(500)
                else:  # a response cut short: the client sees the connection close
                    self.keep_alive = False
                    self.complete = True
            self.changed.set()
            if self.conn.ctx.access_log:
                scope = self.scope
                access.info('%s - "%s %s HTTP/%s" %d', _client(scope), scope["method"],
                            scope["path"], scope["http_version"], self.status)  # fmt: skip

    async def receive(self) -> Message:
        if self.complete:  # ASGI: after the response, http.disconnect (no body wait)
            return {"type": "http.disconnect"}
        if self.expect_100 and not self.started:
            self.expect_100 = False
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not (self.body or self.body_complete or self.disconnected or self.body_cut):
            self.changed.clear()
            self.conn._resume_reading()
            try:
                async with asyncio.timeout(self.conn.ctx.stall_timeout):
                    await self.changed.wait()
            except TimeoutError:  # the body stopped coming: as if the client had left
                self.lost()
                self.conn.abort()
        if self.body:
            data = self.body.popleft()
            self.buffered -= len(data)
            if self.buffered <= LOW_WATER and not self.conn.waiting:
                self.conn._resume_reading()
            more = bool(self.body) or not self.body_complete
            self.told_end = not more
            return {"type": "http.request", "body": data, "more_body": more}
        if self.body_complete and not self.disconnected and not self.told_end:
            self.told_end = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # after the body: ASGI's http.disconnect comes once the response is sent or
        # the client went away
        while not self.disconnected and not self.complete and not self.body_cut:
            self.changed.clear()
            await self.changed.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.disconnected:
            raise ConnectionResetError("the client closed the connection")
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("the response has already started")
            self._start(message["status"], message.get("headers", ()))
            return
        if kind not in _BODY_MESSAGES:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not self.started or self.complete:
            raise RuntimeError(f"{kind} outside a response")
        if kind == "http.response.body":
            await self._body(message.get("body", b""), bool(message.get("more_body", False)))
        elif kind == "http.response.pathsend":
            await self._pathsend(message["path"])
        else:
            await self._zerocopysend(message)

    def _start(self, status: int, headers: Any) -> None:
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, _PHRASES.get(status, b"")), _date_header()]
        length: int | None = None
        for name, value in headers:
            if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
                raise RuntimeError(f"invalid response header {name!r}: {value!r}")
            lname = name.lower()
            if lname == b"content-length":
                if not value.isdigit():
                    raise RuntimeError(f"invalid Content-Length {value!r}")
                length = int(value)
            elif lname == b"connection":
                if value.lower() == b"close":
                    self.keep_alive = False
                continue  # written below
            elif lname == b"transfer-encoding":
                continue  # this server frames the body
            lines.append(b"%s: %s\r\n" % (name, value))
        self.started = True
        self.status = status
        bodiless = self.head_request or status in (204, 304) or status < 200
        self.remaining = None if bodiless else length
        self.chunked = False
        if length is None and not bodiless:
            if self.scope["http_version"] == "1.0":
                self.keep_alive = False  # no chunked for HTTP/1.0: the close ends the body
            else:
                self.chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        elif self.scope["http_version"] == "1.0":
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        self.head = b"".join(lines)

    def _count(self, n: int) -> None:
        """Account for ``n`` body bytes about to go out (or gone) against Content-Length."""
        if self.remaining is not None:
            if n > self.remaining:
                raise RuntimeError("response body longer than its Content-Length")
            self.remaining -= n

    def _check_complete(self) -> None:
        if self.remaining:
            raise RuntimeError("response body shorter than its Content-Length")

    async def _body(self, data: bytes, more: bool) -> None:
        if self.head_request or self.status in (204, 304):
            data = b""
        self._count(len(data))
        if self.chunked:
            framed = b"%x\r\n%b\r\n" % (len(data), data) if data else b""
            if not more:
                framed += b"0\r\n\r\n"
            data = framed
        if self.head and len(data) <= SMALL:
            self._write(self.head + data)
            self.head = b""
        else:
            self._flush_head()
            if data:
                self._write(data)
        if not more:
            self._check_complete()  # (the connection is closed: the client sees it short)
            self.complete = True
            self.changed.set()
        await self.conn.drain()

    async def _pathsend(self, path: str) -> None:
        if self.head_request:
            await self._body(b"", False)
            return
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size <= SMALL:  # one write with the head beats the sendfile set-up
                await self._body(f.read(), False)
                return
            await self._sendfile(f, 0, size)
        await self._body(b"", False)  # (the end of a chunked body)

    async def _zerocopysend(self, message: Message) -> None:
        """ASGI's zero-copy send: ``count`` bytes (default: to the end) of an open file
        from ``offset`` (default: its position), by sendfile; the app keeps the file."""
        more = bool(message.get("more_body", False))
        file = message["file"]
        if isinstance(file, int):
            file = os.fdopen(os.dup(file), "rb")
            owned = True
        else:
            owned = False
        try:
            offset = message.get("offset")
            if offset is None:
                offset = file.tell()
            count = message.get("count")
            if count is None:
                count = os.fstat(file.fileno()).st_size - offset
            if not self.head_request and count > 0:
                await self._sendfile(file, offset, count)
        finally:
            if owned:
                file.close()
        await self._body(b"", more)

    async def _sendfile(self, file: Any, offset: int, count: int) -> None:
        """``count`` bytes of ``file`` from ``offset`` as (one chunk of) the body."""
        self._count(count)
        self._flush_head()
        if self.chunked:
            self._write(b"%x\r\n" % count)
        try:
            sent = await self.conn.loop.sendfile(self._transport(), file, offset, count)
        except ConnectionError as e:  # the client went away (a cancelled download)
            self.lost()
            self.conn.close()
            raise ConnectionResetError("the client closed the connection") from e
        if sent != count:  # the file is shorter than said: the framing is broken
            raise RuntimeError(f"{count} bytes of the file to send, {sent} sent")
        if self.chunked:
            self._write(b"\r\n")

    def _flush_head(self) -> None:
        if self.head:
            self._write(self.head)
            self.head = b""

    def _write(self, data: bytes) -> None:
        self._transport().write(data)

    def _transport(self) -> asyncio.Transport:
        transport = self.conn.transport
        if transport is None or self.conn.closed:
            raise ConnectionResetError("the client closed the connection")
        return transport

    async def _error_response(self, status: int) -> None:
        self.keep_alive = False
        body = _PHRASES.get(status, b"") + b"\n"
        self._start(status, [(b"content-type", b"text/plain; charset=utf-8"),
                             (b"content-length", b"%d" % len(body))])  # fmt: skip
        with contextlib.suppress(ConnectionError):
            await self._body(body, False)


def _address(value: Any) -> tuple[str, int | None] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    if isinstance(value, str) and value:  # a unix socket's path (ASGI: port None)
        return value, None
    return None


def _client(scope: Message) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"
