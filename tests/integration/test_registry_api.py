"""The registry's HTTP API against a real ``dockyard registry serve`` process.

Every endpoint of the distribution spec (end-1 .. end-14, referrers included) and
every error code, with raw HTTP: chunked and monolithic uploads, out-of-order
chunks, resumption after a restart and after a crash, ranges, mounts, tag and
catalog pagination, bad names, digests, sizes and JSON, oversized manifests,
bodies cut short. Headers are held to those of distribution 2.8
(shared/reference/registry-*-headers.txt). Access control is checked in process
with a controller that refuses. Last, skopeo copies an OCI layout in and out.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import socket
import subprocess
import tarfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from peers import Dockerd, Skopeo, dockyard_command, worker_id
from registry_server import RegistryServer

from dockyard import mediatypes as mt
from dockyard.registry.access import Denied, Grant, Principal, Unauthorized
from dockyard.registry.app import create_app
from dockyard.registry.errors import RegistryError

with warnings.catch_warnings():  # starlette 1.x prefers httpx2 for its TestClient
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"

# -- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path_factory.mktemp(f"registry-{worker_id()}") / "data") as s:
        yield s


@pytest.fixture
def c(server: RegistryServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def repo() -> str:
    return f"test/r{uuid.uuid4().hex[:10]}"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def codes(r: httpx.Response) -> list[str]:
    assert r.headers["content-type"].startswith("application/json"), r.text
    body = r.json()
    assert set(body) == {"errors"}
    for e in body["errors"]:
        assert set(e) <= {"code", "message", "detail"} and e["code"].isupper()
    return [e["code"] for e in body["errors"]]


def push_blob(c: httpx.Client, repo: str, data: bytes) -> str:
    r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha(data)}, content=data)
    assert r.status_code == 201, r.text
    return sha(data)


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha(data), "size": len(data), **extra}


def image_manifest(
    c: httpx.Client, repo: str, *, layers: tuple[bytes, ...] = (b"layer",),
    media_type: str = mt.OCI_MANIFEST, push: bool = True, **extra: Any,
) -> bytes:  # fmt: skip
    """Push a config and layers; return the manifest's bytes (not pushed)."""
    docker = media_type == mt.DOCKER_MANIFEST
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": uuid.uuid4().hex,
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()  # fmt: skip
    if push:
        for blob in (config, *layers):
            push_blob(c, repo, blob)
    layer_type = mt.DOCKER_LAYER_GZIP if docker else mt.OCI_LAYER_GZIP
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG, config),
        "layers": [descriptor(layer_type, layer) for layer in layers],
        **extra,
    }
    return json.dumps(doc, indent=3).encode()


def put_manifest(
    c: httpx.Client, repo: str, ref: str, body: bytes, content_type: str | None = None
) -> httpx.Response:
    media_type = content_type or json.loads(body).get("mediaType", mt.OCI_MANIFEST)
    return c.put(f"/v2/{repo}/manifests/{ref}", content=body,
                 headers={"Content-Type": media_type})  # fmt: skip


def raw_request(server: RegistryServer, head: str, body: bytes = b"", *, cut: bool = False
                ) -> bytes:  # fmt: skip
    """Send a request by hand; ``cut``: close the connection after ``body`` (which is
    shorter than the Content-Length in ``head``), as a client that went away."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        if cut:
            time.sleep(0.1)
            s.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
                if not cut and b"\r\n\r\n" in out:
                    break
        except (ConnectionResetError, TimeoutError):
            pass
        return out


def raw_path(server: RegistryServer, method: str, path: str) -> tuple[int, dict[str, Any]]:
    """A request whose path goes out exactly as written (no ``..`` folding)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def upload_offset(c: httpx.Client, location: str) -> str:
    r = c.get(location)
    assert r.status_code == 204, r.text
    return r.headers["range"]


# -- end-1: the API version check --------------------------------------------------------


def test_api_version(c: httpx.Client) -> None:
    r = c.get("/v2/")
    assert r.status_code == 200
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"
    assert r.json() == {}
    assert c.head("/v2/").status_code == 200


def test_unknown_endpoint_and_method(c: httpx.Client, repo: str) -> None:
    r = c.get(f"/v2/{repo}/nothing/here")
    assert r.status_code == 404 and codes(r) == ["UNSUPPORTED"]
    r = c.put(f"/v2/{repo}/blobs/{sha(b'x')}")
    assert r.status_code == 405 and codes(r) == ["UNSUPPORTED"]
    assert r.headers["allow"] == "DELETE, GET, HEAD"
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"
    r = c.request("PROPFIND", "/v2/_catalog")
    assert r.status_code == 405


# -- blobs: uploads (end-4, 5, 6, 13, 14) and downloads (end-2) ----------------------------


def test_post_then_put(c: httpx.Client, repo: str) -> None:
    data = os.urandom(5000)
    r = c.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202
    uid = r.headers["docker-upload-uuid"]
    assert r.headers["location"] == f"/v2/{repo}/blobs/uploads/{uid}"
    assert r.headers["range"] == "0-0"
    r = c.put(r.headers["location"], params={"digest": sha(data)}, content=data,
              headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v2/{repo}/blobs/{sha(data)}"
    assert r.headers["docker-content-digest"] == sha(data)
    assert c.get(f"/v2/{repo}/blobs/{sha(data)}").content == data
    r = c.get(f"/v2/{repo}/blobs/uploads/{uid}")  # the session is over
    assert r.status_code == 404 and codes(r) == ["BLOB_UPLOAD_UNKNOWN"]


def test_blob_headers_as_distribution(c: httpx.Client, repo: str) -> None:
    data = b"x" * 1488
    digest = push_blob(c, repo, data)
    for r in (c.head(f"/v2/{repo}/blobs/{digest}"), c.get(f"/v2/{repo}/blobs/{digest}")):
        assert r.status_code == 200
        h = r.headers
        assert h["accept-ranges"] == "bytes"
        assert h["cache-control"] == "max-age=31536000"
        assert h["content-length"] == "1488"
        assert h["content-type"] == "application/octet-stream"
        assert h["docker-content-digest"] == digest
        assert h["docker-distribution-api-version"] == "registry/2.0"
        assert h["etag"] == f'"{digest}"'
        assert h["x-content-type-options"] == "nosniff"
    assert c.head(f"/v2/{repo}/blobs/{digest}").content == b""
    r = c.get(f"/v2/{repo}/blobs/{digest}", headers={"If-None-Match": f'"{digest}"'})
    assert r.status_code == 304


def test_single_post_upload(c: httpx.Client, repo: str) -> None:
    data = os.urandom(100_000)
    r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha(data)}, content=data)
    assert r.status_code == 201
    assert r.headers["location"] == f"/v2/{repo}/blobs/{sha(data)}"
    assert c.get(f"/v2/{repo}/blobs/{sha(data)}").content == data
    # again: the same blob, stored once
    assert c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha(data)},
                  content=data).status_code == 201  # fmt: skip


