"""Blobs: GET/HEAD (with Range) and DELETE of ``/v2/<name>/blobs/<digest>`` (end-2, end-10).

A blob the driver keeps as a local file goes out as a Starlette FileResponse, which
the server (dockyard.httpd) sends with pathsend, i.e. sendfile(2), without the bytes
passing through Python; ranges and drivers without local files stream from ``get``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from dockyard.digest import CHUNK, Digest
from dockyard.registry.errors import RegistryError
from dockyard.registry.routes_common import (
    Registry,
    authorize,
    check_access,
    check_name,
    empty,
    parse_digest,
    require_delete,
    thread,
)
from dockyard.registry.storage.base import FileInfo, StorageNotFound, blob_path

_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
ZERO_COPY = "http.response.zerocopysend"


def blob_headers(digest: str) -> dict[str, str]:
    return {
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
        "Cache-Control": "max-age=31536000",
        "X-Content-Type-Options": "nosniff",
    }


async def get_blob(reg: Registry, request: Request, params: dict[str, str]) -> Response:
    name = check_name(params["name"])
    digest = parse_digest(params["digest"])
    headers = blob_headers(digest)
    local = reg.storage.local_path(blob_path(digest)) if reg.sendfile else None
    found = await thread(_find, reg, request.headers.get("authorization"), name, digest, local)
    if request.headers.get("if-none-match") == headers["ETag"]:
        return empty(304, headers)
    zero_copy = None
    if isinstance(found, os.stat_result):
        assert local is not None
        if "range" not in request.headers:  # the whole file: pathsend/sendfile
            return FileResponse(
                local, stat_result=found, headers=headers, media_type="application/octet-stream"
            )
        zero_copy = local if ZERO_COPY in request.scope.get("extensions", {}) else None
        found = FileInfo(blob_path(digest), found.st_size, found.st_mtime)
    return _streamed(reg, request, digest, found, headers, zero_copy)


def _find(
    reg: Registry, authorization: str | None, name: str, digest: Digest, local: Path | None
) -> os.stat_result | FileInfo:
    """Access, the repository's link and the file, in one trip to a worker thread."""
    check_access(reg, authorization, name, "pull")
    if reg.meta.blob_in_repo(name, digest) is None:
        raise RegistryError("BLOB_UNKNOWN", detail=digest)
    try:
        return os.stat(local) if local is not None else reg.storage.stat(blob_path(digest))
    except (FileNotFoundError, StorageNotFound):
        raise RegistryError("BLOB_UNKNOWN", detail=digest) from None


def _streamed(
    reg: Registry, request: Request, digest: Digest, info: FileInfo, headers: dict[str, str],
    zero_copy: Path | None = None,
) -> Response:  # fmt: skip
    """The blob whole or one ``Range`` of it (a range that ends before it starts or
    starts past the end is 416, as the OCI conformance suite expects; other Range
    headers, such as several ranges, are ignored): from the local file ``zero_copy``
    by the server's zero-copy send, else read through Python."""
    size = info.size
    start, end, status = 0, size - 1, 200
    headers["Accept-Ranges"] = "bytes"
    wanted = _single_range(request.headers.get("range"), size)
    if isinstance(wanted, str):  # unsatisfiable
        return Response(b"", 416, {**headers, "Content-Range": f"bytes */{size}"})
    if wanted is not None:
        start, end = wanted
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    if request.method == "HEAD":
        return Response(b"", status, headers, media_type="application/octet-stream")

    if zero_copy is not None:
        return _FileRange(zero_copy, start, end - start + 1, status, headers)

    def chunks() -> Iterator[bytes]:
        left = end - start + 1
        with reg.storage.get(info.path, start) as f:
            while left > 0:
                data = f.read(min(CHUNK, left))
                if not data:
                    break
                left -= len(data)
                yield data

    return StreamingResponse(chunks(), status, headers, media_type="application/octet-stream")


class _FileRange(Response):
    """``count`` bytes of a file from ``offset``, sent with ASGI's
    ``http.response.zerocopysend`` (sendfile in dockyard.httpd)."""

    media_type = "application/octet-stream"

    def __init__(
        self, path: Path, offset: int, count: int, status: int, headers: dict[str, str]
    ) -> None:
        super().__init__(b"", status, headers)  # headers hold the range's Content-Length
        self.path, self.offset, self.count = path, offset, count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError:  # deleted since it was found
            raise RegistryError("BLOB_UNKNOWN", detail=self.path.name) from None
        with f:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})  # fmt: skip
            await send({"type": "http.response.zerocopysend", "file": f,
                        "offset": self.offset, "count": self.count})  # fmt: skip


def _single_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    if not header:
        return None
    m = _RANGE_RE.fullmatch(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix: the last N bytes
        n = int(m.group(2))
        if n == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else size - 1
    if first >= size:
        return "unsatisfiable"
    if last < first:
        return "unsatisfiable"
    return first, min(last, size - 1)


async def delete_blob(reg: Registry, request: Request, params: dict[str, str]) -> Response:
    name = check_name(params["name"])
    digest = parse_digest(params["digest"])
    await authorize(reg, request, name, "delete")
    require_delete(reg)
    if not await thread(reg.meta.unlink_blob, name, digest):
        raise RegistryError("BLOB_UNKNOWN", detail=digest)
    return empty(202, {"Docker-Content-Digest": digest})
