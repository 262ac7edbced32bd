"""``search``: Docker Hub's ``/v1/search`` API, or a registry's catalog.

``TERM`` may start with a registry host (``127.0.0.1:5000/busy``). The index
is asked ``GET /v1/search?q=TERM&n=LIMIT`` (Docker Hub: index.docker.io);
registries without that endpoint (distribution, dockyard's own) answer 404,
and then the ``/v2/_catalog`` listing is filtered by the term instead: every
repository whose name contains it, shown as ``host/name`` with no description,
no stars and neither official nor automated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dockyard.distribution.client import Registry, connect
from dockyard.distribution.credentials import CredentialStore
from dockyard.distribution.endpoints import DOCKER_HUB, DOCKER_HUB_API, Endpoint, RegistryConfig
from dockyard.distribution.errors import RegistryError
from dockyard.errors import InvalidArgument


@dataclass(frozen=True)
class SearchResult:
    name: str
    description: str = ""
    star_count: int = 0
    is_official: bool = False
    is_automated: bool = False


def split_term(term: str) -> tuple[str, str]:
    """(registry domain, term): Docker's rule for a leading host in the term."""
    first, slash, rest = term.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return DOCKER_HUB, term


def parse_filters(filters: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in filters:
        key, eq, value = f.partition("=")
        key = key.strip().lower()
        if not eq:
            raise InvalidArgument(f"bad format of filter (expected name=value): {f}")
        if key not in ("stars", "is-official", "is-automated"):
            raise InvalidArgument(f"invalid filter '{key}'")
        if key == "stars":
            try:
                int(value)
            except ValueError as e:
                raise InvalidArgument(f"invalid filter 'stars={value}'") from e
        elif value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter '{key}={value}'")
        out[key] = value
    return out


def _keep(r: SearchResult, filters: dict[str, str]) -> bool:
    if "stars" in filters and r.star_count < int(filters["stars"]):
        return False
    for key, attr in (("is-official", r.is_official), ("is-automated", r.is_automated)):
        if key in filters and attr != (filters[key].lower() in ("true", "1")):
            return False
    return True


def _v1(registry: Registry, term: str, limit: int) -> list[SearchResult] | None:
    try:
        response = registry.request("GET", "/v1/search", params={"q": term, "n": limit})
    except RegistryError as e:
        if e.status in (404, 405):
            return None
        raise
    try:
        data: Any = response.json()
    except ValueError:
        return None
    out = []
    for item in data.get("results") or [] if isinstance(data, dict) else []:
        if not isinstance(item, dict):
            continue
        out.append(
            SearchResult(
                name=str(item.get("name") or item.get("repo_name") or ""),
                description=str(item.get("description") or item.get("short_description") or ""),
                star_count=int(item.get("star_count") or 0),
                is_official=bool(item.get("is_official")),
                is_automated=bool(item.get("is_automated")),
            )
        )
    return out


def search(
    term: str,
    *,
    limit: int = 25,
    filters: list[str] | None = None,
    config: RegistryConfig | None = None,
    credentials: CredentialStore | None = None,
) -> list[SearchResult]:
    if limit < 1 or limit > 100:
        raise InvalidArgument(f"Limit {limit} is outside the range of [1, 100]")
    wanted = parse_filters(filters or [])
    domain, query = split_term(term)
    cfg = config or RegistryConfig()
    creds = (credentials or CredentialStore()).get(domain)
    if domain == DOCKER_HUB:
        registry = Registry(Endpoint("index.docker.io"), verify=cfg.ssl_context(
            Endpoint(DOCKER_HUB_API)
        ))
    else:
        registry = connect(domain, cfg, creds)
    with registry:
        found = _v1(registry, query, limit)
        if found is None:
            found = [
                SearchResult(f"{domain}/{name}")
                for name in registry.catalog()
                if query.lower() in name.lower()
            ][:limit]
    return [r for r in found if _keep(r, wanted)][:limit]
