"""Hostile and broken input to ``dockyard load`` and ``dockyard import``.

Every bad archive is made from a good one: ``dockyard save`` of ``second:v1``, a
two-layer image whose first layer is busybox's (already in the store) and whose
second is small (read into memory), so both the staged and the in-memory paths
of the loader are hit.  Each case runs on a copy of a store that already holds
``busybox:latest`` and must end with: exit status 1, exactly one line on stderr
naming the problem, nothing on stdout, the store byte-for-byte as before (every
file but the SQLite database and the lock files, and ``images -a``) and
``system check`` clean.

Positive controls: the good archive loads plain and gzip/zstd/xz compressed, and a
rootfs tar imports plain and compressed with the same diff_id.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from peers import Dockyard  # noqa: E402

from tests.helpers import archives as ar  # noqa: E402
from tests.helpers.store import Snapshot, assert_clean, diff, snapshot  # noqa: E402

pytestmark = pytest.mark.integration

EXTRA_FILES = {
    "data/hello.txt": b"hello, dockyard\n",
    "data/www/index.html": b"<h1>second</h1>\n",
}


@dataclass
class World:
    dir: Path
    template: Path  # a store root holding busybox:latest (imported)
    busybox_tar: Path
    busybox_id: str
    extra_layer: bytes  # the second image's own layer (small: kept in memory by load)
    good: Path  # `dockyard save` of second:v1
    good_edit: ar.ArchiveEdit
    second_id: str
    before: Snapshot  # of the template store

    @property
    def busybox_diff_id(self) -> str:
        return ar.sha256_file(self.busybox_tar)

    @property
    def extra_diff_id(self) -> str:
        return ar.sha256(self.extra_layer)

    def edit(self) -> ar.ArchiveEdit:
        return self.good_edit.copy()

    def config_digest(self) -> str:
        return self.second_id


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> World:
    d = tmp_path_factory.mktemp("bad-input")
    template = Dockyard(d / "template")
    busybox_id = template.run("import", busybox_tar, "busybox:latest").stdout.strip()
    rng = random.Random(1)
    extra = ar.tar_bytes([
        ar.dir_entry("data"),
        *(ar.file_entry(n, data) for n, data in EXTRA_FILES.items()),
        ar.file_entry("data/noise.bin", rng.randbytes(64 << 10)),
    ])
    crafted = ar.image_archive(d / "crafted.tar", [busybox_tar, extra], ["second:v1"])
    scratch = Dockyard(d / "scratch")
    scratch.run("load", "-i", crafted.path)
    good = d / "good.tar"
    scratch.run("save", "-o", good, "second:v1")
    return World(
        dir=d,
        template=template.root,
        busybox_tar=busybox_tar,
        busybox_id=busybox_id,
        extra_layer=extra,
        good=good,
        good_edit=ar.ArchiveEdit.load(good),
        second_id=crafted.image_id,
        before=snapshot(template),
    )


@pytest.fixture
def store(world: World, tmp_path: Path) -> Dockyard:
    """A private copy of the template store (busybox:latest)."""
    root = tmp_path / "store"
    shutil.copytree(world.template, root)
    return Dockyard(root)


def assert_refused(world: World, store: Dockyard, args: list[str],
                   keywords: tuple[str, ...]) -> str:
    res = store.run(*args, check=False)
    lines = res.stderr.splitlines()
    assert res.returncode == 1, f"exit {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    assert len(lines) == 1, f"expected one line on stderr, got:\n{res.stderr}"
    line = lines[0]
    for word in keywords:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"
    assert res.stdout == ""
    changed = diff(world.before, snapshot(store))
    assert not changed, "store changed:\n" + "\n".join(changed)
    assert_clean(store)
    print(f"{' '.join(args[:1])}: {line}")
    return line


# --------------------------------------------------------------------------- #
# the cases: name -> (build(world, dir) -> file, keywords the error line must hold)
# --------------------------------------------------------------------------- #

Build = Callable[[World, Path], Path]
LOAD_CASES: dict[str, tuple[Build, tuple[str, ...]]] = {}
IMPORT_CASES: dict[str, tuple[Build, tuple[str, ...]]] = {}


def case(table: dict[str, tuple[Build, tuple[str, ...]]], *keywords: str
         ) -> Callable[[Build], Build]:
    def register(fn: Build) -> Build:
        table[fn.__name__] = (fn, keywords)
        return fn

    return register


def load_case(*keywords: str) -> Callable[[Build], Build]:
    return case(LOAD_CASES, *keywords)


def import_case(*keywords: str) -> Callable[[Build], Build]:
    return case(IMPORT_CASES, *keywords)


def _write(d: Path, data: bytes, name: str = "input.tar") -> Path:
    path = d / name
    path.write_bytes(data)
    return path


def _random_bytes(n: int) -> bytes:
    data = bytearray(random.Random(42).randbytes(n))
    data[0:4] = b"RAND"  # no compression magic by chance
    return bytes(data)


def _hostname() -> bytes:
    p = Path("/etc/hostname")
    return p.read_bytes() if p.exists() else b"localhost\n"


def _truncate_at(src: Path, d: Path, at: int, name: str = "truncated.tar") -> Path:
    data = src.read_bytes()
    assert 0 < at < len(data)
    return _write(d, data[:at], name)


def _span(path: Path, name: str) -> ar.MemberSpan:
    return next(s for s in ar.member_spans(path) if s.name == name)


def _end_of_members(path: Path) -> int:
    """Offset of the end-of-archive marker: just after the last member's padded data."""
    last = ar.member_spans(path)[-1]
    return last.data + (last.size + 511) // 512 * 512


