"""save and load."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click

from dockyard.cli.errors import daemon_error, fail
from dockyard.cli.output import store_from
from dockyard.errors import ArchiveError, DockyardError


@click.command("save")
@click.argument("names", nargs=-1, required=True)
@click.option("-o", "--output", help="Write to a file, instead of STDOUT")
@click.pass_context
def save(ctx: click.Context, names: tuple[str, ...], output: str | None) -> None:
    """Save one or more images to a tar archive (streamed to STDOUT by default)"""
    from dockyard.ops.save import save as save_images

    store = store_from(ctx)
    if not output:
        if sys.stdout.isatty():
            fail("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        try:
            save_images(store, list(names), sys.stdout.buffer)
        except DockyardError as e:
            raise daemon_error(e) from e
        return
    dest = Path(output)
    if dest.is_dir():
        fail(f"failed to save image: open {output}: is a directory")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        # The archive appears under its name only once complete (temp + rename). Like
        # docker and podman, save does not fsync it (that doubles its time on this
        # disk); writeback is started as each blob is written instead.
        with open(tmp, "wb") as f:
            save_images(store, list(names), f, writeback=True)
        os.replace(tmp, dest)
    except DockyardError as e:
        raise daemon_error(e) from e
    except OSError as e:
        fail(f"failed to save image: {e}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@click.command("load")
@click.option("-i", "--input", "input_", help="Read from tar archive file, instead of STDIN")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output")
@click.pass_context
def load(ctx: click.Context, input_: str | None, quiet: bool) -> None:
    """Load an image from a tar archive or STDIN"""
    from dockyard.ops.load import load as load_images

    store = store_from(ctx)
    try:
        if input_ is None or input_ == "-":
            if input_ is None and sys.stdin.isatty():
                fail("requested load from stdin, but stdin is empty")
            lines = load_images(store, sys.stdin.buffer)
        else:
            try:
                f = open(input_, "rb")  # noqa: SIM115
            except OSError as e:
                fail(f"open {input_}: {(e.strerror or str(e)).lower()}")
            with f:
                lines = load_images(store, f)
    except ArchiveError as e:
        fail(f"Error processing tar file: {e.message}")
    except DockyardError as e:
        raise daemon_error(e) from e
    if not quiet:
        for line in lines:
            click.echo(line)
