#!/usr/bin/env python3
"""Registry benchmark: dockyard's registry side by side with Debian's distribution 2.8.

The same clients against both registries in one run, on 127.0.0.1 only:
skopeo push of the 2-layer fat image (docker-archive -> registry) and pull back
(registry -> oci: layout), then wrk throughput of manifest GET by tag, small
blob GET (the config) and large blob GET (the biggest layer).  Prints one table
with the target (throughput >= 1.0x distribution's) marked PASS/FAIL.  See
bench/README.md.

    .venv/bin/python bench/registry.py              # 3 runs (~8 min)
    .venv/bin/python bench/registry.py --runs 1 --only throughput
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# bench/ (store.py) and tests/integration (the tests' registry server, peers.py)
sys.path[:0] = [str(HERE), str(HERE.parent / "tests" / "integration")]
import store  # noqa: E402  (bench/store.py: workloads, archives, timing, formatting)
from registry_server import RegistryServer, free_port  # noqa: E402
from store import BenchError, fmt_size, fmt_time, fs_type, loadavg, log  # noqa: E402

REGISTRIES = ("dockyard", "distribution")
OPS = ("push", "pull", "throughput")
DISTRIBUTION_BIN = "/usr/bin/docker-registry"
SKOPEO = "skopeo"
WRK = "wrk"
MANIFEST_ACCEPT = (
    "application/vnd.docker.distribution.manifest.v2+json,"
    "application/vnd.oci.image.manifest.v1+json"
)
# wrk calls done() once at the end with its totals: print them as one JSON line
WRK_REPORT_LUA = """
done = function(summary, latency, requests)
  io.write(string.format(
    'BENCH-RESULT {"duration_us": %d, "requests": %d, "bytes": %d, "connect": %d, '
    .. '"read": %d, "write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.duration, summary.requests, summary.bytes, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


# --------------------------------------------------------------------------- #
# the two registries: started by us, stopped by PID
# --------------------------------------------------------------------------- #


class DockyardRegistry(RegistryServer):
    """`dockyard registry serve --addr 127.0.0.1:PORT --data DIR` (no auth)."""

    name = "dockyard"

    def describe(self) -> str:
        argv, env = store.peers.dockyard_command()
        version = subprocess.run(
            [*argv, "--version"], env=env, capture_output=True, text=True, check=False
        ).stdout.strip()
        extra = f" {' '.join(self.args)}" if self.args else " (default workers)"
        return f"{version}: {' '.join(argv)} registry serve{extra}"


class DistributionRegistry(RegistryServer):
    """Debian's docker-registry (distribution 2.8) under `env -i`, with its own YAML
    config: filesystem storage in our data dir, 127.0.0.1:PORT, delete enabled."""

    name = "distribution"

    def config_text(self) -> str:
        # the stock Debian config (/etc/docker/registry/config.yml) minus htpasswd
        # auth and the storage health check, plus the log level and access log of
        # dockyard's defaults (warning, no access log)
        return (
            "version: 0.1\n"
            "log:\n"
            "  level: warn\n"
            "  accesslog:\n"
            "    disabled: true\n"
            "storage:\n"
            "  cache:\n"
            "    blobdescriptor: inmemory\n"
            "  filesystem:\n"
            f"    rootdirectory: {self.data}\n"
            "  delete:\n"
            "    enabled: true\n"
            "http:\n"
            f"  addr: {self.host}\n"
            "  headers:\n"
            "    X-Content-Type-Options: [nosniff]\n"
        )

    def start(self) -> DistributionRegistry:
        self.data.mkdir(parents=True, exist_ok=True)
        config = self.data.with_name(self.data.name + ".yml")
        for _attempt in range(3):  # a port taken between free_port() and bind: try another
            self.port = free_port()
            config.write_text(self.config_text())
            with self.log.open("ab") as logf:
                self.proc = subprocess.Popen(
                    ["env", "-i", DISTRIBUTION_BIN, "serve", str(config)],
                    stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                    start_new_session=True, cwd=self.data,
                )  # fmt: skip
            if self._wait_ready():
                return self
            self.stop()
        raise BenchError(f"docker-registry did not start; log:\n{self.log.read_text()[-4000:]}")

    def describe(self) -> str:
        version = subprocess.run(
            [DISTRIBUTION_BIN, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        return f"{version} (env -i, own YAML config, no auth, log level warn, no access log)"


@dataclass
class Endpoint:
    """One registry process and what it holds: a fresh data dir per start."""

    server: RegistryServer
    base: Path
    count: int = 0
    repo: str = ""
    tag: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.server.name)  # type: ignore[attr-defined]

    def fresh(self) -> None:
        """Stop the server, start it again on an empty data dir and a new port."""
        self.server.stop()
        if self.server.data.exists():
            shutil.rmtree(self.server.data)
        self.count += 1
        self.server.data = self.base / f"{self.name}-{self.count}"
        self.server.log = self.base / f"{self.name}-{self.count}.log"
        self.server.start()
        self.repo, self.tag, self.manifest = "", "", {}

    def url(self, path: str) -> str:
        return f"{self.server.url}{path}"

    def get(self, path: str, accept: str | None = None) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.url(path), headers={"Accept": accept} if accept else {})
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()


# --------------------------------------------------------------------------- #
# clients: skopeo and wrk
# --------------------------------------------------------------------------- #


def client_env(home: Path) -> dict[str, str]:
    """skopeo's environment: our HOME, an empty auth file, temp files in the work dir."""
    home.mkdir(parents=True, exist_ok=True)
    auth = home / "auth.json"
    auth.write_text('{"auths": {}}\n')
    tmp = home / "tmp"
    tmp.mkdir(exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": str(home),
        "REGISTRY_AUTH_FILE": str(auth),
        "TMPDIR": str(tmp),
    }


def push_argv(archive: Path, ep: Endpoint, repo: str, tag: str) -> list[str]:
    return [
        SKOPEO, "copy", "--dest-tls-verify=false", "--insecure-policy",
        f"docker-archive:{archive}", f"docker://{ep.server.host}/{repo}:{tag}",
    ]  # fmt: skip


def pull_argv(ep: Endpoint, dest: Path) -> list[str]:
    return [
        SKOPEO, "copy", "--src-tls-verify=false", "--insecure-policy",
        f"docker://{ep.server.host}/{ep.repo}:{ep.tag}", f"oci:{dest}",
    ]  # fmt: skip


@dataclass(frozen=True)
class WrkResult:
    seconds: float
    requests: int
    bytes: int
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    wrk_cpu: float  # CPU seconds of wrk itself (user + system)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def mbps(self) -> float:
        return self.bytes / self.seconds / 1e6


def run_wrk(
    url: str, args: argparse.Namespace, seconds: float, script: Path, headers: Sequence[str] = ()
) -> WrkResult:
    argv = [
        WRK, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds:g}s",
        "--timeout", f"{args.wrk_timeout:g}s", "-s", str(script),
    ]  # fmt: skip
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH-RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise BenchError(f"wrk failed (exit {proc.returncode}): {argv}\n{proc.stdout}{proc.stderr}")
    d = json.loads(line.removeprefix("BENCH-RESULT "))
    errors = {k: d[k] for k in ("connect", "read", "write", "status", "timeout") if d[k]}
    return WrkResult(
        d["duration_us"] / 1e6, d["requests"], d["bytes"], errors,
        d["p50_us"] / 1000, d["p99_us"] / 1000, wrk_cpu,
    )  # fmt: skip


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system, own and reaped children's) of every process in a
    process group: a registry server and its workers (each started as a group leader)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid:  # state ppid pgrp ... utime(11) stime cutime cstime
            total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def ensure_wrk() -> None:
    if shutil.which(WRK):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BenchError("wrk is missing (apt-get install -y wrk)")
    log("wrk missing: apt-get install -y wrk")
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)


