"""Reducers along axis 0: ``min``, ``max``, ``sum``, ``mean``, ``sd``, ``median``,
``quantiles``, ``first``, ``last``, ``count``..."""

from __future__ import annotations

import math
import numbers

import numpy as np

from tileserver.processes.array.common import (
    as_floating,
    data_array,
    invalid_argument,
    is_number,
    nodata_mask,
    numeric_array,
    py_value,
    to_result,
)
from tileserver.processes.registry import ARRAY, process


def reducer_input(pid: str, data) -> np.ndarray:
    """``data`` of a reducer as a floating array (no-data NaN), reduced along axis 0."""
    return as_floating(numeric_array(pid, data_array(pid, data)[0]))


def _nodata_result(a: np.ndarray):
    return to_result(np.full(a.shape[1:], np.nan, dtype=a.dtype))


def _minmax(pid: str, data, ignore_nodata, skip_nan, keep_nan):
    a = reducer_input(pid, data)
    if a.shape[0] == 0:
        return _nodata_result(a)
    return to_result((skip_nan if ignore_nodata else keep_nan).reduce(a, axis=0))


@process("min", ["data", ("ignore_nodata", True)], kind=ARRAY)
def min_(data, ignore_nodata=True):
    """Smallest value."""
    return _minmax("min", data, ignore_nodata, np.fmin, np.minimum)


@process("max", ["data", ("ignore_nodata", True)], kind=ARRAY)
def max_(data, ignore_nodata=True):
    """Largest value."""
    return _minmax("max", data, ignore_nodata, np.fmax, np.maximum)


@process("extrema", ["data", ("ignore_nodata", True)], kind=ARRAY)
def extrema(data, ignore_nodata=True):
    """``[min, max]`` on a new axis 0."""
    a = reducer_input("extrema", data)
    if a.shape[0] == 0:
        return np.full((2, *a.shape[1:]), np.nan, dtype=a.dtype)
    lo, hi = (np.fmin, np.fmax) if ignore_nodata else (np.minimum, np.maximum)
    return np.stack([lo.reduce(a, axis=0), hi.reduce(a, axis=0)])


def _sum_count(a: np.ndarray, ignore_nodata: bool):
    """(sum over valid values, number of valid values) along axis 0."""
    with np.errstate(all="ignore"):  # inf + -inf is NaN, as IEEE 754 says
        return _sum_count_raw(a, ignore_nodata)


def _sum_count_raw(a: np.ndarray, ignore_nodata: bool):
    if not ignore_nodata:
        return np.add.reduce(a, axis=0), None
    valid = ~np.isnan(a)
    n = np.count_nonzero(valid, axis=0)
    if n.size and n.min() == a.shape[0]:
        return np.add.reduce(a, axis=0), n
    return np.add.reduce(np.where(valid, a, a.dtype.type(0)), axis=0), n


def _empty_to_nodata(out, n):
    if n is None:
        return out
    if np.ndim(out) == 0:
        return out if n else np.nan
    if n.min() == 0:
        out = np.where(n == 0, np.nan, out).astype(out.dtype, copy=False)
    return out


@process("sum", ["data", ("ignore_nodata", True)], kind=ARRAY)
def sum_(data, ignore_nodata=True):
    """Sum of the values."""
    a = reducer_input("sum", data)
    if a.shape[0] == 0:
        return _nodata_result(a)
    s, n = _sum_count(a, ignore_nodata)
    return to_result(_empty_to_nodata(s, n))


@process("product", ["data", ("ignore_nodata", True)], kind=ARRAY)
def product(data, ignore_nodata=True):
    """Product of the values."""
    a = reducer_input("product", data)
    if a.shape[0] == 0:
        return _nodata_result(a)
    with np.errstate(all="ignore"):
        if not ignore_nodata:
            return to_result(np.multiply.reduce(a, axis=0))
        valid = ~np.isnan(a)
        out = np.multiply.reduce(np.where(valid, a, a.dtype.type(1)), axis=0)
        return to_result(_empty_to_nodata(out, np.count_nonzero(valid, axis=0)))


def _mean(a: np.ndarray, ignore_nodata: bool):
    s, n = _sum_count(a, ignore_nodata)
    with np.errstate(all="ignore"):
        if n is None:
            return s / a.dtype.type(a.shape[0]), None
        return s / n.astype(a.dtype), n


@process("mean", ["data", ("ignore_nodata", True)], kind=ARRAY)
def mean(data, ignore_nodata=True):
    """Arithmetic mean."""
    a = reducer_input("mean", data)
    if a.shape[0] == 0:
        return _nodata_result(a)
    return to_result(_mean(a, ignore_nodata)[0])


