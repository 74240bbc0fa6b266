"""Batch jobs on a real dask.distributed LocalCluster: lifecycle, results, failures, restarts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import rasterio.shutil
import requests

from tests.support.batch import (
    app_maker,
    assert_plain,
    batch_settings,
    create_job,
    done_blocks,
    fetch,
    ndvi_graph,
    paused_after_a_block,
    plain_grid,
    plain_ndvi,
    read_result,
    status_is,
    wait_driver_stopped,
    wait_job,
)
from tests.support.synthetic import make_catalog
from tests.support.wmts import LiveServer

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def cluster():
    """A real LocalCluster with two worker processes, shared by the module's apps."""
    import dask
    from distributed import LocalCluster

    # no retries: a task whose worker dies fails at once (test_dead_workers_...)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         memory_limit="1GiB", dashboard_address=":0") as cl:
        yield cl


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    """A private copy of the synthetic catalog (some tests damage a file)."""
    return make_catalog(tmp_path_factory.mktemp("batchcat"))


@pytest.fixture
def apps(tmp_path, cluster, catalog):
    """Factory of apps on the test cluster; ``apps(home=..., **batch_options)``."""
    with app_maker() as make:

        def factory(home: Path | None = None, scheduler: str | None = "cluster",
                    catalogs=None, max_pixels: int | None = None, **extra):
            address = cluster.scheduler_address if scheduler == "cluster" else scheduler
            settings = batch_settings(home or tmp_path / "home", catalogs or [catalog],
                                      address, **extra)
            if max_pixels:
                settings = settings.replace(max_pixels=max_pixels)
            return make(settings)

        yield factory


def _run(client, graph, output=None, answered=("queued", "running")) -> tuple[str, dict]:
    """Queue a new job and wait until it is done; ``answered``: the statuses the queue
    request may answer with (a job that fails at once may be ``error`` already)."""
    job_id = create_job(client, graph, output)
    resp = client.patch(f"/jobs/{job_id}/queue")
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["status"] in answered
    return job_id, wait_job(client, job_id, status_is("finished", "error"))


def _core(app, graph):
    """The core's evaluation of the same graph on its whole native view."""
    engine = app.extensions["tileserver"].engine
    parsed = engine.parse(graph)
    return engine.evaluate(parsed, engine.native_view(parsed))


def _plain(app, reduce: str | None, block: int, dates=None) -> np.ndarray:
    """The job's values computed with plain rasterio + numpy on the app's source files
    (:func:`tests.support.batch.plain_ndvi`), ``(t, y, x)``."""
    return plain_ndvi(app.extensions["tileserver"].settings.catalog[0], reduce, block,
                      dates)[1]


def _plain_ndvi(catalog: Path, item: str) -> np.ndarray:
    """NDVI of one EPSG:32632 item with plain rasterio + numpy (0 is nodata)."""
    with rasterio.open(catalog.parent / "TEST" / item / "B04.tif") as r, \
            rasterio.open(catalog.parent / "TEST" / item / "B08.tif") as n:
        red, nir = r.read(1).astype("float64"), n.read(1).astype("float64")
    nodata = (red == 0) | (nir == 0)
    out = (nir - red) / np.where(nodata, 1.0, nir + red)
    out[nodata] = np.nan
    return out


# -- results ---------------------------------------------------------------------------------


def test_min_ndvi_result_equals_core_and_is_a_cog(apps):
    app = apps()
    client = app.test_client()
    graph = ndvi_graph("min_time")
    job_id, job = _run(client, graph, {"format": "GTiff", "parameters": {"blockxsize": 256}})
    assert job["status"] == "finished", client.get(f"/jobs/{job_id}/logs").get_json()
    assert job["progress"] == 100.0
    assert job["blocks"] == {"done": 4, "total": 4}  # 512 x 512 px in 256 px blocks
    urls = client.get(f"/jobs/{job_id}/download").get_json()
    assert [u.rsplit("/", 1)[1] for u in urls] == ["result.tif", "item.json"]
    assert all(u.startswith("http://localhost/jobs/") for u in urls)
    data, info = read_result(client, urls[0])
    assert info["media_type"] == "image/tiff"
    grid = plain_grid(app.extensions["tileserver"].settings.catalog[0])
    assert info["crs"] == grid.crs
    assert info["transform"].almost_equals(grid.transform)
    assert data.shape == (1, grid.height, grid.width) and data.dtype == np.float32
    assert_plain(data[0], _plain(app, "min_time", 256)[0])
    # it is a real COG: tiled, with overviews, and GDAL's COG layout
    body = fetch(client, urls[0])
    with rasterio.MemoryFile(body) as mem, mem.open() as src:
        assert src.block_shapes == [(256, 256)]  # the blockxsize option
        assert src.overviews(1) == [2]
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    # no scratch space is left behind
    home = app.extensions["tileserver"].settings.home
    assert not (home / "results" / ".work" / job_id).exists()


