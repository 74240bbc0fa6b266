"""The openEO 0.0.2 front-end: nested graphs parsed into :class:`Node` trees.

A 0.0.2 graph is a tree of ``{"process_id", "args"}`` nodes with ``{"product_id"}`` data
leaves. :class:`GraphParser` checks its structure and literal arguments against the 0.0.2
process table it is given (``id -> entry``, each with ``params`` whose ``check`` normalises a
literal: :data:`tileserver.processes.v002.TRANSLATIONS`); :func:`translate` then writes the
validated tree as 1.x nodes, so that the engine evaluates one dialect.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tileserver.errors import ProcessGraphError, UnknownProcess
from tileserver.graph.nodes import IMAGERY, PRODUCT, Node, is_node_json, json_type, node_hash
from tileserver.graph.v1 import v1_node


class GraphParser:
    """Turns nested JSON into :class:`Node` trees, checking structure and argument types
    against ``table`` (the 0.0.2 processes, id -> entry with ``params``)."""

    def __init__(self, table: Mapping[str, Any], max_nodes: int = 200, max_depth: int = 50):
        self.table = table
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self._count = 0

    def parse(self, obj: Any, path: str = "process_graph") -> Node:
        """Parse a whole graph."""
        self._count = 0
        return self._parse(obj, path, 0)

    def _parse(self, obj: Any, path: str, depth: int) -> Node:
        if depth > self.max_depth:
            raise ProcessGraphError(
                f"{path}: graph deeper than the limit of {self.max_depth} levels", path=path
            )
        self._count += 1
        if self._count > self.max_nodes:
            raise ProcessGraphError(
                f"{path}: graph has more than the limit of {self.max_nodes} nodes", path=path
            )
        if not isinstance(obj, dict):
            raise ProcessGraphError(
                f"{path}: expected a process node object, got {json_type(obj)}", path=path
            )
        if "product_id" in obj:
            extra = sorted(set(obj) - {"product_id"})
            if extra:
                raise ProcessGraphError(
                    f"{path}: a data leaf has only 'product_id', unexpected {extra}", path=path
                )
            pid = obj["product_id"]
            if not isinstance(pid, str) or not pid:
                raise ProcessGraphError(
                    f"{path}.product_id: expected a non-empty string, got {json_type(pid)}",
                    path=f"{path}.product_id",
                )
            args = {"product_id": pid}
            return Node(PRODUCT, args, path, node_hash(PRODUCT, args), depth)
        if "process_id" not in obj:
            raise ProcessGraphError(
                f"{path}: expected 'process_id' (a process) or 'product_id' (data)", path=path
            )
        extra = sorted(set(obj) - {"process_id", "args", "description"})
        if extra:
            raise ProcessGraphError(f"{path}: unexpected keys {extra}", path=path)
        pid = obj["process_id"]
        if not isinstance(pid, str):
            raise ProcessGraphError(
                f"{path}.process_id: expected a string, got {json_type(pid)}",
                path=f"{path}.process_id",
            )
        process = self.table.get(pid)
        if process is None:
            raise UnknownProcess(
                f"{path}: unknown process {pid!r}; known: {', '.join(sorted(self.table))}",
                path=path,
            )
        raw_args = obj.get("args", {})
        if not isinstance(raw_args, dict):
            raise ProcessGraphError(
                f"{path}.args: expected an object, got {json_type(raw_args)}", path=f"{path}.args"
            )
        params = {p.name: p for p in process.params}
        unknown = sorted(set(raw_args) - set(params))
        if unknown:
            raise ProcessGraphError(
                f"{path}.args: unexpected argument(s) {unknown} for {pid}; "
                f"expected {sorted(params)}",
                path=f"{path}.args.{unknown[0]}",
            )
        args: dict[str, Any] = {}
        for name, param in params.items():
            apath = f"{path}.args.{name}"
            if name not in raw_args:
                if param.required:
                    raise ProcessGraphError(
                        f"{apath}: missing argument {name!r} of {pid} ({param.kind_doc})",
                        path=apath,
                    )
                if param.default is not None:
                    args[name] = param.default
                continue
            value = raw_args[name]
            if param.kind == "imagery":
                if not is_node_json(value):
                    raise ProcessGraphError(
                        f"{apath}: expected a process node or data leaf, got {json_type(value)}",
                        path=apath,
                    )
                args[name] = self._parse(value, apath, depth + 1)
            else:
                if is_node_json(value):
                    raise ProcessGraphError(
                        f"{apath}: expected {param.kind_doc}, got a process node", path=apath
                    )
                args[name] = param.check(value, apath)
        return Node(pid, args, path, node_hash(pid, args), depth)


def translate(node: Node, table: Mapping[str, Any], registry: Mapping[str, Any],
              ctx: Any) -> Node:
    """A validated 0.0.2 tree as the 1.x process nodes that compute the same values: a data
    leaf is ``load_collection``, a process is what its entry's ``translate(ctx, node, data)``
    writes on the translated ``imagery`` input (``registry``: the 1.x processes, for the
    defaults of the nodes built; ``ctx``: the meta context the 0.0.2 tree was validated
    with)."""
    if node.is_product:
        return v1_node("load_collection", node.path, registry, id=node.args["product_id"])
    data = translate(node.args[IMAGERY], table, registry, ctx)
    return table[node.process_id].translate(ctx, node, data)
