"""The two stores behave alike: the local folder and an S3 bucket (moto's server, a real
subprocess). Atomic writes, ranges, listings, prefixes, moves, GDAL paths, signed URLs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import requests

from tests.support.s3 import moto_server
from tileserver.errors import StoreUnavailable
from tileserver.storage import LocalStore, store_for

OPTIONS = {"timeout": 5, "retries": 0, "multipart_bytes": 5 * 1024 * 1024}


@pytest.fixture(scope="module")
def s3():
    with moto_server() as server, pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        yield server


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "home")
    server = request.getfixturevalue("s3")
    bucket = server.bucket(f"unit-{request.node.name.split('[')[0][-40:].replace('_', '-')}")
    return store_for(f"s3://{bucket}/some/prefix", **OPTIONS)


def test_put_get_info_list_and_delete(store):
    store.put("results/a/item.json", b"{}")
    store.put("results/a/sub/b.txt", b"bb")
    store.put("results/ab/c.txt", b"ccc")  # a sibling with a common name prefix
    assert store.get("results/a/item.json") == b"{}"
    info = store.info("results/a/sub/b.txt")
    assert info is not None and info.size == 2 and info.key == "results/a/sub/b.txt"
    assert store.info("results/a/none") is None and not store.exists("results/a/none")
    assert [o.key for o in store.list("results/a")] == ["results/a/item.json",
                                                       "results/a/sub/b.txt"]
    assert store.size_of("results/a") == 4
    with pytest.raises(FileNotFoundError):
        store.get("results/a/none")
    store.delete_prefix("results/a")
    assert [o.key for o in store.list("results")] == ["results/ab/c.txt"]
    store.delete("results/ab/c.txt")
    assert list(store.list("results")) == []


def test_writing_is_atomic_and_a_failure_keeps_the_old_object(store):
    store.put("k/file.bin", b"old")
    with pytest.raises(RuntimeError), store.writing("k/file.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("the writer failed")
    assert store.get("k/file.bin") == b"old"
    with store.writing("k/file.bin") as tmp:
        tmp.write_bytes(b"new")
    assert store.get("k/file.bin") == b"new"
    assert [o.key for o in store.list("k")] == ["k/file.bin"]  # no temporary left


def test_ranges_and_a_big_file_in_parts(store, tmp_path):
    data = np.random.default_rng(1).integers(0, 255, 12 * 1024 * 1024, np.uint8).tobytes()
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    store.put_file("big/big.bin", src)  # above multipart_bytes: a multipart upload on S3
    assert store.info("big/big.bin").size == len(data)
    with store.open("big/big.bin", 100, 199) as fh:
        assert fh.read(100) == data[100:200]
    out = tmp_path / "back.bin"
    store.download("big/big.bin", out)
    assert out.read_bytes() == data


def test_move_prefix_replaces_the_target(store):
    store.put("w/out/a.tif", b"A")
    store.put("w/out/item.json", b"{}")
    store.put("r/job/old.tif", b"old")
    store.move_prefix("w/out", "r/job")
    assert sorted(o.key for o in store.list("r/job")) == ["r/job/a.tif", "r/job/item.json"]
    assert list(store.list("w/out")) == []


def test_gdal_reads_the_store_and_urls(store, tmp_path):
    src = tmp_path / "r.tif"
    values = np.arange(64 * 64, dtype=np.float32).reshape(1, 64, 64)
    with rasterio.open(src, "w", driver="GTiff", width=64, height=64, count=1,
                       dtype="float32") as dst:
        dst.write(values)
    store.put_file("r/r.tif", src)
    path = store.url_for_gdal("r/r.tif")
    assert path.startswith("/vsis3/") == (store.scheme == "s3")
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(ds.read(), values)
    url = store.presigned_url("r/r.tif", 60)
    if store.scheme == "file":
        assert url is None
    else:
        assert requests.get(url, timeout=30).content == src.read_bytes()


def test_an_unreachable_store_is_store_unavailable_naming_it(monkeypatch):
    from tests.support.s3 import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    store = store_for("s3://nowhere/x", **{**OPTIONS, "timeout": 1})
    with pytest.raises(StoreUnavailable, match="s3://nowhere") as err:
        store.get("a")
    assert err.value.status == 503 and "testing" not in err.value.message