def test_overviews_from_blocks_equal_gdal_overviews(apps, tmp_path):
    # the block tasks decimate their values into the COG's overview levels; with 96 px
    # blocks and 64 px tiles (levels 2, 4, 8 of a 512 px result) block edges fall inside
    # overview pixels of every level; GDAL building the overviews itself from the
    # full-resolution result must give the same pixels
    client = apps(batch_block_size=96, batch_inflight=4).test_client()
    job_id, job = _run(client, ndvi_graph("min_time"),
                       {"format": "GTiff", "parameters": {"blockxsize": 64}})
    assert job["status"] == "finished", client.get(f"/jobs/{job_id}/logs").get_json()
    assert job["blocks"]["total"] == 36
    ours = tmp_path / "ours.tif"
    ours.write_bytes(fetch(client, client.get(f"/jobs/{job_id}/download").get_json()[0]))
    gdal = tmp_path / "gdal.tif"
    rasterio.shutil.copy(ours, gdal, driver="COG", blocksize=64, overviews="IGNORE_EXISTING",
                         overview_resampling="nearest", compress="DEFLATE")
    with rasterio.open(ours) as a, rasterio.open(gdal) as b:
        assert a.overviews(1) == b.overviews(1) == [2, 4, 8]
        assert a.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        np.testing.assert_array_equal(a.read(1), b.read(1))
    for level in range(3):
        with rasterio.open(ours, overview_level=level) as a, \
                rasterio.open(gdal, overview_level=level) as b:
            np.testing.assert_array_equal(a.read(1), b.read(1))


def test_time_series_gives_one_file_per_date_and_matches_plain_rasterio(apps, catalog):
    app = apps()
    client = app.test_client()
    graph = ndvi_graph(None, ("2020-05-01", "2020-05-12"))
    job_id, job = _run(client, graph, {"format": "GTiff", "parameters": {"compress": "lzw"}})
    assert job["status"] == "finished", client.get(f"/jobs/{job_id}/logs").get_json()
    urls = client.get(f"/jobs/{job_id}/download").get_json()
    names = [u.rsplit("/", 1)[1] for u in urls]
    assert names == ["result_2020-05-01.tif", "result_2020-05-11.tif", "item.json"]
    cube = _core(app, graph)
    plain = _plain(app, None, 256, ("2020-05-01", "2020-05-12"))
    for i, url in enumerate(urls[:2]):
        data, info = read_result(client, url)
        assert info["profile"]["compress"] == "lzw"  # the /execute option is honoured
        assert_plain(data[0], plain[i])
    first, _ = read_result(client, urls[0])  # one item in the view's CRS: no warping at all
    np.testing.assert_array_equal(first[0], cube.data[0, 0])
    # a reference computed another way: the first date is item test_0 on its own grid
    first, _ = read_result(client, urls[0])
    np.testing.assert_allclose(first[0], _plain_ndvi(catalog, "test_0"), rtol=1e-6,
                               equal_nan=True)
    # the second date mosaics test_1 (EPSG:32632) with test_2 (EPSG:32633) in its holes
    second, _ = read_result(client, urls[1])
    plain = _plain_ndvi(catalog, "test_1")
    valid = np.isfinite(plain)
    np.testing.assert_allclose(second[0][valid], plain[valid], rtol=1e-6)
    # the STAC item describes the files with their dates
    item = pystac.Item.from_dict(json.loads(fetch(client, urls[2])))
    assert item.id == job_id
    assets = {a.href: a for a in item.assets.values()}
    assert set(assets) == {"result_2020-05-01.tif", "result_2020-05-11.tif"}
    assert assets["result_2020-05-01.tif"].extra_fields["datetime"].startswith("2020-05-01")
    assert assets["result_2020-05-01.tif"].extra_fields["proj:code"] == "EPSG:32632"
    assert item.properties["start_datetime"].startswith("2020-05-01")


def test_styled_outputs_png_and_jpeg_gtiff(apps):
    client = apps().test_client()
    graph = ndvi_graph("max_time")
    job_id, job = _run(client, graph, {"format": "PNG"})
    assert job["status"] == "finished", client.get(f"/jobs/{job_id}/logs").get_json()
    url = client.get(f"/jobs/{job_id}/download").get_json()[0]
    assert url.endswith("/result.png")
    data, info = read_result(client, url)
    assert info["media_type"] == "image/png" and data.shape == (4, 512, 512)
    cube = _core(client.application, graph)
    np.testing.assert_array_equal(data[3] == 0, np.isnan(cube.data[0, 0]))
    job_id, job = _run(client, graph, {"format": "GTiff", "parameters": {"compress": "jpeg"}})
    assert job["status"] == "finished", client.get(f"/jobs/{job_id}/logs").get_json()
    data, info = read_result(client, client.get(f"/jobs/{job_id}/download").get_json()[0])
    assert info["profile"]["compress"] == "jpeg" and data.dtype == np.uint8


