"""A job as a map layer: its extent, dates, style, and its tiles (shared by WMTS, XYZ and
the viewer). Tiles are evaluated lazily by the core for the tile's view only."""

from __future__ import annotations

import json
import logging
import threading
import weakref
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from cachetools import LRUCache
from flask import has_request_context
from rasterio.crs import CRS

from tileserver import params
from tileserver.maps.responses import cached_answer
from tileserver.datacube.cube import Cube, empty
from tileserver.render.encoders import Encoded, encode_gtiff, encode_image
from tileserver.engine.evaluator import Engine, Graph
from tileserver.render.legend import Legend, legend_of
from tileserver.cache.shared import digest_key
from tileserver.data.stored import StoredResult, evaluate_stored
from tileserver.render.styles import Style, style_args, style_from_args
from tileserver.maps.tilematrix import (
    TileMatrixSet,
    extent_in,
    get_tms,
    limits,
    tile_bounds,
    tile_in_matrix,
    tile_view,
    wgs84_bbox,
)
from tileserver.errors import (
    InvalidParameterValue,
    OutputFormatError,
    TileOutOfRange,
    TileserverError,
)
from tileserver.jobs import usecases as jobs
from tileserver.web.common import runtime

log = logging.getLogger(__name__)

#: WMTS formats: media type -> (encoder name, file extension).
FORMATS = {"image/png": ("PNG", "png"), "image/jpeg": ("JPEG", "jpg"),
           "image/tiff": ("GTiff", "tif")}
#: Extensions accepted in RESTful tile URLs.
EXTENSIONS = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
              "tif": "image/tiff", "tiff": "image/tiff"}
STYLE_ID = "default"


def owner_context(job: dict) -> dict:
    """The evaluation context of a job's tiles and coverages: its owner (whose files a UDF
    reads; the service URL is a capability URL, the caller is not known)."""
    return {"user_id": job.get("user_id")}


def _style_args(job: dict, service_args: dict | None) -> dict:
    """``colormap``/``range`` from the job's output options, overridden by the service."""
    out: dict = {}
    output = job.get("output") or {}
    for source in (output, output.get("parameters") or {}, service_args or {}):
        if isinstance(source, dict):
            out.update(style_args(source))
    return out


