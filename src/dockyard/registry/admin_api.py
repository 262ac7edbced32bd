"""The registry's admin JSON API under /api/: the same operations as ``dockyard registry``
user / org / team / token / repo, for an admin (Basic credentials, or a Bearer token from
our /token whose subject is an admin user).

    GET    /api/users                                   list users
    POST   /api/users                {name, password, admin?}
    GET    /api/users/{name}
    DELETE /api/users/{name}
    PUT    /api/users/{name}/password {password}
    PUT    /api/users/{name}/admin    {admin}
    GET    /api/orgs
    POST   /api/orgs                 {name, owner}
    DELETE /api/orgs/{org}
    GET    /api/orgs/{org}/teams
    POST   /api/orgs/{org}/teams     {name, permission, repositories?}  (create or redefine)
    DELETE /api/orgs/{org}/teams/{team}
    PUT    /api/orgs/{org}/teams/{team}/members/{user}
    DELETE /api/orgs/{org}/teams/{team}/members/{user}
    GET    /api/tokens[?owner=NAME]
    POST   /api/tokens               {name, owner, scopes, expires?}  -> adds "secret" (once)
    DELETE /api/tokens/{name}
    GET    /api/repositories?visibility=public           repositories made public
    GET    /api/repositories/{name}/visibility
    PUT    /api/repositories/{name}/visibility {visibility: public | private}

Errors are ``{"errors": [{"code", "message"}]}`` with the error's HTTP status.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from dockyard.errors import DockyardError, InvalidArgument
from dockyard.registry.access import Denied, Unauthorized
from dockyard.registry.accounts import (
    AccessToken,
    Accounts,
    Organization,
    Subject,
    Team,
    User,
    parse_duration,
)

if TYPE_CHECKING:
    from dockyard.registry.tokens import TokenSigner

ADMIN_REALM = 'Basic realm="dockyard"'
Handler = Callable[[Request], Awaitable[Response]]


def _time(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_json(user: User) -> dict[str, Any]:
    return {"name": user.name, "admin": user.admin, "created": _time(user.created)}


def org_json(org: Organization) -> dict[str, Any]:
    return {"name": org.name, "owners": list(org.owners), "created": _time(org.created)}


def team_json(team: Team) -> dict[str, Any]:
    return {"org": team.org, "name": team.name, "permission": team.permission,
            "repositories": None if team.repositories is None else list(team.repositories),
            "members": list(team.members)}


def token_json(token: AccessToken) -> dict[str, Any]:
    return {"name": token.name, "owner": token.owner, "owner_kind": token.owner_kind,
            "scopes": [str(s) for s in token.scopes], "created": _time(token.created),
            "expires": _time(token.expires), "last_used": _time(token.last_used),
            "expired": token.expired()}


def error_response(err: DockyardError) -> JSONResponse:
    headers = {"WWW-Authenticate": err.challenge} if isinstance(err, Unauthorized) else None
    return JSONResponse({"errors": [{"code": err.code, "message": err.message}]},
                        status_code=err.http_status, headers=headers)


def _str(body: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{key!r} must be a non-empty string")
    return value


def _need(body: dict[str, Any], key: str) -> str:
    value = _str(body, key)
    assert value is not None
    return value


def _bool(body: dict[str, Any], key: str, default: bool = False) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise InvalidArgument(f"{key!r} must be true or false")
    return value


def _str_list(body: dict[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{key!r} must be a list of strings")
    return value


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as e:
        raise InvalidArgument("the request body must be a JSON object") from e
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return body


class AdminApi:
    def __init__(self, accounts: Accounts, signer: TokenSigner | None = None) -> None:
        self.accounts = accounts
        self.signer = signer

    # -- who may call -------------------------------------------------------------

    def _caller(self, authorization: str | None) -> Subject:
        from dockyard.registry.tokens import InvalidToken, parse_basic, parse_bearer

        subject: Subject | None = None
        creds = parse_basic(authorization)
        bearer = parse_bearer(authorization)
        if creds is not None:
            subject = self.accounts.authenticate(*creds)
        elif bearer is not None and self.signer is not None:
            try:
                subject = self.accounts.subject_from_claim(self.signer.verify(bearer).subject)
            except InvalidToken:
                subject = None
        if subject is None or subject.kind == "anonymous":
            raise Unauthorized("admin credentials required", ADMIN_REALM)
        if not (subject.kind == "user" and subject.admin):
            raise Denied("only registry admins may use the admin API")
        return subject

    def wrap(self, fn: Callable[[Request], Awaitable[Any]], status: int = 200) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                await run_in_threadpool(self._caller, request.headers.get("authorization"))
                result = await fn(request)
            except DockyardError as err:
                return error_response(err)
            if result is None:
                return Response(status_code=204)
            return JSONResponse(result, status_code=status)
        return endpoint

    # -- users --------------------------------------------------------------------

    async def list_users(self, request: Request) -> Any:
        return [user_json(u) for u in await run_in_threadpool(self.accounts.users)]

    async def add_user(self, request: Request) -> Any:
        body = await _body(request)
        user = await run_in_threadpool(self.accounts.add_user, _need(body, "name"),
                                       _need(body, "password"), _bool(body, "admin"))
        return user_json(user)

    async def get_user(self, request: Request) -> Any:
        from dockyard.errors import NotFound

        name = request.path_params["name"]
        user = await run_in_threadpool(self.accounts.user, name)
        if user is None:
            raise NotFound(f"no such user: {name}")
        return user_json(user)

    async def remove_user(self, request: Request) -> Any:
        await run_in_threadpool(self.accounts.remove_user, request.path_params["name"])

    async def set_password(self, request: Request) -> Any:
        body = await _body(request)
        await run_in_threadpool(self.accounts.set_password, request.path_params["name"],
                                _need(body, "password"))

    async def set_admin(self, request: Request) -> Any:
        body = await _body(request)
        await run_in_threadpool(self.accounts.set_admin, request.path_params["name"],
                                _bool(body, "admin"))

    # -- organizations and teams ------------------------------------------------------

    async def list_orgs(self, request: Request) -> Any:
        return [org_json(o) for o in await run_in_threadpool(self.accounts.orgs)]

    async def add_org(self, request: Request) -> Any:
        body = await _body(request)
        org = await run_in_threadpool(self.accounts.add_org, _need(body, "name"),
                                      _need(body, "owner"))
        return org_json(org)

    async def remove_org(self, request: Request) -> Any:
        await run_in_threadpool(self.accounts.remove_org, request.path_params["org"])

    async def list_teams(self, request: Request) -> Any:
        teams = await run_in_threadpool(self.accounts.teams, request.path_params["org"])
        return [team_json(t) for t in teams]

    async def add_team(self, request: Request) -> Any:
        body = await _body(request)
        team = await run_in_threadpool(
            self.accounts.add_team, request.path_params["org"], _need(body, "name"),
            _need(body, "permission"), _str_list(body, "repositories"))
        return team_json(team)

    async def remove_team(self, request: Request) -> Any:
        await run_in_threadpool(self.accounts.remove_team, request.path_params["org"],
                                request.path_params["team"])

    async def add_member(self, request: Request) -> Any:
        p = request.path_params
        await run_in_threadpool(self.accounts.add_member, p["org"], p["team"], p["user"])

    async def remove_member(self, request: Request) -> Any:
        p = request.path_params
        await run_in_threadpool(self.accounts.remove_member, p["org"], p["team"], p["user"])

    # -- access tokens --------------------------------------------------------------

    async def list_tokens(self, request: Request) -> Any:
        tokens = await run_in_threadpool(self.accounts.tokens,
                                         request.query_params.get("owner"))
        return [token_json(t) for t in tokens]

    async def add_token(self, request: Request) -> Any:
        body = await _body(request)
        scopes = _str_list(body, "scopes") or []
        expires_text = _str(body, "expires", required=False)
        expires = time.time() + parse_duration(expires_text) if expires_text else None
        token, secret = await run_in_threadpool(
            self.accounts.add_token, _need(body, "name"), _need(body, "owner"), scopes, expires)
        return {**token_json(token), "secret": secret}

    async def remove_token(self, request: Request) -> Any:
        await run_in_threadpool(self.accounts.remove_token, request.path_params["name"])

    # -- repositories ---------------------------------------------------------------

    async def list_repositories(self, request: Request) -> Any:
        if request.query_params.get("visibility", "public") != "public":
            raise InvalidArgument("only ?visibility=public can be listed here (the catalog "
                                  "lists every repository)")
        return [{"repository": r, "visibility": "public"}
                for r in await run_in_threadpool(self.accounts.public_repositories)]

    async def get_visibility(self, request: Request) -> Any:
        name = request.path_params["name"]
        public = await run_in_threadpool(self.accounts.is_public, name)
        return {"repository": name, "visibility": "public" if public else "private"}

    async def set_visibility(self, request: Request) -> Any:
        name = request.path_params["name"]
        visibility = _need(await _body(request), "visibility")
        if visibility not in ("public", "private"):
            raise InvalidArgument("visibility must be public or private")
        await run_in_threadpool(self.accounts.set_visibility, name, visibility == "public")
        return {"repository": name, "visibility": visibility}

    def routes(self) -> list[BaseRoute]:
        w = self.wrap
        return [
            Route("/users", w(self.list_users), methods=["GET"]),
            Route("/users", w(self.add_user, 201), methods=["POST"]),
            Route("/users/{name}", w(self.get_user), methods=["GET"]),
            Route("/users/{name}", w(self.remove_user), methods=["DELETE"]),
            Route("/users/{name}/password", w(self.set_password), methods=["PUT"]),
            Route("/users/{name}/admin", w(self.set_admin), methods=["PUT"]),
            Route("/orgs", w(self.list_orgs), methods=["GET"]),
            Route("/orgs", w(self.add_org, 201), methods=["POST"]),
            Route("/orgs/{org}", w(self.remove_org), methods=["DELETE"]),
            Route("/orgs/{org}/teams", w(self.list_teams), methods=["GET"]),
            Route("/orgs/{org}/teams", w(self.add_team, 201), methods=["POST"]),
            Route("/orgs/{org}/teams/{team}", w(self.remove_team), methods=["DELETE"]),
            Route("/orgs/{org}/teams/{team}/members/{user}", w(self.add_member),
                  methods=["PUT"]),
            Route("/orgs/{org}/teams/{team}/members/{user}", w(self.remove_member),
                  methods=["DELETE"]),
            Route("/tokens", w(self.list_tokens), methods=["GET"]),
            Route("/tokens", w(self.add_token, 201), methods=["POST"]),
            Route("/tokens/{name}", w(self.remove_token), methods=["DELETE"]),
            Route("/repositories", w(self.list_repositories), methods=["GET"]),
            Route("/repositories/{name:path}/visibility", w(self.get_visibility),
                  methods=["GET"]),
            Route("/repositories/{name:path}/visibility", w(self.set_visibility),
                  methods=["PUT"]),
        ]


def admin_routes(accounts: Accounts, signer: TokenSigner | None = None) -> list[BaseRoute]:
    """``Mount("/api", ...)`` with the admin API; ``signer`` lets admins use Bearer tokens."""
    return [Mount("/api", routes=AdminApi(accounts, signer).routes())]