def test_empty_blob(c: httpx.Client, repo: str) -> None:
    digest = push_blob(c, repo, b"")
    r = c.get(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "0"


@pytest.mark.parametrize("bad", [
    "sha256:" + "0" * 64,                # well formed, wrong
    "sha256:xyz",                        # malformed
    "sha256:" + "A" * 64,                # uppercase hex
    "md5:d41d8cd98f00b204e9800998ecf8427e",  # unsupported algorithm
    "",
])  # fmt: skip
def test_bad_digests_store_nothing(c: httpx.Client, repo: str, bad: str) -> None:
    data = b"content " + bad.encode()
    r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": bad}, content=data)
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]
    assert c.head(f"/v2/{repo}/blobs/{sha(data)}").status_code == 404
    # through a session: a wrong digest ends it, and stores nothing
    loc = c.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    r = c.put(loc, params={"digest": bad}, content=data)
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]
    assert c.head(f"/v2/{repo}/blobs/{sha(data)}").status_code == 404


def test_put_without_digest_keeps_the_session(c: httpx.Client, repo: str) -> None:
    loc = c.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    assert c.patch(loc, content=b"abc").status_code == 202
    r = c.put(loc)
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]
    assert upload_offset(c, loc) == "0-2"
    assert c.put(loc, params={"digest": sha(b"abc")}).status_code == 201


def test_bad_digest_in_blob_paths(c: httpx.Client, repo: str) -> None:
    for method in ("GET", "HEAD", "DELETE"):
        r = c.request(method, f"/v2/{repo}/blobs/sha256:nothex")
        assert r.status_code == 400
        if method != "HEAD":
            assert codes(r) == ["DIGEST_INVALID"]


