"""WMS GetMap and GetFeatureInfo (issue 21). Prints a table; no assertions.

    .venv/bin/python bench/bench_wms.py [--dir DIR] [-n 5]

Through the Flask app in process (KVP parsing, lazy evaluation, encoding, the answer cache),
over a synthetic catalog written once to ``--dir``: ``NDVI4``, four dates of B04/B08 on a
2048 x 2048 grid of 10 m (EPSG:32632, uint16, nodata 0, overviews), and ``NDVI100``, 100
dates on 256 x 256. Each round starts a fresh app (cold node and answer caches; the files
stay in the OS page cache, as on a server that has been up):

1. GetMap 1024 x 768 PNG (EPSG:3857, zoom-14 resolution, the latest date) of the 4-date
   NDVI job: cold, warm (the same map again) and after panning half a screen east;
2. the same two areas as 256 x 256 WMTS tiles (zoom 14): cold, and the panned area, with
   the share of its tiles already in the tile cache;
3. a zoomed-out GetMap (1024 x 768 over the whole grid): source pixels read (the
   ``tileserver_source_pixels_read`` counter) against the grid's pixels, as the laziness
   test measures for tiles;
4. GetFeatureInfo (JSON) of one pixel of the 100-date NDVI job, the whole series: cold and
   warm, against reading the 100 x 2 pixels with rasterio (one window read per file).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pystac  # noqa: E402
import rasterio  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402
from pyproj import Transformer  # noqa: E402
from rasterio.enums import Resampling  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402
from rasterio.warp import transform_bounds  # noqa: E402
from rasterio.windows import Window  # noqa: E402
from shapely.geometry import box, mapping  # noqa: E402

from tileserver.settings import load_settings  # noqa: E402
from tileserver.web.app import create_app  # noqa: E402

ORIGIN = (500_000.0, 5_120_000.0)
WIDTH, HEIGHT = 1024, 768
Z = 14
MERCATOR = 20037508.342789244
TILE = 2 * MERCATOR / 2**Z  # metres of one zoom-14 tile


def _write(path: Path, arr: np.ndarray, transform) -> None:
    profile = dict(driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1,
                   dtype="uint16", crs="EPSG:32632", transform=transform, nodata=0,
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr, 1)
        dst.build_overviews([2, 4, 8, 16], Resampling.average)


def _product(catalog: pystac.Catalog, root: Path, name: str, dates: int, size: int) -> None:
    start = datetime(2021, 1, 1, 10, tzinfo=UTC)
    col = pystac.Collection(name, f"{dates} synthetic dates",
                            pystac.Extent(pystac.SpatialExtent([[-180, -90, 180, 90]]),
                                          pystac.TemporalExtent([[start, start]])))
    col.summaries.add("eo:bands", [{"name": "B04"}, {"name": "B08"}])
    transform = from_origin(*ORIGIN, 10.0, 10.0)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(dates):
        when = start + timedelta(days=5 * i)
        d = root / name / f"d{i}"
        d.mkdir(parents=True, exist_ok=True)
        item = None
        for band, base in (("B04", 800), ("B08", 3000)):
            wave = np.sin(xx / 41.0 + i) * np.cos(yy / 29.0 - i)
            arr = np.clip(base + 600 * wave + 10 * i, 1, 10000).astype(np.uint16)
            arr[(xx + yy + 37 * i) % 300 < 12] = 0
            _write(d / f"{band}.tif", arr, transform)
            if item is None:
                with rasterio.open(d / f"{band}.tif") as src:
                    gb = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
                item = pystac.Item(f"{name}_{i}", mapping(box(*gb)), list(gb), when, {})
            item.add_asset(band, pystac.Asset(str(d / f"{band}.tif"),
                                              media_type=pystac.MediaType.GEOTIFF,
                                              roles=["data"]))
        col.add_item(item)
    catalog.add_child(col)


def write_catalog(root: Path) -> Path:
    """The two products (written once)."""
    path = root / "catalog.json"
    if path.exists():
        return path
    catalog = pystac.Catalog("bench-wms", "synthetic data for bench_wms")
    _product(catalog, root, "NDVI4", 4, 2048)
    _product(catalog, root, "NDVI100", 100, 256)
    catalog.normalize_hrefs(str(root))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return path


def ndvi_graph(product: str, size: int) -> dict:
    """NDVI of a product over its whole grid, every date."""
    box_args = {"left": ORIGIN[0], "right": ORIGIN[0] + 10 * size, "top": ORIGIN[1],
                "bottom": ORIGIN[1] - 10 * size, "srs": "EPSG:32632"}
    leaf = {"process_id": "filter_bbox", "args": {"imagery": {"product_id": product},
                                                  **box_args}}
    return {"process_id": "NDVI", "args": {"imagery": leaf, "red": "B04", "nir": "B08"}}


def pixels_read() -> float:
    """The source pixels read so far (this process)."""
    return REGISTRY.get_sample_value("tileserver_source_pixels_read_total") or 0.0


def timed(fn):
    """``(seconds, result)``."""
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _tiles(bounds) -> list[tuple[int, int]]:
    """``(row, col)`` of the zoom-14 tiles covering EPSG:3857 ``bounds``."""
    left, bottom, right, top = bounds
    c0, c1 = math.floor((left + MERCATOR) / TILE), math.floor((right + MERCATOR) / TILE - 1e-9)
    r0, r1 = math.floor((MERCATOR - top) / TILE), math.floor((MERCATOR - bottom) / TILE - 1e-9)
    return [(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]


def one_round(catalog: Path, home: Path) -> dict:
    """One fresh app; every measurement once."""
    app = create_app(load_settings(home=str(home), catalog=str(catalog)))
    c = app.test_client()
    out: dict = {}
    try:
        job4 = c.post("/jobs", json={"process_graph": ndvi_graph("NDVI4", 2048)}).json["job_id"]
        job100 = c.post("/jobs", json={"process_graph": ndvi_graph("NDVI100", 256)}
                        ).json["job_id"]
        sid = c.post("/services", json={"job_id": job4, "type": "wmts"}).json["service_id"]
        to = Transformer.from_crs("EPSG:32632", "EPSG:3857", always_xy=True)
        cx, cy = to.transform(ORIGIN[0] + 7000, ORIGIN[1] - 10000)
        res = TILE / 256
        area = (cx - WIDTH / 2 * res, cy - HEIGHT / 2 * res, cx + WIDTH / 2 * res,
                cy + HEIGHT / 2 * res)
        panned = (area[0] + WIDTH / 2 * res, area[1], area[2] + WIDTH / 2 * res, area[3])
        base = {"SERVICE": "WMS", "REQUEST": "GetMap", "VERSION": "1.3.0", "LAYERS": job4,
                "STYLES": "", "CRS": "EPSG:3857", "WIDTH": str(WIDTH), "HEIGHT": str(HEIGHT),
                "FORMAT": "image/png"}

        def getmap(bounds):
            resp = c.get("/wms", query_string={**base, "BBOX": ",".join(map(str, bounds))})
            assert resp.status_code == 200, resp.data[:300]
            return resp

        before = pixels_read()
        out["map_cold"], _ = timed(lambda: getmap(area))
        out["map_cold_px"] = pixels_read() - before
        out["map_warm"], resp = timed(lambda: getmap(area))
        out["map_warm_origin"] = resp.headers.get("X-Tileserver-Cache")
        before = pixels_read()
        out["map_pan"], _ = timed(lambda: getmap(panned))
        out["map_pan_px"] = pixels_read() - before

        def tiles(cells):
            for r, col in cells:
                resp = c.get(f"/service/wmts/{sid}/1.0.0/{job4}/default/GoogleMapsCompatible"
                             f"/{Z}/{r}/{col}.png")
                assert resp.status_code == 200, resp.data[:300]

        first, second = _tiles(area), _tiles(panned)
        out["tiles_n"] = len(first)
        out["tiles_cold"], _ = timed(lambda: tiles(first))
        out["tiles_pan_reused"] = len(set(first) & set(second)) / len(second)
        out["tiles_pan"], _ = timed(lambda: tiles(second))

        whole = transform_bounds("EPSG:32632", "EPSG:3857", ORIGIN[0], ORIGIN[1] - 20480,
                                 ORIGIN[0] + 20480, ORIGIN[1])
        before = pixels_read()
        out["zoomed_out"], _ = timed(lambda: getmap(whole))
        # one date (the latest) x two bands of the 2048 x 2048 grid at full resolution
        out["zoomed_out_share"] = (pixels_read() - before) / (2048 * 2048 * 2)

        col, row = 123, 77
        x, y = ORIGIN[0] + (col + 0.5) * 10, ORIGIN[1] - (row + 0.5) * 10
        gfi = {"SERVICE": "WMS", "REQUEST": "GetFeatureInfo", "VERSION": "1.1.1",
               "LAYERS": job100, "QUERY_LAYERS": job100, "STYLES": "", "SRS": "EPSG:32632",
               "BBOX": f"{x - 5},{y - 5},{x + 5},{y + 5}", "WIDTH": "1", "HEIGHT": "1",
               "X": "0", "Y": "0", "INFO_FORMAT": "application/json", "FORMAT": "image/png"}

        def info():
            resp = c.get("/wms", query_string=gfi)
            assert resp.status_code == 200, resp.data[:300]
            return resp.json["features"][0]["properties"]

        out["gfi_cold"], props = timed(info)
        out["gfi_warm"], _ = timed(info)
        out["gfi_dates"] = len(props["series"])

        def plain():
            items = sorted((catalog.parent / "NDVI100").glob("d*"),
                           key=lambda p: int(p.name[1:]))
            series = []
            for d in items:
                vals = []
                for band in ("B04", "B08"):
                    with rasterio.open(d / f"{band}.tif") as src:
                        vals.append(float(src.read(1, window=Window(col, row, 1, 1))[0, 0]))
                red, nir = vals
                series.append(np.nan if red == 0 or nir == 0 else (nir - red) / (nir + red))
            return series

        out["gfi_rasterio"], ref = timed(plain)
        ours = [s["bands"]["ndvi"] for s in props["series"]]
        out["gfi_equal"] = all((a is None and np.isnan(b)) or (a is not None and abs(a - b) < 1e-6)
                               for a, b in zip(ours, ref, strict=True))
    finally:
        app.extensions["tileserver"].close()
    return out


def main() -> None:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=str(Path.home() / ".cache" / "tileserver-bench" / "wms"))
    ap.add_argument("-n", type=int, default=5)
    args = ap.parse_args()
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    catalog = write_catalog(root)
    tmp = Path(tempfile.mkdtemp(prefix="bench-wms-"))
    one_round(catalog, tmp / "prime")  # the files into the page cache, imports done
    rounds = [one_round(catalog, tmp / f"home{i}") for i in range(args.n)]

    def med(key):
        return statistics.median(r[key] for r in rounds)

    ms = 1000.0
    print(f"WMS benchmark, {args.n} rounds (medians), fresh app per round\n")
    print(f"GetMap {WIDTH}x{HEIGHT} PNG, 4-date NDVI, EPSG:3857 at zoom {Z} resolution")
    print(f"  cold                              {med('map_cold') * ms:9.1f} ms  "
          f"({med('map_cold_px') / 1e6:.2f} M source pixels read)")
    print(f"  warm (same map)                   {med('map_warm') * ms:9.1f} ms  "
          f"(from {rounds[-1]['map_warm_origin']})")
    print(f"  panned half a screen              {med('map_pan') * ms:9.1f} ms  "
          f"({med('map_pan_px') / 1e6:.2f} M source pixels read)")
    print(f"Same areas as {rounds[-1]['tiles_n']} WMTS tiles (256x256, zoom {Z})")
    print(f"  cold                              {med('tiles_cold') * ms:9.1f} ms")
    print(f"  panned half a screen              {med('tiles_pan') * ms:9.1f} ms  "
          f"({med('tiles_pan_reused') * 100:.0f} % of its tiles in the tile cache)")
    print(f"Zoomed-out GetMap {WIDTH}x{HEIGHT} of the whole 2048x2048 grid")
    print(f"  time                              {med('zoomed_out') * ms:9.1f} ms  "
          f"(source pixels read: {med('zoomed_out_share') * 100:.1f} % of full resolution)")
    print(f"GetFeatureInfo JSON, one pixel, {rounds[-1]['gfi_dates']} dates")
    print(f"  cold                              {med('gfi_cold') * ms:9.1f} ms")
    print(f"  warm                              {med('gfi_warm') * ms:9.1f} ms")
    print(f"  rasterio, 100 x 2 one-pixel reads {med('gfi_rasterio') * ms:9.1f} ms  "
          f"(values equal: {all(r['gfi_equal'] for r in rounds)})")


if __name__ == "__main__":
    main()
