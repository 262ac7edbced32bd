"""Timestamps as Go and the OCI spec write them (RFC 3339 with nanoseconds)."""

from __future__ import annotations

import calendar
import re
import time

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$"
)


def now_ns() -> int:
    return time.time_ns()


def format_ns(ns: int) -> str:
    """Go's RFC3339Nano in UTC: fraction with trailing zeros trimmed."""
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        base += ("." + f"{frac:09d}").rstrip("0")
    return base + "Z"


def parse_ns(value: str) -> int:
    """Parse an RFC 3339 timestamp to nanoseconds since the epoch (0 when unparseable)."""
    m = _RFC3339.match(value.strip()) if value else None
    if not m:
        return 0
    year, mon, day, hh, mm, ss = (int(m.group(i)) for i in range(1, 7))
    frac = int((m.group(7) or "0").ljust(9, "0"))
    secs = calendar.timegm((year, mon, day, hh, mm, ss, 0, 0, 0))
    if m.group(9):
        offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        secs -= offset if m.group(9) == "+" else -offset
    return secs * 1_000_000_000 + frac
