"""WMS 1.3.0 and 1.1.1 over lazy jobs, with real clients: OWSLib's ``WebMapService`` and
GDAL's WMS driver (through rasterio) against a real HTTP server in a thread; values compared
with the WCS coverage and with a reference computed with pystac + plain rasterio + numpy
(``tests/support/core.py``)."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import rasterio
import rasterio.windows
from lxml import etree
from numpy.testing import assert_allclose
from owslib.util import ServiceException
from owslib.wms import WebMapService
from PIL import Image
from pyproj import Transformer
from rasterio.io import MemoryFile
from rasterio.warp import transform_bounds

from tests.support.core import bbox, call, leaf, ndvi, reference_stack
from tests.support.wmts import schema_dir, xsd
from tileserver.datacube.view import View

#: The synthetic square of EPSG:32632 (left, bottom, right, top), 512 x 512 pixels of 10 m.
SQUARE = (500_000.0, 5_094_880.0, 505_120.0, 5_100_000.0)
DATES = ["2020-05-01", "2020-05-11", "2020-05-21"]
OGC = "{http://www.opengis.net/ogc}"
WMS = "{http://www.opengis.net/wms}"


def _ndvi_series():
    box = bbox(leaf(), SQUARE[0], SQUARE[2], SQUARE[3], SQUARE[1], srs="EPSG:32632")
    return call("NDVI", box, red="B04", nir="B08")


@pytest.fixture(scope="module")
def jobs(module_app, server):
    """``series`` (NDVI on three dates, nodata stripes), ``reduced`` (its minimum), and a
    ``wms`` service of the series: name -> (job id, service URL on the live server)."""
    client = module_app.test_client()
    out = {}
    for name, graph in (("series", _ndvi_series()),
                        ("reduced", call("min_time", _ndvi_series()))):
        job = client.post("/jobs", json={"process_graph": graph, "title": f"NDVI {name}",
                                         "description": f"NDVI {name} of the square"}
                          ).get_json()["job_id"]
        resp = client.post("/services", json={"job_id": job, "type": "wms",
                                              "args": {"colormap": "viridis"}})
        assert resp.status_code == 201, resp.get_json()
        path = f"/service/wms/{resp.get_json()['service_id']}"
        out[name] = (job, server.url + path)
    return out


def reference(catalog, view: View) -> tuple[list[str], np.ndarray]:
    """``(days, NDVI (t, y, x))`` of B04/B08 on ``view``, plain rasterio."""
    days, stack = reference_stack(catalog, "TEST", view, ["B04", "B08"])
    return days, ndvi(stack[:, 0], stack[:, 1])


def assert_values(actual, expected):
    """Same values and same nodata pixels (float32 vs float64 arithmetic)."""
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    assert np.isfinite(actual).mean() > 0.5  # the comparison is not vacuous
    assert_allclose(actual, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


def _wgs84():
    return transform_bounds("EPSG:32632", "EPSG:4326", *SQUARE, densify_pts=21)


# -- capabilities ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.3.0", "1.1.1"])
def test_owslib_reads_the_capabilities(jobs, server, version):
    job, url = jobs["series"]
    for endpoint in (url, f"{server.url}/wms"):
        wms = WebMapService(endpoint, version=version)
        assert job in wms.contents
        assert {op.name for op in wms.operations} >= {"GetCapabilities", "GetMap",
                                                       "GetFeatureInfo"}
        layer = wms[job]
        assert layer.title == "NDVI series" and layer.abstract == "NDVI series of the square"
        assert layer.queryable == 1
        assert {"EPSG:3857", "EPSG:4326", "EPSG:32632"} <= set(layer.crsOptions)
        assert layer.boundingBoxWGS84 == pytest.approx(_wgs84(), abs=1e-9)
        assert [t[:10] for t in layer.timepositions] == DATES
        assert layer.defaulttimeposition == DATES[-1]
        # the service's style is viridis (its args); the global endpoint has the job's own
        ramps = {"default", "gray"} | ({"viridis"} if endpoint.endswith("/wms") else set())
        assert set(layer.styles) == ramps
        assert all(s["legend"].startswith(endpoint) for s in layer.styles.values())
        assert {"image/png", "image/jpeg", "image/tiff"} <= set(
            wms.getOperationByName("GetMap").formatOptions)
    reduced = WebMapService(jobs["reduced"][1], version=version)[jobs["reduced"][0]]
    assert reduced.timepositions in (None, [])  # the time axis is reduced: no dimension


def test_capabilities_130_boxes_per_crs_in_axis_order(jobs, module_app):
    job, _ = jobs["series"]
    doc = etree.fromstring(module_app.test_client().get(
        "/wms?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0").data)
    layer = next(e for e in doc.iter(f"{WMS}Layer") if e.findtext(f"{WMS}Name") == job)
    geo = layer.find(f"{WMS}EX_GeographicBoundingBox")
    w, s, e, n = _wgs84()
    assert float(geo.findtext(f"{WMS}westBoundLongitude")) == pytest.approx(w)
    assert float(geo.findtext(f"{WMS}northBoundLatitude")) == pytest.approx(n)
    boxes = {b.get("CRS"): [float(b.get(k)) for k in ("minx", "miny", "maxx", "maxy")]
             for b in layer.findall(f"{WMS}BoundingBox")}
    assert boxes["EPSG:32632"] == pytest.approx(SQUARE)
    assert boxes["EPSG:4326"] == pytest.approx((s, w, n, e))  # 1.3.0: latitude first
    assert boxes["CRS:84"] == pytest.approx((w, s, e, n))
    merc = transform_bounds("EPSG:4326", "EPSG:3857", w, s, e, n)
    assert boxes["EPSG:3857"] == pytest.approx(merc)
    dim = layer.find(f"{WMS}Dimension")
    assert dim.get("name") == "time" and dim.get("units") == "ISO8601"
    assert dim.get("default") == DATES[-1] and dim.text.split(",") == DATES
    for style in layer.findall(f"{WMS}Style"):
        href = style.find(f"{WMS}LegendURL/{WMS}OnlineResource").get(
            "{http://www.w3.org/1999/xlink}href")
        resp = module_app.test_client().get(href.replace("http://localhost", ""))
        assert resp.status_code == 200 and resp.mimetype == "image/png"


def test_documents_are_valid_against_the_official_schemas(jobs, module_app):
    """1.3.0 capabilities (with the SLD GetLegendGraphic extension) and exceptions against
    the XSDs, 1.1.1 capabilities against the DTD (MapProxy's copies of the schemas)."""
    client = module_app.test_client()
    caps = client.get("/wms?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0").data
    schema = xsd("sld/1.1.0/sld_capabilities.xsd")  # imports wms/1.3.0
    assert schema.validate(etree.fromstring(caps)), schema.error_log
    error = client.get("/wms?SERVICE=WMS&REQUEST=GetMap&VERSION=1.3.0&LAYERS=nope").data
    schema = xsd("wms/1.3.0/exceptions_1_3_0.xsd")
    assert schema.validate(etree.fromstring(error)), schema.error_log
    dtd = etree.DTD(str(schema_dir() / "wms" / "1.1.1" / "WMS_MS_Capabilities.dtd"))
    caps = client.get("/wms?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.1.1").data
    assert dtd.validate(etree.fromstring(caps)), dtd.error_log
    for name, _ in (jobs["series"], jobs["reduced"]):
        assert name.encode() in caps


# -- GetMap ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.3.0", "1.1.1"])
def test_owslib_getmap_png_nodata_transparent_and_dates(jobs, version):
    job, url = jobs["series"]
    wms = WebMapService(url, version=version)
    w, s, e, n = _wgs84()
    alphas = {}
    for day in DATES:
        img = wms.getmap(layers=[job], styles=[""], srs="EPSG:4326", bbox=(w, s, e, n),
                         size=(300, 200), format="image/png", transparent=True, time=day)
        rgba = np.asarray(Image.open(io.BytesIO(img.read())).convert("RGBA"))
        assert rgba.shape == (200, 300, 4)
        alphas[day] = rgba[..., 3]
        assert 0.5 < (rgba[..., 3] == 255).mean() < 0.99  # data, and transparent nodata
    # the nodata stripes move with the date
    assert not np.array_equal(alphas[DATES[0]], alphas[DATES[2]])
    jpeg = wms.getmap(layers=[job], styles=["gray"], srs="EPSG:3857",
                      bbox=transform_bounds("EPSG:4326", "EPSG:3857", w, s, e, n),
                      size=(128, 128), format="image/jpeg", bgcolor="#FF0000")
    pic = np.asarray(Image.open(io.BytesIO(jpeg.read())))
    assert pic.shape == (128, 128, 3)


def test_getmap_transparent_false_fills_nodata_with_bgcolor(jobs, module_app):
    job, _ = jobs["series"]
    q = {"SERVICE": "WMS", "REQUEST": "GetMap", "VERSION": "1.3.0", "LAYERS": job,
         "STYLES": "", "CRS": "EPSG:32632", "BBOX": ",".join(map(str, SQUARE)),
         "WIDTH": "128", "HEIGHT": "128", "FORMAT": "image/png"}
    client = module_app.test_client()
    clear = np.asarray(Image.open(io.BytesIO(client.get("/wms", query_string=q).data)))
    filled = np.asarray(Image.open(io.BytesIO(client.get(
        "/wms", query_string={**q, "TRANSPARENT": "FALSE", "BGCOLOR": "0x0000FF"}).data)
        ).convert("RGBA"))
    hole = clear[..., 3] == 0
    assert hole.any() and (filled[..., 3] == 255).all()
    assert (filled[hole][:, :3] == (0, 0, 255)).all()
    assert (filled[~hole][:, :3] == clear[~hole][:, :3]).all()
    # any case (Leaflet and OpenLayers send transparent=true/false)
    lower = client.get("/wms", query_string={**q, "TRANSPARENT": "false",
                                             "BGCOLOR": "0x0000FF"})
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(lower.data)).convert("RGBA")),
                          filled)
    assert client.get("/wms", query_string={**q, "TRANSPARENT": "true"}).data == \
        client.get("/wms", query_string={**q, "TRANSPARENT": "TRUE"}).data


