"""Container lifecycle: create, start, stop, kill, remove, and what happens when one exits.

A container is a record (ops.container_records), a writable layer on the
storage driver, an OCI bundle, a network endpoint, and — while it runs — a
monitor process (runtime.monitor) that holds its stdio and records its exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal as signals
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.drivers.base import StorageDriver
from dockyard.errors import Conflict, DockyardError, ImageNotFound, InvalidArgument
from dockyard.oci.config import container_config
from dockyard.ops import container_records as records
from dockyard.ops.container_records import Container
from dockyard.ops.lookup import find_image, not_found_name
from dockyard.store import durability
from dockyard.store.store import Store, chain_ids

RUNC = shutil.which("runc") or "/usr/sbin/runc"
STOP_TIMEOUT = 10


class StartError(DockyardError):
    """The container could not start; exit_code is Docker's 125/126/127."""

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunOptions:
    name: str | None = None
    env: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    entrypoint: str | None = None
    cmd: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)
    network: str = "bridge"
    labels: list[str] = field(default_factory=list)
    tty: bool = False
    interactive: bool = False
    attach: bool = False  # the CLI stays attached (run without -d)
    auto_remove: bool = False


# -- storage ---------------------------------------------------------------------------


def driver_for(store: Store) -> StorageDriver:
    from dockyard.drivers.select import open_driver

    return open_driver(store.root, store.driver_name)


def ensure_container_layers(store: Store, driver: StorageDriver, image_id: str) -> tuple[str, str]:
    """Unpack the image's layers on the driver (once per chain), then the init layer
    on top: (image chain hex, init key). What was unpacked now is flushed to the
    disk in the background (store.durability)."""
    image = store.image(image_id)
    if image is None:
        raise ImageNotFound(image_id)
    chains = chain_ids(image.diff_ids)
    parent: str | None = None
    unpacked = []
    for diff_id, chain in zip(image.diff_ids, chains, strict=True):
        key = chain.removeprefix("sha256:")
        if not driver.has_layer(key):
            layer = store.layer(diff_id)
            if layer is None:
                raise DockyardError(f"layer {diff_id} is missing from the store")
            with store.blobs.open(layer.blob) as f:
                driver.create_layer(key, parent, f)
            unpacked.append(driver.unsynced_marker(key))
        parent = key
    chain = parent or ""
    init, made = init_layer(driver, chain)
    if made:
        unpacked.append(driver.unsynced_marker(init))
    if unpacked:
        durability.sync_later(store.root, unpacked)
    return chain, init


# Mount points the runtime binds over (Docker's "-init" layer): kept in a layer of
# their own between the image and the container, so they never show in diff or commit.
INIT_FILES = ("etc/hostname", "etc/hosts", "etc/resolv.conf")
INIT_DIRS = ("dev", "dev/pts", "dev/shm", "etc", "proc", "sys")


def init_layer(driver: StorageDriver, image_chain: str) -> tuple[str, bool]:
    """The init layer on top of ``image_chain`` (shared by its containers): its key,
    and whether it was made now."""
    import hashlib
    import io
    import tarfile

    key = hashlib.sha256(f"dockyard-init:{image_chain}".encode()).hexdigest()
    if driver.has_layer(key):
        return key, False
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in INIT_DIRS:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name in INIT_FILES:
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(b""))
    buf.seek(0)
    driver.create_layer(key, image_chain or None, buf)
    return key, True


# -- create ----------------------------------------------------------------------------------


def _env_files(paths: list[str]) -> list[str]:
    out = []
    for path in paths:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise InvalidArgument(f"open {path}: {(e.strerror or str(e)).lower()}") from e
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                value = os.environ.get(line)
                if value is None:
                    continue
                line = f"{line}={value}"
            out.append(line)
    return out


def _merge_env(base: list[str] | None, extra: list[str]) -> list[str] | None:
    if not extra:
        return base
    env = list(base or [])
    for item in extra:
        if "=" not in item:
            value = os.environ.get(item)
            if value is None:
                continue
            item = f"{item}={value}"
        key = item.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key]
        env.append(item)
    return env


def parse_volume(spec: str) -> tuple[str, str, bool]:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    source, dest = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise InvalidArgument(f"invalid mode: {mode}")
    if not dest.startswith("/"):
        raise InvalidArgument(
            f"invalid volume specification: '{spec}': invalid mount config "
            'for type "bind": invalid mount path: '
            f"'{dest}' mount path must be absolute"
        )
    if not source.startswith("/"):
        raise InvalidArgument(
            f"invalid volume specification: '{spec}': named volumes are not supported yet; "
            "use an absolute host path"
        )
    return os.path.abspath(source), dest, mode == "ro"


