"""Container networking on real kernel objects: bridge, veth pairs, network
namespaces, the IPAM file and the userland port proxy.

Each test gets its own state dir and its own bridge ``dyt<pid>`` on a /24 of
172.30.0.0/16 chosen per pytest-xdist worker (and checked against the host's
routes), so workers never collide with each other or with a real ``dockyard0``.
Everything made here (netns mounts, veths, bridge, proxies, servers in the
namespaces) is removed by the fixtures, and checked to be gone.

Needs root, ``nsenter`` and busybox (Debian busybox-static). No traffic leaves
the host: only 127.0.0.1 and addresses on the test bridge are contacted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument, NotFound
from dockyard.runtime import network as netmod
from dockyard.runtime.network import Endpoint, Ipam, Network, NetworkError
from dockyard.runtime.portproxy import (
    PIDFILE,
    READYFILE,
    ProxyError,
    read_proxy,
    start_proxy,
    stop_proxy,
)
from dockyard.runtime.ports import (
    PortBinding,
    parse_publish,
    port_lines,
    port_lookup,
    ports_json,
)

pytestmark = pytest.mark.integration

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
REPO_SRC = Path(__file__).resolve().parents[2] / "src"


def _require() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("needs root")
    for tool in ("nsenter",):
        if shutil.which(tool) is None:
            problems.append(f"{tool} not found")
    if not Path(BUSYBOX).exists():
        problems.append("busybox not found")
    if problems:
        msg = "networking tests unavailable: " + ", ".join(problems)
        if os.environ.get("DOCKYARD_REQUIRE_PEERS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


def _host_routes() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(
        ["ip", "-4", "-j", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    nets = []
    for r in json.loads(out or "[]"):
        dst = r.get("dst", "")
        if dst in ("", "default") or r.get("table") == "local":
            continue
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.IPv4Network(dst, strict=False))
    return nets


def _test_subnet() -> str:
    """A /24 of 172.30.0.0/16 for this worker, not routed on the host yet."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    start = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 200
    start = (start * 7 + os.getpid() % 7) % 256
    used = _host_routes()
    for i in range(256):
        cand = ipaddress.IPv4Network(f"172.30.{(start + i) % 256}.0/24")
        if not any(cand.overlaps(u) for u in used):
            return str(cand)
    pytest.skip("no free /24 in 172.30.0.0/16 for the test bridge")


def _mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def _cid() -> str:
    return secrets.token_hex(32)