@pytest.mark.parametrize("day", DATES)
def test_getmap_geotiff_on_the_native_grid_equals_the_wcs_coverage(jobs, module_app,
                                                                   small_catalog, day):
    job, _ = jobs["series"]
    client = module_app.test_client()
    tif = client.get("/wms", query_string={
        "SERVICE": "WMS", "REQUEST": "GetMap", "VERSION": "1.3.0", "LAYERS": job,
        "STYLES": "", "CRS": "EPSG:32632", "BBOX": ",".join(map(str, SQUARE)),
        "WIDTH": "512", "HEIGHT": "512", "FORMAT": "image/tiff", "TIME": day})
    assert tif.status_code == 200 and tif.mimetype == "image/tiff"
    wcs = client.get("/wcs", query_string={
        "SERVICE": "WCS", "REQUEST": "GetCoverage", "VERSION": "2.0.1",
        "COVERAGEID": f"job_{job}", "FORMAT": "image/tiff", "SUBSET": f'time("{day}")'})
    assert wcs.status_code == 200, wcs.data[:300]
    with MemoryFile(tif.data) as a, a.open() as ours, MemoryFile(wcs.data) as b, \
            b.open() as coverage:
        assert ours.dtypes == ("float32",) and ours.crs == coverage.crs
        assert tuple(ours.bounds) == pytest.approx(tuple(coverage.bounds))
        values = ours.read(1)
        assert np.array_equal(values, coverage.read(1), equal_nan=True)
        days, ref = reference(small_catalog, View("EPSG:32632", SQUARE, 512, 512))
        assert_values(values, ref[days.index(day)])