# --------------------------------------------------------------------------- #
# the benchmark
# --------------------------------------------------------------------------- #


@dataclass
class Results:
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # row -> registry
    # row -> registry -> [(server CPUs busy, wrk CPUs busy)] during the measured wrk runs
    cpu: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)
    info: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: str, registry: str, value: float) -> None:
        self.values.setdefault(row, {}).setdefault(registry, []).append(value)

    def add_cpu(self, row: str, registry: str, server: float, wrk: float) -> None:
        self.cpu.setdefault(row, {}).setdefault(registry, []).append((server, wrk))

    def median(self, row: str, registry: str) -> float | None:
        v = self.values.get(row, {}).get(registry)
        return statistics.median(v) if v else None


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str  # "s" (lower is better) or "req/s", "MB/s" (higher is better)
    target: float | None = None  # dockyard / distribution >= target

    def fmt(self, value: float | None) -> str:
        if value is None:
            return "n/a"
        if self.unit == "s":
            return fmt_time(value)
        if self.unit == "MB/s":
            return f"{value:,.0f} MB/s"
        return f"{value:,.0f} req/s"


def orders(n: int) -> Iterator[tuple[int, Sequence[str]]]:
    """Run numbers, and which registry goes first in each (alternating)."""
    for i in range(n):
        yield i, REGISTRIES if i % 2 == 0 else tuple(reversed(REGISTRIES))


