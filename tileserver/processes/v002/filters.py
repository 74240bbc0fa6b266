"""filter_bbox, filter_daterange, filter_bands."""

from __future__ import annotations

from datetime import timedelta

from rasterio.crs import CRS

from tileserver.errors import BandNotFound, ProcessGraphError
from tileserver.graph.nodes import IMAGERY
from tileserver.graph.v1 import v1_node
from tileserver.params import parse_iso_date as parse_date
from tileserver.processes.cube.common import check_bbox_area, intersect_inner
from tileserver.processes.registry import REGISTRY
from tileserver.processes.v002.table import Arg, translation

_IMAGERY = Arg(IMAGERY, "imagery", "The input cube.")


def bbox_of(node) -> tuple[tuple[float, float, float, float], CRS, bool]:
    """``((left, bottom, right, top), crs, swapped)`` of a filter_bbox node, validated."""
    a = node.args
    left, right, top, bottom = a["left"], a["right"], a["top"], a["bottom"]
    path = f"{node.path}.args"
    if left >= right:
        raise ProcessGraphError(
            f"{path}: empty or inverted bbox, left ({left}) must be smaller than right ({right})",
            path=f"{path}.left",
        )
    if top == bottom:
        raise ProcessGraphError(
            f"{path}: empty bbox, top and bottom are both {top}", path=f"{path}.top"
        )
    swapped = top < bottom
    if swapped:
        top, bottom = bottom, top
    return (left, bottom, right, top), CRS.from_user_input(a.get("srs") or "EPSG:4326"), swapped


def _bbox_meta(ctx, node):
    child = ctx.meta(node.args[IMAGERY])
    bounds, crs, swapped = bbox_of(node)
    check_bbox_area(node, bounds, crs, child.product.crs)
    bounds = intersect_inner(node, bounds, crs, child)
    notes = child.notes
    if swapped:
        notes += (
            f"{node.path}: top ({node.args['top']}) was below bottom ({node.args['bottom']});"
            " the bbox was normalised by swapping them",
        )
    return child.but(bbox=bounds, srs=crs, notes=notes)


@translation(
    "filter_bbox",
    "Spatial filter",
    "Keeps the pixels whose centre lies inside the bounding box given in `srs` "
    "(default EPSG:4326); the others become nodata. The bbox also defines the native extent "
    "of the result. A bbox whose top is below its bottom is normalised (the two are swapped) "
    "and the response says so; an empty bbox is an error. Nested filter_bbox nodes keep "
    "their overlap.",
    [
        _IMAGERY,
        Arg("left", "number", "Western boundary (minimum x) in `srs`."),
        Arg("right", "number", "Eastern boundary (maximum x) in `srs`."),
        Arg("top", "number", "Northern boundary (maximum y) in `srs`."),
        Arg("bottom", "number", "Southern boundary (minimum y) in `srs`."),
        Arg("srs", "srs", "CRS of the coordinates, e.g. 'EPSG:32632'.", required=False,
            default="EPSG:4326"),
    ],
    meta=_bbox_meta,
)
def filter_bbox(ctx, node, data):
    """1.x ``filter_bbox`` with the normalised bbox."""
    (west, south, east, north), _, _ = bbox_of(node)
    return v1_node("filter_bbox", node.path, REGISTRY, data=data, extent={
        "west": west, "south": south, "east": east, "north": north,
        "crs": node.args.get("srs") or "EPSG:4326"})


def daterange_of(node):
    """Inclusive ``(start, end)`` of a filter_daterange node, validated."""
    a = node.args
    start = parse_date(a["from"]) if a.get("from") else None
    end = parse_date(a["to"], end=True) if a.get("to") else None
    if start and end and start > end:
        raise ProcessGraphError(
            f"{node.path}.args: 'from' ({a['from']}) is after 'to' ({a['to']})",
            path=f"{node.path}.args.from",
        )
    return start, end


def _daterange_meta(ctx, node):
    child = ctx.meta(node.args[IMAGERY])
    start, end = daterange_of(node)
    t0, t1 = child.product.time_range
    start, end = start or t0, end or t1
    if child.time_range:
        start, end = max(start, child.time_range[0]), min(end, child.time_range[1])
    return child.but(time_range=(start, end))


@translation(
    "filter_daterange",
    "Temporal filter",
    "Keeps the acquisitions whose datetime lies in [from, to], both inclusive; a date "
    "without time in `to` covers that whole day. Either bound may be omitted.",
    [
        _IMAGERY,
        Arg("from", "date", "Start (inclusive), ISO 8601.", required=False),
        Arg("to", "date", "End (inclusive), ISO 8601.", required=False),
    ],
    meta=_daterange_meta,
)
def filter_daterange(ctx, node, data):
    """1.x ``filter_temporal``: the inclusive end becomes the excluded instant after it."""
    start, end = daterange_of(node)
    if start is None and end is None:
        return data
    return v1_node("filter_temporal", node.path, REGISTRY, data=data, extent=[
        start.isoformat() if start else None,
        (end + timedelta(microseconds=1)).isoformat() if end else None])


def resolve_bands(node, available: tuple[str, ...], product) -> tuple[str, ...]:
    """Band labels selected by a filter_bands node.

    An integer ``n`` is the n-th band of the *product* in catalog order, 1-based like GDAL
    band numbers (for Sentinel-2: B01, B02, …, B08, B8A, B09, …, so 8 is B08).
    """
    value = node.args["bands"]
    path = f"{node.path}.args.bands"
    if isinstance(value, int):
        ids = product.band_ids()
        if value > len(ids):
            raise BandNotFound(
                f"{path}: band index {value} out of range, {product.id} has {len(ids)} bands "
                f"(1-based: {', '.join(f'{i + 1}={b}' for i, b in enumerate(ids))})",
                path=path,
            )
        value = [ids[value - 1]]
    elif isinstance(value, str):
        value = [value]
    missing = [b for b in value if b not in available]
    if missing:
        raise BandNotFound(
            f"{path}: unknown band(s) {missing}; available: {', '.join(available)}", path=path
        )
    return tuple(value)


def _bands_meta(ctx, node):
    child = ctx.meta(node.args[IMAGERY])
    bands = resolve_bands(node, child.bands, child.product)
    return child.but(bands=bands, source_bands=bands)


@translation(
    "filter_bands",
    "Band filter",
    "Keeps the given bands, in the given order. `bands` is one band id ('B04'), a list of "
    "band ids, or an integer n: the n-th band of the product in catalog order, 1-based like "
    "GDAL band numbers (for Sentinel-2 the order is B01, B02, …, B08, B8A, B09, …, B12, so "
    "8 means B08).",
    [_IMAGERY, Arg("bands", "bands", "Band id, list of band ids, or 1-based band index.")],
    meta=_bands_meta,
)
def filter_bands(ctx, node, data):
    """1.x ``filter_bands`` with the band ids (an index resolved to its id)."""
    return v1_node("filter_bands", node.path, REGISTRY, data=data, bands=list(ctx.meta(node).bands))