def test_getmap_time_list_and_range_show_the_latest_date_inside(jobs, module_app):
    job, _ = jobs["series"]
    client = module_app.test_client()
    base = {"SERVICE": "WMS", "REQUEST": "GetMap", "VERSION": "1.1.1", "LAYERS": job,
            "STYLES": "", "SRS": "EPSG:32632", "BBOX": ",".join(map(str, SQUARE)),
            "WIDTH": "64", "HEIGHT": "64", "FORMAT": "image/tiff"}

    def values(time):
        resp = client.get("/wms", query_string={**base, "TIME": time})
        assert resp.status_code == 200, resp.data[:300]
        with MemoryFile(resp.data) as mem, mem.open() as ds:
            return ds.read(1)

    middle = values("2020-05-11")
    assert np.array_equal(values("2020-05-01,2020-05-11"), middle, equal_nan=True)
    assert np.array_equal(values("2020-05-02/2020-05-15"), middle, equal_nan=True)
    assert np.array_equal(values("2020-05-02T00:00:00Z/2020-05-15T00:00:00Z/P1D"), middle,
                          equal_nan=True)
    assert np.array_equal(values("2020-05-11T10:00:00Z"), middle, equal_nan=True)
    assert np.array_equal(values("2020-01-01/2020-12-31"), values(""), equal_nan=True)
    assert not np.array_equal(values("2020-05-01"), middle, equal_nan=True)


