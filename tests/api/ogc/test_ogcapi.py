"""OGC API - Tiles, Maps, Coverages and Processes over lazy jobs, with real clients: GDAL's
``OGCAPI`` driver (the system GDAL: the wheels of rasterio leave that driver out) and
OWSLib's ``ogcapi`` classes against a real HTTP server in a thread. Values are compared with
the WCS coverage, the WMTS tiles and openEO ``/result``, read with rasterio + numpy."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import morecantile
import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.io import MemoryFile

from tests.support.core import bbox, call, leaf

V1 = "/openeo/1.2"
UTM_BBOX = (500_500.0, 5_095_500.0, 503_060.0, 5_098_060.0)  # left, bottom, right, top
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


def _ndvi(imagery):
    return call("NDVI", imagery, red="B04", nir="B08")


def _bbox(imagery=None):
    b = UTM_BBOX
    return bbox(imagery or leaf(), b[0], b[2], b[3], b[1], srs="EPSG:32632")


GRAPHS = {
    "min": call("min_time", _ndvi(_bbox())),
    "series": _ndvi(_bbox()),
    "bands": call("mean_time", call("filter_bands", _bbox(), bands=["B04", "B08"])),
}


def v1_graph(fmt: str = "GTiff") -> dict:
    """A 1.x flat graph: NDVI over UTM_BBOX in May 2020, the minimum over time."""
    left, bottom, right, top = UTM_BBOX
    return {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "TEST", "spatial_extent": {"west": left, "east": right, "south": bottom,
                                             "north": top, "crs": "EPSG:32632"},
            "temporal_extent": ["2020-05-01", "2020-06-01"], "bands": ["B04", "B08"]}},
        "ndvi": {"process_id": "ndvi", "arguments": {"data": {"from_node": "load"}}},
        "reduce": {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "ndvi"}, "dimension": "t", "reducer": {"process_graph": {
                "r": {"process_id": "min", "arguments": {"data": {"from_parameter": "data"}},
                      "result": True}}}}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "reduce"}, "format": fmt}, "result": True},
    }


@pytest.fixture(scope="module")
def api_app(module_app):
    """The module's app with three lazy jobs (reduced, a time series, two bands)."""
    c = module_app.test_client()
    module_app.jobs = {name: c.post("/jobs", json={"process_graph": g, "title": f"job {name}"}
                                    ).json["job_id"] for name, g in GRAPHS.items()}
    return module_app


@pytest.fixture
def c(api_app):
    return api_app.test_client()


def read(content: bytes):
    """``(array, profile)`` of encoded raster bytes; a palette PNG (maps and tiles of a
    single-band style) as its RGBA pixels, as GDAL and browsers compose them."""
    with MemoryFile(content) as mem, mem.open() as ds:
        values = ds.read()
        if ds.count == 1 and ds.colorinterp[0] == ColorInterp.palette:
            colours = ds.colormap(1)
            table = np.array([colours.get(i, (0, 0, 0, 0)) for i in range(256)], np.uint8)
            values = np.moveaxis(table[values[0]], -1, 0)
        return values, ds.profile


def wcs(c, job: str, *extra: tuple[str, str]):
    pairs = [("SERVICE", "WCS"), ("VERSION", "2.0.1"), ("REQUEST", "GetCoverage"),
             ("COVERAGEID", f"job_{job}"), *extra]
    resp = c.get("/wcs", query_string=pairs)
    assert resp.status_code == 200, resp.data[:300]
    return read(resp.data)


# -- landing page, conformance, collections ------------------------------------------------


