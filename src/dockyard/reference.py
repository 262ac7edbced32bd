"""Image references, parsed and normalised the way Docker does it.

This follows github.com/distribution/reference v0.6 (normalize.go, reference.go,
regexp.go) and the digest checks of github.com/opencontainers/go-digest v1.0.0,
which is what Docker 25+ vendors::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain "/"] path
    domain           := host [":" port]          host: DNS-ish name, IPv4 or [IPv6]
    path             := component ["/" component]*
    component        := [a-z0-9]+ (separator [a-z0-9]+)*     separator: . _ __ -+
    tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest           := algorithm ":" hex        (sha256/sha384/sha512 accepted)

Normalisation ("familiar" -> full): a first component that is ``localhost`` or
contains ``.`` or ``:`` or an uppercase letter is a domain, otherwise the name
is on ``docker.io``; ``index.docker.io`` becomes ``docker.io``; a one-component
name on ``docker.io`` gets ``library/``. ``busybox`` is
``docker.io/library/busybox`` and familiarises back to ``busybox``.

Error messages are Docker's own texts, since users and scripts match on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from dockyard.errors import InvalidReference

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

# Docker's error texts (reference.go and go-digest).
ERR_REFERENCE_INVALID_FORMAT = "invalid reference format"
ERR_TAG_INVALID_FORMAT = "invalid tag format"
ERR_DIGEST_INVALID_FORMAT = "invalid digest format"
ERR_NAME_CONTAINS_UPPERCASE = "repository name must be lowercase"
ERR_NAME_EMPTY = "repository name must have at least one component"
ERR_NAME_TOO_LONG = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
ERR_CHECKSUM_FORMAT = "invalid checksum digest format"
ERR_CHECKSUM_LENGTH = "invalid checksum digest length"
ERR_DIGEST_UNSUPPORTED = "unsupported digest algorithm"

# --- grammar (regexp.go). Go's \w is ASCII-only, hence the explicit classes and
# re.ASCII; every use is a fullmatch, as Go anchors with ^...$ (no newline slack).
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}"

_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_NAME_RE = re.compile(rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})", re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)
_FULL_ID_RE = re.compile(r"(?:sha256:)?[a-f0-9]{64}", re.ASCII)

# go-digest: the registered algorithms (Docker links sha256 and sha512, which
# also provides sha384) with their hex lengths, and its looser digest grammar.
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_GO_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", re.ASCII)
_LOWER_HEX_RE = re.compile(r"[a-f0-9]+", re.ASCII)

_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    '"': '\\"',
    "\\": "\\\\",
}


@dataclass(frozen=True)
class Reference:
    """A named image reference in full form; ``parse_normalized`` builds valid ones.

    ``domain`` is ``""`` only in the rare case Docker produces it too: a first
    component with a dot that is not a valid host but is a valid path
    component (``a_b.com/x``).
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The full repository name, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_name(self) -> str:
        """The name as Docker shows it: ``docker.io/`` and a lone ``library/`` dropped."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        rest = self.path.removeprefix(OFFICIAL_REPO_PREFIX)
        if rest != self.path and "/" not in rest:
            return rest
        return self.path

    def familiar(self) -> str:
        """Docker's FamiliarString: ``busybox:latest``, ``me/x@sha256:...``."""
        return self.familiar_name + self._suffix()

    def __str__(self) -> str:
        return self.name + self._suffix()

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest

    @property
    def repo_tag(self) -> str:
        """``familiar_name:tag``, the form Docker lists in RepoTags."""
        if self.tag is None:
            raise ValueError(f"reference {self} has no tag")
        return f"{self.familiar_name}:{self.tag}"

    def with_tag(self, tag: str) -> Reference:
        """The same reference with ``tag`` (any digest is kept, as Docker's WithTag)."""
        if not is_valid_tag(tag):
            raise InvalidReference(ERR_TAG_INVALID_FORMAT)
        return replace(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        """The same reference with ``digest`` (any tag is kept, as Docker's WithDigest).

        Docker's WithDigest checks only the reference grammar; the algorithm
        and hex length are checked here too, as Parse would.
        """
        if _DIGEST_RE.fullmatch(digest) is None:
            raise InvalidReference(ERR_DIGEST_INVALID_FORMAT)
        _validate_digest(digest)
        return replace(self, digest=digest)

    def name_only(self) -> Reference:
        """The repository alone, tag and digest dropped (Docker's TrimNamed)."""
        return Reference(self.domain, self.path)


def parse_normalized(s: str) -> Reference:
    """Docker's ParseNormalizedNamed: a familiar or full name to a full Reference.

    No default tag is added. Raises InvalidReference with Docker's messages.
    """
    if _IDENTIFIER_RE.fullmatch(s):
        raise InvalidReference(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_docker_domain(s)
    # Docker checks case on everything before the first ":" of the remainder,
    # so for "x@SHA256:..." the "remote" it reports is "library/x@SHA256".
    remote = remainder.partition(":")[0]
    if _go_lower(remote) != remote:
        # Docker 20.10's text (../shared/reference); Docker 25+ adds "({remote})".
        raise InvalidReference(f"{ERR_REFERENCE_INVALID_FORMAT}: {ERR_NAME_CONTAINS_UPPERCASE}")
    return _parse(f"{domain}/{remainder}")


def parse_with_default_tag(s: str) -> Reference:
    """parse_normalized plus Docker's TagNameOnly: ``:latest`` when neither tag nor digest."""
    ref = parse_normalized(s)
    if ref.tag is None and ref.digest is None:
        return replace(ref, tag=DEFAULT_TAG)
    return ref


def parse_docker_ref(s: str) -> Reference:
    """Docker's ParseDockerRef: like parse_with_default_tag, but a reference with
    both a tag and a digest keeps only the digest."""
    ref = parse_normalized(s)
    if ref.tag is not None and ref.digest is not None:
        return replace(ref, tag=None)
    if ref.tag is None and ref.digest is None:
        return replace(ref, tag=DEFAULT_TAG)
    return ref


def is_valid_tag(tag: str) -> bool:
    return _TAG_RE.fullmatch(tag) is not None


def is_full_id(s: str) -> bool:
    """64 lowercase hex digits, optionally prefixed with ``sha256:``."""
    return _FULL_ID_RE.fullmatch(s) is not None


def tag_error(s: str, err: InvalidReference) -> str:
    """The Docker client's line for a bad repository/tag argument."""
    return f"Error parsing reference: {go_quote(s)} is not a valid repository/tag: {err}"


def go_quote(s: str) -> str:
    """Go's ``%q`` (strconv.Quote) for a string, so error lines match Docker's."""
    out = []
    for ch in s:
        code = ord(ch)
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _go_lower(s: str) -> str:
    """Go's strings.ToLower where it matters here: U+0130 lowers to a plain "i"."""
    return s.replace("\u0130", "i").lower()


def _split_docker_domain(name: str) -> tuple[str, str]:
    """normalize.go splitDockerDomain: (domain, remainder) before validation."""
    first, slash, rest = name.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if first == LEGACY_DEFAULT_DOMAIN:
        domain, remainder = DEFAULT_DOMAIN, rest
    elif first == "localhost" or "." in first or ":" in first or _go_lower(first) != first:
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _parse(s: str) -> Reference:
    """reference.go Parse, for strings that always carry a name."""
    if not s:
        raise InvalidReference(ERR_NAME_EMPTY)
    m = _REFERENCE_RE.fullmatch(s)
    if m is None:
        lower = _go_lower(s)
        if lower != s and _REFERENCE_RE.fullmatch(lower):
            raise InvalidReference(ERR_NAME_CONTAINS_UPPERCASE)
        raise InvalidReference(ERR_REFERENCE_INVALID_FORMAT)
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    nm = _NAME_RE.fullmatch(name)
    domain, path = (nm.group(1) or "", nm.group(2)) if nm else ("", name)
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(ERR_NAME_TOO_LONG)
    if digest is not None:
        _validate_digest(digest)
    return Reference(domain, path, tag, digest)


def _validate_digest(digest: str) -> None:
    """go-digest Digest.Validate with sha256, sha384 and sha512 registered."""
    algorithm, _, encoded = digest.partition(":")
    if not algorithm or not encoded:
        raise InvalidReference(ERR_CHECKSUM_FORMAT)
    length = _DIGEST_HEX_LENGTH.get(algorithm)
    if length is None:
        if _GO_DIGEST_RE.fullmatch(digest) is None:
            raise InvalidReference(ERR_CHECKSUM_FORMAT)
        raise InvalidReference(ERR_DIGEST_UNSUPPORTED)
    if len(encoded) != length:
        raise InvalidReference(ERR_CHECKSUM_LENGTH)
    if _LOWER_HEX_RE.fullmatch(encoded) is None:
        raise InvalidReference(ERR_CHECKSUM_FORMAT)