def test_getmap_is_cached_with_an_etag(jobs, module_app):
    job, _ = jobs["series"]
    client = module_app.test_client()
    q = {"SERVICE": "WMS", "REQUEST": "GetMap", "VERSION": "1.3.0", "LAYERS": job,
         "CRS": "EPSG:3857", "BBOX": "1001875,5780000,1008000,5786000", "WIDTH": "200",
         "HEIGHT": "190", "FORMAT": "image/png", "STYLES": "", "TIME": "2020-05-11"}
    first = client.get("/wms", query_string=q)
    second = client.get("/wms", query_string=q)
    assert first.headers["X-Tileserver-Cache"] == "computed"
    assert second.headers["X-Tileserver-Cache"] == "memory" and second.data == first.data
    again = client.get("/wms", query_string=q, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert "private" in first.headers["Cache-Control"]


def test_getmap_composites_several_layers(jobs, module_app):
    client = module_app.test_client()
    a, b = jobs["series"][0], jobs["reduced"][0]
    resp = client.get("/wms", query_string={
        "SERVICE": "WMS", "REQUEST": "GetMap", "VERSION": "1.3.0", "LAYERS": f"{a},{b}",
        "STYLES": "", "CRS": "EPSG:32632", "BBOX": ",".join(map(str, SQUARE)),
        "WIDTH": "64", "HEIGHT": "64", "FORMAT": "image/png"})
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    assert Image.open(io.BytesIO(resp.data)).size == (64, 64)


# -- GDAL's WMS driver -----------------------------------------------------------------


def test_gdal_wms_driver_opens_the_layer(jobs, server):
    job, _ = jobs["series"]
    w, s, e, n = _wgs84()
    name = (f"WMS:{server.url}/wms?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetMap&LAYERS={job}"
            f"&SRS=EPSG:4326&BBOX={w},{s},{e},{n}&FORMAT=image/png&TRANSPARENT=TRUE")
    with rasterio.open(name) as ds:
        assert ds.crs.to_epsg() == 4326 and ds.count == 4
        data = ds.read(out_shape=(4, 256, 256))
        assert 0.5 < (data[3] == 255).mean() < 0.99


def test_gdal_wms_driver_reads_float_values_equal_to_the_source(jobs, server, tmp_path,
                                                                small_catalog):
    """A GDAL WMS service description asking for GeoTIFF blocks: the float32 values of the
    native grid, block by block, equal the reference."""
    job, url = jobs["series"]
    xml = f"""<GDAL_WMS>
  <Service name="WMS"><Version>1.3.0</Version><ServerUrl>{url}?TIME=2020-05-11</ServerUrl>
    <CRS>EPSG:32632</CRS><ImageFormat>image/tiff</ImageFormat><Layers>{job}</Layers>
    <Styles></Styles><BBoxOrder>xyXY</BBoxOrder></Service>
  <DataWindow><UpperLeftX>{SQUARE[0]}</UpperLeftX><UpperLeftY>{SQUARE[3]}</UpperLeftY>
    <LowerRightX>{SQUARE[2]}</LowerRightX><LowerRightY>{SQUARE[1]}</LowerRightY>
    <SizeX>512</SizeX><SizeY>512</SizeY></DataWindow>
  <Projection>EPSG:32632</Projection><BandsCount>1</BandsCount><DataType>Float32</DataType>
  <BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY>
</GDAL_WMS>"""
    path = tmp_path / "layer.xml"
    path.write_text(xml)
    with rasterio.open(path) as ds:
        assert ds.dtypes == ("float32",) and ds.shape == (512, 512)
        # GDAL asks for one 256 x 256 block at a time: each is the job on that block's view
        for row in (0, 256):
            for col in (0, 256):
                window = rasterio.windows.Window(col, row, 256, 256)
                values = ds.read(1, window=window)
                view = View("EPSG:32632", ds.window_bounds(window), 256, 256)
                days, ref = reference(small_catalog, view)
                assert_values(values, ref[days.index("2020-05-11")])


# -- GetFeatureInfo --------------------------------------------------------------------


def _native_pixels(small_catalog):
    days, ref = reference(small_catalog, View("EPSG:32632", SQUARE, 512, 512))
    # a pixel with data on every date, one with nodata on 2020-05-11 (the corner hole)
    return days, ref, [(300, 200), (20, 30), (511, 0)]


@pytest.mark.parametrize("version", ["1.3.0", "1.1.1"])
def test_owslib_getfeatureinfo_gives_the_source_pixel_on_every_date(jobs, small_catalog,
                                                                    version):
    job, url = jobs["series"]
    wms = WebMapService(url, version=version)
    days, ref, pixels = _native_pixels(small_catalog)
    seen_nodata = False
    for col, row in pixels:
        # a map whose pixel (col, row) is the native pixel: the native grid itself
        resp = wms.getfeatureinfo(layers=[job], styles=[""], srs="EPSG:32632", bbox=SQUARE,
                                  size=(512, 512), format="image/png", query_layers=[job],
                                  info_format="application/json", xy=(col, row),
                                  time="2020-05-11")
        (feature,) = json.loads(resp.read())["features"]
        info = feature["properties"]
        assert info["inside"] and info["crs"] == "EPSG:32632"
        assert (info["col"], info["row"]) == (col, row)
        assert info["x"] == SQUARE[0] + (col + 0.5) * 10
        assert info["y"] == SQUARE[3] - (row + 0.5) * 10
        assert [s["time"] for s in info["series"]] == days == DATES
        for step, expected in zip(info["series"], ref[:, row, col], strict=True):
            value = step["bands"]["ndvi"]
            if math.isnan(expected):
                seen_nodata = True
                assert value is None
            else:
                assert value == pytest.approx(expected, rel=1e-5, abs=1e-6)
        assert info["bands"] == info["series"][1]["bands"]  # the requested date
        assert info["data_available_for_dates"] == [
            d for d, v in zip(days, ref[:, row, col], strict=True) if not math.isnan(v)]
        lon, lat = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True
                                        ).transform(info["x"], info["y"])
        assert feature["geometry"]["coordinates"] == pytest.approx([lon, lat], abs=1e-4)
    assert seen_nodata


