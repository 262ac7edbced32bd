"""Manifests: GET/HEAD/PUT/DELETE of ``/v2/<name>/manifests/<tag-or-digest>`` (end-3,
end-7, end-9).

A manifest is kept as the exact bytes received (in storage, under its digest) and
served with its own media type as Content-Type. Accepted: OCI image manifest and
index, Docker schema2 manifest and manifest list, at most 4 MiB. Every blob a
manifest names must be in the repository, and so must every child of an index;
the ``subject`` need not exist yet (referrers may come first).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dockyard import mediatypes as mt
from dockyard.digest import Digest
from dockyard.errors import InvalidArgument
from dockyard.reference import is_valid_tag
from dockyard.registry.errors import RegistryError
from dockyard.registry.metadata import BLOB, MANIFEST, ManifestRecord, Reference
from dockyard.registry.routes_common import (
    Registry,
    authorize,
    check_access,
    check_name,
    empty,
    parse_reference,
    read_body,
    require_delete,
    thread,
)
from dockyard.registry.storage.base import StorageNotFound, blob_path

MANIFEST_TYPES = (mt.OCI_MANIFEST, mt.DOCKER_MANIFEST)
INDEX_TYPES = (mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST)
SUPPORTED = (*MANIFEST_TYPES, *INDEX_TYPES)
# layers that may live elsewhere (a descriptor with ``urls``): not required in the repository
FOREIGN_LAYERS = (
    mt.DOCKER_LAYER_FOREIGN,
    mt.OCI_LAYER_NONDIST_TAR,
    mt.OCI_LAYER_NONDIST_GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)


@dataclass
class Parsed:
    media_type: str
    refs: list[Reference] = field(default_factory=list)
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None


def _invalid(detail: Any, message: str | None = None) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", detail=detail, message=message)


def _descriptor(value: Any, where: str) -> tuple[str, Digest, int, dict[str, Any]]:
    if not isinstance(value, dict):
        raise _invalid({where: "not a descriptor"}, f"{where}: descriptor must be an object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid({where: "mediaType"}, f"{where}: descriptor has no mediaType")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid({where: "size"}, f"{where}: descriptor size must be an integer >= 0")
    try:
        parsed = Digest(digest) if isinstance(digest, str) else Digest("")
    except InvalidArgument:
        raise _invalid({where: "digest"}, f"{where}: invalid descriptor digest") from None
    return media_type, parsed, size, value


def parse_manifest(body: bytes, content_type: str | None) -> Parsed:
    """Check a manifest's shape and list what it names; MANIFEST_INVALID or 415 otherwise."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _invalid({"error": str(e)}, f"manifest is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    if doc.get("schemaVersion") != 2 or isinstance(doc.get("schemaVersion"), bool):
        raise _invalid({"schemaVersion": doc.get("schemaVersion")}, "schemaVersion must be 2")
    header_type = (content_type or "").split(";")[0].strip().lower() or None
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid({"mediaType": declared}, "mediaType must be a string")
    if declared and header_type in SUPPORTED and header_type != declared:
        raise _invalid(
            {"mediaType": declared, "Content-Type": header_type},
            "Content-Type does not match the manifest's mediaType",
        )
    media_type = declared or (header_type if header_type in SUPPORTED else None)
    if media_type is None:  # neither says: OCI, recognised by shape
        media_type = mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST
    if media_type not in SUPPORTED:
        raise RegistryError(
            "UNSUPPORTED", status=415, detail={"mediaType": media_type},
            message=f"unsupported manifest media type {media_type}",
        )  # fmt: skip
    out = Parsed(media_type)
    annotations = doc.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict) or not all(
            isinstance(v, str) for v in annotations.values()
        ):
            raise _invalid({"annotations": "not a map of strings"})
        out.annotations = annotations or None
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid({"artifactType": artifact_type})
    if "subject" in doc:
        out.subject = _descriptor(doc["subject"], "subject")[1]
    if media_type in MANIFEST_TYPES:
        config_type, config_digest, config_size, _ = _descriptor(doc.get("config"), "config")
        out.refs.append(Reference(config_digest, config_size, BLOB))
        layers = doc.get("layers", [] if media_type == mt.OCI_MANIFEST else None)
        if not isinstance(layers, list):
            raise _invalid({"layers": "missing"}, "layers must be a list")
        for i, layer in enumerate(layers):
            layer_type, digest, size, raw = _descriptor(layer, f"layers[{i}]")
            if raw.get("urls") and layer_type in FOREIGN_LAYERS:
                continue
            out.refs.append(Reference(digest, size, BLOB))
        out.artifact_type = artifact_type or config_type
    else:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise _invalid({"manifests": "missing"}, "manifests must be a list")
        for i, child in enumerate(children):
            _, digest, size, _ = _descriptor(child, f"manifests[{i}]")
            out.refs.append(Reference(digest, size, MANIFEST))
        out.artifact_type = artifact_type or None
    return out


