"""The seed's walk-through end to end, on real runc, overlay and a real bridge:

busybox -> run -it (typed in a real terminal: tmux) -> commit -a -p -> commit -c CMD ->
tag -> run -d -p -> inspect IP -> fetch the page by IP and by the published port ->
save -> rmi -> load -> run again -> push to a local registry -> rmi -> pull -> run.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import Dockyard, worker_id
from registry_server import RegistryServer

from tests.integration.conftest import require

PAGE = "<h1>b1</h1>"


def fetch(url: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Tmux:
    def __init__(self, name: str) -> None:
        self.socket = name

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True,
                              check=True).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "s")

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on screen:\n{screen}")
            time.sleep(0.1)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    require("tmux")
    t = Tmux(f"dytest{worker_id()}{time.monotonic_ns()}")
    yield t
    subprocess.run(["tmux", "-L", t.socket, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def network_config(dockyard: Dockyard) -> Iterator[dict[str, str]]:
    """A bridge and subnet of this test's own, so parallel workers never collide;
    the bridge is deleted afterwards (the containers are gone by then)."""
    from dockyard.runtime.network import delete_bridge

    n = abs(hash(worker_id())) % 200 + 20
    config = {"bridge": f"dyt{n}", "default-subnet": f"172.31.{n}.0/24"}
    dockyard.root.mkdir(parents=True, exist_ok=True)
    (dockyard.root / "config.json").write_text(json.dumps(config))
    yield config
    delete_bridge(config["bridge"])


def test_seed_walkthrough(dockyard: Dockyard, busybox_tar: Path, tmux: Tmux,
                          network_config: dict[str, str], tmp_path: Path) -> None:
    require("runc", "tmux")
    dy = dockyard.run
    # like the official busybox image, the base runs sh by default
    base = dy("import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox:latest").stdout.strip()

    # run -it in a real terminal and make the page by hand
    command = " ".join([*dockyard.argv, "--root", str(dockyard.root)])
    tmux.run("new-session", "-d", "-s", "s", "-x", "120", "-y", "30",
             f"{command} run --name b1server -it busybox")
    tmux.wait_for("#")
    tmux.run("send-keys", "-t", "s",
             f"mkdir -p /data/www/html && echo '{PAGE}' > /data/www/html/index.html && echo done",
             "Enter")
    tmux.wait_for("done")
    assert dy("diff", "b1server").stdout.splitlines() == [
        "A /data", "A /data/www", "A /data/www/html", "A /data/www/html/index.html"
    ]
    ps = dy("ps").stdout
    assert "b1server" in ps and "Up " in ps

    # commit -a -p while it runs, then a second commit with a new CMD
    v1 = dy("commit", "-a", "me@example.com", "-p", "b1server", "me/b1server:v0.1").stdout.strip()
    httpd = '["/bin/httpd","-f","-h","/data/www/html"]'
    v2 = dy("commit", "-a", "me@example.com", "-c", f"CMD {httpd}", "b1server",
            "me/b1server:v0.2").stdout.strip()
    dy("tag", "me/b1server:v0.2", "me/b1server:latest")
    image = json.loads(dy("inspect", "me/b1server:v0.2").stdout)[0]
    container_id = json.loads(dy("inspect", "b1server").stdout)[0]["Id"]
    assert image["Author"] == "me@example.com"
    assert image["Parent"] == base
    assert image["Container"] == container_id
    assert image["Config"]["Cmd"] == json.loads(httpd)
    assert image["ContainerConfig"]["Cmd"] == ["sh"]
    assert len(image["RootFS"]["Layers"]) == 2
    assert v1 != v2 and v2.startswith("sha256:")
    history = dy("history", "--no-trunc", "me/b1server:v0.2").stdout.splitlines()
    assert history[1].startswith(v2) and "sh" in history[1]

    # the shell still runs after the paused commit: leave it
    tmux.run("send-keys", "-t", "s", "exit 3", "Enter")
    assert dy("wait", "b1server").stdout.strip() == "3"

    # run the server detached with a published port; reach it by IP and by 127.0.0.1
    port = 18000 + abs(hash(worker_id())) % 1000
    cid = dy("run", "--name", "b1s2", "-d", "-p", f"127.0.0.1:{port}:80",
             "me/b1server:v0.2").stdout.strip()
    info = json.loads(dy("inspect", "b1s2").stdout)[0]
    ip = info["NetworkSettings"]["IPAddress"]
    assert info["Id"] == cid and info["State"]["Running"] is True
    assert ip.startswith(network_config["default-subnet"].rsplit(".", 1)[0])
    assert info["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1",
                                                            "HostPort": str(port)}]}
    assert fetch(f"http://{ip}/").strip() == PAGE
    assert fetch(f"http://127.0.0.1:{port}/").strip() == PAGE
    assert dy("port", "b1s2").stdout.strip() == f"80/tcp -> 127.0.0.1:{port}"

    # save -> remove everything -> load -> run again
    archive = tmp_path / "b1server.tar"
    dy("save", "-o", str(archive), "me/b1server:v0.2", "busybox:latest")
    dy("rm", "-f", "b1s2", "b1server")
    dy("rmi", "me/b1server:v0.2", "me/b1server:latest", "me/b1server:v0.1", "busybox:latest")
    assert dy("images", "-aq").stdout.strip() == ""
    loaded = dy("load", "-i", str(archive)).stdout
    assert "Loaded image: me/b1server:v0.2" in loaded
    assert json.loads(dy("inspect", "me/b1server:v0.2").stdout)[0]["Id"] == v2
    dy("run", "--name", "b1s3", "-d", "-p", f"127.0.0.1:{port}:80", "me/b1server:v0.2")
    assert fetch(f"http://127.0.0.1:{port}/").strip() == PAGE
    dy("rm", "-f", "b1s3")
    assert dy("ps", "-aq").stdout.strip() == ""

    # push to a local registry (dockyard's own, a real process), remove, pull it back
    with RegistryServer(tmp_path / "registry") as registry:
        remote = f"{registry.host}/me/b1server:v0.2"
        dy("tag", "me/b1server:v0.2", remote)
        pushed = dy("push", remote).stdout
        assert "v0.2: digest: sha256:" in pushed
        dy("rmi", remote, "me/b1server:v0.2")
        assert v2 not in dy("images", "-q", "--no-trunc").stdout
        dy("pull", remote)
    assert json.loads(dy("inspect", remote).stdout)[0]["Id"] == v2
    page = dy("run", "--rm", remote, "cat", "/data/www/html/index.html").stdout
    assert page.strip() == PAGE
