"""Helpers of ``tests/unit/jobs/test_batch.py``: apps on a shared Dask cluster, waiting on jobs."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
import rasterio.crs

from tests.support.core import ndvi, reference_stack, stac_items
from tileserver.datacube.view import View
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


@contextmanager
def app_maker() -> Iterator:
    """``make(settings)``: a test app of those settings; every app made is closed at the
    end (its batch drivers and Dask client), for the app-factory fixtures."""
    from tileserver.web.app import create_app  # noqa: PLC0415 - the web layer, for tests only

    made = []

    def make(settings):
        app = create_app(settings)
        app.config["TESTING"] = True
        made.append(app)
        return app

    try:
        yield make
    finally:
        for app in made:
            app.extensions["tileserver"].close()


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


def wait_driver_stopped(app, job_id: str, timeout: float = 60.0) -> None:
    """Wait until the batch driver of ``job_id`` in ``app`` has stopped (its thread left
    the runner's table of drivers): after that no block of the job can finish. Fails after
    ``timeout`` -- a driver that ignores a pause, cancel or delete is a failure, not a
    race."""
    runner = app.extensions["tileserver"].batch
    deadline = time.monotonic() + timeout
    while job_id in runner._drivers:  # noqa: SLF001 - the runner's own record of them
        assert time.monotonic() < deadline, f"the driver of job {job_id} did not stop"
        time.sleep(0.02)


def paused_after_a_block(app, graph: dict | None = None) -> str:
    """A new job of ``graph`` (the NDVI min by default) queued, then paused once a block is
    done and its driver has stopped: a job with finished blocks and no task in flight."""
    client = app.test_client()
    job_id = create_job(client, graph or ndvi_graph("min_time"))
    client.patch(f"/jobs/{job_id}/queue")
    wait_job(client, job_id, lambda j: done_blocks(j) >= 1)
    assert client.patch(f"/jobs/{job_id}/pause").status_code == 200
    wait_driver_stopped(app, job_id)
    return job_id


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


def plain_grid(catalog) -> View:
    """The grid of a job over :data:`BBOX`, computed without the engine: the BBOX in its
    CRS at the pixel size of the collection's items in that CRS (read with rasterio)."""
    res = None
    for item in stac_items(catalog, "TEST"):
        with rasterio.open(item.assets["B04"].get_absolute_href()) as src:
            if src.crs == rasterio.crs.CRS.from_user_input(BBOX["srs"]):
                res = src.res[0]
                break
    assert res is not None, "no item in the BBOX's CRS"
    left, right, bottom, top = BBOX["left"], BBOX["right"], BBOX["bottom"], BBOX["top"]
    return View(BBOX["srs"], (left, bottom, right, top), round((right - left) / res),
                round((top - bottom) / res))


_REDUCERS = {"min_time": np.nanmin, "max_time": np.nanmax}


def plain_ndvi(catalog, reduce: str | None, block: int, dates=None) -> tuple[list, np.ndarray]:
    """``(days, values (t, y, x))``: the NDVI of the :data:`BBOX` job computed with plain
    rasterio + numpy on the source files (:func:`tests.support.core.reference_stack`, each
    file warped with nearest neighbour), reduced over time with ``reduce`` (t = 1) or one
    layer per date within ``dates``. Each block of ``block`` pixels (from the top left) is
    warped on its own grid, as a block-wise writer reads: GDAL's warper picks the nearest
    source pixel of another zone slightly differently for grids of different sizes."""
    grid = plain_grid(catalog)
    left, _, _, top = grid.bounds
    res = grid.res[0]
    days: list[str] = []
    out = None
    for r0 in range(0, grid.height, block):
        for c0 in range(0, grid.width, block):
            h, w = min(block, grid.height - r0), min(block, grid.width - c0)
            view = View(grid.crs, (left + c0 * res, top - (r0 + h) * res,
                                   left + (c0 + w) * res, top - r0 * res), w, h)
            days, stack = reference_stack(catalog, "TEST", view, ["B04", "B08"])
            values = ndvi(stack[:, 0], stack[:, 1])
            if dates is not None:
                keep = [i for i, d in enumerate(days) if dates[0] <= d <= dates[1]]
                days, values = [days[i] for i in keep], values[keep]
            if reduce is not None:
                with warnings.catch_warnings():  # all-NaN pixels: nodata
                    warnings.simplefilter("ignore", RuntimeWarning)
                    values = _REDUCERS[reduce](values, axis=0)[None]
            if out is None:
                out = np.full((len(values), grid.height, grid.width), np.nan)
            out[:, r0:r0 + h, c0:c0 + w] = values
    return days, out


def assert_plain(result: np.ndarray, expected: np.ndarray) -> None:
    """The tolerance of the other value tests: the same nodata pixels, values equal up to
    float32 arithmetic."""
    assert result.shape == expected.shape, (result.shape, expected.shape)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    assert np.isfinite(result).mean() > 0.5  # the comparison is not vacuous
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6, equal_nan=True)