def test_landing_page_conformance_and_collections(api_app, c):
    landing = c.get("/ogcapi/")
    assert landing.status_code == 200 and landing.is_json
    rels = {link["rel"] for link in landing.json["links"]}
    assert {"self", "conformance", "data", "http://www.opengis.net/def/rel/ogc/1.0/processes"
            } <= rels
    conf = c.get("/ogcapi/conformance").json["conformsTo"]
    for cls in ("ogcapi-common-1/1.0/conf/core", "ogcapi-tiles-1/1.0/conf/tileset",
                "ogcapi-tiles-1/1.0/conf/geodata-tilesets", "ogcapi-maps-1/1.0/conf/crs",
                "ogcapi-maps-1/1.0/conf/datetime", "ogcapi-coverages-1/1.0/conf/subsetting",
                "ogcapi-coverages-1/1.0/conf/scaling",
                "ogcapi-coverages-1/1.0/conf/field-selection",
                "ogcapi-processes-1/1.0/conf/ogc-process-description",
                "ogcapi-processes-3/0.0/conf/openeo-workflows"):
        assert f"http://www.opengis.net/spec/{cls}" in conf, cls
    listed = {col["id"]: col for col in c.get("/ogcapi/collections").json["collections"]}
    assert set(api_app.jobs.values()) <= set(listed)
    series = c.get(f"/ogcapi/collections/{api_app.jobs['series']}").json
    wmts_times = c.get("/wmts?SERVICE=WMTS&REQUEST=GetCapabilities").data.decode()
    temporal = series["extent"]["temporal"]
    assert temporal["interval"][0][0].startswith("2020-05") and temporal["grid"]["cellsCount"] \
        == len(temporal["grid"]["coordinates"]) >= 2
    for date in temporal["grid"]["coordinates"]:
        assert date[:10] in wmts_times
    reduced = c.get(f"/ogcapi/collections/{api_app.jobs['min']}").json
    assert "grid" not in reduced["extent"].get("temporal", {})
    w, s, e, n = reduced["extent"]["spatial"]["bbox"][0]
    assert 9.0 < w < e < 9.1 and 46.0 < s < n < 46.1
    assert reduced["storageCrs"] == "http://www.opengis.net/def/crs/EPSG/0/32632"
    assert reduced["extent"]["spatial"]["storageCrsBbox"] == [list(UTM_BBOX)]


