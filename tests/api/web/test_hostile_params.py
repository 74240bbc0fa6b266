"""Every parameter of the OGC protocols and of the viewer gets every hostile value of
:data:`tests.support.fuzz.EDGES` (deterministic: no randomness at all).

The answer is a 4xx in the protocol's own form (an OGC exception report whose locator names
the parameter; openEO JSON naming the field for REST routes). A success is allowed only
where the hostile value is a valid value of that parameter (a number for a coordinate, an
empty optional value: the tables VALID_* of :mod:`tests.support.hostile`); 413 only where
valid values ask for too much. Never a 5xx, and the server keeps answering correctly
afterwards.
"""

from __future__ import annotations

import pytest

from tests.support.fuzz import EDGES, exception_of
from tests.support.hardening import ndvi_graph
from tests.support.hostile import (
    JSON_FIELDS,
    KVP_PARAMS,
    OUTPUT_OPTIONS,
    TILE_SEGMENTS,
    VALID_KVP,
    VALID_SEGMENTS,
    VALID_VIEWER,
    VIEWER_PARAMS,
    process_cases,
    rest_query_cases,
    valid_json,
    versioned_body_fields,
    versioned_rules,
)
from tests.support.requirements import require
from tests.support.synthetic import make_catalog
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
    for kind in ("wmts", "wcs", "xyz", "tms", "wms"):
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

WMS13 = {"SERVICE": "WMS", "REQUEST": "GetMap", "VERSION": "1.3.0", "STYLES": "",
         "CRS": "EPSG:32632", "BBOX": "500000,5099360,500640,5100000", "WIDTH": "8",
         "HEIGHT": "8", "FORMAT": "image/png", "TIME": "2020-05-11"}
WMS11 = {**{k: v for k, v in WMS13.items() if k != "CRS"}, "VERSION": "1.1.1",
         "SRS": "EPSG:32632"}
WMS_INFO = {"REQUEST": "GetFeatureInfo", "INFO_FORMAT": "application/json"}
WMS_LEGEND = {"SERVICE": "WMS", "REQUEST": "GetLegendGraphic", "VERSION": "1.3.0",
              "STYLE": "default", "FORMAT": "image/png"}

#: The few values also sent to the global endpoints (/wmts, /wcs, /wms: same parsers).
GLOBAL_EDGES = ["NaN", "1e309", "", "²", "é" * 3000]


#: A cheap 1.x graph (array processes only) for the OGC API execution endpoint.
ADD_GRAPH = {"a": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}


def _kvp_request(app, protocol: str, key: str, value: str,
                 global_endpoint: bool = False) -> tuple[str, list]:
    ids = app.ids
    if protocol.startswith("ogcapi"):  # OGC API is global already; lower-case names
        root = f"/ogcapi/collections/{ids['job']}"
        path, base = {
            "ogcapi-map": (f"{root}/map", {"width": "8", "height": "8"}),
            "ogcapi-coverage": (f"{root}/coverage", {"scale-size": "E(8),N(8)"}),
            "ogcapi-tiles": (f"{root}/tiles/WebMercatorQuad/14/5825/8602", {}),
            "ogcapi-execute": ("/ogcapi/processes/OpenEO/execution", {}),
        }[protocol]
        name = key.lower()
        if name in ("scale-factor", "scale-axes", "subset", "bbox"):
            base = {k: v for k, v in base.items() if k != "scale-size"}
        return path, [(k, v) for k, v in base.items() if k != name] + [(name, value)]
    if protocol == "wmts":
        base = {**WMTS_TILE, "LAYER": ids["job"]}
        path = "/wmts" if global_endpoint else f"/service/wmts/{ids['wmts']}"
    elif protocol == "wcs20":
        base = {**WCS20, "COVERAGEID": f"job_{ids['job']}"}
        path = "/wcs" if global_endpoint else f"/service/wcs/{ids['wcs']}"
    elif protocol.startswith("wms"):
        job = ids["job"]
        base = {"wms13": {**WMS13, "LAYERS": job},
                "wms13fi": {**WMS13, **WMS_INFO, "LAYERS": job, "QUERY_LAYERS": job,
                            "I": "2", "J": "3"},
                "wms11": {**WMS11, "LAYERS": job},
                "wms11fi": {**WMS11, **WMS_INFO, "LAYERS": job, "QUERY_LAYERS": job,
                            "X": "2", "Y": "3"},
                "wmslegend": {**WMS_LEGEND, "LAYER": job}}[protocol]
        path = "/wms" if global_endpoint else f"/service/wms/{ids['wms']}"
    else:
        base = {**WCS10, "COVERAGE": f"job_{ids['job']}"}
        path = "/wcs" if global_endpoint else f"/service/wcs/{ids['wcs']}"
    if key == "ACCEPTVERSIONS":  # a parameter of GetCapabilities only
        base = {"SERVICE": base["SERVICE"], "REQUEST": "GetCapabilities"}
    if key in ("RESX", "RESY"):
        base = {k: v for k, v in base.items() if k not in ("WIDTH", "HEIGHT")}
        base.update(RESX="80", RESY="80")
    pairs = [(k, v) for k, v in base.items() if k != key] + [(key, value)]
    return path, pairs


