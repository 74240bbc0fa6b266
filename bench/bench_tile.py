"""Cold tiles beside TiTiler (issue 23). Prints a table; no assertions.

    .venv/bin/python bench/bench_tile.py [--size 8192] [--data-dir DIR] [--workers 2]
        [--per-zoom 12] [--clients 8] [--rounds 3] [--titiler-venv /tmp/titiler-venv]
        [--worker-class gthread]

Data: the synthetic ``SYN`` product of ``bench_cache.py`` (4 dates x B04/B08, ``--size``²
uint16 DEFLATE COGs, 512 px blocks, overviews). Both servers with ``--workers`` processes:
``tileserver serve`` and TiTiler (``titiler.application`` under ``uvicorn --workers N``,
from its own venv: ``python3 -m venv /tmp/titiler-venv && /tmp/titiler-venv/bin/pip
install titiler.application uvicorn``).

1. single-band cold tile: B04 of the first date, viridis over 0..3000, on
   WebMercatorQuad tiles of zooms 10-15 inside the file, one client, one request at a time;
   a fresh tileserver (empty caches) per round, measured once its start-up work is done
   (`common.settle`: its processes idle, the batch cluster started), every tile requested
   once (cold), the same
   tiles from TiTiler (it has no tile cache: every request is cold). Median latency.
2. tiles/s under ``--clients`` keep-alive clients, other tiles of the same zooms (cold).
3. the openEO 1.x ``load_collection -> ndvi -> reduce_dimension(t, min)`` over the 4 dates
   as an XYZ service, cold, one client, one worker each: tileserver against titiler-openeo
   (``pip install titiler-openeo uvicorn`` in ``--titiler-openeo-venv``; it reads STAC APIs
   only, so ``stac_stub.py`` serves the same catalog as one; basic auth test/test).

Rounds alternate which server goes first; the page cache is primed by an untimed pass.
Writes ``bench/results/tile.json`` under ``--label`` (read by ``run_all.py``); ``--repo
PATH --label before`` measures another checkout (e.g. the main branch) the same way.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_cache import TiTiler, synthetic_catalog  # noqa: E402
from bench_profile_tile import SINGLE_STYLE, single_band_graph, tiles_inside  # noqa: E402
from common import (  # noqa: E402
    Tileserver,
    figure,
    free_port,
    fresh_home,
    load,
    save_figures,
    settle,
    start,
    stop,
    xyz,
)
from stac_stub import StacStub  # noqa: E402


def service(base: str, graph: dict, style: dict | None) -> str:
    """The XYZ template of a new job's service."""
    job = requests.post(f"{base}/jobs", json={"process_graph": graph}, timeout=60)
    job.raise_for_status()
    svc = requests.post(f"{base}/services", json={"job_id": job.json()["job_id"],
                                                  "type": "xyz", "args": style or {}},
                        timeout=60)
    svc.raise_for_status()
    return svc.json()["service_url"]


def one_by_one(urls: list[str], headers: dict | None = None) -> list[float]:
    """Latency (ms) of each URL, one request at a time on one keep-alive session."""
    session = requests.Session()
    session.headers.update(headers or {})
    out = []
    for url in urls:
        t0 = time.perf_counter()
        resp = session.get(url, timeout=300)
        out.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 200:
            raise SystemExit(f"{url}: {resp.status_code} {resp.text[:300]}")
    return out


def ndvi_min_1x(bands: tuple[str, str] = ("B04", "B08")) -> dict:
    """``load_collection(SYN) -> ndvi -> reduce_dimension(t, min)`` as an openEO 1.x graph
    (the same for tileserver and titiler-openeo)."""
    return {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "SYN", "spatial_extent": None, "temporal_extent": None,
            "bands": list(bands)}},
        "ndvi": {"process_id": "ndvi", "arguments": {
            "data": {"from_node": "load"}, "red": bands[0], "nir": bands[1]}},
        "min": {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "ndvi"}, "dimension": "t", "reducer": {"process_graph": {
                "m": {"process_id": "min", "arguments": {"data": {"from_parameter": "data"}},
                      "result": True}}}}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "min"}, "format": "PNG"}, "result": True}}


def service_1x(root: str, headers: dict | None = None) -> str:
    """An XYZ service of :func:`ndvi_min_1x` at the openEO API ``root``; its id."""
    resp = requests.post(f"{root}/services", json={
        "type": "XYZ", "enabled": True, "configuration": {},
        "process": {"process_graph": ndvi_min_1x()}}, headers=headers or {}, timeout=60)
    resp.raise_for_status()
    return resp.headers["OpenEO-Identifier"]


