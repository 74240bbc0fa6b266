"""The shared cache tier: bytes seen by every server process of a host (disk) or of several
hosts (Redis), behind the per-process LRU (:class:`~tileserver.cache.memory.NodeCache`).

What goes here is decided by the callers (see README, "Caching"): encoded tiles and
coverages, and node results above a cost threshold serialised by
:mod:`tileserver.cache.codec` (no pickle). Keys are hex digests of everything that changes
the bytes (graph hash, view, time, style, format, the catalog's version).

Every entry is wrapped in an envelope: a magic, then a BLAKE2b digest of the key and the
payload. A truncated or corrupted entry, or bytes stored under another key, fail the check
and count as a miss (the entry is deleted). A tier that fails (a disk that is full, a cache
directory deleted, a Redis that stops) degrades to a miss: the error is logged once per
outage, the tier is skipped for a few seconds, then tried again. Nothing here raises to the
caller.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path

from tileserver import metrics

log = logging.getLogger(__name__)

MAGIC = b"TSC1"
_DIGEST = 32


def digest_key(*parts: object) -> str:
    """A cache key (hex SHA-256) of the parts' string forms."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def wrap(key: str, payload: bytes) -> bytes:
    """The stored form of ``payload`` under ``key``."""
    check = hashlib.blake2b(key.encode() + b"\0" + payload, digest_size=_DIGEST).digest()
    return MAGIC + check + payload


def unwrap(key: str, blob: bytes) -> bytes | None:
    """The payload, or ``None`` when ``blob`` is not a valid entry of ``key``."""
    if not isinstance(blob, bytes | bytearray | memoryview) or len(blob) < 4 + _DIGEST:
        return None
    blob = bytes(blob)
    if blob[:4] != MAGIC:
        return None
    payload = blob[4 + _DIGEST:]
    check = hashlib.blake2b(key.encode() + b"\0" + payload, digest_size=_DIGEST).digest()
    return payload if check == blob[4:4 + _DIGEST] else None


class SharedTier:
    """A byte store shared between processes; subclasses implement the ``_get``/``_put``/
    ``_delete``/``_held`` primitives, this class guards them."""

    name = "shared"
    #: Seconds a failed tier is skipped before it is tried again.
    retry_seconds = 2.0

    def __init__(self) -> None:
        self._down_until = 0.0
        self._failing = False
        self._state_lock = threading.Lock()

    # -- primitives ------------------------------------------------------------------------

    def _get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def _put(self, key: str, blob: bytes) -> None:
        raise NotImplementedError

    def _delete(self, key: str) -> None:
        raise NotImplementedError

    def _held(self) -> int:
        raise NotImplementedError

    def describe(self) -> str:
        """Where the tier lives (for logs)."""
        return self.name

    # -- guarded operations -----------------------------------------------------------------

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, op: str, exc: BaseException) -> None:
        metrics.SHARED_ERRORS.labels(self.name, op).inc()
        with self._state_lock:
            self._down_until = time.monotonic() + self.retry_seconds
            first = not self._failing
            self._failing = True
        if first:
            log.warning("shared cache %s failed (%s: %s); computing instead, retrying every "
                        "%g s", self.describe(), type(exc).__name__, exc, self.retry_seconds)

    def _ok(self) -> None:
        if self._failing:
            with self._state_lock:
                was, self._failing = self._failing, False
            if was:
                log.warning("shared cache %s works again", self.describe())

    def get(self, key: str) -> bytes | None:
        """The payload stored under ``key`` or ``None`` (miss, invalid entry or failure)."""
        if not self._available():
            metrics.TIER_MISSES.labels(self.name).inc()
            return None
        started = time.perf_counter()
        try:
            blob = self._get(key)
        except Exception as exc:  # noqa: BLE001 - a failing tier is a miss
            self._failed("get", exc)
            blob = None
        else:
            self._ok()
        finally:
            metrics.SHARED_SECONDS.labels(self.name, "get").observe(
                time.perf_counter() - started)
        if blob is None:
            metrics.TIER_MISSES.labels(self.name).inc()
            return None
        payload = unwrap(key, blob)
        if payload is None:
            metrics.SHARED_ERRORS.labels(self.name, "corrupt").inc()
            metrics.TIER_MISSES.labels(self.name).inc()
            log.warning("shared cache %s: invalid entry %s dropped", self.describe(), key[:16])
            self.delete(key)
            return None
        metrics.TIER_HITS.labels(self.name).inc()
        return payload

    def put(self, key: str, payload: bytes) -> None:
        """Store ``payload`` (failures are logged once and ignored)."""
        if not self._available():
            return
        started = time.perf_counter()
        try:
            self._put(key, wrap(key, payload))
        except Exception as exc:  # noqa: BLE001 - a failing tier stores nothing
            self._failed("put", exc)
        else:
            self._ok()
        finally:
            metrics.SHARED_SECONDS.labels(self.name, "put").observe(
                time.perf_counter() - started)

    def delete(self, key: str) -> None:
        """Forget ``key`` (failures ignored)."""
        try:
            self._delete(key)
        except Exception as exc:  # noqa: BLE001
            self._failed("delete", exc)

    def held_bytes(self) -> float:
        """Bytes held by the tier (NaN when unknown or unreachable)."""
        if not self._available():
            return float("nan")
        try:
            return float(self._held())
        except Exception:  # noqa: BLE001 - a scrape must not fail
            return float("nan")

    def close(self) -> None:
        """Release connections."""


