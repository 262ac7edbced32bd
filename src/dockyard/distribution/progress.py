"""Progress events of pushes and pulls, in Docker's vocabulary.

An event has an ``id`` (a layer's 12-hex short ID, or "" for a whole-operation
message such as ``Digest: sha256:...``) and a ``status`` (``Preparing``,
``Pushed``, ``Pulling fs layer``, ``Pull complete``...). Byte counts come with
``progress=True`` events (Docker's ``Pushing``/``Downloading`` bars), which a
plain, non-terminal display skips, as Docker does. Reporters are called from
worker threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    id: str = ""
    status: str = ""
    current: int = 0
    total: int = 0
    progress: bool = False


Reporter = Callable[[Event], None]


def ignore(event: Event) -> None:
    """A reporter that drops everything."""


def short_id(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]
