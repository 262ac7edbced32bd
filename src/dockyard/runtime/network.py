"""Container networking: one Linux bridge, a veth pair and a netns per container.

Bridge mode, as Docker's default ``bridge`` network::

    host:  dockyard0 (172.29.0.1/16, MTU 1500) -- dy<11 hex of id> (veth, on the bridge)
                                                      |
    netns <state_dir>/netns/<id>:  lo up, eth0 172.29.0.N/16 (MAC 02:42:ac:1d:00:NN),
                                   default route via 172.29.0.1

The netns is a bind mount of an nsfs inode on a file under our own state dir
(like Docker's /var/run/docker/netns, not iproute2's /run/netns); the runtime
puts its path in the OCI config (``linux.namespaces[type=network].path``).
IP addresses come from a small IPAM file (``<state_dir>/ipam.json``, changed
under ``ipam.lock``): lowest free address, never the network, gateway or
broadcast address, one per container id, released on teardown.

What this module deliberately does NOT do, unlike Docker: no iptables/nftables
rules, no sysctl (``ip_forward`` stays as it is; with it off, containers reach
the host and each other, nothing beyond). Publishing ports is a userland
proxy on 127.0.0.1 (``portproxy``). Netlink is pyroute2, imported lazily
(``import dockyard.runtime.network`` stays cheap).

Modes: ``bridge`` (the above), ``none`` (a netns with only ``lo``, up),
``host`` (nothing; the container shares the host's network namespace).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import ipaddress
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from pyroute2 import IPRoute  # type: ignore[import-untyped]

DEFAULT_SUBNET = "172.29.0.0/16"
DEFAULT_BRIDGE = "dockyard0"
MTU = 1500
#: Env overrides of ``<root>/config.json``'s "default-subnet" / "bridge".
SUBNET_ENV = "DOCKYARD_SUBNET"
BRIDGE_ENV = "DOCKYARD_BRIDGE"

NetworkMode = Literal["bridge", "host", "none"]
MODES: tuple[NetworkMode, ...] = ("bridge", "host", "none")

_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MNT_DETACH = 2
_RTPROT_BOOT = 3  # what `ip route add` uses
_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

T = TypeVar("T")


class NetworkError(DockyardError):
    """A kernel object could not be made or a configuration is inconsistent."""


# --------------------------------------------------------------------------- #
# configuration
# --------------------------------------------------------------------------- #


def load_network_config(root: Path) -> tuple[str, str]:
    """(subnet, bridge name) for a store root.

    ``$DOCKYARD_SUBNET`` / ``$DOCKYARD_BRIDGE`` win over ``<root>/config.json``
    keys ``"default-subnet"`` / ``"bridge"``, which win over 172.29.0.0/16 and
    ``dockyard0``. Raises InvalidArgument for a bad value.
    """
    conf: dict[str, Any] = {}
    path = root / "config.json"
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        loaded = {}
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"invalid config file {path}: {e}") from None
    if isinstance(loaded, dict):
        conf = loaded
    subnet = os.environ.get(SUBNET_ENV) or conf.get("default-subnet") or DEFAULT_SUBNET
    bridge = os.environ.get(BRIDGE_ENV) or conf.get("bridge") or DEFAULT_BRIDGE
    if not isinstance(subnet, str) or not isinstance(bridge, str):
        raise InvalidArgument(f"invalid network configuration in {path}")
    return str(parse_subnet(subnet)), check_ifname(bridge)


def parse_subnet(subnet: str) -> ipaddress.IPv4Network:
    """An IPv4 network with room for a gateway and at least one container."""
    try:
        net = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError as e:
        raise InvalidArgument(f"invalid subnet {subnet!r}: {e}") from None
    if net.prefixlen > 30:
        raise InvalidArgument(f"invalid subnet {subnet!r}: too small (at most /30)")
    return net


def check_ifname(name: str) -> str:
    if not _IFNAME.fullmatch(name):
        raise InvalidArgument(f"invalid interface name {name!r} (1-15 of [A-Za-z0-9_.-])")
    return name


def host_veth_name(container_id: str) -> str:
    """Host end of a container's veth pair: ``dy`` + first 11 characters of the id."""
    return "dy" + container_id[:11]


