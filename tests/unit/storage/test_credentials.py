"""Static AWS keys in the environment (as deploy/tileserver.env sets them): the process moves
them out of ``os.environ`` at start, so that rasterio stops building a boto3 session for each
of its in-memory datasets (four per warp of a lazy tile, rasterio#3331), while boto3, GDAL's
``/vsis3/`` and presigned URLs keep using them. moto's server is the store."""

from __future__ import annotations

import io
import os
import threading

import boto3
import numpy as np
import pytest
import rasterio
import requests
from PIL import Image
from rasterio.env import get_gdal_config
from rasterio.transform import from_origin
from rasterio.warp import reproject

from tests.support.s3 import moto_server
from tests.support.wmts import create_job, create_service, ndvi_graph
from tileserver.storage import credentials, open_store

#: Full-resolution tiles of the synthetic catalog's area (XYZ, z/x/y).
TILES = [(14, 8602, 5826), (14, 8603, 5826), (14, 8602, 5827), (14, 8603, 5827)]


@pytest.fixture(scope="module")
def s3():
    with moto_server() as server:
        yield server


@pytest.fixture
def sessions(monkeypatch):
    """How many boto3 sessions the process has built since the test began (any thread)."""
    built = []
    init = boto3.session.Session.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        init(self, *args, **kwargs)

    monkeypatch.setattr(boto3.session.Session, "__init__", counting)
    return built


def _warp() -> None:
    """What rasterio's warp of arrays does: in-memory datasets, each in its own Env."""
    a = np.ones((64, 64), np.float32)
    reproject(a, np.zeros_like(a), src_transform=from_origin(0, 64, 1, 1),
              dst_transform=from_origin(0, 64, 1, 1), src_crs="EPSG:32631",
              dst_crs="EPSG:32631")


def test_lazy_tiles_build_no_boto3_session_with_static_keys_in_the_environment(
        s3, make_app, small_catalog, monkeypatch, sessions):
    for key, value in {**s3.env(), "AWS_SESSION_TOKEN": "token"}.items():
        monkeypatch.setenv(key, value)
    # the counter sees what rasterio does with the keys in the environment
    with rasterio.Env():
        _warp()
    assert len(sessions) >= 2

    app = make_app([small_catalog], storage_url=f"s3://{s3.bucket('keys')}/t")
    assert not any(key in os.environ for key in credentials.KEYS)
    assert get_gdal_config("AWS_SECRET_ACCESS_KEY") == "testing"
    assert get_gdal_config("AWS_SESSION_TOKEN") == "token"
    assert credentials.child_env() == {"AWS_ACCESS_KEY_ID": "testing",
                                       "AWS_SECRET_ACCESS_KEY": "testing",
                                       "AWS_SESSION_TOKEN": "token"}
    client = app.test_client()
    xyz = create_service(client, create_job(client, ndvi_graph()), "xyz")
    base = xyz["service_url"].replace("http://localhost", "")
    started = len(sessions)
    for z, x, y in TILES:
        tile = client.get(base.format(z=z, x=x, y=y))
        assert tile.status_code == 200
        alpha = np.asarray(Image.open(io.BytesIO(tile.data)).convert("RGBA"))[..., 3]
        assert (alpha == 255).any()  # data: the sources were read and warped
    _warp()
    assert len(sessions) == started  # none per tile, none per warp

    # the store (boto3 with the keys), GDAL's /vsis3/ and presigned URLs still have them
    store = open_store(app.extensions["tileserver"].settings)
    with store.writing("r/one.tif") as tmp, rasterio.open(
            tmp, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8",
            crs="EPSG:32631", transform=from_origin(0, 8, 1, 1)) as dst:
        dst.write(np.full((1, 8, 8), 7, np.uint8))
    with rasterio.open(store.url_for_gdal("r/one.tif")) as src:
        assert (src.read() == 7).all()
    url = store.presigned_url("r/one.tif", 60)
    assert url is not None and requests.get(url, timeout=30).content == store.get("r/one.tif")
    assert s3.keys("keys") == ["t/r/one.tif"]


def test_keys_come_back_on_release_and_newer_keys_replace_adopted_ones(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "one")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-one")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-one")
    assert credentials.adopt()
    assert credentials.boto3_keys() == {"aws_access_key_id": "one",
                                        "aws_secret_access_key": "secret-one",
                                        "aws_session_token": "token-one"}
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "two")  # keys set again: they win
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-two")
    assert credentials.adopt()
    assert credentials.child_env() == {"AWS_ACCESS_KEY_ID": "two",
                                       "AWS_SECRET_ACCESS_KEY": "secret-two"}
    assert get_gdal_config("AWS_ACCESS_KEY_ID") == "two"
    assert get_gdal_config("AWS_SESSION_TOKEN") is None
    credentials.release()
    assert os.environ["AWS_ACCESS_KEY_ID"] == "two" and credentials.boto3_keys() == {}


def test_only_the_main_thread_adopts_static_keys(monkeypatch):
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "one")
    assert not credentials.adopt()  # no secret key: nothing rasterio would find
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-one")
    done = []
    thread = threading.Thread(target=lambda: done.append(credentials.adopt()))
    thread.start()
    thread.join()
    assert done == [False] and os.environ["AWS_ACCESS_KEY_ID"] == "one"
    assert credentials.boto3_keys() == {}


def _on_a_worker() -> tuple[bool, str | None, int]:
    """In a Dask worker's task: keys in its environment, GDAL's key, boto3 sessions one warp
    builds."""
    built = []
    init = boto3.session.Session.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        init(self, *args, **kwargs)

    boto3.session.Session.__init__ = counting
    try:
        _warp()
    finally:
        boto3.session.Session.__init__ = init
    return ("AWS_ACCESS_KEY_ID" in os.environ, get_gdal_config("AWS_SECRET_ACCESS_KEY"),
            len(built))


def test_the_batch_workers_get_the_adopted_keys_and_adopt_them(make_app, small_catalog,
                                                                monkeypatch):
    """The embedded cluster starts after the server took the keys out of its environment:
    its workers get them from their nanny, and adopt them at start (the worker plugin)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "worker-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "worker-secret")
    app = make_app([small_catalog], batch_workers=1)
    assert "AWS_ACCESS_KEY_ID" not in os.environ
    client = app.extensions["tileserver"].batch.client
    assert client.submit(_on_a_worker, pure=False).result(timeout=60) == (
        False, "worker-secret", 0)
