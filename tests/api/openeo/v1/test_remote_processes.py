"""The openEO 1.3 Remote Process Definition extension through the API: a graph node whose
namespace is the URL of a process on a real local HTTP server, evaluated by POST /result
with values against rasterio + numpy; refused URLs as clear 400s on /result, /validation,
/jobs and through a stored process; the conformance class on 1.3 only. The fetcher itself:
tests/unit/graph/test_remote_process.py; the official client: tests/e2e/clients/
test_openeo_client.py (test_remote_process_definition)."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import numpy as np
import pytest
from numpy.testing import assert_allclose
from rasterio.io import MemoryFile

from tests.support.core import ndvi, reference_stack
from tests.support.hardening import BBOX
from tests.support.process_server import Answer, ProcessServer
from tileserver.datacube.view import View

V12, V13 = "/openeo/1.2", "/openeo/1.3"
CLASS = "https://api.openeo.org/extensions/remote-process-definition/0.1.0"
SCALED_NDVI = {
    "id": "scaled_ndvi", "summary": "NDVI times a factor",
    "parameters": [{"name": "data", "schema": {"type": "object", "subtype": "datacube"}},
                   {"name": "factor", "schema": {"type": "number"}, "default": 10,
                    "optional": True}],
    "returns": {"schema": {"type": "object", "subtype": "datacube"}},
    "process_graph": {
        "n": {"process_id": "ndvi", "arguments": {"data": {"from_parameter": "data"},
                                                  "red": "B04", "nir": "B08"}},
        "s": {"process_id": "apply", "arguments": {
            "data": {"from_node": "n"}, "process": {"process_graph": {"m": {
                "process_id": "multiply", "arguments": {
                    "x": {"from_parameter": "x"}, "y": {"from_parameter": "factor"}},
                "result": True}}}}, "result": True}}}


def graph(namespace: str, process_id: str = "scaled_ndvi", **args) -> dict:
    extent = {"west": BBOX["left"], "east": BBOX["right"], "south": BBOX["bottom"],
              "north": BBOX["top"], "crs": "EPSG:32632"}
    return {"process": {"process_graph": {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "TEST", "spatial_extent": extent,
            "temporal_extent": ["2020-05-01", "2020-06-01"], "bands": ["B04", "B08"]}},
        "remote": {"process_id": process_id, "namespace": namespace,
                   "arguments": {"data": {"from_node": "load"}, **args}},
        "max": {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "remote"}, "dimension": "t", "reducer": {"process_graph": {
                "m": {"process_id": "max", "arguments": {"data": {"from_parameter": "data"}},
                      "result": True}}}}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "max"}, "format": "GTiff"}, "result": True}}}}


@pytest.fixture
def server():
    srv = ProcessServer()
    yield srv
    srv.close()


@pytest.fixture
def app(make_app, small_catalog):
    # the test server is on loopback: allowed explicitly, as an operator would a local host
    return make_app([small_catalog], remote_process_allow="127.0.0.1")


def reference(catalog_json, factor: float) -> np.ndarray:
    view = View("EPSG:32632", (BBOX["left"], BBOX["bottom"], BBOX["right"], BBOX["top"]),
                256, 256)
    _days, stack = reference_stack(catalog_json, "TEST", view, ["B04", "B08"],
                                   datetime(2020, 5, 1, tzinfo=UTC),
                                   datetime(2020, 5, 31, 23, 59, tzinfo=UTC))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        return np.nanmax(ndvi(stack[:, 0], stack[:, 1]), axis=0) * factor


def values(resp) -> np.ndarray:
    assert resp.status_code == 200, resp.json
    with MemoryFile(resp.data) as mem, mem.open() as src:
        assert (src.width, src.height) == (256, 256) and src.crs.to_epsg() == 32632
        return src.read(1).astype("float64")


def test_a_remote_process_is_fetched_and_evaluated(app, server, small_catalog):
    url = server.json("/processes/scaled_ndvi.json", SCALED_NDVI)
    c = app.test_client()
    got = values(c.post(f"{V13}/result", json=graph(url, factor=100)))
    expected = reference(small_catalog, 100)
    assert np.isfinite(expected).mean() > 0.5
    assert_allclose(got, expected, rtol=1e-5, atol=1e-5, equal_nan=True)
    # the parameter's default, and a list of processes as the namespace
    listing = server.json("/processes", {"processes": [
        {"id": "other", "process_graph": SCALED_NDVI["process_graph"]}, SCALED_NDVI],
        "links": []})
    assert_allclose(values(c.post(f"{V13}/result", json=graph(listing))),
                    reference(small_catalog, 10), rtol=1e-5, atol=1e-5, equal_nan=True)
    # fetched once per URL (the cache), whatever the number of requests
    assert server.hits["/processes/scaled_ndvi.json"] == 1
    # the same graph written inline gives the same bytes (expanded by content)
    inline = graph(url, factor=100)
    nodes = inline["process"]["process_graph"]
    del nodes["remote"]
    for node_id, node in SCALED_NDVI["process_graph"].items():
        nodes[node_id] = {k: v for k, v in node.items() if k != "result"}
    nodes["n"]["arguments"]["data"] = {"from_node": "load"}
    apply_graph = nodes["s"]["arguments"]["process"]["process_graph"]
    apply_graph["m"]["arguments"]["y"] = 100
    nodes["max"]["arguments"]["data"] = {"from_node": "s"}
    assert c.post(f"{V13}/result", json=inline).data == c.post(
        f"{V13}/result", json=graph(url, factor=100)).data
    # validation and a stored job take it too; a user-defined process may call it
    assert c.post(f"{V13}/validation", json=graph(url)["process"]).json == {"errors": []}
    job = c.post(f"{V13}/jobs", json=graph(url))
    assert job.status_code == 201, job.json
    wrapper = {"parameters": [{"name": "data", "schema": {"subtype": "datacube"}}],
               "process_graph": {"r": {"process_id": "scaled_ndvi", "namespace": url,
                                       "arguments": {"data": {"from_parameter": "data"}},
                                       "result": True}}}
    assert c.put(f"{V13}/process_graphs/wrapped", json=wrapper).status_code == 200
    assert_allclose(values(c.post(f"{V13}/result", json=graph("user", "wrapped"))),
                    reference(small_catalog, 10), rtol=1e-5, atol=1e-5, equal_nan=True)


def bad_urls(server) -> list[tuple[str, str]]:
    """``(namespace, words of the reason)`` of URLs the server must refuse."""
    big = {**SCALED_NDVI, "description": "x" * 2_000_000}
    return [
        ("http://169.254.169.254/latest/meta-data/scaled_ndvi", "link-local address"),
        ("http://10.0.0.1/scaled_ndvi.json", "10.0.0.1 is a private address"),
        ("http://192.168.1.1/scaled_ndvi.json", "private address"),
        ("file:///etc/passwd", "only http and https URLs"),
        (server.redirect("/to-loopback", "http://127.0.0.2:9/scaled_ndvi.json"),
         "127.0.0.2 is a loopback address"),
        (server.redirect("/to-metadata", "http://169.254.169.254/"), "link-local address"),
        (server.json("/big.json", big), "larger than 1048576 bytes"),
        (server.answer("/slow.json", Answer(b"{}", delay=4.0)), "time"),
        (server.answer("/html", Answer(b"<html></html>")), "no JSON"),
        (server.json("/wrong-id.json", {**SCALED_NDVI, "id": "other"}),
         "is 'other', not 'scaled_ndvi'"),
        (server.url + "/missing.json", "answered HTTP 404"),
    ]


def test_refused_namespaces_are_clear_400s(make_app, small_catalog, server):
    c = make_app([small_catalog], remote_process_allow="127.0.0.1",
                 remote_process_timeout=1).test_client()
    for url, words in bad_urls(server):
        resp = c.post(f"{V13}/result", json=graph(url))
        assert resp.status_code == 400, (url, resp.json)
        assert resp.json["code"] == "ProcessNamespaceInvalid", (url, resp.json)
        assert resp.json["message"].startswith(
            f"The value passed for namespace '{url}' in process 'scaled_ndvi' is invalid"), url
        assert words in resp.json["message"], (url, resp.json["message"])
        errors = c.post(f"{V13}/validation", json=graph(url)["process"]).json["errors"]
        assert [e["code"] for e in errors] == ["ProcessNamespaceInvalid"], url
    url = bad_urls(server)[0][0]
    resp = c.post(f"{V13}/jobs", json=graph(url))
    assert resp.status_code == 400 and resp.json["code"] == "ProcessNamespaceInvalid"
    # a stored process is bound late (as one calling a process not stored yet): stored,
    # and refused where a graph calls it
    wrapper = {"parameters": [{"name": "data", "schema": {"subtype": "datacube"}}],
               "process_graph": {"r": {"process_id": "scaled_ndvi", "namespace": url,
                                       "arguments": {"data": {"from_parameter": "data"}},
                                       "result": True}}}
    assert c.put(f"{V13}/process_graphs/wrapped", json=wrapper).status_code == 200
    resp = c.post(f"{V13}/result", json=graph("user", "wrapped"))
    assert resp.status_code == 400 and resp.json["code"] == "ProcessNamespaceInvalid"
    assert "link-local address" in resp.json["message"]


def test_loopback_is_refused_without_the_setting(make_app, small_catalog, server):
    url = server.json("/processes/scaled_ndvi.json", SCALED_NDVI)
    resp = make_app([small_catalog]).test_client().post(f"{V13}/result", json=graph(url))
    assert resp.status_code == 400 and resp.json["code"] == "ProcessNamespaceInvalid"
    assert "127.0.0.1 is a loopback address" in resp.json["message"]
    assert server.hits["/processes/scaled_ndvi.json"] == 0  # nothing was sent


def test_conformance_on_1_3_only_and_off_by_setting(make_app, small_catalog, server):
    c = make_app([small_catalog]).test_client()
    assert CLASS in c.get(f"{V13}/").json["conformsTo"]
    assert CLASS in c.get(f"{V13}/conformance").json["conformsTo"]
    assert CLASS not in c.get(f"{V12}/").json["conformsTo"]
    off = make_app([small_catalog], remote_processes=False,
                   remote_process_allow="127.0.0.1").test_client()
    assert CLASS not in off.get(f"{V13}/").json["conformsTo"]
    url = server.json("/processes/scaled_ndvi.json", SCALED_NDVI)
    resp = off.post(f"{V13}/result", json=graph(url))
    assert resp.status_code == 400 and resp.json["code"] == "ProcessUnsupported"
    assert "does not load remote process definitions" in resp.json["message"]
    assert server.hits["/processes/scaled_ndvi.json"] == 0
