"""openEO 1.x processes on data cubes.

Each process has a ``meta`` (what the result is, from the graph and the catalog alone, with
the errors a client should get before any read) and an ``evaluate`` that pushes its
constraints (time, bands, the view) down to the reads, exactly like the 0.0.2 processes:
``load_collection`` reads only the window, dates and bands that the processes above it
need, from the overview level that fits the view. Callbacks run vectorised through
:mod:`tileserver.processes.callbacks`.

Dimensions are named as ``GET /collections`` describes them: ``x``, ``y``, ``t`` and
``bands``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.errors import CRSError
from shapely.geometry import shape

from tileserver.processes.callbacks import labels_used, root_process, run_callback
from tileserver.data.catalog import FilteredProduct
from tileserver.datacube.cube import Cube, day_key
from tileserver.graph.nodes import Callback, Node
from tileserver.params import parse_iso_date as parse_date
from tileserver.processes.registry import Param, process
from tileserver.processes.cube.common import (
    check_bbox_area,
    intersect_inner,
    mask_outside,
    normalized_difference,
)
from tileserver.datacube.query import CubeMeta
from tileserver.errors import (
    BandNotFound,
    CollectionNotFound,
    LimitExceeded,
    ProcessArgumentInvalid,
    ProductNotFound,
)

#: The names of the temporal and band dimensions, as ``GET /collections`` describes them.
TIME_DIMS = ("t",)
BAND_DIMS = ("bands",)
WGS84 = CRS.from_epsg(4326)

_DATA = Param("data", "cube")
_CONTEXT = Param("context", required=False)


def _invalid(node: Node, name: str, why: str, code: str | None = None
             ) -> ProcessArgumentInvalid:
    """The error of an argument; ``code``: the exception the process description names
    for it (``DimensionNotAvailable``…), else ``ProcessArgumentInvalid``."""
    return ProcessArgumentInvalid(
        f"node '{node.path}': argument {name!r} of {node.process_id}: {why}",
        path=node.arg_path(name), code=code)


def _context(value: Any) -> Any:
    return value if not isinstance(value, Node) else None


# -- arguments: extents, bands, dimensions -----------------------------------------------


def _crs(node: Node, name: str, value: Any) -> CRS:
    if value is None:
        return WGS84
    if isinstance(value, bool):
        raise _invalid(node, name, f"crs {value!r} is not a CRS")
    try:
        return CRS.from_epsg(value) if isinstance(value, int) else CRS.from_user_input(value)
    except (CRSError, TypeError, ValueError):
        raise _invalid(node, name, f"crs {value!r} is not a known CRS (an EPSG code such as "
                       "32632)") from None


def spatial_extent(node: Node, name: str, value: Any):
    """``(bounds, crs, geometry)`` of a bounding box object or a GeoJSON geometry."""
    if not isinstance(value, dict):
        raise _invalid(node, name, "expected a bounding box {west, south, east, north, crs} "
                       "or a GeoJSON object")
    if "type" in value:
        geoms = _geojson_geometries(node, name, value)
        union = shape(geoms[0])
        for g in geoms[1:]:
            union = union.union(shape(g))
        if union.is_empty:
            raise _invalid(node, name, "the geometry is empty")
        geometry = {"type": "GeometryCollection", "geometries": geoms} if len(geoms) > 1 \
            else geoms[0]
        return tuple(union.bounds), WGS84, geometry
    missing = [k for k in ("west", "south", "east", "north") if k not in value]
    if missing:
        raise _invalid(node, name, f"missing {', '.join(missing)}")
    nums = []
    for key in ("west", "south", "east", "north"):
        v = value[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise _invalid(node, name, f"{key} must be a finite number, got {v!r}")
        nums.append(float(v))
    west, south, east, north = nums
    if west >= east or south >= north:
        raise _invalid(node, name, f"empty or inverted extent: west {west} must be < east "
                       f"{east} and south {south} < north {north}")
    return (west, south, east, north), _crs(node, name, value.get("crs")), None


def _geojson_geometries(node: Node, name: str, obj: dict, points: bool = False
                        ) -> list[dict]:
    """The GeoJSON polygons of ``obj`` (and points, when ``points``), validated."""
    kind = obj.get("type")
    if kind == "FeatureCollection":
        out = []
        for f in obj.get("features") or []:
            out += _geojson_geometries(node, name, f, points)
        if not out:
            raise _invalid(node, name, "the FeatureCollection has no features")
        return out
    if kind == "Feature":
        return _geojson_geometries(node, name, obj.get("geometry") or {}, points)
    if points and kind in ("Point", "MultiPoint"):
        try:
            geom = shape(obj)
        except Exception:  # noqa: BLE001 - shapely's errors vary with the input
            raise _invalid(node, name, f"not a valid GeoJSON {kind}") from None
        if geom.is_empty or not all(math.isfinite(v) for v in geom.bounds):
            raise _invalid(node, name, f"not a valid GeoJSON {kind}")
        return [obj]
    if kind in ("Polygon", "MultiPolygon"):
        try:
            geom = shape(obj)
        except Exception:  # noqa: BLE001 - shapely's errors vary with the input
            raise _invalid(node, name, "not a valid GeoJSON polygon") from None
        if not geom.is_valid or geom.is_empty:
            raise _invalid(node, name, "not a valid GeoJSON polygon")
        return [obj]
    raise _invalid(node, name, f"GeoJSON type {kind!r} is not supported (Polygon, "
                   "MultiPolygon" + (", Point, MultiPoint" if points else "") +
                   ", Feature or FeatureCollection of them)")


def temporal_extent(node: Node, name: str, value: Any) -> tuple[datetime, datetime] | None:
    """An inclusive ``(start, end)`` for a 1.x ``[start, end)`` interval (``None`` = open)."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _invalid(node, name, "expected an interval [start, end] (either may be null)")
    start, end = value
    if start is None and end is None:
        raise _invalid(node, name, "start and end cannot both be null")
    try:
        t0 = parse_date(start) if start is not None else datetime(1, 1, 1, tzinfo=UTC)
        t1 = (parse_date(end) - timedelta(microseconds=1)) if end is not None else datetime(
            9999, 12, 31, tzinfo=UTC)
    except (ValueError, AttributeError, TypeError):
        raise _invalid(node, name, f"{value!r} is not an interval of ISO 8601 dates") from None
    if t0 > t1:
        raise _invalid(node, name, f"start {start} is not before end {end} (the end is "
                       "excluded)", "TemporalExtentEmpty" if node.process_id ==
                       "filter_temporal" else None)
    return t0, t1


NIR_FALLBACKS = {"nir": ("nir08", "nir09")}


def resolve_band(product, available: tuple[str, ...], name: Any, node: Node, arg: str) -> str:
    """A band id from a band name or a common name (``red``, ``nir``)."""
    if isinstance(name, str):
        if name in available:
            return name
        def common(b):
            return product.bands[b].common_name if b in product.bands else None

        # "nir" is also the narrow NIR bands (nir08, nir09) when there is no broad one, as
        # on a 20 m Sentinel-2 product without B08: the client's ndvi() asks for "nir"
        for wanted in (name, *NIR_FALLBACKS.get(name, ())):
            matches = [b for b in available if common(b) == wanted]
            if matches:
                return matches[0]
    names = [f"{b} ({product.bands[b].common_name})" if b in product.bands and
             product.bands[b].common_name else b for b in available]
    raise BandNotFound(f"node '{node.path}': argument {arg!r}: band {name!r} is not in the "
                       f"data; available: {', '.join(names)}", path=node.arg_path(arg))


