"""The evaluator: a graph and a view in, the values for that view out.

Constraints (view, time range, bands) are pushed from the root to the data leaves through
:class:`~tileserver.datacube.query.Query`; each node's result is cached under
``(node hash, query key)`` so that overlapping requests and graphs sharing a subgraph
reuse work.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from cachetools import TTLCache
from rasterio.crs import CRS
from rasterio.enums import Resampling

from tileserver import metrics
from tileserver.cache import codec as serial
from tileserver.cache.memory import NodeCache
from tileserver.cache.shared import SharedTier, digest_key
from tileserver.data.catalog import Catalog, Product
from tileserver.data.grid import PixelGrid, native_grid
from tileserver.data.reader import Unwarped, read_window, warp_many
from tileserver.data.remote import BrokenSource
from tileserver.datacube.bounds import transform_bounds, wgs84_bounds
from tileserver.datacube.cube import Cube, day_key, first_of_each_day
from tileserver.datacube.query import CubeMeta, Query
from tileserver.datacube.view import View
from tileserver.engine.plan import Plan, plan
from tileserver.errors import (
    LimitExceeded,
    MemoryTooLarge,
    ProcessGraphError,
    TileserverError,
    TooManyRequests,
)
from tileserver.graph.nodes import Callback, Node
from tileserver.graph.v002 import GraphParser, translate
from tileserver.graph.v1 import V1, FlatGraphParser, is_flat_graph
from tileserver.limits import Limiter, check_deadline, remaining
from tileserver.processes import CUBE, CUBE_PROCESSES, REGISTRY, TRANSLATIONS
from tileserver.processes.callbacks import run_callback
from tileserver.processes.cube.load import collection_id
from tileserver.render.formats import check_output_kind, validate_output
from tileserver.settings import load_settings

WGS84 = CRS.from_epsg(4326)
log = logging.getLogger(__name__)
#: Pixels a side of the view a UDF's output dates are learnt on (:meth:`Engine.times`).
TIMES_PROBE = 8
_skipped_logged: set[tuple[str, str]] = set()


def skipped(product_id: str, item_id: str, exc: Exception) -> None:
    """Count a broken source; log it once per item (not on every tile)."""
    metrics.SKIPPED_SOURCES.inc()
    key = (product_id, item_id)
    if key not in _skipped_logged and len(_skipped_logged) < 100_000:
        _skipped_logged.add(key)
        log.warning("product %s, item %s skipped: %s", product_id, item_id, exc)


def process_of(node: Node):
    """The process of a node: the registry's, or for a node of a parsed 0.0.2 tree (before
    its translation) the 0.0.2 table's entry."""
    return (REGISTRY if node.dialect == V1 else TRANSLATIONS)[node.process_id]


def node_returns(node: Node) -> str:
    """What a node's result is: ``imagery`` (a cube) for data leaves and image processes,
    or the ``returns`` of its process (``table`` for ``zonal_statistics``)."""
    if node.is_product:
        return "imagery"
    if node.dialect == V1 and getattr(REGISTRY.get(node.process_id), "kind", None) != CUBE:
        return "value"  # a scalar computed by an array process outside any callback
    if node.dialect == V1 and node.process_id in ("save_result", "export_workspace") and \
            isinstance(node.args.get("data"), Node):
        return node_returns(node.args["data"])  # saves (exports) a cube or a table
    return process_of(node).returns


@dataclass(frozen=True)
class Graph:
    """A parsed and validated process graph."""

    root: Node
    meta: CubeMeta
    source: dict
    #: ``"0.0.2"`` (nested graph) or ``"1.x"`` (flat graph).
    dialect: str = "0.0.2"
    #: The validated ``output`` (``{"format", "parameters"}``, as ``encode`` takes it) of a
    #: 1.x graph whose result node is ``save_result``.
    save_result: dict | None = None
    #: The tree as parsed in its dialect (``root`` is what the engine evaluates: 1.x
    #: processes, into which the 0.0.2 processes are translated).
    parsed: Node | None = None
    #: The user-defined processes the graph was parsed with (id -> stored definition):
    #: what a worker without the store needs to parse it the same way.
    processes: dict = field(default_factory=dict)
    #: ``{"workspace", "merge"}`` of a 1.x graph whose result node is ``export_workspace``
    #: (around its ``save_result``): where a batch job copies its result files.
    export: dict | None = None

    @property
    def notes(self) -> tuple[str, ...]:
        """Normalisations applied (e.g. a swapped bbox)."""
        return self.meta.notes

    @property
    def is_raster(self) -> bool:
        """Whether the result is a cube (else a table that chooses its own views)."""
        return node_returns(self.root) == "imagery"