def _nsrun(ep: Endpoint, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    assert ep.netns_path is not None
    return subprocess.run(
        ["nsenter", f"--net={ep.netns_path}", *cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    """A Network on a test bridge; at the end every endpoint and the bridge go."""
    _require()
    bridge = f"dyt{os.getpid()}"
    state = tmp_path / "net"
    n = Network(state, _test_subnet(), bridge)
    try:
        yield n
    finally:
        ns_dir = state / "netns"
        for p in sorted(ns_dir.iterdir()) if ns_dir.is_dir() else []:
            n.teardown(p.name)
        for cid in Ipam(state).allocations():
            n.teardown(cid)
        n.remove_bridge()
        assert not netmod.link_exists(bridge)


@contextlib.contextmanager
def _spawn_in(ep: Endpoint, *cmd: str) -> Iterator[subprocess.Popen[bytes]]:
    """A server in the container's netns (nsenter execs it: the pid is the server)."""
    assert ep.netns_path is not None
    proc = subprocess.Popen(
        ["nsenter", f"--net={ep.netns_path}", *cmd],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _wait_tcp(ip: str, port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((ip, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@contextlib.contextmanager
def _httpd(ep: Endpoint, root: Path, text: str) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(text)
    with _spawn_in(ep, BUSYBOX, "httpd", "-f", "-p", "80", "-h", str(root)):
        _wait_tcp(ep.ip, 80)
        yield


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        body: bytes = r.read()
        return body.decode()


# --------------------------------------------------------------------------- #
# bridge endpoints, reachability
# --------------------------------------------------------------------------- #


def test_bridge_endpoints_http_and_container_to_container(net: Network, tmp_path: Path) -> None:
    a_id, b_id = _cid(), _cid()
    a = net.setup(a_id, "bridge", "hosta")
    b = net.setup(b_id, "bridge", "hostb")
    gw = str(net.net.network_address + 1)
    assert (a.gateway, a.prefix_len, b.gateway) == (gw, 24, gw)
    assert a.ip == str(net.net.network_address + 2)  # first after the gateway
    assert b.ip == str(net.net.network_address + 3)
    assert a.mac == "02:42:ac:1e:" + ":".join(f"{int(x):02x}" for x in a.ip.split(".")[2:])
    assert a.host_veth == "dy" + a_id[:11] and a.bridge == net.bridge
    assert a.netns_path == tmp_path / "net" / "netns" / a_id
    assert net.sandbox_key(a_id) == str(a.netns_path) == a.sandbox_key
    assert _mounted(a.netns_path)
    assert net.lookup(a_id) == a and net.lookup(_cid()) is None

    # inside: lo + eth0 with the address, MAC, MTU and a default route via the bridge
    links = _nsrun(a, "ip", "-j", "addr").stdout
    by_name = {x["ifname"]: x for x in json.loads(links)}
    assert set(by_name) == {"lo", "eth0"}
    eth0 = by_name["eth0"]
    assert "UP" in by_name["lo"]["flags"] and "UP" in eth0["flags"]
    assert eth0["address"] == a.mac and eth0["mtu"] == 1500
    assert {(i["local"], i["prefixlen"]) for i in eth0["addr_info"] if i["family"] == "inet"} == {
        (a.ip, 24)
    }
    routes = json.loads(_nsrun(a, "ip", "-j", "route").stdout)
    assert {"dst": "default", "gateway": gw, "dev": "eth0"}.items() <= routes[0].items()

    # host side: bridge with the gateway address, MTU 1500; veth enslaved to it
    br = json.loads(
        subprocess.run(
            ["ip", "-j", "addr", "show", net.bridge], capture_output=True, text=True, check=True
        ).stdout
    )[0]
    assert br["mtu"] == 1500 and "UP" in br["flags"]
    assert (gw, 24) in {(i["local"], i["prefixlen"]) for i in br["addr_info"]}
    veth = json.loads(
        subprocess.run(
            ["ip", "-j", "link", "show", a.host_veth], capture_output=True, text=True, check=True
        ).stdout
    )[0]
    assert veth["master"] == net.bridge and "UP" in veth["flags"]

    with _httpd(a, tmp_path / "wa", "<h1>a</h1>\n"), _httpd(b, tmp_path / "wb", "<h1>b</h1>\n"):
        # host -> containers
        assert _get(f"http://{a.ip}/") == "<h1>a</h1>\n"
        assert _get(f"http://{b.ip}/") == "<h1>b</h1>\n"
        # container -> container, both ways, over the bridge
        got = _nsrun(a, BUSYBOX, "wget", "-q", "-O", "-", f"http://{b.ip}/")
        assert got.stdout == "<h1>b</h1>\n", got.stderr
        got = _nsrun(b, BUSYBOX, "wget", "-q", "-O", "-", f"http://{a.ip}/")
        assert got.stdout == "<h1>a</h1>\n", got.stderr


def test_none_mode_has_only_lo_and_host_mode_makes_nothing(net: Network) -> None:
    cid = _cid()
    ep = net.setup(cid, "none", "quiet")
    assert ep.mode == "none" and ep.ip == "" and ep.netns_path is not None
    links = json.loads(_nsrun(ep, "ip", "-j", "link").stdout)
    assert [x["ifname"] for x in links] == ["lo"]
    assert "UP" in links[0]["flags"]
    assert Ipam(net.state_dir).allocations() == {}
    assert not netmod.link_exists(netmod.host_veth_name(cid))
    assert net.lookup(cid) == ep

    host = net.setup(_cid(), "host", "h")
    assert host.mode == "host" and host.netns_path is None and host.sandbox_key == ""

    net.teardown(cid)
    assert not ep.netns_path.exists() and not _mounted(ep.netns_path)
    with pytest.raises(InvalidArgument):
        net.setup(_cid(), "overlay", "x")  # type: ignore[arg-type]


def test_teardown_removes_everything_and_is_idempotent(net: Network) -> None:
    cid = _cid()
    ep = net.setup(cid, "bridge", "t")
    assert ep.netns_path is not None
    assert netmod.link_exists(ep.host_veth) and _mounted(ep.netns_path)
    assert Ipam(net.state_dir).allocations() == {cid: ep.ip}

    net.teardown(cid)
    assert not netmod.link_exists(ep.host_veth)
    assert not ep.netns_path.exists() and not _mounted(ep.netns_path)
    assert Ipam(net.state_dir).allocations() == {}
    assert net.lookup(cid) is None
    net.teardown(cid)  # harmless
    net.teardown(_cid())  # never set up: harmless too

    # a crashed setup's leftovers are cleaned by the next setup of the same id
    again = net.setup(cid, "bridge", "t")
    assert again.ip == ep.ip
    again2 = net.setup(cid, "bridge", "t")
    assert again2.ip == ep.ip and netmod.link_exists(ep.host_veth)


def test_parallel_setups_get_distinct_ips(net: Network) -> None:
    ids = [_cid() for _ in range(5)]
    code = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from dockyard.runtime.network import Network
        n = Network(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
        print(json.dumps(n.setup(sys.argv[4], "bridge", "p").to_json()))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_SRC))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(net.state_dir), net.subnet, net.bridge, cid],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for cid in ids
    ]
    eps = []
    for p in procs:
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        eps.append(Endpoint.from_json(json.loads(out)))
    ips = [e.ip for e in eps]
    assert len(set(ips)) == 5
    assert Ipam(net.state_dir).allocations() == dict(zip(ids, ips, strict=True))
    for e in eps:
        assert netmod.link_exists(e.host_veth)
        assert ipaddress.IPv4Address(e.ip) in net.net


def test_bridge_with_another_subnet_is_refused(net: Network) -> None:
    net.setup(_cid(), "bridge", "x")
    other = str(ipaddress.IPv4Network(net.subnet).supernet(new_prefix=23))
    with pytest.raises(NetworkError, match="has address"):
        Network(net.state_dir / "other", other, net.bridge).setup(_cid(), "bridge", "y")


# --------------------------------------------------------------------------- #
# IPAM (file only)
# --------------------------------------------------------------------------- #


def test_ipam_allocation_rules(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path)
    subnet = "10.9.8.0/29"  # .0 network, .1 gateway, .7 broadcast: .2-.6 usable
    got = [ipam.allocate(f"c{i}", subnet) for i in range(5)]
    assert got == [f"10.9.8.{i}" for i in range(2, 7)]
    assert ipam.allocate("c3", subnet) == "10.9.8.5"  # same id, same address
    with pytest.raises(NetworkError, match="no available IPv4 addresses"):
        ipam.allocate("c5", subnet)
    assert ipam.release("c1") == "10.9.8.3"
    assert ipam.release("c1") is None
    assert ipam.allocate("new", subnet) == "10.9.8.3"  # a released one is reused
    assert sorted(ipam.allocations().values()) == [f"10.9.8.{i}" for i in range(2, 7)]
    # a second subnet in the same file does not disturb the first
    assert ipam.allocate("z", "10.9.9.0/30") == "10.9.9.2"
    with pytest.raises(NetworkError):
        ipam.allocate("z2", "10.9.9.0/30")


# --------------------------------------------------------------------------- #
# port proxy
# --------------------------------------------------------------------------- #


def test_tcp_proxy_port_zero_and_docker_port_rendering(net: Network, tmp_path: Path) -> None:
    ep = net.setup(_cid(), "bridge", "web1")
    pdir = tmp_path / "c1"
    with _httpd(ep, tmp_path / "w", "<h1>b1</h1>\n"):
        handle = start_proxy(parse_publish("127.0.0.1::80"), ep.ip, pdir)
        try:
            assert handle.pid > 0 and len(handle.bindings) == 1
            b = handle.bindings[0]
            assert (b.host_ip, b.container_port, b.proto) == ("127.0.0.1", 80, "tcp")
            assert b.host_port > 0
            assert (pdir / PIDFILE).read_text().strip() == str(handle.pid)
            assert _get(f"http://127.0.0.1:{b.host_port}/") == "<h1>b1</h1>\n"
            assert read_proxy(pdir) == handle

            ports = ports_json(handle.bindings)
            assert ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(b.host_port)}]}
            assert port_lines(ports) == [f"80/tcp -> 127.0.0.1:{b.host_port}"]
            assert port_lookup(ports, "80", "web1") == [f"127.0.0.1:{b.host_port}"]
            with pytest.raises(NotFound, match="No public port '80/udp' published for web1"):
                port_lookup(ports, "80/udp", "web1")
        finally:
            stop_proxy(pdir)
        assert not Path(f"/proc/{handle.pid}").exists()
        assert not (pdir / PIDFILE).exists() and not (pdir / READYFILE).exists()
        assert read_proxy(pdir) is None
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", b.host_port), timeout=1).close()
        stop_proxy(pdir)  # idempotent


HALF_CLOSE_SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000)); s.listen()
while True:
    c, _ = s.accept()
    n = 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        n += len(d)
    c.sendall(b"got %d" % n)
    c.close()