def test_getfeatureinfo_in_other_crs_and_formats(jobs, module_app, small_catalog):
    job, _ = jobs["series"]
    client = module_app.test_client()
    days, ref, _ = _native_pixels(small_catalog)
    col, row = 300, 200
    x, y = SQUARE[0] + (col + 0.5) * 10, SQUARE[3] - (row + 0.5) * 10
    lon, lat = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True).transform(x, y)
    # a 101 x 101 map in EPSG:4326 (1.3.0: lat/lon) centred on that point
    d = 1e-4
    q = {"SERVICE": "WMS", "REQUEST": "GetFeatureInfo", "VERSION": "1.3.0", "LAYERS": job,
         "QUERY_LAYERS": job, "STYLES": "", "CRS": "EPSG:4326", "WIDTH": "101",
         "HEIGHT": "101", "BBOX": f"{lat - 50.5 * d},{lon - 50.5 * d},{lat + 50.5 * d},"
         f"{lon + 50.5 * d}", "I": "50", "J": "50", "FORMAT": "image/png",
         "INFO_FORMAT": "application/json"}
    info = client.get("/wms", query_string=q).json["features"][0]["properties"]
    assert (info["col"], info["row"]) == (col, row)
    assert info["time"] == DATES[-1]  # the default date
    assert info["bands"]["ndvi"] == pytest.approx(ref[-1, row, col], rel=1e-5)
    text = client.get("/wms", query_string={**q, "INFO_FORMAT": "text/plain"})
    assert text.mimetype == "text/plain" and f"{ref[0, row, col]:.6g}" in text.text
    assert all(day in text.text for day in DATES)
    page = client.get("/wms", query_string={**q, "INFO_FORMAT": "text/html"})
    assert page.mimetype == "text/html" and page.text.count("<tr") == 1 + len(DATES)
    # a reduced layer: its one value, no series
    other = jobs["reduced"][0]
    red = client.get("/wms", query_string={**q, "LAYERS": other, "QUERY_LAYERS": other}
                     ).json["features"][0]["properties"]
    assert "series" not in red
    assert red["bands"]["ndvi"] == pytest.approx(np.fmin.reduce(ref[:, row, col]), rel=1e-5)
    # outside the layer: no values
    far = client.get("/wms", query_string={**q, "BBOX": "10,10,11,11"}).json
    assert far["features"][0]["properties"]["inside"] is False


