"""A load driver: a real ``tileserver serve`` (gunicorn) subprocess on loopback and N
concurrent HTTP clients mixing tiles, coverages, executes and job calls.

Used by ``tests/e2e/load/test_load.py`` (10 s) and ``bench/bench_load.py`` (one minute). Memory and
file descriptors of the gunicorn worker are read from ``/proc``.
"""

from __future__ import annotations

import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import morecantile
import requests
from pyproj import Transformer

from tests.support.hardening import BBOX, ndvi_graph

REPO = Path(__file__).resolve().parents[2]
KINDS = ("tile", "coverage", "execute", "jobs")


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """Child process ids of ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def fd_count(pid: int) -> int:
    """Open file descriptors of a process."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_targets(pid: int) -> Counter:
    """What the open file descriptors of a process point to (sockets and pipes by kind)."""
    out: Counter = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        out[target.split(":")[0] if target.startswith(("socket:", "pipe:", "anon_inode:"))
            else target] += 1
    return out


def rss_bytes(pid: int) -> int:
    """Resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@contextmanager
def serve(home: Path, catalog: Path, cache_bytes: int, threads: int = 8, workers: int = 1,
          **env: str):
    """``tileserver serve`` on a free loopback port; yields ``(base_url, worker_pids)``."""
    port = free_port()
    environ = {**os.environ, "TILESERVER_HOME": str(home), "TILESERVER_CATALOG": str(catalog),
               "TILESERVER_CACHE_BYTES": str(cache_bytes), "TILESERVER_THREADS": str(threads),
               "PYTHONPATH": str(REPO),
               # no batch cluster starting beside the measured requests (fds, memory)
               "TILESERVER_BATCH_CLUSTER_AT_START": "false", **env}
    log = open(home.parent / f"serve-{port}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "tileserver.cli", "serve", "--host", "127.0.0.1", "--port",
         str(port), "--workers", str(workers)], env=environ, stdout=log, stderr=subprocess.STDOUT,
        cwd=str(home.parent))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"tileserver serve exited with {proc.returncode}")
            try:
                if requests.get(base + "/", timeout=5).status_code == 200:
                    break
            # not listening yet, or listening while the worker still imports (a read
            # timeout on a loaded machine: a failed CI run): wait until the deadline
            except (requests.ConnectionError, requests.Timeout):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("tileserver serve did not start")
            time.sleep(0.3)
        pids: list[int] = []
        while len(pids) < workers and time.monotonic() < deadline:
            pids = children(proc.pid)
            time.sleep(0.1)
        assert len(pids) == workers, pids
        yield base, sorted(pids)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@dataclass
class Target:
    """What the clients ask for: one job exposed as xyz, wcs; tiles inside its extent."""

    base: str
    job_id: str
    xyz: str
    wcs: str
    tiles: list[tuple[int, int, int]]

    @classmethod
    def create(cls, base: str) -> Target:
        """Register the job and its services through the API."""
        s = requests.Session()
        job = s.post(f"{base}/jobs", json={"process_graph": ndvi_graph()}, timeout=30)
        job.raise_for_status()
        job_id = job.json()["job_id"]
        urls = {}
        for kind in ("xyz", "wcs"):
            resp = s.post(f"{base}/services", json={"job_id": job_id, "type": kind}, timeout=30)
            resp.raise_for_status()
            urls[kind] = resp.json()["service_url"]
        to_wgs84 = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
        west, south = to_wgs84.transform(BBOX["left"], BBOX["bottom"])
        east, north = to_wgs84.transform(BBOX["right"], BBOX["top"])
        tms = morecantile.tms.get("WebMercatorQuad")
        tiles = [(t.z, t.x, t.y) for z in (12, 13, 14, 15)
                 for t in tms.tiles(west, south, east, north, [z])]
        return cls(base, job_id, urls["xyz"], urls["wcs"], tiles)


def _window(rng: random.Random, size_px: int) -> tuple[float, float, float, float]:
    span = size_px * 10.0
    left = BBOX["left"] + rng.randrange(0, int(BBOX["right"] - BBOX["left"] - span), 10)
    bottom = BBOX["bottom"] + rng.randrange(0, int(BBOX["top"] - BBOX["bottom"] - span), 10)
    return left, bottom, left + span, bottom + span


def one_request(kind: str, s: requests.Session, t: Target, rng: random.Random) -> list:
    """Do one request (several for ``jobs``); returns ``[(status, ok), ...]``."""
    if kind == "tile":
        z, x, y = rng.choice(t.tiles)
        r = s.get(t.xyz.format(z=z, x=x, y=y), timeout=120)
        return [(r.status_code, r.status_code == 200 and r.content[:4] == b"\x89PNG")]
    if kind == "coverage":
        px = rng.choice((64, 128, 200))
        left, bottom, right, top = _window(rng, px)
        r = s.get(t.wcs, params={
            "SERVICE": "WCS", "VERSION": "1.0.0", "REQUEST": "GetCoverage",
            "COVERAGE": f"job_{t.job_id}", "CRS": "EPSG:32632", "FORMAT": "GeoTIFF",
            "BBOX": f"{left},{bottom},{right},{top}", "WIDTH": px, "HEIGHT": px}, timeout=120)
        return [(r.status_code, r.status_code == 200 and r.content[:2] in (b"II", b"MM"))]
    if kind == "execute":
        left, bottom, right, top = _window(rng, rng.choice((64, 100, 128)))
        bbox = {"left": left, "bottom": bottom, "right": right, "top": top,
                "srs": "EPSG:32632"}
        r = s.post(f"{t.base}/execute", json={"process_graph": ndvi_graph(bbox),
                                              "output": {"format": "GTiff"}}, timeout=120)
        return [(r.status_code, r.status_code == 200 and r.content[:2] in (b"II", b"MM"))]
    out = []
    r = s.post(f"{t.base}/jobs", json={"process_graph": ndvi_graph(), "title": "load"},
               timeout=60)
    out.append((r.status_code, r.status_code == 201))
    if r.status_code == 201:
        job = r.json()["job_id"]
        for method, path, body, expect in (
                ("GET", f"/jobs/{job}", None, 200),
                ("PATCH", f"/jobs/{job}", {"title": "renamed"}, 200),
                ("GET", "/users/me/jobs", None, 200),
                ("DELETE", f"/jobs/{job}", None, 204)):
            resp = s.request(method, t.base + path, json=body, timeout=60)
            out.append((resp.status_code, resp.status_code == expect))
    return out


@dataclass
class LoadResult:
    """Latencies per kind (seconds), failures and the number of requests."""

    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[str] = field(default_factory=list)
    requests: int = 0

    def summary(self) -> dict:
        """Medians, 95th percentiles and counts per kind, and the total rate."""
        out: dict = {"requests": self.requests, "failures": len(self.failures),
                     "requests_per_s": round(self.requests / self.seconds, 1)}
        for kind, values in sorted(self.latencies.items()):
            values = sorted(values)
            out[kind] = {"n": len(values), "median_ms": round(statistics.median(values) * 1e3, 1),
                         "p95_ms": round(values[int(0.95 * (len(values) - 1))] * 1e3, 1)}
        return out


def run_load(target: Target, clients: int, seconds: float, seed: int = 0) -> LoadResult:
    """``clients`` threads, each with its own keep-alive session, for ``seconds``."""
    result = LoadResult(seconds)
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        with requests.Session() as s:
            while time.monotonic() < stop:
                kind = KINDS[(i + rng.randrange(4)) % 4]
                started = time.perf_counter()
                try:
                    answers = one_request(kind, s, target, rng)
                except requests.RequestException as exc:
                    answers = [(0, False)]
                    with lock:
                        result.failures.append(f"{kind}: {exc!r}")
                elapsed = time.perf_counter() - started
                with lock:
                    result.latencies[kind].append(elapsed)
                    result.requests += len(answers)
                    result.failures.extend(f"{kind}: HTTP {status}" for status, ok in answers
                                           if not ok)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return result


def metric(base: str, name: str) -> float:
    """The value of an unlabelled metric of the server's ``/metrics``."""
    for line in requests.get(f"{base}/metrics", timeout=30).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


class Sampler:
    """Samples the summed RSS of processes every ``interval`` seconds in a thread."""

    def __init__(self, pids: list[int], interval: float = 0.25):
        self.pids, self.interval = pids, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(rss_bytes(p) for p in self.pids))
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
