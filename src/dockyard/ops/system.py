"""``system check [--repair]``, ``system df`` and ``image prune``."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field

from dockyard.digest import hash_file
from dockyard.ops.remove import remove_image
from dockyard.store import records
from dockyard.store.locks import flocked
from dockyard.store.store import Store


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    blobs_checked: int = 0
    images_checked: int = 0

    @property
    def clean(self) -> bool:
        return not self.problems


def check(store: Store, repair: bool = False) -> CheckReport:
    """Verify every blob's digest, every record's blobs, and the records' links.

    With ``repair``: remove corrupt blobs, images that lost a blob, dangling
    records, unreferenced blobs and stale staging dirs, saying what went.
    """
    report = CheckReport()
    conn = store.conn
    lock = flocked(store.root / "gc.lock") if repair else _null()
    with lock:
        corrupt: set[str] = set()
        for path in store.blobs.stray_files():
            report.problems.append(f"stray file in blob store: {path.name}")
            if repair:
                path.unlink(missing_ok=True)
                report.repaired.append(f"removed stray file {path.name}")
        for digest in list(store.blobs):
            report.blobs_checked += 1
            actual = hash_file(str(store.blobs.path(digest)))
            if actual.digest != digest:
                corrupt.add(digest)
                report.problems.append(f"blob {digest} is corrupt (content is {actual.digest})")
                if repair:
                    store.blobs.delete(digest)
                    report.repaired.append(f"removed corrupt blob {digest}")
        present = set(store.blobs) if not repair else set(store.blobs) - corrupt
        broken: list[str] = []
        for image in records.load_images(conn, with_layers=True):
            report.images_checked += 1
            missing = [d for d in (image.id, image.manifest) if d not in present]
            for diff_id in image.diff_ids:
                layer = store.layer(diff_id)
                if layer is None:
                    missing.append(f"layer record {diff_id}")
                elif layer.blob not in present:
                    missing.append(layer.blob)
            if not missing and image.id in present:
                try:
                    config = json.loads(store.blobs.read(image.id))
                    if [str(d) for d in config["rootfs"]["diff_ids"]] != image.diff_ids:
                        missing.append("config diff_ids differ from the layer records")
                except (ValueError, KeyError, TypeError):
                    missing.append("config is not valid JSON")
            if missing:
                broken.append(image.id)
                report.problems.append(f"image {image.id} is broken: missing {', '.join(missing)}")
        for table, col in (("tags", "image"), ("repo_digests", "image"), ("image_layers", "image")):
            n = conn.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {col} NOT IN (SELECT id FROM images)"
            ).fetchone()[0]
            if n:
                report.problems.append(f"{n} {table} records point at no image")
        orphans = conn.execute(
            "SELECT COUNT(*) FROM layers WHERE diff_id NOT IN (SELECT diff_id FROM image_layers)"
        ).fetchone()[0]
        if orphans:
            report.problems.append(f"{orphans} layer records are used by no image")
        # index.json is rewritten from the records after each commit; a process
        # killed in between leaves it stale (and maybe its temp file behind).
        with store.write_lock():
            try:
                listed = json.loads((store.root / "index.json").read_bytes())["manifests"]
            except (OSError, ValueError, KeyError, TypeError):
                listed = None
            if listed != store.index_manifests():
                report.problems.append("index.json does not match the image records")
                if repair:
                    store._write_index()
                    report.repaired.append("rewrote index.json from the records")
            for tmp in sorted(store.root.glob(".*.tmp")):
                report.problems.append(f"leftover temp file {tmp.name}")
                if repair:
                    tmp.unlink(missing_ok=True)
                    report.repaired.append(f"removed leftover temp file {tmp.name}")
        if repair:
            with store.transaction() as tx:
                for image_id in broken:
                    records.delete_image_rows(tx, image_id)
                    report.repaired.append(f"removed broken image {image_id}")
                for table in ("tags", "repo_digests", "image_layers"):
                    cur = tx.execute(
                        f"DELETE FROM {table} WHERE image NOT IN (SELECT id FROM images)"
                    )
                    if cur.rowcount:
                        report.repaired.append(f"removed {cur.rowcount} dangling {table} records")
                cur = tx.execute(
                    "DELETE FROM layers WHERE diff_id NOT IN (SELECT diff_id FROM image_layers)"
                )
                if cur.rowcount:
                    report.repaired.append(f"removed {cur.rowcount} unused layer records")
        keep = store.referenced_blobs()
        for digest in sorted(set(store.blobs) - keep):
            report.problems.append(f"blob {digest} is referenced by nothing")
            if repair and store.blobs.delete(digest):
                report.repaired.append(f"removed unreferenced blob {digest}")
        for stale in store.stale_staging():
            report.problems.append(f"leftover staging directory {stale.name}")
            if repair:
                shutil.rmtree(stale, ignore_errors=True)
                if stale.exists():
                    stale.unlink(missing_ok=True)
                report.repaired.append(f"removed leftover staging directory {stale.name}")
    if repair:
        store.blobs.sync()
    return report


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@dataclass
class DiskUsage:
    images: int
    active: int
    size: int
    reclaimable: int


def disk_usage(store: Store) -> DiskUsage:
    """Images' unique on-disk bytes: shared layers counted once."""
    conn = store.conn
    n = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    size = conn.execute(
        "SELECT COALESCE(SUM(content_size), 0) FROM layers "
        "WHERE diff_id IN (SELECT diff_id FROM image_layers)"
    ).fetchone()[0]
    # Until containers exist no image is active, so all of it is reclaimable.
    return DiskUsage(images=n, active=0, size=size, reclaimable=size)


def prune_images(store: Store, all_images: bool = False) -> tuple[list[str], int]:
    """Remove dangling images (all unused ones with ``all_images``); returns lines and bytes."""
    conn = store.conn
    before = _unique_size(store)
    lines: list[str] = []
    while True:
        images = records.load_images(conn)
        parents = {i.parent for i in images if i.parent}
        used = {r[0] for r in conn.execute("SELECT DISTINCT image FROM containers")}
        images = [i for i in images if i.id not in used]
        if all_images:
            victims = [i for i in images if i.id not in parents]
        else:
            victims = [i for i in images if not i.tags and not i.digests and i.id not in parents]
        if not victims:
            break
        progressed = False
        for image in victims:
            try:
                lines.extend(remove_image(store, image.id, force=True))
                progressed = True
            except Exception:
                continue
        if not progressed or not all_images:
            break
    store.sweep(wait=True)
    return lines, max(0, before - _unique_size(store))


def _unique_size(store: Store) -> int:
    return int(disk_usage(store).size)
