"""The openEO 1.x array and scalar processes (``add``, ``mean``, ``array_element``...), in numpy.

These are the processes that run inside callbacks (``reduce_dimension``'s reducer,
``apply``'s process...). Each is a process of kind ``array`` in the registry
(:mod:`tileserver.processes.registry`), called as ``REGISTRY[pid].fn(**kwargs)`` with the
process's parameter names.

Values
    Arguments are numpy arrays, Python scalars (``int``, ``float``, ``bool``, ``str``),
    ``None`` (the no-data value), JSON lists/dicts (openEO array and object literals) or a
    :class:`LabeledArray`. Inside float arrays no-data is NaN (as in the cubes of
    ``tileserver.datacube.cube``), so an array cannot tell NaN from no-data.

Elementwise processes (``add``, ``gt``, ``linear_scale_range``...)
    broadcast their arguments; a ``float32`` array stays ``float32`` (scalars are applied
    as Python numbers, which numpy treats as "weak"); only Python scalars in means a
    Python scalar out, with ``None`` for no-data.

Array processes (a ``data`` parameter: ``mean``, ``array_element``, ``quantiles``...)
    work along axis 0 of ``data``: a ``(n,)`` array gives a scalar and a ``(n, y, x)`` cube
    slice gives a ``(y, x)`` array (``quantiles``/``extrema`` put their several results
    on a new axis 0). ``ignore_nodata`` is honoured as the specifications say.

Callbacks
    A parameter that takes a child process (``count``'s ``condition``) receives a Python
    callable invoked with the callback's parameters as keywords (``condition(x=..,
    context=..)``).

Invalid arguments raise :class:`tileserver.errors.ProcessArgumentInvalid`, whose ``code``
is the exception name of the process specification where it names one
(``ArrayElementNotAvailable``, ``MinMaxSwapped``...).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from tileserver.errors import ProcessArgumentInvalid
from tileserver.processes.registry import ARRAY, process

__all__ = ["LabeledArray"]


@dataclass(frozen=True)
class LabeledArray:
    """An array whose elements along axis 0 have labels (band names, dates)."""

    values: Any
    labels: tuple | None = None

    def __len__(self) -> int:
        return len(self.values)


# --- value helpers -------------------------------------------------------------------


def _invalid(pid: str, argument: str, reason: str, code: str | None = None):
    return ProcessArgumentInvalid(
        f"The argument '{argument}' in process '{pid}' is invalid: {reason}",
        process=pid, argument=argument, code=code)


def _is_number(v) -> bool:
    """A real number (bools are not numbers in openEO)."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (numbers.Number, np.bool_)) or (
        isinstance(v, np.ndarray) and v.ndim == 0)


