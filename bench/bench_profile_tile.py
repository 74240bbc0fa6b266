"""Where the milliseconds of a cold tile go (issue 23). Prints a table; no assertions.

    .venv/bin/python bench/bench_profile_tile.py [--size 8192] [--data-dir DIR]
        [--per-zoom 16] [--clients 1 8] [--repo PATH] [--label NAME] [--cprofile 25]

In one process, through the WSGI app (Flask's test client: no sockets, so what is left is
ours): a single-band layer (``filter_bands`` B04 of one date of the synthetic ``SYN``
product of ``bench_cache.py``, viridis over 0..3000) and the ``min_time(NDVI)`` layer over
its 4 dates, each tile requested once (cold: the node and tile caches have never seen it),
GoogleMapsCompatible zooms 10-15 inside the file. Each stage is timed by a wrapper around
the functions that do it; a stage's time excludes the stages it calls (so the column sums
to the request), per thread. Reads run on the read pool beside the request thread (a single
read runs in the request thread): their stages
(open, read/decode, nodata, warp) are shown, and the request thread's wait for them is
"load: items, hand-off, wait".

``--clients 8`` runs 8 request threads at once (the stage times then include the waits
for the GIL and the cores). ``--repo PATH`` profiles another checkout (e.g. the main
branch: "before"); ``--label`` names the column in ``bench/results/profile_tile.json``, which
``run_all.py`` reads. ``--cprofile N`` also prints cProfile's top N functions (one client).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import json
import pstats
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "profile_tile.json"

#: Stages: name -> functions ("module:attribute.path"); missing ones are skipped (another
#: checkout may not have them).
STAGES = {
    "cache key (tile key, versions)": ["tileserver.maps.served:ServedJob.tile_key",
                                       "tileserver.engine.evaluator:Engine.version"],
    "catalog lookup (items)": ["tileserver.data.model:Product.items_for",
                               "tileserver.data.model:Product.version_key"],
    "cache lookups (LRU, shared tier)": [
        "tileserver.cache.memory:NodeCache.get", "tileserver.cache.memory:NodeCache.put",
        "tileserver.cache.memory:NodeCache.get_or_compute",
        "tileserver.cache.shared:SharedTier.get", "tileserver.cache.shared:SharedTier.put",
        "tileserver.cache.codec:dump_encoded", "tileserver.cache.codec:load_encoded",
        "tileserver.maps.served:cached_answer"],
    "admission, planning": ["tileserver.engine.evaluator:Engine.admitted"],
    "load: items, hand-off, wait": ["tileserver.engine.evaluator:Engine._load"],
    "open (dataset, header)": ["rasterio:open", "tileserver.data.reader:file_info",
                               "tileserver.data.handles:DatasetCache.acquire"],
    "read/decode": ["rasterio.io:DatasetReader.read"],
    "nodata mask": ["rasterio.io:DatasetReader.read_masks"],
    "read_band (rest)": ["tileserver.engine.evaluator:read_band",
                         "tileserver.engine.evaluator:read_window",
                         "tileserver.data.stored:read_window"],
    "warp": ["tileserver.data.reader:reproject"],
    "compute (processes)": ["tileserver.engine.evaluator:Engine.evaluate",
                            "tileserver.engine.evaluator:Engine.evaluate_node"],
    "style (values to colours)": ["tileserver.render.encoders:render_rgba",
                                  "tileserver.render.encoders:render_indexed"],
    "encode (PNG)": ["tileserver.render.encoders:encode_rgba",
                     "tileserver.render.encoders:encode_indexed"],
    "render (rest)": [],
    "metrics": ["prometheus_client.metrics:Counter.inc", "prometheus_client.metrics:Gauge.set",
                "prometheus_client.metrics:Histogram.observe",
                "prometheus_client.metrics:MetricWrapperBase.labels"],
    "ETag, conditional": ["tileserver.web.conditional:conditional"],
}
READ_STAGES = ("open (dataset, header)", "read/decode", "nodata mask", "read_band (rest)",
               "warp")
REST = "WSGI, Flask, routing, served job (rest)"


class Timers:
    """Per-thread stacks of exclusive times."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()
        self.on = False

    def wrap(self, stage: str, fn):
        timers = self

        def wrapper(*args, **kwargs):
            if not timers.on:
                return fn(*args, **kwargs)
            stack = getattr(timers.local, "stack", None)
            if stack is None:
                stack = timers.local.stack = []
            stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                children = stack.pop()
                if stack:
                    stack[-1] += dt
                with timers.lock:
                    timers.totals[stage] += dt - children
                    timers.calls[stage] += 1

        wrapper.__wrapped__ = fn
        return wrapper

    def wrap_contextmanager(self, stage: str, fn):
        """``Engine.admitted`` is a context manager: its enter and exit are the stage, its
        body is the caller's."""
        from contextlib import contextmanager

        timers = self

        def account(dt: float) -> None:
            if not timers.on:
                return
            stack = getattr(timers.local, "stack", None)
            if stack:
                stack[-1] += dt
            with timers.lock:
                timers.totals[stage] += dt

        @contextmanager
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            cm = fn(*args, **kwargs)
            cm.__enter__()
            account(time.perf_counter() - t0)
            try:
                yield
            except BaseException as exc:
                if not cm.__exit__(type(exc), exc, exc.__traceback__):
                    raise
            else:
                t1 = time.perf_counter()
                cm.__exit__(None, None, None)
                account(time.perf_counter() - t1)

        return wrapper


