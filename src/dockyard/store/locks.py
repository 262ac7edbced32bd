"""File locks that coordinate several dockyard processes on one store.

``lock``     exclusive, held briefly while records change (and index.json is rewritten).
``gc.lock``  shared by every operation that writes blobs before recording them;
             exclusive (non-blocking for rmi, blocking for prune/repair) to delete blobs,
             so a sweep never removes a blob that a running load is about to reference.
Staging dirs under ``tmp/`` each hold their own lock: a staging dir whose lock
can be taken belongs to a dead process and is garbage.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def flocked(path: Path, exclusive: bool = True) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def try_flocked(path: Path) -> Iterator[bool]:
    """Take an exclusive lock if it is free; yields whether it was taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
