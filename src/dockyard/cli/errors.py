"""Turn library errors into Docker's error lines and exit codes."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from dockyard.errors import DockyardError


class CliError(DockyardError):
    """An error whose line is printed exactly as given."""

    def __init__(self, line: str, exit_code: int = 1) -> None:
        super().__init__(line)
        self.exit_code = exit_code


def fail(line: str, exit_code: int = 1) -> NoReturn:
    raise CliError(line, exit_code)


def daemon_error(err: DockyardError) -> CliError:
    """Docker prints errors that come from the engine as 'Error response from daemon: ...'."""
    return CliError(f"Error response from daemon: {err.message}", err.exit_code)


def run(cli: click.Group, argv: list[str]) -> int:
    try:
        cli.main(args=argv, prog_name="dockyard", standalone_mode=False)
    except CliError as e:
        sys.stdout.flush()
        print(e.message, file=sys.stderr)
        sys.exit(e.exit_code)
    except DockyardError as e:
        sys.stdout.flush()
        print(f"Error response from daemon: {e.message}", file=sys.stderr)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        print("Aborted!", file=sys.stderr)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(125 if e.exit_code == 2 else e.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(1)
    return 0
