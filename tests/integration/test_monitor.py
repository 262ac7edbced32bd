"""The per-container monitor, attach and logs against real runc and busybox.

Each test writes an OCI bundle (``runc spec`` adapted) over one read-only busybox
rootfs, uses its own runc state root and unique container ids, and records the
exit code through an ``on_exit`` hook (`record_exit`, imported by the monitor
process) that writes a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import InvalidArgument
from dockyard.runtime.attach import (
    DetachMatcher,
    FrameDecoder,
    attach,
    open_attach,
    parse_detach_keys,
    resize,
)
from dockyard.runtime.logs import (
    MAX_LINE,
    JsonLogWriter,
    format_timestamp,
    parse_timestamp,
    read_logs,
)
from dockyard.runtime.monitor import (
    MonitorSpec,
    MonitorUnreachable,
    Started,
    launch,
    monitor_alive,
)
from dockyard.runtime.runc import Runc, RuntimeStartError

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RUNC = "/usr/sbin/runc"
HOOK = "tests.integration.test_monitor:record_exit"
TIMEOUT = 10.0


def record_exit(spec: MonitorSpec, exit_code: int) -> None:
    """The on_exit hook the monitor calls (in its own process)."""
    out = Path(spec.extra["exit_file"])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(str(exit_code))
    tmp.replace(out)


def wait_for(pred: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    problems = []
    if os.geteuid() != 0:
        problems.append("needs root")
    if not Path(RUNC).exists():
        problems.append(f"{RUNC} not found")
    if not Path("/bin/busybox").exists():
        problems.append("busybox-static not installed")
    if problems:
        msg = "monitor tests: " + ", ".join(problems)
        if os.environ.get("DOCKYARD_REQUIRE_PEERS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    root = tmp_path_factory.mktemp("busybox-rootfs")
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev"):
        (root / d).mkdir()
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    subprocess.run(["chroot", str(root), "/bin/busybox", "--install", "-s", "/bin"], check=True)
    return root


@dataclass
class World:
    dir: Path
    rootfs: Path
    runc: Runc
    launched: list[Started] = field(default_factory=list)

    def spec(
        self,
        args: list[str],
        *,
        tty: bool = False,
        open_stdin: bool = False,
        stdin_once: bool = False,
        console_size: tuple[int, int] | None = None,
        long_sock_dir: bool = False,
    ) -> MonitorSpec:
        cid = f"dyt-{uuid.uuid4().hex[:12]}"
        cdir = self.dir / cid
        bundle = cdir / "bundle"
        bundle.mkdir(parents=True)
        subprocess.run([RUNC, "spec"], cwd=bundle, check=True)
        config = json.loads((bundle / "config.json").read_text())
        config["root"] = {"path": str(self.rootfs), "readonly": True}
        config["process"]["args"] = args
        config["process"]["terminal"] = tty
        config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
        (bundle / "config.json").write_text(json.dumps(config))
        # a socket dir too long for sun_path exercises the /proc/self/fd route
        sock_dir = cdir / ("s" * 110 if long_sock_dir else "s")
        return MonitorSpec(
            container_id=cid,
            bundle=bundle,
            runc_root=self.runc.state_root,
            log_path=cdir / "json.log",
            sock_dir=sock_dir,
            runc=RUNC,
            tty=tty,
            open_stdin=open_stdin,
            stdin_once=stdin_once,
            console_size=console_size,
            on_exit=HOOK,
            extra={"exit_file": str(cdir / "exit_code")},
        )

    def launch(self, spec: MonitorSpec, *, start: bool = True) -> Started:
        started = launch(spec, start=start)
        self.launched.append(started)
        return started

    @staticmethod
    def exit_code(spec: MonitorSpec, timeout: float = TIMEOUT) -> int:
        f = Path(spec.extra["exit_file"])
        wait_for(f.exists, timeout, f"on_exit of {spec.container_id}")
        return int(f.read_text())


@pytest.fixture
def world(tmp_path: Path, rootfs: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    # the monitor imports the on_exit hook from this module
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    )
    w = World(tmp_path, rootfs, Runc(RUNC, state_root=tmp_path / "runc"))
    try:
        yield w
    finally:
        for c in w.runc.list():
            with contextlib.suppress(Exception):
                w.runc.delete(str(c["id"]), force=True)
        deadline = time.monotonic() + 5.0
        for started in w.launched:  # monitors exit once their container is gone
            while pid_alive(started.monitor_pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if pid_alive(started.monitor_pid):
                os.kill(started.monitor_pid, signal.SIGKILL)


def log_entries(spec: MonitorSpec) -> list[dict[str, str]]:
    return log_entries_at(spec.log_path)


RFC3339NANO = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


def test_output_logged_and_exit_code(world: World) -> None:
    spec = world.spec(["sh", "-c", "echo out; echo err >&2; exit 3"])
    started = world.launch(spec)
    assert started.container_pid > 0 and started.monitor_pid > 0
    assert world.exit_code(spec) == 3
    entries = log_entries(spec)
    assert sorted((e["stream"], e["log"]) for e in entries) == [
        ("stderr", "err\n"),
        ("stdout", "out\n"),
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", e["time"]) for e in entries)
    # the monitor cleaned up after itself
    wait_for(lambda: not pid_alive(started.monitor_pid), what="monitor exit")
    assert world.runc.list() == []
    assert not spec.sock_dir.exists()
    # docker logs: streams, tail, timestamps
    got = list(read_logs(spec.log_path))
    assert sorted(got) == [("stderr", b"err\n"), ("stdout", b"out\n")]
    assert list(read_logs(spec.log_path, stderr=False)) == [("stdout", b"out\n")]
    assert list(read_logs(spec.log_path, tail=1)) == got[-1:]
    assert list(read_logs(spec.log_path, tail=0)) == []
    stamped = list(read_logs(spec.log_path, timestamps=True))
    assert all(RFC3339NANO.match(data) for _, data in stamped)
    assert [d.split(b" ", 1)[1] for _, d in stamped] == [d for _, d in got]
    assert list(read_logs(spec.log_path, since=time.time() + 60)) == []
    assert list(read_logs(spec.log_path, until=time.time() - 3600)) == []


def test_kill_pause_resume(world: World) -> None:
    spec = world.spec(["sleep", "1000"])
    started = world.launch(spec)
    state = world.runc.state(spec.container_id)
    assert state is not None and state["status"] == "running"
    assert state["pid"] == started.container_pid
    assert started.container_pid in world.runc.ps(spec.container_id)
    # runc exec in the foreground, as the caller runs it
    process = json.loads((spec.bundle / "config.json").read_text())["process"]
    process.update(args=["sh", "-c", "echo exec-out; exit 4"], terminal=False)
    process_json = world.dir / "process.json"
    process_json.write_text(json.dumps(process))
    argv = world.runc.exec_argv(spec.container_id, process_json, tty=False)
    proc = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, check=False)
    assert (proc.returncode, proc.stdout) == (4, b"exec-out\n")
    world.runc.pause(spec.container_id)
    assert (world.runc.state(spec.container_id) or {})["status"] == "paused"
    world.runc.resume(spec.container_id)
    assert (world.runc.state(spec.container_id) or {})["status"] == "running"
    # SIGTERM to the monitor is ignored: it never dies before its container
    os.kill(started.monitor_pid, signal.SIGTERM)
    time.sleep(0.2)
    assert monitor_alive(spec.sock_dir)
    world.runc.kill(spec.container_id, "KILL")
    assert world.exit_code(spec) == 137
    wait_for(lambda: not pid_alive(started.monitor_pid), what="monitor exit")
    assert world.runc.state(spec.container_id) is None
    assert not monitor_alive(spec.sock_dir)


def test_container_outlives_the_launching_process(world: World) -> None:
    spec = world.spec(["sleep", "1000"])
    spec_file = world.dir / "spec.json"
    spec_file.write_text(spec.to_json())
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from dockyard.runtime.monitor import MonitorSpec, launch\n"
        "s = launch(MonitorSpec.from_json(Path(sys.argv[1]).read_text()))\n"
        "print(json.dumps([s.container_pid, s.monitor_pid]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(spec_file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    container_pid, monitor_pid = json.loads(proc.stdout)
    world.launched.append(Started(container_pid, monitor_pid))
    time.sleep(0.2)
    assert pid_alive(monitor_pid) and pid_alive(container_pid)
    assert monitor_alive(spec.sock_dir)
    assert (world.runc.state(spec.container_id) or {})["status"] == "running"
    # the monitor is its container's parent (subreaper), and nobody's child here
    assert _ppid(container_pid) == monitor_pid
    assert _ppid(monitor_pid) != os.getpid()
    world.runc.kill(spec.container_id, "KILL")
    assert world.exit_code(spec) == 137


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def _read_frames_until(
    sock: socket.socket, dec: FrameDecoder, want: bytes, got: dict[int, bytes]
) -> None:
    sock.settimeout(TIMEOUT)
    while want not in got.get(1, b""):
        chunk = sock.recv(65536)
        assert chunk, f"stream ended before {want!r}: {got!r}"
        for stream, data in dec.feed(chunk):
            got[stream] = got.get(stream, b"") + data


def test_attach_stdin_frames_and_stdin_once(world: World) -> None:
    spec = world.spec(["cat"], open_stdin=True, stdin_once=True, long_sock_dir=True)
    assert len(str(spec.sock_dir / "attach.sock")) > 108
    world.launch(spec)
    sock, tty = open_attach(spec.sock_dir, stdin=True, stdout=True, stderr=True)
    assert tty is False
    dec, got = FrameDecoder(), dict[int, bytes]()
    sock.sendall(b"hello\n")
    _read_frames_until(sock, dec, b"hello\n", got)
    assert got == {1: b"hello\n"}
    # a second client asking for logs gets this run's output replayed, then live output
    late, _ = open_attach(spec.sock_dir, stdin=False, stdout=True, stderr=True, logs=True)
    late_got: dict[int, bytes] = {}
    late_dec = FrameDecoder()
    _read_frames_until(late, late_dec, b"hello\n", late_got)
    sock.sendall(b"world\n")
    _read_frames_until(sock, dec, b"world\n", got)
    _read_frames_until(late, late_dec, b"hello\nworld\n", late_got)
    # EOF on the client's stdin closes cat's stdin (stdin_once): cat exits 0
    sock.shutdown(socket.SHUT_WR)
    assert world.exit_code(spec) == 0
    sock.settimeout(TIMEOUT)
    assert sock.recv(65536) == b""  # the stream ends once the container exited
    sock.close()
    late.close()
    assert [e["log"] for e in log_entries(spec)] == ["hello\n", "world\n"]


def test_attach_function_pipes(world: World) -> None:
    spec = world.spec(
        ["sh", "-c", "echo early; cat; echo bye >&2; exit 7"], open_stdin=True, stdin_once=True
    )
    world.launch(spec, start=False)  # attach first, then start: "early" is not lost
    assert (world.runc.state(spec.container_id) or {})["status"] == "created"
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    os.write(in_w, b"abc\n")
    os.close(in_w)
    try:
        detached = attach(
            spec.sock_dir,
            stdin=True,
            stdout=True,
            stderr=True,
            tty=False,
            start=True,
            stdin_fd=in_r,
            stdout_fd=out_w,
            stderr_fd=err_w,
        )
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    with os.fdopen(out_r, "rb") as out, os.fdopen(err_r, "rb") as err:
        assert (out.read(), err.read()) == (b"early\nabc\n", b"bye\n")
    assert detached is False
    assert world.exit_code(spec, timeout=0.1) == 7  # on_exit ran before the stream ended


class PtyClient:
    """`attach` in a child process whose controlling terminal is a pty we hold."""

    SCRIPT = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from dockyard.runtime.attach import attach\n"
        "r = attach(Path(sys.argv[1]), stdin=True, stdout=True, stderr=True, tty=True,"
        " start=sys.argv[3] == 'start')\n"
        "Path(sys.argv[2]).write_text(json.dumps(r))\n"
    )

    def __init__(
        self, sock_dir: Path, result: Path, size: tuple[int, int], *, start: bool = False
    ) -> None:
        self.master, slave = pty.openpty()
        self.set_size(*size)
        self.result = result
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                self.SCRIPT,
                str(sock_dir),
                str(result),
                "start" if start else "-",
            ],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.output = b""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.output += data

    def set_size(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def wait_raw(self) -> None:
        """Wait until the client put its terminal in raw mode (it is attached by
        then; typing earlier would be flushed by tcsetattr(TCSAFLUSH))."""
        wait_for(lambda: not termios.tcgetattr(self.master)[3] & termios.ECHO, what="raw mode")

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait_output(self, pattern: bytes, start: int = 0) -> int:
        """Wait until pattern (a regex) appears after offset start; returns its end."""
        rx = re.compile(pattern)

        def found() -> int:
            with self._lock:
                m = rx.search(self.output, start)
            return m.end() if m else 0

        try:
            return int(wait_for(found))
        except AssertionError:
            raise AssertionError(f"no {pattern!r} in {self.output[start:]!r}") from None

    def finish(self) -> bool:
        """Wait for the client; returns attach's answer (detached)."""
        self.proc.wait(TIMEOUT)
        return bool(json.loads(self.result.read_text()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def test_tty_attach_resize_detach_exit(world: World) -> None:
    spec = world.spec(["sh"], tty=True, open_stdin=True, console_size=(24, 80), long_sock_dir=True)
    world.launch(spec, start=False)
    # first client: attaches, sends its terminal's size, starts the container
    a = PtyClient(spec.sock_dir, world.dir / "a.json", (30, 90), start=True)
    try:
        pos = a.wait_output(rb"(?s)BusyBox.*# ")  # the banner and prompt, live
        a.type(b"stty size\n")
        pos = a.wait_output(rb"\r\n30 90\r\n", pos)
        a.set_size(40, 100)  # the kernel sends SIGWINCH to the client

        def resized() -> bool:
            nonlocal pos
            a.type(b"stty size\n")
            try:
                pos = a.wait_output(rb"\r\n\d+ \d+\r\n", pos)
            except AssertionError:
                return False
            return a.output[:pos].rstrip().endswith(b"40 100")

        wait_for(resized, what="resize to 40x100")
        a.type(b"\x10\x11")  # ctrl-p ctrl-q
        assert a.finish() is True
    finally:
        a.close()
    assert (world.runc.state(spec.container_id) or {})["status"] == "running"
    resize(spec.sock_dir, 50, 132)
    # second client: type the command, see its output and the exit code
    b = PtyClient(spec.sock_dir, world.dir / "b.json", (50, 132))
    try:
        b.wait_raw()
        b.type(b"stty size; echo hi; exit 5\n")
        b.wait_output(rb"\r\n50 132\r\nhi\r\n")
        assert b.finish() is False
    finally:
        b.close()
    assert world.exit_code(spec, timeout=0.1) == 5
    logged = "".join(e["log"] for e in log_entries(spec))
    assert {e["stream"] for e in log_entries(spec)} == {"stdout"}
    assert "hi\r\n" in logged


def test_start_failures_map_to_docker_exit_codes(world: World) -> None:
    cases = [
        (["nosuch"], 127, "executable file not found"),
        (["/nosuch/prog"], 127, "no such file or directory"),
        (["/etc"], 126, "permission denied"),
    ]
    for args, code, message in cases:
        spec = world.spec(args)
        with pytest.raises(RuntimeStartError) as info:
            world.launch(spec)
        assert info.value.exit_code == code, info.value.message
        assert message in info.value.message
        assert "runc create failed" in info.value.message
        assert world.exit_code(spec, timeout=0.1) == code  # on_exit ran before launch raised
        assert world.runc.list() == []
        assert processes_mentioning(str(spec.sock_dir)) == []
        assert not monitor_alive(spec.sock_dir)
        assert not spec.log_path.exists() or log_entries(spec) == []


def test_sigkilled_monitor_leaves_a_detectable_container(world: World) -> None:
    spec = world.spec(["sleep", "1000"])
    started = world.launch(spec)
    assert monitor_alive(spec.sock_dir)
    os.kill(started.monitor_pid, signal.SIGKILL)
    wait_for(lambda: not monitor_alive(spec.sock_dir), what="monitor death noticed")
    assert (world.runc.state(spec.container_id) or {})["status"] == "running"
    assert pid_alive(started.container_pid)
    assert not Path(spec.extra["exit_file"]).exists()
    world.runc.delete(spec.container_id, force=True)
    assert world.runc.list() == []


def test_logs_follow_until_exit(world: World) -> None:
    spec = world.spec(["sh", "-c", "echo a; sleep 0.3; printf b; sleep 0.3; echo c >&2"])
    world.launch(spec)
    exit_file = Path(spec.extra["exit_file"])
    got = list(read_logs(spec.log_path, follow=True, stop_when=exit_file.exists, timestamps=False))
    assert got == [("stdout", b"a\n"), ("stderr", b"c\n"), ("stdout", b"b")]
    assert world.exit_code(spec) == 0


def test_not_running_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MonitorUnreachable, match="container is not running"):
        open_attach(tmp_path, stdin=False, stdout=True, stderr=True)
    with pytest.raises(MonitorUnreachable):
        resize(tmp_path, 10, 10)
    assert not monitor_alive(tmp_path)


# --------------------------------------------------------------------------- #
# pure helpers (no runc)
# --------------------------------------------------------------------------- #


def test_detach_keys() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("") == b"\x10\x11"
    assert parse_detach_keys("ctrl-@,ctrl-[,ctrl-_,a") == b"\x00\x1b\x1fa"
    with pytest.raises(InvalidArgument):
        parse_detach_keys("ctrl-1")
    with pytest.raises(InvalidArgument):
        parse_detach_keys("ab")
    m = DetachMatcher(b"\x10\x11")
    assert m.feed(b"ab\x10") == (b"ab", False)  # ctrl-p held back
    assert m.feed(b"x") == (b"\x10x", False)  # not the sequence: released
    assert m.feed(b"\x10\x10") == (b"\x10", False)  # the second ctrl-p may start it
    assert m.feed(b"\x11rest") == (b"", True)


def test_frame_decoder_across_chunks() -> None:
    stream = b"".join(
        bytes((s, 0, 0, 0)) + len(d).to_bytes(4, "big") + d
        for s, d in ((1, b"out"), (2, b"err" * 1000), (1, b""))
    )
    dec = FrameDecoder()
    got = [f for i in range(0, len(stream), 7) for f in dec.feed(stream[i : i + 7])]
    assert got == [(1, b"out"), (2, b"err" * 1000), (1, b"")]
    assert dec.leftover == 0


def test_json_log_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    w = JsonLogWriter(path)
    w.write("stdout", b"one\ntw")
    w.write("stderr", b"E\n")
    w.write("stdout", b"o\n" + b"x" * (MAX_LINE + 10) + b"\n")
    w.write("stdout", b"tail without newline \xc3\xa9 \xff")
    assert w.pending() == {"stdout": b"tail without newline \xc3\xa9 \xff", "stderr": b""}
    w.close()
    entries = log_entries_at(path)
    assert list(entries[0]) == ["log", "stream", "time"]  # Docker's key order
    got = list(read_logs(path))
    assert got == [
        ("stdout", b"one\n"),
        ("stderr", b"E\n"),
        ("stdout", b"two\n"),
        ("stdout", b"x" * MAX_LINE),
        ("stdout", b"x" * 10 + b"\n"),
        ("stdout", "tail without newline é \ufffd".encode()),
    ]
    ns = parse_timestamp(entries[0]["time"])
    assert format_timestamp(ns) == entries[0]["time"]
    assert parse_timestamp("2024-05-01T12:00:00.5+02:00") == parse_timestamp(
        "2024-05-01T10:00:00.500000000Z"
    )
    # a torn last line (a writer mid-append) is not yielded
    with open(path, "ab") as f:
        f.write(b'{"log":"half')
    assert list(read_logs(path)) == got


def log_entries_at(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]
