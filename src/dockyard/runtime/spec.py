"""The OCI runtime spec (config.json) for a container, as Docker's defaults make it."""

from __future__ import annotations

import os
import posixpath
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import DockyardError

DEFAULT_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
MASKED_PATHS = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class BindMount:
    source: str
    destination: str
    readonly: bool = False


@dataclass
class ProcessSpec:
    args: list[str]
    env: list[str]
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    tty: bool = False


class UserNotFound(DockyardError):
    exit_code = 126


def _in_root(root: Path, path: str) -> Path:
    """Resolve ``path`` inside ``root`` with chroot semantics (symlinks cannot leave it)."""
    parts = [p for p in path.split("/") if p and p != "."]
    current: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if current:
                current.pop()
            continue
        candidate = root.joinpath(*current, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise DockyardError(f"too many levels of symbolic links resolving {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        current.append(part)
    return root.joinpath(*current)


def _read_db(root: Path, path: str) -> list[list[str]]:
    try:
        text = _in_root(root, path).read_text(errors="replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(root: Path, user: str) -> tuple[int, int, list[int]]:
    """``-u`` / image USER (``name``, ``uid``, ``name:group``, ``uid:gid``) to numbers,
    looked up in the container's /etc/passwd and /etc/group as Docker does."""
    if not user:
        user = "0"
    name, _, group = user.partition(":")
    passwd = _read_db(root, "/etc/passwd")
    groups = _read_db(root, "/etc/group")
    uid: int | None = None
    gid: int | None = None
    username = name
    for entry in passwd:
        if len(entry) >= 4 and (entry[0] == name or entry[2] == name):
            uid, gid, username = int(entry[2]), int(entry[3]), entry[0]
            break
    if uid is None:
        if not name.isdigit():
            raise UserNotFound(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(name), 0
    if group:
        found = None
        for entry in groups:
            if len(entry) >= 3 and (entry[0] == group or entry[2] == group):
                found = int(entry[2])
                break
        if found is None:
            if not group.isdigit():
                raise UserNotFound(
                    f"unable to find group {group}: no matching entries in group file"
                )
            found = int(group)
        gid = found
    extra = sorted(
        {
            int(entry[2])
            for entry in groups
            if len(entry) >= 4 and username in entry[3].split(",") and entry[2].isdigit()
        }
        - {gid}
    )
    return uid, gid or 0, extra


def nofile_limit() -> int:
    """Docker asks for 1048576 open files; never more than this host allows."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1048576 if hard == resource.RLIM_INFINITY else min(1048576, hard)


def runtime_spec(
    *,
    process: ProcessSpec,
    rootfs: Path,
    hostname: str,
    netns: str | None,
    etc_files: dict[str, str],
    binds: list[BindMount],
    cgroups_path: str,
    readonly_rootfs: bool = False,
) -> dict[str, Any]:
    """An OCI runtime config.json with Docker's default mounts, capabilities and masks."""
    limit = nofile_limit()
    namespaces: list[dict[str, str]] = [
        {"type": "mount"},
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
    ]
    if netns is not None:
        namespaces.append({"type": "network", "path": netns})
    mounts: list[dict[str, Any]] = [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["ro", "nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"],
        },
    ]
    for dest, source in sorted(etc_files.items()):
        mounts.append(
            {
                "destination": dest,
                "type": "bind",
                "source": source,
                "options": ["rbind", "rprivate"],
            }
        )
    for bind in binds:
        options = ["rbind", "rprivate"] + (["ro"] if bind.readonly else [])
        mounts.append(
            {
                "destination": posixpath.normpath(bind.destination),
                "type": "bind",
                "source": bind.source,
                "options": options,
            }
        )
    env = list(process.env)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    if process.tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": process.tty,
            "user": {
                "uid": process.uid,
                "gid": process.gid,
                **({"additionalGids": process.additional_gids} if process.additional_gids else {}),
            },
            "args": process.args,
            "env": env,
            "cwd": process.cwd or "/",
            "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": limit, "soft": limit}],
            "noNewPrivileges": False,
            "oomScoreAdj": 0,
        },
        "root": {"path": str(rootfs), "readonly": readonly_rootfs},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": namespaces,
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
