"""``dockyard registry user|org|team|token|repo``: accounts of a registry's data directory.

Thin commands over ``dockyard.registry.accounts``; each takes ``--data DIR`` and
``--config FILE`` as ``registry serve`` does (default $DOCKYARD_REGISTRY_DATA, else
/var/lib/dockyard-registry for root) and works while the server runs (the accounts
live in the registry's SQLite database, WAL mode).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from dockyard.registry.accounts import Accounts

F = TypeVar("F", bound=Callable[..., Any])


def data_option(fn: F) -> F:
    """``--data DIR`` and ``--config FILE``, as ``registry serve`` takes them."""
    fn = click.option(
        "--config", "config", type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="Registry config file (TOML); its data directory is used.")(fn)
    fn = click.option(
        "--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Registry data directory (default $DOCKYARD_REGISTRY_DATA, else "
             "/var/lib/dockyard-registry for root).")(fn)
    return fn


def _accounts(data_dir: Path | None, config: Path | None) -> Accounts:
    from dockyard.registry.accounts import open_accounts
    from dockyard.registry.serve import load_settings

    settings = load_settings(config, data=str(data_dir) if data_dir else None)
    return open_accounts(settings.data_dir)


class AdminGroup(click.Group):
    """Library errors print as ``Error: ...`` (no daemon is involved here)."""

    def invoke(self, ctx: click.Context) -> Any:
        from dockyard.cli.errors import CliError
        from dockyard.errors import DockyardError

        try:
            return super().invoke(ctx)
        except CliError:
            raise
        except DockyardError as e:
            raise CliError(f"Error: {e.message}", e.exit_code) from e


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("no password on standard input")
        return password
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    from dockyard.cli.render import time_ago

    if ts > time.time():
        return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))
    return time_ago(ts)


def _table(rows: list[list[str]]) -> None:
    from dockyard.cli.render import Table

    table = Table()
    for row in rows:
        table.row(*row)
    click.echo(table.render(), nl=False)


# --------------------------------------------------------------------------- #
# user
# --------------------------------------------------------------------------- #


@click.group(cls=AdminGroup)
def user() -> None:
    """Manage registry users."""


@user.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--admin", is_flag=True, help="The user may do everything.")
@data_option
def user_add(name: str, password_stdin: bool, admin: bool, data_dir: Path | None,
             config: Path | None) -> None:
    """Add a user (who owns the namespace NAME/)."""
    accounts = _accounts(data_dir, config)
    accounts.add_user(name, _read_password(password_stdin), admin)
    click.echo(name)


@user.command("rm")
@click.argument("names", nargs=-1, required=True)
@data_option
def user_rm(names: tuple[str, ...], data_dir: Path | None, config: Path | None) -> None:
    """Remove users (with their access tokens and team memberships)."""
    accounts = _accounts(data_dir, config)
    for name in names:
        accounts.remove_user(name)
        click.echo(name)


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@data_option
def user_passwd(name: str, password_stdin: bool, data_dir: Path | None,
                config: Path | None) -> None:
    """Change a user's password (ends the user's refresh tokens)."""
    accounts = _accounts(data_dir, config)
    if accounts.user(name) is None:
        from dockyard.errors import NotFound

        raise NotFound(f"no such user: {name}")
    accounts.set_password(name, _read_password(password_stdin))


@user.command("admin")
@click.argument("name")
@click.argument("state", type=click.Choice(["on", "off"]))
@data_option
def user_admin(name: str, state: str, data_dir: Path | None, config: Path | None) -> None:
    """Grant (on) or revoke (off) a user's admin flag."""
    _accounts(data_dir, config).set_admin(name, state == "on")


@user.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only names.")
@data_option
def user_ls(quiet: bool, data_dir: Path | None, config: Path | None) -> None:
    """List users."""
    users = _accounts(data_dir, config).users()
    if quiet:
        for u in users:
            click.echo(u.name)
        return
    _table([["NAME", "ADMIN", "CREATED"]]
           + [[u.name, "yes" if u.admin else "no", _when(u.created)] for u in users])


# --------------------------------------------------------------------------- #
# org
# --------------------------------------------------------------------------- #


@click.group(cls=AdminGroup)
def org() -> None:
    """Manage organizations (namespaces owned by teams)."""


@org.command("add")
@click.argument("name")
@click.option("--owner", required=True, help="The first member of the owners team.")
@data_option
def org_add(name: str, owner: str, data_dir: Path | None, config: Path | None) -> None:
    """Add an organization (owning the namespace NAME/)."""
    _accounts(data_dir, config).add_org(name, owner)
    click.echo(name)


@org.command("rm")
@click.argument("names", nargs=-1, required=True)
@data_option
def org_rm(names: tuple[str, ...], data_dir: Path | None, config: Path | None) -> None:
    """Remove organizations (with their teams and access tokens)."""
    accounts = _accounts(data_dir, config)
    for name in names:
        accounts.remove_org(name)
        click.echo(name)


@org.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only names.")
@data_option
def org_ls(quiet: bool, data_dir: Path | None, config: Path | None) -> None:
    """List organizations."""
    orgs = _accounts(data_dir, config).orgs()
    if quiet:
        for o in orgs:
            click.echo(o.name)
        return
    _table([["NAME", "OWNERS", "CREATED"]]
           + [[o.name, ",".join(o.owners), _when(o.created)] for o in orgs])


# --------------------------------------------------------------------------- #
# team
# --------------------------------------------------------------------------- #


@click.group(cls=AdminGroup)
def team() -> None:
    """Manage the teams of an organization."""


