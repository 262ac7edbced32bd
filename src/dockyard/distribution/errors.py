"""Errors of the registry client, in the library's one tree (``dockyard.errors``).

    DockyardError
     +-- RegistryError           the registry answered with an error (distribution's
     |    |                      ``{"errors": [{"code", "message"}]}``): "manifest unknown: ..."
     |    +-- Unauthorized       401 after every credential we had was tried
     |    +-- ManifestNotFound   Docker's "manifest for X not found: ..."
     +-- TransportError          the registry could not be reached or the connection broke
     +-- DigestMismatch          (dockyard.errors) content that is not what its digest says

Texts are Docker's, since scripts match on them.
"""

from __future__ import annotations

from typing import Any

from dockyard.errors import DockyardError


class RegistryError(DockyardError):
    """An error answer from a registry; ``str()`` is Docker's ``code: message``."""

    def __init__(self, message: str, code: str = "UNKNOWN", status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.http_status = status or 500

    @classmethod
    def from_response(cls, status: int, body: bytes, reason: str = "") -> RegistryError:
        """Docker's reading of an error response: the first entry of ``errors``."""
        import json

        errors: list[Any] = []
        try:
            parsed = json.loads(body) if body else None
            if isinstance(parsed, dict) and isinstance(parsed.get("errors"), list):
                errors = parsed["errors"]
            elif isinstance(parsed, dict) and "details" in parsed:  # token servers (Docker Hub)
                errors = [{"code": "UNAUTHORIZED", "message": parsed["details"]}]
        except ValueError:
            errors = []
        first = errors[0] if errors and isinstance(errors[0], dict) else None
        kind: type[RegistryError] = Unauthorized if status == 401 else RegistryError
        if first is not None:
            code = str(first.get("code") or "UNKNOWN")
            message = str(first.get("message") or "")
            text = f"{code.lower().replace('_', ' ')}: {message}"
            return kind(text, code, status)
        if status == 401:
            detail = body.decode("utf-8", "replace").strip()
            return Unauthorized(
                "unauthorized: " + (detail or "authentication required"), "UNAUTHORIZED", 401
            )
        return kind(
            f"received unexpected HTTP status: {status} {reason}".rstrip(), "UNKNOWN", status
        )


class Unauthorized(RegistryError):
    pass


class ManifestNotFound(RegistryError):
    pass


class TransportError(DockyardError):
    """Network trouble: unknown host, refused or broken connection, truncated body."""

    retryable = True


class NoBasicAuthCredentials(TransportError):
    """Docker's text when a registry asks for basic auth and we have no credentials."""

    retryable = False

    def __init__(self, method: str = "", url: str = "") -> None:
        text = "no basic auth credentials"
        op = method[:1] + method[1:].lower()
        super().__init__(f'{op} "{url}": {text}' if url else text)
        self.short = text
