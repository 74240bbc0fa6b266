"""Batch ``min_time(NDVI)`` against a plain script (issues 5, 12, 23). Prints a table; no asserts.

    .venv/bin/python bench/bench_batch.py [--size 8192] [--dates 4] [--block 2048]
                                          [--data-dir DIR] [--workers 2] [--no-plain]
                                          [--repeat 3] [--bbox]

The measured job is the 1.x graph over the whole collection (``load_collection`` with no
spatial extent, ``ndvi``, ``min`` over time, GTiff): its native grid is the files' own
(issue 23); the table gives its grid (transform, shape) beside the source's. ``--bbox``
measures the 0.0.2 job with a bbox exactly on the files' grid instead.

1. Writes (once, cached in ``--data-dir``, default ``$XDG_CACHE_HOME/tileserver-bench``)
   a STAC catalog with one product ``BIG``: ``--dates`` acquisitions of a
   ``--size`` x ``--size`` px scene at 10 m in EPSG:32632, bands B04 and B08 as uint16
   DEFLATE COGs (512 px tiles, overviews), with nodata holes that move with the date.
2. The plain script a user would write, in one process: read 2048 x 2048 windows with
   rasterio, NDVI and ``nanmin`` over the dates with numpy, write one COG with GDAL's COG
   driver (DEFLATE, ``NUM_THREADS=ALL_CPUS``). Wall time and peak RSS (``ru_maxrss``).
3. For each worker count, starts ``tileserver serve`` (gunicorn, 1 web worker) with an
   embedded LocalCluster of that many worker processes (1 thread each), warms it up on a
   small job, then creates the job (min over time of the NDVI of BIG) over the whole scene
   through the HTTP API, queues it and polls ``GET /jobs/{id}`` every 0.2 s until it is
   finished. Wall time is from the queue request to ``finished`` (the COG included).
   Peak RSS (``VmHWM``) of the gunicorn worker that drives the job (it also runs the Dask
   scheduler) and of each Dask worker process; the longest time the progress percentage
   stood still while the job ran. For each run, how many cores other processes of the
   machine kept busy meanwhile (``/proc/stat`` minus our CPU time): on a shared machine
   the job's processes form one scheduling group (Linux autogroup) that gets no more
   CPU than the script's when others are busy, whatever their ``nice``.
4. Each batch result is compared with the plain script's COG: same values at full
   resolution and in every overview level, and whether the files are byte-identical.

Medians over ``--repeat`` runs; the last lines give batch / plain wall-time ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, Tileserver, figure, save_figures  # noqa: E402

ORIGIN = (600_000.0, 5_200_000.0)
RES = 10.0


# -- data ------------------------------------------------------------------------------------


def band_block(date: int, band: str, rows: slice, cols: slice) -> np.ndarray:
    """Deterministic uint16 values of a window (0 = nodata), cheap to make (broadcasting)."""
    y = np.arange(rows.start, rows.stop, dtype=np.int64)[:, None]
    x = np.arange(cols.start, cols.stop, dtype=np.int64)[None, :]
    base = 900 if band == "B04" else 3200
    wave = (np.sin(x / 97.0 + date) * np.cos(y / 61.0 - date)).astype(np.float32)
    noise = ((x * 7919 + y * 104729 + date * 13 + len(band)) % 211 - 105).astype(np.float32)
    vals = np.clip(base + 700 * wave + noise + 120 * date, 1, 10000).astype(np.uint16)
    vals[(x + y + 300 * date) % 1500 < 40] = 0
    return vals


def write_scene(root: Path, size: int, dates: int) -> Path:
    """The catalog (written once); returns the catalog.json path."""
    import pystac
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin
    from rasterio.warp import transform_bounds
    from shapely.geometry import box, mapping

    marker = root / f"done-{size}-{dates}-deflate"
    if marker.exists():
        return root / "catalog.json"
    transform = from_origin(*ORIGIN, RES, RES)
    start = datetime(2021, 6, 1, 10, tzinfo=UTC)
    catalog = pystac.Catalog("bench", "batch benchmark scene")
    col = pystac.Collection("BIG", "synthetic scene", pystac.Extent(
        pystac.SpatialExtent([[-180, -90, 180, 90]]),
        pystac.TemporalExtent([[start, start + timedelta(days=10 * dates)]])))
    for d in range(dates):
        item_dir = root / "BIG" / f"big_{d}"
        item_dir.mkdir(parents=True, exist_ok=True)
        assets = {}
        for band in ("B04", "B08"):
            path = item_dir / f"{band}.tif"
            profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint16",
                           crs="EPSG:32632", transform=transform, nodata=0, tiled=True,
                           blockxsize=512, blockysize=512, compress="deflate", bigtiff="YES")
            with rasterio.open(path, "w", **profile) as dst:
                for r0 in range(0, size, 512):
                    rows = slice(r0, min(size, r0 + 512))
                    dst.write(band_block(d, band, rows, slice(0, size)), 1,
                              window=((rows.start, rows.stop), (0, size)))
                dst.build_overviews([2, 4, 8, 16, 32], Resampling.nearest)
            assets[band] = pystac.Asset(str(path), media_type=pystac.MediaType.COG)
            print(f"  wrote {path}", file=sys.stderr)
        bounds = transform_bounds("EPSG:32632", "EPSG:4326", ORIGIN[0], ORIGIN[1] - size * RES,
                                  ORIGIN[0] + size * RES, ORIGIN[1])
        item = pystac.Item(f"big_{d}", mapping(box(*bounds)), list(bounds),
                           start + timedelta(days=10 * d), {"proj:epsg": 32632})
        for k, a in assets.items():
            item.add_asset(k, a)
        col.add_item(item)
    catalog.add_child(col)
    catalog.normalize_hrefs(str(root))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    marker.touch()
    return root / "catalog.json"


# -- the plain reference ---------------------------------------------------------------------


PLAIN = textwrap.dedent("""
    import resource, sys, time, warnings
    import numpy as np, rasterio
    from rasterio.windows import Window
    root, out, block, dates = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    warnings.simplefilter("ignore", RuntimeWarning)  # nanmin of all-NaN pixels
    t0 = time.perf_counter()
    srcs = [[rasterio.open(f"{root}/BIG/big_{d}/{b}.tif") for b in ("B04", "B08")]
            for d in range(dates)]
    ref = srcs[0][0]
    profile = dict(driver="COG", width=ref.width, height=ref.height, count=1,
                   dtype="float32", crs=ref.crs, transform=ref.transform, nodata=float("nan"),
                   compress="DEFLATE", num_threads="ALL_CPUS", overview_resampling="nearest",
                   bigtiff="IF_SAFER")
    with rasterio.open(out, "w", **profile) as dst:  # GDAL's COG driver, written on close
        for r in range(0, ref.height, block):
            for c in range(0, ref.width, block):
                win = Window(c, r, min(block, ref.width - c), min(block, ref.height - r))
                stack = []
                for red_src, nir_src in srcs:
                    red = red_src.read(1, window=win).astype(np.float32)
                    nir = nir_src.read(1, window=win).astype(np.float32)
                    bad = (red == 0) | (nir == 0) | (red + nir == 0)
                    ndvi = (nir - red) / np.where(bad, 1, nir + red)
                    ndvi[bad] = np.nan
                    stack.append(ndvi)
                dst.write(np.nanmin(np.stack(stack), axis=0), 1, window=win)
        computed = time.perf_counter() - t0
    wall = time.perf_counter() - t0
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(wall, computed, use.ru_maxrss * 1024, use.ru_utime + use.ru_stime)
""")


def run_plain(root: Path, out: Path, dates: int) -> tuple[float, float, int, float]:
    """Wall time, time to compute (before the COG is written), peak RSS (bytes) and CPU
    time (user + system, all threads) of the plain script."""
    proc = subprocess.run([sys.executable, "-c", PLAIN, str(root), str(out), "2048",
                           str(dates)], capture_output=True, text=True, check=True)
    wall, computed, rss, cpu = proc.stdout.split()
    return float(wall), float(computed), int(rss), float(cpu)


def busy_seconds() -> float:
    """CPU seconds all processes of the machine have used (``/proc/stat``, every core)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def others(busy: float, ours: float, wall: float) -> str:
    """How many cores other processes kept busy while we ran ``wall`` seconds."""
    return f"others used {max(0.0, busy - ours) / wall:.1f} of {os.cpu_count()} cores"


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes so far (all their threads)."""
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


# -- the server ------------------------------------------------------------------------------


def peak_rss(pid: int) -> int:
    """Peak resident set size of a process (``VmHWM``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def process_roles(server: psutil.Process) -> dict[str, list[int]]:
    """PIDs of the gunicorn worker(s) and of the Dask worker processes they spawned."""
    web = [c.pid for c in server.children()]
    dask = [c.pid for pid in web for c in psutil.Process(pid).children(recursive=True)
            if "spawn_main" in " ".join(c.cmdline())]
    return {"web": web, "dask": dask}


def wait_finished(api: requests.Session, url: str, job_id: str, timeout: float = 7200,
                  every: float = 0.5) -> tuple[dict, list[tuple[float, float]]]:
    """Poll the job until it ends; returns it and the ``(time, progress)`` changes."""
    start = time.perf_counter()
    deadline = start + timeout
    changes: list[tuple[float, float]] = [(0.0, -1.0)]
    while time.perf_counter() < deadline:
        job = api.get(f"{url}/jobs/{job_id}").json()
        if job.get("progress") != changes[-1][1]:
            changes.append((time.perf_counter() - start, job.get("progress")))
        if job["status"] in ("finished", "error", "canceled"):
            return job, changes[1:]
        time.sleep(every)
    raise TimeoutError(job_id)


def graph(bbox: dict | None = None) -> dict:
    """The 0.0.2 job over a bbox (the warm-up, and ``--bbox``)."""
    node: dict = {"product_id": "BIG"}
    if bbox:
        node = {"process_id": "filter_bbox", "args": {"imagery": node, **bbox}}
    return {"process_id": "min_time", "args": {"imagery": {
        "process_id": "NDVI", "args": {"imagery": node, "red": "B04", "nir": "B08"}}}}


def whole_graph() -> dict:
    """The 1.x job over the whole collection: no bbox, the most natural graph."""
    return {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "BIG", "spatial_extent": None, "temporal_extent": None,
            "bands": ["B04", "B08"]}},
        "ndvi": {"process_id": "ndvi", "arguments": {"data": {"from_node": "load"}}},
        "min": {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "ndvi"}, "dimension": "t", "reducer": {"process_graph": {
                "r": {"process_id": "min", "arguments": {"data": {"from_parameter": "data"}},
                      "result": True}}}}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "min"}, "format": "GTiff"}, "result": True},
    }