@team.command("add")
@click.argument("org_name", metavar="ORG")
@click.argument("name", metavar="TEAM")
@click.option("--perm", "permission", required=True,
              type=click.Choice(["read", "write", "admin"]),
              help="read = pull; write = pull, push; admin = pull, push, delete.")
@click.option("--repo", "repos", multiple=True,
              help="Only this repository of the org (repeatable; default: all).")
@data_option
def team_add(org_name: str, name: str, permission: str, repos: tuple[str, ...],
             data_dir: Path | None, config: Path | None) -> None:
    """Add a team to ORG, or redefine an existing one."""
    _accounts(data_dir, config).add_team(org_name, name, permission, list(repos) or None)
    click.echo(f"{org_name}/{name}")


@team.command("rm")
@click.argument("org_name", metavar="ORG")
@click.argument("name", metavar="TEAM")
@data_option
def team_rm(org_name: str, name: str, data_dir: Path | None, config: Path | None) -> None:
    """Remove a team."""
    _accounts(data_dir, config).remove_team(org_name, name)
    click.echo(f"{org_name}/{name}")


@team.command("ls")
@click.argument("org_name", metavar="ORG")
@data_option
def team_ls(org_name: str, data_dir: Path | None, config: Path | None) -> None:
    """List the teams of ORG."""
    teams = _accounts(data_dir, config).teams(org_name)
    _table([["TEAM", "PERMISSION", "REPOSITORIES", "MEMBERS"]]
           + [[t.name, t.permission,
               "*" if t.repositories is None else ",".join(t.repositories) or "-",
               ",".join(t.members) or "-"] for t in teams])


@team.group("member")
def team_member() -> None:
    """Manage the members of a team."""


@team_member.command("add")
@click.argument("org_name", metavar="ORG")
@click.argument("name", metavar="TEAM")
@click.argument("users", nargs=-1, required=True, metavar="USER...")
@data_option
def team_member_add(org_name: str, name: str, users: tuple[str, ...],
                    data_dir: Path | None, config: Path | None) -> None:
    """Add users to a team."""
    accounts = _accounts(data_dir, config)
    for u in users:
        accounts.add_member(org_name, name, u)


@team_member.command("rm")
@click.argument("org_name", metavar="ORG")
@click.argument("name", metavar="TEAM")
@click.argument("users", nargs=-1, required=True, metavar="USER...")
@data_option
def team_member_rm(org_name: str, name: str, users: tuple[str, ...],
                   data_dir: Path | None, config: Path | None) -> None:
    """Remove users from a team."""
    accounts = _accounts(data_dir, config)
    for u in users:
        accounts.remove_member(org_name, name, u)


# --------------------------------------------------------------------------- #
# token
# --------------------------------------------------------------------------- #


@click.group(cls=AdminGroup)
def token() -> None:
    """Manage access tokens (robot accounts for CI)."""


@token.command("add")
@click.argument("name")
@click.option("--owner", required=True, help="The user or organization it acts for.")
@click.option("--scope", "scopes", multiple=True, required=True,
              help="repository:NS/REPO:pull,push (NS/* for a whole namespace), or "
                   "registry:catalog:* (repeatable).")
@click.option("--expires", help="Lifetime, e.g. 30d, 12h, 1y (default: no expiry).")
@data_option
def token_add(name: str, owner: str, scopes: tuple[str, ...], expires: str | None,
              data_dir: Path | None, config: Path | None) -> None:
    """Add an access token and print its secret (shown only this once).

    Use the secret as the password of basic auth or at /token, with the token's
    name (or its owner's) as the user name."""
    from dockyard.registry.accounts import parse_duration

    when = time.time() + parse_duration(expires) if expires else None
    _, secret = _accounts(data_dir, config).add_token(name, owner, list(scopes), when)
    click.echo(secret)


@token.command("rm")
@click.argument("names", nargs=-1, required=True)
@data_option
def token_rm(names: tuple[str, ...], data_dir: Path | None, config: Path | None) -> None:
    """Remove (revoke) access tokens."""
    accounts = _accounts(data_dir, config)
    for name in names:
        accounts.remove_token(name)
        click.echo(name)


@token.command("ls")
@click.option("--owner", help="Only the tokens of this user or organization.")
@data_option
def token_ls(owner: str | None, data_dir: Path | None, config: Path | None) -> None:
    """List access tokens (never their secrets)."""
    tokens = _accounts(data_dir, config).tokens(owner)
    now = time.time()
    _table([["NAME", "OWNER", "SCOPES", "EXPIRES", "LAST USED"]]
           + [[t.name, t.owner, " ".join(str(s) for s in t.scopes),
               "expired" if t.expired(now) else _when(t.expires),
               _when(t.last_used)] for t in tokens])


# --------------------------------------------------------------------------- #
# repo
# --------------------------------------------------------------------------- #


@click.group(cls=AdminGroup)
def repo() -> None:
    """Repository settings (visibility)."""


@repo.command("visibility")
@click.argument("name")
@click.argument("visibility", required=False, type=click.Choice(["public", "private"]))
@data_option
def repo_visibility(name: str, visibility: str | None, data_dir: Path | None,
                    config: Path | None) -> None:
    """Show or set whether anyone (anonymous clients too) may pull NAME."""
    accounts = _accounts(data_dir, config)
    if visibility is None:
        click.echo("public" if accounts.is_public(name) else "private")
        return
    accounts.set_visibility(name, visibility == "public")


@repo.command("ls")
@data_option
def repo_ls(data_dir: Path | None, config: Path | None) -> None:
    """List the repositories made public (every other one is private)."""
    for name in _accounts(data_dir, config).public_repositories():
        click.echo(name)


ADMIN_COMMANDS: list[click.Command] = [user, org, team, token, repo]
