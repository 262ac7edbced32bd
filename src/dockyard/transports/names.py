"""Image names across transports, as skopeo spells them (containers-transports(5)).

    docker://HOST/NAME[:TAG|@DIGEST]   a registry (no tag: ``latest``)
    docker-archive:PATH[:NAME[:TAG]]   a ``docker save`` tar; a source may also say ``@N``
    oci-archive:PATH[:REF]             a tar of an OCI image layout
    oci:DIR[:REF]                      an OCI image layout directory
    dockyard:NAME[:TAG|@DIGEST|ID]     the local store (``--root``)

``REF`` of the two OCI transports is the ``org.opencontainers.image.ref.name``
annotation (the spec's grammar: ``latest``, ``v1.2``, ``me/app:v1``). PATH ends
at the first ``:``, as in containers/image. Parse errors carry skopeo's texts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard.errors import DockyardError, InvalidReference
from dockyard.reference import Reference, is_full_id, parse_normalized

# image-spec annotations.md, org.opencontainers.image.ref.name
_REF_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF_NAME_RE = re.compile(rf"{_REF_COMPONENT}(?:/{_REF_COMPONENT})*", re.ASCII)
_INDEX_RE = re.compile(r"@(\d+)", re.ASCII)


@dataclass(frozen=True)
class RegistryName:
    ref: Reference  # always with a tag or a digest

    def __str__(self) -> str:
        return f"docker://{self.ref}"


@dataclass(frozen=True)
class DockerArchiveName:
    path: str
    ref: Reference | None = None  # name:tag (never a digest)
    index: int | None = None  # ``@N``: the N-th image of the archive (sources only)

    def __str__(self) -> str:
        suffix = f":{self.ref}" if self.ref else f":@{self.index}" if self.index is not None else ""
        return f"docker-archive:{self.path}{suffix}"


@dataclass(frozen=True)
class OciArchiveName:
    path: str
    ref_name: str | None = None

    def __str__(self) -> str:
        return f"oci-archive:{self.path}" + (f":{self.ref_name}" if self.ref_name else "")


@dataclass(frozen=True)
class OciLayoutName:
    path: str
    ref_name: str | None = None

    def __str__(self) -> str:
        return f"oci:{self.path}" + (f":{self.ref_name}" if self.ref_name else "")


@dataclass(frozen=True)
class StoreName:
    name: str  # as typed: a reference (``latest`` added) or, for sources, an image ID
    ref: Reference | None  # None when ``name`` is an image ID

    def __str__(self) -> str:
        return f"dockyard:{self.ref if self.ref is not None else self.name}"


ImageName = RegistryName | DockerArchiveName | OciArchiveName | OciLayoutName | StoreName

TRANSPORTS = ("docker", "docker-archive", "oci-archive", "oci", "dockyard")


def parse_image_name(text: str, destination: bool = False) -> ImageName:
    """``transport:reference`` -> a typed name. Raises InvalidReference (skopeo's words).

    A ``destination`` must name what it writes: a tag, never a digest, an image ID
    or an archive index."""
    name = _parse(text)
    if destination:
        _check_destination(name)
    return name


def _check_destination(name: ImageName) -> None:
    if isinstance(name, RegistryName) and name.ref.digest is not None:
        raise InvalidReference("a destination reference needs a tag, not a digest")
    if isinstance(name, DockerArchiveName) and name.index is not None:
        raise InvalidReference(f"docker-archive: @{name.index} can only select a source image")
    if isinstance(name, StoreName) and (name.ref is None or name.ref.digest is not None):
        raise InvalidReference("dockyard: a destination is NAME[:TAG]")


def _parse(text: str) -> ImageName:
    transport, colon, rest = text.partition(":")
    if not colon:
        raise InvalidReference(
            f'Invalid image name "{text}", expected colon-separated transport:reference'
        )
    if transport not in TRANSPORTS:
        raise InvalidReference(f'Invalid image name "{text}", unknown transport "{transport}"')
    if transport == "docker":
        return _registry(rest)
    if transport == "dockyard":
        return _store(rest)
    path, _, ref = rest.partition(":")
    if not path:
        raise InvalidReference(f"{transport}: no path in {text!r}")
    if transport == "docker-archive":
        return _docker_archive(path, ref)
    if ref and not _REF_NAME_RE.fullmatch(ref):
        raise InvalidReference(f"Invalid image {ref}")
    if transport == "oci":
        return OciLayoutName(path, ref or None)
    return OciArchiveName(path, ref or None)


def _registry(rest: str) -> RegistryName:
    if not rest.startswith("//"):
        raise InvalidReference(f"docker: image reference {rest} does not start with //")
    ref = parse_normalized(rest[2:])
    if ref.tag is not None and ref.digest is not None:
        raise InvalidReference(
            "Docker references with both a tag and digest are currently not supported"
        )
    if ref.tag is None and ref.digest is None:
        ref = ref.with_tag("latest")
    return RegistryName(ref)


def _docker_archive(path: str, ref_text: str) -> DockerArchiveName:
    if not ref_text:
        return DockerArchiveName(path)
    m = _INDEX_RE.fullmatch(ref_text)
    if m:
        return DockerArchiveName(path, index=int(m.group(1)))
    try:
        ref = parse_normalized(ref_text)
    except DockyardError as e:
        raise InvalidReference(f"docker-archive parsing reference: {e.message}") from e
    if ref.digest is not None:
        raise InvalidReference("docker-archive doesn't support digest references")
    return DockerArchiveName(path, ref if ref.tag is not None else ref.with_tag("latest"))


def _store(rest: str) -> StoreName:
    if not rest:
        raise InvalidReference("dockyard: no image name")
    if is_full_id(rest) or (rest.startswith("sha256:") and len(rest) > len("sha256:")):
        return StoreName(rest, None)
    ref = parse_normalized(rest)
    if ref.tag is None and ref.digest is None:
        ref = ref.with_tag("latest")
    return StoreName(rest, ref)


__all__ = [
    "DockerArchiveName",
    "ImageName",
    "OciArchiveName",
    "OciLayoutName",
    "RegistryName",
    "StoreName",
    "parse_image_name",
]
