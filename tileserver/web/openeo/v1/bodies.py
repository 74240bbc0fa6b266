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
