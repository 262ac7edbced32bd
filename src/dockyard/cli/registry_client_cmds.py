"""Registry client commands: login, logout, push, pull, search.

Progress follows Docker: one ``<id>: <status>`` line per change when stdout is
not a terminal (byte-count updates are skipped), a live per-layer display with
bars on a terminal, and only the reference with ``-q``. Errors raised before any
progress was shown read ``Error response from daemon: ...``; later ones are
printed as they are, as Docker prints errors from its progress stream.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import click

from dockyard.cli.errors import daemon_error, fail
from dockyard.cli.output import store_from
from dockyard.distribution.progress import Event
from dockyard.errors import DockyardError

# -- progress displays -----------------------------------------------------------------


class PlainDisplay:
    """Docker's non-terminal output: a line per status change, no bars."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.started = False
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        if self.quiet or event.progress:
            return
        line = f"{event.id}: {event.status}" if event.id else event.status
        with self._lock:
            if not event.status.startswith("Using default tag"):
                self.started = True
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def close(self) -> None:
        pass


def _bar(current: int, total: int, width: int = 50) -> str:
    """Docker's progress bar: ``[=====>     ]  1.2MB/2.1MB``."""
    from dockyard.cli.render import human_size

    if total <= 0:
        return ""
    filled = min(width, int(width * current / total))
    box = "[" + "=" * filled + ">" + " " * (width - filled) + "]"
    return f"{box} {human_size(current, 4):>8}/{human_size(total, 4)}"


