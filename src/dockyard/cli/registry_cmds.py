"""``dockyard registry ...``: run the registry server and collect its garbage.

Every command takes ``--data DIR`` and ``--config FILE`` (``data_options``) and
turns them into the registry's settings with ``settings_from``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from dockyard.registry.serve import Settings

F = TypeVar("F", bound=Callable[..., Any])


def data_options(fn: F) -> F:
    fn = click.option(
        "--config", "config", type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="Registry config file (TOML).",
    )(fn)  # fmt: skip
    fn = click.option(
        "--data", "data", type=click.Path(file_okay=False),
        help="Data directory (default /var/lib/dockyard-registry for root).",
    )(fn)  # fmt: skip
    return fn


def settings_from(config: Path | None, data: str | None, **overrides: Any) -> Settings:
    from dockyard.registry.serve import load_settings

    return load_settings(config, data=data, **overrides)


@click.group("registry")
def registry() -> None:
    """Run an OCI distribution registry"""


@registry.command("serve")
@click.option("--addr", help="Address to listen on, HOST:PORT (default 127.0.0.1:5000).")
@click.option("--workers", type=click.IntRange(min=1),
              help="Server worker processes (default: one per CPU, at most 4).")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--access-log", is_flag=True, help="Log every request.")
@data_options
def serve(
    addr: str | None, workers: int | None, log_level: str, access_log: bool,
    data: str | None, config: Path | None,
) -> None:  # fmt: skip
    """Serve the registry (no set-up needed: SQLite + files under --data)"""
    from dockyard.registry.serve import serve as run

    settings = settings_from(config, data, addr=addr, workers=workers)
    run(settings, log_level=log_level, access_log=access_log)


@registry.command("gc")
@click.option("--dry-run", is_flag=True, help="Only report what would be deleted.")
@click.option("--untagged", is_flag=True, help="Also delete manifests no tag or index keeps.")
@click.option("--grace", type=float, default=3600.0, show_default=True,
              help="Keep anything younger than this many seconds.")
@click.option("--upload-max-age", type=float, default=7 * 86400.0, show_default=True,
              help="Cancel uploads idle for longer than this many seconds.")
@click.option("-v", "--verbose", is_flag=True, help="List what is deleted.")
@data_options
def gc(
    dry_run: bool, untagged: bool, grace: float, upload_max_age: float, verbose: bool,
    data: str | None, config: Path | None,
) -> None:  # fmt: skip
    """Delete unreferenced blobs (and untagged manifests); safe while serving"""
    from dockyard.registry.app import DB_FILE
    from dockyard.registry.db import Database
    from dockyard.registry.gc import collect
    from dockyard.registry.metadata import Metadata
    from dockyard.registry.storage import make_driver

    settings = settings_from(config, data)
    options = dict(settings.storage)
    storage = make_driver(str(options.pop("driver", "filesystem")), settings.data_dir, options)
    meta = Metadata(Database(settings.data_dir / DB_FILE))
    report = collect(
        meta, storage, untagged=untagged, grace=grace, upload_max_age=upload_max_age,
        dry_run=dry_run,
    )  # fmt: skip
    if verbose:
        for repo, digest in report.manifests:
            click.echo(f"manifest {repo}@{digest}")
        for digest in report.blobs:
            click.echo(f"blob {digest}")
        for upload in report.uploads:
            click.echo(f"upload {upload}")
        for path in report.stray_files:
            click.echo(f"stray {path}")
    click.echo(report.summary())


def _add_admin_commands() -> None:
    from dockyard.cli.registry_admin_cmds import ADMIN_COMMANDS

    for cmd in ADMIN_COMMANDS:
        registry.add_command(cmd)


_add_admin_commands()
