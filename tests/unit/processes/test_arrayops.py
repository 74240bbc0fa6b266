"""array_apply, array_filter, sort, order, rearrange, array_interpolate_linear and the text
processes on cube slices and in graphs: compared pixel by pixel with Python references
(``sorted``, list comprehensions) and, through the engine, with rasterio + numpy reads of
the same files (the official cases are in ``test_official_processes.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from tests.support.core import TEST_BOUNDS_32632, reference_stack
from tileserver.datacube.view import View
from tileserver.errors import ProcessArgumentInvalid, ProcessGraphError
from tileserver.processes import ARRAY_PROCESSES, REGISTRY
from tileserver.processes.array import LabeledArray
from tileserver.processes.callbacks import ChildProcess, params_read

L, B, R, T = TEST_BOUNDS_32632
#: A full-resolution (10 m) window, so that the references read the same pixels.
VIEW = View("EPSG:32632", (L + 1000, B + 1000, L + 2200, B + 2000), 120, 100)


def run(pid, **kwargs):
    return ARRAY_PROCESSES[pid].fn(**kwargs)


def child(nodes: dict, params=("x", "index", "label", "context")) -> ChildProcess:
    """A child process graph parsed by the engine's parser, as callbacks receive it."""
    from tileserver.graph.v1 import FlatGraphParser

    parser = FlatGraphParser(REGISTRY)
    root = parser._graph(nodes, "cb.", tuple(params), 1)
    from tileserver.graph.nodes import Callback

    return ChildProcess(Callback(root, tuple(params), "cb"))


def p(name):
    return {"from_parameter": name}


@pytest.fixture
def stack():
    """(7, 5, 6) float32 with ties, scattered NaN, an all-NaN pixel and a full one."""
    rng = np.random.default_rng(7)
    data = rng.integers(0, 5, size=(7, 5, 6)).astype(np.float32)
    data[rng.random(data.shape) < 0.3] = np.nan
    data[:, 0, 0] = np.nan
    data[:, 1, 1] = np.arange(7)[::-1]
    return data


def _columns(a):
    for y, x in np.ndindex(*a.shape[1:]):
        yield (y, x), [None if math.isnan(v) else float(v) for v in a[:, y, x]]


@pytest.mark.parametrize("asc", [True, False])
@pytest.mark.parametrize("nodata", [None, True, False])
def test_sort_and_order_per_pixel_equal_python(stack, asc, nodata):
    srt = run("sort", data=stack, asc=asc, nodata=nodata)
    order = run("order", data=stack, asc=asc, nodata=nodata)
    assert srt.dtype == np.float32
    for (y, x), column in _columns(stack):
        expected = run("sort", data=column, asc=asc, nodata=nodata)  # the list path
        valid = sorted((v for v in column if v is not None), reverse=not asc)
        holes = [None] * column.count(None)
        assert expected == (valid if nodata is None else
                            valid + holes if nodata else holes + valid)
        got = [None if math.isnan(v) else v for v in srt[:, y, x]]
        assert got[:len(expected)] == expected
        assert all(v is None for v in got[len(expected):])  # padding of shorter pixels
        ranks = [int(i) for i in order[:, y, x] if not math.isnan(i)]
        assert ranks == run("order", data=column, asc=asc, nodata=nodata)
    if nodata is None:
        assert srt.shape[0] == max(len([v for v in c if v is not None])
                                   for _, c in _columns(stack))
    else:
        assert srt.shape == stack.shape


def test_rearrange_by_order_sorts_every_pixel(stack):
    order = run("order", data=stack, asc=False, nodata=True)
    assert_allclose(run("rearrange", data=stack, order=order),
                    run("sort", data=stack, asc=False, nodata=True), equal_nan=True)
    labelled = run("rearrange", data=LabeledArray(stack, ("a", "b", "c", "d", "e", "f", "g")),
                   order=[6, 0])
    assert labelled.labels == ("g", "a")
    assert_allclose(labelled.values, stack[[6, 0]], equal_nan=True)
    with pytest.raises(ProcessArgumentInvalid):
        run("rearrange", data=[1, 2], order=[2])


