"""The openEO array/scalar process library against the OFFICIAL process tests and descriptions.

Every case of ``../shared/openeo/processes/tests/<id>.json5`` (Open-EO/openeo-processes
2.0.0-rc.2) runs for every process of ``ARRAY_PROCESSES``: as written (scalars and JSON
arrays), and again through the code path cubes take (the first numeric argument of an
elementwise process as a float32/float64 array; a reducer's ``data`` as an ``(n, 2, 3)``
stack whose every pixel must give the case's answer).

Representation (see ``arraylib``): null is ``None``; inside float arrays no-data is NaN, so
an array result of NaN is accepted where the case expects null. A case expecting an
exception must raise ``ProcessArgumentInvalid`` with the exception's name as ``code``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.support.openeo import REPO, shared_openeo
from tests.support.requirements import requires
from tileserver.errors import ProcessArgumentInvalid
from tileserver.processes import ARRAY_PROCESSES
from tileserver.processes.array import LabeledArray

json5 = pytest.importorskip("json5")

# Known deviations, with the reason (process id, index of the case in its file): they run
# as xfail(strict=True), so a case that starts passing fails the run until it is removed here.
NAN_IS_NODATA = ("tileserver keeps no-data as NaN inside float arrays (the cubes' convention, "
                 "as for GDAL float nodata), so a NaN element of an array is no-data and is "
                 "ignored like null; the case expects it to propagate as a real NaN")
DEVIATIONS: dict[tuple[str, int], str] = {
    ("mean", 6): NAN_IS_NODATA,
    ("median", 5): NAN_IS_NODATA,
    ("min", 3): NAN_IS_NODATA,
    ("max", 3): NAN_IS_NODATA,
    ("extrema", 3): NAN_IS_NODATA,
    ("sum", 7): NAN_IS_NODATA,
    ("product", 7): NAN_IS_NODATA,
    ("quantiles", 7): NAN_IS_NODATA,
    ("first", 6): NAN_IS_NODATA,
    ("last", 6): NAN_IS_NODATA,
    # cases that contradict the specification they test (release 2.0.0-rc.2)
    ("array_element", 3): "asks for label 'BO2' (letter O) of an array labelled B01, B02, B03 "
                          "and expects the element of 'B02': the label does not exist, so "
                          "the process must throw ArrayElementNotAvailable (as case 8 does "
                          "for 'BO4')",
    ("array_find", 6): "expects index 1 for value 3 in the labelled array [3, 4]: the value is "
                       "at index 0 (array_find returns the zero-based index)",
    ("count", 4): "its condition reads parameter 'element', but count's condition callback "
                  "has the parameters 'x' and 'context' (count.json), so the graph is invalid",
    ("count", 5): "its condition reads parameter 'element', but count's condition callback "
                  "has the parameters 'x' and 'context' (count.json), so the graph is invalid",
    ("lte", 15): "expects lte(+inf, +inf) = false, but the process follows IEEE 754, where "
                 "+inf <= +inf is true (gte.json5 expects true for gte(+inf, +inf))",
    ("all", 8): "expects true for all([null], ignore_nodata=false), but the truth table of "
                "all.json reduces a lone no-data value to no-data",
    ("any", 8): "expects false for any([null], ignore_nodata=false), but the truth table of "
                "any.json reduces a lone no-data value to no-data",
    ("array_append", 0): "expects [1] for appending 0 to an empty array; the result is [0]",
    ("product", 10): "expects NaN for 1 * -inf * 3 * +inf, but the process follows IEEE 754, "
                     "where -inf * +inf is -inf (the case copies sum's inf + -inf = NaN)",
    ("array_apply", 8): "its graph calls the process 'mulitply' (a typo of multiply), which "
                        "does not exist, so the graph is invalid",
    ("array_filter", 5): "its condition (subtract) returns numbers, but array_filter's "
                         "condition must return a boolean (array_filter.json); the case "
                         "expects 0.23 to count as true and -0.02 as false",
}

# Arguments some cases name differently from the process description: the cases of
# array_filter pass their child process as 'process' (as array_apply's do), but
# array_filter.json names it 'condition'. They run with the description's name.
RENAMED_ARGUMENTS = {("array_filter", "process"): "condition"}

# Processes on texts: cubes hold numbers, so there is no cube code path to run them on.
TEXT_ONLY = {"text_concat"}

# Known deviations of the cube code path (xfail(strict=True) too): the scalar ones, and these.
NAN_COMPARED = NAN_IS_NODATA + " (a comparison with a NaN argument is false for numbers, " \
                               "no-data in an array)"
DEVIATIONS_ON_ARRAYS: dict[tuple[str, int], str] = {
    **DEVIATIONS,
    ("array_apply", 3): NAN_IS_NODATA + " (gt(NaN, 1) is false for a number, no-data in an "
                        "array)",
    **{(pid, i): NAN_COMPARED for pid, cases in (
        ("eq", (13, 14, 15)), ("neq", (13, 14, 15)), ("gt", (10, 11, 12)), ("lt", (10, 11, 12)),
        ("gte", (12, 13, 14)), ("lte", (12, 13, 14))) for i in cases},
}


def _tests_dir():
    env_dir = None
    try:
        env_dir = shared_openeo() / "processes" / "tests"
    except pytest.skip.Exception:
        return None
    return env_dir


def _cases():
    folder = _tests_dir()
    if folder is None:
        return [pytest.param(None, None, None, marks=requires("openeo-shared"))]
    out = []
    for pid in sorted(ARRAY_PROCESSES):
        doc = json5.loads((folder / f"{pid}.json5").read_text(encoding="utf-8"))
        for i, case in enumerate(doc["tests"]):
            marks = ()
            if (pid, i) in DEVIATIONS:
                marks = (pytest.mark.xfail(reason=DEVIATIONS[(pid, i)], strict=True),)
            out.append(pytest.param(pid, i, case, id=f"{pid}-{i}", marks=marks))
    return out


# --- converting the JSON5 values -------------------------------------------------------


def _callback(graph: dict):
    """A child process graph as the Python callable the library expects."""
    nodes = graph.get("process_graph", graph)

    def run(**params):
        done: dict[str, object] = {}

        def value(arg):
            if isinstance(arg, dict):
                if "from_parameter" in arg:
                    return params[arg["from_parameter"]]
                if "from_argument" in arg:  # the pre-1.0 name, still in a few cases
                    return params[arg["from_argument"]]
                if "from_node" in arg:
                    return node(arg["from_node"])
                return {k: value(v) for k, v in arg.items()}
            if isinstance(arg, list):
                return [value(v) for v in arg]
            return arg

        def node(nid):
            if nid not in done:
                spec = nodes[nid]
                args = {k: value(v) for k, v in spec["arguments"].items()}
                done[nid] = ARRAY_PROCESSES[spec["process_id"]].fn(**args)
            return done[nid]

        (result,) = [nid for nid, n in nodes.items() if n.get("result")]
        return node(result)

    return run


def _is_graph(v) -> bool:
    if "process_graph" in v:
        return True
    return bool(v) and all(isinstance(n, dict) and "process_id" in n for n in v.values())


def convert(v):
    """A JSON5 argument as the library takes it."""
    if isinstance(v, dict):
        kind = v.get("type")
        if kind == "nodata":
            return None
        if kind == "labeled-array":
            return LabeledArray([convert(e["value"]) for e in v["data"]],
                                tuple(e["key"] for e in v["data"]))
        if kind == "datetime":
            pytest.fail("datetime arguments are not used by the library's processes")
        if _is_graph(v):
            return _callback(v)
        return {k: convert(x) for k, x in v.items()}
    if isinstance(v, list):
        return [convert(x) for x in v]
    return v


def _key_value_list(v) -> bool:
    return isinstance(v, list) and bool(v) and all(
        isinstance(e, dict) and set(e) == {"key", "value"} for e in v)


def _nodata(v) -> bool:
    return isinstance(v, dict) and v.get("type") == "nodata"


def check(actual, expected, delta: float, *, array_result: bool, where: str = "") -> None:
    """``actual`` equals the case's ``expected`` (numbers within ``delta``)."""
    if isinstance(actual, np.ndarray):
        actual = actual.tolist()
    elif isinstance(actual, np.generic):
        actual = actual.item()
    if expected is None or _nodata(expected):
        ok = actual is None or (array_result and isinstance(actual, float) and math.isnan(actual))
        assert ok, f"{where}: expected no-data, got {actual!r}"
    elif isinstance(expected, dict) and expected.get("type") == "labeled-array" or (
            _key_value_list(expected)):
        # a labelled array; some cases write it as the bare list of its key/value pairs
        items = expected["data"] if isinstance(expected, dict) else expected
        assert isinstance(actual, LabeledArray), f"{where}: expected a labelled array"
        assert list(actual.labels) == [e["key"] for e in items], where
        check(list(actual.values) if not isinstance(actual.values, np.ndarray)
              else actual.values, [e["value"] for e in items], delta,
              array_result=array_result, where=f"{where}.values")
    elif isinstance(expected, list) and isinstance(actual, LabeledArray):
        # a labelled array where the case writes a plain array: its values are compared
        check(actual.values, expected, delta, array_result=array_result, where=where)
    elif isinstance(expected, bool):
        assert isinstance(actual, bool) and actual == expected, \
            f"{where}: expected {expected!r}, got {actual!r}"
    elif isinstance(expected, (int, float)):
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), \
            f"{where}: expected the number {expected!r}, got {actual!r}"
        if math.isnan(expected):
            assert math.isnan(actual), f"{where}: expected NaN, got {actual!r}"
        elif math.isinf(expected):
            assert actual == expected, f"{where}: expected {expected!r}, got {actual!r}"
        else:
            assert abs(actual - expected) <= delta, \
                f"{where}: expected {expected!r} ± {delta}, got {actual!r}"
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), \
            f"{where}: expected {expected!r}, got {actual!r}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            check(a, e, delta, array_result=array_result, where=f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: expected {expected!r}, got {actual!r}"


