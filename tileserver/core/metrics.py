"""Prometheus counters of the core (exposed by the web layer at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PIXELS_READ = Counter(
    "tileserver_source_pixels_read", "Pixels read from source files (window x overview level)"
)
SOURCE_READS = Counter("tileserver_source_reads", "Windowed reads of source files", ["overview"])
CACHE_HITS = Counter("tileserver_cache_hits", "Node results served from the LRU cache")
CACHE_MISSES = Counter("tileserver_cache_misses", "Node results computed (cache misses)")
CACHE_BYTES = Gauge("tileserver_cache_bytes", "Bytes held by the LRU cache")
CACHE_ENTRIES = Gauge("tileserver_cache_entries", "Entries held by the LRU cache")
EVALUATIONS = Counter("tileserver_evaluations", "Graph evaluations", ["purpose"])
EVALUATION_SECONDS = Histogram(
    "tileserver_evaluation_seconds",
    "Duration of graph evaluations",
    ["purpose"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
