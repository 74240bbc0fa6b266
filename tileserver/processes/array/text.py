"""The openEO text processes: ``text_begins``, ``text_ends``, ``text_contains`` and
``text_concat``. Texts are Python strings (band names and date labels in callbacks, JSON
values); no-data (``None``) passes through the tests."""

from __future__ import annotations

import json
import math
import numbers

import numpy as np

from tileserver.processes.array.common import invalid_argument, py_value
from tileserver.processes.registry import ARRAY, process


def _text_test(pid: str, test):
    @process(pid, ["data", "pattern", ("case_sensitive", True)], kind=ARRAY)
    def fn(data, pattern, case_sensitive=True):
        if not isinstance(pattern, str):
            raise invalid_argument(pid, "pattern", "expected a string")
        data = py_value(data)
        if data is None:
            return None
        if not isinstance(data, str):
            raise invalid_argument(pid, "data", "expected a string or null")
        if not case_sensitive:
            data, pattern = data.casefold(), pattern.casefold()
        return test(data, pattern)

    fn.__name__ = pid
    return fn


_text_test("text_begins", str.startswith)
_text_test("text_ends", str.endswith)
_text_test("text_contains", str.__contains__)


def _text(pid: str, name: str, v) -> str:
    """The text representation of a string, number, boolean or null (as in JSON)."""
    v = py_value(v)
    if isinstance(v, str):
        return v
    if v is None or isinstance(v, bool):
        return json.dumps(v)
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        f = float(v)
        if not math.isfinite(f):
            return "NaN" if math.isnan(f) else ("Infinity" if f > 0 else "-Infinity")
        return str(int(f)) if f.is_integer() and abs(f) < 2**53 else repr(f)
    raise invalid_argument(pid, name, "expected strings, numbers, booleans or null")


@process("text_concat", ["data", ("separator", "")], kind=ARRAY)
def text_concat(data, separator=""):
    """The elements' texts joined by ``separator``."""
    if hasattr(data, "labels"):
        data = data.values
    if isinstance(data, np.ndarray) and data.ndim == 1:
        data = data.tolist()
    if not isinstance(data, (list, tuple)):
        raise invalid_argument("text_concat", "data", "expected an array")
    sep = _text("text_concat", "separator", separator)
    return sep.join(_text("text_concat", "data", v) for v in data)