def _variance(pid: str, data, ignore_nodata):
    a = reducer_input(pid, data)
    if a.shape[0] == 0:
        return _nodata_result(a)
    m, n = _mean(a, ignore_nodata)
    with np.errstate(all="ignore"):
        dev = a - m
        if n is not None:
            dev = np.where(np.isnan(a), a.dtype.type(0), dev)
        else:
            n = a.shape[0]
        dev *= dev
        # n - 1 degrees of freedom; no valid value (n = 0) gives 0/0 = NaN as well
        return np.add.reduce(dev, axis=0) / np.maximum(np.asarray(n, dtype=a.dtype) - 1, 0)


@process("variance", ["data", ("ignore_nodata", True)], kind=ARRAY)
def variance(data, ignore_nodata=True):
    """Sample variance (``n - 1``)."""
    return to_result(_variance("variance", data, ignore_nodata))


@process("sd", ["data", ("ignore_nodata", True)], kind=ARRAY)
def sd(data, ignore_nodata=True):
    """Sample standard deviation."""
    with np.errstate(all="ignore"):
        return to_result(np.sqrt(_variance("sd", data, ignore_nodata)))


_NETWORK_MAX = 12


def _network_sort(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | int]:
    """``a`` (a short axis 0: the dates or bands of a tile) sorted along axis 0 by an
    odd-even transposition network of whole-slice min/max, vectorised over the pixels
    (``np.sort`` along axis 0 pays per pixel: ~20x slower for 4 dates of 256x256). No-data
    is sorted last as +inf stand-ins; also returns the number of valid values per pixel
    (an int when no pixel has no-data)."""
    n = a.shape[0]
    nan = np.isnan(a)
    if nan.any():
        valid: np.ndarray | int = n - np.count_nonzero(nan, axis=0)
        s = np.where(nan, np.inf, a)
    else:
        valid, s = n, a.copy()
    tmp = np.empty_like(s[0])
    for p in range(n):
        for i in range(p % 2, n - 1, 2):
            np.minimum(s[i], s[i + 1], out=tmp)
            np.maximum(s[i], s[i + 1], out=s[i + 1])
            s[i] = tmp
    return s, valid


def _quantiles(a: np.ndarray, probabilities, ignore_nodata: bool) -> np.ndarray:
    """Type-7 sample quantiles along axis 0, one row per probability, NaN-aware."""
    out = np.full((len(probabilities), *a.shape[1:]), np.nan, dtype=a.dtype)
    n = a.shape[0]
    if n == 0:
        return out
    with np.errstate(all="ignore"):
        if a.ndim > 1 and n <= _NETWORK_MAX:
            s, valid = _network_sort(a)
            # the pixels with k valid values at once: their ranks are the same constants
            full = isinstance(valid, int) or not ignore_nodata
            for k in [n] if full else range(1, n + 1):
                where = None if isinstance(valid, int) else valid == k
                if where is not None and not where.any():
                    continue
                for i, p in enumerate(probabilities):
                    h = (k - 1) * p
                    lo = math.floor(h)
                    frac = h - lo
                    v = s[lo] if frac == 0 else (1 - frac) * s[lo] + frac * s[lo + 1]
                    if where is None:
                        out[i] = v
                    else:
                        np.copyto(out[i], v, where=where)
            return out
        s = np.sort(a, axis=0)  # NaN last
        nan = np.isnan(s[-1])
        if not np.any(nan):
            valid_all = n
        else:
            valid_all = n - np.count_nonzero(np.isnan(s), axis=0)
        if a.ndim == 1 or isinstance(valid_all, int):
            k = int(valid_all)
            if k == 0 or (k < n and not ignore_nodata):
                return out
            for i, p in enumerate(probabilities):
                h = (k - 1) * p
                lo = math.floor(h)
                frac = h - lo
                out[i] = s[lo] if frac == 0 else (1 - frac) * s[lo] + frac * s[lo + 1]
            return out
        last = np.maximum(valid_all - 1, 0)
        # gather s[rank, pixel] through flat indices (take_along_axis is ~10x slower here)
        flat = s.reshape(-1)
        pixels = math.prod(a.shape[1:])
        pixel = np.arange(pixels, dtype=np.intp).reshape(a.shape[1:])
        for i, p in enumerate(probabilities):
            h = last * p
            lo = np.floor(h).astype(np.intp)
            hi = np.minimum(lo + 1, last)
            frac = (h - lo).astype(a.dtype)
            vlo = flat.take(lo * pixels + pixel)
            vhi = flat.take(hi * pixels + pixel)
            q = np.where(frac == 0, vlo, (1 - frac) * vlo + frac * vhi)
            out[i] = np.where(valid_all == 0, np.nan, q)
        if not ignore_nodata:
            out[:, valid_all < n] = np.nan
    return out