def test_array_apply_runs_once_on_the_whole_array_unless_it_reads_index_or_label(
        stack, monkeypatch):
    import tileserver.processes.callbacks as callbacks

    shapes = []
    real = callbacks.run_callback

    def counting(callback, bindings):
        shapes.append(np.shape(bindings["x"]))
        return real(callback, bindings)

    monkeypatch.setattr(callbacks, "run_callback", counting)
    scale = child({"m": {"process_id": "multiply", "arguments": {"x": p("x"), "y": p(
        "context")}, "result": True}})
    assert scale.reads == {"x", "context"}
    out = run("array_apply", data=stack, process=scale, context=2.5)
    assert shapes == [stack.shape]  # one call on the whole (n, y, x) array
    assert_allclose(out, stack * 2.5, equal_nan=True)
    # a plain function (no 'reads'): once per element, on (y, x) slices
    out = run("array_apply", data=stack, process=lambda **kw: scale(**kw), context=2.5)
    assert shapes[1:] == [stack.shape[1:]] * len(stack)
    assert_allclose(out, stack * 2.5, equal_nan=True)

    by_index = child({"a": {"process_id": "add", "arguments": {"x": p("x"), "y": p("index")},
                            "result": True}})
    assert "index" in by_index.reads
    out = run("array_apply", data=LabeledArray(stack, tuple("abcdefg")), process=by_index)
    assert out.labels == tuple("abcdefg")
    assert_allclose(out.values, stack + np.arange(7)[:, None, None], equal_nan=True)


def test_array_filter_by_label_keeps_elements_and_by_value_compacts(stack):
    labels = ("B01", "B02", "B8A", "B03", "B11", "B04", "B08")
    by_name = child({"t": {"process_id": "text_begins", "arguments": {
        "data": p("label"), "pattern": "b0", "case_sensitive": False}, "result": True}})
    out = run("array_filter", data=LabeledArray(stack, labels), condition=by_name)
    keep = [i for i, b in enumerate(labels) if b.startswith("B0")]
    assert out.labels == tuple(labels[i] for i in keep)
    assert_allclose(out.values, stack[keep], equal_nan=True)

    over_two = child({"g": {"process_id": "gt", "arguments": {"x": p("x"), "y": 2},
                            "result": True}})
    out = run("array_filter", data=stack, condition=over_two)
    for (y, x), column in _columns(stack):
        kept = [v for v in column if v is not None and v > 2]
        got = [None if math.isnan(v) else v for v in out[:, y, x]]
        assert got == kept + [None] * (len(out) - len(kept))
    assert len(out) == max(sum(1 for v in c if v is not None and v > 2)
                           for _, c in _columns(stack))


def test_interpolate_linear_per_pixel(stack):
    out = run("array_interpolate_linear", data=stack)
    for (y, x), column in _columns(stack):
        known = [(i, v) for i, v in enumerate(column) if v is not None]
        for i, v in enumerate(column):
            if v is not None:
                expected = v
            elif len(known) >= 2 and known[0][0] < i < known[-1][0]:
                (i0, v0), (i1, v1) = max(k for k in known if k[0] < i), min(
                    k for k in known if k[0] > i)
                expected = v0 + (v1 - v0) * (i - i0) / (i1 - i0)
            else:
                expected = None
            got = out[i, y, x]
            assert (expected is None and math.isnan(got)) or abs(got - expected) < 1e-5


def test_interpolate_linear_along_dates_weighs_by_time():
    """Date labels (a time series in apply_dimension) are the x axis: a gap of 1 day
    before and 3 days after gets 3/4 of the first value plus 1/4 of the next."""
    days = ("2020-05-01T00:00:00Z", "2020-05-02T00:00:00Z", "2020-05-05T00:00:00Z")
    stack = np.array([[[0.0]], [[np.nan]], [[8.0]]], dtype=np.float32)
    out = run("array_interpolate_linear", data=LabeledArray(stack, days))
    assert out.labels == days
    assert out.values[1, 0, 0] == pytest.approx(2.0)
    by_index = run("array_interpolate_linear", data=stack)
    assert by_index[1, 0, 0] == pytest.approx(4.0)


def test_text_processes_and_their_errors():
    assert run("text_contains", data="S2B_MSIL2A", pattern="msi", case_sensitive=False)
    assert run("text_ends", data=None, pattern="x") is None
    assert run("text_concat", data=["B04", 2, 0.5, None], separator="_") == "B04_2_0.5_null"
    for pid, kwargs in [("text_begins", {"data": 1, "pattern": "a"}),
                        ("text_begins", {"data": "a", "pattern": None}),
                        ("text_concat", {"data": [[1]]}),
                        ("sort", {"data": [1, "a"]}),
                        ("sort", {"data": [1], "asc": "yes"}),
                        ("array_apply", {"data": [1], "process": 3})]:
        with pytest.raises(ProcessArgumentInvalid):
            run(pid, **kwargs)


def test_params_read_sees_only_its_own_parameters():
    inner = child({"a": {"process_id": "array_apply", "arguments": {
        "data": p("x"), "process": {"process_graph": {"l": {
            "process_id": "constant", "arguments": {"x": p("label")}, "result": True}}}},
        "result": True}})
    assert inner.reads == {"x"}
    assert params_read(inner.callback) == {"x"}


