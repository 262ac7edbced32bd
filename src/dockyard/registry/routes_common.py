"""What every route handler shares: the registry's parts, names, access, bodies, responses.

Handlers are ``async def handler(reg, request, params) -> Response``; ``params``
holds the path's parts (``name``, ``reference``, ``digest``, ``upload``). They do
their blocking work (SQL, files, the access controller) in worker threads with
``thread(...)`` and raise ``RegistryError`` (or any ``DockyardError``), which the
dispatcher in app.py renders.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from dockyard.digest import Digest
from dockyard.errors import InvalidArgument
from dockyard.reference import is_valid_tag
from dockyard.registry.access import AccessController, Denied, Grant, Unauthorized
from dockyard.registry.errors import RegistryError
from dockyard.registry.metadata import Metadata
from dockyard.registry.storage.base import StorageDriver

API_VERSION_HEADER = ("Docker-Distribution-Api-Version", "registry/2.0")
MAX_MANIFEST_BYTES = 4 << 20
MAX_PAGE = 10_000
BATCH = 4 << 20  # request bytes gathered before one trip to a worker thread

# distribution-spec: <name>, and its usual 255-character limit
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*", re.ASCII)
NAME_MAX = 255

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Registry:
    """The parts a request needs."""

    storage: StorageDriver
    meta: Metadata
    access: AccessController
    sendfile: bool = True  # serve blobs with pathsend/sendfile when the driver has local files
    delete_enabled: bool = True  # DELETE of blobs, manifests and tags (else 405 UNSUPPORTED)
    max_manifest_bytes: int = MAX_MANIFEST_BYTES


Handler = Callable[[Registry, Request, dict[str, str]], Awaitable[Response]]


async def thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await run_in_threadpool(fn, *args, **kwargs)


# -- names, tags, digests --------------------------------------------------------------


def check_name(name: str) -> str:
    if len(name) > NAME_MAX or NAME_RE.fullmatch(name) is None:
        raise RegistryError("NAME_INVALID", detail={"name": name})
    return name


def parse_digest(value: str | None) -> Digest:
    if not value:
        raise RegistryError("DIGEST_INVALID", detail="digest missing", message="digest missing")
    try:
        return Digest(value)
    except InvalidArgument as e:
        raise RegistryError("DIGEST_INVALID", detail={"digest": value}, message=e.message) from None


def parse_reference(value: str) -> tuple[str | None, Digest | None]:
    """(tag, None) or (None, digest) for a manifest reference; MANIFEST_INVALID otherwise."""
    if ":" in value:
        return None, parse_digest(value)
    if not is_valid_tag(value):
        raise RegistryError(
            "MANIFEST_INVALID", detail={"tag": value}, message=f"invalid tag {value!r}"
        )
    return value, None


def parse_page(request: Request) -> tuple[str | None, int | None]:
    """The ``last`` and ``n`` pagination parameters."""
    last = request.query_params.get("last") or None
    raw = request.query_params.get("n")
    if raw is None or raw == "":
        return last, None
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 0:
        raise RegistryError("PAGINATION_NUMBER_INVALID", detail={"n": raw})
    return last, min(n, MAX_PAGE)


def next_link(path: str, n: int, last: str) -> str:
    return f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'


# -- access ----------------------------------------------------------------------------


async def authorize(reg: Registry, request: Request, repo: str, *actions: str) -> Grant:
    """Ask the access controller; raises Unauthorized (401) or Denied (403)."""
    return await thread(check_access, reg, request.headers.get("authorization"), repo, *actions)


def check_access(reg: Registry, authorization: str | None, repo: str, *actions: str) -> Grant:
    """``authorize`` for code already in a worker thread (one trip for several steps)."""
    wanted = set(actions)
    grant = reg.access.check(authorization, repo, wanted)
    if not wanted <= grant.actions:
        raise Denied(f"requested access to the resource is denied: {repo}")
    return grant


async def may(reg: Registry, request: Request, repo: str, *actions: str) -> bool:
    """Like authorize, but a refusal is an answer, not an error (for mounts)."""
    try:
        await authorize(reg, request, repo, *actions)
    except (Unauthorized, Denied):
        return False
    return True


# -- request bodies --------------------------------------------------------------------


def declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 0:
        raise RegistryError("SIZE_INVALID", detail={"Content-Length": raw})
    return n


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing more than ``limit`` bytes with 413 SIZE_INVALID."""
    declared = declared_length(request)
    too_big = RegistryError(
        "SIZE_INVALID", status=413, detail={"limit": limit},
        message=f"payload larger than {limit} bytes",
    )  # fmt: skip
    if declared is not None and declared > limit:
        raise too_big
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        parts.append(chunk)
    return b"".join(parts)


async def stream_body(request: Request, sink: Callable[[list[bytes]], None]) -> int:
    """Feed the body to ``sink`` in batches of ~BATCH bytes (lists of the chunks as
    received, in order) in worker threads; returns its size.

    One batch is in the sink while the next is being received (at most one: the
    sink sees the batches one at a time, in order, and memory stays ~2 batches).
    This returns or raises only once no sink call runs any more, so the caller may
    cut the data back. Raises starlette's ClientDisconnect when the client goes
    away mid-body, and whatever the sink raised.
    """
    batch: list[bytes] = []
    pending = 0
    total = 0
    running: asyncio.Future[None] | None = None
    try:
        async for chunk in request.stream():
            if not chunk:
                continue
            batch.append(chunk)
            pending += len(chunk)
            total += len(chunk)
            if pending >= BATCH:
                if running is not None:
                    await _settle(running)
                running = asyncio.ensure_future(thread(sink, batch))
                batch, pending = [], 0
        if running is not None:
            await _settle(running)
        if batch:
            await thread(sink, batch)
    finally:
        if running is not None and not running.done():
            await _settle(running, quiet=True)
    return total


async def _settle(fut: asyncio.Future[None], *, quiet: bool = False) -> None:
    """Wait until ``fut`` (a sink call in a worker thread) is done, even when this
    task is cancelled meanwhile (the cancellation is raised afterwards); then raise
    its error unless ``quiet``."""
    cancelled = False
    while not fut.done():
        try:
            await asyncio.wait((fut,))  # never cancels ``fut``
        except asyncio.CancelledError:
            cancelled = True
    if not fut.cancelled():
        fut.exception()  # retrieved: asyncio does not log an error that is dropped here
    if cancelled:
        raise asyncio.CancelledError
    if not quiet:
        fut.result()


# -- responses -------------------------------------------------------------------------


def require_delete(reg: Registry) -> None:
    if not reg.delete_enabled:
        raise RegistryError("UNSUPPORTED", detail="deletes are disabled on this registry")


def empty(status: int, headers: Mapping[str, str] | None = None) -> Response:
    out = dict(headers or {})
    out["Content-Length"] = "0"
    return Response(b"", status_code=status, headers=out)


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None,
    media_type: str = "application/json",
) -> Response:  # fmt: skip
    body = json.dumps(data, separators=(",", ":")).encode()
    return Response(body, status_code=status, headers=dict(headers or {}), media_type=media_type)


def head_of(request: Request, response: Response) -> Response:
    """For HEAD: the same status and headers, no body (Content-Length kept)."""
    if request.method != "HEAD":
        return response
    return Response(b"", status_code=response.status_code, headers=dict(response.headers))