def create(store: Store, image_name: str, opts: RunOptions) -> Container:
    from dockyard.runtime.ports import parse_publish

    image_id = find_image(store, image_name)
    if image_id is None:
        raise ImageNotFound(not_found_name(image_name))
    name = records.check_name(opts.name) if opts.name else records.random_name(store)
    if opts.name:
        other = store.conn.execute("SELECT id FROM containers WHERE name = ?", (name,)).fetchone()
        if other:
            raise records.name_conflict(name, other[0])
    if opts.network not in ("bridge", "default", "host", "none"):
        raise InvalidArgument(f"network {opts.network} not found")
    bindings = [b for spec in opts.publish for b in parse_publish(spec)]
    binds = [parse_volume(v) for v in opts.volumes]
    image_config = json.loads(store.blobs.read(image_id)).get("config") or {}
    base = container_config(image_config)
    cid = records.new_id(store)
    config = dict(base)
    # Docker: with the host's network the container takes the host's name by default
    default_hostname = socket.gethostname() if opts.network == "host" else cid[:12]
    config["Hostname"] = opts.hostname or default_hostname
    config["AttachStdin"] = opts.interactive and opts.attach
    config["AttachStdout"] = opts.attach
    config["AttachStderr"] = opts.attach
    config["Tty"] = opts.tty
    config["OpenStdin"] = opts.interactive
    config["StdinOnce"] = opts.interactive and opts.attach
    config["Env"] = _merge_env(base.get("Env"), _env_files(opts.env_files) + opts.env)
    if opts.entrypoint is not None:
        config["Entrypoint"] = [opts.entrypoint] if opts.entrypoint else None
        config["Cmd"] = opts.cmd or None
    elif opts.cmd:
        config["Cmd"] = opts.cmd
    if opts.workdir:
        if not opts.workdir.startswith("/"):
            raise InvalidArgument(
                f"the working directory '{opts.workdir}' is invalid, "
                "it needs to be an absolute path"
            )
        config["WorkingDir"] = opts.workdir
    if opts.user is not None:
        config["User"] = opts.user
    config["Image"] = image_name
    labels = dict(base.get("Labels") or {})
    for label in opts.labels:
        key, _, value = label.partition("=")
        labels[key] = value
    config["Labels"] = labels
    if bindings:
        exposed = dict(config.get("ExposedPorts") or {})
        for b in bindings:
            exposed[f"{b.container_port}/{b.proto}"] = {}
        config["ExposedPorts"] = exposed
    config = container_config(config)
    if not (config.get("Entrypoint") or config.get("Cmd")):
        raise InvalidArgument("No command specified")
    port_bindings: dict[str, list[dict[str, str]]] = {}
    for b in bindings:
        port_bindings.setdefault(f"{b.container_port}/{b.proto}", []).append(
            {"HostIp": b.host_ip, "HostPort": str(b.host_port) if b.host_port else ""}
        )
    host_config = host_config_for(
        binds=[v for v in opts.volumes] or None,
        port_bindings=port_bindings,
        network_mode="default" if opts.network in ("bridge", "default") else opts.network,
        auto_remove=opts.auto_remove,
    )
    driver = driver_for(store)
    chain, init = ensure_container_layers(store, driver, image_id)
    driver.create_rw(cid, init)
    container = Container(
        id=cid,
        name=name,
        image=image_id,
        image_name=image_name,
        created=records.now(),
        driver=driver.name,
        chain=chain,
        config=config,
        host_config=host_config,
    )
    container.dir(store).mkdir(parents=True, exist_ok=True)
    del binds
    try:
        records.insert(store, container)
    except BaseException:
        driver.remove_rw(cid)
        shutil.rmtree(container.dir(store), ignore_errors=True)
        raise
    return container


