"""Read-side container verbs: inspect JSON, ps rows, port lines (Docker's shapes)."""

from __future__ import annotations

from typing import Any

from dockyard.ops.container_records import Container, network_mode
from dockyard.store.store import Store


def inspect_container(
    store: Store, container: Container, graph_data: dict[str, str]
) -> dict[str, Any]:
    cfg = container.config
    args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    cdir = container.dir(store)
    mounts = []
    for spec in container.host_config.get("Binds") or []:
        parts = spec.split(":")
        ro = len(parts) > 2 and parts[2] == "ro"
        mounts.append(
            {
                "Type": "bind",
                "Source": parts[0],
                "Destination": parts[1],
                "Mode": "ro" if ro else "",
                "RW": not ro,
                "Propagation": "rprivate",
            }
        )
    return {
        "Id": container.id,
        "Created": container.created,
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": dict(container.state),
        "Image": container.image,
        "ResolvConfPath": str(cdir / "resolv.conf"),
        "HostnamePath": str(cdir / "hostname"),
        "HostsPath": str(cdir / "hosts"),
        "LogPath": str(cdir / f"{container.id}-json.log"),
        "Name": "/" + container.name,
        "RestartCount": 0,
        "Driver": container.driver,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": dict(container.host_config),
        "GraphDriver": {"Data": graph_data or None, "Name": container.driver},
        "Mounts": mounts,
        "Config": dict(cfg),
        "NetworkSettings": network_settings(container),
    }


def network_settings(container: Container) -> dict[str, Any]:
    """Docker's NetworkSettings: addresses and ports only while the container runs."""
    from dockyard.runtime.network import Endpoint
    from dockyard.runtime.network import network_settings as settings

    mode = network_mode(container)
    net = container.network or {}
    running = bool(container.state.get("Running")) and "endpoint" in net
    endpoint = Endpoint.from_json(net["endpoint"]) if running else None
    return settings(container.id, mode, endpoint, net.get("ports") if running else {})


def current_ports(container: Container) -> dict[str, Any]:
    if not container.state.get("Running"):
        return {}
    ports: dict[str, Any] = (container.network or {}).get("ports") or {}
    return ports