def _arguments(pid: str, case: dict) -> dict:
    return {RENAMED_ARGUMENTS.get((pid, k), k): convert(v)
            for k, v in case["arguments"].items()}


def _call(pid: str, args: dict):
    return ARRAY_PROCESSES[pid].fn(**args)


def _is_reducer(pid: str) -> bool:
    return any(p.name == "data" for p in ARRAY_PROCESSES[pid].params)


# --- the official cases ----------------------------------------------------------------


@pytest.mark.parametrize(("pid", "index", "case"), _cases())
def test_official_case(pid, index, case):
    args = _arguments(pid, case)
    delta = case.get("delta", 1e-10)
    throws = case.get("throws")
    if throws and "returns" not in case:
        with pytest.raises(ProcessArgumentInvalid) as info:
            _call(pid, args)
        if isinstance(throws, str):
            assert info.value.code == throws
        return
    try:
        actual = _call(pid, args)
    except ProcessArgumentInvalid as exc:
        # a case with both `returns` and `throws` accepts either
        assert throws and (throws is True or exc.code == throws), exc
        return
    check(actual, case["returns"], delta, array_result=_is_reducer(pid), where=f"{pid}#{index}")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cube_variants():
    """Cases that the cube code path can also run: elementwise processes with their first
    argument (a number in the case) as an array, reducers over a stack of pixels; in float64
    and in float32, except (float32) an input that float32 cannot hold exactly in a case whose
    answer is discrete (a boolean, or a rounding): there the float32 input may lie across the
    decision boundary, e.g. 0.99999999999 becomes 1.0."""
    out = []
    for param in _cases():
        pid, index, case = param.values
        # not applicable: no expected value (only an exception, or nothing to compare), or
        # a process on texts (cubes hold numbers); see also the argument checks below
        if case is None or "returns" not in case or pid in TEXT_ONLY:
            continue
        reason = DEVIATIONS_ON_ARRAYS.get((pid, index))
        args = case["arguments"]
        marks = () if reason is None else (pytest.mark.xfail(reason=reason, strict=True),)
        if _is_reducer(pid):
            data = args.get("data")
            if not (isinstance(data, list) and data
                    and all(_number(v) or _nodata(v) for v in data)):
                continue
            values = [v for v in data if _number(v)]
        else:
            params = ARRAY_PROCESSES[pid].params
            if not (params and _number(args.get(params[0].name))):
                continue
            values = [args[params[0].name]]
        expected = case["returns"]
        inexact = any(float(np.float32(v)) != v for v in values)
        for dtype in (np.float64, np.float32):
            if dtype is np.float32 and inexact and (isinstance(expected, bool)
                                                    or pid in DISCRETE):
                continue
            out.append(pytest.param(pid, index, case, dtype, marks=marks,
                                    id=f"{pid}-{index}-{dtype.__name__}"))
    return out


