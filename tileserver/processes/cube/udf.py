"""openEO 1.x ``run_udf``: the official client's UDFs (``openeo.UDF(code)``) inside
``apply``, ``apply_dimension`` and ``reduce_dimension``, run by the client's own UDF library
(``openeo.udf.run_code.run_udf_code``) in the UDF sandbox.

A callback whose result is ``run_udf(data=<the callback's data parameter>, udf=<code>,
runtime="Python")`` hands the whole window to the sandbox as one
``openeo.udf.XarrayDataCube`` with dimensions ``t``, ``bands``, ``y``, ``x`` (what the
client's ``apply_datacube(cube, context)`` / ``apply_timeseries(series, context)``
signatures expect), once per window: the cube process does not run the callback itself.
The result must keep ``y`` and ``x``; ``reduce_dimension`` drops the reduced dimension,
``apply``/``apply_dimension`` keep the shape. ``run_udf`` anywhere else in a callback is a
400. The code is part of the graph, so the node cache keys already cover it.

This module wraps the ``evaluate`` of those three registered cube processes (it leaves
their other callbacks alone) and registers ``run_udf`` among the callback processes so that
graphs naming it validate.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from tileserver.datacube.cube import Cube
from tileserver.datacube.view import View
from tileserver.errors import ProcessArgumentInvalid, UdfError, UdfUnavailable
from tileserver.graph.nodes import Callback, Node, ParamRef
from tileserver.processes.callbacks import run_callback
from tileserver.processes.registry import ARRAY, REGISTRY, Param, process
from tileserver.udf import Script

RUNTIME = "Python"


def _not_here(**_: Any) -> Any:
    raise ProcessArgumentInvalid(
        "run_udf runs only as the whole callback of apply, apply_dimension or "
        "reduce_dimension, with data = the callback's parameter (openeo.UDF(code) in the "
        "official client)")


process("run_udf", ["data", "udf", "runtime", ("version", None), ("context", {})],
        kind=ARRAY)(_not_here)


def udf_call(cb: Any) -> Node | None:
    """The ``run_udf`` node when it is the whole callback applied to its data parameter."""
    if not isinstance(cb, Callback) or not isinstance(cb.root, Node):
        return None
    root = cb.root
    if root.process_id != "run_udf":
        return None
    data = root.args.get("data")
    if not isinstance(data, ParamRef) or data.name not in ("data", "x"):
        raise ProcessArgumentInvalid(
            f"node '{root.path}': run_udf must receive the callback's data parameter "
            "(the whole cube), not another value", path=root.path)
    return root


def _script(udf: Node) -> Script:
    code, runtime = udf.args.get("udf"), udf.args.get("runtime")
    where = f"node '{udf.path}'"
    if not isinstance(runtime, str) or runtime.lower() != RUNTIME.lower():
        raise ProcessArgumentInvalid(f"{where}: runtime {runtime!r} is not available; use "
                                     f"{RUNTIME!r} (GET /udf_runtimes)", path=udf.path)
    if not isinstance(code, str) or not code.strip():
        raise ProcessArgumentInvalid(f"{where}: udf must be the Python code as a string",
                                     path=udf.path)
    if code.strip().startswith(("http://", "https://", "/")) and "\n" not in code.strip():
        raise ProcessArgumentInvalid(f"{where}: give the UDF's code inline (URLs and file "
                                     "paths are not fetched)", path=udf.path)
    return Script(code, f"run_udf ({where})")


def shape_of(meta, cube: Cube) -> dict[str, bool]:
    """Which dimensions the UDF's ``XarrayDataCube`` has besides ``y`` and ``x``: no ``t``
    once time is reduced, no ``bands`` once a process dropped them (``ndvi``, a band
    reducer), as the openEO data cube of the graph has them."""
    return {"reduced": cube.times is None, "bands_dim": bool(meta.has_bands)}


def _wrap(process_id: str, callback_arg: str, mode: str) -> None:
    proc = REGISTRY[process_id]
    original = proc.fn

    def evaluate(ctx, node, query):
        udf = udf_call(node.args.get(callback_arg))
        if udf is None:
            return original(ctx, node, query)
        script = _script(udf)
        runner = getattr(ctx.engine, "udf", None)
        if runner is None:
            raise UdfUnavailable("UDFs cannot run here (no UDF sandbox in this process)")
        user = (getattr(ctx, "context", None) or {}).get("user_id")
        meta = ctx.meta(node)
        dim = None
        if mode != "apply":
            dim = node.args.get("dimension")
            dim = {"time": "t", "t": "t", "bands": "bands", "spectral": "bands"}.get(
                str(dim).lower(), str(dim))
        cube = ctx.eval(node.args["data"], query)
        context = udf.args.get("context")
        if not isinstance(context, dict | type(None)):
            context = {"value": context}
        out = runner.apply(user, script, f"openeo:{mode}", cube, kind=meta.kind,
                           extra={"context": context or {}, "dimension": dim,
                                  **shape_of(ctx.meta(node.args["data"]), cube)})
        t, b = cube.data.shape[:2]
        expected = {"apply": (t, b), "apply_dimension": (t, b),
                    "reduce_dimension": (1, b) if dim == "t" else (t, 1)}[mode]
        if out.data.shape[:2] != expected:
            raise UdfError(f"UDF {script.label}: the result has {out.data.shape[0]} dates x "
                           f"{out.data.shape[1]} bands, {process_id} expects {expected[0]} x "
                           f"{expected[1]}")
        if mode == "reduce_dimension" and dim == "t":
            return out.with_data(out.data, times=None, bands=cube.bands, kind=meta.kind)
        if mode == "reduce_dimension":
            return out.with_data(out.data, times=cube.times, bands=meta.bands, kind=meta.kind)
        return out.with_data(out.data, times=cube.times, bands=cube.bands, kind=meta.kind)

    proc.fn = evaluate


_wrap("apply", "process", "apply")
_wrap("apply_dimension", "process", "apply_dimension")
_wrap("reduce_dimension", "reducer", "reduce_dimension")


# -- apply_neighborhood ------------------------------------------------------------------

#: The largest chunk side (size + 2 x overlap) of ``apply_neighborhood``, in pixels.
MAX_NEIGHBORHOOD = 2048


def _extent_px(node: Node, name: str, required: bool) -> dict[str, int]:
    """``{"x": n, "y": n}`` of a ``size``/``overlap`` list (pixels; ``t`` may be null:
    the whole time series)."""
    value = node.args.get(name)
    if value is None and not required:
        return {"x": 0, "y": 0}
    where = f"node '{node.path}': argument {name!r} of apply_neighborhood"
    out: dict[str, int] = {}
    if not isinstance(value, list):
        raise ProcessArgumentInvalid(f"{where}: expected a list of {{dimension, value, unit}}",
                                     path=node.arg_path(name))
    for entry in value:
        dim = entry.get("dimension") if isinstance(entry, dict) else None
        if dim in ("t", "bands") and entry.get("value") in (None, "P0D") or (
                dim in ("t", "bands") and name == "overlap" and not entry.get("value")):
            continue  # the whole dimension
        if dim not in ("x", "y"):
            raise ProcessArgumentInvalid(
                f"{where}: only x and y can be cut into neighbourhoods (t and bands are "
                f"passed whole, value null); got {entry!r}"[:300], path=node.arg_path(name))
        n, unit = entry.get("value"), entry.get("unit", "px")
        if unit != "px" or isinstance(n, bool) or not isinstance(n, int) or n < (
                1 if name == "size" else 0):
            raise ProcessArgumentInvalid(f"{where}: {dim} must be a whole number of pixels "
                                         "(unit 'px')", path=node.arg_path(name))
        out[dim] = n
    if required and set(out) != {"x", "y"}:
        raise ProcessArgumentInvalid(f"{where}: both x and y sizes are required",
                                     path=node.arg_path(name))
    return {"x": out.get("x", 0), "y": out.get("y", 0)}


def _neighborhood_meta(ctx, node):
    size, overlap = _extent_px(node, "size", True), _extent_px(node, "overlap", False)
    if any(size[d] + 2 * overlap[d] > MAX_NEIGHBORHOOD for d in "xy"):
        raise ProcessArgumentInvalid(
            f"node '{node.path}': a neighbourhood (size + 2 x overlap) is at most "
            f"{MAX_NEIGHBORHOOD} pixels a side", path=node.arg_path("size"))
    udf = udf_call(node.args.get("process"))
    if udf is not None:
        _script(udf)
    return ctx.meta(node.args["data"])


def apply_neighborhood(ctx, node, query):
    """The child process on each neighbourhood: the view grown by ``overlap`` is cut into
    chunks of ``size`` + 2 x ``overlap`` pixels (laid out from the top left of the view being
    computed: the native grid for /result and batch jobs, a tile's own grid for tiles),
    the child process (a UDF with ``openeo.UDF``, or array processes on the chunk) runs on
    each chunk with every date and band, and the overlap is cut off its result."""
    size, overlap = _extent_px(node, "size", True), _extent_px(node, "overlap", False)
    ox, oy = overlap["x"], overlap["y"]
    view = query.view
    rx, ry = view.res
    left, bottom, right, top = view.bounds
    grown = View(view.crs, (left - ox * rx, bottom - oy * ry, right + ox * rx, top + oy * ry),
                 view.width + 2 * ox, view.height + 2 * oy)
    cube = ctx.eval(node.args["data"], replace(query, view=grown))
    meta = ctx.meta(node)
    callback = node.args["process"]
    udf = udf_call(callback)
    runner = getattr(ctx.engine, "udf", None)
    if udf is not None and runner is None:
        raise UdfUnavailable("UDFs cannot run here (no UDF sandbox in this process)")
    user = (getattr(ctx, "context", None) or {}).get("user_id")
    context = udf.args.get("context") if udf is not None else node.args.get("context")
    context = context if not isinstance(context, Node) else None
    out = np.full(cube.data.shape[:2] + (view.height, view.width), np.nan, np.float32)
    for r0 in range(0, view.height, size["y"]):
        for c0 in range(0, view.width, size["x"]):
            h, w = min(size["y"], view.height - r0), min(size["x"], view.width - c0)
            rows, cols = slice(r0, r0 + h + 2 * oy), slice(c0, c0 + w + 2 * ox)
            cl, ct = grown.bounds[0] + c0 * rx, grown.bounds[3] - r0 * ry
            chunk_view = View(view.crs, (cl, ct - (h + 2 * oy) * ry, cl + (w + 2 * ox) * rx,
                                         ct), w + 2 * ox, h + 2 * oy)
            chunk = Cube(np.ascontiguousarray(cube.data[:, :, rows, cols]), cube.times,
                         cube.bands, chunk_view, cube.kind)
            if udf is not None:
                done = runner.apply(user, _script(udf), "openeo:apply", chunk, kind=meta.kind,
                                    extra={"context": context if isinstance(
                                        context, dict) else {"value": context} if context
                                        is not None else {}, "dimension": None,
                                        **shape_of(ctx.meta(node.args["data"]), chunk)})
                values = done.data
            else:
                values = np.asarray(run_callback(callback, {"data": chunk.data,
                                                            "context": context}))
            if values.shape != chunk.data.shape:
                raise UdfError(f"node '{node.path}': the child process of apply_neighborhood "
                               f"returned shape {values.shape} for a chunk of shape "
                               f"{chunk.data.shape} (dates, bands, y, x); it must keep them")
            out[:, :, r0:r0 + h, c0:c0 + w] = values[:, :, oy:oy + h, ox:ox + w]
    return Cube(out, cube.times, cube.bands, view, meta.kind)


process("apply_neighborhood", [
    Param("data", "cube"),
    Param("process", "callback", callback_params=("data", "context")),
    Param("size"), Param("overlap", required=False),
    Param("context", required=False)], meta=_neighborhood_meta)(apply_neighborhood)
