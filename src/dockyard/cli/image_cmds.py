"""Image commands: images, import, tag, rmi, inspect, history, and the ``image`` group."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from dockyard.cli.errors import CliError, daemon_error, fail
from dockyard.cli.output import print_formatted, store_from
from dockyard.errors import DockyardError, ImageNotFound, InvalidReference


@click.command("images")
@click.argument("repository", required=False)
@click.option(
    "-a",
    "--all",
    "all_images",
    is_flag=True,
    help="Show all images (default hides intermediate images)",
)
@click.option("--digests", is_flag=True, help="Show digests")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided"
)
@click.option("--format", "fmt", help="Pretty-print images using a Go template")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.pass_context
def images(
    ctx: click.Context,
    repository: str | None,
    all_images: bool,
    digests: bool,
    filters: tuple[str, ...],
    fmt: str | None,
    no_trunc: bool,
    quiet: bool,
) -> None:
    """List images"""
    from dockyard.cli.render import docker_time, human_size, time_ago
    from dockyard.ops.images import list_images

    store = store_from(ctx)
    try:
        rows = list_images(store, all_images, list(filters), repository)
    except DockyardError as e:
        raise daemon_error(e) from e
    now = time.time()

    def image_id(full: str) -> str:
        return full if no_trunc else full[7:19]

    if quiet and not fmt:
        seen = []
        for r in rows:
            seen.append(image_id(r.image.id))
        sys.stdout.write("".join(i + "\n" for i in seen))
        return
    records = []
    for r in rows:
        records.append(
            {
                "Containers": "N/A",
                "CreatedAt": docker_time(r.image.created_ts),
                "CreatedSince": time_ago(r.image.created_ts, now),
                "Digest": r.digest,
                "ID": image_id(r.image.id),
                "Repository": r.repository,
                "SharedSize": "N/A",
                "Size": human_size(r.image.size),
                "Tag": r.tag,
                "UniqueSize": "N/A",
                "VirtualSize": human_size(r.image.size, 4),
            }
        )
    columns = ["Repository", "Tag"]
    if digests:
        columns.append("Digest")
    columns += ["ID", "CreatedSince", "Size"]
    headers = {
        "Repository": "REPOSITORY",
        "Tag": "TAG",
        "Digest": "DIGEST",
        "ID": "IMAGE ID",
        "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT",
        "Size": "SIZE",
        "VirtualSize": "VIRTUAL SIZE",
        "SharedSize": "SHARED SIZE",
        "UniqueSize": "UNIQUE SIZE",
        "Containers": "CONTAINERS",
    }
    print_formatted(records, fmt, columns, headers, quiet_field="ID" if quiet else None)


@click.command("import")
@click.argument("file")
@click.argument("reference", required=False)
@click.option(
    "-c",
    "--change",
    "changes",
    multiple=True,
    help="Apply Dockerfile instruction to the created image",
)
@click.option("-m", "--message", default="", help="Set commit message for imported image")
@click.option("--platform", default="", help="Set platform if server is multi-platform capable")
@click.pass_context
def import_(
    ctx: click.Context,
    file: str,
    reference: str | None,
    changes: tuple[str, ...],
    message: str,
    platform: str,
) -> None:
    """Import the contents from a tarball to create a filesystem image"""
    from dockyard.ops.importer import import_image
    from dockyard.reference import parse_with_default_tag, tag_error

    ref = None
    if reference:
        try:
            ref = parse_with_default_tag(reference)
        except InvalidReference as e:
            fail(tag_error(reference, e))
    arch = None
    os_name = "linux"
    if platform:
        parts = platform.split("/")
        os_name = parts[0]
        arch = parts[1] if len(parts) > 1 else None
    store = store_from(ctx)
    try:
        if file == "-":
            image_id = import_image(
                store,
                sys.stdin.buffer,
                source="-",
                tag=ref,
                changes=list(changes),
                message=message,
                architecture=arch,
                os_name=os_name,
            )
        else:
            try:
                f = open(file, "rb")  # noqa: SIM115 - closed below
            except OSError as e:
                fail(f"open {file}: {e.strerror.lower() if e.strerror else e}")
            with f:
                image_id = import_image(
                    store,
                    f,
                    source="-",
                    tag=ref,
                    changes=list(changes),
                    message=message,
                    architecture=arch,
                    os_name=os_name,
                )
    except DockyardError as e:
        if isinstance(e, CliError):
            raise
        raise daemon_error(e) from e
    click.echo(image_id)


@click.command("tag")
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag(ctx: click.Context, source: str, target: str) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"""
    from dockyard.ops.remove import tag as tag_image
    from dockyard.reference import parse_with_default_tag, tag_error

    try:
        parse_with_default_tag(target)
    except InvalidReference as e:
        fail(tag_error(target, e))
    try:
        tag_image(store_from(ctx), source, target)
    except DockyardError as e:
        raise daemon_error(e) from e


@click.command("rmi")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Force removal of the image")
@click.option("--no-prune", is_flag=True, help="Do not delete untagged parents")
@click.pass_context
def rmi(ctx: click.Context, names: tuple[str, ...], force: bool, no_prune: bool) -> None:
    """Remove one or more images"""
    from dockyard.ops.remove import remove_image

    store = store_from(ctx)
    errors = []
    for name in names:
        try:
            for line in remove_image(store, name, force=force, prune=not no_prune):
                click.echo(line)
        except ImageNotFound:
            errors.append(f"Error: No such image: {name}")
        except InvalidReference as e:
            errors.append(f"Error response from daemon: {e.message}")
        except DockyardError as e:
            errors.append(f"Error response from daemon: {e.message}")
    if errors:
        sys.stdout.flush()
        fail("\n".join(errors))


