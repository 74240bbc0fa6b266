"""User-defined processes (openEO 1.x ``/process_graphs``) as the parser sees them.

A graph calls a stored process like a predefined one: ``{"process_id": "my_udp",
"namespace": "user", "arguments": {...}}``, or without ``namespace`` when no predefined
process has that id. Calls are bound late: every parse reads the definitions the graph uses
(:func:`collect`, transitively, a few store look-ups) and the parser expands each call into
the definition's nodes with its parameters bound to the call's arguments
(:class:`tileserver.graph.v1.FlatGraphParser`). The expanded nodes hash by their
content, so replacing a stored process changes the cache keys of every graph that calls it,
and equal computations share the cache whether they are written inline or in a process.

A node whose ``namespace`` is a URL calls a remote process definition
(:mod:`tileserver.graph.remote_process`): :func:`collect` fetches it with the stored ones,
and the parser expands it the same way.

The definitions a graph used travel with it where no store is at hand (a batch job's
workers) and are part of a stored result's fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tileserver.errors import ProcessGraphError
from tileserver.graph.remote_process import is_remote_namespace, remote_key

#: Namespaces that name the back-end's predefined processes.
PREDEFINED_NAMESPACES = (None, "backend", "core")
#: The namespace of user-defined processes.
USER = "user"
#: At most this many distinct user-defined processes in one graph.
MAX_PROCESSES = 100
#: At most this many distinct remote process definitions in one graph (each fetch may take
#: ``remote_process_timeout`` s: this bounds what one request can make the server wait for).
MAX_REMOTE_PROCESSES = 10


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
            predefined: Callable[[str], bool],
            remote: Callable[[str, str], dict] | None = None) -> dict[str, dict]:
    """The definitions a flat graph calls, directly or through other definitions:

    - stored ones: ``lookup(ids)`` returns the definitions found among ``ids`` (one store
      query per level of nesting); ids that are not found are left out (the parser
      reports them);
    - remote ones (a ``namespace`` that is a URL,
      :mod:`tileserver.graph.remote_process`): ``remote(process_id, url)`` returns the
      definition or raises; they are keyed ``remote_key(process_id, url)``. Without
      ``remote`` they are left out (the parser reports them as unsupported).
    """
    found: dict[str, dict] = {}
    asked: set[str] = set()
    asked_remote: set[tuple[str, str]] = set()
    pending = [graph]
    while pending and len(found) < MAX_PROCESSES:
        level = [call for g in pending for call in calls(g)]
        wanted = {pid for pid, ns in level if may_be_user_process(pid, ns, predefined)} - asked
        urls = ({(pid, ns) for pid, ns in level if is_remote_namespace(ns)} - asked_remote
                if remote is not None else set())
        if not wanted and not urls:
            break
        asked |= wanted
        asked_remote |= urls
        if len(asked_remote) > MAX_REMOTE_PROCESSES:
            raise ProcessGraphError(
                f"the graph calls more than {MAX_REMOTE_PROCESSES} remote process definitions "
                "(distinct namespace URLs and ids); store the processes or merge them")
        defs = dict(lookup(sorted(wanted))) if wanted else {}
        for pid, url in sorted(urls):
            if len(found) + len(defs) >= MAX_PROCESSES:
                break
            defs[remote_key(pid, url)] = remote(pid, url)  # type: ignore[misc]
        pending = []
        for pid, definition in sorted(defs.items()):
            if isinstance(definition, dict) and len(found) < MAX_PROCESSES:
                found[pid] = definition
                pending.append(definition.get("process_graph"))
    return found