def create(api: requests.Session, url: str, whole: bool, size: int) -> str:
    """Create the measured job: the whole collection (1.x, no bbox) or the 0.0.2 bbox on
    the files' grid (``--bbox``); returns its id."""
    if whole:
        resp = api.post(f"{url}/openeo/1.2/jobs", json={"process": {
            "process_graph": whole_graph()}})
        resp.raise_for_status()
        return resp.headers["OpenEO-Identifier"]
    return api.post(f"{url}/jobs", json={"process_graph": graph(bbox(size))}).json()["job_id"]


def result_file(home: Path, job_id: str) -> Path:
    """The job's GeoTIFF in the server's results directory."""
    found = sorted((home / "results" / job_id).rglob("*.tif")) or sorted(
        home.rglob(f"*{job_id}*/*.tif"))
    if not found:
        raise FileNotFoundError(f"no result file of job {job_id} under {home}")
    return found[0]


def grid_of(path: Path) -> tuple[tuple[float, ...], tuple[int, int]]:
    """``(transform coefficients, (height, width))`` of a file."""
    import rasterio

    with rasterio.open(path) as src:
        return tuple(src.transform)[:6], (src.height, src.width)


def catalog_size(catalog: Path) -> int:
    """Width of the scene (from its first file)."""
    import rasterio

    with rasterio.open(catalog.parent / "BIG" / "big_0" / "B04.tif") as src:
        return src.width


