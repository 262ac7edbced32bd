"""Containers end to end through the CLI, on real runc, overlay and a bridge of each
test's own: the lifecycle verbs (create, start, stop, kill, restart, rename, wait, rm),
logs, exec, attach, top, port, pause/unpause, commit (paused and not), diff, the run
options (-v, -e, --env-file, -w, -u, -h, --entrypoint, -l, --network, --rm), ps with
filters and formats, inspect's key order, info, and Docker's refusals of rmi/rm.

Cross-driver: an image committed on a vfs store, and one committed on a btrfs store
(a loop-mounted btrfs made by the test), saved and loaded into an overlay store keeps
its image ID and runs there with the same content.

Every test runs on its own store (a copy of a template holding busybox:latest, CMD
["sh"]) with its own bridge and /24, and ends by checking that nothing is left:
no mount under the store, no netns file, no IP allocation, no veth of its containers,
no monitor or port proxy of the store, no runc state, no cgroup of its containers,
and ``system check`` clean. The other test file (test_container_errors.py) uses the
same `Env`.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from peers import Dockyard, mounts_under, unmount_under, worker_id

from tests.integration.conftest import require

REFERENCE = Path("/work/shared/reference")
NET_STATE = Path("/run/dockyard/network")  # runtime.network: <bridge>/{netns,ipam.json}
SOCK_ROOT = Path("/run/dockyard")  # Container.sock_dir(): /run/dockyard/<id[:16]>
FREEZER = Path("/sys/fs/cgroup/freezer/dockyard")  # cgroups_path=/dockyard/<id>
TIMEOUT = 20.0
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def wait_for(pred: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cmdline(pid: int) -> list[bytes]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    if stat.rpartition(")")[2].split()[:1] == ["Z"]:
        return []
    return raw.removesuffix(b"\0").split(b"\0")


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def monitors_of(root: Path) -> list[int]:
    """Live monitor processes (runtime.monitor) whose spec names this store root."""
    found = []
    for pid in _pids():
        argv = _cmdline(pid)
        if b"dockyard.runtime.monitor" not in argv or not argv[-1]:
            continue
        try:
            spec = json.loads(Path(os.fsdecode(argv[-1])).read_text())
        except (OSError, ValueError):
            continue
        if spec.get("extra", {}).get("root") == str(root):
            found.append(pid)
    return found


def proxies_to(subnet: str) -> list[int]:
    """Live port proxies (runtime.portproxy) forwarding to an address of subnet."""
    prefix = subnet.rsplit(".", 1)[0] + "."
    found = []
    for pid in _pids():
        argv = _cmdline(pid)
        if b"dockyard.runtime.portproxy" in argv and any(prefix.encode() in a for a in argv):
            found.append(pid)
    return found


def veth_names() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True,
                         text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def links_on(bridge: str) -> list[str]:
    res = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True,
                         text=True, check=False)
    return [line.split(":")[1].strip().split("@")[0] for line in res.stdout.splitlines()]


def _host_routes() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "-j", "route", "show", "table", "all"],
                         capture_output=True, text=True, check=True).stdout
    nets = []
    for r in json.loads(out or "[]"):
        dst = r.get("dst", "")
        if dst in ("", "default") or r.get("table") == "local":
            continue
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.IPv4Network(dst, strict=False))
    return nets


BRIDGE_LOCKS = Path("/run/lock/dockyard-tests")  # one flock per test bridge name


def reserve_network() -> tuple[str, str, int]:
    """(bridge, subnet, lock fd): a /24 of 172.28.0.0/16 that no route uses and that no
    other test process holds (a flock on BRIDGE_LOCKS/<bridge>, held until the fd is
    closed), so concurrent pytest sessions and workers never share one. Workers start
    their search at different places to rarely contend."""
    w = worker_id()
    start = 128 + (int(w[2:]) * 16 if w.startswith("gw") and w[2:].isdigit() else 120) % 128
    BRIDGE_LOCKS.mkdir(parents=True, exist_ok=True)
    used = _host_routes()
    for k in range(256):
        n = (start + k) % 256
        cand = ipaddress.IPv4Network(f"172.28.{n}.0/24")
        if any(cand.overlaps(u) for u in used):
            continue
        fd = os.open(BRIDGE_LOCKS / f"dyc{n}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        # routed meanwhile by a holder that has just let go? then it is not free
        if not any(cand.overlaps(u) for u in _host_routes()):
            return f"dyc{n}", str(cand), fd
        os.close(fd)
    pytest.skip("no free /24 in 172.28.0.0/16 for a test bridge")


def docker_words(text: str) -> str:
    """dockyard's CLI names itself where Docker's says "docker"."""
    return text.replace("dockyard: ", "docker: ").replace("'dockyard ", "'docker ")


# --------------------------------------------------------------------------- #
# one store, one bridge, and the check that nothing is left
# --------------------------------------------------------------------------- #


@dataclass
class Env:
    dy: Dockyard
    bridge: str
    subnet: str
    busybox_id: str
    ids: set[str] = field(default_factory=set)  # every container ID the test saw
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.dy.root

    def run(self, *args: str | os.PathLike[str], check: bool = True, input: str | None = None,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self.dy.run(*args, check=check, input=input, timeout=timeout)

    def out(self, *args: str | os.PathLike[str], input: str | None = None) -> str:
        return self.run(*args, input=input).stdout

    def cid(self, text: str) -> str:
        """Remember a container ID printed by run -d / create; return it."""
        cid = text.strip()
        assert re.fullmatch(r"[0-9a-f]{64}", cid), cid
        self.ids.add(cid)
        return cid

    def inspect(self, name: str) -> dict[str, Any]:
        data = json.loads(self.out("container", "inspect", name))
        assert isinstance(data, list) and len(data) == 1
        result: dict[str, Any] = data[0]
        self.ids.add(result["Id"])
        return result

    def state(self, name: str) -> dict[str, Any]:
        state: dict[str, Any] = self.inspect(name)["State"]
        return state

    def popen(self, *args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[str]:
        proc = subprocess.Popen([*self.dy.argv, "--root", str(self.root), *args], stdin=stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.dy.env)
        self.procs.append(proc)
        return proc

    def names(self, *ps_args: str) -> list[str]:
        return self.out("ps", *ps_args, "--format", "{{.Names}}").splitlines()

    def ps_rows(self) -> list[str]:
        """`ps -a` as ID, name and state: what a failed command must not change."""
        return sorted(self.out("ps", "-a", "--no-trunc", "--format",
                               "{{.ID}} {{.Names}} {{.State}}").splitlines())

    def logs(self, name: str, *args: str) -> str:
        return self.out("logs", *args, name)

    # -- what a container leaves behind ------------------------------------------

    def held_by(self, cid: str) -> list[str]:
        """What a container that is not running must not hold any more."""
        problems = []
        for m in mounts_under(self.root):
            if cid in m:
                problems.append(f"mount {m}")
        if (NET_STATE / self.bridge / "netns" / cid).exists():
            problems.append(f"netns file of {cid[:12]}")
        if "dy" + cid[:11] in veth_names():
            problems.append(f"veth dy{cid[:11]}")
        if (FREEZER / cid).exists():
            problems.append(f"cgroup {FREEZER / cid}")
        for pid in monitors_of(self.root):
            spec = _cmdline(pid)[-1]
            if cid[:16].encode() in spec:
                problems.append(f"monitor {pid} of {cid[:12]}")
        return problems

    def leftovers(self) -> list[str]:
        """Everything of this store that should be gone once no container exists."""
        problems = [f"mount {m}" for m in mounts_under(self.root)]
        netns = NET_STATE / self.bridge / "netns"
        if netns.is_dir():
            problems += [f"netns file {p}" for p in netns.iterdir()]
        with contextlib.suppress(OSError, ValueError):
            ipam = json.loads((NET_STATE / self.bridge / "ipam.json").read_text())
            if ipam.get("allocations"):
                problems.append(f"IP allocations {ipam['allocations']}")
        veths = veth_names()
        problems += [f"veth {v}" for v in veths if any(v == "dy" + c[:11] for c in self.ids)]
        problems += [f"link {v} on {self.bridge}" for v in links_on(self.bridge)]
        problems += [f"monitor process {p}" for p in monitors_of(self.root)]
        problems += [f"proxy process {p}" for p in proxies_to(self.subnet)]
        runc_root = self.root / "runc"
        if runc_root.is_dir():
            listed = subprocess.run(["runc", "--root", str(runc_root), "list", "-q"],
                                    capture_output=True, text=True, check=False).stdout.split()
            problems += [f"runc state {c}" for c in listed]
        for cid in self.ids:
            if (FREEZER / cid).exists():
                problems.append(f"cgroup {FREEZER / cid}")
            if (SOCK_ROOT / cid[:16]).exists():
                problems.append(f"socket dir {SOCK_ROOT / cid[:16]}")
        return problems

    def assert_nothing_left(self) -> None:
        problems: list[str] = []

        def clean() -> bool:
            problems[:] = self.leftovers()
            return not problems

        with contextlib.suppress(AssertionError):
            wait_for(clean, 5.0, "the store's resources to be released")
        assert not problems, "left behind:\n" + "\n".join(problems)
        res = self.run("system", "check", check=False)
        assert res.returncode == 0 and res.stdout.rstrip().endswith(": clean"), res.stdout


def _cached_bytecode(dy: Dockyard, cache: Path) -> Dockyard:
    """Let the CLI (and the monitors it starts) keep compiled bytecode in cache, outside
    the checkout, even where PYTHONDONTWRITEBYTECODE is set: each of the hundreds of
    CLI runs here would otherwise compile its modules again."""
    dy.env = {k: v for k, v in dy.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    dy.env.setdefault("PYTHONPYCACHEPREFIX", str(cache))
    return dy


@dataclass(frozen=True)
class Template:
    root: Path  # a store holding busybox:latest (CMD ["sh"]), copied for every test
    busybox_id: str
    pycache: Path


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Template:
    pycache = tmp_path_factory.mktemp("pycache")
    dy = _cached_bytecode(Dockyard(tmp_path_factory.mktemp("containers-template") / "store"),
                          pycache)
    image_id = dy.run("import", "-c", 'CMD ["sh"]', busybox_tar, "busybox:latest").stdout.strip()
    return Template(dy.root, image_id, pycache)


def _force_cleanup(env: Env) -> None:
    """After a failed test: stop what the test started, so the next tests can run."""
    for proc in env.procs:
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
    with contextlib.suppress(Exception):
        ids = env.run("ps", "-aq", "--no-trunc", timeout=30).stdout.split()
        if ids:
            env.run("rm", "-f", *ids, check=False, timeout=60)
    for pid in monitors_of(env.root) + proxies_to(env.subnet):  # started by this test's store
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    unmount_under(env.root)


@contextlib.contextmanager
def make_env(root: Path, template: Template, config: dict[str, str] | None = None
             ) -> Iterator[Env]:
    """A copy of the template store at root with a bridge of its own; on exit every
    container is removed (rm -f), nothing may be left, and the bridge is deleted."""
    require("runc", "ip")
    bridge, subnet, lock = reserve_network()
    shutil.copytree(template.root, root)
    conf = {"bridge": bridge, "default-subnet": subnet, **(config or {})}
    (root / "config.json").write_text(json.dumps(conf))
    env = Env(_cached_bytecode(Dockyard(root), template.pycache), bridge, subnet,
              template.busybox_id)
    clean = False
    try:
        yield env
        for proc in env.procs:
            assert proc.poll() is not None, f"still running: {proc.args!r}"
        ids = env.out("ps", "-aq", "--no-trunc").split()
        env.ids.update(ids)
        if ids:
            env.run("rm", "-f", *ids)
        env.assert_nothing_left()
        clean = True
    finally:
        if not clean:
            _force_cleanup(env)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        shutil.rmtree(NET_STATE / bridge, ignore_errors=True)
        os.close(lock)  # the bridge is gone: another test may take its name


@pytest.fixture
def ctr(tmp_path: Path, template: Template) -> Iterator[Env]:
    with make_env(tmp_path / "store", template) as env:
        yield env


# --------------------------------------------------------------------------- #
# lifecycle
# --------------------------------------------------------------------------- #


def test_create_start_stop_wait(ctr: Env) -> None:
    cid = ctr.cid(ctr.out("create", "--name", "life", "busybox", "sleep", "1000"))
    assert ctr.names() == [] and ctr.names("-a") == ["life"]
    assert ctr.state("life")["Status"] == "created"
    assert "Created" in ctr.out("ps", "-a")

    assert ctr.out("start", "life") == "life\n"
    state = ctr.state(cid[:12])
    assert state["Status"] == "running" and state["Running"] is True and state["Pid"] > 0
    ps = ctr.out("ps").splitlines()
    assert len(ps) == 2 and ps[1].startswith(cid[:12]) and "Up " in ps[1] and "life" in ps[1]
    info = ctr.inspect("life")
    ip = info["NetworkSettings"]["IPAddress"]
    assert ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(ctr.subnet)
    assert f"dy{cid[:11]}" in links_on(ctr.bridge)

    # sleep as PID 1 ignores TERM: stop waits -t 1 second, then kills (137)
    t0 = time.monotonic()
    assert ctr.out("stop", "-t", "1", "life") == "life\n"
    took = time.monotonic() - t0
    assert 1.0 <= took < 15.0, took
    state = ctr.state("life")
    assert (state["Status"], state["Running"], state["ExitCode"], state["Pid"]) == (
        "exited", False, 137, 0)
    assert "Exited (137)" in ctr.out("ps", "-a")
    assert ctr.out("wait", "life") == "137\n"
    assert ctr.held_by(cid) == []
    assert ctr.out("stop", "life") == "life\n"  # stopping a stopped container is fine
    assert ctr.out("start", "life") == "life\n"  # an exited container starts again
    assert ctr.state("life")["Running"] is True
    ctr.run("rm", "-f", "life")


def test_restart_rename_rm(ctr: Env) -> None:
    cid = ctr.cid(ctr.out("create", "--name", "life", "busybox", "sleep", "1000"))
    # restart: of a container not running (it starts), and of a running one (stop -t 1,
    # then KILL, as sleep ignores TERM): a new process each time
    assert ctr.out("restart", "-t", "1", "life") == "life\n"
    state = ctr.state("life")
    pid1 = state["Pid"]
    assert state["Running"] is True and pid1 > 0
    t0 = time.monotonic()
    assert ctr.out("restart", "-t", "1", "life") == "life\n"
    assert time.monotonic() - t0 >= 1.0
    state = ctr.state("life")
    assert state["Running"] is True and state["Pid"] not in (0, pid1)

    ctr.run("rename", "life", "life2")
    assert ctr.names() == ["life2"]
    assert ctr.inspect("life2")["Name"] == "/life2"
    gone = ctr.run("inspect", "life", check=False)
    assert gone.returncode == 1 and "No such object: life" in gone.stderr

    res = ctr.run("rm", "life2", check=False)
    assert (res.returncode, res.stderr) == (1, (
        f"Error response from daemon: You cannot remove a running container {cid}. Stop the "
        "container before attempting removal or force remove\n"))
    assert ctr.out("rm", "-f", "life2") == "life2\n"
    assert ctr.out("ps", "-aq") == ""
    assert ctr.held_by(cid) == []
    assert not (ctr.root / "containers" / cid).exists()


def test_kill_signal_and_wait(ctr: Env) -> None:
    script = 'trap "echo got-usr1" USR1; echo ready; while :; do sleep 0.1; done'
    ctr.cid(ctr.out("run", "-d", "--name", "trap", "busybox", "sh", "-c", script))
    wait_for(lambda: "ready" in ctr.logs("trap"), what="the trap to be set")
    assert ctr.out("kill", "-s", "USR1", "trap") == "trap\n"
    wait_for(lambda: ctr.logs("trap") == "ready\ngot-usr1\n", what="the trap to run")
    ctr.run("kill", "--signal", "SIGUSR1", "trap")
    wait_for(lambda: ctr.logs("trap").count("got-usr1") == 2, what="the second trap")
    assert ctr.state("trap")["Running"] is True
    assert ctr.out("kill", "trap") == "trap\n"  # KILL
    assert ctr.out("wait", "trap") == "137\n"

    ctr.cid(ctr.out("run", "-d", "--name", "five", "busybox", "sh", "-c", "sleep 0.3; exit 5"))
    assert ctr.out("wait", "five") == "5\n"
    state = ctr.state("five")
    assert (state["Status"], state["ExitCode"]) == ("exited", 5)
    assert state["FinishedAt"] > state["StartedAt"]


def test_logs_timestamps_tail_follow(ctr: Env) -> None:
    ctr.cid(ctr.out("run", "-d", "--name", "lg", "busybox", "sh", "-c",
                    "echo one; echo two >&2; until [ -e /go ]; do sleep 0.05; done; echo three"))
    follow = ctr.popen("logs", "-f", "lg")
    wait_for(lambda: "one" in ctr.logs("lg"), what="the first line")
    time.sleep(0.3)
    assert follow.poll() is None  # still following while the container runs
    ctr.run("exec", "lg", "touch", "/go")
    out, err = follow.communicate(timeout=TIMEOUT)  # ends by itself when it exits
    assert (follow.returncode, out, err) == (0, "one\nthree\n", "two\n")

    res = ctr.run("logs", "lg")
    assert (res.stdout, res.stderr) == ("one\nthree\n", "two\n")
    stamped = ctr.run("logs", "-t", "lg")
    lines = stamped.stdout.splitlines() + stamped.stderr.splitlines()
    assert len(lines) == 3 and all(RFC3339_NANO.match(line) for line in lines), lines
    assert [line.split(" ", 1)[1] for line in lines] == ["one", "three", "two"]
    assert ctr.out("logs", "--tail", "1", "lg") == "three\n"
    assert ctr.run("logs", "--tail", "0", "lg").stdout == ""


def test_exec_and_top(ctr: Env) -> None:
    ctr.cid(ctr.out("run", "-d", "--name", "ex", "busybox", "sleep", "1000"))
    assert ctr.run("exec", "ex", "sh", "-c", "exit 7", check=False).returncode == 7
    assert ctr.out("exec", "-e", "FOO=bar", "-w", "/tmp", "ex", "sh", "-c",
                   'echo "$FOO"; pwd') == "bar\n/tmp\n"
    assert ctr.out("exec", "-u", "nobody", "ex", "id", "-u") == "65534\n"
    assert ctr.out("exec", "ex", "id", "-u") == "0\n"
    assert ctr.out("exec", "-i", "ex", "cat", input="piped\n") == "piped\n"

    top = ctr.out("top", "ex").splitlines()
    header = top[0].split()
    assert header[:2] == ["UID", "PID"] and header[-1] == "CMD"
    assert len(top) == 2 and top[1].split()[0] == "root" and top[1].endswith("sleep 1000")
    assert int(top[1].split()[1]) == ctr.state("ex")["Pid"]
    ctr.run("rm", "-f", "ex")


def test_attach_pipes_stdin_and_output(ctr: Env) -> None:
    script = 'while read l; do echo "got:$l"; [ "$l" = quit ] && exit 3; done'
    ctr.cid(ctr.out("run", "-d", "-i", "--name", "att", "busybox", "sh", "-c", script))
    attach = ctr.popen("attach", "att", stdin=subprocess.PIPE)
    assert attach.stdin is not None and attach.stdout is not None
    watchdog = threading.Timer(TIMEOUT, attach.kill)  # a hung attach fails, not hangs
    watchdog.start()
    attach.stdin.write("hello\n")
    attach.stdin.flush()
    assert attach.stdout.readline() == "got:hello\n"
    attach.stdin.write("quit\n")
    attach.stdin.flush()
    assert attach.wait(timeout=TIMEOUT) == 3  # attach exits with the container's code
    assert attach.stdout.read() == "got:quit\n"
    attach.stdin.close()
    watchdog.cancel()
    assert ctr.state("att")["ExitCode"] == 3
    assert ctr.logs("att") == "got:hello\ngot:quit\n"


def test_pause_unpause(ctr: Env, tmp_path: Path) -> None:
    ticks = tmp_path / "ticks"
    ticks.mkdir()
    cid = ctr.cid(ctr.out("run", "-d", "--name", "pz", "-v", f"{ticks}:/t", "busybox", "sh",
                          "-c", "while :; do echo x >> /t/log; sleep 0.02; done"))
    log = ticks / "log"
    wait_for(lambda: log.exists() and log.stat().st_size > 10, what="the ticker")

    assert ctr.out("pause", "pz") == "pz\n"
    state = ctr.state("pz")
    assert (state["Status"], state["Running"], state["Paused"]) == ("paused", True, True)
    assert (FREEZER / cid / "freezer.state").read_text().strip() == "FROZEN"
    assert re.search(r"Up .* \(Paused\)\s+pz$", ctr.out("ps").splitlines()[1])
    size = log.stat().st_size
    time.sleep(0.5)
    assert log.stat().st_size == size  # the ticker is blocked
    res = ctr.run("exec", "pz", "true", check=False)
    assert (res.returncode, res.stderr) == (1, (
        f"Error response from daemon: Container {cid} is paused, unpause the container "
        "before exec\n"))

    assert ctr.out("unpause", "pz") == "pz\n"
    state = ctr.state("pz")
    assert (state["Status"], state["Running"], state["Paused"]) == ("running", True, False)
    assert "(Paused)" not in ctr.out("ps")
    wait_for(lambda: log.stat().st_size > size, what="the ticker to go on")
    ctr.run("pause", "pz")
    assert ctr.out("rm", "-f", "pz") == "pz\n"  # a paused container is force-removable


def _freezer_states(cid: str, stop: threading.Event, seen: set[str]) -> None:
    path = FREEZER / cid / "freezer.state"
    while not stop.is_set():
        with contextlib.suppress(OSError):
            seen.add(path.read_text().strip())
        time.sleep(0.002)  # a commit stays frozen for far longer (runc resume alone)


def test_commit_pauses_a_running_container(ctr: Env) -> None:
    cid = ctr.cid(ctr.out("run", "-d", "--name", "cp", "busybox", "sh", "-c",
                          "head -c 4194304 /dev/urandom > /big && echo made; sleep 1000"))
    wait_for(lambda: ctr.logs("cp") == "made\n", what="the big file")

    def commit(*args: str) -> tuple[str, set[str]]:
        seen: set[str] = set()
        stop = threading.Event()
        poller = threading.Thread(target=_freezer_states, args=(cid, stop, seen))
        poller.start()
        try:
            image = ctr.out("commit", *args).strip()
        finally:
            stop.set()
            poller.join()
        return image, seen

    paused_id, seen = commit("-p", "cp", "me/cp:paused")
    assert "FROZEN" in seen, seen  # frozen during the commit ...
    state = ctr.state("cp")  # ... and running again afterwards
    assert (state["Status"], state["Running"], state["Paused"]) == ("running", True, False)
    assert (FREEZER / cid / "freezer.state").read_text().strip() == "THAWED"
    assert ctr.out("exec", "cp", "echo", "alive") == "alive\n"

    default_id, seen = commit("cp", "me/cp:default")  # -p is the default
    assert "FROZEN" in seen, seen
    unpaused_id, seen = commit("--pause=false", "cp", "me/cp:unpaused")
    assert seen == {"THAWED"}, seen
    assert ctr.state("cp")["Running"] is True
    assert len({paused_id, default_id, unpaused_id}) == 3  # created differs
    image = json.loads(ctr.out("image", "inspect", "me/cp:unpaused"))[0]
    assert image["Container"] == cid and len(image["RootFS"]["Layers"]) == 2
    assert image["Parent"] == ctr.busybox_id
    ctr.run("rm", "-f", "cp")


def test_diff_and_commit_of_deletions(ctr: Env) -> None:
    script = "rm /bin/vi; echo 'me:x:1000:1000::/home:/bin/sh' >> /etc/passwd; mkdir /new; " \
             "touch /new/f"
    assert ctr.out("run", "--name", "df", "busybox", "sh", "-c", script) == ""
    assert ctr.out("diff", "df").splitlines() == [
        "C /bin", "D /bin/vi", "C /etc", "C /etc/passwd", "A /new", "A /new/f"]
    image = ctr.out("commit", "df", "me/df:1").strip()
    assert image.startswith("sha256:")
    out = ctr.out("run", "--rm", "me/df:1", "sh", "-c",
                  "test -e /bin/vi || echo no-vi; id -u me; ls /new")
    assert out == "no-vi\n1000\nf\n"
    res = ctr.run("rmi", "busybox:latest", check=False)  # me/df:1 is a child, df uses it
    assert res.returncode == 1 and "conflict: unable to remove repository reference" in res.stderr


def test_bind_mounts_rw_and_ro(ctr: Env, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "in.txt").write_text("from host\n")
    out = ctr.out("run", "--rm", "-v", f"{host}:/mnt", "busybox", "sh", "-c",
                  "cat /mnt/in.txt; echo from container > /mnt/out.txt")
    assert out == "from host\n"
    assert (host / "out.txt").read_text() == "from container\n"

    ctr.cid(ctr.out("create", "--name", "ro", "-v", f"{host}:/mnt:ro", "busybox", "sh", "-c",
                    "cat /mnt/in.txt; echo x > /mnt/new.txt"))
    info = ctr.inspect("ro")
    assert info["HostConfig"]["Binds"] == [f"{host}:/mnt:ro"]
    assert info["Mounts"] == [{"Type": "bind", "Source": str(host), "Destination": "/mnt",
                               "Mode": "ro", "RW": False, "Propagation": "rprivate"}]
    res = ctr.run("start", "-a", "ro", check=False)
    assert res.returncode == 1 and res.stdout == "from host\n"
    assert "Read-only file system" in res.stderr
    assert not (host / "new.txt").exists()


def test_run_options(ctr: Env, tmp_path: Path) -> None:
    env_file = tmp_path / "env.list"
    env_file.write_text("# a comment\nFROM_FILE=1\nSPACES=two words\n\nFOO=from-file\n")
    out = ctr.out("run", "--rm", "-e", "FOO=from-flag", "--env-file", str(env_file),
                  "-w", "/work/dir", "-u", "65534:65534", "-h", "myhost", "busybox", "sh", "-c",
                  'echo "$FOO|$FROM_FILE|$SPACES"; pwd; id -u; id -g; hostname; '
                  "cat /etc/hostname")
    assert out.splitlines() == ["from-flag|1|two words", "/work/dir", "65534", "65534",
                                "myhost", "myhost"]
    assert ctr.out("run", "--rm", "--entrypoint", "echo", "busybox", "hi", "there") == \
        "hi there\n"
    assert ctr.out("run", "--rm", "-u", "nobody", "busybox", "id", "-un") == "nobody\n"

    ctr.cid(ctr.out("create", "--name", "lab", "-l", "a=b", "--label", "flag", "-e", "X=1",
                    "--entrypoint", "/bin/sh", "busybox", "-c", "true"))
    config = ctr.inspect("lab")["Config"]
    assert config["Labels"] == {"a": "b", "flag": ""}
    assert "X=1" in config["Env"]
    assert (config["Entrypoint"], config["Cmd"]) == (["/bin/sh"], ["-c", "true"])
    assert ctr.names("-a", "--filter", "label=a=b") == ["lab"]


def test_network_none_and_host(ctr: Env) -> None:
    host_netns = os.readlink("/proc/self/ns/net")
    out = ctr.out("run", "--rm", "--network", "none", "busybox", "sh", "-c",
                  "cat /proc/net/dev; echo ---; ip -o addr; readlink /proc/self/ns/net")
    dev, rest = out.split("---\n")
    *addrs, netns = rest.splitlines()
    assert [line.split(":")[0].strip() for line in dev.splitlines()[2:]] == ["lo"]
    assert {line.split()[1] for line in addrs} == {"lo"}
    assert netns.startswith("net:[") and netns != host_netns
    assert links_on(ctr.bridge) == []

    ctr.cid(ctr.out("create", "--name", "hostnet", "--network", "host", "busybox", "sh", "-c",
                    "readlink /proc/self/ns/net; hostname"))
    assert ctr.out("start", "-a", "hostnet").splitlines() == [host_netns, socket.gethostname()]
    info = ctr.inspect("hostnet")
    assert info["HostConfig"]["NetworkMode"] == "host"
    assert info["Config"]["Hostname"] == socket.gethostname()  # Docker: the host's name
    assert links_on(ctr.bridge) == []


def test_run_rm_leaves_no_container(ctr: Env) -> None:
    res = ctr.run("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 4",
                  check=False)
    assert (res.returncode, res.stdout, res.stderr) == (4, "out\n", "err\n")
    assert ctr.out("ps", "-aq") == ""
    cid = ctr.cid(ctr.out("run", "-d", "--rm", "busybox", "sh", "-c", "sleep 0.2"))
    wait_for(lambda: ctr.out("ps", "-aq") == "", what="the --rm container to go")
    assert not (ctr.root / "containers" / cid).exists()


def test_ps_filters_and_formats(ctr: Env) -> None:
    ctr.cid(ctr.out("create", "--name", "new1", "busybox", "true"))
    ctr.run("run", "--name", "ok1", "busybox", "true")
    ctr.run("run", "--name", "bad1", "busybox", "sh", "-c", "exit 3", check=False)
    up = ctr.cid(ctr.out("run", "-d", "--name", "up1", "-l", "role=web", "busybox", "sleep",
                         "1000"))
    assert ctr.names() == ["up1"]
    assert ctr.names("-a") == ["up1", "bad1", "ok1", "new1"]  # newest first
    assert sorted(ctr.names("-a", "--filter", "status=exited")) == ["bad1", "ok1"]
    assert ctr.names("-a", "--filter", "status=created") == ["new1"]
    assert ctr.names("--filter", "status=running") == ["up1"]
    assert ctr.names("-a", "--filter", "exited=3") == ["bad1"]
    assert ctr.names("-a", "--filter", "name=ok") == ["ok1"]
    assert ctr.names("-a", "--filter", "label=role=web") == ["up1"]
    assert ctr.out("ps", "-q", "--no-trunc") == up + "\n"
    assert ctr.out("ps", "-q") == up[:12] + "\n"
    assert len(ctr.out("ps", "-aq").split()) == 4
    assert ctr.out("ps", "-a", "-n", "2", "--format", "{{.Names}}: {{.Status}}").splitlines()[1] \
        .startswith("bad1: Exited (3) ")
    row = json.loads(ctr.out("ps", "--format", "{{json .}}"))
    assert (row["Names"], row["State"], row["Command"], row["Networks"]) == (
        "up1", "running", '"sleep 1000"', "bridge")
    header = ctr.out("ps").splitlines()[0].split()
    assert header == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS",
                      "NAMES"]
    ctr.run("rm", "-f", "up1")


def _key_tree(value: Any, path: str = "") -> list[tuple[str, list[str]]]:
    """Every object's key list, in order, by path (lists: their first element)."""
    out: list[tuple[str, list[str]]] = []
    if isinstance(value, dict):
        out.append((path, list(value)))
        for k, v in value.items():
            out += _key_tree(v, f"{path}.{k}")
    elif isinstance(value, list) and value:
        out += _key_tree(value[0], f"{path}[0]")
    return out


