"""``tag`` and ``rmi`` / ``image rm`` with Docker's rules and conflict errors."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass

from dockyard.errors import Conflict, DockyardError, ImageNotFound, InvalidArgument
from dockyard.ops.lookup import find_image, not_found_name, resolve_image
from dockyard.reference import Reference, is_full_id, parse_normalized, parse_with_default_tag
from dockyard.store import records
from dockyard.store.store import Store


def tag(store: Store, source: str, target: str) -> None:
    ref = parse_with_default_tag(target)
    if ref.digest is not None:
        raise InvalidArgument("refusing to create a tag with a digest reference")
    image_id = resolve_image(store, source)
    with store.transaction() as conn:
        if not conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone():
            raise ImageNotFound(not_found_name(source))
        store.set_tag(conn, ref, image_id)


@dataclass
class _Refs:
    tags: list[Reference]
    digests: list[Reference]

    @property
    def all(self) -> list[Reference]:
        return self.tags + self.digests


def _refs(conn: sqlite3.Connection, image_id: str) -> _Refs:
    tags = [
        _ref(repo, tag=t)
        for repo, t in conn.execute(
            "SELECT repo, tag FROM tags WHERE image = ? ORDER BY repo, tag", (image_id,)
        )
    ]
    digests = [
        _ref(repo, digest=d)
        for repo, d in conn.execute(
            "SELECT repo, digest FROM repo_digests WHERE image = ? ORDER BY repo, digest",
            (image_id,),
        )
    ]
    return _Refs(tags, digests)


def _ref(repo: str, tag: str | None = None, digest: str | None = None) -> Reference:
    domain, _, path = repo.partition("/")
    return Reference(domain, path, tag, digest)


def _single_reference(refs: _Refs) -> bool:
    """At most one tag and every reference in one repository (Docker's isSingleReference)."""
    all_refs = refs.all
    if len(all_refs) <= 1:
        return len(all_refs) == 1
    if len(refs.tags) > 1:
        return False
    names = {r.name for r in all_refs}
    return len(names) == 1


def _unref(conn: sqlite3.Connection, ref: Reference) -> None:
    if ref.digest is not None:
        conn.execute(
            "DELETE FROM repo_digests WHERE repo = ? AND digest = ?", (ref.name, ref.digest)
        )
    else:
        conn.execute("DELETE FROM tags WHERE repo = ? AND tag = ?", (ref.name, ref.tag))


def containers_using(store: Store, image_id: str) -> list[tuple[str, bool]]:
    """(container ID, running) of the containers made from the image."""
    from dockyard.ops.containers import containers_using_image

    return containers_using_image(store, image_id)


def _conflict(image_id: str, hard: bool, message: str) -> Conflict:
    force = "cannot be forced" if hard else "must be forced"
    return Conflict(f"conflict: unable to delete {image_id[7:19]} ({force}) - {message}")


def remove_image(store: Store, name: str, force: bool = False, prune: bool = True) -> list[str]:
    """Remove one image reference or image; returns Docker's Untagged:/Deleted: lines."""
    out: list[str] = []
    with store.transaction() as conn:
        image_id = find_image(store, name)
        if image_id is None:
            raise ImageNotFound(name)
        refs = _refs(conn, image_id)
        by_id = is_full_id(name) or _is_id_prefix(image_id, name)
        removed_ref = False
        if not by_id:
            ref = parse_normalized(name)
            if ref.tag is None and ref.digest is None:
                ref = ref.with_tag("latest")
            if not force and _single_reference(refs):
                users = containers_using(store, image_id)
                if users:
                    raise Conflict(
                        f'conflict: unable to remove repository reference "{name}" (must force) - '
                        f"container {users[0][0][:12]} is using its referenced image "
                        f"{image_id[7:19]}"
                    )
            _unref(conn, ref)
            out.append(f"Untagged: {ref.familiar()}")
            refs = _refs(conn, image_id)
            if ref.digest is None and not any(t.name == ref.name for t in refs.tags):
                for d in [d for d in refs.digests if d.name == ref.name]:
                    _unref(conn, d)
                    out.append(f"Untagged: {d.familiar()}")
                refs = _refs(conn, image_id)
            if refs.all:
                return out
            removed_ref = True
        elif _single_reference(refs):
            _check_conflicts(conn, store, image_id, hard_only=force, skip_refs=True)
            for r in refs.all:
                _unref(conn, r)
                out.append(f"Untagged: {r.familiar()}")
        _delete_helper(conn, store, image_id, force, prune, removed_ref, out)
    store.sweep()
    release_driver_layers(store, [line[len("Deleted: "):] for line in out
                                  if line.startswith("Deleted: ")])
    return out


def release_driver_layers(store: Store, chains: list[str]) -> None:
    """Remove unpacked layers (and their init layers) that no image uses any more;
    a layer still under a container or another layer stays (the driver refuses)."""
    import hashlib

    from dockyard.drivers.select import in_use, open_driver

    if not chains or not in_use(store.root):
        return
    try:
        driver = open_driver(store.root, store.driver_name)
    except DockyardError:
        return
    for chain in chains:
        key = chain.removeprefix("sha256:")
        init = hashlib.sha256(f"dockyard-init:{key}".encode()).hexdigest()
        for layer in (init, key):
            if driver.has_layer(layer):
                with contextlib.suppress(DockyardError):
                    driver.remove_layer(layer)


def _is_id_prefix(image_id: str, name: str) -> bool:
    bare = name.removeprefix("sha256:")
    return (
        bool(bare)
        and image_id[7:].startswith(bare)
        and (name.startswith("sha256:") or all(c in "0123456789abcdef" for c in bare))
    )


def _check_conflicts(
    conn: sqlite3.Connection, store: Store, image_id: str, hard_only: bool, skip_refs: bool = False
) -> None:
    if records.children_of(conn, image_id):
        raise _conflict(image_id, True, "image has dependent child images")
    users = containers_using(store, image_id)
    running = [c for c, r in users if r]
    if running:
        raise _conflict(
            image_id, True, f"image is being used by running container {running[0][:12]}"
        )
    if hard_only:
        return
    if not skip_refs and _refs(conn, image_id).all:
        raise _conflict(image_id, False, "image is referenced in multiple repositories")
    stopped = [c for c, r in users if not r]
    if stopped:
        raise _conflict(
            image_id, False, f"image is being used by stopped container {stopped[0][:12]}"
        )


def _delete_helper(
    conn: sqlite3.Connection,
    store: Store,
    image_id: str,
    force: bool,
    prune: bool,
    quiet: bool,
    out: list[str],
) -> None:
    try:
        _check_conflicts(conn, store, image_id, hard_only=force)
    except Conflict:
        if quiet:
            refs = _refs(conn, image_id)
            dangling = not refs.all and not records.children_of(conn, image_id)
            if not dangling or containers_using(store, image_id):
                return
        raise
    row = conn.execute("SELECT parent FROM images WHERE id = ?", (image_id,)).fetchone()
    parent = row[0] if row else ""
    for r in _refs(conn, image_id).all:
        _unref(conn, r)
        out.append(f"Untagged: {r.familiar()}")
    removed = store.delete_image_records(conn, image_id)
    out.append(f"Deleted: {image_id}")
    out.extend(f"Deleted: {chain}" for chain in removed)
    if prune and parent:
        _delete_helper(conn, store, parent, False, True, True, out)
