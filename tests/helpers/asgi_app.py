"""A small raw ASGI app for the httpd tests, and a runner for a real server process.

    python -m tests.helpers.asgi_app PORT WORKERS [UDS]

Routes: ``/echo`` (the body back, with its length), ``/stream`` (three parts, no
Content-Length), ``/big?n=N`` (N MiB), ``/file?path=P`` (pathsend of P),
``/range?path=P&offset=O&count=N`` (zerocopysend), ``/boom`` (raises), ``/state`` (what
the lifespan startup put in the state), ``/pid``, ``/ignore-body`` (answers without
reading), ``/count-body`` (reads until the end or http.disconnect and says which),
``/answer-then-receive`` (answers, then calls receive once more), ``/wrong-length?n=N``
(says Content-Length 10, sends N bytes), ``/start-then-boom`` (raises after
http.response.start), ``/bad-header`` (a header value with CRLF in it),
``/echo-path/...`` (scope["path"] back, UTF-8).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any
from urllib.parse import parse_qs

Message = dict[str, Any]


async def app(scope: Message, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "hello from startup"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/echo":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await _answer(send, 200, body)
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/file":
        file = parse_qs(scope["query_string"].decode())["path"][0]
        size = os.path.getsize(file)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(size).encode())]})  # fmt: skip
        await send({"type": "http.response.pathsend", "path": file})
    elif path == "/range":  # zero-copy send of [offset, offset+count) of path, by fd
        q = parse_qs(scope["query_string"].decode())
        offset, count = int(q["offset"][0]), int(q["count"][0])
        await send({"type": "http.response.start", "status": 206,
                    "headers": [(b"content-length", str(count).encode())]})  # fmt: skip
        with open(q["path"][0], "rb") as f:
            await send({"type": "http.response.zerocopysend", "file": f.fileno(),
                        "offset": offset, "count": count})  # fmt: skip
    elif path == "/big":  # n MiB in 1 MiB pieces, with a Content-Length
        n = int(parse_qs(scope["query_string"].decode())["n"][0])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(n << 20).encode())]})  # fmt: skip
        piece = b"z" * (1 << 20)
        for i in range(n):
            await send({"type": "http.response.body", "body": piece, "more_body": i < n - 1})
    elif path == "/boom":
        raise RuntimeError("boom")
    elif path == "/state":
        await _answer(send, 200, scope["state"]["greeting"].encode())
    elif path == "/pid":
        await _answer(send, 200, str(os.getpid()).encode())
    elif path == "/ignore-body":
        await _answer(send, 200, b"ignored")
    elif path == "/count-body":
        received, end = 0, "disconnect"
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            received += len(message.get("body", b""))
            if not message.get("more_body"):
                end = "complete"
                break
        await _answer(send, 200, json.dumps({"received": received, "end": end}).encode())
    elif path == "/answer-then-receive":
        await _answer(send, 200, b"answered")
        await receive()  # after the response: http.disconnect, at once
    elif path == "/wrong-length":
        n = int(parse_qs(scope["query_string"].decode())["n"][0])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"10")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"x" * n})
    elif path == "/start-then-boom":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("boom after the start")
    elif path == "/bad-header":
        await send({"type": "http.response.start", "status": 302,
                    "headers": [(b"location", b"/x\r\nx-injected: yes")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b""})
    elif path.startswith("/echo-path/"):
        await _answer(send, 200, path.encode())
    else:
        await _answer(send, 404, b"not found")


async def _answer(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/octet-stream"),
               (b"content-length", str(len(body)).encode())]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    from dockyard.httpd import serve

    port, workers = int(sys.argv[1]), int(sys.argv[2])
    uds = sys.argv[3] if len(sys.argv) > 3 else None
    stall = float(os.environ.get("ASGI_APP_STALL", "120"))
    if os.environ.get("ASGI_APP_FAIL"):  # every worker fails as it starts

        def factory() -> Any:
            raise RuntimeError("this app cannot start")

        serve(factory, port=port, workers=workers, uds=uds, grace=2.0)
    else:
        serve(lambda: app, port=port, workers=workers, uds=uds, grace=2.0, stall_timeout=stall)


if __name__ == "__main__":
    main()
