"""Published ports as values: ``-p`` parsing and Docker's renderings. No I/O.

``parse_publish`` follows the Docker 20.10 CLI (``nat.ParsePortSpec`` of
go-connections v0.4, plus the CLI's ``target=80,published=8080`` long form),
in the same order of checks and with the same error texts, e.g.
``Invalid containerPort: abc``, ``Invalid hostPort: x``,
``Invalid ip address: 1.2.3``, ``Invalid proto: xyz``.

One deliberate difference: when the spec names no host IP, Docker binds
0.0.0.0 (every interface); dockyard binds **127.0.0.1** (``DEFAULT_HOST_IP``)
so that a published port is never reachable from outside the machine unless
the user names an address explicitly. The rendered JSON therefore shows
``"HostIp": "127.0.0.1"`` where Docker would show ``""``/``"0.0.0.0"``.

A host port of 0 means "pick a free port when binding" (``-p 80``,
``-p 127.0.0.1::80``); the proxy reports the real port, and the bound
bindings (``PortBinding.with_host_port``) are what ``NetworkSettings.Ports``,
``docker port`` and ``docker ps`` show.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dockyard.errors import InvalidArgument, NotFound

#: Host address used when a ``-p`` spec names none (Docker: 0.0.0.0). A safety choice.
DEFAULT_HOST_IP = "127.0.0.1"

PROTOCOLS = ("tcp", "udp", "sctp")

#: ``NetworkSettings.Ports`` / ``HostConfig.PortBindings`` shape: "80/tcp" -> bindings or None.
PortMap = dict[str, list[dict[str, str]] | None]

_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class PortBinding:
    """One published port: ``host_ip:host_port`` -> ``container_port/proto``.

    ``host_port`` 0 = any free port. ``host_port_end`` > 0 (only for a single
    container port, ``-p 8000-8010:80``) = any free port in host_port..host_port_end.
    """

    host_ip: str
    host_port: int
    container_port: int
    proto: str = "tcp"
    host_port_end: int = 0

    @property
    def port_key(self) -> str:
        """Docker's nat.Port: ``80/tcp``."""
        return f"{self.container_port}/{self.proto}"

    @property
    def host_port_spec(self) -> str:
        """HostPort as Docker stores the request: ``""``, ``"8080"`` or ``"8000-8010"``."""
        if self.host_port_end and self.host_port_end != self.host_port:
            return f"{self.host_port}-{self.host_port_end}"
        return str(self.host_port) if self.host_port else ""

    def host_ports(self) -> range:
        """The host ports this binding may take (``range(0, 1)`` = kernel's choice)."""
        return range(self.host_port, max(self.host_port, self.host_port_end) + 1)

    def with_host_port(self, port: int) -> PortBinding:
        """The binding as bound: one real host port, no range."""
        return replace(self, host_port=port, host_port_end=0)

    def to_json(self) -> dict[str, Any]:
        return {
            "host_ip": self.host_ip,
            "host_port": self.host_port,
            "container_port": self.container_port,
            "proto": self.proto,
            "host_port_end": self.host_port_end,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PortBinding:
        return cls(
            host_ip=str(data["host_ip"]),
            host_port=int(data["host_port"]),
            container_port=int(data["container_port"]),
            proto=str(data.get("proto", "tcp")),
            host_port_end=int(data.get("host_port_end", 0)),
        )


# --------------------------------------------------------------------------- #
# parsing
# --------------------------------------------------------------------------- #


def parse_publish(spec: str, default_host_ip: str = DEFAULT_HOST_IP) -> list[PortBinding]:
    """Parse one ``-p/--publish`` value into bindings (several for a range).

    Raises InvalidArgument with the Docker 20.10 CLI's message.
    """
    if "=" in spec:
        spec = _long_syntax(spec)
    raw_ip, host_port, container_port = _split_parts(spec)
    proto, container_port = _split_proto_port(container_port)

    ip = _split_host(raw_ip)
    if ip and not _valid_ip(ip):
        raise InvalidArgument(f"Invalid ip address: {ip}")
    if not container_port:
        raise InvalidArgument(f"No port specified: {spec}<empty>")
    try:
        start, end = parse_port_range(container_port)
    except ValueError:
        raise InvalidArgument(f"Invalid containerPort: {container_port}") from None
    host_start = host_end = 0
    if host_port:
        try:
            host_start, host_end = parse_port_range(host_port)
        except ValueError:
            raise InvalidArgument(f"Invalid hostPort: {host_port}") from None
        if end - start != host_end - host_start and end != start:
            raise InvalidArgument(
                "Invalid ranges specified for container and host Ports: "
                f"{container_port} and {host_port}"
            )
    if proto.lower() not in PROTOCOLS:
        raise InvalidArgument(f"Invalid proto: {proto}")
    proto = proto.lower()

    host_ip = ip or default_host_ip
    out: list[PortBinding] = []
    for i in range(end - start + 1):
        hport = host_start + i if host_port else 0
        # a single container port with a host range: any free port of the range
        hend = host_end if (start == end and host_start != host_end) else 0
        out.append(PortBinding(host_ip, hport, start + i, proto, hend))
    return out


def parse_publish_all(
    specs: Iterable[str], default_host_ip: str = DEFAULT_HOST_IP
) -> list[PortBinding]:
    """All ``-p`` values of one command line, in order."""
    out: list[PortBinding] = []
    for spec in specs:
        out.extend(parse_publish(spec, default_host_ip))
    return out


def parse_port_range(ports: str) -> tuple[int, int]:
    """Go's nat.ParsePortRange: ``80`` or ``8000-8010`` (ValueError otherwise)."""
    if not ports:
        raise ValueError("empty string specified for ports")
    if "-" not in ports:
        p = _parse_uint16(ports)
        return p, p
    parts = ports.split("-")  # Go ignores a third part: "1-2-3" is 1-2
    start, end = _parse_uint16(parts[0]), _parse_uint16(parts[1])
    if end < start:
        raise ValueError(f"invalid range specified for port: {ports}")
    return start, end


def parse_expose(spec: str) -> list[str]:
    """``--expose 80``, ``--expose 8000-8001/udp`` -> port keys (``80/tcp``...)."""
    if ":" in spec:
        raise InvalidArgument(f"invalid port format for --expose: {spec}")
    proto, port = _split_proto_port(spec)
    try:
        start, end = parse_port_range(port)
    except ValueError as e:
        raise InvalidArgument(
            f"invalid range format for --expose: {spec}, error: {_go_parse_error(port, e)}"
        ) from None
    if proto.lower() not in PROTOCOLS:
        raise InvalidArgument(f"Invalid proto: {proto}")
    return [f"{p}/{proto.lower()}" for p in range(start, end + 1)]


def _parse_uint16(s: str) -> int:
    if not _DIGITS.fullmatch(s):
        raise ValueError(f"invalid syntax: {s!r}")
    value = int(s)
    if value > 0xFFFF:
        raise ValueError(f"value out of range: {s!r}")
    return value


def _go_parse_error(port: str, err: ValueError) -> str:
    """The strconv.ParseUint text Docker appends to --expose errors."""
    text = str(err)
    if text.startswith("invalid range") or text.startswith("empty string"):
        return text
    parts = port.split("-")
    bad = next((p for p in parts[:2] if not _DIGITS.fullmatch(p) or int(p) > 0xFFFF), port)
    why = "value out of range" if _DIGITS.fullmatch(bad) else "invalid syntax"
    return f'strconv.ParseUint: parsing "{bad}": {why}'


def _long_syntax(spec: str) -> str:
    """The CLI's ``target=80,published=8080,protocol=udp`` form -> ``8080:80/udp``."""
    params = {"protocol": "tcp"}
    for param in spec.split(","):
        opt = param.split("=")
        if len(opt) < 2:
            raise InvalidArgument(
                f"invalid publish opts format (should be name=value but got '{param}')"
            )
        params[opt[0]] = opt[1]
    return f"{params.get('published', '')}:{params.get('target', '')}/{params['protocol']}"


def _split_parts(raw: str) -> tuple[str, str, str]:
    parts = raw.split(":")
    n = len(parts)
    if n == 1:
        return "", "", parts[0]
    if n == 2:
        return "", parts[0], parts[1]
    if n == 3:
        return parts[0], parts[1], parts[2]
    return ":".join(parts[: n - 2]), parts[n - 2], parts[n - 1]


def _split_proto_port(raw: str) -> tuple[str, str]:
    parts = raw.split("/")
    if not raw or not parts[0]:
        return "", ""
    if len(parts) == 1:
        return "tcp", raw
    if not parts[1]:
        return "tcp", parts[0]
    return parts[1], parts[0]


def _split_host(raw_ip: str) -> str:
    """Go's net.SplitHostPort(raw_ip + ":") host part; strips [] of IPv6."""
    hostport = raw_ip + ":"

    def fail(why: str) -> InvalidArgument:
        return InvalidArgument(f"Invalid ip address {raw_ip}: address {hostport}: {why}")

    i = len(hostport) - 1
    j = k = 0
    if hostport[0] == "[":
        end = hostport.find("]")
        if end < 0:
            raise fail("missing ']' in address")
        if end + 1 == len(hostport):
            raise fail("missing port in address")
        if end + 1 != i:
            if hostport[end + 1] == ":":
                raise fail("too many colons in address")
            raise fail("missing port in address")
        host = hostport[1:end]
        j, k = 1, end + 1
    else:
        host = hostport[:i]
        if ":" in host:
            raise fail("too many colons in address")
    if "[" in hostport[j:]:
        raise fail("unexpected '[' in address")
    if "]" in hostport[k:]:
        raise fail("unexpected ']' in address")
    return host


def _valid_ip(ip: str) -> bool:
    if "%" in ip:  # Go's net.ParseIP takes no zone
        return False
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- #
# rendering
# --------------------------------------------------------------------------- #


def _sorted_map(m: Mapping[str, list[dict[str, str]] | None]) -> PortMap:
    return {k: m[k] for k in sorted(m)}  # Go's encoding/json sorts map keys


def port_bindings_json(bindings: Iterable[PortBinding]) -> PortMap:
    """``HostConfig.PortBindings``: the request (``HostPort`` "" = any free port)."""
    out: dict[str, list[dict[str, str]] | None] = {}
    for b in bindings:
        entry = {"HostIp": b.host_ip, "HostPort": b.host_port_spec}
        lst = out.setdefault(b.port_key, [])
        assert lst is not None
        lst.append(entry)
    return _sorted_map(out)


def exposed_ports_json(
    bindings: Iterable[PortBinding], exposed: Iterable[str] = ()
) -> dict[str, dict[str, Any]]:
    """``Config.ExposedPorts``: every published and ``--expose``d port, ``{}`` each."""
    keys = {b.port_key for b in bindings} | set(exposed)
    return {k: {} for k in sorted(keys)}


def ports_json(bound: Iterable[PortBinding], exposed: Iterable[str] = ()) -> PortMap:
    """``NetworkSettings.Ports`` of a running container: bound bindings (real host
    ports) per port key; exposed-but-unpublished ports map to ``None`` (JSON null)."""
    out: dict[str, list[dict[str, str]] | None] = {k: None for k in exposed}
    for b in bound:
        lst = out.get(b.port_key)
        if lst is None:
            lst = out[b.port_key] = []
        lst.append({"HostIp": b.host_ip, "HostPort": str(b.host_port)})
    return _sorted_map(out)


def _key_order(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    first = port.split("-")[0]
    return (int(first) if first.isdigit() else 0, proto)


def _host_addr(ip: str, port: str) -> str:
    return f"{ip}:{port}"


def port_lines(ports: Mapping[str, Sequence[Mapping[str, str]] | None]) -> list[str]:
    """``docker port NAME`` lines: ``80/tcp -> 127.0.0.1:8080`` (ordered by port)."""
    lines: list[str] = []
    for key in sorted(ports, key=_key_order):
        for frontend in ports[key] or ():
            lines.append(f"{key} -> {_host_addr(frontend['HostIp'], frontend['HostPort'])}")
    return lines


def port_lookup(
    ports: Mapping[str, Sequence[Mapping[str, str]] | None], private: str, container: str
) -> list[str]:
    """``docker port NAME 80[/tcp]`` lines (``127.0.0.1:8080``); NotFound with
    Docker's ``Error: No public port '80/tcp' published for NAME`` otherwise."""
    port, proto = private, "tcp"
    parts = private.split("/", 1)
    if len(parts) == 2 and parts[1]:
        port, proto = parts
    try:
        start, end = parse_port_range(port)
    except ValueError as e:
        raise InvalidArgument(_go_parse_error(port, e)) from None
    key = f"{start}/{proto}" if start == end else f"{start}-{end}/{proto}"
    frontends = ports.get(key)
    if frontends:
        return [_host_addr(f["HostIp"], f["HostPort"]) for f in frontends]
    raise NotFound(f"Error: No public port '{port}/{proto}' published for {container}")


def api_ports(ports: Mapping[str, Sequence[Mapping[str, str]] | None]) -> list[dict[str, Any]]:
    """Engine API ``GET /containers/json`` ``Ports``: one entry per binding, and one
    (no IP/PublicPort) per exposed unpublished port."""
    out: list[dict[str, Any]] = []
    for key in sorted(ports, key=_key_order):
        _, _, proto = key.partition("/")
        private = _key_order(key)[0]
        frontends = ports[key]
        if not frontends:
            out.append({"PrivatePort": private, "Type": proto or "tcp"})
            continue
        for f in frontends:
            public = int(f["HostPort"]) if f["HostPort"].isdigit() else 0
            out.append(
                {"IP": f["HostIp"], "PrivatePort": private, "PublicPort": public, "Type": proto}
            )
    return out


def display_ports(api: Iterable[Mapping[str, Any]]) -> str:
    """``docker ps`` PORTS column from ``api_ports`` entries (Docker's DisplayablePorts):
    ``127.0.0.1:8080->80/tcp``, consecutive ports grouped (``8000-8001/tcp``)."""

    def order(p: Mapping[str, Any]) -> tuple[int, str, int, str]:
        return (
            int(p.get("PrivatePort", 0)),
            str(p.get("IP", "")),
            int(p.get("PublicPort", 0)),
            str(p.get("Type", "")),
        )

    groups: dict[str, list[int]] = {}
    group_keys: list[str] = []
    result: list[str] = []
    host_mappings: list[str] = []
    for p in sorted(api, key=order):
        current = int(p.get("PrivatePort", 0))
        public = int(p.get("PublicPort", 0))
        ip = str(p.get("IP", ""))
        ptype = str(p.get("Type", ""))
        key = ptype
        if ip:
            if public != current:
                host_mappings.append(f"{ip}:{public}->{current}/{ptype}")
                continue
            key = f"{ip}/{ptype}"
        group = groups.get(key)
        if group is None:
            groups[key] = [current, current]
            group_keys.append(key)
            continue
        if current == group[1] + 1:
            group[1] = current
            continue
        result.append(_form_group(key, group[0], group[1]))
        groups[key] = [current, current]
    for key in group_keys:
        first, last = groups[key]
        result.append(_form_group(key, first, last))
    result.extend(host_mappings)
    return ", ".join(result)


def _form_group(key: str, start: int, last: int) -> str:
    parts = key.split("/")
    group_type, ip = parts[0], ""
    if len(parts) > 1:
        ip, group_type = parts[0], parts[1]
    group = str(start) if start == last else f"{start}-{last}"
    if ip:
        group = f"{ip}:{group}->{group}"
    return f"{group}/{group_type}"


__all__ = [
    "DEFAULT_HOST_IP",
    "PROTOCOLS",
    "PortBinding",
    "PortMap",
    "api_ports",
    "display_ports",
    "exposed_ports_json",
    "parse_expose",
    "parse_port_range",
    "parse_publish",
    "parse_publish_all",
    "port_bindings_json",
    "port_lines",
    "port_lookup",
    "ports_json",
]
