"""Generated test data: layer tars and images built in memory (no root, no network)."""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
from typing import Any


def layer_tar(files: dict[str, bytes], symlinks: dict[str, str] | None = None,
              dirs: tuple[str, ...] = ()) -> bytes:
    """A deterministic layer tar holding ``files`` (and ``symlinks`` name -> target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in sorted((symlinks or {}).items()):
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def random_layer(seed: int, n_files: int = 3, size: int = 1000) -> bytes:
    rng = random.Random(seed)
    return layer_tar({f"f{seed}-{i}.bin": rng.randbytes(size) for i in range(n_files)})


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_config(layers: list[bytes], created: str = "2026-01-02T03:04:05.123456789Z",
                 cmd: list[str] | None = None, labels: dict[str, str] | None = None) -> bytes:
    config: dict[str, Any] = {
        "architecture": "amd64",
        "config": {"Cmd": cmd, "Labels": labels},
        "created": created,
        "history": [{"created": created, "created_by": f"layer {i}"} for i in range(len(layers))],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha(layer) for layer in layers]},
    }
    return json.dumps(config, sort_keys=True).encode()


def tar_of(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """An archive (outer tar) with the given members and symlinks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def docker_archive(images: list[tuple[list[bytes], list[str]]], legacy: bool = False,
                   parent_of: dict[int, int] | None = None) -> bytes:
    """A docker-archive of images given as (layers, repo_tags).

    ``legacy`` writes Docker 20.10's layout: one directory per layer with
    ``layer.tar``, shared layers as symlinks to the first copy.
    """
    members: dict[str, bytes] = {}
    links: dict[str, str] = {}
    manifest = []
    first_path: dict[str, str] = {}
    ids = []
    for n, (layers, tags) in enumerate(images):
        config = image_config(layers, created=f"2026-01-0{n + 1}T00:00:00Z")
        cid = sha(config)[7:]
        ids.append("sha256:" + cid)
        members[f"{cid}.json"] = config
        paths = []
        for i, layer in enumerate(layers):
            digest = sha(layer)[7:]
            if legacy:
                path = f"{hashlib.sha256(f'{cid}{i}'.encode()).hexdigest()}/layer.tar"
                if digest in first_path:
                    links[path] = "../" + first_path[digest]
                else:
                    members[path] = layer
                    first_path[digest] = path
            else:
                path = f"blobs/sha256/{digest}"
                members[path] = layer
            paths.append(path)
        item: dict[str, Any] = {"Config": f"{cid}.json", "RepoTags": tags or None, "Layers": paths}
        manifest.append(item)
    for child, parent in (parent_of or {}).items():
        manifest[child]["Parent"] = ids[parent]
    members["manifest.json"] = json.dumps(manifest).encode()
    return tar_of(members, links)


def oci_archive(layers: list[bytes], ref_name: str | None, compress: str = "gzip",
                platform_index: bool = False) -> tuple[bytes, str]:
    """An OCI layout tar with one image (layers gzip'd); returns (archive, image ID)."""
    import gzip

    members: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    config = image_config(layers)
    members[f"blobs/sha256/{sha(config)[7:]}"] = config
    descs = []
    for layer in layers:
        blob = gzip.compress(layer, mtime=0) if compress == "gzip" else layer
        members[f"blobs/sha256/{sha(blob)[7:]}"] = blob
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress == "gzip" else "")
        descs.append({"mediaType": media, "digest": sha(blob), "size": len(blob)})
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(config), "size": len(config)},
        "layers": descs,
    }).encode()
    members[f"blobs/sha256/{sha(manifest)[7:]}"] = manifest
    desc: dict[str, Any] = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "digest": sha(manifest), "size": len(manifest)}
    if platform_index:
        other = dict(desc, platform={"architecture": "s390x", "os": "linux"})
        mine = dict(desc, platform={"architecture": "amd64", "os": "linux"})
        nested = json.dumps({"schemaVersion": 2,
                             "mediaType": "application/vnd.oci.image.index.v1+json",
                             "manifests": [other, mine]}).encode()
        members[f"blobs/sha256/{sha(nested)[7:]}"] = nested
        desc = {"mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": sha(nested), "size": len(nested)}
    if ref_name:
        desc["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    members["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode()
    return tar_of(members), sha(config)
