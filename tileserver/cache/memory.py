"""An LRU cache of node results, bounded in bytes and safe under threads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
from cachetools import LRUCache

from tileserver import metrics

# the labelled counters, looked up once (not at every hit and miss)
_TIER_HITS = metrics.TIER_HITS.labels("memory")
_TIER_MISSES = metrics.TIER_MISSES.labels("memory")
_TIER_BYTES = metrics.TIER_BYTES.labels("memory")


def _sizeof(value: Any) -> int:
    if isinstance(value, bytes):
        return max(1, len(value))
    return max(1, int(getattr(value, "nbytes", 1024)))


def _freeze(value: Any) -> None:
    """Make a shared result's arrays read-only: a consumer that writes into a cached cube
    would corrupt every later request, so it fails loudly instead."""
    for arr in (value, getattr(value, "data", None)):
        if isinstance(arr, np.ndarray):
            arr.setflags(write=False)


class NodeCache:
    """``(node hash, query key) -> result`` with least-recently-used eviction by bytes.

    A value larger than the whole cache is not stored. Concurrent requests for the same key
    compute it once: the others wait for the first (``get_or_compute``).
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._lru: LRUCache = LRUCache(maxsize=max(1, self.max_bytes), getsizeof=_sizeof)
        self._lock = threading.Lock()
        self._inflight: dict[Hashable, threading.Event] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        """The cached value or ``None`` (counts a hit or a miss)."""
        with self._lock:
            value = self._lru.get(key)
            if value is None:
                self.misses += 1
                metrics.CACHE_MISSES.inc()
                _TIER_MISSES.inc()
            else:
                self.hits += 1
                metrics.CACHE_HITS.inc()
                _TIER_HITS.inc()
            return value

    def put(self, key: Hashable, value: Any) -> None:
        """Store a value unless it alone exceeds the cache."""
        if self.max_bytes <= 0 or _sizeof(value) > self.max_bytes:
            return
        _freeze(value)
        with self._lock:
            self._lru[key] = value
            metrics.CACHE_BYTES.set(self._lru.currsize)
            _TIER_BYTES.set(self._lru.currsize)
            metrics.CACHE_ENTRIES.set(len(self._lru))

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached value, or ``compute()`` stored; one computation per key at a time."""
        while True:
            with self._lock:
                value = self._lru.get(key)
                if value is not None:
                    self.hits += 1
                    metrics.CACHE_HITS.inc()
                    _TIER_HITS.inc()
                    return value
                event = self._inflight.get(key)
                if event is None:
                    event = self._inflight[key] = threading.Event()
                    self.misses += 1
                    metrics.CACHE_MISSES.inc()
                    _TIER_MISSES.inc()
                    break
            event.wait(timeout=600)
            with self._lock:
                if key in self._lru or key in self._inflight:
                    continue
            # the computation we waited for failed or was not stored: do it ourselves
            with self._lock:
                if key not in self._inflight:
                    event = self._inflight[key] = threading.Event()
                    break
        try:
            value = compute()
            self.put(key, value)
            return value
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            event.set()

    @property
    def currsize(self) -> int:
        """Bytes held."""
        with self._lock:
            return int(self._lru.currsize)

    def __len__(self) -> int:
        with self._lock:
            return len(self._lru)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._lru.clear()
            metrics.CACHE_BYTES.set(0)
            metrics.CACHE_ENTRIES.set(0)