# -- GetLegendGraphic ------------------------------------------------------------------


def test_getlegendgraphic_per_style(jobs, module_app):
    job, _ = jobs["series"]
    client = module_app.test_client()
    pictures = set()
    for style in ("", "default", "gray"):
        resp = client.get("/wms", query_string={"SERVICE": "WMS",
                                                "REQUEST": "GetLegendGraphic", "LAYER": job,
                                                "STYLE": style, "FORMAT": "image/png"})
        assert resp.status_code == 200 and resp.mimetype == "image/png"
        pictures.add(resp.data)
    assert len(pictures) == 2  # "" is the default style
    blank = client.get("/wms", query_string={"SERVICE": "WMS", "REQUEST": "GetLegendGraphic",
                                             "LAYER": job, "STYLE": " ", "FORMAT": "image/png"})
    assert blank.status_code == 400
    assert _exception(blank)[1:] == ("StyleNotDefined", "style"), blank.data[:300]


# -- exceptions ------------------------------------------------------------------------


def _exception(resp):
    doc = etree.fromstring(resp.data)
    assert doc.tag.endswith("ServiceExceptionReport"), resp.data[:300]
    exc = next(e for e in doc.iter() if isinstance(e.tag, str)
               and e.tag.endswith("ServiceException"))
    return doc, exc.get("code"), exc.get("locator")