@dataclass
class Layer:
    """A job's result as a WMTS layer (``identifier`` is the job id)."""

    identifier: str
    title: str
    job: dict
    graph: Graph
    engine: Engine
    style_args: dict
    #: A finished job's stored result matching its graph and output (tiles read it).
    stored: StoredResult | None = None

    @cached_property
    def extent(self) -> tuple[tuple[float, float, float, float], CRS]:
        """``(bounds, crs)`` of the result."""
        return self.engine.extent(self.graph)

    @cached_property
    def wgs84(self) -> tuple[float, float, float, float]:
        """The extent as lon/lat."""
        return wgs84_bbox(*self.extent)

    @cached_property
    def _input_times(self) -> list[datetime] | None:
        return self.engine.times(self.graph)

    @cached_property
    def _scripted_times(self) -> dict:
        return {}

    @property
    def times(self) -> list[datetime] | None:
        """The result's dates, or ``None`` when the time axis is reduced: the acquisition
        dates, or the dates the owner's UDF returns (``aggregate_time``: learnt by running
        it once per version of the script; the input dates if it fails)."""
        if not self.graph.meta.scripted_times or self.graph.meta.reduced:
            return self._input_times
        context = owner_context(self.job)
        memo = self._scripted_times
        try:
            token = self.engine.cache_token(self.graph, context)
            if token not in memo:
                memo[token] = self.engine.times(self.graph, context=context)
        except TileserverError as exc:
            log.warning("layer %s: the UDF's dates are unknown (%s); listing the input "
                        "dates", self.identifier, exc)
            return self._input_times
        if len(memo) > 8:
            memo.pop(next(iter(memo)))
        return memo.get(token, self._input_times)

    @property
    def time_values(self) -> list[str] | None:
        """The ``Time`` dimension values (dates, ascending)."""
        times = self.times
        return None if times is None else [f"{t:%Y-%m-%d}" for t in times]

    @cached_property
    def style(self) -> Style:
        """The style of PNG/JPEG tiles."""
        meta = self.graph.meta
        ndates = 1
        if meta.kind == "count":  # the default range of a count is 0..number of dates
            unreduced = replace(self.graph, meta=meta.but(reduced=False))
            ndates = len(self.engine.times(unreduced) or ())
        return style_from_args(self.style_args, meta.kind, len(meta.bands), ndates)

    @cached_property
    def legend(self) -> Legend:
        """What the colours of the PNG/JPEG tiles mean."""
        return legend_of(self.style, self.graph.meta.kind)

    def limits(self, tms: TileMatrixSet):
        """``TileMatrixSetLimits`` of the layer in ``tms`` (``None``: no overlap)."""
        return limits(tms, *self.extent)

    def select_time(self, value: str | None, locator: str = "time") -> str | None:
        """The dimension value a request selects (default: the latest date)."""
        values = self.time_values
        if values is None:
            return None
        if value is None or value.strip().lower() in ("", "default", "current"):
            if not values:
                return None
            return values[-1]
        day = value.strip()[:10]
        if day not in values:
            shown = ", ".join(values[:20]) + (" …" if len(values) > 20 else "")
            raise InvalidParameterValue(
                f"TIME {value!r} is not one of the layer's dates: {shown}", locator=locator)
        return day

    def tile_key(self, tms_id: str, z: str, row: int, col: int, media_type: str,
                 time: str | None) -> str:
        """The cache key of a tile (hex): everything its bytes depend on. The graph hash,
        style, tile, format and date, and the version of what it is read from (the stored
        result's files, or the catalog items and files under the tile). The same in every
        process and host, so it is also the tile's ETag."""
        if self.stored is not None:
            source = f"stored:{self.stored.version}"
        else:
            tms = get_tms(tms_id)
            matrix = tms.matrix(z) if tms is not None else None
            assert tms is not None and matrix is not None  # checked by check_tile
            view = tile_view(tms, matrix, row, col)
            source = "catalog:" + self.engine.version(self.graph, view, _day_range(time))
        token = self.engine.cache_token(self.graph, owner_context(self.job))  # UDF scripts
        return digest_key("tile", self.graph.root.hash, self.style.to_json(), tms_id, z, row,
                          col, media_type, time, source, token)

    def etag(self, tms_id: str, z: str, row: int, col: int, media_type: str,
             time: str | None) -> str:
        """The (unquoted) entity tag of a tile: a hash of its cache key."""
        return self.tile_key(tms_id, z, row, col, media_type, time)[:32]

    def evaluate(self, view, time: str | None) -> Cube:
        """The graph on ``view`` (only ``time``'s day when given); read from the stored
        result of a finished job when it can answer."""
        time_range = _day_range(time)
        if self.stored is not None:
            cube = evaluate_stored(self.stored, self.graph.meta, view, time_range,
                                   self.engine.resampling)
            if cube is not None:
                return cube
        result = self.engine.evaluate(self.graph, view, time_range=time_range, purpose="tile",
                                      context=owner_context(self.job))
        if not isinstance(result, Cube):
            raise OutputFormatError("this job's result is not an image; it has no tiles")
        return result

    def render(self, tms_id: str, z: str, row: int, col: int, media_type: str,
               time: str | None) -> Encoded:
        """Encoded tile, computed (parameters already checked with :func:`check_tile`)."""
        tms = get_tms(tms_id)
        matrix = tms.matrix(z)
        view = tile_view(tms, matrix, row, col)
        if self._outside(tms, tile_bounds(tms, matrix, row, col)):
            meta = self.graph.meta
            cube = empty(view, meta.bands, None if meta.reduced else ())
            cube = cube.with_data(cube.data, kind=meta.kind)
        else:
            cube = self.evaluate(view, time)
        fmt = FORMATS[media_type][0]
        if fmt == "GTiff":
            return encode_gtiff(cube)
        return encode_image(cube, fmt, style=self.style)

    def tile(self, tms_id: str, z: str, row: int, col: int, media_type: str,
             time: str | None, key: str | None = None) -> tuple[Encoded, str]:
        """Encoded tile and where it came from (``memory``, ``disk``/``redis``: a cache
        tier; ``stored``: read from the stored result; ``computed``)."""
        key = key or self.tile_key(tms_id, z, row, col, media_type, time)

        def produce() -> tuple[Encoded, str]:
            return (self.render(tms_id, z, row, col, media_type, time),
                    "stored" if self.stored is not None else "computed")

        return cached_answer(self.engine, ("tile", key), produce)

    @cached_property
    def _tms_extents(self) -> dict[str, tuple | None]:
        return {}

    def _outside(self, tms: TileMatrixSet, bounds) -> bool:
        if tms.identifier not in self._tms_extents:
            self._tms_extents[tms.identifier] = extent_in(tms, *self.extent)
        ext = self._tms_extents[tms.identifier]
        if ext is None:
            return True
        return bounds[2] <= ext[0] or bounds[0] >= ext[2] or bounds[3] <= ext[1] \
            or bounds[1] >= ext[3]


