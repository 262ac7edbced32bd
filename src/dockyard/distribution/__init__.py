"""The registry client: talk to registries that speak the distribution API.

    endpoints     where a registry name is reached (https; http for insecure hosts
                  and loopback; docker.io -> registry-1.docker.io; mirrors)
    credentials   Docker's ~/.docker/config.json ($DOCKER_CONFIG), credential helpers
    auth          the httpx auth flow: anonymous, basic, bearer tokens per scope
    client        Registry: the API's verbs (manifests, blobs with Range, uploads,
                  mount, tags, catalog) and login()
    compress      deterministic parallel gzip / zstd for pushed layers
    push          Pusher: skip / mount / compress / resumable chunked upload
    pull          resolve (indexes by platform), ResumableBlob (partial files + Range)
    search        /v1/search, or the catalog filtered by the term
    progress      events in Docker's words (Preparing, Pushed, Pull complete, ...)
    errors        RegistryError, Unauthorized, TransportError, ...

The store-facing verbs are ``dockyard.ops.push`` and ``dockyard.ops.pull``.
"""

import sys as _sys
import types as _types

# httpx imports its command line (httpx._main, which loads rich and pygments:
# ~0.2 s) whenever those are installed. dockyard never runs httpx's CLI, so a
# stand-in keeps `dockyard pull` quick to start.
if "httpx" not in _sys.modules and "httpx._main" not in _sys.modules:
    _stub = _types.ModuleType("httpx._main")

    def _no_cli(*args: object, **kwargs: object) -> None:
        raise RuntimeError("httpx's command line is not loaded in dockyard")

    _stub.main = _no_cli  # type: ignore[attr-defined]
    _sys.modules["httpx._main"] = _stub