# --- in graphs, through the engine ----------------------------------------------------------


def _graph(*nodes: tuple[str, str, dict]) -> dict:
    out = {nid: {"process_id": pid, "arguments": args} for nid, pid, args in nodes}
    out[nodes[-1][0]]["result"] = True
    return out


def _load(bands):
    return ("load", "load_collection", {"id": "TEST", "bands": bands})


def _callback(pid: str, **args) -> dict:
    return {"process_graph": {"c": {"process_id": pid, "arguments": {"data": p("data"),
                                                                       **args},
                                    "result": True}}}


def test_apply_dimension_sorts_time_series(engine, small_catalog):
    g = engine.parse(_graph(_load(["B04"]), ("s", "apply_dimension", {
        "data": {"from_node": "load"}, "dimension": "t",
        "process": _callback("sort", asc=False, nodata=True)})))
    cube = engine.evaluate(g, VIEW)
    _, ref = reference_stack(small_catalog, "TEST", VIEW, ["B04"])
    ref = ref[:, 0]
    expected = -np.sort(-ref, axis=0)  # descending, NaN last
    assert cube.data.shape == (len(ref), 1, VIEW.height, VIEW.width)
    assert_allclose(cube.data[:, 0], expected, rtol=1e-6, equal_nan=True)
    assert np.isnan(ref).any() and not np.allclose(cube.data[:, 0], ref, equal_nan=True)


def test_apply_dimension_t_into_bands(engine, small_catalog):
    """The time series of one band become bands 0, 1, 2 (quartiles), renamed afterwards."""
    g = engine.parse(_graph(_load(["B08"]), ("q", "apply_dimension", {
        "data": {"from_node": "load"}, "dimension": "t", "target_dimension": "bands",
        "process": _callback("quantiles", probabilities=[0.25, 0.5, 0.75])}),
        ("r", "rename_labels", {"data": {"from_node": "q"}, "dimension": "bands",
                                "target": ["q1", "median", "q3"], "source": [0, 1, 2]})))
    assert g.meta.reduced and g.meta.bands == ("q1", "median", "q3")
    assert engine.times(g) is None
    cube = engine.evaluate(g, VIEW)
    _, ref = reference_stack(small_catalog, "TEST", VIEW, ["B08"])
    expected = np.nanquantile(ref[:, 0], [0.25, 0.5, 0.75], axis=0)
    assert np.isnan(ref).any()
    assert cube.times is None and cube.bands == ("q1", "median", "q3")
    assert_allclose(cube.data[0], expected, rtol=1e-5, equal_nan=True)


def test_apply_dimension_over_bands_with_a_new_number_of_values(engine, small_catalog):
    """array_filter by band name inside apply_dimension: the labels become 0, 1, …"""
    g = engine.parse(_graph(_load(["B04", "B08", "B11"]), ("f", "apply_dimension", {
        "data": {"from_node": "load"}, "dimension": "bands",
        "process": {"process_graph": {"f": {"process_id": "array_filter", "arguments": {
            "data": p("data"), "condition": {"process_graph": {"t": {
                "process_id": "text_ends", "arguments": {"data": p("label"),
                                                         "pattern": "8"},
                "result": True}}}}, "result": True}}}})))
    assert g.meta.bands == ("0",)
    cube = engine.evaluate(g, VIEW)
    _, ref = reference_stack(small_catalog, "TEST", VIEW, ["B08"])
    assert_allclose(cube.data, ref, rtol=1e-6, equal_nan=True)


