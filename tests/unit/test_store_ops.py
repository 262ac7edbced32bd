"""The store through the ops layer: import, tag, rmi rules, save/load round trips, check."""

from __future__ import annotations

import gzip
import io
import json
import lzma
import tarfile
from pathlib import Path

import pytest
import zstandard

from dockyard.errors import ArchiveError, Conflict, DigestMismatch, ImageNotFound
from dockyard.ops.images import history, inspect_image, list_images
from dockyard.ops.importer import import_image
from dockyard.ops.load import load
from dockyard.ops.lookup import find_image, resolve_image
from dockyard.ops.remove import remove_image, tag
from dockyard.ops.save import save
from dockyard.ops.system import check, disk_usage, prune_images
from dockyard.reference import parse_with_default_tag
from dockyard.store.store import Store, chain_ids
from tests.imagegen import docker_archive, layer_tar, oci_archive, random_layer, sha


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def imp(store: Store, data: bytes, name: str | None = None, **kw: object) -> str:
    ref = parse_with_default_tag(name) if name else None
    return import_image(store, io.BytesIO(data), tag=ref, **kw)  # type: ignore[arg-type]


def snapshot(store: Store) -> tuple[object, ...]:
    blobs = sorted(p.name for p in (store.root / "blobs" / "sha256").iterdir())
    rows = [(r.repository, r.tag, r.image.id) for r in list_images(store, all_images=True)]
    return tuple(blobs), tuple(rows), (store.root / "index.json").read_bytes()


def test_import_matches_docker_shape(store: Store) -> None:
    layer = layer_tar({"bin/x": b"12345"}, symlinks={"bin/y": "/bin/x"})
    image_id = imp(store, layer, "busybox")
    config = json.loads(store.blobs.read(image_id))
    assert list(config) == sorted(config)  # Docker writes top-level keys sorted
    assert config["rootfs"]["diff_ids"] == [sha(layer)]
    assert config["comment"] == "Imported from -"
    assert config["history"] == [{"created": config["created"], "comment": "Imported from -"}]
    info = inspect_image(store, image_id)
    assert list(info)[:6] == ["Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created"]
    assert info["RepoTags"] == ["busybox:latest"]
    assert info["Size"] == 5 + len("/bin/x")  # files plus symlink targets, as Docker counts
    assert info["Config"]["Cmd"] is None and "ExposedPorts" not in info["Config"]


@pytest.mark.parametrize("compress", [gzip.compress, zstandard.compress, lzma.compress, None])
def test_import_compressed_gives_same_diff_id(store: Store, compress: object) -> None:
    layer = random_layer(1)
    data = compress(layer) if callable(compress) else layer
    image_id = imp(store, data, "x:1")
    assert inspect_image(store, image_id)["RootFS"]["Layers"] == [sha(layer)]