def _py(v):
    """numpy scalar or 0-d array -> Python scalar; anything else unchanged."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _weak(v):
    """A scalar argument for array arithmetic: a Python number (numpy keeps array dtypes)."""
    if isinstance(v, (np.generic, np.ndarray)) and np.ndim(v) == 0:
        return _py(v)
    return v


def _float_dtype(*values) -> np.dtype:
    """The float dtype a result over these values has (float32 stays float32)."""
    arrays = [v for v in values if isinstance(v, np.ndarray)]
    if not arrays:
        return np.dtype(np.float64)
    dt = np.result_type(*arrays)
    return dt if np.issubdtype(dt, np.floating) else np.dtype(np.float64)


def _is_array(v) -> bool:
    return isinstance(v, np.ndarray) and v.ndim > 0


def _false_like(*values) -> np.ndarray | bool:
    """An all-false array shaped like the broadcast of the array values (False for none)."""
    if not any(_is_array(v) for v in values):
        return False
    return np.zeros(np.broadcast_shapes(*(np.shape(v) for v in values if _is_array(v))),
                    dtype=bool)


def _nodata_like(*values) -> np.ndarray:
    """A no-data array shaped like the broadcast of the array values."""
    shape = np.broadcast_shapes(*(np.shape(v) for v in values if isinstance(v, np.ndarray)))
    return np.full(shape, np.nan, dtype=_float_dtype(*values))


def _list_to_array(items: list) -> np.ndarray:
    """A JSON array as numpy: numbers (and nulls) become float64 with NaN for null; arrays
    (cube slices) are stacked on a new axis 0; anything else is an object array."""
    if any(isinstance(v, np.ndarray) and v.ndim > 0 for v in items):
        arrays = [np.asarray(np.nan if v is None else v) for v in items]
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        dtype = _float_dtype(*[a for a in arrays if a.ndim > 0])
        return np.stack([np.broadcast_to(a, shape) for a in arrays]).astype(dtype, copy=False)
    if all(v is None or _is_number(v) for v in items):
        return np.array([np.nan if v is None else v for v in items], dtype=np.float64)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _data(pid: str, data) -> tuple[np.ndarray, tuple | None]:
    """The values (as an array along axis 0) and labels of a ``data`` argument."""
    labels = None
    if isinstance(data, LabeledArray):
        labels, data = data.labels, data.values
    if isinstance(data, (list, tuple)):
        return _list_to_array(list(data)), labels
    if isinstance(data, np.ndarray) and data.ndim > 0:
        return data, labels
    raise _invalid(pid, "data", "expected an array")


def _nodata_mask(a: np.ndarray) -> np.ndarray:
    """Where ``a`` holds no-data: NaN in float arrays, None (or NaN) in object arrays."""
    if a.dtype.kind == "f":
        return np.isnan(a)
    if a.dtype.kind == "O":
        return np.frompyfunc(lambda v: v is None or (isinstance(v, float) and v != v), 1, 1)(
            a).astype(bool)
    return np.zeros(a.shape, dtype=bool)


def _numeric(pid: str, a: np.ndarray) -> np.ndarray:
    """``a`` as a numeric array (object arrays of numbers/None -> float64)."""
    if a.dtype.kind in "fiu":
        return a
    if a.dtype.kind == "O":
        flat = a.ravel()
        if all(v is None or _is_number(v) for v in flat):
            return np.array([np.nan if v is None else v for v in flat],
                            dtype=np.float64).reshape(a.shape)
    raise _invalid(pid, "data", "expected an array of numbers")


def _floating(a: np.ndarray) -> np.ndarray:
    """Integer arrays as float64 (so that NaN can mark no-data); float arrays as they are."""
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def _result(out):
    """A reducer's result: Python scalar for 1-D input, the array otherwise."""
    if isinstance(out, np.ndarray) and out.ndim == 0 or isinstance(out, np.generic):
        return _py(out)
    return out


# --- elementwise arithmetic and maths -----------------------------------------------


def _check_number(pid: str, name: str, v) -> None:
    if v is None or _is_number(v):
        return
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "fiub":
            return
    raise _invalid(pid, name, f"expected a number, got {type(v).__name__}")


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
        values = tuple(_data(pid, v)[0] if isinstance(v, LabeledArray) else v for v in values)
        return LabeledArray(_elementwise(pid, names, func, values, nodata_in=nodata_in),
                            labelled.labels)
    for name, v in zip(names, values, strict=True):
        _check_number(pid, name, v)
    if all(_is_scalar(v) for v in values):
        if nodata_in and any(v is None for v in values):
            return None
        with np.errstate(all="ignore"):
            return _py(func(*(np.float64(v) for v in values)))
    if nodata_in and any(v is None for v in values):
        return _nodata_like(*values)
    with np.errstate(all="ignore"):
        return func(*(_weak(v) for v in values))


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
        if _is_number(base) and base > 0 and base != 1:  # one division for the whole array,
            return np.log(x) * (1.0 / math.log(base))  # no float64 upcast of float32 x
        return np.log(x) / np.log(np.float64(base) if _is_number(base) else base)

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
        raise _invalid("round", "p", "expected an integer")
    return _elementwise("round", ("x",), lambda v: np.round(v, int(p)), (x,))


