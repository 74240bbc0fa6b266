"""The pool of open datasets (issue 23): bounded, lends a handle to one reader at a time,
closes what it evicts, and opens a file again once it was rewritten or replaced, so that a
stored result written again is never read through a stale handle."""

from __future__ import annotations

import os
import threading

import numpy as np
import rasterio
from numpy.testing import assert_array_equal
from rasterio.transform import from_origin

from tileserver.data.handles import DatasetCache


def write(path, value: int, size: int = 64) -> None:
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint16",
                   crs="EPSG:32632", transform=from_origin(600000, 5200000, 10, 10))
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(np.full((1, size, size), value, np.uint16))
    os.replace(tmp, path)  # a new file (inode) under the same name, as results are stored


def test_reuses_an_idle_handle(tmp_path):
    path = tmp_path / "a.tif"
    write(path, 7)
    pool = DatasetCache(4)
    with pool.acquire(str(path)) as ds:
        first = ds
        assert ds.read(1)[0, 0] == 7
    with pool.acquire(str(path)) as ds:
        assert ds is first and not ds.closed
    assert pool.opened == 1 and pool.idle() == 1


def test_a_lent_handle_is_not_shared(tmp_path):
    path = tmp_path / "a.tif"
    write(path, 1)
    pool = DatasetCache(4)
    with pool.acquire(str(path)) as one, pool.acquire(str(path)) as two:
        assert one is not two
    assert pool.opened == 2 and pool.idle() == 2


def test_bounded_and_closes_what_it_evicts(tmp_path):
    pool = DatasetCache(3)
    handles = []
    for i in range(6):
        path = tmp_path / f"f{i}.tif"
        write(path, i)
        with pool.acquire(str(path)) as ds:
            handles.append(ds)
    assert pool.idle() == 3
    assert all(ds.closed for ds in handles[:3])  # least recently used first
    assert not any(ds.closed for ds in handles[3:])
    with pool.acquire(str(tmp_path / "f0.tif")) as ds:  # evicted: opened again
        assert ds.read(1)[0, 0] == 0
    assert pool.opened == 7 and pool.idle() == 3
    assert handles[3].closed  # the oldest idle one went
    pool.clear()
    assert pool.idle() == 0 and all(ds.closed for ds in handles)


def test_overview_levels_are_separate_handles(tmp_path):
    path = tmp_path / "o.tif"
    write(path, 5, size=256)
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4])
    pool = DatasetCache(4)
    with pool.acquire(str(path)) as full, pool.acquire(str(path), 0) as ovr:
        assert (full.width, ovr.width) == (256, 128)
    with pool.acquire(str(path), 1) as ovr:
        assert ovr.width == 64


def test_a_replaced_file_is_opened_again(tmp_path):
    path = tmp_path / "result.tif"
    write(path, 1)
    pool = DatasetCache(4)
    with pool.acquire(str(path)) as ds:
        old = ds
        assert_array_equal(ds.read(1), 1)
    write(path, 2)  # the stored result written again
    with pool.acquire(str(path)) as ds:
        assert ds is not old
        assert_array_equal(ds.read(1), 2)
    assert old.closed and pool.idle() == 1


def test_a_file_rewritten_in_place_is_opened_again(tmp_path):
    path = tmp_path / "inplace.tif"
    write(path, 3)
    pool = DatasetCache(4)
    with pool.acquire(str(path)) as ds:
        assert ds.read(1)[0, 0] == 3
    with rasterio.open(path, "r+") as dst:  # same inode, new bytes and mtime
        dst.write(np.full((1, 64, 64), 4, np.uint16))
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pool.acquire(str(path)) as ds:
        assert ds.read(1)[0, 0] == 4


def test_a_failed_read_closes_its_handle(tmp_path):
    path = tmp_path / "a.tif"
    write(path, 1)
    pool = DatasetCache(4)
    try:
        with pool.acquire(str(path)) as ds:
            failed = ds
            raise RuntimeError("read failed")
    except RuntimeError:
        pass
    assert failed.closed and pool.idle() == 0


def test_threads_read_the_right_values(tmp_path):
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"t{i}.tif")
        write(paths[-1], i + 10)
    pool = DatasetCache(2)  # smaller than the threads' needs: evictions under load
    errors = []

    def reader(k: int) -> None:
        for n in range(40):
            i = (k + n) % 4
            with pool.acquire(str(paths[i])) as ds:
                if ds.read(1)[5, 5] != i + 10:
                    errors.append((k, n))

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and pool.idle() <= 2
