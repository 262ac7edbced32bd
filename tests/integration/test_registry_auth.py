"""Accounts and authentication over HTTP, against real ``dockyard registry serve`` processes.

- token mode: credentials -> GET /token?scope=... -> Bearer on /v2/..., the permission
  matrix of tests/unit/test_registry_accounts.py again (pull, push, delete, catalog on a
  public and a private repository), expired and foreign tokens, POST /token, /api/;
- basic mode: the same matrix with Basic credentials on every request;
- Debian's distribution registry (2.8) configured with ``auth: token`` pointing at our
  /token and our certificate as its rootcertbundle: skopeo pushes and inspects with
  credentials, a wrong password fails, a user without push is denied.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from conftest import require
from peers import Dockerd, dockyard_command
from registry_server import RegistryServer, free_port

from dockyard.registry.accounts import Accounts, open_accounts
from dockyard.registry.tokens import SigningKey
from tests.imagegen import oci_archive, random_layer

SERVICE = "dockyard-it"
ISSUER = "dockyard-it-issuer"
PW = "pw-12345"
PRIVATE, PUBLIC = "acme/app", "acme/site"
ZERO_DIGEST = "sha256:" + "0" * 64


class AuthServer(RegistryServer):
    """A RegistryServer whose readiness is "/v2/ answers", 401 included."""

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(self.url + "/v2/", timeout=1).status_code in (200, 401):
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        return False


def dy(*args: str, stdin: str | None = None) -> str:
    argv, env = dockyard_command()
    proc = subprocess.run([*argv, *args], input=stdin, capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, f"dockyard {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


@dataclass
class Setup:
    data: Path
    robot: str
    expired: str


def populate(data: Path) -> Setup:
    """The cast of the unit test's table, created through the library."""
    acc: Accounts = open_accounts(data)
    for name in ("alice", "rita", "will", "adam", "eve"):
        acc.add_user(name, PW)
    acc.add_user("root", PW, admin=True)
    acc.add_org("acme", "alice")
    acc.add_team("acme", "readers", "read")
    acc.add_member("acme", "readers", "rita")
    acc.add_team("acme", "writers", "write", ["app", "site"])
    acc.add_member("acme", "writers", "will")
    acc.add_team("acme", "admins", "admin")
    acc.add_member("acme", "admins", "adam")
    acc.set_visibility(PUBLIC, True)
    _, robot = acc.add_token("ci", "acme", [f"repository:{PRIVATE}:pull,push"])
    _, expired = acc.add_token("old-ci", "acme", [f"repository:{PRIVATE}:pull,push"],
                               expires=time.time() - 1)
    return Setup(data, robot, expired)


