"""Batch results on the server's disk vs on an S3 object store (issue 24). Prints one table;
no asserts.

    .venv/bin/python bench/bench_storage.py [--size 4096] [--dates 4] [--workers 2]
                                            [--repeat 3] [--tiles 12] [--data-dir DIR]

The scene is bench_batch.py's (written once into ``--data-dir``; ``--size 8192`` is the
issue's 8192² x 4-date job). The S3 store is moto's standalone server (``moto[server]``,
a subprocess on this machine: what is measured is the client side and the protocol, not a
real store's disks or network). Two ``tileserver serve`` processes run side by side, one
with results on the disk (the default), one with ``TILESERVER_STORAGE_URL=s3://…``, each
with an embedded LocalCluster of ``--workers`` processes; the caches of tiles are off
(``cache_url: none``, ``cache_bytes: 0``) so that every tile reads the stored COG.

1. Job wall time: ``min_time(NDVI(BIG))`` over the whole scene, queued to ``finished``,
   alternating disk and S3 ``--repeat`` times (the S3 run includes uploading the parts,
   downloading them for the mosaic, uploading the COG in parts and publishing it).
2. Tiles of the finished job (WMTS, GoogleMapsCompatible, full resolution and one level up):
   cold = the first request of a tile on a fresh server (GDAL opens the COG: the header,
   then the tile's blocks, by HTTP range requests on S3); warm = the same tiles again (GDAL's
   block and ``/vsis3/`` caches). Median milliseconds per tile, alternating disk and S3.
3. Lazy cold tiles with static AWS keys in the environment (as deploy/tileserver.env sets
   them for the store), in this process through the WSGI app (Flask's test client), caches
   off: ``before`` = the keys left in ``os.environ`` while tiles are served (main before the
   fix: rasterio builds a boto3 session for each in-memory dataset, four per warp,
   rasterio#3331), ``after`` = the keys moved out at start
   (:mod:`tileserver.storage.credentials`), ``no keys`` = none at all. A fresh app per round
   and case, the cases alternating; median ms per tile and boto3 sessions built per tile.
   ``--only keys`` runs this part alone (``--only jobs`` the first two).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import morecantile
import requests
from pyproj import Transformer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_batch import ORIGIN, RES, graph, wait_finished, write_scene  # noqa: E402
from common import REPO, Tileserver, free_port  # noqa: E402

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_REGION": "us-east-1"}


def start_moto(logdir: Path) -> tuple[subprocess.Popen, str]:
    """moto's S3 server on a free port; returns the process and its endpoint."""
    port = free_port()
    log = (logdir / "moto.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **CREDENTIALS})
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(endpoint, timeout=2)
            return proc, endpoint
        except requests.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("moto.server did not start") from None
            time.sleep(0.2)


def server(catalog: Path, home: Path, workers: int, env: dict) -> Tileserver:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "bench.yaml"
    config.write_text((REPO / "config" / "default.yaml").read_text()
                      + f"\nbatch_workers: {workers}\ncache_url: none\ncache_bytes: 0\n")
    return Tileserver(catalog, home, env={"TILESERVER_CONFIG": str(config),
                                          "TILESERVER_DASK_SCHEDULER": None, **env},
                      timeout=300, cwd=home)


def run_job(api: requests.Session, url: str, size: int) -> tuple[float, str]:
    """Wall time of the job over ``size`` x ``size`` px, queue to finished; its id."""
    box = {"left": ORIGIN[0], "right": ORIGIN[0] + size * RES, "top": ORIGIN[1],
           "bottom": ORIGIN[1] - size * RES, "srs": "EPSG:32632"}
    job_id = api.post(f"{url}/jobs", json={"process_graph": graph(box)}).json()["job_id"]
    t0 = time.perf_counter()
    api.patch(f"{url}/jobs/{job_id}/queue")
    job, _ = wait_finished(api, url, job_id, every=0.1)
    if job["status"] != "finished":
        raise RuntimeError(api.get(f"{url}/jobs/{job_id}/logs").json())
    return time.perf_counter() - t0, job_id


def tiles_of(size: int, count: int) -> list[tuple[int, int, int]]:
    """``count`` tiles of the scene, half at its full resolution (z14), half one level up."""
    to_wgs84 = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    west, north = to_wgs84.transform(*ORIGIN)
    east, south = to_wgs84.transform(ORIGIN[0] + size * RES, ORIGIN[1] - size * RES)
    tms = morecantile.tms.get("WebMercatorQuad")
    out = []
    for z in (14, 13):
        found = [(t.z, t.x, t.y) for t in tms.tiles(west, south, east, north, [z])]
        step = max(1, len(found) // (count // 2))
        out += found[::step][: count // 2]
    return out


def tile_ms(api: requests.Session, base: str, job_id: str, tile: tuple[int, int, int]) -> float:
    z, x, y = tile
    t0 = time.perf_counter()
    resp = api.get(f"{base}/1.0.0/{job_id}/default/GoogleMapsCompatible/{z}/{y}/{x}.png")
    elapsed = (time.perf_counter() - t0) * 1000
    if resp.status_code != 200 or resp.headers.get("X-Tileserver-Cache") != "stored":
        raise RuntimeError(f"tile {tile}: {resp.status_code} "
                           f"{resp.headers.get('X-Tileserver-Cache')} {resp.text[:200]}")
    return elapsed


#: The static keys of part 3 (nothing is contacted with them: the tiles are lazy).
KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}


def lazy_tiles_with_keys(catalog: Path, work: Path, tiles: list[tuple[int, int, int]],
                         rounds: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Part 3: ms per lazy cold tile of each case, and boto3 sessions built per tile."""
    import boto3

    sys.path.insert(0, str(REPO))
    from tileserver.settings import load_settings
    from tileserver.storage import credentials
    from tileserver.web.app import create_app

    built: list[int] = []
    init = boto3.session.Session.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        init(self, *args, **kwargs)

    boto3.session.Session.__init__ = counting
    cases = ("no keys", "before", "after")
    times: dict[str, list[float]] = {c: [] for c in cases}
    sessions: dict[str, list[int]] = {c: [] for c in cases}
    for round_ in range(rounds + 1):  # round 0: warm-up (imports, page cache), not counted
        for case in cases:
            credentials.release()
            for key in KEYS:
                os.environ.pop(key, None)
            if case != "no keys":
                os.environ.update(KEYS)
            home = work / f"lazy-{round_}-{case.replace(' ', '-')}"
            app = create_app(load_settings(home=str(home), catalog=str(catalog),
                                           cache_bytes=0, cache_url="none"))
            if case == "before":
                credentials.release()  # the keys back where rasterio looks for them
            client = app.test_client()
            job = client.post("/jobs", json={"process_graph": graph()}).get_json()
            svc = client.post("/services", json={"job_id": job["job_id"], "type": "xyz"})
            template = "/" + svc.get_json()["service_url"].split("://", 1)[1].split("/", 1)[1]
            before = len(built)
            for z, x, y in tiles:
                t0 = time.perf_counter()
                resp = client.get(template.format(z=z, x=x, y=y))
                elapsed = (time.perf_counter() - t0) * 1000
                if resp.status_code != 200:
                    raise RuntimeError(f"lazy tile {z}/{x}/{y}: {resp.status_code}")
                if round_:
                    times[case].append(elapsed)
            if round_:
                sessions[case].append(len(built) - before)
            app.extensions["tileserver"].close()
    credentials.release()
    for key in KEYS:
        os.environ.pop(key, None)
    boto3.session.Session.__init__ = init
    per_tile = {c: sum(v) / (len(tiles) * rounds) for c, v in sessions.items()}
    return times, per_tile


def jobs_and_tiles(args, catalog: Path, work: Path):
    """Parts 1 and 2: job wall times (s) and cold and warm tiles of finished jobs (ms)."""
    moto, endpoint = start_moto(work)
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, **{
            "aws_access_key_id": "bench", "aws_secret_access_key": "bench",
            "region_name": "us-east-1"}).create_bucket(Bucket="bench")
        s3_env = {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint,
                  "TILESERVER_STORAGE_URL": "s3://bench/results"}
        kinds = {"disk": {}, "s3": s3_env}
        walls: dict[str, list[float]] = {k: [] for k in kinds}
        jobs: dict[str, str] = {}
        servers = {k: server(catalog, work / f"home-{k}", args.workers, env)
                   for k, env in kinds.items()}
        api = requests.Session()
        for srv in servers.values():
            srv.__enter__()
        try:
            for srv in servers.values():  # warm-up: the cluster, imports
                run_job(api, srv.base, 512)
            for _ in range(args.repeat):
                for kind, srv in servers.items():
                    wall, jobs[kind] = run_job(api, srv.base, args.size)
                    walls[kind].append(wall)
        finally:
            for srv in servers.values():
                srv.__exit__(None, None, None)
        # tiles: fresh servers (GDAL's caches empty), the same finished jobs
        tiles = tiles_of(args.size, args.tiles)
        cold: dict[str, list[float]] = {k: [] for k in kinds}
        warm: dict[str, list[float]] = {k: [] for k in kinds}
        servers = {k: server(catalog, work / f"home-{k}", args.workers, env)
                   for k, env in kinds.items()}
        for srv in servers.values():
            srv.__enter__()
        try:
            bases = {}
            for kind, srv in servers.items():
                svc = api.post(f"{srv.base}/services",
                               json={"job_id": jobs[kind], "type": "wmts"}).json()
                bases[kind] = svc["service_url"]
                api.get(f"{bases[kind]}/1.0.0/WMTSCapabilities.xml")  # the served job
            for rounds, into in ((1, cold), (3, warm)):
                for _ in range(rounds):
                    for tile in tiles:
                        for kind in kinds:
                            into[kind].append(tile_ms(api, bases[kind], jobs[kind], tile))
        finally:
            for srv in servers.values():
                srv.__exit__(None, None, None)
    finally:
        moto.terminate()
        moto.wait(timeout=30)

    return walls, cold, warm, tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--dates", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tiles", type=int, default=12)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--only", choices=("jobs", "keys"), default=None,
                        help="parts 1-2 (jobs) or part 3 (keys) alone")
    parser.add_argument("--lazy-tiles", type=int, default=8,
                        help="tiles per round of part 3 (z14 and z13 of the scene)")
    args = parser.parse_args()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    data_dir = args.data_dir or cache / "tileserver-bench" / f"batch{args.size}"
    catalog = write_scene(data_dir, args.size, args.dates)
    work = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    if args.only != "keys":
        walls, cold, warm, tiles = jobs_and_tiles(args, catalog, work)
    if args.only != "jobs":
        lazy, sessions = lazy_tiles_with_keys(catalog, work, tiles_of(args.size, args.lazy_tiles),
                                              args.repeat)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    if args.only != "keys":
        print(f"\nbench_storage: {args.size}x{args.size} px x {args.dates} dates, "
              f"{args.workers} Dask workers, {args.repeat} jobs each, {len(tiles)} tiles; "
              f"S3 = moto server on this host\n")
        print(f"{'measure':44s} {'disk':>10s} {'S3':>10s} {'S3/disk':>8s}")
        rows = [("job wall time, queue -> finished (s)", med(walls["disk"]), med(walls["s3"])),
                ("finished job's tile, cold (ms, median)", med(cold["disk"]), med(cold["s3"])),
                ("finished job's tile, warm (ms, median)", med(warm["disk"]), med(warm["s3"]))]
        for name, disk, s3 in rows:
            print(f"{name:44s} {disk:10.2f} {s3:10.2f} {s3 / disk:8.2f}")
        print(f"\nupload overhead of S3 results: {med(walls['s3']) - med(walls['disk']):+.1f} s"
              f" per job ({100 * (med(walls['s3']) / med(walls['disk']) - 1):+.0f} %)")
        print("job wall times (s): " + "; ".join(
            f"{k} " + ", ".join(f"{w:.1f}" for w in v) for k, v in walls.items()))
    if args.only != "jobs":
        print(f"\nlazy cold tile with AWS credentials in the environment ({args.lazy_tiles} "
              f"tiles x {args.repeat} rounds, min_time(NDVI) of {args.dates} dates, caches off)")
        print(f"{'case':44s} {'ms/tile':>10s} {'x no keys':>10s} {'sessions/tile':>14s}")
        base = med(lazy["no keys"])
        for case, name in (("no keys", "no AWS keys"),
                           ("before", "keys in os.environ (before)"),
                           ("after", "keys adopted at start (after)")):
            print(f"{'lazy cold tile, ' + name:44s} {med(lazy[case]):10.2f} "
                  f"{med(lazy[case]) / base:10.2f} {sessions[case]:14.1f}")


if __name__ == "__main__":
    main()
