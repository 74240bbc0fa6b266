"""openEO 1.x process graphs (the flat form) into the internal :class:`Node` trees.

A 1.x graph is an object of nodes ``{node_id: {"process_id", "arguments", "result"}}``;
arguments refer to other nodes with ``{"from_node": id}``, to the parameters of the
enclosing callback with ``{"from_parameter": name}``, and pass child graphs (reducers,
``apply`` processes…) as ``{"process_graph": {...}}``. The parser resolves the references
into the same node trees the 0.0.2 parser builds, so there is one evaluator and one cache
for both dialects. Errors name the node id and the argument, with the openEO 1.x codes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tileserver.errors import (
    ProcessArgumentRequired,
    ProcessArgumentUnsupported,
    ProcessGraphError,
    ProcessParameterMissing,
    UnknownProcess,
)
from tileserver.graph.nodes import Callback, Node, ParamRef, json_type, node_hash
from tileserver.graph.remote_process import is_remote_namespace, remote_key
from tileserver.graph.specs import load_spec
from tileserver.graph.udp import PREDEFINED_NAMESPACES, USER

V1 = "1.x"
_NODE_KEYS = {"process_id", "arguments", "result", "description", "namespace"}


def is_flat_graph(obj: Any) -> bool:
    """Whether a ``process_graph`` value is in the 1.x flat form (else 0.0.2 nested): an
    object of node objects, without the ``process_id``/``product_id`` of a 0.0.2 node."""
    return (isinstance(obj, dict) and bool(obj) and "process_id" not in obj
            and "product_id" not in obj and any(isinstance(v, dict) for v in obj.values()))


def _param_specs(proc: Any) -> list[tuple[str, bool, Any, str, tuple[str, ...]]]:
    """``(name, required, default, kind, callback params)`` of a process's parameters."""
    return [(p.name, bool(p.required), p.default, p.kind, tuple(p.callback_params))
            for p in proc.params]


def _spec_callback_params(process_id: str, argument: str) -> tuple[str, ...] | None:
    """The parameters the official spec says a callback argument receives."""
    try:
        spec = load_spec(process_id) or {}
    except Exception:  # noqa: BLE001 - descriptions not installed: the caller's default
        return None
    for param in spec.get("parameters", ()):
        if param.get("name") != argument:
            continue
        schemas = param.get("schema")
        for schema in schemas if isinstance(schemas, list) else [schemas]:
            if isinstance(schema, dict) and schema.get("subtype") == "metadata-filter":
                schema = schema.get("additionalProperties")  # noqa: PLW2901 - its callbacks
            if isinstance(schema, dict) and schema.get("subtype") == "process-graph":
                return tuple(p["name"] for p in schema.get("parameters", ()))
    return None


