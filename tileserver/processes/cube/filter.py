"""Filters: ``filter_bbox``, ``filter_spatial``, ``filter_temporal``, ``filter_bands``."""

from __future__ import annotations

from tileserver.processes.cube.common import (
    BAND_DIMS,
    DATA_PARAM,
    TIME_DIMS,
    intersect_inner,
    invalid_argument,
    mask_outside,
    resolve_band,
    spatial_extent,
    temporal_extent,
)
from tileserver.processes.cube.load import check_extent, geometry_of, wanted_bands
from tileserver.processes.registry import Param, process


def _bbox_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    name = "extent" if node.process_id == "filter_bbox" else "geometries"
    bounds, crs, _ = spatial_extent(node, name, node.args[name])
    check_extent(node, name, bounds, crs, child.product.crs)
    try:
        bounds = intersect_inner(node, bounds, crs, child)
    except Exception:  # noqa: BLE001 - worded for 0.0.2
        raise invalid_argument(node, name, "the extent does not overlap the spatial extent of the "
                               "data below (the result would be empty)") from None
    return child.but(bbox=bounds, srs=crs)


def _spatial_filter(ctx, node, query):
    meta = ctx.meta(node)
    cube = ctx.eval(node.args["data"], query)
    return mask_outside(cube, meta.bbox, meta.srs, geometry_of(node))


process("filter_bbox", [DATA_PARAM, Param("extent")], meta=_bbox_meta)(_spatial_filter)
process("filter_spatial", [DATA_PARAM, Param("geometries")], meta=_bbox_meta)(
    _spatial_filter)


def over_time(ctx, node, reduced: str):
    """The meta of ``data`` of a process over the temporal dimension: its ``dimension``
    argument names it (or is absent) and the data still has it (else ``reduced``)."""
    child = ctx.meta(node.args["data"])
    if node.args.get("dimension") not in (None, *TIME_DIMS):
        raise invalid_argument(
            node, "dimension", f"no temporal dimension {node.args['dimension']!r} "
            "(it is 't')", "DimensionNotAvailable")
    if child.reduced:
        raise invalid_argument(
            node, "data", reduced, "DimensionNotAvailable")
    return child


def _temporal_meta(ctx, node):
    child = over_time(ctx, node, "the temporal dimension was already reduced")
    start, end = temporal_extent(node, "extent", node.args["extent"])
    if child.time_range:
        start, end = max(start, child.time_range[0]), min(end, child.time_range[1])
    return child.but(time_range=(start, end))


@process("filter_temporal", [DATA_PARAM, Param("extent"), Param("dimension", required=False)],
         meta=_temporal_meta)
def filter_temporal(ctx, node, query):
    """Narrow the time range pushed down to the reads."""
    start, end = ctx.meta(node).time_range
    return ctx.eval(node.args["data"], query.narrow_time(start, end))


def _bands_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    if not child.has_bands or child.band_dim not in BAND_DIMS:
        raise invalid_argument(
            node, "data", "the data has no bands dimension (it was reduced"
            + (f", or replaced by {child.band_dim!r})" if child.has_bands else ")"),
            "DimensionMissing")
    wanted = node.args.get("bands")
    if node.args.get("wavelengths") is not None:
        raise invalid_argument(
            node, "wavelengths", "selecting bands by wavelength is not supported; "
            "use band names")
    if wanted is None:
        raise invalid_argument(node, "bands", "one of bands or wavelengths is required",
                               "BandFilterParameterMissing")
    if not isinstance(wanted, list) or not wanted:
        raise invalid_argument(node, "bands", "expected a non-empty list of band names")
    bands = tuple(resolve_band(child.product, child.bands, b, node, "bands") for b in wanted)
    return child.but(bands=bands, source_bands=tuple(
        b for b in bands if b in child.product.bands) or child.source_bands)


@process("filter_bands", [DATA_PARAM, Param("bands", required=False),
                          Param("wavelengths", required=False)], meta=_bands_meta)
def filter_bands(ctx, node, query):
    """Select bands, pushing the selection down."""
    meta = ctx.meta(node)
    wanted = wanted_bands(meta.bands, query)
    cube = ctx.eval(node.args["data"], query.with_bands(wanted))
    return cube.with_data(cube.data[:, [cube.bands.index(b) for b in wanted]], bands=wanted)
