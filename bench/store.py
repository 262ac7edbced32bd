#!/usr/bin/env python3
"""Store benchmark: dockyard side by side with dockerd 20.10 and podman 4.3.

Measures import, load, save, ``images`` and dockyard's peak RSS on the
workloads of /work/shared/bench/make.sh, every engine on a fresh store per run,
and prints one table with the targets marked PASS/FAIL.  See bench/README.md.

    .venv/bin/python bench/store.py            # full run (root; several minutes)
    .venv/bin/python bench/store.py --quick    # busybox + debian, 1 run, no fat payload
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The isolated dockerd/podman of the integration tests: one implementation of
# "start a private peer, stop it by PID" for tests and benchmarks alike.
sys.path.insert(0, str(REPO / "tests" / "integration"))
import peers  # noqa: E402

SHARED_BENCH = Path("/work/shared/bench")
DEFAULT_WORKDIR = REPO / ".work" / "bench"
ENGINES = ("dockyard", "docker", "podman")
OPS = ("import", "load", "save", "images", "rss")
FIXED_CREATED = "2024-01-01T00:00:00Z"
ARCHIVE_FORMAT_VERSION = "1"  # bump when the hand-made archives change


class BenchError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- #
# timing one command
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Sample:
    seconds: float
    maxrss_kb: int  # peak RSS of the command's process (GNU time's %M)


GNU_TIME = "/usr/bin/time"


def timed(argv: Sequence[str], env: dict[str, str], what: str) -> Sample:
    """Run argv once: wall time, and its peak RSS as GNU time reports it.

    Peak RSS goes through /usr/bin/time (a small C program) because ru_maxrss of
    a child forked or vforked straight from this Python process has this
    process's own RSS as its floor (the kernel keeps the old mm's high-water
    mark across exec).  Dirty pages of earlier steps are flushed first
    (sync(2), untimed) so that writeback does not land in the next measurement.
    """
    os.sync()
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as rss,
    ):
        cmd = [GNU_TIME, "-f", "%M", "-o", rss.name, *argv]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            err.seek(0)
            out.seek(0)
            raise BenchError(
                f"{what} failed (exit {proc.returncode}): {shlex.join(argv)}\n"
                f"{out.read().decode(errors='replace')[-2000:]}"
                f"{err.read().decode(errors='replace')[-4000:]}"
            )
        lines = rss.read().split()
    return Sample(seconds, int(lines[-1]) if lines and lines[-1].isdigit() else 0)


def hyperfine(
    argv: Sequence[str], env: dict[str, str], runs: int, warmup: int, json_path: Path
) -> list[float]:
    """Wall times of argv from `hyperfine -N --export-json` (no shell in between)."""
    cmd = [
        "hyperfine", "-N", "--style", "none",
        "--warmup", str(warmup), "--runs", str(runs),
        "--export-json", str(json_path), shlex.join(argv),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"hyperfine failed: {shlex.join(cmd)}\n{proc.stderr[-3000:]}")
    times: list[float] = json.loads(json_path.read_text())["results"][0]["times"]
    return times


# --------------------------------------------------------------------------- #
# the engines, each with "make my store empty" and an argv builder
# --------------------------------------------------------------------------- #


class Engine:
    name = ""

    def reset(self) -> None:
        """Give the engine an empty store."""
        raise NotImplementedError

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        raise NotImplementedError

    @property
    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def run(self, *args: str | os.PathLike[str]) -> str:
        """Run an untimed helper command; its stdout."""
        proc = subprocess.run(
            self.argv(*args), env=self.env, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise BenchError(
                f"{self.name}: {shlex.join(self.argv(*args))} failed:\n{proc.stderr[-3000:]}"
            )
        return proc.stdout

    def timed(self, *args: str | os.PathLike[str]) -> Sample:
        return timed(self.argv(*args), self.env, f"{self.name} {args[0]}")

    # the verbs measured (the same flags on every engine where they exist)
    def import_args(self, tar: Path, ref: str) -> list[str]:
        return ["import", str(tar), ref]

    def load_args(self, archive: Path) -> list[str]:
        return ["load", "-q", "-i", str(archive)]

    def save_args(self, ref: str, out: Path) -> list[str]:
        return ["save", "-o", str(out), ref]


class Dockyard(Engine):
    name = "dockyard"

    def __init__(self, workdir: Path) -> None:
        self.base, self._env = peers.dockyard_command()
        self.stores = workdir / "stores" / "dockyard"
        self.root = self.stores / "root-0"
        self.count = 0

    def reset(self) -> None:
        shutil.rmtree(self.stores, ignore_errors=True)
        self.count += 1
        self.root = self.stores / f"root-{self.count}"
        self.root.mkdir(parents=True)

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        return [*self.base, "--root", str(self.root), *map(str, args)]

    @property
    def env(self) -> dict[str, str]:
        return self._env

    def describe(self) -> str:
        version = subprocess.run(
            [*self.base, "--version"], env=self._env, capture_output=True, text=True, check=False
        ).stdout.strip()
        return f"{version} ({shlex.join(self.base)}; store root on {fs_type(self.stores)})"


class Docker(Engine):
    """One private dockerd for the whole benchmark; reset = rmi -f all + image prune -af."""

    name = "docker"

    def __init__(self, workdir: Path) -> None:
        self.daemon = peers.Dockerd()
        self.dir = workdir / "dockerd"
        shutil.rmtree(self.dir, ignore_errors=True)
        t0 = time.monotonic()
        self.daemon.start(self.dir)
        self.startup = time.monotonic() - t0

    def reset(self) -> None:
        ids = sorted(set(self.run("images", "-aq", "--no-trunc").split()))
        if ids:
            self.run("rmi", "-f", *ids)
        self.run("image", "prune", "-af")
        left = self.run("images", "-aq").split()
        if left:
            raise BenchError(f"docker: images left after rmi/prune: {left}")

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        return [self.daemon.client, "-H", self.daemon.host, *map(str, args)]

    @property
    def env(self) -> dict[str, str]:
        return self.daemon.client_env()

    def describe(self) -> str:
        server = self.run("version", "--format", "{{.Server.Version}}").strip()
        client = self.run("version", "--format", "{{.Client.Version}}").strip()
        return (
            f"dockerd {server} (client {client} {self.daemon.client}), storage "
            f"{self.daemon.storage_driver}, data root {self.daemon.data_root}, "
            f"own containerd, started in {self.startup:.1f} s"
        )

    def close(self) -> None:
        self.daemon.stop()  # dockerd and its containerd, by PID; unmounts what they left
        if not peers.mounts_under(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)


class Podman(Engine):
    """podman on a new --root/--runroot for every reset (no daemon to keep)."""

    name = "podman"

    def __init__(self, workdir: Path) -> None:
        self.stores = workdir / "stores" / "podman"
        self.instance: peers.Podman | None = None
        self.driver: str | None = None
        self.count = 0
        self.reset()

    def reset(self) -> None:
        self._drop()
        self.count += 1
        drivers = (self.driver,) if self.driver else ("overlay", "vfs")
        pod = peers.Podman(storage_drivers=drivers)
        pod.start(self.stores / f"store-{self.count}")
        self.instance, self.driver = pod, pod.storage_driver

    def _drop(self) -> None:
        if self.instance is not None:
            self.instance.stop()
            self.instance = None
        if self.stores.exists() and not peers.mounts_under(self.stores):
            shutil.rmtree(self.stores, ignore_errors=True)

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        assert self.instance is not None
        return ["podman", *self.instance._global, *map(str, args)]

    @property
    def env(self) -> dict[str, str]:
        assert self.instance is not None
        return self.instance._env

    def import_args(self, tar: Path, ref: str) -> list[str]:
        return ["import", "-q", str(tar), ref]

    def save_args(self, ref: str, out: Path) -> list[str]:
        return ["save", "-q", "--format", "docker-archive", "-o", str(out), ref]

    def describe(self) -> str:
        version = self.run("--version").strip()
        return f"{version}, storage {self.driver}, --root/--runroot fresh per run"

    def close(self) -> None:
        self._drop()


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def fs_type(path: Path) -> str:
    probe = path
    while not probe.exists():
        probe = probe.parent
    out = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE", "-T", str(probe)], capture_output=True, text=True
    ).stdout.strip()
    return out or "?"


# --------------------------------------------------------------------------- #
# workloads (make.sh, copied and run in the work dir, cached)
# --------------------------------------------------------------------------- #

WORKLOAD_OUTPUT = {
    "busybox": "busybox.tar",
    "debian": "debian-minbase.tar",
    "fat": "fat-payload",
}


def ensure_workloads(workdir: Path, whats: Sequence[str], source: Path) -> dict[str, Path]:
    """Run make.sh WHAT in workdir unless its output is there from the same make.sh."""
    workdir.mkdir(parents=True, exist_ok=True)
    scripts = ("make.sh", "gen_fat_payload.py")
    for name in scripts:
        src, dst = source / name, workdir / name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)
    stamp = hashlib.sha256(b"".join((workdir / n).read_bytes() for n in scripts)).hexdigest()
    out: dict[str, Path] = {}
    for what in whats:
        target = workdir / WORKLOAD_OUTPUT[what]
        stamp_file = workdir / f".{what}.stamp"
        cached = target.exists() and stamp_file.exists() and stamp_file.read_text() == stamp
        if not cached:
            if os.geteuid() != 0:
                raise BenchError(f"make.sh {what} needs root (chroot/debootstrap)")
            log(f"building workload {what}: sh make.sh {what} (log {workdir}/{what}.log)")
            stamp_file.unlink(missing_ok=True)
            with (workdir / f"{what}.log").open("wb") as f:
                proc = subprocess.run(
                    ["sh", str(workdir / "make.sh"), what], stdout=f, stderr=subprocess.STDOUT
                )
            if proc.returncode != 0:
                raise BenchError(f"make.sh {what} failed, see {workdir}/{what}.log")
            stamp_file.write_text(stamp)
        out[what] = target
    return out


# --------------------------------------------------------------------------- #
# docker-archives made by hand (the same file is loaded into every engine)
# --------------------------------------------------------------------------- #

GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


@dataclass(frozen=True)
class Layer:
    diff_id: str
    size: int
    path: Path | None = None  # streamed from a file ...
    data: bytes | None = None  # ... or small and in memory
    comment: str = ""


@dataclass(frozen=True)
class ArchiveImage:
    tags: tuple[str, ...]
    layers: tuple[Layer, ...]
    cmd: tuple[str, ...] = ("/bin/sh",)


@dataclass(frozen=True)
class Archive:
    path: Path
    images: tuple[ArchiveImage, ...]
    size: int

    @property
    def ref(self) -> str:
        return self.images[0].tags[0]


def file_layer(path: Path, comment: str) -> Layer:
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return Layer(f"sha256:{digest}", path.stat().st_size, path=path, comment=comment)


def bytes_layer(data: bytes, comment: str) -> Layer:
    return Layer(
        f"sha256:{hashlib.sha256(data).hexdigest()}", len(data), data=data, comment=comment
    )


def image_config(image: ArchiveImage) -> bytes:
    config = {
        "architecture": GOARCH.get(platform.machine(), platform.machine()),
        "os": "linux",
        "created": FIXED_CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": list(image.cmd),
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in image.layers]},
        "history": [
            {"created": FIXED_CREATED, "created_by": layer.comment or "bench layer"}
            for layer in image.layers
        ],
    }
    return json.dumps(config, separators=(",", ":"), sort_keys=True).encode()


def write_docker_archive(dest: Path, images: Sequence[ArchiveImage]) -> None:
    """A docker-archive (manifest.json + <id>.json + <diff_id>/layer.tar), uncompressed."""
    tmp = dest.with_name(dest.name + ".partial")
    manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    written: set[str] = set()

    def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for image in images:
            config = image_config(image)
            config_name = hashlib.sha256(config).hexdigest() + ".json"
            layer_names = []
            for layer in image.layers:
                name = layer.diff_id.removeprefix("sha256:") + "/layer.tar"
                layer_names.append(name)
                if name in written:
                    continue
                written.add(name)
                if layer.path is not None:
                    info = tarfile.TarInfo(name)
                    info.size, info.mode, info.mtime = layer.size, 0o644, 0
                    with layer.path.open("rb") as f:
                        tar.addfile(info, f)
                else:
                    assert layer.data is not None
                    add_bytes(tar, name, layer.data)
            add_bytes(tar, config_name, config)
            manifest.append(
                {"Config": config_name, "RepoTags": list(image.tags), "Layers": layer_names}
            )
            for tag in image.tags:
                repo, _, t = tag.rpartition(":")
                repositories.setdefault(repo, {})[t] = layer_names[-1].split("/")[0]
        add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        add_bytes(tar, "repositories", json.dumps(repositories).encode())
    os.replace(tmp, dest)


def cached_archive(dest: Path, images: Sequence[ArchiveImage]) -> Archive:
    """Write the archive unless dest already holds exactly these images."""
    key = json.dumps(
        [ARCHIVE_FORMAT_VERSION, [[i.tags, [la.diff_id for la in i.layers]] for i in images]]
    )
    stamp = dest.with_name(dest.name + ".key")
    if not (dest.exists() and stamp.exists() and stamp.read_text() == key):
        log(f"writing {dest.name} ({len(images)} image(s))")
        stamp.unlink(missing_ok=True)
        write_docker_archive(dest, images)
        stamp.write_text(key)
    return Archive(dest, tuple(images), dest.stat().st_size)


def dir_layer_tar(src: Path, dest: Path, arcname: str) -> Path:
    """A deterministic layer tar of src under arcname/ (sorted, root-owned)."""

    def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    if not dest.exists() or dest.stat().st_mtime < src.stat().st_mtime:
        log(f"writing layer tar {dest.name} from {src}")
        tmp = dest.with_name(dest.name + ".partial")
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(src, arcname=arcname, filter=normalize)
        os.replace(tmp, dest)
    return dest


def base_archives(
    workdir: Path, work: dict[str, Path], quick: bool
) -> tuple[dict[str, Archive], str]:
    """The archives of busybox, debian and the 2-layer big image, cached in workdir/archives.

    The big image is "fat" (debian-minbase + the fat payload under payload/), or
    with quick its stand-in "debian+busybox"; returns the archives and that name.
    Shared with bench/containers.py (the same files, so the same cache).
    """
    log("hashing layers, checking the cached archives")
    archives_dir = workdir / "archives"
    archives_dir.mkdir(parents=True, exist_ok=True)
    busybox_layer = file_layer(work["busybox"], "busybox rootfs (make.sh busybox)")
    debian_layer = file_layer(work["debian"], "debootstrap --variant=minbase (make.sh debian)")
    archives: dict[str, Archive] = {
        "busybox": cached_archive(
            archives_dir / "busybox.tar", [ArchiveImage(("bench/busybox:latest",),
                                                        (busybox_layer,))]),
        "debian": cached_archive(
            archives_dir / "debian.tar", [ArchiveImage(("bench/debian:latest",),
                                                       (debian_layer,), ("/bin/bash",))]),
    }  # fmt: skip
    if quick:  # a 2-layer stand-in for the fat image: debian + busybox
        big_name = "debian+busybox"
        second = busybox_layer
    else:
        big_name = "fat"
        payload = dir_layer_tar(work["fat"], archives_dir / "payload-layer.tar", "payload")
        second = file_layer(payload, "ADD fat-payload/ /payload")
    archives[big_name] = cached_archive(
        archives_dir / f"{big_name.replace('+', '-')}.tar",
        [ArchiveImage((f"bench/{big_name.replace('+', '-')}:latest",),
                      (debian_layer, second), ("/bin/bash",))],
    )  # fmt: skip
    return archives, big_name


def tiny_layer(i: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("tiny")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(d)
        data = f"tiny image {i}\n".encode()
        f = tarfile.TarInfo(f"tiny/{i:05d}")
        f.size, f.mode = len(data), 0o644
        tar.addfile(f, io.BytesIO(data))
    return buf.getvalue()


def tiny_images(n: int) -> list[ArchiveImage]:
    return [
        ArchiveImage((f"bench/tiny{i:04d}:latest",), (bytes_layer(tiny_layer(i), f"tiny {i}"),), ())
        for i in range(n)
    ]


# --------------------------------------------------------------------------- #
# results
# --------------------------------------------------------------------------- #


@dataclass
class Results:
    times: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # row -> engine
    rss: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # "what" -> engine
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)  # saved file sizes
    notes: dict[str, str] = field(default_factory=dict)  # engine/row -> why missing
    info: list[str] = field(default_factory=list)

    def add_time(self, row: str, engine: str, seconds: float) -> None:
        self.times.setdefault(row, {}).setdefault(engine, []).append(seconds)

    def add_rss(self, what: str, engine: str, kb: int) -> None:
        self.rss.setdefault(what, {}).setdefault(engine, []).append(kb)

    def median(self, row: str, engine: str) -> float | None:
        values = self.times.get(row, {}).get(engine)
        return statistics.median(values) if values else None


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@dataclass(frozen=True)
class Target:
    row: str
    label: str
    peer: str | None  # ratio to this engine, or None: absolute seconds
    limit: float


def print_table(results: Results, rows: Sequence[str], targets: Sequence[Target]) -> None:
    header = ["operation", "dockyard", "docker", "podman", "dy/docker", "dy/podman"]
    lines = [header]
    for row in rows:
        if row not in results.times:
            continue
        dy = results.median(row, "dockyard")
        cells = [row, fmt_time(dy)]
        for peer in ("docker", "podman"):
            value = results.median(row, peer)
            cells.append(fmt_time(value) if value is not None else "n/a")
        for peer in ("docker", "podman"):
            value = results.median(row, peer)
            cells.append(f"{dy / value:.2f}x" if dy is not None and value else "-")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print("targets:")
    for t in targets:
        dy = results.median(t.row, "dockyard")
        if t.peer is None:
            verdict = "-" if dy is None else ("PASS" if dy <= t.limit else "FAIL")
            got = fmt_time(dy)
        else:
            peer_time = results.median(t.row, t.peer)
            if dy is None or not peer_time:
                verdict, got = "-", "not measured"
            else:
                ratio = dy / peer_time
                verdict = "PASS" if ratio <= t.limit else "FAIL"
                got = f"{ratio:.2f}x {t.peer} ({fmt_time(dy)} vs {fmt_time(peer_time)})"
        print(f"  [{verdict:4}] {t.label:38} got {got}")


def print_rss(results: Results, archives: dict[str, Archive]) -> None:
    if not results.rss:
        return
    print()
    print("peak RSS (max over runs; GNU time %M of the CLI process; docker's work is in")
    print("dockerd, so its client's RSS says nothing and is not shown):")
    header = ["image", "archive", "dy load", "dy save", "podman load", "podman save"]
    lines = [header]
    for what, per in results.rss.items():
        arch = archives.get(what)
        cells = [what, fmt_size(arch.size) if arch else "?"]
        for key in ("dockyard load", "dockyard save", "podman load", "podman save"):
            values = per.get(key)
            cells.append(fmt_size(max(values) * 1024) if values else "-")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


# --------------------------------------------------------------------------- #
# the benchmark
# --------------------------------------------------------------------------- #


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    engines: dict[str, Engine]
    results: Results
    out_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.out_dir = self.workdir / "out"
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def each(self, names: Sequence[str] = ENGINES) -> Iterator[Engine]:
        for name in names:
            engine = self.engines.get(name)
            if engine is not None:
                yield engine

    def rounds(self) -> Iterator[tuple[int, bool]]:
        """(run number, counted?): warm-up runs first, then --runs counted runs."""
        for i in range(self.args.warmup):
            yield i, False
        for i in range(self.args.runs):
            yield i, True

    # -- import --------------------------------------------------------------

    def bench_import(self, tar: Path, row: str) -> None:
        for _, counted in self.rounds():
            for engine in self.each():
                engine.reset()
                sample = engine.timed(*engine.import_args(tar, "bench/imported:latest"))
                log(
                    f"{row}: {engine.name} {fmt_time(sample.seconds)}"
                    f"{'' if counted else ' (warm-up)'}"
                )
                if counted:
                    self.results.add_time(row, engine.name, sample.seconds)

    # -- load + save ---------------------------------------------------------

    def bench_load_save(
        self, archive: Archive, what: str, load_row: str | None, save_row: str | None,
        engines: Sequence[str] = ENGINES, runs: int | None = None, warmup: int | None = None,
    ) -> None:  # fmt: skip
        """Per run and engine: empty store -> load (timed) -> save -o (timed)."""
        rounds = (
            [(i, False) for i in range(warmup)] + [(i, True) for i in range(runs or 0)]
            if warmup is not None
            else list(self.rounds())
        )
        for _, counted in rounds:
            for engine in self.each(engines):
                engine.reset()
                load = engine.timed(*engine.load_args(archive.path))
                out = self.out_dir / f"{engine.name}-{what}.tar"
                out.unlink(missing_ok=True)
                save = engine.timed(*engine.save_args(archive.ref, out))
                size = out.stat().st_size
                out.unlink()
                suffix = "" if counted else " (warm-up)"
                log(
                    f"{what}: {engine.name} load {fmt_time(load.seconds)} "
                    f"({load.maxrss_kb // 1024} MiB), save {fmt_time(save.seconds)} "
                    f"({save.maxrss_kb // 1024} MiB){suffix}"
                )
                if not counted:
                    continue
                if load_row:
                    self.results.add_time(load_row, engine.name, load.seconds)
                if save_row:
                    self.results.add_time(save_row, engine.name, save.seconds)
                    self.results.sizes.setdefault(what, {})[engine.name] = size
                if engine.name in ("dockyard", "podman"):
                    self.results.add_rss(what, f"{engine.name} load", load.maxrss_kb)
                    self.results.add_rss(what, f"{engine.name} save", save.maxrss_kb)

    # -- images ---------------------------------------------------------------

    def bench_images(self, archive: Archive, row: str, engines: Sequence[str]) -> None:
        for engine in self.each(engines):
            engine.reset()
            t = engine.timed(*engine.load_args(archive.path))
            log(
                f"{row}: {engine.name} loaded {len(archive.images)} images in {fmt_time(t.seconds)}"
            )
            self.results.add_time(
                f"(setup) load {len(archive.images)} tiny images", engine.name, t.seconds
            )
            t0 = time.perf_counter()
            listed = engine.run("images", "-q")
            probe = time.perf_counter() - t0
            count = len(listed.split())
            if count != len(archive.images):
                raise BenchError(f"{engine.name} images lists {count}, not {len(archive.images)}")
            # a listing that takes seconds (podman with 1000 images) gets fewer runs
            runs, warmup = (self.args.images_runs, 3) if probe < 1 else (5, 1)
            times = hyperfine(
                engine.argv("images"), engine.env, runs, warmup,
                self.out_dir / f"hyperfine-{engine.name}-{len(archive.images)}.json",
            )  # fmt: skip
            for s in times:
                self.results.add_time(row, engine.name, s)
            log(
                f"{row}: {engine.name} median {fmt_time(statistics.median(times))} "
                f"over {len(times)} runs"
            )


def start_engines(
    names: Sequence[str], workdir: Path, results: Results, engines: dict[str, Engine],
    makers: dict[str, Callable[[Path], Engine]] | None = None,
) -> None:  # fmt: skip
    """Start each engine into engines (filled as they come up, so a caller's finally
    can close the ones that started even when a later one is interrupted)."""
    if makers is None:
        makers = {"dockyard": Dockyard, "docker": Docker, "podman": Podman}
    for name in names:
        engine: Engine | None = None
        try:
            log(f"starting {name}")
            engine = makers[name](workdir)
            engines[name] = engine
            engine.reset()
            results.info.append(f"{name}: {engine.describe()}")
        except Exception as e:  # a missing peer leaves its column empty
            if engine is not None:
                engines.pop(name, None)
                engine.close()
            if name == "dockyard":
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            results.notes[name] = first
            results.info.append(f"{name}: NOT AVAILABLE: {first}")
            log(f"{name} unavailable: {e}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=3, help="counted runs per measurement (median)")
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="uncounted warm-up runs first (default 1; 0 with --quick)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="busybox + debian only (no fat payload), 1 run, no warm-up",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=OPS,
        default=None,
        help="measure only this operation (repeatable)",
    )
    p.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help="comma-separated subset of dockyard,docker,podman",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"workloads, archives and stores (default {DEFAULT_WORKDIR})",
    )
    p.add_argument(
        "--workloads-from",
        type=Path,
        default=SHARED_BENCH,
        help="directory holding make.sh and gen_fat_payload.py",
    )
    p.add_argument("--images-n", type=int, default=1000, help="images in the large store")
    p.add_argument(
        "--images-runs", type=int, default=30, help="hyperfine runs per `images` measurement"
    )
    p.add_argument(
        "--peers-large-images",
        choices=("auto", "none", "docker", "all"),
        default="auto",
        help="peers that also get the --images-n store (auto: docker, none with --quick; "
        "podman takes ~5 min to load 1000 images and seconds per listing)",
    )
    p.add_argument("--json", type=Path, help="also write the raw samples here")
    args = p.parse_args(argv)
    if args.quick:
        args.runs = 1 if "--runs" not in (argv or sys.argv) else args.runs
    if args.warmup is None:
        args.warmup = 0 if args.quick else 1
    args.engines = [e for e in args.engines.split(",") if e]
    unknown = set(args.engines) - set(ENGINES)
    if unknown or "dockyard" not in args.engines:
        p.error(f"--engines: dockyard plus any of docker,podman (got {args.engines})")
    args.ops = tuple(args.only or OPS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # a SIGTERM unwinds like Ctrl-C, so the finally below stops dockerd by PID
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if os.geteuid() != 0:
        print("store.py needs root (make.sh, dockerd, podman --root)", file=sys.stderr)
        return 2
    workdir: Path = args.workdir.resolve()
    ops = set(args.ops)
    wants = ["busybox", "debian"] if args.quick else ["busybox", "debian", "fat"]
    work = ensure_workloads(workdir, wants, args.workloads_from)

    # the archives every engine loads
    archives, big_name = base_archives(workdir, work, args.quick)
    big = archives[big_name]
    archives_dir = workdir / "archives"
    small_images = cached_archive(archives_dir / "tiny-3.tar", tiny_images(3))
    many_images = cached_archive(
        archives_dir / f"tiny-{args.images_n}.tar", tiny_images(args.images_n)
    )

    results = Results()
    results.info.append(
        f"host: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"kernel {platform.release()}, work dir {workdir} ({fs_type(workdir)})"
    )
    # docker's client RSS means nothing, so `--only rss` leaves dockerd alone
    wanted = [e for e in args.engines if not (ops == {"rss"} and e == "docker")]
    engines: dict[str, Engine] = {}
    bench = Bench(args, workdir, engines, results)
    rows = {
        "import": "import debian-minbase.tar",
        "load": f"load {big_name} (2 layers) into empty store",
        "save": f"save {big_name} -o file",
        "images3": "images (3 images)",
        "imagesN": f"images ({args.images_n} images)",
    }
    t_start = time.monotonic()
    load_start = loadavg()
    try:
        start_engines(wanted, workdir, results, engines)
        if "import" in ops:
            bench.bench_import(work["debian"], rows["import"])
        if ops & {"load", "save", "rss"}:
            bench.bench_load_save(
                big, big_name,
                rows["load"] if "load" in ops else None,
                rows["save"] if "save" in ops else None,
                engines=ENGINES if ops & {"load", "save"} else ("dockyard", "podman"),
            )  # fmt: skip
        if "rss" in ops:
            for what in ("busybox", "debian"):
                bench.bench_load_save(
                    archives[what], what, None, None, engines=("dockyard", "podman"),
                    runs=args.runs, warmup=min(args.warmup, 1),
                )  # fmt: skip
        if "images" in ops:
            bench.bench_images(small_images, rows["images3"], ENGINES)
            choice = args.peers_large_images
            if choice == "auto":
                choice = "none" if args.quick else "docker"
            large = {"none": (), "docker": ("docker",), "all": ("docker", "podman")}[choice]
            bench.bench_images(many_images, rows["imagesN"], ("dockyard", *large))
            skipped = [e for e in ("docker", "podman") if e not in large]
            if skipped:
                results.notes[rows["imagesN"]] = (
                    f"{' and '.join(skipped)} not measured (--peers-large-images {choice})"
                )
    finally:
        for engine in engines.values():
            with contextlib.suppress(Exception):
                engine.close()
        shutil.rmtree(workdir / "stores", ignore_errors=True)
        shutil.rmtree(workdir / "out", ignore_errors=True)
    elapsed = time.monotonic() - t_start
    results.info.append(
        f"load average (1/5/15 min) at start {load_start}, at end {loadavg()} "
        "(anything else running on the machine shows up as noise)"
    )

    targets = [
        Target(rows["save"], "save <= 0.33x podman", "podman", 0.33),
        Target(rows["load"], "load into empty store <= 0.5x docker", "docker", 0.5),
        Target(rows["images3"], "images (3) <= 2x podman", "podman", 2.0),
        Target(rows["imagesN"], f"images ({args.images_n}) <= 100 ms", None, 0.100),
    ]
    print()
    print(
        f"dockyard store benchmark: median of {args.runs} run(s) after {args.warmup} "
        f"warm-up run(s); `images`: median of {args.images_runs} hyperfine runs "
        f"(3 warm-up); benchmark took {elapsed:.0f} s"
    )
    for line in results.info:
        print(f"  {line}")
    for what in ("busybox", "debian", big_name, "tiny-3", f"tiny-{args.images_n}"):
        arch = (
            archives.get(what)
            or {"tiny-3": small_images}.get(what)
            or (many_images if what.startswith("tiny-") else None)
        )
        if arch is not None:
            n_layers = sum(len(i.layers) for i in arch.images)
            print(
                f"  archive {what}: {fmt_size(arch.size)}, {len(arch.images)} image(s), "
                f"{n_layers} layer(s), uncompressed docker-archive made by store.py"
            )
    print()
    print_table(results, [*rows.values(), f"(setup) load {args.images_n} tiny images"], targets)
    if big_name in results.sizes:
        sizes = ", ".join(f"{k} {fmt_size(v)}" for k, v in results.sizes[big_name].items())
        print(f"\nsaved {big_name} archive sizes: {sizes}")
    print_rss(results, archives)
    print()
    print("notes:")
    print("  - dockyard `load` does not unpack layers (it stores the layer tars as blobs);")
    print("    docker and podman unpack every layer into their storage driver at load/import.")
    print("  - docker: one private dockerd (+ its own containerd) for the whole benchmark;")
    print("    its store is emptied between runs with `docker rmi -f <all>` + `image prune -af`.")
    print("  - podman and dockyard: a new, empty --root for every run.")
    print("  - the page cache is not dropped; warm-up runs make every engine read warm inputs.")
    print("  - dockyard `save -o` writes a temp file and renames it into place; like docker")
    print("    and podman it does not fsync the archive (writeback starts while writing).")
    for key, note in results.notes.items():
        print(f"  - {key}: {note}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "times": results.times,
                    "rss_kb": results.rss,
                    "sizes": results.sizes,
                    "info": results.info,
                    "notes": results.notes,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"store.py: {e}", file=sys.stderr)
        sys.exit(1)
