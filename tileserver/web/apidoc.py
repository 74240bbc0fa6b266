"""What a REST view says about itself in the OpenAPI document (``GET /openapi.json``).

A view declares its operation next to its route, so the two cannot drift apart::

    @bp.post("/jobs")
    @operation("Register a lazy job", json_response(ref("Job"), "created"), "BadRequest",
               "Unauthorized", "TooLarge", status=201, body=json_request(ref("JobRequest")))
    def create_job(): ...

:mod:`tileserver.web.openapi` walks the app's URL map and reads these declarations; the
path parameters come from the rule, whether credentials are needed from
:func:`tileserver.web.auth.is_public`. A view without a declaration is listed with its
docstring's first line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

#: The error responses a view may name, with their status (components ``responses``).
ERROR_STATUS = {"BadRequest": "400", "Unauthorized": "401", "NotFound": "404",
                "Conflict": "409", "TooLarge": "413", "TooMany": "429", "Busy": "503",
                "Timeout": "504"}
#: The errors of a synchronous evaluation.
EVALUATION_ERRORS = ("BadRequest", "Unauthorized", "TooLarge", "TooMany", "Busy",
                     "Timeout")

ANY_OBJECT = {"type": "object"}
ANY_ARRAY = {"type": "array", "items": {"type": "object"}}
FILE = {"description": "the file", "content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}
FILE_BODY = {"required": True, "content": {"application/octet-stream": {"schema": {
    "type": "string", "format": "binary"}}}}
NO_CONTENT = {"description": "done"}
HTML = {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
OK = {"description": "OK"}

_View = TypeVar("_View", bound=Callable[..., Any])
_ATTRIBUTE = "openapi_operation"


def ref(name: str) -> dict:
    """A reference to a schema of the document's components."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(schema: dict, description: str = "OK") -> dict:
    """A JSON answer with ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def json_request(schema: dict) -> dict:
    """A required JSON request body with ``schema``."""
    return {"required": True, "content": {"application/json": {"schema": schema}}}


@dataclass(frozen=True)
class Operation:
    """One documented operation: its answer (with ``status``) and the errors it names."""

    summary: str
    response: dict
    errors: tuple[str, ...]
    status: int = 200
    body: dict | None = None
    security: list[dict] | None = None

    def document(self) -> dict[str, Any]:
        """The OpenAPI operation object (security is added by the document)."""
        responses = {str(self.status): self.response}
        for name in self.errors:
            responses[ERROR_STATUS[name]] = {"$ref": f"#/components/responses/{name}"}
        op: dict[str, Any] = {"summary": self.summary, "responses": responses}
        if self.body is not None:
            op["requestBody"] = self.body
        return op


def operation(summary: str, response: dict = OK, *errors: str, status: int = 200,
              body: dict | None = None,
              security: list[dict] | None = None) -> Callable[[_View], _View]:
    """Declare the OpenAPI operation of the decorated view (put it under the route's
    decorator). ``errors`` are names of :data:`ERROR_STATUS`; ``security`` replaces the
    document's default (Bearer or Basic, none on public paths)."""
    unknown = set(errors) - set(ERROR_STATUS)
    if unknown:
        raise ValueError(f"no such error response: {', '.join(sorted(unknown))}")

    def declare(view: _View) -> _View:
        setattr(view, _ATTRIBUTE, Operation(summary, response, tuple(errors), status, body,
                                            security))
        return view

    return declare


def is_declared(view: Callable[..., Any]) -> bool:
    """Whether the view declares its operation."""
    return hasattr(view, _ATTRIBUTE)


def declared(view: Callable[..., Any]) -> Operation:
    """The view's declared operation; without one, its docstring's first line, and the
    errors every private route may answer."""
    op = getattr(view, _ATTRIBUTE, None)
    if op is None:
        doc = (view.__doc__ or "").strip()
        op = Operation(doc.splitlines()[0] if doc else view.__name__, OK,
                       ("Unauthorized", "NotFound"))
    return op
