"""Array processes that map, filter and reorder: ``array_apply``, ``array_filter``,
``sort``, ``order``, ``rearrange``, ``array_interpolate_linear``.

Two kinds of ``data`` arrive here (see :mod:`.arraylib`):

- a JSON array (a Python list, maybe labelled): the child process runs once per element,
  on Python values, exactly as the specification describes it;
- a cube slice, ``(n, y, x)`` along the dimension of ``apply_dimension``: the child process
  runs once on the whole array when it reads neither ``index`` nor ``label`` (an
  elementwise process broadcasts), else once per element along axis 0 on ``(y, x)``
  slices; never once per pixel. Sorting and filtering work along axis 0 for every pixel
  at once. When pixels keep different numbers of elements (no-data dropped by ``sort``, a
  value-dependent ``array_filter``), the kept values move to the front in their order and
  the rest is no-data: the result has as many elements as the pixel that keeps the most.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from tileserver.params import parse_iso_date
from tileserver.processes.array.lib import (
    LabeledArray,
    _float_dtype,
    _floating,
    _invalid,
    _is_number,
    _numeric,
    _py,
)
from tileserver.processes.registry import ARRAY, process


def reads(fn: Any, name: str) -> bool:
    """Whether a child process reads its parameter ``name`` (unknown callables: yes)."""
    names = getattr(fn, "reads", None)
    return True if names is None else name in names


def _split(pid: str, data) -> tuple[Any, tuple | None]:
    """``(values, labels)`` of a ``data`` argument: a list or an array with ``ndim >= 1``."""
    labels = None
    if isinstance(data, LabeledArray):
        data, labels = data.values, data.labels
    if isinstance(data, tuple):
        data = list(data)
    if isinstance(data, list) or (isinstance(data, np.ndarray) and data.ndim >= 1):
        return data, labels
    raise _invalid(pid, "data", "expected an array")


def _relabel(values, labels: tuple | None):
    return values if labels is None else LabeledArray(values, tuple(labels))


def _callable(pid: str, name: str, fn) -> None:
    if not callable(fn):
        raise _invalid(pid, name, "expected a child process ({\"process_graph\": …})")


def _is_true(v) -> bool:
    return v is True or v is np.True_


def _element_values(pid: str, fn, values, labels, context) -> list:
    """The child process's value for every element, one call per element."""
    out = []
    for i in range(len(values)):
        kwargs = {"x": _py(values[i]), "index": i, "context": context}
        kwargs["label"] = None if labels is None else labels[i]
        out.append(fn(**kwargs))
    return out


def _stack(pid: str, name: str, results: list, shape: tuple[int, ...]) -> np.ndarray:
    """Per-element results of a cube slice as one ``(n, *shape)`` array."""
    parts = []
    for r in results:
        if isinstance(r, LabeledArray):
            r = r.values
        a = np.asarray(np.nan if r is None else r)
        if a.dtype.kind not in "fiub":
            raise _invalid(pid, name, "the child process must return numbers or booleans "
                           "for the elements of a data cube")
        try:
            parts.append(np.broadcast_to(a, shape))
        except ValueError:
            raise _invalid(pid, name, f"the child process returned shape {a.shape} for "
                           f"elements of shape {shape}") from None
    if not parts:
        return np.zeros((0, *shape), dtype=np.float32)
    return np.stack(parts)


def _whole(pid: str, name: str, fn, values: np.ndarray, context) -> np.ndarray:
    """The child process run once on the whole ``(n, …)`` array."""
    out = fn(x=values, index=None, label=None, context=context)
    if isinstance(out, LabeledArray):
        out = out.values
    a = np.asarray(np.nan if out is None else out)
    if a.dtype.kind not in "fiub":
        raise _invalid(pid, name, "the child process must return numbers or booleans for "
                       "the elements of a data cube")
    try:
        return np.broadcast_to(a, values.shape)
    except ValueError:
        raise _invalid(pid, name, f"the child process returned shape {a.shape} for an array "
                       f"of shape {values.shape}") from None