def _check_ogc(resp, locators: set[str], what, valid: bool = False) -> None:
    """A 4xx OGC exception report (JSON for XYZ, a web-map protocol without an exception
    format) whose locator is one of ``locators`` (501 OperationNotSupported for an unknown
    REQUEST); a success only when the value is ``valid`` for the parameter."""
    if valid and resp.status_code == 200:
        return
    assert 400 <= resp.status_code < 500 or (
        resp.status_code == 501 and b"OperationNotSupported" in resp.data), \
        (what, "valid" if valid else "hostile", resp.status_code, resp.data[:400])
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
    valid = VALID_KVP.get((key, template), frozenset())
    if protocol == "ogcapi-execute":  # a POST with an openEO process as its body
        def send(path, query_string):
            return c.post(path, query_string=query_string,
                          json={"process": {"process_graph": ADD_GRAPH}})
    else:
        send = c.get
    for edge in EDGES:
        path, pairs = _kvp_request(hostile, protocol, key, template.replace("{}", edge))
        _check_ogc(send(path, query_string=pairs), locators, (key, edge), edge in valid)
    # the same key twice (first value valid) and a list where one value is expected
    path, pairs = _kvp_request(hostile, protocol, key, template.replace("{}", "NaN"))
    _check_ogc(send(path, query_string=pairs + pairs[-1:]), locators, (key, "twice"))
    name = pairs[-1][0]
    _check_ogc(send(path, query_string=pairs[:-1] + [(name, "1,2,3,NaN")]), locators,
               (key, "list"))
    if protocol.startswith("ogcapi"):
        return  # OGC API is global already (the same requests as above)
    for edge in GLOBAL_EDGES:
        path, pairs = _kvp_request(hostile, protocol, key, template.replace("{}", edge),
                                   global_endpoint=True)
        _check_ogc(c.get(path, query_string=pairs), locators, ("global", key, edge),
                   edge in valid)


def _tile_url(app, route: str, segment: str, value: str) -> str:
    from urllib.parse import quote

    parts = {"style": "default", "time": "2020-05-11", "tms": "GoogleMapsCompatible",
             "z": "14", "row": "5825", "col": "8602", "x": "8602", "y": "5825",
             "layer": app.ids["job"], "collection": app.ids["job"]}
    if route == "ogcapi-tile":
        parts["tms"] = "WebMercatorQuad"
    parts[segment] = quote(value, safe="") or "%20"
    p = parts
    if route == "ogcapi-tile":
        return (f"/ogcapi/collections/{p['collection']}/tiles/{p['tms']}/{p['z']}/{p['row']}"
                f"/{p['col']}")
    if route == "wmts-legend":
        return f"/service/wmts/{app.ids['wmts']}/1.0.0/{p['layer']}/{p['style']}/legend.png"
    if route == "xyz":
        return f"/service/xyz/{app.ids['xyz']}/{p['z']}/{p['x']}/{p['y']}.png"
    if route == "tms":  # rows counted from the south
        y = p["y"] if segment == "y" else str(2 ** 14 - 1 - int(p["y"]))
        return f"/service/tms/{app.ids['tms']}/{p['time']}/{p['z']}/{p['x']}/{y}/"
    return (f"/service/wmts/{app.ids['wmts']}/1.0.0/{app.ids['job']}/{p['style']}/{p['time']}"
            f"/{p['tms']}/{p['z']}/{p['row']}/{p['col']}.png")


@pytest.mark.parametrize(("route", "segment", "locators"), TILE_SEGMENTS,
                         ids=[f"{r}-{s}" for r, s, _ in TILE_SEGMENTS])