def test_html_by_accept_header_or_f(api_app, c):
    job = api_app.jobs["min"]
    for path in ("/ogcapi/", "/ogcapi/conformance", "/ogcapi/collections",
                 f"/ogcapi/collections/{job}", f"/ogcapi/collections/{job}/tiles",
                 "/ogcapi/processes", "/ogcapi/processes/ndvi", "/ogcapi/tileMatrixSets"):
        html = c.get(path, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        assert html.status_code == 200 and html.mimetype == "text/html", path
        assert b"<html" in html.data
        assert c.get(path, query_string={"f": "html"}).mimetype == "text/html"
        assert c.get(path, query_string={"f": "json"}, headers={"Accept": "text/html"}).is_json
        assert c.get(path).is_json  # no preference: JSON
    bad = c.get("/ogcapi/collections", query_string={"f": "xml"})
    assert bad.status_code == 400 and bad.mimetype == "application/problem+json"
    assert set(bad.json) >= {"type", "title", "status", "detail"} and bad.json["status"] == 400


def test_errors_are_problem_details(api_app, c):
    for path, status in (("/ogcapi/collections/nope", 404), ("/ogcapi/nope", 404),
                         ("/ogcapi/processes/nope", 404),
                         (f"/ogcapi/collections/{api_app.jobs['min']}/tiles/Nope", 404)):
        resp = c.get(path)
        assert resp.status_code == status and resp.mimetype == "application/problem+json", path
        assert resp.json["status"] == status and resp.json["detail"]


def test_empty_and_malformed_values_are_problem_details_naming_the_parameter(api_app, c):
    job = api_app.jobs["min"]
    cases = [("map", "crs", ""), ("map", "bbox-crs", " "), ("map", "transparent", "0"),
             ("map", "transparent", "yes"), ("coverage", "subset", ""),
             ("coverage", "subset-crs", ""), ("coverage", "properties", ""),
             ("coverage", "scale-size", ""), ("coverage", "bbox-crs", "NaN"),
             ("coverage", "datetime", "2020-05-01/ ")]
    for resource, name, value in cases:
        resp = c.get(f"/ogcapi/collections/{job}/{resource}", query_string={name: value})
        assert resp.status_code == 400 and resp.mimetype == "application/problem+json", \
            (resource, name, value, resp.status_code, resp.data[:300])
        assert resp.json["locator"] == name, (resource, name, value, resp.json)
    bad = c.get(f"/ogcapi/collections/{job}/coverage", query_string={"subset": "E(500500:)"})
    assert bad.status_code == 400 and bad.json["locator"] == "subset"
    ok = c.get(f"/ogcapi/collections/{job}/coverage", query_string={
        "subset": f"E({UTM_BBOX[0]}:*),N({UTM_BBOX[1]}:{UTM_BBOX[1] + 640})",
        "scale-factor": "0.5"})
    assert ok.status_code == 200, ok.data[:300]


# -- coverages ---------------------------------------------------------------------------


def test_coverage_equals_the_wcs_coverage(api_app, c):
    job = api_app.jobs["series"]
    full, prof = read(c.get(f"/ogcapi/collections/{job}/coverage").data)
    ref, ref_prof = wcs(c, job)
    assert prof["crs"] == ref_prof["crs"] and prof["transform"] == ref_prof["transform"]
    np.testing.assert_array_equal(full, ref)
    # subset (OGC API grammar) + datetime == WCS SUBSET + time
    sub = c.get(f"/ogcapi/collections/{job}/coverage", query_string={
        "subset": "E(500600:501400),N(5096000:5097000)", "datetime": "2020-05-11"})
    got, _ = read(sub.data)
    ref, _ = wcs(c, job, ("SUBSET", "E(500600,501400)"), ("SUBSET", "N(5096000,5097000)"),
                 ("SUBSET", 'time("2020-05-11")'))
    np.testing.assert_array_equal(got, ref)
    # scale-size (and GDAL's scaleSize), scale-factor
    for key in ("scale-size", "scaleSize"):
        got, prof = read(c.get(f"/ogcapi/collections/{job}/coverage",
                               query_string={key: "E(64),N(32)"}).data)
        ref, _ = wcs(c, job, ("SCALESIZE", "E(64),N(32)"))
        assert (prof["width"], prof["height"]) == (64, 32)
        np.testing.assert_array_equal(got, ref)
    got, prof = read(c.get(f"/ogcapi/collections/{job}/coverage",
                           query_string={"scale-factor": "4"}).data)
    assert (prof["width"], prof["height"]) == (64, 64)
    # a datetime interval: one band per date inside
    both, _ = read(c.get(f"/ogcapi/collections/{job}/coverage",
                         query_string={"datetime": "2020-05-01/2020-05-12"}).data)
    ref, _ = wcs(c, job, ("SUBSET", 'time("2020-05-01","2020-05-12")'))
    assert both.shape[0] == ref.shape[0] >= 2
    np.testing.assert_array_equal(both, ref)
    # a time subset with quoted date-times (their colons are not the interval's)
    quoted, _ = read(c.get(f"/ogcapi/collections/{job}/coverage", query_string={
        "subset": 'time("2020-05-01T00:00:00Z":"2020-05-12T23:59:59Z")'}).data)
    np.testing.assert_array_equal(quoted, ref)


def test_coverage_bbox_properties_crs_and_formats(api_app, c):
    job = api_app.jobs["bands"]
    rangetype = c.get(f"/ogcapi/collections/{job}/coverage/rangetype").json
    assert [f["name"] for f in rangetype["field"]] == ["B04", "B08"]
    got, _ = read(c.get(f"/ogcapi/collections/{job}/coverage",
                        query_string={"properties": "B08"}).data)
    ref, _ = wcs(c, job, ("RANGESUBSET", "B08"))
    assert got.shape[0] == 1
    np.testing.assert_array_equal(got, ref)
    # a CRS84 bbox: the coverage stays in its own CRS, trimmed to the bbox
    resp = c.get(f"/ogcapi/collections/{job}/coverage",
                 query_string={"bbox": "9.01,46.02,9.02,46.03"})
    got, prof = read(resp.data)
    assert prof["crs"].to_epsg() == 32632 and resp.headers["Content-Crs"] == \
        "<http://www.opengis.net/def/crs/EPSG/0/32632>"
    ref, _ = wcs(c, job, ("SUBSETTINGCRS", "EPSG:4326"), ("SUBSET", "Long(9.01,9.02)"),
                 ("SUBSET", "Lat(46.02,46.03)"), ("OUTPUTCRS", "EPSG:32632"))
    np.testing.assert_array_equal(got, ref)
    # EPSG:4326 takes its bbox in lat/lon order
    swapped, _ = read(c.get(f"/ogcapi/collections/{job}/coverage", query_string={
        "bbox": "46.02,9.01,46.03,9.02",
        "bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/4326"}).data)
    np.testing.assert_array_equal(swapped, ref)
    # an output CRS
    got, prof = read(c.get(f"/ogcapi/collections/{job}/coverage",
                           query_string={"crs": "EPSG:3857", "scale-size": "x(40),y(30)"}).data)
    assert prof["crs"].to_epsg() == 3857 and (prof["width"], prof["height"]) == (40, 30)
    png = c.get(f"/ogcapi/collections/{job}/coverage", query_string={"f": "png"})
    assert png.mimetype == "image/png" and png.data[:4] == b"\x89PNG"
    nc = c.get(f"/ogcapi/collections/{job}/coverage", query_string={"f": "netcdf"})
    assert nc.mimetype == "application/netcdf" and nc.data[:4] == b"\x89HDF"
    accept = c.get(f"/ogcapi/collections/{job}/coverage", headers={"Accept": "image/png"})
    assert accept.mimetype == "image/png"


def test_domain_set_is_the_native_grid(api_app, c):
    job = api_app.jobs["series"]
    grid = c.get(f"/ogcapi/collections/{job}/coverage/domainset").json["generalGrid"]
    assert grid["srsName"] == "http://www.opengis.net/def/crs/EPSG/0/32632"
    assert grid["axisLabels"] == ["E", "N", "time"]
    x, y, t = grid["axis"]
    assert (x["lowerBound"], y["lowerBound"], x["upperBound"], y["upperBound"]) == UTM_BBOX
    assert x["resolution"] == 10.0 and abs(y["resolution"]) == 10.0
    assert grid["gridLimits"]["axis"][0]["upperBound"] == 255
    collection = c.get(f"/ogcapi/collections/{job}").json
    assert t["coordinate"] == collection["extent"]["temporal"]["grid"]["coordinates"]


# -- maps and tiles ----------------------------------------------------------------------


def test_map_in_the_native_crs_equals_the_wcs_coverage(api_app, c):
    job = api_app.jobs["min"]
    left, bottom, right, top = UTM_BBOX
    resp = c.get(f"/ogcapi/collections/{job}/map", query_string={
        "f": "tiff", "bbox": f"{left},{bottom},{right},{top}", "bbox-crs": "EPSG:32632",
        "width": "256", "height": "256"})
    assert resp.status_code == 200, resp.data[:300]
    got, prof = read(resp.data)
    ref, ref_prof = wcs(c, job)
    assert prof["crs"].to_epsg() == 32632 and prof["transform"] == ref_prof["transform"]
    np.testing.assert_array_equal(got, ref)
    # CRS84 by default; one of width/height keeps the aspect ratio; an ETag and a 304
    png = c.get(f"/ogcapi/collections/{job}/map", query_string={
        "bbox": "9.01,46.02,9.03,46.03", "width": "200"})
    img, prof = read(png.data)
    assert png.mimetype == "image/png" and img.shape == (4, 100, 200)
    assert png.headers["Content-Crs"] == f"<{CRS84}>"
    again = c.get(f"/ogcapi/collections/{job}/map", query_string={
        "bbox": "9.01,46.02,9.03,46.03", "width": "200"},
        headers={"If-None-Match": png.headers["ETag"]})
    assert again.status_code == 304
    flat = c.get(f"/ogcapi/collections/{job}/map", query_string={
        "bbox": "9.01,46.02,9.03,46.03", "width": "200", "transparent": "false",
        "bgcolor": "0x102030"})
    img, _ = read(flat.data)
    assert img.shape[0] == 3


def test_map_datetime_selects_the_date(api_app, c):
    job = api_app.jobs["series"]
    dates = c.get(f"/ogcapi/collections/{job}").json["extent"]["temporal"]["grid"]["coordinates"]
    left, bottom, right, top = UTM_BBOX
    common = {"f": "tiff", "bbox": f"{left},{bottom},{right},{top}", "bbox-crs": "EPSG:32632",
              "width": "64", "height": "64"}
    first = read(c.get(f"/ogcapi/collections/{job}/map",
                       query_string={**common, "datetime": dates[0]}).data)[0]
    latest = read(c.get(f"/ogcapi/collections/{job}/map", query_string=common).data)[0]
    interval = read(c.get(f"/ogcapi/collections/{job}/map", query_string={
        **common, "datetime": f"../{dates[-1][:10]}"}).data)[0]
    ref = read(c.get(f"/ogcapi/collections/{job}/coverage", query_string={
        "scale-size": "E(64),N(64)", "datetime": dates[0]}).data)[0]
    np.testing.assert_array_equal(first, ref)
    np.testing.assert_array_equal(latest, interval)
    for half in (f"/{dates[-1][:10]}", f"{dates[0][:10]}/", f"{dates[0][:10]}/.."):
        # an unbounded end: ".." or an empty string (OGC API - Features 1.0 datetime)
        resp = c.get(f"/ogcapi/collections/{job}/map", query_string={**common,
                                                                     "datetime": half})
        assert resp.status_code == 200, (half, resp.data[:300])
        np.testing.assert_array_equal(read(resp.data)[0], latest)
    assert not np.array_equal(first, latest, equal_nan=True)


def test_tiles_are_the_wmts_tiles(api_app, c):
    job = api_app.jobs["series"]
    tilesets = c.get(f"/ogcapi/collections/{job}/tiles").json["tilesets"]
    assert {t["tileMatrixSetURI"].rsplit("/", 1)[1] for t in tilesets} == {
        "WebMercatorQuad", "WorldCRS84Quad"}
    meta = c.get(f"/ogcapi/collections/{job}/tiles/WebMercatorQuad").json
    items = [link for link in meta["links"] if link["rel"] == "item"]
    assert {link["type"] for link in items} >= {"image/png", "image/jpeg"}
    assert all("{tileMatrix}/{tileRow}/{tileCol}" in link["href"] for link in items)
    w, s, e, n = c.get(f"/ogcapi/collections/{job}").json["extent"]["spatial"]["bbox"][0]
    for name, ogc in (("GoogleMapsCompatible", "WebMercatorQuad"),
                      ("WorldCRS84Quad", "WorldCRS84Quad")):
        limits = c.get(f"/ogcapi/collections/{job}/tiles/{ogc}").json["tileMatrixSetLimits"]
        z = limits[-1]["tileMatrix"]
        tile = morecantile.tms.get(ogc).tile((w + e) / 2, (s + n) / 2, int(z))
        ours = c.get(f"/ogcapi/collections/{job}/tiles/{ogc}/{z}/{tile.y}/{tile.x}",
                     query_string={"datetime": "2020-05-11"})
        theirs = c.get(f"/wmts/1.0.0/{job}/default/2020-05-11/{name}/{z}/{tile.y}/{tile.x}.png")
        assert ours.status_code == theirs.status_code == 200
        assert ours.data == theirs.data and ours.headers["ETag"] == theirs.headers["ETag"]
        assert (read(ours.data)[0][3] > 0).mean() > 0.5  # a tile inside the extent
    tms = c.get("/ogcapi/tileMatrixSets/WebMercatorQuad").json
    assert tms["crs"].endswith("3857") and tms["tileMatrices"][0]["matrixWidth"] == 1


# -- GDAL's OGCAPI driver ----------------------------------------------------------------


def _gdal_ogcapi() -> str:
    tool = shutil.which("gdal_translate")
    if tool is None:
        pytest.skip("no gdal_translate (the system GDAL has the OGCAPI driver)")
    formats = subprocess.run([shutil.which("gdalinfo") or "gdalinfo", "--formats"],
                             capture_output=True, text=True, check=False).stdout
    if "OGCAPI" not in formats:
        pytest.skip("this GDAL has no OGCAPI driver")
    return tool


def gdal_read(url: str, api: str, tmp_path: Path, *options: str):
    """The collection through GDAL's OGCAPI driver (``gdal_translate`` to a GeoTIFF);
    ``url``: a collection's URL, or a ``.moaw`` file (a workflow GDAL posts)."""
    tool = _gdal_ogcapi()
    out = tmp_path / f"{api.lower()}.tif"
    source = url if url.endswith(".moaw") else f"OGCAPI:{url}"
    # CACHE=NO: GDAL's WMS cache (./gdalwmscache, keyed by URL) would answer a server on a
    # port reused from an earlier run with that run's pixels
    args = [tool, "-q", "-oo", f"API={api}", "-oo", "CACHE=NO",
            *(x for o in options for x in ("-oo", o)), source, str(out)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False,
                          cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "GDAL_HTTP_TIMEOUT": "120",
                               "CPL_VSIL_CURL_CACHE_SIZE": "0"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    with rasterio.open(out) as ds:
        return ds.read(), ds.transform, ds.bounds


def test_gdal_opens_the_coverage_and_its_values_are_the_wcs_ones(api_app, server, tmp_path):
    c = api_app.test_client()
    for name in ("min", "bands"):
        job = api_app.jobs[name]
        got, transform, _ = gdal_read(f"{server.url}/ogcapi/collections/{job}", "COVERAGE",
                                      tmp_path)
        ref, prof = wcs(c, job)
        assert tuple(transform)[:6] == tuple(prof["transform"])[:6]
        assert got.dtype == np.float32 and got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)


def test_gdal_opens_the_map_and_its_pixels_are_the_maps(api_app, server, tmp_path):
    c = api_app.test_client()
    job = api_app.jobs["min"]
    got, t, _ = gdal_read(f"{server.url}/ogcapi/collections/{job}", "MAP", tmp_path)
    assert got.shape[0] == 4 and got.shape[1] > 50 and got.shape[2] > 50
    # GDAL asks in 256 x 256 blocks on its grid: the same maps, cut to its size
    rx, ry = t.a, -t.e
    blocks = []
    for by in range(0, got.shape[1], 256):
        row = []
        for bx in range(0, got.shape[2], 256):
            left, top = t.c + bx * rx, t.f - by * ry
            resp = c.get(f"/ogcapi/collections/{job}/map", query_string={
                "bbox": f"{left!r},{top - 256 * ry!r},{left + 256 * rx!r},{top!r}",
                "width": "256", "height": "256"})
            row.append(read(resp.data)[0])
        blocks.append(np.concatenate(row, axis=2))
    ref = np.concatenate(blocks, axis=1)[:, :got.shape[1], :got.shape[2]]
    np.testing.assert_array_equal(got, ref)
    assert (got[3] > 0).mean() > 0.5  # mostly data, transparent outside


def test_gdal_opens_the_tiles_and_its_pixels_are_the_wmts_tiles(api_app, server, tmp_path):
    c = api_app.test_client()
    job = api_app.jobs["min"]
    got, t, _ = gdal_read(f"{server.url}/ogcapi/collections/{job}", "TILES", tmp_path)
    # GDAL prefers WorldCRS84Quad; its level is the one with its resolution
    res = t.a
    z = round(math.log2(0.703125 / res))
    assert math.isclose(0.703125 / 2 ** z, res, rel_tol=1e-9)
    col0, row0 = round((t.c + 180) / res), round((90 - t.f) / res)
    h, w = got.shape[1:]
    tiles = {}
    rows = []
    for trow in range(row0 // 256, (row0 + h - 1) // 256 + 1):
        line = []
        for tcol in range(col0 // 256, (col0 + w - 1) // 256 + 1):
            resp = c.get(f"/wmts/1.0.0/{job}/default/WorldCRS84Quad/{z}/{trow}/{tcol}.png")
            assert resp.status_code == 200
            tiles[trow, tcol] = read(resp.data)[0]
            line.append(tiles[trow, tcol])
        rows.append(np.concatenate(line, axis=2))
    mosaic = np.concatenate(rows, axis=1)
    y, x = row0 - (row0 // 256) * 256, col0 - (col0 // 256) * 256
    np.testing.assert_array_equal(got, mosaic[:, y:y + h, x:x + w])
    assert (got[3] > 0).mean() > 0.5


def test_gdal_opens_an_openeo_workflow_as_a_collection(api_app, server, tmp_path):
    """A ``.moaw`` file names the execution endpoint and holds the openEO graph: GDAL posts
    it, follows the 303 to the lazy job's collection and reads its coverage."""
    import json

    c = api_app.test_client()
    moaw = tmp_path / "ndvi.moaw"
    moaw.write_text(json.dumps({
        "process": f"{server.url}/ogcapi/processes/OpenEO/execution?response=collection",
        "process_graph": v1_graph()}))
    got, transform, _ = gdal_read(str(moaw), "COVERAGE", tmp_path)
    sync, prof = read(c.post(f"{V1}/result",
                             json={"process": {"process_graph": v1_graph()}}).data)
    assert tuple(transform)[:6] == tuple(prof["transform"])[:6]
    np.testing.assert_array_equal(got, sync)


# -- OWSLib ------------------------------------------------------------------------------


def test_owslib_ogcapi_classes(api_app, server):
    Coverages = pytest.importorskip("owslib.ogcapi.coverages").Coverages
    Maps = pytest.importorskip("owslib.ogcapi.maps").Maps  # OWSLib >= 0.32
    Processes = pytest.importorskip("owslib.ogcapi.processes").Processes

    c = api_app.test_client()
    root = f"{server.url}/ogcapi/"
    cov = Coverages(root)
    assert "http://www.opengis.net/spec/ogcapi-coverages-1/1.0/conf/core" in \
        cov.conformance()["conformsTo"]
    job = api_app.jobs["series"]
    assert set(api_app.jobs.values()) <= set(cov.coverages())
    paths = cov.api()["paths"]  # the service-desc of the landing page
    rules = {r.rule for r in api_app.url_map.iter_rules() if r.rule.startswith("/ogcapi/")}
    assert len(paths) == len(rules) - 1  # all but /api itself
    names = {p["name"] for p in paths["/collections/{collection_id}/coverage"]["get"][
        "parameters"]}
    assert {"subset", "scale-size", "properties", "datetime", "bbox"} <= names
    assert cov.collection(job)["id"] == job
    data = cov.coverage(job, subset={"E": (500_600, 501_400), "N": (5_096_000, 5_097_000)},
                        datetime="2020-05-11", properties=["ndvi"])
    got, _ = read(data.read())
    ref, _ = wcs(c, job, ("SUBSET", "E(500600,501400)"), ("SUBSET", "N(5096000,5097000)"),
                 ("SUBSET", 'time("2020-05-11")'))
    np.testing.assert_array_equal(got, ref)
    got, prof = read(cov.coverage(job, scale_size={"E": 32, "N": 16}).read())
    assert (prof["width"], prof["height"]) == (32, 16)
    maps = Maps(root)
    assert job in maps.maps()
    img, _ = read(maps.map(job, bbox=[9.01, 46.02, 9.03, 46.03], width=100, height=50,
                           datetime_="2020-05-11").read())
    assert img.shape == (4, 50, 100)
    procs = Processes(root)
    ids = {p["id"] for p in procs.processes()}
    assert {"OpenEO", "ndvi", "load_collection", "add"} <= ids
    assert procs.process("ndvi")["inputs"]["data"]["minOccurs"] == 1
    assert procs.execute("add", inputs={"x": 1, "y": {"value": 2}}) == 3


# -- processes ---------------------------------------------------------------------------


def test_execution_gives_the_bytes_of_result(c):
    body = {"process": {"process_graph": v1_graph()}}
    ours = c.post("/ogcapi/processes/OpenEO/execution", json=body)
    theirs = c.post(f"{V1}/result", json=body)
    assert ours.status_code == theirs.status_code == 200, ours.data[:300]
    assert ours.data == theirs.data and ours.mimetype == theirs.mimetype == "image/tiff"
    # the openEO process itself as the body, and a PNG through save_result
    png = {"process_graph": v1_graph("PNG")}
    assert c.post("/ogcapi/processes/OpenEO/execution", json=png).data == \
        c.post(f"{V1}/result", json={"process": png}).data
    # one process with OGC inputs: a one-node graph
    assert c.post("/ogcapi/processes/add/execution",
                  json={"inputs": {"x": 1, "y": {"value": 2}}}).json == 3


def test_response_collection_makes_a_lazy_job_served_as_a_collection(c):
    body = {"process": {"process_graph": v1_graph()}, "title": "from OGC API"}
    resp = c.post("/ogcapi/processes/OpenEO/execution?response=collection", json=body)
    assert resp.status_code == 303
    location = resp.headers["Location"]
    assert "/ogcapi/collections/" in location
    job = resp.headers["OpenEO-Identifier"]
    collection = c.get(location).json
    assert collection["id"] == job and collection["title"] == "from OGC API"
    assert any(link["rel"].endswith("/coverage") for link in collection["links"])
    lazy, prof = read(c.get(f"/ogcapi/collections/{job}/coverage").data)
    sync, sync_prof = read(c.post(f"{V1}/result", json=body).data)
    assert prof["transform"] == sync_prof["transform"]
    np.testing.assert_array_equal(lazy, sync)
    # in the body too, and a table is no collection
    assert c.post("/ogcapi/processes/OpenEO/execution",
                  json={**body, "response": "collection"}).status_code == 303
    bad = c.post("/ogcapi/processes/OpenEO/execution?response=nope", json=body)
    assert bad.status_code == 400 and bad.json["locator"] == "response"
    missing = c.post("/ogcapi/processes/OpenEO/execution", json={"a": 1})
    assert missing.status_code == 400 and missing.mimetype == "application/problem+json"


def test_collections_are_per_user(make_app, small_catalog, tmp_path_factory):
    from tests.support.hardening import basic, ndvi_graph, users_file, with_users

    app = with_users(make_app([small_catalog]), users_file(tmp_path_factory))
    c = app.test_client()
    jobs = {u: c.post("/jobs", json={"process_graph": ndvi_graph()}, headers=basic(u)
                      ).json["job_id"] for u in ("alice", "bob")}
    anon = c.get("/ogcapi/collections")
    assert anon.status_code == 401 and anon.mimetype == "application/problem+json"
    listed = {col["id"] for col in c.get("/ogcapi/collections",
                                         headers=basic("alice")).json["collections"]}
    assert jobs["alice"] in listed and jobs["bob"] not in listed
    assert c.get(f"/ogcapi/collections/{jobs['bob']}", headers=basic("alice")
                 ).status_code == 404
    assert c.get(f"/ogcapi/collections/{jobs['bob']}/coverage", headers=basic("bob")
                 ).status_code == 200
