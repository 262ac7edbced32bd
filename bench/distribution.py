#!/usr/bin/env python3
"""Distribution benchmark: push and pull of the fat image, dockyard beside docker, podman
and skopeo, all against the same registry: Debian's distribution 2.8 (``docker-registry``),
dockyard's own (``dockyard registry serve``), or each of them in turn.

Measures the first push into an empty registry (gzip, and zstd where the client can),
the push again into a registry that has every blob, and the pull into an empty local
store, every client in the same run, and prints one table per registry with the targets
of issue 5 marked PASS/FAIL.  See bench/README.md.

    sudo .venv/bin/python bench/distribution.py            # 1 warm-up + 3 counted runs
    sudo .venv/bin/python bench/distribution.py --quick    # debian+busybox, 1 run
    sudo .venv/bin/python bench/distribution.py --registry dockyard
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests" / "integration")]
import registry as regbench  # noqa: E402  (bench/registry.py: the distribution 2.8 server)
import store  # noqa: E402  (bench/store.py: workloads, archives, peers, timing, formatting)
from registry_server import RegistryServer  # noqa: E402  (tests/integration)
from store import (  # noqa: E402
    Archive,
    BenchError,
    Engine,
    Results,
    Sample,
    fmt_size,
    fmt_time,
    fs_type,
    loadavg,
    log,
)

peers = store.peers  # type: ignore[attr-defined]  # tests/integration/peers.py
CLIENTS = ("dockyard", "docker", "podman", "skopeo")
PEERS = CLIENTS[1:]
OPS = ("push", "zstd", "again", "pull")
REGISTRIES = ("distribution", "dockyard")  # table order
SERVERS: dict[str, Callable[[Path], RegistryServer]] = {
    "distribution": regbench.DistributionRegistry,  # env -i docker-registry serve CONFIG.yml
    "dockyard": regbench.DockyardRegistry,  # dockyard registry serve --addr --data (no flags)
}
LOCAL_REF = "bench/fat:latest"  # store.py's fat.tar (and the --quick stand-in) is retagged


# --------------------------------------------------------------------------- #
# clients: "the image is in my local store", push it, pull it
# --------------------------------------------------------------------------- #


class Client(Engine):
    """What every client does; each engine of store.py plus skopeo implements it."""

    compressions: tuple[str, ...] = ("gzip",)

    def prepare(self, archive: Archive) -> None:
        """Empty store, then the archive's image in it as LOCAL_REF (untimed)."""
        raise NotImplementedError

    def push_args(self, remote: str, compression: str) -> list[str]:
        """Untimed set-up (tagging) may run here; returns the timed command's args."""
        raise NotImplementedError

    def pull_args(self, remote: str) -> list[str]:
        raise NotImplementedError

    def pulled_layers(self, remote: str) -> list[str]:
        """The diff_ids of what a pull stored, to check it (configs may be converted:
        skopeo to oci: writes an OCI config, so image IDs can differ)."""
        raise NotImplementedError


class StoreClient(Client):
    """A client with a docker-like CLI and image store: dockyard, docker, podman."""

    def prepare(self, archive: Archive) -> None:
        self.reset()
        self.run("load", "-q", "-i", archive.path)
        if archive.ref != LOCAL_REF:
            self.run("tag", archive.ref, LOCAL_REF)

    def pulled_layers(self, remote: str) -> list[str]:
        out = self.run("image", "inspect", "--format", "{{json .RootFS.Layers}}", remote)
        layers: list[str] = json.loads(out)
        return layers


class DockyardClient(StoreClient, store.Dockyard):
    compressions = ("gzip", "zstd")

    def push_args(self, remote: str, compression: str) -> list[str]:
        self.run("tag", LOCAL_REF, remote)
        flags = ["--compression-format", compression] if compression != "gzip" else []
        return ["push", "-q", *flags, remote]

    def pull_args(self, remote: str) -> list[str]:
        return ["pull", "-q", remote]


class DockerClient(StoreClient, store.Docker):
    def push_args(self, remote: str, compression: str) -> list[str]:
        self.run("tag", LOCAL_REF, remote)
        return ["push", "-q", remote]

    def pull_args(self, remote: str) -> list[str]:
        return ["pull", "-q", remote]