def test_result_opens_in_gdal_over_http_with_range_requests(apps):
    app = apps()
    server = LiveServer(app)
    try:
        api = requests.Session()
        job_id = create_job(app.test_client(), ndvi_graph("min_time"))
        assert api.get(f"{server.url}/jobs/{job_id}/queue").status_code == 202  # GET too
        wait_job(app.test_client(), job_id, status_is("finished", "error"))
        urls = api.get(f"{server.url}/jobs/{job_id}/download").json()
        assert urls[0].startswith(server.url + "/jobs/")
        head = api.get(urls[0], headers={"Range": "bytes=0-15"})
        assert head.status_code == 206
        assert head.headers["Content-Range"].startswith("bytes 0-15/")
        assert len(head.content) == 16 and head.content[:2] in (b"II", b"MM")
        assert head.headers["Content-Type"].startswith("image/tiff")
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), \
                rasterio.open(f"/vsicurl/{urls[0]}") as src:
            window = src.read(1, window=((100, 200), (300, 400)))
            assert src.width == 512 and src.crs.to_epsg() == 32632
        full, _ = read_result(app.test_client(), urls[0])
        np.testing.assert_array_equal(window, full[0, 100:200, 300:400])
        item = api.get(urls[1])
        assert item.headers["Content-Type"] == "application/geo+json"
        # a wrong token is a 404
        bad = urls[0].replace(urls[0].split("/")[-2], "0" * 32)
        assert api.get(bad).status_code == 404
    finally:
        server.close()


# -- lifecycle -------------------------------------------------------------------------------


def test_invalid_transitions_are_409_with_the_current_status(apps):
    client = apps(batch_block_size=256).test_client()
    job_id = create_job(client, ndvi_graph("min_time"))
    for action in ("pause", "cancel"):
        resp = client.patch(f"/jobs/{job_id}/{action}")
        assert resp.status_code == 409
        assert resp.get_json()["code"] == "Conflict"
        assert "submitted" in resp.get_json()["message"]
    assert client.get(f"/jobs/{job_id}/download").status_code == 409
    assert client.patch("/jobs/nope/queue").status_code == 404
    client.patch(f"/jobs/{job_id}/queue")
    wait_job(client, job_id, status_is("finished"))
    # a second queue of a finished job: 409, the results stay
    resp = client.patch(f"/jobs/{job_id}/queue")
    assert resp.status_code == 409 and "finished" in resp.get_json()["message"]
    assert client.patch(f"/jobs/{job_id}/cancel").status_code == 409
    assert client.get(f"/jobs/{job_id}/download").status_code == 200
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "finished"


def test_patching_a_finished_job_discards_its_results(apps):
    client = apps(batch_block_size=256).test_client()
    job_id, job = _run(client, ndvi_graph("min_time"))
    assert job["status"] == "finished"
    urls = client.get(f"/jobs/{job_id}/download").get_json()
    resp = client.patch(f"/jobs/{job_id}", json={"process_graph": ndvi_graph("max_time")})
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "submitted" and resp.get_json()["progress"] == 0.0
    assert client.get(f"/jobs/{job_id}/download").status_code == 409
    assert client.get(urls[0]).status_code == 404  # the old file is gone
    assert client.patch(f"/jobs/{job_id}/queue").status_code == 202
    job = wait_job(client, job_id, status_is("finished", "error"))
    assert job["status"] == "finished"
    data, _ = read_result(client, client.get(f"/jobs/{job_id}/download").get_json()[0])
    assert_plain(data[0], _plain(client.application, "max_time", 256)[0])
    # a title change alone keeps the results
    assert client.patch(f"/jobs/{job_id}", json={"title": "t"}).get_json()["status"] == \
        "finished"


def test_openeo_1_3_shows_the_job_timestamps_and_the_stacktrace_of_a_failure(apps):
    """openEO 1.3: ``queued``, ``started`` and ``unpublished`` in the job metadata and the
    STAC results, the failure's ``stacktrace`` in its log entry; 1.2 answers as before."""
    v12, v13 = "/openeo/1.2", "/openeo/1.3"
    client = apps().test_client()
    job_id = create_job(client, ndvi_graph("min_time"))
    fresh = client.get(f"{v13}/jobs/{job_id}").get_json()
    assert (fresh["queued"], fresh["started"], fresh["unpublished"]) == (None, None, None)
    assert client.post(f"{v13}/jobs/{job_id}/results").status_code == 202
    assert wait_job(client, job_id, status_is("finished", "error"))["status"] == "finished"
    job = client.get(f"{v13}/jobs/{job_id}").get_json()
    assert job["created"] <= job["queued"] <= job["started"] <= job["updated"], job
    assert job["unpublished"] is None
    assert not {"queued", "started", "unpublished"} & set(client.get(f"{v12}/jobs/{job_id}")
                                                          .get_json())
    props = client.get(f"{v13}/jobs/{job_id}/results").get_json()["properties"]
    assert {k: props[k] for k in ("created", "updated", "queued", "started")} == {
        k: job[k] for k in ("created", "updated", "queued", "started")}
    old_props = client.get(f"{v12}/jobs/{job_id}/results").get_json()["properties"]
    assert "queued" not in old_props and "started" not in old_props
    # a new graph discards the results: the time is the job's "unpublished"
    client.patch(f"/jobs/{job_id}", json={"process_graph": ndvi_graph("max_time")})
    job = client.get(f"{v13}/jobs/{job_id}").get_json()
    assert job["status"] == "created" and job["unpublished"] >= props["started"]
    assert job["queued"] is None and job["started"] is None
    # a failure: its log entry has the stacktrace in 1.3
    failing = create_job(client, ndvi_graph(None, ("2019-01-01", "2019-01-31")))
    assert client.post(f"{v13}/jobs/{failing}/results").status_code == 202
    error = wait_job(client, failing, status_is("finished", "error"))["error"]
    logs = client.get(f"{v13}/jobs/{failing}/logs").get_json()["logs"]
    (entry,) = [e for e in logs if e["level"] == "error"]
    assert entry["message"] == error and entry["stacktrace"].startswith("Traceback")
    assert "no acquisition" in entry["stacktrace"]
    assert all("stacktrace" not in e for e in logs if e is not entry)
    old_logs = client.get(f"{v12}/jobs/{failing}/logs").get_json()["logs"]
    assert all("stacktrace" not in e for e in old_logs)
    assert [e["message"] for e in old_logs] == [e["message"] for e in logs]
    # queued again: a new queued time, and it fails the same way once more
    assert client.post(f"{v13}/jobs/{failing}/results").status_code == 202
    again = wait_job(client, failing, status_is("error"))
    assert client.get(f"{v13}/jobs/{failing}").get_json()["queued"] is not None
    assert again["error"] == error


