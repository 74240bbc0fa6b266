"""The openEO API 1.2 dialect through the Flask test client: discovery, capabilities, errors,
auth, CORS, collections, jobs, services and files (the official client drives a real server
in ``tests/e2e/clients/test_openeo_client.py``)."""

from __future__ import annotations

import pytest
import rasterio
from numpy.testing import assert_allclose
from rasterio.io import MemoryFile

from tests.support.hardening import basic, bearer, users_file, with_users
from tests.support.openeo import ndvi_reduce_graph

V1 = "/openeo/1.2"


def ndvi_graph(reducer: str = "min", fmt: str = "GTiff") -> dict:
    """A 1.x flat graph: NDVI of ``TEST`` over a small bbox in May 2020, reduced over time."""
    return ndvi_reduce_graph(reducer, fmt)


def process(graph: dict | None = None) -> dict:
    """A 1.x request body around a graph."""
    return {"process": {"process_graph": graph or ndvi_graph()}}


UNKNOWN_PROCESS = {"a": {"process_id": "nope", "arguments": {}, "result": True}}


@pytest.fixture
def users_app(make_app, small_catalog, tmp_path_factory):
    return with_users(make_app([small_catalog]), users_file(tmp_path_factory))


def v1_token(client, user: str) -> dict:
    resp = client.get(f"{V1}/credentials/basic", headers=basic(user))
    assert resp.status_code == 200, resp.json
    return bearer(f"basic//{resp.json['access_token']}")


# -- discovery -------------------------------------------------------------------------


def test_well_known_lists_both_versions(client):
    body = client.get("/.well-known/openeo").json
    versions = {v["api_version"]: v for v in body["versions"]}
    assert versions["1.2.0"]["url"] == "http://localhost/openeo/1.2/"
    assert versions["0.0.2"]["url"] == "http://localhost/"
    assert all(v["production"] for v in body["versions"])


def test_capabilities_list_exactly_the_routes_of_the_version(small_app, client):
    body = client.get(f"{V1}/").json
    assert body["api_version"] == "1.2.0"
    for key in ("backend_version", "stac_version", "id", "title", "description", "links"):
        assert body[key], key
    listed = {(e["path"], m) for e in body["endpoints"] for m in e["methods"]}
    expected = set()
    for rule in small_app.url_map.iter_rules():
        if rule.rule.startswith(V1 + "/"):
            path = rule.rule.removeprefix(V1).replace("<path:", "<")
            path = path.replace("<", "{").replace(">", "}")
            expected |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert listed == expected
    for needed in [("/collections", "GET"), ("/jobs", "POST"), ("/jobs/{job_id}/results", "GET"),
                   ("/services", "POST"), ("/result", "POST"), ("/credentials/basic", "GET"),
                   ("/files/{path}", "PUT")]:
        assert needed in listed, needed
    # and the root (0.0.2) capabilities do not list the 1.2 routes
    root = client.get("/").json
    assert not [e for e in root["endpoints"] if e["path"].startswith(("/openeo/", "/.well"))]
    assert root["api_version"] == "0.0.2"
    rels = {link["rel"]: link["href"] for link in body["links"]}
    assert client.get(rels["data"].removeprefix("http://localhost")).status_code == 200


def test_small_documents(client):
    assert "https://api.openeo.org/1.2.0" in client.get(f"{V1}/conformance").json["conformsTo"]
    formats = client.get(f"{V1}/file_formats").json
    assert formats["input"] == {}
    assert {"GTiff", "PNG", "JPEG"} <= set(formats["output"])
    assert formats["output"]["GTiff"]["gis_data_types"] == ["raster"]
    assert formats["output"]["NetCDF"]["gis_data_types"] == ["raster"]  # a gridded format
    assert {"XYZ", "WMTS"} <= set(client.get(f"{V1}/service_types").json)
    runtimes = client.get(f"{V1}/udf_runtimes").json  # run_udf: tests/e2e/clients/test_udf_v1.py
    assert runtimes["Python"]["type"] == "language"
    assert runtimes["Python"]["default"] in runtimes["Python"]["versions"]
    assert client.get(f"{V1}/me").json["user_id"] == "me"



def test_processes_are_the_official_descriptions_of_what_the_engine_runs(client):
    from tileserver.graph.specs import load_spec
    from tileserver.processes import supported_v1

    body = client.get(f"{V1}/processes").json
    by_id = {p["id"]: p for p in body["processes"]}
    assert set(by_id) == set(supported_v1())
    for pid in ("load_collection", "save_result", "ndvi", "reduce_dimension", "apply",
                "array_element", "linear_scale_range", "add", "min"):
        assert by_id[pid] == load_spec(pid), pid
        assert by_id[pid]["parameters"] and by_id[pid]["returns"]