class PodmanClient(StoreClient, store.Podman):
    compressions = ("gzip", "zstd")

    def push_args(self, remote: str, compression: str) -> list[str]:
        return [
            "push", "-q", "--tls-verify=false", "--compression-format", compression,
            LOCAL_REF, f"docker://{remote}",
        ]  # fmt: skip

    def pull_args(self, remote: str) -> list[str]:
        return ["pull", "-q", "--tls-verify=false", f"docker://{remote}"]


class SkopeoClient(Client):
    """skopeo's "local store" is an OCI layout directory (uncompressed layers, as
    `skopeo copy docker-archive: oci:` leaves them); a pull goes to an empty one."""

    name = "skopeo"
    compressions = ("gzip", "zstd")

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "skopeo"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.peer = peers.Skopeo(self.dir)
        self.layout = self.dir / "layout-0"
        self.count = 0

    def reset(self) -> None:
        shutil.rmtree(self.layout, ignore_errors=True)
        self.count += 1
        self.layout = self.dir / f"layout-{self.count}"

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        return [
            "skopeo", "--policy", str(self.peer.policy),
            "--registries.d", str(self.dir / "registries.d"), "--tmpdir", str(self.dir / "tmp"),
            *map(str, args),
        ]  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        env: dict[str, str] = self.peer._env
        return env

    def describe(self) -> str:
        version = self.run("--version").strip()
        return f"{version}, local store = an oci: layout dir, --policy/--tmpdir/HOME of its own"

    def prepare(self, archive: Archive) -> None:
        self.reset()
        self.run("copy", "--quiet", f"docker-archive:{archive.path}", f"oci:{self.layout}:latest")

    def push_args(self, remote: str, compression: str) -> list[str]:
        flags = ["--dest-compress-format", compression] if compression != "gzip" else []
        return [
            "copy", "--quiet", "--dest-tls-verify=false", *flags,
            f"oci:{self.layout}:latest", f"docker://{remote}",
        ]  # fmt: skip

    def pull_args(self, remote: str) -> list[str]:
        return [
            "copy", "--quiet", "--src-tls-verify=false", f"docker://{remote}",
            f"oci:{self.layout}:latest",
        ]  # fmt: skip

    def pulled_layers(self, remote: str) -> list[str]:
        def blob(digest: str) -> Any:
            path = self.layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
            return json.loads(path.read_text())

        index = json.loads((self.layout / "index.json").read_text())
        manifest = blob(index["manifests"][0]["digest"])
        layers: list[str] = blob(manifest["config"]["digest"])["rootfs"]["diff_ids"]
        return layers

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


MAKERS: dict[str, Callable[[Path], Engine]] = {
    "dockyard": DockyardClient, "docker": DockerClient, "podman": PodmanClient,
    "skopeo": SkopeoClient,
}  # fmt: skip


# --------------------------------------------------------------------------- #
# the benchmark
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Row:
    key: str  # "<op>@<registry>"
    label: str
    registry: str


def row_key(op: str, registry: str) -> str:
    return f"{op}@{registry}"


