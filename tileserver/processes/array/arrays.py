"""Processes on whole arrays: element access and search (``array_element``,
``array_contains``, ``array_find``, ``array_create``), ``all``/``any``, cumulative
processes, labels and concatenation (``array_labels``, ``array_concat``, ``array_append``),
and the ones that map, filter and reorder: ``array_apply``, ``array_filter``, ``sort``,
``order``, ``rearrange``, ``array_interpolate_linear``.

Two kinds of ``data`` arrive at the processes that map, filter and reorder (see
:mod:`tileserver.processes.array`):

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
from tileserver.processes.array.common import (
    LabeledArray,
    as_floating,
    data_array,
    float_dtype,
    invalid_argument,
    is_number,
    nodata_mask,
    numeric_array,
    py_value,
    weak_scalar,
)
from tileserver.processes.array.compare import same_kind
from tileserver.processes.array.reduce import reducer_input
from tileserver.processes.registry import ARRAY, process


@process("array_element", ["data", ("index", None), ("label", None), ("return_nodata", False)],
         kind=ARRAY)
def array_element(data, index=None, label=None, return_nodata=False):
    """The element at ``index`` or with ``label`` (along axis 0)."""
    labels = data.labels if isinstance(data, LabeledArray) else None
    values = data.values if isinstance(data, LabeledArray) else data
    if index is None and label is None:
        raise invalid_argument("array_element", "index", "set index or label",
                               code="ArrayElementParameterMissing")
    if index is not None and label is not None:
        raise invalid_argument("array_element", "label", "set only one of index and label",
                               code="ArrayElementParameterConflict")
    if not isinstance(values, (list, tuple, np.ndarray)) or np.ndim(values) == 0:
        raise invalid_argument("array_element", "data", "expected an array")
    n = len(values)
    if label is not None:
        if not isinstance(label, (str, numbers.Real)) or isinstance(label, bool):
            raise invalid_argument("array_element", "label", "expected a string or a number")
        if labels is None:
            raise invalid_argument("array_element", "label", "the array has no labels",
                                   code="ArrayNotLabeled")
        index = labels.index(label) if label in labels else -1
    elif not isinstance(index, numbers.Integral) or isinstance(index, bool):
        raise invalid_argument("array_element", "index", "expected an integer")
    if not 0 <= index < n:
        if return_nodata:
            if isinstance(values, np.ndarray) and values.ndim > 1:
                return np.full(values.shape[1:], np.nan, dtype=float_dtype(values))
            return None
        raise invalid_argument("array_element", "index" if label is None else "label",
                               f"no element {label if label is not None else index!r}",
                               code="ArrayElementNotAvailable")
    return py_value(values[index])


def _array_arg(pid: str, data, name: str = "data"):
    """The values of an array argument (labels dropped); anything else is invalid."""
    values = data.values if isinstance(data, LabeledArray) else data
    if not isinstance(values, (list, tuple, np.ndarray)) or np.ndim(values) == 0:
        raise invalid_argument(pid, name, "expected an array")
    return values


def _strict_equal(a, b) -> bool:
    """openEO equality of two array elements (no bool/number mixing, no null match)."""
    if a is None or b is None or isinstance(a, (list, dict, np.ndarray)) or isinstance(
            b, (list, dict, np.ndarray)):
        return False
    return same_kind(a, b) and a == b


@process("array_contains", ["data", "value"], kind=ARRAY)
def array_contains(data, value):
    """Whether ``value`` is in the array (per pixel for cube slices)."""
    values = _array_arg("array_contains", data)
    if isinstance(values, np.ndarray) and values.ndim > 1:
        if value is None or not is_number(value):
            return np.zeros(values.shape[1:], dtype=bool)
        return np.any(values == weak_scalar(value), axis=0)
    return any(_strict_equal(py_value(v), value) for v in values)


@process("array_find", ["data", "value", ("reverse", False)], kind=ARRAY)
def array_find(data, value, reverse=False):
    """Index of the first (last) element equal to ``value``, no-data when none is."""
    values = _array_arg("array_find", data)
    if isinstance(values, np.ndarray) and values.ndim > 1:
        if value is None or not is_number(value):
            return np.full(values.shape[1:], np.nan)
        match = values == weak_scalar(value)
        if reverse:
            idx = values.shape[0] - 1 - np.argmax(match[::-1], axis=0)
        else:
            idx = np.argmax(match, axis=0)
        return np.where(match.any(axis=0), idx, np.nan)
    items = [py_value(v) for v in values]
    order = range(len(items) - 1, -1, -1) if reverse else range(len(items))
    for i in order:
        if _strict_equal(items[i], value):
            return i
    return None


@process("array_create", [("data", []), ("repeat", 1)], kind=ARRAY)
def array_create(data=[], repeat=1):  # noqa: B006  (never mutated)
    """``data`` repeated ``repeat`` times."""
    if not isinstance(repeat, numbers.Integral) or isinstance(repeat, bool) or repeat < 1:
        raise invalid_argument("array_create", "repeat", "expected an integer >= 1")
    if isinstance(data, np.ndarray):
        return np.concatenate([data] * repeat, axis=0) if repeat > 1 else data
    if not isinstance(data, (list, tuple)):
        raise invalid_argument("array_create", "data", "expected an array")
    return list(data) * repeat


# --- all/any, cumulative processes, labels, concatenation -----------------------------


def _logic_stack(pid: str, data) -> tuple[np.ndarray, np.ndarray]:
    """(truth, no-data) masks of an array of booleans (bool arrays, 1/0/NaN float arrays
    from logical processes over no-data, or JSON lists of booleans and nulls)."""
    a, _ = data_array(pid, data)
    if a.dtype == bool:
        return a, np.zeros(a.shape, dtype=bool)
    if a.dtype.kind == "f":
        return a == 1, np.isnan(a)
    if a.dtype.kind == "O" and all(v is None or isinstance(v, (bool, np.bool_))
                                   for v in a.ravel()):
        return (np.frompyfunc(lambda v: v is True or v is np.True_, 1, 1)(a).astype(bool),
                nodata_mask(a))
    raise invalid_argument(pid, "data", "expected an array of booleans")


def _logic_result(value: np.ndarray, nodata: np.ndarray):
    if value.ndim == 0:
        return None if nodata else bool(value)
    if not nodata.any():
        return value
    out = value.astype(np.float32)
    out[nodata] = np.nan
    return out


@process("all", ["data", ("ignore_nodata", True)], kind=ARRAY)
def all_(data, ignore_nodata=True):
    """Whether every (valid) value is true; false wins over no-data."""
    truth, nodata = _logic_stack("all", data)
    some_false = np.any(~truth & ~nodata, axis=0)
    if ignore_nodata:
        return _logic_result(~some_false, np.zeros(some_false.shape, dtype=bool))
    return _logic_result(~some_false, ~some_false & np.any(nodata, axis=0))


@process("any", ["data", ("ignore_nodata", True)], kind=ARRAY)
def any_(data, ignore_nodata=True):
    """Whether a (valid) value is true; true wins over no-data."""
    truth, nodata = _logic_stack("any", data)
    some_true = np.any(truth & ~nodata, axis=0)
    if ignore_nodata:
        return _logic_result(some_true, np.zeros(some_true.shape, dtype=bool))
    return _logic_result(some_true, ~some_true & np.any(nodata, axis=0))


def _cumulative(pid: str, ufunc, skip_fill, propagating=None):
    @process(pid, ["data", ("ignore_nodata", True)], kind=ARRAY)
    def fn(data, ignore_nodata=True):
        a = reducer_input(pid, data)
        with np.errstate(all="ignore"):
            if not ignore_nodata:  # NaN propagates to every later element
                return (propagating or ufunc).accumulate(a, axis=0)
            nodata = np.isnan(a)
            if not nodata.any():
                return ufunc.accumulate(a, axis=0)
            out = ufunc.accumulate(np.where(nodata, a.dtype.type(skip_fill), a), axis=0)
            out[nodata] = np.nan  # skipped, but no-data stays in the result
            return out

    fn.__name__ = pid
    return fn


_cumulative("cumsum", np.add, 0)
_cumulative("cumproduct", np.multiply, 1)
_cumulative("cummin", np.fmin, np.nan, np.minimum)
_cumulative("cummax", np.fmax, np.nan, np.maximum)


def _values_labels(data) -> tuple[Any, tuple | None]:
    if isinstance(data, LabeledArray):
        return data.values, data.labels
    return data, None


@process("array_labels", ["data"], kind=ARRAY)
def array_labels(data):
    """The labels of a labelled array, else the indices."""
    values, labels = _values_labels(data)
    if labels is not None:
        return list(labels)
    if not isinstance(values, (list, tuple, np.ndarray)) or np.ndim(values) == 0:
        raise invalid_argument("array_labels", "data", "expected an array")
    return list(range(len(values)))


def _concat_values(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            return np.concatenate([np.asarray(a), np.asarray(b)], axis=0)
        except ValueError:
            raise invalid_argument("array_concat", "array2", "its elements do not fit those of "
                                   "array1") from None
    return list(a) + list(b)


@process("array_concat", ["array1", "array2"], kind=ARRAY)
def array_concat(array1, array2):
    """``array2`` after ``array1`` (labels kept when both are labelled)."""
    (v1, l1), (v2, l2) = _values_labels(array1), _values_labels(array2)
    for name, v in (("array1", v1), ("array2", v2)):
        if not isinstance(v, (list, tuple, np.ndarray)) or np.ndim(v) == 0:
            raise invalid_argument("array_concat", name, "expected an array")
    values = _concat_values(v1, v2)
    if l1 is None or l2 is None:
        return values
    if set(l1) & set(l2):
        raise invalid_argument("array_concat", "array2", "both arrays have a label in common",
                               code="ArrayLabelConflict")
    return LabeledArray(values, tuple(l1) + tuple(l2))


@process("array_append", ["data", "value", ("label", None)], kind=ARRAY)
def array_append(data, value, label=None):
    """``data`` with ``value`` added at the end (with ``label`` for labelled arrays)."""
    values, labels = _values_labels(data)
    if not isinstance(values, (list, tuple, np.ndarray)) or np.ndim(values) == 0:
        raise invalid_argument("array_append", "data", "expected an array")
    if label is not None and (not isinstance(label, (str, numbers.Real))
                              or isinstance(label, bool)):
        raise invalid_argument("array_append", "label", "expected a string or a number")
    if labels is None and label is not None:
        raise invalid_argument("array_append", "label", "the array has no labels",
                               code="ArrayNotLabeled")
    if isinstance(values, np.ndarray):
        item = np.asarray(np.nan if value is None else value)
        try:
            item = np.broadcast_to(item, values.shape[1:])[None]
        except ValueError:
            raise invalid_argument("array_append", "value", "does not fit the elements of the "
                                   "array") from None
        out = np.concatenate([values, item], axis=0)
    else:
        out = [*values, value]
    if labels is None:
        return out
    if label is None:
        label = len(labels)
    if label in labels:
        raise invalid_argument("array_append", "label", f"the label {label!r} exists",
                               code="LabelExists")
    return LabeledArray(out, (*labels, label))


# --- map, filter, order -------------------------------------------------------------


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
    raise invalid_argument(pid, "data", "expected an array")


def _relabel(values, labels: tuple | None):
    return values if labels is None else LabeledArray(values, tuple(labels))


def _callable(pid: str, name: str, fn) -> None:
    if not callable(fn):
        raise invalid_argument(pid, name, "expected a child process ({\"process_graph\": …})")


def _is_true(v) -> bool:
    return v is True or v is np.True_


def _element_values(pid: str, fn, values, labels, context) -> list:
    """The child process's value for every element, one call per element."""
    out = []
    for i in range(len(values)):
        kwargs = {"x": py_value(values[i]), "index": i, "context": context}
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
            raise invalid_argument(pid, name, "the child process must return numbers or booleans "
                                   "for the elements of a data cube")
        try:
            parts.append(np.broadcast_to(a, shape))
        except ValueError:
            raise invalid_argument(pid, name, f"the child process returned shape {a.shape} for "
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
        raise invalid_argument(pid, name, "the child process must return numbers or booleans for "
                               "the elements of a data cube")
    try:
        return np.broadcast_to(a, values.shape)
    except ValueError:
        raise invalid_argument(
            pid, name, f"the child process returned shape {a.shape} for an array "
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
        out = [py_value(v.values if isinstance(v, LabeledArray) else v) for v in out]
    elif values.ndim == 1:
        out = [py_value(v) for v in out]
    return _relabel(out, labels)


def _compact(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The kept elements of every pixel moved to the front (in order), no-data after them;
    as many elements as the pixel that keeps the most (each kept value goes to the row of
    its running count)."""
    keep = np.broadcast_to(keep, values.shape)
    rank = np.cumsum(keep, axis=0) - 1
    n = int(rank[-1].max()) + 1 if len(values) else 0
    out = np.full((max(n, 0),) + values.shape[1:], np.nan, dtype=float_dtype(values))
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
        keep = [i for i, v in enumerate(out) if _is_true(py_value(v))]
        return _relabel([values[i] for i in keep],
                        None if labels is None else [labels[i] for i in keep])
    keep = out == True  # noqa: E712  (no-data and non-booleans are not true)
    if values.ndim == 1:
        index = np.flatnonzero(keep)
        return _relabel([py_value(v) for v in values[index]],
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
    if all(is_number(v) for v in values):
        return values
    if all(isinstance(v, str) for v in values):
        try:
            return [parse_iso_date(v) for v in values]
        except ValueError as exc:
            raise invalid_argument(pid, "data", f"{exc} (only numbers and dates are ordered)") \
                from None
    raise invalid_argument(pid, "data", "expected numbers, or dates, and no-data")


def _is_nodata(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _check_flags(pid: str, asc, nodata) -> None:
    if not isinstance(asc, (bool, np.bool_)):
        raise invalid_argument(pid, "asc", "expected true or false")
    if nodata is not None and not isinstance(nodata, (bool, np.bool_)):
        raise invalid_argument(pid, "nodata", "expected true, false or null")


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
    a = as_floating(numeric_array(pid, a))
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
    out = ranked[:n].astype(float_dtype(ranked), copy=True)
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
    a = as_floating(numeric_array("sort", values))
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
        return [py_value(v) for v, ok in zip(ranked, valid, strict=True)
                if ok or nodata is not None]
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
            raise invalid_argument("rearrange", "order", "a permutation per pixel needs an array "
                                   "of the same shape")
        holes = np.isnan(order) if order.dtype.kind == "f" else np.zeros(order.shape, bool)
        rows = np.where(holes, 0, order).astype(np.intp)
        if rows.size and (rows.min() < 0 or rows.max() >= len(values)):
            raise invalid_argument("rearrange", "order", "a position is outside the array")
        out = np.take_along_axis(values, rows, axis=0).astype(float_dtype(values), copy=True)
        out[holes] = np.nan
        return out
    positions = order.tolist() if isinstance(order, np.ndarray) else order
    if not isinstance(positions, list) or not all(
            isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in positions):
        raise invalid_argument("rearrange", "order", "expected an array of zero-based positions")
    bad = [i for i in positions if not 0 <= i < len(values)]
    if bad:
        raise invalid_argument("rearrange", "order", f"position {bad[0]} is outside the array of "
                               f"{len(values)} elements")
    if isinstance(values, list):
        out: Any = [values[i] for i in positions]
    else:
        out = values[np.asarray(positions, dtype=np.intp)]
        if values.ndim == 1:
            out = [py_value(v) for v in out]
    return _relabel(out, None if labels is None else [labels[i] for i in positions])


@process("array_interpolate_linear", ["data"], kind=ARRAY)
def array_interpolate_linear(data):
    """No-data between two values replaced by the linear interpolation along the index
    (or the numeric labels); no-data before the first and after the last value stays."""
    values, labels = _split("array_interpolate_linear", data)
    as_list = isinstance(values, list)
    a = numeric_array("array_interpolate_linear",
                      np.array([np.nan if v is None else v for v in values], dtype=np.float64)
                      if as_list else values)
    a = a.astype(float_dtype(a), copy=False)
    pos = _positions(labels, len(a))
    out = _fill_between(a.reshape(len(a), -1), pos)
    out = out.reshape(a.shape)
    if as_list or out.ndim == 1:
        result: Any = [None if (as_list and values[i] is None and np.isnan(v)) else py_value(v)
                       for i, v in enumerate(out)]
    else:
        result = out
    return _relabel(result, labels)


def _positions(labels: tuple | None, n: int) -> np.ndarray:
    """The x axis of an interpolation: numeric labels, date labels (seconds; the dates of
    a time series), else the indices."""
    if labels is not None and all(is_number(v) for v in labels):
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
