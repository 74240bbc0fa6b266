"""WMTS tile throughput (issue 3). Prints a table; no assertions.

    .venv/bin/python bench/bench_wmts.py [--demo-dir DIR] [--per-zoom 24] [--clients 8]
                                         [--rounds 3] [--titiler-venv /tmp/titiler-venv]

Against a ``tileserver serve`` process (gunicorn, 1 worker x 8 threads) on loopback, with
8 concurrent clients (a thread pool of ``requests`` sessions), over GoogleMapsCompatible
tiles spread through zoom levels 9-14 of the job's extent (taken from the layer's
TileMatrixSetLimits in the capabilities; the same tiles for every server):

(a) a single-date single-band layer (``filter_bands`` B04 of the 2017-01-15 L2A scene) vs
    TiTiler (``titiler.core`` ``TilerFactory`` under uvicorn, installed in a SEPARATE venv:
    ``python3 -m venv /tmp/titiler-venv && /tmp/titiler-venv/bin/pip install titiler.core
    uvicorn``) serving the same COG, in the same run. A priming pass (untimed) reads the
    file once so that both servers find it in the OS page cache; each round starts a fresh
    tileserver (cold node cache) and alternates which server goes first; medians are shown.
(b) the openEO example ``min_time(NDVI(...))`` over January 2017: a cold pass (fresh node
    cache) and a warm pass over the same tiles, with the cache hit ratio from ``/metrics``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

import requests
from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Tileserver, free_port, load, start, stop  # noqa: E402

from tileserver.demo import example_graph, write_demo_catalog  # noqa: E402

EXAMPLE = example_graph()
SCENE_DAY = "2017-01-15"
SINGLE = {"process_id": "filter_bands", "args": {"bands": ["B04"], "imagery": {
    "process_id": "filter_daterange", "args": {
        "imagery": {"product_id": "S2_L2A_T32TPS_20M"}, "from": SCENE_DAY, "to": SCENE_DAY}}}}
NS = {"w": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}


def tiles_from_capabilities(caps: bytes, layer: str, per_zoom: int, seed: int = 3):
    """``[(z, row, col)]``: up to ``per_zoom`` tiles per zoom 9-14 inside the layer's limits."""
    doc = etree.fromstring(caps)
    rng = random.Random(seed)
    out = []
    for lyr in doc.findall("w:Contents/w:Layer", NS):
        if lyr.findtext("ows:Identifier", namespaces=NS) != layer:
            continue
        for link in lyr.findall("w:TileMatrixSetLink", NS):
            if link.findtext("w:TileMatrixSet", namespaces=NS) != "GoogleMapsCompatible":
                continue
            for lim in link.findall("w:TileMatrixSetLimits/w:TileMatrixLimits", NS):
                z = int(lim.findtext("w:TileMatrix", namespaces=NS))
                if not 9 <= z <= 14:
                    continue
                r0, r1, c0, c1 = (int(lim.findtext(f"w:{k}", namespaces=NS)) for k in
                                  ("MinTileRow", "MaxTileRow", "MinTileCol", "MaxTileCol"))
                cells = [(z, r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]
                out += rng.sample(cells, min(per_zoom, len(cells)))
    rng.shuffle(out)
    return out


def cache_counters(base: str) -> tuple[float, float]:
    """``(hits, misses)`` of the node cache from ``/metrics``."""
    hits = misses = 0.0
    for line in requests.get(f"{base}/metrics", timeout=30).text.splitlines():
        if line.startswith("tileserver_cache_hits_total"):
            hits = float(line.split()[-1])
        elif line.startswith("tileserver_cache_misses_total"):
            misses = float(line.split()[-1])
    return hits, misses


def job_service(base: str, graph: dict, args: dict | None = None) -> tuple[str, str]:
    """Create a job and a wmts service; ``(job_id, service_url)``."""
    job = requests.post(f"{base}/jobs", json={"process_graph": graph}, timeout=60)
    job.raise_for_status()
    job_id = job.json()["job_id"]
    svc = requests.post(f"{base}/services", json={"job_id": job_id, "type": "wmts",
                                                  "args": args or {}}, timeout=60)
    svc.raise_for_status()
    return job_id, svc.json()["service_url"]


TITILER_APP = textwrap.dedent("""
    from fastapi import FastAPI
    from titiler.core.factory import TilerFactory

    app = FastAPI()
    app.include_router(TilerFactory().router, prefix="/cog")
""")


def row(name: str, r: dict) -> str:
    """One table row."""
    fail = f"  FAILED {r['n_failed']}: {r['failures']}" if r["n_failed"] else ""
    fail += f"  ({r['retries']} retried after a connection reset)" if r["retries"] else ""
    return (f"{name:<46} {r['n']:>5} {r['tiles_s']:>9.1f} {r['p50_ms']:>9.1f} "
            f"{r['p95_ms']:>9.1f}{fail}")


def main() -> None:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", default=os.environ.get(
        "TILESERVER_TEST_DEMO_DIR", str(Path.home() / ".cache" / "tileserver-bench" / "demo")))
    ap.add_argument("--per-zoom", type=int, default=24)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--titiler-venv", default="/tmp/titiler-venv")
    args = ap.parse_args()

    catalog = write_demo_catalog(Path(args.demo_dir))
    tmp = Path(tempfile.mkdtemp(prefix="bench-wmts-"))
    cog = _scene_cog(catalog.parent, SCENE_DAY, "B04")
    titiler, tport = None, free_port()
    tt_bin = Path(args.titiler_venv) / "bin" / "uvicorn"
    if tt_bin.exists():
        (tmp / "titiler_app.py").write_text(TITILER_APP)
        titiler = start([str(tt_bin), "titiler_app:app", "--app-dir", str(tmp), "--port",
                         str(tport), "--log-level", "warning"], dict(os.environ),
                        f"http://127.0.0.1:{tport}/docs", tmp / "titiler.log")
    runs: dict[str, list[dict]] = {}
    ratios: dict[str, list[float]] = {}
    try:
        for rnd in range(args.rounds):
            with Tileserver(catalog, tmp / f"home{rnd}", args.workers) as base:
                # (a) single date, single band vs TiTiler; the order alternates per round
                job, url = job_service(base, SINGLE, {"colormap": "gray", "range": [0, 3000]})
                caps = requests.get(f"{url}/1.0.0/WMTSCapabilities.xml", timeout=60).content
                # TiTiler answers 500 for tiles outside the file: keep tiles inside it
                tiles = inside_cog(tiles_from_capabilities(caps, job, args.per_zoom), cog)
                ts_urls = [f"{url}/1.0.0/{job}/default/GoogleMapsCompatible/{z}/{r}/{c}.png"
                           for z, r, c in tiles]
                tt_urls = [f"http://127.0.0.1:{tport}/cog/tiles/WebMercatorQuad/{z}/{c}/{r}"
                           f".png?url={cog}&rescale=0,3000&colormap_name=gray"
                           for z, r, c in tiles]
                if rnd == 0 and titiler is not None:
                    load(tt_urls, args.clients)  # priming: the COG into the OS page cache
                order = [("ts", ts_urls), ("tt", tt_urls)]
                if rnd % 2:
                    order.reverse()
                for name, urls in order:
                    if name == "tt" and titiler is None:
                        continue
                    label = ("(a) tileserver single band, cold cache" if name == "ts"
                             else "(a) TiTiler, same COG and tiles")
                    runs.setdefault(label, []).append(load(urls, args.clients))
                runs.setdefault("(a) tileserver single band, warm cache", []).append(
                    load(ts_urls, args.clients))
                # (b) the openEO example, cold then warm
                job, url = job_service(base, EXAMPLE)
                caps = requests.get(f"{url}/1.0.0/WMTSCapabilities.xml", timeout=60).content
                tiles = tiles_from_capabilities(caps, job, args.per_zoom)
                urls = [f"{url}/1.0.0/{job}/default/GoogleMapsCompatible/{z}/{r}/{c}.png"
                        for z, r, c in tiles]
                for temp in ("cold", "warm"):
                    label = f"(b) min_time(NDVI) Jan 2017, {temp} cache"
                    h0, m0 = cache_counters(base)
                    runs.setdefault(label, []).append(load(urls, args.clients))
                    h1, m1 = cache_counters(base)
                    ratios.setdefault(label, []).append(
                        (h1 - h0) / max(1.0, (h1 - h0) + (m1 - m0)))
    finally:
        if titiler is not None:
            stop(titiler)
    print(f"{args.clients} clients, {args.per_zoom} tiles per zoom 9-14, tileserver "
          f"workers={args.workers}, median of {args.rounds} rounds (fresh server per round)"
          + ("" if titiler else f"; TiTiler skipped: {tt_bin} not found"))
    print(f"{'':<46} {'tiles':>5} {'tiles/s':>9} {'p50 ms':>9} {'p95 ms':>9}")
    for label, results in runs.items():
        line = row(label, median_result(results))
        if label in ratios:
            line += f"   hit ratio {statistics.median(ratios[label]):.2f}"
        print(line)


