"""A small ASGI server for HTTP/1.1 whose ``http.response.pathsend`` is sendfile(2).

The registry (and later the engine) run on it. Servers that are kept well (granian,
uvicorn) either copy a file response through user space in small pieces or lack
pathsend; a registry spends most of its bytes on whole-blob GETs, and sendfile sends
them with no copy at all. Requests are parsed by httptools (llhttp); everything else
(framing, keep-alive, pipelining, flow control, workers) is here.

    connection.py   one connection: parsing, the ASGI request/response cycle, sendfile
    server.py       listening socket, worker processes, signals, lifespan
"""

from dockyard.httpd.server import serve

__all__ = ["serve"]
