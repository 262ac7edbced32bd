"""Referrers: ``GET /v2/<name>/referrers/<digest>[?artifactType=<type>]`` (end-12).

The manifests of the repository whose ``subject`` is ``<digest>``, as an OCI image
index of descriptors carrying each one's ``artifactType`` (for an image manifest
without one, its config's media type) and annotations. Never 404: an unknown
repository or subject has no referrers. A filter is reported in
``OCI-Filters-Applied``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dockyard import mediatypes as mt
from dockyard.registry.routes_common import (
    Registry,
    authorize,
    check_name,
    json_response,
    parse_digest,
    thread,
)


async def list_referrers(reg: Registry, request: Request, params: dict[str, str]) -> Response:
    name = check_name(params["name"])
    subject = parse_digest(params["digest"])
    await authorize(reg, request, name, "pull")
    artifact_type = request.query_params.get("artifactType") or None
    records = await thread(reg.meta.referrers, name, subject, artifact_type)
    manifests: list[dict[str, Any]] = []
    for r in records:
        descriptor: dict[str, Any] = {"mediaType": r.media_type, "digest": r.digest, "size": r.size}
        if r.artifact_type:
            descriptor["artifactType"] = r.artifact_type
        if r.annotations:
            descriptor["annotations"] = r.annotations
        manifests.append(descriptor)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    return json_response(index, headers=headers, media_type=mt.OCI_INDEX)