def test_pause_keeps_blocks_and_queue_resumes(apps):
    app = apps(batch_block_size=128, batch_inflight=1)  # 16 blocks, one at a time
    client = app.test_client()
    graph = ndvi_graph("min_time")
    job_id = create_job(client, graph)
    client.patch(f"/jobs/{job_id}/queue")
    wait_job(client, job_id, lambda j: done_blocks(j) >= 3)
    resp = client.patch(f"/jobs/{job_id}/pause")
    assert resp.status_code == 200 and resp.get_json()["status"] == "paused"
    assert client.patch(f"/jobs/{job_id}/pause").status_code == 409
    wait_driver_stopped(app, job_id)
    paused = client.get(f"/jobs/{job_id}").get_json()
    assert paused["status"] == "paused"
    kept = done_blocks(paused)
    assert 3 <= kept < 16 and 0 < paused["progress"] < 100
    work = app.extensions["tileserver"].settings.home / "results" / ".work" / job_id
    assert len(list(work.glob("*/blocks/r*.json"))) >= kept
    assert client.get(f"/jobs/{job_id}/download").status_code == 409
    client.patch(f"/jobs/{job_id}/queue")
    job = wait_job(client, job_id, status_is("finished", "error"))
    assert job["status"] == "finished"
    messages = [e["message"] for e in client.get(f"/jobs/{job_id}/logs").get_json()]
    assert any(m.startswith("resuming:") for m in messages), messages
    resumed = next(m for m in messages if m.startswith("resuming:"))
    assert int(resumed.split()[1]) >= kept
    data, _ = read_result(client, client.get(f"/jobs/{job_id}/download").get_json()[0])
    assert_plain(data[0], _plain(app, "min_time", 128)[0])


def test_cancel_while_running_stops_and_revokes_services(apps):
    app = apps(batch_block_size=128, batch_inflight=1)
    client = app.test_client()
    job_id = create_job(client, ndvi_graph("min_time"))
    service = client.post("/services", json={"job_id": job_id, "type": "xyz"}).get_json()
    tile = "/" + service["service_url"].split("/", 3)[3].format(z=12, x=2148, y=1465)
    assert client.get(tile).status_code in (200, 204)  # a lazy service answers before
    client.patch(f"/jobs/{job_id}/queue")
    wait_job(client, job_id, lambda j: done_blocks(j) >= 2)
    resp = client.patch(f"/jobs/{job_id}/cancel")
    assert resp.status_code == 200 and resp.get_json()["status"] == "canceled"
    wait_driver_stopped(app, job_id)  # fails if the driver ignores the cancel
    job = client.get(f"/jobs/{job_id}").get_json()
    assert job["status"] == "canceled"
    assert done_blocks(job) < 16  # stopped before the end (16 blocks, one at a time)
    work = app.extensions["tileserver"].settings.home / "results" / ".work" / job_id
    assert not list(work.glob("*/blocks/r*"))
    assert client.get(tile).status_code == 404
    assert client.patch(f"/jobs/{job_id}/cancel").status_code == 409
    assert client.get(f"/jobs/{job_id}/download").status_code == 409
    logs = client.get(f"/jobs/{job_id}/logs").get_json()
    assert any("canceled" in e["message"] for e in logs)


def test_a_task_of_a_deleted_job_does_not_bring_its_files_back(apps):
    """A block task that a worker starts (or finishes) after the job was deleted must not
    recreate the job's work directory: its files would stay on the disk forever. The task
    is the one Dask runs, called here after the delete (what a worker that picked it up
    late does)."""
    from tileserver.jobs import batch as batch_module
    from tileserver.jobs import batch_tasks

    app = apps(batch_block_size=128, batch_inflight=1)
    client = app.test_client()
    job_id = paused_after_a_block(app)
    runner = app.extensions["tileserver"].batch
    spec, _ = batch_module._Run(runner, job_id, "late").plan(
        app.extensions["tileserver"].store.get_job(job_id))
    work = runner.work_root(job_id)
    assert spec.blocks_dir.is_dir() and Path(spec.work_dir).parent == work
    todo = [b for b in spec.all_blocks() if not spec.block_path(*b).exists()]
    assert todo
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    assert not work.exists()
    with pytest.raises(batch_tasks.WorkGone, match="deleted or canceled"):
        batch_tasks.run_block(spec, *todo[0])
    assert not work.exists()