def test_chunked_upload_with_out_of_order_chunk(c: httpx.Client, repo: str) -> None:
    data = os.urandom(3 * 65536 + 123)
    parts = [data[:65536], data[65536:131072], data[131072:196608], data[196608:]]
    r = c.post(f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    loc, uid = r.headers["location"], r.headers["docker-upload-uuid"]
    r = c.patch(loc, content=parts[0], headers={"Content-Range": "0-65535",
                                                 "Content-Type": "application/octet-stream"})
    assert r.status_code == 202
    assert (r.headers["range"], r.headers["location"]) == ("0-65535", loc)
    assert r.headers["docker-upload-uuid"] == uid
    # a chunk that skips ahead, and one that repeats: 416, nothing taken
    for bad_range, chunk in (("131072-196607", parts[2]), ("0-65535", parts[0])):
        r = c.patch(loc, content=chunk, headers={"Content-Range": bad_range})
        assert r.status_code == 416, r.text
        assert codes(r) == ["BLOB_UPLOAD_INVALID"]
        assert r.headers["range"] == "0-65535" and r.headers["location"] == loc
    # end-13: where are we?
    r = c.get(loc)
    assert r.status_code == 204
    assert (r.headers["range"], r.headers["location"]) == ("0-65535", loc)
    assert r.headers["docker-upload-uuid"] == uid
    r = c.patch(loc, content=parts[1], headers={"Content-Range": "65536-131071"})
    assert r.headers["range"] == "0-131071"
    r = c.patch(loc, content=parts[2])  # no Content-Range: appended (Docker's streamed PATCH)
    assert r.headers["range"] == "0-196607"
    # the last chunk in the closing PUT, out of order first
    r = c.put(loc, params={"digest": sha(data)}, content=parts[3],
              headers={"Content-Range": "196000-196122"})  # fmt: skip
    assert r.status_code == 416
    r = c.put(loc, params={"digest": sha(data)}, content=parts[3],
              headers={"Content-Range": f"196608-{len(data) - 1}"})  # fmt: skip
    assert r.status_code == 201, r.text
    assert c.get(f"/v2/{repo}/blobs/{sha(data)}").content == data


def test_chunk_length_must_match_its_range(c: httpx.Client, repo: str) -> None:
    loc = c.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    r = c.patch(loc, content=b"12345", headers={"Content-Range": "0-9"})
    assert r.status_code == 400 and codes(r) == ["SIZE_INVALID"]
    r = c.patch(loc, content=b"12345", headers={"Content-Range": "bogus"})
    assert r.status_code == 416 and codes(r) == ["BLOB_UPLOAD_INVALID"]
    assert upload_offset(c, loc) == "0-0"
    r = c.patch(loc, content=b"12345", headers={"Content-Range": "0-4"})
    assert r.status_code == 202


def test_cancel_upload(c: httpx.Client, repo: str) -> None:
    loc = c.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    c.patch(loc, content=b"some bytes")
    r = c.delete(loc)
    assert r.status_code == 204
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = c.request(method, loc, params={"digest": sha(b"some bytes")} if method == "PUT" else {})
        assert r.status_code == 404 and codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    assert c.head(f"/v2/{repo}/blobs/{sha(b'some bytes')}").status_code == 404


def test_unknown_upload_ids(c: httpx.Client, repo: str) -> None:
    other = f"{repo}-other"
    loc = c.post(f"/v2/{other}/blobs/uploads/").headers["location"]
    uid = loc.rsplit("/", 1)[1]
    for upload in (str(uuid.uuid4()), "garbage", "%2e%2e", uid):  # uid: the other repository's
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            r = c.request(method, f"/v2/{repo}/blobs/uploads/{upload}",
                          params={"digest": sha(b"")} if method == "PUT" else {})  # fmt: skip
            assert r.status_code == 404, (upload, method)
            assert codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    assert c.get(loc).status_code == 204  # untouched


def test_unsupported_digest_algorithm_for_upload(c: httpx.Client, repo: str) -> None:
    r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest-algorithm": "md5"})
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]
    r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest-algorithm": "sha512"})
    assert r.status_code == 202
    data = b"sha512 content"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    r = c.put(r.headers["location"], params={"digest": digest}, content=data)
    assert r.status_code == 201
    assert c.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_range_requests(c: httpx.Client, repo: str) -> None:
    data = bytes(range(256)) * 40
    digest = push_blob(c, repo, data)
    url = f"/v2/{repo}/blobs/{digest}"
    r = c.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(data)}"
    r = c.get(url, headers={"Range": "bytes=10000-"})
    assert r.status_code == 206 and r.content == data[10000:]
    r = c.get(url, headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = c.get(url, headers={"Range": "bytes=10000-20000"})  # the end is cut to the blob's
    assert r.status_code == 206 and r.content == data[10000:]
    assert r.headers["content-length"] == str(len(data) - 10000)
    for bad in (f"bytes={len(data)}-", "bytes=500-0", "bytes=20000-30000"):
        r = c.get(url, headers={"Range": bad})
        assert r.status_code == 416, bad
        assert r.headers["content-range"] == f"bytes */{len(data)}"
    r = c.get(url, headers={"Range": "bytes=0-1,5-6"})  # several ranges: the whole blob
    assert r.status_code == 200 and r.content == data
    r = c.head(url, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == b""
    assert r.headers["content-length"] == "100"
    # a range of a blob bigger than one write goes out whole (sendfile from the file)
    big = os.urandom(3 << 20)
    url = f"/v2/{repo}/blobs/{push_blob(c, repo, big)}"
    r = c.get(url, headers={"Range": "bytes=1000000-3000000"})
    assert r.status_code == 206 and r.content == big[1_000_000:3_000_001]


def test_blob_unknown(c: httpx.Client, repo: str) -> None:
    digest = push_blob(c, repo, b"only in repo")
    for where in (f"{repo}-b", repo):  # another repository; an unknown digest
        d = digest if where != repo else sha(b"never pushed")
        r = c.get(f"/v2/{where}/blobs/{d}")
        assert r.status_code == 404 and codes(r) == ["BLOB_UNKNOWN"]
        r = c.head(f"/v2/{where}/blobs/{d}")
        assert r.status_code == 404 and r.content == b""


def test_blob_delete(c: httpx.Client, repo: str) -> None:
    digest = push_blob(c, repo, b"to delete")
    r = c.delete(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 202
    assert c.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
    r = c.delete(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 404 and codes(r) == ["BLOB_UNKNOWN"]


# -- mounts (end-11) ---------------------------------------------------------------------


def test_mount_from_another_repository(c: httpx.Client, repo: str) -> None:
    digest = push_blob(c, repo, b"shared layer")
    target = f"{repo}-mounted"
    r = c.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": repo})
    assert r.status_code == 201
    assert r.headers["location"] == f"/v2/{target}/blobs/{digest}"
    assert r.headers["docker-content-digest"] == digest
    assert c.get(f"/v2/{target}/blobs/{digest}").content == b"shared layer"


def test_mount_falls_back_to_an_upload(c: httpx.Client, repo: str) -> None:
    digest = push_blob(c, repo, b"where is it")
    # `from` lacks it; an unknown digest: a new session instead
    for params in ({"mount": digest, "from": f"{repo}-empty"}, {"mount": sha(b"nowhere")}):
        r = c.post(f"/v2/{repo}-x/blobs/uploads/", params=params)
        assert r.status_code == 202
        assert "/blobs/uploads/" in r.headers["location"]
        assert r.headers["range"] == "0-0"
    r = c.post(f"/v2/{repo}-x/blobs/uploads/", params={"mount": "sha256:bad"})
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]


def test_automatic_mount_without_from(c: httpx.Client, repo: str) -> None:
    digest = push_blob(c, repo, b"found anywhere")
    r = c.post(f"/v2/{repo}-auto/blobs/uploads/", params={"mount": digest})
    assert r.status_code == 201
    assert c.get(f"/v2/{repo}-auto/blobs/{digest}").content == b"found anywhere"


# -- manifests (end-3, end-7, end-9) ---------------------------------------------------


def test_oci_manifest_put_get_head(c: httpx.Client, repo: str) -> None:
    body = image_manifest(c, repo, layers=(b"one", b"two"))
    digest = sha(body)
    r = put_manifest(c, repo, "v1", body)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v2/{repo}/manifests/{digest}"
    assert r.headers["docker-content-digest"] == digest
    assert "oci-subject" not in r.headers
    for ref in ("v1", digest):
        r = c.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": mt.OCI_MANIFEST})
        assert r.status_code == 200
        assert r.content == body  # the exact bytes
        h = r.headers
        assert h["content-type"] == mt.OCI_MANIFEST
        assert h["content-length"] == str(len(body))
        assert h["docker-content-digest"] == digest
        assert h["etag"] == f'"{digest}"'
        assert h["x-content-type-options"] == "nosniff"
        assert h["docker-distribution-api-version"] == "registry/2.0"
        r = c.head(f"/v2/{repo}/manifests/{ref}")
        assert r.status_code == 200 and r.content == b""
        assert r.headers["content-length"] == str(len(body))
        assert r.headers["docker-content-digest"] == digest


def test_docker_manifest_and_list(c: httpx.Client, repo: str) -> None:
    child = image_manifest(c, repo, media_type=mt.DOCKER_MANIFEST)
    assert put_manifest(c, repo, sha(child), child).status_code == 201
    r = c.get(f"/v2/{repo}/manifests/{sha(child)}")
    assert r.headers["content-type"] == mt.DOCKER_MANIFEST and r.content == child
    index = json.dumps({
        "schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [descriptor(mt.DOCKER_MANIFEST, child,
                                 platform={"architecture": "amd64", "os": "linux"})],
    }).encode()  # fmt: skip
    assert put_manifest(c, repo, "multi", index).status_code == 201
    r = c.get(f"/v2/{repo}/manifests/multi")
    assert r.headers["content-type"] == mt.DOCKER_MANIFEST_LIST and r.content == index


def test_oci_index_needs_its_children(c: httpx.Client, repo: str) -> None:
    child = image_manifest(c, repo)
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                        "manifests": [descriptor(mt.OCI_MANIFEST, child)]}).encode()
    r = put_manifest(c, repo, "idx", index)
    assert r.status_code == 400 and codes(r) == ["MANIFEST_BLOB_UNKNOWN"]
    assert r.json()["errors"][0]["detail"] == sha(child)
    assert c.get(f"/v2/{repo}/manifests/idx").status_code == 404
    assert put_manifest(c, repo, "child", child).status_code == 201
    assert put_manifest(c, repo, "idx", index).status_code == 201


