"""Property-based tests: malformed graphs, parameters and uploads give 4xx, never 500, and
the server keeps serving.

* schemathesis generates requests for every operation of ``/openapi.json``;
* hypothesis mutates a valid process graph (random subtrees, types, numbers), fuzzes the
  OGC key-value parameters of the WMTS and WCS services and uploads random files.

Bounded: a few dozen examples per property, so the module stays around a minute.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.support.fuzz import examples
from tests.support.hardening import ndvi_graph
from tests.support.synthetic import make_catalog
from tileserver.settings import load_settings
from tileserver.web.app import create_app


def no_server_error(resp) -> bool:
    """Not a crash: below 500, or a deliberate 5xx of the protocols (OGC
    OperationNotSupported is 501; the limits answer 503 busy and 504 timeout)."""
    if resp.status_code < 500:
        return True
    if resp.status_code == 501:
        return b"OperationNotSupported" in resp.data
    return resp.status_code in (503, 504) and b"nternal" not in resp.data


# deterministic in CI through the global profile of tests/conftest.py; `make fuzz` scales
FUZZ = settings(max_examples=examples(50), suppress_health_check=list(HealthCheck))
SCHEMA_FUZZ = settings(FUZZ, max_examples=examples(6))


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    """One app for the whole module (hypothesis runs many examples on it)."""
    root = tmp_path_factory.mktemp("fuzz")
    catalog = make_catalog(root / "catalog")
    app = create_app(load_settings(home=str(root / "home"), catalog=str(catalog),
                                   max_output_pixels=1_000_000, evaluation_timeout=60))
    app.config["TESTING"] = True
    c = app.test_client()
    job = c.post("/jobs", json={"process_graph": ndvi_graph()}).json["job_id"]
    app.fuzz_ids = {"job_id": job}
    for kind in ("wmts", "wcs", "xyz", "wms"):
        resp = c.post("/services", json={"job_id": job, "type": kind})
        app.fuzz_ids[kind] = resp.json["service_id"]
    # a job that keeps its time axis (a Time dimension, dated tiles)
    timed = c.post("/jobs", json={"process_graph": ndvi_graph(reduce=None)}).json["job_id"]
    app.fuzz_ids["timed"] = timed
    for kind in ("wmts", "tms"):
        resp = c.post("/services", json={"job_id": timed, "type": kind})
        app.fuzz_ids[f"timed_{kind}"] = resp.json["service_id"]
    yield app
    app.extensions["tileserver"].close()


def test_openapi_operations_never_500(fuzz_app):
    """schemathesis cases for every operation of /openapi.json (through WSGI)."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    statuses: dict[str, set[int]] = {}
    real = {"job_id": fuzz_app.fuzz_ids["job_id"], "service_id": fuzz_app.fuzz_ids["xyz"],
            "user_id": "me"}

    for operation in operations:
        label = operation.label

        @given(case=operation.as_strategy())
        @SCHEMA_FUZZ
        def check(case):
            resp = case.call_and_validate(checks=[not_a_server_error])
            statuses.setdefault(case.operation.label, set()).add(resp.status_code)
            # again with ids that exist, to get past the 404 into the validation
            params = case.path_parameters or {}
            # (not DELETE, which would remove them, nor queue, which starts a Dask cluster)
            if (case.method != "DELETE" and not case.path.endswith("/queue")
                    and set(params) & set(real)):
                case.path_parameters = {k: real.get(k, v) for k, v in params.items()}
                resp = case.call_and_validate(checks=[not_a_server_error])
                statuses[case.operation.label].add(resp.status_code)

        check()
        assert label in statuses
    assert set(statuses) == {op.label for op in operations}
    # the generated requests reached the views, not only 404s
    reached = [label for label, codes in statuses.items() if codes - {404, 405}]
    assert len(reached) >= 15, statuses


# -- graphs ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["process_id", "args", "imagery", "product_id",
                                       "left", "right", "top", "bottom", "srs", "from", "to",
                                       "red", "nir", "bands", "x"]) | st.text(max_size=8),
                      children, max_size=5),
    max_leaves=20)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))