def _dimension(node: Node, meta: CubeMeta, name: str = "dimension") -> str:
    """The axis (``t`` or ``bands``) of the dimension an argument names."""
    dim = node.args.get(name)
    if dim in TIME_DIMS:
        if meta.reduced:
            raise _invalid(node, name, "the temporal dimension was already reduced",
                           "DimensionNotAvailable")
        return "t"
    if dim == meta.band_dim:
        if not meta.has_bands:
            raise _invalid(node, name, f"the {dim} dimension was already reduced",
                           "DimensionNotAvailable")
        return "bands"
    if dim in ("x", "y"):
        raise _invalid(node, name, f"dimension {dim!r} cannot be used here (spatial "
                       "dimensions are kept for tiles and coverages)")
    dims = [d for d, present in (("t", not meta.reduced), (meta.band_dim, meta.has_bands))
            if present]
    raise _invalid(node, name, f"the data cube has no dimension {dim!r}; its dimensions are "
                   f"x, y{''.join(', ' + d for d in dims)}", "DimensionNotAvailable")


def _labels(cube: Cube, dim: str) -> tuple:
    if dim == "t":
        return tuple(t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in (cube.times or ()))
    return tuple(cube.bands)


def _labeled(values: np.ndarray, labels: tuple):
    from tileserver.processes.array.lib import LabeledArray  # noqa: PLC0415

    return LabeledArray(values, labels)


def _as_float32(value: Any, shape: tuple[int, ...], node: Node) -> np.ndarray:
    out = np.asarray(value.values if hasattr(value, "values") and not isinstance(
        value, np.ndarray) else value)
    if out.dtype == object:
        raise _invalid(node, "process", "the callback returned something that is not a "
                       "number or an array of numbers")
    try:
        return np.broadcast_to(out.astype(np.float32, copy=False), shape)
    except ValueError:
        raise _invalid(node, "process", f"the callback returned an array of shape "
                       f"{out.shape}, expected {shape}") from None


# -- load_collection / load_stac / save_result -------------------------------------------


def _load_meta(ctx, node: Node) -> CubeMeta:
    a = node.args
    cid = collection_id(node, ctx.catalog)
    try:
        product = ctx.catalog.get(cid, node.arg_path("id"))
    except ProductNotFound:
        raise CollectionNotFound(
            f"node '{node.path}': collection {cid!r} does not exist; available: "
            f"{', '.join(p.id for p in ctx.catalog)}", path=node.arg_path("id")) from None
    bands = tuple(product.bands)
    if a.get("bands") is not None:
        wanted = a["bands"]
        if not isinstance(wanted, list) or not wanted:
            raise _invalid(node, "bands", "expected a non-empty list of band names")
        bands = tuple(resolve_band(product, bands, b, node, "bands") for b in wanted)
        if len(set(bands)) != len(bands):
            raise _invalid(node, "bands", "a band is listed twice")
    if a.get("properties") is not None:
        product = FilteredProduct(product, _property_filter(node, a["properties"]))
    meta = CubeMeta(product, bands, bands)
    if a.get("spatial_extent") is not None:
        bounds, crs, _ = spatial_extent(node, "spatial_extent", a["spatial_extent"])
        _check_extent(node, "spatial_extent", bounds, crs, product.crs)
        meta = meta.but(bbox=bounds, srs=crs)
    if a.get("temporal_extent") is not None:
        meta = meta.but(time_range=temporal_extent(node, "temporal_extent",
                                                   a["temporal_extent"]))
    return meta


def _property_filter(node: Node, filters: Any):
    """The predicate on items of ``load_collection``'s ``properties``: every callback
    (its parameter ``value`` is the item's property, null when absent) returns true."""
    if not isinstance(filters, dict) or not all(
            isinstance(k, str) and isinstance(v, Callback) for k, v in filters.items()):
        raise _invalid(node, "properties", "expected an object of property names and "
                       "callbacks ({\"eo:cloud_cover\": {\"process_graph\": ...}})")

    def keep(item) -> bool:
        for name, callback in filters.items():
            result = run_callback(callback, {"value": item.properties.get(name)})
            try:
                if result is None or not bool(np.asarray(result).item()):
                    return False
            except (TypeError, ValueError):
                raise _invalid(node, "properties", f"the filter of {name!r} returned "
                               f"{result!r}, not a boolean") from None
        return True

    return keep


def _check_extent(node: Node, name: str, bounds, crs: CRS, product_crs: CRS) -> None:
    try:
        check_bbox_area(node, bounds, crs, product_crs)
    except ProcessArgumentInvalid:
        raise
    except Exception as exc:  # the 0.0.2 checker words its messages for 0.0.2 arguments
        raise _invalid(node, name, getattr(exc, "message", str(exc)).split(": ", 1)[-1]) \
            from None


def _geometry_of(node: Node):
    """The GeoJSON geometry of a spatial filter (None for a bounding box)."""
    value = node.args.get("spatial_extent" if node.process_id.startswith("load_") else
                          "geometries" if node.process_id == "filter_spatial" else "extent")
    if isinstance(value, dict) and "type" in value:
        return spatial_extent(node, "geometries", value)[2]
    return None


def _wanted(bands: tuple[str, ...], query) -> tuple[str, ...]:
    """The bands of ``bands`` that the query asks for, in their order (at least one)."""
    if query.bands is None:
        return bands
    return tuple(b for b in bands if b in query.bands) or bands[:1]


def _read(ctx, node: Node, query) -> Cube:
    """Read the window, dates and bands that the processes above need."""
    meta = ctx.meta(node)
    q = query
    if meta.time_range is not None:
        q = q.narrow_time(*meta.time_range)
    cube = ctx.engine.load(meta.product, q.with_bands(_wanted(meta.bands, query)))
    if meta.bbox is not None and meta.srs is not None:
        cube = mask_outside(cube, meta.bbox, meta.srs, _geometry_of(node))
    return cube


def collection_id(node: Node, catalog) -> Any:
    """The collection a ``load_collection`` (its ``id``) or ``load_stac`` (the collection of
    our catalog its URL names) node reads."""
    if node.process_id == "load_collection":
        return node.args.get("id")
    url = node.args.get("url")
    if not isinstance(url, str) or not url:
        raise _invalid(node, "url", "expected the URL of a STAC collection")
    parts = [p for p in url.rstrip("/").split("/") if p]
    if parts and parts[-1] in ("collection.json", "catalog.json") and len(parts) > 1:
        parts = parts[:-1]
    ids = {p.id for p in catalog}
    for candidate in reversed(parts[-2:]):
        if candidate in ids:
            return candidate
    raise _invalid(node, "url", f"{url!r} is not a collection of this back-end's catalog "
                   f"(one of: {', '.join(sorted(ids))}); other STAC sources are not read")


_LOAD_OPTIONS = [Param("spatial_extent", required=False),
                 Param("temporal_extent", required=False), Param("bands", required=False),
                 Param("properties", required=False)]
process("load_collection", [Param("id"), *_LOAD_OPTIONS], meta=_load_meta)(_read)
process("load_stac", [Param("url"), *_LOAD_OPTIONS], meta=_load_meta)(_read)


def _save_meta(ctx, node):
    fmt = node.args.get("format")
    if not isinstance(fmt, str) or not fmt:
        raise _invalid(node, "format", "expected an output format name such as 'GTiff'")
    if node.args.get("options") is not None and not isinstance(node.args["options"], dict):
        raise _invalid(node, "options", "expected an object")
    return ctx.meta(node.args["data"])


