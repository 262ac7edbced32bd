"""The per-container monitor: dockyard's own conmon.

`launch` starts ``python -m dockyard.runtime.monitor <spec.json>`` in a new
session, detached from the caller (it forks once more and the first process
exits, so the monitor is nobody's child and outlives the CLI). The monitor:

1. becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``): when ``runc create``
   exits, the container's init is reparented to the monitor, whose ``waitpid``
   then gives the real exit status (the code, or 128+signal);
2. binds ``attach.sock`` and ``ctl.sock`` in the spec's socket dir;
3. runs ``runc create`` with pipes as the container's stdin/stdout/stderr (runc
   passes its own stdio through in detached mode), or with ``--console-socket``
   for a tty (the pty master arrives by SCM_RIGHTS), then ``runc start``;
4. tells `launch` (one JSON line on an inherited pipe) that the container runs,
   or why it could not start (with ``launch(start=False)`` it stops after create
   and waits for a ctl ``start``, so a client can attach first);
5. relays: container output -> json-file log + every attached client; client
   stdin -> the container;
6. when the container's init is reaped: drains the output, ``runc delete``,
   calls the spec's ``on_exit`` hook with the exit code, answers ``wait``
   requests, closes clients, removes its sockets and exits.

The hook is called exactly once for every monitor that got as far as running
``runc create`` -- also when create or start failed (with 125/126/127), and
then before `launch` raises. SIGTERM, SIGINT and SIGHUP are ignored: the
monitor dies before its container only by SIGKILL (see `monitor_alive`).

Sockets (paths longer than a unix socket allows are reached through
``/proc/self/fd/<dirfd>/``, so any socket dir works):

``attach.sock``
    The client sends one JSON line ``{"stdin":b,"stdout":b,"stderr":b,"logs":b}``;
    the monitor answers one JSON line ``{"ok":true,"tty":b}`` (or
    ``{"error":"..."}`` and closes). Then, without a tty, the monitor sends
    Docker's multiplexed frames ``[stream:1][0,0,0][len:4 big-endian][data]``
    (1 stdout, 2 stderr) and the client sends raw stdin bytes; with a tty, raw
    bytes both ways. ``logs`` first replays this run's output from the log. The
    client's EOF (shutdown(SHUT_WR) or close) ends its stdin; with ``stdin_once``
    and no tty that closes the container's stdin (Docker's rule). The stream
    ends (EOF) after the container exited and ``on_exit`` has run.

``ctl.sock``
    JSON lines in, one JSON line out per request:
    ``{"start":true}`` -> ``{"ok":true,"started":true}`` or
    ``{"error":"<runc's message>","exit_code":125|126|127}`` (after
    ``launch(start=False)``; a no-op once started);
    ``{"resize":[rows,cols]}`` -> ``{"ok":true}``;
    ``{"close-stdin":true}`` -> ``{"ok":true}`` (with a tty it types ^D);
    ``{"status":true}`` -> ``{"container_pid":n,"monitor_pid":n,"exit_code":null}``;
    ``{"wait":true}`` -> ``{"exit_code":n}`` once the container exited and
    ``on_exit`` ran.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import fcntl
import importlib
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict
from dockyard.runtime.logs import JsonLogWriter, read_logs
from dockyard.runtime.runc import DEFAULT_RUNC, Runc, RuncError, RuntimeStartError

__all__ = [
    "ATTACH_SOCK",
    "CTL_SOCK",
    "MonitorSpec",
    "MonitorUnreachable",
    "Started",
    "connect_unix",
    "ctl_request",
    "launch",
    "monitor_alive",
    "start",
]

ATTACH_SOCK = "attach.sock"
CTL_SOCK = "ctl.sock"
PID_FILE = "monitor.pid"
SPEC_FILE = "monitor.json"
CONSOLE_SOCK = "console.sock"
CONTAINER_PID_FILE = "container.pid"

STDOUT, STDERR = 1, 2
READ_SIZE = 64 * 1024
CLIENT_BUFFER_MAX = 16 * 1024 * 1024  # a client this far behind is dropped
STDIN_BUFFER_MAX = 1024 * 1024  # stop reading clients' stdin past this
DRAIN_TIMEOUT = 2.0
SUN_PATH_MAX = 107
PR_SET_CHILD_SUBREAPER = 36


class MonitorUnreachable(Conflict):
    """No monitor answers on the socket dir: the container is not running (or its
    monitor was killed)."""

    def __init__(self, sock_dir: Path, cause: OSError) -> None:
        super().__init__(
            f"container is not running (no monitor at {sock_dir}: {cause.strerror or cause})"
        )


@dataclass
class MonitorSpec:
    """Everything the monitor needs; JSON-serialisable (`to_json` / `from_json`)."""

    container_id: str
    bundle: Path
    runc_root: Path
    log_path: Path  # the json-file log
    sock_dir: Path  # attach.sock, ctl.sock, monitor.pid, monitor.json
    runc: str = DEFAULT_RUNC  # the runtime binary
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    console_size: tuple[int, int] | None = None  # (rows, cols) for a tty
    on_exit: str | None = None  # "module:function", called with (spec, exit_code)
    monitor_log: Path | None = None  # the monitor's own stdout/stderr; default beside log_path
    extra: dict[str, Any] = field(default_factory=dict)  # opaque, for on_exit

    def to_json(self) -> str:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MonitorSpec:
        d = json.loads(text)
        for k in ("bundle", "runc_root", "log_path", "sock_dir"):
            d[k] = Path(d[k])
        if d.get("monitor_log"):
            d["monitor_log"] = Path(d["monitor_log"])
        if d.get("console_size"):
            rows, cols = d["console_size"]
            d["console_size"] = (int(rows), int(cols))
        return cls(**d)

    def monitor_log_path(self) -> Path:
        return self.monitor_log or self.log_path.with_name("monitor.log")

    def runtime(self) -> Runc:
        return Runc(self.runc, self.runc_root)


@dataclass(frozen=True)
class Started:
    container_pid: int
    monitor_pid: int


# --------------------------------------------------------------------------- #
# unix sockets with long paths
# --------------------------------------------------------------------------- #


@contextlib.contextmanager
def _short_path(path: Path) -> Iterator[str]:
    """A path to hand bind()/connect(): itself, or /proc/self/fd/<dir>/<name>."""
    if len(os.fsencode(str(path))) <= SUN_PATH_MAX:
        yield str(path)
        return
    dfd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{dfd}/{path.name}"
    finally:
        os.close(dfd)


def connect_unix(path: Path, timeout: float | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with _short_path(path) as p:
            sock.connect(p)
    except BaseException:
        sock.close()
        raise
    return sock


def _listen_unix(path: Path) -> socket.socket:
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with _short_path(path) as p:
        sock.bind(p)
    os.chmod(path, 0o600)
    sock.listen(16)
    sock.setblocking(False)
    return sock


def ctl_request(sock_dir: Path, request: dict[str, Any], timeout: float = 10.0) -> Any:
    """Send one request to a monitor's ctl.sock and return its JSON answer."""
    try:
        sock = connect_unix(sock_dir / CTL_SOCK, timeout)
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise MonitorUnreachable(sock_dir, e) from None
    with sock:
        sock.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            buf += chunk
    if not buf:
        raise ConnectionError("monitor closed the control connection")
    return json.loads(buf)


