"""The shared cache tier: the disk tier (diskcache) and Redis (a real redis-server), the
entry envelope, failures that degrade to misses, and bytes without pickle."""

from __future__ import annotations

import logging
import os
import shutil
from datetime import UTC, datetime

import numpy as np
import pytest

from tests.support.cache import redis_server
from tests.support.core import TEST_BOUNDS_32632, bbox, call, leaf, make_engine, pixels_read
from tileserver.cache import codec as serial
from tileserver.cache.shared import (
    INLINE_BYTES,
    DiskTier,
    RedisTier,
    digest_key,
    open_tier,
    unwrap,
    wrap,
)
from tileserver.datacube.cube import Cube
from tileserver.datacube.view import View
from tileserver.render.encoders import Encoded

VIEW = View("EPSG:32632", TEST_BOUNDS_32632, 64, 48)


def cube(seed=0, times=True) -> Cube:
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(2 if times else 1, 3, 48, 64)).astype(np.float32)
    data[0, 1, :5] = np.nan
    when = (datetime(2020, 5, 1, 10, tzinfo=UTC), datetime(2020, 5, 11, 10, tzinfo=UTC))
    return Cube(data, when if times else None, ("B04", "B08", "B11"), VIEW, "ndvi")


def test_cube_bytes_round_trip_without_pickle():
    for times in (True, False):
        c = cube(times=times)
        back = serial.load_cube(serial.dump_cube(c))
        assert back is not None
        np.testing.assert_array_equal(back.data, c.data)
        assert (back.times, back.bands, back.kind) == (c.times, c.bands, c.kind)
        assert back.view.key == c.view.key and back.view.transform == c.view.transform
    blob = serial.dump_cube(cube())
    for bad in (b"", blob[:10], blob[:-100], b"\xff" * 64, serial.dump_encoded(
            Encoded(b"x", "image/png", "png"))):
        assert serial.load_cube(bad) is None
    # an object array is refused by np.load(allow_pickle=False): never unpickled
    import io
    buf = io.BytesIO()
    np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
    evil = blob[:blob.index(b"\x93NUMPY")] + buf.getvalue()
    assert serial.load_cube(evil) is None


def test_envelope_rejects_truncated_corrupt_and_foreign_bytes():
    key, other = digest_key("a"), digest_key("b")
    blob = wrap(key, b"payload" * 100)
    assert unwrap(key, blob) == b"payload" * 100
    assert unwrap(other, blob) is None  # bytes of another key
    assert unwrap(key, blob[:-1]) is None
    flipped = bytearray(blob)
    flipped[-5] ^= 1
    assert unwrap(key, bytes(flipped)) is None
    assert unwrap(key, b"") is None


@pytest.fixture
def disk(tmp_path):
    tier = DiskTier(tmp_path / "cache", 50 * 1024 * 1024)
    yield tier
    tier.close()


def test_disk_tier_shared_between_handles_and_bounded_in_bytes(tmp_path):
    a = DiskTier(tmp_path / "c", 2 * 1024 * 1024)
    b = DiskTier(tmp_path / "c", 2 * 1024 * 1024)  # another process's handle
    a.put("k1", b"x" * 1000)
    assert b.get("k1") == b"x" * 1000
    for i in range(40):  # 40 x 200 kB = 8 MB into a 2 MB tier: the oldest go
        a.put(f"big{i}", bytes([i]) * 200_000)
    assert a.held_bytes() <= 3 * 1024 * 1024
    assert b.get("big39") == bytes([39]) * 200_000
    assert b.get("big0") is None
    a.close()
    b.close()


def test_disk_tier_corrupt_entry_is_a_miss_and_dropped(disk, caplog):
    disk.put("k", b"v" * (INLINE_BYTES + 1))  # large: stored as a file by diskcache
    files = [p for p in (disk.directory).rglob("*.val")]
    assert files
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 2])  # truncated on disk
    with caplog.at_level(logging.WARNING):
        assert disk.get("k") is None
    assert "invalid entry" in caplog.text
    assert disk._handle().get("k") is None  # deleted
    disk.put("k", b"w" * 10)  # small: stored inside SQLite, corrupt it there
    handle = disk._handle()
    handle.set("k", b"TSC1" + b"\0" * 32 + b"w" * 10)
    assert disk.get("k") is None


def test_disk_tier_directory_deleted_mid_run(disk):
    disk.put("a", b"1" * 50_000)
    assert disk.get("a") == b"1" * 50_000
    shutil.rmtree(disk.directory)
    assert disk.get("a") is None  # recreated, empty, no error
    disk.put("b", b"2" * 50_000)
    assert disk.get("b") == b"2" * 50_000
    assert disk.directory.is_dir()
    # two processes: one creates the directory again, the other must use the new one too
    other = DiskTier(disk.directory, disk.max_bytes)
    assert other.get("b") == b"2" * 50_000
    shutil.rmtree(disk.directory)
    disk.put("c", b"3")
    assert other.get("c") == b"3"
    other.close()


