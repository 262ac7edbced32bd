"""A fast path for ``dockyard push`` when the registry already has every blob.

Pushing an image again (a CI step, a retag) is all HEADs and one manifest PUT:
a few milliseconds of work behind a Python start-up that loading click and httpx
would triple. ``[--root DIR] push [-q] NAME[:TAG]`` (gzip, stdout not a terminal
unless ``-q``) is answered here with the standard library only, exactly as the
full path (``dockyard.ops.push``) would answer it:

1. the image comes from the tags table; each layer's compressed form is the first
   gzip row the full path would try in ``layer_sources``, and it must have been
   recorded for this very registry and repository;
2. on one keep-alive connection, plain http (only hosts the full path reaches
   over http: loopback and insecure registries): ``HEAD`` each layer blob, then
   the config (pipelined: sent together, as the full path's threads send them at
   once); once every answer is 200, ``PUT`` the manifest
   (``distribution.manifest.image_manifest``, the same bytes) and check the
   ``Docker-Content-Digest`` answer;
3. in one transaction: ``layer_sources`` rows ``seen`` now and ``RepoDigests``
   ``name@digest``, as ``record_sources`` and ``_push_image`` write them;
4. Docker's lines, as ``PlainDisplay`` prints them (or the reference with ``-q``).

Anything else -- a layer with no such row, a blob the registry lacks, a 401, a
redirect, https, a proxy, an odd store, any error -- raises ``Fallback`` before
anything is printed or recorded, and the full command line does the push (it
repeats the HEADs; they are idempotent, and so is a manifest PUT already made).
"""

from __future__ import annotations

import _socket
import fcntl
import os
import sys
import time

from dockyard.distribution.manifest import image_manifest, sha256_hex

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from sqlite3 import Connection as Database

SCHEMA_VERSION = 4  # store.records.SCHEMA_VERSION (tests hold the two together)
USER_AGENT = "dockyard/0.1 (distribution client)"  # distribution.client.USER_AGENT
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MAX_CONCURRENT_UPLOADS = 5  # ops.push: layers past these are reported "Waiting"
DOCKER_HUB_NAMES = ("docker.io", "index.docker.io", "")
PROXY_VARS = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")
CONNECT_TIMEOUT, TIMEOUT = 15.0, 60.0  # distribution.client.Registry's


class Fallback(Exception):
    """Not the simple case: the full command line takes over."""


# -- the command line -------------------------------------------------------------------


def parse_args(args: list[str]) -> tuple[str, bool] | None:
    """``push``'s arguments -> (NAME, quiet), or None when they are not the simple case."""
    if args[:1] != ["push"]:
        return None
    name = None
    quiet = False
    i = 1
    while i < len(args):
        arg = args[i]
        if arg in ("-q", "--quiet"):
            quiet = True
        elif arg == "--compression-format" and i + 1 < len(args) and args[i + 1] == "gzip":
            i += 1
        elif arg in ("--compression-format=gzip", "--disable-content-trust"):
            pass
        elif arg.startswith("-") or name is not None:
            return None
        else:
            name = arg
        i += 1
    return None if name is None else (name, quiet)


# -- references (reference.parse_normalized, for the plain names it accepts) --------------

_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_TAG_FIRST = _LOWER | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_TAG = _TAG_FIRST | frozenset(".-")
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdef")


def _component(c: str) -> bool:
    """``[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`` (reference.py's path component)."""
    if not c or c[0] not in _LOWER or c[-1] not in _LOWER:
        return False
    sep = ""
    for ch in c:
        if ch in _LOWER:
            if sep and sep not in (".", "_", "__") and sep.strip("-"):
                return False
            sep = ""
        elif ch in "._-":
            sep += ch
        else:
            return False
    return True


def _domain(d: str) -> bool:
    """reference.py's domain, lowercase only, no IPv6: ``label(.label)*(:port)?``."""
    name, colon, port = d.partition(":")
    if colon and not (port and set(port) <= _DIGITS):
        return False
    return all(
        part and part[0] in _LOWER and part[-1] in _LOWER and set(part) <= _LOWER | {"-"}
        for part in name.split(".")
    )


def _tag(t: str) -> bool:
    """``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``"""
    return 0 < len(t) <= 128 and t[0] in _TAG_FIRST and set(t) <= _TAG


