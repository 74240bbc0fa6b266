"""Benchmark of zonal statistics (issue 6). Prints a table; no assertions.

    .venv/bin/python bench/bench_zonal.py [--demo-dir DIR] [-n 5] [--polygons 1000]
        [--rasterstats-python /tmp/rs/bin/python]

Zonal averages of 1,000 polygons (random parcels of 60-400 m) over the 6 dates of the
demo's ``S2_L2A_T32TPS_20M`` (band B8A, 20 m, 1600 x 1600 px per date), computed:

1. by tileserver's ``zonal_statistics`` (cold cache every run: a new engine), and its
   GeoPackage encoding;
2. by a plain rasterio + numpy script, written well: each polygon rasterised once on its
   window (``rasterio.features.rasterize``), then per date the whole band read once and
   the masks applied (numpy means);
3. by a naive rasterio script: per date and polygon, ``geometry_window`` read + mask;
4. by ``rasterstats.zonal_stats`` when a Python with rasterstats is given (install it in a
   separate venv: ``python3 -m venv /tmp/rs && /tmp/rs/bin/pip install rasterstats``).

Two layouts: polygons scattered over the whole scene, and the same number packed into one
corner (1/16 of the scene), where reading only the envelopes pays off. The values of every
method are compared with tileserver's (max absolute difference).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyogrio.raw  # noqa: E402
import pystac  # noqa: E402
import rasterio  # noqa: E402
import shapely  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402
from rasterio.features import geometry_window, rasterize  # noqa: E402
from shapely.geometry import Polygon, mapping  # noqa: E402

from tileserver.cache.memory import NodeCache  # noqa: E402
from tileserver.data.catalog import Catalog  # noqa: E402
from tileserver.data.userfiles import UserFiles, eval_context  # noqa: E402
from tileserver.demo import write_demo_catalog  # noqa: E402
from tileserver.engine.evaluator import Engine  # noqa: E402
from tileserver.render.formats import encode  # noqa: E402

PRODUCT, BAND = "S2_L2A_T32TPS_20M", "B8A"
BOUNDS = (646000, 5155000, 678000, 5187000)

RASTERSTATS = """
import json, sys, time
from rasterstats import zonal_stats
geojson, hrefs = sys.argv[1], json.loads(sys.argv[2])
t = time.perf_counter()
out = [[s["mean"] for s in zonal_stats(geojson, h, stats=["mean"], all_touched=False)]
       for h in hrefs]
print(json.dumps({"seconds": time.perf_counter() - t, "values": out}))
"""


def parcels(n: int, bounds, seed: int) -> list[Polygon]:
    """``n`` random quadrilaterals of 60-400 m inside ``bounds``."""
    rng = np.random.default_rng(seed)
    left, bottom, right, top = bounds
    out = []
    for _ in range(n):
        w, h = rng.uniform(60, 400, 2)
        x = rng.uniform(left, right - w)
        y = rng.uniform(bottom, top - h)
        jitter = rng.uniform(-0.15, 0.15, (4, 2)) * [w, h]
        corners = np.array([(x, y), (x + w, y), (x + w, y + h), (x, y + h)]) + jitter
        out.append(Polygon(corners))
    return out


def hrefs(catalog_json: Path) -> list[str]:
    """The band's files, one per date, with pystac only."""
    col = next(c for c in pystac.read_file(str(catalog_json)).get_all_collections()
               if c.id == PRODUCT)
    items = sorted(col.get_items(recursive=True), key=lambda i: i.datetime)
    return [i.assets[BAND].get_absolute_href() for i in items]


def pixels_read() -> float:
    """The ``tileserver_source_pixels_read`` counter."""
    return REGISTRY.get_sample_value("tileserver_source_pixels_read_total") or 0.0


def run_tileserver(catalog: Catalog, home: Path) -> tuple[np.ndarray, float, float, bytes]:
    """One cold run: ``(values (n, 6), seconds, pixels read, gpkg seconds)``."""
    engine = Engine(catalog, NodeCache(512 * 1024 * 1024))
    graph = engine.parse({"process_id": "zonal_statistics", "args": {
        "imagery": {"process_id": "filter_bands", "args": {
            "imagery": {"product_id": PRODUCT}, "bands": BAND}},
        "regions": "/users/me/files/parcels.geojson", "func": "avg"}})
    before = pixels_read()
    t = time.perf_counter()
    table = engine.evaluate(graph, engine.native_view(graph),
                            context=eval_context(home, "me"))
    seconds = time.perf_counter() - t
    read = pixels_read() - before
    t = time.perf_counter()
    encode(table, {"format": "GPKG"})
    return table.values[:, :, 0], seconds, read, time.perf_counter() - t


