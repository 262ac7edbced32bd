"""Container commands: run, create, start, stop, kill, restart, rm, ps, logs, exec, attach,
wait, pause, unpause, top, port, rename, diff, commit, and the ``container`` group."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

import click

from dockyard.cli.errors import CliError, daemon_error, fail
from dockyard.cli.output import print_formatted, store_from
from dockyard.errors import ContainerNotFound, DockyardError, InvalidReference
from dockyard.ops import container_records as records
from dockyard.ops.container_records import Container
from dockyard.store.store import Store


def _find(store: Store, name: str) -> Container:
    try:
        return records.find_container(store, name)
    except DockyardError as e:
        raise daemon_error(e) from e


def _run_options(**kw: Any) -> Any:
    from dockyard.ops.containers import RunOptions

    return RunOptions(**kw)


def _status_text(container: Container, now: float) -> str:
    from dockyard.cli.render import human_duration
    from dockyard.oci.timefmt import parse_ns

    state = container.state
    if state.get("Running"):
        started = parse_ns(str(state.get("StartedAt") or "")) / 1e9
        text = f"Up {human_duration(max(0.0, now - started))}"
        return text + " (Paused)" if state.get("Paused") else text
    finished = parse_ns(str(state.get("FinishedAt") or "")) / 1e9
    if state.get("Status") == "created" or finished <= 0:
        return "Created"
    return f"Exited ({state.get('ExitCode', 0)}) {human_duration(max(0.0, now - finished))} ago"


RUN_OPTIONS = [
    click.option("--name", help="Assign a name to the container"),
    click.option(
        "-d", "--detach", is_flag=True, help="Run container in background and print container ID"
    ),
    click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached"),
    click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY"),
    click.option(
        "--rm", "auto_remove", is_flag=True, help="Automatically remove the container when it exits"
    ),
    click.option("-e", "--env", multiple=True, help="Set environment variables"),
    click.option("--env-file", multiple=True, help="Read in a file of environment variables"),
    click.option("-w", "--workdir", help="Working directory inside the container"),
    click.option("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])"),
    click.option("-h", "--hostname", help="Container host name"),
    click.option("--entrypoint", help="Overwrite the default ENTRYPOINT of the image"),
    click.option("-v", "--volume", "volumes", multiple=True, help="Bind mount a volume"),
    click.option(
        "-p", "--publish", multiple=True, help="Publish a container's port(s) to the host"
    ),
    click.option("--network", "--net", default="bridge", help="Connect a container to a network"),
    click.option("-l", "--label", "labels", multiple=True, help="Set meta data on a container"),
]


def run_options(f: Any) -> Any:
    for option in reversed(RUN_OPTIONS):
        f = option(f)
    return f


def _create(
    ctx: click.Context, image: str, command: tuple[str, ...], kw: dict[str, Any], attach: bool
) -> Container:
    from dockyard.ops.containers import create
    from dockyard.runtime.ports import parse_publish_all

    see = f"See 'dockyard {ctx.info_name or 'run'} --help'."  # run or create
    try:  # Docker's CLI parses -p itself: its errors are not the daemon's
        parse_publish_all(kw["publish"])
    except DockyardError as e:
        raise CliError(f"dockyard: {_sentence(e.message)}\n{see}", 125) from e
    store = store_from(ctx)
    opts = _run_options(
        name=kw["name"],
        env=list(kw["env"]),
        env_files=list(kw["env_file"]),
        workdir=kw["workdir"],
        user=kw["user"],
        hostname=kw["hostname"],
        entrypoint=kw["entrypoint"],
        cmd=list(command),
        volumes=list(kw["volumes"]),
        publish=list(kw["publish"]),
        network=kw["network"],
        labels=list(kw["labels"]),
        tty=kw["tty"],
        interactive=kw["interactive"],
        attach=attach,
        auto_remove=kw["auto_remove"],
    )
    try:
        return create(store, image, opts)
    except InvalidReference as e:
        raise CliError(f"dockyard: {_sentence(e.message)}\n{see}", 125) from e
    except DockyardError as e:
        if "No such image" in e.message:
            raise CliError(
                f"Unable to find image '{_with_tag(image)}' locally\n"
                f"dockyard: Error response from daemon: {_sentence(e.message)}\n"
                f"{see}",
                125,
            ) from e
        raise CliError(
            f"dockyard: Error response from daemon: {_sentence(e.message)}\n{see}",
            125,
        ) from e


def _sentence(message: str) -> str:
    """Docker's reportError: the message with exactly one trailing period."""
    return message.removesuffix(".") + "."


