"""The manifest a push writes, from the config's bytes and the pushed layers.

Kept apart from ``distribution.push`` (httpx, threads, compression) and light to
import, because the fast ``push`` path (``dockyard.cli.fast_push``) builds the very
same bytes in a process that loads nothing else: the Docker schema2 form is written
out here as ``json.dumps(manifest, indent=3)`` writes it (with json's own C string
encoder), so neither json (which loads re and enum) nor hashlib (OpenSSL) is imported
for it. tests/unit/test_cli_fast.py holds it to ``json.dumps``.
"""

from __future__ import annotations

from dockyard import mediatypes

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Protocol

    class Blob(Protocol):
        """A pushed layer as the manifest lists it (``distribution.push.PushedBlob``)."""

        @property
        def digest(self) -> str: ...

        @property
        def media_type(self) -> str: ...

        @property
        def size(self) -> int: ...


def sha256_hex(data: bytes) -> str:
    """hashlib.sha256(data).hexdigest(), from CPython's own sha256 when it has one."""
    try:
        import _sha256  # type: ignore[import-not-found,unused-ignore]  # CPython <= 3.11

        return str(_sha256.sha256(data).hexdigest())
    except ImportError:
        import hashlib

        return hashlib.sha256(data).hexdigest()


def _quote(s: str) -> str:
    """A JSON string as json.dumps writes it (ensure_ascii)."""
    try:
        from _json import encode_basestring_ascii
    except ImportError:  # pragma: no cover - no C accelerator
        from json.encoder import encode_basestring_ascii
    return str(encode_basestring_ascii(s))


def _schema2(config_size: int, config_digest: str, layers: Sequence[Blob]) -> bytes:
    """``json.dumps(manifest, indent=3)`` of the Docker schema2 manifest, written out."""
    q = _quote
    items = [
        '\n      {\n         "mediaType": ' + q(mediatypes.DOCKER_LAYER_GZIP)
        + ',\n         "size": ' + int.__repr__(b.size)
        + ',\n         "digest": ' + q(b.digest) + "\n      }"
        for b in layers
    ]  # fmt: skip
    text = (
        '{\n   "schemaVersion": 2,\n   "mediaType": ' + q(mediatypes.DOCKER_MANIFEST)
        + ',\n   "config": {\n      "mediaType": ' + q(mediatypes.DOCKER_CONFIG)
        + ',\n      "size": ' + int.__repr__(config_size)
        + ',\n      "digest": ' + q(config_digest)
        + '\n   },\n   "layers": ' + ("[" + ",".join(items) + "\n   ]" if items else "[]")
        + "\n}"
    )  # fmt: skip
    return text.encode()


def image_manifest(config: bytes, layers: Sequence[Blob], kind: str) -> tuple[bytes, str]:
    """The manifest a push writes: Docker schema2 (as Docker indents it) for gzip,
    OCI (compact) for zstd."""
    config_digest = "sha256:" + sha256_hex(config)
    if kind == "gzip":
        return _schema2(len(config), config_digest, layers), mediatypes.DOCKER_MANIFEST
    import json

    oci = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {
            "mediaType": mediatypes.OCI_CONFIG,
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [
            {"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in layers
        ],
    }
    return json.dumps(oci, separators=(",", ":")).encode(), mediatypes.OCI_MANIFEST


__all__ = ["image_manifest", "sha256_hex"]