def test_inspect_port_info_and_refusals(ctr: Env) -> None:
    port = free_port()
    cid = ctr.cid(ctr.out("run", "-d", "--name", "web1", "-p", f"127.0.0.1:{port}:80",
                          "busybox", "httpd", "-f", "-h", "/etc"))
    # the same key order as `docker inspect` of the walk-through's web1, everywhere
    ref = json.loads((REFERENCE / "inspect-container-web1-published.json").read_text())[0]
    info = ctr.inspect("web1")
    assert _key_tree(info) == _key_tree(ref)
    assert (info["Id"], info["Name"], info["Driver"]) == (cid, "/web1", "overlay")
    assert info["Path"] == "httpd" and info["Args"] == ["-f", "-h", "/etc"]
    assert info["Image"] == ctr.busybox_id and info["Config"]["Image"] == "busybox"
    assert info["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert info["NetworkSettings"]["Ports"] == info["HostConfig"]["PortBindings"]
    assert info["GraphDriver"]["Name"] == "overlay"
    assert Path(info["GraphDriver"]["Data"]["MergedDir"]).is_dir()

    assert ctr.out("port", "web1") == f"80/tcp -> 127.0.0.1:{port}\n"
    assert ctr.out("port", "web1", "80") == f"127.0.0.1:{port}\n"
    assert ctr.out("port", "web1", "80/tcp") == f"127.0.0.1:{port}\n"
    assert f"127.0.0.1:{port}->80/tcp" in ctr.out("ps")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /passwd HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.") and b"root:x:0:0" in reply

    lines = ctr.out("info").splitlines()
    assert " Storage Driver: overlay" in lines
    details = lines[lines.index(" Storage Driver: overlay") + 1:][:4]
    assert [d.split(":")[0] for d in details] == [
        "  Backing Filesystem", "  Supports d_type", "  Native Overlay Diff", "  userxattr"]
    assert "  Supports d_type: true" in details
    assert " Containers: 1" in lines and "  Running: 1" in lines

    res = ctr.run("rmi", "busybox:latest", check=False)
    assert (res.returncode, res.stderr) == (1, (
        'Error response from daemon: conflict: unable to remove repository reference '
        f'"busybox:latest" (must force) - container {cid[:12]} is using its referenced image '
        f"{ctr.busybox_id[7:19]}\n"))
    res = ctr.run("rm", "web1", check=False)
    assert (res.returncode, res.stderr) == (1, (
        f"Error response from daemon: You cannot remove a running container {cid}. Stop the "
        "container before attempting removal or force remove\n"))
    assert ctr.out("rm", "-f", "web1") == "web1\n"
    assert ctr.held_by(cid) == [] and proxies_to(ctr.subnet) == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert "Untagged: busybox:latest" in ctr.out("rmi", "busybox:latest")


# --------------------------------------------------------------------------- #
# across storage drivers
# --------------------------------------------------------------------------- #


def _commit_save_load_run(src: Env, dst: Env, driver: str, tmp_path: Path) -> None:
    """On src (driver): run + commit + save; load into dst (overlay): same ID, same file."""
    assert f" Storage Driver: {driver}" in src.out("info").splitlines()
    text = f"made on {driver}"
    src.cid(src.out("create", "--name", "maker", "busybox", "sh", "-c",
                    f"echo '{text}' > /made.txt; rm /bin/vi; mkdir -p /d/e"))
    assert src.out("start", "-a", "maker") == ""
    assert src.out("diff", "maker").splitlines() == [
        "C /bin", "D /bin/vi", "A /d", "A /d/e", "A /made.txt"]
    image_id = src.out("commit", "-c", 'CMD ["cat", "/made.txt"]', "maker",
                       f"me/{driver}:1").strip()
    assert src.inspect("maker")["Driver"] == driver
    archive = tmp_path / f"{driver}.tar"
    src.run("save", "-o", str(archive), f"me/{driver}:1")

    assert "Loaded image: me/" + driver + ":1" in dst.out("load", "-i", str(archive))
    loaded = json.loads(dst.out("image", "inspect", f"me/{driver}:1"))[0]
    assert loaded["Id"] == image_id
    assert dst.out("run", "--rm", f"me/{driver}:1") == text + "\n"
    assert dst.out("run", "--rm", f"me/{driver}:1", "sh", "-c",
                   "test -e /bin/vi || echo gone; ls -d /d/e") == "gone\n/d/e\n"


def test_vfs_commit_loads_into_overlay(tmp_path: Path, template: Template) -> None:
    with make_env(tmp_path / "vfs", template, {"storage-driver": "vfs"}) as vfs, \
            make_env(tmp_path / "overlay", template) as overlay:
        _commit_save_load_run(vfs, overlay, "vfs", tmp_path)


@contextlib.contextmanager
def loop_btrfs(where: Path) -> Iterator[Path]:
    """A 1 GiB loop-mounted btrfs at where/mnt; unmounted and detached afterwards."""
    require("mkfs.btrfs", "losetup")
    image = where / "btrfs.img"
    mnt = where / "mnt"
    mnt.mkdir(parents=True)
    with image.open("wb") as f:
        f.truncate(1 << 30)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                            capture_output=True, text=True).stdout.strip()
    try:
        subprocess.run(["mount", device, str(mnt)], check=True, capture_output=True)
        try:
            yield mnt
        finally:
            unmount_under(mnt / "store")
            subprocess.run(["umount", str(mnt)], check=True, capture_output=True)
    finally:
        subprocess.run(["losetup", "-d", device], check=True, capture_output=True)
        image.unlink()


@pytest.mark.btrfs
def test_btrfs_commit_loads_into_overlay(tmp_path: Path, template: Template) -> None:
    with loop_btrfs(tmp_path / "btrfs") as mnt, \
            make_env(mnt / "store", template) as btrfs, \
            make_env(tmp_path / "overlay", template) as overlay:
        _commit_save_load_run(btrfs, overlay, "btrfs", tmp_path)
        assert btrfs.inspect("maker")["GraphDriver"]["Name"] == "btrfs"
