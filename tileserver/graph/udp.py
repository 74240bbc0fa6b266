"""User-defined processes (openEO 1.x ``/process_graphs``) as the parser sees them.

A graph calls a stored process like a predefined one: ``{"process_id": "my_udp",
"namespace": "user", "arguments": {...}}``, or without ``namespace`` when no predefined
process has that id. Calls are bound late: every parse reads the definitions the graph uses
(:func:`collect`, transitively, a few store look-ups) and the parser expands each call into
the definition's nodes with its parameters bound to the call's arguments
(:class:`tileserver.graph.v1.FlatGraphParser`). The expanded nodes hash by their
content, so replacing a stored process changes the cache keys of every graph that calls it,
and equal computations share the cache whether they are written inline or in a process.

The definitions a graph used travel with it where no store is at hand (a batch job's
workers) and are part of a stored result's fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: Namespaces that name the back-end's predefined processes.
PREDEFINED_NAMESPACES = (None, "backend", "core")
#: The namespace of user-defined processes.
USER = "user"
#: At most this many distinct user-defined processes in one graph.
MAX_PROCESSES = 100


def calls(graph: Any) -> Iterable[tuple[str, Any]]:
    """``(process_id, namespace)`` of every node of a flat graph and of its child graphs."""
    if not isinstance(graph, dict):
        return
    for node in graph.values():
        if not isinstance(node, dict):
            continue
        pid = node.get("process_id")
        if isinstance(pid, str):
            yield pid, node.get("namespace")
        yield from _nested(node.get("arguments"))


def _nested(value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        if "process_graph" in value and isinstance(value["process_graph"], dict):
            yield from calls(value["process_graph"])
        else:
            for v in value.values():
                yield from _nested(v)
    elif isinstance(value, list):
        for v in value:
            yield from _nested(v)


def may_be_user_process(process_id: str, namespace: Any,
                        predefined: Callable[[str], bool]) -> bool:
    """Whether a call names a user-defined process (``namespace: "user"``, or none and no
    predefined process of that id)."""
    return namespace == USER or (namespace is None and not predefined(process_id))


def collect(graph: Any, lookup: Callable[[Iterable[str]], Mapping[str, dict]],
            predefined: Callable[[str], bool]) -> dict[str, dict]:
    """The stored definitions a flat graph calls, directly or through other stored
    processes: ``lookup(ids)`` returns the definitions found among ``ids`` (one store query
    per level of nesting). Ids that are not found are left out: the parser reports them."""
    found: dict[str, dict] = {}
    asked: set[str] = set()
    pending = [graph]
    while pending and len(found) < MAX_PROCESSES:
        wanted = {pid for g in pending for pid, ns in calls(g)
                  if may_be_user_process(pid, ns, predefined)} - asked
        if not wanted:
            break
        asked |= wanted
        defs = lookup(sorted(wanted))
        pending = []
        for pid, definition in sorted(defs.items()):
            if isinstance(definition, dict) and len(found) < MAX_PROCESSES:
                found[pid] = definition
                pending.append(definition.get("process_graph"))
    return found
