"""What the docker CLI prints for sizes, ages, timestamps and tables.

Each piece is a port of the Go code docker uses, so the output matches the
real CLI character for character:

    human_size      go-units HumanSizeWithPrecision (precision 3: the SIZE
                    column) and HumanSize (precision 4: VirtualSize, ...)
    human_duration  go-units HumanDuration; time_ago adds " ago"
    docker_time     Go's time.Time.String(), docker's CreatedAt form
    rfc3339_nano    Go's RFC3339Nano layout; parse_rfc3339 reads it back
    Table           Go's text/tabwriter as docker/cli sets it up
    ellipsis        docker/cli formatter.Ellipsis (CREATED BY, COMMAND)

Stdlib only and cheap to import: `dockyard images` loads this on every run.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "Table",
    "docker_time",
    "ellipsis",
    "human_duration",
    "human_size",
    "parse_rfc3339",
    "rfc3339_nano",
    "tabwrite",
    "time_ago",
]

_NS = 1_000_000_000
_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float, precision: int = 3) -> str:
    """Size in decimal units with `precision` significant digits.

    Docker's SIZE columns use precision 3 ("1.99MB"); HumanSize, used for
    VirtualSize and SharedSize in `--format`, is precision 4 ("1.986MB").
    """
    value = float(size)
    unit = 0
    while value >= 1000.0 and unit < len(_DECIMAL_UNITS) - 1:
        value /= 1000.0
        unit += 1
    # Go's %.*g and Python's .Ng agree: same rounding, same trimming, e+NN.
    return f"{value:.{precision}g}{_DECIMAL_UNITS[unit]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: "Less than a second", "About an hour", "3 weeks"..."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def time_ago(ts: float, now: float | None = None) -> str:
    """docker's CreatedSince: "2 seconds ago".

    `ts` is cut to whole seconds first, because the Engine API reports
    Created in whole seconds and docker measures from that.
    """
    if now is None:
        now = time.time()
    return human_duration(now - float(ts) // 1) + " ago"


def _offset(seconds: int, sep: str) -> str:
    sign = "-" if seconds < 0 else "+"
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60:02d}{sep}{minutes % 60:02d}"


def docker_time(ts: float, *, utc: bool = False) -> str:
    """Go's time.Unix(ts, 0).String(): "2026-11-27 22:04:43 +0000 UTC".

    docker prints CreatedAt this way, in the local time zone (as Go does)
    unless `utc`. Fractions of a second are dropped, as the API drops them.
    """
    secs = int(float(ts) // 1)
    tm = time.gmtime(secs) if utc else time.localtime(secs)
    zone = "UTC" if utc else tm.tm_zone  # gmtime says "GMT"; Go says "UTC"
    return (
        f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d} "
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} "
        f"{_offset(tm.tm_gmtoff, '')} {zone}"
    )


def rfc3339_nano(value: int | datetime, *, local: bool = False) -> str:
    """Go's RFC3339Nano: "2026-11-27T22:04:41.329482654Z".

    `value` is nanoseconds since the epoch (shown in UTC, or in the local
    zone if `local`) or an aware datetime (shown in its own offset; a naive
    one is taken as UTC). As in Go the fraction loses its trailing zeros and
    vanishes when zero, so whole seconds give the plain RFC 3339 form that
    `docker history --format '{{.CreatedAt}}'` prints.
    """
    if isinstance(value, int):
        secs, nanos = divmod(value, _NS)
        tm = time.localtime(secs) if local else time.gmtime(secs)
        fields = (tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
        offset = tm.tm_gmtoff if local else 0
    else:
        delta = value.utcoffset()
        offset = 0 if delta is None else int(delta.total_seconds())
        fields = (value.year, value.month, value.day, value.hour, value.minute, value.second)
        nanos = value.microsecond * 1000
    year, month, day, hour, minute, second = fields
    frac = f".{nanos:09d}".rstrip("0") if nanos else ""
    zone = "Z" if offset == 0 else _offset(offset, ":")
    return (
        f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{frac}{zone}"
    )


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _number(text: str, start: int, end: int) -> int:
    part = text[start:end]
    if len(part) != end - start or not (part.isascii() and part.isdigit()):
        raise ValueError(part)
    return int(part)


_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time as Go and OCI write it.

    Accepts "2026-11-27T22:04:41.329482654Z", any number of fraction digits
    (as Go, digits past the ninth are dropped) and "Z" or "+hh:mm" offsets.
    Raises ValueError for anything else.
    """
    try:
        if len(text) < 20 or text[10] not in "Tt":
            raise ValueError(text)
        for index, sep in ((4, "-"), (7, "-"), (13, ":"), (16, ":")):
            if text[index] != sep:
                raise ValueError(text)
        year, month, day = _number(text, 0, 4), _number(text, 5, 7), _number(text, 8, 10)
        hour, minute, second = _number(text, 11, 13), _number(text, 14, 16), _number(text, 17, 19)
        nanos = 0
        pos = 19
        if text[pos] in ".,":
            end = pos + 1
            while end < len(text) and "0" <= text[end] <= "9":
                end += 1
            if end == pos + 1:
                raise ValueError(text)
            nanos = int(text[pos + 1 : end][:9].ljust(9, "0"))
            pos = end
        zone = text[pos:]
        if zone in ("Z", "z"):
            offset = 0
        elif len(zone) == 6 and zone[0] in "+-" and zone[3] == ":":
            zone_hours, zone_minutes = _number(zone, 1, 3), _number(zone, 4, 6)
            if zone_hours > 23 or zone_minutes > 59:
                raise ValueError(text)
            offset = (zone_hours * 3600 + zone_minutes * 60) * (-1 if zone[0] == "-" else 1)
        else:
            raise ValueError(text)
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        if not 1 <= month <= 12:
            raise ValueError(text)
        last_day = 28 if month == 2 and not leap else _MONTH_DAYS[month - 1]
        if not 1 <= day <= last_day or hour > 23 or minute > 59 or second > 59:
            raise ValueError(text)
    except (ValueError, IndexError):
        raise ValueError(f"cannot parse {text!r} as an RFC 3339 time") from None
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return (seconds - offset) * _NS + nanos