@process("clip", ["x", "min", "max"], kind=ARRAY)
def clip(x, min, max):  # noqa: A002  (the parameter names of the specification)
    """``x`` limited to ``[min, max]``."""
    if _is_number(min) and _is_number(max) and min > max:
        raise _invalid("clip", "max", "min is greater than max", code="MinMaxSwapped")
    return _elementwise("clip", ("x", "min", "max"),
                        lambda v, lo, hi: np.minimum(np.maximum(v, lo), hi), (x, min, max))


@process("linear_scale_range", ["x", "inputMin", "inputMax", ("outputMin", 0), ("outputMax", 1)], kind=ARRAY)
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


# --- comparisons ---------------------------------------------------------------------


def _same_kind(x, y) -> bool:
    """openEO compares only values of one type: numbers with numbers, strings with strings."""
    if isinstance(x, (bool, np.bool_)) or isinstance(y, (bool, np.bool_)):
        return isinstance(x, (bool, np.bool_)) and isinstance(y, (bool, np.bool_))
    if isinstance(x, str) or isinstance(y, str):
        return isinstance(x, str) and isinstance(y, str)
    return True


def _equal(pid: str, x, y, delta, case_sensitive):
    if delta is not None and not _is_number(delta):
        raise _invalid(pid, "delta", "expected a number")
    if x is None or y is None:
        return None if _is_scalar(x) and _is_scalar(y) else _nodata_like(x, y)
    if isinstance(x, (list, dict, LabeledArray)) or isinstance(y, (list, dict, LabeledArray)):
        raise _invalid(pid, "x", "arrays and objects cannot be compared")
    if _is_array(x) or _is_array(y):
        if not all(_is_array(v) or _is_number(v) for v in (x, y)):
            return _false_like(x, y)  # a string or boolean never equals a number
    else:
        if not _same_kind(x, y):
            return False
        if isinstance(x, str):
            if not case_sensitive:
                return x.casefold() == y.casefold()
            return x == y
        if delta is not None and _is_number(x):
            with np.errstate(all="ignore"):
                return bool(abs(np.float64(x) - np.float64(y)) <= delta)
        return bool(x == y)
    xw, yw = _weak(x), _weak(y)
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
            return _nodata_like(x, y)
    if holes is None or not holes.any():
        return out
    result = out.astype(_float_dtype(x, y))
    result[np.broadcast_to(holes, result.shape)] = np.nan
    return result


def _ordering(pid: str, op):
    @process(pid, ["x", "y"], kind=ARRAY)
    def fn(x, y):
        if _is_scalar(x) and _is_scalar(y):
            if x is None or y is None:
                return None
            if not (_is_number(x) and _is_number(y)):
                return False
            return bool(op(np.float64(x), np.float64(y)))
        if not all(v is None or _is_array(v) or _is_number(v) for v in (x, y)):
            return _false_like(x, y)  # only numbers are ordered
        if x is None or y is None:
            return _nodata_like(x, y)
        with np.errstate(all="ignore"):
            return _with_nodata(op(_weak(x), _weak(y)), x, y)

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
        if not (_is_number(bound) or _is_array(bound) and bound.dtype.kind in "fiu"):
            raise _invalid("between", name, "expected a number")
    if x is None:
        return None
    if _is_scalar(x) and not _is_number(x) or isinstance(x, (str, list, dict, LabeledArray)):
        return False
    upper = np.less if exclude_max else np.less_equal
    with np.errstate(all="ignore"):
        if _is_scalar(x) and _is_number(min) and _is_number(max):
            if min > max:
                return False
            return bool(np.float64(x) >= min and upper(np.float64(x), max))
        x = _weak(x)
        return (np.greater_equal(x, _weak(min)) & upper(x, _weak(max))
                & np.less_equal(_weak(min), _weak(max)))


# --- logic ---------------------------------------------------------------------------


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
    raise _invalid(pid, name, "expected a boolean")