DISCRETE = {"floor", "ceil", "int", "round", "sgn"}


@pytest.mark.parametrize(("pid", "index", "case", "dtype"), _cube_variants())
def test_official_case_on_arrays(pid, index, case, dtype):
    args = _arguments(pid, case)
    expected = case["returns"]
    delta = case.get("delta", 1e-10)
    if dtype is np.float32:
        delta = max(delta, 1e-5 * max(1.0, _magnitude(expected)))
    if _is_reducer(pid):
        column = np.array([np.nan if v is None else v for v in args["data"]], dtype=dtype)
        args["data"] = np.repeat(column[:, None, None], 6, axis=1).reshape(-1, 2, 3)
    else:
        name = ARRAY_PROCESSES[pid].params[0].name  # where a cube's values go
        args[name] = np.full((2, 3), args[name], dtype=dtype)
    shape = (2, 3)
    try:
        out = _call(pid, args)
    except ProcessArgumentInvalid as exc:
        assert case.get("throws") in (True, exc.code), exc
        return
    assert isinstance(out, np.ndarray), f"an array in gives an array out, got {out!r}"
    if isinstance(expected, list):  # quantiles, extrema: results on a new axis 0
        assert out.shape == (len(expected), *shape)
        cells = [out[(slice(None), *ix)] for ix in np.ndindex(*shape)]
    else:
        assert out.shape == shape
        cells = [out[ix] for ix in np.ndindex(*shape)]
        if out.dtype.kind == "f" and _number(expected) and dtype is np.float32 \
                and pid != "array_find":  # an index, not a value
            assert out.dtype == np.float32, "float32 in must stay float32"
    for i, cell in enumerate(cells):
        check(cell, expected, delta, array_result=True, where=f"{pid}#{index} pixel {i}")