# -- collections -----------------------------------------------------------------------


def test_collections_are_stac_with_cube_dimensions_and_common_names(client):
    body = client.get(f"{V1}/collections").json
    assert {c["id"] for c in body["collections"]} == {"TEST", "FLOATS"}
    test = client.get(f"{V1}/collections/TEST").json
    assert test["stac_version"].startswith("1.") and test["type"] == "Collection"
    dims = test["cube:dimensions"]
    assert set(dims) == {"x", "y", "t", "bands"}
    assert dims["bands"]["values"] == [b["name"] for b in test["summaries"]["eo:bands"]]
    names = {b["name"]: b.get("common_name") for b in test["summaries"]["eo:bands"]}
    assert names["B04"] == "red" and names["B08"] == "nir"
    assert dims["x"]["reference_system"] == 32632
    (west, south, east, north), = test["extent"]["spatial"]["bbox"]
    assert -180 <= west < east <= 180 and -90 <= south < north <= 90


def test_unknown_collection_is_a_v1_404(client):
    resp = client.get(f"{V1}/collections/NOPE")
    assert resp.status_code == 404
    assert resp.json["code"] == "CollectionNotFound"
    assert set(resp.json) == {"id", "code", "message", "links"}


# -- errors ----------------------------------------------------------------------------


def test_errors_use_the_1x_format_only_under_the_base(client):
    v1 = client.get(f"{V1}/jobs/nope")
    assert v1.status_code == 404
    assert v1.json["code"] == "JobNotFound" and v1.json["id"] and v1.json["links"] == []
    root = client.get("/jobs/nope")
    assert root.json == {"code": "JobNotFound", "message": v1.json["message"]}
    routing = client.get(f"{V1}/no/such/route")
    assert routing.status_code == 404 and routing.json["code"] == "NotFound"
    assert "id" in routing.json
    method = client.delete(f"{V1}/collections")
    assert method.status_code == 405 and method.json["code"] == "MethodNotAllowed"


@pytest.mark.parametrize("body, code", [
    ({}, "ProcessGraphMissing"),
    ({"process": {}}, "ProcessGraphMissing"),
    ({"process": {"process_graph": {}}}, "ProcessGraphMissing"),
    ({"process": {"process_graph": UNKNOWN_PROCESS}}, "ProcessUnsupported"),
    ({"process": {"process_graph": {"process_id": "min_time", "args": {}}}},
     "ProcessGraphInvalid"),
])
def test_bad_processes_are_400_with_the_spec_codes(client, body, code):
    for path in ("/jobs", "/result", "/services"):
        payload = {**body, "type": "XYZ"} if path == "/services" else body
        resp = client.post(V1 + path, json=payload)
        assert resp.status_code == 400, (path, resp.json)
        assert resp.json["code"] == code, (path, resp.json)


def test_validation_reports_errors_in_a_200(client):
    ok = client.post(f"{V1}/validation", json=process()["process"])
    assert ok.status_code == 200 and ok.json == {"errors": []}
    bad = client.post(f"{V1}/validation",
                      json={"process_graph": UNKNOWN_PROCESS})
    assert bad.status_code == 200
    assert bad.json["errors"][0]["code"] == "ProcessUnsupported"
    missing = client.post(f"{V1}/validation", json={})
    assert missing.status_code == 200
    assert missing.json["errors"][0]["code"] == "ProcessGraphMissing"
    assert client.post(f"{V1}/validation", data=b"{nope").status_code == 400


# -- auth ------------------------------------------------------------------------------


def test_basic_credentials_give_a_bearer_token(users_app):
    c = users_app.test_client()
    assert c.get(f"{V1}/").status_code == 200  # public
    assert c.get(f"{V1}/collections/TEST").status_code == 200
    anonymous = c.get(f"{V1}/me")
    assert anonymous.status_code == 401 and anonymous.json["code"] == "AuthenticationRequired"
    wrong = c.get(f"{V1}/credentials/basic", headers=basic("alice", "wrong-password"))
    assert wrong.status_code == 403 and wrong.json["code"] == "CredentialsInvalid"
    bad_token = c.get(f"{V1}/me", headers=bearer("basic//forged"))
    assert bad_token.status_code == 403 and bad_token.json["code"] == "TokenInvalid"
    headers = v1_token(c, "alice")
    assert c.get(f"{V1}/me", headers=headers).json["user_id"] == "alice"
    # the token of the 0.0.2 login works in 1.x and the other way round
    token = c.get("/auth/login", headers=basic("bob")).json["token"]
    assert c.get(f"{V1}/me", headers=bearer(f"basic//{token}")).json["user_id"] == "bob"
    assert c.get("/users/alice/jobs", headers=headers).status_code == 200


