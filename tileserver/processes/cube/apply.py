"""Processes that run a callback or a kernel over a cube: ``reduce_dimension``, ``apply``,
``apply_dimension`` (callbacks run vectorised through :mod:`tileserver.processes.callbacks`)
and ``apply_kernel``."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from rasterio.features import geometry_mask
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping

from tileserver.datacube.cube import Cube
from tileserver.datacube.query import CubeMeta
from tileserver.datacube.view import View
from tileserver.errors import ProcessArgumentInvalid
from tileserver.graph.nodes import Callback, Node
from tileserver.processes.callbacks import labels_used, root_process, run_callback
from tileserver.processes.cube.common import (
    CONTEXT_PARAM,
    DATA_PARAM,
    TIME_DIMS,
    WGS84,
    as_float32,
    context_value,
    dimension_argument,
    invalid_argument,
    labeled,
    labels_of,
)
from tileserver.processes.registry import Param, process


def callback_kind(cb: Callback, child_kind: str) -> str:
    """The ``kind`` of a callback's result (a count, an index in [-1, 1]…), for styles."""
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
    dim = dimension_argument(node, child)
    kind = callback_kind(node.args["reducer"], child.kind)
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


@process("reduce_dimension", [DATA_PARAM, Param("reducer", "callback",
                                                callback_params=("data", "context")),
                              Param("dimension"), CONTEXT_PARAM], meta=_reduce_meta)
def reduce_dimension(ctx, node, query):
    """Run the reducer once on the whole window, the reduced dimension first."""
    meta = ctx.meta(node)
    child_meta = ctx.meta(node.args["data"])
    dim = dimension_argument(node, child_meta)
    cb = node.args["reducer"]
    context = context_value(node.args.get("context"))
    if dim == "t":
        cube = ctx.eval(node.args["data"], query)
        if cube.data.shape[0] == 0:
            cube = _empty_time(cube)
        out = run_callback(cb, {"data": labeled(cube.data, labels_of(cube, "t")),
                                "context": context})
        data = as_float32(out, cube.data.shape[1:], node)[None]
        return cube.with_data(np.ascontiguousarray(data), times=None, kind=meta.kind)
    needed = _needed_bands(cb, child_meta)
    cube = ctx.eval(node.args["data"], query.with_bands(needed) if needed else query)
    values, labels = np.moveaxis(cube.data, 1, 0), labels_of(cube, "bands")
    if needed and cube.bands != child_meta.bands:
        # only the bands the reducer reads were read: put them at their positions among
        # all the bands, so that array_element(index=…) finds them (the others stay nodata
        # and are never read)
        full = np.full((len(child_meta.bands),) + values.shape[1:], np.nan, np.float32)
        for i, band in enumerate(child_meta.bands):
            if band in cube.bands:
                full[i] = values[cube.bands.index(band)]
        values, labels = full, tuple(child_meta.bands)
    out = run_callback(cb, {"data": labeled(values, labels), "context": context})
    shape = (cube.data.shape[0],) + cube.data.shape[2:]
    data = as_float32(out, shape, node)[:, None]
    return cube.with_data(np.ascontiguousarray(data), bands=meta.bands, kind=meta.kind)


def _apply_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    return child.but(kind=callback_kind(node.args["process"], child.kind))


@process("apply", [DATA_PARAM, Param("process", "callback", callback_params=("x", "context")),
                   CONTEXT_PARAM], meta=_apply_meta)