def _char_width(char: str) -> int:
    import unicodedata  # only strings that are not ASCII get here

    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def ellipsis(text: str, max_width: int) -> str:
    """docker/cli formatter.Ellipsis: cut to `max_width` columns, ending in "…".

    `docker history` cuts CREATED BY at 45 and `docker ps` COMMAND at 20
    (before quoting it). East Asian wide characters count as two columns.
    """
    if max_width <= 0:
        return ""
    if max_width == 1:
        return text[:1]
    if text.isascii():
        return text if len(text) <= max_width else text[: max_width - 1] + "…"
    display: list[int] = []
    total = 0
    for char in text:
        total += _char_width(char)
        display.append(total)
    if total <= max_width:
        return text
    for index in range(len(display) - 1):
        if display[index] <= max_width - 1 < display[index + 1]:
            return text[: index + 1] + "…"
    return text


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter with docker's settings (minwidth 10, padding 3, ' ').

    Cells end at a tab; every cell that ends at a tab is padded to the width
    of its column (at least `minwidth`, and `padding` more than its widest
    cell), while the text after a line's last tab is not. Columns are laid
    out per block of consecutive lines that have the column, as Go does, so
    a line without tabs starts the alignment afresh; a form feed ends a line
    and the block. Widths count code points, like Go counts runes.
    """
    out: list[str] = []
    block: list[list[str]] = []
    raw_lines = text.replace("\v", "\t").split("\n")
    last = len(raw_lines) - 1
    for number, raw in enumerate(raw_lines):
        pieces = raw.split("\f")
        for index, piece in enumerate(pieces):
            cells = piece.split("\t")
            if number == last and index == len(pieces) - 1:
                # The unterminated rest: Go keeps its last cell only if non-empty.
                if cells[-1] == "":
                    cells.pop()
                _format_block(block, cells, minwidth, padding, out)
                return "".join(out)
            block.append(cells)
            if index < len(pieces) - 1:  # a form feed flushes
                _format_block(block, None, minwidth, padding, out)
                block = []
    raise AssertionError("unreachable")


def _format_block(
    lines: list[list[str]],
    partial: list[str] | None,
    minwidth: int,
    padding: int,
    out: list[str],
) -> None:
    """Lay out complete `lines` (and an unterminated `partial` one) as Go does."""
    count = len(lines)
    if partial is not None:
        lines = [*lines, partial]
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = lines[i]
            for j, cell in enumerate(cells):
                out.append(cell)
                if j < len(widths):
                    out.append(" " * (widths[j] - len(cell)))
            if i < count:
                out.append("\n")

    def layout(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            # lines[this] has a cell in this column: a column block starts
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            layout(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    layout(0, len(lines))


class Table:
    """Collects docker table output and lays it out with `tabwrite`.

    Write text with tabs between cells and a newline after each row, as
    docker writes its rendered templates, or add rows cell by cell::

        table = Table()
        table.row("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
        table.row("busybox", "latest", "c2a058c70a6a", "2 seconds ago", "1.99MB")
        print(table.render(), end="")
    """

    def __init__(self, minwidth: int = 10, padding: int = 3) -> None:
        self.minwidth = minwidth
        self.padding = padding
        self._parts: list[str] = []

    def write(self, text: str) -> None:
        self._parts.append(text)

    def row(self, *cells: str) -> None:
        self._parts.append("\t".join(cells) + "\n")

    def render(self) -> str:
        return tabwrite("".join(self._parts), self.minwidth, self.padding)