def mac_for_ip(ip: str) -> str:
    """Docker's generated MAC: ``02:42`` + the 4 bytes of the IPv4 address."""
    b = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)


# --------------------------------------------------------------------------- #
# endpoint
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Endpoint:
    """What ``Network.setup`` made for one container (empty strings where n/a)."""

    container_id: str
    mode: NetworkMode
    netns_path: Path | None
    ip: str = ""
    prefix_len: int = 0
    gateway: str = ""
    mac: str = ""
    host_veth: str = ""
    bridge: str = ""
    subnet: str = ""

    @property
    def sandbox_key(self) -> str:
        """``NetworkSettings.SandboxKey``: the netns path ("" for host mode)."""
        return str(self.netns_path) if self.netns_path is not None else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "container_id": self.container_id,
            "mode": self.mode,
            "netns_path": self.sandbox_key or None,
            "ip": self.ip,
            "prefix_len": self.prefix_len,
            "gateway": self.gateway,
            "mac": self.mac,
            "host_veth": self.host_veth,
            "bridge": self.bridge,
            "subnet": self.subnet,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Endpoint:
        mode = data.get("mode", "bridge")
        if mode not in MODES:
            raise InvalidArgument(f"invalid network mode {mode!r}")
        ns = data.get("netns_path")
        return cls(
            container_id=str(data["container_id"]),
            mode=mode,
            netns_path=Path(ns) if ns else None,
            ip=str(data.get("ip", "")),
            prefix_len=int(data.get("prefix_len", 0)),
            gateway=str(data.get("gateway", "")),
            mac=str(data.get("mac", "")),
            host_veth=str(data.get("host_veth", "")),
            bridge=str(data.get("bridge", "")),
            subnet=str(data.get("subnet", "")),
        )


def _id64(*parts: str) -> str:
    return hashlib.sha256(":".join(("dockyard", *parts)).encode()).hexdigest()


def network_settings(
    container_id: str,
    mode: NetworkMode,
    endpoint: Endpoint | None,
    ports: Mapping[str, Any] | None = None,
    network_id: str = "",
) -> dict[str, Any]:
    """Docker's ``NetworkSettings`` for inspect. ``endpoint`` None = not running
    (addresses empty, as Docker shows a stopped container); ``ports`` is
    ``ports.ports_json(...)`` of the bound ports ({} when not running)."""
    ep = endpoint if endpoint is not None and endpoint.mode == mode else None
    running = ep is not None
    net_id = network_id or _id64("network", mode)
    endpoint_id = _id64("endpoint", container_id, mode) if running else ""
    ip = ep.ip if ep else ""
    prefix = ep.prefix_len if ep else 0
    gateway = ep.gateway if ep else ""
    mac = ep.mac if ep else ""
    return {
        "Bridge": "",
        "SandboxID": _id64("sandbox", container_id) if running else "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": dict(ports or {}),
        "SandboxKey": ep.sandbox_key if ep else "",
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": endpoint_id if mode == "bridge" else "",
        "Gateway": gateway,
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": ip,
        "IPPrefixLen": prefix,
        "IPv6Gateway": "",
        "MacAddress": mac,
        "Networks": {
            mode: {
                "IPAMConfig": None,
                "Links": None,
                "Aliases": None,
                "NetworkID": net_id,
                "EndpointID": endpoint_id,
                "Gateway": gateway,
                "IPAddress": ip,
                "IPPrefixLen": prefix,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "MacAddress": mac,
                "DriverOpts": None,
            }
        },
    }


# --------------------------------------------------------------------------- #
# /etc/hosts, /etc/resolv.conf, /etc/hostname
# --------------------------------------------------------------------------- #

_HOSTS_DEFAULT = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)
_NS_LINE = re.compile(r"^\s*nameserver\s+(\S+)")


def hosts_content(hostname: str, ip: str = "", extra_hosts: Iterable[tuple[str, str]] = ()) -> str:
    """A container's /etc/hosts as Docker writes it (``--add-host`` entries, then
    the container's own address and hostname when it has an address)."""
    lines = [_HOSTS_DEFAULT]
    lines += [f"{addr}\t{name}\n" for name, addr in extra_hosts]
    if ip:
        lines.append(f"{ip}\t{hostname}\n")
    return "".join(lines)