def apply(ctx, node, query):
    """Run the process on every value at once (elementwise processes broadcast)."""
    cube = ctx.eval(node.args["data"], query)
    out = run_callback(node.args["process"], {"x": cube.data,
                                              "context": context_value(node.args.get("context"))})
    data = as_float32(out, cube.data.shape, node)
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
        raise invalid_argument(node, "target_dimension", "the temporal dimension's labels are "
                               "dates, which values computed along another dimension do not have")
    if not isinstance(target, str) or not target or target in ("x", "y"):
        raise invalid_argument(node, "target_dimension", "expected the name of a new dimension, "
                               "of the band dimension, or null")
    if dim == "bands" or not meta.has_bands:
        return "bands", target
    if target != meta.band_dim:
        raise invalid_argument(node, "target_dimension", f"cannot create the dimension {target!r} "
                               f"beside {meta.band_dim!r}: the data cubes of this back-end have x, "
                               "y, t and one more dimension; use "
                               f"{meta.band_dim!r} as the target, or reduce it first")
    if len(meta.bands) != 1:
        raise invalid_argument(node, "target_dimension", f"the values along t become the "
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
    out = run_callback(node.args["process"], {"data": labeled(values, labels),
                                              "context": context_value(node.args.get("context"))})
    out = np.asarray(getattr(out, "values", out) if not isinstance(out, np.ndarray) else out)
    return 1 if out.ndim < values.ndim else int(out.shape[0])  # a reducer: one value


def _made_up_dates(n: int) -> tuple[str, ...]:
    return tuple(f"2000-01-{d:02d}T00:00:00Z" for d in range(1, n + 1))


def _apply_dim_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    dim = dimension_argument(node, child)
    axis, name = _target_dimension(node, child, dim)
    kind = callback_kind(node.args["process"], child.kind)
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
        raise invalid_argument(node, "process", "the number of values it computes along t must be "
                               "known from the graph (it is found by running the process on "
                               "made-up dates, and a process that reads given dates by label "
                               f"cannot run there): {exc.message}") from None
    if counts[3] != counts[5]:
        raise invalid_argument(node, "process", f"it computes {counts[3]} values for 3 dates and "
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
        raise invalid_argument(node, "process", f"it computed {got} values along {along} where "
                               f"{n} were expected (the number of values must not depend on the "
                               "data)")
    return as_float32(arr, (n, *shape), node)


@process("apply_dimension", [DATA_PARAM, Param("process", "callback",
                                               callback_params=("data", "context")),
                             Param("dimension"),
                             Param("target_dimension", required=False), CONTEXT_PARAM],
         meta=_apply_dim_meta)
def apply_dimension(ctx, node, query):
    """Run the process once on the whole window, the arrays along ``t`` or ``bands`` on
    axis 0. Along ``t`` it returns one value per date (the labels are dates), or any fixed
    number of values that become the bands (``target_dimension: "bands"``); along
    ``bands`` any fixed number of values (labels 0, 1, … when it changes)."""
    child_meta, meta = ctx.meta(node.args["data"]), ctx.meta(node)
    dim = dimension_argument(node, child_meta)
    context = context_value(node.args.get("context"))
    if dim == "t" and not meta.reduced:
        cube = ctx.eval(node.args["data"], query)
        out = run_callback(node.args["process"], {"data": labeled(cube.data, labels_of(
            cube, "t")), "context": context})
        data = _computed(node, out, cube.data.shape[0], cube.data.shape[1:], "t")
        return cube.with_data(np.ascontiguousarray(data), kind=meta.kind)
    cube = ctx.eval(node.args["data"], query.with_bands(None))
    if dim == "t":  # the values along t become the bands
        if cube.data.shape[0] == 0:
            cube = _empty_time(cube)
        out = run_callback(node.args["process"], {"data": labeled(cube.data[:, 0], labels_of(
            cube, "t")), "context": context})
        data = _computed(node, out, len(meta.bands), cube.data.shape[2:], "t")
        return cube.with_data(np.ascontiguousarray(data[None]), times=None, bands=meta.bands,
                              kind=meta.kind)
    values = np.moveaxis(cube.data, 1, 0)
    out = run_callback(node.args["process"], {"data": labeled(values, labels_of(cube, "bands")),
                                              "context": context})
    data = _computed(node, out, len(meta.bands), values.shape[1:], "bands")
    return cube.with_data(np.ascontiguousarray(np.moveaxis(data, 0, 1)), bands=meta.bands,
                          kind=meta.kind)


#: The largest kernel side ``apply_kernel`` takes (pixels).
MAX_KERNEL = 101


def _kernel(node: Node) -> np.ndarray:
    value = node.args.get("kernel")
    if not isinstance(value, list) or not value or not all(
            isinstance(row, list) and row and len(row) == len(value[0]) and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in row) for row in value):
        raise invalid_argument(node, "kernel", "expected a rectangular 2-D array of numbers")
    kernel = np.asarray(value, dtype=np.float64)
    if kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise invalid_argument(
            node, "kernel", f"the kernel is {kernel.shape[0]} x {kernel.shape[1]}; "
            "each dimension must be odd", "KernelDimensionsUneven")
    if max(kernel.shape) > MAX_KERNEL:
        raise invalid_argument(node, "kernel", f"at most {MAX_KERNEL} x {MAX_KERNEL} values")
    return kernel


def _number(node: Node, name: str, default: float) -> float:
    value = node.args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value):
        raise invalid_argument(node, name, f"expected a finite number, got {value!r}")
    return float(value)


def _kernel_meta(ctx, node):
    _kernel(node)
    _number(node, "factor", 1)
    _number(node, "replace_invalid", 0)
    if isinstance(node.args.get("border", 0), str):
        raise invalid_argument(node, "border", f"border {node.args['border']!r} is not supported; "
                               "give the number that stands for the pixels outside the data (the "
                               "default 0)")
    _number(node, "border", 0)
    return ctx.meta(node.args["data"])


def _outside_extent(view, meta: CubeMeta) -> np.ndarray:
    """Pixels of ``view`` whose centre is outside the spatial extent of the data (its
    spatial filter's bounding box, else the collection's)."""
    bounds, crs = (meta.bbox, meta.srs) if meta.bbox is not None and meta.srs is not None \
        else (meta.product.bbox, WGS84)
    outline = box(*bounds)
    outline = outline.segmentize(max(bounds[2] - bounds[0], bounds[3] - bounds[1]) / 64)
    geom = transform_geom(crs, view.crs, mapping(outline))
    return geometry_mask([geom], (view.height, view.width), view.transform)


@process("apply_kernel", [DATA_PARAM, Param("kernel"),
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
