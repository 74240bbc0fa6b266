"""Running 1.x callbacks (``reducer``, ``process``…) on whole arrays at once.

A callback is evaluated once per request, vectorised: the parameter ``data`` of a reducer
is the whole ``(n, …)`` array of the window with the reduced dimension first (a
:class:`~tileserver.processes.array.common.LabeledArray` carrying the labels), ``x`` of
``apply`` is the whole cube; the array processes reduce along axis 0 and broadcast
elementwise, so a callback costs a few numpy calls, never a Python call per pixel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tileserver.errors import ProcessArgumentInvalid, ProcessGraphError, TileserverError
from tileserver.graph.nodes import Callback, Node, ParamRef
from tileserver.processes.registry import ARRAY_PROCESSES


def _stack_if_arrays(values: list) -> Any:
    """A literal list holding arrays (``[x, y]`` of two bands) becomes one stacked array."""
    if not any(isinstance(v, np.ndarray) for v in values):
        return values
    parts = np.broadcast_arrays(*[np.asarray(v, dtype=np.float32) for v in values])
    return np.stack(parts)


class ChildProcess:
    """A callback passed to an array process (``array_apply``'s ``process``, ``count``'s
    ``condition``): called with its parameters as keywords; ``reads`` names the parameters
    it uses, so that a process can skip computing the others (``index``, ``label``)."""

    def __init__(self, callback: Callback):
        self.callback = callback
        self.reads = params_read(callback)

    def __call__(self, **bindings: Any) -> Any:
        """The callback's value for these parameter values."""
        return run_callback(self.callback, bindings)


def params_read(callback: Callback) -> frozenset[str]:
    """The names of the parameters a callback reads (not those of callbacks nested in it)."""
    names: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, ParamRef):
            names.add(value.name)
        elif isinstance(value, list):
            for v in value:
                visit(v)
        elif isinstance(value, dict):
            for v in value.values():
                visit(v)

    visit(callback.root)
    for node in callback.nodes():
        for v in node.args.values():
            visit(v)
    return frozenset(names)


def run_callback(callback: Callback, bindings: dict[str, Any]) -> Any:
    """The value of a callback for its parameters ``bindings``."""
    procs = ARRAY_PROCESSES
    memo: dict[int, Any] = {}

    def ev(value: Any) -> Any:
        if isinstance(value, Node):
            key = id(value)
            if key not in memo:
                proc = procs.get(value.process_id)
                if proc is None:
                    raise ProcessGraphError(
                        f"node '{value.path}': {value.process_id} works on data cubes and "
                        "cannot run inside a callback", path=value.path)
                kwargs = {k: ev(v) for k, v in value.args.items()}
                try:
                    memo[key] = proc.fn(**kwargs)
                except TileserverError:
                    raise
                except (ValueError, TypeError, IndexError, KeyError) as exc:
                    raise ProcessArgumentInvalid(
                        f"node '{value.path}' ({value.process_id}): {exc}",
                        path=value.path) from None
            return memo[key]
        if isinstance(value, ParamRef):
            return bindings.get(value.name)
        if isinstance(value, Callback):
            return ChildProcess(value)
        if isinstance(value, list):
            return _stack_if_arrays([ev(v) for v in value])
        if isinstance(value, dict):
            return {k: ev(v) for k, v in value.items()}
        return value

    return ev(callback.root)


def labels_used(callback: Callback, param: str = "data") -> tuple[Any, ...] | None:
    """The labels/indexes of ``param`` that the callback reads, when it reads it only
    through ``array_element`` with literal labels or indexes (``None``: it may read all).

    This is what lets ``reduce_dimension(bands, (nir - red) / (nir + red))`` read two bands.
    """
    used: list[Any] = []

    def refers(value: Any) -> bool:
        if isinstance(value, ParamRef):
            return value.name == param
        if isinstance(value, list):
            return any(refers(v) for v in value)
        if isinstance(value, dict):
            return any(refers(v) for v in value.values())
        return False

    if isinstance(callback.root, ParamRef):
        return None
    for node in callback.nodes():
        for name, value in node.args.items():
            if not refers(value):
                continue
            if node.process_id != "array_element" or name != "data" or not isinstance(
                    value, ParamRef):
                return None
            label, index = node.args.get("label"), node.args.get("index")
            if isinstance(label, str | int) and not isinstance(label, bool):
                used.append(("label", label))
            elif isinstance(index, int) and not isinstance(index, bool):
                used.append(("index", index))
            else:
                return None
    return tuple(used)


def root_process(callback: Callback) -> str | None:
    """The process id of the callback's result node (``None`` for a parameter or literal)."""
    return callback.root.process_id if isinstance(callback.root, Node) else None
