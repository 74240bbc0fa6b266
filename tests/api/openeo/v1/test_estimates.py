"""GET /jobs/{id}/estimate before a job runs (duration, size, costs, pixels read, from the
planner) and the OpenEO-Costs header of POST /result when costs are configured. Estimates
against measured jobs: tests/e2e/batch/test_estimates.py."""

from __future__ import annotations

import re

from tests.support.hardening import BBOX, users_file, with_users

V1 = "/openeo/1.2"
ISO_DURATION = re.compile(r"^P(\d+D)?T(\d+H)?(\d+M)?(\d+S)?$")


def graph(bands=("B04", "B08"), reduce: bool = False) -> dict:
    extent = {"west": BBOX["left"], "east": BBOX["right"], "south": BBOX["bottom"],
              "north": BBOX["top"], "crs": "EPSG:32632"}
    g = {"load": {"process_id": "load_collection", "arguments": {
        "id": "TEST", "spatial_extent": extent, "temporal_extent": ["2020-05-01", "2020-06-01"],
        "bands": list(bands)}}}
    last = "load"
    if reduce:
        g["r"] = {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "load"}, "dimension": "t", "reducer": {"process_graph": {
                "m": {"process_id": "max", "arguments": {"data": {"from_parameter": "data"}},
                      "result": True}}}}}
        last = "r"
    g["save"] = {"process_id": "save_result", "arguments": {
        "data": {"from_node": last}, "format": "GTiff"}, "result": True}
    return g


def _job(c, g, headers=None) -> str:
    resp = c.post(f"{V1}/jobs", json={"process": {"process_graph": g}}, headers=headers)
    assert resp.status_code == 201, resp.json
    return resp.headers["OpenEO-Identifier"]


def test_estimate_before_the_job_runs(make_app, small_catalog):
    c = make_app([small_catalog]).test_client()
    job = _job(c, graph())
    resp = c.get(f"{V1}/jobs/{job}/estimate")
    assert resp.status_code == 200, resp.json
    est = resp.json
    assert ISO_DURATION.match(est["duration"]), est
    # 256 x 256 pixels x 2 bands x 3 days of May 2020 under the bbox
    assert est["pixels_read"] == 256 * 256 * 2 * 3
    assert est["size"] == 256 * 256 * 2 * 3 * 4  # float32, nothing measured yet: ratio 1
    assert "costs" not in est  # no cost configured
    assert "downloads_included" not in est and est["expires"].endswith("Z")  # unlimited
    plan = est["tileserver:plan"]
    assert plan["duration_samples"] == 0 and plan["size_ratio"] == 1.0
    # a time reduction and one band: a third of the output, half the reads
    small = c.get(f"{V1}/jobs/{_job(c, graph(('B04',), reduce=True))}/estimate").json
    assert small["pixels_read"] == est["pixels_read"] // 2
    assert small["size"] == est["size"] // 6
    assert c.get(f"{V1}/jobs/{job}").json["status"] == "created"  # nothing ran
    # the route is listed in the capabilities
    endpoints = c.get(f"{V1}/").json["endpoints"]
    assert {"path": "/jobs/{job_id}/estimate", "methods": ["GET"]} in endpoints


def test_costs_when_configured_and_the_result_header(make_app, small_catalog):
    c = make_app([small_catalog], cost_per_megapixel=2.5).test_client()
    job = _job(c, graph())
    est = c.get(f"{V1}/jobs/{job}/estimate").json
    assert est["costs"] == round(256 * 256 * 2 * 3 / 1e6 * 2.5, 4)
    resp = c.post(f"{V1}/result", json={"process": {"process_graph": graph()}})
    assert resp.status_code == 200
    assert float(resp.headers["OpenEO-Costs"]) == est["costs"]
    free = make_app([small_catalog]).test_client()
    resp = free.post(f"{V1}/result", json={"process": {"process_graph": graph()}})
    assert resp.status_code == 200 and "OpenEO-Costs" not in resp.headers


def test_estimates_of_other_users_jobs_are_404(make_app, small_catalog, tmp_path_factory):
    from tests.support.hardening import basic

    app = with_users(make_app([small_catalog]), users_file(tmp_path_factory))
    c = app.test_client()
    job = _job(c, graph(), headers=basic("alice"))
    assert c.get(f"{V1}/jobs/{job}/estimate", headers=basic("alice")).status_code == 200
    resp = c.get(f"{V1}/jobs/{job}/estimate", headers=basic("bob"))
    assert resp.status_code == 404 and resp.json["code"] == "JobNotFound"
    assert c.get(f"{V1}/jobs/{job}/estimate").status_code == 401