MAP = {"SERVICE": "WMS", "REQUEST": "GetMap", "VERSION": "1.3.0", "STYLES": "",
       "CRS": "EPSG:32632", "BBOX": ",".join(map(str, SQUARE)), "WIDTH": "64",
       "HEIGHT": "64", "FORMAT": "image/png"}
BAD = [
    ({"BBOX": "NaN,5094880,505120,5100000"}, "InvalidParameterValue", "bbox"),
    ({"BBOX": "505120,5094880,500000,5100000"}, "InvalidParameterValue", "bbox"),
    ({"BBOX": "1,2,3"}, "InvalidParameterValue", "bbox"),
    ({"BBOX": "-1e300,-1e300,1e300,1e300"}, "InvalidParameterValue", "bbox"),
    ({"WIDTH": "0"}, "InvalidParameterValue", "width"),
    ({"HEIGHT": "-5"}, "InvalidParameterValue", "height"),
    ({"WIDTH": "100000", "HEIGHT": "100000"}, "InvalidParameterValue", "width"),
    ({"CRS": "EPSG:999999"}, "InvalidCRS", "crs"),
    ({"CRS": "urn:nonsense"}, "InvalidCRS", "crs"),
    ({"TIME": "2020-13-45"}, "InvalidDimensionValue", "time"),
    ({"TIME": "2021-01-01"}, "InvalidDimensionValue", "time"),
    ({"TIME": "2020-05-21/2020-05-01"}, "InvalidDimensionValue", "time"),
    ({"TIME": "2020-06-01/2020-06-30"}, "InvalidDimensionValue", "time"),
    ({"TIME": "2020-05-01/"}, "InvalidDimensionValue", "time"),
    ({"LAYERS": "nope"}, "LayerNotDefined", "layers"),
    ({"STYLES": "nope"}, "StyleNotDefined", "styles"),
    ({"FORMAT": "image/gif"}, "InvalidFormat", "format"),
    ({"BGCOLOR": "red"}, "InvalidParameterValue", "bgcolor"),
    ({"TRANSPARENT": "maybe"}, "InvalidParameterValue", "transparent"),
    ({"VERSION": "9.9.9"}, "InvalidParameterValue", "version"),
    ({"REQUEST": "GetStyles"}, "OperationNotSupported", "request"),
    ({"SERVICE": "WFS"}, "InvalidParameterValue", "service"),
    # empty or not the standard's form (issue 25)
    ({"SERVICE": ""}, "InvalidParameterValue", "service"),
    ({"WMTVER": "NaN"}, "InvalidParameterValue", "wmtver"),
    ({"STYLES": " "}, "StyleNotDefined", "styles"),
    ({"TRANSPARENT": "0"}, "InvalidParameterValue", "transparent"),
    ({"TRANSPARENT": ""}, "InvalidParameterValue", "transparent"),
    ({"BGCOLOR": ""}, "InvalidParameterValue", "bgcolor"),
    ({"CRS": None}, "MissingParameterValue", "crs"),
]


@pytest.mark.parametrize(("change", "code", "locator"), BAD,
                         ids=[f"{c}-{next(iter(ch))}" for ch, c, _ in BAD])
def test_bad_getmap_is_a_service_exception(jobs, module_app, change, code, locator):
    job, _ = jobs["series"]
    query = {k: v for k, v in {**MAP, "LAYERS": job, **change}.items() if v is not None}
    resp = module_app.test_client().get("/wms", query_string=query)
    assert 400 <= resp.status_code < 500 or (code == "OperationNotSupported"
                                             and resp.status_code == 501)
    doc, got, loc = _exception(resp)
    assert (got, loc) == (code, locator), resp.data[:400]
    assert doc.get("version") == "1.3.0" and resp.mimetype == "text/xml"


