"""The client side of a monitor's attach.sock (see `dockyard.runtime.monitor`).

`attach` relays between this process's stdin/stdout/stderr (or fds given) and a
running container: the terminal in raw mode when the container has a tty and
stdin is a terminal (restored on the way out), SIGWINCH -> resize over ctl.sock,
Docker's detach sequence (ctrl-p,ctrl-q by default; the keys are not sent). It
returns when the container's output ends (the container exited) or on detach.

`FrameDecoder` / `demux` read Docker's multiplexed stream
(``[stream:1][0,0,0][len:4 big-endian][data]``).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import termios
import threading
import time
import tty as ttymod
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO

from dockyard.errors import DockyardError, InvalidArgument
from dockyard.runtime.monitor import (
    ATTACH_SOCK,
    MonitorUnreachable,
    connect_unix,
    ctl_request,
)
from dockyard.runtime.monitor import start as start_container

__all__ = [
    "DEFAULT_DETACH_KEYS",
    "DetachMatcher",
    "FrameDecoder",
    "attach",
    "demux",
    "open_attach",
    "parse_detach_keys",
    "resize",
]

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
STREAMS = {0: "stdin", 1: "stdout", 2: "stderr"}
READ_SIZE = 64 * 1024
SEND_BUFFER_MAX = 1024 * 1024


class FrameDecoder:
    """Incremental decoder of Docker's multiplexed frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out: list[tuple[int, bytes]] = []
        while len(self._buf) >= 8:
            size = int.from_bytes(self._buf[4:8], "big")
            if len(self._buf) < 8 + size:
                break
            out.append((self._buf[0], bytes(self._buf[8 : 8 + size])))
            del self._buf[: 8 + size]
        return out

    @property
    def leftover(self) -> int:
        """Bytes of an incomplete frame (non-zero at EOF means a torn stream)."""
        return len(self._buf)


def demux(reader: BinaryIO | socket.socket) -> Iterator[tuple[int, bytes]]:
    """Yield (stream, data) frames from a file or socket until EOF."""
    dec = FrameDecoder()
    while True:
        chunk = (
            reader.recv(READ_SIZE) if isinstance(reader, socket.socket) else reader.read(READ_SIZE)
        )
        if not chunk:
            return
        yield from dec.feed(chunk)


def parse_detach_keys(spec: str) -> bytes:
    """Docker's --detach-keys: comma-separated ``ctrl-<a-z@[\\]^_>`` or single characters."""
    spec = spec or DEFAULT_DETACH_KEYS
    out = bytearray()
    for part in spec.split(","):
        low = part.strip().lower()
        if low.startswith("ctrl-") and len(low) == 6:
            ch = low[5]
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            elif ch in "@[\\]^_":
                out.append("@[\\]^_".index(ch) + (0 if ch == "@" else 26))
            else:
                raise InvalidArgument(f"Unknown character: '{ch}'")
        elif len(part) == 1:
            out.append(ord(part))
        else:
            raise InvalidArgument(f"Unknown character: '{part}'")
    return bytes(out)


class DetachMatcher:
    """Holds back bytes that may start the detach sequence; reports when it is typed."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = 0  # how many of keys are matched (and held back)

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Returns (bytes to send, detached). After detach the rest is dropped."""
        if not self.keys:
            return data, False
        out = bytearray()
        for b in data:
            if b == self.keys[self._held]:
                self._held += 1
                if self._held == len(self.keys):
                    return bytes(out), True
                continue
            if self._held:
                out += self.keys[: self._held]
                self._held = 0
                if b == self.keys[0]:
                    self._held = 1
                    continue
            out.append(b)
        return bytes(out), False


def open_attach(
    sock_dir: Path,
    *,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    logs: bool = False,
    timeout: float = 10.0,
) -> tuple[socket.socket, bool]:
    """Connect to attach.sock and do the header exchange; returns (socket, tty)."""
    try:
        sock = connect_unix(sock_dir / ATTACH_SOCK, timeout)
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise MonitorUnreachable(sock_dir, e) from None
    try:
        hdr = {"stdin": stdin, "stdout": stdout, "stderr": stderr, "logs": logs}
        sock.sendall(json.dumps(hdr).encode() + b"\n")
        line = b""
        while not line.endswith(b"\n"):
            ch = sock.recv(1)  # byte by byte: what follows the line is the stream
            if not ch:
                raise DockyardError("container monitor closed the attach connection")
            line += ch
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise DockyardError(f"attach: {answer['error']}")
        sock.settimeout(None)
        return sock, bool(answer.get("tty"))
    except BaseException:
        sock.close()
        raise