def _three_valued(pid: str, x, y, combine):
    (xv, xn), (yv, yn) = _logic_operand(pid, "x", x), _logic_operand(pid, "y", y)
    value, nodata = combine(xv, xn, yv, yn)
    if _is_scalar(x) and _is_scalar(y):
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
    if _is_scalar(x):
        return None if nodata else not v
    if not np.any(nodata):
        return ~v
    out = np.where(v, np.float32(0), np.float32(1))
    out[nodata] = np.nan
    return out


@process("if", ["value", "accept", ("reject", None)], kind=ARRAY)
def if_(value, accept, reject=None):
    """``accept`` where ``value`` is true, else ``reject`` (no-data counts as false)."""
    if _is_scalar(value):
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise _invalid("if", "value", "expected a boolean")
        return accept if value is True or value is np.True_ else reject
    if not isinstance(value, np.ndarray):
        raise _invalid("if", "value", "expected a boolean")
    cond = value if value.dtype == bool else value == 1
    for name, v in (("accept", accept), ("reject", reject)):
        if not (_is_scalar(v) or isinstance(v, np.ndarray)):
            raise _invalid("if", name, "expected a number or an array in an array condition")
    a = np.nan if accept is None else _weak(accept)
    r = np.nan if reject is None else _weak(reject)
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
    x = _py(x)
    return isinstance(x, float) and math.isnan(x)


@process("is_nodata", ["x"], kind=ARRAY)
def is_nodata(x):
    """``x`` is the no-data value (in float arrays: NaN)."""
    if isinstance(x, np.ndarray) and x.ndim:
        return _nodata_mask(x)
    return x is None


@process("is_valid", ["x"], kind=ARRAY)
def is_valid(x):
    """``x`` is neither no-data nor a non-finite number."""
    if isinstance(x, np.ndarray) and x.ndim:
        return np.isfinite(x) if x.dtype.kind == "f" else ~_nodata_mask(x)
    x = _py(x)
    if x is None:
        return False
    return not (isinstance(x, float) and not math.isfinite(x))


@process("is_infinite", ["x"], kind=ARRAY)
def is_infinite(x):
    """``x`` is +∞ or -∞."""
    if isinstance(x, np.ndarray) and x.ndim:
        return np.isinf(x) if x.dtype.kind == "f" else np.zeros(x.shape, dtype=bool)
    x = _py(x)
    return isinstance(x, float) and math.isinf(x)


# --- reducers (along axis 0) ---------------------------------------------------------


def _reducer_input(pid: str, data) -> np.ndarray:
    return _floating(_numeric(pid, _data(pid, data)[0]))


def _nodata_result(a: np.ndarray):
    return _result(np.full(a.shape[1:], np.nan, dtype=a.dtype))


def _minmax(pid: str, data, ignore_nodata, skip_nan, keep_nan):
    a = _reducer_input(pid, data)
    if a.shape[0] == 0:
        return _nodata_result(a)
    return _result((skip_nan if ignore_nodata else keep_nan).reduce(a, axis=0))


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
    a = _reducer_input("extrema", data)
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
    a = _reducer_input("sum", data)
    if a.shape[0] == 0:
        return _nodata_result(a)
    s, n = _sum_count(a, ignore_nodata)
    return _result(_empty_to_nodata(s, n))


@process("product", ["data", ("ignore_nodata", True)], kind=ARRAY)
def product(data, ignore_nodata=True):
    """Product of the values."""
    a = _reducer_input("product", data)
    if a.shape[0] == 0:
        return _nodata_result(a)
    with np.errstate(all="ignore"):
        if not ignore_nodata:
            return _result(np.multiply.reduce(a, axis=0))
        valid = ~np.isnan(a)
        out = np.multiply.reduce(np.where(valid, a, a.dtype.type(1)), axis=0)
        return _result(_empty_to_nodata(out, np.count_nonzero(valid, axis=0)))


def _mean(a: np.ndarray, ignore_nodata: bool):
    s, n = _sum_count(a, ignore_nodata)
    with np.errstate(all="ignore"):
        if n is None:
            return s / a.dtype.type(a.shape[0]), None
        return s / n.astype(a.dtype), n