def _day_range(day: str | None) -> tuple[datetime, datetime] | None:
    if day is None:
        return None
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    return start, start.replace(hour=23, minute=59, second=59, microsecond=999999)


#: Recently used layers per engine: parsing, extents, dates and styles once per job version.
_LAYERS: weakref.WeakKeyDictionary[Engine, LRUCache] = weakref.WeakKeyDictionary()
_LAYERS_LOCK = threading.Lock()


def make_layer(engine: Engine, job: dict, service_args: dict | None = None,
               title: str | None = None, results_dir: Path | None = None) -> Layer:
    """The layer of a job (its stored graph, validated against the current catalog).

    Memoised per engine, job graph and output, service args, title and batch results
    (``updated`` has only second resolution), so that a tile request does not parse the
    graph or recompute the layer's extent and dates again. ``results_dir``: where a
    finished job's stored result lives (its tiles then read it).
    """
    title = title or job.get("title") or job["job_id"]
    token = (job.get("extra") or {}).get("results_token")
    if results_dir is None and token and has_request_context():
        results_dir = runtime().batch.result_dir(job["job_id"])
    finished = job.get("status") == "finished" and token and results_dir is not None
    # the owner's stored processes the graph calls, read each time: a replaced one is a
    # new layer (and new cache keys, as its nodes hash by content)
    processes = jobs.user_processes(runtime(), job.get("user_id"), job["process_graph"]) \
        if has_request_context() else {}
    key = (job["job_id"], title, json.dumps(
        [job["process_graph"], job.get("output"), service_args, processes], sort_keys=True,
        default=str), token if finished else None)
    with _LAYERS_LOCK:
        cache = _LAYERS.setdefault(engine, LRUCache(maxsize=256))
        layer = cache.get(key)
    if layer is None:
        graph = engine.parse(job["process_graph"], processes=processes)
        stored = None
        if finished and graph.is_raster:
            stored = StoredResult.find(results_dir, job["process_graph"],  # type: ignore[arg-type]
                                       job.get("output"), tuple(graph.meta.bands),
                                       processes)
        layer = Layer(job["job_id"], title, job, graph, engine, _style_args(job, service_args),
                      stored)
        with _LAYERS_LOCK:
            cache[key] = layer
    return layer


def check_tile(tms_id: str, z: str, row: str, col: str) -> tuple[str, str, int, int]:
    """Validate a tile address; raises the WMTS errors with their locators."""
    tms = get_tms(params.text(tms_id, "tilematrixset", max_length=100))
    if tms is None:
        raise InvalidParameterValue(
            f"unknown TileMatrixSet {tms_id!r}; use GoogleMapsCompatible or WorldCRS84Quad",
            locator="tilematrixset")
    matrix = tms.matrix(params.text(z, "tilematrix", max_length=100))
    if matrix is None:
        raise InvalidParameterValue(
            f"TileMatrix {z!r} is not in {tms_id} (0..{len(tms.matrices) - 1})",
            locator="tilematrix")
    r, c = (params.integer(value, name) for name, value in (("tilerow", row),
                                                              ("tilecol", col)))
    if not tile_in_matrix(matrix, r, c):
        locator = "tilerow" if not 0 <= r < matrix.matrix_height else "tilecol"
        raise TileOutOfRange(
            f"tile row {r} col {c} is outside TileMatrix {z} of {tms_id} "
            f"({matrix.matrix_height} rows x {matrix.matrix_width} cols)", locator=locator)
    return tms_id, z, r, c


def check_format(media_type: str | None, locator: str = "format") -> str:
    """A supported tile media type."""
    if media_type not in FORMATS:
        raise InvalidParameterValue(
            f"FORMAT {media_type!r} is not supported; use one of {', '.join(FORMATS)}",
            locator=locator)
    return media_type


def check_style(style: str | None) -> None:
    """Only the ``default`` style exists (its look is set by the service args)."""
    if style not in (None, "", STYLE_ID):
        raise InvalidParameterValue(f"STYLE {style!r} does not exist; use '{STYLE_ID}'",
                                    locator="style")


def layer_or_none(engine: Engine, job: dict, service_args: dict | None = None) -> Layer | None:
    """The layer, or ``None`` when the stored graph no longer validates (logged)."""
    try:
        return make_layer(engine, job, service_args)
    except TileserverError as exc:
        log.warning("job %s is not a valid layer any more: %s", job["job_id"], exc.message)
        return None
