"""Two users: every endpoint of the running app is tried by bob on alice's ids.

The routes come from the app's URL map, so endpoints added later are covered without
editing this file: any route whose variables we can fill (job, service, user, file,
tile coordinates…) is called with every method it accepts. Bob must get exactly the answer
he gets for an id that does not exist (404 on the REST API), and alice's things must be
unchanged afterwards.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support.hardening import (
    basic,
    fill_rule,
    ndvi_graph,
    route_args,
)
from tileserver.web.auth import is_public

ALICE, BOB = basic("alice"), basic("bob")
FILE_BODY = b'{"type": "FeatureCollection", "features": []}'


@pytest.fixture
def alice(app):
    """Alice's job, one service of each type and a file."""
    c = app.test_client()
    job = c.post("/jobs", json={"process_graph": ndvi_graph(), "title": "alice's"},
                 headers=ALICE)
    assert job.status_code == 201
    job_id = job.json["job_id"]
    services = {}
    for kind in c.get("/capabilities/services").json:
        resp = c.post("/services", json={"job_id": job_id, "type": kind}, headers=ALICE)
        assert resp.status_code == 201, resp.json
        services[kind] = resp.json
    has_files = any(r.rule.startswith("/users/<user_id>/files/") for r in app.url_map.iter_rules())
    if has_files:
        put = c.put("/users/alice/files/regions/a.geojson", data=FILE_BODY, headers=ALICE)
        assert put.status_code in (200, 201), put.json
    return {"job_id": job_id, "services": services, "file": "regions/a.geojson" if has_files
            else None}


def _values(ids: dict, job_id: str, service_id: str, file_path: str) -> dict:
    return {"job_id": job_id, "service_id": service_id, "user_id": ids["user"],
            "path": file_path, "layer": job_id, "style": "default",
            "tms": "GoogleMapsCompatible", "z": "0", "row": "0", "last": "0.png",
            "x": "0", "time": "2020-05-01", "token": "0" * 32, "name": "item.json",
            "collection_id": job_id, "tms_id": "WebMercatorQuad", "col": "0"}


def _call(client, method: str, url: str, headers: dict):
    if method == "PUT":
        return client.open(url, method=method, data=b"bob was here", headers=headers)
    if method in ("POST", "PATCH"):
        return client.open(url, method=method, json={"title": "bob was here"}, headers=headers)
    return client.open(url, method=method, headers=headers)


def _answer(resp) -> tuple:
    """What a client learns from a response: status and error code."""
    if resp.is_json:
        return resp.status_code, resp.json.get("code")
    return resp.status_code, None


def test_every_endpoint_across_users(app, alice):
    c = app.test_client()
    service_id = next(iter(alice["services"].values()))["service_id"]
    theirs = _values({"user": "alice"}, alice["job_id"], service_id,
                     alice["file"] or "regions/a.geojson")
    nobody = _values({"user": "nobody-" + uuid.uuid4().hex[:6]}, uuid.uuid4().hex,
                     uuid.uuid4().hex * 2, "regions/none.geojson")
    tried = []
    for rule in app.url_map.iter_rules():
        names = set(route_args(rule.rule))
        if not names & {"job_id", "service_id", "user_id", "collection_id"} or is_public(
                fill_rule(rule.rule, theirs) or rule.rule):
            continue  # nothing owned in the URL, or a public capability URL
        url_theirs, url_nobody = fill_rule(rule.rule, theirs), fill_rule(rule.rule, nobody)
        assert url_theirs, f"test_isolation cannot fill the variables of {rule.rule}"
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            got = _call(c, method, url_theirs, BOB)
            ref = _call(c, method, url_nobody, BOB)
            where = f"{method} {rule.rule}"
            assert got.status_code < 500, where
            assert _answer(got) == _answer(ref), f"{where}: bob can tell alice's ids exist"
            if not rule.rule.startswith(("/wmts", "/wcs", "/wms")):
                assert got.status_code == 404, f"{where} answered {got.status_code}"
            tried.append(where)
    assert len(tried) >= 12, tried
    # alice's things are untouched
    job = c.get(f"/jobs/{alice['job_id']}", headers=ALICE)
    assert job.status_code == 200 and job.json["title"] == "alice's"
    assert job.json["status"] == "submitted"
    for service in alice["services"].values():
        assert c.get(f"/services/{service['service_id']}", headers=ALICE).status_code == 200
    if alice["file"]:
        with c.get(f"/users/alice/files/{alice['file']}", headers=ALICE) as got:
            assert got.status_code == 200 and got.data == FILE_BODY


