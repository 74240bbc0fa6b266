"""Temporal aggregation: ``aggregate_temporal_period``, ``aggregate_temporal``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from tileserver.errors import LimitExceeded
from tileserver.graph.nodes import Node
from tileserver.params import parse_iso_date as parse_date
from tileserver.processes.callbacks import run_callback
from tileserver.processes.cube.apply import callback_kind
from tileserver.processes.cube.common import (
    CONTEXT_PARAM,
    DATA_PARAM,
    as_float32,
    context_value,
    invalid_argument,
    labeled,
    labels_of,
    temporal_extent,
)
from tileserver.processes.cube.filter import over_time
from tileserver.processes.registry import Param, process


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
        raise invalid_argument(node, "period", f"expected one of {', '.join(PERIODS)}")
    child = over_time(ctx, node, "the data has no temporal dimension (it was reduced)")
    return child.but(kind=callback_kind(node.args["reducer"], child.kind))


@process("aggregate_temporal_period", [
    DATA_PARAM, Param("period"), Param("reducer", "callback",
                                       callback_params=("data", "context")),
    Param("dimension", required=False), CONTEXT_PARAM], meta=_period_meta)
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
    context = context_value(node.args.get("context"))
    for k, start in enumerate(starts):
        rows = groups.get(start)
        if rows is None:
            continue  # a period without data: nodata
        value = run_callback(node.args["reducer"], {
            "data": labeled(cube.data[rows], tuple(labels_of(cube, "t")[i] for i in rows)),
            "context": context})
        out[k] = as_float32(value, cube.data.shape[1:], node)
    return cube.with_data(out, times=tuple(starts), kind=ctx.meta(node).kind)


def _intervals(node: Node) -> tuple[list[tuple[datetime, datetime]], list[datetime]]:
    """``(intervals, labels)`` of ``aggregate_temporal``: inclusive ``(start, end)`` per
    interval, and a date label per interval (its start unless ``labels`` names them)."""
    value = node.args.get("intervals")
    if not isinstance(value, list) or not value:
        raise invalid_argument(node, "intervals", "expected a non-empty list of [start, end] "
                               "intervals")
    intervals = [temporal_extent(node, "intervals", v) for v in value]
    labels = node.args.get("labels")
    if labels in (None, []):
        if any(v[0] is None for v in value):
            raise invalid_argument(node, "labels", "an interval with an open start needs labels")
        return intervals, [t0 for t0, _ in intervals]
    if not isinstance(labels, list) or len(labels) != len(intervals):
        raise invalid_argument(
            node, "labels", f"expected {len(intervals)} labels, one per interval")
    try:
        dates = [parse_date(v) for v in labels]
    except (ValueError, AttributeError, TypeError):
        raise invalid_argument(node, "labels", "the labels of the temporal dimension must be "
                               "ISO 8601 dates here") from None
    if len(set(dates)) != len(dates):
        raise invalid_argument(node, "labels", "the labels must be distinct",
                               "DistinctDimensionLabelsRequired")
    return intervals, dates


def _aggregate_temporal_meta(ctx, node):
    child = over_time(ctx, node, "the data has no temporal dimension (it was reduced)")
    intervals, _dates = _intervals(node)
    lo, hi = min(t0 for t0, _ in intervals), max(t1 for _, t1 in intervals)
    if child.time_range:
        lo, hi = max(lo, child.time_range[0]), min(hi, child.time_range[1])
    return child.but(time_range=(lo, hi) if lo <= hi else child.time_range,
                     kind=callback_kind(node.args["reducer"], child.kind))


@process("aggregate_temporal", [
    DATA_PARAM, Param("intervals"), Param("reducer", "callback",
                                          callback_params=("data", "context")),
    Param("labels", required=False), Param("dimension", required=False), CONTEXT_PARAM],
    meta=_aggregate_temporal_meta)
def aggregate_temporal(ctx, node, query):
    """One time step per interval (``[start, end)``; intervals may overlap), the dates
    inside it reduced by ``reducer``; an interval without data is nodata."""
    intervals, labels = _intervals(node)
    lo, hi = min(t0 for t0, _ in intervals), max(t1 for _, t1 in intervals)
    cube = ctx.eval(node.args["data"], query.narrow_time(lo, hi) if lo <= hi else query)
    times = cube.times or ()
    out = np.full((len(intervals),) + cube.data.shape[1:], np.nan, np.float32)
    context = context_value(node.args.get("context"))
    for k, (t0, t1) in enumerate(intervals):
        rows = [i for i, t in enumerate(times) if t0 <= t <= t1]
        if not rows:
            continue
        value = run_callback(node.args["reducer"], {
            "data": labeled(cube.data[rows], tuple(labels_of(cube, "t")[i] for i in rows)),
            "context": context})
        out[k] = as_float32(value, cube.data.shape[1:], node)
    return cube.with_data(out, times=tuple(labels), kind=ctx.meta(node).kind)
