"""Image references: Docker's normalisation, familiar forms and error texts.

Cases come from distribution/reference (normalize_test.go, reference_test.go)
and from what the docker CLI prints.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.errors import InvalidReference
from dockyard.reference import (
    Reference,
    go_quote,
    is_full_id,
    is_valid_tag,
    parse_docker_ref,
    parse_normalized,
    parse_with_default_tag,
    tag_error,
)

HEX = "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"
SHA256 = f"sha256:{HEX}"
SHA512 = "sha512:" + "ab" * 64


# input -> (domain, path, tag, digest, full string, familiar string)
Normalised = tuple[str, str, str | None, str | None, str, str]
NORMALISED: list[tuple[str, Normalised]] = [
    ("busybox", ("docker.io", "library/busybox", None, None,
                 "docker.io/library/busybox", "busybox")),
    ("busybox:1", ("docker.io", "library/busybox", "1", None,
                   "docker.io/library/busybox:1", "busybox:1")),
    ("library/busybox", ("docker.io", "library/busybox", None, None,
                         "docker.io/library/busybox", "busybox")),
    ("docker.io/busybox", ("docker.io", "library/busybox", None, None,
                           "docker.io/library/busybox", "busybox")),
    ("docker.io/library/busybox:latest", ("docker.io", "library/busybox", "latest", None,
                                          "docker.io/library/busybox:latest", "busybox:latest")),
    ("index.docker.io/library/busybox", ("docker.io", "library/busybox", None, None,
                                         "docker.io/library/busybox", "busybox")),
    ("index.docker.io/busybox", ("docker.io", "library/busybox", None, None,
                                 "docker.io/library/busybox", "busybox")),
    ("index.docker.io/me/x", ("docker.io", "me/x", None, None, "docker.io/me/x", "me/x")),
    ("me/b1server", ("docker.io", "me/b1server", None, None,
                     "docker.io/me/b1server", "me/b1server")),
    (f"me/b1server@{SHA256}", ("docker.io", "me/b1server", None, SHA256,
                               f"docker.io/me/b1server@{SHA256}", f"me/b1server@{SHA256}")),
    (f"busybox:1.36@{SHA256}", ("docker.io", "library/busybox", "1.36", SHA256,
                                f"docker.io/library/busybox:1.36@{SHA256}",
                                f"busybox:1.36@{SHA256}")),
    # library/ is dropped only when exactly one component follows it
    ("docker.io/library/foo/bar", ("docker.io", "library/foo/bar", None, None,
                                   "docker.io/library/foo/bar", "library/foo/bar")),
    ("localhost/foo", ("localhost", "foo", None, None, "localhost/foo", "localhost/foo")),
    ("localhost:5000/foo:bar", ("localhost:5000", "foo", "bar", None,
                                "localhost:5000/foo:bar", "localhost:5000/foo:bar")),
    (f"127.0.0.1:5000/a/b@{SHA256}", ("127.0.0.1:5000", "a/b", None, SHA256,
                                      f"127.0.0.1:5000/a/b@{SHA256}",
                                      f"127.0.0.1:5000/a/b@{SHA256}")),
    ("quay.io/x/y:tag", ("quay.io", "x/y", "tag", None, "quay.io/x/y:tag", "quay.io/x/y:tag")),
    ("quay.io/x", ("quay.io", "x", None, None, "quay.io/x", "quay.io/x")),
    ("[fc00::1]:5000/docker/docker", ("[fc00::1]:5000", "docker/docker", None, None,
                                      "[fc00::1]:5000/docker/docker",
                                      "[fc00::1]:5000/docker/docker")),
    ("test-com:8080/foo", ("test-com:8080", "foo", None, None,
                           "test-com:8080/foo", "test-com:8080/foo")),
    ("xn--n3h.com/foo", ("xn--n3h.com", "foo", None, None, "xn--n3h.com/foo", "xn--n3h.com/foo")),
    # separators: one '.', one or two '_', any number of '-'
    ("dock__er/docker", ("docker.io", "dock__er/docker", None, None,
                         "docker.io/dock__er/docker", "dock__er/docker")),
    ("docker---rules/do-c.k_er", ("docker.io", "docker---rules/do-c.k_er", None, None,
                                  "docker.io/docker---rules/do-c.k_er",
                                  "docker---rules/do-c.k_er")),
    ("a--b", ("docker.io", "library/a--b", None, None, "docker.io/library/a--b", "a--b")),
    ("test_com/foo", ("docker.io", "test_com/foo", None, None,
                      "docker.io/test_com/foo", "test_com/foo")),
    # an uppercase domain is allowed; so is an uppercase first component (it is a domain)
    ("Quay.IO/x/y:T", ("Quay.IO", "x/y", "T", None, "Quay.IO/x/y:T", "Quay.IO/x/y:T")),
    ("Docker/docker", ("Docker", "docker", None, None, "Docker/docker", "Docker/docker")),
    ("Docker.io/foo", ("Docker.io", "foo", None, None, "Docker.io/foo", "Docker.io/foo")),
    # quirks: a bare "localhost" or IP is a docker.io name, ":port" becomes a tag
    ("localhost", ("docker.io", "library/localhost", None, None,
                   "docker.io/library/localhost", "localhost")),
    ("localhost:5000", ("docker.io", "library/localhost", "5000", None,
                        "docker.io/library/localhost:5000", "localhost:5000")),
    ("192.168.0.1:80", ("docker.io", "library/192.168.0.1", "80", None,
                        "docker.io/library/192.168.0.1:80", "192.168.0.1:80")),
    # quirk: a dotted first component that is no valid host but a valid path -> no domain
    ("a_b.com/x", ("", "a_b.com/x", None, None, "a_b.com/x", "a_b.com/x")),
    # a 64-hex name is refused only bare, not with a domain or tag
    (f"docker.io/{HEX}", ("docker.io", f"library/{HEX}", None, None,
                          f"docker.io/library/{HEX}", HEX)),
    (f"{HEX}:v1", ("docker.io", f"library/{HEX}", "v1", None,
                   f"docker.io/library/{HEX}:v1", f"{HEX}:v1")),
    (f"x@{SHA512}", ("docker.io", "library/x", None, SHA512,
                     f"docker.io/library/x@{SHA512}", f"x@{SHA512}")),
    ("x:" + "T" * 128, ("docker.io", "library/x", "T" * 128, None,
                        "docker.io/library/x:" + "T" * 128, "x:" + "T" * 128)),
    ("x.com/" + "a" * 255, ("x.com", "a" * 255, None, None,
                            "x.com/" + "a" * 255, "x.com/" + "a" * 255)),
]  # fmt: skip


@pytest.mark.parametrize(("text", "want"), NORMALISED, ids=[c[0][:40] for c in NORMALISED])
def test_parse_normalized(text: str, want: Normalised) -> None:
    domain, path, tag, digest, full, familiar = want
    ref = parse_normalized(text)
    assert ref == Reference(domain, path, tag, digest)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert ref.name == (f"{domain}/{path}" if domain else path)
    assert parse_normalized(str(ref)) == ref
    if not is_full_id(familiar):  # see test_familiar_hex_name_does_not_parse
        assert parse_normalized(familiar) == ref


@pytest.mark.parametrize(
    ("text", "familiar_name"),
    [
        ("busybox:1", "busybox"),
        ("docker.io/library/busybox", "busybox"),
        ("me/b1server:x", "me/b1server"),
        ("docker.io/library/a/b", "library/a/b"),
        ("127.0.0.1:5000/x/y", "127.0.0.1:5000/x/y"),
        ("localhost/library/x", "localhost/library/x"),
        ("quay.io/library/x", "quay.io/library/x"),
    ],
)
def test_familiar_name(text: str, familiar_name: str) -> None:
    assert parse_normalized(text).familiar_name == familiar_name


LOWER = "invalid reference format: repository name must be lowercase{}"
ERRORS = [
    # uppercase in the path: Docker 20.10's text (25+ also names the remote)
    ("Bad_Name:tag", LOWER.format("")),
    ("docker/Docker", LOWER.format("")),
    ("docker.io/docker/Docker", LOWER.format("")),
    ("ghcr.io/Me/app:1", LOWER.format("")),
    ("localhost:5000/Foo", LOWER.format("")),
    # Docker's "remote" runs to the first ':', so an uppercase algorithm is "the name"
    (f"foo@SHA256:{HEX}", LOWER.format("")),
    # the lowercased string would parse: Parse's own, unprefixed text
    ("Foo_Bar/baz", "repository name must be lowercase"),
    ("ok/name:bad tag", "invalid reference format"),
    ("", "invalid reference format"),
    ("foo:", "invalid reference format"),
    ("foo@", "invalid reference format"),
    ("https://github.com/docker/docker", "invalid reference format"),
    ("-docker", "invalid reference format"),
    ("docker-/docker", "invalid reference format"),
    ("docker///docker", "invalid reference format"),
    ("docker/", "invalid reference format"),
    ("____/____", "invalid reference format"),
    ("dock..er/docker", "invalid reference format"),
    ("dock_.er/docker", "invalid reference format"),
    ("dock___er/docker", "invalid reference format"),
    ("[fc00::1]:5000", "invalid reference format"),
    ("fc00::1:5000/debian", "invalid reference format"),
    ("[fe80::1%eth0]:5000/debian", "invalid reference format"),
    ("my_registry:5000/foo", "invalid reference format"),
    ("x:-tag", "invalid reference format"),
    ("x:" + "a" * 129, "invalid reference format"),
    ("x:tag\n", "invalid reference format"),
    ("x@sha256:abc", "invalid reference format"),
    ("café", "invalid reference format"),
    (HEX, f"invalid repository name ({HEX}), cannot specify 64-byte hexadecimal strings"),
    ("a" * 248, "repository name must not be more than 255 characters"),
    ("x.com/" + "a" * 256, "repository name must not be more than 255 characters"),
    ("a/" * 127 + "ab", "repository name must not be more than 255 characters"),
    (f"foo@sha256:{HEX[:32]}", "invalid checksum digest length"),
    (f"foo@sha512:{HEX}", "invalid checksum digest length"),
    (f"foo@sha256:{HEX.upper()}", "invalid checksum digest format"),
    (f"foo:t@Sha256:{HEX}", "invalid checksum digest format"),
    (f"foo@md5:{HEX[:32]}", "unsupported digest algorithm"),
    (f"foo@sha256+b64:{HEX}", "unsupported digest algorithm"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=[repr(c[0][:40]) for c in ERRORS])
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_normalized(text)
    assert str(info.value) == message


def test_familiar_hex_name_does_not_parse() -> None:
    # Docker quirk: docker.io/library/<64 hex> familiarises to a bare identifier,
    # which ParseNormalizedNamed refuses; the full form still round-trips.
    ref = parse_normalized(f"docker.io/{HEX}")
    assert ref.familiar() == HEX
    with pytest.raises(InvalidReference, match="cannot specify 64-byte hexadecimal strings"):
        parse_normalized(ref.familiar())


def test_familiar_form_of_dotted_namespace_is_ambiguous() -> None:
    # Docker quirk: FamiliarString drops docker.io even when the namespace has a dot,
    # so "my.org/app" (the familiar form) names another registry.
    ref = parse_normalized("docker.io/my.org/app")
    assert ref.familiar() == "my.org/app"
    assert parse_normalized(ref.familiar()).domain == "my.org"


def test_bracketed_host_without_colon_is_not_a_domain() -> None:
    # splitDockerDomain wants '.', ':' or uppercase: "[0]" stays in the path and fails there
    with pytest.raises(InvalidReference, match=r"^invalid reference format$"):
        parse_normalized("[0]/x")
    assert parse_normalized("[::1]/x").domain == "[::1]"


def test_length_limit_is_on_the_path() -> None:
    assert parse_normalized("a" * 247).path == "library/" + "a" * 247


def test_default_tag() -> None:
    assert str(parse_with_default_tag("busybox")) == "docker.io/library/busybox:latest"
    assert parse_with_default_tag("busybox:1").tag == "1"
    digested = parse_with_default_tag(f"busybox@{SHA256}")
    assert (digested.tag, digested.digest) == (None, SHA256)
    with pytest.raises(InvalidReference, match="must be lowercase"):
        parse_with_default_tag("Busybox")


def test_parse_docker_ref() -> None:
    both = parse_docker_ref(f"busybox:latest@{SHA256}")
    assert str(both) == f"docker.io/library/busybox@{SHA256}"
    assert str(parse_docker_ref("busybox")) == "docker.io/library/busybox:latest"
    assert str(parse_docker_ref("busybox:1")) == "docker.io/library/busybox:1"


def test_with_tag_and_digest() -> None:
    ref = parse_normalized("me/x")
    tagged = ref.with_tag("v1")
    assert tagged.familiar() == "me/x:v1"
    assert tagged.repo_tag == "me/x:v1"
    both = tagged.with_digest(SHA256)
    assert both.familiar() == f"me/x:v1@{SHA256}"
    assert both.with_tag("v2").digest == SHA256
    assert both.name_only() == ref
    assert ref == parse_normalized("me/x")  # values never change


@pytest.mark.parametrize("tag", ["-foo", ".x", "", "a b", "a" * 129, "é"])
def test_with_tag_rejects(tag: str) -> None:
    with pytest.raises(InvalidReference, match=r"^invalid tag format$"):
        parse_normalized("busybox").with_tag(tag)


@pytest.mark.parametrize(
    ("digest", "message"),
    [
        ("foo", "invalid digest format"),
        ("sha256:abc", "invalid digest format"),
        (HEX, "invalid digest format"),
        (f"sha256:{HEX[:40]}", "invalid checksum digest length"),
        (f"md5:{HEX[:32]}", "unsupported digest algorithm"),
    ],
)
def test_with_digest_rejects(digest: str, message: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_normalized("busybox").with_digest(digest)
    assert str(info.value) == message


def test_repo_tag_needs_a_tag() -> None:
    assert parse_normalized("docker.io/library/busybox:1").repo_tag == "busybox:1"
    with pytest.raises(ValueError, match="no tag"):
        _ = parse_normalized("busybox").repo_tag


@pytest.mark.parametrize(
    ("tag", "ok"),
    [("latest", True), ("1.36.1", True), ("_x", True), ("V1-rc.2_b", True), ("a" * 128, True),
     ("a" * 129, False), ("-x", False), (".x", False), ("", False), ("a:b", False),
     ("a/b", False), ("ü", False), ("x\n", False)],
)  # fmt: skip
def test_is_valid_tag(tag: str, ok: bool) -> None:
    assert is_valid_tag(tag) is ok


@pytest.mark.parametrize(
    ("text", "ok"),
    [(HEX, True), (SHA256, True), (HEX.upper(), False), (HEX[:63], False), (HEX + "a", False),
     (f"sha512:{HEX}", False), (f"{HEX}\n", False), (SHA512, False)],
)  # fmt: skip
def test_is_full_id(text: str, ok: bool) -> None:
    assert is_full_id(text) is ok


def test_tag_error_line() -> None:
    with pytest.raises(InvalidReference) as info:
        parse_normalized("Bad_Name:tag")
    assert tag_error("Bad_Name:tag", info.value) == (
        'Error parsing reference: "Bad_Name:tag" is not a valid repository/tag: '
        "invalid reference format: repository name must be lowercase"
    )
    with pytest.raises(InvalidReference) as info:
        parse_normalized("ok/name:bad tag")
    assert tag_error("ok/name:bad tag", info.value) == (
        'Error parsing reference: "ok/name:bad tag" is not a valid repository/tag: '
        "invalid reference format"
    )


@pytest.mark.parametrize(
    ("text", "quoted"),
    [("abc", '"abc"'), ('a"b', r'"a\"b"'), ("a\\b", r'"a\\b"'), ("a\nb\t", r'"a\nb\t"'),
     ("\x00\x7f", r'"\x00\x7f"'), ("é ü", '"é ü"'), ("\u00a0", r'"\u00a0"'),
     ("\U000e0001", r'"\U000e0001"')],
)  # fmt: skip
def test_go_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


# --- properties -------------------------------------------------------------

_alnum = st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)
_separator = st.sampled_from([".", "_", "__", "-", "--", "---"])


@st.composite
def _component(draw: st.DrawFn) -> str:
    parts = [draw(_alnum)]
    for _ in range(draw(st.integers(0, 3))):
        parts += [draw(_separator), draw(_alnum)]
    return "".join(parts)


_label = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)
_port = st.integers(1, 65535).map(lambda p: f":{p}")
_octet = st.integers(0, 255)
_ipv6 = st.from_regex(r"[a-f0-9]{0,4}:[a-f0-9:]{0,12}", fullmatch=True)
_domain = st.one_of(
    st.just("docker.io"),
    st.just("localhost"),
    st.builds(lambda port: "localhost" + port, _port),
    st.builds(lambda a, b, port: f"{a}.{b}{port}", _label, _label, st.one_of(st.just(""), _port)),
    st.builds(lambda a, port: a + port, _label, _port),
    st.builds(lambda a, b, port: f"10.{a}.0.{b}{port}", _octet, _octet, _port),
    # an IPv6 host is only taken for a domain because it contains ':'
    st.builds(lambda h, port: f"[{h}]{port}", _ipv6, st.one_of(st.just(""), _port)),
    _label.filter(lambda s: s.lower() != s),
).filter(lambda d: d != "index.docker.io")
_tag = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True))
_digest = st.one_of(
    st.none(),
    st.from_regex(r"[a-f0-9]{64}", fullmatch=True).map(lambda h: f"sha256:{h}"),
    st.from_regex(r"[a-f0-9]{128}", fullmatch=True).map(lambda h: f"sha512:{h}"),
)


@st.composite
def _references(draw: st.DrawFn) -> Reference:
    domain = draw(_domain)
    path = "/".join(draw(st.lists(_component(), min_size=1, max_size=4)))
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    return Reference(domain, path, draw(_tag), draw(_digest))


def _familiar_is_ambiguous(ref: Reference) -> bool:
    """Docker's familiar form of docker.io/<a.b>/x reads back as registry a.b."""
    return ref.domain == "docker.io" and "." in ref.familiar_name.split("/")[0]


@given(_references())
def test_round_trip(ref: Reference) -> None:
    assert parse_normalized(str(ref)) == ref
    if _familiar_is_ambiguous(ref):
        return
    assert parse_normalized(ref.familiar()) == ref
    assert parse_normalized(ref.familiar_name) == ref.name_only()
    if ref.tag is not None:
        assert parse_normalized(ref.repo_tag) == ref.name_only().with_tag(ref.tag)


@given(st.text(alphabet="aAb0.:_-/@[]sh256 ", max_size=40))
def test_parse_is_total_and_stable(text: str) -> None:
    try:
        ref = parse_normalized(text)
    except InvalidReference:
        return
    assert parse_normalized(str(ref)) == ref
    if not _familiar_is_ambiguous(ref):
        assert parse_normalized(ref.familiar()) == ref
