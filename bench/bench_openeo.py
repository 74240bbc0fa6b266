"""openEO 1.x vs 0.0.2 on the one engine (issue 10). Prints a table; no assertions.

    .venv/bin/python bench/bench_openeo.py [--demo-dir DIR] [--tiles 24] [--rounds 3]

Against ``tileserver serve`` (gunicorn, 1 worker) on loopback, over the demo L2A product:

(a) per-tile time of ``min_time(NDVI)`` over 4 dates (2017-01-05 .. 2017-02-14) as a 0.0.2
    graph (``POST /jobs`` + an ``xyz`` service) and as the equivalent 1.x graph written with
    the official ``openeo`` client (``load_collection -> ndvi -> reduce_dimension(t, min)``,
    ``tiled_viewing_service("XYZ")``): the same GoogleMapsCompatible tiles (zoom 10-13),
    fetched one at a time; a cold pass (fresh server and home: empty caches) and a warm
    pass. Each round starts fresh servers and alternates which dialect goes first.
(b) the client's ``download()`` of the band-math graph (``(nir - red) / (nir + red)`` with
    ``cube.band()``, ``min`` over time, GTiff) vs a plain rasterio + numpy script computing
    the same values from the COGs (values compared).
(c) source pixels read (``/metrics``) for one zoomed-out tile (zoom 9) in each dialect.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import morecantile
import numpy as np
import rasterio
import requests
from rasterio.warp import transform_bounds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Tileserver, cold_warm, fetch, fresh_home, print_cold_warm  # noqa: E402

from tileserver.demo import L2A_PRODUCT_ID, write_demo_catalog  # noqa: E402

BBOX_32632 = (652000, 5161000, 672000, 5181000)
DATES = ("2017-01-01", "2017-02-28")  # four acquisitions: 01-05, 01-15, 01-25, 02-14


def graph_002() -> dict:
    """``min_time(NDVI(filter_daterange(filter_bbox(product))))``."""
    return {"process_id": "min_time", "args": {"imagery": {
        "process_id": "NDVI", "args": {"red": "B04", "nir": "B8A", "imagery": {
            "process_id": "filter_daterange", "args": {
                "from": DATES[0], "to": DATES[1], "imagery": {
                    "process_id": "filter_bbox", "args": {
                        "imagery": {"product_id": L2A_PRODUCT_ID}, "srs": "EPSG:32632",
                        "left": BBOX_32632[0], "right": BBOX_32632[2],
                        "bottom": BBOX_32632[1], "top": BBOX_32632[3]}}}}}}}}


def client_cube(con, band_math: bool = False):
    """The same computation written with the openeo client."""
    cube = con.load_collection(
        L2A_PRODUCT_ID, spatial_extent=dict(zip(("west", "south", "east", "north"),
                                                BBOX_32632, strict=True)) | {"crs": 32632},
        temporal_extent=[DATES[0], "2017-03-01"], bands=["B04", "B8A"])
    if band_math:
        red, nir = cube.band("B04"), cube.band("B8A")
        ndvi = (nir - red) / (nir + red)
    else:
        ndvi = cube.ndvi(red="B04", nir="B8A")
    return ndvi.reduce_dimension(dimension="t", reducer="min")


def tiles(n: int) -> list[tuple[int, int, int]]:
    """``n`` tiles of zooms 10-13 inside the bbox, spread evenly."""
    tms = morecantile.tms.get("WebMercatorQuad")
    west, south, east, north = transform_bounds("EPSG:32632", "EPSG:4326", *BBOX_32632)
    out = []
    for z in (10, 11, 12, 13):
        cells = list(tms.tiles(west, south, east, north, [z]))
        step = max(1, len(cells) // max(1, n // 4))
        out += [(t.z, t.x, t.y) for t in cells[::step]][: max(1, n // 4)]
    return out


def pixels_read(base: str) -> float:
    """The ``tileserver_source_pixels_read_total`` counter."""
    for line in requests.get(f"{base}/metrics", timeout=30).text.splitlines():
        if line.startswith("tileserver_source_pixels_read_total"):
            return float(line.split()[-1])
    return 0.0


def layer_002(base: str) -> str:
    job = requests.post(f"{base}/jobs", json={"process_graph": graph_002()}, timeout=60)
    job.raise_for_status()
    svc = requests.post(f"{base}/services", json={"job_id": job.json()["job_id"],
                                                  "type": "xyz"}, timeout=60)
    svc.raise_for_status()
    return svc.json()["service_url"]


def layer_1x(base: str) -> str:
    import openeo

    con = openeo.connect(base)
    service = client_cube(con).tiled_viewing_service(type="XYZ")
    return service.describe_service()["url"]


def plain_script(catalog: Path) -> tuple[float, np.ndarray]:
    """What a user writes without a server: read, NDVI, nanmin (seconds, values)."""
    t0 = time.perf_counter()
    root = catalog.parent / L2A_PRODUCT_ID
    stack = []
    for scene in sorted(root.iterdir()):
        if not scene.is_dir() or not ("20170101" <= scene.name.split("_")[2][:8] <= "20170228"):
            continue
        bands = {}
        for band in ("B04", "B8A"):
            path = next(scene.glob(f"*{band}*.tif"))
            with rasterio.open(path) as src:
                win = src.window(*BBOX_32632)
                arr = src.read(1, window=win).astype(np.float32)
                if src.nodata is not None:
                    arr[arr == src.nodata] = np.nan
            bands[band] = arr
        with np.errstate(all="ignore"):
            nd = (bands["B8A"] - bands["B04"]) / (bands["B8A"] + bands["B04"])
        nd[~np.isfinite(nd)] = np.nan
        stack.append(nd)
    data = np.stack(stack)
    out = np.fmin.reduce(data, axis=0)
    return time.perf_counter() - t0, out


def main() -> None:
    """Run and print."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo-dir", default=os.environ.get("TILESERVER_TEST_DEMO_DIR"))
    ap.add_argument("--tiles", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    demo = Path(args.demo_dir or tempfile.mkdtemp(prefix="demo-"))
    catalog = write_demo_catalog(demo)
    logdir = Path(tempfile.mkdtemp(prefix="bench-openeo-"))
    cells = tiles(args.tiles)
    results = cold_warm(catalog, logdir, args.rounds, {"0.0.2": layer_002, "1.x": layer_1x},
                        cells)
    print(f"\n(a) per-tile median over {len(cells)} tiles (zoom 10-13), median of "
          f"{args.rounds} rounds")
    print_cold_warm(results, "1.x", "0.0.2", 14)

    import openeo

    with Tileserver(catalog, fresh_home(logdir)) as base:
        con = openeo.connect(base)
        plain_script(catalog)  # untimed: both sides read files already in the page cache
        downloads = []
        for _ in range(args.rounds):
            path = logdir / "bandmath.tif"
            t0 = time.perf_counter()
            client_cube(con, band_math=True).download(str(path), format="GTiff")
            downloads.append(time.perf_counter() - t0)
        scripts = []
        for _ in range(args.rounds):
            seconds, expected = plain_script(catalog)
            scripts.append(seconds)
        with rasterio.open(logdir / "bandmath.tif") as src:
            got = src.read(1)
        same = got.shape == expected.shape and np.allclose(got, expected, equal_nan=True,
                                                            atol=1e-6)
        warm = statistics.median(downloads[1:]) if len(downloads) > 1 else float("nan")
        print(f"\n(b) band math download: cold {downloads[0] * 1000:.0f} ms (fresh server, "
              f"first request), warm {warm * 1000:.0f} ms (median of {len(downloads) - 1}) "
              f"vs plain script {statistics.median(scripts) * 1000:.0f} ms (median of "
              f"{len(scripts)}, files in the page cache); values equal: {same}")

        tms = morecantile.tms.get("WebMercatorQuad")
        west, south, east, north = transform_bounds("EPSG:32632", "EPSG:4326", *BBOX_32632)
        t = tms.tile((west + east) / 2, (south + north) / 2, 9)
        print(f"\n(c) source pixels read for tile 9/{t.x}/{t.y} (256 x 256 view, 2 bands, "
              "4 dates = 524288 view pixels)")
        for dialect, make in (("0.0.2", layer_002), ("1.x", layer_1x)):
            template = make(base)
            before = pixels_read(base)
            fetch(template, [(9, t.x, t.y)])
            read = pixels_read(base) - before
            print(f"{dialect:<6} {read:>10.0f} pixels read ({read / 524288:.2f} x the view)")


if __name__ == "__main__":
    main()
