"""Batch results and user files on an S3-compatible object store (moto's standalone server,
a real subprocess speaking the S3 HTTP API; production uses AWS, MinIO or Ceph RGW).

The same job runs with results on the server's disk and on the store: the downloaded COGs,
the tiles of the finished job (read by GDAL through ``/vsis3/``) and the coverages are the
same values; STAC assets carry presigned URLs that plain HTTP downloads; user files go to
the store; deleting a job deletes its objects; a stopped store answers 503 naming it.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import requests
from rasterio.io import MemoryFile

from tests.support.batch import (
    app_maker,
    batch_settings,
    create_job,
    fetch,
    ndvi_graph,
    status_is,
    wait_driver_stopped,
    wait_job,
)
from tests.support.s3 import moto_server
from tests.support.synthetic import make_catalog

OUTPUT = {"format": "GTiff", "parameters": {"blockxsize": 256}}
#: 128 px blocks: the 512 px result has 16 blocks and strips (blocks smaller than a tile)
OPTIONS = {"batch_block_size": 128, "batch_inflight": 4}
HEADER = "X-Tileserver-Cache"


@pytest.fixture(scope="module")
def s3():
    """A moto server, with the process's AWS_* variables pointing at it (the embedded Dask
    workers inherit them)."""
    with moto_server() as server, pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        yield server


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return make_catalog(tmp_path_factory.mktemp("s3cat"))


@pytest.fixture(scope="module")
def cluster(s3):
    """Two worker processes started after the AWS_* variables are set."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      memory_limit="1GiB", dashboard_address=":0") as cl:
        yield cl


@pytest.fixture
def apps(tmp_path, cluster, catalog):
    with app_maker() as make:

        def factory(name: str, embedded: bool = False, **extra):
            """An app on the module's cluster (``embedded``: on a LocalCluster of its own,
            whose workers see the AWS_* variables set now)."""
            return make(batch_settings(tmp_path / name, [catalog],
                                       None if embedded else cluster.scheduler_address,
                                       **{**OPTIONS, **extra}))

        yield factory


def _finish(client, graph) -> str:
    job_id = create_job(client, graph, OUTPUT)
    assert client.patch(f"/jobs/{job_id}/queue").status_code == 202
    job = wait_job(client, job_id, status_is("finished", "error"), timeout=180)
    assert job["status"] == "finished", client.get(f"/jobs/{job_id}/logs").get_json()
    wait_driver_stopped(client.application, job_id)  # it removes the scratch objects last
    return job_id


def _values(data: bytes) -> np.ndarray:
    with MemoryFile(data) as mem, mem.open() as src:
        return src.read()


def _wmts(client, job_id: str) -> str:
    url = client.post("/services", json={"job_id": job_id, "type": "wmts"}).get_json()
    return "/" + url["service_url"].split("/", 3)[3]


#: Full-resolution and overview tiles of the test area (WebMercatorQuad).
TILES = [(14, 8602, 5826), (14, 8603, 5827), (12, 2150, 1456)]


@pytest.mark.parametrize("graph", [ndvi_graph("min_time"),
                                   ndvi_graph(None, ("2020-05-01", "2020-05-12"))],
                         ids=["min_time", "time_series"])
