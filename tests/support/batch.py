"""Helpers of ``tests/unit/jobs/test_batch.py``: apps on a shared Dask cluster, waiting on jobs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import rasterio

from tileserver.settings import load_settings

BBOX = {"left": 500000, "right": 505120, "top": 5100000, "bottom": 5094880, "srs": "EPSG:32632"}


def ndvi_graph(reduce: str | None = "min_time", dates: tuple[str, str] | None = None,
               product: str = "TEST") -> dict:
    """NDVI of the test area, optionally filtered by dates and reduced over time."""
    node: dict = {"process_id": "filter_bbox", "args": {"imagery": {"product_id": product},
                                                        **BBOX}}
    if dates:
        node = {"process_id": "filter_daterange",
                "args": {"imagery": node, "from": dates[0], "to": dates[1]}}
    node = {"process_id": "NDVI", "args": {"imagery": node, "red": "B04", "nir": "B08"}}
    if reduce:
        node = {"process_id": reduce, "args": {"imagery": node}}
    return node


def batch_settings(home: Path, catalogs, scheduler: str | None, **extra):
    """Settings of a test server whose batch jobs run on ``scheduler``."""
    settings = load_settings(home=str(home), catalog=",".join(str(c) for c in catalogs),
                             dask_scheduler=scheduler)
    options = {"batch_block_size": 256, "batch_poll_seconds": 0.1,
               "batch_heartbeat_seconds": 0.5, "batch_stale_seconds": 3.0,
               "batch_watchdog_seconds": 0.5, "batch_inflight": 2}
    options.update(extra)
    fields = {k: options.pop(k) for k in list(options) if hasattr(settings, k)}
    return settings.replace(extra=options, **fields)


def create_job(client, graph: dict, output: dict | None = None) -> str:
    """POST /jobs; returns the job id."""
    body = {"process_graph": graph}
    if output is not None:
        body["output"] = output
    resp = client.post("/jobs", json=body)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["job_id"]


def wait_job(client, job_id: str, until, timeout: float = 120.0) -> dict:
    """Poll ``GET /jobs/{id}`` until ``until(job)`` holds (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}").get_json()
        if until(job):
            return job
        assert time.monotonic() < deadline, (job, client.get(f"/jobs/{job_id}/logs").get_json())
        time.sleep(0.05)


def done_blocks(job: dict) -> int:
    """Blocks finished according to the job meta."""
    return (job.get("blocks") or {}).get("done", 0)


def status_is(*statuses: str):
    """A predicate for :func:`wait_job`."""
    return lambda job: job["status"] in statuses


def fetch(client, url: str) -> bytes:
    """The body of an absolute URL of the app, through the test client (closed after)."""
    resp = client.get("/" + url.split("://", 1)[1].split("/", 1)[1])
    body = resp.data
    resp.close()
    assert resp.status_code == 200, body[:200]
    return body


def read_result(client, url: str) -> tuple[np.ndarray, dict]:
    """Download a result through the test client and read it with rasterio."""
    resp = client.get("/" + url.split("://", 1)[1].split("/", 1)[1])
    body = resp.data
    resp.close()
    assert resp.status_code == 200, body[:200]
    with rasterio.MemoryFile(body) as mem, mem.open() as src:
        return src.read(), {"crs": src.crs, "transform": src.transform, "profile": src.profile,
                            "tags": src.tags(), "media_type": resp.mimetype,
                            "count": src.count, "is_tiled": src.profile.get("tiled")}