def _per_element(pid: str, name: str, fn, values, labels, context) -> np.ndarray | list:
    """The child process on every element: a list for JSON arrays, an ``(n, …)`` array for
    arrays (one call in all when it reads neither ``index`` nor ``label``)."""
    if isinstance(values, list):
        return _element_values(pid, fn, values, labels, context)
    if values.ndim > 1 and not reads(fn, "index") and not reads(fn, "label"):
        return _whole(pid, name, fn, values, context)
    results = _element_values(pid, fn, values, labels, context)
    return _stack(pid, name, results, values.shape[1:])


@process("array_apply", ["data", "process", ("context", None)], kind=ARRAY)
def array_apply(data, process, context=None):
    """``process`` applied to every element (labels kept)."""
    values, labels = _split("array_apply", data)
    _callable("array_apply", "process", process)
    out = _per_element("array_apply", "process", process, values, labels, context)
    if isinstance(out, list):
        out = [_py(v.values if isinstance(v, LabeledArray) else v) for v in out]
    elif values.ndim == 1:
        out = [_py(v) for v in out]
    return _relabel(out, labels)


def _compact(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The kept elements of every pixel moved to the front (in order), no-data after them;
    as many elements as the pixel that keeps the most (each kept value goes to the row of
    its running count)."""
    keep = np.broadcast_to(keep, values.shape)
    rank = np.cumsum(keep, axis=0) - 1
    n = int(rank[-1].max()) + 1 if len(values) else 0
    out = np.full((max(n, 0),) + values.shape[1:], np.nan, dtype=_float_dtype(values))
    where = np.nonzero(keep)
    out[(rank[where],) + where[1:]] = values[where]
    return out


@process("array_filter", ["data", "condition", ("context", None)], kind=ARRAY)
def array_filter(data, condition, context=None):
    """The elements for which ``condition`` is true (labels kept)."""
    values, labels = _split("array_filter", data)
    _callable("array_filter", "condition", condition)
    out = _per_element("array_filter", "condition", condition, values, labels, context)
    if isinstance(out, list):
        keep = [i for i, v in enumerate(out) if _is_true(_py(v))]
        return _relabel([values[i] for i in keep],
                        None if labels is None else [labels[i] for i in keep])
    keep = out == True  # noqa: E712  (no-data and non-booleans are not true)
    if values.ndim == 1:
        index = np.flatnonzero(keep)
        return _relabel([_py(v) for v in values[index]],
                        None if labels is None else [labels[i] for i in index])
    flat = keep.reshape(keep.shape[0], -1)
    if (flat.all(axis=1) | ~flat.any(axis=1)).all():  # the same elements for every pixel
        index = np.flatnonzero(flat[:, 0]) if flat.shape[1] else np.arange(0)
        return _relabel(values[index], None if labels is None else [labels[i]
                                                                    for i in index])
    return _compact(values, keep)


# --- sort, order, rearrange ------------------------------------------------------------


def _sort_key(pid: str, values: list) -> list:
    """Comparable keys of a JSON array's valid elements: numbers, or dates (ISO strings)."""
    if all(_is_number(v) for v in values):
        return values
    if all(isinstance(v, str) for v in values):
        try:
            return [parse_iso_date(v) for v in values]
        except ValueError as exc:
            raise _invalid(pid, "data", f"{exc} (only numbers and dates are ordered)") \
                from None
    raise _invalid(pid, "data", "expected numbers, or dates, and no-data")


def _is_nodata(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _check_flags(pid: str, asc, nodata) -> None:
    if not isinstance(asc, (bool, np.bool_)):
        raise _invalid(pid, "asc", "expected true or false")
    if nodata is not None and not isinstance(nodata, (bool, np.bool_)):
        raise _invalid(pid, "nodata", "expected true, false or null")


def _list_order(pid: str, values: list, asc: bool, nodata) -> list[int]:
    valid = [i for i, v in enumerate(values) if not _is_nodata(v)]
    missing = [i for i, v in enumerate(values) if _is_nodata(v)]
    keys = _sort_key(pid, [values[i] for i in valid])
    ranked = [valid[j] for j in sorted(range(len(valid)), key=keys.__getitem__,
                                       reverse=not asc)]
    if nodata is None:
        return ranked
    return ranked + missing if nodata else missing + ranked


def _array_order(pid: str, a: np.ndarray, asc: bool, nodata) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, valid)``: the permutation along axis 0 of every pixel (stable: ties keep
    their order), no-data last unless ``nodata`` is false; ``valid``: which ranks hold a
    value. numpy's stable argsort puts NaN last, as wanted; descending sorts the negated
    values; no-data first rotates each pixel by its number of no-data values."""
    a = _floating(_numeric(pid, a))
    with np.errstate(all="ignore"):
        rows = np.argsort(a if asc else -a, axis=0, kind="stable")
    holes = np.isnan(a).sum(axis=0)
    n = len(a)
    valid = np.arange(n).reshape((n,) + (1,) * (a.ndim - 1)) < n - holes
    if nodata is False and holes.any():
        shift = (np.arange(n).reshape((n,) + (1,) * (a.ndim - 1)) - holes) % max(n, 1)
        rows = np.take_along_axis(rows, shift, axis=0)
        valid = np.take_along_axis(valid, shift, axis=0)
    return rows, valid


def _drop_nodata(ranked: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Ranks that hold no-data removed (they are last): as many as the fullest pixel keeps,
    the shorter pixels padded with no-data."""
    count = valid.sum(axis=0)
    n = int(count.max()) if count.size else 0
    out = ranked[:n].astype(_float_dtype(ranked), copy=True)
    out[~valid[:n]] = np.nan
    return out


@process("order", ["data", ("asc", True), ("nodata", None)], kind=ARRAY)
def order(data, asc=True, nodata=None):
    """The permutation that sorts ``data`` (zero-based positions)."""
    _check_flags("order", asc, nodata)
    values, _ = _split("order", data)
    if isinstance(values, list):
        return _list_order("order", values, asc, nodata)
    rows, valid = _array_order("order", values, asc, nodata)
    if values.ndim == 1:
        return [int(i) for i, ok in zip(rows, valid, strict=True) if ok or nodata is not None]
    if nodata is None and not valid.all():
        return _drop_nodata(rows, valid)
    return rows


@process("sort", ["data", ("asc", True), ("nodata", None)], kind=ARRAY)
def sort(data, asc=True, nodata=None):
    """``data`` sorted (no-data dropped, or put last/first)."""
    _check_flags("sort", asc, nodata)
    values, _ = _split("sort", data)
    if isinstance(values, list):
        return [values[i] for i in _list_order("sort", values, asc, nodata)]
    a = _floating(_numeric("sort", values))
    if nodata is not False:  # no-data last: numpy's sort puts NaN there itself
        with np.errstate(all="ignore"):
            ranked = np.sort(a, axis=0) if asc else -np.sort(-a, axis=0)
        n = len(a)
        valid = np.arange(n).reshape((n,) + (1,) * (a.ndim - 1)) < n - np.isnan(a).sum(
            axis=0)
    else:
        rows, valid = _array_order("sort", a, asc, nodata)
        ranked = np.take_along_axis(a, rows, axis=0)
    if values.ndim == 1:
        return [_py(v) for v, ok in zip(ranked, valid, strict=True) if ok or nodata is not None]
    if nodata is None and not valid.all():
        return _drop_nodata(ranked, valid)
    return ranked


@process("rearrange", ["data", "order"], kind=ARRAY)
def rearrange(data, order):
    """The elements of ``data`` at the positions ``order`` (labels follow their elements)."""
    values, labels = _split("rearrange", data)
    if isinstance(order, np.ndarray) and order.ndim > 1:
        # a per-pixel permutation (order() of a cube slice): take along axis 0
        if not isinstance(values, np.ndarray) or order.shape[1:] != values.shape[1:]:
            raise _invalid("rearrange", "order", "a permutation per pixel needs an array "
                           "of the same shape")
        holes = np.isnan(order) if order.dtype.kind == "f" else np.zeros(order.shape, bool)
        rows = np.where(holes, 0, order).astype(np.intp)
        if rows.size and (rows.min() < 0 or rows.max() >= len(values)):
            raise _invalid("rearrange", "order", "a position is outside the array")
        out = np.take_along_axis(values, rows, axis=0).astype(_float_dtype(values), copy=True)
        out[holes] = np.nan
        return out
    positions = order.tolist() if isinstance(order, np.ndarray) else order
    if not isinstance(positions, list) or not all(
            isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in positions):
        raise _invalid("rearrange", "order", "expected an array of zero-based positions")
    bad = [i for i in positions if not 0 <= i < len(values)]
    if bad:
        raise _invalid("rearrange", "order", f"position {bad[0]} is outside the array of "
                       f"{len(values)} elements")
    if isinstance(values, list):
        out: Any = [values[i] for i in positions]
    else:
        out = values[np.asarray(positions, dtype=np.intp)]
        if values.ndim == 1:
            out = [_py(v) for v in out]
    return _relabel(out, None if labels is None else [labels[i] for i in positions])


@process("array_interpolate_linear", ["data"], kind=ARRAY)
def array_interpolate_linear(data):
    """No-data between two values replaced by the linear interpolation along the index
    (or the numeric labels); no-data before the first and after the last value stays."""
    values, labels = _split("array_interpolate_linear", data)
    as_list = isinstance(values, list)
    a = _numeric("array_interpolate_linear",
                 np.array([np.nan if v is None else v for v in values], dtype=np.float64)
                 if as_list else values)
    a = a.astype(_float_dtype(a), copy=False)
    pos = _positions(labels, len(a))
    out = _fill_between(a.reshape(len(a), -1), pos)
    out = out.reshape(a.shape)
    if as_list or out.ndim == 1:
        result: Any = [None if (as_list and values[i] is None and np.isnan(v)) else _py(v)
                       for i, v in enumerate(out)]
    else:
        result = out
    return _relabel(result, labels)


def _positions(labels: tuple | None, n: int) -> np.ndarray:
    """The x axis of an interpolation: numeric labels, date labels (seconds; the dates of
    a time series), else the indices."""
    if labels is not None and all(_is_number(v) for v in labels):
        return np.asarray(labels, dtype=np.float64)
    if labels is not None and labels and all(isinstance(v, str) for v in labels):
        try:
            return np.array([parse_iso_date(v).timestamp() for v in labels])
        except ValueError:
            pass
    return np.arange(n, dtype=np.float64)


def _fill_between(a: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """No-data of every column of ``a`` (``(n, pixels)``) between two values replaced by
    the linear interpolation at ``pos`` (one position per row), all columns at once: the
    previous and next valid rows of each element come from running maxima/minima of row
    numbers. An infinite neighbour gives that infinity (the limit), where the formula
    gives NaN."""
    n = len(a)
    missing = np.isnan(a)
    if n == 0 or not missing.any():
        return a.copy()
    rows = np.arange(n).reshape(n, 1)
    prev = np.maximum.accumulate(np.where(missing, -1, rows), axis=0)
    nxt = np.minimum.accumulate(np.where(missing, n, rows)[::-1], axis=0)[::-1]
    inside = missing & (prev >= 0) & (nxt < n)
    out = a.copy()
    if not inside.any():
        return out
    p0, p1 = prev[inside], nxt[inside]
    cols = np.nonzero(inside)[1]
    y0, y1 = a[p0, cols], a[p1, cols]
    x0, x1 = pos[p0], pos[p1]
    x = np.broadcast_to(pos.reshape(n, 1), a.shape)[inside]
    with np.errstate(all="ignore"):
        value = y0 + (y1 - y0) * ((x - x0) / (x1 - x0))
    inf0, inf1 = np.isinf(y0), np.isinf(y1)
    value = np.where(inf0, y0, np.where(inf1, y1, value))
    out[inside] = value
    return out