def test_results_on_s3_equal_the_local_run(apps, s3, graph):
    bucket = s3.bucket(f"results-{len(graph)}-{id(graph) % 9973}")
    local = apps("home-local")
    remote = apps("home-s3", storage_url=f"s3://{bucket}/deploy")
    lc, rc = local.test_client(), remote.test_client()
    local_id, remote_id = _finish(lc, graph), _finish(rc, graph)
    # the objects are in the store, nothing on the server's disk, no scratch left
    keys = s3.keys(bucket)
    names = sorted(k.rsplit("/", 1)[1] for k in keys if k.startswith(
        f"deploy/results/{remote_id}/"))
    assert "item.json" in names and any(n.endswith(".tif") for n in names)
    assert not [k for k in keys if "/.work/" in k], keys
    assert not (remote.extensions["tileserver"].settings.home / "results" / remote_id).exists()
    # downloads through the server: the same values as the local run
    lurls = lc.get(f"/jobs/{local_id}/download").get_json()
    rurls = rc.get(f"/jobs/{remote_id}/download").get_json()
    assert [u.rsplit("/", 1)[1] for u in lurls] == [u.rsplit("/", 1)[1] for u in rurls]
    for lu, ru in zip(lurls, rurls, strict=True):
        if lu.endswith(".tif"):
            np.testing.assert_array_equal(_values(fetch(lc, lu)), _values(fetch(rc, ru)))
    # a range of a result file streamed from the store
    part = rc.get("/" + rurls[0].split("://", 1)[1].split("/", 1)[1],
                  headers={"Range": "bytes=0-15"})
    data = part.data
    part.close()
    assert part.status_code == 206 and len(data) == 16 and data[:2] == b"II"
    assert part.headers["Content-Range"].startswith("bytes 0-15/")
    # tiles of the finished job: read from the stored COG (/vsis3/ on S3), the same values
    lw, rw = _wmts(lc, local_id), _wmts(rc, remote_id)
    caps = rc.get(rw + "/1.0.0/WMTSCapabilities.xml").data.decode()
    when = "" if graph["process_id"] == "min_time" else \
        sorted(set(__import__("re").findall(r"<Value>([\d-]+)</Value>", caps)))[-1] + "/"
    for z, x, y in TILES:
        got = {}
        for client, base, jid in ((lc, lw, local_id), (rc, rw, remote_id)):
            resp = client.get(f"{base}/1.0.0/{jid}/default/{when}GoogleMapsCompatible/"
                              f"{z}/{y}/{x}.tif")
            assert resp.status_code == 200, resp.data[:300]
            assert resp.headers[HEADER] == "stored"
            got[jid] = _values(resp.data)
        np.testing.assert_array_equal(got[local_id], got[remote_id])
        assert np.isfinite(got[remote_id]).mean() > 0.3  # the tiles compared hold data
    served = remote.extensions["tileserver"]
    from tileserver.web.served import served_job

    with remote.test_request_context():
        stored = served_job(served.store.get_job(remote_id)).stored
    assert stored is not None and all(h.startswith(f"s3://{bucket}/deploy/results/")
                                      for h in stored.files.values())


def test_presigned_urls_download_with_plain_http(apps, s3):
    bucket = s3.bucket("public-results")
    app = apps("home-public", storage_url=f"s3://{bucket}", storage_public=True)
    client = app.test_client()
    job_id = _finish(client, ndvi_graph("min_time"))
    item = client.get(f"/openeo/1.2/jobs/{job_id}/results").get_json()
    hrefs = {k: a["href"] for k, a in item["assets"].items()}
    assert hrefs and all(h.startswith(s3.endpoint + f"/{bucket}/results/{job_id}/")
                         and "Signature=" in h for h in hrefs.values()), hrefs
    # no credentials: the signature is the credential
    body = requests.get(hrefs["result"], timeout=30)
    assert body.status_code == 200
    server = client.get(f"/jobs/{job_id}/download").get_json()[0]
    np.testing.assert_array_equal(_values(body.content), _values(fetch(client, server)))
    with rasterio.open(f"/vsicurl/{hrefs['result']}") as src:  # GDAL over the signed URL
        assert src.read(1, window=((0, 8), (0, 8))).shape == (8, 8)


def test_user_files_on_s3(apps, s3):
    bucket = s3.bucket("user-files")
    client = apps("home-files", storage_url=f"s3://{bucket}/p").test_client()
    body = b'{"type": "FeatureCollection", "features": []}'
    user = "me"  # the user of a server without authentication
    put = client.put(f"/users/{user}/files/regions/a.geojson", data=body)
    assert put.status_code == 201, put.data
    assert s3.keys(bucket) == [f"p/files/{user}/regions/a.geojson"]
    assert client.put(f"/users/{user}/files/regions/a.geojson", data=body).status_code == 200
    listing = client.get(f"/users/{user}/files").get_json()
    assert [f["name"] for f in listing] == ["regions/a.geojson"]
    assert listing[0]["size"] == len(body)
    got = client.get(f"/users/{user}/files/regions/a.geojson")
    data = got.data
    got.close()
    assert got.status_code == 200 and data == body
    assert client.get(f"/users/{user}/files/regions").get_json()[0]["size"] == len(body)
    assert client.get(f"/users/{user}/files/nothing.txt").status_code == 404
    assert client.put(f"/users/{user}/files/regions", data=b"x").status_code == 409
    assert client.put(f"/users/{user}/files/../x", data=b"x").status_code in (400, 404)
    assert client.delete(f"/users/{user}/files/regions/a.geojson").status_code == 204
    assert s3.keys(bucket) == []
    assert client.delete(f"/users/{user}/files/regions/a.geojson").status_code == 404


