"""Apply ``-c/--change`` Dockerfile instructions to a container config (import, commit)."""

from __future__ import annotations

import json
import posixpath
import shlex
from typing import Any

from dockyard.errors import InvalidArgument

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME", "WORKDIR")
KNOWN = {
    *ALLOWED,
    "ADD",
    "ARG",
    "COPY",
    "FROM",
    "HEALTHCHECK",
    "MAINTAINER",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
}


def _json_list(rest: str) -> list[str] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _key_values(rest: str, instruction: str, legacy_space: bool) -> list[tuple[str, str]]:
    """``k=v k2="v 2"`` pairs; ``ENV k v`` (one pair, rest is the value) when ``legacy_space``."""
    words = shlex.split(rest, posix=True) if rest else []
    if not words:
        raise InvalidArgument(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        if not legacy_space:
            raise InvalidArgument(f"{instruction} names can not be blank")
        parts = rest.split(None, 1)
        if len(parts) < 2:
            raise InvalidArgument(f"{instruction} must have two arguments")
        return [(parts[0], parts[1].strip())]
    out: list[tuple[str, str]] = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            raise InvalidArgument(
                f"Syntax error - can't find = in {word!r}. Must be of the form: name=value"
            )
        if not key:
            raise InvalidArgument(f"{instruction} names can not be blank")
        out.append((key, value))
    return out


def _ports(rest: str) -> list[str]:
    out: list[str] = []
    for spec in rest.split():
        port, _, proto = spec.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"invalid proto: {proto}")
        lo, dash, hi = port.partition("-")
        try:
            start = int(lo)
            end = int(hi) if dash else start
        except ValueError as e:
            raise InvalidArgument(f"invalid containerPort: {port}") from e
        if not (0 < start <= end <= 65535):
            raise InvalidArgument(f"invalid containerPort: {port}")
        out.extend(f"{p}/{proto}" for p in range(start, end + 1))
    return out


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Return a copy of ``config`` with each change applied, Docker's way."""
    cfg = {
        k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
        for k, v in config.items()
    }
    for change in changes:
        for line in change.splitlines() or [""]:
            line = line.strip()
            if not line:
                continue
            word, _, rest = line.partition(" ")
            rest = rest.strip()
            instruction = word.upper()
            if instruction not in KNOWN:
                raise InvalidArgument(f"dockerfile parse error line 1: unknown instruction: {word}")
            if instruction not in ALLOWED:
                raise InvalidArgument(f"{instruction.lower()} is not a valid change command")
            _apply(cfg, instruction, rest)
    return cfg


def _apply(cfg: dict[str, Any], instruction: str, rest: str) -> None:
    if instruction in ("CMD", "ENTRYPOINT"):
        args = _json_list(rest)
        if args is None:
            args = ["/bin/sh", "-c", rest] if rest else []
        key = "Cmd" if instruction == "CMD" else "Entrypoint"
        cfg[key] = args
        if instruction == "ENTRYPOINT":
            cfg["Cmd"] = None  # Docker resets CMD when ENTRYPOINT changes
    elif instruction == "ENV":
        env: list[str] = list(cfg.get("Env") or [])
        for key, value in _key_values(rest, "ENV", legacy_space=True):
            env = [e for e in env if e.split("=", 1)[0] != key]
            env.append(f"{key}={value}")
        cfg["Env"] = env
    elif instruction == "LABEL":
        labels: dict[str, str] = dict(cfg.get("Labels") or {})
        for key, value in _key_values(rest, "LABEL", legacy_space=True):
            labels[key] = value
        cfg["Labels"] = labels
    elif instruction == "EXPOSE":
        if not rest:
            raise InvalidArgument("EXPOSE requires at least one argument")
        ports: dict[str, Any] = dict(cfg.get("ExposedPorts") or {})
        for p in _ports(rest):
            ports[p] = {}
        cfg["ExposedPorts"] = ports
    elif instruction == "USER":
        if not rest:
            raise InvalidArgument("USER requires exactly one argument")
        cfg["User"] = rest
    elif instruction == "WORKDIR":
        if not rest:
            raise InvalidArgument("WORKDIR requires exactly one argument")
        current = cfg.get("WorkingDir") or "/"
        cfg["WorkingDir"] = posixpath.normpath(posixpath.join(current, rest))
    elif instruction == "VOLUME":
        vols = _json_list(rest)
        if vols is None:
            vols = rest.split()
        if not vols:
            raise InvalidArgument("VOLUME requires at least one argument")
        volumes: dict[str, Any] = dict(cfg.get("Volumes") or {})
        for v in vols:
            if not v.strip():
                raise InvalidArgument("VOLUME specified can not be an empty string")
            volumes[v] = {}
        cfg["Volumes"] = volumes
    elif instruction == "ONBUILD":
        inner = rest.split(None, 1)[0].upper() if rest else ""
        if inner in ("ONBUILD", "FROM", "MAINTAINER"):
            raise InvalidArgument(f"{inner} isn't allowed as an ONBUILD trigger")
        if not inner:
            raise InvalidArgument("ONBUILD requires at least one argument")
        triggers = list(cfg.get("OnBuild") or [])
        triggers.append(rest)
        cfg["OnBuild"] = triggers
