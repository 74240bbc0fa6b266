"""``GET /openapi.json``: an OpenAPI 3 description of the REST API, assembled from the routes.

Every REST route of the running app is listed from the URL map, each operation as its view
declares it (:func:`tileserver.web.apidoc.operation`), so a route and its documentation
cannot drift apart. The schemas below describe the JSON of jobs, services and errors; their
enums are read from the modules that own them. OGC endpoints (``/wmts``, ``/wcs``,
``/service/...``) are described by their own capabilities documents, and the openEO 1.x
dialect by the official openEO API document: both are left out.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, current_app, jsonify

from tileserver import __version__
from tileserver.jobs.lifecycle import STATUSES
from tileserver.jobs.services import SERVICE_TYPES
from tileserver.render import formats
from tileserver.web.apidoc import ERROR_STATUS, json_response, operation, ref
from tileserver.web.apidoc import declared as declared_operation
from tileserver.web.auth import is_public
from tileserver.web.common import root_api_rules

bp = Blueprint("openapi", __name__)

#: Routes that are not part of the REST API.
NOT_REST = re.compile(r"^/(service|static|wmts|wcs|wms|ogcapi)(/|$)")


def _schemas() -> dict:
    node = {"type": "object", "description": "a process node {process_id, args} or a data "
            "leaf {product_id}", "properties": {
                "process_id": {"type": "string"}, "args": {"type": "object"},
                "product_id": {"type": "string"}}}
    output = {"type": "object", "required": ["format"], "properties": {
        "format": {"type": "string", "examples": formats.names()},
        "parameters": {"type": "object"}}}
    service_type = {"type": "string", "enum": list(SERVICE_TYPES)}
    job = {"type": "object", "properties": {
        "job_id": {"type": "string"}, "user_id": {"type": "string"},
        "status": {"type": "string", "enum": list(STATUSES)},
        "submitted": {"type": "string", "format": "date-time"},
        "updated": {"type": "string", "format": "date-time"},
        "title": {"type": ["string", "null"]}, "description": {"type": ["string", "null"]},
        "progress": {"type": "number"}, "process_graph": ref("ProcessNode"),
        "output": {"oneOf": [ref("Output"), {"type": "null"}]}}}
    service = {"type": "object", "properties": {
        "service_id": {"type": "string"}, "service_url": {"type": "string", "format": "uri"},
        "service_type": service_type,
        "service_args": {"type": "object"}, "job_id": {"type": "string"},
        "title": {"type": ["string", "null"]}, "created": {"type": "string"}}}
    return {
        "ProcessNode": node,
        "Output": output,
        "JobRequest": {"type": "object", "required": ["process_graph"], "properties": {
            "process_graph": ref("ProcessNode"), "output": ref("Output"),
            "title": {"type": "string"}, "description": {"type": "string"}}},
        "JobPatch": {"type": "object", "properties": {
            "process_graph": ref("ProcessNode"), "output": ref("Output"),
            "title": {"type": "string"}, "description": {"type": "string"}}},
        "Job": job,
        "ServiceRequest": {"type": "object", "required": ["job_id", "type"], "properties": {
            "job_id": {"type": "string"}, "type": service_type,
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


def openapi_path(rule: str) -> str:
    """A Flask rule (``/jobs/<job_id>``, ``<path:p>``) as an OpenAPI path template."""
    return re.sub(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>", r"{\1}", rule)


def _parameters(path: str) -> list[dict]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{([^}]+)}", path)]


def _paths() -> dict[str, dict]:
    """``{openapi path: path item}`` of every REST route, as its views declare them."""
    public_endpoints = current_app.extensions.get("tileserver.public_endpoints", ())
    paths: dict[str, dict] = {}
    for rule in root_api_rules():
        if NOT_REST.match(rule.rule):
            continue
        path = openapi_path(rule.rule)
        op = declared_operation(current_app.view_functions[rule.endpoint])
        security = op.security
        if security is None and (is_public(rule.rule) or rule.endpoint in public_endpoints):
            security = []
        item = paths.setdefault(path, {})
        for method in sorted({m.lower() for m in rule.methods or ()} - {"head", "options"}):
            item[method] = op.document() | ({} if security is None else {"security": security})
    for path, item in paths.items():
        params = _parameters(path)
        if params:
            item["parameters"] = params
    return {path: paths[path] for path in sorted(paths)}


def build_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes this app really serves."""
    responses = {
        name: {"description": name, "content": {"application/json": {
            "schema": ref("Error")}}} for name in ERROR_STATUS}
    responses["Unauthorized"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    for busy in ("Busy", "TooMany"):
        responses[busy]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "tileserver openEO API", "version": __version__,
                 "description": "openEO API 0.0.2 flavour. Without configured users the "
                                "server runs in single-user mode and needs no credentials."},
        "servers": [{"url": "/"}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": responses,
            "securitySchemes": {"Basic": {"type": "http", "scheme": "basic"},
                                "Bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"Bearer": []}, {"Basic": []}],
    }


@bp.get("/openapi.json")
@operation("This document", json_response({"type": "object"}))
def openapi():
    """The OpenAPI 3 description of the REST API."""
    return jsonify(build_document())
