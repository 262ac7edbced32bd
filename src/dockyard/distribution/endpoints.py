"""Where a registry name is reached: API host, scheme, TLS, mirrors.

Docker's rules: ``docker.io`` is served by ``registry-1.docker.io``; https is
used everywhere, except that hosts marked insecure (``insecure-registries`` in
``<store root>/config.json``, ``$DOCKYARD_INSECURE_REGISTRIES``, comma
separated, host[:port] or CIDR) and ``localhost`` / 127.0.0.0/8 / ::1 may fall
back to plain http (https without certificate checks is tried first).
``registry-mirrors`` from the same file are tried first for docker.io pulls.
Extra CA certificates for a host are read from ``<store root>/certs.d/<host>/*.crt``
and ``/etc/docker/certs.d/<host>/*.crt``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dockyard.errors import InvalidArgument

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_INDEX = "index.docker.io"
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
INSECURE_ENV = "DOCKYARD_INSECURE_REGISTRIES"


def api_host(domain: str) -> str:
    """The host[:port] that serves the API for a reference's domain."""
    if domain in (DOCKER_HUB, DOCKER_HUB_INDEX, ""):
        return DOCKER_HUB_API
    return domain


@dataclass(frozen=True)
class Endpoint:
    """One way to talk to a registry: ``https://host`` or ``http://host`` (+ path prefix)."""

    host: str
    scheme: str = "https"
    verify: bool = True
    mirror: bool = False
    prefix: str = ""  # a mirror URL's path

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.prefix}"


def _host_only(host: str) -> str:
    """``host`` without ``:port`` (IPv6 brackets dropped)."""
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    name = _host_only(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass
class RegistryConfig:
    insecure: list[str] = field(default_factory=list)
    mirrors: list[str] = field(default_factory=list)
    cert_dirs: list[Path] = field(default_factory=list)

    @classmethod
    def load(cls, root: Path | None) -> RegistryConfig:
        insecure: list[str] = []
        mirrors: list[str] = []
        cert_dirs = [Path("/etc/docker/certs.d")]
        if root is not None:
            cert_dirs.insert(0, root / "certs.d")
            path = root / "config.json"
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                data = {}
            except (OSError, ValueError) as e:
                raise InvalidArgument(f"{path}: cannot read: {e}") from e
            if not isinstance(data, dict):
                raise InvalidArgument(f"{path}: not a JSON object")
            for key, out in (("insecure-registries", insecure), ("registry-mirrors", mirrors)):
                value = data.get(key) or []
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise InvalidArgument(f"{path}: {key} must be a list of strings")
                out.extend(value)
        env = os.environ.get(INSECURE_ENV, "")
        insecure.extend(h.strip() for h in env.split(",") if h.strip())
        return cls(insecure, mirrors, cert_dirs)

    def is_insecure(self, host: str) -> bool:
        """Docker's rule: listed hosts and CIDRs, plus loopback."""
        if is_loopback(host):
            return True
        name = _host_only(host)
        for entry in self.insecure:
            entry = entry.removeprefix("http://").removeprefix("https://").rstrip("/")
            if entry in (host, name):
                return True
            if "/" in entry:
                try:
                    net = ipaddress.ip_network(entry, strict=False)
                    if ipaddress.ip_address(name) in net:
                        return True
                except ValueError:
                    continue
        return False

    def endpoints(self, domain: str) -> list[Endpoint]:
        host = api_host(domain)
        out = [Endpoint(host, "https", True)]
        if self.is_insecure(host):
            out = [Endpoint(host, "https", False), Endpoint(host, "http", False)]
        return out

    def pull_endpoints(self, domain: str) -> list[Endpoint]:
        """Mirrors first (docker.io only), then the registry itself."""
        out: list[Endpoint] = []
        if api_host(domain) == DOCKER_HUB_API:
            for url in self.mirrors:
                parts = urlsplit(url if "://" in url else "https://" + url)
                if not parts.netloc:
                    continue
                insecure = parts.scheme == "http" or self.is_insecure(parts.netloc)
                out.append(
                    Endpoint(
                        parts.netloc,
                        parts.scheme or "https",
                        not insecure,
                        mirror=True,
                        prefix=parts.path.rstrip("/"),
                    )
                )
        return out + self.endpoints(domain)

    def ssl_context(self, endpoint: Endpoint) -> ssl.SSLContext | bool:
        if endpoint.scheme != "https":
            return False
        if not endpoint.verify:
            return False
        extra = []
        for base in self.cert_dirs:
            d = base / endpoint.host
            if d.is_dir():
                extra.extend(sorted(d.glob("*.crt")))
        if not extra:
            return True
        ctx = ssl.create_default_context()
        for ca in extra:
            ctx.load_verify_locations(cafile=str(ca))
        return ctx
