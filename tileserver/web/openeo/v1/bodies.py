"""The process of a 1.x request body: ``process.process_graph`` of ``/result``, ``/jobs``
and ``/services``, and the structure of a process's flat graph (``/validation``,
``/process_graphs``). Shared by :mod:`.processing` and :mod:`.udp`."""

from __future__ import annotations

from tileserver.errors import ProcessGraphMissing, TileserverError


def process_graph(body: dict) -> dict:
    """The ``process.process_graph`` of a request body, or :class:`ProcessGraphMissing`."""
    process = body.get("process")
    if not isinstance(process, dict) or "process_graph" not in process:
        raise ProcessGraphMissing("the request needs 'process': {'process_graph': {...}}",
                                  locator="process")
    graph = process["process_graph"]
    if not isinstance(graph, dict) or not graph:
        raise ProcessGraphMissing("'process.process_graph' must be a non-empty object",
                                  locator="process.process_graph")
    return graph


def own_process_graph(body: dict) -> dict:
    """The ``process_graph`` of a body that is a process itself (``PUT
    /process_graphs/{id}``, ``POST /validation``: the 1.x ``process_graph_with_metadata``,
    with ``process_graph`` at the top level), or :class:`ProcessGraphMissing` naming that
    field (and saying so when the body is one node, as the JS client's ``setUserProcess``
    sends a builder node, or wraps the process in ``process``)."""
    if "process_graph" not in body:
        hint = ""
        if "process_id" in body or "arguments" in body:
            hint = (" (this body is one node, with 'process_id' and 'arguments': put the "
                    "nodes in 'process_graph', keyed by node id)")
        elif isinstance(body.get("process"), dict) and "process_graph" in body["process"]:
            hint = " (not inside 'process': this body is the process itself)"
        raise ProcessGraphMissing("the request needs 'process_graph': {...} at the top level "
                                  f"of the body{hint}", locator="process_graph")
    graph = body["process_graph"]
    if not isinstance(graph, dict) or not graph:
        raise ProcessGraphMissing("'process_graph' must be a non-empty object",
                                  locator="process_graph")
    return graph


def check_nodes(graph: dict) -> None:
    """The structure of a stored process's flat graph (TileserverError when wrong)."""
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("process_id"), str):
            raise TileserverError(f"node {str(node_id)[:64]!r} needs a 'process_id' string",
                                  locator=f"process_graph.{str(node_id)[:64]}")
        if not isinstance(node.get("arguments", {}), dict):
            raise TileserverError(f"node {str(node_id)[:64]!r}: 'arguments' must be an "
                                  "object", locator=f"process_graph.{str(node_id)[:64]}")
    if sum(node.get("result") is True for node in graph.values()) != 1:
        raise TileserverError("exactly one node needs \"result\": true",
                              locator="process_graph")