def test_manifest_blob_unknown(c: httpx.Client, repo: str) -> None:
    body = image_manifest(c, repo, layers=(b"l1", b"l2"))  # blobs pushed to `repo` only
    r = put_manifest(c, f"{repo}-elsewhere", "v1", body)
    assert r.status_code == 400
    assert codes(r) == ["MANIFEST_BLOB_UNKNOWN"] * 3  # config and both layers
    assert r.json()["errors"][2]["detail"] == sha(b"l2")
    assert c.get(f"/v2/{repo}-elsewhere/manifests/v1").status_code == 404
    unpushed = image_manifest(c, repo, layers=(b"never pushed",), push=False)
    r = put_manifest(c, repo, "v1", unpushed)
    assert r.status_code == 400 and "MANIFEST_BLOB_UNKNOWN" in codes(r)


def test_manifest_with_a_wrong_blob_size(c: httpx.Client, repo: str) -> None:
    body = image_manifest(c, repo, layers=(b"sized",))
    doc = json.loads(body)
    doc["layers"][0]["size"] = 999
    r = put_manifest(c, repo, "v1", json.dumps(doc).encode())
    assert r.status_code == 400 and codes(r) == ["MANIFEST_INVALID"]


def test_foreign_layers_need_not_be_pushed(c: httpx.Client, repo: str) -> None:
    body = image_manifest(c, repo, media_type=mt.DOCKER_MANIFEST)
    doc = json.loads(body)
    doc["layers"].append(descriptor(mt.DOCKER_LAYER_FOREIGN, b"windows base",
                                    urls=["https://example.com/layer"]))  # fmt: skip
    assert put_manifest(c, repo, "win", json.dumps(doc).encode()).status_code == 201


@pytest.mark.parametrize("body,content_type", [
    (b"{garbage", mt.OCI_MANIFEST),
    (b"[1, 2]", mt.OCI_MANIFEST),
    (b"\xff\xfe not utf-8", mt.OCI_MANIFEST),
    (b'{"schemaVersion": 1, "mediaType": "' + mt.OCI_MANIFEST.encode() + b'"}', None),
    (b'{"schemaVersion": 2, "mediaType": "' + mt.OCI_MANIFEST.encode() + b'", "layers": []}',
     None),
    (b'{"schemaVersion": 2, "mediaType": "' + mt.OCI_INDEX.encode() + b'"}', None),
    (b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:1", "size": 1},'
     b' "layers": []}', mt.OCI_MANIFEST),
    (b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:' + b"a" * 64
     + b'", "size": -1}, "layers": []}', mt.OCI_MANIFEST),
    (b'{"schemaVersion": 2, "mediaType": "' + mt.OCI_INDEX.encode() + b'", "manifests": []}',
     mt.DOCKER_MANIFEST_LIST),  # Content-Type and mediaType disagree
])  # fmt: skip
def test_invalid_manifests(
    c: httpx.Client, repo: str, body: bytes, content_type: str | None
) -> None:
    r = c.put(f"/v2/{repo}/manifests/bad", content=body,
              headers={"Content-Type": content_type or mt.OCI_MANIFEST})  # fmt: skip
    assert r.status_code == 400, r.text
    assert codes(r) == ["MANIFEST_INVALID"]
    assert c.get(f"/v2/{repo}/manifests/bad").status_code == 404


def test_unsupported_manifest_type(c: httpx.Client, repo: str) -> None:
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.example+json"}).encode()
    r = c.put(f"/v2/{repo}/manifests/v1", content=body,
              headers={"Content-Type": "application/vnd.example+json"})  # fmt: skip
    assert r.status_code == 415 and codes(r) == ["UNSUPPORTED"]


def test_oversized_manifest(c: httpx.Client, repo: str, server: RegistryServer) -> None:
    body = image_manifest(c, repo)
    doc = json.loads(body)
    doc["annotations"] = {"padding": "x" * (4 << 20)}
    big = json.dumps(doc).encode()
    r = put_manifest(c, repo, "big", big)
    assert r.status_code == 413 and codes(r) == ["SIZE_INVALID"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while reading
        for i in range(0, len(big), 1 << 16):
            yield big[i : i + (1 << 16)]

    r = c.put(f"/v2/{repo}/manifests/big", content=chunks(),
              headers={"Content-Type": mt.OCI_MANIFEST})  # fmt: skip
    assert r.status_code == 413 and codes(r) == ["SIZE_INVALID"]
    assert c.get(f"/v2/{repo}/manifests/big").status_code == 404
    doc["annotations"] = {"padding": "x" * (3 << 20)}  # under 4 MiB: fine
    assert put_manifest(c, repo, "big", json.dumps(doc).encode()).status_code == 201


def test_put_manifest_by_digest(c: httpx.Client, repo: str) -> None:
    body = image_manifest(c, repo)
    r = put_manifest(c, repo, sha(b"something else"), body)
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]
    r = c.put(f"/v2/{repo}/manifests/{sha(body)}", params=[("tag", "a"), ("tag", "b")],
              content=body, headers={"Content-Type": mt.OCI_MANIFEST})  # fmt: skip
    assert r.status_code == 201 and r.headers["oci-tag"] == "a, b"
    assert c.get(f"/v2/{repo}/tags/list").json()["tags"] == ["a", "b"]