class Bench:
    def __init__(
        self, args: argparse.Namespace, archive: Path, eps: dict[str, Endpoint], results: Results,
        work: Path,
    ) -> None:  # fmt: skip
        self.args, self.archive, self.eps, self.results, self.work = (
            args, archive, eps, results, work,
        )  # fmt: skip
        self.env = client_env(work / "client-home")
        self.script = work / "report.lua"
        self.script.write_text(WRK_REPORT_LUA)

    def push(self, ep: Endpoint, run: int, counted: bool, pull: bool) -> None:
        """Empty registry (new data dir and port), skopeo push, then pull back into oci:."""
        ep.fresh()
        repo, tag = f"bench/fat-r{run}", str(run)
        sample = store.timed(push_argv(self.archive, ep, repo, tag), self.env, f"{ep.name} push")
        ep.repo, ep.tag = repo, tag
        status, _, body = ep.get(f"/v2/{repo}/manifests/{tag}", MANIFEST_ACCEPT)
        ep.manifest = json.loads(body)
        if status != 200 or len(ep.manifest.get("layers", ())) != 2:
            raise BenchError(f"{ep.name}: unexpected manifest after push: {body[:500]!r}")
        msg = f"run {run}: {ep.name} push {fmt_time(sample.seconds)}"
        if counted:
            self.results.add("push", ep.name, sample.seconds)
        if pull:
            dest = self.work / f"pull-{ep.name}"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            got = store.timed(pull_argv(ep, dest), self.env, f"{ep.name} pull")
            if not (dest / "index.json").exists():
                raise BenchError(f"{ep.name}: pull left no oci index.json in {dest}")
            shutil.rmtree(dest)
            msg += f", pull {fmt_time(got.seconds)}"
            if counted:
                self.results.add("pull", ep.name, got.seconds)
        log(msg + ("" if counted else " (setup, not counted)"))

    def targets(self, ep: Endpoint) -> dict[str, tuple[str, list[str], int]]:
        """row -> (url, headers, expected body size), checked with one GET each."""
        m = ep.manifest
        config = m["config"]
        layer = max(m["layers"], key=lambda la: la["size"])
        out = {
            "manifest": (f"/v2/{ep.repo}/manifests/{ep.tag}", [f"Accept: {MANIFEST_ACCEPT}"], -1),
            "config": (f"/v2/{ep.repo}/blobs/{config['digest']}", [], config["size"]),
            "layer": (f"/v2/{ep.repo}/blobs/{layer['digest']}", [], layer["size"]),
        }
        checked = {}
        for key, (path, headers, size) in out.items():
            accept = MANIFEST_ACCEPT if headers else None
            if key == "layer":  # no need to read 200 MB: check status and length
                req = urllib.request.Request(ep.url(path), method="HEAD")
                with urllib.request.urlopen(req, timeout=60) as r:
                    status, length = r.status, int(r.headers["Content-Length"])
            else:
                status, _, body = ep.get(path, accept)
                length = len(body)
            if status != 200 or (size >= 0 and length != size):
                raise BenchError(f"{ep.name}: GET {path}: status {status}, {length} bytes")
            checked[key] = (ep.url(path), headers, length)
        return checked

    def throughput(self, rows: dict[str, Row]) -> None:
        urls = {name: self.targets(ep) for name, ep in self.eps.items()}
        sizes = {k: v[2] for k, v in urls["dockyard"].items()}
        self.results.info.append(
            f"throughput targets: manifest {sizes['manifest']} B (by tag), config blob "
            f"{sizes['config']} B, largest layer blob {fmt_size(sizes['layer'])} "
            f"({sizes['layer']} B, gzip as skopeo pushed it)"
        )
        a = self.args
        for run, order in orders(a.runs):
            for key in ("manifest", "config", "layer"):
                for name in order:
                    url, headers, _ = urls[name][key]
                    run_wrk(url, a, a.warmup_seconds, self.script, headers)  # warm-up
                    proc = self.eps[name].server.proc
                    assert proc is not None
                    cpu0 = group_cpu(proc.pid)
                    r = run_wrk(url, a, a.duration, self.script, headers)
                    server_cpu = group_cpu(proc.pid) - cpu0
                    value = r.mbps if key == "layer" else r.rps
                    self.results.add(key, name, value)
                    self.results.add_cpu(key, name, server_cpu / r.seconds, r.wrk_cpu / r.seconds)
                    if r.errors:
                        self.results.notes.append(
                            f"run {run} {rows[key].label}, {name}: wrk errors {r.errors}"
                        )
                    log(
                        f"run {run}: {name} {key}: {rows[key].fmt(value)} "
                        f"({r.requests} requests, {fmt_size(r.bytes)} in {r.seconds:.2f} s, "
                        f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms; CPU server "
                        f"{server_cpu / r.seconds:.2f}, wrk {r.wrk_cpu / r.seconds:.2f}"
                        f"{', errors ' + str(r.errors) if r.errors else ''})"
                    )


