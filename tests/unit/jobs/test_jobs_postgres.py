"""The job store on PostgreSQL (``TILESERVER_DATABASE_URL=postgresql://…``): the
concurrency and restart tests that SQLite passes, run again on a throw-away cluster (each
test on its own database)."""

from __future__ import annotations

import uuid

import pytest

import tests.unit.jobs.test_batch as batch_suite
import tests.unit.jobs.test_jobs_services as jobs_suite
import tests.e2e.load.test_load as load_suite
from tests.support.jobs import concurrent_writers
from tests.unit.jobs.test_batch import apps, catalog, cluster  # noqa: F401 - fixtures of the batch tests
from tileserver.jobs.store import JobStore


@pytest.fixture
def pg_url(pg_cluster, monkeypatch):
    """A fresh database; ``TILESERVER_DATABASE_URL`` points at it (servers started by the
    tests inherit it)."""
    url = pg_cluster.create_db(f"jobs_{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("TILESERVER_DATABASE_URL", url)
    return url


def test_the_store_is_postgresql(pg_url):
    store = JobStore(pg_url)
    assert store.engine.dialect.name == "postgresql"
    job = store.create_job("me", {"product_id": "TEST"})
    assert store.get_job(job["job_id"])["submitted"].utcoffset().total_seconds() == 0
    store.dispose()


def test_concurrent_writers_from_several_processes(pg_url):
    concurrent_writers(pg_url)


def test_crud_and_revocation(make_app, small_catalog, pg_url):
    client = make_app([small_catalog]).test_client()
    assert client.application.extensions["tileserver"].store.engine.dialect.name == \
        "postgresql"
    jobs_suite.test_job_crud(client)
    jobs_suite.test_deleting_the_job_or_canceling_it_revokes_its_service_urls(client)


def test_jobs_and_services_survive_an_app_restart(make_app, small_catalog, pg_url):
    jobs_suite.test_jobs_and_services_survive_an_app_restart(make_app, small_catalog)


def test_jobs_survive_kill_9_of_the_server(tmp_path, small_catalog, pg_url):
    jobs_suite.test_jobs_survive_kill_9_of_the_server(tmp_path, small_catalog)


def test_killed_batch_server_leaves_no_job_running_forever(apps, tmp_path, cluster,  # noqa: F811
                                                           catalog, pg_url):  # noqa: F811
    batch_suite.test_killed_server_leaves_no_job_running_forever(apps, tmp_path, cluster,
                                                                 catalog)


@pytest.mark.slow
def test_sixteen_clients_no_errors_no_leaks(small_catalog, tmp_path, pg_url):
    load_suite.test_sixteen_clients_no_errors_no_leaks(small_catalog, tmp_path)
