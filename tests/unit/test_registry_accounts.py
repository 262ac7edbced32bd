"""The registry's permission model, against the access controllers themselves.

One table (subject x action x public/private repository) is checked twice: through
``BasicAccess`` (Basic credentials on every request) and through ``TokenAccess`` (a JWT
from the token service for exactly the scope the request needs). Then the pieces around
it: scopes, JWT format and verification, refresh tokens, htpasswd, the admin rules,
/token and /api/ over Starlette's test client, and the click commands.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette

with warnings.catch_warnings():  # starlette 1.x: "install httpx2" (httpx works)
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.registry import accounts as accounts_module
from dockyard.registry.access import Denied, Grant, Unauthorized
from dockyard.registry.accounts import (
    ANONYMOUS,
    Accounts,
    Subject,
    parse_duration,
    parse_scope,
    parse_scopes,
)
from dockyard.registry.db import Database
from dockyard.registry.tokens import (
    AuthConfig,
    BasicAccess,
    SigningKey,
    TokenAccess,
    TokenService,
    TokenSigner,
    grant_access,
    libtrust_key_id,
    setup_auth,
)

SERVICE = "registry.test"
ISSUER = "issuer.test"
PASSWORD = "s3cret-pw"
PRIVATE, PUBLIC = "acme/app", "acme/site"
OTHER_PRIVATE = "zeta/lib"  # an org the robot's org has nothing to do with


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class World:
    accounts: Accounts
    key: SigningKey
    signer: TokenSigner
    service: TokenService
    basic: BasicAccess
    token: TokenAccess
    robot_secret: str
    expired_secret: str
    user_token_secret: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    rounds = accounts_module.BCRYPT_ROUNDS
    accounts_module.BCRYPT_ROUNDS = 4  # fast hashes for tests
    try:
        tmp = tmp_path_factory.mktemp("accounts")
        acc = Accounts(Database(tmp / "registry.db"))
        for name in ("alice", "rita", "will", "adam", "eve", "zed"):
            acc.add_user(name, PASSWORD)
        acc.add_user("root", PASSWORD, admin=True)
        acc.add_org("acme", "alice")  # alice: owners team = admin on acme/*
        acc.add_team("acme", "readers", "read")
        acc.add_member("acme", "readers", "rita")
        acc.add_team("acme", "writers", "write", ["app", "site"])
        acc.add_member("acme", "writers", "will")
        acc.add_team("acme", "admins", "admin", [PRIVATE, PUBLIC])
        acc.add_member("acme", "admins", "adam")
        acc.add_org("zeta", "zed")
        acc.set_visibility(PUBLIC, True)
        _, robot = acc.add_token("ci", "acme", [f"repository:{PRIVATE}:pull,push",
                                                f"repository:{OTHER_PRIVATE}:pull"])
        _, expired = acc.add_token("old-ci", "acme", [f"repository:{PRIVATE}:pull,push"],
                                   expires=time.time() - 1)
        # a user's token can never exceed its owner: rita may only read acme/*
        _, user_tok = acc.add_token("rita-ci", "rita", ["repository:acme/*:pull,push,delete"])
        key = SigningKey.load_or_create(tmp / "auth" / "token.key")
        signer = TokenSigner(key, ISSUER, SERVICE, 300)
        yield World(acc, key, signer, TokenService(acc, signer), BasicAccess(acc),
                    TokenAccess(acc, signer, "http://registry.test/token"), robot, expired,
                    user_tok)
    finally:
        accounts_module.BCRYPT_ROUNDS = rounds


# who -> (basic-auth user, password); None = anonymous
def credentials(world: World, who: str) -> tuple[str, str] | None:
    return {
        "anonymous": None,
        "owner": ("alice", PASSWORD),
        "team-read": ("rita", PASSWORD),
        "team-write": ("will", PASSWORD),
        "team-admin": ("adam", PASSWORD),
        "non-member": ("eve", PASSWORD),
        "robot": ("ci", world.robot_secret),
        "expired-robot": ("old-ci", world.expired_secret),
        "user-token": ("rita", world.user_token_secret),
        "admin": ("root", PASSWORD),
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
    "user-token":    (OK, E403, E403, OK, E403, E403),
    "admin":         (OK, OK, OK, OK, OK, OK),
}
COLUMNS = [(action, repo) for repo in (PRIVATE, PUBLIC) for action in ("pull", "push", "delete")]
CASES = [(who, action, repo, expected) for who, row in TABLE.items()
         for (action, repo), expected in zip(COLUMNS, row, strict=True)]

# what each one sees in /v2/_catalog: "all", or the repositories kept by the filter
CATALOG_REPOS = [PRIVATE, PUBLIC, OTHER_PRIVATE, "eve/tool"]
CATALOG = {
    "anonymous": [PUBLIC],
    "owner": [PRIVATE, PUBLIC],
    "team-read": [PRIVATE, PUBLIC],
    "team-write": [PRIVATE, PUBLIC],
    "team-admin": [PRIVATE, PUBLIC],
    "non-member": [PUBLIC, "eve/tool"],
    "robot": [PRIVATE, PUBLIC],  # its scope names zeta/lib, but its org has no right there
    "expired-robot": E401,
    "user-token": [PRIVATE, PUBLIC],
    "admin": "all",
}


def outcome(fn: Callable[[], object]) -> str:
    try:
        fn()
    except Unauthorized as e:
        assert e.challenge
        return E401
    except Denied:
        return E403
    return OK


def basic_check(world: World, who: str, repo: str, actions: set[str]) -> Grant:
    creds = credentials(world, who)
    return world.basic.check(basic(*creds) if creds else None, repo, actions)


def token_check(world: World, who: str, repo: str, actions: set[str], scope: str) -> Grant:
    """What a client does: GET /token for ``scope`` with its credentials, then the request."""
    creds = credentials(world, who)
    subject = world.accounts.authenticate(*creds) if creds else ANONYMOUS
    if subject is None:  # /token answers 401 to wrong credentials
        raise Unauthorized("incorrect username or password", 'Basic realm="dockyard"')
    body = world.service.issue(subject, [scope], None)
    return world.token.check(f"Bearer {body['token']}", repo, actions)


@pytest.mark.parametrize(("who", "action", "repo", "expected"), CASES)
def test_matrix_basic(world: World, who: str, action: str, repo: str, expected: str) -> None:
    assert outcome(lambda: basic_check(world, who, repo, {action})) == expected


@pytest.mark.parametrize(("who", "action", "repo", "expected"), CASES)
def test_matrix_token(world: World, who: str, action: str, repo: str, expected: str) -> None:
    scope = f"repository:{repo}:{action}"
    assert outcome(lambda: token_check(world, who, repo, {action}, scope)) == expected


def _catalog_view(grant: Grant) -> str | list[str]:
    if grant.catalog_filter is None:
        return "all"
    return [r for r in CATALOG_REPOS if grant.catalog_filter(r)]


@pytest.mark.parametrize("who", sorted(CATALOG))
def test_catalog_basic_and_token(world: World, who: str) -> None:
    expected = CATALOG[who]
    checks: list[Callable[[], Grant]] = [
        lambda: basic_check(world, who, "catalog:*", {"pull"}),
        lambda: token_check(world, who, "catalog:*", {"pull"}, "registry:catalog:*")]
    for check in checks:
        if expected == E401:
            assert outcome(check) == E401
        else:
            assert _catalog_view(check()) == expected


def test_own_namespace_and_first_push(world: World) -> None:
    eve = Subject("user", "eve")
    assert world.accounts.actions(eve, "eve/new-repo") == {"pull", "push", "delete"}
    assert world.accounts.actions(eve, "eve/deep/path") == {"pull", "push", "delete"}
    assert world.accounts.actions(eve, "eveline/x") == set()
    assert world.accounts.actions(eve, "toplevel") == set()  # no namespace: admins only
    assert world.accounts.actions(Subject("user", "root", admin=True), "toplevel") == {
        "pull", "push", "delete"}


def test_selected_repositories_only(world: World) -> None:
    will = Subject("user", "will")
    assert world.accounts.actions(will, "acme/other") == set()
    rita = Subject("user", "rita")
    assert world.accounts.actions(rita, "acme/other") == {"pull"}  # readers: all repos


def test_registry_root_needs_credentials(world: World) -> None:
    with pytest.raises(Unauthorized) as e:
        world.basic.check(None, "", {"pull"})
    assert e.value.challenge == 'Basic realm="dockyard"'
    with pytest.raises(Unauthorized):
        world.basic.check(basic("eve", "wrong"), "", {"pull"})
    assert world.basic.check(basic("eve", PASSWORD), "", {"pull"}).principal.name == "eve"
    with pytest.raises(Unauthorized) as e:
        world.token.check(None, "", {"pull"})
    assert e.value.challenge == 'Bearer realm="http://registry.test/token",service="registry.test"'
    anonymous = world.service.issue(ANONYMOUS, [], None)
    assert world.token.check(f"Bearer {anonymous['token']}", "", {"pull"}).principal.kind == (
        "anonymous")


# --------------------------------------------------------------------------- #
# challenges, JWT format and verification
# --------------------------------------------------------------------------- #


def test_challenge_names_the_scope(world: World) -> None:
    with pytest.raises(Unauthorized) as e:
        world.token.check(None, PRIVATE, {"pull", "push"})
    assert e.value.challenge == ('Bearer realm="http://registry.test/token",'
                                 'service="registry.test",scope="repository:acme/app:pull,push"')
    with pytest.raises(Unauthorized) as e:
        world.token.check(None, "catalog:*", {"pull"})
    assert 'scope="registry:catalog:*"' in e.value.challenge


def test_insufficient_scope_is_401_when_the_subject_could_have_it(world: World) -> None:
    will = world.accounts.authenticate("will", PASSWORD)
    assert will is not None
    pull_only = world.service.issue(will, [f"repository:{PRIVATE}:pull"], None)["token"]
    with pytest.raises(Unauthorized) as e:
        world.token.check(f"Bearer {pull_only}", PRIVATE, {"pull", "push"})
    assert 'error="insufficient_scope"' in e.value.challenge
    with pytest.raises(Denied):  # will may never delete
        world.token.check(f"Bearer {pull_only}", PRIVATE, {"delete"})


def test_token_format(world: World) -> None:
    alice = Subject("user", "alice")
    body = world.service.issue(alice, [f"repository:{PRIVATE}:pull,push,bogus",
                                       "repository:Bad_Name:pull", "weird:thing:x",
                                       "registry:catalog:*", "not-a-scope"], "r")
    token = body["token"]
    assert body["access_token"] == token and body["expires_in"] == 300
    assert body["refresh_token"] == "r" and body["issued_at"].endswith("Z")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["typ"] == "JWT"
    # kid: libtrust fingerprint of the DER public key, as distribution 2.8 looks it up
    der = world.key.public_key.public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    assert header["kid"] == ":".join(b32[i:i + 4] for i in range(0, 48, 4))
    assert header["kid"] == libtrust_key_id(world.key.public_key)
    assert len(header["kid"].split(":")) == 12
    # x5c: the self-signed certificate that goes into distribution's rootcertbundle
    assert base64.b64decode(header["x5c"][0]) == world.key.certificate.public_bytes(
        serialization.Encoding.DER)
    claims = jwt.decode(token, world.key.public_key, algorithms=["ES256"], audience=SERVICE,
                        issuer=ISSUER)
    assert claims["sub"] == "alice" and claims["aud"] == SERVICE and claims["iss"] == ISSUER
    assert claims["nbf"] == claims["iat"] and claims["exp"] == claims["iat"] + 300
    assert len(claims["jti"]) == 32
    # forbidden and unknown scopes are dropped, never an error
    assert claims["access"] == [{"type": "repository", "name": PRIVATE,
                                 "actions": ["pull", "push"]}]
    assert body["scope"] == "repository:acme/app:pull,push"


def test_robot_subject_claim(world: World) -> None:
    robot = world.accounts.authenticate("ci", world.robot_secret)
    assert robot is not None and robot.kind == "robot"
    token = world.service.issue(robot, [f"repository:{PRIVATE}:push"], None)["token"]
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "robot$ci"
    grant = world.token.check(f"Bearer {token}", PRIVATE, {"push"})
    assert grant.principal.name == "ci" and grant.principal.kind == "robot"


def _forged(world: World, key: SigningKey | None = None, **claims: object) -> str:
    now = int(time.time())
    payload: dict[str, object] = {"iss": ISSUER, "sub": "alice", "aud": SERVICE,
                                  "exp": now + 300, "nbf": now, "iat": now, "jti": "x",
                                  "access": [{"type": "repository", "name": PRIVATE,
                                              "actions": ["pull"]}]}
    payload.update(claims)
    k = key or world.key
    return jwt.encode(payload, k.private_key, algorithm="ES256", headers={"kid": k.kid})


def _unsigned(claims: dict[str, object]) -> str:
    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


@pytest.mark.parametrize("bad", ["expired", "audience", "issuer", "other-key", "garbage",
                                 "not-yet", "alg-none"])
def test_invalid_tokens_are_401(world: World, tmp_path: Path, bad: str) -> None:
    now = int(time.time())
    makers: dict[str, Callable[[], str]] = {
        "expired": lambda: _forged(world, exp=now - 3600, iat=now - 4000, nbf=now - 4000),
        "audience": lambda: _forged(world, aud="someone-else"),
        "issuer": lambda: _forged(world, iss="evil"),
        "other-key": lambda: _forged(world, SigningKey.load_or_create(tmp_path / "k.key")),
        "garbage": lambda: "abc.def.ghi",
        "not-yet": lambda: _forged(world, nbf=now + 3600),
        "alg-none": lambda: _unsigned({"iss": ISSUER, "sub": "root", "aud": SERVICE,
                                       "exp": now + 300}),
    }
    token = makers[bad]()
    with pytest.raises(Unauthorized) as e:
        world.token.check(f"Bearer {token}", PRIVATE, {"pull"})
    assert 'error="invalid_token"' in e.value.challenge
    assert world.token.check(f"Bearer {_forged(world)}", PRIVATE, {"pull"}).actions == {"pull"}


def test_token_of_a_removed_user_is_refused(world: World) -> None:
    world.accounts.add_user("temp", PASSWORD)
    token = world.service.issue(Subject("user", "temp"), ["repository:temp/x:pull"], None)
    assert world.token.check(f"Bearer {token['token']}", "temp/x", {"pull"})
    world.accounts.remove_user("temp")
    with pytest.raises(Unauthorized):
        world.token.check(f"Bearer {token['token']}", "temp/x", {"pull"})


# --------------------------------------------------------------------------- #
# scopes, durations, accounts rules
# --------------------------------------------------------------------------- #


def test_parse_scope() -> None:
    s = parse_scope("repository:samalba/my-app:pull,push")
    assert (s.type, s.name) == ("repository", "samalba/my-app")
    assert s.actions == {"pull", "push"}
    assert parse_scope("repository:localhost:5000/x:pull").name == "localhost:5000/x"
    assert parse_scope("repository(plugin):x/y:pull").type == "repository"
    assert parse_scope("registry:catalog:*").actions == {"*"}
    assert str(parse_scope("repository:a/b:push,pull")) == "repository:a/b:pull,push"
    for bad in ("repository", "repository:x", "Repo:x:pull", "repository::pull",
                "repository:a:b:c:pull", "repository:x:PULL"):
        with pytest.raises(InvalidArgument):
            parse_scope(bad)
    assert [str(s) for s in parse_scopes(["repository:a/b:pull junk registry:catalog:*", ""])
            ] == ["repository:a/b:pull", "registry:catalog:*"]


def test_parse_duration() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 43200
    with pytest.raises(InvalidArgument):
        parse_duration("soon")


def test_grant_access_never_fails(world: World) -> None:
    eve = Subject("user", "eve")
    assert grant_access(world.accounts, eve, parse_scopes([
        f"repository:{PRIVATE}:pull,push", f"repository:{PUBLIC}:*", "registry:catalog:*",
        "repository:eve/x:*"])) == [
        {"type": "repository", "name": PUBLIC, "actions": ["pull"]},
        {"type": "repository", "name": "eve/x", "actions": ["delete", "pull", "push"]},
    ]


def test_names_rules(world: World) -> None:
    acc = world.accounts
    with pytest.raises(Conflict):
        acc.add_user("acme", PASSWORD)  # users and orgs share the namespace
    with pytest.raises(Conflict):
        acc.add_org("eve", "alice")
    with pytest.raises(InvalidArgument):
        acc.add_user("Bad Name", PASSWORD)
    with pytest.raises(InvalidArgument):
        acc.add_user("longpw", "x" * 73)  # bcrypt's limit: refused, never truncated
    with pytest.raises(NotFound):
        acc.add_org("neworg", "nobody")
    with pytest.raises(InvalidArgument):
        acc.add_team("acme", "t", "owner")
    with pytest.raises(InvalidArgument):
        acc.add_token("bad", "acme", ["repository:acme/app:pull,fly"])
    with pytest.raises(NotFound):
        acc.add_token("orphan", "nobody", ["repository:x/y:pull"])


def test_last_owner_stays(world: World) -> None:
    acc = world.accounts
    acc.add_user("olga", PASSWORD)
    acc.add_org("olgaorg", "olga")
    with pytest.raises(Conflict):
        acc.remove_user("olga")
    with pytest.raises(Conflict):
        acc.remove_member("olgaorg", "owners", "olga")
    with pytest.raises(Conflict):
        acc.remove_team("olgaorg", "owners")
    acc.add_member("olgaorg", "owners", "eve")
    acc.remove_member("olgaorg", "owners", "olga")
    acc.remove_user("olga")
    assert acc.orgs()[[o.name for o in acc.orgs()].index("olgaorg")].owners == ("eve",)
    acc.remove_org("olgaorg")
    assert "olgaorg" not in [o.name for o in acc.orgs()]


def test_token_username_and_revocation(world: World) -> None:
    acc = world.accounts
    _, secret = acc.add_token("tmp-ci", "acme", [f"repository:{PRIVATE}:pull"])
    assert acc.authenticate("tmp-ci", secret) is not None
    assert acc.authenticate("acme", secret) is not None  # the owner's name works too
    assert acc.authenticate("eve", secret) is None
    assert acc.authenticate("tmp-ci", secret + "x") is None
    assert acc.token("tmp-ci") is not None and acc.token("tmp-ci").last_used is not None  # type: ignore[union-attr]
    acc.remove_token("tmp-ci")
    assert acc.authenticate("tmp-ci", secret) is None


def test_refresh_tokens(world: World) -> None:
    acc = world.accounts
    acc.add_user("rick", PASSWORD)
    rick = acc.authenticate("rick", PASSWORD)
    assert rick is not None
    refresh = acc.issue_refresh_token(rick, SERVICE)
    assert acc.redeem_refresh_token(refresh, SERVICE) == rick
    assert acc.redeem_refresh_token(refresh, "other-service") is None
    assert acc.redeem_refresh_token("nope", SERVICE) is None
    acc.set_password("rick", "new-password")  # a new password ends old sessions
    assert acc.redeem_refresh_token(refresh, SERVICE) is None
    assert acc.authenticate("rick", PASSWORD) is None
    assert acc.authenticate("rick", "new-password") is not None


def test_password_cache_follows_password_changes(world: World) -> None:
    acc = world.accounts
    acc.add_user("cache", PASSWORD)
    assert acc.authenticate("cache", PASSWORD) is not None
    assert acc.authenticate("cache", PASSWORD) is not None  # from the cache
    acc.set_password("cache", "other-pw")
    assert acc.authenticate("cache", PASSWORD) is None


def test_htpasswd_users(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(b"hpw", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)
    htpasswd.write_text(f"# comment\nhuser:{hashed}\nmd5user:$apr1$abc$def\n")
    acc = Accounts(Database(tmp_path / "registry.db"), htpasswd)
    hu = acc.authenticate("huser", "hpw")
    assert hu is not None and hu.admin  # as distribution's htpasswd: all or nothing
    assert acc.authenticate("huser", "wrong") is None
    assert acc.authenticate("md5user", "anything") is None  # only bcrypt entries count
    assert acc.subject_from_claim("huser") == hu
    ctl = BasicAccess(acc)
    assert ctl.check(basic("huser", "hpw"), "any/repo", {"push", "delete"}).actions == {
        "pull", "push", "delete"}


def test_auth_config() -> None:
    assert AuthConfig.from_value(None).mode == "none"
    assert AuthConfig.from_value("token").mode == "token"
    cfg = AuthConfig.from_value({"htpasswd": "/etc/htpasswd"})
    assert cfg.mode == "basic" and cfg.htpasswd == Path("/etc/htpasswd")
    for bad in ("ldap", {"mode": "token", "expiration": 5}, {"mode": "token", "colour": 1}, 3):
        with pytest.raises(InvalidArgument):
            AuthConfig.from_value(bad)


def test_signing_key_is_stable(tmp_path: Path) -> None:
    one = SigningKey.load_or_create(tmp_path / "auth" / "token.key")
    two = SigningKey.load_or_create(tmp_path / "auth" / "token.key")
    assert one.kid == two.kid and one.certificate == two.certificate
    assert (tmp_path / "auth" / "token.key").stat().st_mode & 0o077 == 0
    assert (tmp_path / "auth" / "token.crt").read_bytes().startswith(b"-----BEGIN CERTIFICATE")


# --------------------------------------------------------------------------- #
# /token and /api/ (the real routes, in process)
# --------------------------------------------------------------------------- #


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setattr(accounts_module, "BCRYPT_ROUNDS", 4)
    auth = setup_auth({"mode": "token", "service": SERVICE, "issuer": ISSUER}, tmp_path,
                      Database(tmp_path / "registry.db"))
    auth.accounts.add_user("root", PASSWORD, admin=True)
    auth.accounts.add_user("eve", PASSWORD)
    app = Starlette(routes=auth.routes, middleware=auth.middleware)
    return TestClient(app, base_url="http://reg.example:5000")


def test_token_endpoint_get(client: TestClient) -> None:
    r = client.get("/token", params={"service": SERVICE, "scope": "repository:eve/x:pull,push"},
                   auth=("eve", PASSWORD))
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= {"token", "access_token", "expires_in", "issued_at"}
    assert "refresh_token" not in body
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "eve/x",
                                 "actions": ["pull", "push"]}]
    r = client.get("/token", params={"service": SERVICE}, auth=("eve", "wrong"))
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    r = client.get("/token", params={"service": SERVICE, "scope": "repository:eve/x:pull"})
    assert r.status_code == 200  # anonymous: a token with what anonymous may have
    assert jwt.decode(r.json()["token"], options={"verify_signature": False})["access"] == []
    assert client.get("/token", params={"service": "elsewhere"}).status_code == 400
    r = client.get("/token", params={"service": SERVICE, "offline_token": "true"},
                   auth=("eve", PASSWORD))
    assert r.json()["refresh_token"]


def test_token_endpoint_post(client: TestClient) -> None:
    form = {"grant_type": "password", "username": "eve", "password": PASSWORD,
            "service": SERVICE, "client_id": "test", "access_type": "offline",
            "scope": "repository:eve/x:pull repository:root/y:pull"}
    r = client.post("/token", data=form)
    assert r.status_code == 200
    body = r.json()
    assert body["scope"] == "repository:eve/x:pull" and body["refresh_token"]
    r = client.post("/token", data={"grant_type": "refresh_token", "service": SERVICE,
                                    "client_id": "test", "refresh_token": body["refresh_token"],
                                    "scope": "repository:eve/z:push"})
    assert r.status_code == 200
    assert r.json()["scope"] == "repository:eve/z:push"
    assert r.json()["refresh_token"] == body["refresh_token"]
    assert client.post("/token", data={**form, "password": "bad"}).status_code == 401
    assert client.post("/token", data={**form, "grant_type": "magic"}).status_code == 400
    bad_refresh = {"grant_type": "refresh_token", "service": SERVICE, "refresh_token": "x"}
    assert client.post("/token", data=bad_refresh).json()["error"] == "invalid_grant"


def test_admin_api(client: TestClient) -> None:
    assert client.get("/api/users").status_code == 401
    assert client.get("/api/users", auth=("eve", PASSWORD)).status_code == 403
    root = ("root", PASSWORD)
    assert [u["name"] for u in client.get("/api/users", auth=root).json()] == ["eve", "root"]
    r = client.post("/api/users", auth=root, json={"name": "bob", "password": "pw"})
    assert r.status_code == 201 and r.json()["admin"] is False
    assert client.post("/api/users", auth=root, json={"name": "bob", "password": "pw"}
                       ).status_code == 409
    assert client.post("/api/orgs", auth=root, json={"name": "acme", "owner": "bob"}
                       ).status_code == 201
    r = client.post("/api/orgs/acme/teams", auth=root,
                    json={"name": "ci", "permission": "write", "repositories": ["app"]})
    assert r.json()["repositories"] == ["acme/app"]
    assert client.put("/api/orgs/acme/teams/ci/members/eve", auth=root).status_code == 204
    teams = {t["name"]: t for t in client.get("/api/orgs/acme/teams", auth=root).json()}
    assert teams["ci"]["members"] == ["eve"] and teams["owners"]["members"] == ["bob"]
    r = client.post("/api/tokens", auth=root, json={"name": "deploy", "owner": "acme",
                                                    "scopes": ["repository:acme/app:pull"],
                                                    "expires": "30d"})
    assert r.status_code == 201 and r.json()["secret"].startswith("dyt_")
    assert "secret" not in client.get("/api/tokens", auth=root).json()[0]
    r = client.put("/api/repositories/acme/app/visibility", auth=root,
                   json={"visibility": "public"})
    assert r.json() == {"repository": "acme/app", "visibility": "public"}
    assert client.get("/api/repositories/acme/app/visibility", auth=root).json()[
        "visibility"] == "public"
    assert client.get("/api/repositories", auth=root).json() == [
        {"repository": "acme/app", "visibility": "public"}]
    assert client.put("/api/users/bob/password", auth=root, json={"password": "pw2"}
                      ).status_code == 204
    assert client.get("/api/users", auth=("bob", "pw2")).status_code == 403
    # an admin's bearer token from /token works too
    token = client.get("/token", params={"service": SERVICE}, auth=root).json()["token"]
    assert client.get("/api/orgs", headers={"Authorization": f"Bearer {token}"}
                      ).status_code == 200
    assert client.delete("/api/tokens/deploy", auth=root).status_code == 204
    assert client.delete("/api/tokens/deploy", auth=root).status_code == 404
    assert client.post("/api/users", auth=root, json={"name": 3}).status_code == 400
    assert client.delete("/api/orgs/acme", auth=root).status_code == 204
    assert client.delete("/api/users/bob", auth=root).status_code == 204


def test_realm_follows_the_request_host(tmp_path: Path) -> None:
    auth = setup_auth("token", tmp_path, Database(tmp_path / "registry.db"))

    async def v2(request: object) -> object:
        from starlette.responses import PlainTextResponse

        try:
            auth.controller.check(None, "x/y", {"pull"})
        except Unauthorized as e:
            return PlainTextResponse(e.challenge, status_code=401)
        return PlainTextResponse("ok")

    from starlette.routing import Route

    app = Starlette(routes=[Route("/v2/", v2), *auth.routes], middleware=auth.middleware)
    r = TestClient(app, base_url="http://reg.example:5000").get("/v2/")
    assert r.text.startswith('Bearer realm="http://reg.example:5000/token",'
                             'service="dockyard-registry"')


# --------------------------------------------------------------------------- #
# the click commands
# --------------------------------------------------------------------------- #


def test_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockyard.cli.registry_admin_cmds import ADMIN_COMMANDS

    monkeypatch.setattr(accounts_module, "BCRYPT_ROUNDS", 4)
    cmds = {c.name: c for c in ADMIN_COMMANDS}
    assert set(cmds) == {"user", "org", "team", "token", "repo"}
    data = ["--data", str(tmp_path)]
    runner = CliRunner()

    def run(group: str, *args: str, stdin: str | None = None) -> str:
        result = runner.invoke(cmds[group], [*args, *data], input=stdin,
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    run("user", "add", "alice", "--password-stdin", stdin="pw1\n")
    run("user", "add", "root", "--admin", "--password-stdin", stdin="pw2\n")
    assert run("user", "ls", "-q") == "alice\nroot\n"
    assert "yes" in run("user", "ls").splitlines()[2]
    run("org", "add", "acme", "--owner", "alice")
    run("team", "add", "acme", "devs", "--perm", "write", "--repo", "app")
    run("team", "member", "add", "acme", "devs", "root")
    listing = run("team", "ls", "acme")
    assert "devs" in listing and "acme/app" in listing
    secret = run("token", "add", "ci", "--owner", "acme", "--scope",
                 "repository:acme/app:pull,push", "--expires", "30d").strip()
    assert secret.startswith("dyt_")
    assert "repository:acme/app:pull,push" in run("token", "ls")
    run("repo", "visibility", "acme/app", "public")
    assert run("repo", "visibility", "acme/app") == "public\n"
    assert run("repo", "ls") == "acme/app\n"
    run("user", "passwd", "alice", "--password-stdin", stdin="pw3\n")
    acc = Accounts(Database(tmp_path / "registry.db"))
    assert acc.authenticate("alice", "pw3") is not None
    assert acc.authenticate("ci", secret) is not None
    run("team", "member", "rm", "acme", "devs", "root")
    run("token", "rm", "ci")
    run("org", "rm", "acme")
    run("user", "rm", "alice")
    assert run("user", "ls", "-q") == "root\n"
    result = runner.invoke(cmds["user"], ["rm", "nobody", *data])
    assert result.exit_code != 0 and str(result.exception) == "Error: no such user: nobody"


def test_cli_and_server_share_the_database() -> None:
    from dockyard.registry.accounts import DB_FILENAME
    from dockyard.registry.app import DB_FILE

    assert DB_FILENAME == DB_FILE
