"""Helpers of the shared-cache tests: a real ``redis-server`` subprocess on a free loopback
port (Debian's package; ``.ci/run`` installs it)."""

from __future__ import annotations

import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.support.load import free_port
from tests.support.requirements import require


@contextmanager
def redis_server(workdir: Path, maxmemory: str = "64mb"):
    """A redis-server subprocess; yields ``(url, process)``. Stopped (killed) at exit."""
    require("redis-server")
    exe = shutil.which("redis-server")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--maxmemory", maxmemory, "--maxmemory-policy", "allkeys-lru", "--dir", str(workdir),
         "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield url, proc
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def single_zone_catalog(root: Path) -> Path:
    """The synthetic catalog without its EPSG:32633 items: two dates whose files share
    the 10 m grid of the test bbox (a batch result on that grid holds the sources'
    pixels, so its tiles can be compared with the lazy path value for value)."""
    import pystac

    from tests.support.synthetic import make_catalog

    path = make_catalog(root)
    catalog = pystac.Catalog.from_file(str(path))
    col = catalog.get_child("TEST")
    for item in list(col.get_items()):
        if item.properties.get("proj:epsg") == 32633 or item.id in ("test_2", "test_3"):
            col.remove_item(item.id)
    catalog.normalize_hrefs(str(root))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return path