class FlatGraphParser:
    """Parses 1.x graphs against a process registry (id -> process with ``params``, a
    ``kind`` and ``public``: :data:`tileserver.processes.registry.REGISTRY`)."""

    def __init__(self, registry: Mapping[str, Any], max_nodes: int = 200,
                 max_depth: int = 50):
        self.registry = registry
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self._count = 0
        self._top_params: dict[str, Any] = {}
        self._processes: dict[str, dict] = {}
        self._calling: list[str] = []

    def parse(self, graph: Any, parameters: Mapping[str, Any] | None = None,
              processes: Mapping[str, dict] | None = None) -> Any:
        """The result node of a whole graph (``parameters``: values of graph parameters;
        ``processes``: the user-defined processes it may call, id -> stored definition,
        see :mod:`tileserver.graph.udp`). The state of one parse lives in a copy of the
        parser, so that threads may share it."""
        run = copy.copy(self)
        run._count = 0
        run._top_params = dict(parameters or {})
        run._processes = dict(processes or {})
        #: the user-defined processes being expanded (innermost last)
        run._calling = []
        return run._graph(graph, "", None, 0)

    # -- one (sub)graph ----------------------------------------------------------------

    def _graph(self, graph: Any, prefix: str, params: tuple[str, ...] | None, depth: int):
        where = prefix.rstrip(".") or "process_graph"
        if not isinstance(graph, dict) or not graph:
            raise ProcessGraphError(
                f"{where}: a process graph is a non-empty object of nodes, got "
                f"{json_type(graph) if graph != {} else 'an empty object'}", path=where)
        results = []
        for node_id, raw in graph.items():
            if not isinstance(raw, dict):
                raise ProcessGraphError(
                    f"node '{prefix}{node_id}': expected an object, got {json_type(raw)}",
                    path=f"{prefix}{node_id}")
            if not isinstance(raw.get("process_id"), str) or not raw["process_id"]:
                raise ProcessGraphError(
                    f"node '{prefix}{node_id}': 'process_id' must be a non-empty string",
                    path=f"{prefix}{node_id}")
            extra = sorted(set(raw) - _NODE_KEYS)
            if extra:
                raise ProcessGraphError(
                    f"node '{prefix}{node_id}': unexpected keys {extra}",
                    path=f"{prefix}{node_id}")
            if "arguments" in raw and not isinstance(raw["arguments"], dict):
                raise ProcessGraphError(
                    f"node '{prefix}{node_id}': 'arguments' must be an object",
                    path=f"{prefix}{node_id}.arguments")
            if raw.get("result") is True:
                results.append(node_id)
        if len(results) != 1:
            raise ProcessGraphError(
                f"{where}: exactly one node must have \"result\": true, found {len(results)}"
                + (f" ({', '.join(results)})" if results else ""), path=where)
        built: dict[str, Node] = {}
        visiting: list[str] = []

        def build(node_id: Any, ref_path: str) -> Node:
            if not isinstance(node_id, str) or node_id not in graph:
                raise ProcessGraphError(
                    f"{ref_path}: from_node {node_id!r} is not a node of this graph",
                    path=ref_path)
            if node_id in built:
                return built[node_id]
            if node_id in visiting:
                cycle = " -> ".join(visiting[visiting.index(node_id):] + [node_id])
                raise ProcessGraphError(f"{prefix}{node_id}: the graph has a cycle ({cycle})",
                                        path=f"{prefix}{node_id}")
            if depth + len(visiting) > self.max_depth:
                raise ProcessGraphError(
                    f"{prefix}{node_id}: graph deeper than the limit of {self.max_depth} "
                    "levels", path=f"{prefix}{node_id}")
            visiting.append(node_id)
            node = self._node(node_id, graph[node_id], prefix, params, depth, build)
            visiting.pop()
            built[node_id] = node
            return node

        return build(results[0], where)

    def _lookup(self, process_id: str):
        """The public process of this id (``None``: not one of the back-end's)."""
        proc = self.registry.get(process_id)
        return proc if proc is not None and getattr(proc, "public", True) else None

    def _node(self, node_id: str, raw: dict, prefix: str, params, depth: int, build) -> Node:
        self._count += 1
        path = f"{prefix}{node_id}"
        if self._count > self.max_nodes:
            raise ProcessGraphError(
                f"{path}: graph has more than the limit of {self.max_nodes} nodes", path=path)
        pid = raw["process_id"]
        namespace = raw.get("namespace")
        if is_remote_namespace(namespace):
            key = remote_key(pid, namespace)
            if key in self._processes:
                return self._call_udp(pid, raw, path, params, depth, build, key=key)
            raise UnknownProcess(
                f"node '{path}': process {pid!r} of the remote namespace "
                f"{namespace[:300]!r} is not supported (this server does not load remote "
                "process definitions)", path=path)
        if namespace == USER or (namespace is None and self._lookup(pid) is None):
            if pid in self._processes:
                return self._call_udp(pid, raw, path, params, depth, build)
            if namespace == USER:
                raise UnknownProcess(
                    f"node '{path}': there is no user-defined process {pid!r} (PUT "
                    f"/process_graphs/{pid} stores one; GET /process_graphs lists yours)",
                    path=path)
        elif namespace not in PREDEFINED_NAMESPACES:
            raise UnknownProcess(
                f"node '{path}': process {pid!r} in namespace {namespace!r} is not supported "
                "(the back-end's predefined processes have no namespace or 'backend', "
                "your own processes 'user')", path=path)
        proc = self._lookup(pid)
        if proc is None:
            raise UnknownProcess(
                f"node '{path}': process {pid!r} is not supported (GET /processes lists the "
                "supported ones)", path=path)
        raw_args = raw.get("arguments") or {}
        specs = _param_specs(proc)
        names = {s[0] for s in specs}
        unknown = sorted(set(raw_args) - names)
        if unknown:
            raise ProcessArgumentUnsupported(
                f"node '{path}': process {pid!r} has no argument {unknown[0]!r}; its arguments "
                f"are {', '.join(sorted(names))}", path=f"{path}.arguments.{unknown[0]}")
        args: dict[str, Any] = {}
        for name, required, default, kind, cb_params in specs:
            apath = f"{path}.arguments.{name}"
            if name not in raw_args:
                if required:
                    raise ProcessArgumentRequired(
                        f"node '{path}': process {pid!r} requires the argument {name!r}",
                        path=apath)
                if default is not None:
                    args[name] = default
                continue
            value = self._value(raw_args[name], apath, params, depth, build, pid, name,
                                cb_params)
            if kind == "cube" and not isinstance(value, Node | ParamRef):
                raise ProcessGraphError(
                    f"node '{path}': argument {name!r} of {pid!r} must be a data cube (the "
                    f"result of another node), got {json_type(raw_args[name])}", path=apath)
            if kind == "callback" and not isinstance(value, Callback):
                raise ProcessGraphError(
                    f"node '{path}': argument {name!r} of {pid!r} must be a child process "
                    "graph ({\"process_graph\": {...}})", path=apath)
            args[name] = value
        node_hash_value = node_hash(pid, args, V1)
        return Node(pid, args, path, node_hash_value, depth, V1)

    def _call_udp(self, pid: str, raw: dict, path: str, params, depth: int, build,
                  key: str | None = None) -> Any:
        """A call of a user-defined (or remote, ``key``: its key among the processes)
        process: its graph's nodes, with its parameters bound to the call's arguments
        (parsed where the call is) or to their defaults."""
        key = key or pid
        what = "user-defined" if key == pid else "remote"
        if key in self._calling:
            chain = " -> ".join(k.split("@", 1)[0] for k in
                                self._calling[self._calling.index(key):] + [key])
            raise ProcessGraphError(
                f"node '{path}': the {what} process {pid!r} calls itself ({chain}); "
                "recursive processes are not supported", path=path)
        if depth + 1 > self.max_depth:
            raise ProcessGraphError(
                f"node '{path}': user-defined processes nested deeper than the limit of "
                f"{self.max_depth}", path=path)
        definition = self._processes[key]
        declared = _udp_parameters(pid, definition, path)
        raw_args = raw.get("arguments") or {}
        unknown = sorted(set(raw_args) - {d[0] for d in declared})
        if unknown:
            raise ProcessArgumentUnsupported(
                f"node '{path}': the {what} process {pid!r} has no parameter "
                f"{unknown[0]!r}; its parameters are "
                f"{', '.join(d[0] for d in declared) or 'none'}",
                path=f"{path}.arguments.{unknown[0]}")
        bound: dict[str, Any] = {}
        for name, required, has_default, default in declared:
            apath = f"{path}.arguments.{name}"
            if name in raw_args:
                bound[name] = self._value(raw_args[name], apath, params, depth, build, pid,
                                          name, ())
            elif has_default:
                bound[name] = default
            elif required:
                raise ProcessArgumentRequired(
                    f"node '{path}': the {what} process {pid!r} requires the argument "
                    f"{name!r}", path=apath)
            else:
                bound[name] = None
        saved = self._top_params
        self._top_params = bound
        self._calling.append(key)
        try:
            return self._graph(definition.get("process_graph"), f"{path}.{pid}.", None,
                               depth + 1)
        finally:
            self._calling.pop()
            self._top_params = saved

    def _value(self, value: Any, path: str, params, depth: int, build, pid: str,
               arg: str, cb_params: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            if "from_node" in value and len(value) == 1:
                return build(value["from_node"], path)
            if "from_parameter" in value and len(value) == 1:
                name = value["from_parameter"]
                if not isinstance(name, str):
                    raise ProcessGraphError(f"{path}: from_parameter must be a string",
                                            path=path)
                if params is not None and name in params:
                    return ParamRef(name, path)
                if name in self._top_params:
                    return self._top_params[name]
                raise ProcessParameterMissing(
                    f"{path}: parameter {name!r} is not defined here"
                    + (f" (this callback receives {', '.join(params)})" if params else
                       " (no enclosing callback or process parameter defines it)"), path=path)
            if "process_graph" in value and len(value) == 1:
                if depth + 1 > self.max_depth:
                    raise ProcessGraphError(
                        f"{path}: callbacks nested deeper than the limit of "
                        f"{self.max_depth}", path=path)
                names = cb_params or _spec_callback_params(pid, arg) or ("x", "data",
                                                                          "context")
                root = self._graph(value["process_graph"], f"{path}.", tuple(names),
                                   depth + 1)
                return Callback(root, tuple(names), path,
                                node_hash("#callback", {"root": root,
                                                        "params": list(names)}, V1))
            return {k: self._value(v, f"{path}.{k}", params, depth, build, pid, arg,
                                   cb_params) for k, v in value.items()}
        if isinstance(value, list):
            return [self._value(v, f"{path}[{i}]", params, depth, build, pid, arg, cb_params)
                    for i, v in enumerate(value)]
        return value


def _udp_parameters(pid: str, definition: dict, path: str
                    ) -> list[tuple[str, bool, bool, Any]]:
    """``(name, required, has default, default)`` of a user-defined process's parameters
    (openEO: required unless ``optional`` or a ``default`` is given)."""
    out = []
    declared = definition.get("parameters") or []
    if not isinstance(declared, list):
        declared = []
    for p in declared:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise ProcessGraphError(
                f"node '{path}': the user-defined process {pid!r} declares a parameter "
                "without a name", path=path)
        has_default = "default" in p
        out.append((p["name"], not (has_default or p.get("optional") is True), has_default,
                    p.get("default")))
    return out


def v1_node(process_id: str, path: str, registry: Mapping[str, Any], **args: Any) -> Node:
    """A 1.x node built by code (the 0.0.2 translations), with the defaults the parser
    would fill in (from the process's ``registry``), so that it hashes like the same node
    written by a client."""
    for name, required, default, _kind, _cb in _param_specs(registry[process_id]):
        if name not in args and not required and default is not None:
            args[name] = default
    return Node(process_id, args, path, node_hash(process_id, args, V1), 0, V1)


def reducer_callback(process_id: str, path: str, registry: Mapping[str, Any],
                     param: str = "data") -> Callback:
    """``{"process_graph": {process_id(data=from_parameter data)}}`` built by code."""
    root = v1_node(process_id, f"{path}.{process_id}", registry,
                   **{param: ParamRef(param, path)})
    names = (param, "context")
    return Callback(root, names, path, node_hash("#callback", {"root": root,
                                                              "params": list(names)}, V1))