#: Entries up to this size live inside the disk tier's SQLite file, larger ones as files
#: beside it. Map tiles (tens of kB) then cost one SQLite write, not a file created,
#: written and closed too: 120 instead of 250 us per 40 kB put (diskcache's own threshold
#: is 32 kB).
INLINE_BYTES = 256 * 1024


class DiskTier(SharedTier):
    """A directory shared by the processes of one host: :mod:`diskcache` (SQLite index,
    values as files), bounded by ``max_bytes`` (least recently stored entries go first).

    Each process opens its own handle (after a fork too); a deleted directory is created
    again on the next use.
    """

    name = "disk"
    retry_seconds = 1.0

    def __init__(self, directory: str | os.PathLike, max_bytes: int):
        super().__init__()
        self.directory = Path(directory)
        self.max_bytes = int(max_bytes)
        self._cache = None
        self._pid = 0
        self._ino = 0
        self._open_lock = threading.Lock()

    def describe(self) -> str:
        """The directory."""
        return f"disk {self.directory}"

    def _current(self) -> bool:
        """Whether this process's handle is open on the index file that is there now (a
        deleted directory, even if another process created it again, needs a new one)."""
        if self._cache is None or self._pid != os.getpid():
            return False
        try:
            return os.stat(self.directory / "cache.db").st_ino == self._ino
        except OSError:
            return False

    def _handle(self):
        if self._current():
            return self._cache
        import diskcache  # noqa: PLC0415 - only the processes that use it

        with self._open_lock:
            if self._current():
                return self._cache
            old, self._cache = self._cache, None
            if old is not None and self._pid == os.getpid():
                try:
                    old.close()
                except Exception:  # noqa: BLE001
                    pass
            self.directory.mkdir(parents=True, exist_ok=True)
            self._cache = diskcache.Cache(
                str(self.directory), size_limit=self.max_bytes, timeout=2,
                eviction_policy="least-recently-stored", statistics=False,
                disk_min_file_size=INLINE_BYTES)
            self._pid = os.getpid()
            self._ino = os.stat(self.directory / "cache.db").st_ino
            return self._cache

    def _get(self, key: str) -> bytes | None:
        return self._handle().get(key, default=None, retry=True)

    def _put(self, key: str, blob: bytes) -> None:
        self._handle().set(key, blob, retry=True)

    def _delete(self, key: str) -> None:
        self._handle().delete(key, retry=True)

    def _held(self) -> int:
        return int(self._handle().volume())

    def close(self) -> None:
        """Close this process's handle."""
        with self._open_lock:
            if self._cache is not None and self._pid == os.getpid():
                self._cache.close()
            self._cache = None


class RedisTier(SharedTier):
    """A Redis server shared by several hosts. Size is bounded by the server
    (``maxmemory`` with an ``allkeys-lru`` policy); entries also expire after ``ttl``
    seconds (0: never). Short socket timeouts: a Redis that stops costs at most one
    timeout per ``retry_seconds``."""

    name = "redis"

    def __init__(self, url: str, ttl: int = 0, prefix: str = "tileserver:",
                 timeout: float = 0.5):
        super().__init__()
        import redis  # noqa: PLC0415

        self.url = url
        self.ttl = int(ttl)
        self.prefix = prefix
        self._client = redis.Redis.from_url(url, socket_timeout=timeout,
                                            socket_connect_timeout=timeout)

    def describe(self) -> str:
        """The server (without credentials)."""
        return "redis " + self.url.split("@")[-1]

    def _get(self, key: str) -> bytes | None:
        value = self._client.get(self.prefix + key)
        return value if isinstance(value, bytes) else None

    def _put(self, key: str, blob: bytes) -> None:
        self._client.set(self.prefix + key, blob, ex=self.ttl or None)

    def _delete(self, key: str) -> None:
        self._client.delete(self.prefix + key)

    def _held(self) -> int:
        return int(self._client.info("memory")["used_memory"])

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def open_tier(url: str | None, home: Path, max_bytes: int, ttl: int = 0) -> SharedTier | None:
    """The tier a ``cache_url`` setting names: unset = a disk tier under ``home/cache``;
    ``redis://``, ``rediss://``, ``unix://`` = Redis; ``file:///path`` = a disk tier
    there; ``none``/``off`` = no shared tier."""
    value = (url or "").strip()
    if value.lower() in ("none", "off", "false", "0"):
        return None
    if not value:
        tier: SharedTier = DiskTier(home / "cache", max_bytes)
    elif value.startswith(("redis://", "rediss://", "unix://")):
        tier = RedisTier(value, ttl=ttl)
    elif value.startswith("file://"):
        tier = DiskTier(value[len("file://"):], max_bytes)
    else:
        raise ValueError(f"cache_url {value!r}: use redis://host:port/db, file:///path or none")
    metrics.set_function(metrics.TIER_BYTES, {"tier": tier.name}, tier.held_bytes)
    return tier