def install(timers: Timers) -> list[str]:
    """Wrap every stage function found; returns the ones not found."""
    missing = []
    for stage, names in STAGES.items():
        for name in names:
            modname, path = name.split(":")
            try:
                obj = importlib.import_module(modname)
            except ImportError:
                missing.append(name)
                continue
            *owners, attr = path.split(".")
            for owner in owners:
                obj = getattr(obj, owner, None)
            if obj is None or not hasattr(obj, attr):
                missing.append(name)
                continue
            fn = getattr(obj, attr)
            if name.endswith("NodeCache.get_or_compute"):
                fn = _wrapping_arg(fn, 2, timers.wrap("compute (processes)", lambda f: f()))
            elif name.endswith(":cached_answer"):
                fn = _wrapping_arg(fn, 2, timers.wrap("render (rest)", lambda f: f()))
            if stage == "admission, planning":
                setattr(obj, attr, timers.wrap_contextmanager(stage, fn))
            else:
                setattr(obj, attr, timers.wrap(stage, fn))
    return missing


def _wrapping_arg(fn, index: int, call):
    """``fn`` whose callable argument ``index`` (counting self) runs through ``call``."""

    def wrapper(*args, **kwargs):
        args = list(args)
        inner = args[index]
        args[index] = lambda: call(inner)
        return fn(*args, **kwargs)

    return wrapper


def tiles_inside(cog: Path, per_zoom: int, seed: int = 5) -> list[tuple[int, int, int]]:
    """``[(z, x, y)]``: ``per_zoom`` WebMercatorQuad tiles per zoom 10-15 inside ``cog``."""
    import random

    import morecantile
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(cog) as ds:
        w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    # keep a margin so that every tile lies inside the file (TiTiler answers 404 outside)
    dx, dy = (e - w) * 0.02, (n - s) * 0.02
    tms = morecantile.tms.get("WebMercatorQuad")
    rng = random.Random(seed)
    out = []
    for z in range(10, 16):
        cells = [t for t in tms.tiles(w + dx, s + dy, e - dx, n - dy, [z])
                 if _inside(tms.bounds(t), (w, s, e, n))]
        out += [(t.z, t.x, t.y) for t in rng.sample(cells, min(per_zoom, len(cells)))]
    rng.shuffle(out)
    return out


def _inside(b, outer) -> bool:
    return b.left >= outer[0] and b.bottom >= outer[1] and b.right <= outer[2] \
        and b.top <= outer[3]


SINGLE_STYLE = {"colormap": "viridis", "range": [0, 3000]}


def single_band_graph(day: str) -> dict:
    """B04 of one date of ``SYN`` (a 0.0.2 graph)."""
    return {"process_id": "filter_bands", "args": {"bands": ["B04"], "imagery": {
        "process_id": "filter_daterange", "args": {
            "imagery": {"product_id": "SYN"}, "from": day, "to": day}}}}


def ndvi_graph() -> dict:
    """``min_time(NDVI(SYN))`` (a 0.0.2 graph)."""
    return {"process_id": "min_time", "args": {"imagery": {
        "process_id": "NDVI", "args": {"red": "B04", "nir": "B08", "imagery": {
            "product_id": "SYN"}}}}}


def layer(client, graph: dict, style: dict | None) -> str:
    """An XYZ template (path only) of a new job's service."""
    job = client.post("/jobs", json={"process_graph": graph})
    assert job.status_code == 201, job.get_data(as_text=True)
    job_id = job.get_json()["job_id"]
    svc = client.post("/services", json={"job_id": job_id, "type": "xyz",
                                         "args": style or {}})
    assert svc.status_code == 201, svc.get_data(as_text=True)
    url = svc.get_json()["service_url"]
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def run(app, template: str, cells, clients: int, timers: Timers) -> tuple[float, int]:
    """Every tile once with ``clients`` threads; ``(wall seconds, tiles)``."""
    queue = list(cells)
    lock = threading.Lock()
    errors: list[str] = []

    def worker():
        client = app.test_client()
        while True:
            with lock:
                if not queue:
                    return
                z, x, y = queue.pop()
            url = template.replace("{z}", str(z)).replace("{x}", str(x)).replace(
                "{y}", str(y))
            resp = timed_get(client, url, timers)
            if resp.status_code != 200:
                errors.append(f"{resp.status_code} {url}")

    threads = [threading.Thread(target=worker) for _ in range(clients if clients > 1 else 0)]
    timers.on = True
    t0 = time.perf_counter()
    if clients == 1:  # in this thread (what cProfile sees)
        worker()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    timers.on = False
    if errors:
        raise SystemExit(f"{len(errors)} failed: {errors[:3]}")
    return wall, len(cells)