def test_listings_show_only_own_things(app, alice):
    c = app.test_client()
    bob_job = c.post("/jobs", json={"process_graph": ndvi_graph()}, headers=BOB).json["job_id"]
    assert [j["job_id"] for j in c.get("/users/bob/jobs", headers=BOB).json] == [bob_job]
    assert c.get("/users/bob/services", headers=BOB).json == []
    assert {j["job_id"] for j in c.get("/users/alice/jobs", headers=ALICE).json} == {
        alice["job_id"]}
    if alice["file"]:
        assert c.get("/users/bob/files", headers=BOB).json == []
    for path in ("/wmts?SERVICE=WMTS&REQUEST=GetCapabilities",
                 "/wcs?SERVICE=WCS&REQUEST=GetCapabilities&VERSION=2.0.1",
                 "/wms?SERVICE=WMS&REQUEST=GetCapabilities"):
        if c.get(path.split("?")[0], headers=BOB).status_code == 404:
            continue  # that protocol module is not there yet
        resp = c.get(path, headers=BOB)
        assert resp.status_code == 200, path
        assert alice["job_id"] not in resp.data.decode(), path


def test_bob_cannot_use_alices_job_in_a_service(app, alice):
    c = app.test_client()
    resp = c.post("/services", json={"job_id": alice["job_id"], "type": "xyz"}, headers=BOB)
    assert resp.status_code == 404
    assert resp.json["code"] == "JobNotFound"


def test_service_urls_are_public_and_revocable(app, alice):
    c = app.test_client()
    urls = {}
    for kind, service in alice["services"].items():
        url = service["service_url"].replace("http://localhost", "")
        if kind == "xyz":
            url = url.replace("{z}/{x}/{y}", "0/0/0")
        elif kind == "wmts":
            url += "?SERVICE=WMTS&REQUEST=GetCapabilities"
        elif kind == "wms":
            url += "?SERVICE=WMS&REQUEST=GetCapabilities"
        else:
            url += "?SERVICE=WCS&REQUEST=GetCapabilities&VERSION=2.0.1"
        if c.get(url).status_code == 404:
            continue  # that protocol module is not there yet
        urls[kind] = url
        assert c.get(url).status_code == 200, url  # no credentials needed
    assert urls, "no service protocol is registered"
    for kind, url in urls.items():
        sid = alice["services"][kind]["service_id"]
        assert c.delete(f"/services/{sid}", headers=ALICE).status_code == 204
        assert c.get(url).status_code == 404, url


REGION = (b'{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
          b'{"name": "alices-secret-field"}, "geometry": {"type": "Polygon", "coordinates": '
          b'[[[9.0, 46.04], [9.01, 46.04], [9.01, 46.05], [9.0, 46.05], [9.0, 46.04]]]}}]}')


def _zonal(path: str) -> dict:
    return {"process_graph": {"process_id": "zonal_statistics", "args": {
        "imagery": ndvi_graph(), "regions": path, "func": "avg"}},
        "output": {"format": "JSON"}}


def test_region_files_of_graphs_are_the_callers_only(app):
    """A graph naming another user's region file is answered like a missing file, also
    after the owner computed the same graph (no result comes from the shared cache)."""
    c = app.test_client()
    assert c.put("/users/alice/files/fields.geojson", data=REGION,
                 headers=ALICE).status_code == 201
    mine = c.post("/execute", json=_zonal("/users/alice/files/fields.geojson"), headers=ALICE)
    assert mine.status_code == 200, mine.data[:300]
    assert b"alices-secret-field" in mine.data
    theirs = c.post("/execute", json=_zonal("/users/alice/files/fields.geojson"), headers=BOB)
    missing = c.post("/execute", json=_zonal("/users/alice/files/none.geojson"), headers=BOB)
    assert 400 <= theirs.status_code < 500, theirs.data[:300]
    assert _answer(theirs) == _answer(missing)
    assert b"alices-secret-field" not in theirs.data
