"""Shared CLI plumbing: the store for this invocation and Docker's --format handling."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dockyard.store.store import Store


def store_from(ctx: click.Context) -> Store:
    obj = ctx.find_root().obj or {}
    root = obj.get("root")
    return Store(Path(root) if root else None, obj.get("storage_driver"))


def print_formatted(
    records: list[dict[str, str]],
    fmt: str | None,
    columns: list[str],
    headers: dict[str, str],
    quiet_field: str | None = None,
) -> None:
    """Print rows as Docker's formatter does: the default table, ``table TEMPLATE``,
    ``json``, or a raw Go template per row."""
    from dockyard.cli.render import Table

    out = sys.stdout
    if quiet_field and not fmt:
        out.write("".join(r[quiet_field] + "\n" for r in records))
        return
    if fmt == "json":
        fmt = "{{json .}}"
    if fmt and fmt != "table":
        from dockyard.cli.gotemplate import header_for, is_table, render

        tabular, template = is_table(fmt)
        if not tabular:
            out.write("".join(render(template, r) + "\n" for r in records))
            return
        custom = Table()
        custom.write(header_for(template, headers) + "\n")
        for r in records:
            custom.write(render(template, r) + "\n")
        out.write(custom.render())
        return
    table = Table()
    table.row(*(headers[c] for c in columns))
    for r in records:
        table.row(*(r[c] for c in columns))
    out.write(table.render())

