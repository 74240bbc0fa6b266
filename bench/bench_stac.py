"""STAC API + remote COGs vs static catalog + local files.

Sets up what the tests use (``tests/support/stac.py``): a throw-away PostgreSQL with pgSTAC
served by stac-fastapi-pgstac, the demo collections and the 10 000-item CONTINENT
collection, their COGs behind a local HTTP server that honours Range requests. Then:

1. tile latency of ``min_time(NDVI)`` (the openEO example graph) on 256 px
   GoogleMapsCompatible z13 tiles, no result cache: cold (GDAL's /vsicurl/ cache, the header
   cache and the search cache emptied before each sample) and warm (the same tiles again),
   from pgSTAC + HTTP assets vs the static catalog + local files; STAC searches, HTTP
   requests and byte ranges per tile;
2. start-up time and memory (RSS growth of a fresh process) of loading the 10 000-item
   collection: static ``collection.json`` + item files vs the STAC API (and, for the API,
   vs the demo's few-item collection: it must not grow with the item count).

Run: ``.venv/bin/python bench/bench_stac.py`` (needs PostgreSQL + PostGIS, see .ci/run).

Reading the counts: a cold tile of the example graph reads 6 files (2 bands x 3 dates):
one HEAD and two ranges each (header, then the window's blocks) and 2 searches (the cache
key's catalog version searches without the graph's date range, the read with it). A tile
asked again costs no request; panning over 9 tiles and back still costs ~4 ranges per tile
(some block reads of GDAL's GTiff driver do not stay in /vsicurl/'s region cache).
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import morecantile  # noqa: E402
import rasterio  # noqa: E402
from pyproj import Transformer  # noqa: E402

from tests.support import continent  # noqa: E402
from tests.support.pg import PostgresCluster, pg_bindir  # noqa: E402
from tests.support.stac import deployment  # noqa: E402
from tileserver import metrics  # noqa: E402
from tileserver.cache.memory import NodeCache  # noqa: E402
from tileserver.data import reader  # noqa: E402
from tileserver.data.catalog import Catalog  # noqa: E402
from tileserver.data.stac_api import ApiOptions  # noqa: E402
from tileserver.datacube.view import View  # noqa: E402
from tileserver.demo import example_graph, write_demo_catalog  # noqa: E402
from tileserver.engine.evaluator import Engine  # noqa: E402

TMS = morecantile.tms.get("WebMercatorQuad")
ROUNDS = 7


def _gdal():
    libs = glob.glob(str(Path(rasterio.__file__).parent.parent / "rasterio.libs" /
                         "libgdal*.so*"))
    return ctypes.CDLL(libs[0]) if libs else ctypes.CDLL("libgdal.so")


def clear_gdal_cache() -> None:
    """Forget what /vsicurl/ knows (file sizes, headers, fetched ranges)."""
    _gdal().VSICurlClearCache()


def tiles(n: int = 3):
    lon, lat = Transformer.from_crs(32632, 4326, always_xy=True).transform(662000, 5171000)
    centre = TMS.tile(lon, lat, 13)
    return [morecantile.Tile(centre.x + dx, centre.y + dy, 13)
            for dx in range(-(n // 2), n - n // 2) for dy in range(-(n // 2), n - n // 2)]


def tile_view(t) -> View:
    b = TMS.xy_bounds(t)
    return View(rasterio.crs.CRS.from_epsg(3857), (b.left, b.bottom, b.right, b.top), 256, 256)


def searches() -> float:
    return metrics.STAC_SEARCHES.labels("S2_L2A_T32TPS_20M")._value.get()


def http_requests(files) -> int:
    """GET and HEAD requests the file server answered."""
    return files.total("GET") + files.total("HEAD")


def latency(kind: str, paths: list[str], files) -> dict:
    graph = example_graph()
    cold, warm = [], []
    counts = {"searches": [], "requests": [], "ranges": []}
    ts = tiles()
    for r in range(ROUNDS):
        clear_gdal_cache()
        reader._file_info.cache_clear()
        engine = Engine(Catalog.load(paths, ApiOptions.from_settings()), NodeCache(0))
        g = engine.parse(graph)
        s0, q0, r0 = searches(), http_requests(files), files.ranges
        started = time.perf_counter()
        engine.evaluate(g, tile_view(ts[r % len(ts)]), purpose="tile")
        cold.append(time.perf_counter() - started)
        counts["searches"].append(searches() - s0)
        counts["requests"].append(http_requests(files) - q0)
        counts["ranges"].append(files.ranges - r0)
    # warm: every tile once (headers and searches cached), then the timed pass
    for t in ts:
        engine.evaluate(g, tile_view(t), purpose="tile")
    s0, q0, r0 = searches(), http_requests(files), files.ranges
    for _ in range(3):
        for t in ts:
            started = time.perf_counter()
            engine.evaluate(g, tile_view(t), purpose="tile")
            warm.append(time.perf_counter() - started)
    n = 3 * len(ts)
    return {"kind": kind, "cold_ms": 1000 * statistics.median(cold),
            "warm_ms": 1000 * statistics.median(warm),
            "cold_searches_per_tile": statistics.median(counts["searches"]),
            "cold_http_requests_per_tile": statistics.median(counts["requests"]),
            "cold_ranges_per_tile": statistics.median(counts["ranges"]),
            "warm_searches_per_tile": (searches() - s0) / n,
            "warm_http_requests_per_tile": (http_requests(files) - q0) / n,
            "warm_ranges_per_tile": (files.ranges - r0) / n}


LOADER = """
import json, resource, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
from tileserver.data.catalog import Catalog
from tileserver.data.stac_api import ApiOptions
import pystac_client, pystac, rasterio  # imported before the baseline
before = rss()
t = time.perf_counter()
cat = Catalog.load(sys.argv[1:])
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rss_growth_mb": (rss() - before) / 2**20,
                  "products": sorted(cat.products)}))