def host_config_for(
    *, binds: list[str] | None, port_bindings: dict[str, Any], network_mode: str, auto_remove: bool
) -> dict[str, Any]:
    from dockyard.runtime.spec import MASKED_PATHS, READONLY_PATHS

    return {
        "Binds": binds,
        "ContainerIDFile": "",
        "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": network_mode,
        "PortBindings": port_bindings,
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": auto_remove,
        "VolumeDriver": "",
        "VolumesFrom": None,
        "CapAdd": None,
        "CapDrop": None,
        "CgroupnsMode": "host",
        "Dns": [],
        "DnsOptions": [],
        "DnsSearch": [],
        "ExtraHosts": None,
        "GroupAdd": None,
        "IpcMode": "private",
        "Cgroup": "",
        "Links": None,
        "OomScoreAdj": 0,
        "PidMode": "",
        "Privileged": False,
        "PublishAllPorts": False,
        "ReadonlyRootfs": False,
        "SecurityOpt": None,
        "UTSMode": "",
        "UsernsMode": "",
        "ShmSize": 67108864,
        "Runtime": "runc",
        "ConsoleSize": [0, 0],
        "Isolation": "",
        "CpuShares": 0,
        "Memory": 0,
        "NanoCpus": 0,
        "CgroupParent": "",
        "BlkioWeight": 0,
        "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": None,
        "BlkioDeviceWriteBps": None,
        "BlkioDeviceReadIOps": None,
        "BlkioDeviceWriteIOps": None,
        "CpuPeriod": 0,
        "CpuQuota": 0,
        "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0,
        "CpusetCpus": "",
        "CpusetMems": "",
        "Devices": [],
        "DeviceCgroupRules": None,
        "DeviceRequests": None,
        "KernelMemory": 0,
        "KernelMemoryTCP": 0,
        "MemoryReservation": 0,
        "MemorySwap": 0,
        "MemorySwappiness": None,
        "OomKillDisable": False,
        "PidsLimit": None,
        "Ulimits": None,
        "CpuCount": 0,
        "CpuPercent": 0,
        "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0,
        "MaskedPaths": list(MASKED_PATHS),
        "ReadonlyPaths": list(READONLY_PATHS),
    }


# -- start -----------------------------------------------------------------------------------


def _network(store: Store) -> Any:
    """The bridge network; its IP allocations live with the bridge, not the store, so
    several stores on one machine never hand out the same address."""
    from dockyard.runtime.network import Network, load_network_config

    subnet, bridge = load_network_config(store.root)
    return Network(Path("/run/dockyard/network") / bridge, subnet, bridge)


def _ensure_workdir(rootfs: Path, workdir: str) -> None:
    from dockyard.runtime.spec import _in_root

    if workdir and workdir != "/":
        target = _in_root(rootfs, workdir)
        target.mkdir(parents=True, exist_ok=True)


