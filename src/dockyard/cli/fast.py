"""Fast paths for ``dockyard images`` and ``dockyard push`` (the console entry point).

Listing images is the command people run most and expect to be instant, so
plain ``images`` / ``image ls`` (with ``-a``, ``-q``, ``--no-trunc``,
``--digests``, ``--root``) is answered here without loading click or the
rest of the library. Anything else — filters, formats, a repository argument,
help — returns None and goes through the full command line, which prints the
same rows (tests/unit/test_cli_fast.py holds the two to each other).

``[--root DIR] push [-q] NAME[:TAG]`` into a registry that has every blob is
``dockyard.cli.fast_push`` (standard library only); it too hands anything else
to the full command line. ``DOCKYARD_NO_FAST=1`` turns every fast path off.
"""

from __future__ import annotations

import os
import sys

_FLAGS = {
    "-a": "all", "--all": "all", "-q": "quiet", "--quiet": "quiet",
    "--no-trunc": "no_trunc", "--digests": "digests",
}


def _familiar(repo: str) -> str:
    if repo.startswith("docker.io/"):
        repo = repo[len("docker.io/"):]
        if repo.startswith("library/") and repo.count("/") == 1:
            repo = repo[len("library/"):]
    return repo


def _root(explicit: str | None) -> str:
    if explicit:
        return explicit
    env = os.environ.get("DOCKYARD_ROOT")
    if env:
        return env
    if os.geteuid() == 0:
        return "/var/lib/dockyard"
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(xdg, "dockyard")


def _split_root(argv: list[str]) -> tuple[str | None, list[str]] | None:
    """Leading ``--root DIR`` / ``--root=DIR`` options and the rest of the command line."""
    root = None
    i = 0
    while i < len(argv) and argv[i].startswith("--root"):
        if argv[i] == "--root" and i + 1 < len(argv):
            root = argv[i + 1]
            i += 2
        elif argv[i].startswith("--root="):
            root = argv[i][len("--root="):]
            i += 1
        else:
            return None
    return root, argv[i:]


def _parse(argv: list[str]) -> tuple[str | None, set[str]] | None:
    split = _split_root(argv)
    if split is None:
        return None
    root, rest = split
    if rest[:1] == ["images"]:
        rest = rest[1:]
    elif rest[:2] in (["image", "ls"], ["image", "list"]):
        rest = rest[2:]
    else:
        return None
    flags: set[str] = set()
    for arg in rest:
        if arg in _FLAGS:
            flags.add(_FLAGS[arg])
        elif len(arg) > 2 and arg[0] == "-" and arg[1] != "-" and all(
            f"-{c}" in _FLAGS for c in arg[1:]
        ):
            flags.update(_FLAGS[f"-{c}"] for c in arg[1:])
        else:
            return None
    return root, flags


def rows(db_path: str, all_images: bool) -> list[tuple[str, float, int, str, str, str]]:
    """(id, created_ts, size, repository, tag, digest) exactly as ops.images.list_images."""
    import sqlite3

    if not os.path.exists(db_path):
        return []
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30.0)
    try:
        images = conn.execute("SELECT id, created_ts, size, parent FROM images").fetchall()
        tags: dict[str, list[tuple[str, str]]] = {}
        for image, repo, tag in conn.execute("SELECT image, repo, tag FROM tags"):
            tags.setdefault(image, []).append((repo, tag))
        digests: dict[str, dict[str, list[str]]] = {}
        for image, repo, digest in conn.execute("SELECT image, repo, digest FROM repo_digests"):
            digests.setdefault(image, {}).setdefault(repo, []).append(digest)
    finally:
        conn.close()
    parents = {p for _, _, _, p in images if p}
    out = []
    for image_id, created, size, _parent in images:
        image_tags = tags.get(image_id, [])
        image_digests = digests.get(image_id, {})
        if not image_tags and not image_digests:
            if all_images or image_id not in parents:
                out.append((image_id, created, size, "<none>", "<none>", "<none>"))
            continue
        tagged_repos = set()
        for repo, tag in sorted(image_tags):
            tagged_repos.add(repo)
            digest = (image_digests.get(repo) or ["<none>"])[0]
            out.append((image_id, created, size, _familiar(repo), tag, digest))
        for repo, repo_digests in image_digests.items():
            if repo in tagged_repos:
                continue
            for digest in repo_digests:
                out.append((image_id, created, size, _familiar(repo), "<none>", digest))
    out.sort(key=lambda r: (-r[1], r[3], r[4]))
    return out


def try_fast(argv: list[str]) -> int | None:
    parsed = _parse(argv)
    if parsed is None:
        split = _split_root(argv)
        if split is not None and split[1][:1] == ["push"]:
            from dockyard.cli.fast_push import try_push

            return try_push(_root(split[0]), split[1])
        return None
    root, flags = parsed
    listed = rows(os.path.join(_root(root), "dockyard.db"), "all" in flags)
    no_trunc = "no_trunc" in flags
    out = sys.stdout
    if "quiet" in flags:
        out.write("".join((r[0] if no_trunc else r[0][7:19]) + "\n" for r in listed))
        return 0
    import time

    from dockyard.cli.render import Table, human_size, time_ago

    now = time.time()
    table = Table()
    digests = "digests" in flags
    table.row(*(["REPOSITORY", "TAG"] + (["DIGEST"] if digests else [])
                + ["IMAGE ID", "CREATED", "SIZE"]))
    for image_id, created, size, repo, tag, digest in listed:
        table.row(*([repo, tag] + ([digest] if digests else [])
                    + [image_id if no_trunc else image_id[7:19], time_ago(created, now),
                       human_size(size)]))
    out.write(table.render())
    return 0


NO_FAST_ENV = "DOCKYARD_NO_FAST"


def main() -> None:
    code = None
    if os.environ.get(NO_FAST_ENV, "") in ("", "0"):
        try:
            code = try_fast(sys.argv[1:])
        except KeyboardInterrupt:
            sys.exit(130)  # as cli.errors.run
        except Exception:  # anything odd: the full CLI handles and reports it
            code = None
    if code is not None:
        sys.stdout.flush()
        os._exit(code)  # done and flushed: skip the interpreter's teardown (~3 ms)
    from dockyard.cli.main import main as full_main

    full_main()


if __name__ == "__main__":
    main()