@process(
    "save_result",
    [_DATA, Param("format"), Param("options", required=False)],
    meta=_save_meta,
)
def save_result(ctx, node, query):
    """The data; the format is applied by the encoder (``Graph.save_result``)."""
    return ctx.eval(node.args["data"], query)


# -- filters -----------------------------------------------------------------------------


def _bbox_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    name = "extent" if node.process_id == "filter_bbox" else "geometries"
    bounds, crs, _ = spatial_extent(node, name, node.args[name])
    _check_extent(node, name, bounds, crs, child.product.crs)
    try:
        bounds = intersect_inner(node, bounds, crs, child)
    except Exception:  # noqa: BLE001 - worded for 0.0.2
        raise _invalid(node, name, "the extent does not overlap the spatial extent of the "
                       "data below (the result would be empty)") from None
    return child.but(bbox=bounds, srs=crs)


def _spatial_filter(ctx, node, query):
    meta = ctx.meta(node)
    cube = ctx.eval(node.args["data"], query)
    return mask_outside(cube, meta.bbox, meta.srs, _geometry_of(node))


process("filter_bbox", [_DATA, Param("extent")], meta=_bbox_meta)(_spatial_filter)
process("filter_spatial", [_DATA, Param("geometries")], meta=_bbox_meta)(
    _spatial_filter)


def _over_time(ctx, node, reduced: str):
    """The meta of ``data`` of a process over the temporal dimension: its ``dimension``
    argument names it (or is absent) and the data still has it (else ``reduced``)."""
    child = ctx.meta(node.args["data"])
    if node.args.get("dimension") not in (None, *TIME_DIMS):
        raise _invalid(node, "dimension", f"no temporal dimension {node.args['dimension']!r} "
                       "(it is 't')", "DimensionNotAvailable")
    if child.reduced:
        raise _invalid(node, "data", reduced, "DimensionNotAvailable")
    return child


def _temporal_meta(ctx, node):
    child = _over_time(ctx, node, "the temporal dimension was already reduced")
    start, end = temporal_extent(node, "extent", node.args["extent"])
    if child.time_range:
        start, end = max(start, child.time_range[0]), min(end, child.time_range[1])
    return child.but(time_range=(start, end))


@process("filter_temporal", [_DATA, Param("extent"), Param("dimension", required=False)],
             meta=_temporal_meta)
def filter_temporal(ctx, node, query):
    """Narrow the time range pushed down to the reads."""
    start, end = ctx.meta(node).time_range
    return ctx.eval(node.args["data"], query.narrow_time(start, end))


def _bands_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    if not child.has_bands or child.band_dim not in BAND_DIMS:
        raise _invalid(node, "data", "the data has no bands dimension (it was reduced"
                       + (f", or replaced by {child.band_dim!r})" if child.has_bands else ")"),
                       "DimensionMissing")
    wanted = node.args.get("bands")
    if node.args.get("wavelengths") is not None:
        raise _invalid(node, "wavelengths", "selecting bands by wavelength is not supported; "
                       "use band names")
    if wanted is None:
        raise _invalid(node, "bands", "one of bands or wavelengths is required",
                       "BandFilterParameterMissing")
    if not isinstance(wanted, list) or not wanted:
        raise _invalid(node, "bands", "expected a non-empty list of band names")
    bands = tuple(resolve_band(child.product, child.bands, b, node, "bands") for b in wanted)
    return child.but(bands=bands, source_bands=tuple(
        b for b in bands if b in child.product.bands) or child.source_bands)


@process("filter_bands", [_DATA, Param("bands", required=False),
                              Param("wavelengths", required=False)], meta=_bands_meta)
def filter_bands(ctx, node, query):
    """Select bands, pushing the selection down."""
    meta = ctx.meta(node)
    wanted = _wanted(meta.bands, query)
    cube = ctx.eval(node.args["data"], query.with_bands(wanted))
    return cube.with_data(cube.data[:, [cube.bands.index(b) for b in wanted]], bands=wanted)


# -- spectral ----------------------------------------------------------------------------


def _ndvi_bands(ctx, node) -> tuple[str, str]:
    child = ctx.meta(node.args["data"])
    if not child.has_bands:
        raise _invalid(node, "data", "the bands dimension was already reduced")
    return (resolve_band(child.product, child.bands, node.args.get("red", "red"), node, "red"),
            resolve_band(child.product, child.bands, node.args.get("nir", "nir"), node, "nir"))


def _ndvi_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    red, nir = _ndvi_bands(ctx, node)
    target = node.args.get("target_band")
    if target is not None:
        if not isinstance(target, str) or not target or target in child.bands:
            raise _invalid(node, "target_band", f"{target!r} must be a new band name")
        return child.but(bands=child.bands + (target,))
    return child.but(bands=("ndvi",), source_bands=(red, nir), kind="ndvi", has_bands=False)


@process("ndvi", [_DATA, Param("nir", required=False, default="nir"),
                      Param("red", required=False, default="red"),
                      Param("target_band", required=False)], meta=_ndvi_meta)
def ndvi(ctx, node, query):
    """(nir - red) / (nir + red), reading only the two bands unless they are kept."""
    red, nir = _ndvi_bands(ctx, node)
    target = node.args.get("target_band")
    if target is None:
        cube = ctx.eval(node.args["data"], query.with_bands((red, nir)))
        out = normalized_difference(cube.data[:, cube.bands.index(nir)],
                                    cube.data[:, cube.bands.index(red)])
        return cube.with_data(out[:, None], bands=("ndvi",), kind="ndvi")
    meta = ctx.meta(node)
    keep = meta.bands[:-1] if query.bands is None else tuple(
        b for b in meta.bands[:-1] if b in query.bands)
    cube = ctx.eval(node.args["data"], query.with_bands(tuple(dict.fromkeys(
        keep + (red, nir)))))
    out = normalized_difference(cube.data[:, cube.bands.index(nir)],
                                cube.data[:, cube.bands.index(red)])
    data = np.concatenate([cube.data[:, [cube.bands.index(b) for b in keep]], out[:, None]],
                          axis=1)
    return cube.with_data(data, bands=keep + (target,))


# -- callbacks over dimensions -----------------------------------------------------------


def _callback_kind(cb: Callback, child_kind: str) -> str:
    root = root_process(cb)
    if root == "count":
        return "count"
    if root == "normalized_difference" or (root == "divide" and {
            getattr(v, "process_id", None) for v in cb.root.args.values()} == {
            "subtract", "add"}):
        return "ndvi"
    if root in ("linear_scale_range", "clip") or child_kind == "ndvi":
        return child_kind if root not in ("linear_scale_range",) else "scaled"
    return child_kind


def _needed_bands(cb: Callback, meta: CubeMeta) -> tuple[str, ...] | None:
    """The bands a band callback reads (``None``: all of them)."""
    used = labels_used(cb)
    if not used:
        return None
    out = []
    for how, value in used:
        if how == "label" and value in meta.bands:
            out.append(value)
        elif how == "index" and isinstance(value, int) and 0 <= value < len(meta.bands):
            out.append(meta.bands[value])
        else:
            return None
    return tuple(dict.fromkeys(out))


def _reduce_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    dim = _dimension(node, child)
    kind = _callback_kind(node.args["reducer"], child.kind)
    if dim == "t":
        return child.but(reduced=True, kind=kind)
    needed = _needed_bands(node.args["reducer"], child)
    source = child.source_bands
    if needed is not None and all(b in child.product.bands for b in needed):
        source = needed
    return child.but(bands=("value",) if kind != "ndvi" else ("ndvi",), source_bands=source,
                     has_bands=False, kind=kind)


