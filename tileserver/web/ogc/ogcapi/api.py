"""The OpenAPI 3.0 document of the OGC API routes (the landing page's ``service-desc``),
assembled from the blueprint's URL rules and the query parameters each resource reads."""

from __future__ import annotations

import re

from flask import current_app, jsonify

from tileserver.web.ogc.ogcapi.base import bp, root

OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
_MAP = ("bbox", "bbox-crs", "crs", "width", "height", "datetime", "transparent", "bgcolor")
_COVERAGE = ("bbox", "bbox-crs", "subset", "subset-crs", "scale-size", "scale-factor",
             "scale-axes", "properties", "datetime", "crs")
#: Query parameters by route (besides ``f``, which every GET resource takes).
QUERY = {"/map": _MAP, "/coverage": _COVERAGE, "/<col>": ("datetime",),
         "/execution": ("response",)}


def _query(rule: str, method: str) -> list[dict]:
    names: tuple[str, ...] = () if method == "post" else ("f",)
    for suffix, extra in QUERY.items():
        if rule.endswith(suffix):
            names += extra
    return [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
            for n in names]


@bp.get("/ogcapi/api")
def api():
    """The OpenAPI document of OGC API here."""
    paths: dict = {}
    for rule in sorted(current_app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint.split(".")[0] != "ogcapi" or rule.rule in ("/ogcapi", "/ogcapi/api"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/ogcapi"))
        view = current_app.view_functions[rule.endpoint]
        summary = (view.__doc__ or rule.endpoint).strip().splitlines()[0]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                      for n in re.findall(r"{(\w+)}", path)] + _query(rule.rule, method.lower())
            op = {"summary": summary, "operationId": f"{rule.endpoint}.{method.lower()}",
                  "parameters": params,
                  "responses": {"200": {"description": "OK"},
                                "400": {"description": "bad input (RFC 7807)"},
                                "404": {"description": "not found (RFC 7807)"}}}
            if method == "POST" and path.endswith("/execution"):
                op["requestBody"] = {"content": {"application/json": {
                    "schema": {"type": "object"}}}}
                op["responses"]["303"] = {"description": "response=collection: the "
                                                         "collection of a lazy job"}
            paths.setdefault(path, {})[method.lower()] = op
    doc = {"openapi": "3.0.3",
           "info": {"title": "tileserver OGC API", "version": "1.0.0",
                    "description": "Lazy openEO jobs as OGC API collections; openEO "
                                   "process graphs through OGC API - Processes."},
           "servers": [{"url": root()}], "paths": paths}
    resp = jsonify(doc)
    resp.mimetype = "application/vnd.oai.openapi+json"
    resp.headers["Content-Type"] = OPENAPI
    return resp
