"""Reductions over the time axis. A pixel with no valid observation stays nodata."""

from __future__ import annotations

import numpy as np

from tileserver.core.graph import IMAGERY
from tileserver.core.processes.base import Param, register


def _reduced_meta(kind=None):
    def meta(ctx, node):
        child = ctx.meta(node.args[IMAGERY])
        return child.but(reduced=True, kind=kind or child.kind)

    return meta


def _valid(data):
    return np.isfinite(data)


def _min(data):
    return np.fmin.reduce(data, axis=0) if data.shape[0] else None


def _max(data):
    return np.fmax.reduce(data, axis=0) if data.shape[0] else None


def _mean(data):
    valid = _valid(data)
    count = valid.sum(axis=0)
    total = np.where(valid, data, 0).sum(axis=0, dtype=np.float64)
    out = np.full(count.shape, np.nan, dtype=np.float32)
    np.divide(total, count, out=out, where=count > 0, casting="unsafe")
    return out


def _median(data):
    if not data.shape[0]:
        return None
    # all-NaN pixels would make nanmedian warn; fill them, then put nodata back (no
    # warnings.catch_warnings: it is not thread-safe and evaluations run in threads)
    empty = ~_valid(data).any(axis=0)
    out = np.nanmedian(np.where(empty, np.float32(0), data), axis=0).astype(np.float32)
    out[empty] = np.nan
    return out


def _count(data):
    return _valid(data).sum(axis=0).astype(np.float32)


def _reducer(process_id, summary, description, fn, kind=None):
    @register(
        process_id,
        summary,
        description,
        [Param(IMAGERY, "imagery", "The input cube with a time axis.")],
        meta=_reduced_meta(kind),
    )
    def evaluate(ctx, node, query):
        cube = ctx.eval(node.args[IMAGERY], query)
        out = fn(cube.data)
        if out is None:  # no acquisition at all
            fill = 0.0 if kind == "count" else np.nan
            out = np.full(cube.data.shape[1:], fill, dtype=np.float32)
        return cube.with_data(
            out.astype(np.float32, copy=False)[None], times=None, kind=kind or cube.kind
        )

    return evaluate


min_time = _reducer(
    "min_time", "Minimum over time",
    "Per pixel and band, the smallest valid value over all dates; nodata if none is valid.",
    _min)  # fmt: skip
max_time = _reducer(
    "max_time", "Maximum over time",
    "Per pixel and band, the largest valid value over all dates; nodata if none is valid.",
    _max)  # fmt: skip
mean_time = _reducer(
    "mean_time", "Mean over time",
    "Per pixel and band, the mean of the valid values over all dates; nodata if none is "
    "valid.", _mean)  # fmt: skip
median_time = _reducer(
    "median_time", "Median over time",
    "Per pixel and band, the median of the valid values over all dates; nodata if none is "
    "valid.", _median)  # fmt: skip
count_time = _reducer(
    "count_time", "Number of valid observations",
    "Per pixel and band, how many dates have a valid (not nodata) value; 0 where none has "
    "(a count is never nodata).", _count, kind="count")  # fmt: skip
