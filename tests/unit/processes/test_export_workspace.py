"""``export_workspace`` (openEO proposal, Workspaces extension) as a process node: the result
node around a ``save_result``; its graph evaluates to exactly the saved data, and the
parsed graph says where a batch job exports (``Graph.export``); misuse is a clear 400."""

from __future__ import annotations

import pytest
from numpy.testing import assert_array_equal

from tileserver.datacube.view import View
from tileserver.errors import ProcessGraphError

EXTENT = {"west": 500000, "east": 501280, "south": 5098720, "north": 5100000,
          "crs": "EPSG:32632"}
VIEW = View("EPSG:32632", (500000.0, 5098720.0, 501280.0, 5100000.0), 128, 128)


def graph(export: dict | None = None, fmt: str = "GTiff") -> dict:
    nodes = {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "TEST", "spatial_extent": EXTENT, "temporal_extent": ["2020-05-01",
                                                                        "2020-06-01"],
            "bands": ["B04", "B08"]}},
        "ndvi": {"process_id": "ndvi", "arguments": {"data": {"from_node": "load"}}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "ndvi"}, "format": fmt}, "result": export is None},
    }
    if export is not None:
        nodes["export"] = {"process_id": "export_workspace", "arguments": {
            "data": {"from_node": "save"}, **export}, "result": True}
    return nodes


def test_export_workspace_evaluates_to_the_saved_data(engine):
    plain = engine.parse(graph(), dialect="1.x")
    exported = engine.parse(graph({"workspace": "ws-1", "merge": "ndvi/2020"}),
                            dialect="1.x")
    assert plain.export is None
    assert exported.export == {"workspace": "ws-1", "merge": "ndvi/2020"}
    assert exported.save_result == plain.save_result  # the output of its save_result
    assert exported.is_raster
    a = engine.evaluate(plain, VIEW)
    b = engine.evaluate(exported, VIEW)
    assert a.times == b.times and a.bands == b.bands
    assert_array_equal(a.data, b.data)
    no_merge = engine.parse(graph({"workspace": "ws-1"}), dialect="1.x")
    assert no_merge.export == {"workspace": "ws-1", "merge": None}


@pytest.mark.parametrize(("args", "words"), [
    ({"workspace": "../etc"}, "argument 'workspace'"),
    ({"workspace": 5}, "argument 'workspace'"),
    ({"workspace": "ws", "merge": "../up"}, "argument 'merge'"),
    ({"workspace": "ws", "merge": "/abs"}, "argument 'merge'"),
    ({"workspace": "ws", "merge": "a/../b"}, "argument 'merge'"),
])
def test_bad_arguments_are_named(engine, args, words):
    with pytest.raises(ProcessGraphError) as err:
        engine.parse(graph(args), dialect="1.x")
    assert words in err.value.message and err.value.status == 400


def test_export_workspace_needs_a_save_result_and_is_the_result_node(engine):
    nodes = graph({"workspace": "ws"})
    nodes["export"]["arguments"]["data"] = {"from_node": "ndvi"}
    with pytest.raises(ProcessGraphError, match="result of save_result"):
        engine.parse(nodes, dialect="1.x")
    nodes = graph({"workspace": "ws"})
    nodes["export"]["result"] = False
    nodes["again"] = {"process_id": "save_result", "arguments": {
        "data": {"from_node": "export"}, "format": "GTiff"}, "result": True}
    with pytest.raises(ProcessGraphError, match="only be the result node"):
        engine.parse(nodes, dialect="1.x")
