"""Find an image by what a user typed: full or short ID, ``name[:tag]``, ``name@digest``."""

from __future__ import annotations

from dockyard.errors import DockyardError, ImageNotFound, InvalidReference
from dockyard.reference import is_full_id, parse_normalized, parse_with_default_tag
from dockyard.store.store import Store


def not_found_name(name: str) -> str:
    """How Docker names a missing image in its error: with ``:latest`` added."""
    try:
        ref = parse_with_default_tag(name)
    except DockyardError:
        return name
    return ref.familiar()


def find_image(store: Store, name: str) -> str | None:
    """Docker's GetImage order: exact ID, then reference, then unique ID prefix."""
    if is_full_id(name):
        full = name if name.startswith("sha256:") else "sha256:" + name
        return (
            full
            if store.conn.execute("SELECT 1 FROM images WHERE id = ?", (full,)).fetchone()
            else None
        )
    ref = None
    try:
        ref = parse_normalized(name)
    except InvalidReference:
        if not name.startswith("sha256:"):
            raise
    if ref is not None:
        if ref.tag is None and ref.digest is None:
            ref = ref.with_tag("latest")
        found = store.lookup_ref(ref)
        if found is not None:
            return found
    matches = store.search_id(name)
    if len(matches) == 1:
        return matches[0]
    return None


def resolve_image(store: Store, name: str) -> str:
    found = find_image(store, name)
    if found is None:
        raise ImageNotFound(not_found_name(name))
    return found