def timed_get(client, url: str, timers: Timers):
    """One request, its whole time counted (what no stage takes is the rest)."""
    stack = getattr(timers.local, "stack", None)
    if stack is None:
        stack = timers.local.stack = []
    stack.append(0.0)
    t0 = time.perf_counter()
    try:
        resp = client.get(url)
        resp.get_data()
        return resp
    finally:
        dt = time.perf_counter() - t0
        children = stack.pop()
        with timers.lock:
            timers.totals[REST] += dt - children
            timers.totals["request total"] += dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--data-dir", default=str(Path.home() / ".cache" / "tileserver-bench"))
    ap.add_argument("--per-zoom", type=int, default=16)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repo", default=str(HERE.parent))
    ap.add_argument("--label", default=None)
    ap.add_argument("--cprofile", type=int, default=0)
    ap.add_argument("--dump", help="also write the cProfile stats to DUMP.<layer>")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from bench_cache import synthetic_catalog  # (imports this checkout's tileserver)

    # the profiled checkout's tileserver, not the one bench_cache imported
    for name in [m for m in sys.modules if m == "tileserver" or m.startswith("tileserver.")]:
        del sys.modules[name]
    sys.path.insert(0, str(Path(args.repo).resolve()))

    catalog = synthetic_catalog(Path(args.data_dir), args.size)
    cog = catalog.parent / "d0" / "B04.tif"
    cells = tiles_inside(cog, args.per_zoom)
    item = catalog.parent / "SYN" / "syn_0" / "syn_0.json"
    day = json.loads(item.read_text())["properties"]["datetime"][:10]

    timers = Timers()
    missing = install(timers)
    import tileserver

    print(f"profiling {Path(tileserver.__file__).parent}")
    from tileserver.settings import load_settings
    from tileserver.web.app import create_app

    table: dict[str, dict[str, float]] = {}
    walls: dict[str, float] = {}
    for clients in args.clients:
        for name, graph, style in (("single band", single_band_graph(day), SINGLE_STYLE),
                                   ("NDVI min", ndvi_graph(), None)):
            home = Path(tempfile.mkdtemp(prefix="bench-profile-"))
            settings = load_settings(home=str(home), catalog=str(catalog))
            app = create_app(settings)
            client = app.test_client()
            template = layer(client, graph, style)
            # untimed: the app's first request, the files' headers, the page cache
            warm = tiles_inside(cog, 2, seed=99)
            for z, x, y in warm:
                client.get(template.replace("{z}", str(z)).replace("{x}", str(x))
                           .replace("{y}", str(y)))
            timers.totals.clear()
            prof = cProfile.Profile() if args.cprofile and clients == 1 else None
            if prof:
                prof.enable()
            wall, n = run(app, template, cells, clients, timers)
            if prof:
                prof.disable()
                print(f"\n-- cProfile, {name}, 1 client: top {args.cprofile} by own time")
                pstats.Stats(prof).sort_stats("tottime").print_stats(args.cprofile)
                if args.dump:
                    prof.dump_stats(f"{args.dump}.{name.split()[0]}")
            col = f"{name}, {clients} client{'s' if clients > 1 else ''}"
            table[col] = {k: 1000 * v / n for k, v in timers.totals.items()}
            walls[col] = n / wall
            app.extensions["tileserver"].close() if hasattr(
                app.extensions["tileserver"], "close") else None
    label = args.label or ("this checkout" if Path(args.repo).resolve() == HERE.parent
                           else Path(args.repo).name)
    print(f"\nms per cold tile ({len(cells)} tiles, zooms 10-15, {args.size}² COGs); "
          f"profile of {args.repo} [{label}]")
    if missing:
        print(f"(not in this checkout: {', '.join(missing)})")
    stages = [*STAGES, REST, "request total"]
    width = max(len(s) for s in stages) + 2
    print(f"{'stage':<{width}}" + "".join(f"{c:>24}" for c in table))
    for stage in stages:
        mark = "  (read)" if stage in READ_STAGES else ""
        print(f"{stage + mark:<{width}}" + "".join(f"{table[c].get(stage, 0.0):>24.2f}"
                                                     for c in table))
    print(f"{'tiles/s':<{width}}" + "".join(f"{walls[c]:>24.1f}" for c in table))
    RESULTS.parent.mkdir(exist_ok=True)
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    saved[label] = {"stages": table, "tiles_s": walls, "tiles": len(cells)}
    RESULTS.write_text(json.dumps(saved, indent=1))


if __name__ == "__main__":
    main()
