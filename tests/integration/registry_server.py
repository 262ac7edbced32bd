"""A real ``dockyard registry serve`` process for the tests, on 127.0.0.1.

    with RegistryServer(tmp_path / "data") as reg:
        httpx.get(reg.url + "/v2/")
        reg.restart()        # same data dir, new port (a server restart)
        reg.kill()           # SIGKILL, as a crash

The server gets a free port and its own data directory, is waited for until
``GET /v2/`` answers, and is stopped by its PID (SIGTERM, then SIGKILL of its
own process group: the server's worker processes). Its output goes to ``<data>.log``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from peers import dockyard_command

START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RegistryServer:
    def __init__(self, data: Path, *args: str) -> None:
        self.data = Path(data)
        self.args = args  # extra flags for `registry serve` (e.g. --config FILE)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.data.with_name(self.data.name + ".log")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> RegistryServer:
        argv, env = dockyard_command()
        self.data.parent.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):  # a port taken between free_port() and bind: try another
            self.port = free_port()
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [*argv, "registry", "serve", "--addr", self.host, "--data", str(self.data),
                     *self.args],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True,
                )  # fmt: skip
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"registry did not start; log:\n{self.log.read_text()[-4000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(self.url + "/v2/", timeout=1) as r,
            ):
                if r.status == 200:
                    return True
            time.sleep(0.05)
        return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGKILL:  # a crash takes the workers down at once too
                    os.killpg(proc.pid, sig)
                else:
                    os.kill(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        # whatever is left of its process group (it is the group leader: pgid == pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)

    def kill(self) -> None:
        """Stop as a crash would: SIGKILL, no shutdown."""
        self.stop(signal.SIGKILL)

    def restart(self) -> RegistryServer:
        self.stop()
        return self.start()

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