@dataclass
class Bench:
    args: argparse.Namespace
    archive: Archive
    clients: dict[str, Client]
    results: Results
    regdir: Path
    rows: dict[str, Row]
    loads: dict[str, list[float]] = field(default_factory=dict)  # row -> 1-min load averages
    samples: list[dict[str, object]] = field(default_factory=list)  # raw, for --json
    skipped: set[tuple[str, str]] = field(default_factory=set)  # (row, client) that failed
    ports: set[int] = field(default_factory=set)

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.archive.images[0].layers]

    def endpoint(self, registry: str, tag: str) -> regbench.Endpoint:
        server = SERVERS[registry](self.regdir / f"{registry}-{tag}-0")
        return regbench.Endpoint(server, self.regdir / f"{registry}-{tag}")

    def fresh(self, ep: regbench.Endpoint) -> None:
        """A new empty data dir and a port never used before in this run (podman's and
        skopeo's blob-info cache, docker's v2 metadata and dockyard's layer_sources
        remember blobs per registry host:port: a known host would mean no upload)."""
        while True:
            ep.fresh()
            if ep.server.port not in self.ports:
                self.ports.add(ep.server.port)
                return

    def rounds(
        self, eps: dict[str, regbench.Endpoint]
    ) -> Iterator[tuple[int, bool, regbench.Endpoint, list[Client]]]:
        """(run, counted?, registry, clients in this run's order): per run every registry
        (which goes first alternates from run to run), clients rotated from run to run."""
        order = list(self.clients.values())
        regs = list(eps.values())
        n = 0
        for counted, count in ((False, self.args.warmup), (True, self.args.runs)):
            for i in range(count):
                k, r = n % len(order), n % len(regs)
                for ep in regs[r:] + regs[:r]:
                    yield i, counted, ep, order[k:] + order[:k]
                n += 1

    def timed(self, client: Client, row: str, args: list[str], counted: bool, what: str) -> Sample:
        load = float(loadavg().split()[0])
        sample = client.timed(*args)
        tail = "" if counted else " (warm-up)"
        registry = self.rows[row].registry
        seconds = fmt_time(sample.seconds)
        log(f"{what} [{registry}]: {client.name} {seconds} (load {load:.2f}){tail}")
        self.samples.append({
            "row": row, "registry": registry, "client": client.name, "seconds": sample.seconds,
            "load1": load, "counted": counted, "maxrss_kb": sample.maxrss_kb,
        })  # fmt: skip
        if counted:
            self.results.add_time(row, client.name, sample.seconds)
            self.loads.setdefault(row, []).append(load)
        return sample

    def check_manifest(self, ep: regbench.Endpoint, repo: str, tag: str, kind: str) -> None:
        """The pushed manifest has the image's layers in the asked compression and its
        config the image's diff_ids (podman and skopeo may convert the config to OCI's
        form, so the config digest is not compared)."""
        status, _, body = ep.get(f"/v2/{repo}/manifests/{tag}", regbench.MANIFEST_ACCEPT)
        manifest = json.loads(body)
        layers = manifest.get("layers") or []
        n = len(self.archive.images[0].layers)
        if status != 200 or len(layers) != n:
            raise BenchError(f"unexpected manifest after push: {body[:500]!r}")
        for layer in layers:
            if not str(layer.get("mediaType", "")).endswith(kind):
                raise BenchError(f"pushed a layer as {layer.get('mediaType')}, not {kind}")
        _, _, raw = ep.get(f"/v2/{repo}/blobs/{manifest['config']['digest']}")
        got = json.loads(raw)["rootfs"]["diff_ids"]
        if got != self.diff_ids:
            raise BenchError(f"pushed config has diff_ids {got}, expected {self.diff_ids}")

    def guarded(self, row: str, client: Client, step: Callable[[], None]) -> None:
        """A peer that fails a step loses that row (noted); dockyard failing stops all."""
        if (row, client.name) in self.skipped:
            return
        try:
            step()
        except BenchError as e:
            if client.name == "dockyard":
                raise
            first = next((x for x in str(e).splitlines() if x.strip()), type(e).__name__)
            label = f"{self.rows[row].label} [{self.rows[row].registry}]"
            self.results.notes[f"{label}, {client.name}"] = f"failed: {first}"
            self.skipped.add((row, client.name))
            log(f"{client.name} failed {row}: {e}")

    # -- push ------------------------------------------------------------------------

    def bench_push(self, eps: dict[str, regbench.Endpoint]) -> None:
        ops = set(self.args.ops)
        for run, counted, ep, order in self.rounds(eps):
            for other in eps.values():  # one registry at a time (each first push restarts it)
                if other is not ep:
                    other.server.stop()
            for client in order:
                for kind in client.compressions:
                    op = "push" if kind == "gzip" else "zstd"
                    if op not in ops and not (kind == "gzip" and "again" in ops):
                        continue
                    row = row_key(op, ep.name)

                    def step(
                        client: Client = client, kind: str = kind, row: str = row, op: str = op,
                        run: int = run, counted: bool = counted, ep: regbench.Endpoint = ep,
                    ) -> None:  # fmt: skip
                        self.fresh(ep)
                        repo, tag = "bench/fat", f"r{run}-{kind}"
                        remote = f"{ep.server.host}/{repo}:{tag}"
                        args = client.push_args(remote, kind)
                        what = f"run {run}: first push {kind}"
                        self.timed(client, row, args, counted and op in ops, what)
                        self.check_manifest(ep, repo, tag, kind)
                        if kind == "gzip" and "again" in ops:
                            # the registry has every blob: only HEADs and the manifest
                            again = client.push_args(remote, kind)
                            self.timed(client, row_key("again", ep.name), again, counted,
                                       f"run {run}: push again")  # fmt: skip
                            self.check_manifest(ep, repo, tag, kind)

                    self.guarded(row, client, step)

    # -- pull ------------------------------------------------------------------------

    def bench_pull(self, eps: dict[str, regbench.Endpoint], remotes: dict[str, str]) -> None:
        for run, counted, ep, order in self.rounds(eps):
            row, remote = row_key("pull", ep.name), remotes[ep.name]
            for client in order:

                def step(
                    client: Client = client, run: int = run, counted: bool = counted,
                    row: str = row, remote: str = remote,
                ) -> None:  # fmt: skip
                    client.reset()  # an empty local store (untimed)
                    self.timed(client, row, client.pull_args(remote), counted,
                               f"run {run}: pull")  # fmt: skip
                    got = client.pulled_layers(remote)
                    if got != self.diff_ids:
                        raise BenchError(f"pulled layers {got}, expected {self.diff_ids}")

                self.guarded(row, client, step)

    def seed_pull_registry(self, ep: regbench.Endpoint) -> str:
        """Push the image once (untimed) for the pulls: with docker when it runs (what
        most registries serve was compressed by Go's gzip), else with dockyard."""
        self.fresh(ep)
        repo, tag = "bench/fat", "pull"
        remote = f"{ep.server.host}/{repo}:{tag}"
        pusher = self.clients.get("docker") or self.clients["dockyard"]
        pusher.run(*pusher.push_args(remote, "gzip"))
        self.check_manifest(ep, repo, tag, "gzip")
        _, _, body = ep.get(f"/v2/{repo}/manifests/{tag}", regbench.MANIFEST_ACCEPT)
        sizes = [layer["size"] for layer in json.loads(body)["layers"]]
        self.results.info.append(
            f"pull source [{ep.name}]: pushed once by {pusher.name} (gzip), layers "
            f"{', '.join(fmt_size(s) for s in sizes)}"
        )
        return remote