def print_lines(lines: Sequence[Sequence[str]], left: Sequence[int] = (0,)) -> None:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for n, line in enumerate(lines):
        print(
            "  ".join(
                c.ljust(w) if i in left else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def print_table(results: Results, rows: Sequence[Row]) -> None:
    lines = [["operation", "dockyard", "distribution", "ratio", "target"]]
    for row in rows:
        if row.key not in results.values:
            continue
        dy = results.median(row.key, "dockyard")
        dist = results.median(row.key, "distribution")
        ratio = dy / dist if dy is not None and dist else None
        if row.target is None:
            target = "- (time: lower is better)"
        elif ratio is None:
            target = f">= {row.target:.1f}x  -"
        else:
            target = f">= {row.target:.1f}x  {'PASS' if ratio >= row.target else 'FAIL'}"
        lines.append(
            [row.label, row.fmt(dy), row.fmt(dist), f"{ratio:.2f}x" if ratio else "-", target]
        )
    print_lines(lines, left=(0, 4))


def print_cpu(results: Results, rows: Sequence[Row]) -> None:
    """CPUs kept busy (CPU seconds / wall second) during the measured wrk runs, median."""
    if not results.cpu:
        return
    print()
    print("CPUs busy during the measured wrk runs (CPU s per s, median; the machine has")
    print(f"{os.cpu_count()}): the server's process group, and wrk itself")
    lines = [["operation", "dockyard", "wrk", "distribution", "wrk"]]
    for row in rows:
        per = results.cpu.get(row.key)
        if not per:
            continue
        cells = [row.label]
        for name in REGISTRIES:
            samples = per.get(name, [])
            for i in (0, 1):
                values = [s[i] for s in samples]
                cells.append(f"{statistics.median(values):.2f}" if values else "-")
        lines.append(cells)
    print_lines(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=3, help="counted runs per figure (median)")
    p.add_argument(
        "--only", action="append", choices=OPS, default=None,
        help="measure only this (repeatable; throughput alone still pushes once, untimed)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--duration", type=float, default=10, help="wrk seconds per figure")
    p.add_argument("--warmup-seconds", type=float, default=2, help="wrk warm-up before each")
    p.add_argument(
        "--wrk-timeout", type=float, default=60,
        help="wrk --timeout: a 200 MB response over 32 connections takes seconds",
    )  # fmt: skip
    p.add_argument(
        "--dockyard-workers", type=int, default=None,
        help="`registry serve --workers N` (default: dockyard's own default)",
    )  # fmt: skip
    p.add_argument(
        "--workdir", type=Path, default=store.DEFAULT_WORKDIR,
        help=f"workloads and archives (store.py's cache; default {store.DEFAULT_WORKDIR}); "
        "the registries' data go to WORKDIR/registry, removed at the end",
    )  # fmt: skip
    p.add_argument(
        "--workloads-from", type=Path, default=store.SHARED_BENCH,
        help="directory holding make.sh and gen_fat_payload.py (to build a missing fat.tar)",
    )  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the raw samples here")
    args = p.parse_args(argv)
    args.ops = tuple(args.only or OPS)
    if args.runs < 1:
        p.error("--runs must be >= 1")
    return args


def fat_archive(workdir: Path, source: Path) -> Path:
    """store.py's fat.tar, built (make.sh + the hand-made docker-archive) if missing."""
    path = workdir / "archives" / "fat.tar"
    key = path.with_name("fat.tar.key")
    if path.exists() and key.exists():
        return path
    log("fat.tar missing: building it with bench/store.py's workload and archive helpers")
    work = store.ensure_workloads(workdir, ["busybox", "debian", "fat"], source)
    archives, big = store.base_archives(workdir, work, quick=False)
    return archives[big].path


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # a SIGTERM unwinds like Ctrl-C, so the finally below stops the registries by PID
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    for tool in (SKOPEO, DISTRIBUTION_BIN):
        if not shutil.which(tool):
            raise BenchError(f"{tool} is missing (Debian packages skopeo, docker-registry)")
    if "throughput" in args.ops:
        ensure_wrk()
    workdir: Path = args.workdir.resolve()
    archive = fat_archive(workdir, args.workloads_from)
    log(f"reading {archive} once (page cache) before timing")
    with archive.open("rb") as f:
        while f.read(1 << 20):
            pass

    regdir = workdir / "registry"
    shutil.rmtree(regdir, ignore_errors=True)
    regdir.mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=regdir))
    results = Results()
    results.info.append(
        f"host: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"kernel {platform.release()}, data dirs under {regdir} ({fs_type(regdir)})"
    )
    results.info.append(
        f"image: {archive} ({fmt_size(archive.stat().st_size)}, 2 layers, uncompressed "
        "docker-archive made by store.py)"
    )
    dy_args = ("--workers", str(args.dockyard_workers)) if args.dockyard_workers else ()
    eps = {
        "dockyard": Endpoint(DockyardRegistry(regdir / "dockyard-0", *dy_args), regdir),
        "distribution": Endpoint(DistributionRegistry(regdir / "distribution-0"), regdir),
    }
    for ep in eps.values():
        results.info.append(f"{ep.name}: {ep.server.describe()}")  # type: ignore[attr-defined]
    skopeo_v = subprocess.run([SKOPEO, "--version"], capture_output=True, text=True).stdout
    results.info.append(
        f"clients: {skopeo_v.strip()} (default compression: gzip), wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration:g}s after a {args.warmup_seconds:g} s warm-up"
    )
    rows = [
        Row("push", "push fat (skopeo docker-archive: -> docker://)", "s"),
        Row("pull", "pull fat (skopeo docker:// -> oci:, empty dir)", "s"),
        Row("manifest", "manifest GET by tag", "req/s", 1.0),
        Row("config", "small blob GET (config)", "req/s", 1.0),
        Row("layer", "large blob GET (biggest layer)", "MB/s", 1.0),
    ]
    t_start = time.monotonic()
    load_start = loadavg()
    bench = Bench(args, archive, eps, results, work)
    try:
        if args.ops != ("throughput",):
            for run, order in orders(args.runs):
                for name in order:
                    bench.push(eps[name], run, "push" in args.ops, "pull" in args.ops)
        else:
            for name in REGISTRIES:
                bench.push(eps[name], 0, False, False)
        if "throughput" in args.ops:
            bench.throughput({r.key: r for r in rows})
    finally:
        for ep in eps.values():
            with contextlib.suppress(Exception):
                ep.server.stop()  # by PID: SIGTERM, then SIGKILL of its process group
        shutil.rmtree(regdir, ignore_errors=True)
    load_end = loadavg()
    elapsed = time.monotonic() - t_start

    print()
    print(
        f"dockyard registry benchmark: median of {args.runs} run(s); benchmark took {elapsed:.0f} s"
    )
    for line in results.info:
        print(f"  {line}")
    print(f"  load average (1/5/15 min): at start {load_start}, at end {load_end}")
    print()
    print_table(results, rows)
    print_cpu(results, rows)
    print()
    print("ratio = dockyard / distribution (times: lower is better; throughput: higher is")
    print("better, target >= 1.0x). MB = 10^6 bytes; MB/s = bytes wrk read / wrk's duration.")
    print("notes:")
    print("  - every push goes into an empty registry (new data dir and port): skopeo's blob")
    print("    info cache as root (/var/lib/containers/cache) would otherwise turn the next")
    print("    push into cross-repository mounts.")
    print("  - push time is mostly skopeo gzip-compressing the layers (same for both).")
    print("  - dockyard fsyncs every blob it stores; distribution does not.")
    for note in results.notes:
        print(f"  - {note}")
    if args.json:
        args.json.write_text(
            json.dumps({"values": results.values, "cpu": results.cpu, "info": results.info,
                        "notes": results.notes, "load_average": [load_start, load_end]},
                       indent=2)
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"registry.py: {e}", file=sys.stderr)
        sys.exit(1)
