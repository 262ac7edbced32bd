"""Image config values in Docker's shapes (no I/O).

Docker writes image configs with top-level keys sorted and the container
config (``config`` / ``container_config``) with its fields in Go struct order;
``inspect`` shows the full struct whatever the config left out.
"""

from __future__ import annotations

import json
from typing import Any

# Go struct order of container.Config, and the fields marked omitempty.
CONTAINER_CONFIG_FIELDS: list[tuple[str, Any]] = [
    ("Hostname", ""),
    ("Domainname", ""),
    ("User", ""),
    ("AttachStdin", False),
    ("AttachStdout", False),
    ("AttachStderr", False),
    ("ExposedPorts", None),
    ("Tty", False),
    ("OpenStdin", False),
    ("StdinOnce", False),
    ("Env", None),
    ("Cmd", None),
    ("Healthcheck", None),
    ("ArgsEscaped", False),
    ("Image", ""),
    ("Volumes", None),
    ("WorkingDir", ""),
    ("Entrypoint", None),
    ("NetworkDisabled", False),
    ("MacAddress", ""),
    ("OnBuild", None),
    ("Labels", None),
    ("StopSignal", ""),
    ("StopTimeout", None),
    ("Shell", None),
]
OMITEMPTY = {
    "ExposedPorts",
    "Healthcheck",
    "ArgsEscaped",
    "NetworkDisabled",
    "MacAddress",
    "StopSignal",
    "StopTimeout",
    "Shell",
}


def container_config(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """A container config in Docker's field order, omitempty fields dropped when empty."""
    cfg = cfg or {}
    out: dict[str, Any] = {}
    for name, default in CONTAINER_CONFIG_FIELDS:
        value = cfg.get(name, default)
        if name in OMITEMPTY and not value:
            continue
        out[name] = value
    return out


_normalised = container_config  # docker_image_config's parameter shadows the name


def dumps(value: object) -> bytes:
    """Go's encoding/json form: compact, HTML characters escaped, UTF-8 as is."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def image_config_bytes(config: dict[str, Any]) -> bytes:
    """Serialise an image config as Docker does: top-level keys sorted."""
    return dumps({k: config[k] for k in sorted(config)})


def docker_image_config(
    *,
    created: str,
    diff_ids: list[str],
    config: dict[str, Any] | None,
    history: list[dict[str, Any]],
    comment: str = "",
    author: str = "",
    container: str = "",
    container_config: dict[str, Any] | None = None,
    architecture: str = "amd64",
    os_name: str = "linux",
    parent: str = "",
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "architecture": architecture,
        "config": _normalised(config),
        "container_config": _normalised(container_config),
        "created": created,
        "history": history,
        "os": os_name,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if comment:
        out["comment"] = comment
    if author:
        out["author"] = author
    if container:
        out["container"] = container
    if parent:
        out["parent"] = parent
    return out



def host_architecture() -> str:
    import platform

    machine = platform.machine().lower()
    return {
        "x86_64": "amd64",
        "amd64": "amd64",
        "aarch64": "arm64",
        "arm64": "arm64",
        "armv7l": "arm",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
        "i686": "386",
    }.get(machine, machine)
