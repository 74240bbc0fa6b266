"""A job as something served: its graph (with the owner's stored processes bound), the
stored result of a finished job when it still matches, its style, extent and time steps,
the cache keys of its answers and :meth:`ServedJob.evaluate`. WMTS, XYZ, TMS, WCS and the
viewer all ask this one object for pixels.

No HTTP here: what the web layer knows (the owner's processes, where a finished job's
result lives, the service's args) is passed in by :func:`served_job`.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from cachetools import LRUCache
from rasterio.crs import CRS

from tileserver.cache.shared import digest_key
from tileserver.data.stored import StoredResult, evaluate_stored
from tileserver.datacube.cube import Cube, empty
from tileserver.datacube.view import View
from tileserver.engine.evaluator import Engine, Graph
from tileserver.errors import InvalidParameterValue, OutputFormatError, TileserverError
from tileserver.maps.coverage import Coverage, CoverageRequest, describe
from tileserver.maps.responses import cached_answer
from tileserver.maps.tilematrix import TileMatrixSet, extent_in, limits, wgs84_bbox
from tileserver.maps.tiles import TileAddress, check_format, check_style, tile_address
from tileserver.render import formats
from tileserver.render.encoders import Encoded, encode_gtiff
from tileserver.render.legend import Legend, legend_of
from tileserver.render.styles import Style, style_from_args
from tileserver.render.styles import style_args as style_args_of
from tileserver.storage import Store

log = logging.getLogger(__name__)

TimeRange = tuple[datetime, datetime]


def owner_context(job: dict) -> dict:
    """The evaluation context of a job's tiles and coverages: its owner (whose files a UDF
    reads; the service URL is a capability URL, the caller is not known)."""
    return {"user_id": job.get("user_id")}


def style_args(job: dict, service_args: dict | None) -> dict:
    """``colormap``/``range`` from the job's output options, overridden by the service."""
    out: dict = {}
    output = job.get("output") or {}
    for source in (output, output.get("parameters") or {}, service_args or {}):
        if isinstance(source, dict):
            out.update(style_args_of(source))
    return out


def day_range(day: str | None) -> TimeRange | None:
    """The UTC day ``YYYY-MM-DD`` as a closed time range (``None`` for ``None``)."""
    if day is None:
        return None
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    return start, start.replace(hour=23, minute=59, second=59, microsecond=999999)


