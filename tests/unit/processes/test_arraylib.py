"""The process library on cube slices: ``(n, y, x)`` float32 stacks with NaN as no-data,
compared pixel by pixel with Python's ``statistics`` on the valid values (the official cases
are in ``test_official_processes.py``)."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from tileserver.errors import ProcessArgumentInvalid, TileserverError
from tileserver.processes import ARRAY_PROCESSES
from tileserver.processes.array import LabeledArray


def run(pid, **kwargs):
    return ARRAY_PROCESSES[pid].fn(**kwargs)


@pytest.fixture(params=[5, 15], ids=["5-dates", "15-dates"])
def stack(request):
    """(n, 6, 7) float32 with scattered NaN, one all-NaN pixel, one pixel with 1 value and
    one with no NaN (5 and 15 dates: both ways of sorting along axis 0)."""
    rng = np.random.default_rng(42)
    data = rng.normal(0.3, 0.2, size=(request.param, 6, 7)).astype(np.float32)
    data[rng.random(data.shape) < 0.25] = np.nan
    data[:, 0, 0] = np.nan
    data[:, 1, 1] = np.nan
    data[2, 1, 1] = 0.5
    data[:, 2, 2] = np.linspace(0.1, 0.5, request.param)  # no NaN at all
    return data


def _pixels(stack):
    for y, x in np.ndindex(*stack.shape[1:]):
        column = stack[:, y, x].astype(np.float64)
        yield (y, x), [float(v) for v in column if not math.isnan(v)], column


def _quantile7(values, p):
    s = sorted(values)
    h = (len(s) - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (h - lo) * (s[hi] - s[lo])


REFERENCES = {
    "min": lambda v: min(v) if v else None,
    "max": lambda v: max(v) if v else None,
    "sum": lambda v: math.fsum(v) if v else None,
    "product": lambda v: math.prod(v) if v else None,
    "mean": lambda v: statistics.fmean(v) if v else None,
    "median": lambda v: statistics.median(v) if v else None,
    "variance": lambda v: statistics.variance(v) if len(v) > 1 else None,
    "sd": lambda v: statistics.stdev(v) if len(v) > 1 else None,
    "first": lambda v: v[0] if v else None,
    "last": lambda v: v[-1] if v else None,
}


@pytest.mark.parametrize("pid", sorted(REFERENCES))
def test_reducers_per_pixel(stack, pid):
    out = run(pid, data=stack)
    assert out.shape == stack.shape[1:]
    assert out.dtype == np.float32, "float32 cubes stay float32"
    for (y, x), valid, _ in _pixels(stack):
        expected = REFERENCES[pid](valid)
        if expected is None:
            assert math.isnan(out[y, x]), (pid, y, x)
        else:
            assert out[y, x] == pytest.approx(expected, rel=1e-5, abs=1e-6), (pid, y, x)


@pytest.mark.parametrize("pid", ["min", "max", "sum", "mean", "median", "sd", "first", "last"])
def test_reducers_without_ignore_nodata(stack, pid):
    out = run(pid, data=stack, ignore_nodata=False)
    for (y, x), valid, column in _pixels(stack):
        if len(valid) < len(column):
            assert math.isnan(out[y, x]) or pid == "first" and not math.isnan(column[0]) \
                or pid == "last" and not math.isnan(column[-1]), (pid, y, x)
        else:
            expected = REFERENCES[pid](valid)
            assert out[y, x] == pytest.approx(expected, rel=1e-5), (pid, y, x)


def test_count_quantiles_extrema(stack):
    counts = run("count", data=stack)
    everything = run("count", data=stack, condition=True)
    above = run("count", data=stack,
                condition=lambda x, context: run("gt", x=x, y=context), context=0.3)
    q = run("quantiles", data=stack, probabilities=[0.1, 0.5, 0.9])
    ext = run("extrema", data=stack)
    assert q.shape == (3, *stack.shape[1:]) and ext.shape == (2, *stack.shape[1:])
    for (y, x), valid, _ in _pixels(stack):
        assert counts[y, x] == len(valid)
        assert everything[y, x] == stack.shape[0]
        assert above[y, x] == sum(np.float32(v) > np.float32(0.3) for v in valid)
        for i, p in enumerate([0.1, 0.5, 0.9]):
            if valid:
                assert q[i, y, x] == pytest.approx(_quantile7(valid, p), rel=1e-5)
            else:
                assert math.isnan(q[i, y, x])
        if valid:
            assert (ext[0, y, x], ext[1, y, x]) == pytest.approx((min(valid), max(valid)))


def test_band_math_on_a_labelled_band_stack():
    rng = np.random.default_rng(1)
    bands = rng.uniform(0.01, 0.6, size=(3, 16, 16)).astype(np.float32)
    bands[1, 3, 4] = np.nan
    cube = LabeledArray(bands, ("B02", "B04", "B08"))
    red = run("array_element", data=cube, label="B04")
    nir = run("array_element", data=cube, index=2)
    assert np.shares_memory(red, bands), "array_element is a view, not a copy"
    ndvi = run("divide", x=run("subtract", x=nir, y=red), y=run("add", x=nir, y=red))
    also = run("normalized_difference", x=nir, y=red)
    ref = (bands[2].astype(np.float64) - bands[1]) / (bands[2].astype(np.float64) + bands[1])
    assert ndvi.dtype == also.dtype == np.float32
    np.testing.assert_allclose(ndvi, ref, rtol=1e-5)
    np.testing.assert_allclose(also, ref, rtol=1e-5)
    assert math.isnan(ndvi[3, 4])
    scaled = run("linear_scale_range", x=ndvi, inputMin=-1, inputMax=1, outputMax=255)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, (np.clip(ref, -1, 1) + 1) / 2 * 255, rtol=1e-5)
    # missing band: the official exception name as the error code
    with pytest.raises(ProcessArgumentInvalid) as info:
        run("array_element", data=cube, label="B05")
    assert info.value.code == "ArrayElementNotAvailable"
    nodata = run("array_element", data=cube, label="B05", return_nodata=True)
    assert nodata.shape == (16, 16) and np.isnan(nodata).all()


def test_logic_and_if_on_arrays():
    x = np.array([0.1, 0.5, np.nan, 0.9], dtype=np.float32)
    big = run("gt", x=x, y=0.4)  # no-data compared is no-data (gt(null, y) is null)
    assert big.dtype == np.float32 and big[[0, 1, 3]].tolist() == [0, 1, 1]
    assert math.isnan(big[2])
    picked = run("if", value=big, accept=x)
    assert picked.dtype == np.float32
    assert np.isnan(picked[[0, 2]]).all() and picked[[1, 3]].tolist() == pytest.approx([0.5, 0.9])
    big = run("gt", x=np.nan_to_num(x), y=0.4)  # without no-data: booleans
    assert big.dtype == bool and big.tolist() == [False, True, False, True]
    # no-data in a logical array (1/0/NaN): false wins for `and`, true wins for `or`
    logical = np.array([1, 0, np.nan, np.nan], dtype=np.float32)
    both = run("and", x=logical, y=np.array([True, True, False, True]))
    either = run("or", x=logical, y=np.array([False, False, True, False]))
    assert both[:3].tolist() == [1, 0, 0] and math.isnan(both[3])
    assert either[:3].tolist() == [1, 0, 1] and math.isnan(either[3])
    assert run("not", x=big).tolist() == [True, False, True, False]
    assert run("is_nodata", x=x).tolist() == [False, False, True, False]
    assert run("between", x=x, min=0.2, max=0.9, exclude_max=True).tolist() == \
        [False, True, False, False]


def test_elementwise_float32_stays_float32_and_nodata_propagates():
    x = np.array([[1.0, np.nan], [4.0, -1.0]], dtype=np.float32)
    for pid, kwargs in [("add", {"y": 1.5}), ("multiply", {"y": 2}), ("sqrt", {}),
                        ("power", {}), ("log", {"base": 10}), ("clip", {"min": 0, "max": 2}),
                        ("absolute", {}), ("mod", {"y": 3}), ("round", {"p": 1})]:
        args = {"base": x, "p": 2} if pid == "power" else {"x": x, **kwargs}
        out = run(pid, **args)
        assert out.dtype == np.float32, pid
        assert math.isnan(out[0, 1]), pid
    # a no-data scalar against an array: an all-no-data array of the same shape and dtype
    out = run("add", x=x, y=None)
    assert out.shape == x.shape and out.dtype == np.float32 and np.isnan(out).all()


@pytest.mark.parametrize(("pid", "kwargs", "code"), [
    ("add", {"x": "a", "y": 1}, "ProcessArgumentInvalid"),
    ("sqrt", {"x": [1, 2]}, "ProcessArgumentInvalid"),
    ("mean", {"data": 3}, "ProcessArgumentInvalid"),
    ("mean", {"data": ["a", "b"]}, "ProcessArgumentInvalid"),
    ("clip", {"x": np.zeros(3), "min": 2, "max": 1}, "MinMaxSwapped"),
    ("quantiles", {"data": [1, 2], "probabilities": [0.5], "q": 2},
     "QuantilesParameterConflict"),
    ("quantiles", {"data": [1, 2]}, "QuantilesParameterMissing"),
    ("quantiles", {"data": [1, 2], "probabilities": [0.6, 0.5]},
     "AscendingProbabilitiesRequired"),
    ("array_element", {"data": [1, 2], "label": "a"}, "ArrayNotLabeled"),
    ("round", {"x": 1.5, "p": 0.5}, "ProcessArgumentInvalid"),
    ("if", {"value": "yes", "accept": 1}, "ProcessArgumentInvalid"),
])
def test_invalid_arguments_are_client_errors(pid, kwargs, code):
    with pytest.raises(ProcessArgumentInvalid) as info:
        run(pid, **kwargs)
    assert info.value.code == code
    assert isinstance(info.value, TileserverError) and info.value.status == 400
    assert info.value.process == pid
    assert info.value.argument in {p.name for p in ARRAY_PROCESSES[pid].params}


def test_every_registered_process_takes_its_declared_parameters():
    """``fn(**kwargs)`` with the declared names (defaults filled in) never fails on names."""
    import inspect

    for pid, proc in ARRAY_PROCESSES.items():
        sig = inspect.signature(proc.fn)
        names = [p.name for p in proc.params]
        if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            continue
        assert list(sig.parameters) == names, pid
        for param in proc.params:
            if not param.required:
                assert sig.parameters[param.name].default == param.default, (pid, param)


def test_labelled_arrays_and_lists_of_slices():
    """apply_dimension's data (labelled) through elementwise processes keeps its labels; a
    list of band slices is an array along axis 0; integer stacks have no no-data."""
    bands = np.array([[[0.2, 0.4]], [[0.6, np.nan]]], dtype=np.float32)
    data = LabeledArray(bands, ("B04", "B08"))
    scaled = run("linear_scale_range", x=data, inputMin=0, inputMax=0.8, outputMax=100)
    assert isinstance(scaled, LabeledArray) and scaled.labels == ("B04", "B08")
    np.testing.assert_allclose(scaled.values[:, 0, 0], [25, 75], rtol=1e-6)
    assert run("array_element", data=scaled, label="B08").shape == (1, 2)
    mean = run("mean", data=[bands[0], bands[1], None])
    np.testing.assert_allclose(mean, [[0.4, 0.4]], rtol=1e-6)
    ints = np.arange(12).reshape(3, 2, 2)
    assert run("first", data=ints).tolist() == [[0, 1], [2, 3]]
    assert run("last", data=ints).tolist() == [[8, 9], [10, 11]]
    assert run("median", data=ints).tolist() == [[4, 5], [6, 7]]


@pytest.mark.parametrize("n", [1, 2, 3, 12, 13, 40])
def test_quantiles_without_nodata_match_numpy(n):
    """Type 7 is numpy's default ('linear'); both ways of sorting (network, np.sort)."""
    rng = np.random.default_rng(n)
    data = rng.normal(size=(n, 4, 5)).astype(np.float32)
    probs = [0.0, 0.1, 0.5, 0.93, 1.0]
    ref = np.quantile(data.astype(np.float64), probs, axis=0)
    for ignore in (True, False):
        out = run("quantiles", data=data, probabilities=probs, ignore_nodata=ignore)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(run("median", data=data), np.median(data, axis=0), rtol=1e-6)