def _empty_time(cube: Cube) -> Cube:
    """A cube without acquisitions, reduced as if it had one all-nodata date."""
    data = np.full((1,) + cube.data.shape[1:], np.nan, np.float32)
    return cube.with_data(data, times=(datetime(1970, 1, 1, tzinfo=UTC),))


@process("reduce_dimension", [_DATA, Param("reducer", "callback",
                                                 callback_params=("data", "context")),
                                  Param("dimension"), _CONTEXT], meta=_reduce_meta)
def reduce_dimension(ctx, node, query):
    """Run the reducer once on the whole window, the reduced dimension first."""
    meta = ctx.meta(node)
    child_meta = ctx.meta(node.args["data"])
    dim = _dimension(node, child_meta)
    cb = node.args["reducer"]
    context = _context(node.args.get("context"))
    if dim == "t":
        cube = ctx.eval(node.args["data"], query)
        if cube.data.shape[0] == 0:
            cube = _empty_time(cube)
        out = run_callback(cb, {"data": _labeled(cube.data, _labels(cube, "t")),
                                "context": context})
        data = _as_float32(out, cube.data.shape[1:], node)[None]
        return cube.with_data(np.ascontiguousarray(data), times=None, kind=meta.kind)
    needed = _needed_bands(cb, child_meta)
    cube = ctx.eval(node.args["data"], query.with_bands(needed) if needed else query)
    values, labels = np.moveaxis(cube.data, 1, 0), _labels(cube, "bands")
    if needed and cube.bands != child_meta.bands:
        # only the bands the reducer reads were read: put them at their positions among
        # all the bands, so that array_element(index=…) finds them (the others stay nodata
        # and are never read)
        full = np.full((len(child_meta.bands),) + values.shape[1:], np.nan, np.float32)
        for i, band in enumerate(child_meta.bands):
            if band in cube.bands:
                full[i] = values[cube.bands.index(band)]
        values, labels = full, tuple(child_meta.bands)
    out = run_callback(cb, {"data": _labeled(values, labels), "context": context})
    shape = (cube.data.shape[0],) + cube.data.shape[2:]
    data = _as_float32(out, shape, node)[:, None]
    return cube.with_data(np.ascontiguousarray(data), bands=meta.bands, kind=meta.kind)


def _apply_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    return child.but(kind=_callback_kind(node.args["process"], child.kind))


@process("apply", [_DATA, Param("process", "callback", callback_params=("x", "context")),
                       _CONTEXT], meta=_apply_meta)
def apply(ctx, node, query):
    """Run the process on every value at once (elementwise processes broadcast)."""
    cube = ctx.eval(node.args["data"], query)
    out = run_callback(node.args["process"], {"x": cube.data,
                                              "context": _context(node.args.get("context"))})
    data = _as_float32(out, cube.data.shape, node)
    return cube.with_data(np.ascontiguousarray(data), kind=ctx.meta(node).kind)


def _target_dimension(node: Node, meta: CubeMeta, dim: str) -> tuple[str, str]:
    """``(axis, name)``: where ``apply_dimension`` puts the computed values (``t`` or the
    band axis) and the name of that dimension. The band axis holds ``bands`` or one
    dimension of type other: a target that is not the source replaces the source there
    (over ``bands``), or goes there when the axis is free or has one band (over ``t``)."""
    source = node.args.get("dimension")
    target = node.args.get("target_dimension")
    if target is None or target == source:
        return dim, (meta.band_dim if dim == "bands" else "t")
    if target in TIME_DIMS:
        raise _invalid(node, "target_dimension", "the temporal dimension's labels are "
                       "dates, which values computed along another dimension do not have")
    if not isinstance(target, str) or not target or target in ("x", "y"):
        raise _invalid(node, "target_dimension", "expected the name of a new dimension, "
                       "of the band dimension, or null")
    if dim == "bands" or not meta.has_bands:
        return "bands", target
    if target != meta.band_dim:
        raise _invalid(node, "target_dimension", f"cannot create the dimension {target!r} "
                       f"beside {meta.band_dim!r}: the data cubes of this back-end have x, "
                       "y, t and one more dimension; use "
                       f"{meta.band_dim!r} as the target, or reduce it first")
    if len(meta.bands) != 1:
        raise _invalid(node, "target_dimension", f"the values along t become the "
                       f"{target} dimension, so the data must have one band, not "
                       f"{len(meta.bands)} ({', '.join(meta.bands)}): select one with "
                       "filter_bands or reduce the bands first")
    return "bands", target


def _probe_count(node: Node, labels: tuple) -> int:
    """How many values the process computes for an array of ``len(labels)`` elements (run
    on one pixel of made-up values, from the graph alone)."""
    n = len(labels)
    if root_process(node.args["process"]) == "run_udf":
        return n  # a UDF runs on the real data only, and keeps the shape (udf_v1)
    values = np.arange(1, n + 1, dtype=np.float32).reshape(n, 1, 1)
    out = run_callback(node.args["process"], {"data": _labeled(values, labels),
                                              "context": _context(node.args.get("context"))})
    out = np.asarray(getattr(out, "values", out) if not isinstance(out, np.ndarray) else out)
    return 1 if out.ndim < values.ndim else int(out.shape[0])  # a reducer: one value


def _made_up_dates(n: int) -> tuple[str, ...]:
    return tuple(f"2000-01-{d:02d}T00:00:00Z" for d in range(1, n + 1))


def _apply_dim_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    dim = _dimension(node, child)
    axis, name = _target_dimension(node, child, dim)
    kind = _callback_kind(node.args["process"], child.kind)
    if dim == "bands":
        count = _probe_count(node, child.bands)
        if count == len(child.bands) and name == child.band_dim:
            return child.but(kind=kind)  # the labels are kept
        return child.but(bands=tuple(str(i) for i in range(count)), band_dim=name,
                         kind=kind)
    if axis == "t":
        return child.but(kind=kind)
    try:
        counts = {n: _probe_count(node, _made_up_dates(n)) for n in (3, 5)}
    except ProcessArgumentInvalid as exc:
        raise _invalid(node, "process", "the number of values it computes along t must be "
                       "known from the graph (it is found by running the process on "
                       "made-up dates, and a process that reads given dates by label "
                       f"cannot run there): {exc.message}") from None
    if counts[3] != counts[5]:
        raise _invalid(node, "process", f"it computes {counts[3]} values for 3 dates and "
                       f"{counts[5]} for 5: the values along t can become a dimension only "
                       "when their number does not depend on the number of dates (e.g. "
                       "quantiles, extrema, or an array of reducers)")
    return child.but(bands=tuple(str(i) for i in range(counts[3])), reduced=True,
                     has_bands=True, band_dim=name, kind=kind)


def _computed(node: Node, out: Any, n: int, shape: tuple[int, ...], along: str
              ) -> np.ndarray:
    """The process's values as ``(n, *shape)`` float32, or a clear error."""
    arr = np.asarray(getattr(out, "values", out) if not isinstance(out, np.ndarray) else out)
    if arr.ndim == len(shape):  # a reducer: one value per pixel
        arr = arr[None]
    if arr.ndim == 0 or arr.shape[0] != n:
        got = 1 if arr.ndim == 0 else arr.shape[0]
        raise _invalid(node, "process", f"it computed {got} values along {along} where "
                       f"{n} were expected (the number of values must not depend on the "
                       "data)")
    return _as_float32(arr, (n, *shape), node)


