"""``GET /openapi.json``: an OpenAPI 3 description of the REST API.

The operations of the DESIGN contract are described by hand below (request bodies,
responses, parameters); any other REST route of the running app is added from the URL map
with its docstring, so the document always lists every route the server really has.
OGC endpoints (``/wmts``, ``/wcs``, ``/service/...``) are described by their own
capabilities documents and are left out.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, current_app, jsonify

from tileserver import __version__
from tileserver.jobs.lifecycle import STATUSES
from tileserver.jobs.services import SERVICE_TYPES
from tileserver.render import formats
from tileserver.web.common import root_api_rules

bp = Blueprint("openapi", __name__)

#: Routes that are not part of the REST API.
NOT_REST = re.compile(r"^/(service|static|wmts|wcs|wms)(/|$)")
PUBLIC = {"security": []}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return {"$ref": f"#/components/responses/{description}"}


def _body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: dict, *errors: str, status: str = "200", **extra: Any) -> dict:
    responses = {status: ok}
    for name in errors:
        responses[_ERROR_STATUS[name]] = _error(name)
    return {"summary": summary, "responses": responses, **extra}


_ERROR_STATUS = {"BadRequest": "400", "Unauthorized": "401", "NotFound": "404",
                 "Conflict": "409", "TooLarge": "413", "Busy": "503", "Timeout": "504"}
_ANY_ARRAY = {"type": "array", "items": {"type": "object"}}
_FILE = {"description": "the file", "content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}
_NO_CONTENT = {"description": "done"}


def _schemas() -> dict:
    node = {"type": "object", "description": "a process node {process_id, args} or a data "
            "leaf {product_id}", "properties": {
                "process_id": {"type": "string"}, "args": {"type": "object"},
                "product_id": {"type": "string"}}}
    output = {"type": "object", "required": ["format"], "properties": {
        "format": {"type": "string", "examples": formats.names()},
        "parameters": {"type": "object"}}}
    job = {"type": "object", "properties": {
        "job_id": {"type": "string"}, "user_id": {"type": "string"},
        "status": {"type": "string", "enum": list(STATUSES)},
        "submitted": {"type": "string", "format": "date-time"},
        "updated": {"type": "string", "format": "date-time"},
        "title": {"type": ["string", "null"]}, "description": {"type": ["string", "null"]},
        "progress": {"type": "number"}, "process_graph": _ref("ProcessNode"),
        "output": {"oneOf": [_ref("Output"), {"type": "null"}]}}}
    service = {"type": "object", "properties": {
        "service_id": {"type": "string"}, "service_url": {"type": "string", "format": "uri"},
        "service_type": {"type": "string", "enum": list(SERVICE_TYPES)},
        "service_args": {"type": "object"}, "job_id": {"type": "string"},
        "title": {"type": ["string", "null"]}, "created": {"type": "string"}}}
    return {
        "ProcessNode": node,
        "Output": output,
        "JobRequest": {"type": "object", "required": ["process_graph"], "properties": {
            "process_graph": _ref("ProcessNode"), "output": _ref("Output"),
            "title": {"type": "string"}, "description": {"type": "string"}}},
        "JobPatch": {"type": "object", "properties": {
            "process_graph": _ref("ProcessNode"), "output": _ref("Output"),
            "title": {"type": "string"}, "description": {"type": "string"}}},
        "Job": job,
        "ServiceRequest": {"type": "object", "required": ["job_id", "type"], "properties": {
            "job_id": {"type": "string"}, "type": {"type": "string",
                                                   "enum": list(SERVICE_TYPES)},
            "args": {"type": "object"}, "title": {"type": "string"}}},
        "ServicePatch": {"type": "object", "properties": {
            "args": {"type": "object"}, "title": {"type": "string"}}},
        "Service": service,
        "Login": {"type": "object", "required": ["user_id", "token"], "properties": {
            "user_id": {"type": "string"}, "token": {"type": "string"},
            "expires_in": {"type": "integer"}}},
        "Error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"},
            "path": {"type": "string"}, "locator": {"type": "string"}}},
    }


def _operations() -> dict[str, dict[str, dict]]:
    """The documented operations: ``{path: {method: operation}}``."""
    busy = ("BadRequest", "Unauthorized", "TooLarge", "Busy", "Timeout")
    return {
        "/": {"get": _op("Capabilities: API version and the list of endpoints",
                         _json({"type": "object"}), **PUBLIC)},
        "/capabilities": {"get": _op("The endpoints as strings",
                                     _json({"type": "array"}), **PUBLIC)},
        "/capabilities/output_formats": {"get": _op(
            "Output formats and their parameters", _json({"type": "object"}), **PUBLIC)},
        "/capabilities/services": {"get": _op(
            "Secondary service types", _json({"type": "array",
                                              "items": {"type": "string"}}), **PUBLIC)},
        "/data": {"get": _op("All products", _json(_ANY_ARRAY), **PUBLIC)},
        "/data/{product_id}": {"get": _op("One product: extent, time, bands",
                                          _json({"type": "object"}), "NotFound", **PUBLIC)},
        "/processes": {"get": _op("All processes", _json(_ANY_ARRAY), **PUBLIC)},
        "/processes/{process_id}": {"get": _op("One process with its arguments",
                                               _json({"type": "object"}), "NotFound",
                                               **PUBLIC)},
        "/auth/login": {"get": _op("HTTP Basic in, a Bearer token out", _json(_ref("Login")),
                                   "Unauthorized", security=[{"Basic": []}])},
        "/execute": {"post": _op("Evaluate a graph synchronously; the answer is the file",
                                 _FILE, *busy, requestBody=_body(_ref("JobRequest")))},
        "/jobs": {"post": _op("Register a lazy job", _json(_ref("Job"), "created"),
                              "BadRequest", "Unauthorized", "TooLarge", status="201",
                              requestBody=_body(_ref("JobRequest")))},
        "/jobs/{job_id}": {
            "get": _op("Job description", _json(_ref("Job")), "Unauthorized", "NotFound"),
            "patch": _op("Change a job's graph, output, title or description",
                         _json(_ref("Job")), "BadRequest", "Unauthorized", "NotFound",
                         "Conflict", requestBody=_body(_ref("JobPatch"))),
            "delete": _op("Delete a job and its services", _NO_CONTENT, "Unauthorized",
                          "NotFound", status="204"),
        },
        **_batch_operations(),
        "/jobs/{job_id}/viewer": {"get": _op(
            "Leaflet viewer page of the job", {"description": "HTML page", "content": {
                "text/html": {"schema": {"type": "string"}}}}, "Unauthorized", "NotFound")},
        "/services": {"post": _op("Expose a job as WMTS, XYZ or WCS",
                                  _json(_ref("Service"), "created"), "BadRequest",
                                  "Unauthorized", "NotFound", status="201",
                                  requestBody=_body(_ref("ServiceRequest")))},
        "/services/{service_id}": {
            "get": _op("Service description", _json(_ref("Service")), "Unauthorized",
                       "NotFound"),
            "patch": _op("Change a service's args or title", _json(_ref("Service")),
                         "BadRequest", "Unauthorized", "NotFound",
                         requestBody=_body(_ref("ServicePatch"))),
            "delete": _op("Delete a service; its URLs answer 404", _NO_CONTENT,
                          "Unauthorized", "NotFound", status="204"),
        },
        "/users/{user_id}/jobs": {"get": _op("The user's jobs", _json(_ANY_ARRAY),
                                             "Unauthorized", "NotFound")},
        "/users/{user_id}/services": {"get": _op("The user's services", _json(_ANY_ARRAY),
                                                 "Unauthorized", "NotFound")},
        "/users/{user_id}/files": {"get": _op("The user's files", _json(_ANY_ARRAY),
                                              "Unauthorized", "NotFound")},
        "/users/{user_id}/files/{path}": {
            "get": _op("Download a user file", _FILE, "Unauthorized", "NotFound"),
            "put": _op("Upload a user file (the body is the file)", _json({"type": "object"}),
                       "BadRequest", "Unauthorized", "NotFound", "TooLarge",
                       requestBody={"required": True, "content": {
                           "application/octet-stream": {"schema": {
                               "type": "string", "format": "binary"}}}}),
            "delete": _op("Delete a user file", _NO_CONTENT, "Unauthorized", "NotFound",
                          status="204"),
        },
        "/openapi.json": {"get": _op("This document", _json({"type": "object"}), **PUBLIC)},
        "/metrics": {"get": _op("Prometheus metrics", {"description": "text exposition",
                                                        "content": {"text/plain": {}}},
                                **PUBLIC)},
    }


def _batch_operations() -> dict[str, dict[str, dict]]:
    """Batch job control (0.0.2 documents PATCH, its examples use GET: both work)."""
    out: dict[str, dict[str, dict]] = {}
    for action, summary, status in (
            ("queue", "Start or resume the batch computation", "202"),
            ("pause", "Pause; finished blocks are kept", "200"),
            ("cancel", "Cancel; partial results are deleted, services stop", "200")):
        op = _op(summary, _json(_ref("Job")), "Unauthorized", "NotFound", "Conflict",
                 status=status)
        out[f"/jobs/{{job_id}}/{action}"] = {"get": op, "patch": op}
    out["/jobs/{job_id}/logs"] = {"get": _op(
        "The job's log, oldest first", _json({"type": "array", "items": {
            "type": "object", "properties": {"time": {"type": "string"},
                                             "level": {"type": "string"},
                                             "message": {"type": "string"}}}}),
        "Unauthorized", "NotFound")}
    out["/jobs/{job_id}/download"] = {"get": _op(
        "URLs of the result files of a finished job",
        _json({"type": "array", "items": {"type": "string", "format": "uri"}}),
        "Unauthorized", "NotFound", "Conflict")}
    out["/jobs/{job_id}/results/{token}/{name}"] = {"get": _op(
        "A result file (the URL's token is the credential; Range requests answer 206)",
        _FILE, "NotFound", security=[])}
    return out


def openapi_path(rule: str) -> str:
    """A Flask rule (``/jobs/<job_id>``, ``<path:p>``) as an OpenAPI path template."""
    return re.sub(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>", r"{\1}", rule)


def rest_routes() -> dict[str, tuple[set[str], str]]:
    """The app's REST routes: ``{openapi path: (methods, docstring)}``."""
    routes: dict[str, tuple[set[str], str]] = {}
    for rule in root_api_rules():
        if NOT_REST.match(rule.rule):
            continue
        path = openapi_path(rule.rule)
        methods = {m.lower() for m in (rule.methods or ())} - {"head", "options"}
        doc = (current_app.view_functions[rule.endpoint].__doc__ or "").strip()
        known, _ = routes.get(path, (set(), ""))
        routes[path] = (known | methods, doc.splitlines()[0] if doc else rule.endpoint)
    return routes


def _parameters(path: str) -> list[dict]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{([^}]+)}", path)]


def build_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes this app really serves."""
    documented = _operations()
    paths: dict[str, dict] = {}
    for path, (methods, doc) in sorted(rest_routes().items()):
        item: dict[str, Any] = {}
        for method in sorted(methods):
            op = documented.get(path, {}).get(method) or _op(
                doc, {"description": "OK"}, "Unauthorized", "NotFound")
            item[method] = op
        params = _parameters(path)
        if params:
            item["parameters"] = params
        paths[path] = item
    responses = {
        name: {"description": name, "content": {"application/json": {
            "schema": _ref("Error")}}} for name in _ERROR_STATUS}
    responses["Unauthorized"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    responses["Busy"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "tileserver openEO API", "version": __version__,
                 "description": "openEO API 0.0.2 flavour. Without configured users the "
                                "server runs in single-user mode and needs no credentials."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "responses": responses,
            "securitySchemes": {"Basic": {"type": "http", "scheme": "basic"},
                                "Bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"Bearer": []}, {"Basic": []}],
    }


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 description of the REST API."""
    return jsonify(build_document())