def ours_1x(base: str) -> str:
    """tileserver's XYZ template of the 1.x NDVI-min service."""
    root = f"{base}/openeo/1.2"
    return requests.get(f"{root}/services/{service_1x(root)}", timeout=60).json()["url"]


class TitilerOpenEO:
    """titiler-openeo (``uvicorn titiler.openeo.main:app``, 1 worker, its own venv) over a
    STAC API stub of the same catalog; ``(tile template, headers)``."""

    def __init__(self, venv: Path, catalog: Path, tmp: Path):
        self.bin, self.catalog, self.tmp = venv / "bin" / "uvicorn", catalog, tmp
        self.stub, self.proc = None, None

    def __enter__(self) -> tuple[str, dict] | None:
        if not self.bin.exists():
            return None
        self.stub = StacStub(self.catalog)
        url = self.stub.__enter__()
        port = free_port()
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.tmp),
               "TITILER_OPENEO_STAC_API_URL": url,
               "TITILER_OPENEO_STORE_URL": str(self.tmp / "titiler-openeo-services.json")}
        self.proc = start([str(self.bin), "titiler.openeo.main:app", "--port", str(port),
                           "--workers", "1", "--log-level", "warning"], env,
                          f"http://127.0.0.1:{port}/", self.tmp / "titiler-openeo.log")
        base = f"http://127.0.0.1:{port}"
        token = requests.get(f"{base}/credentials/basic", auth=("test", "test"),
                             timeout=60).json()["access_token"]
        headers = {"Authorization": f"Bearer basic//{token}"}
        sid = service_1x(base, headers)
        return f"{base}/services/xyz/{sid}/tiles/{{z}}/{{x}}/{{y}}", headers

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            stop(self.proc)
        if self.stub is not None:
            self.stub.__exit__()


def warm_up(template: str, cog: Path, workers: int, headers: dict | None = None,
            exclude=()) -> None:
    """Untimed: tiles that are not measured, on fresh connections (so every worker process
    gets some), ``4 x workers`` of every zoom: a worker's first requests import and open
    what every later one uses, and what it keeps open is per zoom (the warped datasets of
    ``data/warped.py``, one per file, overview level and zoom), as in a server that has run
    for a while. Distinct tiles, so that no worker answers from another's cached tile
    instead of opening its own; none of ``exclude`` (the tiles measured next)."""
    measured = set(exclude)  # the timed tiles stay cold
    for cell in [c for c in tiles_inside(cog, 4 * workers, seed=999) if c not in measured]:
        requests.get(xyz(template, *cell), headers={"Connection": "close", **(headers or {})},
                     timeout=300)


