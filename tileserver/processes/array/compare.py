"""Comparisons: ``eq``, ``neq``, ``lt``, ``gt``..., ``between``."""

from __future__ import annotations

import numpy as np

from tileserver.processes.array.common import (
    LabeledArray,
    false_like,
    float_dtype,
    invalid_argument,
    is_array,
    is_number,
    is_scalar,
    nodata_like,
    weak_scalar,
)
from tileserver.processes.registry import ARRAY, process


def same_kind(x, y) -> bool:
    """openEO compares only values of one type: numbers with numbers, strings with strings."""
    if isinstance(x, (bool, np.bool_)) or isinstance(y, (bool, np.bool_)):
        return isinstance(x, (bool, np.bool_)) and isinstance(y, (bool, np.bool_))
    if isinstance(x, str) or isinstance(y, str):
        return isinstance(x, str) and isinstance(y, str)
    return True


def _equal(pid: str, x, y, delta, case_sensitive):
    if delta is not None and not is_number(delta):
        raise invalid_argument(pid, "delta", "expected a number")
    if x is None or y is None:
        return None if is_scalar(x) and is_scalar(y) else nodata_like(x, y)
    if isinstance(x, (list, dict, LabeledArray)) or isinstance(y, (list, dict, LabeledArray)):
        raise invalid_argument(pid, "x", "arrays and objects cannot be compared")
    if is_array(x) or is_array(y):
        if not all(is_array(v) or is_number(v) for v in (x, y)):
            return false_like(x, y)  # a string or boolean never equals a number
    else:
        if not same_kind(x, y):
            return False
        if isinstance(x, str):
            if not case_sensitive:
                return x.casefold() == y.casefold()
            return x == y
        if delta is not None and is_number(x):
            with np.errstate(all="ignore"):
                return bool(abs(np.float64(x) - np.float64(y)) <= delta)
        return bool(x == y)
    xw, yw = weak_scalar(x), weak_scalar(y)
    with np.errstate(all="ignore"):
        if delta is not None:
            return _with_nodata(np.abs(np.subtract(xw, yw)) <= delta, x, y)
        return _with_nodata(np.equal(xw, yw), x, y)


@process("eq", ["x", "y", ("delta", None), ("case_sensitive", True)], kind=ARRAY)
def eq(x, y, delta=None, case_sensitive=True):
    """``x == y`` (within ``delta``; strings optionally case-insensitive)."""
    return _equal("eq", x, y, delta, case_sensitive)


@process("neq", ["x", "y", ("delta", None), ("case_sensitive", True)], kind=ARRAY)
def neq(x, y, delta=None, case_sensitive=True):
    """``x != y``."""
    out = _equal("neq", x, y, delta, case_sensitive)
    if out is None:
        return None
    if isinstance(out, np.ndarray):
        if out.dtype.kind == "f":  # 1/0 with no-data kept
            return np.where(np.isnan(out), out, 1 - out).astype(out.dtype, copy=False)
        return ~out
    return not out


def _with_nodata(out, x, y):
    """A comparison of arrays is no-data (NaN) where an operand is no-data, as the
    specification says for null (``lt(null, 1)`` is null): 1/0/NaN floats then, else bool."""
    holes = None
    for v in (x, y):
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            mask = np.isnan(v)
            holes = mask if holes is None else holes | mask
        elif isinstance(v, float) and v != v:
            return nodata_like(x, y)
    if holes is None or not holes.any():
        return out
    result = out.astype(float_dtype(x, y))
    result[np.broadcast_to(holes, result.shape)] = np.nan
    return result


def _ordering(pid: str, op):
    @process(pid, ["x", "y"], kind=ARRAY)
    def fn(x, y):
        if is_scalar(x) and is_scalar(y):
            if x is None or y is None:
                return None
            if not (is_number(x) and is_number(y)):
                return False
            return bool(op(np.float64(x), np.float64(y)))
        if not all(v is None or is_array(v) or is_number(v) for v in (x, y)):
            return false_like(x, y)  # only numbers are ordered
        if x is None or y is None:
            return nodata_like(x, y)
        with np.errstate(all="ignore"):
            return _with_nodata(op(weak_scalar(x), weak_scalar(y)), x, y)

    fn.__name__ = pid
    return fn


_ordering("gt", np.greater)
_ordering("gte", np.greater_equal)
_ordering("lt", np.less)
_ordering("lte", np.less_equal)


@process("between", ["x", "min", "max", ("exclude_max", False)], kind=ARRAY)
def between(x, min, max, exclude_max=False):  # noqa: A002
    """``min <= x <= max`` (or ``< max``)."""
    for name, bound in (("min", min), ("max", max)):
        if not (is_number(bound) or is_array(bound) and bound.dtype.kind in "fiu"):
            raise invalid_argument("between", name, "expected a number")
    if x is None:
        return None
    if is_scalar(x) and not is_number(x) or isinstance(x, (str, list, dict, LabeledArray)):
        return False
    upper = np.less if exclude_max else np.less_equal
    with np.errstate(all="ignore"):
        if is_scalar(x) and is_number(min) and is_number(max):
            if min > max:
                return False
            return bool(np.float64(x) >= min and upper(np.float64(x), max))
        x = weak_scalar(x)
        return (np.greater_equal(x, weak_scalar(min)) & upper(x, weak_scalar(max))
                & np.less_equal(weak_scalar(min), weak_scalar(max)))
