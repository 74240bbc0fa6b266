"""What the benchmarks share: ``tileserver serve`` on a free port with its own home, clients
that fetch a list of URLs (concurrently, or one at a time), and the cold/warm table.

Not a benchmark itself (``run_all.py`` does not run it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]


# -- servers ----------------------------------------------------------------------------


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Poll ``url`` until it answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            requests.get(url, timeout=10)
            return
        except requests.RequestException:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not come up")


def start(cmd: list[str], env: Mapping[str, str], url: str, log: Path, timeout: float = 120,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start a server in its own process group and wait until ``url`` answers."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=dict(env), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=cwd)
    wait_up(url, proc, timeout)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a server started by :func:`start` (its whole process group)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def settle(proc: subprocess.Popen, idle_percent: float = 10.0, samples: int = 4,
           timeout: float = 120.0) -> float:
    """Wait until a started server's processes (all of them: gunicorn's workers, the batch
    cluster they start) are done with their start-up work: ``samples`` half-second readings
    in a row under ``idle_percent`` of one core in total. Returns the seconds waited.

    ``tileserver serve`` answers at once and meanwhile reads its catalog and starts the
    Dask cluster of batch jobs, whose workers import their libraries: cold tiles measured in
    that minute measure those imports too, not a server that has been running."""
    import psutil  # noqa: PLC0415 - only the benchmarks that settle

    started = time.monotonic()
    root = psutil.Process(proc.pid)
    quiet = 0
    while quiet < samples and time.monotonic() - started < timeout:
        procs = [root, *root.children(recursive=True)]
        for p in procs:
            try:
                p.cpu_percent(None)
            except psutil.Error:
                pass
        time.sleep(0.5)
        busy = 0.0
        for p in procs:
            try:
                busy += p.cpu_percent(None)
            except psutil.Error:
                pass
        quiet = quiet + 1 if busy < idle_percent else 0
    return time.monotonic() - started


def fresh_home(parent: Path) -> Path:
    """A new, empty ``$TILESERVER_HOME`` under ``parent`` (empty caches)."""
    return Path(tempfile.mkdtemp(prefix="home-", dir=parent))


class Tileserver:
    """``tileserver serve`` of this checkout on a free port with its own home.

    ``with Tileserver(catalog, home) as base:`` gives the base URL; the server's output goes
    to ``<home>.log``. ``workers=None`` keeps the server's default; ``env`` adds variables
    (a ``None`` value removes one).
    """

    def __init__(self, catalog: Path, home: Path, workers: int | None = 1,
                 env: Mapping[str, str | None] | None = None, timeout: float = 120,
                 cwd: Path | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        merged: dict[str, str | None] = {
            **os.environ, "TILESERVER_HOME": str(home), "TILESERVER_CATALOG": str(catalog),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                        os.environ.get("PYTHONPATH")])),
            **(env or {})}
        self.env = {k: v for k, v in merged.items() if v is not None}
        self.cmd = [sys.executable, "-m", "tileserver.cli", "serve", "--port", str(self.port)]
        if workers is not None:
            self.cmd += ["--workers", str(workers)]
        self.log = home.parent / f"{home.name}.log"
        self.timeout, self.cwd = timeout, cwd
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> str:
        self.proc = start(self.cmd, self.env, f"{self.base}/", self.log, self.timeout, self.cwd)
        return self.base

    def __exit__(self, *exc) -> None:
        stop(self.proc, timeout=60)


# -- clients ----------------------------------------------------------------------------


def each_once(items: Iterable, clients: int, fetch: Callable[[requests.Session, object], object],
              seconds: float | None = None, stop_flag: list | None = None
              ) -> tuple[list[tuple[float, object]], float]:
    """Every item once, shared by ``clients`` threads (each with its own session):
    ``fetch(session, item)``. Stops early after ``seconds`` or once ``stop_flag`` is not
    empty. Returns ``([(seconds taken, what fetch returned)], wall seconds)``."""
    lock = threading.Lock()
    queue = list(reversed(list(items)))
    done: list[tuple[float, object]] = []
    end = None if seconds is None else time.monotonic() + seconds

    def worker() -> None:
        session = requests.Session()
        while (end is None or time.monotonic() < end) and not stop_flag:
            with lock:
                if not queue:
                    return
                item = queue.pop()
            t0 = time.perf_counter()
            out = fetch(session, item)
            dt = time.perf_counter() - t0
            with lock:
                done.append((dt, out))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done, time.perf_counter() - t0


def load(urls: list[str], clients: int) -> dict:
    """Fetch every URL once with ``clients`` concurrent keep-alive sessions; latency stats."""
    retries: list[str] = []

    def status(session: requests.Session, url):
        try:
            try:
                return session.get(url, timeout=300).status_code, url
            except requests.ConnectionError:  # a keep-alive connection closed under us
                retries.append(url)
                return session.get(url, timeout=300).status_code, url
        except requests.RequestException as exc:
            return type(exc).__name__, url

    done, wall = each_once(urls, clients, status)
    failures = [f"{code} {url}" for _, (code, url) in done if code != 200]
    lat = sorted(dt for dt, _ in done)
    return {"n": len(lat), "tiles_s": len(lat) / wall, "p50_ms": 1000 * statistics.median(lat),
            "p95_ms": 1000 * lat[max(0, int(round(0.95 * len(lat))) - 1)],
            "failures": failures[:3], "n_failed": len(failures), "retries": len(retries)}


def xyz(template: str, z: int, x: int, y: int) -> str:
    """The URL of one tile of an XYZ ``{z}/{x}/{y}`` template."""
    return template.replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y))


def fetch(template: str, cells) -> list[float]:
    """Per-tile latency (ms) of the XYZ tiles ``cells`` ((z, x, y)), one request at a time."""
    session = requests.Session()
    out = []
    for z, x, y in cells:
        url = xyz(template, z, x, y)
        t0 = time.perf_counter()
        resp = session.get(url, timeout=300)
        out.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 200:
            raise SystemExit(f"{url}: {resp.status_code} {resp.text[:300]}")
    return out


# -- cold and warm ----------------------------------------------------------------------


def cold_warm(catalog: Path, logdir: Path, rounds: int, layers: dict[str, Callable[[str], str]],
              cells, env: Mapping[str, str] | None = None,
              after: Callable[[str, str], None] | None = None) -> dict[str, list[float]]:
    """Per-tile median ms of each kind of layer, cold then warm, ``rounds`` times.

    ``layers[kind](base)`` makes the layer on a fresh server (own home: empty caches) and
    returns its XYZ template; each round alternates the order of the kinds. ``after(kind,
    base)`` runs on that server after the warm pass. Keys: ``"<kind> cold"``, then warm.
    """
    kinds = list(layers)
    results: dict[str, list[float]] = {f"{k} {t}": [] for t in ("cold", "warm") for k in kinds}
    for rnd in range(rounds):
        for kind in kinds if rnd % 2 == 0 else kinds[::-1]:
            with Tileserver(catalog, fresh_home(logdir), env=env) as base:
                template = layers[kind](base)
                results[f"{kind} cold"].append(statistics.median(fetch(template, cells)))
                results[f"{kind} warm"].append(statistics.median(fetch(template, cells)))
                if after is not None:
                    after(kind, base)
    return results


def print_cold_warm(results: dict[str, list[float]], ours: str, theirs: str, width: int,
                    difference: bool = False) -> None:
    """The table of :func:`cold_warm` and the ratios ``ours / theirs`` (and differences)."""
    print(f"{'case':<{width}} {'ms/tile':>9}")
    for name, values in results.items():
        print(f"{name:<{width}} {statistics.median(values):>9.1f}")
    for kind in ("cold", "warm"):
        a = statistics.median(results[f"{ours} {kind}"])
        b = statistics.median(results[f"{theirs} {kind}"])
        line = f"{ours} / {theirs} {kind}: {a / b:.2f}x"
        print(line + (f" ({a - b:+.1f} ms/tile)" if difference else ""))


# -- figures for run_all.py -------------------------------------------------------------

RESULTS = Path(__file__).resolve().parent / "results"


def figure(name: str, ours: float | None, theirs: float | None = None, peer: str = "",
           unit: str = "ms", target: str = "") -> dict:
    """One figure of a benchmark: our value, the peer's (same run) and the target ratio
    (e.g. ``"<= 0.3"``)."""
    return {"figure": name, "ours": ours, "theirs": theirs, "peer": peer, "unit": unit,
            "target": target}


def save_figures(script: str, label: str, figures: list[dict], **extra) -> Path:
    """Write ``figures`` under ``label`` (e.g. ``before``/``after``, a checkout's name) to
    ``bench/results/<script>.json`` (git-ignored), keeping the other labels' figures:
    ``run_all.py`` prints them all in one table."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{script}.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved[label] = {"figures": figures, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
    path.write_text(json.dumps(saved, indent=1))
    return path
