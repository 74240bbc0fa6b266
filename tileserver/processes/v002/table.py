"""The openEO 0.0.2 processes: a table of descriptions and translations into 1.x processes.

Each 0.0.2 process (``filter_bbox``, ``NDVI``, ``min_time``…) is a :class:`Translation`:
its ``GET /processes`` description, its arguments with their 0.0.2 checks (:class:`Arg`,
used by :class:`tileserver.graph.v002.GraphParser`), a ``meta`` that validates it with the
0.0.2 paths and words, and the function that writes it as 1.x process nodes of
:data:`tileserver.processes.registry.REGISTRY`. The engine evaluates only those.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyproj
from rasterio.crs import CRS
from rasterio.errors import CRSError

from tileserver import params
from tileserver.errors import ProcessGraphError, TileserverError
from tileserver.graph.nodes import json_type
from tileserver.params import parse_iso_date

_KIND_DOC = {
    "imagery": "a process node or a data leaf",
    "number": "a number",
    "integer": "an integer",
    "string": "a string",
    "srs": "a CRS such as 'EPSG:4326'",
    "date": "an ISO 8601 date or date-time such as '2017-01-31'",
    "bands": "a band id, a list of band ids, or a 1-based band index",
    "band": "a band id",
    "enum": "one of the listed values",
    "path": "a user file or folder path such as '/users/me/files/regions.geojson'",
}

_JSON_SCHEMA = {
    "imagery": {"type": "object", "format": "eodata"},
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "string": {"type": "string"},
    "srs": {"type": "string", "format": "crs", "examples": ["EPSG:4326"]},
    "date": {"type": "string", "format": "date-time"},
    "bands": {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}, "minItems": 1},
            {"type": "integer", "minimum": 1},
        ]
    },
    "band": {"type": "string"},
    "path": {"type": "string"},
}


@dataclass(frozen=True)
class Arg:
    """One argument of a 0.0.2 process, with the check of its literal value."""

    name: str
    kind: str
    description: str
    required: bool = True
    default: Any = None
    choices: tuple[str, ...] = ()

    @property
    def kind_doc(self) -> str:
        """Human description of the expected value."""
        if self.kind == "enum":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        return _KIND_DOC[self.kind]

    def check(self, value: Any, path: str) -> Any:
        """Check a literal argument and return it normalised."""

        def bad(why: str = "") -> ProcessGraphError:
            msg = f"{path}: expected {self.kind_doc}, got {json_type(value)}"
            if why:
                msg = f"{path}: {why}"
            return ProcessGraphError(msg, path=path)

        kind = self.kind
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad()
            try:
                return params.number(value, path)
            except TileserverError:  # NaN, +-inf, or an integer beyond the float range
                raise bad("expected a finite number") from None
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad()
            return value
        if kind in ("string", "band", "path"):
            if not isinstance(value, str) or not value:
                raise bad()
            return value
        if kind == "enum":
            if not isinstance(value, str) or value not in self.choices:
                raise bad(f"expected {self.kind_doc}, got {value!r}")
            return value
        if kind == "srs":
            if isinstance(value, int) and not isinstance(value, bool):
                value = f"EPSG:{value}"
            if not isinstance(value, str):
                raise bad()
            try:
                # pyproj first: it fails quietly, where GDAL logs "ERROR 1: PROJ" to stderr
                pyproj.CRS.from_user_input(value)
                CRS.from_user_input(value)
            except (CRSError, pyproj.exceptions.CRSError):
                raise bad(f"{value!r} is not a known CRS (use 'EPSG:<code>')") from None
            return value
        if kind == "date":
            if not isinstance(value, str):
                raise bad()
            try:
                parse_iso_date(value)
            except ValueError as exc:
                raise bad(str(exc)) from None
            return value
        if kind == "bands":
            if isinstance(value, bool):
                raise bad()
            if isinstance(value, int):
                if value < 1:
                    raise bad(f"band index {value} must be >= 1 (indexes are 1-based)")
                return value
            if isinstance(value, str) and value:
                return value
            if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                if len(set(value)) != len(value):
                    raise bad("duplicate band ids")
                return list(value)
            raise bad()
        return value

    def to_json(self) -> dict[str, Any]:
        """The 0.0.2 argument description."""
        out: dict[str, Any] = {"description": self.description, "required": self.required}
        if self.kind == "enum":
            out["schema"] = {"type": "string", "enum": list(self.choices)}
        else:
            out["schema"] = _JSON_SCHEMA.get(self.kind, {})
        if self.default is not None:
            out["default"] = self.default
        return out


@dataclass
class Translation:
    """A 0.0.2 process: its description (``GET /processes`` of 0.0.2), ``meta(ctx, node)``
    (validation, with the 0.0.2 paths and words) and ``translate(ctx, node, data)``, which
    writes it as 1.x process nodes (``data``: the translated ``imagery`` input)."""

    id: str
    summary: str
    description: str
    params: tuple[Arg, ...]
    meta: Callable
    translate: Callable
    returns: str = "imagery"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, full: bool = False) -> dict[str, Any]:
        """The ``/processes`` entry (``full`` adds arguments and return value)."""
        out: dict[str, Any] = {
            "process_id": self.id,
            "summary": self.summary,
            "description": self.description,
        }
        if full:
            out["args"] = {p.name: p.to_json() for p in self.params}
            out["returns"] = {"description": self.returns, "schema": _JSON_SCHEMA.get(
                self.returns, {"type": "object"})}
            out.update(self.extra)
        return out


#: The 0.0.2 processes, by id, in registration order (``GET /processes`` lists them so).
TRANSLATIONS: dict[str, Translation] = {}


def translation(
    process_id: str,
    summary: str,
    description: str,
    args: list[Arg],
    meta: Callable,
    returns: str = "imagery",
    **extra: Any,
) -> Callable[[Callable], Callable]:
    """Register a 0.0.2 process with its description and ``meta(ctx, node)``; the decorated
    function is ``translate(ctx, node, data)``, which writes it as 1.x process nodes."""

    def deco(fn: Callable) -> Callable:
        TRANSLATIONS[process_id] = Translation(
            process_id, summary, description, tuple(args), meta, fn, returns, extra)
        return fn

    return deco