def _with_tag(image: str) -> str:
    from dockyard.ops.lookup import not_found_name

    return not_found_name(image)


@click.command(
    "run", context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False}
)
@run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, /, image: str, command: tuple[str, ...], **kw: Any) -> None:
    """Run a command in a new container"""
    from dockyard.ops.containers import start

    detach = kw.pop("detach")
    container = _create(ctx, image, command, kw, attach=not detach)
    store = store_from(ctx)
    if detach:
        try:
            start(store, container)
        except DockyardError as e:
            _remove_after_failed_start(store, container)
            raise CliError(
                f"dockyard: Error response from daemon: {_sentence(e.message)}", e.exit_code
            ) from e
        click.echo(container.id)
        return
    code = _start_attached(store, container, stdin=kw["interactive"], tty=kw["tty"])
    sys.exit(code)


def _remove_after_failed_start(store: Store, container: Container) -> None:
    """--rm: a container that could not start goes too (the monitor's exit hook may
    already have removed it, leaving only its exit-code file)."""
    if not container.host_config.get("AutoRemove"):
        return
    from dockyard.ops.containers import remove

    with contextlib.suppress(ContainerNotFound):
        remove(store, records.reload(store, container), force=True)
    shutil.rmtree(container.sock_dir(), ignore_errors=True)


def _start_attached(store: Store, container: Container, *, stdin: bool, tty: bool) -> int:
    from dockyard.ops.containers import start, wait_exit
    from dockyard.runtime.attach import attach

    try:
        start(store, container, run_process=False)
    except DockyardError as e:
        _remove_after_failed_start(store, container)
        raise CliError(
            f"dockyard: Error response from daemon: {_sentence(e.message)}", e.exit_code
        ) from e
    detached = attach(
        container.sock_dir(), stdin=stdin, stdout=True, stderr=True, tty=tty, start=True
    )
    if detached:
        return 0
    code = wait_exit(store, container)
    return 0 if code is None else code


@click.command(
    "create", context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False}
)
@run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def create(ctx: click.Context, /, image: str, command: tuple[str, ...], **kw: Any) -> None:
    """Create a new container"""
    kw.pop("detach")
    container = _create(ctx, image, command, kw, attach=False)
    click.echo(container.id)


@click.command("start")
@click.argument("containers", nargs=-1, required=True)
@click.option(
    "-a", "--attach", "attach_", is_flag=True, help="Attach STDOUT/STDERR and forward signals"
)
@click.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN")
@click.pass_context
def start_cmd(
    ctx: click.Context, containers: tuple[str, ...], attach_: bool, interactive: bool
) -> None:
    """Start one or more stopped containers"""
    from dockyard.ops.containers import start

    store = store_from(ctx)
    if attach_ or interactive:
        if len(containers) > 1:
            fail("you cannot start and attach multiple containers at once")
        c = _find(store, containers[0])
        sys.exit(_start_attached(store, c, stdin=interactive, tty=bool(c.config.get("Tty"))))
    errors = []
    for name in containers:
        try:
            start(store, records.find_container(store, name))
            click.echo(name)
        except DockyardError as e:
            errors.append(f"Error response from daemon: {e.message}")
    if errors:
        errors.append("Error: failed to start containers: " + ", ".join(containers))
        fail("\n".join(errors))


