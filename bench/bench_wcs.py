"""Benchmark of WCS GetCoverage (issue 4). Prints a table; no assertions.

    .venv/bin/python bench/bench_wcs.py [--demo-dir DIR] [-n 7]

The openEO example job (NDVI minimum of January 2017 over S2_L2A_T32TPS_20M) is exposed as
a ``wcs`` service; two GetCoverage requests go through the Flask app (KVP parsing, lazy
evaluation, float32 GeoTIFF encoding), each with a cold and a warm cache:

1. the whole bbox at native resolution (20 m, 1000 x 1000, EPSG:32632);
2. the same bbox scaled to 512 x 512 in EPSG:4326 (``OUTPUTCRS`` + ``SCALESIZE``).

Each is timed against a plain rasterio + numpy script computing the same answer: read the
window of B04 and B8A of every January acquisition (for 2, through a ``WarpedVRT`` onto the
512 x 512 EPSG:4326 grid from the overview level matching the output resolution), NDVI,
minimum over dates, write a float32 GeoTIFF in memory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pystac  # noqa: E402
import rasterio  # noqa: E402
from rasterio.enums import Resampling  # noqa: E402
from rasterio.io import MemoryFile  # noqa: E402
from rasterio.transform import from_bounds  # noqa: E402
from rasterio.vrt import WarpedVRT  # noqa: E402
from rasterio.warp import transform_bounds  # noqa: E402
from rasterio.windows import from_bounds as window_from_bounds  # noqa: E402

from tileserver.demo import write_demo_catalog  # noqa: E402
from tileserver.settings import load_settings  # noqa: E402
from tileserver.web.app import create_app  # noqa: E402

PRODUCT = "S2_L2A_T32TPS_20M"
BBOX = (652000.0, 5161000.0, 672000.0, 5181000.0)
JANUARY = (datetime(2017, 1, 1, tzinfo=UTC), datetime(2017, 1, 31, 23, 59, 59, tzinfo=UTC))
EXAMPLE = {"process_id": "min_time", "args": {"imagery": {"process_id": "NDVI", "args": {
    "imagery": {"process_id": "filter_daterange", "args": {"imagery": {
        "process_id": "filter_bbox", "args": {
            "imagery": {"product_id": PRODUCT}, "left": BBOX[0], "right": BBOX[2],
            "top": BBOX[1], "bottom": BBOX[3], "srs": "EPSG:32632"}},
        "from": "2017-01-01", "to": "2017-01-31"}},
    "red": "B04", "nir": "B8A"}}}}


def timed(fn: Callable[[], object], n: int, before: Callable[[], None] | None = None
          ) -> list[float]:
    """``n`` timings of ``fn`` (``before`` runs untimed first)."""
    out = []
    for _ in range(n):
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def january_assets(catalog_json: Path) -> list[dict[str, str]]:
    """``{band: href}`` of every January acquisition (pystac only), by date."""
    cat = pystac.read_file(str(catalog_json))
    col = next(c for c in cat.get_all_collections() if c.id == PRODUCT)
    items = sorted((i for i in col.get_items(recursive=True)
                    if JANUARY[0] <= i.datetime <= JANUARY[1]), key=lambda i: i.datetime)
    return [{b: i.assets[b].get_absolute_href() for b in ("B04", "B8A")} for i in items]


def _gtiff(data: np.ndarray, crs, transform) -> bytes:
    h, w = data.shape
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=w, height=h, count=1, dtype="float32", crs=crs,
                      transform=transform, nodata=float("nan"), compress="deflate") as dst:
            dst.write(data, 1)
        return mem.read()


def _ndvi_min(layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    out = None
    for red, nir in layers:
        with np.errstate(all="ignore"):
            v = ((nir - red) / (nir + red)).astype(np.float32)
        v[~np.isfinite(v)] = np.nan
        out = v if out is None else np.fmin(out, v)
    return out


def plain_native(assets) -> bytes:
    """The whole bbox at native resolution with plain rasterio + numpy."""
    layers = []
    transform = None
    for bands in assets:
        pair = []
        for band in ("B04", "B8A"):
            with rasterio.open(bands[band]) as src:
                win = window_from_bounds(*BBOX, transform=src.transform)
                arr = src.read(1, window=win, masked=True).astype(np.float32).filled(np.nan)
                transform = src.window_transform(win)
            pair.append(arr)
        layers.append(tuple(pair))
    return _gtiff(_ndvi_min(layers), "EPSG:32632", transform)


def _overview(href: str, bounds4326, size: int) -> int | None:
    """The coarsest overview not coarser than the output pixels (None: full resolution)."""
    with rasterio.open(href) as src:
        left, _, right, _ = transform_bounds("EPSG:4326", src.crs, *bounds4326)
        factor = (right - left) / size / src.res[0]
        levels = [i for i, f in enumerate(src.overviews(1)) if f <= factor * 1.0001]
    return levels[-1] if levels else None


def plain_4326(assets, bounds4326, size=512) -> bytes:
    """The bbox on a 512 x 512 EPSG:4326 grid through GDAL's WarpedVRT."""
    transform = from_bounds(*bounds4326, size, size)
    layers = []
    for bands in assets:
        pair = []
        for band in ("B04", "B8A"):
            level = _overview(bands[band], bounds4326, size)
            opts = {} if level is None else {"overview_level": level}
            with rasterio.open(bands[band], **opts) as src, WarpedVRT(
                    src, crs="EPSG:4326", transform=transform, width=size, height=size,
                    resampling=Resampling.nearest, nodata=0) as vrt:
                arr = vrt.read(1, masked=True).astype(np.float32).filled(np.nan)
            pair.append(arr)
        layers.append(tuple(pair))
    return _gtiff(_ndvi_min(layers), "EPSG:4326", transform)


