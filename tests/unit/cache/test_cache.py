"""The node cache: LRU by bytes, one computation per key under threads, reuse across graphs,
and its counters at ``/metrics`` in Prometheus text format."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.core import (
    TEST_BOUNDS_32632,
    bbox,
    call,
    daterange,
    leaf,
    make_engine,
    pixels_read,
)
from tileserver.cache.memory import NodeCache
from tileserver.datacube.view import View


def arr(nbytes: int, fill=0) -> np.ndarray:
    return np.full(nbytes, fill, dtype=np.uint8)


def test_lru_eviction_by_bytes():
    cache = NodeCache(1000)
    cache.put("a", arr(400))
    cache.put("b", arr(400))
    assert cache.currsize == 800 and len(cache) == 2
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", arr(400))  # 1200 > 1000: the least recently used (b) goes
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    assert cache.currsize == 800
    cache.put("d", arr(900))  # needs 900: a and c both go
    assert len(cache) == 1 and cache.currsize == 900


def test_value_larger_than_the_cache_is_not_stored():
    cache = NodeCache(1000)
    cache.put("small", arr(100))
    cache.put("huge", arr(1001))
    assert cache.get("huge") is None and cache.get("small") is not None
    assert cache.get_or_compute("huge2", lambda: arr(5000)).nbytes == 5000
    assert len(cache) == 1
    disabled = NodeCache(0)
    disabled.put("x", arr(1))
    assert len(disabled) == 0


def test_hits_and_misses_are_counted():
    cache = NodeCache(10_000)
    calls = []
    for _ in range(3):
        cache.get_or_compute("k", lambda: calls.append(1) or arr(10))
    assert len(calls) == 1 and (cache.hits, cache.misses) == (2, 1)


def test_concurrent_get_or_compute_computes_once():
    cache = NodeCache(10**6)
    calls = []
    barrier = threading.Barrier(8)

    def compute():
        calls.append(threading.get_ident())
        time.sleep(0.2)  # keep the others waiting on the in-flight computation
        return arr(100, 7)

    def worker():
        barrier.wait()
        return cache.get_or_compute("key", compute)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: worker(), range(8)))
    assert len(calls) == 1
    assert all(r is results[0] for r in results)
    assert cache.misses == 1 and cache.hits == 7


def test_failed_computation_releases_the_waiters():
    cache = NodeCache(10**6)
    attempts = []
    barrier = threading.Barrier(4)

    def compute():
        attempts.append(1)
        time.sleep(0.1)
        if len(attempts) == 1:
            raise RuntimeError("source unreadable")
        return arr(10)

    def worker():
        barrier.wait()
        try:
            return cache.get_or_compute("key", compute)
        except RuntimeError as exc:
            return exc

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: worker(), range(4)))
    errors = [r for r in results if isinstance(r, RuntimeError)]
    assert len(errors) == 1
    # the others computed again (once) after the failure, then shared that result
    assert len(attempts) == 2
    assert cache.get("key") is not None


def test_different_keys_compute_in_parallel():
    """The lock is not held during computation: two keys that wait on each other finish."""
    cache = NodeCache(10**6)
    a_started, b_started = threading.Event(), threading.Event()

    def compute_a():
        a_started.set()
        assert b_started.wait(10), "key b never started: computations are serialised"
        return arr(1)

    def compute_b():
        b_started.set()
        assert a_started.wait(10), "key a never started: computations are serialised"
        return arr(2)

    with ThreadPoolExecutor(2) as pool:
        fa = pool.submit(cache.get_or_compute, "a", compute_a)
        fb = pool.submit(cache.get_or_compute, "b", compute_b)
        assert fa.result().nbytes == 1 and fb.result().nbytes == 2


def test_threads_hammering_keep_the_size_consistent():
    cache = NodeCache(5_000)
    rng = random.Random(3)
    keys = [(f"k{i}", rng.randint(1, 900)) for i in range(60)]

    def worker(seed):
        r = random.Random(seed)
        for _ in range(300):
            key, size = r.choice(keys)
            value = cache.get_or_compute(key, lambda size=size: arr(size))
            assert value.nbytes == size

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    held = sum(v.nbytes for v in cache._lru.values())
    assert cache.currsize == held <= 5_000


# -- reuse across graphs -----------------------------------------------------------------

VIEW = View("EPSG:32632", TEST_BOUNDS_32632, 128, 128)
SUB = daterange(bbox(leaf(), 500_100, 504_000, 5_099_000, 5_096_000), "2020-05-01",
                "2020-05-15")


@pytest.mark.parametrize("first, second", [
    (call("min_time", call("NDVI", SUB, red="B04", nir="B08")),
     call("max_time", call("NDVI", SUB, red="B04", nir="B08"))),
    (call("NDVI", SUB, red="B04", nir="B08"),
     call("median_time", call("filter_bands", SUB, bands=["B04", "B08"]))),
])
def test_graphs_sharing_a_subgraph_reuse_it(small_catalog, first, second):
    engine = make_engine(small_catalog)
    engine.evaluate(engine.parse(first), VIEW)
    hits, entries = engine.cache.hits, len(engine.cache)
    before = pixels_read()
    result = engine.evaluate(engine.parse(second), VIEW)
    assert pixels_read() == before, "the shared subgraph must come from the cache"
    assert engine.cache.hits > hits
    assert len(engine.cache) > entries
    assert np.isfinite(result.data).any()


def test_every_node_is_cached(small_catalog):
    engine = make_engine(small_catalog)
    g = engine.parse(call("min_time", call("NDVI", SUB, red="B04", nir="B08")))
    engine.evaluate(g, VIEW)
    assert len(engine.cache) == 5  # min_time, NDVI, filter_daterange, filter_bbox, leaf
    assert engine.cache.currsize == sum(v.nbytes for v in engine.cache._lru.values())


def test_small_cache_evicts_and_recomputes(small_catalog):
    one_cube = VIEW.pixels * 4  # float32, one band, one date
    engine = make_engine(small_catalog, cache=NodeCache(one_cube * 3))
    g = engine.parse(call("min_time", call("NDVI", SUB, red="B04", nir="B08")))
    first = engine.evaluate(g, VIEW)
    assert engine.cache.currsize <= one_cube * 3
    other = View("EPSG:32632", TEST_BOUNDS_32632, 64, 64)
    engine.evaluate(g, other)
    before = pixels_read()
    again = engine.evaluate(g, VIEW)
    assert pixels_read() > before  # evicted, read again
    np.testing.assert_array_equal(again.data, first.data)


# -- /metrics ---------------------------------------------------------------------------


def _metrics(client) -> dict[str, float]:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    out = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in family.samples:
            if not s.labels or s.labels.get("purpose") == "execute":
                out[s.name] = s.value
    return out


def test_metrics_endpoint(client):
    graph = call("min_time", call("NDVI", SUB, red="B04", nir="B08"))
    before = _metrics(client)
    for name in ("tileserver_source_pixels_read_total", "tileserver_cache_hits_total",
                 "tileserver_cache_misses_total", "tileserver_cache_bytes"):
        assert name in before, name
    assert client.post("/execute", json={"process_graph": graph}).status_code == 200
    middle = _metrics(client)
    assert client.post("/execute", json={"process_graph": graph}).status_code == 200
    after = _metrics(client)
    assert middle["tileserver_source_pixels_read_total"] > before[
        "tileserver_source_pixels_read_total"]
    assert middle["tileserver_cache_misses_total"] >= before["tileserver_cache_misses_total"] + 5
    assert after["tileserver_source_pixels_read_total"] == middle[
        "tileserver_source_pixels_read_total"]
    assert after["tileserver_cache_hits_total"] == middle["tileserver_cache_hits_total"] + 1
    assert after["tileserver_cache_bytes"] > 0
    assert after["tileserver_evaluations_total"] == before.get(
        "tileserver_evaluations_total", 0) + 2
    assert after["tileserver_evaluation_seconds_count"] == before.get(
        "tileserver_evaluation_seconds_count", 0) + 2


def test_cached_results_are_read_only(small_catalog):
    engine = make_engine(small_catalog)
    cube = engine.evaluate(engine.parse(call("NDVI", SUB, red="B04", nir="B08")), VIEW)
    with pytest.raises(ValueError, match="read-only"):
        cube.data[0, 0, 0, 0] = 1.0
    cache = NodeCache(1000)
    value = cache.get_or_compute("k", lambda: arr(10))
    assert not value.flags.writeable