def _each(ctx: click.Context, names: tuple[str, ...], action: Any, verb: str) -> None:
    store = store_from(ctx)
    errors = []
    for name in names:
        try:
            action(store, records.find_container(store, name))
            click.echo(name)
        except DockyardError as e:
            errors.append(f"Error response from daemon: {e.message}")
    if errors:
        fail("\n".join(errors))


@click.command("stop")
@click.argument("containers", nargs=-1, required=True)
@click.option(
    "-t",
    "--time",
    "timeout",
    type=int,
    default=None,
    help="Seconds to wait for stop before killing it",
)
@click.pass_context
def stop(ctx: click.Context, containers: tuple[str, ...], timeout: int | None) -> None:
    """Stop one or more running containers"""
    from dockyard.ops.containers import stop as stop_container

    _each(ctx, containers, lambda s, c: stop_container(s, c, timeout), "stop")


@click.command("restart")
@click.argument("containers", nargs=-1, required=True)
@click.option(
    "-t",
    "--time",
    "timeout",
    type=int,
    default=None,
    help="Seconds to wait for stop before killing the container",
)
@click.pass_context
def restart(ctx: click.Context, containers: tuple[str, ...], timeout: int | None) -> None:
    """Restart one or more containers"""
    from dockyard.ops.containers import start
    from dockyard.ops.containers import stop as stop_container

    def action(store: Store, c: Container) -> None:
        stop_container(store, c, timeout)
        start(store, records.reload(store, c))

    _each(ctx, containers, action, "restart")


@click.command("kill")
@click.argument("containers", nargs=-1, required=True)
@click.option("-s", "--signal", default="KILL", help="Signal to send to the container")
@click.pass_context
def kill(ctx: click.Context, containers: tuple[str, ...], signal: str) -> None:
    """Kill one or more running containers"""
    from dockyard.ops.containers import kill as kill_container

    store = store_from(ctx)
    errors = []
    for name in containers:
        try:
            kill_container(store, records.find_container(store, name), signal)
            click.echo(name)
        except DockyardError as e:
            # Docker's API: a known container that cannot be killed is named in the error
            known = not isinstance(e, ContainerNotFound)
            prefix = f"Cannot kill container: {name}: " if known else ""
            errors.append(f"Error response from daemon: {prefix}{e.message}")
    if errors:
        fail("\n".join(errors))


@click.command("rm")
@click.argument("containers", nargs=-1, required=True)
@click.option(
    "-f", "--force", is_flag=True, help="Force the removal of a running container (uses SIGKILL)"
)
@click.option(
    "-v", "--volumes", is_flag=True, help="Remove anonymous volumes associated with the container"
)
@click.pass_context
def rm(ctx: click.Context, containers: tuple[str, ...], force: bool, volumes: bool) -> None:
    """Remove one or more containers"""
    from dockyard.ops.containers import remove

    _each(ctx, containers, lambda s, c: remove(s, c, force=force), "rm")


