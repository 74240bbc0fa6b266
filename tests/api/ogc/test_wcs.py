"""WCS 2.0.1 and 1.0.0 over lazy jobs, with real clients: GDAL's WCS driver (through
rasterio) and OWSLib against a real HTTP server in a thread; values compared with a
reference computed with pystac + plain rasterio + numpy (``tests/support/core.py``)."""

from __future__ import annotations

import json
import subprocess
from contextlib import contextmanager
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from lxml import etree
from numpy.testing import assert_allclose
from owslib.wcs import WebCoverageService
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import from_bounds
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from tests.support.core import bbox, call, leaf, ndvi, reference_stack
from tests.support.fuzz import examples
from tests.support.requirements import qgis_tool, requires
from tests.support.wcs import (
    NS,
    assert_fragments_valid,
    assert_ows20_exception,
    assert_wcs10_exception,
    gdal_open,
    gdal_wcs,
)
from tileserver.datacube.view import View
from tileserver.demo import example_graph

UTM_BBOX = (500_500.0, 5_095_500.0, 504_500.0, 5_099_500.0)  # left, bottom, right, top
GEO_BBOX = (9.01, 46.015, 9.05, 46.045)
LAEA_BBOX = (4_244_500.0, 2_545_500.0, 4_247_500.0, 2_548_500.0)  # EPSG:3035: northing first


def _bbox(b, srs):
    return bbox(leaf(), b[0], b[2], b[3], b[1], srs=srs)


def _ndvi(imagery):
    return call("NDVI", imagery, red="B04", nir="B08")


GRAPHS = {
    "utm_min": call("min_time", _ndvi(_bbox(UTM_BBOX, "EPSG:32632"))),
    "geo_max": call("max_time", _ndvi(_bbox(GEO_BBOX, "EPSG:4326"))),
    "laea_min": call("min_time", _ndvi(_bbox(LAEA_BBOX, "EPSG:3035"))),
    "series": _ndvi(_bbox(UTM_BBOX, "EPSG:32632")),
    "bands": call("mean_time", call("filter_bands", _bbox(UTM_BBOX, "EPSG:32632"),
                                    bands=["B04", "B08"])),
}


@pytest.fixture(scope="module")
def jobs(module_app, server):
    """name -> (coverage id, service path, full URL, job id) for every graph."""
    client = module_app.test_client()
    out = {}
    for name, graph in GRAPHS.items():
        job = client.post("/jobs", json={"process_graph": graph, "title": name}).get_json()
        resp = client.post("/services", json={"job_id": job["job_id"], "type": "wcs"})
        assert resp.status_code == 201
        service = resp.get_json()
        path = f"/service/wcs/{service['service_id']}"
        assert service["service_url"].endswith(path)
        out[name] = (f"job_{job['job_id']}", path, server.url + path, job["job_id"])
    return out


def reference(catalog, view: View, reducer=None, day: str | None = None) -> np.ndarray:
    """NDVI of B04/B08 on ``view``, reduced over time or of one day, plain rasterio."""
    days, stack = reference_stack(catalog, "TEST", view, ["B04", "B08"])
    values = ndvi(stack[:, 0], stack[:, 1])
    if day is not None:
        return values[days.index(day)]
    with np.errstate(all="ignore"):
        return reducer.reduce(values, axis=0)


