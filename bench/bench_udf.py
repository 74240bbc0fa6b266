"""UDFs (issue 15): the cost of the sandbox, and fairness under a hostile neighbour.
Prints tables; no assertions.

    .venv/bin/python bench/bench_udf.py [--demo-dir DIR] [--tiles 24] [--rounds 3]
                                        [--fair-tiles 96] [--timeout 5]

Against ``tileserver serve`` (gunicorn, 1 worker, 8 threads) on loopback, over the demo L2A
product (NDVI of B04/B8A, four dates 2017-01-05 .. 2017-02-14):

(0) one call of the UDF pool itself (no HTTP), spaced and back to back.
(a) per-tile time of the temporal mean of NDVI as a UDF
    (``/udf/Python/reduce_time`` with ``return data.mean("t")`` over ``NDVI(...)``) vs the
    built-in ``mean_time(NDVI(...))``, the same XYZ tiles (zoom 10-13) one at a time, cold
    (fresh server and home: empty caches, the UDF workers started before) and warm; rounds
    alternate which graph goes first. The fixed
    cost of one UDF call (an empty ``reduce_time`` on a 1x1 window) is measured too.
(b) two users with UDF layers, 8 clients: bob's 4 clients fetch ``--fair-tiles`` distinct
    tiles (zoom 13-15) of his mean-NDVI UDF layer, alice's 4 clients fetch tiles of a layer
    whose script loops forever (each of her calls burns the whole ``udf_timeout``). Bob's
    tiles/s and median latency against the same 4 clients fetching the same tiles on an
    otherwise idle server (each scenario on a fresh server and home: no cache hits).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import morecantile
import requests
from rasterio.warp import transform_bounds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_openeo import BBOX_32632, tiles  # noqa: E402
from common import (  # noqa: E402
    Tileserver,
    cold_warm,
    each_once,
    fresh_home,
    print_cold_warm,
    xyz,
)

from tileserver.demo import L2A_PRODUCT_ID, write_demo_catalog  # noqa: E402
from tileserver.settings import load_settings  # noqa: E402
from tileserver.web.auth import add_user  # noqa: E402

DATES = ("2017-01-01", "2017-02-28")
MEAN = "def reduce_time(data):\n    return data.mean('t')\n"
EMPTY = "def reduce_time(data):\n    return data[0]\n"
BURN = "def reduce_time(data):\n    while True:\n        pass\n"
USERS = {"alice": "alice-password-1", "bob": "bob-password-22"}


def ndvi() -> dict:
    box = {"process_id": "filter_bbox", "args": {
        "imagery": {"product_id": L2A_PRODUCT_ID}, "left": BBOX_32632[0],
        "right": BBOX_32632[2], "bottom": BBOX_32632[1], "top": BBOX_32632[3],
        "srs": "EPSG:32632"}}
    dates = {"process_id": "filter_daterange", "args": {"imagery": box, "from": DATES[0],
                                                        "to": DATES[1]}}
    return {"process_id": "NDVI", "args": {"imagery": dates, "red": "B04", "nir": "B8A"}}


def builtin_graph() -> dict:
    return {"process_id": "mean_time", "args": {"imagery": ndvi()}}


def udf_graph(user: str, name: str) -> dict:
    return {"process_id": "/udf/Python/reduce_time",
            "args": {"script": f"/users/{user}/files/{name}", "imagery": ndvi()}}


def server(catalog: Path, logdir: Path, users: bool = False, timeout: int = 5) -> Tileserver:
    """A fresh server (own home); with ``users``, alice and bob can log in."""
    home = fresh_home(logdir)
    if users:
        settings = load_settings(home=str(home))
        for user, password in USERS.items():
            add_user(settings, user, password)
    return Tileserver(catalog, home, env={"TILESERVER_UDF_TIMEOUT": str(timeout)})


def layer(base: str, graph: dict, user: str = "me", script: tuple[str, str] | None = None,
          auth=None) -> str:
    s = requests.Session()
    s.auth = auth
    if script:
        s.put(f"{base}/users/{user}/files/{script[0]}", data=script[1].encode(),
              timeout=60).raise_for_status()
    job = s.post(f"{base}/jobs", json={"process_graph": graph}, timeout=60)
    job.raise_for_status()
    svc = s.post(f"{base}/services", json={"job_id": job.json()["job_id"], "type": "xyz"},
                 timeout=60)
    svc.raise_for_status()
    return svc.json()["service_url"]


def fixed_cost(base: str, rounds: int = 30) -> float:
    """Median ms of /execute of an empty reduce_time UDF on a 1x1 window minus the same
    graph without the UDF (both warm): the sandbox round trip."""
    requests.put(f"{base}/users/me/files/empty.py", data=EMPTY.encode(), timeout=60)
    one = {"left": BBOX_32632[0], "right": BBOX_32632[0] + 20, "bottom": BBOX_32632[1],
           "top": BBOX_32632[1] + 20, "srs": "EPSG:32632"}
    base_graph = ndvi()
    base_graph["args"]["imagery"]["args"]["imagery"]["args"].update(one)
    with_udf = {"process_id": "/udf/Python/reduce_time",
                "args": {"script": "/users/me/files/empty.py", "imagery": base_graph}}
    plain = {"process_id": "max_time", "args": {"imagery": base_graph}}
    times = {"udf": [], "plain": []}
    session = requests.Session()
    for i in range(rounds + 3):
        for name, graph in (("udf", with_udf), ("plain", plain)):
            # a new script each time (a comment), so that the UDF result is not cached
            if name == "udf":
                session.put(f"{base}/users/me/files/empty.py",
                            data=f"{EMPTY}# {i}\n".encode(), timeout=60)
            t0 = time.perf_counter()
            r = session.post(f"{base}/execute", json={"process_graph": graph}, timeout=60)
            r.raise_for_status()
            if i >= 3:
                times[name].append((time.perf_counter() - t0) * 1000)
    return statistics.median(times["udf"]) - statistics.median(times["plain"])


def warm_sandbox(base: str) -> str:
    """Start the server's UDF workers before a cold round (a server starts them with its
    first UDF, which then waits seconds for the imports): cold means empty caches here.
    A few UDF calls on a 20 m window beside the tiles, then a pause."""
    requests.get(f"{base}/udf_runtimes", timeout=120).raise_for_status()  # a worker is up
    time.sleep(3.0)  # the other worker started with it
    one = {"left": BBOX_32632[0], "right": BBOX_32632[0] + 20, "bottom": BBOX_32632[1],
           "top": BBOX_32632[1] + 20, "srs": "EPSG:32632"}
    graph = ndvi()
    graph["args"]["imagery"]["args"]["imagery"]["args"].update(one)
    for i in range(4):
        requests.put(f"{base}/users/me/files/warm.py", data=f"{EMPTY}# {i}\n".encode(),
                     timeout=60).raise_for_status()
        requests.post(f"{base}/execute", json={"process_graph": {
            "process_id": "/udf/Python/reduce_time",
            "args": {"script": "/users/me/files/warm.py", "imagery": graph}}},
            timeout=120).raise_for_status()
    time.sleep(0.5)
    return base


def sandbox_round_trip(rounds: int = 100) -> dict[str, float]:
    """Median ms of one call of the UDF pool itself (no HTTP, no reads): an empty
    ``reduce_time`` on a 1x1 window, a new script text each call. ``spaced``: 30 ms between
    calls (the server reads and encodes between UDF calls); ``back to back``: none."""
    import numpy as np  # noqa: PLC0415

    from tileserver.udf import UdfConfig, UdfPool  # noqa: PLC0415

    pool = UdfPool(UdfConfig.from_settings(None, workers=2))
    pool.wait_ready()
    time.sleep(1.0)
    header = {"udf_type": "reduce_time", "times": ["2017-01-01T00:00:00", "2017-01-02T00:00:00"],
              "bands": ["b"], "shape": [2, 1, 1, 1], "crs": "EPSG:4326"}
    arrays = [np.ones((2, 1, 1, 1), np.float32), np.zeros(1), np.zeros(1)]
    out = {}
    try:
        for name, gap in (("spaced", 0.03), ("back to back", 0.0)):
            times = []
            for i in range(rounds + 5):
                time.sleep(gap)
                t0 = time.perf_counter()
                answer, _ = pool.call("bench", dict(header, code=f"{EMPTY}# {i}\n"), arrays)
                if i >= 5:
                    times.append((time.perf_counter() - t0) * 1000)
                assert answer.get("ok"), answer
            out[name] = statistics.median(times)
    finally:
        pool.close()
    return out


def many_tiles(zooms=(13, 14, 15)) -> list[tuple[int, int, int]]:
    tms = morecantile.tms.get("WebMercatorQuad")
    west, south, east, north = transform_bounds("EPSG:32632", "EPSG:4326", *BBOX_32632)
    return [(t.z, t.x, t.y) for t in tms.tiles(west, south, east, north, list(zooms))]


def clients(template: str, cells, n: int, seconds: float, auth, stop_at: list) -> dict:
    """``n`` threads fetching ``cells`` (shared, each tile once) until ``seconds`` pass."""

    def get(session, cell):
        return session.get(xyz(template, *cell), auth=auth, timeout=300).status_code

    done, wall = each_once(cells, n, get, seconds=seconds, stop_flag=stop_at)
    lat = [dt * 1000 for dt, _ in done]
    codes = dict(Counter(code for _, code in done))
    ok = codes.get(200, 0)
    return {"tiles/s": ok / wall, "median ms": statistics.median(lat) if lat else float("nan"),
            "codes": codes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo-dir", default=os.environ.get("TILESERVER_TEST_DEMO_DIR"))
    ap.add_argument("--tiles", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fair-tiles", type=int, default=96,
                    help="tiles bob fetches in each scenario of (b), the same in both")
    ap.add_argument("--timeout", type=int, default=5)
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    trip = sandbox_round_trip()
    print("\n(0) the sandbox round trip (UdfPool.call, empty reduce_time, 1x1 window): "
          + ", ".join(f"{k} {v:.1f} ms" for k, v in trip.items()))
    demo = Path(args.demo_dir or tempfile.mkdtemp(prefix="demo-"))
    catalog = write_demo_catalog(demo)
    logdir = Path(tempfile.mkdtemp(prefix="bench-udf-"))

    if not args.skip_a:
        cells = tiles(args.tiles)
        fixed = []

        def udf_fixed_cost(kind: str, base: str) -> None:
            if kind == "UDF":
                fixed.append(fixed_cost(base))

        res = cold_warm(catalog, logdir, args.rounds, {
            "built-in": lambda base: layer(base, builtin_graph()),
            "UDF": lambda base: layer(warm_sandbox(base), udf_graph("me", "mean.py"), "me",
                                      ("mean.py", MEAN)),
        }, cells, env={"TILESERVER_UDF_TIMEOUT": "5"}, after=udf_fixed_cost)
        print(f"\n(a) mean of NDVI over 4 dates, per-tile median over {len(cells)} XYZ tiles "
              f"(zoom 10-13), median of {args.rounds} rounds")
        print_cold_warm(res, "UDF", "built-in", 15, difference=True)
        print(f"fixed cost of one UDF call (1x1 window, empty script, vs no UDF): "
              f"{statistics.median(fixed):.1f} ms")

    if args.skip_b:
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        return
    # (b) fairness
    every = many_tiles()
    step = max(1, len(every) // args.fair_tiles)
    cells = every[::step][:args.fair_tiles]  # spread over the zoom levels
    results = {}
    for scenario in ("idle", "alice burning"):
        with server(catalog, logdir, users=True, timeout=args.timeout) as base:
            bob = ("bob", USERS["bob"])
            alice = ("alice", USERS["alice"])
            bob_t = layer(base, udf_graph("bob", "mean.py"), "bob", ("mean.py", MEAN), bob)
            stop_flag: list = []
            burner = None
            if scenario != "idle":
                alice_t = layer(base, udf_graph("alice", "burn.py"), "alice",
                                ("burn.py", BURN), alice)
                out: dict = {}

                def burn(template=alice_t, into=out, flag=stop_flag, auth=alice):
                    into.update(clients(template, cells * 100, 4, None, auth, flag))

                burner = threading.Thread(target=burn)
                burner.start()
                time.sleep(2)
            # bob: the same tiles in both scenarios, every one of them (a fresh server and
            # home each time: no cache hits between the scenarios)
            results[scenario] = clients(bob_t, cells, 4, None, bob, [])
            stop_flag.append(1)
            if burner is not None:
                burner.join()
                results["alice (burning)"] = out
    zooms = sorted({z for z, _, _ in cells})
    print(f"\n(b) bob's 4 clients on his UDF layer (the same {len(cells)} distinct tiles of "
          f"zoom {zooms[0]}-{zooms[-1]} in both scenarios); alice's 4 clients on a script "
          f"burning udf_timeout = {args.timeout} s")
    print(f"{'scenario':<16} {'tiles/s':>8} {'median ms':>10}  codes")
    for name, r in results.items():
        print(f"{name:<16} {r['tiles/s']:>8.2f} {r['median ms']:>10.1f}  {r['codes']}")
    ratio = results["alice burning"]["median ms"] / results["idle"]["median ms"]
    print(f"bob's median latency, alice burning / idle: {ratio:.2f}x")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
