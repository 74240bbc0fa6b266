"""Prometheus counters of the core (exposed by the web layer at ``/metrics``).

One process (the test client, ``flask run``) keeps them in memory and ``/metrics`` answers
prometheus_client's default registry. Under gunicorn (``tileserver serve``) every worker
process keeps its own, so ``PROMETHEUS_MULTIPROC_DIR`` is set before prometheus_client is
imported (prometheus_client's multiprocess mode): each process writes its values to files
there and :func:`exposition` merges the files of every process, whichever worker answers.
Counters and histograms add up over the processes (a worker that exited still counts);
each gauge says how in its ``multiprocess_mode`` (``livesum``: the sum over the processes
alive). Gauges computed at scrape time (:func:`set_function`) are computed by the process
that answers, which needs them to mean the same in every process (a shared cache tier).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.metrics_core import Metric

#: The variable of prometheus_client's multiprocess mode (a directory, empty at start).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Whether this process's metrics live in ``$PROMETHEUS_MULTIPROC_DIR`` (decided when
#: prometheus_client is imported, which this module does first).
MULTIPROCESS = MULTIPROC_ENV in os.environ

PIXELS_READ = Counter(
    "tileserver_source_pixels_read", "Pixels read from source files (window x overview level)"
)
SOURCE_READS = Counter("tileserver_source_reads", "Windowed reads of source files", ["overview"])
CACHE_HITS = Counter("tileserver_cache_hits", "Node results served from the LRU cache")
CACHE_MISSES = Counter("tileserver_cache_misses", "Node results computed (cache misses)")
# each process has its own LRU: the bytes and entries of the processes alive add up
CACHE_BYTES = Gauge("tileserver_cache_bytes", "Bytes held by the LRU cache",
                    multiprocess_mode="livesum")
CACHE_ENTRIES = Gauge("tileserver_cache_entries", "Entries held by the LRU cache",
                      multiprocess_mode="livesum")
EVALUATIONS = Counter("tileserver_evaluations", "Graph evaluations", ["purpose"])
EVALUATION_SECONDS = Histogram(
    "tileserver_evaluation_seconds",
    "Duration of graph evaluations",
    ["purpose"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
# -- admission control (tileserver.limits) ---------------------------------------------
ADMISSION_REFUSED = Counter(
    "tileserver_admission_refused",
    "Synchronous evaluations refused by admission control, by error: MemoryTooLarge (413, "
    "can never fit), MemoryBusy or UserBusy (429), TooManyRequests (503: no slot)",
    ["error"])

# -- the shared cache tier (tileserver.cache.shared) and per-tier counts ---------------
TIER_HITS = Counter("tileserver_cache_tier_hits", "Cache hits per tier (memory, disk, redis)",
                    ["tier"])
TIER_MISSES = Counter("tileserver_cache_tier_misses", "Cache misses per tier", ["tier"])
# memory: per process, set (added up over the processes alive); disk, redis: shared by the
# processes, computed at scrape time (set_function)
TIER_BYTES = Gauge("tileserver_cache_tier_bytes", "Bytes held per cache tier", ["tier"],
                   multiprocess_mode="livesum")
SHARED_SECONDS = Histogram(
    "tileserver_cache_shared_seconds", "Time spent in the shared cache tier", ["tier", "op"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
SHARED_ERRORS = Counter("tileserver_cache_shared_errors",
                        "Failed operations and invalid entries of the shared tier",
                        ["tier", "op"])
STAC_SEARCHES = Counter(
    "tileserver_stac_searches", "Item searches sent to STAC APIs", ["collection"]
)
STAC_SEARCH_CACHE_HITS = Counter(
    "tileserver_stac_search_cache_hits", "Item searches answered from the search cache",
    ["collection"],
)
STAC_SEARCH_PAGES = Counter(
    "tileserver_stac_search_pages", "Pages of STAC API item searches", ["collection"]
)
STAC_SEARCH_TRUNCATED = Counter(
    "tileserver_stac_search_truncated", "Item searches stopped at stac_max_pages",
    ["collection"],
)
STAC_SEARCH_SECONDS = Histogram(
    "tileserver_stac_search_seconds",
    "Duration of STAC API item searches (all pages)",
    ["collection"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SKIPPED_SOURCES = Counter(
    "tileserver_skipped_sources", "Band files skipped because their href is broken"
)


#: Gauges computed at scrape time in multiprocess mode: ``(gauge, labels, function)``.
_FUNCTIONS: list[tuple[Gauge, dict[str, str], Callable[[], float]]] = []


def set_function(gauge: Gauge, labels: dict[str, str], fn: Callable[[], float]) -> None:
    """``gauge{labels}`` is ``fn()`` at each scrape (``Gauge.set_function``, which
    multiprocess mode ignores: there the process answering ``/metrics`` calls ``fn``, so it
    must mean the same in every process). Set again, the newest function wins."""
    if not MULTIPROCESS:
        gauge.labels(**labels).set_function(fn)
        return
    _FUNCTIONS[:] = [f for f in _FUNCTIONS if (f[0], f[1]) != (gauge, labels)]
    _FUNCTIONS.append((gauge, dict(labels), fn))


class _Merged:
    """The files of every process (prometheus_client's MultiProcessCollector) and this
    process's scrape-time gauges, added to the families of their names."""

    def collect(self):
        families = list(_multiprocess.MultiProcessCollector(None).collect())
        by_name = {family.name: family for family in families}
        for gauge, labels, fn in list(_FUNCTIONS):
            described = gauge.describe()[0]  # the family's name, help and type
            family = by_name.get(described.name)
            if family is None:
                family = by_name[described.name] = Metric(
                    described.name, described.documentation, described.type)
                families.append(family)
            try:
                value = float(fn())
            except Exception:  # noqa: BLE001 - a scrape must not fail for one gauge
                value = float("nan")
            family.add_sample(described.name, labels, value)
        return families


def exposition() -> bytes:
    """The text ``/metrics`` answers: every process's metrics in multiprocess mode, else
    this process's (prometheus_client's default registry)."""
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    registry.register(_Merged())
    return generate_latest(registry)


def process_exited(pid: int) -> None:
    """A process (a gunicorn or Dask worker) stopped: its live gauges leave the sums (its
    counters and histograms stay counted). Nothing outside multiprocess mode."""
    if MULTIPROCESS:
        _multiprocess.mark_process_dead(pid)
