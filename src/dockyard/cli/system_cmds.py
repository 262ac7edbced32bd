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


@click.command("info")
@click.option("-f", "--format", "fmt", help="Format the output using the given Go template")
@click.pass_context
def info(ctx: click.Context, fmt: str | None) -> None:
    """Display system-wide information"""
    import json
    import os
    import platform
    import subprocess

    from dockyard import __version__
    from dockyard.ops import container_records
    from dockyard.ops.containers import RUNC, driver_for

    store = store_from(ctx)
    containers = container_records.all_containers(store)
    running = sum(1 for c in containers if c.state.get("Running") and not c.state.get("Paused"))
    paused = sum(1 for c in containers if c.state.get("Paused"))
    images = store.conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    driver = driver_for(store)
    runc_version = ""
    try:
        out = subprocess.run([RUNC, "--version"], capture_output=True, text=True, check=False)
        runc_version = out.stdout.split("\n")[0].split()[-1]
    except OSError:
        pass
    os_name = "linux"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cgroup_version = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
    data = {
        "Containers": len(containers),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": len(containers) - running - paused,
        "Images": images,
        "Driver": driver.name,
        "DriverStatus": [list(kv) for kv in driver.status()],
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version,
        "KernelVersion": platform.release(),
        "OperatingSystem": os_name,
        "OSType": "linux",
        "Architecture": platform.machine(),
        "NCPU": os.cpu_count(),
        "MemTotal": mem,
        "DockerRootDir": str(store.root),
        "ServerVersion": f"dockyard {__version__}",
        "DefaultRuntime": "runc",
        "RuncVersion": runc_version,
    }
    if fmt:
        from dockyard.cli.gotemplate import render

        click.echo(render(fmt, data, escape_html=False) if fmt != "json" else json.dumps(data))
        return
    lines = [
        "Server:",
        f" Containers: {data['Containers']}",
        f"  Running: {running}",
        f"  Paused: {paused}",
        f"  Stopped: {data['ContainersStopped']}",
        f" Images: {images}",
        f" Server Version: {data['ServerVersion']}",
        f" Storage Driver: {driver.name}",
        *(f"  {k}: {v}" for k, v in driver.status()),
        " Logging Driver: json-file",
        " Cgroup Driver: cgroupfs",
        f" Cgroup Version: {cgroup_version}",
        " Runtimes: runc",
        " Default Runtime: runc",
        f" runc version: {runc_version}",
        f" Kernel Version: {data['KernelVersion']}",
        f" Operating System: {os_name}",
        " OSType: linux",
        f" Architecture: {data['Architecture']}",
        f" CPUs: {data['NCPU']}",
        f" Total Memory: {_binary(mem)}",
        f" Name: {platform.node()}",
        f" Docker Root Dir: {store.root}",
    ]
    click.echo("\n".join(lines))


def _binary(n: int) -> str:
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    value = float(n)
    i = 0
    while value >= 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    return f"{value:.4g}{units[i]}"
