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


def concurrent_writers(url: str) -> None:
    """Four processes create 25 jobs each in the store at ``url`` and race to queue one
    shared job: every id is stored once and exactly one compare-and-set wins."""
    import multiprocessing

    store = JobStore(url)
    shared = store.create_job("me", {"product_id": "TEST"})["job_id"]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=writer, args=(url, w, 25, shared, queue)) for w in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    ids = [i for r, _ in results for i in r]
    assert len(ids) == len(set(ids)) == 100
    stored = {j["job_id"] for j in store.list_jobs("me")}
    assert set(ids) <= stored and len(stored) == 101
    assert sum(won for _, won in results) == 1  # compare-and-set: exactly one winner
    assert store.get_job(shared)["status"] == "queued"
    store.dispose()