@process("mean", ["data", ("ignore_nodata", True)], kind=ARRAY)
def mean(data, ignore_nodata=True):
    """Arithmetic mean."""
    a = _reducer_input("mean", data)
    if a.shape[0] == 0:
        return _nodata_result(a)
    return _result(_mean(a, ignore_nodata)[0])


def _variance(pid: str, data, ignore_nodata):
    a = _reducer_input(pid, data)
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
    return _result(_variance("variance", data, ignore_nodata))


@process("sd", ["data", ("ignore_nodata", True)], kind=ARRAY)
def sd(data, ignore_nodata=True):
    """Sample standard deviation."""
    with np.errstate(all="ignore"):
        return _result(np.sqrt(_variance("sd", data, ignore_nodata)))


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
    a = _reducer_input("median", data)
    return _result(_quantiles(a, (0.5,), ignore_nodata)[0])


@process("quantiles", ["data", ("probabilities", None), ("q", None), ("ignore_nodata", True)], kind=ARRAY)
def quantiles(data, probabilities=None, q=None, ignore_nodata=True):
    """Quantiles for ``probabilities`` or the ``q``-quantiles, on a new axis 0."""
    if probabilities is None and q is None:
        raise _invalid("quantiles", "probabilities", "set probabilities or q",
                       code="QuantilesParameterMissing")
    if probabilities is not None and q is not None:
        raise _invalid("quantiles", "q", "set only one of probabilities and q",
                       code="QuantilesParameterConflict")
    if isinstance(probabilities, numbers.Integral) and not isinstance(probabilities, bool):
        probabilities, q = None, probabilities  # the number of intervals (q-quantiles)
        name = "probabilities"
    else:
        name = "q"
    if q is not None:
        if not isinstance(q, numbers.Integral) or isinstance(q, bool) or q < 2:
            raise _invalid("quantiles", name, "expected an integer >= 2")
        probs = [i / q for i in range(1, q)]
    else:
        if not isinstance(probabilities, (list, tuple, np.ndarray)) or not all(
                _is_number(p) and 0 <= p <= 1 for p in probabilities):
            raise _invalid("quantiles", "probabilities", "expected numbers in [0, 1]")
        probs = [float(p) for p in probabilities]
        if any(b < a for a, b in zip(probs, probs[1:], strict=False)):
            raise _invalid("quantiles", "probabilities", "must be ascending",
                           code="AscendingProbabilitiesRequired")
    return _quantiles(_reducer_input("quantiles", data), probs, ignore_nodata)


def _first_last(pid: str, data, ignore_nodata: bool, last: bool):
    a, _ = _data(pid, data)
    if a.shape[0] == 0:
        return None if a.ndim == 1 else np.full(a.shape[1:], np.nan)
    if last:
        a = a[::-1]
    if not ignore_nodata:
        out = a[0]
    else:
        valid = ~_nodata_mask(a)
        idx = np.argmax(valid, axis=0)
        if a.ndim == 1:
            out = a[idx]
        else:
            out = np.take_along_axis(a, idx[None], axis=0)[0]
            if a.dtype.kind in "fO":  # other dtypes have no no-data
                out[~valid.any(axis=0)] = np.nan if a.dtype.kind == "f" else None
            return out
    out = _py(out)
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
    a, _ = _data("count", data)
    if condition is None:
        return _result(np.count_nonzero(~_nodata_mask(a) & _finite(a), axis=0))
    if condition is True:
        return a.shape[0] if a.ndim == 1 else np.full(a.shape[1:], a.shape[0])
    if not callable(condition):
        raise _invalid("count", "condition", "expected null, true or a child process")
    if a.shape[0] == 0:
        return 0 if a.ndim == 1 else np.zeros(a.shape[1:], dtype=np.intp)
    matches = condition(x=a, context=context)
    if not isinstance(matches, np.ndarray):
        matches = np.asarray([condition(x=_py(v), context=context) for v in a])
    return _result(np.count_nonzero(matches == True, axis=0))  # noqa: E712  (None/NaN: no)


