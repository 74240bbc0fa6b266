"""Several hosts tested together (issue 24): two ``tileserver serve`` hosts, a Dask scheduler,
two Dask worker hosts, PostgreSQL, Redis and an S3 server (moto's, standing in for a real
store), each in its own network namespace with its own address, ``/etc/hosts`` and disk
(``tests/support/netns.py``: no host sees another's files). Every tileserver and Dask process
runs the command of ``deploy/Procfile`` with the settings of ``deploy/tileserver.env``
(``tests/support/cluster.py`` lists the few the test changes), so the deploy files are what
is tested.

The tests run in order on one cluster: a job made on server A runs on the workers, and B
serves its results and tiles with the values of a single-host run; the store becomes
unreachable for a while; a worker host dies mid-job; server A dies mid-job and B takes the
job over and serves every job."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import requests

from tests.support.batch import BBOX, assert_plain, batch_settings, ndvi_graph, plain_ndvi
from tests.support.cluster import PASSWORD, TEST_SETTINGS, USER, Cluster
from tests.support.netns import wait_until
from tests.support.requirements import requires
from tests.support.synthetic import make_catalog
from tileserver.web.app import create_app

pytestmark = [pytest.mark.cluster, pytest.mark.slow, requires("netns", "redis-server")]

BLOCK = int(TEST_SETTINGS["TILESERVER_BATCH_BLOCK_SIZE"])
OUTPUT = {"format": "GTiff", "parameters": {"blockxsize": 256}}
HEADER = "X-Tileserver-Cache"


def _center_tile(z: int = 14) -> tuple[int, int, int]:
    """The WebMercatorQuad tile at the middle of the jobs' area."""
    import morecantile
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(BBOX["srs"], "EPSG:4326", always_xy=True).transform(
        (BBOX["left"] + BBOX["right"]) / 2, (BBOX["top"] + BBOX["bottom"]) / 2)
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, z)
    return t.z, t.x, t.y


