"""The openEO 1.x version table: a version is a row (``versions.VERSIONS``) mounted from the
one route table, a route's gate says which versions have it. A made-up 1.4 is mounted
beside 1.2 and 1.3 here to check that everything a version answers follows its row."""

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
V14 = ApiVersion("1.4.0", "openeo_v1_4", "/openeo/1.4", production=False)


def only_in_14():
    """A route that 1.4 adds."""
    return {"version": v1.versions.current().number}


@pytest.fixture
def app14(make_app, small_catalog, tmp_path_factory, monkeypatch):
    monkeypatch.setattr(v1, "ROUTES", [
        *v1.ROUTES, v1.Route("/only14", ["GET"], only_in_14, True, Gate(since="1.4.0"))])
    app = with_users(make_app([small_catalog]), users_file(tmp_path_factory))
    v1.mount(app, V14)
    return app


def test_gates():
    v12, v13 = VERSIONS
    assert v12.number == "1.2.0" and EVERY.admits(v12) and EVERY.admits(V14)
    assert Gate(since="1.3.0").admits(v13) and not Gate(since="1.3.0").admits(v12)
    assert Gate(until="1.3.0").admits(v12) and not Gate(until="1.3.0").admits(v13)
    assert Gate(since="1.4.0").admits(V14) and not Gate(since="1.4.0").admits(v13)
    assert V14.at_least("1.3.0") and v13.at_least("1.2.0") and not v12.at_least("1.2.1")


def test_the_rows_are_1_2_and_1_3(small_app):
    assert [(v.number, v.base, v.production) for v in VERSIONS] == [
        ("1.2.0", "/openeo/1.2", True), ("1.3.0", "/openeo/1.3", True)]
    rules = {r.rule for r in small_app.url_map.iter_rules() if r.rule.startswith("/openeo/")}
    assert rules and all(r.startswith(("/openeo/1.2/", "/openeo/1.3/")) for r in rules)
    # the same routes in both, but the Processing Parameters and Workspaces extensions of 1.3
    old = {r.removeprefix("/openeo/1.2") for r in rules if r.startswith("/openeo/1.2/")}
    new = {r.removeprefix("/openeo/1.3") for r in rules if r.startswith("/openeo/1.3/")}
    assert new - old == {"/processing_parameters", "/workspace_providers", "/workspaces",
                         "/workspaces/<workspace_id>", "/workspaces/<workspace_id>/files",
                         "/workspaces/<workspace_id>/files/<path:path>"} and old <= new


def test_another_row_is_another_version(app14):
    client = app14.test_client()
    versions = client.get("/.well-known/openeo").json["versions"]
    assert [(v["api_version"], v["url"], v["production"]) for v in versions] == [
        ("1.4.0", "http://localhost/openeo/1.4/", False),
        ("1.3.0", "http://localhost/openeo/1.3/", True),
        ("1.2.0", "http://localhost/openeo/1.2/", True),
        ("0.0.2", "http://localhost/", True)]
    old, new = client.get("/openeo/1.3/").json, client.get("/openeo/1.4/").json
    assert (old["api_version"], new["api_version"]) == ("1.3.0", "1.4.0")
    assert new["conformsTo"][0] == "https://api.openeo.org/1.4.0"
    assert new["links"][0]["href"] == "http://localhost/openeo/1.4/"
    # the gated route is in 1.4 only, and in its capabilities only
    assert {"path": "/only14", "methods": ["GET"]} in new["endpoints"]
    assert [e for e in new["endpoints"] if e["path"] != "/only14"] == old["endpoints"]
    assert client.get("/openeo/1.4/only14").json == {"version": "1.4.0"}
    assert client.get("/openeo/1.3/only14").status_code == 404
    # public and private routes as in 1.3; URLs the views build stay in the version
    assert client.get("/openeo/1.4/collections").status_code == 200
    assert client.get("/openeo/1.4/jobs").status_code == 401
    login = client.get("/openeo/1.4/credentials/basic", headers=basic("alice"))
    auth = bearer(f"basic//{login.json['access_token']}")
    resp = client.post("/openeo/1.4/jobs", json=PROCESS, headers=auth)
    assert resp.status_code == 201, resp.json
    job_id = resp.headers["OpenEO-Identifier"]
    assert resp.headers["Location"] == f"http://localhost/openeo/1.4/jobs/{job_id}"
    assert client.get(f"/openeo/1.4/jobs/{job_id}", headers=auth).json["id"] == job_id
    assert client.get(f"/openeo/1.2/jobs/{job_id}", headers=auth).json["id"] == job_id
