#!/usr/bin/env python3
"""Container benchmark: dockyard side by side with dockerd 20.10 and podman 4.3.

Measures commit of a container holding the 300 MB fat payload, load + first run
of the fat image, `run -d` / `run --rm true` latency and `ps` with 20 running
containers, and prints one table with the commit target marked PASS/FAIL.
Workloads, archives and isolated peers come from bench/store.py.  See
bench/README.md.

    .venv/bin/python bench/containers.py            # full run (root; ~10 minutes)
    .venv/bin/python bench/containers.py --quick    # 1 run, no warm-up, fewer samples
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import store  # noqa: E402  (bench/store.py: workloads, archives, peers, timing, table)
from store import (  # noqa: E402
    Archive,
    BenchError,
    Engine,
    Results,
    Sample,
    Target,
    fmt_size,
    fmt_time,
    fs_type,
    loadavg,
    log,
)

peers = store.peers  # type: ignore[attr-defined]  # tests/integration/peers.py
ENGINES = store.ENGINES
OPS = ("commit", "loadrun", "latency", "ps")
PS_CONTAINERS = 20


# --------------------------------------------------------------------------- #
# the engines of store.py, plus containers
# --------------------------------------------------------------------------- #


class ContainerVerbs(Engine):
    """Container verbs on top of store.py's engines (same flags on every engine)."""

    def run_args(
        self, image: str, *cmd: str, detach: bool = False, rm: bool = False,
        name: str | None = None, volumes: Sequence[str] = (),
    ) -> list[str]:  # fmt: skip
        args = ["run"]
        if detach:
            args.append("-d")
        if rm:
            args.append("--rm")
        if name:
            args += ["--name", name]
        args += ["--network", "none"]
        for v in volumes:
            args += ["-v", v]
        return [*args, image, *cmd]

    def commit_args(self, container: str, ref: str) -> list[str]:
        return ["commit", container, ref]

    def rm_args(self, ids: Sequence[str]) -> list[str]:
        return ["rm", "-f", *ids]

    def container_ids(self) -> list[str]:
        return self.run("ps", "-aq", "--no-trunc").split()

    def remove_containers(self) -> None:
        ids = self.container_ids()
        if ids:
            self.run(*self.rm_args(ids))
        left = self.container_ids()
        if left:
            raise BenchError(f"{self.name}: containers left after rm -f: {left}")

    def image_size(self, ref: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", ref).strip())


class Dockyard(ContainerVerbs, store.Dockyard):
    def __init__(self, workdir: Path) -> None:
        store.Dockyard.__init__(self, workdir)

    def reset(self) -> None:
        """rm -f every container, then a new empty --root (never rmtree a mount)."""
        if self.root.exists():
            self.remove_containers()
        if peers.mounts_under(self.stores):
            raise BenchError(f"dockyard: mounts left under {self.stores}: "
                             f"{peers.mounts_under(self.stores)}")  # fmt: skip
        store.Dockyard.reset(self)

    def close(self) -> None:
        if self.root.exists():
            self.remove_containers()
        if not peers.mounts_under(self.stores):
            shutil.rmtree(self.stores, ignore_errors=True)


class Docker(ContainerVerbs, store.Docker):
    def __init__(self, workdir: Path) -> None:
        store.Docker.__init__(self, workdir)

    def reset(self) -> None:
        """rm -f every container; then children before parents (a committed image
        is a child of its base, and `rmi -f` refuses a parent), then store.py's reset."""
        self.remove_containers()
        for _ in range(5):
            ids = sorted(set(self.run("images", "-aq", "--no-trunc").split()))
            if not ids:
                break
            for image_id in ids:  # one at a time: a parent fails until its child is gone
                subprocess.run(
                    self.argv("rmi", "-f", image_id), env=self.env, capture_output=True,
                    check=False,
                )  # fmt: skip
        store.Docker.reset(self)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.remove_containers()
        store.Docker.close(self)


class Podman(ContainerVerbs, store.Podman):
    def __init__(self, workdir: Path) -> None:
        store.Podman.__init__(self, workdir)

    def commit_args(self, container: str, ref: str) -> list[str]:
        return ["commit", "-q", container, ref]

    def rm_args(self, ids: Sequence[str]) -> list[str]:
        # -t 0: SIGKILL at once (sleep as PID 1 ignores SIGTERM; the default waits 10 s)
        return ["rm", "-f", "-t", "0", *ids]

    def reset(self) -> None:
        if self.instance is not None:
            self.remove_containers()
        store.Podman.reset(self)

    def close(self) -> None:
        if self.instance is not None:
            with contextlib.suppress(Exception):
                self.remove_containers()
        store.Podman.close(self)


MAKERS: dict[str, Callable[[Path], Engine]] = {
    "dockyard": Dockyard, "docker": Docker, "podman": Podman,
}  # fmt: skip


# --------------------------------------------------------------------------- #
# the benchmark
# --------------------------------------------------------------------------- #


@dataclass
class Bench:
    args: argparse.Namespace
    engines: dict[str, ContainerVerbs]
    results: Results
    archives: dict[str, Archive]
    out_dir: Path
    loads: list[str] = field(default_factory=list)

    def each(self) -> Iterator[ContainerVerbs]:
        for name in ENGINES:
            engine = self.engines.get(name)
            if engine is not None:
                yield engine

    def rounds(self, runs: int) -> Iterator[bool]:
        """counted? for the warm-up runs, then the counted runs."""
        yield from [False] * self.args.warmup + [True] * runs

    def section(self, what: str) -> None:
        self.loads.append(f"{what}: {loadavg()}")
        log(f"== {what} (load average {loadavg()})")

    def record(self, row: str, engine: ContainerVerbs, sample: Sample, counted: bool) -> None:
        log(f"{row}: {engine.name} {fmt_time(sample.seconds)}{'' if counted else ' (warm-up)'}")
        if counted:
            self.results.add_time(row, engine.name, sample.seconds)

    # -- 1. commit --------------------------------------------------------------

    def bench_commit(self, rows: dict[str, str]) -> None:
        """Per run and engine: empty store, load debian, run -d with the payload
        bind-mounted, exec cp -a it into the writable layer, then time commit."""
        self.section("commit")
        debian = self.archives["debian"]
        payload = self.args.payload
        for counted in self.rounds(self.args.runs):
            for engine in self.each():
                engine.reset()
                engine.run(*engine.load_args(debian.path))
                engine.run(*engine.run_args(
                    debian.ref, "sleep", "1000", detach=True, name="fat",
                    volumes=[f"{payload}:/src:ro"],
                ))  # fmt: skip
                cp = engine.timed("exec", "fat", "cp", "-a", "/src", "/payload")
                self.record(rows["cp"], engine, cp, counted)
                sample = engine.timed(*engine.commit_args("fat", "fat:committed"))
                self.record(rows["commit"], engine, sample, counted)
                if counted:
                    self.results.add_rss("commit", engine.name, sample.maxrss_kb)
                    size = engine.image_size("fat:committed")
                    base = engine.image_size(debian.ref)
                    self.results.sizes.setdefault("committed image", {})[engine.name] = size
                    self.results.sizes.setdefault("new layer", {})[engine.name] = size - base
                engine.remove_containers()

    # -- 2. load + first run ------------------------------------------------------

    def bench_load_run(self, rows: dict[str, str]) -> None:
        self.section("load + first run")
        fat = self.archives["fat"]
        for counted in self.rounds(self.args.runs):
            for engine in self.each():
                engine.reset()
                load = engine.timed(*engine.load_args(fat.path))
                run = engine.timed(*engine.run_args(fat.ref, "true", rm=True))
                self.record(rows["load"], engine, load, counted)
                self.record(rows["firstrun"], engine, run, counted)
                if counted:
                    self.results.add_time(rows["loadrun"], engine.name, load.seconds + run.seconds)
                    self.results.add_rss("load fat", engine.name, load.maxrss_kb)
                    self.results.add_rss("first run", engine.name, run.maxrss_kb)

    # -- 3. container start latency and ps ------------------------------------------

    def prepare_small(self) -> None:
        """Empty store + busybox and debian, each run once (dockyard unpacks lazily)."""
        for engine in self.each():
            engine.reset()
            for what in ("busybox", "debian"):
                arch = self.archives[what]
                engine.run(*engine.load_args(arch.path))
                engine.run(*engine.run_args(arch.ref, "true", rm=True))

    def bench_latency(self, rows: dict[str, str]) -> None:
        self.section("run latency")
        n = 0
        for counted in self.rounds(self.args.latency_runs):
            for what in ("busybox", "debian"):
                ref = self.archives[what].ref
                for engine in self.each():
                    n += 1
                    name = f"lat{n}"
                    d = engine.timed(*engine.run_args(ref, "sleep", "1000", detach=True, name=name))
                    self.record(rows[f"rund-{what}"], engine, d, counted)
                    r = engine.timed(*engine.run_args(ref, "true", rm=True))
                    self.record(rows[f"runrm-{what}"], engine, r, counted)
                    engine.run(*engine.rm_args([name]))

    def bench_ps(self, rows: dict[str, str]) -> None:
        self.section(f"ps with {PS_CONTAINERS} containers")
        ref = self.archives["busybox"].ref
        for engine in self.each():
            engine.remove_containers()
            for i in range(PS_CONTAINERS):
                engine.run(*engine.run_args(ref, "sleep", "1000", detach=True, name=f"ps{i:02d}"))
            listed = engine.run("ps", "-q").split()
            if len(listed) != PS_CONTAINERS:
                raise BenchError(f"{engine.name} ps lists {len(listed)}, not {PS_CONTAINERS}")
            times = store.hyperfine(
                engine.argv("ps"), engine.env, self.args.ps_runs, 3,
                self.out_dir / f"hyperfine-ps-{engine.name}.json",
            )  # fmt: skip
            for s in times:
                self.results.add_time(rows["ps"], engine.name, s)
            log(f"{rows['ps']}: {engine.name} median {fmt_time(statistics.median(times))}")
            engine.remove_containers()


# --------------------------------------------------------------------------- #
# command line
# --------------------------------------------------------------------------- #


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=3, help="counted runs of commit, load+run")
    p.add_argument("--warmup", type=int, default=None, help="warm-up runs (default 1)")
    p.add_argument(
        "--latency-runs", type=int, default=None,
        help="counted samples of each run -d / run --rm figure (default 10)",
    )  # fmt: skip
    p.add_argument("--ps-runs", type=int, default=None, help="hyperfine runs of ps (default 20)")
    p.add_argument(
        "--quick", action="store_true",
        help="1 run, no warm-up, 3 latency samples, 5 ps runs",
    )  # fmt: skip
    p.add_argument("--only", action="append", choices=OPS, default=None,
                   help="measure only this (repeatable)")  # fmt: skip
    p.add_argument("--engines", default=",".join(ENGINES),
                   help="comma-separated subset of dockyard,docker,podman")  # fmt: skip
    p.add_argument("--workdir", type=Path, default=store.DEFAULT_WORKDIR,
                   help=f"workloads and archives (default {store.DEFAULT_WORKDIR}); "
                   "stores and dockerd go to WORKDIR/containers")  # fmt: skip
    p.add_argument("--workloads-from", type=Path, default=store.SHARED_BENCH,
                   help="directory holding make.sh and gen_fat_payload.py")  # fmt: skip
    p.add_argument("--payload", type=Path, default=None,
                   help="directory written into the container before commit "
                   "(default WORKDIR/fat-payload)")  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the raw samples here")
    args = p.parse_args(argv)
    quick = args.quick
    if quick and "--runs" not in (argv if argv is not None else sys.argv):
        args.runs = 1
    if args.warmup is None:
        args.warmup = 0 if quick else 1
    if args.latency_runs is None:
        args.latency_runs = 3 if quick else 10
    if args.ps_runs is None:
        args.ps_runs = 5 if quick else 20
    args.engines = [e for e in args.engines.split(",") if e]
    if set(args.engines) - set(ENGINES) or "dockyard" not in args.engines:
        p.error(f"--engines: dockyard plus any of docker,podman (got {args.engines})")
    args.ops = tuple(args.only or OPS)
    return args


