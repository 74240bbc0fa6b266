"""What the array processes share: :class:`LabeledArray` and the value helpers (no-data,
numbers and arrays, argument errors). See :mod:`tileserver.processes.array` for the
conventions."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from tileserver.errors import ProcessArgumentInvalid


@dataclass(frozen=True)
class LabeledArray:
    """An array whose elements along axis 0 have labels (band names, dates)."""

    values: Any
    labels: tuple | None = None

    def __len__(self) -> int:
        return len(self.values)


# --- value helpers -------------------------------------------------------------------


def invalid_argument(pid: str, argument: str, reason: str, code: str | None = None):
    """The 400 of an argument (``code``: the exception name the specification gives)."""
    return ProcessArgumentInvalid(
        f"The argument '{argument}' in process '{pid}' is invalid: {reason}",
        process=pid, argument=argument, code=code)


def is_number(v) -> bool:
    """A real number (bools are not numbers in openEO)."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def is_scalar(v) -> bool:
    """A single value: a number, a boolean, no-data (``None``) or a 0-d array."""
    return v is None or isinstance(v, (numbers.Number, np.bool_)) or (
        isinstance(v, np.ndarray) and v.ndim == 0)


def py_value(v):
    """numpy scalar or 0-d array -> Python scalar; anything else unchanged."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if isinstance(v, np.generic):
        return v.item()
    return v


def weak_scalar(v):
    """A scalar argument for array arithmetic: a Python number (numpy keeps array dtypes)."""
    if isinstance(v, (np.generic, np.ndarray)) and np.ndim(v) == 0:
        return py_value(v)
    return v


def float_dtype(*values) -> np.dtype:
    """The float dtype a result over these values has (float32 stays float32)."""
    arrays = [v for v in values if isinstance(v, np.ndarray)]
    if not arrays:
        return np.dtype(np.float64)
    dt = np.result_type(*arrays)
    return dt if np.issubdtype(dt, np.floating) else np.dtype(np.float64)


def is_array(v) -> bool:
    """A numpy array with at least one axis."""
    return isinstance(v, np.ndarray) and v.ndim > 0


def false_like(*values) -> np.ndarray | bool:
    """An all-false array shaped like the broadcast of the array values (False for none)."""
    if not any(is_array(v) for v in values):
        return False
    return np.zeros(np.broadcast_shapes(*(np.shape(v) for v in values if is_array(v))),
                    dtype=bool)


def nodata_like(*values) -> np.ndarray:
    """A no-data array shaped like the broadcast of the array values."""
    shape = np.broadcast_shapes(*(np.shape(v) for v in values if isinstance(v, np.ndarray)))
    return np.full(shape, np.nan, dtype=float_dtype(*values))


def _list_to_array(items: list) -> np.ndarray:
    """A JSON array as numpy: numbers (and nulls) become float64 with NaN for null; arrays
    (cube slices) are stacked on a new axis 0; anything else is an object array."""
    if any(isinstance(v, np.ndarray) and v.ndim > 0 for v in items):
        arrays = [np.asarray(np.nan if v is None else v) for v in items]
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        dtype = float_dtype(*[a for a in arrays if a.ndim > 0])
        return np.stack([np.broadcast_to(a, shape) for a in arrays]).astype(dtype, copy=False)
    if all(v is None or is_number(v) for v in items):
        return np.array([np.nan if v is None else v for v in items], dtype=np.float64)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def data_array(pid: str, data) -> tuple[np.ndarray, tuple | None]:
    """The values (as an array along axis 0) and labels of a ``data`` argument."""
    labels = None
    if isinstance(data, LabeledArray):
        labels, data = data.labels, data.values
    if isinstance(data, (list, tuple)):
        return _list_to_array(list(data)), labels
    if isinstance(data, np.ndarray) and data.ndim > 0:
        return data, labels
    raise invalid_argument(pid, "data", "expected an array")


def nodata_mask(a: np.ndarray) -> np.ndarray:
    """Where ``a`` holds no-data: NaN in float arrays, None (or NaN) in object arrays."""
    if a.dtype.kind == "f":
        return np.isnan(a)
    if a.dtype.kind == "O":
        return np.frompyfunc(lambda v: v is None or (isinstance(v, float) and v != v), 1, 1)(
            a).astype(bool)
    return np.zeros(a.shape, dtype=bool)


def numeric_array(pid: str, a: np.ndarray) -> np.ndarray:
    """``a`` as a numeric array (object arrays of numbers/None -> float64)."""
    if a.dtype.kind in "fiu":
        return a
    if a.dtype.kind == "O":
        flat = a.ravel()
        if all(v is None or is_number(v) for v in flat):
            return np.array([np.nan if v is None else v for v in flat],
                            dtype=np.float64).reshape(a.shape)
    raise invalid_argument(pid, "data", "expected an array of numbers")


def as_floating(a: np.ndarray) -> np.ndarray:
    """Integer arrays as float64 (so that NaN can mark no-data); float arrays as they are."""
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def to_result(out):
    """A reducer's result: Python scalar for 1-D input, the array otherwise."""
    if isinstance(out, np.ndarray) and out.ndim == 0 or isinstance(out, np.generic):
        return py_value(out)
    return out