def test_delete_running_job_removes_its_files(apps):
    app = apps(batch_block_size=128, batch_inflight=1)
    client = app.test_client()
    job_id = create_job(client, ndvi_graph("min_time"))
    client.patch(f"/jobs/{job_id}/queue")
    wait_job(client, job_id, lambda j: done_blocks(j) >= 1)
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    wait_driver_stopped(app, job_id)
    results = app.extensions["tileserver"].settings.home / "results"
    assert not (results / ".work" / job_id).exists() or not list(
        (results / ".work" / job_id).glob("*/blocks/r*"))
    assert not (results / job_id).exists()
    assert client.get(f"/jobs/{job_id}/logs").status_code == 404


# -- failures and restarts -------------------------------------------------------------------


def test_failing_task_marks_error_with_the_reason(apps, tmp_path, catalog):
    copy = tmp_path / "cat"  # a private copy: damaging it harms no other test
    shutil.copytree(catalog.parent, copy)
    app = apps(catalogs=[copy / "catalog.json"], batch_block_size=64, batch_inflight=1)
    client = app.test_client()
    job_id = paused_after_a_block(app)
    damaged = copy / "TEST" / "test_3" / "B08.tif"
    original = damaged.read_bytes()
    damaged.write_bytes(b"this is not a GeoTIFF")
    client.patch(f"/jobs/{job_id}/queue")  # resumes, and meets the damaged file
    job = wait_job(client, job_id, status_is("finished", "error"))
    assert job["status"] == "error"
    assert "B08.tif" in job["error"], job["error"]
    errors = [e for e in client.get(f"/jobs/{job_id}/logs").get_json() if e["level"] == "error"]
    assert len(errors) == 1 and errors[0]["message"] == job["error"]
    assert errors[0]["message"].startswith("block row ")
    assert client.get(f"/jobs/{job_id}/download").status_code == 409
    home = app.extensions["tileserver"].settings.home
    assert not (home / "results" / job_id).exists()
    # the file is readable again: a later queue resumes from the finished blocks
    damaged.write_bytes(original)
    assert client.patch(f"/jobs/{job_id}/queue").status_code == 202
    job = wait_job(client, job_id, status_is("finished", "error"))
    assert job["status"] == "finished", client.get(f"/jobs/{job_id}/logs").get_json()
    messages = [e["message"] for e in client.get(f"/jobs/{job_id}/logs").get_json()]
    assert sum(m.startswith("resuming:") for m in messages) == 2, messages
    data, _ = read_result(client, client.get(f"/jobs/{job_id}/download").get_json()[0])
    assert_plain(data[0], _plain(app, "min_time", 64)[0])


WORKER_FILE_LIMIT = 512 * 1024


def _limit_file_size(limit: int | None) -> None:
    """In a Dask worker process: files larger than ``limit`` bytes cannot be written (the
    write fails with EFBIG, as on a full disk); ``None`` lifts the limit."""
    import resource
    import signal as sig

    sig.signal(sig.SIGXFSZ, sig.SIG_IGN)  # a failing write, not a killed process
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard if limit is None else limit, hard))


def _run_with_file_limit(client, cluster, job_id: str, limit: int) -> dict:
    """Queue the job while the workers may write no file above ``limit`` bytes; the job
    once it is finished or failed (the limit is lifted again in any case)."""
    from distributed import Client

    with Client(cluster.scheduler_address, timeout=30) as dask_client:
        dask_client.run(_limit_file_size, limit)
        try:
            client.patch(f"/jobs/{job_id}/queue")
            return wait_job(client, job_id, status_is("finished", "error"))
        finally:
            dask_client.run(_limit_file_size, None)


def test_result_that_cannot_be_written_is_an_error_and_queue_resumes(apps, cluster):
    # the workers may write no file larger than 512 KiB: every block's files (256 x 256 px,
    # its uncompressed COG tile: 256 KiB) and the tile of the overview are written, the
    # 1.3 MB COG is not (EFBIG, the error of a full disk)
    app = apps(batch_block_size=256, batch_inflight=4)
    client = app.test_client()
    graph = ndvi_graph("min_time")
    job_id = create_job(client, graph, {"format": "GTiff", "parameters": {
        "compress": "none", "blockxsize": 256}})
    job = _run_with_file_limit(client, cluster, job_id, WORKER_FILE_LIMIT)
    logs = client.get(f"/jobs/{job_id}/logs").get_json()
    assert job["status"] == "error", logs
    assert job["error"].startswith("writing the result failed"), job["error"]
    assert "cannot write result.tif" in job["error"], job["error"]
    assert f"files larger than {WORKER_FILE_LIMIT} bytes are refused" in job["error"]
    assert logs[-1] == {**logs[-1], "level": "error", "message": job["error"]}
    assert job["blocks"] == {"done": 4, "total": 4} and job["progress"] < 100
    home = app.extensions["tileserver"].settings.home
    assert not (home / "results" / job_id).exists()  # nothing published
    assert not list((home / "results" / ".work" / job_id).glob("*/out-*"))  # nor left over
    assert client.get(f"/jobs/{job_id}/download").status_code == 409
    # room again: a later queue resumes with every block done and only writes the result
    assert client.patch(f"/jobs/{job_id}/queue").status_code == 202
    job = wait_job(client, job_id, status_is("finished", "error"))
    assert job["status"] == "finished", client.get(f"/jobs/{job_id}/logs").get_json()
    messages = [e["message"] for e in client.get(f"/jobs/{job_id}/logs").get_json()]
    assert "resuming: 4 of 4 blocks already done" in messages, messages
    data, info = read_result(client, client.get(f"/jobs/{job_id}/download").get_json()[0])
    assert info["profile"].get("compress") is None
    assert_plain(data[0], _plain(app, "min_time", 256)[0])


