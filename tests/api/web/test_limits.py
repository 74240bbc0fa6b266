"""Limits: body size, graph size and depth, pixels per evaluation, output size, evaluations
in flight and evaluation time. Each is a clear 4xx/5xx (JSON, or ows:ExceptionReport on OGC
requests), never a 500, and the server keeps answering afterwards."""

from __future__ import annotations

import io
import json
import threading
import time

import morecantile
import numpy as np
from lxml import etree
from pyproj import Transformer
from rasterio.io import MemoryFile

from tests.support.hardening import BBOX, ndvi_graph
from tileserver.engine import evaluator

OWS = "{http://www.opengis.net/ows/1.1}"


def _execute(client, graph=None, fmt="GTiff"):
    return client.post("/execute", json={"process_graph": graph or ndvi_graph(),
                                         "output": {"format": fmt}})


def _tile_url(client, z=13) -> str:
    """A WMTS KVP GetTile URL of a new ``wmts`` service, inside the job's extent."""
    job = client.post("/jobs", json={"process_graph": ndvi_graph()}).json["job_id"]
    service = client.post("/services", json={"job_id": job, "type": "wmts"})
    assert service.status_code == 201, service.data[:300]
    lon, lat = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True).transform(
        BBOX["left"] + 1000, BBOX["top"] - 1000)
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, z)
    return (f"/service/wmts/{service.json['service_id']}?SERVICE=WMTS&REQUEST=GetTile"
            f"&VERSION=1.0.0&LAYER={job}&STYLE=default&FORMAT=image/png"
            f"&TILEMATRIXSET=GoogleMapsCompatible&TILEMATRIX={z}&TILEROW={t.y}&TILECOL={t.x}")


def _ows_code(resp) -> str:
    root = etree.fromstring(resp.data)
    assert etree.QName(root).localname == "ExceptionReport"
    return root.find(f"{OWS}Exception").get("exceptionCode")


# -- request bodies ----------------------------------------------------------------------


