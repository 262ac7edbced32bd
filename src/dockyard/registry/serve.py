"""``dockyard registry serve``: the registry on dockyard's own ASGI server (httpd/).

The server sends ``http.response.pathsend`` with sendfile(2), so blobs go from disk
to socket without passing through Python. The embedded default needs no set-up: SQLite metadata and
filesystem blobs under the data directory, no authentication.

A config file (TOML) may set what the flags set, and more::

    addr = "127.0.0.1:5000"
    data = "/var/lib/dockyard-registry"
    workers = 0                 # 0: one per CPU, at most 4
    delete = true               # DELETE of blobs, manifests, tags
    [storage]
    driver = "filesystem"       # options beside it, e.g. root = "/srv/blobs"
    [auth]
    mode = "none"               # none | basic | token (or just: auth = "token")

``auth`` goes as it is to ``tokens.setup_auth``, which gives the access controller,
the ``/token`` and ``/api/`` routes and their middleware. Each server worker
builds its app from the settings passed in the environment (``app_from_env``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from dockyard.errors import InvalidArgument
from dockyard.registry.access import AccessController, AllowAll
from dockyard.registry.db import Database

ENV_SETTINGS = "DOCKYARD_REGISTRY_SETTINGS"
DEFAULT_ADDR = "127.0.0.1:5000"


def default_data_dir() -> Path:
    from dockyard.store.store import data_home

    return data_home("dockyard-registry", "DOCKYARD_REGISTRY_DATA")


@dataclass
class Settings:
    addr: str = DEFAULT_ADDR
    data: str = ""
    workers: int = 0  # 0: auto_workers()
    delete: bool = True
    sendfile: bool = True
    storage: dict[str, Any] = field(default_factory=lambda: {"driver": "filesystem"})
    auth: Any = "none"  # a mode name or a mapping (tokens.AuthConfig)

    @property
    def data_dir(self) -> Path:
        return Path(self.data) if self.data else default_data_dir()


def load_settings(
    config: Path | None = None, *, addr: str | None = None, data: str | None = None,
    workers: int | None = None,
) -> Settings:  # fmt: skip
    """Defaults, then the config file, then the command line flags."""
    settings = Settings()
    if config is not None:
        try:
            doc = tomllib.loads(Path(config).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise InvalidArgument(f"cannot read registry config {config}: {e}") from None
        known = {f for f in Settings.__dataclass_fields__}
        unknown = set(doc) - known
        if unknown:
            raise InvalidArgument(f"unknown registry config keys: {', '.join(sorted(unknown))}")
        for key, value in doc.items():
            setattr(settings, key, value)
    if addr is not None:
        settings.addr = addr
    if data is not None:
        settings.data = data
    if workers is not None:
        settings.workers = workers
    settings.data = str(settings.data_dir)
    return settings


def auto_workers() -> int:
    """One worker process per CPU, at most 4: a worker is one Python process (one
    core at a time), and a busy registry answers many requests at once."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"invalid address {addr!r}: want HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def build_app(settings: Settings) -> Starlette:
    from dockyard.registry.app import DB_FILE, create_app
    from dockyard.registry.storage import make_driver

    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(data_dir / DB_FILE)
    options = dict(settings.storage)
    storage = make_driver(str(options.pop("driver", "filesystem")), data_dir, options)
    access: AccessController = AllowAll()
    routes: Sequence[BaseRoute] = ()
    middleware: Sequence[Middleware] = ()
    if _has_tokens():
        from dockyard.registry.tokens import setup_auth

        auth = setup_auth(settings.auth, data_dir, db)
        access, routes, middleware = auth.controller, auth.routes, auth.middleware
    elif settings.auth not in (None, "none", {"mode": "none"}):
        raise InvalidArgument("authentication is not available in this build")
    return create_app(
        data_dir, access, storage=storage, db=db, routes=routes, middleware=middleware,
        sendfile=settings.sendfile, delete_enabled=settings.delete,
    )  # fmt: skip


def _has_tokens() -> bool:
    """Whether accounts and tokens are part of this build (their /api/ serves even
    without authentication)."""
    return importlib.util.find_spec("dockyard.registry.tokens") is not None


def app_from_env() -> Starlette:
    """The app factory each server worker calls."""
    raw = os.environ.get(ENV_SETTINGS)
    settings = Settings(**json.loads(raw)) if raw else load_settings()
    return build_app(settings)


def serve(settings: Settings, *, log_level: str = "warning", access_log: bool = False) -> None:
    """Run the registry in the foreground until SIGINT/SIGTERM."""
    import logging

    from dockyard.httpd import serve as run_server

    host, port = parse_addr(settings.addr)
    # fail here, once, on a bad data dir or config (this creates the schema); the
    # workers open their own connections, so this one is closed before they fork
    app = build_app(settings)
    app.state.registry.meta.db.conn().close()
    del app
    os.environ[ENV_SETTINGS] = json.dumps(asdict(settings))
    logging.basicConfig(
        level=1 if access_log else getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if access_log:
        logging.getLogger("dockyard.httpd").setLevel(getattr(logging, log_level.upper()))
        logging.getLogger("dockyard.httpd.access").setLevel(logging.INFO)
    try:
        run_server(
            app_from_env, host=host, port=port, access_log=access_log,
            workers=settings.workers if settings.workers > 0 else auto_workers(),
        )  # fmt: skip
    except OSError as e:
        raise InvalidArgument(f"listen tcp {settings.addr}: {e.strerror or e}") from None