def test_tiles_of_a_level_that_cannot_be_written_are_an_error_and_queue_resumes(apps,
                                                                                 cluster):
    # 128 px blocks do not cover whole 256 px tiles: strip tasks compress the full
    # resolution from the blocks' values, one tile row (512 x 256 px, 512 KiB
    # uncompressed) each; with no file above 300 KB allowed the blocks are written, the
    # strips are not
    app = apps(batch_block_size=128, batch_inflight=4)
    client = app.test_client()
    graph = ndvi_graph("min_time")
    job_id = create_job(client, graph, {"format": "GTiff", "parameters": {
        "compress": "none", "blockxsize": 256}})
    job = _run_with_file_limit(client, cluster, job_id, 300_000)
    assert job["status"] == "error", client.get(f"/jobs/{job_id}/logs").get_json()
    assert job["error"].startswith("writing the result failed"), job["error"]
    assert "cannot write the tiles of level 1/1 of the result" in job["error"], job["error"]
    assert "files larger than 300000 bytes are refused" in job["error"], job["error"]
    assert job["progress"] < 90
    home = app.extensions["tileserver"].settings.home
    assert not (home / "results" / job_id).exists()
    # room again: queue resumes from the finished blocks and writes the strips
    assert client.patch(f"/jobs/{job_id}/queue").status_code == 202
    job = wait_job(client, job_id, status_is("finished", "error"))
    assert job["status"] == "finished", client.get(f"/jobs/{job_id}/logs").get_json()
    messages = [e["message"] for e in client.get(f"/jobs/{job_id}/logs").get_json()]
    assert any(m.startswith("resuming: ") for m in messages), messages
    data, _ = read_result(client, client.get(f"/jobs/{job_id}/download").get_json()[0])
    assert_plain(data[0], _plain(app, "min_time", 128)[0])


def test_clean_restart_resumes_the_job(apps, tmp_path):
    home = tmp_path / "shared-home"
    first = apps(home=home, batch_block_size=128, batch_inflight=1)
    client = first.test_client()
    graph = ndvi_graph("min_time")
    job_id = create_job(client, graph)
    client.patch(f"/jobs/{job_id}/queue")
    wait_job(client, job_id, lambda j: done_blocks(j) >= 3)
    first.extensions["tileserver"].close()  # the server stops while the job runs
    second = apps(home=home, batch_block_size=128, batch_inflight=4)
    client = second.test_client()
    job = wait_job(client, job_id, status_is("finished", "error"))
    assert job["status"] == "finished"
    messages = [e["message"] for e in client.get(f"/jobs/{job_id}/logs").get_json()]
    assert any("shutting down" in m for m in messages)
    assert any(m.startswith("resuming:") for m in messages)
    data, _ = read_result(client, client.get(f"/jobs/{job_id}/download").get_json()[0])
    assert_plain(data[0], _plain(second, "min_time", 128)[0])


CRASHING_SERVER = """
import os, signal, sys, time
from tests.support.batch import batch_settings, done_blocks
from tileserver.web.app import create_app

def main():
    home, catalog, scheduler, job_id = sys.argv[1:5]
    app = create_app(batch_settings(home, [catalog], scheduler, batch_block_size=128,
                                    batch_inflight=1))
    client = app.test_client()
    assert client.patch(f"/jobs/{job_id}/queue").status_code == 202
    while done_blocks(client.get(f"/jobs/{job_id}").get_json()) < 3:
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)  # a crash: no clean shutdown at all

if __name__ == "__main__":
    main()
"""


def test_killed_server_leaves_no_job_running_forever(apps, tmp_path, cluster, catalog):
    home = tmp_path / "crash-home"
    setup = apps(home=home, batch_block_size=128)
    job_id = create_job(setup.test_client(), ndvi_graph("min_time"))
    setup.extensions["tileserver"].close()
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_SERVER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(script), str(home), str(catalog),
                           cluster.scheduler_address, job_id], env=env, cwd=REPO,
                          capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    # the database still says "running": the next server takes the job over once the
    # dead server's heartbeat is stale, and resumes it
    app = apps(home=home, batch_block_size=128, batch_inflight=4)
    client = app.test_client()
    job = wait_job(client, job_id, status_is("finished", "error"))
    assert job["status"] == "finished"
    messages = [e["message"] for e in client.get(f"/jobs/{job_id}/logs").get_json()]
    assert any("stopped; resuming" in m for m in messages), messages
    assert any(m.startswith("resuming:") for m in messages), messages


