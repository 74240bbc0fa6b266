"""Combining cubes: ``mask``, ``mask_polygon``, ``merge_cubes``."""

from __future__ import annotations

import numpy as np
from rasterio.features import geometry_mask
from rasterio.warp import transform_geom

from tileserver.datacube.cube import Cube, day_key
from tileserver.errors import ProcessArgumentInvalid
from tileserver.graph.nodes import Node
from tileserver.processes.callbacks import run_callback
from tileserver.processes.cube.common import (
    CONTEXT_PARAM,
    DATA_PARAM,
    WGS84,
    as_float32,
    context_value,
    geojson_geometries,
    invalid_argument,
)
from tileserver.processes.registry import Param, process


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


@process("mask", [DATA_PARAM, Param("mask", "cube"), Param("replacement", required=False)],
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
        raise invalid_argument(node, "mask", "expected GeoJSON polygons (a Polygon, MultiPolygon, "
                               "Feature or FeatureCollection)")
    return geojson_geometries(node, "mask", value)


def _mask_polygon_meta(ctx, node):
    _mask_polygon_geoms(node)
    repl = node.args.get("replacement")
    if repl is not None and (isinstance(repl, bool) or not isinstance(repl, int | float)):
        raise invalid_argument(node, "replacement", "expected a number or null (nodata)")
    if not isinstance(node.args.get("inside", False), bool):
        raise invalid_argument(node, "inside", "expected true or false")
    return ctx.meta(node.args["data"])


@process("mask_polygon", [DATA_PARAM, Param("mask"),
                          Param("replacement", required=False),
                          Param("inside", required=False, default=False)],
         meta=_mask_polygon_meta)
def mask_polygon(ctx, node, query):
    """Replace the pixels whose centre lies outside the polygons (inside them with
    ``inside``) by ``replacement`` (nodata by default); the extent stays."""
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


def _merge_meta(ctx, node):
    a, b = ctx.meta(node.args["cube1"]), ctx.meta(node.args["cube2"])
    overlap = [x for x in b.bands if x in a.bands]
    if overlap and node.args.get("overlap_resolver") is None:
        raise invalid_argument(node, "overlap_resolver", f"both cubes have the bands {overlap}: an "
                               "overlap_resolver is required", "OverlapResolverMissing")
    if a.reduced != b.reduced:
        raise invalid_argument(node, "cube2", "one cube has a temporal dimension and the other not")
    bands = a.bands + tuple(x for x in b.bands if x not in a.bands)
    return a.but(bands=bands, source_bands=tuple(dict.fromkeys(
        a.source_bands + b.source_bands)), time_range=None if (a.time_range is None or
                                                               b.time_range is None) else (
        min(a.time_range[0], b.time_range[0]), max(a.time_range[1], b.time_range[1])))


@process("merge_cubes", [Param("cube1", "cube"), Param("cube2", "cube"),
                         Param("overlap_resolver", "callback", required=False,
                               callback_params=("x", "y", "context")), CONTEXT_PARAM],
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
                value = run_callback(resolver, {"x": current, "y": other, "context": context_value(
                    node.args.get("context"))})
                merged = np.where(both, as_float32(value, current.shape, node), merged)
            out[rb, j] = merged
        else:
            out[rb, j] = b.data[:, i]
    return Cube(out, times, bands, a.view, a.kind)