class _MetaContext:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.catalog = engine.catalog
        self._memo: dict[int, CubeMeta] = {}

    def meta(self, node: Node) -> CubeMeta:
        key = id(node)
        if key not in self._memo:
            if node.is_product:
                product = self.catalog.get(node.args["product_id"], f"{node.path}.product_id")
                bands = tuple(product.bands)
                self._memo[key] = CubeMeta(product, bands, bands)
            else:
                self._memo[key] = process_of(node).meta(self, node)
        return self._memo[key]


class _EvalContext(_MetaContext):
    def __init__(self, engine: Engine, context: dict | None = None, version: str = ""):
        super().__init__(engine)
        #: Caller facts some processes need (``user_id``, ``files_root`` for user files).
        self.context = dict(context or {})
        #: The catalog's version for this evaluation (part of every cache key).
        self.version = version
        #: Seconds spent in the children of the nodes being computed (innermost last).
        self.child_seconds: list[float] = []
        self._tokens: dict[int, tuple | None] = {}

    def eval(self, node: Node, query: Query) -> Any:
        return self.engine.evaluate_node(node, query, self)

    def cache_token(self, node: Node) -> tuple | None:
        """Tokens of the processes at or below ``node`` whose result depends on more than
        the graph (a UDF's script content), once per evaluation; ``None`` when none."""
        key = id(node)
        if key not in self._tokens:
            fns = [(getattr(REGISTRY.get(n.process_id), "cache_token", None), n)
                   for n in node.walk() if not n.is_product and n.dialect == V1]
            tokens = tuple(fn(self, n) for fn, n in fns if fn is not None)
            self._tokens[key] = tokens or None
        return self._tokens[key]