def monitor_alive(sock_dir: Path) -> bool:
    """True while the container's monitor runs (its ctl.sock accepts connections,
    or the process in monitor.pid is a monitor)."""
    try:
        connect_unix(sock_dir / CTL_SOCK, timeout=2.0).close()
        return True
    except FileNotFoundError:
        pass
    except OSError:
        return False
    try:
        pid = int((sock_dir / PID_FILE).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return False
    zombie = stat.rpartition(")")[2].split()[:1] == ["Z"]
    return not zombie and b"dockyard.runtime.monitor" in cmdline


# --------------------------------------------------------------------------- #
# the caller's side
# --------------------------------------------------------------------------- #


def launch(spec: MonitorSpec, *, start: bool = True, timeout: float = 60.0) -> Started:
    """Start a monitor for ``spec`` and return once the container runs.

    Raises `RuntimeStartError` (runc's message; exit code 125, 126 or 127) if it
    could not be created or started; then nothing is left running and the
    ``on_exit`` hook has already been called.

    With ``start=False`` the container is only created (runc 1.1 already fails
    here for a missing or non-executable program) and `start` starts it later --
    typically right after a client attached, as ``docker run -it`` does, so no
    output is lost and nothing needs replaying.
    """
    sock_dir = spec.sock_dir
    sock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if monitor_alive(sock_dir):
        raise Conflict(f"a monitor for container {spec.container_id} is already running")
    for name in (ATTACH_SOCK, CTL_SOCK, PID_FILE):
        (sock_dir / name).unlink(missing_ok=True)
    spec_path = sock_dir / SPEC_FILE
    tmp = spec_path.with_name(SPEC_FILE + ".tmp")
    tmp.write_text(spec.to_json())
    tmp.replace(spec_path)

    mlog = spec.monitor_log_path()
    mlog.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)

    r, w = os.pipe()
    try:
        with open(mlog, "ab") as logf:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dockyard.runtime.monitor",
                    "--ready-fd",
                    str(w),
                    *([] if start else ["--no-start"]),
                    str(spec_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                pass_fds=(w,),
                start_new_session=True,
                cwd="/",
                env=env,
            )
        os.close(w)
        w = -1
        proc.wait()  # the first process forks the monitor and exits at once
        msg = _read_ready(r, timeout)
        if msg is not None and not msg.get("ok"):
            _read_eof(r, 10.0)  # the failed monitor has cleaned up and exited
    finally:
        os.close(r)
        if w != -1:
            os.close(w)
    if msg is None:
        tail = _tail(mlog)
        raise RuntimeStartError(f"container monitor failed to start: {tail}", 125)
    if not msg.get("ok"):
        raise RuntimeStartError(str(msg.get("message")), int(msg.get("exit_code", 125)))
    return Started(int(msg["container_pid"]), int(msg["monitor_pid"]))


