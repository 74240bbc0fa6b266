"""Process graph parsing, validation (every error names its path) and canonical hashing."""

from __future__ import annotations

import copy
import json

import pytest

from tests.support.core import bbox, call, daterange, leaf, make_engine
from tileserver.errors import (
    BandNotFound,
    ProcessGraphError,
    ProductNotFound,
    UnknownProcess,
)
from tileserver.graph.nodes import node_hash


def example(product="TEST") -> dict:
    return call("min_time", call("NDVI", daterange(
        bbox(leaf(product), 500_100, 504_000, 5_099_000, 5_096_000), "2020-05-01",
        "2020-05-31"), red="B04", nir="B08"))


def test_parse_builds_the_tree(engine):
    graph = engine.parse(example())
    ids = [n.process_id for n in graph.parsed.walk()]
    assert ids == ["min_time", "NDVI", "filter_daterange", "filter_bbox", "__product__"]
    paths = [n.path for n in graph.parsed.walk()]
    assert paths[-1] == "process_graph" + ".args.imagery" * 4
    assert graph.meta.reduced and graph.meta.kind == "ndvi"
    assert graph.meta.source_bands == ("B04", "B08")
    assert graph.parsed.to_json() == engine.parse(graph.parsed.to_json()).parsed.to_json()


def test_0_0_2_is_translated_to_the_1x_processes(engine):
    """One engine: the 0.0.2 processes are written as 1.x process nodes (same paths)."""
    graph = engine.parse(example())
    assert graph.dialect == "0.0.2"
    nodes = list(graph.root.walk())
    assert [n.process_id for n in nodes] == [
        "reduce_dimension", "ndvi", "filter_temporal", "filter_bbox", "load_collection"]
    assert {n.dialect for n in nodes} == {"1.x"}
    assert [n.path for n in nodes] == [n.path for n in graph.parsed.walk()]
    assert nodes[0].args["reducer"].root.process_id == "min"
    # the inclusive 0.0.2 'to' date is the excluded start of the next day in 1.x
    assert nodes[2].args["extent"] == ["2020-05-01T00:00:00+00:00",
                                       "2020-06-01T00:00:00+00:00"]
    assert nodes[3].args["extent"] == {"west": 500_100, "south": 5_096_000, "east": 504_000,
                                       "north": 5_099_000, "crs": "EPSG:32632"}


A3 = "process_graph.args.imagery.args.imagery.args.imagery"


def _set(graph: dict, path: list[str], value):
    node = graph
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return graph


IMG = ["args", "imagery"]


@pytest.mark.parametrize("where, value, error, path, match", [
    # unknown process
    (IMG + ["process_id"], "NDWI", UnknownProcess, "process_graph.args.imagery",
     r"unknown process 'NDWI'; known: .*NDVI"),
    # missing argument
    (IMG + ["args", "red"], KeyError, ProcessGraphError, "process_graph.args.imagery.args.red",
     r"missing argument 'red' of NDVI \(a band id\)"),
    (IMG * 3 + ["args", "left"], KeyError, ProcessGraphError, A3 + ".args.left",
     "missing argument 'left'"),
    # extra argument
    (IMG + ["args", "green"], "B03", ProcessGraphError, "process_graph.args.imagery.args.green",
     r"unexpected argument\(s\) \['green'\] for NDVI; expected \['imagery', 'nir', 'red'\]"),
    (["args", "imagery", "colour"], 1, ProcessGraphError, "process_graph.args.imagery",
     r"unexpected keys \['colour'\]"),
    # mistyped arguments
    (IMG * 3 + ["args", "left"], "500100", ProcessGraphError,
     A3 + ".args.left",
     "expected a number, got string"),
    (IMG * 3 + ["args", "top"], True, ProcessGraphError,
     A3 + ".args.top",
     "expected a number, got boolean"),
    (IMG * 3 + ["args", "srs"], "EPSG:999999", ProcessGraphError,
     A3 + ".args.srs", "not a known CRS"),
    (IMG * 2 + ["args", "from"], 20200501, ProcessGraphError,
     "process_graph.args.imagery.args.imagery.args.from", "expected an ISO 8601 date"),
    (IMG + ["args", "red"], ["B04"], ProcessGraphError, "process_graph.args.imagery.args.red",
     "expected a band id, got array"),
    (IMG + ["args", "red"], {"product_id": "TEST"}, ProcessGraphError,
     "process_graph.args.imagery.args.red", "expected a band id, got a process node"),
    (IMG + ["args", "imagery"], "TEST", ProcessGraphError,
     "process_graph.args.imagery.args.imagery",
     "expected a process node or data leaf, got string"),
    (IMG + ["args"], [], ProcessGraphError, "process_graph.args.imagery.args",
     "expected an object, got array"),
    (IMG + ["process_id"], 7, ProcessGraphError, "process_graph.args.imagery.process_id",
     "expected a string, got integer"),
    # unknown product or band
    (IMG * 4 + ["product_id"], "S2", ProductNotFound,
     A3 + ".args.imagery.product_id",
     r"unknown product_id 'S2'; available: FLOATS, TEST"),
    (IMG * 4 + ["product_id"], "", ProcessGraphError,
     A3 + ".args.imagery.product_id",
     "expected a non-empty string"),
    (IMG + ["args", "nir"], "B8A", BandNotFound, "process_graph.args.imagery.args.nir",
     r"band 'B8A' is not in the input; available: B04, B08, B11"),
    # dates
    (IMG * 2 + ["args", "to"], "31/05/2020", ProcessGraphError,
     "process_graph.args.imagery.args.imagery.args.to", "'31/05/2020' is not an ISO 8601 date"),
    (IMG * 2 + ["args", "to"], "2020-04-01", ProcessGraphError,
     "process_graph.args.imagery.args.imagery.args.from",
     r"'from' \(2020-05-01\) is after 'to' \(2020-04-01\)"),
    # bbox
    (IMG * 3 + ["args", "right"], 400_000, ProcessGraphError,
     A3 + ".args.left", "must be smaller"),
    (IMG * 3 + ["args", "top"], 5_096_000, ProcessGraphError,
     A3 + ".args.top", "empty bbox"),
])
def test_errors_name_path_and_expectation(engine, where, value, error, path, match):
    graph = _set(copy.deepcopy(example()), where, value)
    with pytest.raises(error, match=match) as exc:
        engine.parse(graph)
    err = exc.value
    assert type(err) is error
    assert err.status == 400
    assert err.path == path
    assert err.message.startswith(path + ":") or err.message.startswith(path.rsplit(".", 1)[0])
    body = err.to_json()
    assert body["path"] == path and body["code"] == error.code


