"""The listening socket, worker processes, signals and the ASGI lifespan.

With one worker the server runs in the calling process. With more, the calling
process binds the address, forks the workers (each listening on its own SO_REUSEPORT
socket, see ``serve``) and stays as their supervisor: a worker that dies is
replaced, and SIGTERM or SIGINT stops every worker gracefully (no new connections;
requests being answered get ``grace`` seconds). A worker's parent dying sends it
SIGTERM, so no worker outlives a killed supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from dockyard.httpd.connection import STALL_TIMEOUT, ASGIApp, Connection, Context, Message

log = logging.getLogger("dockyard.httpd")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PR_SET_PDEATHSIG = 1
QUICK_DEATH = 1.0  # a worker that ends this soon after it started did not start
GIVE_UP_AFTER = 5  # quick deaths in a row: the supervisor stops and fails


def serve(
    app_factory: Callable[[], ASGIApp], *, host: str = "127.0.0.1", port: int = 0,
    uds: str | None = None, workers: int = 1, access_log: bool = False,
    grace: float = 10.0, backlog: int = 1024, stall_timeout: float = STALL_TIMEOUT,
) -> None:  # fmt: skip
    """Serve the app made by ``app_factory`` (called in each worker) until SIGTERM/SIGINT.

    Listens on ``uds`` (a unix socket path) if given, else on ``host:port``. Raises
    OSError when the address cannot be bound. A connection whose request body stops
    coming, or whose client stops reading the response, for ``stall_timeout`` seconds
    is closed.

    Several workers on TCP each listen on their own SO_REUSEPORT socket, so the kernel
    spreads connections evenly over them; with one shared socket, whichever worker
    wakes first takes a burst of new connections, and a single-threaded worker holding
    most of them leaves the other cores idle. The supervisor keeps a bound (not
    listening) socket of the group, which holds the address while workers come and go.
    """
    options = Options(access_log, grace, stall_timeout)
    if workers <= 1 or uds is not None:
        sock = listen(host, port, uds, backlog)
        inode = os.lstat(uds).st_ino if uds is not None else 0
        try:
            with sock:
                if workers <= 1:
                    run_worker(lambda: sock, app_factory, options)
                else:
                    _Supervisor(lambda: sock, app_factory, workers, options).run()
        finally:
            if uds is not None:
                _remove_socket_file(uds, inode)
        return
    # first without SO_REUSEPORT: a port some other server holds, even one that set
    # it (a second registry on the same port, say), is refused instead of shared
    with listen(host, port, None, backlog, listening=False) as probe:
        port = probe.getsockname()[1]
    with listen(host, port, None, backlog, reuseport=True, listening=False):
        own = lambda: listen(host, port, None, backlog, reuseport=True)  # noqa: E731
        _Supervisor(own, app_factory, workers, options).run()


def _remove_socket_file(path: str, inode: int) -> None:
    """Remove the unix socket file unless another server has bound the path since."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)


def listen(
    host: str, port: int, uds: str | None, backlog: int, *, reuseport: bool = False,
    listening: bool = True,
) -> socket.socket:  # fmt: skip
    if uds is not None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(uds).st_mode):
                os.unlink(uds)  # a socket left by a server that is gone
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(uds if uds is not None else (host, port))
        if listening:
            sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


@dataclass(frozen=True)
class Options:
    """How each worker serves (see ``serve``)."""

    access_log: bool = False
    grace: float = 10.0
    stall_timeout: float = STALL_TIMEOUT


def run_worker(
    sock: Callable[[], socket.socket], app_factory: Callable[[], ASGIApp], options: Options
) -> None:
    asyncio.run(_worker(sock(), app_factory, options))