def test_every_tile_path_segment_rejects_hostile_values(hostile, route, segment, locators):
    c = hostile.test_client()
    for edge in EDGES:
        resp = c.get(_tile_url(hostile, route, segment, edge))
        if resp.status_code == 404 and not resp.data.lstrip().startswith(b"<?xml") \
                and (not resp.is_json or "locator" not in resp.json):
            continue  # no route matches (e.g. an encoded slash): werkzeug's own 404
        _check_ogc(resp, locators, (segment, edge),
                   edge in VALID_SEGMENTS.get(segment, frozenset()))


@pytest.mark.parametrize("key", ["time", "TIME"])
def test_xyz_time_rejects_hostile_values(hostile, key):
    c = hostile.test_client()
    for edge in EDGES:
        resp = c.get(_tile_url(hostile, "xyz", "z", "14"), query_string={key: edge})
        _check_ogc(resp, {"time"}, (key, edge), edge in VALID_SEGMENTS[key])


def test_tms_bands_rejects_hostile_values(hostile):
    c = hostile.test_client()
    for edge in EDGES:
        resp = c.get(_tile_url(hostile, "tms", "z", "14"), query_string={"bands": edge})
        _check_ogc(resp, {"bands"}, ("bands", edge), edge in VALID_SEGMENTS["bands"])
    assert c.get(_tile_url(hostile, "tms", "z", "14"), query_string={"bands": "1"}
                 ).status_code == 200


@pytest.mark.parametrize(("route", "key"), VIEWER_PARAMS)
def test_viewer_parameters_reject_hostile_values(hostile, route, key):
    c = hostile.test_client()
    base = {"lon": "9.003", "lat": "46.03", "time": "2020-05-11"}
    for edge in EDGES:
        query = {**base, key: edge}
        resp = c.get(f"/jobs/{hostile.ids['job']}/{route}", query_string=query)
        if edge in VALID_VIEWER[key] and resp.status_code == 200:
            continue
        assert 400 <= resp.status_code < 500, (key, edge, resp.status_code, resp.data[:300])
        assert resp.is_json and resp.json["locator"] == key, (key, edge, resp.data[:300])


def test_server_still_answers_correctly(hostile):
    c = hostile.test_client()
    path, pairs = _kvp_request(hostile, "wcs10", "WIDTH", "8")
    resp = c.get(path, query_string=pairs)
    assert resp.status_code == 200 and resp.data[:2] in (b"II", b"MM")
    assert c.get(_tile_url(hostile, "xyz", "z", "14")).status_code == 200
    for protocol in ("wms13", "wms13fi", "wms11fi", "wmslegend"):
        path, pairs = _kvp_request(hostile, protocol, "SERVICE", "WMS")
        assert c.get(path, query_string=pairs).status_code == 200, protocol
    assert hostile.extensions["tileserver"].engine.limiter.inflight == 0


# -- JSON fields of the REST routes --------------------------------------------------------

def _set(body: dict, dotted: str, value) -> dict:
    """A copy of ``body`` with the dotted field set (intermediate objects created)."""
    head, _, rest = dotted.partition(".")
    out = dict(body)
    if not rest:
        out[head] = value
    else:
        inner = out.get(head)
        out[head] = _set(inner if isinstance(inner, dict) else {}, rest, value)
    return out


def _send(client, method: str, path: str, body: dict):
    import json

    data = json.dumps(body, allow_nan=True)  # NaN/Infinity: what Python's parser accepts
    return client.open(path, method=method, data=data, content_type="application/json")


def _check_json(resp, field: str, what) -> None:
    """An openEO JSON error (4xx) naming the field; a success only when the value is valid
    for the field (:func:`tests.support.hostile.valid_json`)."""
    edge = what[-1]
    if resp.status_code < 300 and valid_json(field, edge):
        return
    assert 400 <= resp.status_code < 500, \
        (what, "valid" if valid_json(field, edge) else "hostile", resp.status_code,
         resp.data[:300])
    assert resp.is_json, (what, resp.data[:300])
    err = resp.json
    assert err["code"] and err["message"], (what, err)
    if resp.status_code == 413:
        return  # a limit: the combination of valid values asks for too much
    named = f"{err.get('locator', '')} {err.get('path', '')} {err['message']}"
    names = {*field.split("."), field.removesuffix("_id")}
    if isinstance(edge, dict):  # an object with unknown keys: the keys are named
        names |= {repr(k) for k in edge}
    assert any(n in named for n in names), (what, err)


@pytest.mark.parametrize(("method", "route", "field"), JSON_FIELDS,
                         ids=[f"{m}-{r}-{f}" for m, r, f in JSON_FIELDS])