def median_result(results: list[dict]) -> dict:
    """The per-metric median of several rounds (failures summed)."""
    out = {k: statistics.median(r[k] for r in results)
           for k in ("n", "tiles_s", "p50_ms", "p95_ms")}
    out["n"] = int(out["n"])
    out["n_failed"] = sum(r["n_failed"] for r in results)
    out["retries"] = sum(r["retries"] for r in results)
    out["failures"] = [f for r in results for f in r["failures"]][:3]
    return out


def inside_cog(tiles, cog: str):
    """The tiles whose centre lies inside the file's footprint."""
    import rasterio  # noqa: PLC0415
    from rasterio.warp import transform_bounds  # noqa: PLC0415

    from tileserver.maps.tilematrix import get_tms, tile_bounds  # noqa: PLC0415

    with rasterio.open(cog) as ds:
        left, bottom, right, top = transform_bounds(ds.crs, "EPSG:3857", *ds.bounds)
    tms = get_tms("GoogleMapsCompatible")
    out = []
    for z, r, c in tiles:
        b = tile_bounds(tms, tms.matrix(str(z)), r, c)
        x, y = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        if left < x < right and bottom < y < top:
            out.append((z, r, c))
    return out


def _scene_cog(root: Path, day: str, band: str) -> str:
    """Path of ``band`` of the L2A item acquired on ``day``."""
    collection = json.loads((root / "S2_L2A_T32TPS_20M" / "collection.json").read_text())
    for link in collection["links"]:
        if link["rel"] != "item":
            continue
        item_path = (root / "S2_L2A_T32TPS_20M" / link["href"]).resolve()
        item = json.loads(item_path.read_text())
        if item["properties"]["datetime"].startswith(day):
            return str((item_path.parent / item["assets"][band]["href"]).resolve())
    raise SystemExit(f"no {day} item")


if __name__ == "__main__":
    main()
