"""A short load run against a real ``tileserver serve`` (gunicorn) on loopback: 16 clients
for 10 s mixing XYZ tiles, WCS coverages, executes and job calls. No errors, the worker's
memory stays within the cache limit plus a fixed allowance, and no file descriptor leaks
(counted in /proc before and after). ``bench/bench_load.py`` is the one-minute version."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.load_support import (
    KINDS,
    Sampler,
    Target,
    fd_count,
    metric,
    rss_bytes,
    run_load,
    serve,
)

CACHE_BYTES = 32 * 1024 * 1024
#: Memory a worker may need beyond the cache: evaluations in flight, encoders, GDAL blocks.
ALLOWANCE = 256 * 1024 * 1024


def _settle(pid: int, seconds: float = 5.0) -> int:
    """The fd count once the closed client connections are gone from the worker."""
    deadline = time.monotonic() + seconds
    last = fd_count(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = fd_count(pid)
        if now == last:
            return now
        last = now
    return last


@pytest.mark.slow
def test_sixteen_clients_no_errors_no_leaks(small_catalog, tmp_path):
    with serve(tmp_path / "home", small_catalog, CACHE_BYTES) as (base, (pid,)):
        target = Target.create(base)
        warm = run_load(target, clients=16, seconds=3, seed=1)
        assert not warm.failures, warm.failures[:5]
        fds_before, rss_before = _settle(pid), rss_bytes(pid)
        with Sampler([pid]) as sampler:
            result = run_load(target, clients=16, seconds=10, seed=2)
        fds_after = _settle(pid)
        summary = result.summary()
        cached = metric(base, "tileserver_cache_bytes")
        print(json.dumps({**summary, "fds_before": fds_before, "fds_after": fds_after,
                          "rss_before_mb": rss_before >> 20,
                          "rss_peak_mb": sampler.peak >> 20, "cache_mb": cached / 2**20}))
        # the cache was filled (so the memory bound is checked with a full cache) and held
        assert CACHE_BYTES / 2 < cached <= CACHE_BYTES
        assert not result.failures, result.failures[:10]
        assert set(result.latencies) == set(KINDS)
        assert all(summary[k]["n"] >= 3 for k in KINDS), summary
        assert fds_after <= fds_before + 2, (fds_before, fds_after)
        assert sampler.peak - rss_before < CACHE_BYTES + ALLOWANCE, (rss_before, sampler.peak)
        assert requests.get(base + "/processes", timeout=30).status_code == 200
