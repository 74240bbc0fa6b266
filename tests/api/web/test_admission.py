"""Admission control through HTTP: every synchronous evaluation (0.0.2 /execute, 1.x /result,
tiles, coverages) brings the planner's memory estimate. One that can never fit the memory
budget is a 413 saying what to shrink (openEO JSON, or an ows:ExceptionReport); one that
must wait for memory held by others is a 429 with Retry-After, or waits a bounded time.
Evaluations in flight are held inside a read (no sleeps, no timed assertions)."""

from __future__ import annotations

import threading

import morecantile
import pytest
from lxml import etree
from pyproj import Transformer

from tests.support.hardening import BBOX, basic, ndvi_graph, users_file, with_users
from tileserver.engine import evaluator

OWS = "{http://www.opengis.net/ows/1.1}"
V1 = "/openeo/1.2"
WCS = {"SERVICE": "WCS", "VERSION": "1.0.0", "REQUEST": "GetCoverage", "CRS": "EPSG:32632",
       "FORMAT": "GeoTIFF", "BBOX": "500000,5097440,502560,5100000", "WIDTH": 256,
       "HEIGHT": 256}


def _execute(client, **kwargs):
    return client.post("/execute", json={"process_graph": ndvi_graph(),
                                         "output": {"format": "GTiff"}}, **kwargs)


def _v1_graph() -> dict:
    extent = {"west": BBOX["left"], "east": BBOX["right"], "south": BBOX["bottom"],
              "north": BBOX["top"], "crs": "EPSG:32632"}
    return {"load": {"process_id": "load_collection", "arguments": {
        "id": "TEST", "spatial_extent": extent, "temporal_extent": ["2020-05-01", "2020-06-01"],
        "bands": ["B04", "B08"]}},
        "ndvi": {"process_id": "ndvi", "arguments": {"data": {"from_node": "load"}}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "ndvi"}, "format": "GTiff"}, "result": True}}


def _execute_memory(app) -> int:
    rt = app.extensions["tileserver"]
    return rt.engine.plan(rt.engine.parse(ndvi_graph())).memory_bytes


def _services(c) -> tuple[str, str, str]:
    job = c.post("/jobs", json={"process_graph": ndvi_graph()}).json["job_id"]
    wcs = c.post("/services", json={"job_id": job, "type": "wcs"}).json["service_id"]
    xyz = c.post("/services", json={"job_id": job, "type": "xyz"}).json["service_url"]
    lon, lat = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True).transform(
        BBOX["left"] + 1000, BBOX["top"] - 1000)
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 14)
    tile = xyz.split("://", 1)[-1].split("/", 1)[1].format(z=14, x=t.x, y=t.y)
    return job, f"/service/wcs/{wcs}", "/" + tile


def _exception(resp) -> tuple[str, str]:
    """Code and text of an OWS ExceptionReport or a WCS 1.0 ServiceExceptionReport."""
    root = etree.fromstring(resp.data)
    assert etree.QName(root).localname in ("ExceptionReport", "ServiceExceptionReport")
    exc = root.find(f"{OWS}Exception")
    if exc is not None:
        return exc.get("exceptionCode"), exc.findtext(f"{OWS}ExceptionText")
    exc = root.find("{http://www.opengis.net/ogc}ServiceException")
    return exc.get("code"), exc.text


def test_what_can_never_fit_the_budget_is_413_on_every_synchronous_route(make_app,
                                                                           small_catalog):
    need = _execute_memory(make_app([small_catalog]))
    c = make_app([small_catalog], memory_budget=need - 1).test_client()
    resp = _execute(c)
    assert resp.status_code == 413 and resp.json["code"] == "PayloadTooLarge"
    message = resp.json["message"]
    assert "256x256 pixels x 2 band(s) x 3 date(s)" in message
    assert "smaller bbox" in message and "fewer dates" in message and "batch job" in message
    resp = c.post(f"{V1}/result", json={"process": {"process_graph": _v1_graph()}})
    assert resp.status_code == 413 and resp.json["code"] == "PayloadTooLarge"
    assert "smaller bbox" in resp.json["message"] and resp.json["id"]
    job, wcs, _tile = _services(c)
    resp = c.get(wcs, query_string={**WCS, "COVERAGE": f"job_{job}"})
    assert resp.status_code == 413
    code, text = _exception(resp)
    assert code == "InvalidParameterValue" and "coarser resolution" in text
    # smaller requests fit: a quarter of the window
    resp = c.get(wcs, query_string={**WCS, "COVERAGE": f"job_{job}", "WIDTH": 64,
                                    "HEIGHT": 64})
    assert resp.status_code == 200 and resp.data[:2] in (b"II", b"MM")