# --------------------------------------------------------------------------- #
# report
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Target:
    row: str
    label: str
    peer: str
    limit: float


def print_lines(lines: Sequence[Sequence[str]]) -> None:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for n, line in enumerate(lines):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(line, widths, strict=True))))  # fmt: skip
        if n == 0:
            print("  ".join("-" * w for w in widths))


def print_table(bench: Bench, clients: Sequence[str], registry: str) -> None:
    results = bench.results
    peers_here = [c for c in clients if c != "dockyard"]
    header = [f"registry: {registry}", *clients, *(f"dy/{p}" for p in peers_here), "load 1m"]
    lines = [header]
    for row in bench.rows.values():
        if row.registry != registry or row.key not in results.times:
            continue
        dy = results.median(row.key, "dockyard")
        cells = [row.label]
        for name in clients:
            value = results.median(row.key, name)
            cells.append(fmt_time(value) if value is not None else "n/a")
        for name in peers_here:
            value = results.median(row.key, name)
            cells.append(f"{dy / value:.2f}x" if dy is not None and value else "-")
        loads = bench.loads.get(row.key, [])
        cells.append(f"{min(loads):.2f}-{max(loads):.2f}" if loads else "-")
        lines.append(cells)
    print_lines(lines)


def print_targets(bench: Bench, targets: Sequence[Target], registry: str) -> None:
    print()
    print(f"targets ({registry}):")
    for t in targets:
        dy = bench.results.median(row_key(t.row, registry), "dockyard")
        peer = bench.results.median(row_key(t.row, registry), t.peer)
        if dy is None or not peer:
            verdict, got = "-", "not measured"
        else:
            ratio = dy / peer
            verdict = "PASS" if ratio <= t.limit else "FAIL"
            got = f"{ratio:.2f}x {t.peer} ({fmt_time(dy)} vs {fmt_time(peer)})"
        print(f"  [{verdict:4}] {t.label:44} got {got}")
    dy_zstd = bench.results.median(row_key("zstd", registry), "dockyard")
    pod_gzip = bench.results.median(row_key("push", registry), "podman")
    if dy_zstd is not None and pod_gzip:
        print(f"  (dockyard zstd vs podman gzip: {dy_zstd / pod_gzip:.2f}x)")


