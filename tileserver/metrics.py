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
TIER_BYTES = Gauge("tileserver_cache_tier_bytes", "Bytes held per cache tier", ["tier"])
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