def titiler_template(base: str, cog: Path) -> str:
    return (f"{base}/cog/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png?url={cog}"
            f"&rescale=0,3000&colormap_name=viridis")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--data-dir", default=str(Path.home() / ".cache" / "tileserver-bench"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--per-zoom", type=int, default=12)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--titiler-venv", default="/tmp/titiler-venv")
    ap.add_argument("--titiler-openeo-venv", default="/tmp/titiler-openeo-venv")
    ap.add_argument("--worker-class", default=None,
                    help="tileserver's gunicorn worker class (default: the configured one)")
    ap.add_argument("--repo", default=None,
                    help="serve another checkout (e.g. the main branch: --label before)")
    ap.add_argument("--label", default="after")
    args = ap.parse_args()

    catalog = synthetic_catalog(Path(args.data_dir), args.size)
    cog = catalog.parent / "d0" / "B04.tif"
    day = json.loads((catalog.parent / "SYN" / "syn_0" / "syn_0.json").read_text())[
        "properties"]["datetime"][:10]
    tmp = Path(tempfile.mkdtemp(prefix="bench-tile-"))
    env: dict[str, str] = {}
    if args.worker_class:
        env["TILESERVER_WORKER_CLASS"] = args.worker_class
    repo = Path(args.repo).resolve() if args.repo else None
    if repo:  # its tileserver, not this one (``python -m`` puts the cwd first)
        env["PYTHONPATH"] = str(repo)
    # per round: its own tiles (cold for tileserver's caches), the same for both servers
    rounds = [(tiles_inside(cog, args.per_zoom, seed=10 + r),
               tiles_inside(cog, 4 * args.per_zoom, seed=100 + r))
              for r in range(args.rounds)]
    cold: dict[str, list[float]] = {"tileserver": [], "TiTiler": []}
    rate: dict[str, list[float]] = {"tileserver": [], "TiTiler": []}
    ndvi: dict[str, list[float]] = {"tileserver": [], "titiler-openeo": []}
    warm: dict[str, list[float]] = {"tileserver": [], "titiler-openeo": []}  # same tiles again
    with TiTiler(Path(args.titiler_venv), args.workers, tmp / "titiler.log") as tt:
        if tt is None:
            print(f"TiTiler not found in {args.titiler_venv}: its columns stay empty")
        for rnd, (cells, many) in enumerate(rounds):
            server = Tileserver(catalog, fresh_home(tmp), args.workers, env=env, cwd=repo)
            with server as base:
                settle(server.proc)  # its start-up work (the batch cluster) done
                ours = service(base, single_band_graph(day), SINGLE_STYLE)
                warm_up(ours, cog, args.workers, exclude=cells + many)
                order = ["tileserver", "TiTiler"] if rnd % 2 == 0 else ["TiTiler", "tileserver"]
                if rnd == 0 and tt is not None:  # untimed: the files into the page cache
                    load([xyz(titiler_template(tt, cog), *c) for c in many], args.clients)
                for name in order:
                    if name == "TiTiler" and tt is None:
                        continue
                    template = ours if name == "tileserver" else titiler_template(tt, cog)
                    cold[name].append(statistics.median(
                        one_by_one([xyz(template, *c) for c in cells])))
                for name in order:
                    if name == "TiTiler" and tt is None:
                        continue
                    template = ours if name == "tileserver" else titiler_template(tt, cog)
                    r = load([xyz(template, *c) for c in many], args.clients)
                    if r["n_failed"]:
                        raise SystemExit(f"{name}: {r['n_failed']} failed: {r['failures']}")
                    rate[name].append(r["tiles_s"])
            # the openEO 1.x NDVI-min, 1 worker each, cold: fresh servers, tiles seen once
            server = Tileserver(catalog, fresh_home(tmp), 1, env=env, cwd=repo)
            with server as base, \
                    TitilerOpenEO(Path(args.titiler_openeo_venv), catalog, tmp) as toe:
                settle(server.proc)
                ours = ours_1x(base)
                warm_up(ours, cog, 1, exclude=cells)
                if toe is not None:
                    warm_up(toe[0], cog, 1, toe[1], exclude=cells)
                order = [("tileserver", ours, {}), ("titiler-openeo", *toe)] if toe else \
                    [("tileserver", ours, {})]
                for name, template, headers in order if rnd % 2 == 0 else order[::-1]:
                    urls = [xyz(template, *c) for c in cells]
                    ndvi[name].append(statistics.median(one_by_one(urls, headers)))
                    warm[name].append(statistics.median(one_by_one(urls, headers)))

    def med(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    figures = [
        figure(f"single-band cold tile, median, z10-15, {args.workers} workers each",
               med(cold["tileserver"]), med(cold["TiTiler"]), "TiTiler", "ms", "<= 0.3"),
        figure(f"tiles/s under {args.clients} clients, {args.workers} workers each",
               med(rate["tileserver"]), med(rate["TiTiler"]), "TiTiler", "tiles/s",
               ">= 2"),
        figure("openEO 1.x NDVI-min over 4 dates, cold XYZ tile, 1 worker",
               med(ndvi["tileserver"]), med(ndvi["titiler-openeo"]), "titiler-openeo",
               "ms", "<= 0.25"),
        figure("same, warm (the same tiles again)", med(warm["tileserver"]),
               med(warm["titiler-openeo"]), "titiler-openeo", "ms"),
    ]
    print(f"\n{args.size}² COGs, zooms 10-15, {args.workers} workers each, median of "
          f"{args.rounds} rounds ({len(rounds[0][0])} tiles one by one, "
          f"{len(rounds[0][1])} under load) [{args.label}]")
    print(f"{'figure':<60} {'tileserver':>11} {'peer':>9} {'ratio':>7}")
    for f in figures:
        a, b = f["ours"], f["theirs"]
        ratio = f"{a / b:.2f}" if a and b else ""
        print(f"{f['figure']:<60} {a or float('nan'):>11.1f} {b or float('nan'):>9.1f} "
              f"{ratio:>7}")
    save_figures("tile", args.label, figures, raw={"cold": cold, "rate": rate, "ndvi": ndvi,
                                                    "warm": warm})


if __name__ == "__main__":
    main()
