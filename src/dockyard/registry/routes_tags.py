"""Tag listing: ``GET /v2/<name>/tags/list[?n=<int>&last=<tag>]`` (end-8).

Tags come in bytewise ("ASCIIbetical") order; with ``n`` a page ends with a
``Link: <...?n=<n>&last=<tag>>; rel="next"`` header when more tags follow.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dockyard.registry.errors import RegistryError
from dockyard.registry.routes_common import (
    Registry,
    authorize,
    check_name,
    json_response,
    next_link,
    parse_page,
    thread,
)


async def list_tags(reg: Registry, request: Request, params: dict[str, str]) -> Response:
    name = check_name(params["name"])
    await authorize(reg, request, name, "pull")
    last, n = parse_page(request)
    if not await thread(reg.meta.repo_exists, name):
        raise RegistryError("NAME_UNKNOWN", detail={"name": name})
    if n == 0:
        return json_response({"name": name, "tags": []})
    page = await thread(reg.meta.tags, name, last, n)
    headers = {}
    if page.more and n is not None:
        headers["Link"] = next_link(f"/v2/{name}/tags/list", n, page.items[-1])
    return json_response({"name": name, "tags": page.items}, headers=headers)
