"""Docker's client config: DOCKER_CONFIG, mode 0600, helpers, identity tokens."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from dockyard.distribution.credentials import (
    AuthEntry,
    CredentialStore,
    config_dir,
    server_key,
    to_hostname,
)


def test_config_dir_honours_docker_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "cfg"))
    assert config_dir() == tmp_path / "cfg"
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_dir() == tmp_path / ".docker"


def test_store_writes_what_docker_writes(tmp_path: Path) -> None:
    creds = CredentialStore(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"psFormat": "table {{.ID}}"}))
    creds.store("127.0.0.1:5101", AuthEntry("anchoruser", "anchorpass"))
    text = (tmp_path / "config.json").read_text()
    assert text == (
        '{\n\t"auths": {\n\t\t"127.0.0.1:5101": {\n\t\t\t"auth": '
        '"YW5jaG9ydXNlcjphbmNob3JwYXNz"\n\t\t}\n\t},\n\t"psFormat": "table {{.ID}}"\n}'
    )
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o600
    assert creds.get("127.0.0.1:5101") == AuthEntry("anchoruser", "anchorpass")
    assert creds.get("127.0.0.1:5102") is None
    assert creds.logged_in_keys("127.0.0.1:5101") == ["127.0.0.1:5101"]
    creds.erase("127.0.0.1:5101")
    data = json.loads((tmp_path / "config.json").read_text())
    assert data == {"auths": {}, "psFormat": "table {{.ID}}"}


def test_docker_hub_key_and_url_keys(tmp_path: Path) -> None:
    assert server_key(None) == "https://index.docker.io/v1/"
    assert server_key("docker.io") == "https://index.docker.io/v1/"
    assert server_key("localhost:5000") == "localhost:5000"
    assert to_hostname("https://reg.example.com/v1/") == "reg.example.com"
    creds = CredentialStore(tmp_path)
    creds.store("docker.io", AuthEntry("me", "pw"))
    assert creds.get("docker.io") == AuthEntry("me", "pw")
    assert creds.get("registry-1.docker.io") == AuthEntry("me", "pw")
    # keys written as URLs by old clients are found by host
    data = json.loads((tmp_path / "config.json").read_text())
    data["auths"]["http://reg.lan:5000"] = {"auth": "dTpw"}  # u:p
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert creds.get("reg.lan:5000") == AuthEntry("u", "p")
    assert creds.logged_in_keys("reg.lan:5000") == ["http://reg.lan:5000"]


def test_identity_token_kept(tmp_path: Path) -> None:
    creds = CredentialStore(tmp_path)
    creds.store("reg.lan", AuthEntry("alice", "secret", "refresh-123"))
    raw = json.loads((tmp_path / "config.json").read_text())["auths"]["reg.lan"]
    assert raw == {"auth": "YWxpY2U6", "identitytoken": "refresh-123"}  # "alice:"
    assert creds.get("reg.lan") == AuthEntry("alice", "", "refresh-123")


def _helper(bin_dir: Path, store: Path) -> None:
    """A docker-credential-test helper keeping secrets in a JSON file."""
    script = bin_dir / "docker-credential-test"
    script.write_text(f"""#!/usr/bin/env python3
import json, sys
path = {str(store)!r}
try:
    db = json.load(open(path))
except FileNotFoundError:
    db = {{}}
action = sys.argv[1]
data = sys.stdin.read()
if action == "store":
    item = json.loads(data)
    db[item["ServerURL"]] = item
    json.dump(db, open(path, "w"))
elif action == "get":
    if data.strip() not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps(db[data.strip()]))
elif action == "erase":
    db.pop(data.strip(), None)
    json.dump(db, open(path, "w"))
""")
    script.chmod(0o755)


def test_credential_helper_protocol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    secrets = tmp_path / "secrets.json"
    _helper(bin_dir, secrets)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"credsStore": "test"}))
    creds = CredentialStore(cfg)
    creds.store("reg.lan:5000", AuthEntry("bob", "hunter2"))
    config = json.loads((cfg / "config.json").read_text())
    assert config["auths"] == {"reg.lan:5000": {}}  # the secret is in the helper only
    assert json.loads(secrets.read_text())["reg.lan:5000"]["Secret"] == "hunter2"
    assert creds.get("reg.lan:5000") == AuthEntry("bob", "hunter2")
    creds.store("tok.lan", AuthEntry("bob", "pw", "idtoken"))
    assert json.loads(secrets.read_text())["tok.lan"]["Username"] == "<token>"
    assert creds.get("tok.lan") == AuthEntry("", "", "idtoken")
    assert creds.get("other.lan") is None
    creds.erase("reg.lan:5000")
    assert "reg.lan:5000" not in json.loads(secrets.read_text())
    # credHelpers wins for its host
    (cfg / "config.json").write_text(json.dumps({"credHelpers": {"tok.lan": "test"}}))
    assert creds.get("tok.lan") == AuthEntry("", "", "idtoken")