def _inspect_json(objects: list[Any]) -> str:
    return json.dumps(objects, indent=4, ensure_ascii=False)


@click.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", help="Format output using a custom template")
@click.option(
    "--type",
    "type_",
    type=click.Choice(["image", "container"]),
    help="Return JSON for specified type",
)
@click.option(
    "-s", "--size", is_flag=True, help="Display total file sizes if the type is container"
)
@click.pass_context
def inspect(
    ctx: click.Context, names: tuple[str, ...], fmt: str | None, type_: str | None, size: bool
) -> None:
    """Return low-level information on Docker objects"""
    _inspect(ctx, names, fmt, type_ or "", generic=type_ is None)


def _inspect(ctx: click.Context, names: tuple[str, ...], fmt: str | None, type_: str,
             generic: bool) -> None:
    """Docker's inspect: containers first, then images (or only the ``--type`` asked for)."""
    from dockyard.ops.images import inspect_image
    from dockyard.ops.lookup import find_image

    store = store_from(ctx)
    containers: dict[str, Any] = {}
    if type_ in ("", "container") and (store.root / "dockyard.db").exists():
        from dockyard.cli.container_cmds import inspect_containers

        containers = dict(inspect_containers(store, list(names))[0])
    found: list[Any] = []
    errors: list[str] = []
    for name in names:
        if name in containers:
            found.append(containers[name])
            continue
        image_id = None
        if type_ in ("", "image"):
            try:
                image_id = find_image(store, name)
            except InvalidReference:
                image_id = None
        if image_id is None:
            if generic:
                errors.append(f"Error: No such object: {name}")
            elif type_ == "container":
                errors.append(f"Error: No such container: {name}")
            else:
                errors.append(f"Error: No such image: {name}")
            continue
        found.append(inspect_image(store, image_id))
    if fmt:
        from dockyard.cli.gotemplate import render

        for obj in found:
            click.echo(render(fmt, obj, escape_html=False))
    else:
        click.echo(_inspect_json(found))
    if errors:
        sys.stdout.flush()
        fail("\n".join(errors))


@click.command("history")
@click.argument("name")
@click.option(
    "-H", "--human", default=True, type=bool, help="Print sizes and dates in human readable format"
)
@click.option("--format", "fmt", help="Pretty-print images using a Go template")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.pass_context
def history(
    ctx: click.Context, name: str, human: bool, fmt: str | None, no_trunc: bool, quiet: bool
) -> None:
    """Show the history of an image"""
    from dockyard.cli.render import ellipsis, human_size, time_ago
    from dockyard.ops.images import history as image_history

    store = store_from(ctx)
    try:
        rows = image_history(store, name)
    except DockyardError as e:
        raise daemon_error(e) from e
    now = time.time()

    def image_id(i: str) -> str:
        if i == "<missing>" or no_trunc:
            return i
        return i[7:19]

    if quiet and not fmt:
        click.echo("\n".join(image_id(r.id) for r in rows))
        return
    records = []
    for r in rows:
        created_by = r.created_by.replace("\t", " ")
        if not no_trunc:
            created_by = ellipsis(created_by, 45)
        records.append(
            {
                "Comment": r.comment,
                "CreatedAt": _rfc3339_local(r.created_ts),
                "CreatedBy": created_by,
                "CreatedSince": time_ago(r.created_ts, now)
                if human
                else _rfc3339_local(r.created_ts),
                "ID": image_id(r.id),
                "Size": human_size(r.size) if human else str(r.size),
            }
        )
    headers = {
        "ID": "IMAGE",
        "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT",
        "CreatedBy": "CREATED BY",
        "Size": "SIZE",
        "Comment": "COMMENT",
    }
    print_formatted(
        records,
        fmt,
        ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"],
        headers,
        quiet_field="ID" if quiet else None,
    )


def _rfc3339_local(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@click.group("image", cls=click.Group)
def image() -> None:
    """Manage images"""


@image.command("prune")
@click.option(
    "-a",
    "--all",
    "all_images",
    is_flag=True,
    help="Remove all unused images, not just dangling ones",
)
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help="Provide filter values")
@click.pass_context
def prune(ctx: click.Context, all_images: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove unused images"""
    from dockyard.cli.render import human_size
    from dockyard.ops.system import prune_images

    if not force:
        warning = (
            "WARNING! This will remove all images without at least one container "
            "associated to them."
            if all_images
            else "WARNING! This will remove all dangling images."
        )
        click.echo(warning)
        if not click.confirm(
            "Are you sure you want to continue?",
            default=False,
            show_default=False,
            prompt_suffix=" [y/N] ",
        ):
            return
    lines, reclaimed = prune_images(store_from(ctx), all_images)
    if lines:
        click.echo("Deleted Images:")
        for line in lines:
            kind, _, rest = line.partition(": ")
            click.echo(f"{kind.lower()}: {rest}")
        click.echo("")
    click.echo(f"Total reclaimed space: {human_size(reclaimed)}")


@image.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", help="Format output using a custom template")
@click.pass_context
def image_inspect(ctx: click.Context, names: tuple[str, ...], fmt: str | None) -> None:
    """Display detailed information on one or more images"""
    _inspect(ctx, names, fmt, "image", generic=False)


def _alias(group: click.Group, name: str, cmd: click.Command) -> None:
    group.add_command(cmd, name)


_alias(image, "ls", images)
_alias(image, "list", images)
_alias(image, "rm", rmi)
_alias(image, "remove", rmi)
_alias(image, "tag", tag)
_alias(image, "history", history)
_alias(image, "import", import_)


def _lazy_archive() -> None:
    from dockyard.cli.archive_cmds import load, save

    _alias(image, "save", save)
    _alias(image, "load", load)


_lazy_archive()

