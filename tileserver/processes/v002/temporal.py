"""Reductions over the time axis, written as the 1.x ``reduce_dimension`` over ``t`` with
the matching reducer (``min_time`` is ``reduce_dimension(t, min)``). A pixel with no valid
observation stays nodata; ``count_time`` is 0 there."""

from __future__ import annotations

from tileserver.graph.nodes import IMAGERY
from tileserver.graph.v1 import reducer_callback, v1_node
from tileserver.processes.registry import REGISTRY
from tileserver.processes.v002.table import Arg, translation


def _reduced_meta(kind=None):
    def meta(ctx, node):
        child = ctx.meta(node.args[IMAGERY])
        return child.but(reduced=True, kind=kind or child.kind)

    return meta


def _reducer(process_id, summary, description, reducer, kind=None):
    @translation(
        process_id,
        summary,
        description,
        [Arg(IMAGERY, "imagery", "The input cube with a time axis.")],
        meta=_reduced_meta(kind),
    )
    def translate(ctx, node, data):
        return v1_node("reduce_dimension", node.path, REGISTRY, data=data, dimension="t",
                       reducer=reducer_callback(reducer, f"{node.path}.reducer", REGISTRY))

    return translate


min_time = _reducer(
    "min_time", "Minimum over time",
    "Per pixel and band, the smallest valid value over all dates; nodata if none is valid.",
    "min")  # fmt: skip
max_time = _reducer(
    "max_time", "Maximum over time",
    "Per pixel and band, the largest valid value over all dates; nodata if none is valid.",
    "max")  # fmt: skip
mean_time = _reducer(
    "mean_time", "Mean over time",
    "Per pixel and band, the mean of the valid values over all dates; nodata if none is "
    "valid.", "mean")  # fmt: skip
median_time = _reducer(
    "median_time", "Median over time",
    "Per pixel and band, the median of the valid values over all dates; nodata if none is "
    "valid.", "median")  # fmt: skip
count_time = _reducer(
    "count_time", "Number of valid observations",
    "Per pixel and band, how many dates have a valid (not nodata) value; 0 where none has "
    "(a count is never nodata).", "count", kind="count")  # fmt: skip