def write_config(path: Path, auth: dict[str, str]) -> Path:
    lines = ["[auth]"] + [f'{k} = "{v}"' for k, v in auth.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def creds(setup: Setup, who: str) -> tuple[str, str] | None:
    return {
        "anonymous": None, "owner": ("alice", PW), "team-read": ("rita", PW),
        "team-write": ("will", PW), "team-admin": ("adam", PW), "non-member": ("eve", PW),
        "robot": ("ci", setup.robot), "expired-robot": ("old-ci", setup.expired),
        "admin": ("root", PW),
    }[who]


OK, E401, E403 = "ok", "401", "403"
#            who             pull-priv push-priv del-priv pull-pub push-pub del-pub
TABLE = {
    "anonymous":     (E401, E401, E401, OK, E401, E401),
    "owner":         (OK, OK, OK, OK, OK, OK),
    "team-read":     (OK, E403, E403, OK, E403, E403),
    "team-write":    (OK, OK, E403, OK, OK, E403),
    "team-admin":    (OK, OK, OK, OK, OK, OK),
    "non-member":    (E403, E403, E403, OK, E403, E403),
    "robot":         (OK, OK, E403, OK, E403, E403),
    "expired-robot": (E401, E401, E401, E401, E401, E401),
    "admin":         (OK, OK, OK, OK, OK, OK),
}
COLUMNS = [(action, repo) for repo in (PRIVATE, PUBLIC) for action in ("pull", "push", "delete")]
SCOPE_ACTIONS = {"pull": "pull", "push": "pull,push", "delete": "delete"}
CATALOG = {
    "anonymous": [PUBLIC], "owner": [PRIVATE, PUBLIC], "team-read": [PRIVATE, PUBLIC],
    "team-write": [PRIVATE, PUBLIC], "team-admin": [PRIVATE, PUBLIC],
    "non-member": [PUBLIC, "eve/tool"], "robot": [PRIVATE, PUBLIC], "expired-robot": E401,
    "admin": [PRIVATE, PUBLIC, "eve/tool"],
}


def push_image(client: httpx.Client, url: str, repo: str, headers: dict[str, str]) -> str:
    """Monolithic blob uploads and a manifest (tag v1); returns the manifest digest."""
    layer = random_layer(int(hashlib.sha256(repo.encode()).hexdigest()[:4], 16))
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [
                             "sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()
    descs = []
    for blob in (config, layer):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        r = client.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest},
                        content=blob, headers=headers)
        assert r.status_code == 201, r.text
        descs.append({"digest": digest, "size": len(blob)})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **descs[0]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **descs[1]}],
    }).encode()
    r = client.put(f"{url}/v2/{repo}/manifests/v1", content=manifest, headers={
        **headers, "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def attempt(client: httpx.Client, url: str, action: str, repo: str,
            headers: dict[str, str]) -> str:
    """Do ``action`` on ``repo``: ok, 401 or 403 (any other status fails the test)."""
    if action == "pull":
        r = client.get(f"{url}/v2/{repo}/manifests/v1", headers=headers)
        good = {200}
    elif action == "push":
        r = client.post(f"{url}/v2/{repo}/blobs/uploads/", headers=headers)
        good = {202}
        if r.status_code == 202:
            client.delete(url + r.headers["location"] if r.headers["location"].startswith("/")
                          else r.headers["location"], headers=headers)
    else:  # delete of a manifest that is not there: allowed -> 404, never 401/403
        r = client.delete(f"{url}/v2/{repo}/manifests/{ZERO_DIGEST}", headers=headers)
        good = {202, 404}
    if r.status_code in good:
        return OK
    assert r.status_code in (401, 403), (action, repo, r.status_code, r.text)
    if r.status_code == 401:
        assert r.headers["www-authenticate"]
    return str(r.status_code)


# --------------------------------------------------------------------------- #
# token mode
# --------------------------------------------------------------------------- #


@dataclass
class Running:
    server: RegistryServer
    setup: Setup
    client: httpx.Client

    @property
    def url(self) -> str:
        return self.server.url

    def token(self, who: str, *scopes: str) -> tuple[int, str]:
        c = creds(self.setup, who)
        r = self.client.get(f"{self.url}/token",
                            params=[("service", SERVICE)] + [("scope", s) for s in scopes],
                            auth=c)
        return r.status_code, (r.json().get("token", "") if r.status_code == 200 else "")


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("auth-token")
    setup = populate(tmp / "data")
    cfg = write_config(tmp / "registry.toml",
                       {"mode": "token", "service": SERVICE, "issuer": ISSUER})
    with AuthServer(tmp / "data", "--config", str(cfg)) as server, httpx.Client() as client:
        running = Running(server, setup, client)
        for repo in (PRIVATE, PUBLIC, "eve/tool"):
            _, tok = running.token("admin", f"repository:{repo}:pull,push")
            push_image(client, server.url, repo, {"Authorization": f"Bearer {tok}"})
        yield running


@pytest.mark.parametrize("who", sorted(TABLE))
def test_token_matrix(token_server: Running, who: str) -> None:
    got = []
    for action, repo in COLUMNS:
        status, tok = token_server.token(who, f"repository:{repo}:{SCOPE_ACTIONS[action]}")
        if status != 200:
            assert status == 401  # wrong (expired) credentials at /token
            got.append(E401)
            continue
        got.append(attempt(token_server.client, token_server.url, action, repo,
                           {"Authorization": f"Bearer {tok}"} if tok else {}))
    assert tuple(got) == TABLE[who]


@pytest.mark.parametrize("who", sorted(CATALOG))
def test_token_catalog(token_server: Running, who: str) -> None:
    status, tok = token_server.token(who, "registry:catalog:*")
    if CATALOG[who] == E401:
        assert status == 401
        return
    r = token_server.client.get(f"{token_server.url}/v2/_catalog",
                                headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200, r.text
    assert r.json()["repositories"] == CATALOG[who]


def test_token_challenges(token_server: Running) -> None:
    url, client = token_server.url, token_server.client
    r = client.get(f"{url}/v2/")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == (
        f'Bearer realm="{url}/token",service="{SERVICE}"')
    r = client.get(f"{url}/v2/{PRIVATE}/manifests/v1")
    assert r.headers["www-authenticate"] == (
        f'Bearer realm="{url}/token",service="{SERVICE}",scope="repository:{PRIVATE}:pull"')
    # the anonymous flow a client follows for a public repository
    _, tok = token_server.token("anonymous", f"repository:{PUBLIC}:pull")
    assert client.get(f"{url}/v2/", headers={"Authorization": f"Bearer {tok}"}
                      ).status_code == 200
    assert client.get(f"{url}/v2/{PUBLIC}/tags/list", headers={"Authorization": f"Bearer {tok}"}
                      ).json()["tags"] == ["v1"]
    # a token for pull only, used to push by someone who may: insufficient_scope (401)
    _, tok = token_server.token("team-write", f"repository:{PRIVATE}:pull")
    r = client.post(f"{url}/v2/{PRIVATE}/blobs/uploads/",
                    headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 401 and 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_expired_and_foreign_tokens(token_server: Running, tmp_path: Path) -> None:
    key = SigningKey.load_or_create(token_server.setup.data / "auth" / "token.key")
    other = SigningKey.load_or_create(tmp_path / "other.key")
    now = int(time.time())

    def forge(k: SigningKey, **claims: object) -> str:
        payload = {"iss": ISSUER, "sub": "root", "aud": SERVICE, "exp": now + 300, "nbf": now,
                   "iat": now, "jti": "j", "access": [
                       {"type": "repository", "name": PRIVATE, "actions": ["pull"]}]}
        payload.update(claims)
        return jwt.encode(payload, k.private_key, algorithm="ES256", headers={"kid": k.kid})

    url, client = token_server.url, token_server.client

    def status(token: str) -> int:
        return client.get(f"{url}/v2/{PRIVATE}/manifests/v1",
                          headers={"Authorization": f"Bearer {token}"}).status_code

    assert status(forge(key)) == 200
    assert status(forge(key, exp=now - 600, iat=now - 900, nbf=now - 900)) == 401
    assert status(forge(other)) == 401
    assert status(forge(key, aud="another-registry")) == 401
    assert status(forge(key, iss="someone")) == 401


def test_token_post_and_refresh(token_server: Running) -> None:
    url, client = token_server.url, token_server.client
    r = client.post(f"{url}/token", data={
        "grant_type": "password", "username": "will", "password": PW, "service": SERVICE,
        "client_id": "it", "access_type": "offline",
        "scope": f"repository:{PRIVATE}:pull,push,delete"})
    assert r.status_code == 200
    body = r.json()
    assert body["scope"] == f"repository:{PRIVATE}:pull,push" and body["expires_in"] == 300
    r = client.post(f"{url}/token", data={
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"],
        "service": SERVICE, "client_id": "it", "scope": f"repository:{PUBLIC}:pull"})
    assert r.status_code == 200 and r.json()["refresh_token"] == body["refresh_token"]
    tok = r.json()["access_token"]
    assert client.get(f"{url}/v2/{PUBLIC}/manifests/v1",
                      headers={"Authorization": f"Bearer {tok}"}).status_code == 200
    assert client.post(f"{url}/token", data={
        "grant_type": "password", "username": "will", "password": "wrong", "service": SERVICE,
        "client_id": "it"}).status_code == 401
    # docker login's GET with offline_token=true also returns a refresh token
    r = client.get(f"{url}/token", params={"service": SERVICE, "offline_token": "true",
                                           "client_id": "docker"}, auth=("will", PW))
    assert r.json()["refresh_token"]
    assert client.get(f"{url}/token", params={"service": SERVICE},
                      auth=("will", "wrong")).status_code == 401


def test_admin_api(token_server: Running) -> None:
    url, client = token_server.url, token_server.client
    root = ("root", PW)
    assert client.get(f"{url}/api/users").status_code == 401
    assert client.get(f"{url}/api/users", auth=("eve", PW)).status_code == 403
    r = client.post(f"{url}/api/users", auth=root, json={"name": "newbie", "password": "np"})
    assert r.status_code == 201
    r = client.post(f"{url}/api/orgs/acme/teams", auth=root,
                    json={"name": "newteam", "permission": "write", "repositories": ["app"]})
    assert r.status_code == 201
    assert client.put(f"{url}/api/orgs/acme/teams/newteam/members/newbie",
                      auth=root).status_code == 204
    # the new member may push now, through a token
    r = client.get(f"{url}/token", params={"service": SERVICE,
                                           "scope": f"repository:{PRIVATE}:pull,push"},
                   auth=("newbie", "np"))
    assert jwt.decode(r.json()["token"], options={"verify_signature": False})["access"][0][
        "actions"] == ["pull", "push"]
    r = client.post(f"{url}/api/tokens", auth=root, json={
        "name": "api-ci", "owner": "acme", "scopes": [f"repository:{PRIVATE}:pull"]})
    secret = r.json()["secret"]
    _, tok = token_server.token("admin", "")  # an admin's bearer token works on /api/ too
    assert client.get(f"{url}/api/tokens", headers={"Authorization": f"Bearer {tok}"}
                      ).status_code == 200
    r = client.get(f"{url}/token", params={"service": SERVICE,
                                           "scope": f"repository:{PRIVATE}:pull"},
                   auth=("api-ci", secret))
    assert r.status_code == 200
    assert client.delete(f"{url}/api/tokens/api-ci", auth=root).status_code == 204
    assert client.get(f"{url}/token", params={"service": SERVICE},
                      auth=("api-ci", secret)).status_code == 401
    assert client.delete(f"{url}/api/users/newbie", auth=root).status_code == 204


def test_cli_changes_reach_the_running_server(token_server: Running) -> None:
    data = str(token_server.setup.data)
    dy("registry", "user", "add", "clio", "--password-stdin", "--data", data, stdin="cpw\n")
    assert "clio" in dy("registry", "user", "ls", "-q", "--data", data).split()
    dy("registry", "team", "member", "add", "acme", "readers", "clio", "--data", data)
    secret = dy("registry", "token", "add", "clio-ci", "--owner", "clio", "--scope",
                f"repository:{PRIVATE}:pull", "--expires", "1d", "--data", data).strip()
    url, client = token_server.url, token_server.client
    for user, password in (("clio", "cpw"), ("clio-ci", secret)):
        r = client.get(f"{url}/token", params={"service": SERVICE,
                                               "scope": f"repository:{PRIVATE}:pull"},
                       auth=(user, password))
        tok = r.json()["token"]
        assert client.get(f"{url}/v2/{PRIVATE}/manifests/v1",
                          headers={"Authorization": f"Bearer {tok}"}).status_code == 200
    dy("registry", "user", "rm", "clio", "--data", data)
    assert client.get(f"{url}/token", params={"service": SERVICE},
                      auth=("clio", "cpw")).status_code == 401


# --------------------------------------------------------------------------- #
# basic mode
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def basic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("auth-basic")
    setup = populate(tmp / "data")
    cfg = write_config(tmp / "registry.toml", {"mode": "basic"})
    with AuthServer(tmp / "data", "--config", str(cfg)) as server, httpx.Client() as client:
        for repo in (PRIVATE, PUBLIC, "eve/tool"):
            push_image(client, server.url, repo, {"Authorization": _basic("root", PW)})
        yield Running(server, setup, client)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("who", sorted(TABLE))
def test_basic_matrix(basic_server: Running, who: str) -> None:
    c = creds(basic_server.setup, who)
    headers = {"Authorization": _basic(*c)} if c else {}
    got = tuple(attempt(basic_server.client, basic_server.url, action, repo, headers)
                for action, repo in COLUMNS)
    assert got == TABLE[who]


@pytest.mark.parametrize("who", sorted(CATALOG))
def test_basic_catalog(basic_server: Running, who: str) -> None:
    c = creds(basic_server.setup, who)
    r = basic_server.client.get(f"{basic_server.url}/v2/_catalog",
                                headers={"Authorization": _basic(*c)} if c else {})
    if CATALOG[who] == E401:
        assert r.status_code == 401
        return
    assert r.status_code == 200, r.text
    assert r.json()["repositories"] == CATALOG[who]


def test_basic_login_semantics(basic_server: Running) -> None:
    """What ``docker login`` relies on: /v2/ is 401 without and with wrong credentials."""
    url, client = basic_server.url, basic_server.client
    r = client.get(f"{url}/v2/")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="dockyard"'
    assert client.get(f"{url}/v2/", auth=("eve", "nope")).status_code == 401
    assert client.get(f"{url}/v2/", auth=("eve", PW)).status_code == 200
    assert client.get(f"{url}/v2/", auth=("ci", basic_server.setup.robot)).status_code == 200


# --------------------------------------------------------------------------- #
# distribution 2.8 trusting our token service
# --------------------------------------------------------------------------- #


class Distribution:
    """Debian's docker-registry under ``env -i``, its own config and storage, by PID."""

    def __init__(self, tmp: Path, realm: str, rootcert: Path) -> None:
        self.port = free_port()
        self.config = tmp / "distribution.yml"
        self.log = tmp / "distribution.log"
        self.config.write_text(f"""version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {tmp / "storage"}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{self.port}
auth:
  token:
    realm: {realm}
    service: {SERVICE}
    issuer: {ISSUER}
    rootcertbundle: {rootcert}
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Distribution:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                ["env", "-i", "/usr/bin/docker-registry", "serve", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/v2/", timeout=1).status_code == 401:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                               "HOME": os.environ.get("HOME", "/root")})


def test_distribution_trusts_our_tokens(token_server: Running, tmp_path: Path) -> None:
    require("docker-registry", "skopeo", root=False)
    cert = token_server.setup.data / "auth" / "token.crt"
    dist = Distribution(tmp_path, f"{token_server.url}/token", cert).start()
    try:
        archive = tmp_path / "image.tar"
        archive.write_bytes(oci_archive([random_layer(7)], "v1")[0])
        dest = f"docker://127.0.0.1:{dist.port}/{PRIVATE}:v1"
        # will (write on acme/app) pushes with credentials; reads back
        r = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"will:{PW}",
                   f"oci-archive:{archive}", dest)
        assert r.returncode == 0, r.stderr
        r = skopeo("inspect", "--tls-verify=false", "--creds", f"rita:{PW}", dest)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["Name"] == f"127.0.0.1:{dist.port}/{PRIVATE}"
        # the CI token (a robot) works as the password too
        r = skopeo("inspect", "--tls-verify=false", "--creds",
                   f"ci:{token_server.setup.robot}", dest)
        assert r.returncode == 0, r.stderr
        # a wrong password fails at our /token
        r = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "will:wrong",
                   f"oci-archive:{archive}", dest.replace(":v1", ":v2"))
        assert r.returncode != 0
        assert "unauthorized" in r.stderr.lower() or "401" in r.stderr
        # rita may only read acme/*: her token lacks push, distribution refuses
        r = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"rita:{PW}",
                   f"oci-archive:{archive}", dest.replace(":v1", ":v3"))
        assert r.returncode != 0
        assert any(w in r.stderr.lower() for w in ("denied", "unauthorized", "insufficient"))
        # eve, not a member, cannot even read it
        r = skopeo("inspect", "--tls-verify=false", "--creds", f"eve:{PW}", dest)
        assert r.returncode != 0
        # distribution logged the subjects of our tokens
        log = dist.log.read_text()
        assert 'auth.user.name=will' in log or 'auth.user.name="will"' in log
    finally:
        dist.stop()


# --------------------------------------------------------------------------- #
# the docker client (token flow with a refresh token as docker's identity token)
# --------------------------------------------------------------------------- #


def test_docker_login_push_pull(token_server: Running, dockerd: Dockerd,
                                busybox_tar: Path) -> None:
    host = token_server.server.host
    ref = f"{host}/{PRIVATE}:docker"
    dockerd.cli("import", busybox_tar, ref)
    r = dockerd.cli("login", "-u", "will", "--password-stdin", host, input="wrong\n",
                    check=False)
    assert r.returncode != 0 and "incorrect username or password" in r.stderr
    dockerd.cli("login", "-u", "will", "--password-stdin", host, input=f"{PW}\n")
    assert dockerd.workdir is not None
    saved = json.loads((dockerd.workdir / "client-config" / "config.json").read_text())
    assert host in saved["auths"]  # our /token gave docker a refresh token (identitytoken)
    dockerd.cli("push", ref)
    dockerd.cli("rmi", ref)
    dockerd.cli("pull", ref)
    dockerd.cli("logout", host)
    dockerd.cli("rmi", ref)
    r = dockerd.cli("pull", ref, check=False)  # private: anonymous tokens carry nothing
    assert r.returncode != 0
    # rita (read) may pull, not push
    dockerd.cli("login", "-u", "rita", "--password-stdin", host, input=f"{PW}\n")
    dockerd.cli("pull", ref)
    r = dockerd.cli("push", ref, check=False)
    assert r.returncode != 0 and "denied" in (r.stderr + r.stdout).lower()
    dockerd.cli("logout", host)
