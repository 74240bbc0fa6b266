"""The job store on PostgreSQL (``TILESERVER_DATABASE_URL=postgresql://…``, the ``pg_url``
fixture of ``tests/conftest.py``: each test on its own database of a throw-away cluster).
The concurrency and restart tests that SQLite passes run again on PostgreSQL beside them, as
``*_on_postgresql`` (``tests/unit/jobs/test_jobs_services.py``, ``test_batch.py``,
``tests/e2e/load/test_load.py``)."""

from __future__ import annotations

from tests.support.jobs import concurrent_writers
from tileserver.jobs.store import JobStore


def test_the_store_is_postgresql(pg_url):
    store = JobStore(pg_url)
    assert store.engine.dialect.name == "postgresql"
    job = store.create_job("me", {"product_id": "TEST"})
    assert store.get_job(job["job_id"])["submitted"].utcoffset().total_seconds() == 0
    store.dispose()


def test_concurrent_writers_from_several_processes(pg_url):
    concurrent_writers(pg_url)