@pytest.mark.parametrize("ref", ["-bad", ".bad", "a" * 129, "bad!tag", "sha256:short"])
def test_bad_references(c: httpx.Client, repo: str, ref: str) -> None:
    body = image_manifest(c, repo)
    r = put_manifest(c, repo, ref, body)
    assert r.status_code == 400
    assert codes(r) == ["DIGEST_INVALID" if ":" in ref else "MANIFEST_INVALID"]
    assert c.get(f"/v2/{repo}/manifests/{ref}").status_code == 400


def test_manifest_unknown(c: httpx.Client, repo: str) -> None:
    for ref in ("latest", sha(b"no such manifest")):
        r = c.get(f"/v2/{repo}/manifests/{ref}")
        assert r.status_code == 404 and codes(r) == ["MANIFEST_UNKNOWN"]
        assert c.head(f"/v2/{repo}/manifests/{ref}").status_code == 404


def test_accept_negotiation(c: httpx.Client, repo: str) -> None:
    body = image_manifest(c, repo)
    put_manifest(c, repo, "v1", body)
    url = f"/v2/{repo}/manifests/v1"
    docker_only = f"{mt.DOCKER_MANIFEST}, {mt.DOCKER_MANIFEST_LIST}"
    assert c.get(url, headers={"Accept": docker_only}).status_code == 404
    assert c.get(url, headers={"Accept": f"{docker_only}, {mt.OCI_MANIFEST}"}).status_code == 200
    assert c.get(url, headers={"Accept": "*/*"}).status_code == 200
    several = [("Accept", mt.DOCKER_MANIFEST), ("Accept", mt.OCI_MANIFEST)]  # as Docker sends
    assert c.get(url, headers=several).status_code == 200


def test_manifest_delete(c: httpx.Client, repo: str) -> None:
    body = image_manifest(c, repo)
    put_manifest(c, repo, "keep", body)
    put_manifest(c, repo, "drop", body)
    r = c.delete(f"/v2/{repo}/manifests/drop")  # a tag
    assert r.status_code == 202
    assert c.get(f"/v2/{repo}/manifests/drop").status_code == 404
    assert c.get(f"/v2/{repo}/manifests/keep").status_code == 200
    r = c.delete(f"/v2/{repo}/manifests/{sha(body)}")  # the manifest, and its tags
    assert r.status_code == 202
    assert c.get(f"/v2/{repo}/manifests/keep").status_code == 404
    assert c.get(f"/v2/{repo}/manifests/{sha(body)}").status_code == 404
    for ref in ("keep", sha(body)):
        r = c.delete(f"/v2/{repo}/manifests/{ref}")
        assert r.status_code == 404 and codes(r) == ["MANIFEST_UNKNOWN"]


# -- names -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "../x", "a/../b", "a/./b", "a//b", "Upper/x", "x/UP", "-lead", "trail-", "a/", "_x",
    "a..b", "a" * 256, "a/b:c",
])  # fmt: skip
def test_invalid_names(server: RegistryServer, name: str) -> None:
    for method, tail in (("GET", "tags/list"), ("GET", "manifests/latest"),
                         ("POST", "blobs/uploads/"), ("GET", f"blobs/{sha(b'')}")):
        status, body = raw_path(server, method, f"/v2/{name}/{tail}")
        assert status == 400, (name, tail)
        assert [e["code"] for e in body["errors"]] == ["NAME_INVALID"]


def test_long_valid_names(c: httpx.Client) -> None:
    name = "a/" * 100 + "b-c__d.e"
    assert push_blob(c, name, b"deep")
    assert c.get(f"/v2/{name}/blobs/{sha(b'deep')}").content == b"deep"


# -- tags (end-8) and the catalog ------------------------------------------------------


def test_tags_sorted_and_paginated(c: httpx.Client, repo: str) -> None:
    body = image_manifest(c, repo)
    tags = ["v1.0", "latest", "B", "a", "A", "b", "_x", "1", "v1.0-rc"]
    for tag in tags:
        assert put_manifest(c, repo, tag, body).status_code == 201
    expected = sorted(tags)  # bytewise: digits, uppercase, "_", lowercase
    assert expected[:4] == ["1", "A", "B", "_x"]
    r = c.get(f"/v2/{repo}/tags/list")
    assert r.json() == {"name": repo, "tags": expected}
    assert "link" not in r.headers
    got: list[str] = []
    url = f"/v2/{repo}/tags/list?n=4"
    while True:
        r = c.get(url)
        page = r.json()["tags"]
        got += page
        if "link" not in r.headers:
            break
        assert len(page) == 4
        link = r.headers["link"]
        assert link.endswith('>; rel="next"') and link.startswith(f"</v2/{repo}/tags/list?")
        url = link[1 : link.index(">")]
    assert got == expected
    r = c.get(f"/v2/{repo}/tags/list", params={"n": 0})
    assert r.json()["tags"] == [] and "link" not in r.headers
    r = c.get(f"/v2/{repo}/tags/list", params={"last": "b"})
    assert r.json()["tags"] == [t for t in expected if t > "b"]
    r = c.get(f"/v2/{repo}/tags/list", params={"n": 2, "last": "A"})
    assert r.json()["tags"] == ["B", "_x"] and "link" in r.headers
    for bad in ("-1", "x"):
        r = c.get(f"/v2/{repo}/tags/list", params={"n": bad})
        assert r.status_code == 400


def test_tags_of_unknown_repository(c: httpx.Client, repo: str) -> None:
    r = c.get(f"/v2/{repo}/tags/list")
    assert r.status_code == 404 and codes(r) == ["NAME_UNKNOWN"]


def test_retag_moves_the_tag(c: httpx.Client, repo: str) -> None:
    first, second = image_manifest(c, repo), image_manifest(c, repo)
    put_manifest(c, repo, "latest", first)
    put_manifest(c, repo, "latest", second)
    assert c.get(f"/v2/{repo}/manifests/latest").content == second
    assert c.get(f"/v2/{repo}/manifests/{sha(first)}").content == first


