"""Process graphs: one internal representation for both API dialects.

The openEO 0.0.2 nested form (``{"process_id", "args"}`` nodes, ``{"product_id"}`` leaves)
and the openEO 1.x flat form (``{node_id: {"process_id", "arguments", "result"}}`` with
``from_node``/``from_parameter`` references and ``{"process_graph": ...}`` callbacks) are both
parsed into trees of :class:`Node`; callbacks become :class:`Callback` values and callback
parameters :class:`ParamRef` values. Equal subgraphs hash equal, whatever their key order or
node ids, so that the cache shares work between graphs and dialects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tileserver.errors import ProcessGraphError, UnknownProcess

if TYPE_CHECKING:
    from tileserver.processes import Process

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


class GraphParser:
    """Turns nested JSON into :class:`Node` trees, checking structure and argument types."""

    def __init__(self, registry: dict[str, Process], max_nodes: int = 200, max_depth: int = 50):
        self.registry = registry
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
        process = self.registry.get(pid)
        if process is None:
            raise UnknownProcess(
                f"{path}: unknown process {pid!r}; known: {', '.join(sorted(self.registry))}",
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
