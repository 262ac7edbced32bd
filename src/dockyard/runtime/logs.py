"""Docker's json-file log format: the monitor writes it, ``logs`` reads it.

One JSON object a line, keys in Docker's order::

    {"log":"out\\n","stream":"stdout","time":"2024-05-01T12:00:00.123456789Z"}

``log`` is one line of output including its newline; a line longer than 16 KiB,
or the unterminated tail at end of output, is written as an entry without a
newline (Docker's copier does the same). Bytes that are not UTF-8 become U+FFFD,
as Go's encoder makes them. A tty container logs everything as ``stdout``.

Timestamps are RFC 3339 with nine fraction digits (Go's ``RFC3339NanoFixed``),
the form ``docker logs -t`` prints.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "MAX_LINE",
    "JsonLogWriter",
    "format_timestamp",
    "parse_timestamp",
    "read_logs",
]

MAX_LINE = 16 * 1024
_quote = json.encoder.encode_basestring  # a JSON string literal, non-ASCII kept
POLL_INTERVAL = 0.05


def format_timestamp(ns: int) -> str:
    """Unix nanoseconds -> ``2006-01-02T15:04:05.000000000Z``."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def parse_timestamp(text: str) -> int:
    """RFC 3339 (any number of fraction digits, ``Z`` or an offset) -> Unix nanoseconds."""
    text = text.strip()
    frac_ns = 0
    dot = text.find(".")
    if dot != -1:
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        digits = text[dot + 1 : end]
        frac_ns = int((digits + "000000000")[:9]) if digits else 0
        text = text[:dot] + text[end:]
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000 + frac_ns


class JsonLogWriter:
    """Splits output into lines and appends json-file entries; flushes every entry."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self._file: BinaryIO = os.fdopen(fd, "ab", buffering=0)
        self._pending: dict[str, bytes] = {}

    def tell(self) -> int:
        return os.fstat(self._file.fileno()).st_size

    def pending(self) -> dict[str, bytes]:
        """Unterminated output not yet written (for replay to a newly attached client)."""
        return dict(self._pending)

    def write(self, stream: str, data: bytes) -> None:
        buf = self._pending.get(stream, b"") + data
        out: list[bytes] = []
        start, end = 0, len(buf)
        while start < end:
            nl = buf.find(b"\n", start, start + MAX_LINE)
            if nl != -1:
                out.append(buf[start : nl + 1])
                start = nl + 1
            elif end - start >= MAX_LINE:
                out.append(buf[start : start + MAX_LINE])
                start += MAX_LINE
            else:
                break
        self._pending[stream] = buf[start:]
        self._emit(stream, out)

    def flush(self) -> None:
        """Write unterminated tails as entries of their own (at end of output)."""
        for stream, buf in list(self._pending.items()):
            if buf:
                self._emit(stream, [buf])
        self._pending.clear()

    def _emit(self, stream: str, lines: list[bytes]) -> None:
        if not lines:
            return
        # {"log":...,"stream":...,"time":...}: the same bytes json.dumps would give
        tail = f',"stream":{_quote(stream)},"time":"{format_timestamp(time.time_ns())}"}}\n'
        chunk = "".join(
            '{"log":' + _quote(line.decode("utf-8", "replace")) + tail for line in lines
        )
        self._file.write(chunk.encode("utf-8"))

    def close(self) -> None:
        self.flush()
        self._file.close()


def _entries(raw: bytes) -> Iterator[tuple[str, bytes, int]]:
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
            yield (
                str(entry["stream"]),
                str(entry["log"]).encode("utf-8"),
                parse_timestamp(str(entry["time"])),
            )
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line: skip it as Docker does


def read_logs(
    path: Path,
    *,
    follow: bool = False,
    tail: int | None = None,
    timestamps: bool = False,
    since: float | None = None,
    until: float | None = None,
    stdout: bool = True,
    stderr: bool = True,
    stop_when: Callable[[], bool] = lambda: True,
    start_offset: int = 0,
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(stream, data)`` from a json-file log, as ``docker logs`` shows them.

    ``tail`` counts the last N entries of the file (all streams, as Docker does)
    before ``since``/``until`` (Unix seconds) and the stream choice filter them.
    ``timestamps`` prefixes each entry with its RFC3339Nano time and a space.
    With ``follow``, new entries are yielded as they are written until
    ``stop_when()`` (typically: the container has exited) is true; then what the
    file still holds is yielded and the iterator ends. ``start_offset`` skips to a
    byte offset (the start of the current run).
    """
    since_ns = None if since is None else int(since * 1_000_000_000)
    until_ns = None if until is None else int(until * 1_000_000_000)
    wanted = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}

    def render(items: Iterator[tuple[str, bytes, int]]) -> Iterator[tuple[str, bytes]]:
        for stream, data, ns in items:
            if stream not in wanted:
                continue
            if since_ns is not None and ns < since_ns:
                continue
            if until_ns is not None and ns > until_ns:
                continue
            if timestamps:
                data = format_timestamp(ns).encode() + b" " + data
            yield stream, data

    try:
        f = open(path, "rb")  # noqa: SIM115 - closed in finally, generator lifetime
    except FileNotFoundError:
        if not follow:
            return
        while not path.exists():
            if stop_when():
                return
            time.sleep(POLL_INTERVAL)
        f = open(path, "rb")  # noqa: SIM115
    try:
        if start_offset:
            f.seek(start_offset)
        raw = f.read()
        cut = raw.rfind(b"\n") + 1
        rest, raw = raw[cut:], raw[:cut]
        items = list(_entries(raw))
        if tail is not None:
            items = items[-tail:] if tail > 0 else []
        yield from render(iter(items))
        if not follow:
            return
        while True:
            if until_ns is not None and time.time_ns() > until_ns:
                return
            stopping = stop_when()
            chunk = f.read()
            if chunk:
                rest += chunk
                cut = rest.rfind(b"\n") + 1
                if cut:
                    yield from render(_entries(rest[:cut]))
                    rest = rest[cut:]
                continue
            if stopping:
                return
            if os.fstat(f.fileno()).st_size < f.tell():  # truncated under us
                f.seek(0)
                rest = b""
            time.sleep(POLL_INTERVAL)
    finally:
        f.close()