def test_import_changes_and_message(store: Store) -> None:
    image_id = imp(
        store, random_layer(2), "x:c", message="hello",
        changes=['CMD ["/bin/httpd", "-f"]', "ENV A=1 B=2", "EXPOSE 80/tcp 53/udp",
                 "WORKDIR /srv", "LABEL k=v", "USER nobody", "VOLUME /data"],
    )
    cfg = inspect_image(store, image_id)["Config"]
    assert cfg["Cmd"] == ["/bin/httpd", "-f"]
    assert cfg["Env"] == ["A=1", "B=2"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert (cfg["WorkingDir"], cfg["User"], cfg["Labels"]) == ("/srv", "nobody", {"k": "v"})
    assert cfg["Volumes"] == {"/data": {}}
    assert inspect_image(store, image_id)["Comment"] == "hello"
    assert list_images(store, filters=["label=k=v"])[0].image.id == image_id
    assert list_images(store, filters=["label=k=other"]) == []


def test_lookup_by_id_prefix_name_and_digest(store: Store) -> None:
    image_id = imp(store, random_layer(3), "me/app:v1")
    assert resolve_image(store, image_id) == image_id
    assert resolve_image(store, image_id[7:19]) == image_id
    assert resolve_image(store, "me/app:v1") == image_id
    assert resolve_image(store, "docker.io/me/app:v1") == image_id
    with pytest.raises(ImageNotFound, match="No such image: me/app:latest"):
        resolve_image(store, "me/app")
    assert find_image(store, "0" * 12) is None


def test_rmi_untags_then_deletes_with_layers(store: Store) -> None:
    image_id = imp(store, random_layer(4), "a:1")
    tag(store, "a:1", "b:2")
    assert remove_image(store, "a:1") == ["Untagged: a:1"]
    lines = remove_image(store, "b:2")
    assert lines[:2] == ["Untagged: b:2", f"Deleted: {image_id}"]
    assert lines[2] == f"Deleted: {sha(random_layer(4))}"  # one layer: chain ID = diff ID
    assert store.blobs.exists(image_id) is False
    assert check(store).clean


def test_rmi_by_id_with_several_repos_needs_force(store: Store) -> None:
    image_id = imp(store, random_layer(5), "a:1")
    tag(store, image_id, "b:1")
    with pytest.raises(Conflict, match=r"\(must be forced\) - image is referenced in multiple"):
        remove_image(store, image_id[7:19])
    lines = remove_image(store, image_id[7:19], force=True)
    assert "Untagged: a:1" in lines and "Untagged: b:1" in lines and f"Deleted: {image_id}" in lines


def test_rmi_parent_with_children_is_refused_and_pruned_with_child(store: Store) -> None:
    base = random_layer(6)
    top = random_layer(7)
    archive = docker_archive([([base], ["base:1"]), ([base, top], ["child:1"])], parent_of={1: 0})
    load(store, io.BytesIO(archive))
    parent_id = resolve_image(store, "base:1")
    child_id = resolve_image(store, "child:1")
    assert inspect_image(store, child_id)["Parent"] == parent_id
    remove_image(store, "base:1")  # untag only: the image has a child
    assert [r.image.id for r in list_images(store)] == [child_id]  # parent hidden without -a
    assert {r.image.id for r in list_images(store, all_images=True)} == {parent_id, child_id}
    with pytest.raises(Conflict, match=r"\(cannot be forced\) - image has dependent child images"):
        remove_image(store, parent_id[7:19], force=True)
    lines = remove_image(store, "child:1")
    chains = chain_ids([sha(base), sha(top)])
    assert lines == ["Untagged: child:1", f"Deleted: {child_id}", f"Deleted: {chains[1]}",
                     f"Deleted: {parent_id}", f"Deleted: {chains[0]}"]
    assert store.images() == []
    assert check(store).clean


def test_no_prune_keeps_untagged_parent(store: Store) -> None:
    base = random_layer(8)
    archive = docker_archive([([base], []), ([base, random_layer(9)], ["c:1"])], parent_of={1: 0})
    load(store, io.BytesIO(archive))
    remove_image(store, "c:1", prune=False)
    assert len(store.images()) == 1


def test_save_load_round_trip_keeps_ids_and_tags(store: Store, tmp_path: Path) -> None:
    shared = random_layer(10)
    a = imp(store, shared, "a:1")
    load(store, io.BytesIO(docker_archive([([shared, random_layer(11)], ["b:1", "b:2"])])))
    b = resolve_image(store, "b:1")
    out = io.BytesIO()
    save(store, ["a:1", "b"], out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = tar.getnames()
    assert names.count(f"blobs/sha256/{sha(shared)[7:]}") == 1  # shared layer written once
    assert {"index.json", "manifest.json", "oci-layout", "repositories"} <= set(names)
    fresh = Store(tmp_path / "other")
    lines = load(fresh, io.BytesIO(out.getvalue()))
    assert lines == ["Loaded image: a:1", "Loaded image: b:1", "Loaded image: b:2"]
    assert resolve_image(fresh, "a:1") == a and resolve_image(fresh, "b:2") == b
    assert check(fresh).clean


def test_save_by_id_has_no_tags(store: Store) -> None:
    image_id = imp(store, random_layer(12), "a:1")
    out = io.BytesIO()
    save(store, [image_id[7:19]], out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] is None
        assert "repositories" not in tar.getnames()
    assert load(Store(store.root.parent / "o"), io.BytesIO(out.getvalue())) == [
        f"Loaded image ID: {image_id}"
    ]


def test_load_legacy_docker_format_with_symlinked_layers(store: Store) -> None:
    shared = random_layer(13)
    archive = docker_archive(
        [([shared], ["busybox:latest"]), ([shared, random_layer(14)], ["me/x:v1"])], legacy=True
    )
    assert load(store, io.BytesIO(archive)) == ["Loaded image: busybox:latest",
                                                "Loaded image: me/x:v1"]
    assert check(store).clean


@pytest.mark.parametrize("wrap", [gzip.compress, zstandard.compress, lzma.compress])
def test_load_compressed_archive(store: Store, wrap: object) -> None:
    archive = docker_archive([([random_layer(15)], ["z:1"])])
    assert load(store, io.BytesIO(wrap(archive))) == ["Loaded image: z:1"]  # type: ignore[operator]


def test_load_oci_archive_with_gzip_layers_and_platform_index(store: Store) -> None:
    layers = [random_layer(16), random_layer(17)]
    archive, image_id = oci_archive(layers, "localhost/me/b1server:v0.2", platform_index=True)
    assert load(store, io.BytesIO(archive)) == ["Loaded image: localhost/me/b1server:v0.2"]
    assert inspect_image(store, image_id)["RootFS"]["Layers"] == [sha(x) for x in layers]
    bare, bare_id = oci_archive([random_layer(18)], "v0.2")  # a bare tag names no repository
    assert load(store, io.BytesIO(bare)) == [f"Loaded image ID: {bare_id}"]


def test_bad_archives_leave_store_unchanged(store: Store) -> None:
    imp(store, random_layer(19), "keep:1")
    before = snapshot(store)
    good_layer = random_layer(20)
    bad_config = docker_archive([([good_layer], ["x:1"])]).replace(
        sha(good_layer)[7:].encode(), b"0" * 64, 1
    )
    cases = [
        b"not a tar at all",
        docker_archive([([good_layer], ["x:1"])])[:3000],
        bad_config,
    ]
    for data in cases:
        with pytest.raises(ArchiveError):
            load(store, io.BytesIO(data))
        assert snapshot(store) == before
    assert check(store).clean


def test_layer_not_matching_diff_id_is_refused(store: Store) -> None:
    layer = random_layer(21)
    archive = docker_archive([([layer], ["x:1"])])
    other = random_layer(22)
    archive = archive.replace(layer, other)  # same size, different content
    with pytest.raises(DigestMismatch, match="diff_id"):
        load(store, io.BytesIO(archive))
    assert store.images() == []


def test_traversal_in_layer_is_refused(store: Store) -> None:
    bad = layer_tar({"../evil": b"x"})
    with pytest.raises(ArchiveError, match=r"'\.\.'"):
        imp(store, bad, "x:1")
    with pytest.raises(ArchiveError, match="absolute"):
        imp(store, layer_tar({"/etc/passwd": b"x"}), "x:1")
    assert store.images() == []


def test_check_finds_and_repairs_corruption(store: Store) -> None:
    good = imp(store, random_layer(23), "good:1")
    bad = imp(store, random_layer(24), "bad:1")
    layer_blob = store.blobs.path(sha(random_layer(24)))
    layer_blob.write_bytes(b"corrupted")
    report = check(store)
    assert not report.clean
    assert any("corrupt" in p for p in report.problems)
    fixed = check(store, repair=True)
    assert any(bad in r for r in fixed.repaired)
    assert check(store).clean
    assert [r.image.id for r in list_images(store)] == [good]


def test_prune_and_df(store: Store) -> None:
    imp(store, random_layer(25), "a:1")
    dangling = imp(store, random_layer(26))
    assert disk_usage(store).images == 2
    lines, reclaimed = prune_images(store)
    assert f"Deleted: {dangling}" in lines and reclaimed > 0
    assert disk_usage(store).images == 1
    lines, _ = prune_images(store, all_images=True)
    assert disk_usage(store).images == 0


def test_history_names_local_ancestors(store: Store) -> None:
    base = random_layer(27)
    archive = docker_archive([([base], ["base:1"]), ([base, random_layer(28)], ["c:1"])],
                             parent_of={1: 0})
    load(store, io.BytesIO(archive))
    rows = history(store, "c:1")
    assert [r.id for r in rows] == [resolve_image(store, "c:1"), resolve_image(store, "base:1")]
    assert rows[0].tags == ["c:1"] and rows[0].created_by == "layer 1"


def test_images_filters(store: Store) -> None:
    old = imp(store, random_layer(29), "old:1")
    new = imp(store, random_layer(30), "new:1")
    assert [r.image.id for r in list_images(store, filters=[f"before={new}"])] == [old]
    assert [r.image.id for r in list_images(store, filters=["since=old:1"])] == [new]
    assert [r.tag for r in list_images(store, filters=["reference=ne*"])] == ["1"]
    imp(store, random_layer(31))
    assert [r.repository for r in list_images(store, filters=["dangling=true"])] == ["<none>"]
