"""User-defined processes in graphs (``tileserver/graph/udp.py`` and the flat parser): calls
expanded with their parameters bound, values equal to the same graph written inline (and
to a rasterio + numpy reference), cache keys that follow the stored definition, and the
1.x errors of bad calls. The HTTP side (``/process_graphs``, the official client) is in
``test_openeo_client.py`` and ``test_openeo_v1.py``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from numpy.testing import assert_allclose

from tests.support.core import TEST_BOUNDS_32632, ndvi, reference_stack
from tileserver.datacube.view import View
from tileserver.errors import ProcessGraphError
from tileserver.graph import udp
from tileserver.processes import is_predefined

L, B, R, T = TEST_BOUNDS_32632
VIEW = View("EPSG:32632", (L + 1000, B + 1000, L + 2200, B + 2000), 120, 100)


def p(name):
    return {"from_parameter": name}


def ref(node):
    return {"from_node": node}


def graph(*nodes: tuple[str, str, dict], **extra) -> dict:
    out = {nid: {"process_id": pid, "arguments": args} for nid, pid, args in nodes}
    for nid, fields in extra.items():
        out[nid].update(fields)
    out[nodes[-1][0]]["result"] = True
    return out


#: A cube-level process: the NDVI of two bands, scaled.
SCALED_NDVI = {
    "id": "scaled_ndvi",
    "parameters": [
        {"name": "data", "description": "a cube", "schema": {"type": "object",
                                                               "subtype": "datacube"}},
        {"name": "factor", "description": "scale", "schema": {"type": "number"},
         "default": 1, "optional": True},
    ],
    "process_graph": graph(
        ("nd", "ndvi", {"data": p("data"), "red": "B04", "nir": "B08"}),
        ("sc", "apply", {"data": ref("nd"), "process": {"process_graph": graph(
            ("m", "multiply", {"x": p("x"), "y": p("factor")}))}})),
}

#: A process on numbers, used inside callbacks.
OFFSET = {
    "id": "offset",
    "parameters": [{"name": "x", "schema": {"type": "number"}},
                   {"name": "by", "schema": {"type": "number"}}],
    "process_graph": graph(("a", "add", {"x": p("x"), "y": p("by")})),
}


def load(bands=("B04", "B08")):
    return ("load", "load_collection", {"id": "TEST", "bands": list(bands)})


def test_a_cube_process_equals_the_inline_graph_and_numpy(engine, small_catalog):
    called = graph(load(), ("u", "scaled_ndvi", {"data": ref("load"), "factor": 10}),
                   u={"namespace": "user"})
    g = engine.parse(called, processes={"scaled_ndvi": SCALED_NDVI})
    inline = engine.parse(graph(
        load(), ("nd", "ndvi", {"data": ref("load"), "red": "B04", "nir": "B08"}),
        ("sc", "apply", {"data": ref("nd"), "process": {"process_graph": graph(
            ("m", "multiply", {"x": p("x"), "y": 10}))}})))
    assert g.root.hash == inline.root.hash  # one cache entry for both
    assert g.processes == {"scaled_ndvi": SCALED_NDVI}
    cube = engine.evaluate(g, VIEW)
    _, stack = reference_stack(small_catalog, "TEST", VIEW, ["B04", "B08"])
    assert_allclose(cube.data[:, 0], 10 * ndvi(stack[:, 0], stack[:, 1]), rtol=1e-5,
                    atol=1e-6, equal_nan=True)
    # the default factor (1), and no namespace: no predefined process has this id
    plain = copy.deepcopy(called)
    del plain["u"]["namespace"], plain["u"]["arguments"]["factor"]
    cube1 = engine.evaluate(engine.parse(plain, processes={"scaled_ndvi": SCALED_NDVI}), VIEW)
    assert_allclose(cube1.data * 10, cube.data, rtol=1e-5, equal_nan=True)


def test_a_number_process_inside_a_callback(engine, small_catalog):
    g = engine.parse(graph(load(["B08"]), ("ap", "apply", {
        "data": ref("load"), "process": {"process_graph": graph(
            ("o", "offset", {"x": p("x"), "by": p("context")}))}, "context": -100})),
        processes={"offset": OFFSET})
    cube = engine.evaluate(g, VIEW)
    _, stack = reference_stack(small_catalog, "TEST", VIEW, ["B08"])
    assert_allclose(cube.data, stack - 100, rtol=1e-6, equal_nan=True)


def test_replacing_a_stored_process_changes_the_cache_key(engine):
    called = graph(load(), ("u", "scaled_ndvi", {"data": ref("load")}))
    before = engine.parse(called, processes={"scaled_ndvi": SCALED_NDVI})
    changed = copy.deepcopy(SCALED_NDVI)
    changed["parameters"][1]["default"] = 2
    after = engine.parse(called, processes={"scaled_ndvi": changed})
    assert before.root.hash != after.root.hash
    a, b = engine.evaluate(before, VIEW), engine.evaluate(after, VIEW)
    assert_allclose(b.data, 2 * a.data, rtol=1e-5, equal_nan=True)
    assert np.isfinite(a.data).any()


def test_predefined_processes_win_without_namespace(engine):
    absolute = {"parameters": [{"name": "x"}], "process_graph": graph(
        ("n", "multiply", {"x": p("x"), "y": -1}))}
    call = graph(load(["B08"]), ("ap", "apply", {"data": ref("load"), "process": {
        "process_graph": graph(("a", "absolute", {"x": p("x")}))}}))
    predefined = engine.parse(call, processes={"absolute": absolute})
    user = copy.deepcopy(call)
    user["ap"]["arguments"]["process"]["process_graph"]["a"]["namespace"] = "user"
    own = engine.parse(user, processes={"absolute": absolute})
    assert predefined.root.hash == engine.parse(call).root.hash
    out, mine = engine.evaluate(predefined, VIEW), engine.evaluate(own, VIEW)
    assert_allclose(mine.data, -out.data, equal_nan=True)


def _error(engine, pg, processes):
    with pytest.raises(ProcessGraphError) as info:
        engine.parse(pg, processes=processes)
    assert info.value.status == 400
    return info.value


def test_bad_calls_are_1x_errors(engine):
    procs = {"scaled_ndvi": SCALED_NDVI, "offset": OFFSET}
    err = _error(engine, graph(load(), ("u", "nope", {"data": ref("load")}),
                               u={"namespace": "user"}), procs)
    assert err.code == "ProcessUnsupported" and "no user-defined process 'nope'" in err.message
    err = _error(engine, graph(load(), ("u", "nope", {"data": ref("load")})), procs)
    assert err.code == "ProcessUnsupported"
    err = _error(engine, graph(load(), ("u", "scaled_ndvi", {"data": ref("load"),
                                                             "factr": 2})), procs)
    assert err.code == "ProcessArgumentUnsupported" and "factr" in err.message
    err = _error(engine, graph(load(), ("u", "scaled_ndvi", {"factor": 2})), procs)
    assert err.code == "ProcessArgumentRequired" and err.path == "u.arguments.data"
    broken = copy.deepcopy(SCALED_NDVI)
    broken["process_graph"]["nd"]["arguments"]["red"] = p("red_band")
    err = _error(engine, graph(load(), ("u", "scaled_ndvi", {"data": ref("load")})),
                 {"scaled_ndvi": broken})
    assert err.code == "ProcessParameterMissing" and "red_band" in err.message
    # an error inside a process names where it is called and the node inside it
    wrong = copy.deepcopy(SCALED_NDVI)
    wrong["process_graph"]["nd"]["arguments"]["nir"] = "B99"
    err = _error(engine, graph(load(), ("u", "scaled_ndvi", {"data": ref("load")})),
                 {"scaled_ndvi": wrong})
    assert err.code == "BandNotFound" and err.path.startswith("u.scaled_ndvi.nd")


def test_recursion_is_refused_with_the_chain(engine):
    ping = {"parameters": [{"name": "x"}], "process_graph": graph(
        ("c", "pong", {"x": p("x")}))}
    pong = {"parameters": [{"name": "x"}], "process_graph": graph(
        ("c", "ping", {"x": p("x")}))}
    call = graph(load(["B08"]), ("ap", "apply", {"data": ref("load"), "process": {
        "process_graph": graph(("a", "ping", {"x": p("x")}))}}))
    err = _error(engine, call, {"ping": ping, "pong": pong})
    assert err.code == "ProcessGraphInvalid"
    assert "ping -> pong -> ping" in err.message
    selfish = {"parameters": [{"name": "data"}], "process_graph": graph(
        ("c", "selfish", {"data": p("data")}))}
    err = _error(engine, graph(load(), ("s", "selfish", {"data": ref("load")})),
                 {"selfish": selfish})
    assert "selfish -> selfish" in err.message


def test_collect_reads_what_the_graph_calls_level_by_level():
    outer = {"parameters": [{"name": "data"}], "process_graph": graph(
        ("s", "scaled_ndvi", {"data": p("data")}, ),
        ("ap", "apply", {"data": ref("s"), "process": {"process_graph": graph(
            ("o", "offset", {"x": p("x"), "by": 1}))}}))}
    stored = {"outer": outer, "scaled_ndvi": SCALED_NDVI, "offset": OFFSET,
              "unused": OFFSET}
    asked = []

    def lookup(ids):
        asked.append(list(ids))
        return {i: stored[i] for i in ids if i in stored}

    pg = graph(load(), ("u", "outer", {"data": ref("load")}),
               ("x", "missing", {"data": ref("u")}, ), u={"namespace": "user"})
    found = udp.collect(pg, lookup, is_predefined)
    assert found == {"outer": outer, "scaled_ndvi": SCALED_NDVI, "offset": OFFSET}
    assert asked == [["missing", "outer"], ["offset", "scaled_ndvi"]]
    assert udp.collect(graph(load()), lookup, is_predefined) == {}
    assert len(asked) == 2  # a graph of predefined processes asks nothing