def test_every_json_field_rejects_hostile_values(hostile, method, route, field):
    from tests.support.fuzz import JSON_EDGES

    c = hostile.test_client()
    ids = hostile.ids
    graph = ndvi_graph(SMALL)
    bases = {"/jobs": {"process_graph": graph}, "/execute": {"process_graph": graph},
             "/services": {"job_id": ids["job"], "type": "xyz"}}
    base: dict = {}
    if route in ("/jobs/{job}", "/services/{service}"):  # a job and service of this test
        job = c.post("/jobs", json={"process_graph": graph}).json["job_id"]
        service = c.post("/services", json={"job_id": job, "type": "wmts"}).json
        path = route.format(job=job, service=service["service_id"])
    else:
        path, base = route, bases[route]
    for edge in JSON_EDGES:
        body = _set(base, field, edge)
        if field.startswith("output.") and field != "output.format":
            body["output"].setdefault("format", "GTiff")
        before = _stored(c, path)
        resp = _send(c, method, path, body)
        _check_json(resp, field, (method, route, field, edge))
        if resp.status_code >= 400:  # a refused request writes nothing
            assert _stored(c, path) == before, (method, route, field, edge)


def _stored(client, path: str) -> tuple:
    """What the user has stored: jobs and services (and the patched one, in full)."""
    jobs = client.get("/users/me/jobs").json
    services = client.get("/users/me/services").json
    one = client.get(path).json if path.count("/") == 2 else None
    return (jobs, services, one)


#: A valid script per UDF type (the UDF processes run in the sandbox like any other).
UDF_SCRIPTS = {
    "apply_pixel": "def apply_pixel(data):\n    return data * 2\n",
    "reduce_time": "def reduce_time(data):\n    return data.max('t')\n",
    "aggregate_time": "def aggregate_time(series):\n    return series.resample('MS').mean()\n",
}


def _graph_for(process_id: str) -> dict:
    """A valid small graph whose root is ``process_id``."""
    leaf = {"product_id": "TEST"}
    box = {"process_id": "filter_bbox", "args": {"imagery": leaf, **SMALL}}
    ndvi = ndvi_graph(SMALL, reduce=None)
    args = {
        "filter_bbox": {"imagery": leaf, **SMALL},
        "filter_daterange": {"imagery": box, "from": "2020-05-01", "to": "2020-05-12"},
        "filter_bands": {"imagery": box, "bands": ["B04"]},
        "NDVI": {"imagery": box, "red": "B04", "nir": "B08"},
        "zonal_statistics": {"imagery": ndvi, "regions": "/users/me/files/zones.geojson",
                             "func": "avg"},
        **{f"/udf/Python/{t}": {"imagery": ndvi, "script": f"/users/me/files/{t}.py"}
           for t in UDF_SCRIPTS},
    }.get(process_id, {"imagery": ndvi})
    return {"process_id": process_id, "args": args}


@pytest.mark.parametrize(("process_id", "arg"), process_cases())
def test_every_process_argument_rejects_hostile_values(hostile, process_id, arg):
    from tests.support.fuzz import JSON_EDGES

    c = hostile.test_client()
    zones = ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},'
             ' "geometry": {"type": "Polygon", "coordinates": [[[9.0005, 46.049], [9.004, 46.049],'
             ' [9.004, 46.052], [9.0005, 46.052], [9.0005, 46.049]]]}}]}')
    c.put("/users/me/files/zones.geojson", data=zones)
    if process_id.startswith("/udf/"):
        require("bubblewrap")
        udf_type = process_id.rsplit("/", 1)[1]
        c.put(f"/users/me/files/{udf_type}.py", data=UDF_SCRIPTS[udf_type])
    graph = _graph_for(process_id)
    output = {"format": "JSON" if process_id == "zonal_statistics" else "GTiff"}
    ok = c.post("/execute", json={"process_graph": graph, "output": output})
    assert ok.status_code == 200, ok.data[:300]  # the base graph is valid
    for edge in [*JSON_EDGES, {"product_id": "TEST"}, {"process_id": "min_time"}]:
        body = {"process_graph": _set(graph, f"args.{arg}", edge), "output": output}
        _check_json(_send(c, "POST", "/execute", body), arg, (process_id, arg, edge))


# -- query parameters of REST routes, found in the source ------------------------------------

def _concrete(app, rule: str) -> str:
    import re

    values = {"job_id": app.ids["job"], "service_id": app.ids["wmts"], "user_id": "me",
              "product_id": "TEST", "process_id": "NDVI", "path": "zones.geojson"}
    return re.sub(r"<(?:[a-z]+:)?(\w+)>", lambda m: values.get(m.group(1), "x"), rule)