def assert_values(actual, expected):
    """Same values and same nodata pixels (float32 vs float64 arithmetic)."""
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    assert np.isfinite(actual).mean() > 0.5  # the comparison is not vacuous
    assert_allclose(actual, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


def view_of(ds, window=None, shape=None) -> View:
    """The grid of a GDAL read: the dataset, a window of it, or it at another size."""
    bounds = ds.window_bounds(window) if window is not None else tuple(ds.bounds)
    h, w = shape or ((window.height, window.width) if window is not None else ds.shape)
    return View(ds.crs, bounds, w, h)


# -- GDAL's WCS driver -----------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.0.1", "1.0.0"])
@pytest.mark.parametrize("name, crs, bounds, reducer, day", [
    ("utm_min", "EPSG:32632", UTM_BBOX, np.fmin, None),
    ("geo_max", "EPSG:4326", GEO_BBOX, np.fmax, None),
    ("laea_min", "EPSG:3035", LAEA_BBOX, np.fmin, None),
    ("series", "EPSG:32632", UTM_BBOX, None, "2020-05-21"),  # the default: latest date
])
def test_gdal_reads_the_coverage(jobs, small_catalog, tmp_path, version, name, crs, bounds,
                                 reducer, day):
    cid, _, url, _ = jobs[name]
    with gdal_open(url, cid, version, tmp_path) as ds:
        assert ds.crs == CRS.from_user_input(crs)
        assert ds.count == 1 and ds.dtypes == ("float32",)
        assert tuple(ds.bounds) == pytest.approx(bounds, abs=1e-9)
        # about 10 m pixels, as the B04/B08 bands
        metres = transform_bounds(crs, "EPSG:32632", *bounds) if crs != "EPSG:32632" else bounds
        assert abs((metres[2] - metres[0]) / ds.width - 10) < 0.1
        assert ds.transform == from_bounds(*bounds, ds.width, ds.height)
        full = ds.read(1)
        assert_values(full, reference(small_catalog, view_of(ds), reducer, day))
        window = Window(37, 51, 120, 90)
        part = ds.read(1, window=window)
        assert_values(part, reference(small_catalog, view_of(ds, window), reducer, day))
        # a scaled read (GDAL asks for SCALESIZE / WIDTH+HEIGHT) finer than 2x: no overview
        shape = (int(ds.height * 0.7), int(ds.width * 0.7))
        scaled = ds.read(1, out_shape=shape)
        assert_values(scaled, reference(small_catalog, view_of(ds, shape=shape), reducer, day))


def test_gdal_wcs10_reads_the_date_it_is_given(jobs, small_catalog, tmp_path):
    """GDAL sends the ``time`` of the dataset name first, then its default (the last
    timePosition of the description): the first one is the one asked for."""
    cid, _, url, _ = jobs["series"]
    with gdal_open(url, cid, "1.0.0", tmp_path, "&time=2020-05-11T10:00:00Z") as ds:
        assert_values(ds.read(1), reference(small_catalog, view_of(ds), day="2020-05-11"))


def test_gdal_lists_coverages_of_the_global_endpoint(jobs, server, tmp_path):
    with gdal_wcs(f"{server.url}/wcs?version=2.0.1", tmp_path) as ds:
        names = ds.tags(ns="SUBDATASETS")
    listed = " ".join(v for k, v in names.items() if k.endswith("_NAME"))
    for cid, *_ in jobs.values():
        assert cid in listed


# -- OWSLib ----------------------------------------------------------------------------


def test_owslib_parses_wcs10(jobs):
    cid, _, url, _ = jobs["series"]
    wcs = WebCoverageService(url, version="1.0.0")
    assert list(wcs.contents) == [cid]
    assert {op.name for op in wcs.operations} >= {"GetCapabilities", "DescribeCoverage",
                                                   "GetCoverage"}
    cov = wcs[cid]
    west, south, east, north = transform_bounds("EPSG:32632", "EPSG:4326", *UTM_BBOX,
                                                densify_pts=21)
    assert cov.boundingBoxWGS84 == pytest.approx((west, south, east, north))
    assert "EPSG:32632" in cov.supportedCRS[0].getcode()
    assert "GeoTIFF" in cov.supportedFormats
    assert [int(v) for v in cov.grid.highlimits] == [399, 399]
    assert cov.grid.origin == ["500505.0", "5099495.0"]
    assert [t[:10] for t in cov.timepositions] == ["2020-05-01", "2020-05-11", "2020-05-21"]
    tif = wcs.getCoverage(identifier=cid, bbox=(501000, 5096000, 502000, 5097000),
                          crs="EPSG:32632", format="GeoTIFF", width=50, height=40,
                          time=["2020-05-11"])
    with MemoryFile(tif.read()) as mem, mem.open() as ds:
        assert ds.shape == (40, 50) and ds.bounds == (501000, 5096000, 502000, 5097000)
        assert ds.descriptions == ("2020-05-11 ndvi",)


def test_owslib_parses_wcs201(jobs):
    cid, _, url, _ = jobs["geo_max"]
    wcs = WebCoverageService(url, version="2.0.1")
    assert list(wcs.contents) == [cid]
    cov = wcs[cid]
    # OWSLib reads the native envelope (EPSG:4326 in its own lat/long order) ...
    (native,) = cov.boundingboxes
    assert native["nativeSrs"] == "http://www.opengis.net/def/crs/EPSG/0/4326"
    assert native["bbox"] == pytest.approx((46.015, 9.01, 46.045, 9.05), abs=1e-9)
    # ... but not the ows:WGS84BoundingBox of WCS 2.0 (it looks for 1.0's lonLatEnvelope)
    assert cov.boundingBoxWGS84 is None
    grid = cov.grid
    assert grid.axislabels == ["i", "j"]
    assert [float(v) for v in grid.origin] == pytest.approx([46.045 - grid_res(grid)[1] / 2,
                                                             9.01 + grid_res(grid)[0] / 2])
    assert "image/tiff" in cov.supportedFormats


def grid_res(grid) -> tuple[float, float]:
    """(x, y) pixel size from OWSLib's offset vectors of a lat/long grid."""
    return float(grid.offsetvectors[0][1]), -float(grid.offsetvectors[1][0])


# -- documents (XSD fragments + XPath on what GDAL and QGIS read) ----------------------


def test_capabilities_20(module_app, jobs):
    client = module_app.test_client()
    cid, path, _, _ = jobs["utm_min"]
    resp = client.get(f"{path}?service=WCS&request=GetCapabilities")  # no version: 2.0.1
    doc = etree.fromstring(resp.data)
    assert doc.tag == f"{{{NS['wcs']}}}Capabilities" and doc.get("version") == "2.0.1"
    for part in ("ServiceIdentification", "ServiceProvider", "OperationsMetadata"):
        assert assert_fragments_valid(doc, f"/wcs:Capabilities/ows:{part}") == 1
    assert assert_fragments_valid(doc, "//wcs:CoverageSummary/ows:WGS84BoundingBox") == 1
    assert doc.xpath("//ows:ServiceTypeVersion/text()", namespaces=NS) == ["2.0.1", "1.0.0"]
    assert doc.xpath("//wcs:CoverageSummary/wcs:CoverageId/text()", namespaces=NS) == [cid]
    assert doc.xpath("//wcs:ServiceMetadata/wcs:formatSupported/text()",
                     namespaces=NS) == ["image/tiff"]
    hrefs = doc.xpath("//ows:Operation/ows:DCP/ows:HTTP/ows:Get/@xlink:href", namespaces=NS)
    assert len(hrefs) == 3 and all(h == f"http://localhost{path}?" for h in hrefs)


def test_describe_coverage_20(module_app, jobs):
    client = module_app.test_client()
    cid, path, _, job_id = jobs["series"]
    resp = client.get(f"{path}?SERVICE=WCS&REQUEST=DescribeCoverage&VERSION=2.0.1"
                      f"&COVERAGEID={job_id}")  # the job id is accepted too
    doc = etree.fromstring(resp.data)
    desc = doc.find("wcs:CoverageDescription", NS)
    assert desc.findtext("wcs:CoverageId", namespaces=NS) == cid
    assert assert_fragments_valid(doc, "//gml:boundedBy/*") == 1
    assert assert_fragments_valid(doc, "//gml:domainSet/gml:RectifiedGrid") == 1
    assert assert_fragments_valid(doc, "//wcsgs:TimeDomain/gml:TimeInstant") == 3
    env = desc.find("gml:boundedBy/gml:EnvelopeWithTimePeriod", NS)
    assert env.get("srsName") == "http://www.opengis.net/def/crs/EPSG/0/32632"
    assert env.get("axisLabels") == "E N"
    assert env.findtext("gml:lowerCorner", namespaces=NS) == "500500.0 5095500.0"
    assert env.findtext("gml:upperCorner", namespaces=NS) == "504500.0 5099500.0"
    assert env.findtext("gml:beginPosition", namespaces=NS).startswith("2020-05-01")
    grid = desc.find("gml:domainSet/gml:RectifiedGrid", NS)
    assert grid.findtext("gml:limits/gml:GridEnvelope/gml:high", namespaces=NS) == "399 399"
    assert grid.findtext("gml:origin/gml:Point/gml:pos", namespaces=NS) == "500505.0 5099495.0"
    assert [v.text for v in grid.findall("gml:offsetVector", NS)] == ["10.0 0.0", "0.0 -10.0"]
    field = desc.find("gmlcov:rangeType/swe:DataRecord/swe:field", NS)
    assert field.get("name") == "ndvi"
    assert field.findtext(".//swe:nilValue", namespaces=NS) == "NaN"
    assert desc.findtext("wcs:ServiceParameters/wcs:CoverageSubtype",
                         namespaces=NS) == "RectifiedGridCoverage"


def test_documents_10(module_app, jobs):
    client = module_app.test_client()
    cid, path, _, _ = jobs["geo_max"]
    caps = etree.fromstring(client.get(f"{path}?SERVICE=WCS&REQUEST=GetCapabilities"
                                       "&VERSION=1.0.0").data)
    assert caps.tag == f"{{{NS['wcs10']}}}WCS_Capabilities"
    brief = caps.find("wcs10:ContentMetadata/wcs10:CoverageOfferingBrief", NS)
    assert brief.findtext("wcs10:name", namespaces=NS) == cid
    pos = brief.xpath("wcs10:lonLatEnvelope/gml10:pos/text()", namespaces=NS)
    assert [float(v) for p in pos for v in p.split()] == pytest.approx(GEO_BBOX)
    desc = etree.fromstring(client.get(f"{path}?SERVICE=WCS&REQUEST=DescribeCoverage"
                                       f"&VERSION=1.0.0&COVERAGE={cid}").data)
    grid = desc.find(".//wcs10:spatialDomain/gml10:RectifiedGrid", NS)
    # WCS 1.0 positions are x/y (long/lat) even for EPSG:4326
    origin = [float(v) for v in grid.findtext("gml10:origin/gml10:pos", namespaces=NS).split()]
    assert origin[0] == pytest.approx(9.01, abs=1e-3) and origin[1] == pytest.approx(46.045,
                                                                                     abs=1e-3)
    assert desc.xpath("//wcs10:nullValues/wcs10:singleValue/text()", namespaces=NS) == ["NaN"]
    assert "EPSG:4326" in desc.xpath("//wcs10:requestResponseCRSs/text()", namespaces=NS)
    assert desc.xpath("//wcs10:supportedFormats/wcs10:formats/text()",
                      namespaces=NS)[0] == "GeoTIFF"
    assert desc.find(".//wcs10:temporalDomain", NS) is None  # reduced: no time


# -- version negotiation ---------------------------------------------------------------


@pytest.mark.parametrize("query, root", [
    ("", "{http://www.opengis.net/wcs/2.0}Capabilities"),
    ("&VERSION=1.0.0", "{http://www.opengis.net/wcs}WCS_Capabilities"),
    ("&VERSION=1.1.2", "{http://www.opengis.net/wcs}WCS_Capabilities"),
    ("&VERSION=2.0.0", "{http://www.opengis.net/wcs/2.0}Capabilities"),
    ("&AcceptVersions=1.0.0,2.0.1", "{http://www.opengis.net/wcs}WCS_Capabilities"),
    ("&ACCEPTVERSIONS=3.0.0,2.0.1", "{http://www.opengis.net/wcs/2.0}Capabilities"),
])
def test_version_negotiation(module_app, jobs, query, root):
    path = jobs["utm_min"][1]
    resp = module_app.test_client().get(f"{path}?service=WCS&request=GetCapabilities{query}")
    assert resp.status_code == 200 and etree.fromstring(resp.data).tag == root


# -- GetCoverage over HTTP -------------------------------------------------------------


@contextmanager
def get_tif(client, path, query):
    """A GetCoverage answer opened with rasterio."""
    resp = client.get(f"{path}?SERVICE=WCS&REQUEST=GetCoverage&{query}")
    assert resp.status_code == 200, resp.data[:500]
    assert resp.mimetype == "image/tiff"
    with MemoryFile(resp.data) as mem, mem.open() as ds:
        yield ds


def test_openeo_documentation_form(module_app, jobs, small_catalog):
    cid, path, _, _ = jobs["utm_min"]
    uri = "http://www.opengis.net/def/crs/EPSG/0/4326"
    b = transform_bounds("EPSG:32632", "EPSG:4326", 501_000, 5_096_000, 504_000, 5_099_000)
    with get_tif(module_app.test_client(), path,
                 f"VERSION=2.0.1&COVERAGEID={cid}&SUBSET=x,{uri}({b[0]},{b[2]})"
                 f"&SUBSET=y,{uri}({b[1]},{b[3]})&SIZE=x(200)&SIZE=y(200)") as ds:
        assert ds.crs == CRS.from_epsg(4326) and ds.shape == (200, 200)
        assert tuple(ds.bounds) == pytest.approx(b)
        assert_values(ds.read(1), reference(small_catalog, view_of(ds), np.fmin))


def test_output_crs_and_scaling(module_app, jobs):
    cid, path, _, _ = jobs["utm_min"]
    with get_tif(module_app.test_client(), path,
                 f"VERSION=2.0.1&COVERAGEID={cid}&OUTPUTCRS=EPSG:3857"
                 "&SCALESIZE=i(64),j(32)") as ds:
        assert ds.crs == CRS.from_epsg(3857) and ds.shape == (32, 64)
        assert tuple(ds.bounds) == pytest.approx(
            transform_bounds("EPSG:32632", "EPSG:3857", *UTM_BBOX, densify_pts=21))
        assert np.isfinite(ds.read(1)).any()


def test_time_trim_and_slice(module_app, jobs, small_catalog):
    cid, path, _, _ = jobs["series"]
    client = module_app.test_client()
    sub = "SUBSET=E(501000,502000)&SUBSET=N(5096000,5097000)"
    with get_tif(client, path, f"VERSION=2.0.1&COVERAGEID={cid}&{sub}"
                 '&SUBSET=time("2020-05-01","2020-05-12")') as ds:
        assert ds.count == 2 and ds.descriptions == ("2020-05-01 ndvi", "2020-05-11 ndvi")
        view = view_of(ds)
        for i, day in enumerate(("2020-05-01", "2020-05-11")):
            assert_values(ds.read(i + 1), reference(small_catalog, view, day=day))
    with get_tif(client, path, f"VERSION=2.0.1&COVERAGEID={cid}&{sub}"
                 "&SUBSET=time(2020-05-11)") as ds:
        assert ds.descriptions == ("2020-05-11 ndvi",)
    with get_tif(client, path, f"VERSION=1.0.0&COVERAGE={cid}&CRS=EPSG:32632"
                 "&BBOX=501000,5096000,502000,5097000&WIDTH=100&HEIGHT=100&FORMAT=GeoTIFF"
                 "&TIME=2020-05-01") as ds:
        assert ds.descriptions == ("2020-05-01 ndvi",)
        assert_values(ds.read(1), reference(small_catalog, view_of(ds), day="2020-05-01"))


def test_range_subset(module_app, jobs, small_catalog):
    cid, path, _, _ = jobs["bands"]
    with get_tif(module_app.test_client(), path,
                 f"VERSION=2.0.1&COVERAGEID={cid}&RANGESUBSET=B08"
                 "&SUBSET=E(502000,503000)&SUBSET=N(5097000,5098000)") as ds:
        assert ds.count == 1 and ds.descriptions == ("B08",)
        _, stack = reference_stack(small_catalog, "TEST", view_of(ds), ["B08"])
        with np.errstate(all="ignore"):
            expected = np.nanmean(stack[:, 0], axis=0)
        assert_values(ds.read(1), expected)


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("query, code, status, locator", [
    ("request=GetCapabilities", "MissingParameterValue", 400, "service"),
    ("service=WMS&request=GetCapabilities", "InvalidParameterValue", 400, "service"),
    ("service=WCS", "MissingParameterValue", 400, "request"),
    ("service=WCS&request=GetMap&version=2.0.1", "OperationNotSupported", 501, "request"),
    ("service=WCS&request=GetCapabilities&AcceptVersions=3.0.0", "VersionNegotiationFailed",
     400, "acceptversions"),
    ("service=WCS&request=DescribeCoverage&COVERAGEID={cid}", "MissingParameterValue", 400,
     "version"),
    ("service=WCS&request=DescribeCoverage&version=2.0.1", "MissingParameterValue", 400,
     "coverageid"),
    ("service=WCS&request=DescribeCoverage&version=2.0.1&coverageId=nope", "NoSuchCoverage",
     404, "coverageid"),
    ("service=WCS&request=GetCoverage&version=2.0.1&coverageId={cid}&subset=Z(1,2)",
     "InvalidAxisLabel", 404, "subset"),
    ("service=WCS&request=GetCoverage&version=2.0.1&coverageId={cid}&subset=time(2020-05-01)",
     "InvalidAxisLabel", 404, "subset"),
    ("service=WCS&request=GetCoverage&version=2.0.1&coverageId={cid}&subset=E(9,10)",
     "InvalidSubsetting", 404, "E"),
    ("service=WCS&request=GetCoverage&version=2.0.1&coverageId={cid}&scalefactor=0",
     "InvalidScaleFactor", 404, "scalefactor"),
    ("service=WCS&request=GetCoverage&version=2.0.1&coverageId={cid}&scalesize=i(-3)",
     "InvalidExtent", 404, "x"),
    ("service=WCS&request=GetCoverage&version=2.0.1&coverageId={cid}&format=image/png",
     "InvalidParameterValue", 400, "format"),
    ("service=WCS&request=GetCoverage&version=2.0.1&coverageId={cid}&rangesubset=B99",
     "NoSuchField", 404, "rangesubset"),
    ("service=WCS&request=GetCoverage&version=2.0.1&coverageId={cid}&outputcrs=EPSG:1",
     "OutputCrs-NotSupported", 400, "outputcrs"),
    ("service=WCS&request=GetCoverage&version=2.0.1&coverageId={cid}"
     "&scalesize=i(100000),j(100000)", "InvalidParameterValue", 413, "scalesize"),
])
def test_errors_20(module_app, jobs, query, code, status, locator):
    cid, path, _, _ = jobs["utm_min"]
    resp = module_app.test_client().get(f"{path}?{query.format(cid=cid)}")
    text = assert_ows20_exception(resp, code, status, locator)
    assert text and "internal" not in text


def test_errors_10_are_service_exception_reports(module_app, jobs):
    cid, path, _, _ = jobs["utm_min"]
    client = module_app.test_client()
    base = f"{path}?SERVICE=WCS&VERSION=1.0.0"
    assert_wcs10_exception(client.get(f"{base}&REQUEST=DescribeCoverage&COVERAGE=nope"),
                           "NoSuchCoverage", 404)
    text = assert_wcs10_exception(client.get(f"{base}&REQUEST=GetCoverage&COVERAGE={cid}"
                                             "&CRS=EPSG:32632&FORMAT=GeoTIFF"
                                             "&BBOX=500500,5095500,504500,5099500"),
                                  "MissingParameterValue", 400)
    assert "WIDTH" in text
    assert_wcs10_exception(client.get(f"{base}&REQUEST=GetCoverage&COVERAGE={cid}"
                                      "&CRS=EPSG:32632&FORMAT=GeoTIFF&WIDTH=1&HEIGHT=1"
                                      "&BBOX=500500,5095500,500500,5099500"),
                           "InvalidParameterValue", 400)


def test_budget_limits_pixels_bands_and_dates(make_app, small_catalog):
    """With a small budget, a large request is refused before anything is read."""
    app = make_app([small_catalog], max_pixels=400 * 400 * 2 * 2)
    client = app.test_client()
    job = client.post("/jobs", json={"process_graph": GRAPHS["series"]}).get_json()
    service = client.post("/services", json={"job_id": job["job_id"], "type": "wcs"})
    path = f"/service/wcs/{service.get_json()['service_id']}"
    query = (f"?SERVICE=WCS&REQUEST=GetCoverage&VERSION=2.0.1&COVERAGEID=job_{job['job_id']}")
    ok = client.get(path + query + '&SUBSET=time("2020-05-01","2020-05-11")')
    assert ok.status_code == 200
    text = assert_ows20_exception(client.get(path + query + "&SUBSET=time(*,*)"),
                                  "InvalidParameterValue", 413)
    assert "3 dates" in text
    # the minimum over time reads all three dates for any answer
    job = client.post("/jobs", json={"process_graph": GRAPHS["utm_min"]}).get_json()
    service = client.post("/services", json={"job_id": job["job_id"], "type": "wcs"})
    path = f"/service/wcs/{service.get_json()['service_id']}"
    query = (f"?SERVICE=WCS&REQUEST=GetCoverage&VERSION=1.0.0&COVERAGE=job_{job['job_id']}"
             "&CRS=EPSG:32632&FORMAT=GeoTIFF&BBOX=500500,5095500,504500,5099500")
    assert client.get(path + query + "&WIDTH=200&HEIGHT=200").status_code == 200
    resp = client.get(path + query + "&WIDTH=400&HEIGHT=400")
    assert "3 dates" in assert_wcs10_exception(resp, "InvalidParameterValue", 413)


def test_revoked_services_answer_404(module_app, jobs):
    client = module_app.test_client()
    store = module_app.extensions["tileserver"].store
    urls = []
    for _ in range(2):
        job = client.post("/jobs", json={"process_graph": GRAPHS["utm_min"]}).get_json()
        sid = client.post("/services", json={"job_id": job["job_id"],
                                             "type": "wcs"}).get_json()["service_id"]
        urls.append((job["job_id"], f"/service/wcs/{sid}?service=WCS&request=GetCapabilities"))
        assert client.get(urls[-1][1]).status_code == 200
    assert client.delete(f"/jobs/{urls[0][0]}").status_code == 204
    assert_ows20_exception(client.get(urls[0][1]), "NotFound", 404)
    assert store.update_job(urls[1][0], status="canceled")
    assert_ows20_exception(client.get(urls[1][1]), "NotFound", 404)
    other = client.post("/services", json={"job_id": jobs["utm_min"][3],
                                           "type": "wmts"}).get_json()["service_id"]
    assert_ows20_exception(client.get(f"/service/wcs/{other}?service=WCS"
                                      "&request=GetCapabilities"), "NotFound", 404)
    assert_ows20_exception(client.get("/service/wcs/0000?service=WCS&request=GetCapabilities"),
                           "NotFound", 404)


def test_a_job_computing_a_table_is_no_coverage(module_app, jobs):
    client = module_app.test_client()
    graph = {"process_id": "zonal_statistics", "args": {
        "imagery": GRAPHS["series"], "regions": "/users/me/files/fields.geojson",
        "func": "avg"}}
    job = client.post("/jobs", json={"process_graph": graph})
    assert job.status_code == 201, job.data
    job_id = job.get_json()["job_id"]
    sid = client.post("/services", json={"job_id": job_id, "type": "wcs"}).get_json()[
        "service_id"]
    text = assert_ows20_exception(
        client.get(f"/service/wcs/{sid}?service=WCS&request=GetCapabilities"),
        "NoSuchCoverage", 404)
    assert "not a coverage" in text
    caps = client.get("/wcs?service=WCS&request=GetCapabilities")
    assert caps.status_code == 200 and job_id.encode() not in caps.data


def test_global_endpoint_lists_every_job(module_app, jobs, small_catalog):
    client = module_app.test_client()
    doc = etree.fromstring(client.get("/wcs?service=WCS&request=GetCapabilities").data)
    ids = doc.xpath("//wcs:CoverageSummary/wcs:CoverageId/text()", namespaces=NS)
    assert {cid for cid, *_ in jobs.values()} <= set(ids)
    cid = jobs["utm_min"][0]
    with get_tif(client, "/wcs", f"VERSION=2.0.1&COVERAGEID={cid}"
                 "&SUBSET=E(501000,501500)&SUBSET=N(5096000,5096500)") as ds:
        assert ds.shape == (50, 50)
        assert_values(ds.read(1), reference(small_catalog, view_of(ds), np.fmin))
    desc = etree.fromstring(client.get(
        f"/wcs?SERVICE=WCS&REQUEST=DescribeCoverage&VERSION=2.0.1"
        f"&COVERAGEID={jobs['utm_min'][0]},{jobs['geo_max'][0]}").data)
    assert len(desc.findall("wcs:CoverageDescription", NS)) == 2
    labels = desc.xpath("//gml:Envelope/@axisLabels", namespaces=NS)
    assert labels == ["E N", "Lat Long"]
    laea = etree.fromstring(client.get(
        f"/wcs?SERVICE=WCS&REQUEST=DescribeCoverage&VERSION=2.0.1"
        f"&COVERAGEID={jobs['laea_min'][0]}").data)
    env = laea.find(".//gml:Envelope", NS)
    assert env.get("axisLabels") == "Y X"
    assert env.findtext("gml:lowerCorner", namespaces=NS) == "2545500.0 4244500.0"


# -- QGIS (its WCS 1.0.0 provider, headless) --------------------------------------------



@requires("qgis-tool", "python3-qgis")
@pytest.mark.parametrize("name, crs, bounds", [
    ("utm_min", "EPSG:32632", UTM_BBOX), ("geo_max", "EPSG:4326", GEO_BBOX)])
def test_qgis_adds_and_renders_the_coverage(jobs, name, crs, bounds):
    cid, _, url, _ = jobs[name]
    proc = subprocess.run(["/usr/bin/python3", str(qgis_tool()), "wcs", url, cid, crs,
                           *map(str, bounds)], capture_output=True, text=True, timeout=240,
                          check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, proc.stderr[-2000:]
    out = json.loads(lines[-1])
    assert out["valid"], out["error"]
    assert out["crs"] == crs
    assert out["extent"] == pytest.approx(bounds, abs=1e-9)
    assert out["render_errors"] == []
    # the rendered map shows data (NDVI is valid on most pixels of the synthetic scenes)
    width, height = bounds[2] - bounds[0], bounds[3] - bounds[1]
    assert out["opaque_fraction"] > 0.6 * min(width, height) / max(width, height)


# -- openEO use case 1 on the demo catalog ----------------------------------------------

EXAMPLE = example_graph()


def test_openeo_use_case_1(make_app, demo_catalog):
    """POST /jobs with the NDVI minimum, POST /services wcs, then the three operations."""
    client = make_app([demo_catalog]).test_client()
    job = client.post("/jobs", json={"process_graph": EXAMPLE, "title": "NDVI min Jan 2017"})
    assert job.status_code == 201
    service = client.post("/services", json={"job_id": job.get_json()["job_id"],
                                             "type": "wcs"}).get_json()
    assert service["service_type"] == "wcs"
    path = service["service_url"].removeprefix("http://localhost")
    caps = etree.fromstring(client.get(f"{path}?service=WCS&request=GetCapabilities").data)
    (cid,) = caps.xpath("//wcs:CoverageSummary/wcs:CoverageId/text()", namespaces=NS)
    assert caps.xpath("//wcs:CoverageSummary/ows:Title/text()",
                      namespaces=NS) == ["NDVI min Jan 2017"]
    desc = etree.fromstring(client.get(f"{path}?service=WCS&request=DescribeCoverage"
                                       f"&version=2.0.1&coverageId={cid}").data)
    env = desc.find(".//gml:boundedBy/gml:Envelope", NS)  # reduced: no time period
    assert env.findtext("gml:lowerCorner", namespaces=NS) == "652000.0 5161000.0"
    assert env.findtext("gml:upperCorner", namespaces=NS) == "672000.0 5181000.0"
    assert desc.findtext(".//gml:GridEnvelope/gml:high", namespaces=NS) == "999 999"  # 20 m
    resp = client.get(f"{path}?service=WCS&request=GetCoverage&version=2.0.1"
                      f"&coverageId={cid}&format=image/tiff")
    assert resp.status_code == 200, resp.data[:300]
    with MemoryFile(resp.data) as mem, mem.open() as ds:
        assert ds.crs == CRS.from_epsg(32632) and ds.shape == (1000, 1000)
        assert tuple(ds.bounds) == (652000, 5161000, 672000, 5181000)
        start = datetime(2017, 1, 1, tzinfo=UTC)
        end = datetime(2017, 1, 31, 23, 59, 59, tzinfo=UTC)
        days, stack = reference_stack(demo_catalog, "S2_L2A_T32TPS_20M", view_of(ds),
                                      ["B04", "B8A"], start, end)
        assert days  # January has acquisitions
        with np.errstate(all="ignore"):
            expected = np.fmin.reduce(ndvi(stack[:, 0], stack[:, 1]), axis=0)
        assert_values(ds.read(1), expected)


# -- robustness: any parameter value gives an answer or a 4xx exception, never a 500 -----

_TEXT = st.text(alphabet="0123456789.,-:*()\"' eENijxyt/abcTZ", max_size=24)


def _or_garbage(*valid: str):
    return st.one_of(st.sampled_from(valid), _TEXT)


_PARAMS = st.fixed_dictionaries({
    "VERSION": st.sampled_from(["2.0.1", "1.0.0", "2.0.1", "1.0.0", "1.1.0", ""]),
}, optional={
    "SUBSET": st.lists(_or_garbage("E(501000,502000)", "N(5096000,5096500)", "E(501234)",
                                   'time("2020-05-11")', "time(2020-05-01,2020-05-12)",
                                   "N(5099000,5095000)", "x,EPSG:4326(9.02,9.03)"),
                       max_size=3),
    "SCALESIZE": _or_garbage("i(10),j(20)", "E(7)", "i(0)"),
    "SCALEFACTOR": _or_garbage("2", "0.5", "-1", "1e400"),
    "SCALEAXES": _or_garbage("i(2),j(3)", "N(0.5)"),
    "RANGESUBSET": _or_garbage("ndvi", "1", "ndvi:ndvi", "2"),
    "OUTPUTCRS": _or_garbage("EPSG:4326", "http://www.opengis.net/def/crs/EPSG/0/3857"),
    "SUBSETTINGCRS": _or_garbage("EPSG:4326", "EPSG:32632"),
    "BBOX": _or_garbage("501000,5096000,502000,5097000", "1,2,3,4", "9,46,9.01,46.01"),
    "WIDTH": _or_garbage("10", "0", "100000"),
    "HEIGHT": _or_garbage("10", "-5"),
    "TIME": _or_garbage("2020-05-11", "2020-05-01/2020-05-21", "1999-01-01"),
    "CRS": _or_garbage("EPSG:32632", "EPSG:4326", "EPSG:3857"),
})


@settings(max_examples=examples(80))
@given(params=_PARAMS)
# what random runs found (issue 13): non-finite numbers in sizes, factors and resolutions
@example(params={"VERSION": "1.0.0", "WIDTH": "NaN", "HEIGHT": "10"})
@example(params={"VERSION": "1.0.0", "WIDTH": "10", "HEIGHT": "inf"})
@example(params={"VERSION": "1.0.0", "WIDTH": "-inf", "HEIGHT": "1e309"})
@example(params={"VERSION": "1.0.0", "RESX": "5e-324", "RESY": "1e-300"})
@example(params={"VERSION": "2.0.1", "SCALESIZE": "i(NaN),j(10)"})
@example(params={"VERSION": "2.0.1", "SCALESIZE": "i(1e309)"})
@example(params={"VERSION": "2.0.1", "SCALEFACTOR": "5e-324"})
@example(params={"VERSION": "2.0.1", "SCALEAXES": "i(1e-320)"})
@example(params={"VERSION": "2.0.1", "SCALEEXTENT": "i(-1e308:1e308)"})
@example(params={"VERSION": "2.0.1", "RANGESUBSET": "²"})
@example(params={"VERSION": "2.0.1", "SUBSET": ['time("0001-01-01T00:00:00+01:00")']})
@example(params={"VERSION": "2.0.1", "SUBSET": ["E(-0,1e309)", "E(1,2)"]})
def test_garbage_parameters_never_give_500(module_app, jobs, params):
    cid, path, _, _ = jobs["series"]
    pairs = [("SERVICE", "WCS"), ("REQUEST", "GetCoverage"), ("COVERAGEID", cid),
             ("COVERAGE", cid), ("FORMAT", "GeoTIFF"), ("CRS", "EPSG:32632")]
    for key, value in params.items():
        pairs += [(key, v) for v in (value if isinstance(value, list) else [value])]
    resp = module_app.test_client().get(path, query_string=pairs)
    assert resp.status_code in (200, 400, 404, 413, 501), resp.data[:500]
    if resp.status_code != 200:
        assert b"internal server error" not in resp.data
        assert etree.fromstring(resp.data).tag.endswith("ExceptionReport")
