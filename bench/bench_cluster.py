"""Batch job on 1 vs 2 worker hosts, results on the S3 server (issue 24). Prints a table; no
asserts. Needs root and iproute2 (the hosts are network namespaces, as in
``tests/e2e/cluster``).

    sudo .venv/bin/python bench/bench_cluster.py [--size 8192] [--dates 4] [--repeat 3]
                                                 [--data-dir DIR]

1. The scene of ``bench_batch.py`` (``--size`` x ``--size`` px, ``--dates`` dates, bands
   B04/B08 as COGs; written once and cached in ``--data-dir``).
2. A cluster started from ``deploy/`` (``tests/support/cluster.py``): PostgreSQL, Redis,
   moto's S3 server, the Dask scheduler, one server and two worker hosts, each worker host
   pinned to its own core with ``taskset`` (so ``--nworkers -1`` gives one worker process
   each). The deploy file's settings are used as they are, but for one web worker.
3. A warm-up job (1024 px) on both hosts, then the job ``min_time(NDVI(BIG))`` over the whole
   scene, alternately with one worker host (the other one's processes killed) and with two
   (started again), ``--repeat`` times each, the order swapped every round. Wall time from
   the queue request to ``finished`` (its result written to the store).

The last line is the speed-up: median wall time on one host / on two. On a shared machine
the other processes (server, scheduler, S3 server, other users) compete for the same two
cores; the figure printed beside each run says how busy the machine was.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_batch import bbox, busy_seconds, graph, write_scene  # noqa: E402

from tests.support.cluster import PASSWORD, USER, Cluster  # noqa: E402


def login(cluster: Cluster, server: str) -> requests.Session:
    api = requests.Session()
    token = api.get(cluster.server_url(server, "/auth/login"), auth=(USER, PASSWORD),
                    timeout=60).json()["token"]
    api.headers["Authorization"] = f"Bearer {token}"
    return api


def run_job(api: requests.Session, url: str, process_graph: dict,
            timeout: float = 7200) -> tuple[float, dict]:
    """Create and queue the job; wall time from the queue request to its end, and the job."""
    job_id = api.post(f"{url}/jobs", json={"process_graph": process_graph,
                                           "output": {"format": "GTiff"}},
                      timeout=60).json()["job_id"]
    start = time.perf_counter()
    assert api.patch(f"{url}/jobs/{job_id}/queue", timeout=60).status_code == 202
    while True:
        job = api.get(f"{url}/jobs/{job_id}", timeout=60).json()
        if job["status"] in ("finished", "error", "canceled"):
            return time.perf_counter() - start, job
        if time.perf_counter() - start > timeout:
            raise TimeoutError(job_id)
        time.sleep(0.2)


def set_worker_hosts(cluster: Cluster, n: int) -> None:
    """Exactly the first ``n`` worker hosts running."""
    for i, name in enumerate(cluster.workers):
        running = bool(cluster[name].pids())
        if i < n and not running:
            cluster.start_worker(name)
        elif i >= n and running:
            cluster[name].kill()
    cluster.wait_workers(n)
    from distributed import Client

    with Client(cluster.scheduler_address, timeout=30) as client:
        deadline = time.monotonic() + 60
        while len(client.scheduler_info()["workers"]) != n:  # a killed one is gone
            assert time.monotonic() < deadline, "the scheduler still lists a killed worker"
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--dates", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="scene cache (default: $XDG_CACHE_HOME/tileserver-bench/...)")
    args = parser.parse_args()
    data_dir = args.data_dir or cache / "tileserver-bench" / f"batch{args.size}"
    if os.geteuid() != 0:
        sys.exit("bench_cluster.py needs root (network namespaces)")

    t = time.perf_counter()
    catalog = write_scene(data_dir, args.size, args.dates)
    cores = sorted(os.sched_getaffinity(0))
    print(f"scene {args.size}x{args.size} px x {args.dates} dates x 2 bands (ready in "
          f"{time.perf_counter() - t:.0f} s); {len(cores)} cores, load average "
          f"{os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        cluster = Cluster(Path(tmp), str(catalog), workers=2, servers=1,
                          worker_cpus=[str(cores[0]), str(cores[-1])],
                          settings={"TILESERVER_WORKERS": "1"})
        try:
            cluster.start()
            url = cluster.server_url("server-a")
            api = login(cluster, "server-a")
            wall, job = run_job(api, url, graph(bbox(min(1024, args.size))))
            print(f"warm-up on 2 worker hosts: {wall:.1f} s ({job['status']})")
            walls: dict[int, list[float]] = {1: [], 2: []}
            for i in range(args.repeat):
                for hosts in ((1, 2) if i % 2 == 0 else (2, 1)):
                    set_worker_hosts(cluster, hosts)
                    busy = busy_seconds()
                    wall, job = run_job(api, url, graph())
                    busy = busy_seconds() - busy
                    if job["status"] != "finished":
                        logs = api.get(f"{url}/jobs/{job['job_id']}/logs", timeout=60).text
                        raise SystemExit(f"job {job['job_id']}: {job['status']}: {logs}")
                    walls[hosts].append(wall)
                    print(f"  [{i + 1}] {hosts} worker host(s): {wall:.1f} s, "
                          f"{job.get('blocks', {}).get('total')} blocks; the machine's cores "
                          f"were busy {busy / wall:.1f} of {len(cores)} on average", flush=True)
        finally:
            cluster.close()
    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    print()
    print(f"{'worker hosts':<14}{'median s':>10}   runs")
    for hosts in (1, 2):
        print(f"{hosts:<14}{statistics.median(walls[hosts]):>10.1f}   "
              + " ".join(f"{w:.1f}" for w in walls[hosts]))
    print(f"speed-up 2 vs 1 worker host (results on S3): {one / two:.2f}x")


if __name__ == "__main__":
    main()