# --------------------------------------------------------------------------- #
# command line
# --------------------------------------------------------------------------- #


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=3, help="counted runs per figure (median)")
    p.add_argument("--warmup", type=int, default=None,
                   help="uncounted warm-up runs first (default 1; 0 with --quick)")  # fmt: skip
    p.add_argument("--quick", action="store_true",
                   help="the debian+busybox stand-in for fat, 1 run, no warm-up")  # fmt: skip
    p.add_argument("--only", action="append", choices=OPS, default=None,
                   help="measure only this (repeatable): push (first push, gzip), zstd "
                   "(first push, zstd), again (push to a registry that has every blob), "
                   "pull (into an empty store)")  # fmt: skip
    p.add_argument(
        "--engines",
        default=",".join(CLIENTS),
        help=f"comma-separated subset of {','.join(CLIENTS)} (dockyard always)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=store.DEFAULT_WORKDIR,
        help=f"workloads and archives (default {store.DEFAULT_WORKDIR}); stores, "
        "dockerd and registries go to WORKDIR/distribution, removed at the end",
    )
    p.add_argument("--workloads-from", type=Path, default=store.SHARED_BENCH,
                   help="directory holding make.sh and gen_fat_payload.py")  # fmt: skip
    p.add_argument("--registry", choices=(*REGISTRIES, "both"), default="both",
                   help="the server every client talks to: distribution (Debian's 2.8), "
                   "dockyard (dockyard registry serve), or both in turn (default)")  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the raw samples here")
    args = p.parse_args(argv)
    if args.quick and "--runs" not in (argv if argv is not None else sys.argv):
        args.runs = 1
    if args.warmup is None:
        args.warmup = 0 if args.quick else 1
    if args.runs < 1:
        p.error("--runs must be >= 1")
    args.engines = [e for e in args.engines.split(",") if e]
    unknown = set(args.engines) - set(CLIENTS)
    if unknown or "dockyard" not in args.engines:
        p.error(f"--engines: dockyard plus any of {','.join(PEERS)} (got {args.engines})")
    args.ops = tuple(args.only or OPS)
    args.registries = list(REGISTRIES) if args.registry == "both" else [args.registry]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # a SIGTERM unwinds like Ctrl-C, so the finally below stops dockerd and registries by PID
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if os.geteuid() != 0:
        print("distribution.py needs root (dockerd, podman --root, make.sh)", file=sys.stderr)
        return 2
    if "distribution" in args.registries and not shutil.which(regbench.DISTRIBUTION_BIN):
        raise BenchError(f"{regbench.DISTRIBUTION_BIN} is missing (Debian docker-registry)")
    workdir: Path = args.workdir.resolve()
    wants = ["busybox", "debian"] if args.quick else ["busybox", "debian", "fat"]
    work = store.ensure_workloads(workdir, wants, args.workloads_from)
    archives, big_name = store.base_archives(workdir, work, args.quick)
    archive = archives[big_name]
    log(f"reading {archive.path} once (page cache) before timing")
    with archive.path.open("rb") as f:
        while f.read(1 << 20):
            pass

    # PYTHONDONTWRITEBYTECODE is set on these machines: compile dockyard's sources once
    # (as `make lint` does), or every dockyard command compiles what changed since
    log("compiling dockyard's sources (python -m compileall -q src)")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE.parent / "src")],
                   stdout=subprocess.DEVNULL, check=False)  # fmt: skip

    run_dir = workdir / "distribution"
    shutil.rmtree(run_dir, ignore_errors=True)
    regdir = run_dir / "registry"
    regdir.mkdir(parents=True)
    results = Results()
    results.info.append(
        f"host: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"kernel {platform.release()}, work dir {run_dir} ({fs_type(run_dir)})"
    )
    n_layers = len(archive.images[0].layers)
    results.info.append(
        f"image: {archive.path.name} ({fmt_size(archive.size)}, {n_layers} layers, "
        "uncompressed docker-archive made by store.py), loaded into each client untimed"
    )
    labels = {
        "push": f"first push {big_name}, gzip (empty registry)",
        "zstd": f"first push {big_name}, zstd (empty registry)",
        "again": f"push {big_name} again (every blob present)",
        "pull": f"pull {big_name} (empty store)",
    }
    rows = {
        row_key(op, reg): Row(row_key(op, reg), label, reg)
        for reg in args.registries for op, label in labels.items()
    }  # fmt: skip
    clients: dict[str, Client] = {}
    engines: dict[str, Engine] = {}
    bench = Bench(args, archive, clients, results, regdir, rows)
    push_eps = {reg: bench.endpoint(reg, "push") for reg in args.registries}
    pull_eps = {reg: bench.endpoint(reg, "pull") for reg in args.registries}
    for reg, ep in push_eps.items():
        results.info.append(
            f"registry {reg}: {ep.server.describe()}, a new data dir and port for every first push"
        )
    t_start = time.monotonic()
    load_start = loadavg()
    try:
        store.start_engines(args.engines, run_dir, results, engines, MAKERS)
        for name in args.engines:  # table order, whatever started
            engine = engines.get(name)
            if isinstance(engine, Client):
                clients[name] = engine
        for client in list(clients.values()):
            log(f"{client.name}: loading {archive.path.name} (untimed)")
            try:
                client.prepare(archive)
            except BenchError as e:
                if client.name == "dockyard":
                    raise
                results.notes[client.name] = f"could not load the image: {e}"
                clients.pop(client.name)
        if set(args.ops) & {"push", "zstd", "again"}:
            bench.bench_push(push_eps)
        for ep in push_eps.values():
            ep.server.stop()
        if "pull" in args.ops:
            remotes = {reg: bench.seed_pull_registry(ep) for reg, ep in pull_eps.items()}
            bench.bench_pull(pull_eps, remotes)
    finally:
        for ep in (*push_eps.values(), *pull_eps.values()):
            with contextlib.suppress(Exception):
                ep.server.stop()  # by PID: SIGTERM, then SIGKILL of its process group
        for engine in engines.values():
            with contextlib.suppress(Exception):
                engine.close()
        if not peers.mounts_under(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
    elapsed = time.monotonic() - t_start
    results.info.append(
        f"load average (1/5/15 min) at start {load_start}, at end {loadavg()}; the table's "
        "last column: lowest-highest 1-min load at the start of that row's counted runs"
    )

    targets = [
        Target("push", "first push gzip <= 0.5x podman (gzip)", "podman", 0.5),
        Target("zstd", "first push zstd <= 0.25x podman (zstd)", "podman", 0.25),
        Target("pull", "pull into empty store <= 0.5x docker", "docker", 0.5),
        Target("again", "all-present push <= 1.0x docker", "docker", 1.0),
    ]
    measured = {c for by_client in results.times.values() for c in by_client}
    shown = [c for c in args.engines if c in measured or c in clients]
    print()
    print(f"dockyard distribution benchmark: median of {args.runs} run(s) after "
          f"{args.warmup} warm-up run(s); benchmark took {elapsed:.0f} s")  # fmt: skip
    for line in results.info:
        print(f"  {line}")
    for reg in args.registries:
        print()
        print_table(bench, shown, reg)
        print_targets(bench, targets, reg)
    print()
    print("notes:")
    print("  - every first push goes to a new, empty registry (new data dir and a port not")
    print("    used before in the run, whichever registry: the clients remember blobs per")
    print("    host:port); the push again goes right after it, to the same registry and tag.")
    if len(args.registries) > 1:
        print("  - per run every registry gets every client, the registries alternating which")
        print("    goes first from run to run.")
    if "dockyard" in args.registries:
        print("  - dockyard's registry fsyncs every blob before it is linked; distribution 2.8")
        print("    does not.")
    print("  - each client pushes from its own local store, loaded untimed before the runs")
    print("    (skopeo: an oci: layout with uncompressed layers); pulls go into an empty")
    print("    store (docker: rmi + image prune; dockyard, podman: a new --root; skopeo: a")
    print("    new oci: dir, so skopeo stores the compressed blobs and unpacks nothing).")
    print("  - docker and podman unpack layers into overlay at pull; dockyard stores the")
    print("    uncompressed layer tars (hashed, fsynced) and unpacks at first run.")
    print("  - docker's push (dockerd 20.10) only compresses with gzip.")
    for key, note in results.notes.items():
        print(f"  - {key}: {note}")
    if args.json:
        args.json.write_text(json.dumps({
            "times": results.times, "samples": bench.samples, "info": results.info,
            "notes": results.notes,
        }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"distribution.py: {e}", file=sys.stderr)
        sys.exit(1)
