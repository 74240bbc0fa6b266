"""The openEO 1.x version table: a version is a row (``versions.VERSIONS``) mounted from the
one route table, a route's gate says which versions have it. A made-up 1.3 is mounted
beside 1.2 here to check that everything a version answers follows its row."""

from __future__ import annotations

import pytest

from tests.support.hardening import BBOX, basic, bearer, users_file, with_users
from tileserver.web.openeo import v1
from tileserver.web.openeo.v1.versions import EVERY, VERSIONS, ApiVersion, Gate

#: A 1.x process: the TEST collection over a small bbox, saved as GeoTIFF.
PROCESS = {"process": {"process_graph": {
    "load": {"process_id": "load_collection", "arguments": {
        "id": "TEST", "spatial_extent": {"west": BBOX["left"], "east": BBOX["right"],
                                         "south": BBOX["bottom"], "north": BBOX["top"],
                                         "crs": "EPSG:32632"},
        "temporal_extent": ["2020-05-01", "2020-06-01"], "bands": ["B04"]}},
    "save": {"process_id": "save_result", "arguments": {
        "data": {"from_node": "load"}, "format": "GTiff"}, "result": True}}}}
V13 = ApiVersion("1.3.0", "openeo_v1_3", "/openeo/1.3", production=False)


def only_in_13():
    """A route that 1.3 adds."""
    return {"version": v1.versions.current().number}


@pytest.fixture
def app13(make_app, small_catalog, tmp_path_factory, monkeypatch):
    monkeypatch.setattr(v1, "ROUTES", [
        *v1.ROUTES, v1.Route("/only13", ["GET"], only_in_13, True, Gate(since="1.3.0"))])
    app = with_users(make_app([small_catalog]), users_file(tmp_path_factory))
    v1.mount(app, V13)
    return app


def test_gates():
    v12 = VERSIONS[0]
    assert v12.number == "1.2.0" and EVERY.admits(v12) and EVERY.admits(V13)
    assert Gate(since="1.3.0").admits(V13) and not Gate(since="1.3.0").admits(v12)
    assert Gate(until="1.3.0").admits(v12) and not Gate(until="1.3.0").admits(V13)
    assert V13.at_least("1.2.0") and not v12.at_least("1.2.1")


def test_the_only_row_is_1_2(small_app):
    assert [v.number for v in VERSIONS] == ["1.2.0"]
    rules = {r.rule for r in small_app.url_map.iter_rules() if r.rule.startswith("/openeo/")}
    assert rules and all(r.startswith("/openeo/1.2/") for r in rules)


def test_a_second_row_is_a_second_version(app13):
    client = app13.test_client()
    versions = client.get("/.well-known/openeo").json["versions"]
    assert [(v["api_version"], v["url"], v["production"]) for v in versions] == [
        ("1.3.0", "http://localhost/openeo/1.3/", False),
        ("1.2.0", "http://localhost/openeo/1.2/", True),
        ("0.0.2", "http://localhost/", True)]
    old, new = client.get("/openeo/1.2/").json, client.get("/openeo/1.3/").json
    assert (old["api_version"], new["api_version"]) == ("1.2.0", "1.3.0")
    assert new["conformsTo"][0] == "https://api.openeo.org/1.3.0"
    assert new["links"][0]["href"] == "http://localhost/openeo/1.3/"
    # the gated route is in 1.3 only, and in its capabilities only
    assert {"path": "/only13", "methods": ["GET"]} in new["endpoints"]
    assert [e for e in new["endpoints"] if e["path"] != "/only13"] == old["endpoints"]
    assert client.get("/openeo/1.3/only13").json == {"version": "1.3.0"}
    assert client.get("/openeo/1.2/only13").status_code == 404
    # public and private routes as in 1.2; URLs the views build stay in the version
    assert client.get("/openeo/1.3/collections").status_code == 200
    assert client.get("/openeo/1.3/jobs").status_code == 401
    login = client.get("/openeo/1.3/credentials/basic", headers=basic("alice"))
    auth = bearer(f"basic//{login.json['access_token']}")
    resp = client.post("/openeo/1.3/jobs", json=PROCESS, headers=auth)
    assert resp.status_code == 201, resp.json
    job_id = resp.headers["OpenEO-Identifier"]
    assert resp.headers["Location"] == f"http://localhost/openeo/1.3/jobs/{job_id}"
    assert client.get(f"/openeo/1.3/jobs/{job_id}", headers=auth).json["id"] == job_id
    assert client.get(f"/openeo/1.2/jobs/{job_id}", headers=auth).json["id"] == job_id
