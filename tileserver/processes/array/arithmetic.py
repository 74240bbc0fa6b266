"""Elementwise arithmetic and maths: ``add``, ``multiply``, ``log``, ``round``, ``clip``,
``linear_scale_range``, the constants... (they broadcast their arguments)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from tileserver.processes.array.common import (
    LabeledArray,
    data_array,
    invalid_argument,
    is_number,
    is_scalar,
    nodata_like,
    py_value,
    weak_scalar,
)
from tileserver.processes.registry import ARRAY, process


def _check_number(pid: str, name: str, v) -> None:
    if v is None or is_number(v):
        return
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "fiub":
            return
    raise invalid_argument(pid, name, f"expected a number, got {type(v).__name__}")


def _plain_arrays(values) -> bool:
    """Numeric arrays (at least one) and Python numbers only: nothing to convert or check."""
    seen_array = False
    for v in values:
        t = type(v)
        if t is np.ndarray:
            if not v.ndim or v.dtype.kind not in "fiub":
                return False
            seen_array = True
        elif t is not float and t is not int:
            return False
    return seen_array


def _elementwise(pid: str, names: tuple[str, ...], func, values, *, nodata_in=True):
    """Apply ``func`` to numbers or arrays; a ``None`` argument gives no-data. A labelled
    array (``apply_dimension``'s data) is computed on its values and keeps its labels."""
    if _plain_arrays(values):  # the per-tile case: numeric arrays and Python numbers
        with np.errstate(all="ignore"):
            return func(*values)
    labelled = next((v for v in values if isinstance(v, LabeledArray)), None)
    if labelled is not None:
        values = tuple(data_array(pid, v)[0] if isinstance(v, LabeledArray) else v for v in values)
        return LabeledArray(_elementwise(pid, names, func, values, nodata_in=nodata_in),
                            labelled.labels)
    for name, v in zip(names, values, strict=True):
        _check_number(pid, name, v)
    if all(is_scalar(v) for v in values):
        if nodata_in and any(v is None for v in values):
            return None
        with np.errstate(all="ignore"):
            return py_value(func(*(np.float64(v) for v in values)))
    if nodata_in and any(v is None for v in values):
        return nodata_like(*values)
    with np.errstate(all="ignore"):
        return func(*(weak_scalar(v) for v in values))


def _unary(pid: str, func, name: str = "x"):
    @process(pid, [name], kind=ARRAY)
    def fn(**kw):
        return _elementwise(pid, (name,), func, (kw[name],))

    fn.__name__ = pid
    return fn


def _binary(pid: str, func, names=("x", "y")):
    @process(pid, [*names], kind=ARRAY)
    def fn(**kw):
        return _elementwise(pid, names, func, (kw[names[0]], kw[names[1]]))

    fn.__name__ = pid
    return fn


_binary("add", np.add)
_binary("subtract", np.subtract)
_binary("multiply", np.multiply)
_binary("divide", np.true_divide)
_binary("power", np.power, names=("base", "p"))
_binary("arctan2", np.arctan2, names=("y", "x"))
_unary("absolute", np.abs)
_unary("sqrt", np.sqrt)
_unary("ln", np.log)
_unary("exp", np.exp, name="p")
_unary("sgn", np.sign)
_unary("sin", np.sin)
_unary("cos", np.cos)
_unary("tan", np.tan)
_unary("sinh", np.sinh)
_unary("cosh", np.cosh)
_unary("tanh", np.tanh)
_unary("arcsin", np.arcsin)
_unary("arccos", np.arccos)
_unary("arctan", np.arctan)
_unary("arsinh", np.arcsinh)
_unary("arcosh", np.arccosh)
_unary("artanh", np.arctanh)


def _normalized_difference(x, y):
    return (x - y) / (x + y)


_binary("normalized_difference", _normalized_difference)


@process("log", ["x", "base"], kind=ARRAY)
def log(x, base):
    """Logarithm of ``x`` to ``base``."""
    def func(x, base):
        if is_number(base) and base > 0 and base != 1:  # one division for the whole array,
            return np.log(x) * (1.0 / math.log(base))  # no float64 upcast of float32 x
        return np.log(x) / np.log(np.float64(base) if is_number(base) else base)

    return _elementwise("log", ("x", "base"), func, (x, base))


def _mod(x, y):
    r = np.mod(x, y)
    if np.ndim(r) == 0 and np.ndim(y) == 0:
        if y == 0:
            return np.copysign(np.inf, x) if x != 0 else np.float64(np.nan) * x
        return x if math.isinf(y) and math.isfinite(x) else r
    zero = np.equal(y, 0)
    if np.any(zero):
        r = np.where(zero, np.where(np.equal(x, 0), np.nan, np.copysign(np.inf, x)), r)
    inf_y = np.isinf(y)
    if np.any(inf_y):
        r = np.where(inf_y & np.isfinite(x), x, r)
    return r


_binary("mod", _mod)


def _integer_scalar(v):
    """Python int for finite floats out of floor/ceil/int (they are integers in openEO)."""
    return int(v) if isinstance(v, float) and math.isfinite(v) else v


def _rounding(pid: str, func):
    @process(pid, ["x"], kind=ARRAY)
    def fn(x):
        out = _elementwise(pid, ("x",), func, (x,))
        if pid == "int" and isinstance(out, float) and math.isnan(out):
            return None  # int(NaN) is no-data
        return _integer_scalar(out)

    fn.__name__ = pid
    return fn


_rounding("floor", np.floor)
_rounding("ceil", np.ceil)
_rounding("int", np.trunc)


@process("round", ["x", ("p", 0)], kind=ARRAY)
def round_(x, p=0):
    """Round half to even at ``p`` decimals."""
    if not isinstance(p, numbers.Integral) or isinstance(p, bool):
        raise invalid_argument("round", "p", "expected an integer")
    return _elementwise("round", ("x",), lambda v: np.round(v, int(p)), (x,))


@process("clip", ["x", "min", "max"], kind=ARRAY)
def clip(x, min, max):  # noqa: A002  (the parameter names of the specification)
    """``x`` limited to ``[min, max]``."""
    if is_number(min) and is_number(max) and min > max:
        raise invalid_argument("clip", "max", "min is greater than max", code="MinMaxSwapped")
    return _elementwise("clip", ("x", "min", "max"),
                        lambda v, lo, hi: np.minimum(np.maximum(v, lo), hi), (x, min, max))


@process("linear_scale_range", ["x", "inputMin", "inputMax", ("outputMin", 0), ("outputMax", 1)],
         kind=ARRAY)
def linear_scale_range(x, inputMin, inputMax, outputMin=0, outputMax=1):  # noqa: N803
    """``x`` clipped to the input range and mapped linearly onto the output range."""
    args = (x, inputMin, inputMax, outputMin, outputMax)
    names = ("x", "inputMin", "inputMax", "outputMin", "outputMax")
    if (type(x) is np.ndarray and x.ndim and x.dtype.kind in "fiu"
            and all(type(v) is float or type(v) is int for v in args[1:])):
        # the per-tile case: one new array, changed in place (no float64 upcast of float32)
        i0, i1, o0, o1 = (float(v) for v in args[1:])
        with np.errstate(all="ignore"):
            scale = (o1 - o0) / (i1 - i0) if i1 != i0 else math.nan
            out = np.clip(x, min(i0, i1), max(i0, i1))
            if out.dtype.kind != "f":
                out = out.astype(np.float64)
            out -= i0
            out *= scale
            out += o0
        return out

    def func(v, i0, i1, o0, o1):
        v = np.minimum(np.maximum(v, np.minimum(i0, i1)), np.maximum(i0, i1))
        return ((v - i0) / (i1 - i0)) * (o1 - o0) + o0

    return _elementwise("linear_scale_range", names, func, args)


@process("constant", ["x"], kind=ARRAY)
def constant(x):
    """``x`` itself."""
    return x


@process("pi", [], kind=ARRAY)
def pi():
    """π."""
    return math.pi


@process("e", [], kind=ARRAY)
def e():
    """Euler's number."""
    return math.e


@process("nan", [], kind=ARRAY)
def nan():
    """Not a number."""
    return math.nan