def _replace(node, path, value):
    if not path:
        return value
    out = dict(node)
    out[path[0]] = _replace(node[path[0]], path[1:], value)
    return out


@st.composite
def mutated_graphs(draw):
    """The valid graph with one subtree replaced by random JSON or a hostile value."""
    graph = ndvi_graph()
    paths = list(_paths(graph))
    path = draw(st.sampled_from(paths))
    value = draw(json_values | st.sampled_from([
        1e308, -1e308, 0, -1, 10**30, "EPSG:999999", "9999-99-99", "", "B99",
        {"product_id": "NOPE"}, {"process_id": "min_time"}, [], {}]))
    return _replace(graph, path, value)


@given(graph=mutated_graphs(), output=st.none() | json_values | st.fixed_dictionaries(
    {"format": st.sampled_from(["GTiff", "PNG", "JPEG", "JSON", "nope", 3])},
    optional={"parameters": json_values}))
@FUZZ
def test_malformed_graphs_never_500(fuzz_app, graph, output):
    c = fuzz_app.test_client()
    body = {"process_graph": graph, **({"output": output} if output is not None else {})}
    for path in ("/jobs", "/execute"):
        resp = c.post(path, json=body)
        assert no_server_error(resp), (path, resp.status_code, resp.data[:300])


@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
@FUZZ
def test_random_bodies_never_500(fuzz_app, body):
    c = fuzz_app.test_client()
    job = fuzz_app.fuzz_ids["job_id"]
    for method, path in (("POST", "/jobs"), ("POST", "/execute"), ("POST", "/services"),
                         ("PATCH", f"/jobs/{job}"), ("PATCH",
                                                     f"/services/{fuzz_app.fuzz_ids['xyz']}")):
        resp = c.open(path, method=method, data=body, content_type="application/json")
        assert no_server_error(resp), (method, path, resp.data[:300])


# -- OGC parameters ----------------------------------------------------------------------

OGC_KEYS = ["SERVICE", "REQUEST", "VERSION", "LAYER", "STYLE", "FORMAT", "TILEMATRIXSET",
            "TILEMATRIX", "TILEROW", "TILECOL", "TIME", "COVERAGEID", "COVERAGE", "SUBSET",
            "SCALESIZE", "SCALEFACTOR", "BBOX", "CRS", "RESPONSE_CRS", "WIDTH", "HEIGHT",
            "RESX", "RESY", "IDENTIFIERS", "ACCEPTVERSIONS", "OUTPUTCRS", "SUBSETTINGCRS",
            "MEDIATYPE", "LAYERS", "STYLES", "SRS", "I", "J", "X", "Y", "INFO_FORMAT",
            "QUERY_LAYERS", "TRANSPARENT", "BGCOLOR"]
ogc_values = st.sampled_from([
    "WMTS", "WCS", "GetCapabilities", "GetTile", "GetCoverage", "DescribeCoverage", "1.0.0",
    "2.0.1", "1.1.1", "image/png", "image/tiff", "image/jpeg", "GoogleMapsCompatible",
    "WorldCRS84Quad", "0", "-1", "99", "1e309", "nan", "E(500000,501000)", "N(0,1)",
    "x(1,0)", "i(100000)", "EPSG:4326", "EPSG:32632", "urn:ogc:def:crs:EPSG::3857",
    "2020-05-01", "2020-13-45", "0,0,1,1", "1,1,0,0", "WMS", "GetMap", "GetFeatureInfo",
    "GetLegendGraphic", "1.3.0", "2020-05-01/2020-05-30", "0xFF00FF", "TRUE"]) \
    | st.text(max_size=15)


@given(params=st.dictionaries(st.sampled_from(OGC_KEYS), ogc_values, max_size=8),
       kind=st.sampled_from(["wmts", "wcs", "wms"]), fix=st.booleans())