def resize(sock_dir: Path, rows: int, cols: int) -> None:
    answer = ctl_request(sock_dir, {"resize": [rows, cols]})
    if isinstance(answer, dict) and "error" in answer:
        raise DockyardError(f"resize: {answer['error']}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        view = view[n:]


def _terminal_size(*fds: int) -> tuple[int, int] | None:
    for fd in fds:
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
    return None


def attach(
    sock_dir: Path,
    *,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    detach_keys: str = DEFAULT_DETACH_KEYS,
    logs: bool = False,
    start: bool = False,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    stderr_fd: int = 2,
) -> bool:
    """Relay between this process's stdio and the container until its output ends;
    True if the user detached (the detach keys), False once the container exited.
    By then the monitor has run ``on_exit``: the exit code is recorded.

    ``start`` starts a container made by ``launch(start=False)`` once attached
    (and sized), as ``docker run -it`` / ``docker start -a`` do: nothing is lost.
    ``logs`` instead replays this run's output so far from the log (beware: a tty
    replay can repeat terminal queries such as ash's cursor-position request).
    Raises `RuntimeStartError` if ``start`` fails.
    """
    keys = parse_detach_keys(detach_keys) if stdin else b""
    sock, _ = open_attach(sock_dir, stdin=stdin, stdout=stdout, stderr=stderr, logs=logs)
    saved: list[Any] | None = None
    winch_r = winch_w = -1
    old_handler: Any = None
    try:
        if tty and stdin and os.isatty(stdin_fd):
            saved = termios.tcgetattr(stdin_fd)
            ttymod.setraw(stdin_fd)
        if tty:
            size = _terminal_size(stdout_fd, stdin_fd)
            if size:
                with contextlib.suppress(OSError, DockyardError, ValueError):
                    resize(sock_dir, *size)
            if threading.current_thread() is threading.main_thread():
                winch_r, winch_w = os.pipe()
                os.set_blocking(winch_w, False)

                def on_winch(_sig: int, _frame: FrameType | None) -> None:
                    with contextlib.suppress(OSError):
                        os.write(winch_w, b"w")

                old_handler = signal.signal(signal.SIGWINCH, on_winch)
        if start:
            start_container(sock_dir)
        detached = _relay(
            sock,
            sock_dir,
            tty=tty,
            stdin_fd=stdin_fd if stdin else -1,
            stdout_fd=stdout_fd,
            stderr_fd=stderr_fd,
            keys=keys,
            winch_fd=winch_r,
        )
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGWINCH, old_handler)
        for fd in (winch_r, winch_w):
            if fd >= 0:
                os.close(fd)
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        sock.close()
    return detached


def _relay(
    sock: socket.socket,
    sock_dir: Path,
    *,
    tty: bool,
    stdin_fd: int,
    stdout_fd: int,
    stderr_fd: int,
    keys: bytes,
    winch_fd: int,
) -> bool:
    """The copy loop; True when the user detached."""
    R, W = selectors.EVENT_READ, selectors.EVENT_WRITE
    matcher = DetachMatcher(keys)
    decoder = FrameDecoder()
    pending = bytearray()
    stdin_open = stdin_fd >= 0  # False after EOF on our stdin
    shut = stdin_fd < 0  # our stdin's EOF has been passed on (or there is none)
    sock.setblocking(False)
    # poll, not epoll: a regular file as stdin (`< file`) must be selectable
    with selectors.PollSelector() as sel:
        sel.register(sock, R)
        if winch_fd >= 0:
            sel.register(winch_fd, R)
        reading_stdin = False
        while True:
            if not stdin_open and not pending and not shut:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                shut = True
            want_stdin = stdin_open and len(pending) <= SEND_BUFFER_MAX
            if want_stdin != reading_stdin:
                if want_stdin:
                    sel.register(stdin_fd, R)
                else:
                    sel.unregister(stdin_fd)
                reading_stdin = want_stdin
            sel.modify(sock, R | (W if pending else 0))
            for key, events in sel.select():
                if key.fd == winch_fd:
                    with contextlib.suppress(OSError):
                        os.read(winch_fd, 1024)
                    size = _terminal_size(stdout_fd, stdin_fd if stdin_fd >= 0 else stdout_fd)
                    if size:
                        with contextlib.suppress(OSError, DockyardError, ValueError):
                            resize(sock_dir, *size)
                elif key.fd == stdin_fd:
                    try:
                        data = os.read(stdin_fd, READ_SIZE)
                    except BlockingIOError:
                        continue
                    if not data:
                        stdin_open = False
                        continue
                    data, detached = matcher.feed(data)
                    pending += data
                    if detached:
                        return True
                elif key.fd == sock.fileno():
                    if events & W and pending:
                        try:
                            n = sock.send(pending)
                            del pending[:n]
                        except BlockingIOError:
                            pass
                        except OSError:
                            pending.clear()
                    if events & R:
                        try:
                            data = sock.recv(READ_SIZE)
                        except BlockingIOError:
                            continue
                        except OSError:
                            data = b""
                        if not data:
                            return False
                        if tty:
                            _write_all(stdout_fd, data)
                        else:
                            for stream, payload in decoder.feed(data):
                                _write_all(stderr_fd if stream == 2 else stdout_fd, payload)