def test_users_see_only_their_jobs_and_services_in_both_dialects(users_app):
    c = users_app.test_client()
    alice, bob = v1_token(c, "alice"), v1_token(c, "bob")
    job = c.post(f"{V1}/jobs", json=process(), headers=alice)
    job_id = job.headers["OpenEO-Identifier"]
    service = c.post(f"{V1}/services", json={**process(), "type": "XYZ"}, headers=alice)
    service_id = service.headers["OpenEO-Identifier"]
    assert c.get(f"{V1}/jobs/{job_id}", headers=bob).status_code == 404
    assert c.get(f"{V1}/services/{service_id}", headers=bob).status_code == 404
    assert c.delete(f"{V1}/jobs/{job_id}", headers=bob).status_code == 404
    assert c.get(f"{V1}/jobs", headers=bob).json["jobs"] == []
    assert c.get(f"/jobs/{job_id}", headers=alice).json["user_id"] == "alice"
    assert {j["id"] for j in c.get(f"{V1}/jobs", headers=alice).json["jobs"]} >= {job_id}
    # the service URL is a public capability URL
    url = c.get(f"{V1}/services/{service_id}", headers=alice).json["url"]
    tile = c.get(url.removeprefix("http://localhost").format(z=0, x=0, y=0))
    assert tile.status_code in (200, 204), tile.data[:200]


# -- CORS ------------------------------------------------------------------------------