TILE = _center_tile()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return make_catalog(tmp_path_factory.mktemp("catalog"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, catalog):
    from tests.support.pg import require_postgres

    require_postgres()
    # each worker host pinned to one core: one Dask worker process each (--nworkers -1)
    c = Cluster(tmp_path_factory.mktemp("cluster"), str(catalog), workers=2, servers=2)
    try:
        c.start()
        yield c
    finally:
        c.close()


class Api:
    """One user's session with one server (0.0.2 routes, a token of ``/auth/login``)."""

    def __init__(self, cluster: Cluster, server: str, token: str | None = None):
        self.base = cluster.server_url(server)
        self.http = requests.Session()
        if token is None:
            resp = self.http.get(f"{self.base}/auth/login", auth=(USER, PASSWORD), timeout=30)
            assert resp.status_code == 200, resp.text
            token = resp.json()["token"]
        self.token = token
        self.http.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(path if path.startswith("http") else self.base + path,
                             timeout=kwargs.pop("timeout", 60), **kwargs)

    def job(self, job_id: str) -> dict:
        resp = self.get(f"/jobs/{job_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()

    def create_job(self, graph: dict) -> str:
        resp = self.http.post(f"{self.base}/jobs", json={"process_graph": graph,
                                                         "output": OUTPUT}, timeout=60)
        assert resp.status_code == 201, resp.text
        return resp.json()["job_id"]

    def queue(self, job_id: str) -> None:
        resp = self.http.patch(f"{self.base}/jobs/{job_id}/queue", timeout=60)
        assert resp.status_code == 202, resp.text

    def logs(self, job_id: str) -> list:
        return self.get(f"/jobs/{job_id}/logs").json()

    def wait(self, job_id: str, until, timeout: float = 150) -> dict:
        return wait_until(lambda: (lambda j: j if until(j) else None)(self.job(job_id)),
                          f"job {job_id} ({self.logs(job_id)})", timeout, interval=0.1)

    def service(self, job_id: str, kind: str) -> str:
        resp = self.http.post(f"{self.base}/services", json={"job_id": job_id, "type": kind},
                              timeout=60)
        assert resp.status_code == 201, resp.text
        return "/" + resp.json()["service_url"].split("/", 3)[3]

    def coverage(self, job_id: str) -> requests.Response:
        """The job's WCS coverage on its own grid (values, float32)."""
        return self.get(f"/wcs?SERVICE=WCS&VERSION=2.0.1&REQUEST=GetCoverage"
                        f"&COVERAGEID=job_{job_id}&FORMAT=image/tiff")


def finished(job: dict) -> bool:
    return job["status"] in ("finished", "error")


def tif_values(body: bytes) -> np.ndarray:
    with rasterio.MemoryFile(body) as mem, mem.open() as src:
        return src.read()


def executed(cluster: Cluster) -> dict[str, int]:
    """Tasks each Dask worker ran so far, by worker host address."""
    from distributed import Client

    with Client(cluster.scheduler_address, timeout=30) as client:
        counts = client.run(lambda dask_worker: dask_worker.state.executed_count)
    return {addr.split("://")[1].rsplit(":", 1)[0]: n for addr, n in counts.items()}


@pytest.fixture(scope="module")
def single_host(tmp_path_factory, catalog) -> Path:
    """The job's result on one host: an embedded Dask cluster and results on local disk
    (the default), with the cluster's block size."""
    home = tmp_path_factory.mktemp("single-host")
    settings = batch_settings(home, [catalog], None, batch_workers=1,
                              batch_worker_memory="1GiB", batch_block_size=BLOCK)
    app = create_app(settings)
    try:
        client = app.test_client()
        resp = client.post("/jobs", json={"process_graph": ndvi_graph("min_time"),
                                          "output": OUTPUT})
        job_id = resp.get_json()["job_id"]
        assert client.patch(f"/jobs/{job_id}/queue").status_code == 202
        deadline = time.monotonic() + 150
        while client.get(f"/jobs/{job_id}").get_json()["status"] not in ("finished", "error"):
            assert time.monotonic() < deadline, "the single-host job did not finish"
            time.sleep(0.1)
        assert client.get(f"/jobs/{job_id}").get_json()["status"] == "finished"
        return home / "results" / job_id / "result.tif"
    finally:
        app.extensions["tileserver"].close()


# -- the scenarios, in order -------------------------------------------------------------------


def test_a_token_of_server_a_works_on_server_b(cluster):
    """The users file and the signing key are the same on every server (deploy/README.md)."""
    a = Api(cluster, "server-a")
    b = Api(cluster, "server-b", token=a.token)
    assert b.get(f"/users/{USER}/jobs").status_code == 200
    job_id = a.create_job(ndvi_graph("min_time"))
    assert b.job(job_id)["status"] == "submitted"  # one job registry (PostgreSQL)


def test_job_made_on_a_runs_on_the_workers_and_b_serves_it(cluster, catalog, single_host):
    a, before = Api(cluster, "server-a"), executed(cluster)
    b = Api(cluster, "server-b", token=a.token)
    job_id = a.create_job(ndvi_graph("min_time"))
    a.queue(job_id)
    job = b.wait(job_id, finished)
    assert job["status"] == "finished", b.logs(job_id)
    # both worker hosts ran blocks of it
    after = executed(cluster)
    for name in cluster.workers:
        ip = cluster[name].ip
        assert after.get(ip, 0) > before.get(ip, 0), (name, before, after)
    # the result, downloaded from B, is the single-host run's, byte for byte, and its
    # values are plain rasterio + numpy's
    urls = b.get(f"/jobs/{job_id}/download").json()
    assert [u.rsplit("/", 1)[1] for u in urls] == ["result.tif", "item.json"]
    body = b.get(urls[0]).content
    assert body == single_host.read_bytes()
    _, expected = plain_ndvi(catalog, "min_time", BLOCK)
    assert_plain(tif_values(body).astype("float64"), expected)
    # B's coverage and tiles read the stored result (no evaluation), with its values
    coverage = b.coverage(job_id)
    assert coverage.status_code == 200, coverage.text[:300]
    assert coverage.headers[HEADER] == "stored"
    np.testing.assert_array_equal(tif_values(coverage.content), tif_values(body))
    # no server or worker host keeps the results: they are on the store only
    for name in (*cluster.servers, *cluster.workers):
        assert not list((cluster[name].home / "results").glob(f"**/{job_id}*")), name


def test_store_unreachable_for_a_while(cluster):
    """The S3 host's link goes down (requests to it get no answer, as from a store that is
    gone): a finished job's tile and coverage, never read before, answer 502/503 naming the
    store within the timeouts, never hang; a batch job queued meanwhile fails with a log
    line naming the store or finishes once the store is back."""
    a = Api(cluster, "server-a")
    b = Api(cluster, "server-b", token=a.token)
    store = cluster.deploy_env["TILESERVER_STORAGE_URL"].removeprefix("s3://").split("/")[0]
    # a job finished by A, whose result B has not read yet (nothing of it in B's caches)
    cold = a.create_job(ndvi_graph("max_time"))
    a.queue(cold)
    assert a.wait(cold, finished)["status"] == "finished", a.logs(cold)
    pending = a.create_job(ndvi_graph("min_time", ("2020-05-01", "2020-05-20")))
    z, x, y = TILE
    tile = f"/wmts/1.0.0/{cold}/default/GoogleMapsCompatible/{z}/{y}/{x}.tif"
    cluster.store_link(up=False)
    try:
        for path in (tile, f"/wcs?SERVICE=WCS&VERSION=2.0.1&REQUEST=GetCoverage"
                           f"&COVERAGEID=job_{cold}&FORMAT=image/tiff"):
            resp = b.get(path, timeout=120)  # bounded by storage_timeout x retries
            assert resp.status_code in (502, 503), (path, resp.status_code, resp.text[:300])
            assert store in resp.text, resp.text[:500]
        a.queue(pending)
        # the job must write its blocks and results while the store is away: it fails
        # (naming the store) or waits; the store comes back after at most 40 s
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not finished(a.job(pending)):
            time.sleep(0.5)
    finally:
        cluster.store_link(up=True)
    job = a.wait(pending, finished)
    if job["status"] == "error":
        text = " ".join(str(entry) for entry in a.logs(pending))
        assert store in text, text
        a.queue(pending)  # queued again once the store is back, it finishes
        job = a.wait(pending, finished)
    assert job["status"] == "finished", a.logs(pending)
    # the store is back: the tile answers, read from the stored result
    resp = b.get(tile)
    assert resp.status_code == 200 and resp.headers[HEADER] == "stored", resp.text[:300]


def test_worker_host_killed_mid_job_and_the_job_finishes(cluster, catalog):
    a = Api(cluster, "server-a")
    job_id = a.create_job(ndvi_graph(None, ("2020-05-01", "2020-05-31")))
    a.queue(job_id)
    job = a.wait(job_id, lambda j: finished(j) or (j.get("blocks") or {}).get("done", 0) >= 1)
    assert job["status"] == "running", a.logs(job_id)
    total = job["blocks"]["total"]
    assert job["blocks"]["done"] < total  # the kill below is mid-job
    cluster["worker1"].kill()
    job = a.wait(job_id, finished)
    assert job["status"] == "finished", a.logs(job_id)
    assert job["blocks"] == {"done": total, "total": total}
    days, expected = plain_ndvi(catalog, None, BLOCK, ("2020-05-01", "2020-05-31"))
    urls = [u for u in a.get(f"/jobs/{job_id}/download").json() if u.endswith(".tif")]
    assert len(urls) == len(days)
    for i, url in enumerate(sorted(urls)):
        assert_plain(tif_values(a.get(url).content)[0].astype("float64"), expected[i])
    # the host comes back
    cluster.start_worker("worker1")
    cluster.wait_workers(2)


def test_server_a_killed_mid_job_and_b_serves_every_job(cluster):
    a = Api(cluster, "server-a")
    b = Api(cluster, "server-b", token=a.token)
    job_id = a.create_job(ndvi_graph(None, ("2020-05-01", "2020-05-31")))
    a.queue(job_id)
    job = a.wait(job_id, lambda j: finished(j) or (j.get("blocks") or {}).get("done", 0) >= 1)
    assert job["status"] == "running" and job["blocks"]["done"] < job["blocks"]["total"]
    cluster["server-a"].kill()
    # B's watchdog takes the orphaned job over and finishes it
    job = b.wait(job_id, finished)
    assert job["status"] == "finished", b.logs(job_id)
    assert any("the server that ran this job stopped" in str(entry)
               for entry in b.logs(job_id)), b.logs(job_id)
    jobs = b.get(f"/users/{USER}/jobs").json()
    done = [j["job_id"] for j in jobs if j["status"] == "finished"]
    assert len(done) >= 3
    for jid in done:
        for url in b.get(f"/jobs/{jid}/download").json():
            resp = b.get(url)
            assert resp.status_code == 200, (jid, url, resp.text[:200])
        coverage = b.coverage(jid)
        # the stored result (or a cache of it), never evaluated again
        assert coverage.status_code == 200 and coverage.headers[HEADER] != "computed", jid
