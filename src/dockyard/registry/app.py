"""The registry as an ASGI app: ``create_app(data_dir)`` serves the OCI distribution API.

    app = create_app(Path("/var/lib/dockyard-registry"))            # no auth
    app = create_app(data_dir, access=controller, routes=[...])     # accounts/tokens

``/v2/...`` is routed here by regular expressions, the way distribution does it
(a repository name has slashes, so ``<name>`` is whatever precedes the last
``/manifests/``, ``/blobs/``, ``/tags/list`` or ``/referrers/``), then checked
against the spec's grammar (NAME_INVALID). Other paths (``/token``, ``/api/``)
go to the extra Starlette ``routes``. Every ``/v2`` answer carries
``Docker-Distribution-Api-Version: registry/2.0``; every error is the spec's JSON
envelope (errors.py).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.types import Receive, Scope, Send

from dockyard.errors import DockyardError
from dockyard.registry import (
    routes_blobs,
    routes_catalog,
    routes_manifests,
    routes_referrers,
    routes_tags,
    routes_uploads,
)
from dockyard.registry.access import AccessController, AllowAll
from dockyard.registry.db import Database
from dockyard.registry.errors import RegistryError, render
from dockyard.registry.metadata import Metadata
from dockyard.registry.routes_common import (
    API_VERSION_HEADER,
    MAX_MANIFEST_BYTES,
    Handler,
    Registry,
    authorize,
    head_of,
    json_response,
)
from dockyard.registry.storage import StorageDriver, make_driver

log = logging.getLogger("dockyard.registry")

DB_FILE = "registry.db"


async def api_version(reg: Registry, request: Request, params: dict[str, str]) -> Response:
    """``GET /v2/`` (end-1): 200 when the caller may talk to the registry."""
    await authorize(reg, request, "", "pull")
    return json_response({})


# (pattern, {method: handler}); the first pattern that matches the path wins
ROUTES: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
    (re.compile(r"/v2/?"), {"GET": api_version, "HEAD": api_version}),
    (re.compile(r"/v2/_catalog"), {"GET": routes_catalog.catalog}),
    (re.compile(r"/v2/(?P<name>.+)/tags/list"), {"GET": routes_tags.list_tags}),
    (
        re.compile(r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)"),
        {
            "GET": routes_manifests.get_manifest,
            "HEAD": routes_manifests.get_manifest,
            "PUT": routes_manifests.put_manifest,
            "DELETE": routes_manifests.delete_manifest,
        },
    ),
    (re.compile(r"/v2/(?P<name>.+)/blobs/uploads/?"), {"POST": routes_uploads.start_upload}),
    (
        re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<upload>[^/]+)"),
        {
            "GET": routes_uploads.upload_status,
            "PATCH": routes_uploads.patch_upload,
            "PUT": routes_uploads.put_upload,
            "DELETE": routes_uploads.cancel_upload,
        },
    ),
    (
        re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)"),
        {
            "GET": routes_blobs.get_blob,
            "HEAD": routes_blobs.get_blob,
            "DELETE": routes_blobs.delete_blob,
        },
    ),
    (
        re.compile(r"/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)"),
        {"GET": routes_referrers.list_referrers},
    ),
]


class V2:
    """The ``/v2`` ASGI app: route, call the handler, render errors, add the API header."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self._dispatch(request)
        except ClientDisconnect:
            # the body ended before its Content-Length (the handler rolled back); a
            # client that only half-closed still reads why
            err = RegistryError(
                "SIZE_INVALID", message="request body shorter than its Content-Length"
            )
            response = _error_response(request, err)
        except DockyardError as err:
            response = _error_response(request, err)
            await _drain(request)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            response = _error_response(request, RegistryError("UNKNOWN"))
        response.headers.setdefault(*API_VERSION_HEADER)
        with contextlib.suppress(OSError):  # the client is gone
            await response(scope, receive, send)

    async def _dispatch(self, request: Request) -> Response:
        path = request.scope["path"]
        for pattern, methods in ROUTES:
            m = pattern.fullmatch(path)
            if m is None:
                continue
            handler = methods.get(request.method)
            if handler is None:
                allow = ", ".join(sorted(methods))
                raise RegistryError(
                    "UNSUPPORTED", detail={"method": request.method}, headers={"Allow": allow},
                    message=f"method {request.method} not allowed here",
                )  # fmt: skip
            return await handler(self.registry, request, m.groupdict())
        raise RegistryError(
            "UNSUPPORTED", status=404, detail={"path": path}, message="unknown API endpoint"
        )


DRAIN_LIMIT = 64 << 20


async def _drain(request: Request) -> None:
    """Read and drop a body the handler refused unread (an out-of-order chunk, a
    denied push), so the keep-alive connection stays in step for the next request.
    Past DRAIN_LIMIT the connection is left to close instead."""
    seen = 0
    with contextlib.suppress(ClientDisconnect, RuntimeError):
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > DRAIN_LIMIT:
                break


def _error_response(request: Request, err: DockyardError) -> Response:
    rendered = render(err)
    response = Response(
        rendered.body, rendered.status, rendered.headers, media_type="application/json"
    )
    return head_of(request, response)


def create_app(
    data_dir: Path,
    access: AccessController | None = None,
    *,
    storage: StorageDriver | None = None,
    db: Database | None = None,
    routes: Sequence[BaseRoute] = (),
    middleware: Sequence[Middleware] = (),
    sendfile: bool = True,
    delete_enabled: bool = True,
    max_manifest_bytes: int = MAX_MANIFEST_BYTES,
) -> Starlette:
    """The registry app over ``data_dir`` (SQLite metadata, filesystem blobs by default).

    ``access`` decides who may do what (default: everyone everything); ``routes``
    are extra Starlette routes outside ``/v2`` (``/token``, ``/api/``) and
    ``middleware`` wraps the whole app (tokens.setup_auth provides all three);
    ``db`` lets them share the registry's database. ``sendfile=False`` streams blobs through
    Python (for comparison; the default sends files without copying them).
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    database = db or Database(data_dir / DB_FILE)
    registry = Registry(
        storage=storage or make_driver("filesystem", data_dir),
        meta=Metadata(database),
        access=access or AllowAll(),
        sendfile=sendfile,
        delete_enabled=delete_enabled,
        max_manifest_bytes=max_manifest_bytes,
    )
    app = Starlette(routes=[*routes, Mount("/v2", app=V2(registry))], middleware=middleware)
    app.state.registry = registry
    return app