def _magnitude(v) -> float:
    if isinstance(v, list):
        return max((_magnitude(x) for x in v), default=0.0)
    return abs(v) if _number(v) and math.isfinite(v) else 0.0


# --- the official descriptions -----------------------------------------------------------


def test_every_process_has_its_official_description():
    from tileserver.graph.specs import load_spec, spec_ids

    ids = set(spec_ids())
    assert {"load_collection", "reduce_dimension", "ndvi", "save_result"} <= ids
    for pid, proc in sorted(ARRAY_PROCESSES.items()):
        spec = load_spec(pid)
        assert spec is not None, f"no official description of {pid}"
        assert spec["id"] == pid
        names = [p["name"] for p in spec["parameters"]]
        assert [p.name for p in proc.params] == names, pid
        for param, official in zip(proc.params, spec["parameters"], strict=True):
            assert param.required == (not official.get("optional", False)), (pid, param)
            if "default" in official:
                assert param.default == official["default"], (pid, param)


def test_descriptions_are_copies_and_unknown_ids_are_none():
    from tileserver.graph.specs import load_spec

    spec = load_spec("add")
    spec["id"] = "changed"
    assert load_spec("add")["id"] == "add"
    assert load_spec("no_such_process") is None


def test_descriptions_match_the_reference_release():
    """The installed set (openeo-driver's 2.x: 2.0.0-rc.1 and drafts) has the parameters of the
    reference release (2.0.0-rc.2) for every process both have, but the proposal
    apply_polygon (its `polygons` became `geometries` in rc.2)."""
    import json

    from tileserver.graph.specs import load_spec

    reference = shared_openeo() / "processes"
    compared, differ = 0, set()
    for path in sorted(reference.glob("*.json")):
        spec = load_spec(path.stem)
        if spec is None:
            continue
        official = json.loads(path.read_text(encoding="utf-8"))
        if [p["name"] for p in spec["parameters"]] != \
                [p["name"] for p in official["parameters"]]:
            differ.add(path.stem)
        compared += 1
    assert compared >= 100
    assert differ == {"apply_polygon"}


def test_no_description_in_the_repository():
    tracked = [p for p in (REPO / "tileserver").rglob("*.json")]
    assert not tracked, "process descriptions come from PyPI at install time"