def test_catalog_paginated(c: httpx.Client) -> None:
    prefix = f"cat{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}/r{i}" for i in range(5)]
    for name in names:
        push_blob(c, name, b"catalog")
    full = c.get("/v2/_catalog").json()["repositories"]
    assert full == sorted(full) and set(names) <= set(full)
    got: list[str] = []
    url = f"/v2/_catalog?n=2&last={prefix}"
    while url:
        r = c.get(url)
        page = r.json()["repositories"]
        got += [n for n in page if n.startswith(prefix + "/")]
        if not page or not page[-1].startswith(prefix + "/") or "link" not in r.headers:
            break
        assert len(page) == 2
        link = r.headers["link"]
        assert link.startswith("</v2/_catalog?") and link.endswith('>; rel="next"')
        url = link[1 : link.index(">")]
    assert got == names
    assert c.get("/v2/_catalog", params={"n": 0}).json() == {"repositories": []}
    assert c.get("/v2/_catalog", params={"n": "-3"}).status_code == 400


# -- referrers (end-12) ------------------------------------------------------------------


def test_referrers(c: httpx.Client, repo: str) -> None:
    subject = image_manifest(c, repo)
    subject_desc = descriptor(mt.OCI_MANIFEST, subject)
    empty = b"{}"
    push_blob(c, repo, empty)

    def artifact(artifact_type: str | None, note: str, config_type: str = EMPTY_CONFIG
                 ) -> bytes:  # fmt: skip
        doc: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
            "config": descriptor(config_type, empty), "layers": [],
            "subject": subject_desc, "annotations": {"note": note},
        }  # fmt: skip
        if artifact_type:
            doc["artifactType"] = artifact_type
        return json.dumps(doc).encode()

    sbom = artifact("application/vnd.example.sbom", "sbom")
    sig = artifact("application/vnd.example.sig", "sig")
    old_style = artifact(None, "old", config_type="application/vnd.example.config")
    # referrers may come before their subject
    for body in (sbom, sig, old_style):
        r = put_manifest(c, repo, sha(body), body)
        assert r.status_code == 201, r.text
        assert r.headers["oci-subject"] == sha(subject)
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                        "manifests": [descriptor(mt.OCI_MANIFEST, sbom)],
                        "subject": subject_desc}).encode()  # fmt: skip
    assert put_manifest(c, repo, sha(index), index).headers["oci-subject"] == sha(subject)
    assert put_manifest(c, repo, "v1", subject).status_code == 201

    r = c.get(f"/v2/{repo}/referrers/{sha(subject)}")
    assert r.status_code == 200
    assert r.headers["content-type"] == mt.OCI_INDEX
    assert "oci-filters-applied" not in r.headers
    doc = r.json()
    assert (doc["schemaVersion"], doc["mediaType"]) == (2, mt.OCI_INDEX)
    by_digest = {d["digest"]: d for d in doc["manifests"]}
    assert set(by_digest) == {sha(sbom), sha(sig), sha(old_style), sha(index)}
    assert by_digest[sha(sbom)] == {
        "mediaType": mt.OCI_MANIFEST, "digest": sha(sbom), "size": len(sbom),
        "artifactType": "application/vnd.example.sbom", "annotations": {"note": "sbom"},
    }  # fmt: skip
    assert by_digest[sha(old_style)]["artifactType"] == "application/vnd.example.config"
    assert "artifactType" not in by_digest[sha(index)]

    r = c.get(f"/v2/{repo}/referrers/{sha(subject)}",
              params={"artifactType": "application/vnd.example.sig"})  # fmt: skip
    assert r.headers["oci-filters-applied"] == "artifactType"
    assert [d["digest"] for d in r.json()["manifests"]] == [sha(sig)]

    r = c.get(f"/v2/{repo}/referrers/{sha(b'nothing refers')}")
    assert r.status_code == 200 and r.json()["manifests"] == []
    r = c.get(f"/v2/{repo}-none/referrers/{sha(subject)}")  # an unknown repository: no 404
    assert r.status_code == 200 and r.json()["manifests"] == []
    r = c.get(f"/v2/{repo}/referrers/sha256:nothex")
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]

    c.delete(f"/v2/{repo}/manifests/{sha(sig)}")
    r = c.get(f"/v2/{repo}/referrers/{sha(subject)}")
    assert sha(sig) not in {d["digest"] for d in r.json()["manifests"]}


# -- bodies cut short --------------------------------------------------------------------