def manifest_headers(digest: str) -> dict[str, str]:
    return {
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
        "X-Content-Type-Options": "nosniff",
    }


def _accepts(accept: str | None, media_type: str) -> bool:
    """Minimal negotiation: no Accept, a wildcard, or the manifest's own type."""
    if not accept:
        return True
    types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    types.discard("")
    return not types or bool(types & {media_type, "*/*", "application/*"})


def _resolve(reg: Registry, name: str, reference: str) -> ManifestRecord:
    tag, digest = parse_reference(reference)
    if tag is not None:
        found = reg.meta.tag(name, tag)
        if found is None:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"Tag": tag})
        digest = Digest(found)
    assert digest is not None
    record = reg.meta.manifest(name, digest)
    if record is None:
        raise RegistryError("MANIFEST_UNKNOWN", detail={"Name": name, "Revision": digest})
    return record


def _fetch(
    reg: Registry, authorization: str | None, name: str, reference: str, body: bool
) -> tuple[ManifestRecord, bytes]:
    """Access, the manifest's record and (for GET) its bytes, in one worker-thread trip."""
    check_access(reg, authorization, name, "pull")
    record = _resolve(reg, name, reference)
    if not body:
        return record, b""
    try:
        return record, _read_all(reg, blob_path(Digest(record.digest)))
    except StorageNotFound:
        raise RegistryError("MANIFEST_UNKNOWN", detail={"Revision": record.digest}) from None


async def get_manifest(reg: Registry, request: Request, params: dict[str, str]) -> Response:
    name = check_name(params["name"])
    parse_reference(params["reference"])
    record, body = await thread(
        _fetch, reg, request.headers.get("authorization"), name, params["reference"],
        request.method != "HEAD",
    )  # fmt: skip
    # clients may send several Accept headers (Docker sends one per media type)
    if not _accepts(",".join(request.headers.getlist("accept")), record.media_type):
        raise RegistryError(
            "MANIFEST_UNKNOWN", detail={"mediaType": record.media_type},
            message=f"manifest of type {record.media_type} not in the request's Accept",
        )  # fmt: skip
    headers = manifest_headers(record.digest)
    if request.headers.get("if-none-match") == headers["ETag"]:
        return empty(304, headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(record.size)
        return Response(b"", 200, headers, media_type=record.media_type)
    return Response(body, 200, headers, media_type=record.media_type)


def _read_all(reg: Registry, path: str) -> bytes:
    with reg.storage.get(path) as f:
        return f.read()


async def put_manifest(reg: Registry, request: Request, params: dict[str, str]) -> Response:
    name = check_name(params["name"])
    tag, wanted = parse_reference(params["reference"])
    extra_tags = request.query_params.getlist("tag") if wanted is not None else []
    for extra in extra_tags:
        if not is_valid_tag(extra):
            raise RegistryError("MANIFEST_INVALID", detail={"tag": extra}, message="invalid tag")
    await authorize(reg, request, name, "pull", "push")
    body = await read_body(request, reg.max_manifest_bytes)
    parsed = await thread(parse_manifest, body, request.headers.get("content-type"))
    algorithm = wanted.algorithm if wanted is not None else "sha256"
    digest = Digest(f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}")
    if wanted is not None and digest != wanted:
        raise RegistryError(
            "DIGEST_INVALID", detail={"digest": wanted, "computed": digest},
            message=f"manifest digest {digest} does not match {wanted}",
        )  # fmt: skip
    tags = ([tag] if tag else []) + extra_tags
    record = ManifestRecord(
        name, digest, parsed.media_type, len(body), parsed.subject, parsed.artifact_type,
        parsed.annotations,
    )  # fmt: skip
    await thread(reg.storage.put, blob_path(digest), body)
    await thread(reg.meta.put_manifest, record, parsed.refs, tags)
    headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
    if parsed.subject is not None:
        headers["OCI-Subject"] = parsed.subject
    if extra_tags:
        headers["OCI-Tag"] = ", ".join(extra_tags)
    return empty(201, headers)


async def delete_manifest(reg: Registry, request: Request, params: dict[str, str]) -> Response:
    name = check_name(params["name"])
    tag, digest = parse_reference(params["reference"])
    await authorize(reg, request, name, "delete")
    require_delete(reg)
    if tag is not None:
        if not await thread(reg.meta.delete_tag, name, tag):
            raise RegistryError("MANIFEST_UNKNOWN", detail={"Tag": tag})
    else:
        assert digest is not None
        if not await thread(reg.meta.delete_manifest, name, digest):
            raise RegistryError("MANIFEST_UNKNOWN", detail={"Name": name, "Revision": digest})
    return empty(202)
