"""One-minute load benchmark (issue 7). Prints JSON; no assertions.

    .venv/bin/python bench/bench_load.py [--clients 16] [--seconds 60] [--workers 1]

A real ``tileserver serve`` (gunicorn, ``--workers`` processes of 8 threads) runs on
loopback over the synthetic test catalog (``tests/support/synthetic.py``). After a warm-up, one
client alone runs for ``--baseline`` seconds (the latency of an idle server), then
``--clients`` clients run for ``--seconds`` mixing XYZ tiles, WCS 1.0.0 GetCoverage,
``POST /execute`` and job calls (create, read, patch, list, delete). Reported: medians and
95th percentiles per kind, the ratio of loaded to idle medians, requests per second,
failures, the workers' file descriptors before/after and their resident memory
before/peak/after (summed), the cache held and its hit ratio (of the worker that answered
``/metrics``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.load import (  # noqa: E402
    KINDS,
    Sampler,
    Target,
    fd_count,
    metric,
    rss_bytes,
    run_load,
    serve,
)
from tests.support.synthetic import make_catalog  # noqa: E402


def main() -> int:
    """Run the benchmark and print its JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--baseline", type=float, default=15.0)
    parser.add_argument("--cache-mb", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes")
    args = parser.parse_args()
    cache = args.cache_mb * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        catalog = make_catalog(root / "catalog")
        with serve(root / "home", catalog, cache, workers=args.workers) as (base, pids):
            target = Target.create(base)
            run_load(target, clients=args.clients, seconds=5, seed=1)  # warm-up
            time.sleep(2)
            fds_before = sum(fd_count(p) for p in pids)
            rss_before = sum(rss_bytes(p) for p in pids)
            idle = run_load(target, clients=1, seconds=args.baseline, seed=2)
            with Sampler(pids) as sampler:
                loaded = run_load(target, clients=args.clients, seconds=args.seconds, seed=3)
            time.sleep(2)
            fds_after = sum(fd_count(p) for p in pids)
            rss_after = sum(rss_bytes(p) for p in pids)
            cache_held = metric(base, "tileserver_cache_bytes")
            hits, misses = (metric(base, f"tileserver_cache_{k}_total")
                            for k in ("hits", "misses"))
    idle_s, loaded_s = idle.summary(), loaded.summary()
    report = {
        "clients": args.clients, "seconds": args.seconds, "cache_mb": args.cache_mb,
        "workers": args.workers,
        "idle": idle_s, "loaded": loaded_s,
        "median_ratio_loaded_vs_idle": {
            k: round(loaded_s[k]["median_ms"] / idle_s[k]["median_ms"], 2)
            for k in KINDS if k in loaded_s and k in idle_s},
        "throughput_ratio": round(loaded_s["requests_per_s"] / idle_s["requests_per_s"], 2),
        "fds": {"before": fds_before, "after": fds_after},
        "rss_mb": {"before": rss_before >> 20, "peak": sampler.peak >> 20,
                   "after": rss_after >> 20},
        "cache": {"held_mb": round(cache_held / 2**20, 1),
                  "hit_ratio": round(hits / max(1.0, hits + misses), 3)},
        "failures_sample": loaded.failures[:5],
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
