"""The ``dockyard`` command line: Docker's verbs, thin over ``dockyard.ops``.

Commands live in small modules imported only when used, so ``dockyard images``
starts in a few milliseconds.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

# command name -> "module:function" (module under dockyard.cli)
COMMANDS = {
    "images": "image_cmds:images",
    "import": "image_cmds:import_",
    "tag": "image_cmds:tag",
    "rmi": "image_cmds:rmi",
    "inspect": "image_cmds:inspect",
    "history": "image_cmds:history",
    "save": "archive_cmds:save",
    "load": "archive_cmds:load",
    "copy": "copy_cmds:copy",
    "image": "image_cmds:image",
    "system": "system_cmds:system",
    "version": "system_cmds:version",
    "info": "system_cmds:info",
    "run": "container_cmds:run",
    "create": "container_cmds:create",
    "start": "container_cmds:start_cmd",
    "stop": "container_cmds:stop",
    "restart": "container_cmds:restart",
    "kill": "container_cmds:kill",
    "rm": "container_cmds:rm",
    "ps": "container_cmds:ps",
    "logs": "container_cmds:logs",
    "exec": "container_cmds:exec_",
    "attach": "container_cmds:attach_cmd",
    "wait": "container_cmds:wait",
    "pause": "container_cmds:pause",
    "unpause": "container_cmds:unpause",
    "top": "container_cmds:top",
    "port": "container_cmds:port",
    "rename": "container_cmds:rename",
    "diff": "container_cmds:diff",
    "commit": "container_cmds:commit",
    "container": "container_cmds:container_group",
    "registry": "registry_cmds:registry",
    "login": "registry_client_cmds:login",
    "logout": "registry_client_cmds:logout",
    "push": "registry_client_cmds:push",
    "pull": "registry_client_cmds:pull",
    "search": "registry_client_cmds:search",
}
HIDDEN_ALIASES: dict[str, str] = {}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        cmd: click.Command = getattr(importlib.import_module(f"dockyard.cli.{module}"), attr)
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    envvar="DOCKYARD_ROOT",
    type=click.Path(file_okay=False),
    help="Store root (default /var/lib/dockyard for root, $XDG_DATA_HOME/dockyard otherwise).",
)
@click.option(
    "--storage-driver",
    "-s",
    envvar="DOCKYARD_STORAGE_DRIVER",
    type=click.Choice(["overlay", "overlay2", "btrfs", "vfs"]),
    help="Storage driver (default: config.json's storage-driver, else btrfs on btrfs, "
    "else overlay, else vfs).",
)
@click.version_option(package_name="dockyard", prog_name="dockyard")
@click.pass_context
def cli(ctx: click.Context, root: str | None, storage_driver: str | None) -> None:
    """A container image engine: Docker's image verbs, no daemon."""
    ctx.obj = {"root": root, "storage_driver": storage_driver}


def main(argv: list[str] | None = None) -> Any:
    from dockyard.cli.errors import run

    return run(cli, argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
