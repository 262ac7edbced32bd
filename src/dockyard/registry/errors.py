"""The distribution-spec error table, and the one exception the routes raise.

Each code has its message and HTTP status, as distribution registers them
(``registry/api/errcode/register.go``) and the OCI distribution-spec lists them.
A route raises ``RegistryError("BLOB_UNKNOWN", detail=digest)``; the app renders
any ``DockyardError`` at the edge as ``{"errors": [{"code", "message", "detail"}]}``
with the code's status (``render``). Library errors carry their own code
(``DigestMismatch`` -> ``DIGEST_INVALID``); ``access.Unauthorized`` adds its
``WWW-Authenticate`` challenge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dockyard.errors import DockyardError


@dataclass(frozen=True)
class ErrorCode:
    code: str
    message: str
    status: int


TABLE: dict[str, ErrorCode] = {
    e.code: e
    for e in (
        ErrorCode("BLOB_UNKNOWN", "blob unknown to registry", 404),
        ErrorCode("BLOB_UPLOAD_INVALID", "blob upload invalid", 400),
        ErrorCode("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404),
        ErrorCode("DIGEST_INVALID", "provided digest did not match uploaded content", 400),
        ErrorCode("MANIFEST_BLOB_UNKNOWN", "manifest references a manifest or blob unknown to "
                  "registry", 400),
        ErrorCode("MANIFEST_INVALID", "manifest invalid", 400),
        ErrorCode("MANIFEST_UNKNOWN", "manifest unknown", 404),
        ErrorCode("NAME_INVALID", "invalid repository name", 400),
        ErrorCode("NAME_UNKNOWN", "repository name not known to registry", 404),
        ErrorCode("SIZE_INVALID", "provided length did not match content length", 400),
        ErrorCode("UNAUTHORIZED", "authentication required", 401),
        ErrorCode("DENIED", "requested access to the resource is denied", 403),
        ErrorCode("UNSUPPORTED", "the operation is unsupported", 405),
        ErrorCode("TOOMANYREQUESTS", "too many requests", 429),
        # distribution's own, outside the OCI list
        ErrorCode("PAGINATION_NUMBER_INVALID", "invalid number of results requested", 400),
        ErrorCode("UNKNOWN", "unknown error", 500),
    )
}  # fmt: skip


class RegistryError(DockyardError):
    """One distribution-spec error; ``status`` overrides the table's (416, 413, 415)."""

    def __init__(
        self,
        code: str,
        detail: Any = None,
        *,
        message: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        entry = TABLE[code]
        super().__init__(message or entry.message)
        self.code = code
        self.http_status = status or entry.status
        self.detail = detail
        self.headers = dict(headers or {})


class ManifestBlobUnknown(RegistryError):
    """A manifest names blobs or child manifests the repository lacks: one error each."""

    def __init__(self, digests: list[str]) -> None:
        super().__init__("MANIFEST_BLOB_UNKNOWN", detail=digests[0] if digests else None)
        self.digests = digests


@dataclass(frozen=True)
class Rendered:
    status: int
    body: bytes
    headers: dict[str, str]


def render(err: DockyardError) -> Rendered:
    """The JSON envelope, status and extra headers for any library or registry error."""
    code = err.code if err.code in TABLE else "UNKNOWN"
    status = err.http_status if err.code in TABLE else 500
    headers: dict[str, str] = {}
    if isinstance(err, ManifestBlobUnknown):
        errors = [_entry(code, err.message, d) for d in err.digests]
    else:
        detail = err.detail if isinstance(err, RegistryError) else None
        errors = [_entry(code, err.message, detail)]
    if isinstance(err, RegistryError):
        headers.update(err.headers)
    challenge = getattr(err, "challenge", None)
    if isinstance(challenge, str) and challenge:
        headers["WWW-Authenticate"] = challenge
    if code == "TOOMANYREQUESTS":
        headers.setdefault("Retry-After", str(getattr(err, "retry_after", 1)))
    body = json.dumps({"errors": errors}, separators=(",", ":")).encode()
    return Rendered(status, body, headers)


def _entry(code: str, message: str, detail: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        entry["detail"] = detail
    return entry