def source_state() -> str:
    """The checkout dockyard runs from: HEAD and how many files under src/ differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(store.REPO), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    changed = len(git("status", "--porcelain", "--", "src").splitlines())
    return f"dockyard source: git {head}, {changed} file(s) under src/ changed or new"


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def print_report(
    args: argparse.Namespace, results: Results, rows: dict[str, str], payload: Path,
    elapsed: float, bench: Bench,
) -> None:  # fmt: skip
    print()
    print(
        f"dockyard container benchmark: median of {args.runs} run(s) (commit, load+run) and "
        f"{args.latency_runs} samples (run latency) after {args.warmup} warm-up run(s); "
        f"ps: median of {args.ps_runs} hyperfine runs (3 warm-up); took {elapsed:.0f} s"
    )
    for line in results.info:
        print(f"  {line}")
    print(f"  load average (1/5/15 min) at the start of each part: {'; '.join(bench.loads)}")
    print(f"  commit payload: {payload} ({fmt_size(dir_size(payload))}), written with "
          "`exec fat cp -a /src /payload` from a read-only bind mount")  # fmt: skip
    print()
    targets = [Target(rows["commit"], "commit <= 0.5x docker", "docker", 0.5)]
    order = ["commit", "cp", "load", "firstrun", "loadrun"]
    order += ["rund-busybox", "runrm-busybox", "rund-debian", "runrm-debian", "ps"]
    store.print_table(results, [rows[k] for k in order], targets)
    if results.sizes:
        print("\ncommitted image sizes (`image inspect --format {{.Size}}`; new layer = that")
        print("minus the size of bench/debian:latest):")
        for what in ("committed image", "new layer"):
            per = results.sizes.get(what, {})
            print(f"  {what:16} " + ", ".join(f"{k} {fmt_size(v)} ({v} B)" for k, v in per.items()))
    if results.rss:
        print("\npeak RSS (GNU time %M of the CLI process, max over counted runs; docker's")
        print("work is done in dockerd, its client's RSS is not shown):")
        for what, rss in results.rss.items():
            cells = [f"{k} {fmt_size(max(v) * 1024)}" for k, v in rss.items() if k != "docker"]
            print(f"  {what:10} " + ", ".join(cells))
    print()
    print("notes:")
    print("  - every container runs with --network none; stores are emptied before every")
    print("    commit and load+run run (docker: rm -f + rmi -f + image prune, one dockerd;")
    print("    dockyard and podman: a new --root).")
    print("  - commit uses each engine's default pause: docker and dockyard pause the")
    print("    container while committing, podman 4.3 does not (--pause=false).")
    print("  - dockyard `load` only stores the layer tars; the layers are unpacked at the")
    print("    first `run` (the first-run row); docker and podman unpack at load.")
    print("  - every timed command is preceded by an untimed sync(2); the page cache is not")
    print("    dropped.")
    for key, note in results.notes.items():
        print(f"  - {key}: {note}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if os.geteuid() != 0:
        print("containers.py needs root (runc, dockerd, podman --root)", file=sys.stderr)
        return 2
    workdir: Path = args.workdir.resolve()
    work = store.ensure_workloads(workdir, ["busybox", "debian", "fat"], args.workloads_from)
    archives, _ = store.base_archives(workdir, work, quick=False)
    payload: Path = (args.payload or work["fat"]).resolve()
    args.payload = payload
    run_dir = workdir / "containers"
    out_dir = run_dir / "out"
    out_dir.mkdir(parents=True, exist_ok=True)

    results = Results()
    results.info.append(
        f"host: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"kernel {platform.release()}, work dir {workdir} ({fs_type(workdir)})"
    )
    results.info.append(source_state())
    rows = {
        "commit": "commit fat container",
        "cp": "(setup) exec cp -a payload",
        "load": "load fat.tar (empty store)",
        "firstrun": "first run --rm fat true",
        "loadrun": "load + first run fat",
        "rund-busybox": "run -d busybox",
        "runrm-busybox": "run --rm busybox true",
        "rund-debian": "run -d debian",
        "runrm-debian": "run --rm debian true",
        "ps": f"ps ({PS_CONTAINERS} running)",
    }
    started: dict[str, Engine] = {}
    engines: dict[str, ContainerVerbs] = {}
    bench = Bench(args, engines, results, archives, out_dir)
    t_start = time.monotonic()
    try:
        store.start_engines(args.engines, run_dir, results, started, MAKERS)
        engines.update({k: v for k, v in started.items() if isinstance(v, ContainerVerbs)})
        if "commit" in args.ops:
            bench.bench_commit(rows)
        if "loadrun" in args.ops:
            bench.bench_load_run(rows)
        if {"latency", "ps"} & set(args.ops):
            bench.prepare_small()
            if "latency" in args.ops:
                bench.bench_latency(rows)
            if "ps" in args.ops:
                bench.bench_ps(rows)
    finally:
        for engine in started.values():
            try:
                engine.close()
            except Exception as e:  # keep closing the others
                log(f"closing {engine.name}: {e}")
        left = peers.mounts_under(run_dir)
        if left:
            log(f"NOT removing {run_dir}: still mounted: {left}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    elapsed = time.monotonic() - t_start
    results.info.append(f"load average at the end: {loadavg()}")
    print_report(args, results, rows, payload, elapsed, bench)
    if args.json:
        args.json.write_text(json.dumps(
            {"times": results.times, "rss_kb": results.rss, "sizes": results.sizes,
             "info": results.info, "notes": results.notes, "loadavg": bench.loads},
            indent=2,
        ))  # fmt: skip
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"containers.py: {e}", file=sys.stderr)
        sys.exit(1)
