"""The Leaflet viewer in headless Chromium, and its point query against the source files."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from tests.wmts_support import LiveServer, create_job, ndvi_graph
from tileserver.web.assets import leaflet_dir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _dump_dom(url: str, profile) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--window-size=800,600",
           "--virtual-time-budget=30000", "--dump-dom", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.fixture
def live(small_app):
    server = LiveServer(small_app)
    yield server
    server.close()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
@pytest.mark.skipif(not (leaflet_dir() / "leaflet.js").exists(),
                    reason="Leaflet is not installed (python -m tileserver.web.assets install)")
@pytest.mark.parametrize("reduce,query", [(None, ""), (None, "?time=2020-05-01"),
                                          ("min_time", "")])
def test_viewer_loads_all_tiles_in_headless_chromium(live, small_app, tmp_path, caplog,
                                                     reduce, query):
    client = small_app.test_client()
    job = create_job(client, ndvi_graph(reduce=reduce), title="viewer test")
    caplog.set_level(logging.INFO, logger="werkzeug")
    dom = _dump_dom(f"{live.url}/jobs/{job}/viewer{query}", tmp_path / "profile")
    body = re.search(r"<body([^>]*)>", dom).group(1)
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body))
    assert attrs["ready"] == "true", attrs
    assert attrs["tile-errors"] == "0", attrs
    assert int(attrs["tiles-loaded"]) >= 4
    assert re.search(r'<div class="ts-panel[^>]*>.*<input id="opacity"', dom)
    slider = re.search(r'<input id="time" type="range" min="0" max="(\d+)"', dom)
    tiles = re.findall(rf"GET (/wmts/1\.0\.0/{job}/default/\S*\.png) HTTP", caplog.text)
    assert len(tiles) == int(attrs["tiles-loaded"])
    if reduce is None:  # a time slider over the three dates, at the chosen/latest one
        day = query.removeprefix("?time=") or "2020-05-21"
        assert slider and slider.group(1) == "2" and f">{day}</span>" in dom
        assert all(f"/default/{day}/GoogleMapsCompatible/" in t for t in tiles)
    else:
        assert slider is None
        assert all("/default/GoogleMapsCompatible/" in t for t in tiles)


def test_leaflet_is_served_locally(client):
    if not (leaflet_dir() / "leaflet.js").exists():
        pytest.skip("Leaflet is not installed")
    resp = client.get("/static/leaflet/leaflet.js")
    assert resp.status_code == 200 and b"Leaflet" in resp.data[:2000]
    resp.close()
    assert client.get("/static/leaflet/../../secret").status_code == 404


def _sample(path, crs, x, y) -> float:
    with rasterio.open(path) as ds:
        tx, ty = Transformer.from_crs(crs, ds.crs, always_xy=True).transform(x, y)
        row, col = ds.index(tx, ty)
        if not (0 <= row < ds.height and 0 <= col < ds.width):
            return np.nan
        v = ds.read(1, window=((row, row + 1), (col, col + 1)))[0, 0]
        return np.nan if v == ds.nodata else float(v)


def _ndvi_at(folder, crs, x, y) -> float:
    red = _sample(folder / "B04.tif", crs, x, y)
    nir = _sample(folder / "B08.tif", crs, x, y)
    return (nir - red) / (nir + red)


@pytest.mark.parametrize("time,folders", [("2020-05-01", ["test_0"]), (None, ["test_3"])])
def test_point_query_equals_the_source_pixel(client, small_catalog, time, folders):
    job = create_job(client, ndvi_graph())
    root = small_catalog.parent / "TEST"
    found = 0
    for lon, lat in [(9.01, 46.02), (9.03, 46.03), (9.05, 46.045), (9.02, 46.04)]:
        url = f"/jobs/{job}/point?lon={lon}&lat={lat}" + (f"&time={time}" if time else "")
        resp = client.get(url)
        assert resp.status_code == 200
        data = resp.json
        assert data["inside"] and data["time"] == (time or "2020-05-21")
        expected = _ndvi_at(root / folders[0], data["crs"], data["x"], data["y"])
        value = data["values"]["ndvi"]
        if np.isnan(expected):
            assert value is None
        else:
            found += 1
            assert value == pytest.approx(expected, abs=1e-6)
    assert found >= 2


def test_point_query_errors_and_outside(client):
    job = create_job(client, ndvi_graph(reduce="min_time"))
    assert client.get(f"/jobs/{job}/point?lon=x&lat=1").status_code == 400
    assert client.get(f"/jobs/{job}/point?lon=200&lat=1").json["locator"] == "lon"
    assert client.get(f"/jobs/{job}/point?lon=1").status_code == 400
    out = client.get(f"/jobs/{job}/point?lon=20&lat=10").json
    assert out["inside"] is False and out["values"] is None
    assert client.get("/jobs/nope/point?lon=1&lat=1").status_code == 404
    assert client.get("/jobs/nope/viewer").status_code == 404


def test_viewer_time_must_be_a_date_of_the_job(client):
    job = create_job(client, ndvi_graph())
    assert client.get(f"/jobs/{job}/viewer?time=2020-05-11").status_code == 200
    resp = client.get(f"/jobs/{job}/viewer?time=1999-01-01")
    assert resp.status_code == 400 and resp.json["locator"] == "time"