def test_json_body_over_the_limit_is_413_json(make_app, small_catalog):
    c = make_app([small_catalog], max_body_bytes=2048).test_client()
    big = {"process_graph": ndvi_graph(), "description": "x" * 4000}
    resp = c.post("/jobs", json=big)
    assert resp.status_code == 413
    assert resp.json["code"] == "PayloadTooLarge" and "2048" in resp.json["message"]
    # without Content-Length (chunked) the limit holds while reading
    resp = c.post("/jobs", input_stream=io.BytesIO(json.dumps(big).encode()),
                  headers={"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
                  environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == 413 and resp.json["code"] == "PayloadTooLarge"
    small = c.post("/jobs", json={"process_graph": ndvi_graph()})
    assert small.status_code == 201


def test_uploads_have_their_own_limit(make_app, small_catalog):
    app = make_app([small_catalog], max_body_bytes=1024, max_upload_bytes=4096)
    c = app.test_client()
    ok = c.put("/users/me/files/a.bin", data=b"x" * 3000)  # above the JSON limit: fine
    assert ok.status_code == 201
    big = c.put("/users/me/files/b.bin", data=b"x" * 5000)
    assert big.status_code == 413 and big.json["code"] == "PayloadTooLarge"
    chunked = c.put("/users/me/files/c.bin", input_stream=io.BytesIO(b"x" * 5000),
                    headers={"Transfer-Encoding": "chunked"},
                    environ_overrides={"wsgi.input_terminated": True})
    assert chunked.status_code == 413 and chunked.json["code"] == "PayloadTooLarge"
    assert [f["path"] for f in c.get("/users/me/files").json
            if "path" in f] in (["a.bin"], ["/a.bin"])


# -- graphs ------------------------------------------------------------------------------


def test_graph_node_and_depth_limits(make_app, small_catalog):
    c = make_app([small_catalog], max_graph_nodes=4, max_graph_depth=3).test_client()
    graph = ndvi_graph()  # 5 nodes, depth 4
    for path in ("/jobs", "/execute"):
        resp = c.post(path, json={"process_graph": graph})
        assert resp.status_code == 400
        assert resp.json["code"] == "ProcessGraphInvalid"
        assert "limit" in resp.json["message"]
    assert c.post("/jobs", json={"process_graph": ndvi_graph(reduce=None)["args"]["imagery"]}
                  ).status_code == 201  # 3 nodes, depth 2


def test_deeply_nested_json_is_400(client):
    deep = '{"process_graph": ' + '{"process_id": "min_time", "args": {"imagery": ' * 5000
    deep += '{"product_id": "TEST"}' + "}}" * 5000 + "}"
    resp = client.post("/execute", data=deep, content_type="application/json")
    assert resp.status_code == 400
    nested = "[" * 100_000 + "]" * 100_000
    resp = client.post("/jobs", data=nested, content_type="application/json")
    assert resp.status_code == 400
    assert client.get("/processes").status_code == 200


# -- pixels ------------------------------------------------------------------------------


def test_pixels_bands_dates_limit(make_app, small_catalog):
    per_date = 256 * 256 * 2  # the BBOX window with B04 and B08
    c = make_app([small_catalog], max_pixels=per_date * 2).test_client()
    # three acquisition days x 2 bands x 256 x 256 > limit
    resp = _execute(c)
    assert resp.status_code == 413
    assert resp.json["code"] == "PayloadTooLarge"
    assert "3 dates" in resp.json["message"] and "2 bands" in resp.json["message"]
    # one day fits
    one_day = ndvi_graph(reduce=None)
    one_day["args"]["imagery"]["args"]["to"] = "2020-05-02"
    assert _execute(c, one_day).status_code == 200


def test_pixel_limit_on_ogc_request_is_an_exception_report(make_app, small_catalog):
    c = make_app([small_catalog], max_pixels=1000).test_client()
    resp = c.get(_tile_url(c))
    assert resp.status_code == 413
    assert _ows_code(resp) == "InvalidParameterValue"


def test_output_pixels_limit(make_app, small_catalog):
    c = make_app([small_catalog], max_output_pixels=10_000).test_client()
    resp = _execute(c)
    assert resp.status_code == 413 and "batch job" in resp.json["message"]


# -- evaluations in flight and time --------------------------------------------------------


def test_evaluations_in_flight(make_app, small_catalog, monkeypatch):
    app = make_app([small_catalog], max_evaluations=1, evaluation_queue_timeout=0)
    c = app.test_client()
    entered, release = threading.Event(), threading.Event()
    real = evaluator.read_window

    def held_read(*args, **kwargs):
        entered.set()
        release.wait(timeout=60)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluator, "read_window", held_read)
    results = {}
    first = threading.Thread(target=lambda: results.update(first=_execute(c)))
    first.start()
    try:
        assert entered.wait(timeout=60)
        busy = _execute(c)
        assert busy.status_code == 503
        assert busy.json["code"] == "ServiceUnavailable"
        assert int(busy.headers["Retry-After"]) >= 1
        assert c.get("/processes").status_code == 200  # non-evaluating requests still work
    finally:
        release.set()
        first.join(timeout=120)
    assert results["first"].status_code == 200
    assert app.extensions["tileserver"].engine.limiter.inflight == 0
    assert _execute(c).status_code == 200  # the slot was given back


def test_evaluation_timeout_leaves_no_hung_worker(make_app, small_catalog, monkeypatch):
    app = make_app([small_catalog], evaluation_timeout=1)
    c = app.test_client()
    real = evaluator.read_window
    monkeypatch.setattr(evaluator, "read_window",
                        lambda *a, **k: (time.sleep(2.5), real(*a, **k))[1])
    resp = _execute(c)
    assert resp.status_code == 504
    assert resp.json["code"] == "Timeout"
    engine = app.extensions["tileserver"].engine
    assert engine.limiter.inflight == 0
    monkeypatch.setattr(evaluator, "read_window", real)
    # reads already started finish on their own (bounded: one window each) and the reads
    # not started were cancelled: the read pool drains
    engine._pool.submit(lambda: None).result(timeout=30)
    engine.limiter.timeout = 120  # a slow shared CI machine must not fail the check below
    # the same evaluation afterwards completes with the right values
    ok = _execute(c, ndvi_graph(reduce=None))
    assert ok.status_code == 200
    with MemoryFile(ok.data) as mem, mem.open() as ds:
        values = ds.read(masked=True)
        assert ds.width == 256 and ds.height == 256
    assert values.count() > 0 and float(np.abs(values).max()) <= 1.0


def test_evaluation_timeout_on_ogc_request(make_app, small_catalog, monkeypatch):
    c = make_app([small_catalog], evaluation_timeout=1).test_client()
    url = _tile_url(c)
    real = evaluator.read_window
    monkeypatch.setattr(evaluator, "read_window",
                        lambda *a, **k: (time.sleep(2.5), real(*a, **k))[1])
    resp = c.get(url)
    assert resp.status_code == 504
    assert _ows_code(resp) == "NoApplicableCode"
    monkeypatch.setattr(evaluator, "read_window", real)
    engine = c.application.extensions["tileserver"].engine
    engine._pool.submit(lambda: None).result(timeout=30)
    engine.limiter.timeout = 120
    resp = c.get(url)
    assert resp.status_code == 200
    with MemoryFile(resp.data) as mem, mem.open() as ds:
        assert ds.driver == "PNG" and ds.width == 256


def test_coverage_size_limit_is_an_ogc_exception(make_app, small_catalog):
    c = make_app([small_catalog], max_output_pixels=100_000).test_client()
    job = c.post("/jobs", json={"process_graph": ndvi_graph()}).json["job_id"]
    service = c.post("/services", json={"job_id": job, "type": "wcs"}).json
    url = f"/service/wcs/{service['service_id']}"
    params = {"SERVICE": "WCS", "VERSION": "1.0.0", "REQUEST": "GetCoverage",
              "COVERAGE": f"job_{job}", "CRS": "EPSG:32632", "FORMAT": "GeoTIFF",
              "BBOX": "500000,5097440,502560,5100000"}
    big = c.get(url, query_string={**params, "WIDTH": 100_000, "HEIGHT": 100_000})
    assert big.status_code == 413
    root = etree.fromstring(big.data)
    assert etree.QName(root).localname.endswith("ExceptionReport")
    ok = c.get(url, query_string={**params, "WIDTH": 256, "HEIGHT": 256})
    assert ok.status_code == 200
    with MemoryFile(ok.data) as mem, mem.open() as ds:
        assert (ds.width, ds.height) == (256, 256)
