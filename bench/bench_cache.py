"""Cache tiers across worker processes (issue 11). Prints a table; no assertions.

    .venv/bin/python bench/bench_cache.py [--workers 2 4] [--per-zoom 12] [--clients 8]
        [--size 8192] [--data-dir DIR] [--titiler-venv /tmp/titiler-venv] [--no-batch]

Data: a synthetic product (``SYN``, EPSG:32632, 10 m) of 4 dates x 2 bands (B04, B08) of
``--size``² uint16 Cloud-Optimized GeoTIFFs (deflate, internal overviews), written once
under ``--data-dir``. The layer is ``min_time(NDVI(filter_bbox(SYN)))`` over the whole
extent, GoogleMapsCompatible tiles sampled through zooms 9-14 of its TileMatrixSetLimits.

For each ``--workers N`` (``tileserver serve --workers N``, a fresh ``$TILESERVER_HOME``, so
the default disk tier starts empty):

- first pass and second pass over the same tiles, every request on a fresh connection
  (``Connection: close``), so requests spread over the N processes: median latency and the
  hit ratio from each answer's ``X-Tileserver-Cache`` header (memory/disk = hit);
- a warm pass with ``--clients`` keep-alive clients: tiles/s, against TiTiler
  (``titiler.application`` under ``uvicorn --workers N``, installed in a SEPARATE venv:
  ``python3 -m venv /tmp/titiler-venv && /tmp/titiler-venv/bin/pip install
  titiler.application uvicorn``) serving one date's B04 COG of the same data, same tiles;
- then the job runs as a batch job; its tiles are read from the stored result COG
  (``X-Tileserver-Cache: stored``) with ``--clients`` clients, against TiTiler serving that
  result COG with the same colormap and range (both after a priming pass).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_wmts import inside_cog, tiles_from_capabilities  # noqa: E402
from common import (  # noqa: E402
    Tileserver,
    each_once,
    figure,
    free_port,
    load,
    save_figures,
    start,
    stop,
)

ORIGIN = (600_000.0, 5_200_000.0)
RES = 10.0
DAY0 = datetime(2021, 6, 1, 10, 0, tzinfo=UTC)
STYLE = {"colormap": "viridis", "range": [0, 1]}


# -- data -------------------------------------------------------------------------------


def synthetic_catalog(root: Path, size: int, dates: int = 4) -> Path:
    """Write (once) the ``SYN`` product: ``dates`` items of B04/B08 COGs of size²."""
    import numpy as np
    import pystac
    import rasterio
    import rasterio.shutil
    from rasterio.transform import from_origin
    from rasterio.warp import transform_bounds
    from rasterio.windows import Window
    from shapely.geometry import box, mapping

    root = root / f"syn{size}"
    catalog_path = root / "catalog.json"
    if catalog_path.exists():
        return catalog_path
    root.mkdir(parents=True, exist_ok=True)
    transform = from_origin(*ORIGIN, RES, RES)
    catalog = pystac.Catalog("syn", f"synthetic {size}x{size} x {dates} dates")
    col = pystac.Collection("SYN", "synthetic 10 m red/NIR", pystac.Extent(
        pystac.SpatialExtent([[-180, -90, 180, 90]]),
        pystac.TemporalExtent([[DAY0, DAY0 + timedelta(days=10 * dates)]])))
    col.summaries.add("eo:bands", [{"name": "B04"}, {"name": "B08"}])
    for d in range(dates):
        when = DAY0 + timedelta(days=10 * d)
        item_dir = root / f"d{d}"
        item_dir.mkdir(exist_ok=True)
        assets = {}
        for band, base in (("B04", 700), ("B08", 3000)):
            tmp, target = item_dir / f"{band}.tmp.tif", item_dir / f"{band}.tif"
            profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint16",
                           crs="EPSG:32632", transform=transform, nodata=0, tiled=True,
                           blockxsize=512, blockysize=512, compress="deflate")
            with rasterio.open(tmp, "w", **profile) as dst:
                for r0 in range(0, size, 1024):
                    h = min(1024, size - r0)
                    yy, xx = np.mgrid[r0:r0 + h, 0:size].astype(np.float32)
                    wave = np.sin(xx / 173.0 + d) * np.cos(yy / 97.0 - d)
                    vals = base + 500 * wave + 40 * np.sin((xx + yy) / 7.0 + (band == "B08"))
                    vals = np.clip(vals + 120 * d, 1, 10000).astype(np.uint16)
                    vals[((xx + 3 * yy + 400 * d) % 2000) < 60] = 0  # nodata stripes
                    dst.write(vals, 1, window=Window(0, r0, size, h))
            rasterio.shutil.copy(tmp, target, driver="COG", compress="DEFLATE",
                                 overview_resampling="nearest", num_threads="2")
            tmp.unlink()
            assets[band] = pystac.Asset(str(target), media_type=pystac.MediaType.COG,
                                        roles=["data"])
        with rasterio.open(item_dir / "B04.tif") as src:
            bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        item = pystac.Item(f"syn_{d}", mapping(box(*bounds)), list(bounds), when,
                           {"proj:epsg": 32632})
        for key, asset in assets.items():
            item.add_asset(key, asset)
        col.add_item(item)
    catalog.add_child(col)
    catalog.normalize_hrefs(str(root))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return catalog_path


def graph(size: int) -> dict:
    """``min_time(NDVI)`` over the whole synthetic extent."""
    x0, y0 = ORIGIN
    bbox = {"left": x0, "right": x0 + size * RES, "bottom": y0 - size * RES, "top": y0,
            "srs": "EPSG:32632"}
    return {"process_id": "min_time", "args": {"imagery": {
        "process_id": "NDVI", "args": {"red": "B04", "nir": "B08", "imagery": {
            "process_id": "filter_bbox", "args": {"imagery": {"product_id": "SYN"},
                                                  **bbox}}}}}}


# -- clients ----------------------------------------------------------------------------


def fresh_pass(urls: list[str], clients: int) -> dict:
    """Every URL once, each on a new connection; latencies and where answers came from."""

    def get(_session, url):
        resp = requests.get(url, headers={"Connection": "close"}, timeout=300)
        return resp.status_code, resp.headers.get("X-Tileserver-Cache", "?"), url

    done, wall = each_once(urls, clients, get)
    latencies = [dt for dt, _ in done]
    sources = Counter(source for _, (_, source, _) in done)
    failures = [f"{code} {url}" for _, (code, _, url) in done if code != 200]
    hits = sum(n for s, n in sources.items() if s in ("memory", "disk", "redis"))
    return {"n": len(latencies), "p50_ms": 1000 * statistics.median(latencies),
            "tiles_s": len(latencies) / wall, "hit_ratio": hits / max(1, len(latencies)),
            "sources": dict(sources), "n_failed": len(failures), "failures": failures[:3]}


def wait_finished(base: str, job_id: str, timeout: float = 3600) -> float:
    """Queue a job, wait until it is finished; seconds taken."""
    t0 = time.monotonic()
    requests.patch(f"{base}/jobs/{job_id}/queue", timeout=60).raise_for_status()
    while time.monotonic() - t0 < timeout:
        job = requests.get(f"{base}/jobs/{job_id}", timeout=60).json()
        if job["status"] == "finished":
            return time.monotonic() - t0
        if job["status"] == "error":
            raise SystemExit(f"batch job failed: {job}")
        time.sleep(1)
    raise SystemExit("batch job did not finish")


class TiTiler:
    """``uvicorn titiler.application.main:app --workers N`` from its own venv."""

    def __init__(self, venv: Path, workers: int, log: Path):
        self.bin = venv / "bin" / "uvicorn"
        self.workers, self.log, self.port, self.proc = workers, log, free_port(), None

    def __enter__(self) -> str | None:
        if not self.bin.exists():
            return None
        self.proc = start([str(self.bin), "titiler.application.main:app", "--port",
                           str(self.port), "--workers", str(self.workers), "--log-level",
                           "warning"], {"PATH": "/usr/bin:/bin"},
                          f"http://127.0.0.1:{self.port}/healthz", self.log)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            stop(self.proc)


def titiler_urls(base: str, tiles, cog: Path, rescale: str, colormap: str) -> list[str]:
    """TiTiler tile URLs for ``tiles`` ((z, row, col)) of one COG."""
    return [f"{base}/cog/tiles/WebMercatorQuad/{z}/{c}/{r}.png?url={cog}&rescale={rescale}"
            f"&colormap_name={colormap}" for z, r, c in tiles]


# -- main -------------------------------------------------------------------------------


def run(workers: int, catalog: Path, size: int, args, tmp: Path) -> list[tuple[str, dict]]:
    """All measurements for one worker count."""
    rows: list[tuple[str, dict]] = []
    home = tmp / f"home-w{workers}"
    repo = Path(args.repo).resolve() if args.repo else None
    env = {"PYTHONPATH": str(repo)} if repo else None  # and its cwd: python -m puts it first
    with Tileserver(catalog, home, workers, env=env, cwd=repo) as base:
        job = requests.post(f"{base}/jobs", json={"process_graph": graph(size),
                                                  "title": "min NDVI"}, timeout=60)
        job.raise_for_status()
        job_id = job.json()["job_id"]
        svc = requests.post(f"{base}/services", json={"job_id": job_id, "type": "wmts",
                                                      "args": STYLE}, timeout=60)
        svc.raise_for_status()
        url = svc.json()["service_url"]
        caps = requests.get(f"{url}/1.0.0/WMTSCapabilities.xml", timeout=60).content
        tiles = tiles_from_capabilities(caps, job_id, args.per_zoom)
        urls = [f"{url}/1.0.0/{job_id}/default/GoogleMapsCompatible/{z}/{r}/{c}.png"
                for z, r, c in tiles]
        first = fresh_pass(urls, args.clients)
        second = fresh_pass(urls, args.clients)
        rows.append((f"w={workers} first pass (fresh connections)", first))
        rows.append((f"w={workers} second pass (fresh connections)", second))
        cog = catalog.parent / "d0" / "B04.tif"
        # TiTiler answers 404 for tiles outside the file: compare on the tiles inside it
        tiles = inside_cog(tiles, str(cog))
        urls = [f"{url}/1.0.0/{job_id}/default/GoogleMapsCompatible/{z}/{r}/{c}.png"
                for z, r, c in tiles]
        warm = load(urls, args.clients)
        rows.append((f"w={workers} warm, {args.clients} keep-alive clients", warm))
        with TiTiler(Path(args.titiler_venv), workers, tmp / f"titiler-w{workers}.log") as tt:
            if tt is not None:
                tt_urls = titiler_urls(tt, tiles, cog, "0,3000", "viridis")
                load(tt_urls, args.clients)  # priming (page cache)
                rows.append((f"w={workers} TiTiler, one B04 COG", load(tt_urls, args.clients)))
            if args.no_batch:
                return rows
            seconds = wait_finished(base, job_id)
            rows.append((f"w={workers} batch job finished in {seconds:.0f} s", {}))
            result = home / "results" / job_id / "result.tif"
            fresh_pass(urls[:1], 1)  # the new layer (its stored result found) in one worker
            stored = load(urls, args.clients)  # first reads of the result COG
            rows.append((f"w={workers} finished job, stored COG (cold)", stored))
            again = fresh_pass(urls, args.clients)
            rows.append((f"w={workers} finished job, second pass", again))
            if tt is not None:
                tt_urls = titiler_urls(tt, tiles, result, "0,1", "viridis")
                load(tt_urls, args.clients)
                rows.append((f"w={workers} TiTiler, the result COG",
                             load(tt_urls, args.clients)))
    return rows


def main() -> None:
    """Run and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--per-zoom", type=int, default=12)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--data-dir", default=str(Path.home() / ".cache" / "tileserver-bench"))
    ap.add_argument("--titiler-venv", default="/tmp/titiler-venv")
    ap.add_argument("--no-batch", action="store_true")
    ap.add_argument("--repo", default=None,
                    help="serve another checkout (e.g. the main branch: --label before)")
    ap.add_argument("--label", default="after")
    args = ap.parse_args()
    t0 = time.monotonic()
    catalog = synthetic_catalog(Path(args.data_dir), args.size)
    print(f"data ready in {time.monotonic() - t0:.0f} s: {catalog}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    print(f"{args.size}² x 4 dates, min_time(NDVI), {args.per_zoom} tiles per zoom 9-14, "
          f"{args.clients} clients")
    print(f"{'':<48} {'tiles':>5} {'tiles/s':>8} {'p50 ms':>8} {'hits':>5}  sources")
    figures = []
    for workers in args.workers:
        rows = run(workers, catalog, args.size, args, tmp)
        figures += figures_of(workers, dict(rows), args.clients)
        for label, r in rows:
            if not r:
                print(label, flush=True)
                continue
            hits = f"{r['hit_ratio']:.2f}" if "hit_ratio" in r else ""
            fail = f"  FAILED {r['n_failed']}: {r['failures']}" if r.get("n_failed") else ""
            print(f"{label:<48} {r['n']:>5} {r['tiles_s']:>8.1f} {r['p50_ms']:>8.1f} "
                  f"{hits:>5}  {r.get('sources', '')}{fail}", flush=True)
    save_figures("cache", args.label, figures)


def figures_of(workers: int, rows: dict[str, dict], clients: int) -> list[dict]:
    """The figures of issue 23's table among one worker count's rows."""

    def get(label: str, key: str):
        return rows.get(f"w={workers} {label}", {}).get(key)

    return [
        figure(f"shared cache: second pass / first, median, {workers} workers",
               get("second pass (fresh connections)", "p50_ms"),
               get("first pass (fresh connections)", "p50_ms"), "the first pass", "ms",
               "<= 0.1"),
        figure(f"warm tiles/s, {clients} clients, {workers} workers",
               get(f"warm, {clients} keep-alive clients", "tiles_s"),
               get("TiTiler, one B04 COG", "tiles_s"), "TiTiler (one B04 COG)", "tiles/s"),
        figure(f"a finished job's tiles, median, {workers} workers",
               get("finished job, stored COG (cold)", "p50_ms"),
               get("TiTiler, the result COG", "p50_ms"), "TiTiler on the result COG", "ms",
               "<= 0.5"),
    ]


if __name__ == "__main__":
    main()
