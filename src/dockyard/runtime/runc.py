"""A thin typed wrapper around the `runc` command line.

Every call runs ``runc --root <state_root> --log <tmp> --log-format json ...`` and,
when runc fails, raises a `RuncError` carrying runc's own message (the last
``"level":"error"`` entry of its JSON log, else its stderr).

A failed ``create``/``start`` raises `RuntimeStartError` whose ``exit_code`` is
what Docker's CLI exits with (``docker run`` of a bad command):

    "executable file not found" / "no such file or directory"  -> 127
    "permission denied"                                       -> 126
    anything else                                             -> 125

runc 1.1 looks the executable up during ``create`` (before the exec fifo is
opened), so a missing or non-executable program fails ``create``, not ``start``.
"""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dockyard.errors import DockyardError

DEFAULT_RUNC = "/usr/sbin/runc"
DEFAULT_STATE_ROOT = Path("/run/dockyard/runc")  # never runc's own /run/runc

__all__ = [
    "DEFAULT_RUNC",
    "DEFAULT_STATE_ROOT",
    "Runc",
    "RuncError",
    "RuntimeStartError",
    "exec_error",
    "start_exit_code",
]


class RuncError(DockyardError):
    """runc refused or failed; the message is runc's own."""

    code = "RUNTIME_ERROR"


class RuntimeStartError(RuncError):
    """The container could not be created or started (``docker run`` exits 125/126/127)."""

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def start_exit_code(message: str) -> int:
    """Docker's rule (daemon/start.go) for the exit status of a failed start."""
    low = message.lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return 127
    if "permission denied" in low:
        return 126
    return 125


def _error_message(log_path: Path, stderr: bytes | None) -> str:
    """runc's last error from its JSON log, else the tail of its stderr."""
    msg = ""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            msg = str(entry.get("msg", "")) or msg
    if not msg and stderr:
        msg = stderr.decode(errors="replace").strip().splitlines()[-1]
    return msg or "runc failed"


def exec_error(log: Path) -> str | None:
    """Why ``runc exec`` could not start the process (from its ``--log``), or None
    when it did start it (then runc's exit status is the process's own)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    if '"level":"error"' not in text and '"level":"fatal"' not in text:
        return None
    return _error_message(log, None)


class Runc:
    """One runc binary and one state root (``runc --root``)."""

    def __init__(self, binary: str = DEFAULT_RUNC, state_root: Path = DEFAULT_STATE_ROOT) -> None:
        self.binary = binary
        self.state_root = Path(state_root)

    def _base(self) -> list[str]:
        return [self.binary, "--root", str(self.state_root)]

    def _run(
        self,
        args: Sequence[str],
        *,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = subprocess.PIPE,
        stderr: int | None = subprocess.PIPE,
        error: type[RuncError] = RuncError,
    ) -> bytes:
        """Run one runc command; return its stdout (b"" when not captured)."""
        self.state_root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".log-", dir=self.state_root)
        os.close(fd)
        log = Path(name)
        try:
            proc = subprocess.run(
                [*self._base(), "--log", str(log), "--log-format", "json", *args],
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                check=False,
            )
            if proc.returncode != 0:
                message = _error_message(log, proc.stderr)
                if error is RuntimeStartError:
                    code = start_exit_code(message)
                    if args[0] == "create":  # as containerd's shim reports it to Docker
                        message = (
                            f"failed to create shim task: OCI runtime create failed: "
                            f"{message}: unknown"
                        )
                    raise RuntimeStartError(message, code)
                raise error(message)
            return proc.stdout or b""
        finally:
            log.unlink(missing_ok=True)

    # -- lifecycle ---------------------------------------------------------------

    def create(
        self,
        container_id: str,
        bundle: Path,
        pid_file: Path,
        *,
        console_socket: Path | None = None,
        stdio: tuple[int, int, int] | None = None,
    ) -> None:
        """``runc create``: the container's init waits on the exec fifo until `start`.

        Without a console socket, runc hands its own stdio (``stdio``, three fds)
        to the container process. runc also prints its error to that stderr: the
        caller should discard what the pipes hold before `start`.
        """
        args = ["create", "--bundle", str(bundle), "--pid-file", str(pid_file)]
        if console_socket is not None:
            args += ["--console-socket", str(console_socket)]
        args.append(container_id)
        if stdio is None:
            self._run(args, error=RuntimeStartError)
        else:
            self._run(
                args, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], error=RuntimeStartError
            )

    def start(self, container_id: str) -> None:
        self._run(["start", container_id], error=RuntimeStartError)

    def state(self, container_id: str) -> dict[str, Any] | None:
        """runc's state JSON (status: created|running|paused|stopped), None if unknown."""
        try:
            out = self._run(["state", container_id])
        except RuncError as e:
            if "does not exist" in e.message:
                return None
            raise
        data = json.loads(out)
        return data if isinstance(data, dict) else None

    def kill(self, container_id: str, signal: int | str = "TERM", *, all: bool = False) -> None:
        args = ["kill"]
        if all:
            args.append("--all")
        args += [container_id, str(signal)]
        self._run(args)

    def delete(self, container_id: str, *, force: bool = False) -> None:
        self._run(["delete", *(["--force"] if force else []), container_id])

    def pause(self, container_id: str) -> None:
        self._run(["pause", container_id])

    def resume(self, container_id: str) -> None:
        self._run(["resume", container_id])

    def ps(self, container_id: str) -> list[int]:
        """Host PIDs of the container's processes."""
        out = self._run(["ps", "--format", "json", container_id])
        data = json.loads(out or b"null")
        return [int(p) for p in data] if isinstance(data, list) else []

    def list(self) -> list[dict[str, Any]]:
        """``runc list --format json`` (runc prints ``null`` when there are none)."""
        out = self._run(["list", "--format", "json"])
        data = json.loads(out or b"null")
        return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []

    def exec_argv(
        self, container_id: str, process_json: Path, *, tty: bool, detach: bool = False,
        log: Path | None = None,
    ) -> builtins.list[str]:  # fmt: skip
        """argv of ``runc exec --process <json>`` for the caller to run in the foreground.
        With ``log``, runc's own messages go there as JSON (see `exec_error`)."""
        base = [*self._base(), "--log", str(log), "--log-format", "json"] if log else self._base()
        args = [*base, "exec", "--process", str(process_json)]
        if tty:
            args.append("--tty")
        if detach:
            args.append("--detach")
        return [*args, container_id]
