"""Estimates against measurements: four real batch jobs of different sizes through the
openEO 1.2 API on the embedded Dask cluster. Each job is estimated before it starts (from
what the jobs before it measured on this machine), then run; the estimated and measured
duration and size are printed (the numbers of the closing note of issue 20). Durations are
not asserted on (a shared machine), sizes and pixel counts are."""

from __future__ import annotations

import json
import time

import pytest

from tileserver.jobs.estimates import BATCH
from tileserver.settings import load_settings
from tileserver.web.app import create_app

V1 = "/openeo/1.2"
#: The whole synthetic area: 512 x 512 pixels at 10 m in EPSG:32632.
EXTENT = {"west": 500000, "east": 505120, "south": 5094880, "north": 5100000,
          "crs": "EPSG:32632"}


def graph(bands: tuple[str, ...], resolution: float | None, reduce: bool) -> dict:
    g: dict = {"load": {"process_id": "load_collection", "arguments": {
        "id": "TEST", "spatial_extent": EXTENT, "temporal_extent": ["2020-05-01", "2020-06-01"],
        "bands": list(bands)}}}
    last = "load"
    if resolution:
        g["rs"] = {"process_id": "resample_spatial", "arguments": {
            "data": {"from_node": last}, "resolution": resolution, "method": "bilinear"}}
        last = "rs"
    if reduce:
        g["r"] = {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": last}, "dimension": "t", "reducer": {"process_graph": {
                "m": {"process_id": "mean", "arguments": {"data": {"from_parameter": "data"}},
                      "result": True}}}}}
        last = "r"
    g["save"] = {"process_id": "save_result", "arguments": {
        "data": {"from_node": last}, "format": "GTiff"}, "result": True}
    return g


#: name -> (bands, resolution, reduced over time): reads from 0.8 to 37.7 million values
JOBS = {
    "S": (("B04",), None, True),
    "M": (("B04", "B08"), None, False),
    "L": (("B04", "B08", "B11"), 5.0, False),
    "XL": (("B04", "B08", "B11"), 2.5, True),
}


def _wait(c, job_id: str) -> dict:
    while True:
        job = c.get(f"{V1}/jobs/{job_id}").json
        if job["status"] in ("finished", "error", "canceled"):
            return job
        time.sleep(0.1)


@pytest.mark.slow
def test_estimates_against_four_real_jobs(small_catalog, tmp_path):
    settings = load_settings(home=str(tmp_path / "home"), catalog=str(small_catalog),
                             batch_workers=1, cost_per_megapixel=1.0)
    app = create_app(settings.replace(batch_poll_seconds=0.1))
    rt = app.extensions["tileserver"]
    c = app.test_client()
    rows = []
    try:
        _ = rt.batch.client  # the embedded cluster starts before the first job is timed
        for name, (bands, res, reduce) in JOBS.items():
            resp = c.post(f"{V1}/jobs", json={"process": {"process_graph": graph(
                bands, res, reduce)}})
            job_id = resp.headers["OpenEO-Identifier"]
            est = c.get(f"{V1}/jobs/{job_id}/estimate").json
            started = time.monotonic()
            assert c.post(f"{V1}/jobs/{job_id}/results").status_code == 202
            job = _wait(c, job_id)
            wall = time.monotonic() - started
            assert job["status"] == "finished", c.get(f"{V1}/jobs/{job_id}/logs").json
            results = rt.batch.result_dir(job_id)
            size = sum(p.stat().st_size for p in results.rglob("*") if p.is_file())
            measured = rt.store.measurements(BATCH)[0]
            plan = est["tileserver:plan"]
            side = round(512 * 10 / (res or 10))
            assert (plan["width"], plan["height"]) == (side, side)
            assert est["pixels_read"] == side * side * len(bands) * 3 == measured["pixels"]
            assert est["costs"] == round(est["pixels_read"] / 1e6, 4)
            assert measured["bytes"] == size
            rows.append({"job": name, "pixels_read": est["pixels_read"],
                         "estimated_s": plan["seconds"], "measured_s": round(
                             measured["seconds"], 1), "wall_s": round(wall, 1),
                         "estimated_bytes": est["size"], "measured_bytes": size,
                         "learnt_from": plan["duration_samples"]})
    finally:
        rt.close()
    print(json.dumps(rows))
    # the estimates learn: each job was estimated from the jobs before it
    assert [r["learnt_from"] for r in rows] == [0, 1, 2, 3]
    # sizes and reads grow together
    assert [r["pixels_read"] for r in rows] == sorted(r["pixels_read"] for r in rows)
    assert rows[2]["measured_bytes"] > rows[1]["measured_bytes"] > rows[0]["measured_bytes"]
    assert rows[2]["estimated_bytes"] > rows[1]["estimated_bytes"] > rows[0]["estimated_bytes"]