def test_rest_query_parameters_reject_hostile_values(hostile):
    c = hostile.test_client()
    cases = rest_query_cases(hostile)
    assert {"LON", "LAT", "TIME"} <= {name for name, _ in cases}
    for name, rule in cases:
        path = _concrete(hostile, rule)
        for key in (name, name.lower()):
            for edge in EDGES:
                resp = c.get(path, query_string={key: edge})
                # the parameter is read by some routes of the module only: the others
                # ignore it (a success); never a 5xx, no time-out or overload either
                assert resp.status_code < 500 or (resp.status_code == 501
                                                  and b"nternal" not in resp.data), \
                    (rule, key, edge, resp.status_code, resp.data[:300])


@pytest.mark.parametrize("fmt", sorted(OUTPUT_OPTIONS))
def test_every_output_option_rejects_hostile_values(hostile, fmt):
    from tests.support.fuzz import JSON_EDGES

    c = hostile.test_client()
    graph = ndvi_graph(SMALL)
    for option in OUTPUT_OPTIONS[fmt]:
        for edge in [*JSON_EDGES, *EDGES[:20]]:
            body = {"process_graph": graph,
                    "output": {"format": fmt, "parameters": {option: edge}}}
            _check_json(_send(c, "POST", "/jobs", body), option, (fmt, option, edge))


# -- the versioned APIs (openEO 1.2 under /openeo/1.2/, /.well-known/openeo) ----------------

def _v1_bases(app) -> dict[tuple[str, str], dict]:
    graph = {"process_graph": ndvi_graph(SMALL)}
    return {("POST", "/result"): {"process": graph}, ("POST", "/validation"): graph,
            ("POST", "/jobs"): {"process": graph},
            ("POST", "/services"): {"process": graph, "type": "XYZ"}}


def _fill(rule: str, values: dict) -> str:
    import re

    return re.sub(r"<(?:[a-z]+:)?(\w+)>", lambda m: values[m.group(1)], rule)


def test_versioned_api_rejects_hostile_input(hostile):
    """Every route of the other API versions: hostile path segments, hostile JSON bodies
    and each body field with each hostile JSON value; never a 5xx."""
    import re
    from urllib.parse import quote

    from tests.support.fuzz import JSON_EDGES

    c = hostile.test_client()
    rules = versioned_rules(hostile)
    assert rules, "no route of the versioned APIs (/openeo/1.2/...) found"
    fields = versioned_body_fields()
    bases = _v1_bases(hostile)
    job = c.post("/jobs", json={"process_graph": ndvi_graph(SMALL)}).json["job_id"]
    real = {"job_id": job, "service_id": hostile.ids["wmts"], "collection_id": "TEST",
            "path": "zones.geojson"}

    seen: dict[int, int] = {}

    def ok(resp, what):
        seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
        assert resp.status_code < 500 or (resp.status_code == 501
                                          and b"nternal" not in resp.data), \
            (what, resp.status_code, resp.data[:300])

    for rule in rules:
        local = re.sub(r"^/openeo/[^/]+", "", rule.rule) or "/"
        variables = re.findall(r"<(?:[a-z]+:)?(\w+)>", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            starts_batch = method == "POST" and local.endswith("/results")
            for var in variables:
                for edge in ["", "NaN", "..", "%00", "é" * 3000, "1" * 400]:
                    values = {v: quote(real.get(v, "x")) for v in variables}
                    values[var] = quote(edge, safe="") or "%20"
                    path = _fill(rule.rule, values)
                    ok(c.open(path, method=method, json={}), (method, rule.rule, var, edge))
            if method in ("GET", "DELETE") or starts_batch:
                continue
            path = _fill(rule.rule, {v: real.get(v, "x") for v in variables})
            if "<path:" in rule.rule:  # file uploads: the body is the file
                ok(c.open(path, method=method, data=b"\x00\xff" * 100), (method, rule.rule))
                continue
            base = bases.get((method, local), {})
            for edge in JSON_EDGES:
                ok(_send(c, method, path, edge), (method, rule.rule, "body", edge))
                for field in fields:
                    body = {**base, field: edge}
                    ok(_send(c, method, path, body), (method, rule.rule, field, edge))
    # the requests reached the views: validation errors, and some hostile values were valid
    assert seen.get(400, 0) > 100 and sum(n for s, n in seen.items() if s < 300) > 10, seen
    print(f"\nversioned API sweep: {sum(seen.values())} requests, statuses {sorted(seen)}")