class Engine:
    """Catalog + cache + settings: parses graphs and evaluates them on views."""

    def __init__(
        self,
        catalog: Catalog,
        cache: NodeCache | None = None,
        *,
        max_pixels: int | None = None,
        max_graph_nodes: int | None = None,
        max_graph_depth: int | None = None,
        resampling: str | None = None,
        read_threads: int = 4,
        limiter: Limiter | None = None,
        shared: SharedTier | None = None,
        shared_min_seconds: float = 0.03,
        shared_max_bytes: int = 32 * 1024 * 1024,
        udf: Any = None,
    ):
        # limits left out: those of the settings (config/default.yaml, TILESERVER_*)
        if None in (max_pixels, max_graph_nodes, max_graph_depth, resampling):
            limits = load_settings()
            max_pixels = limits.max_pixels if max_pixels is None else max_pixels
            max_graph_nodes = (limits.max_graph_nodes if max_graph_nodes is None
                               else max_graph_nodes)
            max_graph_depth = (limits.max_graph_depth if max_graph_depth is None
                               else max_graph_depth)
            resampling = limits.resampling if resampling is None else resampling
        self.catalog = catalog
        self.cache = cache if cache is not None else NodeCache(256 * 1024 * 1024)
        self.max_pixels = max_pixels
        self.parser = GraphParser(TRANSLATIONS, max_graph_nodes, max_graph_depth)
        self.flat_parser = FlatGraphParser(REGISTRY, max_graph_nodes, max_graph_depth)
        self.resampling = Resampling[resampling]
        self._pool = ThreadPoolExecutor(max_workers=read_threads, thread_name_prefix="read")
        #: Evaluations in flight and their deadline (None: unlimited).
        self.limiter = limiter
        #: The cache tier shared by every process (None: only the per-process LRU).
        self.shared = shared
        #: Node results that took at least this long and are at most this big go to the
        #: shared tier (cheaper ones are recomputed rather than serialised).
        self.shared_min_seconds = shared_min_seconds
        self.shared_max_bytes = shared_max_bytes
        # node results are written to the shared tier by one background thread (off the
        # request's path); at most 8 wait, more are dropped rather than queued
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-write")
        self._pending = threading.BoundedSemaphore(8)
        #: The UDF runner (:class:`tileserver.udf.UdfRunner`; None: no UDFs here).
        self.udf = udf
        #: Native grids of (product, bands, dates), for a minute (a STAC API's items change).
        self._grids: TTLCache = TTLCache(maxsize=256, ttl=60)
        self._grids_lock = threading.Lock()

    # -- graphs -------------------------------------------------------------------------

    def compute_value(self, obj: Any, processes: dict[str, dict] | None = None
                      ) -> tuple[bool, Any]:
        """``(True, value)`` of a 1.x flat graph whose result is computed by array
        processes alone, with no data cube anywhere (``{"add": {"process_id": "add", ...}}``:
        what the openEO process tests send to ``/result``); ``(False, None)`` for any other
        graph (:meth:`parse` takes it, and explains what is wrong with it)."""
        root = self.flat_parser.parse(obj, processes=dict(processes or {}))
        if isinstance(root, Node) and (node_returns(root) != "value" or any(
                n.process_id in CUBE_PROCESSES for n in root.walk())):
            return False, None
        return True, run_callback(Callback(root, (), "process_graph"), {})

    def parse(self, obj: Any, dialect: str | None = None,
              processes: dict[str, dict] | None = None) -> Graph:
        """Parse and validate a ``process_graph`` of either dialect: the 0.0.2 nested form
        or the 1.x flat form, told apart by their shape unless ``dialect`` says which
        (raises :class:`ProcessGraphError`). ``processes``: the user-defined processes a
        1.x graph may call (id -> stored definition, :func:`tileserver.graph.udp.collect`)."""
        flat = is_flat_graph(obj) if dialect is None else dialect == V1
        processes = dict(processes or {}) if flat else {}
        root = self.flat_parser.parse(obj, processes=processes) if flat else \
            self.parser.parse(obj)
        if not isinstance(root, Node) or node_returns(root) == "value":
            raise ProcessGraphError(
                "the graph's result is not a data cube: it must load a collection (e.g. "
                "load_collection) and process it", path="process_graph")
        save = export = None
        saved = root
        if root.dialect == V1 and root.process_id == "export_workspace":
            export = {"workspace": root.args.get("workspace"), "merge": root.args.get("merge")}
            if isinstance(root.args.get("data"), Node):
                saved = root.args["data"]  # a save_result (checked by its meta)
        if saved.dialect == V1 and saved.process_id == "save_result":
            save = validate_output({"format": saved.args["format"],
                                    "parameters": saved.args.get("options") or {}})
        # the root, or the data a root save_result writes, may be a table
        last = saved.args.get("data") if save is not None else root
        for node in root.walk():
            if node.process_id == "export_workspace" and node is not root:
                raise ProcessGraphError(
                    f"{node.path}: export_workspace can only be the result node of a graph "
                    "(around its save_result)", path=node.path)
            if node is saved and node is not root:
                continue
            returns = node_returns(node)
            if node is not root and node is not last and returns != "imagery":
                raise ProcessGraphError(
                    f"{node.path}: {node.process_id} returns a {returns}, not imagery; it can "
                    "only be the root of a graph", path=node.path)
        if save is not None:
            check_output_kind(save, node_returns(root) == "imagery")
        mctx = _MetaContext(self)
        meta = mctx.meta(root)  # validates, with the dialect's own words and paths
        parsed = root
        if not flat:
            root = translate(root, TRANSLATIONS, REGISTRY, mctx)
        return Graph(root, meta, obj, V1 if flat else "0.0.2", save, parsed, processes,
                     export)

    def cache_token(self, graph: Graph, context: dict | None = None) -> tuple | None:
        """What besides the graph decides its result for this caller (a UDF's script
        content), e.g. for HTTP entity tags; ``None`` for plain graphs."""
        return _EvalContext(self, context).cache_token(graph.root)

    def meta(self, node: Node) -> CubeMeta:
        """What a node's result is, without reading data."""
        return _MetaContext(self).meta(node)

    def extent(self, graph: Graph) -> tuple[tuple[float, float, float, float], CRS]:
        """``(bounds, crs)`` of the result: the bbox filter, or the product's extent."""
        meta = graph.meta
        if meta.bbox is not None and meta.srs is not None:
            return meta.bbox, meta.srs
        product = meta.product
        crs = product.crs
        return transform_bounds(WGS84, crs, *product.bbox, densify_pts=21), crs

    def _data_grid(self, graph: Graph) -> PixelGrid | None:
        """The lattice of the files of the product a graph's result is on, in the CRS of
        the result (None: another CRS, or none)."""
        meta = graph.meta
        product = meta.product
        bands = meta.product_bands
        # the product itself (held at most a minute): a filtered one has its own items
        key = (product, bands, meta.time_range)
        with self._grids_lock:
            grid = self._grids.get(key, False)
        if grid is False:
            grid = native_grid(product, bands, meta.time_range)
            with self._grids_lock:
                self._grids[key] = grid
        if grid is None or (meta.native_crs is not None and meta.native_crs != grid.crs):
            return None
        return grid

    def native_grid(self, graph: Graph) -> PixelGrid | None:
        """The pixel lattice of the files a graph's result is on (:mod:`tileserver.data.grid`):
        the files' own CRS, resolution and alignment, over the union of the items in the
        graph's dates. None when the result is not on it (a ``resample_spatial`` to another
        CRS or resolution) or the files give none."""
        grid = self._data_grid(graph)
        res = graph.meta.native_res
        if grid is None or (res and not (math.isclose(res, grid.xres, rel_tol=1e-9)
                                         and math.isclose(res, grid.yres, rel_tol=1e-9))):
            return None
        return grid

    def native_view(self, graph: Graph) -> View:
        """The grid of a graph's result at its full resolution.

        Without a bbox: the data's own grid (:meth:`native_grid`: the files' extent, CRS,
        pixel size and alignment, read from the items' ``proj:`` fields or headers; at a
        ``resample_spatial`` resolution, the same extent from the same corner). With a 1.x
        bbox whose result stays in the data's CRS and resolution: the bbox (in its ``srs``,
        transformed to the data's CRS) snapped outwards to the files' pixels. So a view of
        the data is a window of its files, read and never warped. Otherwise (a 0.0.2 bbox,
        whose answers are frozen; a result in another CRS or resolution): the bbox in its
        ``srs`` at the finest resolution of the bands used."""
        meta = graph.meta
        if meta.bbox is None or graph.dialect == V1:
            grid = self.native_grid(graph)
            if grid is not None:
                bounds = grid.bounds
                if meta.bbox is not None and meta.srs is not None:
                    bounds = meta.bbox if meta.srs == grid.crs else transform_bounds(
                        meta.srs, grid.crs, *meta.bbox, densify_pts=21)
                col, row, width, height = grid.window(bounds)
                return View.of_grid(grid.crs, grid.x0 + col * grid.xres,
                                    grid.y0 - row * grid.yres, grid.xres, grid.yres,
                                    width, height)
            grid = self._data_grid(graph)
            if grid is not None and meta.bbox is None and meta.native_res:
                res = meta.native_res
                left, bottom, right, top = grid.bounds
                width = max(1, math.ceil((right - left) / res - 1e-6))
                height = max(1, math.ceil((top - bottom) / res - 1e-6))
                return View.of_grid(grid.crs, left, top, res, res, width, height)
        return self._reprojected_view(graph)

    def _reprojected_view(self, graph: Graph) -> View:
        """The bbox (or the product's WGS84 extent) in its ``srs`` at the finest resolution
        of the bands used."""
        bounds, crs = self.extent(graph)
        meta = graph.meta
        product = meta.product
        res = min(product.bands[b].res_m for b in meta.product_bands)
        pcrs = product.crs
        if graph.dialect == V1:
            # 1.x: the result is in the data's CRS (or resample_spatial's), whatever CRS the
            # spatial extent was given in
            target = meta.native_crs or pcrs
            if target != crs:
                bounds = transform_bounds(crs, target, *bounds, densify_pts=21)
                crs = target
            if meta.native_res:
                res = meta.native_res
                pcrs = crs
            elif target.is_geographic != pcrs.is_geographic:
                pcrs = target
                res = res / 111_320.0 if target.is_geographic else res
        pb = bounds if crs == pcrs else transform_bounds(crs, pcrs, *bounds, densify_pts=21)
        if pcrs.is_geographic and pcrs == product.crs and not (
                graph.dialect == V1 and meta.native_res):
            res = res / 111_320.0
        width = max(1, round((pb[2] - pb[0]) / res))
        height = max(1, round((pb[3] - pb[1]) / res))
        return View(crs, bounds, width, height)

    def times(self, graph: Graph, bbox_wgs84=None, context: dict | None = None
              ) -> list[datetime] | None:
        """The dates of the result (one per acquisition day), or ``None`` when reduced.

        When a UDF decides them (``aggregate_time``) and ``context`` names the graph's owner
        (whose script it is), they are the dates the script returns: the graph is evaluated
        once on a coarse view of its whole extent (:data:`TIMES_PROBE` pixels a side, cached
        like any evaluation under the script's content hash). Without ``context``: the input
        dates.
        """
        meta = graph.meta
        if meta.reduced:
            return None
        if meta.scripted_times and context is not None:
            bounds, crs = self.extent(graph)
            probe = View(crs, bounds, TIMES_PROBE, TIMES_PROBE)
            cube = self.evaluate(graph, probe, purpose="tile", context=context)
            if getattr(cube, "times", None) is None:
                return None
            return sorted(first_of_each_day(cube.times).values())
        if bbox_wgs84 is None:
            bounds, crs = self.extent(graph)
            bbox_wgs84 = transform_bounds(crs, WGS84, *bounds, densify_pts=21)
        items = list(meta.product.items_for(bbox_wgs84, meta.time_range))
        # merge_cubes of collections: the dates of the other collections read too
        for product in self.other_products(graph):
            items += product.items_for(bbox_wgs84, meta.time_range)
        return sorted(first_of_each_day(item.datetime for item in items).values())

    def other_products(self, graph: Graph) -> list:
        """The products a graph reads besides the one whose grid its result is on (the
        second collection of a ``merge_cubes``), as their load processes filter them."""
        main = graph.meta.product.id
        ctx = _MetaContext(self)
        out, seen = [], {main}
        for node in graph.root.walk():
            if node.is_product or (node.dialect == V1 and node.process_id in (
                    "load_collection", "load_stac")):
                product = ctx.meta(node).product
                if product.id not in seen:
                    seen.add(product.id)
                    out.append(product)
        return out

    # -- plans and admission ------------------------------------------------------------

    @contextmanager
    def admitted(self, graph: Graph | Node, view: View,
                 time_range: tuple[datetime, datetime] | None = None,
                 purpose: str = "execute", context: dict | None = None, *,
                 stored: bool = False) -> Iterator[None]:
        """Hold an evaluation slot of the limiter for ``purpose`` with the planner's memory
        estimate of ``graph`` on ``view`` (``stored``: read from a finished job's stored
        result rather than computed); a no-op without a limiter. Raises what the limiter
        refuses with (413 with what to shrink, 429, 503), counted in the metrics."""
        limiter = self.limiter
        if limiter is None:
            yield
            return
        admission: dict[str, Any] = {}
        # tables (zonal statistics, aggregate_spatial) read their regions window by window,
        # each within max_pixels: their view is nominal, planning it would refuse the
        # openEO 0.0.2 example itself; only raster results are planned on their view
        if (isinstance(graph, Graph) and graph.is_raster and limiter.memory_budget
                and limiter.applies(purpose)):
            # a UDF's own views and nested evaluations are planned by their callers
            try:
                p = self.plan(graph, view, time_range)
                admission = {"memory": p.stored_memory_bytes if stored else p.memory_bytes,
                             "explain": p.shrink_hint}
            except Exception:  # noqa: BLE001 - unplanned, as before admission control
                log.warning("no plan for an evaluation on %s", view, exc_info=True)
        with ExitStack() as stack:
            try:
                stack.enter_context(limiter.slot(
                    purpose, user=(context or {}).get("user_id"), **admission))
            except (MemoryTooLarge, TooManyRequests) as exc:
                metrics.ADMISSION_REFUSED.labels(type(exc).__name__).inc()
                raise
            yield

    def plan(self, graph: Graph, view: View | None = None,
             time_range: tuple[datetime, datetime] | None = None) -> Plan:
        """What evaluating ``graph`` on ``view`` (its native view by default) reads,
        produces and holds in memory (:mod:`tileserver.engine.plan`), without reading."""
        return plan(graph.root, graph.meta, self.meta,
                    self.native_view(graph) if view is None else view,
                    time_range)

    # -- versions -----------------------------------------------------------------------

    def products_read(self, root: Node) -> set[str]:
        """Ids of the products a graph reads (its data leaves and 1.x load processes)."""
        out = set()
        for node in root.walk():
            if node.is_product:
                out.add(node.args["product_id"])
            elif node.dialect == V1 and node.process_id in ("load_collection", "load_stac"):
                # the id alone: this runs for every tile, the node's meta checks extents
                out.add(collection_id(node, self.catalog))
        return out

    def version(self, graph: Graph | Node, view: View | None = None,
                time_range: tuple[datetime, datetime] | None = None) -> str:
        """The catalog's version for an evaluation of ``graph`` on ``view``: a token of
        the items and files it can read (:meth:`Product.version_key`). Part of every cache
        key, so a changed item or file never serves older bytes."""
        root = graph.root if isinstance(graph, Graph) else graph
        bbox = None if view is None else wgs84_bounds(view)
        ids = sorted(self.products_read(root))
        parts = []
        for pid in ids:
            product = self.catalog.products.get(pid)
            parts.append(f"{pid}:{product.version_key(bbox, time_range) if product else '-'}")
        return digest_key(*parts)[:24]

    # -- evaluation ---------------------------------------------------------------------

    def evaluate(
        self,
        graph: Graph | Node,
        view: View,
        *,
        time_range: tuple[datetime, datetime] | None = None,
        purpose: str = "execute",
        context: dict | None = None,
    ) -> Any:
        """Values of the graph on ``view`` (optionally only for ``time_range``).

        ``context`` carries facts about the caller that some processes need, e.g.
        ``{"user_id": ..., "files_root": ...}`` for ``zonal_statistics``.
        """
        root = graph.root if isinstance(graph, Graph) else graph
        if view.width <= 0 or view.height <= 0:
            raise ProcessGraphError(f"empty view {view.width}x{view.height}")
        started = time.perf_counter()
        with self.admitted(graph, view, time_range, purpose, context):
            ctx = _EvalContext(self, context, self.version(root, view))
            result = self.evaluate_node(root, Query(view, time_range), ctx)
        metrics.EVALUATIONS.labels(purpose).inc()
        metrics.EVALUATION_SECONDS.labels(purpose).observe(time.perf_counter() - started)
        return result

    def evaluate_node(self, node: Node, query: Query, ctx: _EvalContext) -> Any:
        """One node, through the cache tiers (the LRU, then the shared tier)."""
        key: tuple = (node.hash, query.key, ctx.version)
        token = ctx.cache_token(node)
        if token is not None:
            key = (*key, token)

        def compute():
            check_deadline()
            if node.is_product:
                return self._load(ctx.meta(node).product, query)
            return process_of(node).fn(ctx, node, query)

        if node_returns(node) != "imagery":
            return compute()  # tables depend on user files and the caller: never cached
        if self.shared is None:
            return self.cache.get_or_compute(key, compute)
        started = time.perf_counter()
        try:
            return self.cache.get_or_compute(
                key, lambda: self._through_shared(key, compute, ctx))
        finally:
            if ctx.child_seconds:
                ctx.child_seconds[-1] += time.perf_counter() - started

    def _through_shared(self, key: tuple, compute, ctx: _EvalContext) -> Any:
        """A node result from the shared tier, or computed and (when computing this node
        itself, without its children, was costly enough, and the result is small enough)
        stored there."""
        shared = self.shared
        assert shared is not None
        skey = digest_key("node", *key)
        blob = shared.get(skey)
        if blob is not None:
            cube = serial.load_cube(blob)
            if cube is not None:
                return cube
            shared.delete(skey)
        started = time.perf_counter()
        ctx.child_seconds.append(0.0)
        try:
            value = compute()
        finally:
            children = ctx.child_seconds.pop()
        cost = time.perf_counter() - started - children
        if isinstance(value, Cube) and cost >= self.shared_min_seconds \
                and value.nbytes <= self.shared_max_bytes \
                and self._pending.acquire(blocking=False):

            def write(cube: Cube = value) -> None:
                try:
                    shared.put(skey, serial.dump_cube(cube))
                finally:
                    self._pending.release()

            self._writer.submit(write)
        return value

    def flush_shared(self) -> None:
        """Wait until the node results queued for the shared tier are written."""
        self._writer.submit(lambda: None).result()

    def _submit(self, inline: bool, fn, *args, **kwargs) -> Future:
        """``fn(*args, **kwargs)`` on the read pool, or done here when ``inline``."""
        if not inline:
            return self._pool.submit(fn, *args, **kwargs)
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed over as the pool would
            fut.set_exception(exc)
        return fut

    def load(self, product: Product, query: Query) -> Cube:
        """Read a product for a query (the data leaves of both dialects)."""
        return self._load(product, query)

    def _load(self, product: Product, query: Query) -> Cube:
        view = query.view
        bands = query.bands or tuple(product.bands)
        items = product.items_for(wgs84_bounds(view), query.time)
        groups: dict[str, list] = defaultdict(list)
        for item in items:
            groups[day_key(item.datetime)].append(item)
        days = sorted(groups)
        size = view.pixels * len(bands) * max(1, len(days))
        if size > self.max_pixels:
            raise LimitExceeded(
                f"evaluation too large: {view.width}x{view.height} pixels x {len(bands)} bands "
                f"x {len(days)} dates = {size} > limit {self.max_pixels}; "
                "request a smaller window, a coarser resolution or fewer dates"
            )
        # the first file of each date and band reads straight into the cube when it can
        # (the same grid: a batch block); what no file fills becomes NaN at the end
        data = np.empty((len(days), len(bands), view.height, view.width), np.float32)
        resampling = Resampling[query.resampling] if query.resampling else self.resampling
        jobs = []
        # one read (a single-band tile): in this thread, no hand-off to the read pool
        inline = sum(1 for day in days for band_id in bands for item in groups[day]
                     if item.assets.get(band_id)) == 1
        for ti, day in enumerate(days):
            for bi, band_id in enumerate(bands):
                band = product.bands[band_id]
                into = data[ti, bi]
                for item in groups[day]:
                    href = item.assets.get(band_id)
                    if href:
                        jobs.append((ti, bi, item, self._submit(
                            inline, read_window, href, band, view, into=into,
                            resampling=resampling)))
                        into = None
        # the windows that need a warp are warped together, one GDAL warp per source grid
        read: list[tuple[int, int, Any]] = []
        for ti, bi, item, fut in jobs:
            try:
                read.append((ti, bi, fut.result(timeout=remaining())))
            except FutureTimeout:
                for *_, other in jobs:
                    other.cancel()
                check_deadline()
                raise
            except BrokenSource as exc:  # a broken href: the item is skipped, never a 500
                skipped(product.id, item.id, exc)
                continue
            except TileserverError:
                for *_, other in jobs:
                    other.cancel()
                raise
        if any(isinstance(got, Unwarped) for *_, got in read):
            check_deadline()
        arrays = warp_many([got for *_, got in read], view, resampling)
        filled: set[tuple[int, int]] = set()
        for (ti, bi, _), arr in zip(read, arrays, strict=True):
            if arr is None:
                continue
            if (ti, bi) not in filled:  # first file of this date and band: take it whole
                if not np.shares_memory(arr, data[ti, bi]):
                    data[ti, bi] = arr
                filled.add((ti, bi))
                continue
            target = data[ti, bi]  # a mosaic of several files: first valid pixel wins
            fill = np.isnan(target)
            target[fill] = arr[fill]
        for ti in range(len(days)):
            for bi in range(len(bands)):
                if (ti, bi) not in filled:
                    data[ti, bi] = np.nan
        times = tuple(groups[d][0].datetime for d in days)
        return Cube(data, times, tuple(bands), view)