def test_deleting_a_job_deletes_its_objects(apps, s3):
    bucket = s3.bucket("deleted-results")
    client = apps("home-delete", storage_url=f"s3://{bucket}").test_client()
    job_id = _finish(client, ndvi_graph("min_time"))
    assert any(k.startswith(f"results/{job_id}/") for k in s3.keys(bucket))
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    assert s3.keys(bucket) == []


def test_a_stopped_store_answers_503_naming_it_and_fails_batch_jobs(apps, s3, tmp_path,
                                                                  catalog):
    # a store of its own (the module's server keeps running for the other tests)
    with moto_server() as down, pytest.MonkeyPatch.context() as mp:
        for key, value in down.env().items():
            mp.setenv(key, value)
        bucket = down.bucket("outage")
        # GDAL keeps no bytes of this bucket (a small COG would be read from its cache
        # after the outage): every tile below reads the store
        mp.setenv("CPL_VSIL_CURL_NON_CACHED", f"/vsis3/{bucket}")
        app = apps("home-outage", embedded=True, batch_workers=1,
                   storage_url=f"s3://{bucket}", storage_timeout=2,
                   storage_retries=0, remote_timeout=2, remote_connect_timeout=2,
                   remote_retries=0)
        client = app.test_client()
        job_id = _finish(client, ndvi_graph("min_time"))
        wmts = _wmts(client, job_id)
        z, x, y = TILES[2]  # the served job is known before the outage
        warm = client.get(f"{wmts}/1.0.0/{job_id}/default/GoogleMapsCompatible/{z}/{y}/{x}.tif")
        assert warm.status_code == 200 and warm.headers[HEADER] == "stored"
        warm.close()
        down.stop()
        z, x, y = TILES[0]
        # the range reads of GDAL (/vsis3/) fail: 503 naming the store, not a recomputation
        tile = client.get(f"{wmts}/1.0.0/{job_id}/default/GoogleMapsCompatible/{z}/{y}/{x}.tif")
        assert tile.status_code == 503, tile.data[:300]
        assert f"s3://{bucket}".encode() in tile.data
        z, x, y = TILES[1]
        tile = client.get(f"{wmts}/1.0.0/{job_id}/default/GoogleMapsCompatible/{z}/{y}/{x}.png")
        assert tile.status_code in (502, 503), tile.data[:300]
        assert f"s3://{bucket}" in tile.data.decode()
        ows = client.get(f"{wmts}?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={job_id}"
                         f"&STYLE=default&TILEMATRIXSET=GoogleMapsCompatible&TILEMATRIX={z}"
                         f"&TILEROW={y}&TILECOL={x}&FORMAT=image/png")
        assert ows.status_code in (502, 503)
        assert b"ExceptionReport" in ows.data and f"s3://{bucket}".encode() in ows.data
        v1 = client.get(f"/openeo/1.2/jobs/{job_id}/results")
        assert v1.status_code == 503 and f"s3://{bucket}" in v1.get_json()["message"]
        # a batch job while the store is down fails with a log line naming it
        failed = create_job(client, ndvi_graph("max_time"), OUTPUT)
        assert client.patch(f"/jobs/{failed}/queue").status_code == 202
        job = wait_job(client, failed, status_is("finished", "error"), timeout=180)
        assert job["status"] == "error"
        logs = client.get(f"/jobs/{failed}/logs").get_json()
        assert any(f"s3://{bucket}" in e["message"] and e["level"] == "error" for e in logs), logs