def test_wms111_exceptions_use_its_codes(jobs, module_app):
    job, _ = jobs["series"]
    resp = module_app.test_client().get("/wms", query_string={
        **MAP, "VERSION": "1.1.1", "SRS": "EPSG:0", "LAYERS": job, "CRS": None})
    doc, code, locator = _exception(resp)
    assert resp.status_code == 400 and resp.mimetype == "application/vnd.ogc.se_xml"
    assert (code, locator) == ("InvalidSRS", "srs") and doc.get("version") == "1.1.1"


@pytest.mark.parametrize(("change", "code", "locator"), [
    ({"I": "64"}, "InvalidPoint", "i"), ({"J": "-1"}, "InvalidPoint", "j"),
    ({"I": "NaN"}, "InvalidPoint", "i"), ({"I": None}, "MissingParameterValue", "i"),
    ({"QUERY_LAYERS": "other"}, "LayerNotDefined", "query_layers"),
    ({"INFO_FORMAT": "application/pdf"}, "InvalidFormat", "info_format"),
    ({"INFO_FORMAT": ""}, "InvalidFormat", "info_format"),
    ({"I": "0.5"}, "InvalidPoint", "i")])
def test_bad_getfeatureinfo_is_a_service_exception(jobs, module_app, change, code, locator):
    job, _ = jobs["series"]
    query = {**MAP, "REQUEST": "GetFeatureInfo", "LAYERS": job, "QUERY_LAYERS": job,
             "I": "10", "J": "10", "INFO_FORMAT": "application/json", **change}
    if change.get("QUERY_LAYERS") == "other":
        query["QUERY_LAYERS"] = jobs["reduced"][0]
    query = {k: v for k, v in query.items() if v is not None}
    resp = module_app.test_client().get("/wms", query_string=query)
    assert 400 <= resp.status_code < 500
    assert _exception(resp)[1:] == (code, locator), resp.data[:400]


def test_owslib_raises_the_service_exception(jobs):
    job, url = jobs["series"]
    wms = WebMapService(url, version="1.3.0")
    with pytest.raises(ServiceException, match="not a style"):
        wms.getmap(layers=[job], styles=["nope"], srs="EPSG:32632", bbox=SQUARE,
                   size=(16, 16), format="image/png")


# -- openEO ----------------------------------------------------------------------------


def test_wms_is_an_openeo_service_type(module_app, server):
    client = module_app.test_client()
    assert "wms" in client.get("/capabilities/services").json
    versions = client.get("/.well-known/openeo").json["versions"]
    base = next(v["url"] for v in versions if v["api_version"].startswith("1."))
    path = base.replace("http://localhost", "").rstrip("/")
    types = client.get(f"{path}/service_types").json
    assert "WMS" in types and "GetFeatureInfo" in types["WMS"]["description"]
    body = {"type": "WMS", "process": {"process_graph": {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "TEST", "spatial_extent": {"west": 9.0, "east": 9.02, "south": 46.0,
                                             "north": 46.02},
            "temporal_extent": ["2020-05-01", "2020-05-31"]}},
        "ndvi": {"process_id": "ndvi", "arguments": {"data": {"from_node": "load"},
                                                     "nir": "B08", "red": "B04"},
                 "result": True}}}, "configuration": {"colormap": "magma", "range": [0, 1]}}
    resp = client.post(f"{path}/services", json=body)
    assert resp.status_code == 201, resp.data[:400]
    service = client.get(resp.headers["Location"].replace("http://localhost", "")).json
    assert service["type"] == "WMS" and "/service/wms/" in service["url"]
    caps = WebMapService(service["url"].replace("http://localhost", server.url),
                         version="1.3.0")
    (layer,) = caps.contents.values()
    assert "magma 0 to 1" in {s["title"] for s in layer.styles.values()}


def test_viewer_shows_the_wms_urls(jobs, module_app):
    job, url = jobs["series"]
    page = module_app.test_client().get(f"/jobs/{job}/viewer").text
    assert "/wms?SERVICE=WMS&amp;REQUEST=GetCapabilities" in page
    assert "WMS service of this job" in page