@dataclass
class ServedJob:
    """A job's result as served (``identifier`` is the job id; ``title`` its layer title)."""

    identifier: str
    title: str
    job: dict
    graph: Graph
    engine: Engine
    style_args: dict
    #: A finished job's stored result matching its graph and output (answers read it).
    stored: StoredResult | None = None

    @property
    def context(self) -> dict:
        """The evaluation context (the owner, see :func:`owner_context`)."""
        return owner_context(self.job)

    # -- what it covers ------------------------------------------------------------------

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
        context = self.context
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

    def select_time(self, value: str | None, locator: str = "time") -> str | None:
        """The date a request selects (default: the latest date)."""
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

    def limits(self, tms: TileMatrixSet):
        """``TileMatrixSetLimits`` of the result in ``tms`` (``None``: no overlap)."""
        return limits(tms, *self.extent)

    @cached_property
    def _tms_extents(self) -> dict[str, tuple | None]:
        return {}

    def outside(self, address: TileAddress) -> bool:
        """Whether the tile lies entirely outside the result's extent."""
        tms = address.tms
        if tms.identifier not in self._tms_extents:
            self._tms_extents[tms.identifier] = extent_in(tms, *self.extent)
        ext = self._tms_extents[tms.identifier]
        if ext is None:
            return True
        bounds = address.bounds
        return bounds[2] <= ext[0] or bounds[0] >= ext[2] or bounds[3] <= ext[1] \
            or bounds[1] >= ext[3]

    def describe(self, coverage_id: str, title: str) -> Coverage:
        """The result described as a WCS coverage (its native grid, fields and dates)."""
        return describe(self.engine, self.graph, coverage_id, title, self.context)

    # -- how it looks --------------------------------------------------------------------

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

    # -- evaluation ----------------------------------------------------------------------

    def source(self, view: View, time_range: TimeRange | None) -> str:
        """The version of what an answer on ``view`` is read from: the stored result's
        files, or the catalog items and files under the view."""
        if self.stored is not None:
            return f"stored:{self.stored.version}"
        return "catalog:" + self.engine.version(self.graph, view, time_range)

    def result(self, view: View, time_range: TimeRange | None,
               purpose: str) -> tuple[Any, str]:
        """The graph on ``view`` and where it came from: ``stored`` (a finished job's
        stored result could answer) or ``computed`` (evaluated for ``purpose``)."""
        if self.stored is not None:
            with self.engine.admitted(self.graph, view, time_range, purpose, self.context,
                                      stored=True):  # admission control, as computed ones
                cube = evaluate_stored(self.stored, self.graph.meta, view, time_range,
                                       self.engine.resampling)
            if cube is not None:
                return cube, "stored"
        return self.engine.evaluate(self.graph, view, time_range=time_range, purpose=purpose,
                                    context=self.context), "computed"

    def evaluate(self, view: View, time: str | None) -> Cube:
        """The image on ``view`` (only ``time``'s day when given); read from the stored
        result of a finished job when it can answer."""
        result, _ = self.result(view, day_range(time), "tile")
        if not isinstance(result, Cube):
            raise OutputFormatError("this job's result is not an image; it has no tiles")
        return result

    # -- tiles ---------------------------------------------------------------------------

    def tile_address(self, tms_id: str, z: str, row: str, col: str, *, media_type: str,
                     time: str | None, style: str | None = None) -> TileAddress:
        """A request's tile resolved once: style, format, tile, then the date it selects
        (each raising its OGC error with its locator, in that order)."""
        check_style(style)
        check_format(media_type)
        address = tile_address(tms_id, z, row, col, media_type)
        return replace(address, time=self.select_time(time))

    def tile_key(self, address: TileAddress) -> str:
        """The cache key of a tile (hex): everything its bytes depend on. The graph hash,
        style, tile, format and date, and the version of what it is read from. The same in
        every process and host, so it is also the tile's ETag."""
        source = self.source(address.view, day_range(address.time))
        token = self.engine.cache_token(self.graph, self.context)  # UDF scripts
        return digest_key("tile", self.graph.root.hash, self.style.to_json(),
                          address.tms.identifier, address.z, address.row, address.col,
                          address.media_type, address.time, source, token)

    def render(self, address: TileAddress) -> Encoded:
        """The encoded tile, computed."""
        if self.outside(address):
            meta = self.graph.meta
            cube = empty(address.view, meta.bands, None if meta.reduced else ())
            cube = cube.with_data(cube.data, kind=meta.kind)
        else:
            cube = self.evaluate(address.view, address.time)
        fmt = formats.tile_format(address.media_type)
        assert fmt is not None and fmt.tiles is not None  # checked when the address was made
        return fmt.tiles.encode(cube, self.style)

    def tile(self, address: TileAddress, key: str | None = None) -> tuple[Encoded, str]:
        """Encoded tile and where it came from (``memory``, ``disk``/``redis``: a cache
        tier; ``stored``: read from the stored result; ``computed``)."""
        key = key or self.tile_key(address)

        def produce() -> tuple[Encoded, str]:
            return self.render(address), "stored" if self.stored is not None else "computed"

        return cached_answer(self.engine, ("tile", key), produce)

    # -- coverages -----------------------------------------------------------------------

    def coverage_key(self, req: CoverageRequest, media_type: str = "image/tiff") -> str:
        """The cache key of a coverage (hex; its ETag is the first 32 characters); a format
        other than the float32 GeoTIFF (OGC API's PNG and NetCDF) keys its own answers."""
        key = digest_key(self.graph.root.hash, req.view.key, req.time_range, req.fields,
                         self.source(req.view, req.time_range),
                         self.engine.cache_token(self.graph, self.context))
        return key if media_type == "image/tiff" else digest_key(key, media_type)

    def coverage(self, req: CoverageRequest, key: str | None = None,
                 media_type: str = "image/tiff", locator: str = "coverageid"
                 ) -> tuple[Encoded, str]:
        """A coverage request's answer and where it came from: the float32 GeoTIFF (WCS, OGC
        API), a styled PNG or NetCDF values (OGC API). ``locator`` names the request's
        coverage parameter in the error of a result that is no raster."""
        key = key or self.coverage_key(req, media_type)

        def produce() -> tuple[Encoded, str]:
            cube, origin = self.result(req.view, req.time_range, "coverage")
            if not isinstance(cube, Cube):
                raise InvalidParameterValue("this job's result is not a raster",
                                            locator=locator)
            if req.fields is not None:
                cube = cube.with_data(cube.data[:, list(req.fields)],
                                      bands=tuple(cube.bands[i] for i in req.fields))
            if media_type == "image/tiff":
                return encode_gtiff(cube), origin
            if media_type == "image/png":
                fmt = formats.tile_format(media_type)
                assert fmt is not None and fmt.tiles is not None
                return fmt.tiles.encode(cube, self.style), origin
            return formats.get("NetCDF").encode(cube, {}), origin

        return cached_answer(self.engine, ("coverage", key), produce)


#: Recently served jobs per engine: parsing, extents, dates and styles once per job version.
_SERVED: weakref.WeakKeyDictionary[Engine, LRUCache] = weakref.WeakKeyDictionary()
_SERVED_LOCK = threading.Lock()


def served_job(engine: Engine, job: dict, *, processes: dict[str, dict],
               results_at: tuple[Store, str] | None = None, results_token: str | None = None,
               service_args: dict | None = None, title: str | None = None) -> ServedJob:
    """The served job of a stored job (its graph, validated against the current catalog).

    ``processes``: the owner's stored processes the graph calls (read by the caller each
    time: a replaced one is a new served job, and new cache keys, as its nodes hash by
    content). ``results_at`` (a store and a folder in it) and ``results_token``: where a
    finished job's stored result lives
    and its token, as the job lifecycle hands them out (its answers then read it; ``None``:
    never read a stored result). ``service_args`` style the result.

    Memoised per engine, job graph and output, processes, service args, title and batch
    results (``updated`` has only second resolution), so that a tile request does not parse
    the graph or recompute the extent and dates again.
    """
    title = title or job.get("title") or job["job_id"]
    finished = bool(results_token) and results_at is not None
    key = (job["job_id"], title, json.dumps(
        [job["process_graph"], job.get("output"), service_args, processes], sort_keys=True,
        default=str), results_token if finished else None)
    with _SERVED_LOCK:
        cache = _SERVED.setdefault(engine, LRUCache(maxsize=256))
        served = cache.get(key)
    if served is None:
        graph = engine.parse(job["process_graph"], processes=processes)
        stored = None
        if finished and graph.is_raster:
            store, prefix = results_at  # type: ignore[misc]
            stored = StoredResult.find(store, prefix, job["process_graph"],
                                       job.get("output"), tuple(graph.meta.bands),
                                       processes)
        served = ServedJob(job["job_id"], title, job, graph, engine,
                           style_args(job, service_args), stored)
        with _SERVED_LOCK:
            cache[key] = served
    return served
