"""Workspaces on a server whose store is S3 (moto's standalone server, a real subprocess
speaking the S3 HTTP API): a workspace is a prefix of the server's bucket, a batch job's
export lands there as objects, the STAC item's ``alternate`` hrefs are presigned URLs
(``storage_public``) that plain HTTP downloads with the job's values, and deleting the
workspace deletes its objects. No user-given endpoint or credentials are ever used."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import requests
from numpy.testing import assert_array_equal

from tests.support.batch import batch_settings, status_is, wait_job
from tests.support.hardening import basic, users_file, with_users
from tests.support.openeo import ndvi_reduce_graph
from tests.support.s3 import moto_server
from tileserver.web.app import create_app

V13 = "/openeo/1.3"
BUCKET = "wsbucket"


@pytest.fixture(scope="module")
def s3():
    """A moto server, with the process's AWS_* variables pointing at it (the workers of
    the cluster below inherit them)."""
    with moto_server() as server, pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        server.bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def cluster(s3):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                      memory_limit="1GiB", dashboard_address=":0") as cl:
        yield cl


@pytest.fixture
def app(tmp_path, tmp_path_factory, cluster, small_catalog):
    settings = batch_settings(tmp_path / "home", [small_catalog], cluster.scheduler_address,
                              storage_url=f"s3://{BUCKET}/srv", storage_public=True)
    made = with_users(create_app(settings), users_file(tmp_path_factory))
    made.config["TESTING"] = True
    yield made
    made.extensions["tileserver"].close()


def graph(workspace: str) -> dict:
    return ndvi_reduce_graph("max", export={"workspace": workspace})


class _As:
    def __init__(self, client, headers):
        self.client, self.headers = client, headers

    def get(self, path, **kw):
        return self.client.get(f"{V13}{path}", headers=self.headers, **kw)


def test_export_lands_in_the_bucket_and_downloads_presigned(app, s3):
    c, alice, bob = app.test_client(), basic("alice"), basic("bob")
    resp = c.post(f"{V13}/workspaces", json={"intent": "create"}, headers=alice)
    assert resp.status_code == 201, resp.json
    wid = resp.headers["OpenEO-Identifier"]
    job_id = c.post(f"{V13}/jobs", json={"process": {"process_graph": graph(wid)}},
                    headers=alice).headers["OpenEO-Identifier"]
    assert c.post(f"{V13}/jobs/{job_id}/results", headers=alice).status_code == 202
    job = wait_job(_As(c, alice), job_id, status_is("finished", "error"), timeout=300)
    assert job["status"] == "finished", c.get(f"{V13}/jobs/{job_id}/logs", headers=alice).json
    keys = s3.keys(BUCKET, f"srv/workspaces/alice/{wid}/")
    assert f"srv/workspaces/alice/{wid}/{job_id}/item.json" in keys
    item = c.get(f"{V13}/jobs/{job_id}/results", headers=alice).json
    tifs = [a for a in item["assets"].values() if ".tif" in a["href"].split("?")[0]]
    assert tifs and {k.rsplit("/", 1)[-1] for k in keys} == {"item.json"} | {
        a["href"].split("?")[0].rsplit("/", 1)[-1] for a in tifs}
    for asset in tifs:
        href = asset["alternate"]["workspace"]["href"]
        assert href.startswith(s3.endpoint) and "Signature" in href  # presigned, on S3
        original = requests.get(asset["href"], timeout=30)  # also presigned
        copy = requests.get(href, timeout=30)
        assert original.status_code == copy.status_code == 200
        with rasterio.MemoryFile(original.content) as a, a.open() as src_a, \
                rasterio.MemoryFile(copy.content) as b, b.open() as src_b:
            values = src_a.read()
            assert np.isfinite(values).any()
            assert_array_equal(src_b.read(), values)
            assert src_b.transform == src_a.transform and src_b.crs == src_a.crs
    exported = json.loads(s3.client().get_object(
        Bucket=BUCKET, Key=f"srv/workspaces/alice/{wid}/{job_id}/item.json")["Body"].read())
    assert set(exported["assets"]) == set(item["assets"])
    # bob cannot reach it through the server; deleting it deletes its objects
    assert c.get(f"{V13}/workspaces/{wid}/files", headers=bob).status_code == 404
    assert c.delete(f"{V13}/workspaces/{wid}", headers=bob).status_code == 404
    assert c.delete(f"{V13}/workspaces/{wid}", headers=alice).status_code == 204
    assert s3.keys(BUCKET, f"srv/workspaces/alice/{wid}/") == []
    assert s3.keys(BUCKET, f"srv/results/{job_id}/")  # the job's own results stay