def _finite(a: np.ndarray) -> np.ndarray:
    return np.isfinite(a) if a.dtype.kind == "f" else np.ones(a.shape, dtype=bool)


# --- array access --------------------------------------------------------------------


@process("array_element", ["data", ("index", None), ("label", None), ("return_nodata", False)], kind=ARRAY)
def array_element(data, index=None, label=None, return_nodata=False):
    """The element at ``index`` or with ``label`` (along axis 0)."""
    labels = data.labels if isinstance(data, LabeledArray) else None
    values = data.values if isinstance(data, LabeledArray) else data
    if index is None and label is None:
        raise _invalid("array_element", "index", "set index or label",
                       code="ArrayElementParameterMissing")
    if index is not None and label is not None:
        raise _invalid("array_element", "label", "set only one of index and label",
                       code="ArrayElementParameterConflict")
    if not isinstance(values, (list, tuple, np.ndarray)) or np.ndim(values) == 0:
        raise _invalid("array_element", "data", "expected an array")
    n = len(values)
    if label is not None:
        if not isinstance(label, (str, numbers.Real)) or isinstance(label, bool):
            raise _invalid("array_element", "label", "expected a string or a number")
        if labels is None:
            raise _invalid("array_element", "label", "the array has no labels",
                           code="ArrayNotLabeled")
        index = labels.index(label) if label in labels else -1
    elif not isinstance(index, numbers.Integral) or isinstance(index, bool):
        raise _invalid("array_element", "index", "expected an integer")
    if not 0 <= index < n:
        if return_nodata:
            if isinstance(values, np.ndarray) and values.ndim > 1:
                return np.full(values.shape[1:], np.nan, dtype=_float_dtype(values))
            return None
        raise _invalid("array_element", "index" if label is None else "label",
                       f"no element {label if label is not None else index!r}",
                       code="ArrayElementNotAvailable")
    return _py(values[index])


def _array_arg(pid: str, data, name: str = "data"):
    """The values of an array argument (labels dropped); anything else is invalid."""
    values = data.values if isinstance(data, LabeledArray) else data
    if not isinstance(values, (list, tuple, np.ndarray)) or np.ndim(values) == 0:
        raise _invalid(pid, name, "expected an array")
    return values


def _strict_equal(a, b) -> bool:
    """openEO equality of two array elements (no bool/number mixing, no null match)."""
    if a is None or b is None or isinstance(a, (list, dict, np.ndarray)) or isinstance(
            b, (list, dict, np.ndarray)):
        return False
    return _same_kind(a, b) and a == b


@process("array_contains", ["data", "value"], kind=ARRAY)
def array_contains(data, value):
    """Whether ``value`` is in the array (per pixel for cube slices)."""
    values = _array_arg("array_contains", data)
    if isinstance(values, np.ndarray) and values.ndim > 1:
        if value is None or not _is_number(value):
            return np.zeros(values.shape[1:], dtype=bool)
        return np.any(values == _weak(value), axis=0)
    return any(_strict_equal(_py(v), value) for v in values)


@process("array_find", ["data", "value", ("reverse", False)], kind=ARRAY)
def array_find(data, value, reverse=False):
    """Index of the first (last) element equal to ``value``, no-data when none is."""
    values = _array_arg("array_find", data)
    if isinstance(values, np.ndarray) and values.ndim > 1:
        if value is None or not _is_number(value):
            return np.full(values.shape[1:], np.nan)
        match = values == _weak(value)
        if reverse:
            idx = values.shape[0] - 1 - np.argmax(match[::-1], axis=0)
        else:
            idx = np.argmax(match, axis=0)
        return np.where(match.any(axis=0), idx, np.nan)
    items = [_py(v) for v in values]
    order = range(len(items) - 1, -1, -1) if reverse else range(len(items))
    for i in order:
        if _strict_equal(items[i], value):
            return i
    return None


