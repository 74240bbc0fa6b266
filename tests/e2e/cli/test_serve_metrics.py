"""``/metrics`` of ``tileserver serve`` with two gunicorn workers: one scrape adds up both
workers (prometheus_client's multiprocess mode, set up by ``serve``), whichever answers;
a worker that dies keeps its counts; the directory goes with the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.support.load import REPO, Target, children, serve

HEADER = "X-Tileserver-Cache"
TILES_PER_WORKER = 4


def _scrape(base: str) -> str:
    resp = requests.get(f"{base}/metrics", timeout=30, headers={"Connection": "close"})
    assert resp.status_code == 200
    return resp.text


def _sample(families, name: str, **labels: str) -> float:
    """The value of the sample ``name{labels}`` (0 when absent)."""
    return sum(s.value for family in families for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def _counts(text: str) -> tuple[float, float]:
    """Tiles evaluated and shared-tier hits in a scrape."""
    families = list(text_string_to_metric_families(text))
    return (_sample(families, "tileserver_evaluations_total", purpose="tile"),
            _sample(families, "tileserver_cache_tier_hits_total", tier="disk"))


def _own_counts(directory: Path, pid: int) -> tuple[float, float]:
    """The same read from one process's own file (what it counted itself)."""
    families = list(MultiProcessCollector.merge([str(directory / f"counter_{pid}.db")]))
    return (_sample(families, "tileserver_evaluations_total", purpose="tile"),
            _sample(families, "tileserver_cache_tier_hits_total", tier="disk"))


@contextmanager
def _only(pid: int, pids: list[int]) -> Iterator[None]:
    """Only worker ``pid`` accepts connections meanwhile (the others are stopped)."""
    others = [p for p in pids if p != pid]
    for p in others:
        os.kill(p, signal.SIGSTOP)
    try:
        yield
    finally:
        for p in others:
            os.kill(p, signal.SIGCONT)


def _tiles(target: Target, tiles) -> list[str]:
    """Each tile on a fresh connection; where each answer came from."""
    sources = []
    for z, x, y in tiles:
        resp = requests.get(target.xyz.format(z=z, x=x, y=y), timeout=120,
                            headers={"Connection": "close"})
        assert resp.status_code == 200, resp.text[:300]
        sources.append(resp.headers[HEADER])
    return sources


def test_the_command_leaves_prometheus_client_to_serve():
    """``tileserver serve`` sets PROMETHEUS_MULTIPROC_DIR before prometheus_client is
    imported (it reads it then): the command's modules must not import it before."""
    code = "import sys, tileserver.cli; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(
        REPO)}, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_one_scrape_adds_up_the_gunicorn_workers(tmp_path, small_catalog):
    home = tmp_path / "home"
    home.mkdir()
    # no per-process LRU: a tile asked again comes from the shared disk tier
    with serve(home, small_catalog, cache_bytes=0, workers=2) as (base, pids):
        (directory,) = (home / "run").glob("prometheus-*")
        target = Target.create(base)
        assert len(target.tiles) >= 2 * TILES_PER_WORKER
        # each worker alone serves its share (computed), then the other's (from the disk
        # tier): both counted some of each
        shares = [target.tiles[i * TILES_PER_WORKER:(i + 1) * TILES_PER_WORKER]
                  for i in range(2)]
        for pid, share in zip(pids, shares, strict=True):
            with _only(pid, pids):
                assert _tiles(target, share) == ["computed"] * TILES_PER_WORKER
        for pid, share in zip(pids, reversed(shares), strict=True):
            with _only(pid, pids):
                assert _tiles(target, share) == ["disk"] * TILES_PER_WORKER
        total = (2.0 * TILES_PER_WORKER, 2.0 * TILES_PER_WORKER)
        assert {pid: _own_counts(directory, pid) for pid in pids} == {
            pid: (TILES_PER_WORKER, TILES_PER_WORKER) for pid in pids}
        # one scrape, answered by either worker, says the total
        for pid in pids:
            with _only(pid, pids):
                text = _scrape(base)
            assert _counts(text) == total
            assert 'tileserver_cache_tier_bytes{tier="disk"}' in text  # scrape-time gauge
        scrapes = [_scrape(base) for _ in range(6)]
        assert all(_counts(text) == total for text in scrapes)

        # a worker killed: gunicorn starts another, the dead one's counts stay and its live
        # gauges leave (gunicorn's child_exit hook)
        dead = pids[0]
        assert (directory / f"gauge_livesum_{dead}.db").exists()
        os.kill(dead, signal.SIGKILL)
        master = int(directory.name.removeprefix("prometheus-"))
        deadline = time.monotonic() + 60
        while not (len(now := children(master)) == 2 and dead not in now):
            assert time.monotonic() < deadline, children(master)
            time.sleep(0.2)
        while (directory / f"gauge_livesum_{dead}.db").exists():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert _counts(_scrape(base)) == total
    # the directory goes with the server
    assert not directory.exists()
