"""Read-side image verbs: ``images``, ``inspect``, ``history`` (Docker's shapes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.oci.config import container_config
from dockyard.oci.timefmt import parse_ns
from dockyard.ops.lookup import resolve_image
from dockyard.reference import Reference
from dockyard.store.records import ImageRecord
from dockyard.store.store import Store


def _familiar(repo: str, suffix: str) -> str:
    domain, _, path = repo.partition("/")
    return Reference(domain, path).familiar_name + suffix


def repo_tags(image: ImageRecord) -> list[str]:
    return sorted(_familiar(repo, ":" + tag) for repo, tag in image.tags)


def repo_digests(image: ImageRecord) -> list[str]:
    return sorted(_familiar(repo, "@" + digest) for repo, digest in image.digests)


@dataclass
class ImageRow:
    """One line of ``images``: an image under one repository:tag (or <none>)."""

    image: ImageRecord
    repository: str
    tag: str
    digest: str


FILTERS = ("dangling", "reference", "before", "since", "label")


def _parse_filters(filters: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in filters:
        key, eq, value = f.partition("=")
        key = key.strip().lower()
        if not eq:
            raise InvalidArgument(f"bad format of filter (expected name=value): {f}")
        if key not in FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
        out.setdefault(key, []).append(value)
    return out


def _match_reference(pattern: str, repo: str, tag: str) -> bool:
    import fnmatch

    familiar = _familiar(repo, "")
    for candidate in (f"{familiar}:{tag}", familiar, f"{repo}:{tag}", repo):
        if fnmatch.fnmatchcase(candidate, pattern):
            return True
    return False


def _label_ok(image: ImageRecord, wanted: list[str]) -> bool:
    labels = image.labels or {}
    for w in wanted:
        key, eq, value = w.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def list_images(
    store: Store,
    all_images: bool = False,
    filters: list[str] | None = None,
    name: str | None = None,
) -> list[ImageRow]:
    """Docker's ``images``: newest first; untagged parents only with ``-a``."""
    flt = _parse_filters(filters or [])
    if name:
        flt.setdefault("reference", []).append(name)
    images = store.images()
    by_id = {i.id: i for i in images}
    parents = {i.parent for i in images if i.parent}
    dangling: bool | None = None
    if "dangling" in flt:
        v = flt["dangling"][-1].lower()
        if v not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"Invalid filter 'dangling={flt['dangling'][-1]}'")
        dangling = v in ("true", "1")
    before = since = None
    if "before" in flt:
        before = by_id.get(resolve_image(store, flt["before"][-1]))
    if "since" in flt:
        since = by_id.get(resolve_image(store, flt["since"][-1]))
    rows: list[ImageRow] = []
    for image in images:
        if before is not None and image.created_ts >= before.created_ts:
            continue
        if since is not None and image.created_ts <= since.created_ts:
            continue
        if "label" in flt and not _label_ok(image, flt["label"]):
            continue
        tagged = bool(image.tags or image.digests)
        if dangling is True and tagged:
            continue
        if dangling is False and not tagged:
            continue
        if not tagged:
            if "reference" in flt:
                continue
            if not all_images and image.id in parents and dangling is not True:
                continue
            rows.append(ImageRow(image, "<none>", "<none>", "<none>"))
            continue
        digests_by_repo: dict[str, list[str]] = {}
        for repo, digest in image.digests:
            digests_by_repo.setdefault(repo, []).append(digest)
        tagged_repos = set()
        for repo, tag in sorted(image.tags):
            if "reference" in flt and not any(
                _match_reference(p, repo, tag) for p in flt["reference"]
            ):
                continue
            tagged_repos.add(repo)
            digest = (digests_by_repo.get(repo) or ["<none>"])[0]
            rows.append(ImageRow(image, _familiar(repo, ""), tag, digest))
        for repo, digests in digests_by_repo.items():
            if repo in tagged_repos or any(r == repo for r, _ in image.tags):
                continue
            if "reference" in flt and not any(
                _match_reference(p, repo, "") for p in flt["reference"]
            ):
                continue
            for digest in digests:
                rows.append(ImageRow(image, _familiar(repo, ""), "<none>", digest))
    rows.sort(key=lambda r: (-r.image.created_ts, r.repository, r.tag))
    return rows