def start(store: Store, container: Container, run_process: bool = True) -> int:
    """Start a created or exited container under a new monitor; returns its pid.

    With ``run_process`` false the container is created but its process waits
    for the first attach to start it (so an attached ``run`` misses no output)."""
    from dockyard.runtime.monitor import MonitorSpec, launch
    from dockyard.runtime.network import write_etc_files
    from dockyard.runtime.ports import DEFAULT_HOST_IP, PortBinding, ports_json
    from dockyard.runtime.spec import BindMount, ProcessSpec, resolve_user, runtime_spec

    container = reconcile(store, container)
    if container.running:
        return int(container.state.get("Pid") or 0)
    driver = driver_for(store)
    cdir = container.dir(store)
    network = _network(store)
    mode = records.network_mode(container)
    endpoint = None
    proxies_started = False
    try:
        rootfs = driver.mount(container.id)
        cfg = container.config
        args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        uid, gid, extra = resolve_user(rootfs, cfg.get("User") or "")
        _ensure_workdir(rootfs, cfg.get("WorkingDir") or "")
        hostname = cfg.get("Hostname") or container.short_id
        endpoint = network.setup(container.id, mode, hostname)
        ip = endpoint.ip
        files = write_etc_files(cdir, hostname, endpoint)
        etc = {
            "/etc/hostname": str(files.hostname),
            "/etc/hosts": str(files.hosts),
            "/etc/resolv.conf": str(files.resolv_conf),
        }
        binds = []
        for spec in container.host_config.get("Binds") or []:
            source, dest, ro = parse_volume(spec)
            os.makedirs(source, exist_ok=True)
            binds.append(BindMount(source, dest, ro))
        netns = endpoint.netns_path
        config = runtime_spec(
            process=ProcessSpec(
                args=args,
                env=list(cfg.get("Env") or []),
                cwd=cfg.get("WorkingDir") or "/",
                uid=uid,
                gid=gid,
                additional_gids=extra,
                tty=bool(cfg.get("Tty")),
            ),
            rootfs=rootfs,
            hostname=cfg.get("Hostname") or container.short_id,
            netns=str(netns) if netns else None,
            etc_files=etc,
            binds=binds,
            cgroups_path=f"/dockyard/{container.id}",
        )
        bundle = cdir / "bundle"
        bundle.mkdir(exist_ok=True)
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        bindings = []
        for key, entries in (container.host_config.get("PortBindings") or {}).items():
            port, _, proto = key.partition("/")
            for entry in entries:
                host_ip = entry.get("HostIp") or DEFAULT_HOST_IP
                host_port = int(entry.get("HostPort") or 0)
                bindings.append(PortBinding(host_ip, host_port, int(port), proto))
        bound: list[PortBinding] = []
        if bindings and ip:
            from dockyard.runtime.portproxy import start_proxy

            handle = start_proxy(bindings, ip, container.sock_dir() / "proxy")
            proxies_started = True
            bound = list(handle.bindings)
        exposed = (container.config.get("ExposedPorts") or {}).keys()
        network_state = {"endpoint": endpoint.to_json(), "ports": ports_json(bound, exposed)}
        records.update(store, container.id, network=network_state)
        records.update_state(store, container.id, Error="")
        spec = MonitorSpec(
            container_id=container.id,
            bundle=bundle,
            runc_root=store.root / "runc",
            log_path=cdir / f"{container.id}-json.log",
            sock_dir=container.sock_dir(),
            runc=RUNC,
            tty=bool(cfg.get("Tty")),
            open_stdin=bool(cfg.get("OpenStdin")),
            stdin_once=bool(cfg.get("StdinOnce")),
            on_exit="dockyard.ops.containers:container_exited",
            extra={"root": str(store.root)},
        )
        started = launch(spec, start=run_process)
    except BaseException as e:
        code = getattr(e, "exit_code", 125)
        message = getattr(e, "message", str(e))
        if proxies_started:
            from dockyard.runtime.portproxy import stop_proxy

            stop_proxy(container.sock_dir() / "proxy")
        with contextlib.suppress(Exception):
            network.teardown(container.id)
        with contextlib.suppress(Exception):
            driver.unmount(container.id)
        records.update(store, container.id, network=None)
        records.update_state(
            store,
            container.id,
            Error=message,
            ExitCode=code if code in (126, 127) else 128,  # Docker: 128 unless 126/127
            Status="created",  # as Docker shows a container that never ran
            Running=False,
            Pid=0,
        )
        if isinstance(e, DockyardError):
            raise StartError(message, code if code in (126, 127) else 125) from e
        raise
    records.update_state(
        store,
        container.id,
        Status="running",
        Running=True,
        Paused=False,
        Pid=started.container_pid,
        ExitCode=0,
        Error="",
        StartedAt=records.now(),
        FinishedAt=records.ZERO_TIME,
    )
    return started.container_pid


# -- exit and reconciliation -------------------------------------------------------------------


def container_exited(spec: Any, exit_code: int) -> None:
    """The monitor's on_exit hook: record the exit and release what the run held."""
    extra = spec.extra if hasattr(spec, "extra") else spec["extra"]
    cid = spec.container_id if hasattr(spec, "container_id") else spec["container_id"]
    store = Store(Path(extra["root"]))
    try:
        container = records.find_container(store, cid)
    except DockyardError:
        return
    _release(store, container)
    records.update_state(
        store,
        cid,
        Status="exited",
        Running=False,
        Paused=False,
        Pid=0,
        ExitCode=exit_code,
        FinishedAt=records.now(),
    )
    if container.host_config.get("AutoRemove"):
        # An attached `run --rm` reads the exit code here once the record is gone
        # (and removes it); nobody would for a detached one: no file left behind.
        attached = container.config.get("AttachStdout") or container.config.get("AttachStderr")
        with contextlib.suppress(OSError):
            if attached:
                container.sock_dir().mkdir(parents=True, exist_ok=True)
                (container.sock_dir() / "exit-code").write_text(str(exit_code))
        with contextlib.suppress(Exception):
            driver_for(store).remove_rw(container.id)
        shutil.rmtree(container.dir(store), ignore_errors=True)
        records.delete(store, cid)


def _release(store: Store, container: Container) -> None:
    from dockyard.runtime.portproxy import stop_proxy

    with contextlib.suppress(Exception):
        stop_proxy(container.sock_dir() / "proxy")
    with contextlib.suppress(Exception):
        _network(store).teardown(container.id)
    with contextlib.suppress(Exception):
        driver_for(store).unmount(container.id)


def reconcile(store: Store, container: Container) -> Container:
    """A container recorded as running whose monitor is gone is stopped and shown exited."""
    if not container.running:
        return container
    from dockyard.runtime.monitor import monitor_alive

    if monitor_alive(container.sock_dir()):
        return container
    from dockyard.runtime.runc import Runc

    runc = Runc(RUNC, store.root / "runc")
    with contextlib.suppress(Exception):
        runc.kill(container.id, "KILL", all=True)
    with contextlib.suppress(Exception):
        runc.delete(container.id, force=True)
    _release(store, container)
    records.update_state(
        store,
        container.id,
        Status="exited",
        Running=False,
        Paused=False,
        Pid=0,
        ExitCode=137,
        Error="container monitor exited unexpectedly",
        FinishedAt=records.now(),
    )
    return records.reload(store, container)


