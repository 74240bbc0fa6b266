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

from typing import Any

from tileserver.core.graph import Callback, Node, ParamRef
from tileserver.core.processes.arraylib import ARRAY_PROCESSES, ArrayProcess, Param
from tileserver.core.processes.base import V1_REGISTRY
from tileserver.core.udf import Script
from tileserver.errors import ProcessArgumentInvalid, UdfError, UdfUnavailable

RUNTIME = "Python"


def _not_here(**_: Any) -> Any:
    raise ProcessArgumentInvalid(
        "run_udf runs only as the whole callback of apply, apply_dimension or "
        "reduce_dimension, with data = the callback's parameter (openeo.UDF(code) in the "
        "official client)")


ARRAY_PROCESSES.setdefault("run_udf", ArrayProcess("run_udf", (
    Param("data", True), Param("udf", True), Param("runtime", True),
    Param("version", False), Param("context", False, {})), _not_here))


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


def _wrap(process_id: str, callback_arg: str, mode: str) -> None:
    proc = V1_REGISTRY[process_id]
    original = proc.evaluate

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
                           extra={"context": context or {}, "dimension": dim})
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

    proc.evaluate = evaluate


_wrap("apply", "process", "apply")
_wrap("apply_dimension", "process", "apply_dimension")
_wrap("reduce_dimension", "reducer", "reduce_dimension")
