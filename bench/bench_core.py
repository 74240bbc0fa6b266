"""Benchmark of the core (issue 2). Prints a table; no assertions.

    .venv/bin/python bench/bench_core.py [--demo-dir DIR] [-n 7]

1. ``POST /execute`` of the openEO example request, end to end through the Flask app
   (parse, evaluate, encode JPEG/YCbCr GeoTIFF), with a cold and with a warm cache.
2. Evaluation of a 256x256 view at full resolution and at 1/64 of it (the same 256x256
   pixels over 64x the extent) of NDVI over the demo's Sentinel-2 L1C 10 m bands (3 dates):
   with overviews the two should be within 2x; without overviews (forced full-resolution
   reads, for comparison) the zoomed-out view is the classic slowdown.
3. The same view with a cold cache and with a warm one.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests  # noqa: E402
from common import Tileserver  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402

import tileserver.data.reader as reader  # noqa: E402
from tileserver.datacube.view import View  # noqa: E402
from tileserver.demo import example_request, write_demo_catalog  # noqa: E402
from tileserver.settings import load_settings  # noqa: E402
from tileserver.web.app import create_app  # noqa: E402

EXAMPLE = example_request()
EXEC_COLD = "POST /execute example, cold cache"
EXEC_WARM = "POST /execute example, warm cache"
HTTP_WARM = "POST /execute over HTTP (gunicorn), warm"
FULL = "eval 256x256 full resolution (10 m), cold"
ZOOM = "eval 256x256 at 1/64 (80 m, 64x extent), cold"
NOOVR = "  same 1/64 view WITHOUT overviews, cold"
WARM = "eval 256x256 full resolution, warm cache"
L1C_NDVI = {"process_id": "NDVI", "args": {"imagery": {"product_id": "Sentinel2-L1C"},
                                           "red": "B04", "nir": "B08"}}


def pixels_read() -> float:
    """The ``tileserver_source_pixels_read`` counter."""
    return REGISTRY.get_sample_value("tileserver_source_pixels_read_total") or 0.0


def timed(fn: Callable[[], object], n: int, before: Callable[[], None] | None = None
          ) -> tuple[list[float], float]:
    """``n`` timings of ``fn`` (``before`` runs untimed first) and pixels read per run."""
    times, read = [], 0.0
    for _ in range(n):
        if before:
            before()
        p0 = pixels_read()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        read += pixels_read() - p0
    return times, read / n


@contextlib.contextmanager
def without_overviews():
    """Force full-resolution reads (what a naive warp does), for comparison only."""
    real = reader.choose_overview
    reader.choose_overview = lambda factor, overviews: None
    try:
        yield
    finally:
        reader.choose_overview = real


def main() -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", default=None, help="demo catalog directory "
                    "(default: $TILESERVER_HOME/demo, written if missing)")
    ap.add_argument("-n", type=int, default=7, help="repetitions per measurement")
    ap.add_argument("--no-http", action="store_true", help="skip the gunicorn measurement")
    args = ap.parse_args()

    base = load_settings()
    demo = write_demo_catalog(Path(args.demo_dir) if args.demo_dir else base.demo_dir)
    home = tempfile.mkdtemp(prefix="bench-home-")
    app = create_app(load_settings(home=home, catalog=str(demo)))
    client = app.test_client()
    rt = app.extensions["tileserver"]
    engine, cache = rt.engine, rt.cache
    n = args.n
    rows: list[tuple[str, list[float], float | None]] = []

    def execute():
        resp = client.post("/execute", json=EXAMPLE)
        assert resp.status_code == 200 and resp.mimetype == "image/tiff", resp.data[:300]

    execute()  # warm up imports, GDAL drivers, file handles
    rows.append((EXEC_COLD, *timed(execute, n, cache.clear)))
    execute()  # fill the cache
    rows.append((EXEC_WARM, *timed(execute, n)))

    if not args.no_http:
        with Tileserver(demo, Path(home), workers=None) as url:
            def post():
                resp = requests.post(f"{url}/execute", json=EXAMPLE, timeout=120)
                assert resp.status_code == 200, resp.text[:300]

            post()  # warm: the server's cache now holds the result's nodes
            rows.append((HTTP_WARM, timed(post, n)[0], None))  # reads happen in the server

    graph = engine.parse(L1C_NDVI)
    product = engine.catalog.get("Sentinel2-L1C")
    with __import__("rasterio").open(product.items[0].assets["B04"]) as src:
        b, crs = src.bounds, src.crs
    cx, cy = (b.left + b.right) / 2, (b.bottom + b.top) / 2

    def view(scale: int) -> View:
        half = 128 * 10.0 * scale
        return View(crs, (cx - half, cy - half, cx + half, cy + half), 256, 256)

    full, zoomed = view(1), view(8)

    def run(v: View) -> Callable[[], object]:
        return lambda: engine.evaluate(graph, v)

    rows.append((FULL, *timed(run(full), n, cache.clear)))
    rows.append((ZOOM,
                 *timed(run(zoomed), n, cache.clear)))
    with without_overviews():
        rows.append((NOOVR,
                     *timed(run(zoomed), max(2, n // 3), cache.clear)))
    run(full)()  # fill the cache
    rows.append((WARM, *timed(run(full), n)))

    print(f"\ntileserver core benchmark (n={n}, demo catalog {demo.parent})\n")
    print(f"{'measurement':<50} {'median ms':>10} {'min ms':>9} {'px read/run':>12}")
    print("-" * 84)
    med = {}
    for name, times, read in rows:
        med[name] = statistics.median(times) * 1000
        px = "n/a" if read is None else f"{read:,.0f}"
        print(f"{name:<50} {med[name]:>10.1f} {min(times) * 1000:>9.1f} {px:>12}")
    print("\nratios of medians")
    print(f"  1/64 view vs full-resolution view (overviews):   {med[ZOOM] / med[FULL]:.2f}x"
          "  (goal: within 2x)")
    print(f"  1/64 view without vs with overviews:             {med[NOOVR] / med[ZOOM]:.1f}x")
    print(f"  cold vs warm cache (256x256 full resolution):    {med[FULL] / med[WARM]:.0f}x")
    print(f"  /execute cold vs warm cache:                     "
          f"{med[EXEC_COLD] / med[EXEC_WARM]:.1f}x")
    rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