def test_truncated_bodies_store_nothing(
    c: httpx.Client, repo: str, server: RegistryServer
) -> None:
    """Bodies shorter than their Content-Length, then the client stops sending: the
    spec's SIZE_INVALID (for a client still listening) and nothing stored."""
    data = os.urandom(200_000)
    digest = sha(data)

    def cut(head: str, body: bytes) -> None:
        reply = raw_request(server, head + "Host: x\n", body, cut=True)
        assert reply.startswith(b"HTTP/1.1 400 "), reply[:200]
        assert b'"code":"SIZE_INVALID"' in reply

    # a single POST
    cut(f"POST /v2/{repo}/blobs/uploads/?digest={digest} HTTP/1.1\n"
        f"Content-Length: {len(data)}\n", data[:150_000])  # fmt: skip
    # a PATCH: the session stays where it was
    loc = c.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    c.patch(loc, content=data[:1000], headers={"Content-Range": "0-999"})
    cut(f"PATCH {loc} HTTP/1.1\nContent-Range: 1000-199999\nContent-Length: 199000\n",
        data[1000:50_000])  # fmt: skip
    # the closing PUT with the rest
    cut(f"PUT {loc}?digest={digest} HTTP/1.1\nContent-Length: 199000\n", data[1000:150_000])
    # a manifest
    body = image_manifest(c, repo)
    cut(f"PUT /v2/{repo}/manifests/cut HTTP/1.1\nContent-Type: {mt.OCI_MANIFEST}\n"
        f"Content-Length: {len(body)}\n", body[: len(body) // 2])  # fmt: skip
    # and a client that closes the connection altogether
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 199000\r\n\r\n"
                  .encode() + data[1000:9000])  # fmt: skip
    time.sleep(0.2)
    assert c.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
    assert c.get(f"/v2/{repo}/manifests/cut").status_code == 404
    assert upload_offset(c, loc) == "0-999"
    r = c.put(loc, params={"digest": digest}, content=data[1000:])
    assert r.status_code == 201, r.text
    assert c.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_garbage_requests(server: RegistryServer, repo: str) -> None:
    reply = raw_request(server, f"PATCH /v2/{repo}/blobs/uploads/x HTTP/1.1\nHost: x\n"
                        "Content-Length: nonsense\n")  # fmt: skip
    assert reply.startswith(b"HTTP/1.1 4")


# -- restarts and crashes ------------------------------------------------------------------


def test_upload_resumes_after_restart_and_crash(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    repo = "me/resume"
    with RegistryServer(tmp_path / "data") as server:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            loc = c.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
            r = c.patch(loc, content=data[: 1 << 20],
                        headers={"Content-Range": f"0-{(1 << 20) - 1}"})  # fmt: skip
            assert r.status_code == 202
        server.restart()  # a clean stop, a new port
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert upload_offset(c, loc) == f"0-{(1 << 20) - 1}"
            r = c.patch(loc, content=data[1 << 20 : 2 << 20])
            assert r.headers["range"] == f"0-{(2 << 20) - 1}"
        # a crash in the middle of the last chunk: that chunk is gone, the rest stays
        head = (f"PATCH {loc} HTTP/1.1\nHost: x\nContent-Length: {1 << 20}\n")
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + data[2 << 20 :][:500_000])
            time.sleep(0.3)
            server.kill()
        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert upload_offset(c, loc) == f"0-{(2 << 20) - 1}"
            r = c.put(loc, params={"digest": sha(data)}, content=data[2 << 20 :])
            assert r.status_code == 201, r.text
            assert c.get(f"/v2/{repo}/blobs/{sha(data)}").content == data


def test_a_crash_mid_upload_leaves_no_blob(tmp_path: Path) -> None:
    data = os.urandom(4 << 20)
    with RegistryServer(tmp_path / "data") as server:
        head = (f"POST /v2/me/crash/blobs/uploads/?digest={sha(data)} HTTP/1.1\nHost: x\n"
                f"Content-Length: {len(data)}\n")  # fmt: skip
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + data[: 3 << 20])
            time.sleep(0.3)
            server.kill()
        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert c.head(f"/v2/me/crash/blobs/{sha(data)}").status_code == 404
            assert push_blob(c, "me/crash", data) == sha(data)
        blobs = list((tmp_path / "data" / "storage" / "blobs").rglob("*"))
        assert [p.stat().st_size for p in blobs if p.is_file()] == [len(data)]


# -- garbage collection --------------------------------------------------------------------


def test_gc_while_serving(c: httpx.Client, server: RegistryServer, repo: str) -> None:
    argv, env = dockyard_command()

    def gc(*flags: str) -> str:
        out = subprocess.run([*argv, "registry", "gc", "--data", str(server.data), "-v",
                              *flags], capture_output=True, text=True, env=env, check=True)
        return out.stdout  # fmt: skip

    kept = image_manifest(c, repo, layers=(b"kept layer " + repo.encode(),))
    put_manifest(c, repo, "v1", kept)
    untagged = image_manifest(c, repo, layers=(b"untagged layer " + repo.encode(),))
    put_manifest(c, repo, "v2", untagged)
    c.delete(f"/v2/{repo}/manifests/v2")  # the tag only
    loose = push_blob(c, repo, b"referenced by nothing " + repo.encode())

    assert "blob " + loose not in gc()  # within the grace period
    out = gc("--grace", "0", "--dry-run")
    assert f"blob {loose}" in out and "would delete" in out
    assert c.head(f"/v2/{repo}/blobs/{loose}").status_code == 200
    out = gc("--grace", "0")
    assert f"blob {loose}" in out
    assert c.head(f"/v2/{repo}/blobs/{loose}").status_code == 404
    # untagged manifests stay without --untagged
    assert c.get(f"/v2/{repo}/manifests/{sha(untagged)}").status_code == 200
    out = gc("--grace", "0", "--untagged")
    assert f"manifest {repo}@{sha(untagged)}" in out
    assert c.get(f"/v2/{repo}/manifests/{sha(untagged)}").status_code == 404
    layer = json.loads(untagged)["layers"][0]["digest"]
    assert c.head(f"/v2/{repo}/blobs/{layer}").status_code == 404
    assert c.get(f"/v2/{repo}/manifests/v1").content == kept
    for d in json.loads(kept)["layers"]:
        assert c.head(f"/v2/{repo}/blobs/{d['digest']}").status_code == 200
    # the freed blob can be pushed again
    assert push_blob(c, repo, b"referenced by nothing " + repo.encode()) == loose


# -- access control (in process, with a controller that refuses) ----------------------------