# -- stop, kill, remove ----------------------------------------------------------------------


def _runc(store: Store) -> Any:
    from dockyard.runtime.runc import Runc

    return Runc(RUNC, store.root / "runc")


def wait_exit(store: Store, container: Container, timeout: float | None = None) -> int | None:
    """Wait until the container is no longer running; returns its exit code."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            current = records.reload(store, container)
        except DockyardError:
            exit_file = container.sock_dir() / "exit-code"
            with contextlib.suppress(OSError, ValueError):
                code = int(exit_file.read_text())
                shutil.rmtree(container.sock_dir(), ignore_errors=True)
                return code
            return None
        current = reconcile(store, current)
        if not current.running:
            return int(current.state.get("ExitCode") or 0)
        if deadline is not None and time.monotonic() > deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def kill(store: Store, container: Container, signal: str = "KILL") -> None:
    container = reconcile(store, container)
    if not container.running:
        raise Conflict(f"Container {container.id} is not running")
    sig = signal.upper().removeprefix("SIG")
    if sig.isdigit():
        sig = signals.Signals(int(sig)).name.removeprefix("SIG")
    elif "SIG" + sig not in signals.Signals.__members__:
        raise InvalidArgument(f"Invalid signal: {signal}")
    if container.state.get("Paused"):
        _runc(store).resume(container.id)
        records.update_state(store, container.id, Paused=False, Status="running")
    _runc(store).kill(container.id, sig, all=False)


def stop(store: Store, container: Container, timeout: int | None = None) -> None:
    container = reconcile(store, container)
    if not container.running:
        return
    sig = container.config.get("StopSignal") or "TERM"
    wait = STOP_TIMEOUT if timeout is None else timeout
    with contextlib.suppress(DockyardError):
        kill(store, container, sig)
    if wait_exit(store, container, wait) is None:
        with contextlib.suppress(DockyardError):
            kill(store, container, "KILL")
        wait_exit(store, container, 30)


def pause(store: Store, container: Container) -> None:
    container = reconcile(store, container)
    if not container.running:
        raise Conflict(f"Container {container.id} is not running")
    if container.state.get("Paused"):
        raise Conflict(f"Container {container.id} is already paused")
    _runc(store).pause(container.id)
    records.update_state(store, container.id, Paused=True, Status="paused")


def unpause(store: Store, container: Container) -> None:
    container = reconcile(store, container)
    if not container.state.get("Paused"):
        raise Conflict(f"Container {container.id} is not paused")
    _runc(store).resume(container.id)
    records.update_state(store, container.id, Paused=False, Status="running")


def _remove_files(store: Store, container: Container) -> None:
    with contextlib.suppress(Exception):
        driver_for(store).remove_rw(container.id)
    shutil.rmtree(container.dir(store), ignore_errors=True)
    shutil.rmtree(container.sock_dir(), ignore_errors=True)


def remove(store: Store, container: Container, force: bool = False) -> None:
    container = reconcile(store, container)
    if container.running:
        if not force:
            if container.state.get("Paused"):
                raise Conflict(
                    f"You cannot remove a paused container {container.id}. Unpause and then "
                    "stop the container before attempting removal or force remove"
                )
            raise Conflict(
                f"You cannot remove a running container {container.id}. Stop the container "
                "before attempting removal or force remove"
            )
        kill(store, container, "KILL")
        wait_exit(store, container, 30)
    _release(store, container)
    _remove_files(store, container)
    records.delete(store, container.id)


def rename(store: Store, container: Container, new_name: str) -> None:
    name = records.check_name(new_name)
    if name == container.name:
        raise InvalidArgument("Renaming a container with the same name as its current name")
    other = store.conn.execute("SELECT id FROM containers WHERE name = ?", (name,)).fetchone()
    if other:
        raise records.name_conflict(name, other[0])
    records.update(store, container.id, name=name)


def containers_using_image(store: Store, image_id: str) -> list[tuple[str, bool]]:
    rows = store.conn.execute(
        "SELECT id, state FROM containers WHERE image = ?", (image_id,)
    ).fetchall()
    return [(cid, bool(json.loads(state).get("Running"))) for cid, state in rows]
