"""Userland port proxy (dockyard's docker-proxy): host ip:port -> container ip:port.

Published ports are served by this small process instead of iptables DNAT
rules: dockyard changes no firewall rule and no sysctl. One process per
container serves all of its published ports::

    python -m dockyard.runtime.portproxy --pidfile F [--ready F.json] \\
        --map tcp:127.0.0.1:8080:172.29.0.2:80 --map udp:127.0.0.1:0:172.29.0.2:53

TCP: one backend connection per client, bytes copied both ways, half-close
(shutdown of one direction) passed on. UDP: one connected backend socket per
client address, closed after ``--udp-timeout`` seconds idle (docker-proxy: 90).

Readiness: once every port is bound, the process writes ``--ready`` (JSON with
the bound ports; host port 0 resolved to the kernel's choice) and then the
pidfile, both atomically. If a bind fails it writes ``{"error": ...}`` to
``--ready``, prints the error and exits 1; a port in use is reported as Docker
does: ``Bind for 127.0.0.1:8080 failed: port is already allocated``. SIGTERM
or SIGINT ends it (exit 0), removing its pidfile.

The caller's side is ``start_proxy`` / ``stop_proxy`` / ``read_proxy``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.errors import DockyardError, InvalidArgument
from dockyard.runtime.ports import PortBinding

if TYPE_CHECKING:  # asyncio is imported only by the proxy process itself
    import asyncio

PIDFILE = "portproxy.pid"
READYFILE = "portproxy.json"
LOGFILE = "portproxy.log"
UDP_TIMEOUT = 90.0
_MODULE = "dockyard.runtime.portproxy"
_BUF = 65536


class ProxyError(DockyardError):
    """The proxy could not bind or start (message as Docker words it)."""


# --------------------------------------------------------------------------- #
# caller API
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class ProxyHandle:
    """A running proxy: its pid (0 = nothing to publish, no process) and the
    bindings as bound (real host ports)."""

    pid: int
    bindings: list[PortBinding]
    container_ip: str = ""


@dataclass(frozen=True)
class ProxyMap:
    """One ``--map``: host side (port 0 = any, ``host_port_end`` = a range to try)."""

    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    host_port_end: int = 0

    def arg(self) -> str:
        hp = str(self.host_port)
        if self.host_port_end and self.host_port_end != self.host_port:
            hp += f"-{self.host_port_end}"
        host = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{self.proto}:{host}:{hp}:{self.container_ip}:{self.container_port}"

    @classmethod
    def parse(cls, text: str) -> ProxyMap:
        """``PROTO:HOSTIP:HOSTPORT[-END]:CTRIP:CTRPORT`` (an IPv6 host IP may be in [])."""
        parts = text.split(":")
        if len(parts) < 5:
            raise ValueError(f"bad --map {text!r}: want PROTO:HOSTIP:HOSTPORT:CTRIP:CTRPORT")
        proto, host_ip = parts[0], ":".join(parts[1:-3])
        host_port, container_ip, container_port = parts[-3], parts[-2], parts[-1]
        if host_ip.startswith("[") and host_ip.endswith("]"):
            host_ip = host_ip[1:-1]
        if proto not in ("tcp", "udp"):
            raise ValueError(f"bad --map {text!r}: protocol must be tcp or udp")
        start, _, end = host_port.partition("-")
        return cls(proto, host_ip, int(start), container_ip, int(container_port), int(end or 0))


def _paths(state_dir: Path) -> tuple[Path, Path, Path]:
    return state_dir / PIDFILE, state_dir / READYFILE, state_dir / LOGFILE


def start_proxy(
    bindings: Sequence[PortBinding],
    container_ip: str,
    state_dir: Path,
    *,
    udp_timeout: float = UDP_TIMEOUT,
    timeout: float = 15.0,
) -> ProxyHandle:
    """Start the proxy for a container's bindings and return once every port is
    bound (or raise ProxyError with the proxy's message). Files live in
    ``state_dir`` (pidfile, ready file, log); a proxy left there is stopped first."""
    if not bindings:
        return ProxyHandle(0, [], container_ip)
    for b in bindings:
        if b.proto not in ("tcp", "udp"):
            raise InvalidArgument(f"publishing {b.proto} ports is not supported: {b.port_key}")
    stop_proxy(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    pidfile, ready, log = _paths(state_dir)
    maps = [
        ProxyMap(b.proto, b.host_ip, b.host_port, container_ip, b.container_port, b.host_port_end)
        for b in bindings
    ]
    argv = [sys.executable, "-m", _MODULE, "--pidfile", str(pidfile), "--ready", str(ready)]
    argv += ["--udp-timeout", str(udp_timeout)]
    for m in maps:
        argv += ["--map", m.arg()]
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])  # the dir holding the dockyard package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    pid = os.posix_spawn(
        sys.executable,
        argv,
        env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
        setsigmask=(),
        setsigdef=(signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE),
    )
    deadline = time.monotonic() + timeout
    while True:
        if pidfile.exists():
            info = _read_json(ready)
            if info is not None and "bindings" in info:
                bound = [PortBinding.from_json(b) for b in info["bindings"]]
                return ProxyHandle(pid, bound, container_ip)
        done, status = _reap(pid)
        if done:
            info = _read_json(ready) or {}
            msg = info.get("error") or _tail(log) or f"port proxy exited with status {status}"
            _remove_files(state_dir)
            raise ProxyError(str(msg))
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)
            _remove_files(state_dir)
            raise ProxyError(f"port proxy did not become ready within {timeout:g}s")
        time.sleep(0.01)


def read_proxy(state_dir: Path) -> ProxyHandle | None:
    """The proxy running for ``state_dir``, if any (e.g. for ``port`` in another process)."""
    pidfile, ready, _ = _paths(state_dir)
    pid = _read_pid(pidfile)
    if pid is None or not _is_our_proxy(pid, pidfile):
        return None
    info = _read_json(ready) or {}
    bound = [PortBinding.from_json(b) for b in info.get("bindings", [])]
    return ProxyHandle(pid, bound, str(info.get("container_ip", "")))


def stop_proxy(state_dir: Path, timeout: float = 5.0) -> None:
    """SIGTERM the proxy of ``state_dir`` (SIGKILL after ``timeout``), wait for it
    to end and remove its files. Idempotent; only signals a pid whose command line
    is this proxy with this pidfile (a reused pid is left alone)."""
    pidfile, _, _ = _paths(state_dir)
    pid = _read_pid(pidfile)
    if pid is not None and _is_our_proxy(pid, pidfile):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, timeout)
    _remove_files(state_dir)


def _remove_files(state_dir: Path) -> None:
    pidfile, ready, _ = _paths(state_dir)
    for p in (pidfile, ready):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:].strip()
    except OSError:
        return ""


def _is_our_proxy(pid: int, pidfile: Path) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        _reap(pid)
        return False
    return _MODULE.encode() in argv and os.fsencode(str(pidfile)) in argv


def _reap(pid: int) -> tuple[bool, int]:
    """(exited, status) for our child ``pid`` without blocking; a pid that is not
    our child counts as exited when /proc no longer shows it running."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True, -1
        return state in ("Z", "X"), -1
    if got == 0:
        return False, 0
    return True, os.waitstatus_to_exitcode(status)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _reap(pid)[0]:
            return True
        time.sleep(0.01)
    return _reap(pid)[0]


# --------------------------------------------------------------------------- #
# the proxy process
# --------------------------------------------------------------------------- #


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _bind_error(m: ProxyMap, port_text: str, e: OSError) -> ProxyError:
    if e.errno == errno.EADDRINUSE:
        return ProxyError(f"Bind for {m.host_ip}:{port_text} failed: port is already allocated")
    why = (e.strerror or str(e)).lower()
    ver = "6" if ":" in m.host_ip else "4"
    return ProxyError(
        f"Error starting userland proxy: listen {m.proto}{ver} {m.host_ip}:{port_text}: bind: {why}"
    )


def bind_mapping(m: ProxyMap) -> socket.socket:
    """A bound (TCP: listening) non-blocking socket for ``m``; tries each port of a
    host port range. Raises ProxyError with Docker's wording."""
    ports: Iterable[int] = range(m.host_port, max(m.host_port, m.host_port_end) + 1)
    last: OSError | None = None
    for port in ports:
        kind = socket.SOCK_STREAM if m.proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(_family(m.host_ip), kind)
        try:
            if m.proto == "tcp":  # (UDP + SO_REUSEADDR would allow double binds)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((m.host_ip, port))
            if m.proto == "tcp":
                s.listen(128)
            s.setblocking(False)
            return s
        except OSError as e:
            s.close()
            last = e
            if e.errno != errno.EADDRINUSE:
                break
    assert last is not None
    hp = str(m.host_port)
    if m.host_port_end and m.host_port_end != m.host_port:
        hp += f"-{m.host_port_end}"
    raise _bind_error(m, hp, last)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(_BUF)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.close()


class _TcpProxy:
    def __init__(self, m: ProxyMap) -> None:
        self.m = m

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import asyncio

        try:
            up_r, up_w = await asyncio.wait_for(
                asyncio.open_connection(self.m.container_ip, self.m.container_port), 30
            )
        except (OSError, TimeoutError) as e:
            print(
                f"Can't forward traffic to backend tcp/{self.m.container_ip}:"
                f"{self.m.container_port}: {e}",
                file=sys.stderr,
                flush=True,
            )
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
        finally:
            for w in (writer, up_w):
                w.close()
                with contextlib.suppress(OSError, RuntimeError):
                    await w.wait_closed()


class _UdpProxy:
    """Front socket on the host; one connected backend socket per client address."""

    def __init__(self, m: ProxyMap, sock: socket.socket, timeout: float) -> None:
        import asyncio

        self.m = m
        self.sock = sock
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()
        self.conns: dict[Any, tuple[socket.socket, list[float]]] = {}
        self.loop.add_reader(sock.fileno(), self._front_readable)

    def _front_readable(self) -> None:
        for _ in range(64):
            try:
                data, addr = self.sock.recvfrom(_BUF)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn = self.conns.get(addr)
            if conn is None:
                back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                back.setblocking(False)
                try:
                    back.connect((self.m.container_ip, self.m.container_port))
                except OSError:
                    back.close()
                    continue
                conn = (back, [time.monotonic()])
                self.conns[addr] = conn
                self.loop.add_reader(back.fileno(), self._back_readable, addr)
            back, seen = conn
            seen[0] = time.monotonic()
            with contextlib.suppress(OSError):
                back.send(data)

    def _back_readable(self, addr: Any) -> None:
        conn = self.conns.get(addr)
        if conn is None:
            return
        back, seen = conn
        for _ in range(64):
            try:
                data = back.recv(_BUF)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ECONNREFUSED from an ICMP port unreachable
                return
            seen[0] = time.monotonic()
            with contextlib.suppress(OSError):
                self.sock.sendto(data, addr)

    def _drop(self, addr: Any) -> None:
        conn = self.conns.pop(addr, None)
        if conn is not None:
            self.loop.remove_reader(conn[0].fileno())
            conn[0].close()

    async def reap_idle(self) -> None:
        import asyncio

        while True:
            await asyncio.sleep(min(max(self.timeout / 4, 0.05), 5.0))
            now = time.monotonic()
            for addr in [a for a, (_, seen) in self.conns.items() if now - seen[0] > self.timeout]:
                self._drop(addr)

    def close(self) -> None:
        for addr in list(self.conns):
            self._drop(addr)
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


async def serve(
    maps: Sequence[ProxyMap], pidfile: Path, ready: Path, udp_timeout: float = UDP_TIMEOUT
) -> int:
    """Bind everything, report readiness, forward until SIGTERM/SIGINT."""
    import asyncio

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    socks: list[socket.socket] = []
    try:
        for m in maps:
            socks.append(bind_mapping(m))
    except ProxyError as e:
        for s in socks:
            s.close()
        _write_atomic(ready, json.dumps({"error": str(e)}))
        print(str(e), file=sys.stderr, flush=True)
        return 1

    servers: list[asyncio.Server] = []
    udps: list[_UdpProxy] = []
    tasks: list[asyncio.Task[None]] = []
    bound: list[dict[str, Any]] = []
    for m, s in zip(maps, socks, strict=True):
        port = int(s.getsockname()[1])
        if m.proto == "tcp":
            servers.append(await asyncio.start_server(_TcpProxy(m).handle, sock=s))
        else:
            u = _UdpProxy(m, s, udp_timeout)
            udps.append(u)
            tasks.append(loop.create_task(u.reap_idle()))
        bound.append(
            PortBinding(m.host_ip, port, m.container_port, m.proto).to_json()
            | {"container_ip": m.container_ip}
        )
    info = {"pid": os.getpid(), "container_ip": maps[0].container_ip, "bindings": bound}
    _write_atomic(ready, json.dumps(info, indent=1))
    _write_atomic(pidfile, f"{os.getpid()}\n")
    try:
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        for srv in servers:
            srv.close()
        for u in udps:
            u.close()
        if _read_pid(pidfile) == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                pidfile.unlink()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import asyncio

    ap = argparse.ArgumentParser(
        prog="python -m " + _MODULE, description="dockyard userland port proxy"
    )
    ap.add_argument("--pidfile", required=True, type=Path)
    ap.add_argument("--ready", type=Path, help="readiness JSON (default: pidfile with .json)")
    ap.add_argument("--udp-timeout", type=float, default=UDP_TIMEOUT)
    ap.add_argument(
        "--map", action="append", required=True, help="PROTO:HOSTIP:HOSTPORT:CTRIP:CTRPORT"
    )
    args = ap.parse_args(argv)
    try:
        maps = [ProxyMap.parse(t) for t in args.map]
    except ValueError as e:
        ap.error(str(e))
    ready: Path = args.ready or args.pidfile.with_suffix(".json")
    return asyncio.run(serve(maps, args.pidfile, ready, args.udp_timeout))


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "ProxyError",
    "ProxyHandle",
    "ProxyMap",
    "bind_mapping",
    "main",
    "read_proxy",
    "serve",
    "start_proxy",
    "stop_proxy",
]
