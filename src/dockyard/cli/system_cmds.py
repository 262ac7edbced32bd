"""system check / df / prune, and version."""

from __future__ import annotations

import click

from dockyard.cli.errors import fail
from dockyard.cli.output import store_from


@click.group("system")
def system() -> None:
    """Manage dockyard"""


@system.command("check")
@click.option("--repair", is_flag=True, help="Remove what is broken or unreachable")
@click.pass_context
def check(ctx: click.Context, repair: bool) -> None:
    """Verify every blob and record in the store"""
    from dockyard.ops.system import check as check_store

    report = check_store(store_from(ctx), repair=repair)
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    for fixed in report.repaired:
        click.echo(f"repaired: {fixed}")
    click.echo(
        f"checked {report.images_checked} images, {report.blobs_checked} blobs: "
        + ("clean" if report.clean else f"{len(report.problems)} problems")
    )
    if not report.clean and not repair:
        fail("store check found problems; run 'dockyard system check --repair' to fix them")


@system.command("df")
@click.option("-v", "--verbose", is_flag=True, help="Show detailed information on space usage")
@click.option("--format", "fmt", help="Pretty-print using a Go template")
@click.pass_context
def df(ctx: click.Context, verbose: bool, fmt: str | None) -> None:
    """Show dockyard disk usage"""
    from dockyard.cli.output import print_formatted
    from dockyard.cli.render import human_size
    from dockyard.ops.system import disk_usage

    usage = disk_usage(store_from(ctx))
    pct = f" ({usage.reclaimable * 100 // usage.size}%)" if usage.size else ""
    rows = [
        {
            "Type": "Images",
            "TotalCount": str(usage.images),
            "Active": str(usage.active),
            "Size": human_size(usage.size),
            "Reclaimable": human_size(usage.reclaimable) + pct,
        },
        {"Type": "Containers", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"},
        {
            "Type": "Local Volumes",
            "TotalCount": "0",
            "Active": "0",
            "Size": "0B",
            "Reclaimable": "0B",
        },
        {
            "Type": "Build Cache",
            "TotalCount": "0",
            "Active": "0",
            "Size": "0B",
            "Reclaimable": "0B",
        },
    ]
    headers = {
        "Type": "TYPE",
        "TotalCount": "TOTAL",
        "Active": "ACTIVE",
        "Size": "SIZE",
        "Reclaimable": "RECLAIMABLE",
    }
    print_formatted(rows, fmt, ["Type", "TotalCount", "Active", "Size", "Reclaimable"], headers)


@system.command("prune")
@click.option("-a", "--all", "all_images", is_flag=True, help="Remove all unused images")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.pass_context
def prune(ctx: click.Context, all_images: bool, force: bool) -> None:
    """Remove unused data"""
    from dockyard.cli.image_cmds import prune as image_prune

    ctx.invoke(image_prune, all_images=all_images, force=force, filters=())


@click.command("version")
def version() -> None:
    """Show the dockyard version information"""
    import platform

    from dockyard import __version__

    click.echo(f"dockyard version {__version__}")
    click.echo(f" Python:  {platform.python_version()}")
    click.echo(f" OS/Arch: linux/{platform.machine()}")
