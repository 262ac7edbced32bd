"""Docker's human-readable output: sizes, ages, timestamps, tables.

Expected strings are copied from the reference transcripts of docker 20.10
(shared/reference/) and checked against those files when they are present;
the rest follow go-units, Go's time and text/tabwriter packages.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.cli.gotemplate import go_quote
from dockyard.cli.render import (
    Table,
    docker_time,
    ellipsis,
    human_duration,
    human_size,
    parse_rfc3339,
    rfc3339_nano,
    tabwrite,
    time_ago,
)

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"

BUSYBOX_CREATED = "2026-11-27T22:04:41.329482654Z"  # inspect-image-busybox_imported.json
COMMIT_CREATED = "2026-11-27T22:04:43.191928601Z"  # inspect-image-me_b1server_v0.2.json
LAYER_SIZE = 1985574  # the busybox image's Size


def in_transcript(name: str, block: str) -> None:
    """The expected block is really in the reference transcript (when it is here)."""
    path = REFERENCE / name
    if path.exists():
        assert block in path.read_text(), f"not in {name}:\n{block}"


# --- sizes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "precision", "expected"),
    [
        (LAYER_SIZE, 3, "1.99MB"),  # docker images SIZE
        (LAYER_SIZE, 4, "1.986MB"),  # {{json .}} VirtualSize
        (12, 3, "12B"),  # docker history of the committed layer
        (0, 3, "0B"),  # Total reclaimed space: 0B
        (999, 3, "999B"),
        (1000, 3, "1kB"),
        (1500, 3, "1.5kB"),
        (2129920, 3, "2.13MB"),
        (999_499, 3, "999kB"),
        (999_999, 3, "1e+03kB"),  # go-units prints this too: %.3g of 999.999
        (10**12, 3, "1TB"),
        (10**27, 3, "1e+03YB"),  # no unit past YB
        (123456789, 4, "123.5MB"),
    ],
)
def test_human_size(size: int, precision: int, expected: str) -> None:
    assert human_size(size, precision) == expected


def test_human_size_defaults_to_the_table_precision() -> None:
    assert human_size(LAYER_SIZE) == "1.99MB"


@given(st.integers(min_value=0, max_value=999))
def test_small_sizes_are_plain_bytes(size: int) -> None:
    assert human_size(size) == f"{size}B"


# --- durations ---------------------------------------------------------------

MINUTE, HOUR, DAY = 60, 3600, 86400


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "Less than a second"),
        (0, "Less than a second"),
        (0.999, "Less than a second"),
        (1, "1 second"),
        (1.9, "1 second"),
        (2, "2 seconds"),
        (59.9, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (11 * MINUTE + 30, "11 minutes"),
        (HOUR - 1, "59 minutes"),
        (HOUR, "About an hour"),
        (HOUR * 1.49, "About an hour"),
        (HOUR * 1.5, "2 hours"),  # hours round to nearest
        (HOUR * 47.4, "47 hours"),
        (HOUR * 47.5, "2 days"),
        (13 * DAY, "13 days"),
        (14 * DAY, "2 weeks"),
        (59 * DAY, "8 weeks"),
        (60 * DAY, "2 months"),
        (729 * DAY, "24 months"),
        (730 * DAY, "2 years"),
        (3650 * DAY, "10 years"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


def test_time_ago_transcript_values() -> None:
    created = parse_rfc3339(COMMIT_CREATED) / 1e9
    assert time_ago(created, created + 0.5) == "Less than a second ago"
    assert time_ago(created, created + 2.5) == "2 seconds ago"
    assert time_ago(created, created + 11 * MINUTE + 40) == "11 minutes ago"
    in_transcript("cli-transcript.txt", "Less than a second ago   1.99MB")
    in_transcript("extra/extra-transcript.txt", '"CreatedSince":"11 minutes ago"')


def test_time_ago_counts_from_the_whole_second() -> None:
    # the Engine API reports Created in whole seconds; docker measures from there
    assert time_ago(100.9, now=101.5) == "1 second ago"
    assert human_duration(101.5 - 100.9) == "Less than a second"


def test_time_ago_defaults_to_now() -> None:
    assert time_ago(time.time()) == "Less than a second ago"
    assert time_ago(time.time() - 3 * DAY) == "3 days ago"


# --- timestamps --------------------------------------------------------------


def test_docker_time_created_at() -> None:
    # {{json .}} CreatedAt of the two images in extra-transcript.txt
    busybox = parse_rfc3339(BUSYBOX_CREATED) / 1e9
    commit = parse_rfc3339(COMMIT_CREATED) / 1e9
    assert docker_time(busybox, utc=True) == "2026-11-27 22:04:41 +0000 UTC"
    assert docker_time(commit, utc=True) == "2026-11-27 22:04:43 +0000 UTC"
    in_transcript("extra/extra-transcript.txt", '"CreatedAt":"2026-11-27 22:04:41 +0000 UTC"')


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def use(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


def test_docker_time_uses_the_local_zone_like_go(local_zone) -> None:  # type: ignore[no-untyped-def]
    ts = parse_rfc3339(COMMIT_CREATED) / 1e9
    local_zone("UTC")
    assert docker_time(ts) == "2026-11-27 22:04:43 +0000 UTC"
    local_zone("CET-1")
    assert docker_time(ts) == "2026-11-27 23:04:43 +0100 CET"
    local_zone("EST+5")
    assert docker_time(ts) == "2026-11-27 17:04:43 -0500 EST"
    assert rfc3339_nano(int(ts) * 10**9, local=True) == "2026-11-27T17:04:43-05:00"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1795817081329482654, BUSYBOX_CREATED),
        (1795817081329482000, "2026-11-27T22:04:41.329482Z"),
        (1795817081100000000, "2026-11-27T22:04:41.1Z"),
        (1795817081000000000, "2026-11-27T22:04:41Z"),  # the plain RFC 3339 form
        (0, "1970-01-01T00:00:00Z"),
        (-1, "1969-12-31T23:59:59.999999999Z"),
        (-62135596800 * 10**9, "0001-01-01T00:00:00Z"),  # Go's zero time
    ],
)
def test_rfc3339_nano_from_nanoseconds(value: int, expected: str) -> None:
    assert rfc3339_nano(value) == expected


def test_rfc3339_nano_from_datetimes() -> None:
    plus_one = timezone(timedelta(hours=1))
    minus_330 = timezone(-timedelta(hours=3, minutes=30))
    assert rfc3339_nano(datetime(2026, 11, 27, 22, 4, 41, 329482, tzinfo=UTC)) == (
        "2026-11-27T22:04:41.329482Z"
    )
    assert rfc3339_nano(datetime(2026, 11, 27, 23, 4, 41, tzinfo=plus_one)) == (
        "2026-11-27T23:04:41+01:00"
    )
    assert rfc3339_nano(datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=minus_330)) == (
        "2026-01-02T03:04:05.6-03:30"
    )
    assert rfc3339_nano(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"  # naive: UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BUSYBOX_CREATED, 1795817081329482654),
        ("2026-11-27T22:04:41Z", 1795817081 * 10**9),
        ("2026-11-27T23:04:41+01:00", 1795817081 * 10**9),
        ("2026-11-27T17:34:41.5-04:30", 1795817081500000000),
        ("2026-11-27t22:04:41.1z", 1795817081100000000),
        ("2026-11-27T22:04:41.1234567891234Z", 1795817081123456789),  # Go drops past 9
        ("1970-01-01T00:00:00Z", 0),
        ("0001-01-01T00:00:00Z", -62135596800 * 10**9),
        ("2024-02-29T00:00:00Z", 1709164800 * 10**9),
        ("2000-03-01T00:00:00Z", 951868800 * 10**9),
    ],
)
def test_parse_rfc3339(text: str, expected: int) -> None:
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-11-27",
        "2026-11-27T22:04:41",  # no zone
        "2026-11-27 22:04:41Z",
        "2026-11-27T22:04:41.Z",
        "2026-11-27T22:04:41+0100",
        "2026-11-27T22:04:41+24:00",
        "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2026-11-27T24:00:00Z",
        "2026-11-27T22:60:00Z",
        "2026-11-27T22:04:60Z",
        "+026-11-27T22:04:41Z",
        "2026-1a-27T22:04:41Z",
        "2026-11-27T22:04:41ZZ",
    ],
)
def test_parse_rfc3339_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_rfc3339(text)


@given(st.integers(min_value=-62135596800 * 10**9, max_value=253402300799 * 10**9 + 999999999))
def test_rfc3339_round_trip(ns: int) -> None:
    assert parse_rfc3339(rfc3339_nano(ns)) == ns


@given(st.datetimes(timezones=st.timezones()))
def test_parse_agrees_with_datetime(value: datetime) -> None:
    offset = value.utcoffset()
    if offset is not None and offset.seconds % 60:
        return  # RFC 3339 has no offset seconds
    ns = parse_rfc3339(rfc3339_nano(value))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    expected = value if value.tzinfo else value.replace(tzinfo=UTC)
    delta = expected - epoch
    assert ns == (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


# --- ellipsis ----------------------------------------------------------------

HISTORY_CMD = (
    'sh -c mkdir -p /data/www/html && echo "<h1>b1</h1>" > /data/www/html/index.html'
    " && sleep 3600"
)
PS_CMD = (
    "sh -c 'mkdir -p /data/www/html && echo \"<h1>b1</h1>\" > /data/www/html/index.html"
    " && sleep 3600'"
)


def test_ellipsis_history_created_by() -> None:
    cut = ellipsis(HISTORY_CMD, 45)
    assert cut == 'sh -c mkdir -p /data/www/html && echo "<h1>b…'
    assert len(cut) == 45
    in_transcript("cli-transcript.txt", cut)


def test_ellipsis_then_quote_is_the_ps_command() -> None:
    assert go_quote(ellipsis(PS_CMD, 20)) == "\"sh -c 'mkdir -p /da…\""
    assert go_quote(ellipsis("/bin/httpd -f -h /data/www/html", 20)) == '"/bin/httpd -f -h /d…"'
    assert go_quote(ellipsis("sleep 3600", 20)) == '"sleep 3600"'
    # --no-trunc quotes the whole command
    assert go_quote(PS_CMD) == (
        "\"sh -c 'mkdir -p /data/www/html && echo \\\"<h1>b1</h1>\\\" > "
        "/data/www/html/index.html && sleep 3600'\""
    )
    in_transcript("cli-transcript.txt", "\"sh -c 'mkdir -p /da…\"")


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        ("abc", 3, "abc"),
        ("abcd", 3, "ab…"),
        ("abc", 0, ""),
        ("abc", -1, ""),
        ("abc", 1, "a"),
        ("", 1, ""),
        ("", 5, ""),
        ("日本語テキスト", 5, "日本…"),  # wide characters take two columns
        ("日本語", 6, "日本語"),
        ("日本語", 2, "日本語"),  # Go's quirk: nothing fits before the ellipsis
        ("aé日b", 4, "aé…"),
    ],
)
def test_ellipsis(text: str, width: int, expected: str) -> None:
    assert ellipsis(text, width) == expected


# --- tables ------------------------------------------------------------------


def table_of(rows: list[list[str]]) -> str:
    table = Table()
    for row in rows:
        table.row(*row)
    return table.render()


IMAGES = """\
REPOSITORY    TAG       IMAGE ID       CREATED                  SIZE
me/b1server   latest    99d1e96d5575   Less than a second ago   1.99MB
me/b1server   v0.2      99d1e96d5575   Less than a second ago   1.99MB
busybox       latest    c2a058c70a6a   2 seconds ago            1.99MB
"""


def test_images_table() -> None:
    rows = [
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        ["me/b1server", "latest", "99d1e96d5575", "Less than a second ago", "1.99MB"],
        ["me/b1server", "v0.2", "99d1e96d5575", "Less than a second ago", "1.99MB"],
        ["busybox", "latest", "c2a058c70a6a", "2 seconds ago", "1.99MB"],
    ]
    assert table_of(rows) == IMAGES
    in_transcript("cli-transcript.txt", IMAGES)


def test_images_no_trunc_and_digests_tables() -> None:
    commit = "sha256:99d1e96d55755a10bff188659738e546a8be6bf0efa6b5a92fa3ac7a976b58f5"
    busybox = "sha256:c2a058c70a6a136034b70a4077c72112d6ec53dc07a3463cf1fd2b26ab4cf065"
    no_trunc = table_of([
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        ["me/b1server", "latest", commit, "Less than a second ago", "1.99MB"],
        ["me/b1server", "v0.2", commit, "Less than a second ago", "1.99MB"],
        ["busybox", "latest", busybox, "2 seconds ago", "1.99MB"],
    ])
    assert no_trunc == (
        "REPOSITORY    TAG       IMAGE ID                                                     "
        "             CREATED                  SIZE\n"
        f"me/b1server   latest    {commit}   Less than a second ago   1.99MB\n"
        f"me/b1server   v0.2      {commit}   Less than a second ago   1.99MB\n"
        f"busybox       latest    {busybox}   2 seconds ago            1.99MB\n"
    )
    in_transcript("cli-transcript.txt", no_trunc)
    digests = table_of([
        ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"],
        ["me/b1server", "latest", "<none>", "99d1e96d5575", "Less than a second ago", "1.99MB"],
        ["me/b1server", "v0.2", "<none>", "99d1e96d5575", "Less than a second ago", "1.99MB"],
        ["busybox", "latest", "<none>", "c2a058c70a6a", "2 seconds ago", "1.99MB"],
    ])
    assert digests == (
        "REPOSITORY    TAG       DIGEST    IMAGE ID       CREATED                  SIZE\n"
        "me/b1server   latest    <none>    99d1e96d5575   Less than a second ago   1.99MB\n"
        "me/b1server   v0.2      <none>    99d1e96d5575   Less than a second ago   1.99MB\n"
        "busybox       latest    <none>    c2a058c70a6a   2 seconds ago            1.99MB\n"
    )
    in_transcript("cli-transcript.txt", digests)


def test_empty_images_table_is_its_header() -> None:
    header = table_of([["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]])
    assert header == "REPOSITORY   TAG       IMAGE ID   CREATED   SIZE\n"
    in_transcript("cli-load-transcript.txt", header)


def test_history_table_pads_the_empty_last_column() -> None:
    # docker's history template ends "\t{{.Comment}}": SIZE is padded even
    # when COMMENT is empty, so the first row ends in spaces.
    table = Table()
    table.write("IMAGE\tCREATED\tCREATED BY\tSIZE\tCOMMENT\n")
    table.write(f"99d1e96d5575\tLess than a second ago\t{ellipsis(HISTORY_CMD, 45)}\t12B\t\n")
    table.write(f"c2a058c70a6a\t2 seconds ago\t\t{human_size(LAYER_SIZE)}\tImported from -\n")
    expected = (
        "IMAGE          CREATED                  CREATED BY                                "
        "      SIZE      COMMENT\n"
        "99d1e96d5575   Less than a second ago   sh -c mkdir -p /data/www/html && echo "
        '"<h1>b…   12B       \n'
        "c2a058c70a6a   2 seconds ago                                                     "
        "       1.99MB    Imported from -\n"
    )
    assert table.render() == expected
    in_transcript("cli-transcript.txt", expected)


def test_history_no_trunc_table() -> None:
    commit = "sha256:99d1e96d55755a10bff188659738e546a8be6bf0efa6b5a92fa3ac7a976b58f5"
    busybox = "sha256:c2a058c70a6a136034b70a4077c72112d6ec53dc07a3463cf1fd2b26ab4cf065"
    table = Table()
    table.write("IMAGE\tCREATED\tCREATED BY\tSIZE\tCOMMENT\n")
    table.write(f"{commit}\tLess than a second ago\t{HISTORY_CMD}\t12B\t\n")
    table.write(f"{busybox}\t2 seconds ago\t\t1.99MB\tImported from -\n")
    lines = table.render().splitlines()
    assert lines[0].index("CREATED BY") == lines[1].index("sh -c") == 99
    assert lines[1].endswith("sleep 3600   12B       ")
    assert lines[2].endswith(" " * 95 + "1.99MB    Imported from -")
    in_transcript("cli-transcript.txt", table.render())


PS = """\
CONTAINER ID   IMAGE              COMMAND                  CREATED         STATUS         PORTS                    NAMES
799911f45588   me/b1server:v0.2   "/bin/httpd -f -h /d…"   1 second ago    Up 1 second    127.0.0.1:8080->80/tcp   web1
76fccb1a2277   busybox            "sh -c 'mkdir -p /da…"   3 seconds ago   Up 3 seconds                            b1
"""  # noqa: E501


def test_ps_table_with_an_empty_cell() -> None:
    rows = [
        ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"],
        ["799911f45588", "me/b1server:v0.2",
         go_quote(ellipsis("/bin/httpd -f -h /data/www/html", 20)),
         "1 second ago", "Up 1 second", "127.0.0.1:8080->80/tcp", "web1"],
        ["76fccb1a2277", "busybox", go_quote(ellipsis(PS_CMD, 20)),
         "3 seconds ago", "Up 3 seconds", "", "b1"],
    ]
    assert table_of(rows) == PS
    in_transcript("cli-transcript.txt", PS)
    single = table_of([rows[0], ["76fccb1a2277", "busybox", go_quote(ellipsis(PS_CMD, 20)),
                                 "1 second ago", "Up 1 second", "", "b1"]])
    assert single.splitlines()[1] == (
        "76fccb1a2277   busybox   \"sh -c 'mkdir -p /da…\"   1 second ago   Up 1 second"
        "             b1"
    )
    in_transcript("cli-transcript.txt", single)


def test_tabwriter_details() -> None:
    # minimum width 10, padding 3, the text after the last tab not padded
    assert tabwrite("a\tb\n") == "a         b\n"
    assert tabwrite("abcdefghij\tb\n") == "abcdefghij   b\n"
    # a trailing tab makes the last cell a padded column
    assert tabwrite("a\t\n") == "a         \n"
    # an unterminated last line is laid out too, without a newline
    assert tabwrite("a\tb\nccc\td") == "a         b\nccc       d"
    assert tabwrite("a\t") == "a"  # Go drops an empty unterminated cell
    assert tabwrite("") == ""
    # a line without tabs ends the column block: alignment starts afresh
    assert tabwrite("a\tb\nfree text\nlonger-cell\tc\n") == (
        "a         b\nfree text\nlonger-cell   c\n"
    )
    # a column is as wide as its block, not the whole output
    assert tabwrite("a\tb\tc\nxx\ty\nz\n") == "a         b         c\nxx        y\nz\n"
    # a form feed ends the line and the block
    assert tabwrite("a\tb\fxxxxxxxxxxxx\tc\n") == "a         b\nxxxxxxxxxxxx   c\n"
    # widths count characters, as Go counts runes
    assert tabwrite("é…\tb\n") == "é…        b\n"


def test_table_settings() -> None:
    table = Table(minwidth=0, padding=1)
    table.row("a", "b")
    table.row("ccc", "d")
    assert table.render() == "a   b\nccc d\n"


@given(st.lists(st.lists(st.text(alphabet="ab é", max_size=12), min_size=2, max_size=2),
                min_size=1, max_size=6))
def test_two_column_tables_align(rows: list[list[str]]) -> None:
    lines = table_of(rows).split("\n")
    assert lines.pop() == ""
    width = max(10, *(len(row[0]) + 3 for row in rows))
    for line, row in zip(lines, rows, strict=True):
        assert line == row[0].ljust(width) + row[1]
