"""Real peers for the integration tests: dockerd, podman, skopeo, umoci.

Every peer is isolated: its own data root, run/exec root, unix socket, config
files and logs, all under a directory the caller owns (a pytest tmp dir), so
several pytest-xdist workers can each run their own set side by side.  Only
processes started here are ever signalled, always by PID / process group.

Debian packages used: docker.io (dockerd, docker client), containerd, runc,
podman, skopeo, umoci, busybox-static, tar.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Dockerfile of the second peer image (shares busybox's layer, adds one layer).
SECOND_IMAGE_DOCKERFILE = "FROM {base}\nCOPY index.html /data/www/html/index.html\n"
SECOND_IMAGE_FILE = b"<h1>b1</h1>\n"


# --------------------------------------------------------------------------- #
# running commands
# --------------------------------------------------------------------------- #


class CommandError(subprocess.CalledProcessError):
    """A command failed; str() shows the command line, exit code, stdout and stderr."""

    def __init__(
        self, returncode: int, cmd: Sequence[str], output: str, stderr: str, note: str = ""
    ) -> None:
        super().__init__(returncode, list(cmd), output, stderr)
        self.note = note

    def __str__(self) -> str:
        parts = [f"command failed with exit code {self.returncode}: {shlex.join(self.cmd)}"]
        if self.note:
            parts.append(self.note)
        parts.append(f"--- stdout ---\n{_tail(self.output or '')}")
        parts.append(f"--- stderr ---\n{_tail(self.stderr or '')}")
        return "\n".join(parts)


def _tail(text: str, lines: int = 80) -> str:
    split = text.splitlines()
    if len(split) <= lines:
        return text.rstrip("\n")
    return "\n".join([f"[... {len(split) - lines} lines cut ...]", *split[-lines:]])


def run_command(
    argv: Sequence[str | os.PathLike[str]],
    *,
    input: str | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300.0,
    note: str = "",
) -> subprocess.CompletedProcess[str]:
    """Run argv with text stdout/stderr captured; raise CommandError when check fails."""
    cmd = [os.fspath(a) for a in argv]
    proc = subprocess.run(
        cmd,
        input=input,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=dict(env) if env is not None else None,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, cmd, proc.stdout, proc.stderr, note)
    return proc


def worker_id() -> str:
    """pytest-xdist worker name ("gw0", ...) or "main" without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


