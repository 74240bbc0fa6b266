"""Remote sources without a network: GDAL paths of hrefs, what messages may show, what a
failed read means, and which GDAL settings a user's environment overrides. The reads over
HTTP themselves are tested in test_stac_api.py against a real server."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import rasterio
from rasterio.errors import RasterioIOError

from tileserver.data import remote
from tileserver.data.remote import (
    BrokenSource,
    SourceReadError,
    classify,
    gdal_path,
    host_of,
    redact,
)


@pytest.mark.parametrize("href,path", [
    ("https://example.com/a/b.tif", "/vsicurl/https://example.com/a/b.tif"),
    ("http://h:8080/x.tif?sig=1", "/vsicurl/http://h:8080/x.tif?sig=1"),
    ("s3://bucket/key/b.tif", "/vsis3/bucket/key/b.tif"),
    ("/data/b.tif", "/data/b.tif"),
])
def test_gdal_paths(href, path):
    assert gdal_path(href) == path


def test_messages_name_the_host_never_credentials():
    href = "https://user:pw@store.example.com:8443/c/b.tif?se=2030&sig=SECRET"
    assert host_of(href) == "store.example.com:8443"
    assert redact(href) == "https://store.example.com:8443/c/b.tif"
    assert host_of("/vsicurl/" + href) == "store.example.com:8443"
    assert host_of("s3://bucket/k.tif") == "s3://bucket"
    assert host_of("/vsis3/bucket/k.tif") == "s3://bucket"


def test_a_missing_local_file_is_broken_a_damaged_one_an_error(tmp_path):
    missing = tmp_path / "gone.tif"
    with pytest.raises(RasterioIOError) as gone:
        rasterio.open(missing)
    assert isinstance(classify(str(missing), gone.value), BrokenSource)
    damaged = tmp_path / "bad.tif"
    damaged.write_bytes(b"not a GeoTIFF")
    with pytest.raises(RasterioIOError) as bad:
        rasterio.open(damaged)
    err = classify(str(damaged), bad.value)
    assert isinstance(err, SourceReadError) and err.status == 502 and "bad.tif" in err.message


def test_settings_become_gdal_options_unless_the_environment_says(monkeypatch):
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "7")  # the user's choice
    monkeypatch.delenv("GDAL_HTTP_MAX_RETRY", raising=False)
    monkeypatch.setattr(remote, "_ours", set())
    before = remote.options()
    try:
        remote.configure(replace(before, timeout=99, retries=5))
        assert os.environ["GDAL_HTTP_TIMEOUT"] == "7"
        assert os.environ["GDAL_HTTP_MAX_RETRY"] == "5"
        assert os.environ["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
        remote.configure(replace(before, retries=1))  # ours: changed again
        assert os.environ["GDAL_HTTP_MAX_RETRY"] == "1"
    finally:
        remote.configure(before)


def test_s3_hrefs_are_read_through_vsis3(tmp_path, monkeypatch):
    """``s3://bucket/key`` read by GDAL's /vsis3/ from an S3-style endpoint (path-style
    URLs, unsigned: the local Range server stands in for the object store)."""
    import numpy as np
    from numpy.testing import assert_array_equal
    from rasterio.transform import from_origin

    from tests.support.http_server import range_server
    from tileserver.data.catalog import Band
    from tileserver.data.reader import read_band
    from tileserver.datacube.view import View

    bucket = tmp_path / "bucket"
    bucket.mkdir()
    data = (np.arange(200 * 200).reshape(200, 200) % 5000 + 1).astype("uint16")
    with rasterio.open(bucket / "scene.tif", "w", driver="COG", width=200, height=200,
                       count=1, dtype="uint16", nodata=0, crs="EPSG:32633",
                       transform=from_origin(600_000, 5_300_000, 10, 10)) as dst:
        dst.write(data, 1)
    band = Band("B04", "uint16", 0.0, 10.0)
    view = View(rasterio.crs.CRS.from_epsg(32633), (600_500, 5_298_500, 601_500, 5_299_500),
                100, 100)
    with range_server({"my-bucket": bucket}) as server:
        for key, value in {"AWS_S3_ENDPOINT": server.url.removeprefix("http://"),
                           "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
                           "AWS_NO_SIGN_REQUEST": "YES"}.items():
            monkeypatch.setenv(key, value)
        got = read_band("s3://my-bucket/scene.tif", band, view)
        gone = server.total("GET")
        with pytest.raises(BrokenSource):
            read_band("s3://my-bucket/missing.tif", band, view)
    assert_array_equal(got, data[50:150, 50:150].astype("float32"))
    assert gone > 0 and server.ranges > 0
    assert ("GET", "/my-bucket/scene.tif") in server.requests
