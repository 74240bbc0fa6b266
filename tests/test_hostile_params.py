"""Every parameter of the OGC protocols and of the viewer gets every hostile value of
:data:`tests.fuzz_support.EDGES` (deterministic: no randomness at all).

The answer is a success or a 4xx in the protocol's own form (an OGC exception report whose
locator names the parameter; openEO JSON for REST routes), never a 5xx, and the server
keeps answering correctly afterwards.
"""

from __future__ import annotations

import pytest

from tests.fuzz_support import EDGES, exception_of
from tests.hardening_support import ndvi_graph
from tests.synthetic import make_catalog
from tileserver.settings import load_settings
from tileserver.web.app import create_app

# A small window inside the synthetic product, so that a hostile value that happens to be
# valid evaluates quickly.
SMALL = {"left": 500_000, "right": 500_640, "bottom": 5_099_360, "top": 5_100_000,
         "srs": "EPSG:32632"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """An app with a timed NDVI job and its wmts, wcs and xyz services."""
    root = tmp_path_factory.mktemp("hostile")
    catalog = make_catalog(root / "catalog")
    app = create_app(load_settings(home=str(root / "home"), catalog=str(catalog)))
    app.config["TESTING"] = True
    c = app.test_client()
    job = c.post("/jobs", json={"process_graph": ndvi_graph(SMALL, reduce=None)}).json["job_id"]
    ids = {"job": job}
    for kind in ("wmts", "wcs", "xyz"):
        ids[kind] = c.post("/services", json={"job_id": job, "type": kind}).json["service_id"]
    app.ids = ids
    yield app
    app.extensions["tileserver"].close()


WMTS_TILE = {"SERVICE": "WMTS", "REQUEST": "GetTile", "VERSION": "1.0.0", "STYLE": "default",
             "FORMAT": "image/png", "TILEMATRIXSET": "GoogleMapsCompatible",
             "TILEMATRIX": "14", "TILEROW": "5825", "TILECOL": "8602", "TIME": "2020-05-11"}
WCS20 = {"SERVICE": "WCS", "REQUEST": "GetCoverage", "VERSION": "2.0.1",
         "FORMAT": "image/tiff"}
WCS10 = {"SERVICE": "WCS", "REQUEST": "GetCoverage", "VERSION": "1.0.0", "FORMAT": "GeoTIFF",
         "CRS": "EPSG:32632", "BBOX": "500000,5099360,500640,5100000", "WIDTH": "8",
         "HEIGHT": "8"}

#: (protocol, key, value template, accepted locators) -- ``{}`` is the hostile value.
KVP_PARAMS = [
    ("wmts", "SERVICE", "{}", {"service"}),
    ("wmts", "REQUEST", "{}", {"request"}),
    ("wmts", "VERSION", "{}", {"version"}),
    ("wmts", "LAYER", "{}", {"layer"}),
    ("wmts", "STYLE", "{}", {"style"}),
    ("wmts", "FORMAT", "{}", {"format"}),
    ("wmts", "TILEMATRIXSET", "{}", {"tilematrixset"}),
    ("wmts", "TILEMATRIX", "{}", {"tilematrix", "tilerow", "tilecol"}),
    ("wmts", "TILEROW", "{}", {"tilerow"}),
    ("wmts", "TILECOL", "{}", {"tilecol"}),
    ("wmts", "TIME", "{}", {"time"}),
    ("wmts", "ACCEPTVERSIONS", "{}", {"acceptversions", "request"}),
    ("wcs20", "SERVICE", "{}", {"service"}),
    ("wcs20", "REQUEST", "{}", {"request"}),
    ("wcs20", "VERSION", "{}", {"version"}),
    ("wcs20", "COVERAGEID", "{}", {"coverageid"}),
    ("wcs20", "FORMAT", "{}", {"format"}),
    ("wcs20", "SUBSET", "E({},500640)", {"subset", "E"}),
    ("wcs20", "SUBSET", "N(5099360,{})", {"subset", "N"}),
    ("wcs20", "SUBSET", "E({})", {"subset", "E"}),
    ("wcs20", "SUBSET", 'time("{}")', {"subset", "time"}),
    ("wcs20", "SUBSET", "time({},2020-05-21)", {"subset", "time"}),
    ("wcs20", "SUBSET", "{}(1,2)", {"subset"}),
    ("wcs20", "SUBSET", "{}", {"subset", "E"}),
    ("wcs20", "SUBSETTINGCRS", "{}", {"subsettingcrs"}),
    ("wcs20", "OUTPUTCRS", "{}", {"outputcrs"}),
    ("wcs20", "SCALESIZE", "i({}),j(8)", {"scalesize", "x"}),
    ("wcs20", "SCALESIZE", "{}", {"scalesize", "x"}),
    ("wcs20", "SIZE", "x({})", {"scalesize", "size", "x"}),
    ("wcs20", "SCALEFACTOR", "{}", {"scalefactor"}),
    ("wcs20", "SCALEAXES", "i({}),j(2)", {"scaleaxes", "x", "scalefactor"}),
    ("wcs20", "SCALEEXTENT", "i(0:{}),j(0:7)", {"scaleextent", "x"}),
    ("wcs20", "SCALEEXTENT", "i({}:7),j(0:7)", {"scaleextent", "x"}),
    ("wcs20", "RANGESUBSET", "{}", {"rangesubset"}),
    ("wcs20", "RANGESUBSET", "ndvi:{}", {"rangesubset"}),
    ("wcs20", "ACCEPTVERSIONS", "{}", {"acceptversions"}),
    ("wcs10", "COVERAGE", "{}", {"coverage"}),
    ("wcs10", "FORMAT", "{}", {"format"}),
    ("wcs10", "CRS", "{}", {"crs"}),
    ("wcs10", "RESPONSE_CRS", "{}", {"response_crs"}),
    ("wcs10", "BBOX", "{},5099360,500640,5100000", {"bbox"}),
    ("wcs10", "BBOX", "500000,5099360,500640,{}", {"bbox"}),
    ("wcs10", "BBOX", "{}", {"bbox"}),
    ("wcs10", "WIDTH", "{}", {"width"}),
    ("wcs10", "HEIGHT", "{}", {"height"}),
    ("wcs10", "RESX", "{}", {"resx"}),
    ("wcs10", "RESY", "{}", {"resy"}),
    ("wcs10", "TIME", "{}", {"time"}),
    ("wcs10", "TIME", "2020-05-01/{}", {"time"}),
    ("wcs10", "BAND", "{}", {"band", "rangesubset"}),
]


def _kvp_request(app, protocol: str, key: str, value: str) -> tuple[str, list]:
    ids = app.ids
    if protocol == "wmts":
        base = {**WMTS_TILE, "LAYER": ids["job"]}
        path = f"/service/wmts/{ids['wmts']}"
    elif protocol == "wcs20":
        base = {**WCS20, "COVERAGEID": f"job_{ids['job']}"}
        path = f"/service/wcs/{ids['wcs']}"
    else:
        base = {**WCS10, "COVERAGE": f"job_{ids['job']}"}
        path = f"/service/wcs/{ids['wcs']}"
    if key in ("RESX", "RESY"):
        base = {k: v for k, v in base.items() if k not in ("WIDTH", "HEIGHT")}
        base.update(RESX="80", RESY="80")
    pairs = [(k, v) for k, v in base.items() if k != key] + [(key, value)]
    return path, pairs


def _check_ogc(resp, locators: set[str], what) -> None:
    """A success, or a 4xx OGC exception report (JSON for XYZ, a web-map protocol without
    an exception format) whose locator is one of ``locators``."""
    assert resp.status_code < 500 or (resp.status_code == 501 and b"OperationNotSupported"
                                      in resp.data), (what, resp.status_code, resp.data[:400])
    if resp.status_code >= 400:
        if resp.is_json:
            code, locator = resp.json["code"], resp.json.get("locator")
        else:
            code, locator = exception_of(resp)
        assert code and code != "NoApplicableCode", (what, resp.data[:400])
        assert locator in locators, (what, code, locator, resp.data[:400])


@pytest.mark.parametrize(("protocol", "key", "template", "locators"), KVP_PARAMS,
                         ids=[f"{p}-{k}-{t}" for p, k, t, _ in KVP_PARAMS])
def test_every_ogc_parameter_rejects_hostile_values(hostile, protocol, key, template,
                                                    locators):
    c = hostile.test_client()
    for edge in EDGES:
        path, pairs = _kvp_request(hostile, protocol, key, template.replace("{}", edge))
        _check_ogc(c.get(path, query_string=pairs), locators, (key, edge))
    # the same key twice (first value valid) and a list where one value is expected
    path, pairs = _kvp_request(hostile, protocol, key, template.replace("{}", "NaN"))
    _check_ogc(c.get(path, query_string=pairs + pairs[-1:]), locators, (key, "twice"))
    _check_ogc(c.get(path, query_string=pairs[:-1] + [(key, "1,2,3,NaN")]), locators,
               (key, "list"))


#: RESTful WMTS tile URL segments, XYZ path segments: (route, segment index, locators).
TILE_SEGMENTS = [
    ("wmts-rest", "style", {"style"}),
    ("wmts-rest", "time", {"time"}),
    ("wmts-rest", "tms", {"tilematrixset"}),
    ("wmts-rest", "z", {"tilematrix", "tilerow", "tilecol"}),
    ("wmts-rest", "row", {"tilerow"}),
    ("wmts-rest", "col", {"tilecol", "format"}),
    ("xyz", "z", {"tilematrix", "tilerow", "tilecol"}),
    ("xyz", "x", {"tilecol"}),
    ("xyz", "y", {"tilerow", "y"}),
]


def _tile_url(app, route: str, segment: str, value: str) -> str:
    from urllib.parse import quote

    parts = {"style": "default", "time": "2020-05-11", "tms": "GoogleMapsCompatible",
             "z": "14", "row": "5825", "col": "8602", "x": "8602", "y": "5825"}
    parts[segment] = quote(value, safe="") or "%20"
    p = parts
    if route == "xyz":
        return f"/service/xyz/{app.ids['xyz']}/{p['z']}/{p['x']}/{p['y']}.png"
    return (f"/service/wmts/{app.ids['wmts']}/1.0.0/{app.ids['job']}/{p['style']}/{p['time']}"
            f"/{p['tms']}/{p['z']}/{p['row']}/{p['col']}.png")


@pytest.mark.parametrize(("route", "segment", "locators"), TILE_SEGMENTS,
                         ids=[f"{r}-{s}" for r, s, _ in TILE_SEGMENTS])
def test_every_tile_path_segment_rejects_hostile_values(hostile, route, segment, locators):
    c = hostile.test_client()
    for edge in EDGES:
        resp = c.get(_tile_url(hostile, route, segment, edge))
        if resp.status_code == 404 and not resp.data.lstrip().startswith(b"<?xml"):
            continue  # no route matches (e.g. an encoded slash): werkzeug's own 404
        _check_ogc(resp, locators, (segment, edge))


VIEWER_PARAMS = [("point", "lon"), ("point", "lat"), ("point", "time"), ("viewer", "time")]


@pytest.mark.parametrize(("route", "key"), VIEWER_PARAMS)
def test_viewer_parameters_reject_hostile_values(hostile, route, key):
    c = hostile.test_client()
    base = {"lon": "9.003", "lat": "46.03", "time": "2020-05-11"}
    for edge in EDGES:
        query = {**base, key: edge}
        resp = c.get(f"/jobs/{hostile.ids['job']}/{route}", query_string=query)
        assert resp.status_code < 500, (key, edge, resp.data[:300])
        if resp.status_code >= 400:
            assert resp.is_json and resp.json["locator"] == key, (key, edge, resp.data[:300])


def test_server_still_answers_correctly(hostile):
    c = hostile.test_client()
    path, pairs = _kvp_request(hostile, "wcs10", "WIDTH", "8")
    resp = c.get(path, query_string=pairs)
    assert resp.status_code == 200 and resp.data[:2] in (b"II", b"MM")
    assert c.get(_tile_url(hostile, "xyz", "z", "14")).status_code == 200
    assert hostile.extensions["tileserver"].engine.limiter.inflight == 0