class Controller:
    """Allows all, except: "secret/*" (pull alone refused: others may push there but not
    read), "readonly/*" (push and delete refused),
    anonymous callers of "private/*" (401), and "slow/*" (429)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, frozenset[str]]] = []

    def check(self, authorization: str | None, repository: str, actions: set[str]) -> Grant:
        self.calls.append((repository, frozenset(actions)))
        if repository.startswith("private/") and authorization is None:
            raise Unauthorized("authentication required", 'Basic realm="test"')
        if (repository.startswith("secret/") and actions == {"pull"}) or (
            repository.startswith("readonly/") and actions & {"push", "delete"}
        ):
            raise Denied("requested access to the resource is denied")
        if repository.startswith("slow/"):
            raise RegistryError("TOOMANYREQUESTS")
        if repository == "catalog:*":
            g = Grant(Principal("u", "user"), {"pull"})
            g.catalog_filter = lambda name: not name.startswith("secret/")
            return g
        return Grant(Principal("u", "user"), set(actions))


def test_access_controller(tmp_path: Path) -> None:
    controller = Controller()
    with TestClient(create_app(tmp_path / "data", controller)) as c:
        digest = push_blob(c, "secret/x", b"s")
        assert ("secret/x", frozenset({"pull", "push"})) in controller.calls

        # a mount from a repository the caller may not pull from: a new upload instead
        r = c.post("/v2/me/y/blobs/uploads/", params={"mount": digest, "from": "secret/x"})
        assert r.status_code == 202
        r = c.post("/v2/me/y/blobs/uploads/", params={"mount": digest})  # nor automatically
        assert r.status_code == 202
        assert ("secret/x", frozenset({"pull"})) in controller.calls
        assert c.head(f"/v2/me/y/blobs/{digest}").status_code == 404

        r = c.get(f"/v2/secret/x/blobs/{digest}")
        assert r.status_code == 403 and codes(r) == ["DENIED"]
        r = c.get("/v2/private/x/tags/list")
        assert r.status_code == 401 and codes(r) == ["UNAUTHORIZED"]
        assert r.headers["www-authenticate"] == 'Basic realm="test"'
        r = c.post("/v2/readonly/x/blobs/uploads/")
        assert r.status_code == 403
        r = c.delete(f"/v2/readonly/x/blobs/{digest}")
        assert r.status_code == 403
        assert ("readonly/x", frozenset({"delete"})) in controller.calls
        r = c.get("/v2/slow/x/tags/list")
        assert r.status_code == 429 and codes(r) == ["TOOMANYREQUESTS"]
        assert r.headers["retry-after"]

        push_blob(c, "open/x", b"o")
        r = c.get("/v2/_catalog")
        assert r.json() == {"repositories": ["open/x"]}  # filtered
        assert ("catalog:*", frozenset({"pull"})) in controller.calls
        assert c.get("/v2/").status_code == 200
        assert ("", frozenset({"pull"})) in controller.calls


def test_deletes_can_be_disabled(tmp_path: Path) -> None:
    with TestClient(create_app(tmp_path / "data", delete_enabled=False)) as c:
        digest = push_blob(c, "me/x", b"d")
        r = c.delete(f"/v2/me/x/blobs/{digest}")
        assert r.status_code == 405 and codes(r) == ["UNSUPPORTED"]


# -- interoperability: skopeo ------------------------------------------------------------


def make_oci_layout(root: Path, tag: str) -> str:
    """A one-layer OCI image layout made by hand; returns the manifest digest."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, Any]:
        (blobs / sha(data).split(":")[1]).write_bytes(data)
        return {"digest": sha(data), "size": len(data)}

    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        content = b"hello from dockyard\n"
        info.size, info.mtime = len(content), 1_700_000_000
        tar.addfile(info, io.BytesIO(content))
    layer = gzip.compress(tar_bytes.getvalue(), mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(tar_bytes.getvalue())]},
    }).encode()  # fmt: skip
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, **put(config)},
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, **put(layer)}],
    }).encode()  # fmt: skip
    desc = put(manifest)
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": mt.OCI_MANIFEST, **desc,
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}  # fmt: skip
    (root / "index.json").write_text(json.dumps(index))
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return str(desc["digest"])


def test_skopeo_copy_in_and_out(server: RegistryServer, skopeo: Skopeo, tmp_path: Path) -> None:
    digest = make_oci_layout(tmp_path / "layout", "v1")
    ref = f"docker://{server.host}/interop/hello:v1"
    skopeo.copy(f"oci:{tmp_path / 'layout'}:v1", ref, "--dest-tls-verify=false")
    out = skopeo.cli("inspect", "--tls-verify=false", ref).stdout
    info = json.loads(out)
    assert info["Digest"] == digest
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert len(info["Layers"]) == 1
    skopeo.copy(ref, f"oci:{tmp_path / 'back'}:v1", "--src-tls-verify=false")
    back = json.loads((tmp_path / "back" / "index.json").read_text())
    assert back["manifests"][0]["digest"] == digest
    for path in (tmp_path / "layout" / "blobs" / "sha256").iterdir():
        assert (tmp_path / "back" / "blobs" / "sha256" / path.name).read_bytes() == (
            path.read_bytes()
        )


def test_blobs_streamed_through_python(tmp_path: Path) -> None:
    """sendfile=False (and drivers without local files) stream from ``get``, ranges too."""
    data = bytes(range(256)) * 20
    with TestClient(create_app(tmp_path / "data", sendfile=False)) as c:
        digest = push_blob(c, "me/x", data)
        url = f"/v2/me/x/blobs/{digest}"
        r = c.get(url)
        assert r.status_code == 200 and r.content == data
        assert r.headers["docker-content-digest"] == digest
        assert r.headers["content-length"] == str(len(data))
        r = c.head(url)
        assert r.status_code == 200 and r.content == b""
        assert r.headers["content-length"] == str(len(data))
        r = c.get(url, headers={"Range": "bytes=100-199"})
        assert r.status_code == 206 and r.content == data[100:200]
        assert r.headers["content-range"] == f"bytes 100-199/{len(data)}"
        r = c.get(url, headers={"Range": "bytes=-10"})
        assert r.status_code == 206 and r.content == data[-10:]
        r = c.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert r.status_code == 416
        r = c.get(url, headers={"Range": "bytes=9-1"})
        assert r.status_code == 416
        r = c.get(url, headers={"Range": "items=1-2"})  # not a byte range: the whole blob
        assert r.status_code == 200 and r.content == data


def test_docker_push_pull(server: RegistryServer, dockerd: Dockerd, busybox_tar: Path) -> None:
    """Docker 20.10: push (then again: layers exist), mount into another repo, pull, run."""
    ref = f"{server.host}/interop/busybox-{worker_id()}:v1"
    dockerd.cli("import", str(busybox_tar), ref)
    dockerd.cli("push", ref)
    assert "Layer already exists" in dockerd.cli("push", ref).stdout
    other = ref.replace("/interop/", "/interop-other/")
    dockerd.cli("tag", ref, other)
    assert "Mounted from" in dockerd.cli("push", other).stdout
    dockerd.cli("rmi", ref, other)
    dockerd.cli("pull", ref)  # Docker sends one Accept header per media type
    out = dockerd.cli("run", "--rm", "--network", "none", ref, "echo", "pulled").stdout
    assert out.strip() == "pulled"
    dockerd.cli("rmi", ref)
