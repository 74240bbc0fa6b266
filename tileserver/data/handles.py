"""Open datasets kept across requests: a bounded, thread-safe pool of rasterio handles.

Opening a COG costs GDAL a header parse (IFDs of every overview), a CRS and often a
directory listing: more than decoding the one 256² block a cold tile needs. The pool keeps
handles open per ``(path, overview level)`` and lends each to one thread at a time (a GDAL
dataset is not safe under concurrent reads); idle handles beyond ``max_idle`` are closed,
least recently used first.

A local file is keyed on its identity too (size, mtime, inode): a file rewritten or
replaced (a batch job's result stored again) opens anew on its next read, and the idle
handles of its old version are closed then. Remote files (URLs, GDAL virtual paths) are
keyed on their path alone (their headers are GDAL's /vsicurl/ cache's business).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import rasterio

#: Idle handles kept per process until :func:`configure` sets the ``dataset_handles``
#: setting (each holds a file descriptor and GDAL's parsed header; decoded blocks live in
#: GDAL's block cache, bounded by GDAL_CACHEMAX).
DEFAULT_MAX_IDLE = 256


def signature(path: str) -> tuple:
    """What identifies the version of ``path``: ``(size, mtime_ns, inode)`` of a local
    file, ``()`` for anything that is not one."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return ()
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class DatasetCache:
    """Idle rasterio datasets by ``(path, overview level, signature)``, at most
    ``max_idle`` of them; :meth:`acquire` lends one (opening it when none is idle)."""

    def __init__(self, max_idle: int = DEFAULT_MAX_IDLE):
        self.max_idle = max(0, int(max_idle))
        self._idle: OrderedDict[tuple, list] = OrderedDict()  # key -> idle handles (LRU)
        self._count = 0
        self._versions: dict[tuple, tuple] = {}  # (path, level) -> newest signature seen
        self._lock = threading.Lock()
        self.opened = 0  # datasets opened (for tests and the profile)

    @contextmanager
    def acquire(self, path: str, level: int | None = None,
                local: str | None = None) -> Iterator[rasterio.io.DatasetReader]:
        """A dataset of ``path`` (a GDAL path) at overview ``level`` (``None``: full
        resolution) for the caller alone; back to the pool afterwards (closed if the read
        failed). ``local``: the file system path whose identity keys the handle (by default
        ``path``)."""
        sig = signature(local or path)
        key = (path, level, sig)
        stale = self._take_stale((path, level), sig)
        for ds in stale:
            ds.close()
        ds = self._pop(key)
        if ds is None:
            opts = {} if level is None else {"overview_level": level}
            ds = rasterio.open(path, **opts)
            with self._lock:
                self.opened += 1
        ok = False
        try:
            yield ds
            ok = True
        finally:
            if ok and self.max_idle:
                self._push(key, ds)
            else:
                ds.close()

    def _take_stale(self, base: tuple, sig: tuple) -> list:
        """Forget (and return, to be closed) the idle handles of older versions of a file."""
        with self._lock:
            old = self._versions.get(base)
            if old == sig:
                return []
            self._versions[base] = sig
            if old is None:
                return []
            handles = self._idle.pop((*base, old), [])
            self._count -= len(handles)
            return handles

    def _pop(self, key: tuple):
        with self._lock:
            handles = self._idle.get(key)
            if not handles:
                return None
            ds = handles.pop()
            self._count -= 1
            if not handles:
                del self._idle[key]
            return ds

    def _push(self, key: tuple, ds) -> None:
        evicted = []
        with self._lock:
            if self._versions.get(key[:2]) != key[2]:
                evicted.append(ds)  # the file changed while this handle was lent
            else:
                self._idle.setdefault(key, []).append(ds)
                self._idle.move_to_end(key)
                self._count += 1
            while self._count > self.max_idle:
                oldest, handles = next(iter(self._idle.items()))
                evicted.append(handles.pop(0))
                self._count -= 1
                if not handles:
                    del self._idle[oldest]
        for old in evicted:
            old.close()

    def idle(self) -> int:
        """Idle handles held."""
        with self._lock:
            return self._count

    def clear(self) -> None:
        """Close every idle handle."""
        with self._lock:
            handles = [ds for lst in self._idle.values() for ds in lst]
            self._idle.clear()
            self._count = 0
            self._versions.clear()
        for ds in handles:
            ds.close()


#: The process's pool (the reader's; a forked child starts with its own, see below).
DATASETS = DatasetCache()


def _after_fork() -> None:
    """A forked process (a gunicorn or Dask worker) must not share its parent's GDAL
    handles: it starts with an empty pool (the parent's handles are left to the parent)."""
    global DATASETS
    DATASETS = DatasetCache(DATASETS.max_idle)


os.register_at_fork(after_in_child=_after_fork)


def configure(max_idle: int) -> None:
    """Keep at most ``max_idle`` idle handles in this process (the ``dataset_handles``
    setting); handles beyond it are closed on their next return."""
    DATASETS.max_idle = max(0, int(max_idle))


def datasets() -> DatasetCache:
    """The process's pool."""
    return DATASETS