# -- not a tar -------------------------------------------------------------------


def _not_a_tar(table: dict[str, tuple[Build, tuple[str, ...]]]) -> None:
    @case(table, "not a tar")
    def random_bytes(w: World, d: Path) -> Path:
        return _write(d, _random_bytes(64 << 10))

    @case(table, "not a tar")
    def etc_hostname(w: World, d: Path) -> Path:
        return _write(d, _hostname())

    @case(table, "empty")
    def empty_file(w: World, d: Path) -> Path:
        return _write(d, b"")



_not_a_tar(LOAD_CASES)
_not_a_tar(IMPORT_CASES)


@load_case("not a tar")
def json_text(w: World, d: Path) -> Path:
    return _write(d, json.dumps({"not": "a tar", "pad": "x" * 2000}).encode())


@load_case("not a tar")
def gzip_of_random_bytes(w: World, d: Path) -> Path:
    return _write(d, ar.compress(_random_bytes(64 << 10), "gzip"))


# -- truncated -----------------------------------------------------------------


@load_case("truncated")
def truncated_in_a_header(w: World, d: Path) -> Path:
    return _truncate_at(w.good, d, _span(w.good, "manifest.json").header + 100)


@load_case("truncated")
def truncated_in_big_layer_data(w: World, d: Path) -> Path:
    span = _span(w.good, ar.blob_path(w.busybox_diff_id))
    return _truncate_at(w.good, d, span.data + span.size // 2)


@load_case("truncated")
def truncated_in_small_layer_data(w: World, d: Path) -> Path:
    span = _span(w.good, ar.blob_path(w.extra_diff_id))
    return _truncate_at(w.good, d, span.data + 1000)


@load_case("truncated")
def truncated_in_last_member_padding(w: World, d: Path) -> Path:
    return _truncate_at(w.good, d, _end_of_members(w.good) - 3)


@load_case("truncated")
def truncated_before_end_marker(w: World, d: Path) -> Path:
    return _truncate_at(w.good, d, _end_of_members(w.good))


@load_case("truncated")
def truncated_in_end_marker(w: World, d: Path) -> Path:
    return _truncate_at(w.good, d, w.good.stat().st_size - 10)


@load_case("truncated")
def truncated_in_first_end_block(w: World, d: Path) -> Path:
    return _truncate_at(w.good, d, _end_of_members(w.good) + 100)


@functools.lru_cache(maxsize=16)
def _compressed(src: Path, kind: str) -> bytes:
    return ar.compress(src.read_bytes(), kind)


CUTS: dict[str, Callable[[int], int]] = {"half": lambda n: n // 2, "end": lambda n: n - 4}


def _truncated_compressed(table: dict[str, tuple[Build, tuple[str, ...]]],
                          src: Callable[[World], Path], cuts: dict[str, str]) -> None:
    for kind, where in cuts.items():

        def build(w: World, d: Path, kind: str = kind, where: str = where) -> Path:
            data = _compressed(src(w), kind)
            return _write(d, data[: CUTS[where](len(data))], f"truncated.tar.{kind}")

        build.__name__ = f"{kind}_truncated_at_{where}"
        case(table, "truncated")(build)


_truncated_compressed(LOAD_CASES, lambda w: w.good, {"gzip": "end", "zstd": "half", "xz": "end"})


@import_case("truncated")
def import_truncated_in_a_header(w: World, d: Path) -> Path:
    spans = ar.member_spans(w.busybox_tar)
    return _truncate_at(w.busybox_tar, d, spans[3].header + 100)


@import_case("truncated")
def import_truncated_in_file_data(w: World, d: Path) -> Path:
    biggest = max(ar.member_spans(w.busybox_tar), key=lambda s: s.size)
    return _truncate_at(w.busybox_tar, d, biggest.data + biggest.size // 2)


@import_case("truncated")
def import_truncated_before_end_marker(w: World, d: Path) -> Path:
    return _truncate_at(w.busybox_tar, d, _end_of_members(w.busybox_tar))


@import_case("truncated")
def import_truncated_in_end_marker(w: World, d: Path) -> Path:
    return _truncate_at(w.busybox_tar, d, _end_of_members(w.busybox_tar) + 512 + 100)


_truncated_compressed(IMPORT_CASES, lambda w: w.busybox_tar,
                      {"gzip": "half", "zstd": "end", "xz": "half"})


# -- content that does not match what was promised -----------------------------------


def _flip_in_file_data(layer: bytes, member: str | None = None) -> bytes:
    """Change one byte in the data of ``member`` (default: the largest file), keeping
    the layer a valid tar of the same size."""
    spans = ar.member_spans(layer)
    span = (next(s for s in spans if s.name == member) if member
            else max(spans, key=lambda s: s.size))
    at = span.data + span.size // 2
    out = bytearray(layer)
    out[at] ^= 0xFF
    return bytes(out)


@load_case("diff_id", "layer 2")
def layer_content_not_its_diff_id(w: World, d: Path) -> Path:
    e = w.edit()
    e.put(ar.blob_path(w.extra_diff_id), _flip_in_file_data(w.extra_layer, "data/hello.txt"))
    return e.write(d / "bad.tar")


@load_case("diff_id", "layer 1")
def big_layer_content_not_its_diff_id(w: World, d: Path) -> Path:
    e = w.edit()
    name = ar.blob_path(w.busybox_diff_id)
    e.put(name, _flip_in_file_data(e.data(name)))
    return e.write(d / "bad.tar")


@load_case("diff_id")
def layers_swapped(w: World, d: Path) -> Path:
    e = w.edit()
    items = e.json("manifest.json")
    items[0]["Layers"].reverse()
    e.put_json("manifest.json", items)
    return e.write(d / "bad.tar")


@load_case("2 layers", "has 1")
def layer_left_out_of_manifest_json(w: World, d: Path) -> Path:
    e = w.edit()
    items = e.json("manifest.json")
    items[0]["Layers"].pop()
    e.put_json("manifest.json", items)
    return e.write(d / "bad.tar")


@load_case("layer", "does not match its digest")
def oci_layer_content_not_its_digest(w: World, d: Path) -> Path:
    e = w.edit().oci_only()
    e.put(ar.blob_path(w.extra_diff_id), _flip_in_file_data(w.extra_layer, "data/hello.txt"))
    return e.write(d / "bad.tar")


@load_case("config", "does not match")
def oci_config_content_not_its_digest(w: World, d: Path) -> Path:
    e = w.edit().oci_only()
    name = ar.blob_path(w.config_digest())
    e.put(name, e.data(name).replace(b'"os":"linux"', b'"os":"LINUX"'))
    return e.write(d / "bad.tar")


@load_case("manifest", "does not match")
def oci_manifest_content_not_its_digest(w: World, d: Path) -> Path:
    e = w.edit().oci_only()
    name = ar.blob_path(e.oci_manifest_digest())
    e.put(name, e.data(name).replace(b'"schemaVersion":2', b'"schemaVersion": 2'))
    return e.write(d / "bad.tar")


@load_case("diff_id")
def oci_other_layer_with_matching_descriptor(w: World, d: Path) -> Path:
    """The layer and its descriptor agree, but the config's diff_id names another."""
    e = w.edit().oci_only()
    other = ar.tar_bytes([ar.file_entry("data/other.txt", b"not the promised layer\n")])
    e.remove(ar.blob_path(w.extra_diff_id))
    new = e.put_blob(other)

    def swap(m: dict[str, object]) -> None:
        layers = m["layers"]
        assert isinstance(layers, list)
        layers[1].update(digest=new, size=len(other))

    e.edit_oci_manifest(swap)
    return e.write(d / "bad.tar")


@load_case("no file")
def oci_index_names_missing_manifest(w: World, d: Path) -> Path:
    e = w.edit().oci_only()
    e.remove(ar.blob_path(e.oci_manifest_digest()))
    return e.write(d / "bad.tar")


@load_case("no file")
def oci_manifest_names_missing_config(w: World, d: Path) -> Path:
    e = w.edit().oci_only()
    e.remove(ar.blob_path(w.config_digest()))
    return e.write(d / "bad.tar")


@load_case("no file")
def oci_manifest_names_missing_layer(w: World, d: Path) -> Path:
    e = w.edit().oci_only()
    e.remove(ar.blob_path(w.extra_diff_id))
    return e.write(d / "bad.tar")


@load_case("no file")
def oci_manifest_names_missing_big_layer(w: World, d: Path) -> Path:
    e = w.edit().oci_only()
    e.remove(ar.blob_path(w.busybox_diff_id))
    return e.write(d / "bad.tar")


def _descriptor_size(e: ar.ArchiveEdit, which: str, delta: int) -> None:
    def fix(m: dict[str, object]) -> None:
        desc = m["config"] if which == "config" else m["layers"][int(which)]  # type: ignore[index]
        assert isinstance(desc, dict)
        desc["size"] += delta

    e.edit_oci_manifest(fix)


@load_case("size")
def oci_wrong_layer_size(w: World, d: Path) -> Path:
    e = w.edit().oci_only()
    _descriptor_size(e, "1", +1)
    return e.write(d / "bad.tar")


@load_case("size")
def oci_wrong_big_layer_size(w: World, d: Path) -> Path:
    e = w.edit().oci_only()
    _descriptor_size(e, "0", -512)
    return e.write(d / "bad.tar")


@load_case("size")
def oci_wrong_config_size(w: World, d: Path) -> Path:
    e = w.edit().oci_only()
    _descriptor_size(e, "config", -1)
    return e.write(d / "bad.tar")


@load_case("size")
def oci_wrong_manifest_size_in_index(w: World, d: Path) -> Path:
    e = w.edit().oci_only()
    index = e.json("index.json")
    index["manifests"][0]["size"] += 7
    e.put_json("index.json", index)
    return e.write(d / "bad.tar")


@load_case("no file")
def manifest_json_names_missing_config(w: World, d: Path) -> Path:
    e = w.edit()
    e.remove(ar.blob_path(w.config_digest()))
    return e.write(d / "bad.tar")


@load_case("no file", "0000000000")
def manifest_json_config_path_not_in_archive(w: World, d: Path) -> Path:
    e = w.edit()
    items = e.json("manifest.json")
    items[0]["Config"] = "blobs/sha256/" + "0" * 64
    e.put_json("manifest.json", items)
    return e.write(d / "bad.tar")


@load_case("no file")
def manifest_json_names_missing_layer(w: World, d: Path) -> Path:
    e = w.edit()
    e.remove(ar.blob_path(w.extra_diff_id))
    return e.write(d / "bad.tar")


@load_case("no file")
def manifest_json_names_missing_big_layer(w: World, d: Path) -> Path:
    """busybox's layer is in the store already, but the archive must still hold it."""
    e = w.edit()
    e.remove(ar.blob_path(w.busybox_diff_id))
    return e.write(d / "bad.tar")


@load_case("not valid JSON", "manifest.json")
def manifest_json_not_json(w: World, d: Path) -> Path:
    e = w.edit()
    e.put("manifest.json", b'[{"Config": "blobs/sha256/')
    return e.write(d / "bad.tar")


@load_case("config", "invalid JSON")
def config_not_json(w: World, d: Path) -> Path:
    """manifest.json does not promise the config's digest, so only its parse fails."""
    e = w.edit()
    e.put(ar.blob_path(w.config_digest()), b"{not json")
    return e.write(d / "bad.tar")


@load_case("not a tar", "layer blobs/sha256/")
def big_layer_not_a_tar(w: World, d: Path) -> Path:
    e = w.edit()
    name = ar.blob_path(w.busybox_diff_id)
    e.put(name, _random_bytes(len(e.data(name))))
    return e.write(d / "bad.tar")


@load_case("not a tar", "layer")
def small_layer_not_a_tar(w: World, d: Path) -> Path:
    e = w.edit()
    e.put(ar.blob_path(w.extra_diff_id), _random_bytes(4096))
    return e.write(d / "bad.tar")


# -- member names ------------------------------------------------------------------


def _with_member(w: World, d: Path, entry: ar.Entry) -> Path:
    e = w.edit()
    e.append(entry)
    return e.write(d / "bad.tar")


@load_case("'..'", "../evil")
def member_dotdot(w: World, d: Path) -> Path:
    return _with_member(w, d, ar.file_entry("../evil", b"x"))


@load_case("absolute", "/abs/path")
def member_absolute(w: World, d: Path) -> Path:
    return _with_member(w, d, ar.file_entry("/abs/path", b"x"))


@load_case("'..'", "a/../../x")
def member_inner_dotdot(w: World, d: Path) -> Path:
    return _with_member(w, d, ar.file_entry("a/../../x", b"x"))


@load_case("'..'", "../evil-dir")
def member_dotdot_directory(w: World, d: Path) -> Path:
    return _with_member(w, d, ar.dir_entry("../evil-dir"))


@load_case("'..'", "../" + "long" * 40)
def member_dotdot_long_pax_name(w: World, d: Path) -> Path:
    return _with_member(w, d, ar.file_entry("../" + "long" * 40, b"x"))


@load_case("outside", "evil-link")
def member_symlink_outside(w: World, d: Path) -> Path:
    return _with_member(w, d, ar.link_entry("evil-link", "../../../etc/passwd"))


@load_case("outside", "blobs/evil-link")
def member_symlink_outside_from_subdir(w: World, d: Path) -> Path:
    return _with_member(w, d, ar.link_entry("blobs/evil-link", "../../etc/passwd"))


@load_case("'..'", "../x")
def member_hardlink_outside(w: World, d: Path) -> Path:
    return _with_member(w, d, ar.link_entry("hl", "../x", hard=True))


# -- duplicates ----------------------------------------------------------------------


@load_case("duplicate", "manifest.json")
def duplicate_manifest_json(w: World, d: Path) -> Path:
    e = w.edit()
    items = e.json("manifest.json")
    items[0]["RepoTags"] = ["evil:latest"]
    e.append(ar.file_entry("manifest.json", json.dumps(items).encode()))
    return e.write(d / "bad.tar")


@load_case("duplicate", "manifest.json")
def duplicate_manifest_json_dot_slash(w: World, d: Path) -> Path:
    e = w.edit()
    e.append(ar.file_entry("./manifest.json", e.data("manifest.json")))
    return e.write(d / "bad.tar")


@load_case("duplicate", "blobs/sha256/")
def duplicate_small_blob(w: World, d: Path) -> Path:
    e = w.edit()
    e.append(ar.file_entry(ar.blob_path(w.extra_diff_id), w.extra_layer))
    return e.write(d / "bad.tar")


@load_case("duplicate", "blobs/sha256/")
def duplicate_big_blob(w: World, d: Path) -> Path:
    e = w.edit()
    name = ar.blob_path(w.busybox_diff_id)
    e.append(ar.file_entry(name, e.data(name)))
    return e.write(d / "bad.tar")


@load_case("duplicate", "index.json")
def duplicate_as_symlink(w: World, d: Path) -> Path:
    return _with_member(w, d, ar.link_entry("index.json", "manifest.json"))


# -- bombs -----------------------------------------------------------------------------


def _bombs(table: dict[str, tuple[Build, tuple[str, ...]]]) -> None:
    for kind in ("gzip", "zstd", "xz"):

        def build(w: World, d: Path, kind: str = kind) -> Path:
            return _write(d, ar.bomb_bytes(kind), f"bomb.tar.{kind}")

        build.__name__ = f"{kind}_bomb"
        case(table, "bomb")(build)


_bombs(LOAD_CASES)
_bombs(IMPORT_CASES)


@load_case("bomb", "layer")
def layer_is_a_gzip_bomb(w: World, d: Path) -> Path:
    e = w.edit()
    e.put(ar.blob_path(w.extra_diff_id), ar.bomb_bytes("gzip"))
    return e.write(d / "bad.tar")


@load_case("bomb", "layer")
def layer_is_a_zstd_bomb(w: World, d: Path) -> Path:
    """Small enough (< 1 MiB) to be held in memory and staged only when used."""
    e = w.edit()
    e.put(ar.blob_path(w.extra_diff_id), ar.bomb_bytes("zstd"))
    return e.write(d / "bad.tar")


@load_case("bomb", "layer")
def oci_layer_is_a_gzip_bomb(w: World, d: Path) -> Path:
    e = w.edit().oci_only()
    e.remove(ar.blob_path(w.extra_diff_id))
    bomb = ar.bomb_bytes("gzip")
    digest = e.put_blob(bomb)

    def swap(m: dict[str, object]) -> None:
        layers = m["layers"]
        assert isinstance(layers, list)
        layers[1].update(digest=digest, size=len(bomb),
                         mediaType=ar.OCI_LAYER + "+gzip")

    e.edit_oci_manifest(swap)
    return e.write(d / "bad.tar")


# -- layers with hostile member names (configs and digests all consistent) --------------

HOSTILE_LAYER_MEMBERS = {
    "dotdot": (ar.file_entry("../evil", b"x"), ("'..'", "../evil")),
    "absolute": (ar.file_entry("/abs/path", b"x"), ("absolute", "/abs/path")),
    "inner_dotdot": (ar.file_entry("a/../../x", b"x"), ("'..'", "a/../../x")),
    "hardlink_out": (ar.link_entry("etc/shadow-link", "../../etc/shadow", hard=True),
                     ("'..'", "../../etc/shadow")),
}


def _hostile_layer(entry: ar.Entry) -> bytes:
    return ar.tar_bytes([ar.dir_entry("etc"), ar.file_entry("etc/ok", b"fine\n"), entry])


def _hostile_layers() -> None:
    for key, (entry, keywords) in HOSTILE_LAYER_MEMBERS.items():

        def build(w: World, d: Path, entry: ar.Entry = entry) -> Path:
            return ar.image_archive(d / "evil.tar", [w.busybox_tar, _hostile_layer(entry)],
                                    ["evil:v1"]).path

        build.__name__ = f"layer_member_{key}"
        case(LOAD_CASES, *keywords)(build)

        def build_oci(w: World, d: Path, entry: ar.Entry = entry) -> Path:
            return ar.image_archive(d / "evil.tar", [w.busybox_tar, _hostile_layer(entry)],
                                    ["evil:v1"], docker_manifest=False).path

        if key in ("dotdot", "absolute"):  # the OCI path feeds layers to the same checks
            build_oci.__name__ = f"oci_layer_member_{key}"
            case(LOAD_CASES, *keywords)(build_oci)

        def build_import(w: World, d: Path, entry: ar.Entry = entry) -> Path:
            return _write(d, _hostile_layer(entry), "rootfs.tar")

        build_import.__name__ = f"import_member_{key}"
        case(IMPORT_CASES, *keywords)(build_import)


_hostile_layers()


@import_case("'..'", "../evil")
def import_gzip_member_dotdot(w: World, d: Path) -> Path:
    return _write(d, ar.compress(_hostile_layer(ar.file_entry("../evil", b"x")), "gzip"),
                  "rootfs.tar.gz")


# --------------------------------------------------------------------------- #
# the tests
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", sorted(LOAD_CASES))
def test_load_refuses(name: str, world: World, store: Dockyard, tmp_path: Path) -> None:
    build, keywords = LOAD_CASES[name]
    bad = build(world, tmp_path)
    assert_refused(world, store, ["load", "-i", str(bad)], keywords)


@pytest.mark.parametrize("name", sorted(IMPORT_CASES))
def test_import_refuses(name: str, world: World, store: Dockyard, tmp_path: Path) -> None:
    build, keywords = IMPORT_CASES[name]
    bad = build(world, tmp_path)
    assert_refused(world, store, ["import", str(bad), "evil:latest"], keywords)


@pytest.mark.parametrize("name", ["truncated_in_big_layer_data", "gzip_bomb", "member_dotdot",
                                  "layer_content_not_its_diff_id"])
def test_load_from_stdin_refuses(name: str, world: World, store: Dockyard, tmp_path: Path
                                 ) -> None:
    """The same checks when the archive comes down a pipe (no seeking, no size)."""
    build, keywords = LOAD_CASES[name]
    bad = build(world, tmp_path)
    with bad.open("rb") as f:
        res = subprocess.run([*store.argv, "--root", str(store.root), "load"], stdin=f,
                             capture_output=True, text=True, env=store.env, timeout=120)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert all(k.lower() in lines[0].lower() for k in keywords), lines[0]
    changed = diff(world.before, snapshot(store))
    assert not changed, "store changed:\n" + "\n".join(changed)
    assert_clean(store)


def _inspect(dy: Dockyard, name: str) -> dict[str, object]:
    out = json.loads(dy.run("inspect", name).stdout)
    assert isinstance(out, list) and len(out) == 1
    item = out[0]
    assert isinstance(item, dict)
    return item


@pytest.mark.parametrize("kind", ["plain", "gzip", "zstd", "xz"])
def test_good_archive_loads(kind: str, world: World, store: Dockyard, tmp_path: Path) -> None:
    """The positive control: the archive the bad ones are made from loads, compressed or not."""
    src = world.good
    if kind != "plain":
        src = _write(tmp_path, _compressed(world.good, kind), f"good.tar.{kind}")
    res = store.run("load", "-i", src)
    assert res.stdout == "Loaded image: second:v1\n"
    assert _inspect(store, "second:v1")["Id"] == world.second_id
    assert _inspect(store, "busybox:latest")["Id"] == world.busybox_id
    assert_clean(store)


def test_import_compressed_same_diff_id(world: World, store: Dockyard, tmp_path: Path) -> None:
    """A rootfs tar imports plain or compressed; the diff_id is always the plain tar's."""
    want = world.busybox_diff_id
    for kind in ("plain", "gzip", "zstd", "xz"):
        src = world.busybox_tar
        if kind != "plain":
            src = _write(tmp_path, _compressed(world.busybox_tar, kind), f"rootfs.tar.{kind}")
        image_id = store.run("import", src, f"rootfs:{kind}").stdout.strip()
        info = _inspect(store, f"rootfs:{kind}")
        assert info["Id"] == image_id
        assert info["RootFS"] == {"Type": "layers", "Layers": [want]}, kind
    assert_clean(store)