@process("array_create", [("data", []), ("repeat", 1)], kind=ARRAY)
def array_create(data=[], repeat=1):  # noqa: B006  (never mutated)
    """``data`` repeated ``repeat`` times."""
    if not isinstance(repeat, numbers.Integral) or isinstance(repeat, bool) or repeat < 1:
        raise _invalid("array_create", "repeat", "expected an integer >= 1")
    if isinstance(data, np.ndarray):
        return np.concatenate([data] * repeat, axis=0) if repeat > 1 else data
    if not isinstance(data, (list, tuple)):
        raise _invalid("array_create", "data", "expected an array")
    return list(data) * repeat


# --- more array processes ------------------------------------------------------------


def _logic_stack(pid: str, data) -> tuple[np.ndarray, np.ndarray]:
    """(truth, no-data) masks of an array of booleans (bool arrays, 1/0/NaN float arrays
    from logical processes over no-data, or JSON lists of booleans and nulls)."""
    a, _ = _data(pid, data)
    if a.dtype == bool:
        return a, np.zeros(a.shape, dtype=bool)
    if a.dtype.kind == "f":
        return a == 1, np.isnan(a)
    if a.dtype.kind == "O" and all(v is None or isinstance(v, (bool, np.bool_))
                                   for v in a.ravel()):
        return (np.frompyfunc(lambda v: v is True or v is np.True_, 1, 1)(a).astype(bool),
                _nodata_mask(a))
    raise _invalid(pid, "data", "expected an array of booleans")


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
        a = _reducer_input(pid, data)
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
        raise _invalid("array_labels", "data", "expected an array")
    return list(range(len(values)))


def _concat_values(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            return np.concatenate([np.asarray(a), np.asarray(b)], axis=0)
        except ValueError:
            raise _invalid("array_concat", "array2", "its elements do not fit those of "
                           "array1") from None
    return list(a) + list(b)


@process("array_concat", ["array1", "array2"], kind=ARRAY)
def array_concat(array1, array2):
    """``array2`` after ``array1`` (labels kept when both are labelled)."""
    (v1, l1), (v2, l2) = _values_labels(array1), _values_labels(array2)
    for name, v in (("array1", v1), ("array2", v2)):
        if not isinstance(v, (list, tuple, np.ndarray)) or np.ndim(v) == 0:
            raise _invalid("array_concat", name, "expected an array")
    values = _concat_values(v1, v2)
    if l1 is None or l2 is None:
        return values
    if set(l1) & set(l2):
        raise _invalid("array_concat", "array2", "both arrays have a label in common",
                       code="ArrayLabelConflict")
    return LabeledArray(values, tuple(l1) + tuple(l2))


@process("array_append", ["data", "value", ("label", None)], kind=ARRAY)
def array_append(data, value, label=None):
    """``data`` with ``value`` added at the end (with ``label`` for labelled arrays)."""
    values, labels = _values_labels(data)
    if not isinstance(values, (list, tuple, np.ndarray)) or np.ndim(values) == 0:
        raise _invalid("array_append", "data", "expected an array")
    if label is not None and (not isinstance(label, (str, numbers.Real))
                              or isinstance(label, bool)):
        raise _invalid("array_append", "label", "expected a string or a number")
    if labels is None and label is not None:
        raise _invalid("array_append", "label", "the array has no labels",
                       code="ArrayNotLabeled")
    if isinstance(values, np.ndarray):
        item = np.asarray(np.nan if value is None else value)
        try:
            item = np.broadcast_to(item, values.shape[1:])[None]
        except ValueError:
            raise _invalid("array_append", "value", "does not fit the elements of the "
                           "array") from None
        out = np.concatenate([values, item], axis=0)
    else:
        out = [*values, value]
    if labels is None:
        return out
    if label is None:
        label = len(labels)
    if label in labels:
        raise _invalid("array_append", "label", f"the label {label!r} exists",
                       code="LabelExists")
    return LabeledArray(out, (*labels, label))


# the processes that map, filter and order arrays, and the text processes (they register
# themselves in ARRAY_PROCESSES)
from tileserver.processes.array import arrays as arrayops
from tileserver.processes.array import text as texts  # noqa: E402,F401  isort: skip
