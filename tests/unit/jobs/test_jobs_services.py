"""Job registry and services: CRUD, validation, persistence (restart, kill -9), concurrent
writers from several processes on one SQLite file, unguessable service ids, revocation."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.jobs import concurrent_writers
from tests.support.wmts import create_job, create_service, ndvi_graph

TILE = "1.0.0/{job}/default/GoogleMapsCompatible/14/5826/8602.png"


def test_job_crud(client):
    graph = ndvi_graph(reduce="min_time")
    resp = client.post("/jobs", json={"process_graph": graph, "title": "t"})
    assert resp.status_code == 201
    job = resp.json
    assert resp.headers["Location"] == f"/jobs/{job['job_id']}"  # 0.0.2: a path
    assert resp.headers["OpenEO-Identifier"] == job["job_id"]
    assert job["status"] == "submitted" and job["user_id"] == "me"
    assert job["submitted"] and job["updated"]
    job_id = job["job_id"]
    assert client.get(f"/jobs/{job_id}").json["process_graph"] == graph
    other = ndvi_graph(reduce="max_time")
    patched = client.patch(f"/jobs/{job_id}", json={"process_graph": other,
                                                    "output": {"format": "PNG"}})
    assert patched.status_code == 200
    assert patched.json["process_graph"] == other and patched.json["output"]["format"] == "PNG"
    assert [j["job_id"] for j in client.get("/users/me/jobs").json] == [job_id]
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    assert client.get(f"/jobs/{job_id}").status_code == 404
    assert client.get("/users/me/jobs").json == []


@pytest.mark.parametrize("body,locator", [
    ({"process_graph": {"process_id": "NDVI", "args": {"imagery": {"product_id": "NOPE"},
                                                       "red": "B04", "nir": "B08"}}}, None),
    ({"process_graph": {"process_id": "nope", "args": {}}}, None),
    ({"title": "no graph"}, "process_graph"),
    ({"process_graph": ndvi_graph(), "output": {"format": "BMP"}}, None),
])
def test_bad_job_is_400_and_nothing_stored(client, body, locator):
    resp = client.post("/jobs", json=body)
    assert resp.status_code == 400, resp.json
    assert resp.json["code"] and resp.json["message"]
    assert client.get("/users/me/jobs").json == []


def test_patch_with_a_bad_graph_keeps_the_old_one(client):
    job = create_job(client, ndvi_graph())
    bad = client.patch(f"/jobs/{job}", json={"process_graph": {"process_id": "x", "args": {}}})
    assert bad.status_code == 400
    assert client.get(f"/jobs/{job}").json["process_graph"] == ndvi_graph()


def test_service_crud_and_capabilities(client):
    job = create_job(client, ndvi_graph())
    assert {"wmts", "xyz", "wcs"} <= set(client.get("/capabilities/services").json)
    svc = create_service(client, job, "wmts", {"colormap": "viridis"})
    assert set(svc) >= {"service_id", "service_url", "service_type", "service_args", "job_id"}
    assert svc["service_url"].endswith(f"/service/wmts/{svc['service_id']}")
    sid = svc["service_id"]
    again = client.post("/services", json={"job_id": job, "type": "xyz"})
    assert again.status_code == 201 and again.headers["Location"] == (
        f"/services/{again.json['service_id']}")
    assert again.headers["OpenEO-Identifier"] == again.json["service_id"]
    assert client.delete(f"/services/{again.json['service_id']}").status_code == 204
    assert client.get(f"/services/{sid}").json["service_args"] == {"colormap": "viridis"}
    assert client.patch(f"/services/{sid}", json={"args": {"colormap": "magma"}}
                        ).json["service_args"] == {"colormap": "magma"}
    assert client.patch(f"/services/{sid}", json={"args": {"colormap": "nope"}}
                        ).status_code == 400
    assert [s["service_id"] for s in client.get("/users/me/services").json] == [sid]
    assert client.post("/services", json={"job_id": job, "type": "wfs"}).status_code == 400
    assert client.post("/services", json={"job_id": "nope", "type": "wmts"}).status_code == 404
    assert client.delete(f"/services/{sid}").status_code == 204
    assert client.get(f"/services/{sid}").status_code == 404


def test_service_ids_are_unguessable(client):
    job = create_job(client, ndvi_graph())
    ids = [create_service(client, job)["service_id"] for _ in range(20)]
    assert len(set(ids)) == 20
    for sid in ids:
        assert len(sid) * 4 >= 128 and int(sid, 16) >= 0  # hex: 4 bits per character
    # the bits vary everywhere (not a counter, not a timestamp prefix)
    assert len({sid[:8] for sid in ids}) == 20 and len({sid[-8:] for sid in ids}) == 20


def test_deleting_the_job_or_canceling_it_revokes_its_service_urls(client):
    job = create_job(client, ndvi_graph(reduce="min_time"))
    svc = create_service(client, job)
    url = svc["service_url"].replace("http://localhost", "") + "/" + TILE.format(job=job)
    assert client.get(url).status_code == 200
    client.application.extensions["tileserver"].store.update_job(job, status="canceled")
    assert client.get(url).status_code == 404
    client.application.extensions["tileserver"].store.update_job(job, status="submitted")
    assert client.get(url).status_code == 200
    assert client.delete(f"/jobs/{job}").status_code == 204
    assert client.get(url).status_code == 404
    assert client.get(f"/services/{svc['service_id']}").status_code == 404


def test_jobs_and_services_survive_an_app_restart(make_app, small_catalog):
    app = make_app([small_catalog])
    client = app.test_client()
    job = create_job(client, ndvi_graph(reduce="min_time"))
    svc = create_service(client, job)
    url = svc["service_url"].replace("http://localhost", "") + "/" + TILE.format(job=job)
    before = client.get(url).data
    app.extensions["tileserver"].close()
    again = make_app([small_catalog]).test_client()  # same home, same SQLite file
    assert again.get(f"/jobs/{job}").json["job_id"] == job
    after = again.get(url)
    assert after.status_code == 200 and after.data == before


# -- several processes -----------------------------------------------------------------


def test_concurrent_writers_from_several_processes(tmp_path):
    concurrent_writers(f"sqlite:///{tmp_path / 'jobs.db'}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(home: Path, catalog: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "TILESERVER_HOME": str(home), "TILESERVER_CATALOG": str(catalog)}
    with open(home.parent / f"serve-{port}.log", "w") as log:  # the child keeps its copy
        proc = subprocess.Popen(
            [sys.executable, "-m", "tileserver.cli", "serve", "--port", str(port),
             "--workers", "2"],
            env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200:
                return proc
        except requests.RequestException:
            time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("tileserver serve did not start")


def test_jobs_survive_kill_9_of_the_server(tmp_path, small_catalog):
    home = tmp_path / "home"
    port = _free_port()
    proc = _serve(home, small_catalog, port)
    try:
        base = f"http://127.0.0.1:{port}"
        job = requests.post(f"{base}/jobs", json={"process_graph": ndvi_graph(
            reduce="min_time")}, timeout=30).json()["job_id"]
        svc = requests.post(f"{base}/services", json={"job_id": job, "type": "wmts"},
                            timeout=30).json()
        path = svc["service_url"].removeprefix(base) + "/" + TILE.format(job=job)
        before = requests.get(base + path, timeout=60)
        assert before.status_code == 200
        # concurrent writes through both gunicorn worker processes
        with ThreadPoolExecutor(8) as pool:
            posted = list(pool.map(lambda i: requests.post(
                f"{base}/jobs", json={"process_graph": ndvi_graph(), "title": f"c{i}"},
                timeout=60), range(24)))
        assert all(r.status_code == 201 for r in posted)
        written = {r.json()["job_id"] for r in posted} | {job}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    port = _free_port()
    proc = _serve(home, small_catalog, port)
    try:
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/jobs/{job}", timeout=30).json()["job_id"] == job
        listed = {j["job_id"] for j in requests.get(f"{base}/users/me/jobs", timeout=30).json()}
        assert listed == written
        after = requests.get(base + path, timeout=60)
        assert after.status_code == 200 and after.content == before.content
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


# -- the same on PostgreSQL (the pg_url fixture of tests/conftest.py) ---------------------


def test_crud_and_revocation_on_postgresql(make_app, small_catalog, pg_url):
    client = make_app([small_catalog]).test_client()
    assert client.application.extensions["tileserver"].store.engine.dialect.name == \
        "postgresql"
    test_job_crud(client)
    test_deleting_the_job_or_canceling_it_revokes_its_service_urls(client)


def test_jobs_and_services_survive_an_app_restart_on_postgresql(make_app, small_catalog,
                                                                pg_url):
    test_jobs_and_services_survive_an_app_restart(make_app, small_catalog)


def test_jobs_survive_kill_9_of_the_server_on_postgresql(tmp_path, small_catalog, pg_url):
    test_jobs_survive_kill_9_of_the_server(tmp_path, small_catalog)