def test_all_any_and_cumulative_on_stacks(stack):
    flags = run("gt", x=np.nan_to_num(stack, nan=0.0), y=0.3)  # bool: no no-data
    np.testing.assert_array_equal(run("all", data=flags), np.all(flags, axis=0))
    np.testing.assert_array_equal(run("any", data=flags), np.any(flags, axis=0))
    # with no-data in a logical stack (1/0/NaN): the truth tables of all.json / any.json
    logical = np.where(np.isnan(stack), np.nan, flags).astype(np.float32)
    strict_all = run("all", data=logical, ignore_nodata=False)
    strict_any = run("any", data=logical, ignore_nodata=False)
    cums = run("cumsum", data=stack)
    for (y, x), _valid, column in _pixels(stack):
        col = logical[:, y, x]
        truth = [bool(v) for v in col if not math.isnan(v)]
        if not all(truth):
            assert strict_all[y, x] == 0
        else:
            assert (math.isnan(strict_all[y, x]) if len(truth) < len(col)
                    else strict_all[y, x] == 1)
        if any(truth):
            assert strict_any[y, x] == 1
        else:
            assert (math.isnan(strict_any[y, x]) if len(truth) < len(col)
                    else strict_any[y, x] == 0)
        total = 0.0
        for i, v in enumerate(column):
            if math.isnan(v):
                assert math.isnan(cums[i, y, x])
            else:
                total += v
                assert cums[i, y, x] == pytest.approx(total, rel=1e-5, abs=1e-6)


HOSTILE = [None, -1, 1.5, "a", True, [1, None], {}, np.array([1.0, np.nan], np.float32),
           np.ones((2, 2, 2), np.float32), LabeledArray(np.ones((2, 2)), ("a", "b"))]


@pytest.mark.parametrize("pid", sorted(ARRAY_PROCESSES))
def test_any_argument_is_a_result_or_a_client_error(pid):
    """Every combination of hostile values for the first three parameters: a value, or a
    TileserverError (a 4xx) — never another exception (nor a numpy warning)."""
    import itertools

    names = [p.name for p in ARRAY_PROCESSES[pid].params][:3]
    for combo in itertools.product(HOSTILE, repeat=len(names)):
        try:
            run(pid, **dict(zip(names, combo, strict=True)))
        except TileserverError:
            pass