def resolv_conf_content(host_text: str) -> str:
    """The host's resolv.conf minus loopback (127.x, ::1) and IPv6 nameservers, as
    Docker filters it for the default bridge. Unlike Docker, when no nameserver is
    left dockyard does NOT add 8.8.8.8/8.8.4.4: containers here have no route off
    the host, and we never want them to try."""
    out: list[str] = []
    for line in host_text.splitlines(keepends=True):
        m = _NS_LINE.match(line)
        if m:
            addr = m.group(1)
            if addr.startswith("127.") or ":" in addr:
                continue
        out.append(line)
    text = "".join(out)
    if text and not text.endswith("\n"):
        text += "\n"
    return text


def hostname_content(hostname: str) -> str:
    return hostname + "\n"


@dataclass(frozen=True)
class EtcFiles:
    hosts: Path
    resolv_conf: Path
    hostname: Path


def write_etc_files(
    dest_dir: Path,
    hostname: str,
    endpoint: Endpoint | None,
    extra_hosts: Iterable[tuple[str, str]] = (),
    host_etc: Path = Path("/etc"),
) -> EtcFiles:
    """Write ``hosts``, ``resolv.conf``, ``hostname`` into ``dest_dir`` (the runtime
    bind-mounts them over the container's /etc/...; Docker's HostsPath etc.).
    Host mode (endpoint.mode == "host") copies the host's hosts and resolv.conf."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        host_resolv = (host_etc / "resolv.conf").read_text()
    except OSError:
        host_resolv = ""
    if endpoint is not None and endpoint.mode == "host":
        try:
            hosts = (host_etc / "hosts").read_text()
        except OSError:
            hosts = _HOSTS_DEFAULT
        hosts += "".join(f"{addr}\t{name}\n" for name, addr in extra_hosts)
        resolv = host_resolv
    else:
        hosts = hosts_content(hostname, endpoint.ip if endpoint else "", extra_hosts)
        resolv = resolv_conf_content(host_resolv)
    files = EtcFiles(dest_dir / "hosts", dest_dir / "resolv.conf", dest_dir / "hostname")
    _write(files.hosts, hosts)
    _write(files.resolv_conf, resolv)
    _write(files.hostname, hostname_content(hostname))
    return files


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- #
# IPAM
# --------------------------------------------------------------------------- #


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class Ipam:
    """IPv4 allocations per container id in ``<state_dir>/ipam.json``.

    Every method takes ``<state_dir>/ipam.lock`` (flock), so several processes
    can allocate at once. File: ``{"allocations": {id: {"ip":..., "subnet":...}}}``.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / "ipam.json"
        self.lock_path = state_dir / "ipam.lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with _flocked(self.lock_path):
            yield

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise NetworkError(f"corrupt IPAM state {self.path}: {e}") from None
        allocs = data.get("allocations", {}) if isinstance(data, dict) else {}
        return {str(k): dict(v) for k, v in allocs.items() if isinstance(v, dict)}

    def _save(self, allocs: Mapping[str, Mapping[str, str]]) -> None:
        tmp = self.path.with_name(f".ipam.json.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump({"allocations": dict(sorted(allocs.items()))}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def allocations(self) -> dict[str, str]:
        """container id -> IP (every subnet)."""
        with self.locked():
            return {k: v["ip"] for k, v in self._load().items()}

    def get(self, container_id: str) -> tuple[str, str] | None:
        """(ip, subnet) of a container, if allocated."""
        with self.locked():
            a = self._load().get(container_id)
        return (a["ip"], a["subnet"]) if a else None

    def allocate(self, container_id: str, subnet: str) -> str:
        """The container's address in ``subnet``: the one it has, else the lowest
        free host address after the gateway. Takes the lock itself (flock is per open
        file: never call it inside ``locked()``; ``Network.setup`` uses the _locked form)."""
        with self.locked():
            return self._allocate_locked(container_id, subnet)

    def _allocate_locked(self, container_id: str, subnet: str) -> str:
        net = parse_subnet(subnet)
        allocs = self._load()
        mine = allocs.get(container_id)
        if mine is not None and mine.get("subnet") == str(net):
            return mine["ip"]
        taken: set[int] = set()
        for a in allocs.values():
            with contextlib.suppress(ValueError, KeyError):
                addr = ipaddress.IPv4Address(a["ip"])
                if addr in net:
                    taken.add(int(addr))
        first = int(net.network_address) + 2  # .0 network, .1 gateway
        last = int(net.broadcast_address) - 1
        for candidate in range(first, last + 1):
            if candidate not in taken:
                ip = str(ipaddress.IPv4Address(candidate))
                allocs[container_id] = {"ip": ip, "subnet": str(net)}
                self._save(allocs)
                return ip
        raise NetworkError(f"no available IPv4 addresses on this network's address pools: {net}")

    def release(self, container_id: str) -> str | None:
        """Forget the container's address (idempotent); returns it."""
        with self.locked():
            allocs = self._load()
            gone = allocs.pop(container_id, None)
            if gone is not None:
                self._save(allocs)
        return gone["ip"] if gone else None


# --------------------------------------------------------------------------- #
# kernel objects
# --------------------------------------------------------------------------- #

_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh OS thread (whose namespaces may be changed and are
    then thrown away with the thread) and return its result or raise its error."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=run, name="dockyard-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def create_netns(path: Path) -> None:
    """A new network namespace, kept alive by a bind mount on ``path`` (``lo`` up).

    Done in a throw-away thread: unshare(CLONE_NEWNET) affects only the calling
    thread, and /proc/thread-self/ns/net is then bind-mounted on ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)

    def inner() -> None:
        libc = _c()
        _check(libc.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        _check(
            libc.mount(b"/proc/thread-self/ns/net", os.fsencode(path), b"none", _MS_BIND, None),
            f"bind mount netns on {path}",
        )
        _link_up_lo()

    try:
        _in_thread(inner)
    except BaseException:
        remove_netns(path)
        raise


def remove_netns(path: Path) -> None:
    """Unmount and delete a netns file (idempotent)."""
    if _c().umount2(os.fsencode(path), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # not mounted / no file
            raise OSError(err, f"umount {path}: {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def is_netns(path: Path) -> bool:
    """True if ``path`` is a bind-mounted network namespace."""
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except OSError:
        return False


def in_netns(path: Path, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a throw-away thread that has entered the netns at ``path``."""

    def inner() -> T:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_c().setns(fd, _CLONE_NEWNET), f"setns {path}")
        finally:
            os.close(fd)
        return fn()

    return _in_thread(inner)


