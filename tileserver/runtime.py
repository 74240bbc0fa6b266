"""The runtime: everything a server process holds (settings, catalog, engine, job store).

Built once per application by :func:`tileserver.web.app.create_app`; no HTTP in here.
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property

from tileserver.cache.memory import NodeCache
from tileserver.cache.shared import SharedTier, open_tier
from tileserver.data import handles, remote
from tileserver.data.catalog import Catalog
from tileserver.data.stac_api import ApiOptions
from tileserver.demo import Progress, demo_catalog_paths
from tileserver.engine.evaluator import Engine
from tileserver.jobs.store import JobStore
from tileserver.limits import Limiter
from tileserver.settings import Settings
from tileserver.storage import credentials

log = logging.getLogger(__name__)


def catalog_paths(settings: Settings, progress: Progress | None = None) -> list[str]:
    """The configured catalogs, or the demo catalog (written on first use, telling
    ``progress``)."""
    if settings.catalog:
        return list(settings.catalog)
    return [str(p) for p in demo_catalog_paths(settings.demo_dir, progress)]


def _prepare_batch_worker() -> None:
    """Run on every Dask worker at start-up: the batch tasks' imports, paid before a job."""
    import tileserver.jobs.batch_tasks  # noqa: F401, PLC0415


class Runtime:
    """Lazily built shared state of one server process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        credentials.adopt()  # static AWS keys out of os.environ (rasterio would be slow)
        settings.home.mkdir(parents=True, exist_ok=True)
        remote.configure(remote.RemoteOptions.from_settings(settings))
        handles.configure(settings.dataset_handles)

    @cached_property
    def catalog(self) -> Catalog:
        """The STAC products."""
        with self._lock:
            return Catalog.load(catalog_paths(self.settings),
                                ApiOptions.from_settings(self.settings))

    @cached_property
    def cache(self) -> NodeCache:
        """The node-result LRU cache."""
        return NodeCache(self.settings.cache_bytes)

    @cached_property
    def shared_cache(self) -> SharedTier | None:
        """The cache tier shared by every process (disk by default, or Redis)."""
        s = self.settings
        tier = open_tier(s.cache_url, s.home, s.cache_shared_bytes, s.cache_shared_ttl)
        if tier is not None:
            log.info("shared cache tier: %s", tier.describe())
        return tier

    @cached_property
    def engine(self) -> Engine:
        """The graph evaluator."""
        s = self.settings
        return Engine(
            self.catalog,
            self.cache,
            max_pixels=s.max_pixels,
            max_graph_nodes=s.max_graph_nodes,
            max_graph_depth=s.max_graph_depth,
            resampling=s.resampling,
            limiter=Limiter.from_settings(s),
            shared=self.shared_cache,
            shared_min_seconds=s.cache_shared_min_ms / 1000.0,
            shared_max_bytes=s.cache_shared_max_entry,
            udf=self.udf,
        )

    @cached_property
    def udf(self):
        """The UDF runner (its sandbox workers start with the first UDF)."""
        from tileserver.udf import UdfRunner  # noqa: PLC0415

        return UdfRunner.from_settings(self.settings)

    @cached_property
    def store(self) -> JobStore:
        """The job and service registry."""
        return JobStore(self.settings.db_url)

    @cached_property
    def batch(self):
        """The batch job runner (its Dask cluster starts with the first queued job)."""
        from tileserver.jobs.batch import BatchRunner  # noqa: PLC0415

        return BatchRunner(self.settings, self.store, lambda: self.engine,
                           lambda: catalog_paths(self.settings))

    def start_background(self, progress: Progress | None = None) -> threading.Thread:
        """What a server starts at once, off the request path: the demo data on its first
        start (telling ``progress``; requests that need the catalog wait for it, the others
        are answered meanwhile), reading the collections (unreachable STAC APIs logged at
        start-up) and, with ``batch_cluster_at_start``, the batch Dask cluster with its
        workers' imports, so the first batch job does not pay for them. Returns the (daemon)
        thread."""

        def load_catalog() -> None:
            with self._lock:  # requests that need the catalog wait here meanwhile
                catalog_paths(self.settings, progress)
            self.catalog  # noqa: B018 - the cached property, loaded now

        def start() -> None:
            try:
                load_catalog()
            finally:  # the cluster after the demo data: they would share the CPUs
                if self.settings.batch_cluster_at_start:
                    self._start_cluster()

        thread = threading.Thread(target=start, name="start-up", daemon=True)
        thread.start()
        return thread

    def _start_cluster(self) -> None:
        try:
            client = self.batch.client
            client.run(_prepare_batch_worker)
        except Exception as exc:  # the first job tries again and reports it in its log
            if not self.batch.closed:  # not the server stopping while it started
                log.warning("the batch cluster did not start (yet): %s", exc)

    def close(self) -> None:
        """Release resources (database connections, batch cluster)."""
        if "store" in self.__dict__:
            self.store.dispose()
        if "udf" in self.__dict__:
            self.udf.close()
        runner = self.__dict__.get("batch")
        if runner is not None and hasattr(runner, "close"):
            runner.close()
        tier = self.__dict__.get("shared_cache")
        if tier is not None:
            tier.close()