@FUZZ
def test_ogc_parameters_never_500(fuzz_app, params, kind, fix):
    if fix:  # reach deeper than SERVICE/REQUEST checks
        request = {"wmts": "GetTile", "wcs": "GetCoverage", "wms": "GetMap"}[kind]
        params = {"SERVICE": kind.upper(), "REQUEST": request, **params}
        layer = {"wmts": "LAYER", "wcs": "COVERAGEID", "wms": "LAYERS"}[kind]
        params.setdefault(layer, fuzz_app.fuzz_ids["job_id"])
    c = fuzz_app.test_client()
    for url in (f"/service/{kind}/{fuzz_app.fuzz_ids[kind]}", f"/{kind}"):
        resp = c.get(url, query_string=params)
        assert no_server_error(resp), (url, params, resp.status_code, resp.data[:400])


@given(z=st.integers(-2, 40) | st.text(max_size=4), x=st.integers(-5, 10**12)
       | st.text(max_size=4), y=st.integers(-5, 10**12) | st.text(max_size=6),
       ext=st.sampled_from(["png", "jpg", "tif", "gif", ""]))
@FUZZ
def test_xyz_coordinates_never_500(fuzz_app, z, x, y, ext):
    url = f"/service/xyz/{fuzz_app.fuzz_ids['xyz']}/{z}/{x}/{y}.{ext}"
    resp = fuzz_app.test_client().get(url)
    assert no_server_error(resp), (url, resp.data[:300])


# -- tiles near the data: WMTS (KVP and REST), XYZ and TMS with near-valid values -----------

#: A GoogleMapsCompatible tile (z, row, col) inside the synthetic area.
AREA_TILE = (14, 5825, 8602)
_GARBAGE = st.text(alphabet="0123456789.,-+:eE NaIfnx/T_", max_size=12)
_DATES = st.sampled_from(["2020-05-01", "2020-05-11", "2020-05-21", "2020-05-02",
                          "2020-05-11T10:00:00Z", "2021-01-01", "0001-01-01", "9999-12-31"])


def _or_garbage(valid):
    return st.one_of(valid, valid, valid, _GARBAGE)


@st.composite
def tiles_near_the_data(draw):
    """``(z, row, col)`` texts: the area's tile at any zoom, its neighbours, or garbage."""
    z = draw(st.integers(-1, 26))
    shift = 14 - z
    row, col = ((AREA_TILE[1] >> shift, AREA_TILE[2] >> shift) if shift >= 0 else
                (AREA_TILE[1] << -shift, AREA_TILE[2] << -shift))
    row += draw(st.integers(-2, 2))
    col += draw(st.integers(-2, 2))
    return tuple(draw(_or_garbage(st.just(str(v)))) for v in (z, row, col))


_WMTS_EXTRA = st.fixed_dictionaries({}, optional={
    "TIME": _or_garbage(_DATES),
    "STYLE": _or_garbage(st.just("default")),
    "FORMAT": _or_garbage(st.sampled_from(["image/png", "image/jpeg", "image/tiff"])),
    "VERSION": _or_garbage(st.just("1.0.0")),
    "TILEMATRIXSET": _or_garbage(st.sampled_from(["GoogleMapsCompatible", "WorldCRS84Quad"])),
})


@given(tile=tiles_near_the_data(), extra=_WMTS_EXTRA, timed=st.booleans())
@FUZZ
def test_wmts_tiles_near_the_data_never_500(fuzz_app, tile, extra, timed):
    """GetTile by KVP (service and global endpoint) and by the RESTful template."""
    ids = fuzz_app.fuzz_ids
    layer, service = (ids["timed"], ids["timed_wmts"]) if timed else (ids["job_id"], ids["wmts"])
    z, row, col = tile
    params = {"SERVICE": "WMTS", "REQUEST": "GetTile", "LAYER": layer, "STYLE": "default",
              "FORMAT": "image/png", "TILEMATRIXSET": "GoogleMapsCompatible",
              "TILEMATRIX": z, "TILEROW": row, "TILECOL": col, **extra}
    c = fuzz_app.test_client()
    for url in (f"/service/wmts/{service}", "/wmts"):
        resp = c.get(url, query_string=params)
        assert no_server_error(resp), (url, params, resp.status_code, resp.data[:400])
    ext = {"image/png": "png", "image/jpeg": "jpg", "image/tiff": "tif"}.get(
        params["FORMAT"], params["FORMAT"])
    parts = [layer, params["STYLE"]] + ([params["TIME"]] if "TIME" in params else [])
    parts += [params["TILEMATRIXSET"], z, row, f"{col}.{ext}"]
    url = f"/service/wmts/{service}/1.0.0/" + "/".join(quote(p, safe="") for p in parts)
    resp = c.get(url)
    assert no_server_error(resp), (url, resp.status_code, resp.data[:400])


