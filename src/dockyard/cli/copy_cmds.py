"""``copy SRC DST``: skopeo's copy between transports (flags map onto ``ops.copy``)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import click

from dockyard.cli.errors import fail
from dockyard.cli.output import store_from
from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from dockyard.distribution.credentials import AuthEntry


def _creds(value: str | None, flag: str) -> AuthEntry | None:
    """``USER[:PASS]`` (prompted for when missing) as an AuthEntry."""
    from dockyard.distribution.credentials import AuthEntry

    if value is None:
        return None
    user, colon, password = value.partition(":")
    if not user:
        fail(f"{flag}: a username is required (USER[:PASS])")
    if not colon:
        password = click.prompt(f"Password for {user}", hide_input=True, err=True)
    return AuthEntry(user, password)


@click.command("copy")
@click.argument("source")
@click.argument("destination")
@click.option("--src-creds", metavar="USER[:PASS]", help="Credentials for the source registry")
@click.option("--dest-creds", metavar="USER[:PASS]", help="Credentials for the target registry")
@click.option(
    "--src-tls-verify",
    type=click.BOOL,
    default=None,
    help="Require HTTPS and verify certificates for the source registry "
    "(default: https, plain http allowed for insecure and loopback registries)",
)
@click.option(
    "--dest-tls-verify",
    type=click.BOOL,
    default=None,
    help="Require HTTPS and verify certificates for the destination registry",
)
@click.option(
    "--dest-compress-format",
    type=click.Choice(["gzip", "zstd"]),
    default="gzip",
    show_default=True,
    help="Layer compression for a docker:// destination",
)
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help="Image to take from an index")
@click.option("--override-os", metavar="OS", help="Use OS instead of this host's, for an index")
@click.option("--override-arch", metavar="ARCH", help="Use ARCH instead of this host's")
@click.option("--override-variant", metavar="VARIANT", help="Use VARIANT for an index")
@click.option("-q", "--quiet", is_flag=True, help="Suppress output information when copying")
@click.pass_context
def copy(
    ctx: click.Context,
    source: str,
    destination: str,
    src_creds: str | None,
    dest_creds: str | None,
    src_tls_verify: bool | None,
    dest_tls_verify: bool | None,
    dest_compress_format: str,
    platform: str | None,
    override_os: str | None,
    override_arch: str | None,
    override_variant: str | None,
    quiet: bool,
) -> None:
    """Copy an image from SOURCE to DESTINATION, each TRANSPORT:REFERENCE:

    \b
      docker://HOST/NAME[:TAG|@DIGEST]   a registry
      docker-archive:PATH[:NAME[:TAG]]   a docker save archive
      oci-archive:PATH[:REF]             a tar of an OCI image layout
      oci:DIR[:REF]                      an OCI image layout directory
      dockyard:NAME[:TAG]                the local store (--root)
    """
    from dockyard.ops.copy import CopyError, CopyOptions, Side
    from dockyard.ops.copy import copy as copy_image
    from dockyard.transports.names import parse_image_name

    try:
        src = parse_image_name(source)
    except DockyardError as e:
        fail(f"Invalid source name {source}: {e.message}")
    try:
        dst = parse_image_name(destination, destination=True)
    except DockyardError as e:
        fail(f"Invalid destination name {destination}: {e.message}")
    overrides = override_os or override_arch or override_variant
    if platform and overrides:
        fail("--platform and --override-os/--override-arch/--override-variant are exclusive")
    if overrides:
        from dockyard.oci.config import host_architecture

        parts = [override_os or "linux", override_arch or host_architecture()]
        platform = "/".join([*parts, override_variant] if override_variant else parts)
    options = CopyOptions(
        src=Side(_creds(src_creds, "--src-creds"), src_tls_verify),
        dest=Side(_creds(dest_creds, "--dest-creds"), dest_tls_verify),
        compression=dest_compress_format,
        platform=platform,
    )
    lock = threading.Lock()

    def say(line: str) -> None:
        if not quiet:
            with lock:
                click.echo(line)

    store = store_from(ctx)
    try:
        copy_image(store, src, dst, options, say)
    except CopyError as e:
        if e.stage == "source":
            fail(f"initializing source {source}: {e.message}")
        fail(f"writing to destination {destination}: {e.message}")
    except DockyardError as e:
        fail(e.message)