@pytest.mark.parametrize("graph, match", [
    ([], "expected a process node object, got array"),
    ("min_time", "expected a process node object, got string"),
    (None, "expected a process node object, got null"),
    ({}, "expected 'process_id' .* or 'product_id'"),
    ({"product_id": "TEST", "args": {}},
     r"a data leaf has only 'product_id', unexpected \['args'\]"),
])
def test_non_graphs(engine, graph, match):
    with pytest.raises(ProcessGraphError, match=match) as exc:
        engine.parse(graph)
    assert exc.value.path == "process_graph"


def _chain(n: int) -> dict:
    graph = leaf()
    for _ in range(n):
        graph = call("filter_bands", graph, bands="B04")
    return graph


def test_depth_limit(small_catalog):
    engine = make_engine(small_catalog, max_graph_depth=10)
    engine.parse(_chain(10))
    with pytest.raises(ProcessGraphError, match="deeper than the limit of 10 levels") as exc:
        engine.parse(_chain(11))
    assert exc.value.path == "process_graph" + ".args.imagery" * 11


def test_size_limit(small_catalog):
    engine = make_engine(small_catalog, max_graph_nodes=6, max_graph_depth=50)
    engine.parse(_chain(5))
    with pytest.raises(ProcessGraphError, match="more than the limit of 6 nodes"):
        engine.parse(_chain(6))


def test_deep_json_does_not_overflow(small_catalog):
    """A graph far deeper than the limit fails fast with a 400, not a RecursionError."""
    engine = make_engine(small_catalog)
    with pytest.raises(ProcessGraphError, match="deeper than the limit"):
        engine.parse(_chain(5000))


def test_description_is_allowed_and_not_hashed(engine):
    plain = engine.parse(example())
    described = copy.deepcopy(example())
    described["description"] = "yearly minimum"
    assert engine.parse(described).root.hash == plain.root.hash


def _reordered(value):
    """The same JSON with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(v) for v in value]
    return value


def test_hash_ignores_key_order_and_number_spelling(engine):
    a = engine.parse(example())
    b = engine.parse(json.loads(json.dumps(_reordered(example()))))
    assert list(b.source) == list(reversed(list(a.source)))
    assert [n.hash for n in a.root.walk()] == [n.hash for n in b.root.walk()]
    floats = copy.deepcopy(example())
    floats["args"]["imagery"]["args"]["imagery"]["args"]["imagery"]["args"]["left"] = 500100.0
    assert engine.parse(floats).root.hash == a.root.hash


def test_same_subgraph_in_two_graphs_hashes_equal(engine):
    sub = daterange(bbox(leaf(), 500_100, 504_000, 5_099_000, 5_096_000), "2020-05-01",
                    "2020-05-31")
    g1 = engine.parse(call("min_time", call("NDVI", sub, red="B04", nir="B08")))
    g2 = engine.parse(call("count_time", call("filter_bands", _reordered(sub), bands="B11")))
    s1 = g1.root.args["data"].args["data"]
    s2 = g2.root.args["data"].args["data"]
    assert s1.hash == s2.hash
    assert g1.root.hash != g2.root.hash
    # every descendant of the shared subgraph too
    assert [n.hash for n in s1.walk()] == [n.hash for n in s2.walk()]


@pytest.mark.parametrize("change", [
    ("left", 500_200), ("srs", "EPSG:32633"),
])
def test_different_arguments_hash_differently(engine, change):
    g = example()
    changed = copy.deepcopy(g)
    changed["args"]["imagery"]["args"]["imagery"]["args"]["imagery"]["args"][change[0]] = \
        change[1]
    assert engine.parse(g).root.hash != engine.parse(changed).root.hash


def test_node_hash_is_stable():
    """The hash is a pure function of the canonical JSON (no id(), no process memory)."""
    h = node_hash("filter_bands", {"bands": ["B04", "B08"]})
    assert h == node_hash("filter_bands", {"bands": ["B04", "B08"]})
    assert h != node_hash("filter_bands", {"bands": ["B08", "B04"]})
    assert len(h) == 32 and int(h, 16) >= 0