@process("median", ["data", ("ignore_nodata", True)], kind=ARRAY)
def median(data, ignore_nodata=True):
    """Median (the 0.5 quantile)."""
    a = reducer_input("median", data)
    return to_result(_quantiles(a, (0.5,), ignore_nodata)[0])


@process("quantiles", ["data", ("probabilities", None), ("q", None), ("ignore_nodata", True)],
         kind=ARRAY)
def quantiles(data, probabilities=None, q=None, ignore_nodata=True):
    """Quantiles for ``probabilities`` or the ``q``-quantiles, on a new axis 0."""
    if probabilities is None and q is None:
        raise invalid_argument("quantiles", "probabilities", "set probabilities or q",
                               code="QuantilesParameterMissing")
    if probabilities is not None and q is not None:
        raise invalid_argument("quantiles", "q", "set only one of probabilities and q",
                               code="QuantilesParameterConflict")
    if isinstance(probabilities, numbers.Integral) and not isinstance(probabilities, bool):
        probabilities, q = None, probabilities  # the number of intervals (q-quantiles)
        name = "probabilities"
    else:
        name = "q"
    if q is not None:
        if not isinstance(q, numbers.Integral) or isinstance(q, bool) or q < 2:
            raise invalid_argument("quantiles", name, "expected an integer >= 2")
        probs = [i / q for i in range(1, q)]
    else:
        if not isinstance(probabilities, (list, tuple, np.ndarray)) or not all(
                is_number(p) and 0 <= p <= 1 for p in probabilities):
            raise invalid_argument("quantiles", "probabilities", "expected numbers in [0, 1]")
        probs = [float(p) for p in probabilities]
        if any(b < a for a, b in zip(probs, probs[1:], strict=False)):
            raise invalid_argument("quantiles", "probabilities", "must be ascending",
                                   code="AscendingProbabilitiesRequired")
    return _quantiles(reducer_input("quantiles", data), probs, ignore_nodata)


def _first_last(pid: str, data, ignore_nodata: bool, last: bool):
    a, _ = data_array(pid, data)
    if a.shape[0] == 0:
        return None if a.ndim == 1 else np.full(a.shape[1:], np.nan)
    if last:
        a = a[::-1]
    if not ignore_nodata:
        out = a[0]
    else:
        valid = ~nodata_mask(a)
        idx = np.argmax(valid, axis=0)
        if a.ndim == 1:
            out = a[idx]
        else:
            out = np.take_along_axis(a, idx[None], axis=0)[0]
            if a.dtype.kind in "fO":  # other dtypes have no no-data
                out[~valid.any(axis=0)] = np.nan if a.dtype.kind == "f" else None
            return out
    out = py_value(out)
    return None if isinstance(out, float) and math.isnan(out) and a.dtype.kind == "O" else out


@process("first", ["data", ("ignore_nodata", True)], kind=ARRAY)
def first(data, ignore_nodata=True):
    """First (valid) element."""
    return _first_last("first", data, ignore_nodata, last=False)


@process("last", ["data", ("ignore_nodata", True)], kind=ARRAY)
def last(data, ignore_nodata=True):
    """Last (valid) element."""
    return _first_last("last", data, ignore_nodata, last=True)


@process("count", ["data", ("condition", None), ("context", None)], kind=ARRAY)
def count(data, condition=None, context=None):
    """Number of valid elements, of all (``condition=True``) or of those matching."""
    a, _ = data_array("count", data)
    if condition is None:
        return to_result(np.count_nonzero(~nodata_mask(a) & _finite(a), axis=0))
    if condition is True:
        return a.shape[0] if a.ndim == 1 else np.full(a.shape[1:], a.shape[0])
    if not callable(condition):
        raise invalid_argument("count", "condition", "expected null, true or a child process")
    if a.shape[0] == 0:
        return 0 if a.ndim == 1 else np.zeros(a.shape[1:], dtype=np.intp)
    matches = condition(x=a, context=context)
    if not isinstance(matches, np.ndarray):
        matches = np.asarray([condition(x=py_value(v), context=context) for v in a])
    return to_result(np.count_nonzero(matches == True, axis=0))  # noqa: E712  (None/NaN: no)


def _finite(a: np.ndarray) -> np.ndarray:
    return np.isfinite(a) if a.dtype.kind == "f" else np.ones(a.shape, dtype=bool)
