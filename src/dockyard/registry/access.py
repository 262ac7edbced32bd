"""What the routes ask before serving a request; accounts.py provides the real one.

The routes call ``controller.check(authorization_header, repository, actions)``:
it returns the granted actions (a subset of {"pull", "push", "delete"}) or raises
``Unauthorized`` (401 + WWW-Authenticate challenge) / ``Denied`` (403).
``repository`` is "" for registry-wide checks (``GET /v2/``, where "pull" on ""
means "may talk to the registry") and "catalog:*" for ``_catalog``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from dockyard.errors import DockyardError


@dataclass(frozen=True)
class Principal:
    name: str = ""  # "" = anonymous
    kind: str = "anonymous"  # anonymous | user | robot


class Unauthorized(DockyardError):
    http_status = 401
    code = "UNAUTHORIZED"

    def __init__(self, message: str, challenge: str) -> None:
        super().__init__(message)
        self.challenge = challenge  # the WWW-Authenticate header value


class Denied(DockyardError):
    http_status = 403
    code = "DENIED"


@dataclass
class Grant:
    principal: Principal
    actions: set[str] = field(default_factory=set)
    # for "catalog:*" only: None = list every repository; otherwise list only the
    # repositories it returns True for (those the principal may pull)
    catalog_filter: Callable[[str], bool] | None = None


class AccessController(Protocol):
    def check(self, authorization: str | None, repository: str, actions: set[str]) -> Grant:
        """Grant ``actions`` on ``repository`` or raise Unauthorized / Denied."""
        ...


class AllowAll:
    """No authentication: everyone may do everything (the embedded default)."""

    def check(self, authorization: str | None, repository: str, actions: set[str]) -> Grant:
        return Grant(Principal(), set(actions))
