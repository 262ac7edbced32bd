"""Go text/template for --format.

Expected outputs and error texts were taken from the docker CLI (28.2, Go
1.24) running the same templates, and from the reference transcripts of
docker 20.10 in shared/reference/.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.cli.gotemplate import (
    NO_VALUE,
    Template,
    TemplateError,
    format_rows,
    go_quote,
    go_sprint,
    header_for,
    is_table,
    json_encode,
    render,
)
from dockyard.errors import InvalidArgument

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"


def in_transcript(name: str, block: str) -> None:
    path = REFERENCE / name
    if path.exists():
        assert block in path.read_text(), f"not in {name}:\n{block}"


def error_of(template: str, data: object = None, **options: str) -> str:
    with pytest.raises(TemplateError) as caught:
        render(template, data, **options)  # type: ignore[arg-type]
    return str(caught.value)


# --- docker's rows, from the transcripts ------------------------------------------

IMAGE_ROW = {  # docker's imageContext marshals as a map: keys sorted
    "Containers": "N/A",
    "CreatedAt": "2026-11-27 22:04:43 +0000 UTC",
    "CreatedSince": "11 minutes ago",
    "Digest": "<none>",
    "ID": "99d1e96d5575",
    "Repository": "me/b1server",
    "SharedSize": "N/A",
    "Size": "1.99MB",
    "Tag": "latest",
    "UniqueSize": "N/A",
    "VirtualSize": "1.986MB",
}

CONTAINER_ROW = {
    "Command": '"sleep 3600"',
    "CreatedAt": "2026-11-27 22:16:30 +0000 UTC",
    "ID": "a151e2281228",
    "Image": "busybox",
    "Labels": "",
    "LocalVolumes": "0",
    "Mounts": "",
    "Names": "b2",
    "Networks": "bridge",
    "Ports": "",
    "RunningFor": "Less than a second ago",
    "Size": "0B (virtual 1.99MB)",
    "State": "running",
    "Status": "Up Less than a second",
}

IMAGE_HEADERS = {
    "ID": "IMAGE ID",
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
    "Containers": "CONTAINERS",
    "VirtualSize": "VIRTUAL SIZE",
    "SharedSize": "SHARED SIZE",
    "UniqueSize": "UNIQUE SIZE",
}


def test_json_of_an_images_row() -> None:
    line = render("{{json .}}", IMAGE_ROW)
    assert line == (
        '{"Containers":"N/A","CreatedAt":"2026-11-27 22:04:43 +0000 UTC",'
        '"CreatedSince":"11 minutes ago","Digest":"\\u003cnone\\u003e","ID":"99d1e96d5575",'
        '"Repository":"me/b1server","SharedSize":"N/A","Size":"1.99MB","Tag":"latest",'
        '"UniqueSize":"N/A","VirtualSize":"1.986MB"}'
    )
    in_transcript("extra/extra-transcript.txt", line + "\n")


def test_json_of_a_ps_row() -> None:
    line = render("{{json .}}", CONTAINER_ROW)
    assert line == (
        '{"Command":"\\"sleep 3600\\"","CreatedAt":"2026-11-27 22:16:30 +0000 UTC",'
        '"ID":"a151e2281228","Image":"busybox","Labels":"","LocalVolumes":"0","Mounts":"",'
        '"Names":"b2","Networks":"bridge","Ports":"","RunningFor":"Less than a second ago",'
        '"Size":"0B (virtual 1.99MB)","State":"running","Status":"Up Less than a second"}'
    )
    in_transcript("extra/extra-transcript.txt", line + "\n")


def images(*rows: tuple[str, str, str, str]) -> list[dict[str, str]]:
    return [
        {**IMAGE_ROW, "Repository": repo, "Tag": tag, "ID": image_id, "CreatedSince": since}
        for repo, tag, image_id, since in rows
    ]


TRANSCRIPT_IMAGES = images(
    ("me/b1server", "latest", "99d1e96d5575", "Less than a second ago"),
    ("me/b1server", "v0.2", "99d1e96d5575", "Less than a second ago"),
    ("busybox", "latest", "c2a058c70a6a", "2 seconds ago"),
)
DEFAULT_IMAGES = "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}"


def test_table_format_is_the_images_table() -> None:
    out = format_rows(DEFAULT_IMAGES, TRANSCRIPT_IMAGES, IMAGE_HEADERS)
    assert out == (
        "REPOSITORY    TAG       IMAGE ID       CREATED                  SIZE\n"
        "me/b1server   latest    99d1e96d5575   Less than a second ago   1.99MB\n"
        "me/b1server   v0.2      99d1e96d5575   Less than a second ago   1.99MB\n"
        "busybox       latest    c2a058c70a6a   2 seconds ago            1.99MB\n"
    )
    in_transcript("cli-transcript.txt", out)


def test_digests_table_and_the_empty_table() -> None:
    digests = DEFAULT_IMAGES.replace("{{.Tag}}\\t", "{{.Tag}}\\t{{.Digest}}\\t")
    out = format_rows(digests, TRANSCRIPT_IMAGES, IMAGE_HEADERS)
    assert out.splitlines()[0] == (
        "REPOSITORY    TAG       DIGEST    IMAGE ID       CREATED                  SIZE"
    )
    in_transcript("cli-transcript.txt", out)
    empty = format_rows(DEFAULT_IMAGES, [], IMAGE_HEADERS)
    assert empty == "REPOSITORY   TAG       IMAGE ID   CREATED   SIZE\n"
    in_transcript("cli-load-transcript.txt", empty)


def test_format_rows_without_table() -> None:
    out = format_rows("{{.Repository}}:{{.Tag}}", TRANSCRIPT_IMAGES, IMAGE_HEADERS)
    assert out == "me/b1server:latest\nme/b1server:v0.2\nbusybox:latest\n"
    assert format_rows("{{json .}}", [IMAGE_ROW], {}).count("\\u003cnone\\u003e") == 1


def test_format_rows_raises_before_printing_anything() -> None:
    with pytest.raises(TemplateError, match="map has no entry"):
        format_rows("table {{.Repository}}\\t{{.Nope}}", TRANSCRIPT_IMAGES, IMAGE_HEADERS)


# docker context ls, through docker 28's formatter (header map without "Current")
CONTEXT_HEADERS = {
    "Name": "NAME", "Description": "DESCRIPTION", "DockerEndpoint": "DOCKER ENDPOINT",
    "Error": "ERROR",
}
CONTEXT_ROW = {
    "Current": True, "Description": "Current DOCKER_HOST based configuration",
    "DockerEndpoint": "unix:///var/run/docker.sock", "Error": "", "Name": "default",
}


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (
            "table {{.Name}}\\t{{.Description}}\\t{{.DockerEndpoint}}",
            "NAME      DESCRIPTION                               DOCKER ENDPOINT\n"
            "default   Current DOCKER_HOST based configuration   unix:///var/run/docker.sock\n",
        ),
        (  # header functions leave names alone; pad is not one of them
            'table {{.Name}}:{{pad .Name 1 1}}\\t{{split .Name "a"}}\\t'
            '{{join (split .Name "a") "-"}}\\t{{truncate .Name 2}}',
            "NAME: NAME          NAME        NAME      NAME\n"
            "default: default    [def ult]   def-ult   de\n",
        ),
        (  # "table" is a prefix; \\t is a backslash then a tab; no header for Current
            "tablex {{.Name}}\\t\\\\t|{{.Current}}",
            "x NAME      \\         |<no value>\n"
            "x default   \\         |true\n",
        ),
    ],
)
def test_docker_context_ls_tables(fmt: str, expected: str) -> None:
    assert format_rows(fmt, [CONTEXT_ROW], CONTEXT_HEADERS) == expected


def test_header_for() -> None:
    template = "{{.ID}}\t{{upper .Repository}}\t{{json .Tag}}\t{{lower .Size}}"
    assert header_for(template, IMAGE_HEADERS) == "IMAGE ID\tREPOSITORY\tTAG\tSIZE"
    assert header_for("{{.Nope}}|{{title .ID}}", IMAGE_HEADERS) == "<no value>|IMAGE ID"
    # as docker: an error ends the header where it happened
    assert header_for("{{.ID}} {{.ID.X}} {{.Tag}}", IMAGE_HEADERS) == "IMAGE ID "


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("table {{.ID}}\\t{{.Repository}}", (True, "{{.ID}}\t{{.Repository}}")),
        ("table", (True, "")),
        ("tablefoo", (True, "foo")),
        ("  {{.ID}}\\n  ", (False, "{{.ID}}\n")),
        ("{{.ID}}\\t{{.Tag}}", (False, "{{.ID}}\t{{.Tag}}")),
        ("json", (False, "json")),
        ("", (False, "")),
    ],
)
def test_is_table(fmt: str, expected: tuple[bool, str]) -> None:
    assert is_table(fmt) == expected


# --- the language ----------------------------------------------------------------

INSPECT = {
    "Id": "sha256:99d1e96d5575",
    "RepoTags": ["me/b1server:v0.2", "me/b1server:latest"],
    "RepoDigests": [],
    "Config": {
        "Cmd": ["/bin/httpd", "-f", "-h", "/data/www/html"],
        "Entrypoint": None,
        "Env": ["PATH=/usr/bin"],
        "Labels": {"org.example.b": "2", "a": "1"},
        "ExposedPorts": {"80/tcp": {}},
        "Volumes": {},
    },
    "Size": 1985574,
    "Ratio": 0.5,
    "Big": 1e21,
    "Comment": "",
    "Tty": False,
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.Id}}", "sha256:99d1e96d5575"),
        ("{{.Config.Cmd}}", "[/bin/httpd -f -h /data/www/html]"),
        ("{{.Config.Entrypoint}}", "<nil>"),
        ("{{.RepoDigests}} {{.Config.Volumes}}", "[] map[]"),
        ("{{.Config.Labels}}", "map[a:1 org.example.b:2]"),
        ("{{.Config.ExposedPorts}}", "map[80/tcp:map[]]"),
        ("{{.Size}} {{.Ratio}} {{.Big}} {{.Tty}}", "1985574 0.5 1e+21 false"),
        ("{{.}}", "map[Big:1e+21 Comment: Config:map[Cmd:[/bin/httpd -f -h /data/www/html] "
                  "Entrypoint:<nil> Env:[PATH=/usr/bin] ExposedPorts:map[80/tcp:map[]] "
                  "Labels:map[a:1 org.example.b:2] Volumes:map[]] Id:sha256:99d1e96d5575 "
                  "Ratio:0.5 RepoDigests:[] RepoTags:[me/b1server:v0.2 me/b1server:latest] "
                  "Size:1985574 Tty:false]"),
        ("{{json .Config.Cmd}}", '["/bin/httpd","-f","-h","/data/www/html"]'),
        ("{{json .Config}}", '{"Cmd":["/bin/httpd","-f","-h","/data/www/html"],'
                             '"Entrypoint":null,"Env":["PATH=/usr/bin"],'
                             '"Labels":{"org.example.b":"2","a":"1"},'
                             '"ExposedPorts":{"80/tcp":{}},"Volumes":{}}'),
        ('{{index .Config.Labels "org.example.b"}}', "2"),
        ('[{{index .Config.Labels "nope"}}]', "[]"),  # a string map gives ""
        ("{{index .RepoTags 1}}", "me/b1server:latest"),
        ('{{index .Config "Cmd" 0}}', "/bin/httpd"),
        ("{{range .RepoTags}}{{.}} {{end}}", "me/b1server:v0.2 me/b1server:latest "),
        ("{{range $i, $t := .RepoTags}}{{$i}}={{$t}};{{end}}",
         "0=me/b1server:v0.2;1=me/b1server:latest;"),
        ("{{range $t := .RepoTags}}{{$t}};{{end}}", "me/b1server:v0.2;me/b1server:latest;"),
        ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}", "a=1,org.example.b=2,"),
        ("{{range .Config.Labels}}{{.}}{{end}}", "12"),
        ("{{range .RepoDigests}}x{{else}}none{{end}}", "none"),
        ("{{range .Config.Entrypoint}}x{{else}}nil{{end}}", "nil"),
        ("{{range $i, $e := .RepoTags}}{{if $i}}, {{end}}{{$e}}{{end}}",
         "me/b1server:v0.2, me/b1server:latest"),
        ("{{range $i := 3}}{{$i}}{{end}}", "012"),
        ("{{range .RepoTags}}{{$.Size}}{{end}}", "19855741985574"),
        ("{{if .Comment}}c{{else if .Tty}}t{{else}}neither{{end}}", "neither"),
        ("{{if and .Size (not .Tty)}}yes{{end}}", "yes"),
        ("{{if or .Comment .RepoDigests}}yes{{else}}no{{end}}", "no"),
        ("{{with .Config}}{{.Env}}{{end}}", "[PATH=/usr/bin]"),
        ("{{with .Comment}}x{{else}}empty{{end}}", "empty"),
        ("{{with .Comment}}x{{else with .RepoTags}}{{len .}}{{end}}", "2"),
        ("{{$n := len .RepoTags}}{{$n}} {{$n = 5}}{{$n}}", "2 5"),
        ("{{if true}}{{$x := 1}}{{$x}}{{end}}", "1"),
        ("{{.Id | printf \"%.10s\"}}", "sha256:99d"),
        ('{{join .RepoTags ", "}}', "me/b1server:v0.2, me/b1server:latest"),
        ('{{join .Config.Cmd " " | upper}}', "/BIN/HTTPD -F -H /DATA/WWW/HTML"),
        ('{{range (split (index .RepoTags 0) ":")}}<{{.}}>{{end}}', "<me/b1server><v0.2>"),
        ("{{(index .RepoTags 0) | len}}", "16"),
        ('{{(index .Config "Labels").a}}', "1"),
        ("{{.Config.Labels.a}}", "1"),
        ("{{lower .Id | title}}", "Sha256:99d1e96d5575"),
        ("{{eq .Size 1985574}} {{ne .Comment \"\"}} {{gt .Size 1000}} {{le .Ratio 0.5}}",
         "true false true true"),
        ('{{eq "b" "a" "b"}} {{lt "a" "b"}} {{ge 2 3}}', "true true false"),
        ("{{len .Config.Labels}} {{len .Id}} {{len .Config.Entrypoint}}", "2 19 0"),
        ("{{slice .RepoTags 1}} {{slice .Id 0 6}}", "[me/b1server:latest] sha256"),
        ("{{slice .RepoTags 0 1 2}} {{slice .Id 7}} {{slice .RepoTags}}",
         "[me/b1server:v0.2] 99d1e96d5575 [me/b1server:v0.2 me/b1server:latest]"),
        ('{{html "<a href=\'x\'>&</a>"}}', "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"),
        ('{{js "it\'s <b>=\\n"}}', "it\\'s \\u003Cb\\u003E\\u003D\\u000A"),
        ('{{urlquery "a b&c=d/é"}}', "a+b%26c%3Dd%2F%C3%A9"),
    ],
)
def test_templates(template: str, expected: str) -> None:
    assert render(template, INSPECT) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("a  {{- 1 -}}  b", "a1b"),
        ("a \n\t {{- 1}} b", "a1 b"),
        ("a {{1 -}} \n\t b", "a 1b"),
        ("{{/* a comment */}}x", "x"),
        ("a {{- /* trimmed */ -}} b", "ab"),
        ("{{- 3}}", "3"),
        ("{{-3}}", "-3"),  # no space: a negative number
        ("{{.Id -}}\n", "sha256:99d1e96d5575"),
        ("{{range .RepoTags -}}\n  {{.}}\n{{- end}}", "me/b1server:v0.2me/b1server:latest"),
        ("{{if\n.Tty\n}}x{{else}}y{{end}}", "y"),  # newlines inside actions
    ],
)
def test_trim_markers_and_comments(template: str, expected: str) -> None:
    assert render(template, INSPECT) == expected


def test_define_template_and_block() -> None:
    assert render('{{define "t"}}<{{.}}>{{end}}{{template "t" .Size}}', INSPECT) == "<1985574>"
    assert render('{{block "b" .Tty}}[{{.}}]{{end}}', INSPECT) == "[false]"
    assert render('{{define "t"}}{{range .}}{{.}};{{end}}{{end}}{{template "t" .RepoTags}}',
                  INSPECT) == "me/b1server:v0.2;me/b1server:latest;"


def test_break_and_continue() -> None:
    data = {"L": ["a", "b", "c"]}
    assert render('{{range .L}}{{if eq . "b"}}{{continue}}{{end}}{{.}}{{end}}', data) == "ac"
    assert render('{{range .L}}{{if eq . "b"}}{{break}}{{end}}{{.}}{{end}}', data) == "a"


def test_a_template_is_reusable() -> None:
    template = Template("{{.Repository}}:{{.Tag}}")
    assert [template.execute(row) for row in TRANSCRIPT_IMAGES] == [
        "me/b1server:latest", "me/b1server:v0.2", "busybox:latest",
    ]


# --- Go's fmt ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{printf "%d %s %v %q %x %5.2f|%-5s|%05d %t %c %U %e %g %08.3f %+d %X %o %b" 3 "s" '
         '1.5 "q\\"" "hi" 3.14159 "ab" 42 true 97 97 1234.5678 0.000012345 3.14159 5 255 8 5}}',
         '3 s 1.5 "q\\"" 6869  3.14|ab   |00042 true a U+0061 1.234568e+03 1.2345e-05 '
         "0003.142 +5 FF 10 101"),
        ('{{printf "%d" "x"}}|{{printf "%s" 5}}|{{printf "%d"}}|{{printf "%d" 1 2}}|'
         '{{printf "%s" nil}}|{{printf "%v" nil}}|{{printf "%!"}}|{{printf "%z" 3}}',
         "%!d(string=x)|%!s(int=5)|%!d(MISSING)|1%!(EXTRA int=2)|%!s(<nil>)|<nil>|"
         "%!!(MISSING)|%!z(int=3)"),
        ('{{print 1 2 "a" "b" 3 true nil}}|{{println 1 "a" 2}}|', "1 2ab3 true <nil>|1 a 2\n|"),
        ('{{split "a,b,c" ","}}|{{printf "%q" (split "a,b" ",")}}|{{len "…"}}|{{index "abc" 1}}'
         '|{{slice "abcdef" 1 3}}', '[a b c]|["a" "b"]|3|98|bc'),
        ('{{title "hello wORLD foo-bar"}}|{{pad "x" 2 3}}|{{truncate "abcdef" 3}}|{{upper "é"}}'
         '|{{join (split "a b" " ") ", "}}', "Hello WORLD Foo-Bar|  x   |abc|É|a, b"),
        ("{{print 1e21 1e20 0.000012 1.5e-7 100.0 -0.0 12345678.9 1e6 999999.0}}",
         "1e+21 1e+20 1.2e-05 1.5e-07 100 -0 1.23456789e+07 1e+06 999999"),
        ('{{"\\x41\\u00e9\\n" | printf "%q"}} {{`raw\\n`}} {{\'a\'}} {{0x1F}} {{1_000}} {{0o17}}'
         " {{0b101}} {{-5}} {{+5}} {{1e3}} {{.5}} {{1.}} {{017}}",
         '"Aé\\n" raw\\n 97 31 1000 15 5 -5 5 1000 0.5 1 15'),
        ('{{printf "%5s|%-5s|%05s|%.1q|%x|%X|% X|%#x" "ab" "ab" "ab" "abc" "hi" "hi" "hi" "hi"}}',
         "   ab|ab   |000ab|\"a\"|6869|6869|68 69|0x6869"),
        ('{{printf "%08.3f|%+.2e|%x|%#x|%#o|%b|%o|%O|%c|%q|%U|%#U|% d|%+d|%05d|%-5d|%.3d" '
         "-3.14159 1234.5 255 255 8 5 8 8 0x1F600 0x1F600 0x1F600 0x1F600 5 5 -42 3 7}}",
         "-003.142|+1.23e+03|ff|0xff|010|101|10|0o10|😀|'😀'|U+1F600|U+1F600 '😀'| 5|+5|-0042|"
         "3    |007"),
        ('{{printf "%v %v %v %.3v %10.4v|%-10v|" 1e-5 123456789.0 0.000123 3.14159 3.14159 1.5}}',
         "1e-05 1.23456789e+08 0.000123 3.14      3.142|1.5       |"),
        ('{{printf "%6.2f|%e|%E|%G|%g" 3.14159 0.0 1e100 1e-10 100000.0}}',
         "  3.14|0.000000e+00|1.000000E+100|1E-10|100000"),
        ('{{printf "%t %v" true false}}{{printf "%d" true}}{{printf "%s" 1.5}}',
         "true false%!d(bool=true)%!s(float64=1.5)"),
        ('{{printf "%v|%s|%d" (split "a,b" ",") (split "x" ",") 3}}', "[a b]|[x]|3"),
        ('{{printf "%s %d" (split "a,b" ",") (split "a" ",")}}', "[a b] [%!d(string=a)]"),
        ('{{printf "%T|%6.2v|%q|%5t|%-8q|%#v|%+q|%x|% x|%*d|%.2s|%.0f|%s" 1 3.14159 65 true "a" '
         '"a" "é" "é" "ab" 5 3 "abcdef" 2.5 true}}',
         "int|   3.1|'A'| true|\"a\"     |\"a\"|\"\\u00e9\"|c3a9|61 62|    3|ab|2|%!s(bool=true)"),
        ('{{printf "%d%%" 50}}', "50%"),
        ('{{printf "%v %d %s" .L .L .M}}', "[1 <nil> x] [1 %!d(<nil>) %!d(string=x)] map[k:v]"),
        ('{{printf "%T %T %T %T" .L .M .F nil}}', "[]interface {} map[string]interface {} "
                                                 "float64 <nil>"),
        ('{{printf "%#v" .L}}', '[]interface {}{1, interface {}(nil), "x"}'),
        ('{{printf "%5.1f|%-6d|%x" .F 7 -255}}', "  2.5|7     |-ff"),
    ],
)
def test_go_fmt(template: str, expected: str) -> None:
    assert render(template, {"L": [1, None, "x"], "M": {"k": "v"}, "F": 2.5}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "<nil>"),
        (NO_VALUE, "<no value>"),
        (True, "true"),
        (0, "0"),
        (-12, "-12"),
        (1.0, "1"),
        (0.1, "0.1"),
        (1e6, "1e+06"),
        (123456.0, "123456"),
        (1e-4, "0.0001"),
        (1e-5, "1e-05"),
        (1.5e300, "1.5e+300"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
        ("", ""),
        ([], "[]"),
        ({}, "map[]"),
        ([[1, 2], [], ["a b"]], "[[1 2] [] [a b]]"),
        ({"b": None, "a": [True], "c": {"z": 1}}, "map[a:[true] b:<nil> c:map[z:1]]"),
    ],
)
def test_go_sprint(value: object, expected: str) -> None:
    assert go_sprint(value) == expected


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_printed_floats_read_back(value: float) -> None:
    assert float(go_sprint(value)) == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abc", '"abc"'),
        ('say "hi"\\', '"say \\"hi\\"\\\\"'),
        ("tab\tnl\nbell\a\x00\x7f", '"tab\\tnl\\nbell\\a\\x00\\x7f"'),
        ("é…日", '"é…日"'),
        ("\u200b\U000e0001", '"\\u200b\\U000e0001"'),
    ],
)
def test_go_quote(text: str, expected: str) -> None:
    assert go_quote(text) == expected


@given(st.text())
def test_quoted_strings_parse_back(text: str) -> None:
    assert render("{{" + go_quote(text) + "}}", None) == text
    assert render('{{printf "%q" .}}', text) == go_quote(text)


# --- json ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<none>", '"\\u003cnone\\u003e"'),
        ("a&b", '"a\\u0026b"'),
        ("\x01\b\f\n\r\t\"\\ é\u2028\u2029", '"\\u0001\\b\\f\\n\\r\\t\\"\\\\ é\\u2028\\u2029"'),
        ("\ud800", '"\\ufffd"'),
        (1.0, "1"),
        (-0.0, "-0"),
        (0.1, "0.1"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (1e-6, "0.000001"),
        (123456789012345678.0, "123456789012345680"),
        (1.5e300, "1.5e+300"),
        (2**64, "18446744073709551616"),
        (None, "null"),
        ([], "[]"),
        ({}, "{}"),
        ({"b": [1, "x"], "a": {"c": None}}, '{"b":[1,"x"],"a":{"c":null}}'),  # dict order kept
        ((True, False), "[true,false]"),
        ({1: "x"}, '{"1":"x"}'),
    ],
)
def test_json_encode(value: object, expected: str) -> None:
    assert json_encode(value) == expected


def test_json_without_html_escaping() -> None:
    assert json_encode("<a>&", escape_html=False) == '"<a>&"'
    assert render("{{json .}}", {"D": "<none>"}, escape_html=False) == '{"D":"<none>"}'


def test_json_refuses_what_go_refuses() -> None:
    with pytest.raises(ValueError, match="unsupported value: NaN"):
        json_encode(math.nan)
    with pytest.raises(ValueError, match="unsupported type: set"):
        json_encode({1, 2})
    assert error_of("{{json .}}", math.inf).endswith(
        'at <json .>: error calling json: json: unsupported value: +Inf'
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_json_floats_read_back(value: float) -> None:
    # Go pads the shortest digits with zeros ("38194184259626730"), so the
    # text may read back as an int; as a float it is the same number.
    assert float(json_encode(value)) == value


@given(json_values)
def test_json_reads_back(value: object) -> None:
    assert json.loads(json_encode(value)) == value
    assert json.loads(render("{{json .}}", value)) == value


# --- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "detail"),
    [
        ("{{nofunc}}", 'template: :1: function "nofunc" not defined'),
        ("{{.Client", "template: :1: unclosed action"),
        ("{{end}}", "template: :1: unexpected {{end}}"),
        ("{{else}}", "template: :1: unexpected {{else}}"),
        ("{{if 1}}", "template: :1: unexpected EOF"),
        ("{{| upper}}", 'template: :1: unexpected "|" in command'),
        ('{{"abc}}', "template: :1: unterminated quoted string"),
        ("{{(.Name}}", "template: :1: unclosed left paren"),
        ("{{.Name)}}", "template: :1: unexpected right paren"),
        ("{{range}}{{end}}", "template: :1: missing value for range"),
        ("{{if}}{{end}}", "template: :1: missing value for if"),
        ("{{ 3x }}", 'template: :1: bad number syntax: "3x"'),
        ("{{-.Name}}", 'template: :1: bad number syntax: "-.N"'),
        ("{{.Name}}{{end", "template: :1: unclosed action"),
        ("{{break}}", "template: :1: {{break}} outside {{range}}"),
        ("{{#}}", 'template: :1: unexpected "#" in command'),
        ("{{.Name | | upper}}", 'template: :1: unexpected "|" in command'),
        ('{{.Name | "x"}}', "template: :1: non executable command in pipeline stage 2"),
        ("{{$x, $y := 1}}", "template: :1: too many declarations in command"),
        ("{{range $x, $y, $z := 1}}{{end}}", "template: :1: too many declarations in range"),
        ('{{"a".Foo}}', 'template: :1: unexpected . after term "\\"a\\""'),
        ("{{if .Name}}a{{else}}b{{else}}c{{end}}", "template: :1: expected end; found {{else}}"),
        ("{{with $x := .Name}}{{$x}}{{end}}{{$x}}", 'template: :1: undefined variable "$x"'),
        ("{{$x}}", 'template: :1: undefined variable "$x"'),
        ("a\nb\n{{.X", "template: :3: unclosed action"),
        ("{{/* open", "template: :1: unclosed comment"),
        ("{{/* c */ x}}", "template: :1: comment ends before closing delimiter"),
        ("{{.A.B!}}", "template: :1: bad character U+0021 '!'"),
        ("{{define \"x\"}}{{else}}{{end}}", "template: :1: unexpected {{else}} in define clause"),
        ('{{"\\q"}}', "template: :1: invalid syntax"),
    ],
)
def test_parse_errors(template: str, detail: str) -> None:
    with pytest.raises(TemplateError) as caught:
        Template(template)
    assert caught.value.detail == detail
    assert str(caught.value) == "template parsing error: " + detail
    assert isinstance(caught.value, InvalidArgument)


@pytest.mark.parametrize(
    ("template", "detail"),
    [
        ("{{.Nope}}", 'template: :1:2: executing "" at <.Nope>: map has no entry for key "Nope"'),
        ("{{.Config.Nope}}",
         'template: :1:9: executing "" at <.Config.Nope>: map has no entry for key "Nope"'),
        ("{{.Id.Foo}}",
         'template: :1:5: executing "" at <.Id.Foo>: can\'t evaluate field Foo in type string'),
        ("{{(.Id).Foo}}",
         'template: :1:3: executing "" at <.Id>: can\'t evaluate field Foo in type string'),
        ("{{.Config.Entrypoint.X}}",
         'template: :1:9: executing "" at <.Config.Entrypoint.X>: '
         "nil pointer evaluating interface {}.X"),
        ("a\n{{- .Nope}}",
         'template: :2:4: executing "" at <.Nope>: map has no entry for key "Nope"'),
        ("é{{.Nope}}",
         'template: :1:4: executing "" at <.Nope>: map has no entry for key "Nope"'),
        ("{{.Id 1}}",
         'template: :1:2: executing "" at <.Id>: Id is not a method but has arguments'),
        ('{{index (split "a,b" ",") 5}}',
         'template: :1:2: executing "" at <index (split "a,b" ",") 5>: '
         "error calling index: index out of range: 5"),
        ("{{eq 1 1.0}}",
         'template: :1:2: executing "" at <eq 1 1.0>: '
         "error calling eq: incompatible types for comparison"),
        ('{{eq "a" 1}}',
         'template: :1:2: executing "" at <eq "a" 1>: '
         "error calling eq: incompatible types for comparison"),
        ("{{upper 1}}", 'template: :1:8: executing "" at <1>: expected string; found 1'),
        ("{{upper .Size}}",
         'template: :1:8: executing "" at <.Size>: wrong type for value; expected string; got int'),
        ("{{.Size | lower}}",
         'template: :1:10: executing "" at <lower>: wrong type for value; expected string; '
         "got int"),
        ("{{nil}}", 'template: :1:2: executing "" at <nil>: nil is not a command'),
        ("{{len 3}}",
         'template: :1:2: executing "" at <len 3>: error calling len: len of type int'),
        ("{{range .Id}}x{{end}}",
         'template: :1:8: executing "" at <.Id>: range can\'t iterate over sha256:99d1e96d5575'),
        ("{{range $i, $e := 3}}{{.}}{{end}}",
         'template: :1:18: executing "" at <3>: can\'t use 3 to iterate over more than one '
         "variable"),
        ('{{template "x"}}',
         'template: :1:11: executing "" at <{{template "x"}}>: template "x" not defined'),
        ('{{define "t"}}{{.Nope}}{{end}}{{template "t" .}}',
         'template: :1:16: executing "t" at <.Nope>: map has no entry for key "Nope"'),
        ("{{upper}}", 'template: :1:2: executing "" at <upper>: wrong number of args for upper: '
                      "want 1 got 0"),
        ("{{printf}}", 'template: :1:2: executing "" at <printf>: wrong number of args for '
                       "printf: want at least 1 got 0"),
        ('{{"a" 1}}', 'template: :1:2: executing "" at <"a">: can\'t give argument to '
                      'non-function "a"'),
        ("{{lt .RepoTags 1}}", 'template: :1:2: executing "" at <lt .RepoTags 1>: '
                               "error calling lt: invalid type for comparison"),
        ("{{index .Id 1.5}}", 'template: :1:2: executing "" at <index .Id 1.5>: '
                              "error calling index: cannot index slice/array with type float64"),
        ('{{index .Size "a"}}', 'template: :1:2: executing "" at <index .Size "a">: '
                                "error calling index: can't index item of type int"),
        ("{{join .Id \",\"}}", 'template: :1:2: executing "" at <join .Id ",">: '
                               "error calling join: expected slice, got string"),
    ],
)
def test_execution_errors(template: str, detail: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(template, INSPECT)
    assert caught.value.detail == detail
    assert str(caught.value).startswith("template parsing error: template: ")


def test_missingkey_option() -> None:
    assert render("{{.Nope}}", {}, missingkey="default") == "<no value>"
    assert render("{{.A.B}}", {}, missingkey="default") == "<no value>"
    assert render("{{.Nope}}", {}, missingkey="zero") == "<nil>"
    assert render("{{if .Nope}}y{{else}}n{{end}}", {}, missingkey="default") == "n"
    assert render("{{$x := .A}}{{$x.B}}", {}, missingkey="default") == "<no value>"
    with pytest.raises(ValueError):
        render("x", {}, missingkey="bogus")
    assert "nil data; no entry for key" in error_of("{{template \"t\"}}{{define \"t\"}}{{.A}}"
                                                    "{{end}}", {})


def test_render_caches_and_handles_many_templates() -> None:
    for n in range(200):
        assert render("{{.}}-" + str(n), n) == f"{n}-{n}"