@process("apply_dimension", [_DATA, Param("process", "callback",
                                                callback_params=("data", "context")),
                                 Param("dimension"),
                                 Param("target_dimension", required=False), _CONTEXT],
             meta=_apply_dim_meta)
def apply_dimension(ctx, node, query):
    """Run the process once on the whole window, the arrays along ``t`` or ``bands`` on
    axis 0. Along ``t`` it returns one value per date (the labels are dates), or any fixed
    number of values that become the bands (``target_dimension: "bands"``); along
    ``bands`` any fixed number of values (labels 0, 1, … when it changes)."""
    child_meta, meta = ctx.meta(node.args["data"]), ctx.meta(node)
    dim = _dimension(node, child_meta)
    context = _context(node.args.get("context"))
    if dim == "t" and not meta.reduced:
        cube = ctx.eval(node.args["data"], query)
        out = run_callback(node.args["process"], {"data": _labeled(cube.data, _labels(
            cube, "t")), "context": context})
        data = _computed(node, out, cube.data.shape[0], cube.data.shape[1:], "t")
        return cube.with_data(np.ascontiguousarray(data), kind=meta.kind)
    cube = ctx.eval(node.args["data"], query.with_bands(None))
    if dim == "t":  # the values along t become the bands
        if cube.data.shape[0] == 0:
            cube = _empty_time(cube)
        out = run_callback(node.args["process"], {"data": _labeled(cube.data[:, 0], _labels(
            cube, "t")), "context": context})
        data = _computed(node, out, len(meta.bands), cube.data.shape[2:], "t")
        return cube.with_data(np.ascontiguousarray(data[None]), times=None, bands=meta.bands,
                              kind=meta.kind)
    values = np.moveaxis(cube.data, 1, 0)
    out = run_callback(node.args["process"], {"data": _labeled(values, _labels(cube, "bands")),
                                              "context": context})
    data = _computed(node, out, len(meta.bands), values.shape[1:], "bands")
    return cube.with_data(np.ascontiguousarray(np.moveaxis(data, 0, 1)), bands=meta.bands,
                          kind=meta.kind)


# -- combining cubes ---------------------------------------------------------------------


def _align(a: Cube, b: Cube) -> tuple[np.ndarray, np.ndarray]:
    """``b``'s values on ``a``'s time steps and bands (one band/date broadcasts)."""
    bd = b.data
    if b.times is not None and a.times is not None and b.times != a.times:
        index = {day_key(t): i for i, t in enumerate(b.times)}
        rows = [index.get(day_key(t)) for t in a.times]
        bd = np.stack([b.data[i] if i is not None else np.full(b.data.shape[1:], np.nan,
                                                                np.float32) for i in rows]) \
            if rows else b.data[:0]
    if bd.shape[1] not in (1, a.data.shape[1]):
        idx = [b.bands.index(x) if x in b.bands else None for x in a.bands]
        if None in idx:
            raise ProcessArgumentInvalid(
                f"the mask has bands {list(b.bands)}, the data {list(a.bands)}: they must be "
                "the same, or the mask must have one band")
        bd = bd[:, idx]
    return a.data, np.broadcast_to(bd, a.data.shape)


def _mask_meta(ctx, node):
    ctx.meta(node.args["mask"])
    return ctx.meta(node.args["data"])


@process("mask", [_DATA, Param("mask", "cube"), Param("replacement", required=False)],
             meta=_mask_meta)
def mask(ctx, node, query):
    """Replace the values where the mask is true (non-zero, not nodata) by ``replacement``
    (nodata by default)."""
    cube = ctx.eval(node.args["data"], query)
    mcube = ctx.eval(node.args["mask"], query.with_bands(None))
    data, m = _align(cube, mcube)
    repl = node.args.get("replacement")
    fill = np.float32(np.nan if repl is None else repl)
    hit = np.isfinite(m) & (m != 0)
    if not hit.any():
        return cube
    return cube.with_data(np.where(hit, fill, data).astype(np.float32, copy=False))


def _mask_polygon_geoms(node: Node) -> list[dict]:
    value = node.args["mask"]
    if not isinstance(value, dict) or "type" not in value:
        raise _invalid(node, "mask", "expected GeoJSON polygons (a Polygon, MultiPolygon, "
                       "Feature or FeatureCollection)")
    return _geojson_geometries(node, "mask", value)


def _mask_polygon_meta(ctx, node):
    _mask_polygon_geoms(node)
    repl = node.args.get("replacement")
    if repl is not None and (isinstance(repl, bool) or not isinstance(repl, int | float)):
        raise _invalid(node, "replacement", "expected a number or null (nodata)")
    if not isinstance(node.args.get("inside", False), bool):
        raise _invalid(node, "inside", "expected true or false")
    return ctx.meta(node.args["data"])


@process("mask_polygon", [_DATA, Param("mask"),
                              Param("replacement", required=False),
                              Param("inside", required=False, default=False)],
             meta=_mask_polygon_meta)
def mask_polygon(ctx, node, query):
    """Replace the pixels whose centre lies outside the polygons (inside them with
    ``inside``) by ``replacement`` (nodata by default); the extent stays."""
    from rasterio.features import geometry_mask  # noqa: PLC0415
    from rasterio.warp import transform_geom  # noqa: PLC0415

    cube = ctx.eval(node.args["data"], query)
    view = cube.view
    geoms = [transform_geom(WGS84, view.crs, g) for g in _mask_polygon_geoms(node)]
    outside = geometry_mask(geoms, (view.height, view.width), view.transform)
    hit = ~outside if node.args.get("inside", False) else outside
    if not hit.any():
        return cube
    repl = node.args.get("replacement")
    data = cube.data.copy()
    data[:, :, hit] = np.float32(np.nan if repl is None else repl)
    return cube.with_data(data)


def _drop_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    name = node.args.get("name")
    if name in TIME_DIMS:
        if child.reduced:
            raise _invalid(node, "name", "the data has no temporal dimension (it was "
                           "reduced)", "DimensionNotAvailable")
        return child.but(reduced=True)
    if child.has_bands and name == child.band_dim:
        if len(child.bands) != 1:
            raise _invalid(node, "name", f"dimension {name!r} has {len(child.bands)} labels "
                           f"({', '.join(child.bands)}); only a dimension with one label "
                           "can be dropped", "DimensionLabelCountMismatch")
        return child.but(has_bands=False)
    if name in ("x", "y"):
        raise _invalid(node, "name", "the spatial dimensions cannot be dropped",
                       "DimensionLabelCountMismatch")
    raise _invalid(node, "name", f"no dimension {name!r}", "DimensionNotAvailable")


@process("drop_dimension", [_DATA, Param("name")], meta=_drop_meta)
def drop_dimension(ctx, node, query):
    """Drop a dimension that has one label: the single band, or the single date."""
    cube = ctx.eval(node.args["data"], query)
    if node.args["name"] not in TIME_DIMS:
        return cube
    if cube.times is not None and len(cube.times) > 1:
        raise _invalid(node, "name", f"the temporal dimension has {len(cube.times)} labels "
                       "here; only a dimension with one label can be dropped (filter_temporal "
                       "or reduce_dimension first)", "DimensionLabelCountMismatch")
    if cube.times is None:
        return cube
    return cube.with_data(cube.data if cube.data.shape[0] else np.full(
        (1,) + cube.data.shape[1:], np.nan, np.float32), times=None)  # one date, or none here


#: The largest kernel side ``apply_kernel`` takes (pixels).
MAX_KERNEL = 101