def test_apply_dimension_t_into_a_new_dimension(engine, small_catalog):
    """NDVI (no bands dimension left) over t into a new dimension 'stats' (min, mean, max:
    an array of reducers), then reduced over 'stats' by label."""
    stats = {"process_graph": {
        "mn": {"process_id": "min", "arguments": {"data": p("data")}},
        "me": {"process_id": "mean", "arguments": {"data": p("data")}},
        "mx": {"process_id": "max", "arguments": {"data": p("data")}},
        "a": {"process_id": "array_create", "arguments": {"data": [
            {"from_node": "mn"}, {"from_node": "me"}, {"from_node": "mx"}]}, "result": True}}}
    nodes = _graph(_load(["B04", "B08"]),
                   ("nd", "ndvi", {"data": {"from_node": "load"}}),
                   ("s", "apply_dimension", {"data": {"from_node": "nd"}, "dimension": "t",
                                             "target_dimension": "stats", "process": stats}),
                   ("r", "rename_labels", {"data": {"from_node": "s"}, "dimension": "stats",
                                           "target": ["min", "mean", "max"]}))
    g = engine.parse(nodes)
    assert (g.meta.band_dim, g.meta.bands, g.meta.reduced) == ("stats", ("min", "mean",
                                                                         "max"), True)
    cube = engine.evaluate(g, VIEW)
    _, ref = reference_stack(small_catalog, "TEST", VIEW, ["B04", "B08"])
    with np.errstate(all="ignore"):
        nd = (ref[:, 1] - ref[:, 0]) / (ref[:, 1] + ref[:, 0])
    expected = np.stack([np.nanmin(nd, 0), np.nanmean(nd, 0), np.nanmax(nd, 0)])
    assert_allclose(cube.data[0], expected, rtol=1e-5, atol=1e-6, equal_nan=True)
    spread = dict(nodes)
    spread["r"] = {**nodes["r"], "result": False}
    spread["d"] = {"process_id": "reduce_dimension", "arguments": {
        "data": {"from_node": "r"}, "dimension": "stats", "reducer": {"process_graph": {
            "hi": {"process_id": "array_element", "arguments": {"data": p("data"),
                                                                "label": "max"}},
            "lo": {"process_id": "array_element", "arguments": {"data": p("data"),
                                                                "label": "min"}},
            "s": {"process_id": "subtract", "arguments": {"x": {"from_node": "hi"},
                                                          "y": {"from_node": "lo"}},
                  "result": True}}}}, "result": True}
    cube = engine.evaluate(engine.parse(spread), VIEW)
    assert_allclose(cube.data[0, 0], expected[2] - expected[0], rtol=1e-5, atol=1e-6,
                    equal_nan=True)
    # 'stats' is not a bands dimension: filter_bands has none to filter
    nodes["f"] = {"process_id": "filter_bands", "arguments": {
        "data": {"from_node": "s"}, "bands": ["0"]}, "result": True}
    nodes["r"]["result"] = False
    with pytest.raises(ProcessGraphError) as info:
        engine.parse(nodes)
    assert info.value.code == "DimensionMissing"


@pytest.mark.parametrize(("args", "words"), [
    ({"target_dimension": "stats"}, "cannot create the dimension 'stats' beside 'bands'"),
    ({"target_dimension": "t", "dimension": "bands"}, "labels are dates"),
])
def test_apply_dimension_targets_the_model_cannot_hold(engine, args, words):
    nodes = _graph(_load(["B04", "B08"]), ("a", "apply_dimension", {
        "data": {"from_node": "load"}, "dimension": "t",
        "process": _callback("extrema"), **args}))
    with pytest.raises(ProcessArgumentInvalid) as info:
        engine.parse(nodes)
    assert words in info.value.message


def test_apply_dimension_t_into_bands_needs_one_band_and_a_fixed_count(engine):
    two_bands = _graph(_load(["B04", "B08"]), ("a", "apply_dimension", {
        "data": {"from_node": "load"}, "dimension": "t", "target_dimension": "bands",
        "process": _callback("extrema")}))
    with pytest.raises(ProcessArgumentInvalid, match="must have one band"):
        engine.parse(two_bands)
    per_date = _graph(_load(["B04"]), ("a", "apply_dimension", {
        "data": {"from_node": "load"}, "dimension": "t", "target_dimension": "bands",
        "process": _callback("sort")}))
    with pytest.raises(ProcessArgumentInvalid, match="does not depend on the number of"):
        engine.parse(per_date)
    by_date = _graph(_load(["B04"]), ("a", "apply_dimension", {
        "data": {"from_node": "load"}, "dimension": "t", "target_dimension": "bands",
        "process": _callback("array_element", label="2020-05-01T00:00:00Z")}))
    with pytest.raises(ProcessArgumentInvalid, match="must be known from the graph"):
        engine.parse(by_date)


def test_apply_dimension_with_a_reducer_gives_one_value(engine, small_catalog):
    """A reducer (one value, not an array) as the process: one label along the target."""
    g = engine.parse(_graph(_load(["B08"]), ("a", "apply_dimension", {
        "data": {"from_node": "load"}, "dimension": "t", "target_dimension": "bands",
        "process": _callback("max")})))
    assert g.meta.bands == ("0",)
    cube = engine.evaluate(g, VIEW)
    _, ref = reference_stack(small_catalog, "TEST", VIEW, ["B08"])
    assert_allclose(cube.data[0], np.nanmax(ref[:, 0], axis=0)[None], equal_nan=True)


def test_apply_dimension_over_t_must_keep_one_value_per_date(engine):
    g = engine.parse(_graph(_load(["B04"]), ("a", "apply_dimension", {
        "data": {"from_node": "load"}, "dimension": "t",
        "process": _callback("extrema")})))
    with pytest.raises(ProcessGraphError, match="values along t where"):
        engine.evaluate(g, VIEW)