def test_stopping_a_real_server_hands_its_job_back(tmp_path, cluster, catalog):
    # `tileserver serve` (gunicorn) stopped with SIGTERM while a job runs: its worker hands
    # the job back (queued) on exit instead of leaving it running or failing it
    import socket

    from tileserver.jobs.store import JobStore

    home = tmp_path / "served"
    home.mkdir()
    config = home / "config.yaml"
    config.write_text((REPO / "config" / "default.yaml").read_text() + textwrap.dedent(f"""
        dask_scheduler: {cluster.scheduler_address}
        batch_block_size: 64
        batch_inflight: 1
        batch_poll_seconds: 0.1
    """))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TILESERVER_HOME": str(home), "TILESERVER_CATALOG": str(catalog),
           "TILESERVER_CONFIG": str(config), "PYTHONPATH": str(REPO)}
    server = subprocess.Popen([sys.executable, "-m", "tileserver.cli", "serve", "--port",
                               str(port)], env=env, cwd=home, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    workers = [nanny.process.pid for nanny in cluster.workers.values()]
    try:
        api = requests.Session()
        for _ in range(600):
            try:
                api.get(url + "/", timeout=30)
                break
            except requests.RequestException:
                time.sleep(0.1)
        job_id = api.post(f"{url}/jobs", json={"process_graph": ndvi_graph()}).json()["job_id"]
        assert api.patch(f"{url}/jobs/{job_id}/queue").status_code == 202
        deadline = time.monotonic() + 120
        while done_blocks(api.get(f"{url}/jobs/{job_id}").json()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        api.close()
        # the workers are frozen while the server stops: however long its shutdown takes,
        # the job cannot finish meanwhile (a CI run saw the 64 blocks done before the exit)
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            _, err = server.communicate(timeout=120)
        finally:
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
    assert b"Traceback" not in err, err.decode()[-2000:]
    store = JobStore(f"sqlite:///{home / 'tileserver.db'}")
    try:
        job = store.get_job(job_id)
        assert job["status"] == "queued" and job["extra"]["handed_back"] is True
        assert store.logs(job_id)[-1]["message"].startswith("server shutting down")
    finally:
        store.dispose()


def test_batch_extent_may_exceed_max_pixels(apps):
    # one evaluation may hold at most 400 000 pixels x bands x dates; the job is 512 x 512
    # x 2 bands x 3 dates, so the runner shrinks its blocks until each one fits
    app = apps(batch_block_size=1024, batch_inflight=4, max_pixels=400_000)
    client = app.test_client()
    graph = ndvi_graph("min_time")
    assert client.post("/execute", json={"process_graph": graph}).status_code == 413
    job_id, job = _run(client, graph)
    assert job["status"] == "finished", client.get(f"/jobs/{job_id}/logs").get_json()
    assert job["blocks"] == {"done": 4, "total": 4}  # 256 px blocks: 65 536 px x 6 fit
    data, _ = read_result(client, client.get(f"/jobs/{job_id}/download").get_json()[0])
    assert_plain(data[0], _plain(app, "min_time", 256)[0])


def test_embedded_local_cluster_runs_a_job(apps):
    client = apps(scheduler=None, batch_workers=1, batch_worker_memory="1GiB",
                  batch_block_size=256).test_client()
    job_id, job = _run(client, ndvi_graph("min_time"))
    assert job["status"] == "finished", client.get(f"/jobs/{job_id}/logs").get_json()
    assert job["blocks"] == {"done": 4, "total": 4}


def test_json_logs_and_meta_shape(apps):
    client = apps(batch_block_size=256).test_client()
    job_id, job = _run(client, ndvi_graph("min_time"))
    logs = client.get(f"/jobs/{job_id}/logs").get_json()
    assert [e["level"] for e in logs] == ["info"] * len(logs)
    assert logs[0]["message"] == "queued" and logs[-1]["message"].startswith("finished")
    assert all(set(e) == {"time", "level", "message"} for e in logs)
    json.dumps(job)


def test_table_result_runs_once_and_equals_execute(apps):
    # zonal_statistics returns a table, not an image: the job runs whole, once, and its
    # encoded table is the single result file
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping

    client = apps().test_client()
    fields = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": name},
         "geometry": transform_geom("EPSG:32632", "EPSG:4326", mapping(box(*bounds)))}
        for name, bounds in (("a", (500500, 5095500, 501500, 5096500)),
                             ("b", (503000, 5098000, 504800, 5099800)))]}
    assert client.put("/users/me/files/fields.geojson",
                      data=json.dumps(fields)).status_code in (200, 201, 204)
    graph = {"process_id": "zonal_statistics", "args": {
        "imagery": ndvi_graph(None), "regions": "/users/me/files/fields.geojson",
        "func": "avg"}}
    output = {"format": "JSON"}
    job_id, job = _run(client, graph, output)
    assert job["status"] == "finished", client.get(f"/jobs/{job_id}/logs").get_json()
    urls = client.get(f"/jobs/{job_id}/download").get_json()
    assert [u.rsplit("/", 1)[1] for u in urls] == ["result.json", "item.json"]
    batch = json.loads(fetch(client, urls[0]))
    resp = client.post("/execute", json={"process_graph": graph, "output": output})
    assert resp.status_code == 200
    assert batch == json.loads(resp.data)
    assert batch  # the table is not empty


