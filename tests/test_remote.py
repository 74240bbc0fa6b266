"""Remote sources without a network: GDAL paths of hrefs, what messages may show, what a
failed read means, and which GDAL settings a user's environment overrides. The reads over
HTTP themselves are tested in test_stac_api.py against a real server."""

from __future__ import annotations

import os

import pytest
import rasterio
from rasterio.errors import RasterioIOError

from tileserver.core import remote
from tileserver.core.remote import (
    BrokenSource,
    RemoteOptions,
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
        remote.configure(RemoteOptions(timeout=99, retries=5))
        assert os.environ["GDAL_HTTP_TIMEOUT"] == "7"
        assert os.environ["GDAL_HTTP_MAX_RETRY"] == "5"
        assert os.environ["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
        remote.configure(RemoteOptions(retries=1))  # ours: changed again
        assert os.environ["GDAL_HTTP_MAX_RETRY"] == "1"
    finally:
        remote.configure(before)
