"""A light module (no numpy/rasterio) that spawned test processes import: a job writer."""

from __future__ import annotations

from tileserver.jobs.store import JobStore


def writer(url: str, worker: int, n: int, shared_job: str, queue) -> None:
    """Create ``n`` jobs, then try to move ``shared_job`` from submitted to queued."""
    store = JobStore(url)
    ids = [store.create_job("me", {"product_id": "TEST"}, title=f"w{worker}-{i}")["job_id"]
           for i in range(n)]
    won = store.update_job(shared_job, expect_status=("submitted",), status="queued",
                           extra={"winner": worker})
    queue.put((ids, won))
    store.dispose()
