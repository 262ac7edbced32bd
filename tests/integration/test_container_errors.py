"""Bad input to the container verbs: Docker 20.10's error texts and exit codes
(reference/extra/extra-transcript.txt), and nothing half made afterwards.

Each refusal runs on a store that already holds a created container ("taken") and
must leave ``ps -a``, the images and the container directories as they were; the
fixture then checks (as in test_containers.py) that no mount, netns file, IP, veth,
monitor or port proxy is left and that ``system check`` is clean. dockyard's CLI
says "dockyard" where Docker's says "docker"; otherwise the texts are Docker's.

Start failures (a missing or non-executable command, a host port in use) leave a
container that is not running and holds nothing, as Docker does; with --rm, none.
A SIGKILLed monitor: the container is reported exited, its process is gone and
everything it held is released.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_containers import (
    SOCK_ROOT,
    Env,
    Template,
    docker_words,
    free_port,
    make_env,
    monitors_of,
    proxies_to,
    template,  # noqa: F401  (the session fixture)
    wait_for,
)


@dataclass
class World:
    env: Env
    taken: str  # ID of the created container "taken"

    def dirs(self) -> set[str]:
        """Container directories of the store and of its driver."""
        out = set()
        for d in (self.env.root / "containers", self.env.root / "overlay" / "containers"):
            if d.is_dir():
                out |= {f"{d.name}:{p.name}" for p in d.iterdir()}
        return out

    def quick_look(self) -> tuple[list[tuple[str, ...]], set[str], set[str]]:
        """What `ps -a` and `images -a` read (the container and image records, read
        only), and the container dirs: cheap enough to take after every refusal."""
        db = sqlite3.connect(f"file:{self.env.root / 'dockyard.db'}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT id, name, state FROM containers ORDER BY id").fetchall()
            images = {r[0] for r in db.execute("SELECT id FROM images")}
        finally:
            db.close()
        return [tuple(r) for r in rows], images, self.dirs()


@pytest.fixture
def world(tmp_path: Path, template: Template) -> Iterator[World]:  # noqa: F811
    with make_env(tmp_path / "store", template) as env:
        taken = env.cid(env.out("create", "--name", "taken", "busybox", "true"))
        yield World(env, taken)


def _ps_images_dirs(w: World) -> tuple[list[str], str, set[str]]:
    return w.env.ps_rows(), w.env.out("images", "-a", "--no-trunc", "-q"), w.dirs()


# (arguments, exit code, stderr in Docker's words; {taken} is the full ID of "taken")
REFUSALS: dict[str, tuple[list[str], int, str]] = {
    "run-name-in-use": (
        ["run", "--name", "taken", "busybox", "true"], 125,
        'docker: Error response from daemon: Conflict. The container name "/taken" is already '
        'in use by container "{taken}". You have to remove (or rename) that container to be '
        "able to reuse that name.\nSee 'docker run --help'.\n"),
    "create-name-in-use": (
        ["create", "--name", "taken", "busybox", "true"], 125,
        'docker: Error response from daemon: Conflict. The container name "/taken" is already '
        'in use by container "{taken}". You have to remove (or rename) that container to be '
        "able to reuse that name.\nSee 'docker create --help'.\n"),
    "commit-unknown-change": (
        ["commit", "-c", "FOO bar", "taken", "me/never:1"], 1,
        "Error response from daemon: dockerfile parse error line 1: unknown instruction: FOO\n"),
    "publish-not-a-port": (
        ["run", "-p", "abc", "busybox", "true"], 125,
        "docker: Invalid containerPort: abc.\nSee 'docker run --help'.\n"),
    "publish-host-port-too-big": (
        ["run", "-p", "127.0.0.1:99999:80", "busybox", "true"], 125,
        "docker: Invalid hostPort: 99999.\nSee 'docker run --help'.\n"),
    "network-missing": (
        ["run", "--network", "nosuch", "busybox", "true"], 125,
        "docker: Error response from daemon: network nosuch not found.\n"
        "See 'docker run --help'.\n"),
    "volume-relative-target": (
        ["run", "-v", "/tmp:relative", "busybox", "true"], 125,
        "docker: Error response from daemon: invalid volume specification: '/tmp:relative': "
        'invalid mount config for type "bind": invalid mount path: \'relative\' mount path '
        "must be absolute.\nSee 'docker run --help'.\n"),
    "volume-bad-mode": (
        ["run", "-v", "/tmp:/x:zz", "busybox", "true"], 125,
        "docker: Error response from daemon: invalid mode: zz.\nSee 'docker run --help'.\n"),
    "bad-name": (
        ["run", "--name", "bad name!", "busybox", "true"], 125,
        "docker: Error response from daemon: Invalid container name (bad name!), only "
        "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed.\nSee 'docker run --help'.\n"),
    "relative-workdir": (
        ["run", "-w", "rel", "busybox", "true"], 125,
        "docker: Error response from daemon: the working directory 'rel' is invalid, it needs "
        "to be an absolute path.\nSee 'docker run --help'.\n"),
    "exec-not-running": (
        ["exec", "taken", "true"], 1,
        "Error response from daemon: Container {taken} is not running\n"),
    "exec-missing": (
        ["exec", "nosuch", "true"], 1, "Error response from daemon: No such container: nosuch\n"),
    "start-missing": (
        ["start", "nosuch"], 1,
        "Error response from daemon: No such container: nosuch\n"
        "Error: failed to start containers: nosuch\n"),
    "rm-missing": (
        ["rm", "nosuch"], 1, "Error response from daemon: No such container: nosuch\n"),
    "kill-not-running": (
        ["kill", "taken"], 1,
        "Error response from daemon: Cannot kill container: taken: Container {taken} is not "
        "running\n"),
    "pause-not-running": (
        ["pause", "taken"], 1, "Error response from daemon: Container {taken} is not running\n"),
    "unpause-not-paused": (
        ["unpause", "taken"], 1, "Error response from daemon: Container {taken} is not paused\n"),
    "commit-missing": (
        ["commit", "nosuch", "x:y"], 1, "Error response from daemon: No such container: nosuch\n"),
}


def test_refused_with_dockers_text(world: World) -> None:
    """Every case of REFUSALS on one store (a store per case would cost more than the
    cases); all mismatches are reported together."""
    before = _ps_images_dirs(world)
    records = world.quick_look()
    wrong = []
    for case, (args, code, text) in REFUSALS.items():
        res = world.env.run(*args, check=False)
        got = (res.returncode, docker_words(res.stderr), res.stdout)
        want = (code, text.format(taken=world.taken), "")
        if got != want:
            wrong.append(f"{case}: {args}\n  got  {got!r}\n  want {want!r}")
        if (now := world.quick_look()) != records:
            wrong.append(f"{case}: {args} changed the records: {records} -> {now}")
            records = now
        if leftovers := world.env.leftovers():
            wrong.append(f"{case}: {args} left {leftovers}")
    assert _ps_images_dirs(world) == before
    assert not wrong, "\n".join(wrong)


def test_run_missing_image(world: World) -> None:
    before = _ps_images_dirs(world)
    res = world.env.run("run", "nosuch", check=False)
    lines = docker_words(res.stderr).splitlines()
    assert res.returncode == 125 and res.stdout == ""
    assert lines[0] == "Unable to find image 'nosuch:latest' locally"
    assert lines[1].startswith("docker: Error response from daemon: ") and "nosuch" in lines[1]
    assert lines[2:] == ["See 'docker run --help'."]
    assert _ps_images_dirs(world) == before


@pytest.mark.parametrize(("command", "code", "message"), [
    ("nosuchcmd", 127, 'exec: "nosuchcmd": executable file not found in $PATH'),
    ("/etc", 126, 'exec: "/etc": permission denied'),
])
def test_start_failure_exit_codes(world: World, command: str, code: int, message: str) -> None:
    env = world.env
    before = _ps_images_dirs(world)
    runc_text = f"runc create failed: unable to start container process: {message}"
    # Docker 20.10's words, through containerd's shim
    error = f"failed to create shim task: OCI runtime create failed: {runc_text}: unknown"
    for detach in ([], ["-d"]):
        res = env.run("run", *detach, "--name", f"bad{len(detach)}", "busybox", command,
                      check=False)
        assert res.returncode == code and res.stdout == ""
        line = docker_words(res.stderr)
        assert line == f"docker: Error response from daemon: {error}.\n"
        info = env.inspect(f"bad{len(detach)}")  # Docker keeps the container, not running
        state = info["State"]
        assert (state["Status"], state["Running"], state["Pid"], state["ExitCode"]) == (
            "created", False, 0, code)
        assert state["Error"] == error
        assert env.held_by(info["Id"]) == []
        assert f"bad{len(detach)} Created\n" in env.out(
            "ps", "-a", "--format", "{{.Names}} {{.Status}}")
    res = env.run("run", "--rm", "busybox", command, check=False)
    assert res.returncode == code and runc_text in res.stderr
    ps, images, _ = _ps_images_dirs(world)
    assert images == before[1] and len(ps) == len(before[0]) + 2
    assert env.out("ps", "-q") == ""


@pytest.mark.parametrize(("command", "message"), [
    ("nosuchcmd", 'exec: "nosuchcmd": executable file not found in $PATH'),
    ("/etc/passwd", 'exec: "/etc/passwd": permission denied'),
])
def test_exec_failure_is_126(world: World, command: str, message: str) -> None:
    """Docker: an exec whose process never starts exits 126 with the runtime's words;
    a process that exits 255 itself is not mistaken for one."""
    env = world.env
    env.run("run", "-d", "--name", "ex", "busybox", "sleep", "1000")
    try:
        res = env.run("exec", "ex", command, check=False)
        assert (res.returncode, res.stdout) == (126, "")
        assert res.stderr.splitlines()[-1] == (
            f"OCI runtime exec failed: exec failed: unable to start container process: "
            f"{message}: unknown")
        res = env.run("exec", "ex", "sh", "-c", "echo out; echo err >&2; exit 255", check=False)
        assert (res.returncode, res.stdout, res.stderr) == (255, "out\n", "err\n")
    finally:
        env.run("rm", "-f", "ex")


def test_port_already_allocated(world: World) -> None:
    env = world.env
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        res = env.run("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "busybox",
                      "httpd", "-f", "-h", "/etc", check=False)
        assert res.returncode == 125 and res.stdout == ""
        assert docker_words(res.stderr).startswith("docker: Error response from daemon: ")
        assert res.stderr.endswith(
            f"Bind for 127.0.0.1:{port} failed: port is already allocated.\n")
        info = env.inspect("web")
        state = info["State"]
        assert (state["Status"], state["Running"], state["ExitCode"]) == ("created", False, 128)
        assert "port is already allocated" in state["Error"]
        assert env.out("ps", "-q") == ""
        assert env.held_by(info["Id"]) == [] and proxies_to(env.subnet) == []
        assert env.out("port", "web") == ""
        res = env.run("run", "-d", "--rm", "-p", f"127.0.0.1:{port}:80", "busybox", "true",
                      check=False)  # with --rm the container goes too
        assert res.returncode == 125 and "port is already allocated" in res.stderr
        assert sorted(env.names("-a")) == ["taken", "web"]
    # the port is free again: the same container starts and serves on it
    assert env.out("start", "web") == "web\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /passwd HTTP/1.0\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.")
    env.run("rm", "-f", "web")


def test_pause_twice(world: World) -> None:
    env = world.env
    cid = env.cid(env.out("run", "-d", "--name", "pz", "busybox", "sleep", "1000"))
    env.run("pause", "pz")
    res = env.run("pause", "pz", check=False)
    assert (res.returncode, res.stdout, res.stderr) == (
        1, "", f"Error response from daemon: Container {cid} is already paused\n")
    state = env.state("pz")
    assert (state["Status"], state["Paused"], state["Running"]) == ("paused", True, True)
    res = env.run("rm", "pz", check=False)
    assert (res.returncode, res.stderr) == (1, (
        f"Error response from daemon: You cannot remove a paused container {cid}. Unpause and "
        "then stop the container before attempting removal or force remove\n"))
    env.run("unpause", "pz")
    env.run("rm", "-f", "pz")


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def test_killed_monitor(world: World) -> None:
    env = world.env
    cid = env.cid(env.out("run", "-d", "--name", "orphan", "busybox", "sleep", "1000"))
    sleep_pid = env.state("orphan")["Pid"]
    monitor_pid = int((SOCK_ROOT / cid[:16] / "monitor.pid").read_text())
    assert monitor_pid in monitors_of(env.root) and not _gone(sleep_pid)
    os.kill(monitor_pid, signal.SIGKILL)  # the monitor this test's `run -d` started
    wait_for(lambda: _gone(monitor_pid), what="the monitor to die")

    row = env.out("ps", "-a", "--filter", "name=orphan", "--format", "{{.Status}}")
    assert row.startswith("Exited (137) "), row
    assert env.out("ps", "-q") == ""
    state = env.state("orphan")
    assert (state["Running"], state["Status"], state["Pid"]) == (False, "exited", 0)
    wait_for(lambda: _gone(sleep_pid), 10.0, "the container's process to be gone")
    assert env.held_by(cid) == []
    assert env.out("wait", "orphan") == "137\n"
    for args, text in [  # the verbs treat it as stopped
        (["exec", "orphan", "true"], f"Container {cid} is not running"),
        (["kill", "orphan"], f"Cannot kill container: orphan: Container {cid} is not running"),
    ]:
        res = env.run(*args, check=False)
        assert (res.returncode, res.stderr) == (1, f"Error response from daemon: {text}\n")
    res = subprocess.run(["runc", "--root", str(env.root / "runc"), "list", "-q"],
                         capture_output=True, text=True, check=True)
    assert res.stdout == ""

    # the container starts again under a new monitor
    assert env.out("start", "orphan") == "orphan\n"
    assert env.state("orphan")["Running"] is True
    t0 = time.monotonic()
    env.run("rm", "-f", "orphan")
    assert time.monotonic() - t0 < 10