# --------------------------------------------------------------------------- #
# processes and mounts
# --------------------------------------------------------------------------- #


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def _stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM our process; if it does not exit in time, SIGKILL its process group.

    The group is the one start_new_session=True created for it (pgid == pid); it
    is only signalled while our child is not yet reaped, so the id cannot have
    been reused by anybody else.
    """
    if not _alive(proc):
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _kill_by_cmdline_marker(marker: str) -> list[int]:
    """Kill processes whose command line contains marker (a unique path of ours).

    Used for containerd shims, which daemonise away from our process group but
    carry our containerd's private socket path in their arguments.
    """
    killed: list[int] = []
    try:
        import psutil  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # pragma: no cover - psutil is in the test extras
        return killed
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmdline = p.info.get("cmdline") or []
        if p.pid != os.getpid() and any(marker in arg for arg in cmdline):
            with contextlib.suppress(psutil.Error):
                p.kill()
                killed.append(p.pid)
    return killed


def _unescape_mountinfo(path: str) -> str:
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and i + 3 < len(path) and path[i + 1 : i + 4].isdigit():
            out.append(chr(int(path[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def mounts_under(*roots: Path) -> list[str]:
    """Mount points at or below any of roots, deepest (and latest) first."""
    prefixes = [os.path.realpath(r) for r in roots]
    found: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            mnt = _unescape_mountinfo(line.split()[4])
            if any(mnt == p or mnt.startswith(p + "/") for p in prefixes):
                found.append(mnt)
    found.reverse()  # later mounts first (stacked mounts)
    found.sort(key=lambda m: m.count("/"), reverse=True)  # stable: keeps the reversal
    return found


def unmount_under(*roots: Path) -> list[str]:
    """Lazily unmount (MNT_DETACH) everything mounted at or below roots."""
    libc = ctypes.CDLL(None, use_errno=True)
    done: list[str] = []
    for _ in range(5):  # a detach can uncover another mount on the same point
        points = mounts_under(*roots)
        if not points:
            break
        for mnt in points:
            if libc.umount2(os.fsencode(mnt), 2) == 0:  # MNT_DETACH
                done.append(mnt)
            elif ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
                err = ctypes.get_errno()
                print(f"umount2({mnt}) failed: {os.strerror(err)}", file=sys.stderr)
    return done


def _rmtree(path: Path) -> None:
    if mounts_under(path):  # never recurse into something still mounted
        return
    shutil.rmtree(path, ignore_errors=True)


def _file_tail(path: Path, lines: int = 80) -> str:
    try:
        return _tail(path.read_text(encoding="utf-8", errors="replace"), lines)
    except OSError as e:
        return f"(no log: {e})"


def _wait_for_socket(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(proc):
        if path.exists():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                try:
                    s.connect(os.fspath(path))
                    return True
                except OSError:
                    pass
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- #
# the busybox rootfs (same bytes as /work/shared/bench/make.sh)
# --------------------------------------------------------------------------- #


def make_busybox_rootfs_tar(dest: Path) -> Path:
    """Build the deterministic busybox rootfs tar of bench/make.sh and return its path.

    dest is the tar file to write, or an existing directory (then dest/busybox.tar).
    The rootfs itself is built next to it in "<tar stem>-rootfs/".  Needs
    busybox-static (/bin/busybox must be the static binary) and GNU tar.
    """
    tar_path = dest / "busybox.tar" if dest.is_dir() else dest
    root = tar_path.with_name(tar_path.stem + "-rootfs")
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise FileNotFoundError("/bin/busybox is missing: apt-get install busybox-static")
    shutil.rmtree(root, ignore_errors=True)
    for name in ("bin", "usr", "etc", "root", "tmp", "var/www", "proc", "sys", "dev", "home"):
        (root / name).mkdir(parents=True, exist_ok=True)
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        d.chmod(0o755)
    (root / "tmp").chmod(0o1777)
    shutil.copyfile(busybox, root / "bin/busybox")
    (root / "bin/busybox").chmod(0o755)
    if os.geteuid() == 0:
        # symlinks for every applet, all in /bin, exactly as make.sh does it
        run_command(
            ["chroot", root, "/bin/busybox", "--install", "-s", "/bin"],
            note="is /bin/busybox the static one? (apt-get install busybox-static)",
        )
    else:  # same result without chroot: /bin/<applet> -> /bin/busybox
        applets = run_command([busybox, "--list"]).stdout.split()
        for name in applets:
            if name != "busybox":
                (root / "bin" / name).symlink_to("/bin/busybox")
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
    )
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    for f in ("etc/passwd", "etc/group"):
        (root / f).chmod(0o644)
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    run_command(
        [
            "tar", "-C", root, "--sort=name", "--mtime=@0", "--owner=0", "--group=0",
            "--numeric-owner", "-cf", tar_path, ".",
        ]
    )  # fmt: skip
    return tar_path


def make_modified_tar(base_tar: Path, dest: Path, files: Mapping[str, bytes]) -> Path:
    """base_tar plus files ({"data/x.txt": b"..."}, parent dirs added), deterministic."""
    dirs: set[str] = set()
    for name in files:
        parts = name.strip("/").split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    with tarfile.open(base_tar) as src, tarfile.open(dest, "w", format=tarfile.GNU_FORMAT) as out:
        existing = {m.name.removeprefix("./").rstrip("/") for m in src.getmembers()}
        for m in src.getmembers():
            out.addfile(m, src.extractfile(m) if m.isreg() else None)
        for d in sorted(dirs - existing):
            ti = tarfile.TarInfo("./" + d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 0
            out.addfile(ti)
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo("./" + name.strip("/"))
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            out.addfile(ti, io.BytesIO(data))
    return dest


# --------------------------------------------------------------------------- #
# dockerd (Debian's docker.io 20.10) with its own containerd
# --------------------------------------------------------------------------- #


def docker_client() -> str:
    """The docker client binary: $DOCKYARD_TEST_DOCKER_CLI, Debian's, or the one on PATH.

    Debian's /usr/bin/docker (20.10, same package as dockerd) is preferred; a
    newer client (e.g. 28.x in /usr/local/bin) also works, it negotiates API 1.41.
    """
    env = os.environ.get("DOCKYARD_TEST_DOCKER_CLI")
    if env:
        return env
    if Path("/usr/bin/docker").exists():
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if not found:
        raise FileNotFoundError("no docker client: apt-get install docker.io")
    return found


def _drivers_from_env(var: str, preferred: str) -> tuple[str, ...]:
    """Storage drivers to try in order: $var (one driver) or preferred, then vfs."""
    forced = os.environ.get(var)
    return (forced,) if forced else (preferred, "vfs")


_CONTAINERD_TOML = """\
version = 2
root = "{data}/containerd"
state = "{run}/containerd/state"
oom_score = 0
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{run}/containerd/containerd.sock"

