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

from tests.support.requirements import require, requires
from tests.support.wmts import LiveServer, create_job, create_service, ndvi_graph

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _dump_dom(url: str, profile) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--window-size=800,600",
           "--virtual-time-budget=30000", "--dump-dom", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


@requires("chromium", "leaflet")
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
    require("leaflet")
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


def _screenshot(url: str, profile, out) -> None:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           # the window size of _dump_dom: the same layout
           "--disable-sync", f"--user-data-dir={profile}", "--window-size=800,600",
           "--hide-scrollbars", "--virtual-time-budget=30000", f"--screenshot={out}", url]
    subprocess.run(cmd, capture_output=True, timeout=120, check=True)


@requires("chromium", "leaflet")
def test_viewer_paints_legend_jobs_dates_links_and_time_series(live, small_app, tmp_path):
    """The page as a browser paints it: the legend's ramp has the style's colours, the map
    has tiles in those colours; the DOM lists the user's jobs, labelled dates, the OGC URLs,
    and the clicked pixel's time series (one point per valid date, as /point says)."""
    import io

    import matplotlib
    from PIL import Image

    client = small_app.test_client()
    timed = create_job(client, ndvi_graph(reduce=None), title="NDVI by date")
    reduced = create_job(client, ndvi_graph(reduce="min_time"), title="min NDVI")
    service = create_service(client, timed, "wmts")
    lon, lat = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True).transform(
        501_005, 5_099_005)
    url = f"{live.url}/jobs/{timed}/viewer?at={lon},{lat}"
    dom = _dump_dom(url, tmp_path / "profile")
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', re.search(r"<body([^>]*)>",
                                                                       dom).group(1)))
    assert attrs["ready"] == "true" and attrs["tile-errors"] == "0", attrs
    # the layer list: both jobs, the shown one marked
    assert re.search(rf'<li class="current" data-job="{timed}"><a href="/jobs/{timed}/viewer">'
                     r"NDVI by date</a>", dom)
    assert f'data-job="{reduced}"><a href="/jobs/{reduced}/viewer">min NDVI</a>' in dom
    # labelled dates under the slider, the latest shown
    ticks = re.findall(r'<span data-index="(\d+)">([\d-]+)</span>', dom)
    assert ticks == [("0", "2020-05-01"), ("1", "2020-05-11"), ("2", "2020-05-21")]
    assert '<span id="time-label">2020-05-21</span>' in dom
    # legend: title with the unit and the range's labels
    assert '<div id="legend-title">NDVI (unitless)</div>' in dom
    assert re.findall(r'<div id="legend-ticks">(.*?)</div>', dom)[0].count("<span") == 3
    # the URLs for QGIS: this job's WMTS service and the global endpoints
    assert f'value="{service["service_url"].replace("http://localhost", live.url)}' \
           f'/1.0.0/WMTSCapabilities.xml"' in dom
    assert f'value="{live.url}/wcs?SERVICE=WCS&amp;REQUEST=GetCapabilities"' in dom
    # the time series of the queried pixel: one plotted point per valid date
    point = client.get(f"/jobs/{timed}/point?lon={lon}&lat={lat}&series=1").json
    valid = [s for s in point["series"] if s["values"]["ndvi"] is not None]
    assert [s["time"] for s in point["series"]] == ["2020-05-01", "2020-05-11", "2020-05-21"]
    assert len(valid) >= 2
    plot = re.search(r'<svg[^>]*class="ts-plot"[^>]*data-points="(\d+)"', dom)
    assert plot and int(plot.group(1)) == len(valid)
    assert dom.count("<circle") >= len(valid)

    # what is painted
    shot = tmp_path / "viewer.png"
    _screenshot(url, tmp_path / "profile2", shot)
    rgb = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")).astype(int)
    lut = (matplotlib.colormaps["RdYlGn"](np.linspace(0, 1, 256))[:, :3] * 255).round()
    left, top, width, height = map(int, attrs["legend-rect"].split(","))
    row = rgb[top + height // 2, left + 2:left + width - 2]
    expected = (matplotlib.colormaps["RdYlGn"](np.linspace(0, 1, len(row)))[:, :3] * 255)
    assert np.abs(row - expected).max() <= 12, "the legend ramp is RdYlGn, low to high"
    mx, my, mw, mh = map(int, attrs["map-rect"].split(","))
    area = rgb[my:my + mh, mx:mx + mw].reshape(-1, 3)[::7]
    distance = np.abs(area[:, None, :] - lut[None]).max(axis=2).min(axis=1)
    grey = (np.ptp(area, axis=1) < 6)
    painted = ((distance <= 6) & ~grey).mean()
    assert painted > 0.2, f"only {painted:.0%} of the map shows NDVI colours"
    assert (rgb[300, 5] == [247, 247, 247]).all()  # the side panel
    assert 'id="basemap"' not in dom  # no base map unless configured (works offline)


@requires("chromium", "leaflet")
def test_viewer_base_map_is_an_xyz_setting(make_app, small_catalog, tmp_path):
    # any XYZ template works; this one is served by the server itself (no internet)
    app = make_app([small_catalog], viewer_basemap_url="/static/leaflet/images/layers.png"
                   "?z={z}&x={x}&y={y}", viewer_basemap_attribution="test base map")
    server = LiveServer(app)
    try:
        job = create_job(app.test_client(), ndvi_graph(reduce="min_time"))
        dom = _dump_dom(f"{server.url}/jobs/{job}/viewer", tmp_path / "profile")
    finally:
        server.close()
    assert re.search(r'<input id="basemap" type="checkbox" checked="checked">', dom)
    base_tiles = re.findall(r'<img [^>]*src="/static/leaflet/images/layers\.png\?z=\d+', dom)
    assert len(base_tiles) >= 4
    assert "test base map" in dom


def test_point_series_equals_the_source_pixels(client, small_catalog):
    job = create_job(client, ndvi_graph())
    root = small_catalog.parent / "TEST"
    checked = 0
    for lon, lat in [(9.01, 46.02), (9.03, 46.03), (9.02, 46.04)]:
        data = client.get(f"/jobs/{job}/point?lon={lon}&lat={lat}&series=true").json
        assert [s["time"] for s in data["series"]] == ["2020-05-01", "2020-05-11",
                                                       "2020-05-21"]
        for entry, folder in ((data["series"][0], "test_0"), (data["series"][2], "test_3")):
            expected = _ndvi_at(root / folder, data["crs"], data["x"], data["y"])
            value = entry["values"]["ndvi"]
            if np.isnan(expected):
                assert value is None
            else:
                checked += 1
                assert value == pytest.approx(expected, abs=1e-6)
        # the series agrees with the single-date answer of the same pixel
        assert data["series"][-1]["values"] == data["values"]
    assert checked >= 3
    reduced = create_job(client, ndvi_graph(reduce="min_time"))
    assert "series" not in client.get(f"/jobs/{reduced}/point?lon=9.01&lat=46.02&series=1").json
    bad = client.get(f"/jobs/{job}/point?lon=9.01&lat=46.02&series=maybe")
    assert bad.status_code == 400 and bad.json["locator"] == "series"
    bad = client.get(f"/jobs/{job}/viewer?at=9.01")
    assert bad.status_code == 400 and bad.json["locator"] == "at"