def normalize(s: str) -> tuple[str, str, str, bool] | None:
    """(domain, path, tag, tag_defaulted) as ``parse_normalized`` (+ ``latest``) would
    give them; None for anything unusual (digests, uppercase, IPv6...): the full path
    knows those, and their errors."""
    if "@" in s or "[" in s or (len(s) == 64 and set(s) <= _HEX):
        return None
    first, slash, rest = s.partition("/")
    if not slash:
        domain, remainder = "docker.io", "library/" + s
    elif first == "index.docker.io":
        domain, remainder = "docker.io", rest
    elif first == "localhost" or "." in first or ":" in first:
        domain, remainder = first, rest
    else:
        domain, remainder = "docker.io", s
    path, colon, tag = remainder.partition(":")
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    if not _domain(domain) or not all(_component(c) for c in path.split("/")):
        return None
    if (colon and not _tag(tag)) or len(domain) + 1 + len(path) > 255:
        return None
    return domain, path, tag or "latest", not colon


# -- where the registry is (distribution.endpoints, for plain-http hosts) -----------------


def _host_only(host: str) -> str:
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_loopback(name: str) -> bool:
    """endpoints.is_loopback, without importing ipaddress for 127.x.y.z and DNS names."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    parts = name.split(".")
    if len(parts) == 4 and all(
        0 < len(p) <= 3 and set(p) <= _DIGITS and (p == "0" or p[0] != "0") for p in parts
    ):
        return parts[0] == "127" and all(int(p) < 256 for p in parts)
    if name[:1] not in _DIGITS and ":" not in name:
        return False  # a DNS name
    import ipaddress

    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _insecure_entries(root: str) -> list[str]:
    """``insecure-registries`` of ROOT/config.json plus $DOCKYARD_INSECURE_REGISTRIES.
    A config.json RegistryConfig.load would refuse is the full path's to report."""
    entries: list[str] = []
    try:
        with open(os.path.join(root, "config.json"), encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = "{}"
    except (OSError, ValueError) as e:
        raise Fallback("config.json") from e
    if text != "{}":
        import json

        try:
            data = json.loads(text)
        except ValueError as e:
            raise Fallback("config.json") from e
        if not isinstance(data, dict):
            raise Fallback("config.json")
        for key in ("insecure-registries", "registry-mirrors"):
            value = data.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise Fallback("config.json")
        entries.extend(data.get("insecure-registries") or [])
    env = os.environ.get("DOCKYARD_INSECURE_REGISTRIES", "")
    entries.extend(h.strip() for h in env.split(",") if h.strip())
    return entries


def plain_http(host: str, root: str) -> bool:
    """Whether the full path may reach ``host`` over plain http (RegistryConfig.is_insecure);
    Fallback for a config.json the full path would refuse."""
    entries = _insecure_entries(root)
    name = _host_only(host)
    if _is_loopback(name):
        return True
    for entry in entries:
        entry = entry.removeprefix("http://").removeprefix("https://").rstrip("/")
        if entry in (host, name):
            return True
        if "/" in entry:
            import ipaddress

            try:
                if ipaddress.ip_address(name) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


# -- the store ----------------------------------------------------------------------------

LAYER_SOURCES = (  # ops.push.layer_sources's query
    "SELECT diff_id, digest, media_type, size, registry, repo FROM layer_sources "
    "WHERE diff_id IN ({marks}) AND registry IN (?, '') ORDER BY registry DESC, seen DESC"
)


class Layer:
    """A layer as the manifest lists it (the ``distribution.manifest.Blob`` protocol)."""

    __slots__ = ("diff_id", "digest", "media_type", "size")

    def __init__(self, diff_id: str, digest: str, size: int) -> None:
        self.diff_id = diff_id
        self.digest = digest
        self.media_type = DOCKER_LAYER_GZIP
        self.size = size


def open_store(db_path: str) -> Database:
    """The store's database, if it is as the full path would leave it (schema current,
    WAL, nothing to recover after a crash); else Fallback."""
    if not os.path.exists(db_path):
        raise Fallback("no store")
    try:  # sqlite3 itself would import datetime for its default adapters
        from _sqlite3 import connect
    except ImportError:  # pragma: no cover
        from sqlite3 import connect
    conn = connect(db_path, timeout=30.0, isolation_level=None)
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            raise Fallback("schema")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            raise Fallback("journal")
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                boot = f.read().strip()
        except OSError:
            boot = ""
        if conn.execute(
            "SELECT 1 FROM unsynced_blobs WHERE boot_id != ? LIMIT 1", (boot,)
        ).fetchone():
            raise Fallback("durability.recover has work")  # the full path does it
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        conn.close()
        raise
    return conn


def plan(
    conn: Database, name: str, tag: str, host: str, repo: str
) -> tuple[str, list[Layer], list[Layer]]:
    """(image ID, the manifest's layers, the distinct layers in order) for name:tag,
    each layer the compressed form the full path would HEAD first."""
    row = conn.execute(
        "SELECT t.image FROM tags t JOIN images i ON i.id = t.image "
        "WHERE t.repo = ? AND t.tag = ?",
        (name, tag),
    ).fetchone()
    if row is None:
        raise Fallback("no such image")  # the full path says so
    image_id = str(row[0])
    diff_ids = [
        str(r[0])
        for r in conn.execute(
            "SELECT diff_id FROM image_layers WHERE image = ? ORDER BY idx", (image_id,)
        )
    ]
    distinct = list(dict.fromkeys(diff_ids))
    if not distinct:
        raise Fallback("no layers")
    marks = ",".join("?" * len(distinct))
    known = conn.execute(
        f"SELECT COUNT(*) FROM layers WHERE diff_id IN ({marks})", distinct
    ).fetchone()[0]
    if known != len(distinct):
        raise Fallback("store is missing a layer")
    first: dict[str, Layer | None] = {}
    for diff_id, digest, media_type, size, reg, src_repo in conn.execute(
        LAYER_SOURCES.format(marks=marks), [*distinct, host]
    ):
        if diff_id in first or not str(media_type).endswith("gzip"):
            continue  # not gzip: Pusher.push_layer skips it
        if reg not in ("", host) or src_repo not in ("", repo):
            continue  # another repository: a mount, not a HEAD
        ok = reg == host and src_repo == repo
        first[diff_id] = Layer(diff_id, str(digest), int(size)) if ok else None
    unique = [first.get(d) for d in distinct]
    if None in unique:
        raise Fallback("no compressed form known in this repository")
    by_id = {layer.diff_id: layer for layer in unique if layer is not None}
    return image_id, [by_id[d] for d in diff_ids], list(by_id.values())


def record(
    conn: Database, root: str, image_id: str, name: str, digest: str,
    layers: list[Layer], host: str, repo: str,
) -> None:  # fmt: skip
    """What ``_push_image`` records after the manifest is in, in one transaction under
    the store's write lock (index.json does not change: no image or tag did)."""
    fd = os.open(os.path.join(root, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = time.time()
            conn.executemany(
                "INSERT OR REPLACE INTO layer_sources"
                "(diff_id, digest, media_type, size, registry, repo, seen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(b.diff_id, b.digest, b.media_type, b.size, host, repo, now) for b in layers],
            )
            if conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone():
                conn.execute(
                    "INSERT OR REPLACE INTO repo_digests(repo, digest, image) VALUES (?, ?, ?)",
                    (name, digest, image_id),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        os.close(fd)


# -- the wire ---------------------------------------------------------------------------


class Connection:
    """HTTP/1.1 on one keep-alive connection, pipelined: ``send`` requests, then
    ``receive`` their answers in order, up to the headers only (``HEAD`` answers have
    no body; the ``PUT`` is the last request, after which the connection is closed).
    A new connection is opened when the server said ``Connection: close``."""

    def __init__(self, host: str) -> None:
        self.host = host
        name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
        self.address = (name, int(port) if port else 80)
        self.sock: _socket.socket | None = None
        self.buffer = b""
        self.closing = False

    def send(self, requests: list[tuple[str, str, bytes, str]]) -> None:
        """(method, path, body, content type) requests, in one write."""
        if self.sock is None or self.closing:
            self.close()
            self.sock = open_socket(self.address)
        data = []
        for method, path, body, content_type in requests:
            head = (
                f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAccept: */*\r\n"
                f"User-Agent: {USER_AGENT}\r\n"
            )
            if method != "HEAD":
                head += f"Content-Length: {len(body)}\r\n"
            if content_type:
                head += f"Content-Type: {content_type}\r\n"
            data += [(head + "\r\n").encode("latin-1"), body]
        self.sock.sendall(b"".join(data))

    def receive(self) -> tuple[int, dict[str, str]]:
        """The status and headers (names lowercased) of the next answer."""
        assert self.sock is not None
        while b"\r\n\r\n" not in self.buffer:
            if self.closing:
                raise Fallback("connection closed")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Fallback("connection closed")
            self.buffer += chunk
            if len(self.buffer) > 1 << 20:
                raise Fallback("headers too long")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if version not in ("HTTP/1.1", "HTTP/1.0") or not (
            len(rest) >= 3 and set(rest[:3]) <= _DIGITS
        ):
            raise Fallback("not HTTP")
        status = int(rest[:3])
        if status < 200:
            raise Fallback("an interim answer")  # nothing asked for one
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if not sep:
                raise Fallback("bad header")
            headers[key.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        if connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive"):
            self.closing = True
        return status, headers

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self.buffer, self.closing = b"", False
        if sock is not None:
            sock.close()


def open_socket(address: tuple[str, int]) -> _socket.socket:
    """socket.create_connection without the socket module (and its enum), and without
    the idna codec (a str host is idna-encoded by getaddrinfo)."""
    name, port = address
    error: OSError = OSError(f"cannot resolve {name}")
    for family, kind, proto, _, sockaddr in _socket.getaddrinfo(
        name.encode("ascii"), port, 0, _socket.SOCK_STREAM
    ):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(sockaddr)
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            sock.settimeout(TIMEOUT)
            return sock
        except OSError as e:
            sock.close()
            error = e
    raise error


def push_manifest(
    host: str, repo: str, tag: str, blobs: list[str], raw: bytes, media_type: str
) -> str:
    """HEAD every blob (all must be there: the HEADs go out together, as the full path's
    threads send them), then PUT the manifest; its digest."""
    conn = Connection(host)
    try:
        conn.send([("HEAD", f"/v2/{repo}/blobs/{digest}", b"", "") for digest in blobs])
        for digest in blobs:
            status, _ = conn.receive()
            if status != 200:
                raise Fallback(f"HEAD {digest}: {status}")
        conn.send([("PUT", f"/v2/{repo}/manifests/{tag}", raw, media_type)])
        status, headers = conn.receive()
    except OSError as e:
        raise Fallback("network") from e
    finally:
        conn.close()
    if status not in (200, 201, 202):
        raise Fallback(f"PUT manifest: {status}")
    digest = "sha256:" + sha256_hex(raw)
    claimed = headers.get("docker-content-digest", "")
    if claimed and claimed != digest:
        raise Fallback("the registry stored another manifest")  # the full path reports it
    return digest


# -- the command ----------------------------------------------------------------------------


def short_id(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def output(
    name: str, tag: str, defaulted: bool, quiet: bool, distinct: list[str], digest: str,
    size: int,
) -> str:  # fmt: skip
    """What the full command line prints for a push where every layer exists."""
    if quiet:
        return f"{name}:{tag}\n"
    lines = ["Using default tag: latest"] if defaulted else []
    lines.append(f"The push refers to repository [{name}]")
    lines += [f"{short_id(d)}: Preparing" for d in reversed(distinct)]
    waiting = distinct[: max(0, len(distinct) - MAX_CONCURRENT_UPLOADS)]
    lines += [f"{short_id(d)}: Waiting" for d in reversed(waiting)]
    lines += [f"{short_id(d)}: Layer already exists" for d in reversed(distinct)]
    lines.append(f"{tag}: digest: {digest} size: {size}")
    return "\n".join(lines) + "\n"


def push(root: str, name_arg: str, quiet: bool) -> str:
    """Do the push; the text to print. Fallback when it is not the simple case."""
    if not quiet and sys.stdout.isatty():
        raise Fallback("a terminal gets the live display")
    parsed = normalize(name_arg)
    if parsed is None:
        raise Fallback("reference")
    domain, repo, tag, defaulted = parsed
    if domain in DOCKER_HUB_NAMES:
        raise Fallback("Docker Hub: https")
    if any(os.environ.get(v) for v in PROXY_VARS):
        raise Fallback("a proxy")  # httpx would use it
    host = domain  # endpoints.api_host
    if not plain_http(host, root):
        raise Fallback("https")
    name = f"{domain}/{repo}"
    conn = open_store(os.path.join(root, "dockyard.db"))
    try:
        image_id, layers, unique = plan(conn, name, tag, host, repo)
        if not (image_id.startswith("sha256:") and len(image_id) == 71
                and set(image_id[7:]) <= _HEX):
            raise Fallback("image ID")
        with open(os.path.join(root, "blobs", "sha256", image_id[7:]), "rb") as f:
            config = f.read()
        if "sha256:" + sha256_hex(config) != image_id:
            raise Fallback("config blob")  # the full path's business
        raw, media_type = image_manifest(config, layers, "gzip")
        blobs = [layer.digest for layer in reversed(unique)] + [image_id]  # as Pusher HEADs
        digest = push_manifest(host, repo, tag, blobs, raw, media_type)
        record(conn, root, image_id, name, digest, layers, host, repo)
    finally:
        conn.close()
    distinct = [layer.diff_id for layer in unique]
    return output(name, tag, defaulted, quiet, distinct, digest, len(raw))


def try_push(root: str, args: list[str]) -> int | None:
    """Exit status of the fast push, or None: the full command line takes over."""
    parsed = parse_args(args)
    if parsed is None:
        return None
    try:
        text = push(root, *parsed)
    except Fallback:
        return None
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        return 1  # as cli.errors.run
    return 0