def _config(store: Store, image_id: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(store.blobs.read(image_id))
    return config


def inspect_image(store: Store, image_id: str) -> dict[str, Any]:
    """``docker image inspect`` JSON, keys in Docker 20.10's order."""
    image = store.image(image_id)
    assert image is not None
    config = _config(store, image_id)
    out: dict[str, Any] = {
        "Id": image.id,
        "RepoTags": repo_tags(image),
        "RepoDigests": repo_digests(image),
        "Parent": image.parent,
        "Comment": config.get("comment", ""),
        "Created": config.get("created", ""),
        "Container": config.get("container", ""),
        "ContainerConfig": container_config(config.get("container_config")),
        "DockerVersion": config.get("docker_version", ""),
        "Author": config.get("author", ""),
        "Config": container_config(config.get("config")),
        "Architecture": config.get("architecture", ""),
    }
    if config.get("variant"):
        out["Variant"] = config["variant"]
    out["Os"] = config.get("os", "")
    if config.get("os.version"):
        out["OsVersion"] = config["os.version"]
    out["Size"] = image.size
    out["VirtualSize"] = image.size
    out["GraphDriver"] = _graph_driver(store, image.diff_ids)
    out["RootFS"] = {"Type": "layers", "Layers": list(image.diff_ids)}
    out["Metadata"] = {"LastTagTime": image.last_tag_time or "0001-01-01T00:00:00Z"}
    return out


def _graph_driver(store: Store, diff_ids: list[str]) -> dict[str, Any]:
    """The storage driver's view of the image; Data stays null until the layers are
    unpacked (dockyard unpacks at first run, not at load)."""
    from dockyard.drivers.select import open_driver
    from dockyard.store.store import chain_ids

    try:
        driver = open_driver(store.root, store.driver_name)
    except Exception:  # no usable driver here: inspect still works
        return {"Data": None, "Name": ""}
    chain = chain_ids(diff_ids)[-1].removeprefix("sha256:") if diff_ids else ""
    data = driver.graph_data(None, chain) if chain and driver.has_layer(chain) else None
    return {"Data": data or None, "Name": driver.name}


@dataclass
class HistoryRow:
    id: str  # image ID for the entry that matches an image in the store, else "<missing>"
    created: str
    created_ts: float
    created_by: str
    size: int
    comment: str
    tags: list[str]


def history(store: Store, name: str) -> list[HistoryRow]:
    """Newest first, as ``docker history``: row i is named by the i-th local ancestor."""
    image_id = resolve_image(store, name)
    image = store.image(image_id)
    assert image is not None
    config = _config(store, image_id)
    rows: list[HistoryRow] = []
    layer_idx = 0
    for entry in config.get("history") or []:
        size = 0
        if not entry.get("empty_layer") and layer_idx < len(image.diff_ids):
            layer = store.layer(image.diff_ids[layer_idx])
            size = layer.content_size if layer else 0
            layer_idx += 1
        created = str(entry.get("created") or "")
        rows.append(
            HistoryRow(
                id="<missing>",
                created=created,
                created_ts=parse_ns(created) / 1e9,
                created_by=str(entry.get("created_by") or ""),
                size=size,
                comment=str(entry.get("comment") or ""),
                tags=[],
            )
        )
    rows.reverse()
    cur: ImageRecord | None = image
    for row in rows:
        if cur is None:
            break
        row.id = cur.id
        row.tags = repo_tags(cur)
        cur = store.image(cur.parent, with_layers=False) if cur.parent else None
    return rows


__all__ = [
    "HistoryRow",
    "ImageRow",
    "history",
    "inspect_image",
    "list_images",
    "repo_digests",
    "repo_tags",
]
