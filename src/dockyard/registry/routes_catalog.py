"""The repository list: ``GET /v2/_catalog[?n=<int>&last=<name>]``.

Asks the access controller for "pull" on "catalog:*"; a grant with a
``catalog_filter`` (a caller who may not see everything) lists only the
repositories the filter admits. Paginated like tags.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from dockyard.registry.metadata import Page
from dockyard.registry.routes_common import (
    Registry,
    authorize,
    json_response,
    next_link,
    parse_page,
    thread,
)

CATALOG_SCOPE = "catalog:*"
_SCAN = 500  # repositories read per query while filtering


async def catalog(reg: Registry, request: Request, params: dict[str, str]) -> Response:
    grant = await authorize(reg, request, CATALOG_SCOPE, "pull")
    last, n = parse_page(request)
    if n == 0:
        return json_response({"repositories": []})
    admit = grant.catalog_filter
    if admit is None:
        page = await thread(reg.meta.repositories, last, n)
    else:
        page = await thread(_filtered, reg, admit, last, n)
    headers = {}
    if page.more and n is not None:
        headers["Link"] = next_link("/v2/_catalog", n, page.items[-1])
    return json_response({"repositories": page.items}, headers=headers)


def _filtered(
    reg: Registry, admit: Callable[[str], bool], last: str | None, n: int | None
) -> Page:
    out: list[str] = []
    cursor = last
    while True:
        batch = reg.meta.repositories(cursor, _SCAN)
        for name in batch.items:
            if admit(name):
                if n is not None and len(out) == n:
                    return Page(out, True)
                out.append(name)
        if not batch.more:
            return Page(out, False)
        cursor = batch.items[-1]
