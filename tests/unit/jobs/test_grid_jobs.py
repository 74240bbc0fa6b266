"""Whole-collection jobs on the data's own grid (issue 23): a 1.x graph with no bbox, run
by the batch runner on a real LocalCluster or as a synchronous ``/result``, gives a result
with exactly the files' transform and shape, whose values are a plain rasterio + numpy
script's bit for bit (nodata included, several dates)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from numpy.testing import assert_array_equal

from tests.support.batch import batch_settings, read_result, status_is, wait_job
from tests.support.grids import PRODUCTS, make_grid_catalog, ndvi_graph, plain_ndvi, source_grid
from tileserver.web.app import create_app

V1 = "/openeo/1.2"


@pytest.fixture(scope="module")
def cluster():
    """A real LocalCluster with two worker processes, shared by the module's tests."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      memory_limit="1GiB", dashboard_address=":0") as cl:
        yield cl


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return make_grid_catalog(tmp_path_factory.mktemp("gridjobs"))


@pytest.fixture(scope="module")
def client(tmp_path_factory, cluster, catalog):
    # 128-px blocks: the 400 x 160 px TILES job runs in 4 x 2 blocks, aligned with the
    # files' 64-px blocks
    settings = batch_settings(tmp_path_factory.mktemp("home"), [catalog],
                              cluster.scheduler_address, batch_block_size=128)
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app.test_client()
    app.extensions["tileserver"].close()


def run_job(client, graph: dict) -> tuple[list[tuple[np.ndarray, dict]], list[str]]:
    """Create and run a 1.x batch job; its result files (sorted by name) and log lines."""
    resp = client.post(f"{V1}/jobs", json={"process": {"process_graph": graph}})
    assert resp.status_code == 201, resp.get_json()
    job_id = resp.headers["OpenEO-Identifier"]
    assert client.post(f"{V1}/jobs/{job_id}/results").status_code == 202
    job = wait_job(client, job_id, status_is("finished", "error"), timeout=300)
    logs = [e["message"] for e in client.get(f"{V1}/jobs/{job_id}/logs").get_json()["logs"]]
    assert job["status"] == "finished", logs
    assets = client.get(f"{V1}/jobs/{job_id}/results").get_json()["assets"]
    files = [read_result(client, a["href"]) for _, a in sorted(assets.items())
             if a["href"].endswith(".tif")]
    return files, logs


def assert_on_the_source_grid(meta: dict, product: str) -> None:
    crs, transform, shape = source_grid(product)
    assert meta["crs"] == rasterio.crs.CRS.from_user_input(crs)
    assert meta["transform"] == transform  # exactly the files' transform
    assert (meta["profile"]["height"], meta["profile"]["width"]) == shape


@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_whole_collection_job_is_on_the_source_grid_and_equals_the_script(client, catalog,
                                                                        product):
    """min over the dates of NDVI, the whole collection (no bbox): the source grid, the
    script's values bit for bit."""
    files, logs = run_job(client, ndvi_graph(product))
    ((values, meta),) = files
    assert_on_the_source_grid(meta, product)
    expected = plain_ndvi(catalog.parent, product)
    assert np.isnan(expected).any() and np.isfinite(expected).mean() > 0.5
    assert_array_equal(values, expected)
    assert any("on the files' grid (at their pixel 0, 0)" in line and
               "blocks aligned with their 64-px tiles" in line for line in logs), logs


def test_whole_collection_time_series_has_one_file_per_date_equal_to_the_script(client,
                                                                                catalog):
    files, _ = run_job(client, ndvi_graph("TILES", reduce=False))
    expected = plain_ndvi(catalog.parent, "TILES", reduce=False)
    assert len(files) == len(expected) == PRODUCTS["TILES"][7]
    for (values, meta), want in zip(files, expected, strict=True):
        assert_on_the_source_grid(meta, "TILES")
        assert_array_equal(values[0], want)


def test_bbox_job_is_on_the_snapped_source_grid(client, catalog):
    crs, transform, _ = source_grid("TILES")
    # across the seam of the two tiles, cutting pixels
    extent = {"west": transform.c + 150.4 * 10, "east": transform.c + 262.2 * 10,
              "north": transform.f - 7.7 * 10, "south": transform.f - 99.01 * 10,
              "crs": crs}
    ((values, meta),), _ = run_job(client, ndvi_graph("TILES", extent))
    assert meta["transform"] == transform * Affine.translation(150, 7)
    assert values.shape == (1, 93, 113)
    expected = plain_ndvi(catalog.parent, "TILES")[:, 7:100, 150:263]
    # the pixels of the outward snap whose centre lies outside the bbox are not in it
    # (1.x filter semantics): the first row, the last row and the last column
    expected[:, 0], expected[:, -1], expected[:, :, -1] = np.nan, np.nan, np.nan
    assert_array_equal(values, expected)


@pytest.mark.parametrize("product", ["TILES", "GEO"])
def test_sync_result_of_the_whole_collection_is_on_the_source_grid(client, catalog, product):
    resp = client.post(f"{V1}/result", json={"process": {"process_graph": ndvi_graph(
        product)}})
    assert resp.status_code == 200, resp.data[:300]
    with rasterio.MemoryFile(resp.data) as mem, mem.open() as src:
        meta = {"crs": src.crs, "transform": src.transform, "profile": src.profile}
        values = src.read()
    assert_on_the_source_grid(meta, product)
    assert_array_equal(values, plain_ndvi(catalog.parent, product))
