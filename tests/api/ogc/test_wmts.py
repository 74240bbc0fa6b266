"""WMTS 1.0.0 of lazy jobs: capabilities (XSD, XPath, OWSLib, GDAL), tiles as data, errors,
time dimension, styles, HTTP caching, and the global /wmts endpoint."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.io import MemoryFile

from tests.support.wmts import (
    NS,
    assert_ows_exception,
    assert_valid,
    create_job,
    create_service,
    ndvi_graph,
    reference_ndvi,
)
from tileserver.maps.tilematrix import get_tms, tile_view

CAPS_XSD = "wmts/1.0/wmtsGetCapabilities_response.xsd"
Z, ROW, COL = "14", 5826, 8602  # a tile inside the synthetic area
ITEMS = [("2020-05-01", "test_0"), ("2020-05-11", "test_1"), ("2020-05-11", "test_2"),
         ("2020-05-21", "test_3")]


@pytest.fixture
def wmts(client):
    """A min_time(NDVI) job and an NDVI job (with a time axis), each with a WMTS service."""
    reduced = create_job(client, ndvi_graph(reduce="min_time"), title="min NDVI")
    timed = create_job(client, ndvi_graph(), title="NDVI by date")
    return {
        "reduced": (reduced, create_service(client, reduced)),
        "timed": (timed, create_service(client, timed)),
    }


def _path(service):
    return service["service_url"].replace("http://localhost", "")


def _kvp_tile(client, service, layer, fmt="image/png", tms="GoogleMapsCompatible", z=Z,
              row=ROW, col=COL, extra=""):
    return client.get(
        f"{_path(service)}?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={layer}"
        f"&STYLE=default&FORMAT={fmt}&TILEMATRIXSET={tms}&TILEMATRIX={z}&TILEROW={row}"
        f"&TILECOL={col}{extra}")


def _tile_ref(catalog_dir, tms_id, z, row, col, items, reduce=None):
    tms = get_tms(tms_id)
    view = tile_view(tms, tms.matrix(z), row, col)
    return reference_ndvi(catalog_dir, items, "B04", "B08", view.crs, view.transform,
                          (view.height, view.width), reduce=reduce), view


def _assert_close_mostly(actual, expected, max_bad=0.002):
    """Equal values and nodata, allowing a few pixels on nearest-neighbour ties."""
    both = np.isfinite(actual) & np.isfinite(expected)
    same_mask = np.isfinite(actual) == np.isfinite(expected)
    close = np.isclose(actual, expected, atol=1e-6, equal_nan=True)
    assert both.sum() > 1000
    assert (~same_mask).mean() <= max_bad, (~same_mask).mean()
    assert (~close).mean() <= max_bad, (~close).mean()


# -- capabilities ----------------------------------------------------------------------


def test_capabilities_kvp_and_rest_identical_and_schema_valid(client, wmts):
    job, service = wmts["reduced"]
    kvp = client.get(f"{_path(service)}?SERVICE=WMTS&REQUEST=GetCapabilities")
    rest = client.get(f"{_path(service)}/1.0.0/WMTSCapabilities.xml")
    assert kvp.status_code == rest.status_code == 200
    assert kvp.data == rest.data
    doc = assert_valid(kvp.data, CAPS_XSD)
    assert doc.tag == "{http://www.opengis.net/wmts/1.0}Capabilities"  # default namespace
    assert b"<Layer>" in kvp.data and b"<ows:Identifier>" in kvp.data  # QGIS reads literally
    layers = doc.findall("wmts:Contents/wmts:Layer", NS)
    assert [lyr.findtext("ows:Identifier", namespaces=NS) for lyr in layers] == [job]
    assert layers[0].find("wmts:Dimension", NS) is None  # time axis reduced
    tms_ids = [t.findtext("ows:Identifier", namespaces=NS)
               for t in doc.findall("wmts:Contents/wmts:TileMatrixSet", NS)]
    assert tms_ids == ["GoogleMapsCompatible", "WorldCRS84Quad"]
    g = doc.find("wmts:Contents/wmts:TileMatrixSet", NS)
    assert g.findtext("wmts:WellKnownScaleSet", namespaces=NS).endswith("GoogleMapsCompatible")
    m0 = g.find("wmts:TileMatrix", NS)
    assert float(m0.findtext("wmts:ScaleDenominator", namespaces=NS)) == pytest.approx(
        559082264.0287178)
    crs84 = doc.findall("wmts:Contents/wmts:TileMatrixSet", NS)[1]
    assert crs84.findtext("wmts:TileMatrix/wmts:TopLeftCorner", namespaces=NS) == "-180.0 90.0"
    limits = layers[0].find("wmts:TileMatrixSetLink/wmts:TileMatrixSetLimits", NS)
    z14 = [lim for lim in limits if lim.findtext("wmts:TileMatrix", namespaces=NS) == Z][0]
    rows = (int(z14.findtext("wmts:MinTileRow", namespaces=NS)),
            int(z14.findtext("wmts:MaxTileRow", namespaces=NS)))
    assert rows[0] <= ROW <= rows[1]
    templates = [r.get("template") for r in layers[0].findall("wmts:ResourceURL", NS)]
    assert f"/1.0.0/{job}/{{Style}}/{{TileMatrixSet}}/{{TileMatrix}}/{{TileRow}}/{{TileCol}}.png" \
        in templates[0]


def test_time_dimension_lists_the_dates_latest_default(client, wmts):
    job, service = wmts["timed"]
    doc = assert_valid(client.get(f"{_path(service)}/1.0.0/WMTSCapabilities.xml").data,
                       CAPS_XSD)
    dim = doc.find("wmts:Contents/wmts:Layer/wmts:Dimension", NS)
    assert dim.findtext("ows:Identifier", namespaces=NS) == "Time"
    values = [v.text for v in dim.findall("wmts:Value", NS)]
    assert values == sorted({d for d, _ in ITEMS})
    assert dim.findtext("wmts:Default", namespaces=NS) == values[-1]
    template = doc.find("wmts:Contents/wmts:Layer/wmts:ResourceURL", NS).get("template")
    assert "/{Style}/{Time}/{TileMatrixSet}/" in template


def test_global_wmts_lists_every_job_of_the_user(client, wmts):
    extra = create_job(client, ndvi_graph(reduce="max_time"), title="no service")
    for url in ("/wmts?service=WMTS&request=GetCapabilities", "/wmts/1.0.0/WMTSCapabilities.xml"):
        resp = client.get(url)
        doc = assert_valid(resp.data, CAPS_XSD)
        ids = {lyr.findtext("ows:Identifier", namespaces=NS)
               for lyr in doc.findall("wmts:Contents/wmts:Layer", NS)}
        assert ids == {wmts["reduced"][0], wmts["timed"][0], extra}
    tile = client.get(f"/wmts/1.0.0/{extra}/default/GoogleMapsCompatible/{Z}/{ROW}/{COL}.png")
    assert tile.status_code == 200 and tile.mimetype == "image/png"
    kvp = client.get(f"/wmts?SERVICE=WMTS&REQUEST=GetTile&LAYER={extra}&STYLE=default"
                     f"&FORMAT=image/png&TILEMATRIXSET=GoogleMapsCompatible&TILEMATRIX={Z}"
                     f"&TILEROW={ROW}&TILECOL={COL}")
    assert kvp.data == tile.data
    assert tile.headers["Cache-Control"].startswith("private")  # per-user endpoint


def test_global_wmts_leaves_out_a_table_job_and_logs_it(client, wmts, caplog):
    """A zonal statistics job computes a table, which has no tiles (as in the global /wcs)."""
    table = create_job(client, {"process_id": "zonal_statistics", "args": {
        "imagery": ndvi_graph(), "regions": "/users/me/files/fields.geojson", "func": "avg"}})
    with caplog.at_level("INFO", logger="tileserver.web.ogc.wmts"):
        doc = assert_valid(client.get("/wmts/1.0.0/WMTSCapabilities.xml").data, CAPS_XSD)
    ids = {lyr.findtext("ows:Identifier", namespaces=NS)
           for lyr in doc.findall("wmts:Contents/wmts:Layer", NS)}
    assert ids == {wmts["reduced"][0], wmts["timed"][0]}
    assert f"job {table} computes a table" in caplog.text


# -- tiles as data ---------------------------------------------------------------------


@pytest.mark.parametrize("tms_id,z,row,col", [
    ("GoogleMapsCompatible", Z, ROW, COL),
    ("WorldCRS84Quad", "15", 8004, 34412),
])
def test_tiff_tile_equals_reference_and_png_alpha_is_the_nodata(
        client, wmts, small_catalog, tms_id, z, row, col):
    job, service = wmts["reduced"]
    resp = _kvp_tile(client, service, job, "image/tiff", tms_id, z, row, col)
    assert resp.status_code == 200, resp.data[:300]
    expected, view = _tile_ref(small_catalog.parent / "TEST", tms_id, z, row, col, ITEMS,
                               reduce="min_time")
    with MemoryFile(resp.data) as mem, mem.open() as ds:
        assert ds.dtypes == ("float32",) and ds.count == 1
        assert ds.crs == view.crs
        assert ds.transform.almost_equals(view.transform)
        assert np.isnan(ds.nodata)
        actual = ds.read(1)
    _assert_close_mostly(actual, expected)
    png = _kvp_tile(client, service, job, "image/png", tms_id, z, row, col)
    alpha = np.asarray(Image.open(io.BytesIO(png.data)).convert("RGBA"))[..., 3]
    np.testing.assert_array_equal(alpha == 0, np.isnan(actual))
    rest = client.get(f"{_path(service)}/1.0.0/{job}/default/{tms_id}/{z}/{row}/{col}.png")
    assert rest.data == png.data  # byte-identical KVP and REST


def test_time_selects_one_date_and_reads_only_it(client, wmts, small_catalog, monkeypatch):
    import tileserver.engine.evaluator as evaluator

    job, service = wmts["timed"]
    read = []
    original = evaluator.read_window

    def recording(href, *args, **kwargs):
        read.append(Path(href).parent.name + "/" + Path(href).name)
        return original(href, *args, **kwargs)

    monkeypatch.setattr(evaluator, "read_window", recording)
    resp = _kvp_tile(client, service, job, "image/tiff", extra="&TIME=2020-05-01")
    monkeypatch.setattr(evaluator, "read_window", original)
    assert sorted(read) == ["test_0/B04.tif", "test_0/B08.tif"]  # only that day's item
    expected, _ = _tile_ref(small_catalog.parent / "TEST", "GoogleMapsCompatible", Z, ROW, COL,
                            ITEMS[:1])
    with MemoryFile(resp.data) as mem, mem.open() as ds:
        _assert_close_mostly(ds.read(1), expected)
    # the default is the latest date; REST with {Time} is the same tile
    latest, _ = _tile_ref(small_catalog.parent / "TEST", "GoogleMapsCompatible", Z, ROW, COL,
                          ITEMS[3:])
    default = _kvp_tile(client, service, job, "image/tiff")
    with MemoryFile(default.data) as mem, mem.open() as ds:
        _assert_close_mostly(ds.read(1), latest)
    rest = client.get(f"{_path(service)}/1.0.0/{job}/default/2020-05-21/GoogleMapsCompatible/"
                      f"{Z}/{ROW}/{COL}.tif")
    assert rest.data == default.data


def test_tile_outside_the_data_is_transparent(client, wmts):
    job, service = wmts["reduced"]
    resp = _kvp_tile(client, service, job, row=100, col=100)
    assert resp.status_code == 200
    rgba = np.asarray(Image.open(io.BytesIO(resp.data)).convert("RGBA"))
    assert rgba.shape == (256, 256, 4) and (rgba[..., 3] == 0).all()


def test_jpeg_tile_and_colormap_style(client, small_catalog):
    job = create_job(client, ndvi_graph(reduce="min_time"))
    service = create_service(client, job, args={"colormap": "viridis", "range": [0, 0.8]})
    tif = _kvp_tile(client, service, job, "image/tiff")
    with MemoryFile(tif.data) as mem, mem.open() as ds:
        values = ds.read(1)
    png = np.asarray(Image.open(io.BytesIO(_kvp_tile(client, service, job).data)).convert(
        "RGBA"))
    # the documented ramp: matplotlib's viridis sampled at 256 levels (not the server's table)
    import matplotlib

    lut = (matplotlib.colormaps["viridis"](np.linspace(0.0, 1.0, 256)) * 255).round()
    idx = np.clip(np.nan_to_num((values - 0.0) / 0.8 * 255.0), 0, 255).astype(np.uint8)
    valid = np.isfinite(values)
    np.testing.assert_array_equal(png[valid][:, :3], lut[idx[valid]][:, :3])
    jpeg = _kvp_tile(client, service, job, "image/jpeg")
    assert jpeg.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.data)).size == (256, 256)


def test_etag_and_304(client, wmts):
    job, service = wmts["reduced"]
    first = _kvp_tile(client, service, job)
    assert first.headers["ETag"] and first.headers["Cache-Control"] == "public, max-age=60"
    path = f"{_path(service)}/1.0.0/{job}/default/GoogleMapsCompatible/{Z}/{ROW}/{COL}.png"
    again = client.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    other = client.get(path.replace(f"/{COL}.png", f"/{COL + 1}.png"),
                       headers={"If-None-Match": first.headers["ETag"]})
    assert other.status_code == 200


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("query,code,locator,status", [
    ("REQUEST=GetCapabilities", "MissingParameterValue", "service", 400),
    ("SERVICE=WMTS", "MissingParameterValue", "request", 400),
    ("SERVICE=WMS&REQUEST=GetCapabilities", "InvalidParameterValue", "service", 400),
    ("SERVICE=WMTS&REQUEST=GetCapabilities&ACCEPTVERSIONS=2.0.0",
     "VersionNegotiationFailed", "acceptversions", 400),
    ("SERVICE=WMTS&REQUEST=GetFeatureInfo", "OperationNotSupported", "request", 501),
    ("SERVICE=WMTS&REQUEST=GetTile&LAYER={job}&STYLE=default&FORMAT=image/png"
     "&TILEMATRIXSET=GoogleMapsCompatible&TILEMATRIX=14&TILEROW=5826",
     "MissingParameterValue", "tilecol", 400),
    ("SERVICE=WMTS&REQUEST=GetTile&LAYER=nope&STYLE=default&FORMAT=image/png"
     "&TILEMATRIXSET=GoogleMapsCompatible&TILEMATRIX=14&TILEROW=5826&TILECOL=1",
     "InvalidParameterValue", "layer", 400),
    ("SERVICE=WMTS&REQUEST=GetTile&LAYER={job}&STYLE=fancy&FORMAT=image/png"
     "&TILEMATRIXSET=GoogleMapsCompatible&TILEMATRIX=14&TILEROW=5826&TILECOL=1",
     "InvalidParameterValue", "style", 400),
    ("SERVICE=WMTS&REQUEST=GetTile&LAYER={job}&STYLE=default&FORMAT=image/gif"
     "&TILEMATRIXSET=GoogleMapsCompatible&TILEMATRIX=14&TILEROW=5826&TILECOL=1",
     "InvalidParameterValue", "format", 400),
    ("SERVICE=WMTS&REQUEST=GetTile&LAYER={job}&STYLE=default&FORMAT=image/png"
     "&TILEMATRIXSET=EPSG:999&TILEMATRIX=14&TILEROW=5826&TILECOL=1",
     "InvalidParameterValue", "tilematrixset", 400),
    ("SERVICE=WMTS&REQUEST=GetTile&LAYER={job}&STYLE=default&FORMAT=image/png"
     "&TILEMATRIXSET=GoogleMapsCompatible&TILEMATRIX=40&TILEROW=5826&TILECOL=1",
     "InvalidParameterValue", "tilematrix", 400),
    ("SERVICE=WMTS&REQUEST=GetTile&LAYER={job}&STYLE=default&FORMAT=image/png"
     "&TILEMATRIXSET=GoogleMapsCompatible&TILEMATRIX=14&TILEROW=x&TILECOL=1",
     "InvalidParameterValue", "tilerow", 400),
    ("SERVICE=WMTS&REQUEST=GetTile&LAYER={job}&STYLE=default&FORMAT=image/png"
     "&TILEMATRIXSET=GoogleMapsCompatible&TILEMATRIX=2&TILEROW=1&TILECOL=4",
     "TileOutOfRange", "tilecol", 400),
    ("SERVICE=WMTS&REQUEST=GetTile&LAYER={job}&STYLE=default&FORMAT=image/png"
     "&TILEMATRIXSET=GoogleMapsCompatible&TILEMATRIX=2&TILEROW=-1&TILECOL=0",
     "TileOutOfRange", "tilerow", 400),
])
def test_errors_are_valid_exception_reports(client, wmts, query, code, locator, status):
    job, service = wmts["reduced"]
    resp = client.get(f"{_path(service)}?{query.format(job=job)}")
    assert_ows_exception(resp, code, locator, status)


def test_time_not_a_date_of_the_layer(client, wmts):
    job, service = wmts["timed"]
    resp = _kvp_tile(client, service, job, extra="&TIME=1999-01-01")
    assert_ows_exception(resp, "InvalidParameterValue", "time")


def test_rest_bad_extension_and_deleted_or_canceled_is_404(client, wmts):
    job, service = wmts["reduced"]
    base = f"{_path(service)}/1.0.0/{job}/default/GoogleMapsCompatible/{Z}/{ROW}"
    assert_ows_exception(client.get(f"{base}/{COL}.bmp"), "InvalidParameterValue", "format")
    assert client.delete(f"/services/{service['service_id']}").status_code == 204
    assert client.get(f"{base}/{COL}.png").status_code == 404
    assert client.get(f"{_path(service)}?SERVICE=WMTS&REQUEST=GetCapabilities"
                      ).status_code == 404
    job2, service2 = wmts["timed"]
    assert client.delete(f"/jobs/{job2}").status_code == 204
    assert client.get(f"{_path(service2)}/1.0.0/WMTSCapabilities.xml").status_code == 404


# -- real clients ----------------------------------------------------------------------


def test_owslib_reads_capabilities_and_tiles_of_several_jobs(live, small_app):
    from owslib.wmts import WebMapTileService

    client = small_app.test_client()
    jobs = [create_job(client, ndvi_graph(reduce=r)) for r in ("min_time", "max_time")]
    for job in jobs:
        create_service(client, job)
    wmts = WebMapTileService(f"{live.url}/wmts/1.0.0/WMTSCapabilities.xml")
    assert set(jobs) <= set(wmts.contents)
    assert {"GoogleMapsCompatible", "WorldCRS84Quad"} <= set(wmts.tilematrixsets)
    tiles = []
    for job in jobs:
        layer = wmts.contents[job]
        assert "image/tiff" in layer.formats
        tile = wmts.gettile(layer=job, tilematrixset="GoogleMapsCompatible", tilematrix=Z,
                            row=ROW, column=COL, format="image/tiff", style="default")
        with MemoryFile(tile.read()) as mem, mem.open() as ds:
            tiles.append(ds.read(1))
    assert np.nanmin(tiles[1] - tiles[0]) >= 0  # max >= min pixel-wise
    assert np.nanmax(tiles[1] - tiles[0]) > 0


@pytest.mark.filterwarnings("ignore:Truth-testing of elements:FutureWarning")  # OWSLib's
def test_owslib_reads_the_time_dimension_and_selects_a_date(live, small_app, small_catalog):
    from owslib.wmts import WebMapTileService

    client = small_app.test_client()
    job = create_job(client, ndvi_graph())
    service = create_service(client, job)
    url = service["service_url"].replace("http://localhost", live.url)
    wmts = WebMapTileService(f"{url}?SERVICE=WMTS&REQUEST=GetCapabilities")
    dim = wmts.contents[job].dimensions["Time"]
    assert dim["values"] == ["2020-05-01", "2020-05-11", "2020-05-21"]
    assert dim["default"] == "2020-05-21"
    tile = wmts.gettile(layer=job, tilematrixset="GoogleMapsCompatible", tilematrix=Z, row=ROW,
                        column=COL, format="image/tiff", style="default", TIME="2020-05-11")
    expected, _ = _tile_ref(small_catalog.parent / "TEST", "GoogleMapsCompatible", Z, ROW, COL,
                            ITEMS[1:3])  # the two acquisitions of that day, mosaicked
    with MemoryFile(tile.read()) as mem, mem.open() as ds:
        _assert_close_mostly(ds.read(1), expected)


def test_gdal_wmts_driver_reads_the_layer(live, small_app, small_catalog):
    client = small_app.test_client()
    job = create_job(client, ndvi_graph(reduce="min_time"))
    service = create_service(client, job)
    url = service["service_url"].replace("http://localhost", live.url)
    tms = get_tms("GoogleMapsCompatible")
    view = tile_view(tms, tms.matrix(Z), ROW, COL)
    expected, _ = _tile_ref(small_catalog.parent / "TEST", "GoogleMapsCompatible", Z, ROW, COL,
                            ITEMS, reduce="min_time")
    with rasterio.Env(GDAL_ENABLE_WMS_CACHE="NO"):
        with rasterio.open(f"WMTS:{url}/1.0.0/WMTSCapabilities.xml,layer={job},"
                           f"tilematrixset=GoogleMapsCompatible,tilematrix={Z}") as ds:
            assert ds.crs.to_epsg() == 3857
            assert ds.res[0] == pytest.approx(view.res[0])
            window = rasterio.windows.from_bounds(*view.bounds, transform=ds.transform)
            data = ds.read(window=window.round_offsets().round_lengths())
    assert data.shape[0] == 4  # RGBA from the PNG tiles
    np.testing.assert_array_equal(data[3] == 0, np.isnan(expected) | (data[3] == 0))
    assert ((data[3] == 0) == np.isnan(expected)).mean() > 0.998


# -- laziness and the shared cache -----------------------------------------------------


def _counter(metric) -> float:
    return sum(s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total"))


def test_a_tile_reads_only_its_window_at_its_overview_level(client, wmts):
    from tileserver import metrics

    job, service = wmts["reduced"]
    full_res = 4 * 2 * 512 * 512  # 4 items x 2 bands of 512x512 at 10 m
    before = _counter(metrics.PIXELS_READ)
    assert _kvp_tile(client, service, job, z="11", row=728, col=1075).status_code == 200
    zoomed_out = _counter(metrics.PIXELS_READ) - before
    assert 0 < zoomed_out < full_res / 8  # ~76 m pixels: read from the 40 m overview
    before = _counter(metrics.PIXELS_READ)
    assert _kvp_tile(client, service, job).status_code == 200
    zoomed_in = _counter(metrics.PIXELS_READ) - before
    assert 0 < zoomed_in < full_res / 2  # one 2.4 km tile of the 5 km square


def test_jobs_sharing_a_subgraph_share_the_cache(client, wmts):
    from tileserver import metrics

    job, service = wmts["reduced"]  # min_time(NDVI(TEST))
    other = create_job(client, ndvi_graph(reduce="max_time"))
    other_service = create_service(client, other)
    assert _kvp_tile(client, service, job, "image/tiff").status_code == 200
    reads, hits = _counter(metrics.SOURCE_READS), _counter(metrics.CACHE_HITS)
    assert _kvp_tile(client, other_service, other, "image/tiff").status_code == 200
    assert _counter(metrics.SOURCE_READS) == reads  # NDVI of this tile came from the cache
    assert _counter(metrics.CACHE_HITS) > hits


def test_patching_the_job_or_the_service_changes_the_tiles(client, wmts):
    job, service = wmts["reduced"]
    before = _kvp_tile(client, service, job, "image/tiff")
    patched = client.patch(f"/jobs/{job}", json={"process_graph": ndvi_graph(reduce="max_time")})
    assert patched.status_code == 200
    after = _kvp_tile(client, service, job, "image/tiff")
    assert after.headers["ETag"] != before.headers["ETag"]
    with MemoryFile(before.data) as m1, m1.open() as a, MemoryFile(after.data) as m2, \
            m2.open() as b:
        diff = b.read(1) - a.read(1)
    assert np.nanmin(diff) >= 0 and np.nanmax(diff) > 0  # max_time >= min_time
    png_before = _kvp_tile(client, service, job)
    resp = client.patch(f"/services/{service['service_id']}",
                        json={"args": {"colormap": "magma", "range": [0, 1]}})
    assert resp.status_code == 200
    png_after = _kvp_tile(client, service, job)
    assert png_after.headers["ETag"] != png_before.headers["ETag"]
    assert png_after.data != png_before.data


def test_each_style_has_a_legend_url_with_the_ramp_range_and_unit(client):
    """LegendURL (schema-valid, as OWSLib and QGIS read it) -> a PNG whose ramp has the
    colours of the style (matplotlib's own colormap, sampled independently)."""
    import matplotlib
    from owslib.wmts import WebMapTileService

    from tileserver.render.legend import ramp_pixels

    job = create_job(client, ndvi_graph(reduce="min_time"), title="min NDVI")
    service = create_service(client, job, args={"colormap": "magma", "range": [0, 0.8]})
    caps = client.get(f"{_path(service)}/1.0.0/WMTSCapabilities.xml")
    doc = assert_valid(caps.data, CAPS_XSD)
    (legend,) = doc.findall(".//wmts:Style/wmts:LegendURL", NS)
    href = legend.get("{http://www.w3.org/1999/xlink}href")
    assert href == f"{service['service_url']}/1.0.0/{job}/default/legend.png"
    assert legend.get("format") == "image/png"
    style = WebMapTileService(url="x", xml=caps.data).contents[job].styles["default"]
    assert style["legend"] == href and style["format"] == "image/png"
    resp = client.get(href.replace("http://localhost", ""))
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    img = Image.open(io.BytesIO(resp.data))
    assert img.size == (int(legend.get("width")), int(legend.get("height")))
    ramp = ramp_pixels(resp.data).astype(int)
    expected = (matplotlib.colormaps["magma"](np.linspace(0, 1, len(ramp)))[:, :3] * 255)
    assert np.abs(ramp - expected).max() <= 6  # low to high, the tiles' colours
    # the global endpoint shows the job's own style (the NDVI default); unknown styles and
    # layers are OGC errors
    own = client.get(f"/wmts/1.0.0/{job}/default/legend.png")
    ramp = ramp_pixels(own.data).astype(int)
    expected = (matplotlib.colormaps["RdYlGn"](np.linspace(0, 1, len(ramp)))[:, :3] * 255)
    assert np.abs(ramp - expected).max() <= 6
    assert_ows_exception(client.get(f"{_path(service)}/1.0.0/{job}/nope/legend.png"),
                         "InvalidParameterValue", "style")
    assert_ows_exception(client.get(f"{_path(service)}/1.0.0/nope/default/legend.png"),
                         "InvalidParameterValue", "layer")


def test_legend_says_what_the_values_are():
    from tileserver.render.legend import legend_of
    from tileserver.render.styles import Style, default_style

    ndvi = legend_of(default_style("ndvi"), "ndvi").to_json()
    assert ndvi["title"] == "NDVI (unitless)" and ndvi["range"] == [-1.0, 1.0]
    assert ndvi["ticks"] == [-1.0, 0.0, 1.0] and ndvi["colors"][0] == "#a50026"
    count = legend_of(default_style("count", ndates=4), "count").to_json()
    assert count["unit"] == "number of dates" and count["range"] == [0.0, 4.0]
    rgb = legend_of(Style(None, 0.0, 3000.0), "reflectance").to_json()
    assert rgb["rgb"] and rgb["title"].startswith("RGB composite")