def _kernel(node: Node) -> np.ndarray:
    value = node.args.get("kernel")
    if not isinstance(value, list) or not value or not all(
            isinstance(row, list) and row and len(row) == len(value[0]) and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in row) for row in value):
        raise _invalid(node, "kernel", "expected a rectangular 2-D array of numbers")
    kernel = np.asarray(value, dtype=np.float64)
    if kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise _invalid(node, "kernel", f"the kernel is {kernel.shape[0]} x {kernel.shape[1]}; "
                       "each dimension must be odd", "KernelDimensionsUneven")
    if max(kernel.shape) > MAX_KERNEL:
        raise _invalid(node, "kernel", f"at most {MAX_KERNEL} x {MAX_KERNEL} values")
    return kernel


def _number(node: Node, name: str, default: float) -> float:
    value = node.args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value):
        raise _invalid(node, name, f"expected a finite number, got {value!r}")
    return float(value)


def _kernel_meta(ctx, node):
    _kernel(node)
    _number(node, "factor", 1)
    _number(node, "replace_invalid", 0)
    if isinstance(node.args.get("border", 0), str):
        raise _invalid(node, "border", f"border {node.args['border']!r} is not supported; "
                       "give the number that stands for the pixels outside the data (the "
                       "default 0)")
    _number(node, "border", 0)
    return ctx.meta(node.args["data"])


def _outside_extent(view, meta: CubeMeta) -> np.ndarray:
    """Pixels of ``view`` whose centre is outside the spatial extent of the data (its
    spatial filter's bounding box, else the collection's)."""
    from rasterio.features import geometry_mask  # noqa: PLC0415
    from rasterio.warp import transform_geom  # noqa: PLC0415
    from shapely.geometry import box, mapping  # noqa: PLC0415

    bounds, crs = (meta.bbox, meta.srs) if meta.bbox is not None and meta.srs is not None \
        else (meta.product.bbox, WGS84)
    outline = box(*bounds)
    outline = outline.segmentize(max(bounds[2] - bounds[0], bounds[3] - bounds[1]) / 64)
    geom = transform_geom(crs, view.crs, mapping(outline))
    return geometry_mask([geom], (view.height, view.width), view.transform)


@process("apply_kernel", [_DATA, Param("kernel"),
                              Param("factor", required=False, default=1),
                              Param("border", required=False, default=0),
                              Param("replace_invalid", required=False, default=0)],
             meta=_kernel_meta)
def apply_kernel(ctx, node, query):
    """A 2-D convolution over x and y of every date and band, times ``factor``: the data is
    computed on the view grown by the kernel's half size (a tile sees its neighbours'
    pixels), nodata counts as ``replace_invalid`` and the pixels outside the data's extent
    as ``border``; the kernel works on the pixels of the grid being computed (the native
    grid for /result and batch jobs, a tile's own grid for tiles)."""
    from dataclasses import replace  # noqa: PLC0415

    from tileserver.datacube.view import View  # noqa: PLC0415

    kernel = _kernel(node)[::-1, ::-1]  # a convolution: the kernel mirrored
    kh, kw = kernel.shape
    hy, hx = kh // 2, kw // 2
    view = query.view
    rx, ry = view.res
    left, bottom, right, top = view.bounds
    grown = View(view.crs, (left - hx * rx, bottom - hy * ry, right + hx * rx, top + hy * ry),
                 view.width + 2 * hx, view.height + 2 * hy)
    meta = ctx.meta(node.args["data"])
    cube = ctx.eval(node.args["data"], replace(query, view=grown))
    values = cube.data.astype(np.float64)
    values[~np.isfinite(values)] = _number(node, "replace_invalid", 0)
    outside = _outside_extent(grown, meta)
    values[:, :, outside] = _number(node, "border", 0)
    out = np.zeros(values.shape[:2] + (view.height, view.width))
    for i in range(kh):
        for j in range(kw):
            if kernel[i, j] != 0:
                out += kernel[i, j] * values[:, :, i:i + view.height, j:j + view.width]
    out *= _number(node, "factor", 1)
    out[:, :, outside[hy:hy + view.height, hx:hx + view.width]] = np.nan
    return Cube(out.astype(np.float32), cube.times, cube.bands, view, cube.kind)


def _merge_meta(ctx, node):
    a, b = ctx.meta(node.args["cube1"]), ctx.meta(node.args["cube2"])
    overlap = [x for x in b.bands if x in a.bands]
    if overlap and node.args.get("overlap_resolver") is None:
        raise _invalid(node, "overlap_resolver", f"both cubes have the bands {overlap}: an "
                       "overlap_resolver is required", "OverlapResolverMissing")
    if a.reduced != b.reduced:
        raise _invalid(node, "cube2", "one cube has a temporal dimension and the other not")
    bands = a.bands + tuple(x for x in b.bands if x not in a.bands)
    return a.but(bands=bands, source_bands=tuple(dict.fromkeys(
        a.source_bands + b.source_bands)), time_range=None if (a.time_range is None or
                                                                b.time_range is None) else (
        min(a.time_range[0], b.time_range[0]), max(a.time_range[1], b.time_range[1])))


@process("merge_cubes", [Param("cube1", "cube"), Param("cube2", "cube"),
                             Param("overlap_resolver", "callback", required=False,
                                     callback_params=("x", "y", "context")), _CONTEXT],
             meta=_merge_meta)
def merge_cubes(ctx, node, query):
    """Bands of both cubes on the union of their dates; overlapping values resolved."""
    ma, mb = ctx.meta(node.args["cube1"]), ctx.meta(node.args["cube2"])

    def part(child, meta):
        wanted = None if query.bands is None else tuple(b for b in meta.bands
                                                         if b in query.bands)
        if wanted == ():
            return None
        return ctx.eval(child, query.with_bands(wanted))

    a, b = part(node.args["cube1"], ma), part(node.args["cube2"], mb)
    if a is None or b is None:
        return a if b is None else b
    if a.times is None:
        times = None
    else:
        days = sorted({day_key(t): t for t in (*b.times, *a.times)}.items())
        times = tuple(t for _, t in days)
    bands = a.bands + tuple(x for x in b.bands if x not in a.bands)
    nt = 1 if times is None else len(times)
    out = np.full((nt, len(bands)) + a.data.shape[2:], np.nan, np.float32)

    def rows(cube):
        if times is None:
            return [0]
        index = {day_key(t): i for i, t in enumerate(times)}
        return [index[day_key(t)] for t in cube.times]

    ra, rb = rows(a), rows(b)
    for i, band in enumerate(a.bands):
        out[ra, bands.index(band)] = a.data[:, i]
    resolver = node.args.get("overlap_resolver")
    for i, band in enumerate(b.bands):
        j = bands.index(band)
        if band in a.bands:
            current = out[rb, j]
            other = b.data[:, i]
            both = np.isfinite(current) & np.isfinite(other)
            merged = np.where(np.isfinite(current), current, other)
            if both.any():
                value = run_callback(resolver, {"x": current, "y": other, "context": _context(
                    node.args.get("context"))})
                merged = np.where(both, _as_float32(value, current.shape, node), merged)
            out[rb, j] = merged
        else:
            out[rb, j] = b.data[:, i]
    return Cube(out, times, bands, a.view, a.kind)


