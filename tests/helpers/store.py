"""Look at a dockyard store from outside: byte-for-byte snapshots and ``system check``.

A snapshot covers every file and directory under the store root (relative path
-> (size, sha256)), except the SQLite database (its bytes change on every open)
and the lock files, plus what ``images -a --no-trunc`` reports (minus the
relative "created ... ago" column, which moves with the clock).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

EXCLUDED = re.compile(r"^(dockyard\.db.*|lock|gc\.lock)$")
# What a killed operation may leave: garbage (unreferenced blobs, staging dirs, temp
# files) and an index.json not yet rewritten from records that were committed.
GARBAGE = re.compile(
    r"^problem: (blob sha256:[0-9a-f]{64} is referenced by nothing"
    r"|leftover staging directory \S+"
    r"|leftover temp file \.index\.json\.\d+\.tmp"
    r"|index\.json does not match the image records)$"
)


class Runner(Protocol):
    root: Path

    def run(self, *args: str | os.PathLike[str], input: str | None = None, check: bool = True,
            timeout: float = 300.0) -> subprocess.CompletedProcess[str]: ...


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree(root: Path) -> dict[str, tuple[int, str] | str]:
    """relative path -> (size, sha256) for files, "dir" for directories."""
    out: dict[str, tuple[int, str] | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for d in dirnames:
            out[str((base / d).relative_to(root))] = "dir"
        for f in filenames:
            rel = str((base / f).relative_to(root))
            if base == root and EXCLUDED.match(f):
                continue
            p = base / f
            out[rel] = (p.stat().st_size, file_digest(p))
    return out


def image_rows(dy: Runner) -> list[dict[str, Any]]:
    out = dy.run("images", "-a", "--no-trunc", "--format", "json").stdout
    rows = []
    for line in out.splitlines():
        row = json.loads(line)
        row.pop("CreatedSince", None)
        rows.append(row)
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


@dataclass(frozen=True)
class Snapshot:
    files: dict[str, tuple[int, str] | str]
    images: list[dict[str, Any]]


def snapshot(dy: Runner) -> Snapshot:
    return Snapshot(tree(dy.root), image_rows(dy))


def diff(before: Snapshot, after: Snapshot) -> list[str]:
    """What changed, one line per difference (empty when identical)."""
    lines = []
    for path in sorted(set(before.files) | set(after.files)):
        a, b = before.files.get(path), after.files.get(path)
        if a != b:
            lines.append(f"{path}: {a} -> {b}")
    if before.images != after.images:
        lines.append(f"images: {before.images} -> {after.images}")
    return lines


def check(dy: Runner, repair: bool = False) -> subprocess.CompletedProcess[str]:
    args = ["system", "check", *(["--repair"] if repair else [])]
    return dy.run(*args, check=False)


def assert_clean(dy: Runner) -> None:
    res = check(dy)
    assert res.returncode == 0, f"system check failed:\n{res.stdout}{res.stderr}"
    assert res.stdout.rstrip().endswith(": clean"), res.stdout


def garbage_only(stdout: str) -> list[str]:
    """Problems that ``system check`` reported which are NOT garbage a dead
    operation may leave (unreferenced blobs, leftover staging dirs)."""
    return [
        line for line in stdout.splitlines()
        if line.startswith("problem:") and not GARBAGE.match(line)
    ]


def index_image_ids(root: Path) -> set[str]:
    """The image IDs (config digests) that the store's OCI index.json points at."""
    index = json.loads((root / "index.json").read_bytes())
    out = set()
    for desc in index["manifests"]:
        manifest = json.loads((root / "blobs" / "sha256" / desc["digest"][7:]).read_bytes())
        out.add(manifest["config"]["digest"])
    return out