@click.command("pause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def pause(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Pause all processes within one or more containers"""
    from dockyard.ops.containers import pause as pause_container

    _each(ctx, containers, pause_container, "pause")


@click.command("unpause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def unpause(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Unpause all processes within one or more containers"""
    from dockyard.ops.containers import unpause as unpause_container

    _each(ctx, containers, unpause_container, "unpause")


@click.command("wait")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def wait(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Block until one or more containers stop, then print their exit codes"""
    from dockyard.ops.containers import wait_exit

    store = store_from(ctx)
    for name in containers:
        code = wait_exit(store, _find(store, name))
        click.echo(str(code if code is not None else 0))


@click.command("rename")
@click.argument("container")
@click.argument("new_name")
@click.pass_context
def rename(ctx: click.Context, container: str, new_name: str) -> None:
    """Rename a container"""
    from dockyard.ops.containers import rename as rename_container

    store = store_from(ctx)
    try:
        rename_container(store, _find(store, container), new_name)
    except DockyardError as e:
        raise daemon_error(e) from e


@click.command("port")
@click.argument("container")
@click.argument("private_port", required=False)
@click.pass_context
def port(ctx: click.Context, container: str, private_port: str | None) -> None:
    """List port mappings or a specific mapping for the container"""
    from dockyard.ops.container_view import current_ports
    from dockyard.runtime.ports import port_lines, port_lookup

    store = store_from(ctx)
    c = _find(store, container)
    ports = current_ports(c)
    try:
        lines = port_lookup(ports, private_port, container) if private_port else port_lines(ports)
    except DockyardError as e:
        fail(e.message)
    for line in lines:
        click.echo(line)


@click.command("diff")
@click.argument("container")
@click.pass_context
def diff(ctx: click.Context, container: str) -> None:
    """Inspect changes to files or directories on a container's filesystem"""
    from dockyard.ops.containers import driver_for

    store = store_from(ctx)
    c = _find(store, container)
    for change in driver_for(store).changes(c.id):
        click.echo(f"{change.kind} {change.path}")


class _PauseFlagCommand(click.Command):
    """``commit``: Docker's Go flags accept ``-p=false`` / ``--pause=false``; click's
    boolean flags take no value, so those spellings become ``--pause``/``--no-pause``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out = []
        for i, arg in enumerate(args):
            if arg == "--":
                out += args[i:]
                break
            name, eq, value = arg.partition("=")
            if eq and name in ("-p", "--pause"):
                truth = {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}
                if value.lower() not in truth:
                    fail(
                        f'invalid argument "{value}" for "{name}" flag: strconv.ParseBool: '
                        f'parsing "{value}": invalid syntax',
                        125,
                    )
                arg = "--pause" if truth[value.lower()] else "--no-pause"
            out.append(arg)
        return super().parse_args(ctx, out)


@click.command("commit", cls=_PauseFlagCommand)
@click.argument("container")
@click.argument("repository", required=False)
@click.option(
    "-a", "--author", default="", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")'
)
@click.option(
    "-c",
    "--change",
    "changes",
    multiple=True,
    help="Apply Dockerfile instruction to the created image",
)
@click.option("-m", "--message", default="", help="Commit message")
@click.option(
    "-p",
    "--pause/--no-pause",
    "pause_",
    default=True,
    help="Pause container during commit (default true)",
)
@click.pass_context
def commit(
    ctx: click.Context,
    container: str,
    repository: str | None,
    author: str,
    changes: tuple[str, ...],
    message: str,
    pause_: bool,
) -> None:
    """Create a new image from a container's changes"""
    from dockyard.ops.commit import commit as commit_container
    from dockyard.reference import parse_with_default_tag

    ref = None
    if repository:
        try:
            ref = parse_with_default_tag(repository)
        except InvalidReference as e:
            fail(e.message)
    store = store_from(ctx)
    c = _find(store, container)
    try:
        image_id = commit_container(
            store, c, tag=ref, author=author, message=message, changes=list(changes), pause=pause_
        )
    except DockyardError as e:
        raise daemon_error(e) from e
    click.echo(image_id)


@click.command("ps")
@click.option(
    "-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)"
)
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided"
)
@click.option("--format", "fmt", help="Pretty-print containers using a Go template")
@click.option("-n", "--last", type=int, default=-1, help="Show n last created containers")
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes")
@click.pass_context
def ps(
    ctx: click.Context,
    all_: bool,
    quiet: bool,
    no_trunc: bool,
    filters: tuple[str, ...],
    fmt: str | None,
    last: int,
    latest: bool,
    size: bool,
) -> None:
    """List containers"""
    from dockyard.cli.gotemplate import go_quote
    from dockyard.cli.render import docker_time, ellipsis, time_ago
    from dockyard.oci.timefmt import parse_ns
    from dockyard.ops.container_view import current_ports
    from dockyard.ops.containers import reconcile
    from dockyard.runtime.ports import api_ports, display_ports

    store = store_from(ctx)
    containers = [reconcile(store, c) for c in records.all_containers(store)]
    containers.sort(key=lambda c: parse_ns(c.created), reverse=True)
    if latest:
        last = 1
    if last > 0:
        all_ = True
        containers = containers[:last]
    wanted = _ps_filters(filters)
    rows = []
    now = time.time()
    for c in containers:
        if not all_ and not c.running and "status" not in wanted:
            continue
        if not _ps_match(c, wanted):
            continue
        cmd_args = list(c.config.get("Entrypoint") or []) + list(c.config.get("Cmd") or [])
        command = " ".join(cmd_args)
        if not no_trunc:
            command = ellipsis(command, 20)
        created = parse_ns(c.created) / 1e9
        rows.append(
            {
                "Command": go_quote(command),
                "CreatedAt": docker_time(created),
                "ID": c.id if no_trunc else c.short_id,
                "Image": c.image_name,
                "Labels": ",".join(
                    f"{k}={v}" for k, v in sorted((c.config.get("Labels") or {}).items())
                ),
                "LocalVolumes": "0",
                "Mounts": "",
                "Names": c.name,
                "Networks": "bridge"
                if c.host_config.get("NetworkMode") in ("default", "bridge")
                else str(c.host_config.get("NetworkMode")),
                "Ports": display_ports(api_ports(current_ports(c))),
                "RunningFor": time_ago(created, now).removesuffix(" ago") + " ago",
                "Size": "0B",
                "State": str(c.state.get("Status")),
                "Status": _status_text(c, now),
            }
        )
    headers = {
        "ID": "CONTAINER ID",
        "Image": "IMAGE",
        "Command": "COMMAND",
        "RunningFor": "CREATED",
        "Status": "STATUS",
        "Ports": "PORTS",
        "Names": "NAMES",
        "CreatedAt": "CREATED AT",
        "Labels": "LABELS",
        "Mounts": "MOUNTS",
        "Networks": "NETWORKS",
        "Size": "SIZE",
        "State": "STATE",
        "LocalVolumes": "LOCAL VOLUMES",
    }
    print_formatted(
        rows,
        fmt,
        ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"],
        headers,
        quiet_field="ID" if quiet else None,
    )


def _ps_filters(filters: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in filters:
        key, eq, value = f.partition("=")
        if not eq:
            fail("Error response from daemon: bad format of filter (expected name=value)")
        if key not in ("id", "name", "status", "label", "ancestor", "exited"):
            fail(f"Error response from daemon: invalid filter '{key}'")
        out.setdefault(key, []).append(value)
    return out


def _ps_match(c: Container, wanted: dict[str, list[str]]) -> bool:
    if "id" in wanted and not any(c.id.startswith(v) for v in wanted["id"]):
        return False
    if "name" in wanted and not any(v in c.name for v in wanted["name"]):
        return False
    if "status" in wanted and c.state.get("Status") not in wanted["status"]:
        return False
    if "exited" in wanted and (c.running or str(c.state.get("ExitCode")) not in wanted["exited"]):
        return False
    if "ancestor" in wanted and not any(
        v in (c.image_name, c.image, c.image[7:19]) for v in wanted["ancestor"]
    ):
        return False
    labels = c.config.get("Labels") or {}
    for want in wanted.get("label", []):
        key, eq, value = want.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


@click.command("logs")
@click.argument("container")
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option(
    "-n",
    "--tail",
    default="all",
    help='Number of lines to show from the end of the logs (default "all")',
)
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.option("--since", default=None, help="Show logs since timestamp or relative (e.g. 42m)")
@click.option("--until", default=None, help="Show logs before a timestamp or relative")
@click.pass_context
def logs(
    ctx: click.Context,
    container: str,
    follow: bool,
    tail: str,
    timestamps: bool,
    since: str | None,
    until: str | None,
) -> None:
    """Fetch the logs of a container"""
    from dockyard.runtime.logs import read_logs

    store = store_from(ctx)
    c = _find(store, container)
    path = c.dir(store) / f"{c.id}-json.log"
    n = None if tail in ("all", "") else int(tail)

    def stopped() -> bool:
        try:
            return not records.reload(store, c).running
        except DockyardError:
            return True

    out = sys.stdout.buffer
    err = sys.stderr.buffer
    for stream, data in read_logs(
        path,
        follow=follow,
        tail=n,
        timestamps=timestamps,
        since=_when(since),
        until=_when(until),
        stdout=True,
        stderr=True,
        stop_when=stopped,
    ):
        target = err if stream == "stderr" else out
        target.write(data)
        target.flush()


def _when(value: str | None) -> float | None:
    if not value:
        return None
    from dockyard.oci.timefmt import parse_ns

    units = {"s": 1, "m": 60, "h": 3600}
    if value[-1] in units and value[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(value[:-1]) * units[value[-1]]
    if value.replace(".", "", 1).isdigit():
        return float(value)
    ns = parse_ns(value)
    if not ns:
        fail(f'Error: invalid value for "since": {value}')
    return ns / 1e9


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Detached mode: run command in the background")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY")
@click.option("-e", "--env", multiple=True, help="Set environment variables")
@click.option("-w", "--workdir", help="Working directory inside the container")
@click.option("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(
    ctx: click.Context,
    detach: bool,
    interactive: bool,
    tty: bool,
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    container: str,
    command: tuple[str, ...],
) -> None:
    """Execute a command in a running container"""
    from dockyard.ops.containers import RUNC, reconcile
    from dockyard.runtime.runc import Runc, exec_error
    from dockyard.runtime.spec import resolve_user

    store = store_from(ctx)
    c = reconcile(store, _find(store, container))
    if not c.running:
        fail(f"Error response from daemon: Container {c.id} is not running")
    if c.state.get("Paused"):
        fail(
            f"Error response from daemon: Container {c.id} is paused, unpause the container "
            "before exec"
        )
    bundle = json.loads((c.dir(store) / "bundle" / "config.json").read_text())
    process = dict(bundle["process"])
    env_list = list(process.get("env") or [])
    for item in env:
        key = item.split("=", 1)[0]
        env_list = [e for e in env_list if e.split("=", 1)[0] != key] + [item]
    process["env"] = env_list
    process["args"] = list(command)
    process["terminal"] = tty
    if workdir:
        process["cwd"] = workdir
    if user is not None:
        uid, gid, extra = resolve_user(__import__("pathlib").Path(bundle["root"]["path"]), user)
        process["user"] = {"uid": uid, "gid": gid, **({"additionalGids": extra} if extra else {})}
    exec_dir = c.dir(store) / "exec"
    exec_dir.mkdir(exist_ok=True)
    process_file = exec_dir / f"process-{os.getpid()}.json"
    process_file.write_text(json.dumps(process))
    runc = Runc(RUNC, store.root / "runc")
    log = exec_dir / f"runc-{os.getpid()}.log"
    argv = runc.exec_argv(c.id, process_file, tty=tty, detach=detach, log=log)
    try:
        stdin = None if (interactive or tty) else subprocess.DEVNULL
        result = subprocess.run(argv, stdin=stdin)
        failed = exec_error(log) if result.returncode == 255 else None
    finally:
        process_file.unlink(missing_ok=True)
        log.unlink(missing_ok=True)
    if failed is not None:  # Docker: the process never ran -> 126
        fail(f"OCI runtime exec failed: {failed}: unknown", 126)
    code = result.returncode
    if code != 0 and not detach:
        sys.exit(code)


@click.command("attach")
@click.argument("container")
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN")
@click.option(
    "--sig-proxy", default=True, type=bool, help="Proxy all received signals to the process"
)
@click.option(
    "--detach-keys",
    default="ctrl-p,ctrl-q",
    help="Override the key sequence for detaching a container",
)
@click.pass_context
def attach_cmd(
    ctx: click.Context, container: str, no_stdin: bool, sig_proxy: bool, detach_keys: str
) -> None:
    """Attach local standard input, output, and error streams to a running container"""
    from dockyard.ops.containers import reconcile, wait_exit
    from dockyard.runtime.attach import attach

    store = store_from(ctx)
    c = reconcile(store, _find(store, container))
    if not c.running:
        fail("You cannot attach to a stopped container, start it first")
    stdin = not no_stdin and bool(c.config.get("OpenStdin"))
    detached = attach(
        c.sock_dir(),
        stdin=stdin,
        stdout=True,
        stderr=True,
        tty=bool(c.config.get("Tty")),
        detach_keys=detach_keys,
    )
    if detached:
        return
    code = wait_exit(store, c)
    sys.exit(code or 0)


@click.command("top")
@click.argument("container")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def top(ctx: click.Context, container: str, ps_args: tuple[str, ...]) -> None:
    """Display the running processes of a container"""
    from dockyard.cli.render import Table
    from dockyard.ops.containers import _runc, reconcile

    store = store_from(ctx)
    c = reconcile(store, _find(store, container))
    if not c.running:
        fail(f"Error response from daemon: Container {c.id} is not running")
    pids = set(_runc(store).ps(c.id))
    args = list(ps_args) or ["-ef"]
    out = subprocess.run(["ps", *args], capture_output=True, text=True, check=False).stdout
    lines = out.splitlines()
    if not lines:
        return
    header = lines[0].split()
    try:
        pid_col = header.index("PID")
    except ValueError:
        fail("Error response from daemon: Couldn't find PID field in ps output")
    table = Table()
    table.row(*header)
    for line in lines[1:]:
        fields = line.split(None, len(header) - 1)
        if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
            table.row(*fields)
    sys.stdout.write(table.render())


def inspect_containers(store: Store, names: list[str]) -> tuple[list[Any], list[str]]:
    """Inspect JSON for each name that is a container; the names that are not."""
    from dockyard.ops.container_view import inspect_container
    from dockyard.ops.containers import driver_for, reconcile

    found = []
    missing = []
    driver = None
    for name in names:
        try:
            c = reconcile(store, records.find_container(store, name))
        except DockyardError:
            missing.append(name)
            continue
        if driver is None:
            driver = driver_for(store)
        try:
            graph = driver.graph_data(c.id, c.chain or None)
        except Exception:  # a driver that cannot describe a removed layer
            graph = {}
        found.append((name, inspect_container(store, c, graph)))
    return found, missing


@click.group("container")
def container_group() -> None:
    """Manage containers"""


for _name, _cmd in [
    ("run", run),
    ("create", create),
    ("start", start_cmd),
    ("stop", stop),
    ("restart", restart),
    ("kill", kill),
    ("rm", rm),
    ("remove", rm),
    ("ls", ps),
    ("list", ps),
    ("ps", ps),
    ("logs", logs),
    ("exec", exec_),
    ("attach", attach_cmd),
    ("wait", wait),
    ("pause", pause),
    ("unpause", unpause),
    ("top", top),
    ("port", port),
    ("rename", rename),
    ("diff", diff),
    ("commit", commit),
]:
    container_group.add_command(_cmd, _name)


@container_group.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", help="Format output using a custom template")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes")
@click.pass_context
def container_inspect(
    ctx: click.Context, names: tuple[str, ...], fmt: str | None, size: bool
) -> None:
    """Display detailed information on one or more containers"""
    from dockyard.cli.image_cmds import _inspect

    _inspect(ctx, names, fmt, "container", generic=False)