"""

UDP_ECHO_SERVER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 5353))
while True:
    d, a = s.recvfrom(65536)
    s.sendto(b"echo:" + d, a)
"""


def test_tcp_half_close_and_udp_through_the_proxy(net: Network, tmp_path: Path) -> None:
    ep = net.setup(_cid(), "bridge", "svc")
    pdir = tmp_path / "c1"
    with (
        _spawn_in(ep, sys.executable, "-c", HALF_CLOSE_SERVER),
        _spawn_in(ep, sys.executable, "-c", UDP_ECHO_SERVER),
    ):
        _wait_tcp(ep.ip, 7000)
        bindings = parse_publish("127.0.0.1::7000") + parse_publish("127.0.0.1::5353/udp")
        handle = start_proxy(bindings, ep.ip, pdir, udp_timeout=0.3)
        try:
            tcp, udp = handle.bindings
            assert (tcp.proto, udp.proto) == ("tcp", "udp") and udp.host_port > 0

            # TCP: the client's shutdown(SHUT_WR) reaches the server, which then answers
            payload = os.urandom(300_000)
            with socket.create_connection(("127.0.0.1", tcp.host_port), timeout=5) as c:
                c.sendall(payload)
                c.shutdown(socket.SHUT_WR)
                answer = b""
                while chunk := c.recv(65536):
                    answer += chunk
            assert answer == b"got %d" % len(payload)

            # UDP: the server may still be starting; retry the first datagram
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.settimeout(0.2)
                deadline = time.monotonic() + 5
                while True:
                    u.sendto(b"ping", ("127.0.0.1", udp.host_port))
                    try:
                        data, _ = u.recvfrom(1024)
                        break
                    except TimeoutError:
                        assert time.monotonic() < deadline, "no UDP echo through the proxy"
                assert data == b"echo:ping"
                time.sleep(0.8)  # past the idle timeout: the per-client socket is reaped
                u.settimeout(3)
                u.sendto(b"again", ("127.0.0.1", udp.host_port))
                assert u.recvfrom(1024)[0] == b"echo:again"
        finally:
            stop_proxy(pdir)
        assert not Path(f"/proc/{handle.pid}").exists()


