"""User-defined processes (``/process_graphs``): stored per user, listed and returned.

They are kept as written (a process with its ``process_graph`` and ``parameters``), checked
for the flat-graph structure only: their parameters are bound when a graph calls them, so
the engine cannot validate them alone. The owner's graphs call them by id (namespace
``user``, or none when no predefined process has the id); see :mod:`tileserver.graph.udp`.
"""

from __future__ import annotations

import re

from flask import jsonify

from tileserver.errors import TileserverError
from tileserver.web.common import current_user, json_body, runtime
from tileserver.web.openeo.v1.bodies import check_nodes, own_process_graph

#: Ids of user-defined processes: openEO's pattern of process ids (``\w+``), plus dashes
#: (the openEO compliance suite stores its processes under uuid4 ids with dashes).
PROCESS_ID = re.compile(r"^\w[\w-]{0,127}$")
#: The fields of a process that ``GET /process_graphs`` lists (the graph comes by id).
SUMMARY_FIELDS = ("id", "summary", "description", "categories", "parameters", "returns",
                  "deprecated", "experimental")


def _check_id(process_graph_id: str) -> str:
    if not PROCESS_ID.match(process_graph_id):
        raise TileserverError(f"process graph id {process_graph_id[:64]!r} must be letters, "
                              "digits, underscores and dashes", locator="process_graph_id")
    return process_graph_id


def list_udps():
    """The user's processes (without their graphs)."""
    processes = runtime().store.list_processes(current_user())
    return jsonify({"processes": [{k: p[k] for k in SUMMARY_FIELDS if k in p}
                                  for p in processes], "links": []})


def get_udp(process_graph_id: str):
    """One process with its graph."""
    return jsonify(runtime().store.get_process(current_user(), _check_id(process_graph_id)))


def put_udp(process_graph_id: str):
    """Store or replace a process (its ``id`` is the one of the path, whatever the body's)."""
    _check_id(process_graph_id)
    body = json_body()
    graph = own_process_graph(body)
    check_nodes(graph)
    if not isinstance(body.get("parameters", []), list):
        raise TileserverError("'parameters' must be an array", locator="parameters")
    runtime().store.put_process(current_user(), process_graph_id,
                                {**body, "id": process_graph_id})
    return "", 200


def delete_udp(process_graph_id: str):
    """Delete a process."""
    runtime().store.delete_process(current_user(), _check_id(process_graph_id))
    return "", 204
