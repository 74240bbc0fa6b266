"""The node types of process graphs: one internal representation for both API dialects.

The openEO 0.0.2 nested form (``{"process_id", "args"}`` nodes, ``{"product_id"}`` leaves)
and the openEO 1.x flat form (``{node_id: {"process_id", "arguments", "result"}}`` with
``from_node``/``from_parameter`` references and ``{"process_graph": ...}`` callbacks) are both
parsed into trees of :class:`Node` (by :mod:`tileserver.graph.v002` and
:mod:`tileserver.graph.v1`); callbacks become :class:`Callback` values and callback
parameters :class:`ParamRef` values. Equal subgraphs hash equal, whatever their key order or
node ids, so that the cache shares work between graphs and dialects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

#: Argument name of the cube input, as in the 0.0.2 documentation.
IMAGERY = "imagery"


@dataclass(frozen=True, eq=False)
class Node:
    """One node: a process call, or a data leaf (``process_id == PRODUCT``)."""

    process_id: str
    args: dict[str, Any]
    path: str
    hash: str = field(default="")
    depth: int = 0
    #: ``"0.0.2"`` or ``"1.x"``: which process registry the id belongs to.
    dialect: str = "0.0.2"

    def arg_path(self, name: str) -> str:
        """Where an argument is, in the dialect's words (for error messages)."""
        return f"{self.path}.args.{name}" if self.dialect == "0.0.2" else (
            f"{self.path}.arguments.{name}")

    @property
    def is_product(self) -> bool:
        """True for a ``{"product_id": ...}`` leaf."""
        return self.process_id == PRODUCT

    def children(self) -> list[Node]:
        """Argument values that are nodes (cube inputs; not the nodes inside callbacks)."""
        return [v for v in self.args.values() if isinstance(v, Node)]

    def walk(self):
        """This node and all below it, depth first."""
        yield self
        for child in self.children():
            yield from child.walk()

    def to_json(self) -> dict[str, Any]:
        """Back to the nested JSON form."""
        if self.is_product:
            return {"product_id": self.args["product_id"]}
        return {
            "process_id": self.process_id,
            "args": {k: v.to_json() if isinstance(v, Node) else v for k, v in self.args.items()},
        }


#: Pseudo process id of data leaves.
PRODUCT = "__product__"


@dataclass(frozen=True, eq=False)
class ParamRef:
    """``{"from_parameter": name}``: a value the enclosing callback receives."""

    name: str
    path: str


@dataclass(frozen=True, eq=False)
class Callback:
    """A child process graph passed as an argument (``reducer``, ``process``…).

    ``root`` is its result node (or a parameter or literal passed straight through) and
    ``params`` the names of the parameters the parent process hands to it.
    """

    root: Any
    params: tuple[str, ...]
    path: str
    hash: str = ""

    def nodes(self):
        """The process nodes of this callback (not of callbacks nested in it), depth first."""
        seen: set[int] = set()

        def visit(value):
            if isinstance(value, Node):
                if id(value) in seen:
                    return
                seen.add(id(value))
                yield value
                for v in value.args.values():
                    yield from visit(v)
            elif isinstance(value, list):
                for v in value:
                    yield from visit(v)
            elif isinstance(value, dict):
                for v in value.values():
                    yield from visit(v)

        yield from visit(self.root)


def _canonical(value: Any) -> Any:
    if isinstance(value, Node):
        return {"#node": value.hash}
    if isinstance(value, Callback):
        return {"#callback": value.hash}
    if isinstance(value, ParamRef):
        return {"#param": value.name}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def node_hash(process_id: str, args: dict[str, Any], dialect: str = "0.0.2") -> str:
    """Canonical hash of a node: equal subgraphs hash equal, whatever their key order."""
    doc: dict[str, Any] = {"p": process_id, "a": _canonical(args)}
    if dialect != "0.0.2":
        doc["d"] = dialect
    payload = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def is_node_json(value: Any) -> bool:
    """Whether a JSON value is a process node or a data leaf."""
    return isinstance(value, dict) and ("process_id" in value or "product_id" in value)


_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


def json_type(value: Any) -> str:
    """JSON type name of a value, for error messages."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)