def test_port_in_use_is_docker_error(net: Network, tmp_path: Path) -> None:
    ep = net.setup(_cid(), "bridge", "busy")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        pdir = tmp_path / "c2"
        with pytest.raises(ProxyError) as ei:
            start_proxy(parse_publish(f"127.0.0.1:{port}:80"), ep.ip, pdir)
        assert str(ei.value) == f"Bind for 127.0.0.1:{port} failed: port is already allocated"
        assert not (pdir / PIDFILE).exists() and not (pdir / READYFILE).exists()
        # a multi-port proxy whose second port is taken binds nothing at all
        with pytest.raises(ProxyError, match="port is already allocated"):
            start_proxy(
                parse_publish("127.0.0.1::80") + parse_publish(f"127.0.0.1:{port}:81"),
                ep.ip,
                pdir,
            )
        # a host port range (-p 127.0.0.1:P-Q:80) takes the first free port of the range
        handle = start_proxy(parse_publish(f"127.0.0.1:{port}-{port + 20}:80"), ep.ip, pdir)
        try:
            got = handle.bindings[0]
            assert port < got.host_port <= port + 20 and got.host_port_end == 0
        finally:
            stop_proxy(pdir)
    assert start_proxy([], ep.ip, pdir).pid == 0  # nothing to publish: no process