def run_whole_band(files: list[str], geoms: list[Polygon]) -> tuple[np.ndarray, float, float]:
    """Plain rasterio + numpy, written well: each polygon rasterised once on its window of
    the (shared) grid, then per date the whole band read once and the masks applied."""
    t = time.perf_counter()
    out = np.full((len(geoms), len(files)), np.nan)
    read = 0
    masks = []
    with rasterio.open(files[0]) as src:
        grid, inv, width, height = src.transform, ~src.transform, src.width, src.height
        for g in geoms:
            minx, miny, maxx, maxy = g.bounds
            c0, r0 = (int(np.floor(v)) for v in inv * (minx, maxy))
            c1, r1 = (int(np.ceil(v)) for v in inv * (maxx, miny))
            c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, width), min(r1, height)
            if c1 <= c0 or r1 <= r0:
                masks.append(None)
                continue
            win = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
            mask = rasterize([(mapping(g), 1)], out_shape=(r1 - r0, c1 - c0),
                             transform=src.window_transform(win)).astype(bool)
            masks.append((r0, r1, c0, c1, mask))
    for ti, href in enumerate(files):
        with rasterio.open(href) as src:
            assert src.transform == grid  # one grid for all dates
            arr = src.read(1).astype(np.float64)
            arr[arr == src.nodata] = np.nan
            read += arr.size
        for gi, m in enumerate(masks):
            if m is None:
                continue
            r0, r1, c0, c1, mask = m
            vals = arr[r0:r1, c0:c1][mask]
            vals = vals[np.isfinite(vals)]
            if len(vals):
                out[gi, ti] = vals.mean()
    return out, time.perf_counter() - t, read


def run_windows(files: list[str], geoms: list[Polygon]) -> tuple[np.ndarray, float, float]:
    """Naive rasterio: per date and polygon, a ``geometry_window`` read and a mask."""
    t = time.perf_counter()
    out = np.full((len(geoms), len(files)), np.nan)
    read = 0
    for ti, href in enumerate(files):
        with rasterio.open(href) as src:
            for gi, g in enumerate(geoms):
                win = geometry_window(src, [mapping(g)])
                arr = src.read(1, window=win, masked=True).astype(np.float64).filled(np.nan)
                read += arr.size
                mask = rasterize([(mapping(g), 1)], out_shape=arr.shape,
                                 transform=src.window_transform(win)).astype(bool)
                vals = arr[mask]
                vals = vals[np.isfinite(vals)]
                if len(vals):
                    out[gi, ti] = vals.mean()
    return out, time.perf_counter() - t, read


def run_rasterstats(python: str, geojson: Path, files: list[str]) -> tuple[np.ndarray, float]:
    """rasterstats in its own interpreter (it times itself, excluding start-up)."""
    res = subprocess.run([python, "-c", RASTERSTATS, str(geojson), json.dumps(files)],
                         capture_output=True, text=True, check=True)
    doc = json.loads(res.stdout)
    vals = np.array([[np.nan if v is None else v for v in row] for row in doc["values"]])
    return vals.T, doc["seconds"]


def med(xs: list[float]) -> float:
    """Median."""
    return statistics.median(xs)


def main() -> None:
    """Run and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", default=str(Path(tempfile.gettempdir()) / "tileserver-demo"))
    ap.add_argument("-n", type=int, default=5, help="repeats (medians are reported)")
    ap.add_argument("--polygons", type=int, default=1000)
    ap.add_argument("--rasterstats-python", default=None)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)

    catalog_json = write_demo_catalog(Path(args.demo_dir))
    catalog = Catalog.load([str(catalog_json)])
    files = hrefs(catalog_json)
    left, bottom, right, top = BOUNDS
    corner = (left, top - (top - bottom) / 4, left + (right - left) / 4, top)
    layouts = {"scattered": BOUNDS, "one corner (1/16)": corner}
    print(f"{args.polygons} polygons x {len(files)} dates of {PRODUCT} {BAND} "
          f"(1600 x 1600 px per date), medians of {args.n} runs\n")
    header = f"{'layout':18} {'method':34} {'median s':>9} {'vs tileserver':>13} " \
             f"{'Mpx read':>9} {'max |diff|':>10}"
    print(header)
    print("-" * len(header))
    for name, bounds in layouts.items():
        geoms = parcels(args.polygons, bounds, seed=6)
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            geojson = home / "parcels.geojson"
            pyogrio.raw.write(str(geojson), np.array(shapely.to_wkb(geoms), dtype=object),
                              [np.arange(len(geoms))], ["parcel"], driver="GeoJSON",
                              crs="EPSG:32632", geometry_type="Polygon")
            UserFiles(home / "files", "me", 10**9).write("parcels.geojson",
                                                         [geojson.read_bytes()])
            # the methods take turns in every round, so that a busy machine slows them alike
            runs, whole, wins, rs = [], [], [], []
            for _ in range(args.n):
                runs.append(run_tileserver(catalog, home))
                whole.append(run_whole_band(files, geoms))
                wins.append(run_windows(files, geoms))
                if args.rasterstats_python:
                    rs.append(run_rasterstats(args.rasterstats_python, geojson, files))
            ref = runs[0][0]
            ts = med([r[1] for r in runs])
            rows = [("tileserver zonal_statistics", ts, runs[0][2], ref),
                    ("  + GPKG encoding (extra)", med([r[3] for r in runs]), 0.0, None),
                    ("rasterio+numpy, masks reused", med([w[1] for w in whole]), whole[0][2],
                     whole[0][0]),
                    ("rasterio, window per polygon", med([w[1] for w in wins]), wins[0][2],
                     wins[0][0])]
            if rs:
                rows.append(("rasterstats.zonal_stats", med([r[1] for r in rs]), float("nan"),
                             rs[0][0]))
            for method, seconds, read, values in rows:
                diff = "" if values is None else f"{np.nanmax(np.abs(values - ref)):.2e}"
                if values is not None and not np.array_equal(np.isnan(values), np.isnan(ref)):
                    diff += " (nulls differ)"
                print(f"{name:18} {method:34} {seconds:9.3f} {seconds / ts:12.2f}x "
                      f"{read / 1e6:9.2f} {diff:>10}", flush=True)
    print("\nratio > 1: slower than tileserver.")


if __name__ == "__main__":
    main()