def test_tiles_are_admitted_too(make_app, small_catalog):
    c = make_app([small_catalog], memory_budget=1).test_client()
    _job, _wcs, tile = _services(c)
    resp = c.get(tile)  # XYZ answers its errors in JSON
    assert resp.status_code == 413 and resp.json["code"] == "PayloadTooLarge"
    assert "memory" in resp.json["message"] and "coarser resolution" in resp.json["message"]
    c = make_app([small_catalog]).test_client()  # the default budget
    _job, _wcs, tile = _services(c)
    resp = c.get(tile)
    assert resp.status_code == 200 and resp.data[:4] == b"\x89PNG"


@pytest.fixture
def held(monkeypatch):
    """Evaluations stop in their first read until ``release`` is set."""
    entered, release = threading.Event(), threading.Event()
    real = evaluator.read_window

    def held_read(*args, **kwargs):
        entered.set()
        release.wait(timeout=120)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluator, "read_window", held_read)
    yield entered, release
    release.set()


def test_memory_held_by_others_is_429_with_retry_after(make_app, small_catalog, held):
    entered, release = held
    need = _execute_memory(make_app([small_catalog]))
    app = make_app([small_catalog], memory_budget=need + need // 2, admission_wait=0)
    c = app.test_client()
    limiter = app.extensions["tileserver"].engine.limiter
    results: dict = {}
    first = threading.Thread(target=lambda: results.update(first=_execute(c)))
    first.start()
    try:
        assert entered.wait(timeout=120)
        assert limiter.memory_held == need
        busy = _execute(c)
        assert busy.status_code == 429 and busy.json["code"] == "TooManyRequests"
        assert int(busy.headers["Retry-After"]) >= 1
        busy = c.post(f"{V1}/result", json={"process": {"process_graph": _v1_graph()}})
        assert busy.status_code == 429 and busy.json["code"] == "TooManyRequests"
        assert "Retry-After" in busy.headers
        assert c.get("/processes").status_code == 200  # nothing else is refused
    finally:
        release.set()
        first.join(timeout=120)
    assert results["first"].status_code == 200
    assert limiter.memory_held == 0 and limiter.inflight == 0
    assert _execute(c).status_code == 200  # the memory was given back


def test_or_it_waits_a_bounded_time_for_the_memory(make_app, small_catalog, held):
    entered, release = held
    need = _execute_memory(make_app([small_catalog]))
    app = make_app([small_catalog], memory_budget=need + need // 2, admission_wait=600)
    c = app.test_client()
    limiter = app.extensions["tileserver"].engine.limiter
    results: dict = {}
    threads = [threading.Thread(target=lambda k=k: results.update({k: _execute(c)}))
               for k in ("first", "second")]
    threads[0].start()
    assert entered.wait(timeout=120)
    threads[1].start()
    event = threading.Event()
    while limiter.waiting < 1:  # the second one waits for the first one's memory
        event.wait(0.01)
    release.set()
    for t in threads:
        t.join(timeout=120)
    assert results["first"].status_code == 200 and results["second"].status_code == 200
    assert limiter.refused == {}


def test_per_user_bound_on_synchronous_evaluations(make_app, small_catalog, held,
                                                   tmp_path_factory):
    entered, release = held
    app = with_users(make_app([small_catalog], max_user_evaluations=1, admission_wait=0),
                     users_file(tmp_path_factory))
    c = app.test_client()
    results: dict = {}
    first = threading.Thread(
        target=lambda: results.update(first=_execute(c, headers=basic("alice"))))
    first.start()
    try:
        assert entered.wait(timeout=120)
        busy = _execute(c, headers=basic("alice"))
        assert busy.status_code == 429 and "Retry-After" in busy.headers
        assert "at once" in busy.json["message"]
        other = {}
        bob = threading.Thread(target=lambda: other.update(r=_execute(c, headers=basic("bob"))))
        bob.start()  # bob is not bounded by alice's evaluation (he waits in the read)
        release.set()
        bob.join(timeout=120)
        assert other["r"].status_code == 200
    finally:
        release.set()
        first.join(timeout=120)
    assert results["first"].status_code == 200