# --------------------------------------------------------------------------- #
# values: -p parsing, /etc files, config
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("80", [PortBinding("127.0.0.1", 0, 80, "tcp")]),
        ("8080:80", [PortBinding("127.0.0.1", 8080, 80, "tcp")]),
        ("127.0.0.1:8080:80", [PortBinding("127.0.0.1", 8080, 80, "tcp")]),
        ("127.0.0.1::80", [PortBinding("127.0.0.1", 0, 80, "tcp")]),
        ("8080:80/udp", [PortBinding("127.0.0.1", 8080, 80, "udp")]),
        ("80/UDP", [PortBinding("127.0.0.1", 0, 80, "udp")]),
        (
            "8000-8001:80-81",
            [PortBinding("127.0.0.1", 8000, 80, "tcp"), PortBinding("127.0.0.1", 8001, 81, "tcp")],
        ),
        ("8000-8010:80", [PortBinding("127.0.0.1", 8000, 80, "tcp", 8010)]),
        ("[::1]:8080:80", [PortBinding("::1", 8080, 80, "tcp")]),
        ("published=8080,target=80,protocol=udp", [PortBinding("127.0.0.1", 8080, 80, "udp")]),
    ],
)
def test_parse_publish(spec: str, want: list[PortBinding]) -> None:
    assert parse_publish(spec) == want


@pytest.mark.parametrize(
    ("spec", "message"),
    [  # Docker 20.10 CLI texts (it prints them as "docker: <text>.")
        ("abc", "Invalid containerPort: abc"),
        ("x:80", "Invalid hostPort: x"),
        ("1.2.3:8080:80", "Invalid ip address: 1.2.3"),
        ("1.2.3::80", "Invalid ip address: 1.2.3"),
        ("80/xyz", "Invalid proto: xyz"),
        (
            "8000-8001:80-82",
            "Invalid ranges specified for container and host Ports: 80-82 and 8000-8001",
        ),
        ("[::1:8080:80", "Invalid ip address [::1: address [::1:: missing ']' in address"),
        ("::1:8080:80", "Invalid ip address ::1: address ::1:: too many colons in address"),
        ("80-79", "Invalid containerPort: 80-79"),
        ("99999", "Invalid containerPort: 99999"),
        ("", "No port specified: <empty>"),
        ("127.0.0.1:8080:", "No port specified: 127.0.0.1:8080:<empty>"),
    ],
)
def test_parse_publish_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as ei:
        parse_publish(spec)
    assert str(ei.value) == message