def test_no_acquisition_is_an_error_not_an_empty_result(apps):
    client = apps().test_client()
    # no files to read: the job fails as soon as it starts, maybe before the queue answer
    job_id, job = _run(client, ndvi_graph(None, ("2019-01-01", "2019-01-31")),
                       answered=("queued", "running", "error"))
    assert job["status"] == "error"
    assert "no acquisition" in job["error"]
    assert client.get(f"/jobs/{job_id}/download").status_code == 409


@pytest.fixture
def private_cluster():
    """A cluster of its own, for a test that kills its workers (no order among tests)."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         memory_limit="1GiB", dashboard_address=":0") as cl:
        yield cl


def test_dead_workers_mark_the_job_error_with_the_reason(apps, private_cluster):
    """Workers killed while they compute a block of the job: the job is ``error`` and says
    why; once the nannies restart them, queueing again resumes from the finished blocks.

    The workers are frozen (SIGSTOP) before the job is queued again, so a block is surely on
    them when they are killed: killing them between two blocks would prove nothing (Dask
    runs the next ones on the restarted workers, and the job rightly finishes)."""
    from distributed import Client

    cluster = private_cluster  # its workers are killed: the module's cluster stays intact
    app = apps(scheduler=cluster.scheduler_address, batch_block_size=128, batch_inflight=2)
    client = app.test_client()
    job_id = paused_after_a_block(app)
    kept = done_blocks(client.get(f"/jobs/{job_id}").get_json())
    assert 1 <= kept < 16
    workers = [nanny.process.pid for nanny in cluster.workers.values()]
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    with Client(cluster.scheduler_address, timeout=30) as dask_client:
        assert client.patch(f"/jobs/{job_id}/queue").status_code == 202
        deadline = time.monotonic() + 60
        while not any(key.startswith(f"batch-{job_id}")
                      for keys in dask_client.processing().values() for key in keys):
            assert time.monotonic() < deadline, "no block of the job reached a worker"
            time.sleep(0.05)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        job = wait_job(client, job_id, status_is("finished", "error"))
        assert job["status"] == "error", client.get(f"/jobs/{job_id}/logs").get_json()
        assert "worker died" in job["error"], job["error"]
        logs = client.get(f"/jobs/{job_id}/logs").get_json()
        assert logs[-1]["level"] == "error" and "worker died" in logs[-1]["message"]
        home = app.extensions["tileserver"].settings.home
        assert not (home / "results" / job_id).exists()
        assert client.get(f"/jobs/{job_id}/download").status_code == 409
        # the nannies restart the workers: a later queue resumes from the finished blocks
        dask_client.wait_for_workers(2, timeout=60)
    assert client.patch(f"/jobs/{job_id}/queue").status_code == 202
    job = wait_job(client, job_id, status_is("finished", "error"))
    assert job["status"] == "finished", client.get(f"/jobs/{job_id}/logs").get_json()
    messages = [e["message"] for e in client.get(f"/jobs/{job_id}/logs").get_json()]
    assert sum(m.startswith("resuming:") for m in messages) == 2, messages
    data, _ = read_result(client, client.get(f"/jobs/{job_id}/download").get_json()[0])
    assert_plain(data[0], _plain(client.application, "min_time", 128)[0])


def test_killed_batch_server_leaves_no_job_running_forever_on_postgresql(apps, tmp_path,
                                                                         cluster, catalog,
                                                                         pg_url):
    """The same on PostgreSQL (the pg_url fixture of tests/conftest.py)."""
    test_killed_server_leaves_no_job_running_forever(apps, tmp_path, cluster, catalog)


def test_a_user_runs_at_most_max_user_batch_jobs_at_once(apps):
    """A job of a user who already has ``max_user_batch_jobs`` running stays ``queued`` (and
    says why in its log) until one of them ends, then runs."""
    app = apps(max_user_batch_jobs=1, batch_stale_seconds=600)  # no takeover meanwhile
    client = app.test_client()
    store = app.extensions["tileserver"].store
    busy = create_job(client, ndvi_graph())
    user = store.get_job(busy)["user_id"]
    store.update_job(busy, user, status="running")  # another of the user's jobs runs
    job_id = create_job(client, ndvi_graph())
    assert client.patch(f"/jobs/{job_id}/queue").status_code == 202
    wait_job(client, job_id, lambda j: any(
        "waiting: 1 of your batch jobs" in e["message"]
        for e in store.logs(job_id)), timeout=300)
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "queued"
    store.update_job(busy, user, status="canceled")  # it ends
    job = wait_job(client, job_id, status_is("finished", "error"), timeout=300)
    assert job["status"] == "finished", store.logs(job_id)