class LiveDisplay:
    """A terminal display: one row per layer, updated in place (rich)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.started = False
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[str, int, int, bool]] = {}
        self.console = Console(highlight=False, soft_wrap=True)
        self._live = Live(
            self, console=self.console, refresh_per_second=8, transient=False, auto_refresh=True
        )
        self._live.start()

    def __rich__(self) -> Any:
        from rich.text import Text

        with self._lock:
            lines = []
            for layer, (status, current, total, bar) in self._rows.items():
                line = f"{layer}: {status}"
                room = self.console.width - len(line) - 22
                if bar and room >= 10:
                    line += " " + _bar(current, total, min(50, room))
                lines.append(line)
        return Text("\n".join(lines))

    def __call__(self, event: Event) -> None:
        with self._lock:
            if not event.status.startswith("Using default tag"):
                self.started = True
            if event.id:
                self._rows[event.id] = (event.status, event.current, event.total, event.progress)
                return
        # outside the lock: printing redraws the display, which takes the lock
        self._live.console.print(event.status, markup=False, highlight=False)

    def close(self) -> None:
        self._live.stop()


def _display(quiet: bool) -> PlainDisplay | LiveDisplay:
    if not quiet and sys.stdout.isatty():
        try:
            return LiveDisplay()
        except Exception:  # no usable terminal after all
            return PlainDisplay()
    return PlainDisplay(quiet)


def _transfer_error(display: PlainDisplay | LiveDisplay, e: DockyardError) -> DockyardError:
    display.close()
    if display.started:
        fail(e.message)
    return daemon_error(e)


# -- login / logout ----------------------------------------------------------------------


@click.command("login")
@click.argument("server", required=False)
@click.option("-u", "--username", default="", help="Username")
@click.option("-p", "--password", default="", help="Password")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin")
@click.pass_context
def login(
    ctx: click.Context, server: str | None, username: str, password: str, password_stdin: bool
) -> None:
    """Log in to a Docker registry.
    If no server is specified, the default is defined by the daemon."""
    from dockyard.distribution.client import login as check
    from dockyard.distribution.credentials import CredentialStore, server_key
    from dockyard.distribution.endpoints import RegistryConfig

    if password and password_stdin:
        fail("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        if not username:
            fail("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\n").rstrip("\r")
    elif password:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
                   err=True)
    key = server_key(server)
    store = store_from(ctx)
    config = RegistryConfig.load(store.root)
    creds = CredentialStore()
    try:
        if not username and not password:
            stored = creds.get(key)
            if stored is not None and stored.username:
                click.echo("Authenticating with existing credentials...")
                try:
                    check(key, stored.username, stored.password, config)
                    click.echo("Login Succeeded")
                    return
                except DockyardError as e:
                    click.echo(f"Login did not succeed, error: {e.message}", err=True)
        if not username:
            if not sys.stdin.isatty():
                fail("Error: Cannot perform an interactive login from a non TTY device")
            username = click.prompt("Username", prompt_suffix=": ").strip()
            if not username:
                fail("Error: Non-null Username Required")
        if not password:
            if not sys.stdin.isatty():
                fail("Error: Cannot perform an interactive login from a non TTY device")
            password = click.prompt("Password", hide_input=True, prompt_suffix=": ")
            if not password:
                fail("Error: Password Required")
        entry = check(key, username, password, config)
        if creds.uses_plain_file and not entry.identity_token:
            click.echo(
                f"WARNING! Your password will be stored unencrypted in {creds.path}.\n"
                "Configure a credential helper to remove this warning. See\n"
                "https://docs.docker.com/engine/reference/commandline/login/"
                "#credentials-store\n",
                err=True,
            )
        creds.store(key, entry)
    except DockyardError as e:
        raise daemon_error(e) from e
    click.echo("Login Succeeded")


@click.command("logout")
@click.argument("server", required=False)
def logout(server: str | None) -> None:
    """Log out from a Docker registry.
    If no server is specified, the default is defined by the daemon."""
    from dockyard.distribution.credentials import CredentialStore, server_key, to_hostname
    from dockyard.distribution.endpoints import DOCKER_HUB_AUTH_KEY

    key = server_key(server)
    shown = key if key == DOCKER_HUB_AUTH_KEY else to_hostname(key)
    creds = CredentialStore()
    try:
        keys = creds.logged_in_keys(key)
        if not keys:
            click.echo(f"Not logged in to {shown}")
            return
        click.echo(f"Removing login credentials for {shown}")
        for k in keys:
            try:
                creds.erase(k)
            except DockyardError as e:
                click.echo(f"WARNING: could not erase credentials: {k}: {e.message}", err=True)
    except DockyardError as e:
        fail(e.message)


# -- push / pull ------------------------------------------------------------------------


@click.command("push")
@click.argument("name")
@click.option("-a", "--all-tags", is_flag=True, help="Push all tagged images in the repository")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.option(
    "--compression-format",
    type=click.Choice(["gzip", "zstd"]),
    default="gzip",
    show_default=True,
    help="Layer compression: gzip (Docker schema2 media types) or zstd (OCI media types)",
)
@click.option(
    "--disable-content-trust", is_flag=True, default=True, hidden=True, help="Skip image signing"
)
@click.pass_context
def push(
    ctx: click.Context,
    name: str,
    all_tags: bool,
    quiet: bool,
    compression_format: str,
    disable_content_trust: bool,
) -> None:
    """Push an image or a repository to a registry"""
    from dockyard.errors import InvalidReference
    from dockyard.ops.push import push as push_image
    from dockyard.reference import parse_normalized

    try:
        ref = parse_normalized(name)
    except InvalidReference as e:
        fail(e.message)
    if not all_tags and ref.tag is None and ref.digest is None:
        if not quiet:
            click.echo("Using default tag: latest")
        ref = ref.with_tag("latest")
    store = store_from(ctx)
    display = _display(quiet)
    try:
        push_image(
            store,
            str(ref),
            all_tags=all_tags,
            compression=compression_format,
            report=display,
        )
    except DockyardError as e:
        raise _transfer_error(display, e) from e
    display.close()
    if quiet:
        click.echo(str(ref))


@click.command("pull")
@click.argument("name")
@click.option("-a", "--all-tags", is_flag=True, help="Download all tagged images in the repository")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.option("--platform", default="", help="Set platform if server is multi-platform capable")
@click.option(
    "--disable-content-trust", is_flag=True, default=True, hidden=True, help="Skip verification"
)
@click.pass_context
def pull(
    ctx: click.Context,
    name: str,
    all_tags: bool,
    quiet: bool,
    platform: str,
    disable_content_trust: bool,
) -> None:
    """Download an image from a registry"""
    from dockyard.errors import InvalidReference
    from dockyard.ops.pull import pull as pull_image
    from dockyard.reference import parse_normalized

    try:
        ref = parse_normalized(name)
    except InvalidReference as e:
        fail(e.message)
    if ref.tag is not None and ref.digest is not None:
        ref = type(ref)(ref.domain, ref.path, None, ref.digest)
    store = store_from(ctx)
    display = _display(quiet)
    try:
        pull_image(store, name, all_tags=all_tags, platform=platform or None, report=display)
    except DockyardError as e:
        raise _transfer_error(display, e) from e
    display.close()
    if all_tags:
        click.echo(ref.name)
    elif ref.tag is None and ref.digest is None:
        click.echo(str(ref.with_tag("latest")))
    else:
        click.echo(str(ref))


# -- search ---------------------------------------------------------------------------------


@click.command("search")
@click.argument("term")
@click.option("-f", "--filter", "filters", multiple=True,
              help="Filter output based on conditions provided (stars=N, is-official=true, "
              "is-automated=true)")
@click.option("--format", "fmt", help="Pretty-print search using a Go template")
@click.option("--limit", default=25, show_default=True, help="Max number of search results")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.pass_context
def search(
    ctx: click.Context,
    term: str,
    filters: tuple[str, ...],
    fmt: str | None,
    limit: int,
    no_trunc: bool,
) -> None:
    """Search the Docker Hub for images.

    TERM may start with a registry (HOST[:PORT]/TERM). Registries without the
    /v1/search API (such as distribution) are searched through their
    /v2/_catalog listing instead: repositories whose name contains TERM, with
    no description and no stars."""
    from dockyard.cli.output import print_formatted
    from dockyard.cli.render import ellipsis
    from dockyard.distribution.endpoints import RegistryConfig
    from dockyard.distribution.search import search as run_search

    store = store_from(ctx)
    try:
        results = run_search(
            term, limit=limit, filters=list(filters), config=RegistryConfig.load(store.root)
        )
    except DockyardError as e:
        raise daemon_error(e) from e
    records = []
    for r in results:
        desc = r.description.replace("\n", " ").replace("\r", " ")
        records.append(
            {
                "Name": r.name,
                "Description": desc if no_trunc else ellipsis(desc, 45),
                "StarCount": str(r.star_count),
                "IsOfficial": "[OK]" if r.is_official else "",
                "IsAutomated": "[OK]" if r.is_automated else "",
            }
        )
    print_formatted(
        records,
        fmt,
        ["Name", "Description", "StarCount", "IsOfficial", "IsAutomated"],
        {
            "Name": "NAME",
            "Description": "DESCRIPTION",
            "StarCount": "STARS",
            "IsOfficial": "OFFICIAL",
            "IsAutomated": "AUTOMATED",
        },
    )