def bbox(size: int) -> dict:
    """The ``filter_bbox`` arguments of the scene's upper-left ``size`` x ``size`` pixels."""
    return {"left": ORIGIN[0], "right": ORIGIN[0] + size * RES, "top": ORIGIN[1],
            "bottom": ORIGIN[1] - size * RES, "srs": "EPSG:32632"}


def run_batch(catalog: Path, workers: int, block: int | None, home: Path,
              whole: bool = True) -> dict:
    """Serve, warm up, run the big job; returns timings, peak RSS and the result path."""
    config = home / "bench.yaml"
    home.mkdir(parents=True, exist_ok=True)
    # the default settings of config/default.yaml, plus the batch keys
    config.write_text((REPO / "config" / "default.yaml").read_text()
                      + f"\nbatch_workers: {workers}\n"
                      + (f"batch_block_size: {block}\n" if block else ""))
    server = Tileserver(catalog, home, env={"TILESERVER_CONFIG": str(config),
                                            "TILESERVER_DASK_SCHEDULER": None},
                        timeout=300, cwd=home)
    api = requests.Session()
    with server as url:
        # warm-up: starts the cluster and imports in every worker
        warm = api.post(f"{url}/jobs", json={"process_graph": graph(bbox(1024))}).json()
        api.patch(f"{url}/jobs/{warm['job_id']}/queue")
        wait_finished(api, url, warm["job_id"])
        size = int(catalog_size(catalog))
        job_id = create(api, url, whole, size)
        roles = process_roles(psutil.Process(server.proc.pid))
        cpu0 = [cpu_seconds(roles["web"]), cpu_seconds(roles["dask"])]
        busy0 = busy_seconds()
        t0 = time.perf_counter()
        api.patch(f"{url}/jobs/{job_id}/queue")
        job, changes = wait_finished(api, url, job_id, every=0.2)
        wall = time.perf_counter() - t0
        cpu = [cpu_seconds(roles["web"]) - cpu0[0], cpu_seconds(roles["dask"]) - cpu0[1]]
        busy = busy_seconds() - busy0
        logs = api.get(f"{url}/jobs/{job_id}/logs").json()
        if job["status"] != "finished":
            raise RuntimeError(logs)
        times = [t for t, _ in changes]
        return {
            "wall": wall, "blocks": job["blocks"]["total"], "cpu": cpu,
            "others": others(busy, sum(cpu), wall),
            "web_rss": max(peak_rss(p) for p in roles["web"]),
            "dask_rss": [peak_rss(p) for p in roles["dask"]],
            "result": result_file(home, job_id),
            "others_cores": max(0.0, busy - sum(cpu)) / wall,
            # the longest time the progress stood still, and at which value
            "stall": max((b - a, p) for a, b, p in zip(
                [0.0, *times], [*times, wall], [0.0, *(p for _, p in changes)], strict=True)),
            "phases": [e["message"] for e in logs if "(" in e["message"] and " s)" in
                       e["message"]],
            "layout": next((e["message"] for e in logs if e["message"].startswith(
                "running on")), ""),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--dates", type=int, default=4)
    parser.add_argument("--block", type=int, default=None,
                        help="batch_block_size (default: the server's)")
    parser.add_argument("--workers", default="2")
    parser.add_argument("--no-plain", action="store_true")
    parser.add_argument("--bbox", action="store_true",
                        help="measure the 0.0.2 job with a bbox on the files' grid instead of "
                             "the 1.x job over the whole collection (no bbox)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of everything (medians)")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="scene cache (default: $XDG_CACHE_HOME/tileserver-bench/...)")
    args = parser.parse_args()
    data_dir = args.data_dir or cache / "tileserver-bench" / f"batch{args.size}"

    t = time.perf_counter()
    catalog = write_scene(data_dir, args.size, args.dates)
    print(f"scene {args.size}x{args.size} px x {args.dates} dates x 2 bands "
          f"(ready in {time.perf_counter() - t:.0f} s); {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    mib = 1024 * 1024
    counts = [int(w) for w in args.workers.split(",")]
    walls: dict[str, list[float]] = {}
    peaks: dict[str, list[str]] = {}
    busy_others: dict[str, list[float]] = {}
    grids: dict[str, tuple] = {}
    src_grid = grid_of(catalog.parent / "BIG" / "big_0" / "B04.tif")
    job_kind = "0.0.2 job, bbox on the files' grid" if args.bbox else \
        "1.x job, whole collection (no bbox)"
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
            plain = None
            if not args.no_plain:
                out = Path(tmp) / "plain.tif"
                busy = busy_seconds()
                wall, computed, rss, cpu = run_plain(data_dir, out, args.dates)
                busy = busy_seconds() - busy
                plain = out
                walls.setdefault("plain", []).append(wall)
                busy_others.setdefault("plain", []).append(max(0.0, busy - cpu) / wall)
                peaks.setdefault("plain", []).append(f"{rss / mib:.0f}")
                print(f"  [{i + 1}] plain: {wall:.1f} s ({computed:.1f} s to compute, "
                      f"{wall - computed:.1f} s to write the COG), CPU {cpu:.1f} s, "
                      f"peak RSS {rss / mib:.0f} MiB; {others(busy, cpu, wall)}",
                      flush=True)
            for n in counts:
                res = run_batch(catalog, n, args.block, Path(tmp) / f"home{n}",
                                whole=not args.bbox)
                workers = "/".join(f"{r / mib:.0f}" for r in res["dask_rss"])
                walls.setdefault(f"batch{n}", []).append(res["wall"])
                busy_others.setdefault(f"batch{n}", []).append(res["others_cores"])
                grids[f"batch{n}"] = grid_of(res["result"])
                print(f"  [{i + 1}] {res['layout']}", flush=True)
                peaks.setdefault(f"batch{n}", []).append(
                    f"{res['web_rss'] / mib:.0f} | {workers}")
                print(f"  [{i + 1}] batch with {n} worker(s), {res['blocks']} blocks: "
                      f"{res['wall']:.1f} s ({'; '.join(res['phases'])}), CPU "
                      f"{res['cpu'][0]:.1f} s server, {res['cpu'][1]:.1f} s workers, "
                      f"progress still "
                      f"for at most {res['stall'][0]:.1f} s (at {res['stall'][1]} %), "
                      f"peak RSS server "
                      f"{res['web_rss'] / mib:.0f} MiB, workers {workers} MiB; "
                      f"{res['others']}", flush=True)
                if plain is not None:
                    compare(plain, res["result"])
    print(f"\nmeasured: {job_kind}, {args.size}x{args.size} px x {args.dates} dates")
    print(f"\n{'run':34} {'median wall s':>14}  {'runs':24} {'others cores':>12}  "
          "peak RSS MiB (server | workers)")
    for key, values in walls.items():
        name = "plain rasterio+numpy, 1 process" if key == "plain" else (
            f"batch, {key[5:]} worker(s)")
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name:34} {statistics.median(values):14.1f}  {runs:24} "
              f"{statistics.median(busy_others[key]):12.1f}  {'; '.join(peaks[key])}")
    print(f"\nsource grid: transform {src_grid[0]}, shape {src_grid[1]}")
    for key, (transform, shape) in grids.items():
        same = "the source's" if (transform, shape) == src_grid else "DIFFERS"
        print(f"job grid ({key[5:]} worker(s)): transform {transform}, shape {shape} "
              f"({same})")
    if "plain" in walls:
        base = statistics.median(walls["plain"])
        for n in counts:
            ratio = statistics.median(walls[f"batch{n}"]) / base
            print(f"batch with {n} worker(s): {ratio:.2f}x the plain script's median wall time")
        job = "with a bbox on the files' grid" if args.bbox else "over a whole collection (no bbox)"
        figures = [figure(f"batch job {job}, {args.size}² x {args.dates} dates -> COG, "
                          f"{n} worker(s)", statistics.median(walls[f"batch{n}"]), base,
                          "plain rasterio + numpy script", "s", "<= 0.6")
                   for n in counts]
        save_figures("batch", "bbox" if args.bbox else "after", figures,
                     grids={k: [list(t), list(s)] for k, (t, s) in grids.items()},
                     source_grid=[list(src_grid[0]), list(src_grid[1])])
    print(json.dumps({"size": args.size, "dates": args.dates, "block": args.block}))


def compare(plain: Path, batch: Path) -> None:
    """Check the batch result against the plain one: values of every level, and bytes."""
    import rasterio

    differ = 0
    with rasterio.open(plain) as a, rasterio.open(batch) as b:
        assert (a.width, a.height) == (b.width, b.height), (a.shape, b.shape)
        assert a.overviews(1) == b.overviews(1), (a.overviews(1), b.overviews(1))
        for _, win in a.block_windows(1):
            x, y = a.read(1, window=win), b.read(1, window=win)
            differ += int((~np.isclose(x, y, rtol=1e-6, equal_nan=True)).sum())
        for level in range(len(a.overviews(1))):
            with rasterio.open(plain, overview_level=level) as oa, \
                    rasterio.open(batch, overview_level=level) as ob:
                differ += int((~np.isclose(oa.read(1), ob.read(1), equal_nan=True)).sum())
    same_bytes = plain.read_bytes() == batch.read_bytes()
    print(f"  values vs plain: {'identical' if differ == 0 else f'{differ} pixels differ'}"
          f"{', byte-identical files' if same_bytes else ''}", flush=True)


if __name__ == "__main__":
    main()