def _iproute() -> IPRoute:
    from pyroute2 import IPRoute

    return IPRoute()


def _netlink_code(e: BaseException) -> int | None:
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

    return int(e.code) if isinstance(e, NetlinkError) else None


_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def _link_up_lo() -> None:
    """``ip link set lo up`` in the calling thread's netns, by ioctl: a new
    netns needs nothing else, so ``--network none`` never imports pyroute2."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _link_index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


_SYS_NET = Path("/sys/class/net")


def _surely_absent(name: str) -> bool:
    """True when sysfs shows this netns's links and ``name`` is not among them:
    then there is nothing to delete, and pyroute2 (0.2-0.3 s to import) is spared."""
    return (_SYS_NET / "lo").exists() and not (_SYS_NET / name).exists()


def _delete_link(name: str, kind: str | None = None) -> None:
    """Delete a link by name if it exists (and, given ``kind``, is of that kind)."""
    if _surely_absent(name):
        return
    with _iproute() as ipr:
        idx = _link_index(ipr, name)
        if idx is None:
            return
        if kind is not None and _link_kind(ipr.get_links(idx)[0]) != kind:
            return
        try:
            ipr.link("del", index=idx)
        except Exception as e:
            if _netlink_code(e) != errno.ENODEV:
                raise


def link_exists(name: str) -> bool:
    with _iproute() as ipr:
        return _link_index(ipr, name) is not None


def delete_bridge(name: str) -> None:
    """Delete a bridge (tests, ``network prune``-like cleanups); idempotent."""
    _delete_link(check_ifname(name), "bridge")


# --------------------------------------------------------------------------- #
# the network
# --------------------------------------------------------------------------- #


class Network:
    """The default bridge network of one dockyard state dir.

    ``state_dir`` holds ``netns/<id>`` (the namespaces), ``ipam.json`` and its lock.
    """

    def __init__(
        self, state_dir: Path, subnet: str = DEFAULT_SUBNET, bridge: str = DEFAULT_BRIDGE
    ) -> None:
        self.state_dir = state_dir
        self.net = parse_subnet(subnet)
        self.subnet = str(self.net)
        self.bridge = check_ifname(bridge)
        self.gateway = str(self.net.network_address + 1)
        self.ipam = Ipam(state_dir)

    @property
    def network_id(self) -> str:
        """A stable 64-hex id for ``Networks.bridge.NetworkID``."""
        return _id64("network", self.bridge, self.subnet)

    def netns_path(self, container_id: str) -> Path:
        return self.state_dir / "netns" / _check_id(container_id)

    def sandbox_key(self, container_id: str) -> str:
        return str(self.netns_path(container_id))

    # -- setup / teardown --------------------------------------------------- #

    def setup(self, container_id: str, mode: NetworkMode, hostname: str = "") -> Endpoint:
        """Make the container's network (see module doc). On failure everything
        made so far is removed again. Leftovers of an earlier crashed setup of the
        same id are removed first."""
        _check_id(container_id)
        if mode == "host":
            return Endpoint(container_id, "host", None)
        if mode not in ("bridge", "none"):
            raise InvalidArgument(f"invalid network mode: {mode}")
        self.teardown(container_id)  # leftovers of a crash; no-op normally
        ns = self.netns_path(container_id)
        try:
            create_netns(ns)
            if mode == "none":
                return Endpoint(container_id, "none", ns)
            with self.ipam.locked():
                self._ensure_bridge()
                ip = self.ipam._allocate_locked(container_id, self.subnet)
            ep = Endpoint(
                container_id=container_id,
                mode="bridge",
                netns_path=ns,
                ip=ip,
                prefix_len=self.net.prefixlen,
                gateway=self.gateway,
                mac=mac_for_ip(ip),
                host_veth=host_veth_name(container_id),
                bridge=self.bridge,
                subnet=self.subnet,
            )
            self._plug(ep)
            return ep
        except BaseException:
            with contextlib.suppress(Exception):
                self.teardown(container_id)
            raise

    def teardown(self, container_id: str) -> None:
        """Remove the veth, the netns and the address; idempotent."""
        _check_id(container_id)
        _delete_link(host_veth_name(container_id), "veth")
        remove_netns(self.netns_path(container_id))
        self.ipam.release(container_id)

    def lookup(self, container_id: str) -> Endpoint | None:
        """The endpoint of a container that is set up (bridge or none), else None."""
        ns = self.netns_path(container_id)
        if not is_netns(ns):
            return None
        got = self.ipam.get(container_id)
        if got is None:
            return Endpoint(container_id, "none", ns)
        ip, subnet = got
        net = parse_subnet(subnet)
        return Endpoint(
            container_id=container_id,
            mode="bridge",
            netns_path=ns,
            ip=ip,
            prefix_len=net.prefixlen,
            gateway=str(net.network_address + 1),
            mac=mac_for_ip(ip),
            host_veth=host_veth_name(container_id),
            bridge=self.bridge,
            subnet=subnet,
        )

    def remove_bridge(self) -> None:
        """Delete the bridge (idempotent). Only when no container uses it."""
        delete_bridge(self.bridge)

    # -- internals ---------------------------------------------------------- #

    def _ensure_bridge(self) -> None:
        """Create the bridge with the gateway address, or check the existing one.
        Tolerates another process creating it at the same moment."""
        with _iproute() as ipr:
            idx = _link_index(ipr, self.bridge)
            if idx is None:
                self._check_overlap(ipr)
                try:
                    ipr.link("add", ifname=self.bridge, kind="bridge", mtu=MTU)
                except Exception as e:
                    if _netlink_code(e) != errno.EEXIST:
                        raise NetworkError(f"create bridge {self.bridge}: {e}") from e
                idx = _link_index(ipr, self.bridge)
                if idx is None:
                    raise NetworkError(f"bridge {self.bridge} vanished while being set up")
            else:
                link = ipr.get_links(idx)[0]
                kind = _link_kind(link)
                if kind != "bridge":
                    raise NetworkError(f"{self.bridge} exists and is not a bridge ({kind})")
            have = [
                (a.get_attr("IFA_ADDRESS"), int(a["prefixlen"]))
                for a in ipr.get_addr(index=idx, family=2)
            ]
            want = (self.gateway, self.net.prefixlen)
            if want not in have:
                if have:
                    shown = ", ".join(f"{a}/{p}" for a, p in have)
                    raise NetworkError(
                        f"bridge {self.bridge} has address {shown}, not "
                        f"{self.gateway}/{self.net.prefixlen} (subnet {self.subnet}); "
                        "remove the bridge or configure its subnet"
                    )
                try:
                    ipr.addr(
                        "add",
                        index=idx,
                        address=self.gateway,
                        prefixlen=self.net.prefixlen,
                        broadcast=str(self.net.broadcast_address),
                    )
                except Exception as e:
                    if _netlink_code(e) != errno.EEXIST:
                        raise
            ipr.link("set", index=idx, state="up")

    def _check_overlap(self, ipr: IPRoute) -> None:
        for route in ipr.get_routes(family=2):
            dst = route.get_attr("RTA_DST")
            plen = int(route["dst_len"])
            if dst is None or plen == 0 or route.get_attr("RTA_TABLE") != 254:
                continue
            other = ipaddress.IPv4Network(f"{dst}/{plen}", strict=False)
            if other.overlaps(self.net):
                raise NetworkError(
                    f"subnet {self.subnet} overlaps {other}, already routed on this host"
                )

    def _plug(self, ep: Endpoint) -> None:
        assert ep.netns_path is not None
        with _iproute() as ipr:
            br = _link_index(ipr, self.bridge)
            if br is None:
                raise NetworkError(f"bridge {self.bridge} not found")
            nsfd = os.open(ep.netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                ipr.link(
                    "add",
                    ifname=ep.host_veth,
                    kind="veth",
                    mtu=MTU,
                    peer={"ifname": "eth0", "address": ep.mac, "mtu": MTU, "net_ns_fd": nsfd},
                )
            except Exception as e:
                raise NetworkError(f"create veth {ep.host_veth}: {e}") from e
            finally:
                os.close(nsfd)
            host = _link_index(ipr, ep.host_veth)
            if host is None:
                raise NetworkError(f"veth {ep.host_veth} vanished while being set up")
            ipr.link("set", index=host, master=br)
            ipr.link("set", index=host, state="up")

        def inside() -> None:
            with _iproute() as nsr:
                eth0 = _link_index(nsr, "eth0")
                if eth0 is None:
                    raise NetworkError("eth0 missing in the container's netns")
                nsr.addr(
                    "add",
                    index=eth0,
                    address=ep.ip,
                    prefixlen=ep.prefix_len,
                    broadcast=str(self.net.broadcast_address),
                )
                nsr.link("set", index=eth0, state="up")
                nsr.route("add", dst="0.0.0.0/0", gateway=ep.gateway, proto=_RTPROT_BOOT)

        in_netns(ep.netns_path, inside)


def _link_kind(link: Any) -> str:
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return str(kind or "device")


def _check_id(container_id: str) -> str:
    if not _CONTAINER_ID.fullmatch(container_id):
        raise InvalidArgument(f"invalid container id for networking: {container_id!r}")
    return container_id


__all__ = [
    "DEFAULT_BRIDGE",
    "DEFAULT_SUBNET",
    "MODES",
    "MTU",
    "Endpoint",
    "EtcFiles",
    "Ipam",
    "Network",
    "NetworkError",
    "NetworkMode",
    "create_netns",
    "delete_bridge",
    "host_veth_name",
    "hostname_content",
    "hosts_content",
    "in_netns",
    "is_netns",
    "link_exists",
    "load_network_config",
    "mac_for_ip",
    "network_settings",
    "parse_subnet",
    "remove_netns",
    "resolv_conf_content",
    "write_etc_files",
]