@given(tile=tiles_near_the_data(), date=_or_garbage(_DATES),
       ext=st.sampled_from(["png", "jpg", "tif", "jpeg", "PNG", ""]))
# what it found: the year 1 written back as '1-01-01' (strftime) and the day after
# 9999-12-31 (an OverflowError) were 500s
@example(tile=("0", "0", "0"), date="0001-01-01", ext="png")
@example(tile=("14", "5825", "8602"), date="9999-12-31", ext="png")
@FUZZ
def test_xyz_and_tms_tiles_near_the_data_never_500(fuzz_app, tile, date, ext):
    """The XYZ template (x = column, y = row) and the dated TMS path."""
    ids = fuzz_app.fuzz_ids
    z, row, col = (quote(p, safe="") for p in tile)
    c = fuzz_app.test_client()
    for url in (f"/service/xyz/{ids['xyz']}/{z}/{col}/{row}.{ext}",
                f"/service/tms/{ids['timed_tms']}/{quote(date, safe='')}/{z}/{col}/{row}"):
        resp = c.get(url)
        assert no_server_error(resp), (url, resp.status_code, resp.data[:400])


# -- uploads -----------------------------------------------------------------------------

path_parts = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=12)


@given(parts=st.lists(path_parts | st.sampled_from(["..", ".", "", "%2e%2e", "~", "/etc"]),
                      min_size=1, max_size=4), data=st.binary(max_size=2000))
@FUZZ
def test_uploads_never_500(fuzz_app, parts, data):
    c = fuzz_app.test_client()
    url = "/users/me/files/" + "/".join(parts)
    put = c.put(url, data=data)
    assert no_server_error(put), (url, put.data[:300])
    with c.get(url) as got:
        assert no_server_error(got)
        if put.status_code in (200, 201) and got.status_code == 200 and not got.is_json:
            assert got.data == data
    assert no_server_error(c.delete(url))


latin1 = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)


@given(headers=st.fixed_dictionaries({}, optional={
    "Origin": latin1, "Content-Type": latin1 | st.sampled_from(
        ["application/json", "multipart/form-data", "application/x-www-form-urlencoded"]),
    "Accept": latin1, "Access-Control-Request-Method": latin1,
    "Access-Control-Request-Headers": latin1, "Authorization": latin1,
    "Range": latin1, "If-None-Match": latin1}),
    method=st.sampled_from(["GET", "POST", "OPTIONS", "PATCH", "PUT", "DELETE"]),
    path=st.sampled_from(["/", "/jobs", "/execute", "/services", "/users/me/files/x.bin",
                          "/openapi.json", "/data/TEST"]),
    body=st.binary(max_size=200))
@FUZZ
def test_random_headers_never_500(fuzz_app, headers, method, path, body):
    with fuzz_app.test_client().open(path, method=method, headers=headers, data=body) as resp:
        assert no_server_error(resp), (method, path, headers, resp.data[:300])


def test_server_keeps_serving(fuzz_app):
    """After all the fuzzing the app still answers, with correct results."""
    c = fuzz_app.test_client()
    assert c.get("/").status_code == 200
    resp = c.post("/execute", json={"process_graph": ndvi_graph(),
                                    "output": {"format": "GTiff"}})
    assert resp.status_code == 200 and resp.data[:2] in (b"II", b"MM")
    limiter = fuzz_app.extensions["tileserver"].engine.limiter
    assert limiter.inflight == 0