"""


def startup(paths: list[str]) -> dict:
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", LOADER, *paths], capture_output=True,
                             text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                             check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "rss_growth_mb": statistics.median(r["rss_growth_mb"] for r in runs),
            "products": runs[0]["products"]}


def main() -> int:
    bindir = pg_bindir()
    if bindir is None:
        print("PostgreSQL is not installed (see .ci/run)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-stac-"))
    demo_dir = Path(os.environ.get("TILESERVER_TEST_DEMO_DIR") or work / "demo")
    demo = write_demo_catalog(demo_dir)
    cluster = PostgresCluster(bindir).start()
    try:
        with deployment(cluster, demo, work) as dep:
            rows = [latency("static + local files", [str(demo)], dep.files),
                    latency("pgSTAC API + HTTP ranges",
                            [f"{dep.url}#collections=S2_L2A_T32TPS_20M"], dep.files)]
            static = continent.write_static(work / "continent-static",
                                            dep.files.url + "/continent")
            loads = {"static 10 000 items": startup([str(static)]),
                     "STAC API 10 000 items": startup([f"{dep.url}#collections=CONTINENT"]),
                     "STAC API demo L2A (few items)": startup(
                         [f"{dep.url}#collections=S2_L2A_T32TPS_20M"])}
    finally:
        cluster.stop()
    print(f"\n{'tiles (256 px z13, min_time NDVI)':36} {'cold ms':>8} {'warm ms':>8} "
          f"{'searches':>9} {'HTTP':>6} {'ranges':>7}  (per tile: cold / warm)")
    for r in rows:
        print(f"{r['kind']:36} {r['cold_ms']:8.1f} {r['warm_ms']:8.1f} "
              f"{r['cold_searches_per_tile']:4.0f}/{r['warm_searches_per_tile']:<4.1f} "
              f"{r['cold_http_requests_per_tile']:3.0f}/{r['warm_http_requests_per_tile']:<3.1f}"
              f"{r['cold_ranges_per_tile']:4.0f}/{r['warm_ranges_per_tile']:.1f}")
    print(f"ratio API/static: cold {rows[1]['cold_ms'] / rows[0]['cold_ms']:.2f}, "
          f"warm {rows[1]['warm_ms'] / rows[0]['warm_ms']:.2f}")
    print(f"\n{'catalog load':30} {'seconds':>8} {'RSS growth MB':>14}")
    for name, r in loads.items():
        print(f"{name:30} {r['seconds']:8.2f} {r['rss_growth_mb']:14.1f}")
    print(json.dumps({"tiles": rows, "startup": loads}, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