def _rename_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    if node.args.get("dimension") != child.band_dim:
        raise _invalid(node, "dimension", f"only the {child.band_dim} dimension can be "
                       "renamed")
    target, source = node.args.get("target"), node.args.get("source") or []
    if isinstance(source, list):  # apply_dimension's labels 0, 1, … are numbers in openEO
        source = [str(v) if isinstance(v, int) and not isinstance(v, bool)
                  and str(v) in child.bands else v for v in source]
    if not isinstance(target, list) or not all(isinstance(t, str) for t in target):
        raise _invalid(node, "target", "expected a list of new band names")
    if not source:
        if len(target) != len(child.bands):
            raise _invalid(node, "target", f"{len(target)} names for {len(child.bands)} bands")
        mapping = dict(zip(child.bands, target, strict=True))
    else:
        if len(source) != len(target):
            raise _invalid(node, "source", "source and target must have the same length",
                           "LabelMismatch")
        missing = [s for s in source if s not in child.bands]
        if missing:
            raise _invalid(node, "source", f"unknown bands {missing}", "LabelNotAvailable")
        mapping = dict(zip(source, target, strict=True))
    bands = tuple(mapping.get(b, b) for b in child.bands)
    if len(set(bands)) != len(bands):
        raise _invalid(node, "target", "the new band names are not unique", "LabelExists")
    return child.but(bands=bands)


@process("rename_labels", [_DATA, Param("dimension"), Param("target"),
                               Param("source", required=False)], meta=_rename_meta)
def rename_labels(ctx, node, query):
    """New band names (the reads below still use the old ones)."""
    old, new = ctx.meta(node.args["data"]).bands, ctx.meta(node).bands
    back = dict(zip(new, old, strict=True))
    wanted = None if query.bands is None else tuple(back[b] for b in query.bands if b in back)
    cube = ctx.eval(node.args["data"], query.with_bands(wanted))
    return cube.with_data(cube.data, bands=tuple(dict(zip(old, new, strict=True))[b]
                                                 for b in cube.bands))


#: resample_spatial's methods as the resampling of GDAL's warper (rasterio's names).
RESAMPLING = {"near": "nearest", "bilinear": "bilinear", "cubic": "cubic",
              "cubicspline": "cubic_spline", "lanczos": "lanczos", "average": "average",
              "mode": "mode", "min": "min", "max": "max", "med": "med", "q1": "q1",
              "q3": "q3", "rms": "rms", "sum": "sum"}


def _resample_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    res = node.args.get("resolution", 0)
    values = res if isinstance(res, list) else [res]
    if not values or any(isinstance(v, bool) or not isinstance(v, int | float)
                         or not math.isfinite(v) or v < 0 for v in values):
        raise _invalid(node, "resolution", "expected a number >= 0 or [x, y] numbers")
    proj = node.args.get("projection")
    crs = _crs(node, "projection", proj) if proj is not None else None
    if node.args.get("method", "near") not in RESAMPLING:
        raise _invalid(node, "method", f"unknown method {node.args['method']!r}; one of "
                       f"{', '.join(RESAMPLING)}")
    return child.but(native_res=float(max(values)) or None, native_crs=crs)


@process("resample_spatial", [_DATA, Param("resolution", required=False, default=0),
                                  Param("projection", required=False),
                                  Param("method", required=False, default="near"),
                                  Param("align", required=False, default="upper-left")],
             meta=_resample_meta)
def resample_spatial(ctx, node, query):
    """The native grid of the result changes (for /result and batch jobs); tiles and
    coverages keep choosing their own grid, read from the fitting overview. Everywhere the
    files are warped onto the grid with ``method``."""
    return ctx.eval(node.args["data"], query.with_resampling(
        RESAMPLING[node.args.get("method", "near")]))


def native_grid_of(meta: CubeMeta) -> tuple[CRS, float]:
    """``(crs, resolution)`` of the native grid of a cube: resample_spatial's, else the
    collection's CRS at the finest resolution of the bands read."""
    product = meta.product
    crs = meta.native_crs or product.crs
    if meta.native_res:
        return crs, meta.native_res
    res = min(product.bands[b].res_m for b in meta.source_bands or tuple(product.bands))
    return crs, res / 111_320.0 if crs.is_geographic else res


def _resample_cube_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    target = ctx.meta(node.args["target"])
    if node.args.get("method", "near") not in RESAMPLING:
        raise _invalid(node, "method", f"unknown method {node.args['method']!r}; one of "
                       f"{', '.join(RESAMPLING)}")
    crs, res = native_grid_of(target)
    return child.but(native_res=res, native_crs=crs)


@process("resample_cube_spatial", [_DATA, Param("target", "cube"),
                                       Param("method", required=False, default="near")],
             meta=_resample_cube_meta)
def resample_cube_spatial(ctx, node, query):
    """``data`` on the CRS and resolution of ``target``'s native grid (only its grid is
    used: ``target`` is not read); the files are warped with ``method``."""
    return ctx.eval(node.args["data"], query.with_resampling(
        RESAMPLING[node.args.get("method", "near")]))


# -- temporal aggregation ----------------------------------------------------------------


