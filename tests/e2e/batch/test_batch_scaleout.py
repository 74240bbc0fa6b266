"""Batch jobs on an external Dask cluster started the way a user starts one on several hosts:
``dask scheduler`` and ``dask worker`` processes of their own (see README, "Scaling out"),
sharing only the catalog paths and ``$TILESERVER_HOME`` with the server. The same job gives
the same bytes there as on the embedded LocalCluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.support.batch import batch_settings, create_job, ndvi_graph, status_is, wait_job
from tests.support.synthetic import make_catalog
from tileserver.web.app import create_app

REPO = Path(__file__).resolve().parents[3]

#: 512 x 512 px in 128 px blocks (16 tasks) and 256 px COG tiles (one overview level), so
#: that blocks, tiles and overview pixels do not line up trivially.
OPTIONS = {"batch_block_size": 128, "batch_inflight": 4}
OUTPUT = {"format": "GTiff", "parameters": {"blockxsize": 256}}


@pytest.fixture(scope="module")
def external_cluster(tmp_path_factory):
    """``dask scheduler`` + ``dask worker`` (2 processes) as separate programs; yields the
    scheduler address. The workers run elsewhere (their own working directory) and find
    ``tileserver`` as an installed package would be found (here: ``PYTHONPATH``)."""
    tmp = tmp_path_factory.mktemp("dask")
    info = tmp / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--scheduler-file", str(info)],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            assert procs[0].poll() is None, "dask scheduler exited"
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dask", "worker", address, "--nworkers", "2",
             "--nthreads", "1", "--memory-limit", "1GiB", "--no-dashboard",
             "--local-directory", str(tmp / "workers")],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _run_job(home: Path, catalog: Path, scheduler: str | None, graph: dict) -> Path:
    """Run ``graph`` as a batch job; returns the published result folder."""
    settings = batch_settings(home, [catalog], scheduler, batch_workers=2,
                              batch_worker_memory="1GiB", **OPTIONS)
    app = create_app(settings)
    try:
        client = app.test_client()
        job_id = create_job(client, graph, OUTPUT)
        assert client.patch(f"/jobs/{job_id}/queue").status_code == 202
        job = wait_job(client, job_id, status_is("finished", "error"), timeout=180)
        logs = client.get(f"/jobs/{job_id}/logs").get_json()
        assert job["status"] == "finished", logs
        assert job["blocks"] == {"done": 16, "total": 16}
        return home / "results" / job_id
    finally:
        app.extensions["tileserver"].close()


@pytest.mark.parametrize("graph", [ndvi_graph("min_time"),
                                   ndvi_graph(None, ("2020-05-01", "2020-05-12"))],
                         ids=["min_time", "time_series"])
def test_external_scheduler_gives_identical_bytes(tmp_path, external_cluster, graph):
    catalog = make_catalog(tmp_path / "catalog")
    embedded = _run_job(tmp_path / "home-embedded", catalog, None, graph)
    external = _run_job(tmp_path / "home-external", catalog, external_cluster, graph)
    files = sorted(p.name for p in embedded.glob("*.tif"))
    assert files == sorted(p.name for p in external.glob("*.tif")) and files
    for name in files:
        assert (embedded / name).read_bytes() == (external / name).read_bytes(), name
        # and the bytes are a real COG whose overview is the decimated full resolution
        with rasterio.open(external / name) as src:
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert src.overviews(1) == [2] and src.block_shapes == [(256, 256)]
            full = src.read(1)
        with rasterio.open(external / name, overview_level=0) as ovr:
            np.testing.assert_array_equal(ovr.read(1), full[::2, ::2])