def test_cors_exposes_the_openeo_headers(client):
    resp = client.post(f"{V1}/jobs", json=process(), headers={"Origin": "https://editor.x"})
    assert resp.status_code == 201
    assert resp.headers["Access-Control-Allow-Origin"] == "https://editor.x"
    exposed = {h.strip() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Location", "OpenEO-Identifier", "OpenEO-Costs", "Link"} <= exposed
    pre = client.options(f"{V1}/jobs/x/results", headers={
        "Origin": "https://editor.x", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type"})
    assert pre.status_code == 204
    assert {"GET", "POST", "DELETE"} <= set(pre.headers["Access-Control-Allow-Methods"]
                                            .replace(" ", "").split(","))
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]


# -- jobs, services, files -------------------------------------------------------------


def test_job_crud(client):
    resp = client.post(f"{V1}/jobs", json={**process(), "title": "ndvi", "description": "d"})
    assert resp.status_code == 201
    job_id = resp.headers["OpenEO-Identifier"]
    assert resp.headers["Location"] == f"http://localhost{V1}/jobs/{job_id}"
    job = client.get(f"{V1}/jobs/{job_id}").json
    assert job["id"] == job_id and job["status"] == "created" and job["title"] == "ndvi"
    assert job["process"]["process_graph"] == ndvi_graph()
    patched = client.patch(f"{V1}/jobs/{job_id}", json={"title": "new", **process(
        ndvi_graph(reducer="max", fmt="PNG"))})
    assert patched.status_code == 204
    job = client.get(f"{V1}/jobs/{job_id}").json
    assert job["title"] == "new" and job["process"]["process_graph"] == ndvi_graph("max", "PNG")
    assert client.get(f"/jobs/{job_id}").json["output"]["format"] == "PNG"  # from save_result
    assert client.patch(f"{V1}/jobs/{job_id}", json={"title": 5}).status_code == 400
    results = client.get(f"{V1}/jobs/{job_id}/results")
    assert results.status_code == 400 and results.json["code"] == "JobNotFinished"
    # canceling a job that does not run has no effect
    assert client.delete(f"{V1}/jobs/{job_id}/results").status_code == 204
    assert client.get(f"{V1}/jobs/{job_id}").json["status"] == "created"
    logs = client.get(f"{V1}/jobs/{job_id}/logs").json
    assert logs["links"] == [] and isinstance(logs["logs"], list)
    # a 1.x job is a lazy job like any other: the 0.0.2 API and the viewer show it
    assert client.get(f"/jobs/{job_id}").json["process_graph"] == job["process"]["process_graph"]
    assert client.get(f"/jobs/{job_id}/viewer").status_code == 200
    wmts = client.get("/wmts", query_string={"SERVICE": "WMTS", "REQUEST": "GetCapabilities"})
    assert wmts.status_code == 200 and f"<ows:Identifier>{job_id}<" in wmts.text
    wcs = client.get("/wcs", query_string={"SERVICE": "WCS", "REQUEST": "GetCapabilities",
                                           "VERSION": "2.0.1"})
    assert wcs.status_code == 200 and job_id in wcs.text
    assert client.delete(f"{V1}/jobs/{job_id}").status_code == 204
    assert client.get(f"{V1}/jobs/{job_id}").status_code == 404


def test_service_crud_and_wmts_layer(client):
    resp = client.post(f"{V1}/services", json={
        **process(), "type": "WMTS", "title": "ndvi layer",
        "configuration": {"colormap": "viridis", "range": [-1, 1]}})
    assert resp.status_code == 201, resp.json
    sid = resp.headers["OpenEO-Identifier"]
    assert resp.headers["Location"].endswith(f"{V1}/services/{sid}")
    service = client.get(f"{V1}/services/{sid}").json
    assert service["type"] == "WMTS" and service["enabled"] is True
    assert service["configuration"] == {"colormap": "viridis", "range": [-1, 1]}
    (layer,) = service["attributes"]["layers"]
    caps = client.get(service["url"].removeprefix("http://localhost"),
                      query_string={"SERVICE": "WMTS", "REQUEST": "GetCapabilities"})
    assert caps.status_code == 200 and f"<ows:Identifier>{layer}<" in caps.text
    assert client.get(f"/jobs/{layer}").json["job_id"] == layer  # the lazy job behind it
    assert [s["id"] for s in client.get(f"{V1}/services").json["services"]] == [sid]
    assert client.patch(f"{V1}/services/{sid}", json={"title": "renamed", "configuration": {
        "colormap": "magma"}}).status_code == 204
    service = client.get(f"{V1}/services/{sid}").json
    assert service["title"] == "renamed" and service["configuration"] == {"colormap": "magma"}
    bad = client.patch(f"{V1}/services/{sid}", json={"configuration": {"colormap": "nope"}})
    assert bad.status_code == 400
    bad_type = client.post(f"{V1}/services", json={**process(), "type": "WFS"})
    assert bad_type.status_code == 400 and "type" in bad_type.json["message"]
    assert client.delete(f"{V1}/services/{sid}").status_code == 204
    assert client.get(f"{V1}/services/{sid}").status_code == 404
    assert client.get(f"/jobs/{layer}").status_code == 404  # its job went with it


def test_files_share_the_store_of_the_root_api(client):
    put = client.put(f"{V1}/files/regions/a.geojson", data=b'{"type": "FeatureCollection"}')
    assert put.status_code == 200 and put.json["path"] == "regions/a.geojson"
    assert put.json["size"] == 29
    assert [f["path"] for f in client.get(f"{V1}/files").json["files"]] == ["regions/a.geojson"]
    for path in ("/users/me/files/regions/a.geojson", f"{V1}/files/regions/a.geojson"):
        with client.get(path) as resp:
            assert resp.data == b'{"type": "FeatureCollection"}'

    assert client.delete(f"{V1}/files/regions/a.geojson").status_code == 204
    missing = client.get(f"{V1}/files/regions/a.geojson")
    assert missing.status_code == 404 and missing.json["code"] == "FileNotFound"
    assert client.put(f"{V1}/files/../x", data=b"x").status_code in (400, 404)


def test_result_format_and_options_come_from_save_result(client, tmp_path):
    png = client.post(f"{V1}/result", json=process(ndvi_graph(fmt="PNG")))
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert png.data.startswith(b"\x89PNG")
    graph = ndvi_graph()
    graph["save"]["arguments"]["options"] = {"compress": "deflate", "tiled": True}
    tif = client.post(f"{V1}/result", json=process(graph))
    assert tif.status_code == 200 and tif.mimetype == "image/tiff"
    with MemoryFile(tif.data) as mem, mem.open() as src:
        assert src.compression.name.lower() == "deflate" and src.block_shapes[0][0] > 1
        assert src.crs.to_epsg() == 32632 and src.dtypes[0] == "float32"
        values = src.read(1)
    nc = client.post(f"{V1}/result", json=process(ndvi_graph(fmt="NETCDF")))
    assert nc.status_code == 200 and nc.mimetype == "application/netcdf"
    path = tmp_path / "result.nc"
    path.write_bytes(nc.data)
    with rasterio.open(path) as src:
        assert src.driver == "netCDF" and src.crs.to_epsg() == 32632
        assert_allclose(src.read(1), values, equal_nan=True)
    graph["save"]["arguments"]["format"] = "HDF5"
    bad = client.post(f"{V1}/result", json=process(graph))
    assert bad.status_code == 400 and bad.json["code"] == "FormatUnsupported"



def test_user_defined_processes_are_stored_per_user(users_app):
    c = users_app.test_client()
    alice, bob = v1_token(c, "alice"), v1_token(c, "bob")
    udp = {"summary": "twice", "parameters": [{"name": "x", "description": "a number",
                                               "schema": {"type": "number"}}],
           "process_graph": {"m": {"process_id": "multiply", "arguments": {
               "x": {"from_parameter": "x"}, "y": 2}, "result": True}}}
    assert c.put(f"{V1}/process_graphs/twice", json=udp, headers=alice).status_code == 200
    got = c.get(f"{V1}/process_graphs/twice", headers=alice).json
    assert got == {**udp, "id": "twice"}
    listed = c.get(f"{V1}/process_graphs", headers=alice).json["processes"]
    assert listed == [{"id": "twice", "summary": "twice", "parameters": udp["parameters"]}]
    assert c.get(f"{V1}/process_graphs", headers=bob).json["processes"] == []
    missing = c.get(f"{V1}/process_graphs/twice", headers=bob)
    assert missing.status_code == 404 and missing.json["code"] == "ProcessGraphNotFound"
    udp["summary"] = "double"
    assert c.put(f"{V1}/process_graphs/twice", json=udp, headers=alice).status_code == 200
    assert c.get(f"{V1}/process_graphs/twice", headers=alice).json["summary"] == "double"
    for bad in ({}, {"process_graph": {"a": {"arguments": {}}}},
                {"process_graph": {"a": {"process_id": "add", "arguments": {}}}}):
        assert c.put(f"{V1}/process_graphs/twice", json=bad, headers=alice).status_code == 400
    for bad_id in ("no.dot", "-dash-first", "x" * 129):
        resp = c.put(f"{V1}/process_graphs/{bad_id}", json=udp, headers=alice)
        assert resp.status_code == 400 and resp.json["code"] == "BadRequest", bad_id
    # the ids of the openEO compliance suite: uuid4 with dashes
    suite_id = "0b5a6e58-3f1e-4c57-9d5e-2f0f6d1f4a7b"
    assert c.put(f"{V1}/process_graphs/{suite_id}", json=udp, headers=alice).status_code == 200
    assert c.get(f"{V1}/process_graphs/{suite_id}", headers=alice).json["id"] == suite_id
    assert c.delete(f"{V1}/process_graphs/{suite_id}", headers=alice).status_code == 204
    renamed = {**udp, "id": "other"}  # the path names it
    assert c.put(f"{V1}/process_graphs/twice", json=renamed, headers=alice).status_code == 200
    assert c.get(f"{V1}/process_graphs/twice", headers=alice).json["id"] == "twice"
    assert c.delete(f"{V1}/process_graphs/twice", headers=bob).status_code == 404
    assert c.delete(f"{V1}/process_graphs/twice", headers=alice).status_code == 204
    assert c.get(f"{V1}/process_graphs/twice", headers=alice).status_code == 404


def test_stored_processes_are_callable_by_their_owner_only(users_app):
    c = users_app.test_client()
    alice, bob = v1_token(c, "alice"), v1_token(c, "bob")
    udp = {"parameters": [{"name": "data", "schema": {"subtype": "datacube"}}],
           "process_graph": {"n": {"process_id": "ndvi", "arguments": {
               "data": {"from_parameter": "data"}, "red": "B04", "nir": "B08"},
               "result": True}}}
    assert c.put(f"{V1}/process_graphs/my_ndvi", json=udp, headers=alice).status_code == 200
    graph = {"process_graph": {
        "l": {"process_id": "load_collection", "arguments": {"id": "TEST"}},
        "u": {"process_id": "my_ndvi", "namespace": "user",
              "arguments": {"data": {"from_node": "l"}}, "result": True}}}
    assert c.post(f"{V1}/validation", json=graph, headers=alice).json == {"errors": []}
    errors = c.post(f"{V1}/validation", json=graph, headers=bob).json["errors"]
    assert [e["code"] for e in errors] == ["ProcessUnsupported"]
    job = c.post(f"{V1}/jobs", json={"process": graph}, headers=bob)
    assert job.status_code == 400 and job.json["code"] == "ProcessUnsupported"
    # the argument is the data cube: a missing one is named
    del graph["process_graph"]["u"]["arguments"]["data"]
    errors = c.post(f"{V1}/validation", json=graph, headers=alice).json["errors"]
    assert [e["code"] for e in errors] == ["ProcessArgumentRequired"]