def test_disk_tier_that_cannot_write_degrades(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    tier = DiskTier(blocker / "cache", 1024 * 1024)  # mkdir fails: like a full disk
    with caplog.at_level(logging.WARNING):
        tier.put("a", b"x")
        assert tier.get("a") is None
        tier._down_until = 0
        tier.put("a", b"x")
    assert caplog.text.count("shared cache disk") == 1  # logged once per outage
    assert np.isnan(tier.held_bytes()) or tier.held_bytes() >= 0


def test_open_tier_settings(tmp_path):
    assert open_tier("none", tmp_path, 1) is None
    assert isinstance(open_tier(None, tmp_path, 1), DiskTier)
    assert open_tier(f"file://{tmp_path}/x", tmp_path, 1).directory == tmp_path / "x"
    with pytest.raises(ValueError):
        open_tier("memcached://x", tmp_path, 1)


def test_redis_tier_and_a_redis_that_stops(tmp_path, caplog):
    with redis_server(tmp_path / "redis") as (url, proc):
        tier = RedisTier(url, ttl=60)
        tier.put("k", b"value")
        assert tier.get("k") == b"value"
        assert tier.held_bytes() > 0
        other = RedisTier(url)
        assert other.get("k") == b"value"
        tier._client.set("tileserver:bad", b"garbage")
        assert tier.get("bad") is None and tier._client.get("tileserver:bad") is None
        proc.kill()
        proc.wait()
        with caplog.at_level(logging.WARNING):
            assert tier.get("k") is None  # no error: a miss
            tier.put("k2", b"v")
            assert tier.get("k") is None
        assert caplog.text.count("failed") == 1
        assert np.isnan(tier.held_bytes())
        tier.close()
        other.close()


def _ndvi_min() -> dict:
    left, bottom, right, top = TEST_BOUNDS_32632
    return call("min_time", call("NDVI", bbox(leaf(), left, right, top, bottom),
                                 red="B04", nir="B08"))


def test_engine_node_results_shared_between_engines(small_catalog, tmp_path):
    tier_dir = tmp_path / "shared"
    one = make_engine(small_catalog, shared=DiskTier(tier_dir, 10**8), shared_min_seconds=0)
    two = make_engine(small_catalog, shared=DiskTier(tier_dir, 10**8), shared_min_seconds=0)
    view = View("EPSG:32632", TEST_BOUNDS_32632, 128, 128)
    first = one.evaluate(one.parse(_ndvi_min()), view)
    one.flush_shared()  # node results are written in the background
    before = pixels_read()
    second = two.evaluate(two.parse(_ndvi_min()), view)  # another process: its LRU is empty
    assert pixels_read() == before  # nothing read from the sources
    np.testing.assert_array_equal(first.data, second.data)
    assert second.times is None and second.kind == first.kind
    three = make_engine(small_catalog, shared=None)
    np.testing.assert_array_equal(three.evaluate(three.parse(_ndvi_min()), view).data,
                                  first.data)


def test_a_rewritten_catalog_file_is_not_served_stale(tmp_path):
    from tests.support.synthetic import make_catalog

    catalog = make_catalog(tmp_path / "cat")
    tier = DiskTier(tmp_path / "shared", 10**8)
    engine = make_engine(catalog, shared=tier, shared_min_seconds=0)
    view = View("EPSG:32632", TEST_BOUNDS_32632, 512, 512)  # full resolution
    graph = engine.parse(_ndvi_min())
    old = engine.evaluate(graph, view).data.copy()
    engine.flush_shared()
    assert np.array_equal(engine.evaluate(graph, view).data, old, equal_nan=True)
    # rewrite the red band of one date with other values (same path, same size class)
    import rasterio

    path = next((catalog.parent / "TEST" / "test_0").glob("B04.tif"))
    with rasterio.open(path, "r+") as dst:
        dst.write((dst.read(1) // 2).astype("uint16"), 1)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    fresh = make_engine(catalog, shared=None).evaluate(graph, view).data
    assert not np.array_equal(fresh, old, equal_nan=True)
    # the same engine (its LRU and the shared tier hold the old values) recomputes
    np.testing.assert_array_equal(engine.evaluate(graph, view).data, fresh)
    engine.flush_shared()
    other = make_engine(catalog, shared=DiskTier(tmp_path / "shared", 10**8),
                        shared_min_seconds=0)
    np.testing.assert_array_equal(other.evaluate(other.parse(_ndvi_min()), view).data, fresh)


def test_disk_tier_keeps_tile_sized_entries_inside_its_index(disk):
    """A map tile is one SQLite write (no file beside the index); big entries are files."""
    disk.put("tile", b"t" * 60_000)
    assert disk.get("tile") == b"t" * 60_000
    assert not list(disk.directory.rglob("*.val"))
    disk.put("node", b"n" * (INLINE_BYTES + 1))
    assert len(list(disk.directory.rglob("*.val"))) == 1