[ttrpc]
  address = "{run}/containerd/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{data}/containerd-opt"

[plugins."io.containerd.runtime.v1.linux"]
  runtime_root = "{data}/containerd-runc"
"""


@dataclass
class Dockerd:
    """A private dockerd + containerd pair.

    Layout: data root, logs and configs under the directory given to start();
    the exec root, the docker socket and containerd's sockets under a short
    /tmp/dyd-<worker>-XXXX directory (unix socket paths are limited to 107
    bytes and dockerd puts sockets below its exec root).  containerd is our own
    process with its own root/state/socket, never the system one: dockerd 20.10
    would silently use /run/containerd/containerd.sock whenever that exists.

    No networking is configured (bridge none, no iptables): run containers and
    builds with `--network none`.
    """

    storage_drivers: Sequence[str] = field(
        default_factory=lambda: _drivers_from_env("DOCKYARD_TEST_DOCKERD_DRIVER", "overlay2")
    )
    client: str = field(default_factory=docker_client)
    start_timeout: float = 60.0

    workdir: Path | None = None
    run_dir: Path | None = None
    data_root: Path | None = None
    storage_driver: str | None = None
    startup_seconds: float | None = None
    _dockerd: subprocess.Popen[bytes] | None = None
    _containerd: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        assert self.run_dir is not None, "dockerd not started"
        return self.run_dir / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def containerd_socket(self) -> Path:
        assert self.run_dir is not None, "dockerd not started"
        return self.run_dir / "containerd" / "containerd.sock"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "dockerd.log"

    @property
    def containerd_log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "containerd.log"

    def client_env(self) -> dict[str, str]:
        assert self.workdir is not None
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"}
        }
        env["DOCKER_CONFIG"] = os.fspath(self.workdir / "client-config")
        env["DOCKER_BUILDKIT"] = "0"  # the legacy builder: no buildx, no network
        env["DOCKER_CLI_HINTS"] = "false"
        return env

    def cli(
        self, *args: str | os.PathLike[str], input: str | None = None, check: bool = True,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Run the docker client against this daemon (-H unix://...)."""
        return run_command(
            [self.client, "-H", self.host, *args],
            input=input,
            check=check,
            env=self.client_env(),
            timeout=timeout,
            note=f"dockerd log: {self.log_path}" if self.workdir else "",
        )

    def image_id(self, ref: str) -> str:
        return self.cli("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()

    def diagnostics(self) -> str:
        return (
            f"--- {self.log_path} ---\n{_file_tail(self.log_path)}\n"
            f"--- {self.containerd_log_path} ---\n{_file_tail(self.containerd_log_path, 30)}"
        )

    # -- lifecycle -----------------------------------------------------------

    def start(self, tmpdir: Path) -> None:
        if shutil.which("dockerd") is None or shutil.which("containerd") is None:
            raise FileNotFoundError("dockerd/containerd missing: apt-get install docker.io")
        self.workdir = tmpdir
        tmpdir.mkdir(parents=True, exist_ok=True)
        (tmpdir / "client-config").mkdir(exist_ok=True)
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"dyd-{worker_id()}-", dir="/tmp"))
        t0 = time.monotonic()
        errors: list[str] = []
        try:
            for attempt, driver in enumerate(self.storage_drivers):
                self.data_root = tmpdir / f"data-{attempt}-{driver}"
                try:
                    self._start_once(driver, attempt)
                except RuntimeError as e:
                    errors.append(str(e))
                    self._stop_processes()
                    unmount_under(self.data_root, self.run_dir)
                    continue
                self.storage_driver = self.cli("info", "--format", "{{.Driver}}").stdout.strip()
                self.startup_seconds = time.monotonic() - t0
                return
        except BaseException:
            self.stop()
            raise
        self.stop()
        raise RuntimeError(
            "dockerd did not start with any of the storage drivers "
            f"{list(self.storage_drivers)}:\n" + "\n\n".join(errors)
        )

    def _start_once(self, driver: str, attempt: int) -> None:
        assert self.workdir is not None and self.run_dir is not None
        assert self.data_root is not None
        data, run = self.data_root, self.run_dir
        exec_root = run / f"exec-{attempt}"
        data.mkdir(parents=True, exist_ok=True)
        (run / "containerd").mkdir(parents=True, exist_ok=True)

        ctd_config = self.workdir / "containerd.toml"
        ctd_config.write_text(_CONTAINERD_TOML.format(data=data, run=run))
        with self.containerd_log_path.open("ab") as log:
            log.write(f"\n=== containerd for {data} ===\n".encode())
            self._containerd = subprocess.Popen(
                ["containerd", "--config", ctd_config],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        if not _wait_for_socket(self.containerd_socket, self._containerd, 30):
            raise RuntimeError(f"containerd did not come up\n{self.diagnostics()}")

        config = {
            "iptables": False,
            "ip-forward": False,
            "ip-masq": False,
            "bridge": "none",
            "userland-proxy": False,
            "shutdown-timeout": 2,
            "log-level": "info",
            "features": {"buildkit": False},
            # libtrust key; the default /etc/docker/key.json would be shared by all workers
            "deprecated-key-path": os.fspath(data / "key.json"),
        }
        daemon_json = self.workdir / "daemon.json"
        daemon_json.write_text(json.dumps(config, indent=2))
        argv: list[str] = [
            "dockerd",
            "--config-file", os.fspath(daemon_json),
            "-H", self.host,
            "--data-root", os.fspath(data),
            "--exec-root", os.fspath(exec_root),
            "--pidfile", os.fspath(run / "dockerd.pid"),
            "--containerd", os.fspath(self.containerd_socket),
            "--storage-driver", driver,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {shlex.join(argv)} ===\n".encode())
            self._dockerd = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

        deadline = time.monotonic() + self.start_timeout
        last: subprocess.CompletedProcess[str] | None = None
        while time.monotonic() < deadline:
            if not _alive(self._dockerd):
                raise RuntimeError(
                    f"dockerd ({driver}) exited with {self._dockerd.returncode}\n"
                    f"{self.diagnostics()}"
                )
            if self.socket.exists():
                last = self.cli("version", check=False, timeout=20)
                if last.returncode == 0:
                    return
            time.sleep(0.1)
        detail = f"last `docker version`: {last.stderr.strip()}\n" if last else ""
        raise RuntimeError(
            f"dockerd ({driver}) did not answer within {self.start_timeout:.0f}s\n"
            f"{detail}{self.diagnostics()}"
        )

    def _stop_processes(self) -> None:
        if self._dockerd is not None:
            _stop_process(self._dockerd, timeout=30)
            self._dockerd = None
        if self._containerd is not None:
            _stop_process(self._containerd, timeout=15)
            self._containerd = None
        if self.run_dir is not None:  # shims of our containerd (only if containers ran)
            _kill_by_cmdline_marker(os.fspath(self.containerd_socket))

    def stop(self) -> None:
        """Stop dockerd and containerd, unmount what they left, remove the run dir."""
        self._stop_processes()
        roots = [p for p in (self.workdir, self.run_dir) if p is not None]
        if roots:
            unmount_under(*roots)
        if self.run_dir is not None:
            _rmtree(self.run_dir)


# --------------------------------------------------------------------------- #
# podman (4.3), isolated storage and config
# --------------------------------------------------------------------------- #

_POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


@dataclass
class Podman:
    """podman with private storage, config, locks, events, networks and HOME.

    containers.conf is passed via CONTAINERS_CONF (the only file read then);
    default_ulimits are lowered to the sandbox's hard nofile limit (20000).
    Caveat: podman and skopeo as root keep their blob-info cache in
    /var/lib/containers/cache (no option moves it; it is a bolt DB with locking).
    """

    storage_drivers: Sequence[str] = field(
        default_factory=lambda: _drivers_from_env("DOCKYARD_TEST_PODMAN_DRIVER", "overlay")
    )

    workdir: Path | None = None
    run_dir: Path | None = None
    root: Path | None = None
    runroot: Path | None = None
    storage_driver: str | None = None
    _env: dict[str, str] = field(default_factory=dict)
    _global: list[str] = field(default_factory=list)

    def start(self, tmpdir: Path) -> None:
        if shutil.which("podman") is None:
            raise FileNotFoundError("podman missing: apt-get install podman")
        self.workdir = tmpdir
        tmpdir.mkdir(parents=True, exist_ok=True)
        # podman refuses a runroot longer than 50 characters: keep it (and the
        # libpod tmp dir, which holds locks) in a short /tmp/dyp-<worker>-XXXX
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"dyp-{worker_id()}-", dir="/tmp"))
        errors: list[str] = []
        for driver in self.storage_drivers:
            self._configure(driver)
            proc = self.cli("info", "--format", "{{.Store.GraphDriverName}}", check=False)
            if proc.returncode == 0:
                self.storage_driver = proc.stdout.strip()
                return
            errors.append(f"{driver}: {proc.stderr.strip()}")
        self.stop()
        raise RuntimeError("podman storage did not initialise:\n" + "\n".join(errors))

    def _configure(self, driver: str) -> None:
        assert self.workdir is not None and self.run_dir is not None
        w, r = self.workdir / driver, self.run_dir / driver
        self.root, self.runroot = w / "root", r / "runroot"
        for d in ("root", "networks", "home/.config/containers", "imgtmp"):
            (w / d).mkdir(parents=True, exist_ok=True)
        for d in ("runroot", "tmp"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (w / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            'netns = "none"\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{w}/events.log"\n'
            'lock_type = "file"\n'
            f'tmp_dir = "{r}/tmp"\n'
            f'static_dir = "{w}/root/libpod"\n'
            f'volume_path = "{w}/root/volumes"\n'
            f'image_copy_tmp_dir = "{w}/imgtmp"\n'
            "[network]\n"
            f'network_config_dir = "{w}/networks"\n'
        )
        (w / "storage.conf").write_text(
            f'[storage]\ndriver = "{driver}"\ngraphroot = "{self.root}"\n'
            f'runroot = "{self.runroot}"\n'
        )
        (w / "registries.conf").write_text(
            'unqualified-search-registries = []\nshort-name-mode = "permissive"\n'
        )
        (w / "home/.config/containers/policy.json").write_text(json.dumps(_POLICY))
        self._env = dict(os.environ)
        for k in ("CONTAINER_HOST", "CONTAINER_CONNECTION", "REGISTRY_AUTH_FILE"):
            self._env.pop(k, None)
        self._env.update(
            CONTAINERS_CONF=os.fspath(w / "containers.conf"),
            CONTAINERS_STORAGE_CONF=os.fspath(w / "storage.conf"),
            CONTAINERS_REGISTRIES_CONF=os.fspath(w / "registries.conf"),
            HOME=os.fspath(w / "home"),  # $HOME/.config/containers/policy.json is used
            XDG_CONFIG_HOME=os.fspath(w / "home/.config"),
            XDG_RUNTIME_DIR=os.fspath(r / "runroot"),
            TMPDIR=os.fspath(w / "imgtmp"),
        )
        self._global = [
            "--root", os.fspath(self.root),
            "--runroot", os.fspath(self.runroot),
            "--storage-driver", driver,
            "--tmpdir", os.fspath(r / "tmp"),
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
            "--network-config-dir", os.fspath(w / "networks"),
        ]  # fmt: skip

    def cli(
        self, *args: str | os.PathLike[str], input: str | None = None, check: bool = True,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        assert self.workdir is not None, "podman not started"
        return run_command(
            ["podman", *self._global, *args], input=input, check=check, env=self._env,
            timeout=timeout,
        )  # fmt: skip

    def image_id(self, ref: str) -> str:
        """podman's image ID (the config digest) as sha256:<hex>."""
        out = self.cli("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
        return out if out.startswith("sha256:") else "sha256:" + out

    def stop(self) -> None:
        """Unmount anything left under podman's dirs; remove the short run dir."""
        roots = [p for p in (self.workdir, self.run_dir) if p is not None]
        if roots:
            unmount_under(*roots)
        if self.run_dir is not None:
            _rmtree(self.run_dir)


# --------------------------------------------------------------------------- #
# skopeo and umoci
# --------------------------------------------------------------------------- #


@dataclass
class Skopeo:
    """skopeo with its own policy.json, registries.d, tmp dir and HOME."""

    workdir: Path

    def __post_init__(self) -> None:
        if shutil.which("skopeo") is None:
            raise FileNotFoundError("skopeo missing: apt-get install skopeo")
        for d in ("tmp", "registries.d", "home"):
            (self.workdir / d).mkdir(parents=True, exist_ok=True)
        self.policy = self.workdir / "policy.json"
        self.policy.write_text(json.dumps(_POLICY))
        self._env = dict(os.environ, HOME=os.fspath(self.workdir / "home"))
        self._env.pop("REGISTRY_AUTH_FILE", None)

    def cli(
        self, *args: str | os.PathLike[str], check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        return run_command(
            [
                "skopeo",
                "--policy", os.fspath(self.policy),
                "--registries.d", os.fspath(self.workdir / "registries.d"),
                "--tmpdir", os.fspath(self.workdir / "tmp"),
                *args,
            ],
            check=check, env=self._env, timeout=timeout,
        )  # fmt: skip

    def copy(self, src: str, dst: str, *flags: str) -> None:
        self.cli("copy", "--quiet", *flags, src, dst)

    def inspect_raw(self, ref: str) -> dict[str, Any]:
        """The manifest skopeo reads for ref (parsed)."""
        result: dict[str, Any] = json.loads(self.cli("inspect", "--raw", ref).stdout)
        return result

    def inspect_config(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.cli("inspect", "--config", ref).stdout)
        return result

    def config_digest(self, ref: str) -> str:
        """The image ID as the peers define it: the digest of the config blob."""
        digest: str = self.inspect_raw(ref)["config"]["digest"]
        return digest


def umoci(*args: str | os.PathLike[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    if shutil.which("umoci") is None:
        raise FileNotFoundError("umoci missing: apt-get install umoci")
    return run_command(["umoci", *args], check=check)


# --------------------------------------------------------------------------- #
# dockyard's own CLI
# --------------------------------------------------------------------------- #


def dockyard_command() -> tuple[list[str], dict[str, str]]:
    """argv prefix and environment that run this checkout's dockyard CLI.

    $DOCKYARD_BIN (shell words), else <sys.prefix>/bin/dockyard (the venv running
    pytest), else `dockyard` on PATH, else this interpreter importing
    dockyard.cli.main from <repo>/src.
    """
    env = dict(os.environ)
    override = env.get("DOCKYARD_BIN")
    if override:
        return shlex.split(override), env
    venv_bin = Path(sys.prefix) / "bin" / "dockyard"
    if venv_bin.exists():
        return [os.fspath(venv_bin)], env
    found = shutil.which("dockyard")
    if found:
        return [found], env
    src = os.fspath(REPO_ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    code = "import sys; from dockyard.cli.main import main; sys.exit(main())"
    return [sys.executable, "-c", code], env


@dataclass
class Dockyard:
    """`dockyard --root <root> ...` with text output captured."""

    root: Path
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.argv:
            self.argv, self.env = dockyard_command()
        self.root.mkdir(parents=True, exist_ok=True)

    def run(
        self, *args: str | os.PathLike[str], input: str | None = None, check: bool = True,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return run_command(
            [*self.argv, "--root", os.fspath(self.root), *args],
            input=input, check=check, env=self.env, timeout=timeout,
        )  # fmt: skip

    def sibling(self, name: str) -> Dockyard:
        """Another store beside this one, with the same command and environment
        (so the same DOCKER_CONFIG)."""
        return Dockyard(self.root.parent / name, list(self.argv), dict(self.env))


# --------------------------------------------------------------------------- #
# archives made by the peers
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class PeerImage:
    """One named image in a peer's archive: the name as the peer reports it
    (podman: localhost/...) and the image ID the peer reports (config digest)."""

    ref: str
    id: str


@dataclass(frozen=True)
class PeerArchive:
    path: Path
    transport: str  # "docker-archive" or "oci-archive"
    producer: str
    images: tuple[PeerImage, ...]

    @property
    def refs(self) -> set[str]:
        return {i.ref for i in self.images}

    def ids(self) -> dict[str, str]:
        return {i.ref: i.id for i in self.images}


def tar_names(path: Path) -> list[str]:
    """Member names of an archive as `tar tf` lists them."""
    return run_command(["tar", "tf", path]).stdout.splitlines()


def _write_context(ctx: Path, base: str) -> Path:
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "index.html").write_bytes(SECOND_IMAGE_FILE)
    (ctx / "Dockerfile").write_text(SECOND_IMAGE_DOCKERFILE.format(base=base))
    return ctx


@dataclass(frozen=True)
class DockerImages:
    busybox: PeerImage  # busybox:latest (docker import)
    second: tuple[PeerImage, ...]  # me/b1:v1 and me/b1:latest: FROM busybox + COPY


def docker_make_images(dockerd: Dockerd, busybox_tar: Path, workdir: Path) -> DockerImages:
    """busybox:latest by `docker import`, me/b1:{v1,latest} by a legacy `docker build`
    (FROM busybox:latest + COPY: shares busybox's layer, adds one)."""
    dockerd.cli("import", busybox_tar, "busybox:latest")
    ctx = _write_context(workdir / "docker-ctx", "busybox:latest")
    dockerd.cli("build", "--network", "none", "-t", "me/b1:v1", ctx)
    dockerd.cli("tag", "me/b1:v1", "me/b1:latest")
    b1 = dockerd.image_id("me/b1:v1")
    return DockerImages(
        busybox=PeerImage("busybox:latest", dockerd.image_id("busybox:latest")),
        second=(PeerImage("me/b1:v1", b1), PeerImage("me/b1:latest", b1)),
    )


def docker_save(dockerd: Dockerd, images: Iterable[PeerImage], dest: Path) -> PeerArchive:
    imgs = tuple(images)
    dockerd.cli("save", "-o", dest, *[i.ref for i in imgs])
    return PeerArchive(dest, "docker-archive", "docker save (20.10)", imgs)


@dataclass(frozen=True)
class PodmanImages:
    busybox: PeerImage  # localhost/busybox:latest (podman import)
    second: PeerImage  # localhost/me/b1:v1 (podman build FROM busybox + COPY)


def podman_make_images(podman: Podman, busybox_tar: Path, workdir: Path) -> PodmanImages:
    podman.cli("import", "--quiet", busybox_tar, "busybox:latest")
    ctx = _write_context(workdir / "podman-ctx", "localhost/busybox:latest")
    podman.cli("build", "--quiet", "--network", "none", "--pull=never", "-t", "me/b1:v1", ctx)
    return PodmanImages(
        busybox=PeerImage("localhost/busybox:latest", podman.image_id("localhost/busybox:latest")),
        second=PeerImage("localhost/me/b1:v1", podman.image_id("localhost/me/b1:v1")),
    )


def podman_save_multi(podman: Podman, images: Iterable[PeerImage], dest: Path) -> PeerArchive:
    """`podman save -m` (docker-archive with several images)."""
    imgs = tuple(images)
    podman.cli("save", "--quiet", "-m", "-o", dest, *[i.ref for i in imgs])
    return PeerArchive(dest, "docker-archive", "podman save -m", imgs)


def podman_save_oci(podman: Podman, image: PeerImage, dest: Path) -> PeerArchive:
    """`podman save --format oci-archive` (one image; ref.name is the full name)."""
    podman.cli("save", "--quiet", "--format", "oci-archive", "-o", dest, image.ref)
    return PeerArchive(dest, "oci-archive", "podman save --format oci-archive", (image,))


def skopeo_docker_to_oci_archive(
    skopeo: Skopeo, docker_archive: PeerArchive, ref: str, dest: Path
) -> PeerArchive:
    """`skopeo copy docker-archive:SRC:ref oci-archive:DEST:ref`.

    skopeo converts the schema2 manifest to OCI and re-serialises the config
    in the process, so the image ID here is the new config digest (not docker's).
    """
    skopeo.copy(f"docker-archive:{docker_archive.path}:{ref}", f"oci-archive:{dest}:{ref}")
    image = PeerImage(ref, skopeo.config_digest(f"oci-archive:{dest}:{ref}"))
    return PeerArchive(dest, "oci-archive", "skopeo copy docker-archive: oci-archive:", (image,))