def main() -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", default=None, help="demo catalog directory "
                    "(default: $TILESERVER_HOME/demo, written if missing)")
    ap.add_argument("-n", type=int, default=7, help="repetitions per measurement")
    args = ap.parse_args()
    demo = write_demo_catalog(Path(args.demo_dir) if args.demo_dir
                              else load_settings().demo_dir)
    app = create_app(load_settings(home=tempfile.mkdtemp(prefix="bench-wcs-"),
                                   catalog=str(demo)))
    client = app.test_client()
    cache = app.extensions["tileserver"].cache
    job = client.post("/jobs", json={"process_graph": EXAMPLE}).get_json()
    sid = client.post("/services", json={"job_id": job["job_id"],
                                         "type": "wcs"}).get_json()["service_id"]
    base = (f"/service/wcs/{sid}?SERVICE=WCS&REQUEST=GetCoverage&VERSION=2.0.1"
            f"&COVERAGEID=job_{job['job_id']}")
    b4326 = transform_bounds("EPSG:32632", "EPSG:4326", *BBOX, densify_pts=21)
    native_q = base
    scaled_q = base + "&OUTPUTCRS=EPSG:4326&SCALESIZE=i(512),j(512)"
    assets = january_assets(demo)

    def get(query: str, shape: tuple[int, int]) -> Callable[[], bytes]:
        def run() -> bytes:
            resp = client.get(query)
            assert resp.status_code == 200, resp.data[:300]
            with MemoryFile(resp.data) as mem, mem.open() as ds:
                assert ds.shape == shape
            return resp.data
        return run

    n = args.n
    rows: list[tuple[str, list[float]]] = []
    agreement: dict[str, str] = {}
    for label, query, shape, plain in (
        ("native 1000x1000 EPSG:32632", native_q, (1000, 1000), lambda: plain_native(assets)),
        ("scaled 512x512 EPSG:4326", scaled_q, (512, 512),
         lambda: plain_4326(assets, b4326)),
    ):
        run = get(query, shape)
        agreement[label] = _agreement(run(), plain())  # also warms up GDAL and the OS cache
        rows.append((f"GetCoverage {label}, cold cache", timed(run, n, cache.clear)))
        rows.append((f"GetCoverage {label}, warm cache", timed(run, n)))
        rows.append((f"plain rasterio+numpy {label}", timed(plain, n)))

    print(f"\nWCS GetCoverage benchmark (n={n}, {len(assets)} January dates, demo {demo.parent})"
          "\n")
    print(f"{'measurement':<58} {'median ms':>10} {'min ms':>9} {'vs plain':>9}")
    print("-" * 90)
    for i, (name, times) in enumerate(rows):
        med = statistics.median(times) * 1000
        plain_med = statistics.median(rows[(i // 3) * 3 + 2][1]) * 1000
        print(f"{name:<58} {med:>10.1f} {min(times) * 1000:>9.1f} {med / plain_med:>8.2f}x")
    print()
    for label, text in agreement.items():
        print(f"same values as the plain script, {label}: {text}")
    return 0


def _agreement(a: bytes, b: bytes) -> str:
    """How far two GeoTIFF answers agree (the bbox filter masks the 4326 corners)."""
    with MemoryFile(a) as ma, ma.open() as da, MemoryFile(b) as mb, mb.open() as db:
        x, y = da.read(1), db.read(1)
        same_grid = da.transform.almost_equals(db.transform) and da.crs == db.crs
    both = np.isfinite(x) & np.isfinite(y)
    equal = np.isclose(x[both], y[both], rtol=1e-5, atol=1e-6)
    return (f"grid {'identical' if same_grid else 'DIFFERENT'}, {equal.mean():.2%} of the "
            f"pixels valid in both equal (max |diff| {np.abs(x - y)[both].max():.3g}); "
            f"valid only in one: {(np.isfinite(x) != np.isfinite(y)).mean():.2%}")


if __name__ == "__main__":
    raise SystemExit(main())
