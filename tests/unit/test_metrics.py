"""tileserver.metrics in its two modes: one process (prometheus_client's default registry)
and multiprocess (``PROMETHEUS_MULTIPROC_DIR``, in a subprocess that forks workers): counts
add up over the processes, live gauges over the processes alive, a scrape-time gauge is
the answering process's value, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tileserver import metrics

REPO = Path(__file__).resolve().parents[2]


def _samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_one_process_answers_its_registry_with_scrape_time_gauges():
    assert not metrics.MULTIPROCESS  # the tests' process
    held = [123.0]
    metrics.set_function(metrics.TIER_BYTES, {"tier": "unit"}, lambda: held[0])
    try:
        key = ("tileserver_cache_tier_bytes", (("tier", "unit"),))
        assert _samples(metrics.exposition().decode())[key] == 123.0
        held[0] = 456.0
        assert _samples(metrics.exposition().decode())[key] == 456.0
    finally:
        metrics.TIER_BYTES.remove("unit")
    metrics.process_exited(os.getpid())  # nothing to do in one process


SCRIPT = textwrap.dedent("""
    import json, os, sys
    from tileserver import metrics

    assert metrics.MULTIPROCESS
    # the parent (like gunicorn's master) computes the shared tier's bytes at scrape time
    metrics.set_function(metrics.TIER_BYTES, {"tier": "disk"}, lambda: 1000.0)
    metrics.set_function(metrics.TIER_BYTES, {"tier": "disk"}, lambda: 2000.0)  # newest
    pids = []
    for n in (3, 5):
        pid = os.fork()
        if pid == 0:  # a worker: its evaluations, its LRU's bytes
            for _ in range(n):
                metrics.EVALUATIONS.labels("tile").inc()
            metrics.CACHE_BYTES.set(n * 100)
            metrics.TIER_BYTES.labels("memory").set(n * 10)
            os._exit(0)
        os.waitpid(pid, 0)
        pids.append(pid)
    first = metrics.exposition().decode()
    metrics.process_exited(pids[0])  # the first worker is gone
    print(json.dumps([first, metrics.exposition().decode()]))
""")


def test_multiprocess_adds_up_the_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), metrics.MULTIPROC_ENV: str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    first, after = (_samples(text) for text in json.loads(out.stdout))
    evaluations = ("tileserver_evaluations_total", (("purpose", "tile"),))
    cache = ("tileserver_cache_bytes", ())
    memory = ("tileserver_cache_tier_bytes", (("tier", "memory"),))
    disk = ("tileserver_cache_tier_bytes", (("tier", "disk"),))
    assert first[evaluations] == 8.0
    assert first[cache] == 800.0 and first[memory] == 80.0
    assert first[disk] == 2000.0
    assert after[evaluations] == 8.0  # a process gone still counts
    assert after[cache] == 500.0 and after[memory] == 50.0  # its live gauges do not
    assert after[disk] == 2000.0
