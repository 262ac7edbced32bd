"""Blob uploads: ``/v2/<name>/blobs/uploads/`` and ``.../uploads/<uuid>`` (end-4 .. end-6,
end-11, end-13, end-14).

An upload is a row in SQL (repository, bytes received, algorithm) and a writer in
the storage driver. Each request is all or nothing: a chunk that does not arrive
whole (the client goes away, or sends fewer bytes than its ``Content-Range``
announced) is cut off again, so the upload stays at its last whole chunk and can
be resumed, also after a server restart. A finished upload is verified against
its digest before the blob appears; a wrong digest ends the upload
(``DIGEST_INVALID``), and nothing is stored.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from dockyard.digest import Digest
from dockyard.errors import DigestMismatch
from dockyard.registry.errors import RegistryError
from dockyard.registry.metadata import BlobRecord, Upload
from dockyard.registry.routes_common import (
    Registry,
    authorize,
    check_name,
    declared_length,
    empty,
    may,
    parse_digest,
    stream_body,
    thread,
)
from dockyard.registry.storage.base import UPLOAD_ID_RE, BlobWriter, StorageNotFound

_CONTENT_RANGE_RE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?")
ALGORITHMS = ("sha256", "sha512")


def upload_location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def progress_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    """Location, Range (inclusive end; "0-0" when empty, as distribution) and the UUID."""
    return {
        "Location": upload_location(name, upload_id),
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
    }


def _created(name: str, digest: str) -> Response:
    return empty(201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})


# -- POST: start (or mount, or upload in one request) ------------------------------------


async def start_upload(reg: Registry, request: Request, params: dict[str, str]) -> Response:
    name = check_name(params["name"])
    await authorize(reg, request, name, "pull", "push")
    query = request.query_params
    mount = query.get("mount")
    if mount is not None:
        mounted = await _mount(reg, request, name, parse_digest(mount), query.get("from"))
        if mounted is not None:
            return _created(name, mounted.digest)
    digest = parse_digest(query["digest"]) if "digest" in query else None
    algorithm = digest.algorithm if digest else query.get("digest-algorithm", "sha256")
    if algorithm not in ALGORITHMS:
        raise RegistryError(
            "DIGEST_INVALID", detail={"digest-algorithm": algorithm},
            message=f"unsupported digest algorithm {algorithm!r}",
        )  # fmt: skip
    upload_id = str(uuid.uuid4())
    writer = await thread(reg.storage.writer, upload_id, algorithm=algorithm)
    try:
        upload = await thread(reg.meta.create_upload, upload_id, name, algorithm)
    except BaseException:
        await thread(writer.cancel)
        raise
    if digest is not None:  # single-request monolithic upload (end-4b)
        return await _receive_and_commit(reg, request, upload, writer, digest, single=True)
    try:
        if declared_length(request) or "transfer-encoding" in request.headers:
            await _receive(reg, request, upload, writer, check_range=False)
        received = writer.size
    finally:
        await thread(writer.close)
    return empty(202, progress_headers(name, upload_id, received))


async def _mount(
    reg: Registry, request: Request, name: str, digest: Digest, source: str | None
) -> BlobRecord | None:
    """Link the blob from ``source`` (or, without one, from any repository the caller
    may pull from) into ``name``; None when it cannot be mounted."""
    if source is not None:
        candidates = [source]
    else:
        candidates = await thread(reg.meta.repos_with_blob, digest)
    for repo in candidates:
        if repo == name:
            found = await thread(reg.meta.blob_in_repo, name, digest)
            if found is not None:
                return found
            continue
        try:
            check_name(repo)
        except RegistryError:
            continue
        if not await may(reg, request, repo, "pull"):
            continue
        mounted = await thread(reg.meta.mount_blob, name, digest, repo)
        if mounted is not None:
            return mounted
    return None


# -- the upload session ----------------------------------------------------------------


async def _open(
    reg: Registry, request: Request, params: dict[str, str]
) -> tuple[str, Upload, BlobWriter]:
    """The named upload of this repository with its writer, at its last whole chunk."""
    name = check_name(params["name"])
    await authorize(reg, request, name, "pull", "push")
    upload = await _find(reg, name, params["upload"])
    try:
        writer = await thread(
            reg.storage.writer, upload.id, resume=True, algorithm=upload.algorithm
        )
    except StorageNotFound:
        await thread(reg.meta.delete_upload, upload.id)
        raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload.id}) from None
    try:
        # a crash mid-chunk left more bytes (drop them) or lost some (report fewer)
        if writer.size > upload.received:
            await thread(writer.truncate, upload.received)
        elif writer.size < upload.received:
            await thread(reg.meta.set_upload_received, upload.id, writer.size)
    except BaseException:
        await thread(writer.close)
        raise
    return name, upload, writer


async def _find(reg: Registry, name: str, upload_id: str) -> Upload:
    upload = None
    if UPLOAD_ID_RE.fullmatch(upload_id):
        upload = await thread(reg.meta.upload, upload_id)
    if upload is None or upload.repo != name:
        raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id})
    return upload


async def _receive(
    reg: Registry, request: Request, upload: Upload, writer: BlobWriter, *, check_range: bool
) -> None:
    """Append the request body as one chunk, all or nothing; record the new offset."""
    start = writer.size
    expected: int | None = None
    content_range = request.headers.get("content-range")
    if check_range and content_range is not None:
        m = _CONTENT_RANGE_RE.fullmatch(content_range.strip())
        if m is None or int(m.group(2)) < int(m.group(1)) or int(m.group(1)) != start:
            raise RegistryError(
                "BLOB_UPLOAD_INVALID", status=416,
                detail={"Content-Range": content_range, "offset": start},
                message=f"chunk out of order: the upload is at byte {start}",
                headers=progress_headers(upload.repo, upload.id, start),
            )  # fmt: skip
        expected = int(m.group(2)) - int(m.group(1)) + 1
        declared = declared_length(request)
        if declared is not None and declared != expected:
            raise RegistryError(
                "SIZE_INVALID", detail={"Content-Range": content_range, "Content-Length": declared}
            )
    try:
        received = await stream_body(request, _appender(writer))
    except ClientDisconnect:
        await thread(writer.truncate, start)
        raise
    except BaseException:
        with contextlib.suppress(Exception):
            await thread(writer.truncate, start)
        raise
    if expected is not None and received != expected:
        await thread(writer.truncate, start)
        raise RegistryError(
            "SIZE_INVALID", detail={"Content-Range": content_range, "received": received}
        )
    if received:
        await thread(reg.meta.set_upload_received, upload.id, writer.size)


def _appender(writer: BlobWriter) -> Callable[[list[bytes]], None]:
    """The sink of ``stream_body``: each chunk appended as it came (no joined copy)."""

    def append(chunks: list[bytes]) -> None:
        for chunk in chunks:
            writer.append(chunk)

    return append


async def _receive_and_commit(
    reg: Registry, request: Request, upload: Upload, writer: BlobWriter, digest: Digest,
    *, single: bool = False,
) -> Response:
    """The last chunk (if any), then verify and store. The upload ends either way,
    except when the body of a PUT did not arrive whole: that upload stays, at its
    last whole chunk, for a retry (a ``single`` POST has no upload to come back to)."""
    committed = False
    try:
        await _receive(reg, request, upload, writer, check_range=True)
        try:
            sized = await thread(writer.commit, digest)
        except DigestMismatch as e:
            await thread(writer.cancel)
            await thread(reg.meta.delete_upload, upload.id)
            raise RegistryError(
                "DIGEST_INVALID", detail={"digest": digest}, message=e.message
            ) from None
        committed = True
        await thread(reg.meta.finish_upload, upload.id, upload.repo, sized.digest, sized.size)
    finally:
        if not committed:
            if single:
                await thread(writer.cancel)
                await thread(reg.meta.delete_upload, upload.id)
            else:
                await thread(writer.close)
    return _created(upload.repo, digest)


async def patch_upload(reg: Registry, request: Request, params: dict[str, str]) -> Response:
    name, upload, writer = await _open(reg, request, params)
    try:
        await _receive(reg, request, upload, writer, check_range=True)
        size = writer.size
    finally:
        await thread(writer.close)
    return empty(202, progress_headers(name, upload.id, size))


async def put_upload(reg: Registry, request: Request, params: dict[str, str]) -> Response:
    digest = parse_digest(request.query_params.get("digest"))
    _name, upload, writer = await _open(reg, request, params)
    return await _receive_and_commit(reg, request, upload, writer, digest)


async def upload_status(reg: Registry, request: Request, params: dict[str, str]) -> Response:
    name = check_name(params["name"])
    await authorize(reg, request, name, "pull", "push")
    upload = await _find(reg, name, params["upload"])
    return empty(204, progress_headers(name, upload.id, upload.received))


async def cancel_upload(reg: Registry, request: Request, params: dict[str, str]) -> Response:
    name = check_name(params["name"])
    await authorize(reg, request, name, "pull", "push")
    upload = await _find(reg, name, params["upload"])
    try:
        writer = await thread(reg.storage.writer, upload.id, resume=True)
    except StorageNotFound:
        pass
    else:
        await thread(writer.cancel)
    await thread(reg.meta.delete_upload, upload.id)
    return empty(204)