def start(sock_dir: Path, timeout: float = 60.0) -> None:
    """Start a container created by ``launch(start=False)`` (a no-op if it runs).

    Raises `RuntimeStartError` as `launch` does; then the container has been
    deleted and on_exit has run.
    """
    answer = ctl_request(sock_dir, {"start": True}, timeout)
    if isinstance(answer, dict) and "error" in answer:
        raise RuntimeStartError(str(answer["error"]), int(answer.get("exit_code", 125)))


def _read_ready(fd: int, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise RuntimeStartError("timed out waiting for the container monitor", 125)
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    if b"\n" not in buf:
        return None
    data = json.loads(buf.split(b"\n", 1)[0])
    return data if isinstance(data, dict) else None


def _read_eof(fd: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0 and sel.select(left):
            if not os.read(fd, 4096):
                return


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no monitor log"
    return " | ".join(text[-lines:]) or "no output"


# --------------------------------------------------------------------------- #
# the monitor process
# --------------------------------------------------------------------------- #


def _log(msg: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    print(f"{stamp} monitor[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


def _set_nonblocking(fd: int) -> None:
    os.set_blocking(fd, False)


def _frame(stream: int, data: bytes) -> bytes:
    return bytes((stream, 0, 0, 0)) + len(data).to_bytes(4, "big") + data


def _recv_fd(conn: socket.socket) -> int:
    fds = array.array("i")
    _msg, ancdata, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not fds:
        raise RuntimeStartError("runc sent no console file descriptor", 125)
    for extra in fds[1:]:
        os.close(extra)
    return fds[0]


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class _Client:
    """One attach.sock connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""  # until the header line arrives
        self.outbuf = bytearray()
        self.ready = False
        self.stdin = self.stdout = self.stderr = False
        self.stdin_open = True
        self.closing = False  # close once outbuf is sent


class _Ctl:
    """One ctl.sock connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.outbuf = bytearray()
        self.waiting = False
        self.eof = False


class Monitor:
    def __init__(self, spec: MonitorSpec, ready_fd: int, *, start: bool = True) -> None:
        self.spec = spec
        self.start_now = start
        self.started = False
        self.deleted = False
        self.ready_fd = ready_fd
        self.runc = spec.runtime()
        self.sel = selectors.DefaultSelector()
        self.registered: dict[int, int] = {}  # fd -> events
        self.container_pid = 0
        self.exit_code: int | None = None
        self.called_on_exit = False
        self.created = False
        # container stdio (monitor's ends)
        self.out_fds: dict[int, int] = {}  # fd -> stream (STDOUT/STDERR); tty: master -> STDOUT
        self.stdin_fd = -1  # pipe write end, or the pty master
        self.master_fd = -1
        self.stdin_buf = bytearray()
        self.stdin_closing = False
        self.clients: dict[int, _Client] = {}
        self.ctls: dict[int, _Ctl] = {}
        self.attach_l: socket.socket | None = None
        self.ctl_l: socket.socket | None = None
        self.log: JsonLogWriter | None = None
        self.log_start = 0
        self.wake_r, self.wake_w = os.pipe()
        _set_nonblocking(self.wake_r)
        _set_nonblocking(self.wake_w)
        self.console_dir: Path | None = None

    # -- setup ----------------------------------------------------------------------

    def run(self) -> int:
        spec = self.spec
        (spec.sock_dir / PID_FILE).write_text(str(os.getpid()))
        self.attach_l = _listen_unix(spec.sock_dir / ATTACH_SOCK)
        self.ctl_l = _listen_unix(spec.sock_dir / CTL_SOCK)
        self.log = JsonLogWriter(spec.log_path)
        self.log_start = self.log.tell()
        try:
            self._create()
            if self.start_now:
                self.runc.start(spec.container_id)
                self.started = True
        except RuntimeStartError as e:
            _log(f"start failed ({e.exit_code}): {e.message}")
            self._fail(e.message, e.exit_code)
            return 0
        except Exception as e:  # a bug or an unusable host: still clean up and report
            _log("start failed:\n" + traceback.format_exc())
            self._fail(f"container monitor: {e}", 125)
            return 0
        self._ready(
            {
                "ok": True,
                "container_pid": self.container_pid,
                "monitor_pid": os.getpid(),
                "started": self.started,
            }
        )
        state = "started" if self.started else "created"
        _log(f"container {spec.container_id} {state}, pid {self.container_pid}")
        self._loop()
        self._finish()
        return 0

    def _create(self) -> None:
        spec = self.spec
        pid_file = spec.sock_dir / CONTAINER_PID_FILE
        pid_file.unlink(missing_ok=True)
        if spec.tty:
            self._create_tty(pid_file)
        else:
            self._create_pipes(pid_file)
        self.container_pid = int(pid_file.read_text().strip())
        pid_file.unlink(missing_ok=True)

    def _create_pipes(self, pid_file: Path) -> None:
        spec = self.spec
        if spec.open_stdin:
            c_in, self.stdin_fd = os.pipe()
            _set_nonblocking(self.stdin_fd)
        else:
            c_in = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        out_r, c_out = os.pipe()
        err_r, c_err = os.pipe()
        for fd in (out_r, err_r):
            _set_nonblocking(fd)
        self.out_fds = {out_r: STDOUT, err_r: STDERR}
        try:
            self.runc.create(spec.container_id, spec.bundle, pid_file, stdio=(c_in, c_out, c_err))
            self.created = True
        finally:
            for fd in (c_in, c_out, c_err):
                os.close(fd)
        # Only runc itself can have written so far (the process waits on the exec
        # fifo): drop its warnings rather than log them as the container's.
        for fd in (out_r, err_r):
            with contextlib.suppress(BlockingIOError):
                while os.read(fd, READ_SIZE):
                    pass

    def _create_tty(self, pid_file: Path) -> None:
        spec = self.spec
        path = spec.sock_dir / CONSOLE_SOCK
        if len(os.fsencode(str(path))) > SUN_PATH_MAX:  # runc dials the path as given
            self.console_dir = Path(tempfile.mkdtemp(prefix="dyc-", dir="/tmp"))
            path = self.console_dir / CONSOLE_SOCK
        listener = _listen_unix(path)
        try:
            self.runc.create(spec.container_id, spec.bundle, pid_file, console_socket=path)
            self.created = True
            listener.settimeout(10.0)  # runc init has already sent it: it is queued
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                raise RuntimeStartError("runc did not send the console", 125) from None
            with conn:
                conn.settimeout(10.0)
                self.master_fd = _recv_fd(conn)
        finally:
            listener.close()
            path.unlink(missing_ok=True)
            if self.console_dir is not None:
                shutil.rmtree(self.console_dir, ignore_errors=True)
        os.set_inheritable(self.master_fd, False)
        _set_nonblocking(self.master_fd)
        if spec.console_size:
            _set_winsize(self.master_fd, *spec.console_size)
        self.out_fds = {self.master_fd: STDOUT}
        self.stdin_fd = self.master_fd

    def _fail(self, message: str, code: int) -> None:
        if self.created:
            self._delete()
        self.exit_code = code
        self._call_on_exit(code)
        # the pipe stays open until this process exits: launch waits for that
        self._ready({"ok": False, "message": message, "exit_code": code}, close=False)
        self._close_all()

    def _ready(self, msg: dict[str, Any], *, close: bool = True) -> None:
        if self.ready_fd < 0:
            return
        try:
            os.write(self.ready_fd, json.dumps(msg).encode() + b"\n")
        except OSError as e:
            _log(f"could not report readiness: {e}")
        if close:
            os.close(self.ready_fd)
        self.ready_fd = -1

    def _call_on_exit(self, code: int) -> None:
        if self.called_on_exit or not self.spec.on_exit:
            return
        self.called_on_exit = True
        try:
            mod_name, _, fn_name = self.spec.on_exit.partition(":")
            fn = getattr(importlib.import_module(mod_name), fn_name)
            fn(self.spec, code)
        except Exception:
            _log(f"on_exit {self.spec.on_exit} failed:\n" + traceback.format_exc())

    # -- the relay loop -----------------------------------------------------------

    def _loop(self) -> None:
        drain_deadline: float | None = None
        while True:
            self._reap()
            if self.exit_code is not None:
                if drain_deadline is None:
                    drain_deadline = time.monotonic() + DRAIN_TIMEOUT
                if not self.out_fds or time.monotonic() > drain_deadline:
                    return
            self._update_interest()
            timeout = 1.0 if drain_deadline is None else 0.1
            for key, events in self.sel.select(timeout):
                try:
                    self._dispatch(key.fd, events)
                except Exception:  # never lose the container over one bad client
                    _log("relay error:\n" + traceback.format_exc())

    def _reap(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 4096):
                pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.container_pid and self.exit_code is None:
                code = os.waitstatus_to_exitcode(status)
                self.exit_code = code if code >= 0 else 128 - code
                _log(f"container exited: {self.exit_code}")

    def _want(self, fd: int, events: int) -> None:
        old = self.registered.get(fd, 0)
        if events == old:
            return
        if not events:
            self.sel.unregister(fd)
            del self.registered[fd]
        elif not old:
            self.sel.register(fd, events)
            self.registered[fd] = events
        else:
            self.sel.modify(fd, events)
            self.registered[fd] = events

    def _forget(self, fd: int) -> None:
        if fd in self.registered:
            self.sel.unregister(fd)
            del self.registered[fd]

    def _update_interest(self) -> None:
        R, W = selectors.EVENT_READ, selectors.EVENT_WRITE
        self._want(self.wake_r, R)
        assert self.attach_l is not None and self.ctl_l is not None
        self._want(self.attach_l.fileno(), R)
        self._want(self.ctl_l.fileno(), R)
        wants: dict[int, int] = {}
        for fd in self.out_fds:
            wants[fd] = wants.get(fd, 0) | R
        if self.stdin_fd >= 0 and self.stdin_buf:
            wants[self.stdin_fd] = wants.get(self.stdin_fd, 0) | W
        for fd in list(self.registered):
            if fd in (self.wake_r, self.attach_l.fileno(), self.ctl_l.fileno()):
                continue
            if fd in self.clients or fd in self.ctls:
                continue
            if fd not in wants:
                self._forget(fd)
        for fd, ev in wants.items():
            self._want(fd, ev)
        accept_stdin = len(self.stdin_buf) < STDIN_BUFFER_MAX
        for fd, c in self.clients.items():
            ev = W if c.outbuf else 0
            if not c.closing and (not c.ready or (c.stdin and c.stdin_open and accept_stdin)):
                ev |= R
            self._want(fd, ev)
        for fd, ctl in self.ctls.items():
            self._want(fd, (W if ctl.outbuf else 0) | (0 if ctl.eof else R))

    def _dispatch(self, fd: int, events: int) -> None:
        assert self.attach_l is not None and self.ctl_l is not None
        if fd == self.wake_r:
            self._reap()
            return
        if fd == self.attach_l.fileno():
            self._accept(self.attach_l, attach=True)
            return
        if fd == self.ctl_l.fileno():
            self._accept(self.ctl_l, attach=False)
            return
        if fd in self.clients:
            self._client_io(self.clients[fd], events)
            return
        if fd in self.ctls:
            self._ctl_io(self.ctls[fd], events)
            return
        if events & selectors.EVENT_WRITE and fd == self.stdin_fd:
            self._write_stdin()
        if events & selectors.EVENT_READ and fd in self.out_fds:
            self._read_output(fd)

    def _accept(self, listener: socket.socket, *, attach: bool) -> None:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        if attach:
            self.clients[sock.fileno()] = _Client(sock)
        else:
            self.ctls[sock.fileno()] = _Ctl(sock)

    # -- container output ---------------------------------------------------------------

    def _read_output(self, fd: int) -> None:
        stream = self.out_fds[fd]
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: the pty's last slave closed
                _log(f"reading container output: {e}")
            data = b""
        if not data:
            self._close_output(fd)
            return
        name = "stdout" if stream == STDOUT else "stderr"
        assert self.log is not None
        self.log.write(name, data)
        for c in list(self.clients.values()):
            self._send_output(c, stream, data)

    def _close_output(self, fd: int) -> None:
        del self.out_fds[fd]
        self._forget(fd)
        if fd == self.master_fd:
            self.stdin_fd = -1
            self.master_fd = -1
            self.stdin_buf.clear()
        os.close(fd)

    def _send_output(self, c: _Client, stream: int, data: bytes) -> None:
        if not c.ready or c.closing:
            return
        if (stream == STDOUT and not c.stdout) or (stream == STDERR and not c.stderr):
            return
        c.outbuf += data if self.spec.tty else _frame(stream, data)
        if len(c.outbuf) > CLIENT_BUFFER_MAX:
            _log("dropping an attach client that does not keep up")
            self._drop_client(c)
            return
        self._flush_client(c)

    # -- container stdin --------------------------------------------------------------

    def _stdin_accepts(self) -> bool:
        return self.stdin_fd >= 0 and not self.stdin_closing and self.spec.open_stdin

    def _write_stdin(self) -> None:
        if self.stdin_fd < 0:
            self.stdin_buf.clear()
            return
        try:
            n = os.write(self.stdin_fd, self.stdin_buf)
        except BlockingIOError:
            return
        except OSError as e:  # EPIPE: the container closed its stdin
            _log(f"writing container stdin: {e}")
            self.stdin_buf.clear()
            if not self.spec.tty:
                self._close_stdin_now()
            return
        del self.stdin_buf[:n]
        if not self.stdin_buf and self.stdin_closing and not self.spec.tty:
            self._close_stdin_now()

    def _close_stdin(self) -> None:
        """Close the container's stdin once what is buffered is written (Docker's
        stdin_once); with a tty, type the EOF character instead."""
        if self.stdin_fd < 0 or self.stdin_closing:
            return
        if self.spec.tty:
            self.stdin_buf += b"\x04"
            return
        self.stdin_closing = True
        if not self.stdin_buf:
            self._close_stdin_now()

    def _close_stdin_now(self) -> None:
        if self.stdin_fd >= 0 and self.stdin_fd != self.master_fd:
            self._forget(self.stdin_fd)
            os.close(self.stdin_fd)
            self.stdin_fd = -1
            self.stdin_closing = True

    # -- attach clients ------------------------------------------------------------

    def _client_io(self, c: _Client, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._flush_client(c)
        if c.sock.fileno() < 0 or not events & selectors.EVENT_READ:
            return
        try:
            data = c.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not c.ready:
            if not data:
                self._drop_client(c)
                return
            c.inbuf += data
            if b"\n" not in c.inbuf:
                if len(c.inbuf) > 4096:
                    self._reject(c, "attach header too long")
                return
            line, _, rest = c.inbuf.partition(b"\n")
            c.inbuf = b""
            self._start_client(c, line)
            data = rest
            if not data or not c.ready:
                return
        if not data:
            self._client_stdin_eof(c)
            return
        if c.stdin and c.stdin_open and self._stdin_accepts():
            self.stdin_buf += data

    def _reject(self, c: _Client, why: str) -> None:
        c.outbuf += json.dumps({"error": why}).encode() + b"\n"
        c.closing = True
        self._flush_client(c)

    def _start_client(self, c: _Client, line: bytes) -> None:
        try:
            hdr = json.loads(line)
            if not isinstance(hdr, dict):
                raise ValueError("not an object")
        except ValueError as e:
            self._reject(c, f"bad attach header: {e}")
            return
        c.stdin = bool(hdr.get("stdin"))
        c.stdout = bool(hdr.get("stdout"))
        c.stderr = bool(hdr.get("stderr"))
        c.stdin_open = c.stdin
        c.ready = True
        c.outbuf += json.dumps({"ok": True, "tty": self.spec.tty}).encode() + b"\n"
        if hdr.get("logs"):
            self._replay(c)
        self._flush_client(c)

    def _replay(self, c: _Client) -> None:
        """This run's output so far: the log from where the run started, then the
        unterminated tails not yet logged. The loop is single-threaded, so nothing
        is missed or sent twice between the replay and the live stream."""
        assert self.log is not None
        items = list(
            read_logs(
                self.spec.log_path, start_offset=self.log_start, stdout=c.stdout, stderr=c.stderr
            )
        )
        items += [(s, b) for s, b in self.log.pending().items() if b]
        for stream, data in items:
            if (stream == "stdout" and not c.stdout) or (stream == "stderr" and not c.stderr):
                continue
            c.outbuf += (
                data if self.spec.tty else _frame(STDOUT if stream == "stdout" else STDERR, data)
            )

    def _client_stdin_eof(self, c: _Client) -> None:
        if c.stdin and c.stdin_open:
            c.stdin_open = False
            if self.spec.stdin_once and not self.spec.tty:
                self._close_stdin()
        if not (c.stdout or c.stderr):
            self._drop_client(c)

    def _flush_client(self, c: _Client) -> None:
        if c.outbuf:
            try:
                n = c.sock.send(c.outbuf)
            except BlockingIOError:
                return
            except OSError:
                self._drop_client(c)
                return
            del c.outbuf[:n]
        if not c.outbuf and c.closing:
            self._drop_client(c)

    def _drop_client(self, c: _Client) -> None:
        fd = c.sock.fileno()
        if fd < 0:
            return
        if c.stdin and c.stdin_open:
            c.stdin_open = False
            if self.spec.stdin_once and not self.spec.tty:
                self._close_stdin()
        self._forget(fd)
        self.clients.pop(fd, None)
        c.sock.close()

    # -- control --------------------------------------------------------------------

    def _ctl_io(self, ctl: _Ctl, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._flush_ctl(ctl)
        if ctl.sock.fileno() < 0 or not events & selectors.EVENT_READ:
            return
        try:
            data = ctl.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            ctl.eof = True  # a half-closed waiter still gets its answer
            if not ctl.outbuf and not ctl.waiting:
                self._drop_ctl(ctl)
            return
        ctl.inbuf += data
        while b"\n" in ctl.inbuf:
            line, _, ctl.inbuf = ctl.inbuf.partition(b"\n")
            if line.strip():
                answer = self._ctl_command(ctl, line)
                if answer is not None:
                    ctl.outbuf += json.dumps(answer).encode() + b"\n"
        if len(ctl.inbuf) > 65536:
            self._drop_ctl(ctl)
            return
        self._flush_ctl(ctl)

    def _ctl_command(self, ctl: _Ctl, line: bytes) -> dict[str, Any] | None:
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except ValueError as e:
            return {"error": f"bad request: {e}"}
        if "resize" in req:
            try:
                rows, cols = (int(v) for v in req["resize"])
            except (TypeError, ValueError):
                return {"error": "resize wants [rows, cols]"}
            if self.master_fd < 0:
                return {"error": "the container has no tty"}
            try:
                _set_winsize(self.master_fd, rows, cols)
            except OSError as e:
                return {"error": f"resize: {e}"}
            return {"ok": True}
        if req.get("close-stdin"):
            self._close_stdin()
            return {"ok": True}
        if req.get("status"):
            return {
                "container_pid": self.container_pid,
                "monitor_pid": os.getpid(),
                "exit_code": self.exit_code,
            }
        if req.get("start"):
            return self._start_requested()
        if req.get("wait"):
            ctl.waiting = True
            return None
        return {"error": "unknown request"}

    def _start_requested(self) -> dict[str, Any]:
        """ctl start (after `launch(start=False)`): ``runc start``. On failure the
        container is deleted and on_exit has run before the error is answered."""
        if self.started or self.exit_code is not None:
            return {"ok": True, "started": self.started}
        try:
            self.runc.start(self.spec.container_id)
        except RuntimeStartError as e:
            _log(f"start failed ({e.exit_code}): {e.message}")
            self._delete()
            self.exit_code = e.exit_code
            self._call_on_exit(e.exit_code)
            return {"error": e.message, "exit_code": e.exit_code}
        self.started = True
        _log(f"container {self.spec.container_id} started")
        return {"ok": True, "started": True}

    def _delete(self) -> None:
        if self.deleted:
            return
        self.deleted = True
        try:
            self.runc.delete(self.spec.container_id, force=True)
        except RuncError as e:
            _log(f"runc delete: {e}")

    def _flush_ctl(self, ctl: _Ctl) -> None:
        if not ctl.outbuf:
            return
        try:
            n = ctl.sock.send(ctl.outbuf)
        except BlockingIOError:
            return
        except OSError:
            self._drop_ctl(ctl)
            return
        del ctl.outbuf[:n]

    def _drop_ctl(self, ctl: _Ctl) -> None:
        fd = ctl.sock.fileno()
        if fd < 0:
            return
        self._forget(fd)
        self.ctls.pop(fd, None)
        ctl.sock.close()

    # -- the end ------------------------------------------------------------------------

    def _finish(self) -> None:
        """Container exited: log the tails, runc delete, on_exit, answer waiters,
        flush and close clients, remove the sockets."""
        assert self.exit_code is not None and self.log is not None
        for fd in list(self.out_fds):
            self._close_output(fd)
        self.log.flush()
        self._delete()
        self._call_on_exit(self.exit_code)
        answer = json.dumps({"exit_code": self.exit_code}).encode() + b"\n"
        deadline = time.monotonic() + 2.0
        for ctl in list(self.ctls.values()):
            if ctl.waiting:
                ctl.outbuf += answer
            _send_all(ctl.sock, ctl.outbuf, deadline)
        for c in list(self.clients.values()):
            _send_all(c.sock, c.outbuf, deadline)
        _log(f"done, exit code {self.exit_code}")
        self._close_all()

    def _close_all(self) -> None:
        for c in list(self.clients.values()):
            c.sock.close()
        for ctl in list(self.ctls.values()):
            ctl.sock.close()
        self.clients.clear()
        self.ctls.clear()
        for fd in list(self.out_fds):
            os.close(fd)
        self.out_fds.clear()
        if self.stdin_fd >= 0 and self.stdin_fd != self.master_fd:
            os.close(self.stdin_fd)
        self.stdin_fd = -1
        for lst in (self.attach_l, self.ctl_l):
            if lst is not None:
                lst.close()
        if self.log is not None:
            self.log.close()
        sd = self.spec.sock_dir
        for name in (ATTACH_SOCK, CTL_SOCK, PID_FILE, SPEC_FILE, CONTAINER_PID_FILE):
            (sd / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            sd.rmdir()  # only if nothing else lives there


def _send_all(sock: socket.socket, data: bytearray, deadline: float) -> None:
    """Best effort: send what is buffered before closing, until the deadline."""
    if not data or sock.fileno() < 0:
        return
    try:
        sock.setblocking(True)
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        sock.sendall(data)
    except OSError:
        pass


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    ready_fd = -1
    start = True
    while args and args[0].startswith("--"):
        if args[0] == "--ready-fd" and len(args) >= 2:
            ready_fd = int(args[1])
            args = args[2:]
        elif args[0] == "--no-start":
            start = False
            args = args[1:]
        else:
            break
    if len(args) != 1:
        print(
            "usage: python -m dockyard.runtime.monitor [--ready-fd N] [--no-start] SPEC.json",
            file=sys.stderr,
        )
        return 2
    spec = MonitorSpec.from_json(Path(args[0]).read_text())
    if ready_fd >= 0:
        os.set_inheritable(ready_fd, False)
    # Fork once more: the first process (the caller's child) exits at once, so the
    # monitor is reparented away from the caller and is not a session leader.
    if os.fork() != 0:
        os._exit(0)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    monitor = Monitor(spec, ready_fd, start=start)
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)  # a handler, so the wakeup fd fires
    signal.set_wakeup_fd(monitor.wake_w, warn_on_full_buffer=False)
    try:
        _become_subreaper()
        return monitor.run()
    except BaseException:
        _log("monitor crashed:\n" + traceback.format_exc())
        if monitor.exit_code is None and monitor.container_pid == 0:
            monitor._fail("container monitor crashed", 125)
        raise


if __name__ == "__main__":
    # Run the imported module's main, so that on_exit hooks get the same
    # MonitorSpec class as `import dockyard.runtime.monitor` gives them.
    from dockyard.runtime.monitor import main as _main

    sys.exit(_main())