def _period_start(t: datetime, period: str) -> datetime:
    if period in ("hour",):
        return t.replace(minute=0, second=0, microsecond=0)
    day = datetime(t.year, t.month, t.day, tzinfo=UTC)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "dekad":
        return day.replace(day=min(21, (day.day - 1) // 10 * 10 + 1))
    if period == "month":
        return day.replace(day=1)
    if period == "season":  # DJF, MAM, JJA, SON
        if t.month == 12:
            return datetime(t.year, 12, 1, tzinfo=UTC)
        if t.month <= 2:
            return datetime(t.year - 1, 12, 1, tzinfo=UTC)
        return datetime(t.year, (t.month - 3) // 3 * 3 + 3, 1, tzinfo=UTC)
    if period == "tropical-season":  # NDJFMA, MJJASO
        if t.month >= 11:
            return datetime(t.year, 11, 1, tzinfo=UTC)
        if t.month <= 4:
            return datetime(t.year - 1, 11, 1, tzinfo=UTC)
        return datetime(t.year, 5, 1, tzinfo=UTC)
    if period == "year":
        return datetime(t.year, 1, 1, tzinfo=UTC)
    if period == "decade":
        return datetime(t.year // 10 * 10, 1, 1, tzinfo=UTC)
    if period == "decade-ad":
        return datetime((t.year - 1) // 10 * 10 + 1, 1, 1, tzinfo=UTC)
    raise ValueError(period)


def _add_months(t: datetime, months: int) -> datetime:
    index = t.year * 12 + t.month - 1 + months
    return t.replace(year=index // 12, month=index % 12 + 1)


def _next_period(start: datetime, period: str) -> datetime:
    """The start of the period after the one starting at ``start``."""
    step = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}
    if period in step:
        return start + step[period]
    if period == "dekad":
        return start.replace(day=start.day + 10) if start.day < 21 else _add_months(
            start.replace(day=1), 1)
    months = {"month": 1, "season": 3, "tropical-season": 6, "year": 12, "decade": 120,
              "decade-ad": 120}
    return _add_months(start, months[period])


PERIODS = ("hour", "day", "week", "dekad", "month", "season", "tropical-season", "year",
           "decade", "decade-ad")


def _period_meta(ctx, node):
    if node.args.get("period") not in PERIODS:
        raise _invalid(node, "period", f"expected one of {', '.join(PERIODS)}")
    child = _over_time(ctx, node, "the data has no temporal dimension (it was reduced)")
    return child.but(kind=_callback_kind(node.args["reducer"], child.kind))


@process("aggregate_temporal_period", [
    _DATA, Param("period"), Param("reducer", "callback",
                                      callback_params=("data", "context")),
    Param("dimension", required=False), _CONTEXT], meta=_period_meta)
def aggregate_temporal_period(ctx, node, query):
    """One time step per period from the first date's to the last date's (periods without
    data are nodata: the labels are complete for the extent), labelled with the period's
    start."""
    cube = ctx.eval(node.args["data"], query)
    period = node.args["period"]
    groups: dict[datetime, list[int]] = {}
    for i, t in enumerate(cube.times or ()):
        groups.setdefault(_period_start(t, period), []).append(i)
    starts = []
    if groups:
        start, last = min(groups), max(groups)
        per_step = int(np.prod(cube.data.shape[1:]))
        while start <= last:
            starts.append(start)
            start = _next_period(start, period)
            if len(starts) * per_step > ctx.engine.max_pixels:
                raise LimitExceeded(
                    f"node '{node.path}': aggregate_temporal_period by {period} from "
                    f"{min(groups):%Y-%m-%d} to {last:%Y-%m-%d} gives more than "
                    f"{len(starts)} periods of {per_step} values: over the limit of "
                    f"{ctx.engine.max_pixels}; choose a longer period or fewer dates")
    out = np.full((len(starts),) + cube.data.shape[1:], np.nan, np.float32)
    context = _context(node.args.get("context"))
    for k, start in enumerate(starts):
        rows = groups.get(start)
        if rows is None:
            continue  # a period without data: nodata
        value = run_callback(node.args["reducer"], {
            "data": _labeled(cube.data[rows], tuple(_labels(cube, "t")[i] for i in rows)),
            "context": context})
        out[k] = _as_float32(value, cube.data.shape[1:], node)
    return cube.with_data(out, times=tuple(starts), kind=ctx.meta(node).kind)


def _intervals(node: Node) -> tuple[list[tuple[datetime, datetime]], list[datetime]]:
    """``(intervals, labels)`` of ``aggregate_temporal``: inclusive ``(start, end)`` per
    interval, and a date label per interval (its start unless ``labels`` names them)."""
    value = node.args.get("intervals")
    if not isinstance(value, list) or not value:
        raise _invalid(node, "intervals", "expected a non-empty list of [start, end] "
                       "intervals")
    intervals = [temporal_extent(node, "intervals", v) for v in value]
    labels = node.args.get("labels")
    if labels in (None, []):
        if any(v[0] is None for v in value):
            raise _invalid(node, "labels", "an interval with an open start needs labels")
        return intervals, [t0 for t0, _ in intervals]
    if not isinstance(labels, list) or len(labels) != len(intervals):
        raise _invalid(node, "labels", f"expected {len(intervals)} labels, one per interval")
    try:
        dates = [parse_date(v) for v in labels]
    except (ValueError, AttributeError, TypeError):
        raise _invalid(node, "labels", "the labels of the temporal dimension must be "
                       "ISO 8601 dates here") from None
    if len(set(dates)) != len(dates):
        raise _invalid(node, "labels", "the labels must be distinct",
                       "DistinctDimensionLabelsRequired")
    return intervals, dates


def _aggregate_temporal_meta(ctx, node):
    child = _over_time(ctx, node, "the data has no temporal dimension (it was reduced)")
    intervals, _labels = _intervals(node)
    lo, hi = min(t0 for t0, _ in intervals), max(t1 for _, t1 in intervals)
    if child.time_range:
        lo, hi = max(lo, child.time_range[0]), min(hi, child.time_range[1])
    return child.but(time_range=(lo, hi) if lo <= hi else child.time_range,
                     kind=_callback_kind(node.args["reducer"], child.kind))


@process("aggregate_temporal", [
    _DATA, Param("intervals"), Param("reducer", "callback",
                                         callback_params=("data", "context")),
    Param("labels", required=False), Param("dimension", required=False), _CONTEXT],
    meta=_aggregate_temporal_meta)
def aggregate_temporal(ctx, node, query):
    """One time step per interval (``[start, end)``; intervals may overlap), the dates
    inside it reduced by ``reducer``; an interval without data is nodata."""
    intervals, labels = _intervals(node)
    lo, hi = min(t0 for t0, _ in intervals), max(t1 for _, t1 in intervals)
    cube = ctx.eval(node.args["data"], query.narrow_time(lo, hi) if lo <= hi else query)
    times = cube.times or ()
    out = np.full((len(intervals),) + cube.data.shape[1:], np.nan, np.float32)
    context = _context(node.args.get("context"))
    for k, (t0, t1) in enumerate(intervals):
        rows = [i for i, t in enumerate(times) if t0 <= t <= t1]
        if not rows:
            continue
        value = run_callback(node.args["reducer"], {
            "data": _labeled(cube.data[rows], tuple(_labels(cube, "t")[i] for i in rows)),
            "context": context})
        out[k] = _as_float32(value, cube.data.shape[1:], node)
    return cube.with_data(out, times=tuple(labels), kind=ctx.meta(node).kind)


# -- zonal statistics --------------------------------------------------------------------

#: openEO reducers that the zonal statistics compute exactly (``sd`` is the sample standard
#: deviation in openEO, the zonal ``std`` the population one: not mapped).
ZONAL_REDUCERS = {"mean": "avg", "min": "min", "max": "max", "median": "median",
                  "count": "count", "sum": "sum"}


def _zonal_regions(node: Node):
    from tileserver.zonal import stats as zonal  # noqa: PLC0415
    from tileserver.zonal.tables import Regions  # noqa: PLC0415

    value = node.args.get("geometries")
    if isinstance(value, dict) and "type" in value:
        geoms = [shape(g) for g in _geojson_geometries(node, "geometries", value,
                                                        points=True)]
        if len(geoms) > zonal.MAX_REGIONS:
            raise _invalid(node, "geometries", f"more than {zonal.MAX_REGIONS} polygons")
        return Regions(geoms, zonal.WGS84, ["geometries"] * len(geoms))
    raise _invalid(node, "geometries", "expected GeoJSON polygons or points (a Polygon, "
                   "MultiPolygon, Point, MultiPoint, Feature or FeatureCollection); for "
                   "uploaded region files use the 0.0.2 zonal_statistics process")


def _zonal_func(node: Node) -> str:
    reducer = node.args["reducer"]
    root = root_process(reducer)
    if root not in ZONAL_REDUCERS or not isinstance(reducer.root, Node) or any(
            isinstance(v, Node) for v in reducer.root.args.values()):
        raise _invalid(node, "reducer", f"a single reducer of {', '.join(ZONAL_REDUCERS)} "
                       "applied to the pixels is supported")
    return ZONAL_REDUCERS[root]


def _aggregate_spatial_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    _zonal_regions(node)
    _zonal_func(node)
    if node.args.get("target_dimension") not in (None, "result"):
        raise _invalid(node, "target_dimension", "only the default 'result' is supported")
    return child.but(kind="table")


@process("aggregate_spatial", [_DATA, Param("geometries"),
                                   Param("reducer", "callback",
                                           callback_params=("data", "context")),
                                   Param("target_dimension", required=False,
                                           default="result"), _CONTEXT],
             meta=_aggregate_spatial_meta, returns="table")
def aggregate_spatial(ctx, node, query):
    """Zonal statistics per polygon, date and band (the 0.0.2 ``zonal_statistics`` engine:
    only the pixels under the polygons are read, at native resolution)."""
    from tileserver.zonal import stats as zonal  # noqa: PLC0415
    from tileserver.datacube.query import Query  # noqa: PLC0415

    data = node.args["data"]
    meta = ctx.meta(data)
    grid = zonal.native_grid(meta.product, meta.source_bands)
    return zonal.zonal_statistics(lambda view: ctx.eval(data, Query(view, query.time)),
                                  meta, _zonal_regions(node), _zonal_func(node), grid,
                                  ctx.engine.max_pixels)
