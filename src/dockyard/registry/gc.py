"""Online garbage collection over the SQL metadata: runs while clients push and pull.

1. (``untagged=True``) manifests with no tag, no parent index in their repository
   and no subject still present, older than the grace period; repeated, since
   deleting an index can leave its children untagged.
2. blobs that no manifest of any repository names, pushed or mounted before the
   grace period: their rows and repository links, then their files.
3. uploads untouched for ``upload_max_age``.
4. storage files no row accounts for (a crash between storage and SQL), older
   than the grace period, and repositories left empty.

Every deletion re-checks its condition in the transaction that deletes, and a
file is removed only when no row needs it and it is older than the grace period;
committing an upload renews a stored blob's mtime (storage/base.py), so a blob
pushed again while GC runs survives. The grace period must be longer than a push
takes between uploading its blobs and putting its manifest.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from dockyard.digest import Digest
from dockyard.registry.metadata import Metadata
from dockyard.registry.storage.base import (
    UPLOAD_ID_RE,
    StorageDriver,
    StorageNotFound,
    blob_path,
    digest_of_blob_path,
    upload_path,
)

DEFAULT_GRACE = 3600.0
DEFAULT_UPLOAD_MAX_AGE = 7 * 86400.0


@dataclass
class GcReport:
    manifests: list[tuple[str, str]] = field(default_factory=list)  # (repo, digest)
    blobs: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    uploads: list[str] = field(default_factory=list)
    stray_files: list[str] = field(default_factory=list)
    repositories: list[str] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"{verb} {len(self.manifests)} manifests, {len(self.blobs)} blobs "
            f"({self.bytes_freed} bytes), {len(self.uploads)} uploads, "
            f"{len(self.stray_files)} stray files, {len(self.repositories)} empty repositories"
        )


def collect(
    meta: Metadata,
    storage: StorageDriver,
    *,
    untagged: bool = False,
    grace: float = DEFAULT_GRACE,
    upload_max_age: float = DEFAULT_UPLOAD_MAX_AGE,
    dry_run: bool = False,
    now: float | None = None,
) -> GcReport:
    now = time.time() if now is None else now
    cutoff = now - grace
    report = GcReport(dry_run=dry_run)

    if untagged:
        _untagged_manifests(meta, cutoff, dry_run, report)

    blobs = meta.unreferenced_blobs(cutoff)
    sizes = {b.digest: b.size for b in blobs}
    if dry_run:
        report.blobs = [b.digest for b in blobs]
    else:
        report.blobs = meta.delete_blobs_if_unreferenced([b.digest for b in blobs], cutoff)
        for digest in report.blobs:
            _delete_file(meta, storage, Digest(digest), cutoff)
    report.bytes_freed = sum(sizes[d] for d in report.blobs)

    for upload in meta.uploads_older_than(now - upload_max_age):
        report.uploads.append(upload.id)
        if not dry_run:
            with contextlib.suppress(StorageNotFound):
                storage.writer(upload.id, resume=True).cancel()
            meta.delete_upload(upload.id)

    _stray_files(meta, storage, cutoff, dry_run, report)
    if not dry_run:
        report.repositories = meta.delete_empty_repositories()
    return report


def _untagged_manifests(meta: Metadata, cutoff: float, dry_run: bool, report: GcReport) -> None:
    seen: set[tuple[str, str]] = set()
    while True:
        found = [m for m in meta.untagged_manifests(cutoff) if m not in seen]
        if not found:
            return
        seen.update(found)
        report.manifests.extend(found)
        if dry_run:
            return  # what deleting these would free in turn is counted on the next run
        meta.delete_manifests_if_untagged(found)


def _delete_file(meta: Metadata, storage: StorageDriver, digest: Digest, cutoff: float) -> bool:
    """Remove a blob's file if no row needs it and it is older than the grace period."""
    path = blob_path(digest)
    try:
        info = storage.stat(path)
    except StorageNotFound:
        return False
    if info.modified >= cutoff or meta.is_stored(digest):
        return False
    with contextlib.suppress(StorageNotFound):
        storage.delete(path)
    return True


def _stray_files(
    meta: Metadata, storage: StorageDriver, cutoff: float, dry_run: bool, report: GcReport
) -> None:
    known = meta.known_digests()
    for path in storage.list("blobs"):
        digest = digest_of_blob_path(path)
        if digest is None or digest in known:
            continue
        if dry_run:
            with contextlib.suppress(StorageNotFound):
                if storage.stat(path).modified < cutoff:
                    report.stray_files.append(path)
        elif _delete_file(meta, storage, digest, cutoff):
            report.stray_files.append(path)
    uploads = meta.upload_ids()
    for path in storage.list("uploads"):
        upload_id = path.split("/")[1] if path.count("/") >= 1 else ""
        if not UPLOAD_ID_RE.fullmatch(upload_id) or upload_id in uploads:
            continue
        try:
            old = storage.stat(path).modified < cutoff
        except StorageNotFound:
            continue
        if old and upload_id not in meta.upload_ids():
            report.stray_files.append(path)
            if not dry_run:
                with contextlib.suppress(StorageNotFound):
                    storage.delete(upload_path(upload_id))
