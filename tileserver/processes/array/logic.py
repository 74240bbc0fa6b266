"""Logic (``and``, ``or``, ``xor``, ``not``, ``if``, three-valued with no-data) and the
tests on values (``is_nan``, ``is_nodata``, ``is_valid``, ``is_infinite``)."""

from __future__ import annotations

import math

import numpy as np

from tileserver.processes.array.common import (
    invalid_argument,
    is_scalar,
    nodata_mask,
    py_value,
    weak_scalar,
)
from tileserver.processes.registry import ARRAY, process


def _logic_operand(pid: str, name: str, v):
    """(truth, nodata) of a logical argument."""
    if v is None:
        return False, True
    if isinstance(v, (bool, np.bool_)):
        return bool(v), False
    if isinstance(v, np.ndarray):
        if v.dtype == bool:
            return v, False
        if v.dtype.kind in "fiu":
            nodata = np.isnan(v) if v.dtype.kind == "f" else False
            return v == 1, nodata
    raise invalid_argument(pid, name, "expected a boolean")


def _three_valued(pid: str, x, y, combine):
    (xv, xn), (yv, yn) = _logic_operand(pid, "x", x), _logic_operand(pid, "y", y)
    value, nodata = combine(xv, xn, yv, yn)
    if is_scalar(x) and is_scalar(y):
        return None if nodata else bool(value)
    if not np.any(nodata):
        return np.broadcast_to(np.asarray(value, dtype=bool),
                               np.broadcast_shapes(np.shape(xv), np.shape(yv))).copy() \
            if np.ndim(value) == 0 else value
    # no-data in a logical array: 1.0 / 0.0 / NaN
    out = np.where(value, np.float32(1), np.float32(0))
    out[np.broadcast_to(nodata, out.shape)] = np.nan
    return out


@process("and", ["x", "y"], kind=ARRAY)
def and_(x, y):
    """Logical AND; false wins over no-data."""
    def combine(xv, xn, yv, yn):
        false = (~np.asarray(xv) & ~np.asarray(xn)) | (~np.asarray(yv) & ~np.asarray(yn))
        return np.logical_and(xv, yv), np.logical_and(np.logical_or(xn, yn), ~false)

    return _three_valued("and", x, y, combine)


@process("or", ["x", "y"], kind=ARRAY)
def or_(x, y):
    """Logical OR; true wins over no-data."""
    def combine(xv, xn, yv, yn):
        true = (np.asarray(xv) & ~np.asarray(xn)) | (np.asarray(yv) & ~np.asarray(yn))
        return np.logical_or(xv, yv), np.logical_and(np.logical_or(xn, yn), ~true)

    return _three_valued("or", x, y, combine)


@process("xor", ["x", "y"], kind=ARRAY)
def xor(x, y):
    """Logical exclusive OR; no-data if either is no-data."""
    def combine(xv, xn, yv, yn):
        return np.logical_xor(xv, yv), np.logical_or(xn, yn)

    return _three_valued("xor", x, y, combine)


@process("not", ["x"], kind=ARRAY)
def not_(x):
    """Logical NOT."""
    v, nodata = _logic_operand("not", "x", x)
    if is_scalar(x):
        return None if nodata else not v
    if not np.any(nodata):
        return ~v
    out = np.where(v, np.float32(0), np.float32(1))
    out[nodata] = np.nan
    return out


@process("if", ["value", "accept", ("reject", None)], kind=ARRAY)
def if_(value, accept, reject=None):
    """``accept`` where ``value`` is true, else ``reject`` (no-data counts as false)."""
    if is_scalar(value):
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise invalid_argument("if", "value", "expected a boolean")
        return accept if value is True or value is np.True_ else reject
    if not isinstance(value, np.ndarray):
        raise invalid_argument("if", "value", "expected a boolean")
    cond = value if value.dtype == bool else value == 1
    for name, v in (("accept", accept), ("reject", reject)):
        if not (is_scalar(v) or isinstance(v, np.ndarray)):
            raise invalid_argument(
                "if", name, "expected a number or an array in an array condition")
    a = np.nan if accept is None else weak_scalar(accept)
    r = np.nan if reject is None else weak_scalar(reject)
    if (a is np.nan or r is np.nan) and not any(
            isinstance(v, np.ndarray) and v.dtype.kind == "f" for v in (accept, reject)):
        dtype = np.result_type(*(v for v in (accept, reject) if isinstance(v, np.ndarray)),
                               np.float32) if any(isinstance(v, np.ndarray)
                                                  for v in (accept, reject)) else np.float64
        a = np.asarray(a, dtype=dtype) if a is np.nan else a
        r = np.asarray(r, dtype=dtype) if r is np.nan else r
    return np.where(cond, a, r)


# --- tests on values -----------------------------------------------------------------


@process("is_nan", ["x"], kind=ARRAY)
def is_nan(x):
    """``x`` is NaN (in arrays: NaN, which is also no-data there)."""
    if isinstance(x, np.ndarray) and x.ndim:
        return np.isnan(x) if x.dtype.kind == "f" else np.zeros(x.shape, dtype=bool)
    x = py_value(x)
    return isinstance(x, float) and math.isnan(x)


@process("is_nodata", ["x"], kind=ARRAY)
def is_nodata(x):
    """``x`` is the no-data value (in float arrays: NaN)."""
    if isinstance(x, np.ndarray) and x.ndim:
        return nodata_mask(x)
    return x is None


@process("is_valid", ["x"], kind=ARRAY)
def is_valid(x):
    """``x`` is neither no-data nor a non-finite number."""
    if isinstance(x, np.ndarray) and x.ndim:
        return np.isfinite(x) if x.dtype.kind == "f" else ~nodata_mask(x)
    x = py_value(x)
    if x is None:
        return False
    return not (isinstance(x, float) and not math.isfinite(x))


@process("is_infinite", ["x"], kind=ARRAY)
def is_infinite(x):
    """``x`` is +∞ or -∞."""
    if isinstance(x, np.ndarray) and x.ndim:
        return np.isinf(x) if x.dtype.kind == "f" else np.zeros(x.shape, dtype=bool)
    x = py_value(x)
    return isinstance(x, float) and math.isinf(x)