async def _worker(
    sock: socket.socket, app_factory: Callable[[], ASGIApp], options: Options
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    ctx = Context(app_factory(), access_log=options.access_log,
                  stall_timeout=options.stall_timeout)  # fmt: skip
    grace = options.grace
    lifespan = _Lifespan(ctx.app, ctx.state)
    await lifespan.startup()
    server = await loop.create_server(lambda: Connection(ctx), sock=sock)
    await stop.wait()
    server.close()
    for conn in list(ctx.connections):
        conn.close_if_idle()
    deadline = time.monotonic() + grace
    while ctx.connections and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for conn in list(ctx.connections):
        conn.close()
    try:
        await asyncio.wait_for(lifespan.shutdown(), grace)
    except TimeoutError:
        log.warning("application shutdown did not finish in %.0f s", grace)


class _Supervisor:
    def __init__(
        self, sock: Callable[[], socket.socket], app_factory: Callable[[], ASGIApp],
        workers: int, options: Options,
    ) -> None:  # fmt: skip
        self.app_factory = app_factory
        self.sock = sock
        self.workers = workers
        self.options = options
        self.children: dict[int, float] = {}  # pid -> when it started
        self.stopping = False

    def run(self) -> None:
        previous = {sig: signal.signal(sig, self._stop) for sig in STOP_SIGNALS}
        quick = 0  # workers in a row that died soon after they started
        missing = 0  # workers to start again once ``due``
        due = 0.0
        failed = False
        try:
            for _ in range(self.workers):
                self._spawn()
            while self.children or (missing and not self.stopping):
                if missing and not self.stopping and time.monotonic() >= due:
                    for _ in range(missing):
                        self._spawn()
                    missing = 0
                reaped = self._reap(block=not missing)
                if reaped is None:
                    continue
                pid, status = reaped
                started = self.children.pop(pid, None)
                if started is None or self.stopping:
                    continue
                log.warning("worker %d ended (exit code %d); starting another",
                            pid, os.waitstatus_to_exitcode(status))  # fmt: skip
                quick = quick + 1 if time.monotonic() - started < QUICK_DEATH else 0
                if quick >= GIVE_UP_AFTER:
                    failed = True
                    self._stop(signal.SIGTERM, None)
                    continue
                missing += 1
                due = time.monotonic() + (QUICK_DEATH if quick else 0.0)  # don't spin
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if failed:
            raise RuntimeError(f"{GIVE_UP_AFTER} workers in a row ended as they started")

    def _reap(self, *, block: bool) -> tuple[int, int] | None:
        """A worker that ended, as (pid, wait status); without ``block``, None after a
        short nap when none has (so a death is seen as it happens, back-off or not)."""
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pid, status = 0, 0
        if pid:
            return pid, status
        time.sleep(0.05)
        return None

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _spawn(self) -> None:
        parent = os.getpid()
        # a stop signal between fork and the child's own handlers would run the
        # supervisor's handler in the child: held back until each side is ready
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid:
            self.children[pid] = time.monotonic()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            return
        code = 1
        try:
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            _die_with(parent)
            run_worker(self.sock, self.app_factory, self.options)
            code = 0
        except BaseException:
            log.exception("worker failed")
        finally:
            os._exit(code)


def _die_with(parent: int) -> None:
    """SIGTERM this process when its parent dies (Linux's PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


class _Lifespan:
    """ASGI lifespan: startup before the first connection, shutdown after the last.
    An app that does not speak it (it raises at once) runs without."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.events: dict[str, asyncio.Event] = {}
        self.failure = ""
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        scope: Message = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                          "state": self.state}  # fmt: skip
        self.task = asyncio.get_running_loop().create_task(self._run(scope))
        if not await self._ask("startup"):
            self.task = None
        if self.failure:
            raise RuntimeError(f"application startup failed: {self.failure}")

    async def shutdown(self) -> None:
        if self.task is not None and not self.task.done():
            await self._ask("shutdown")

    async def _ask(self, phase: str) -> bool:
        """Send lifespan.<phase> and wait for the answer; False if the app ended instead."""
        assert self.task is not None
        done = self.events[phase] = asyncio.Event()
        await self.inbox.put({"type": f"lifespan.{phase}"})
        waiter = asyncio.ensure_future(done.wait())
        await asyncio.wait((waiter, self.task), return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        return done.is_set()

    async def _run(self, scope: Message) -> None:
        with contextlib.suppress(Exception):
            await self.app(scope, self.inbox.get, self._send)

    async def _send(self, message: Message) -> None:
        kind = str(message["type"])
        phase = kind.removeprefix("lifespan.").split(".")[0]
        if kind.endswith(".failed"):
            self.failure = str(message.get("message", "")) or "failed"
        if phase in self.events:
            self.events[phase].set()