def test_etc_files_and_network_settings(tmp_path: Path) -> None:
    etc = tmp_path / "hostetc"
    etc.mkdir()
    (etc / "resolv.conf").write_text(
        "# generated\nnameserver 127.0.0.53\nnameserver 10.1.2.3\nnameserver ::1\n"
        "nameserver fd00::53\nsearch example.internal\noptions edns0\n"
    )
    (etc / "hosts").write_text("127.0.0.1 localhost\n10.0.0.5 hostbox\n")
    ep = Endpoint(
        "c" * 64,
        "bridge",
        tmp_path / "ns",
        "172.29.0.3",
        16,
        "172.29.0.1",
        netmod.mac_for_ip("172.29.0.3"),
        "dyccccccccccc",
        "dockyard0",
        "172.29.0.0/16",
    )
    files = netmod.write_etc_files(tmp_path / "c", "cccccccccccc", ep, host_etc=etc)
    hosts = files.hosts.read_text()
    assert hosts.startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    assert hosts.endswith("172.29.0.3\tcccccccccccc\n")
    assert files.resolv_conf.read_text() == (
        "# generated\nnameserver 10.1.2.3\nsearch example.internal\noptions edns0\n"
    )
    assert files.hostname.read_text() == "cccccccccccc\n"
    none = netmod.write_etc_files(tmp_path / "n", "nn", Endpoint("n", "none", None), host_etc=etc)
    assert "\tnn\n" not in none.hosts.read_text()
    host = netmod.write_etc_files(tmp_path / "h", "hh", Endpoint("h", "host", None), host_etc=etc)
    assert host.hosts.read_text() == (etc / "hosts").read_text()
    assert "127.0.0.53" in host.resolv_conf.read_text()

    assert ep.mac == "02:42:ac:1d:00:03"
    ns = netmod.network_settings(
        ep.container_id, "bridge", ep, ports_json(parse_publish("127.0.0.1:8080:80"))
    )
    assert ns["IPAddress"] == ns["Networks"]["bridge"]["IPAddress"] == "172.29.0.3"
    assert ns["IPPrefixLen"] == 16 and ns["Gateway"] == "172.29.0.1"
    assert ns["MacAddress"] == "02:42:ac:1d:00:03" and ns["SandboxKey"] == str(tmp_path / "ns")
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    assert len(ns["SandboxID"]) == len(ns["EndpointID"]) == 64
    ref = (
        Path(__file__).resolve().parents[3]
        / "shared/reference/inspect-container-web1-published.json"
    )
    if ref.exists():
        want = json.loads(ref.read_text())[0]["NetworkSettings"]
        assert list(ns) == list(want)
        assert list(ns["Networks"]["bridge"]) == list(want["Networks"]["bridge"])
    stopped = netmod.network_settings(ep.container_id, "bridge", None, {})
    assert stopped["IPAddress"] == "" and stopped["SandboxKey"] == "" and stopped["Ports"] == {}


def test_load_network_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(netmod.SUBNET_ENV, raising=False)
    monkeypatch.delenv(netmod.BRIDGE_ENV, raising=False)
    assert netmod.load_network_config(tmp_path) == ("172.29.0.0/16", "dockyard0")
    (tmp_path / "config.json").write_text('{"default-subnet": "10.77.0.0/24"}')
    assert netmod.load_network_config(tmp_path) == ("10.77.0.0/24", "dockyard0")
    monkeypatch.setenv(netmod.SUBNET_ENV, "10.88.0.0/16")
    assert netmod.load_network_config(tmp_path) == ("10.88.0.0/16", "dockyard0")
    monkeypatch.setenv(netmod.SUBNET_ENV, "10.88.0.1/16")
    with pytest.raises(InvalidArgument, match="invalid subnet"):
        netmod.load_network_config(tmp_path)
