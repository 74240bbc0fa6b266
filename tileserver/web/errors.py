"""Every error becomes a response here, and only here.

REST requests get openEO JSON ``{"code", "message"}``; OGC requests (views that set
``g.ogc``) get an ``ows:ExceptionReport`` rendered from ``templates/ows_exception.xml``.
"""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from tileserver.errors import TileserverError

log = logging.getLogger(__name__)


def ogc_response(code: str, message: str, status: int, locator: str | None = None):
    """An ``ows:ExceptionReport`` (OWS 1.1 for WMTS/WCS 1.1+/2.0, or the WCS 1.0 form)."""
    version = getattr(g, "ogc_version", None) or "1.1.0"
    template = getattr(g, "ogc_exception_template", None) or "ows_exception.xml"
    body = render_template(template, code=code, message=message, locator=locator,
                           version=version)
    resp = current_app_response(body, status)
    return resp


def current_app_response(body: str, status: int):
    """An XML response."""
    from flask import current_app  # noqa: PLC0415

    return current_app.response_class(body, status=status, mimetype="application/xml")


def _wants_ogc() -> bool:
    return bool(getattr(g, "ogc", False))


def handle_tileserver_error(exc: TileserverError):
    """Our own errors: status and code come from the class."""
    if _wants_ogc():
        return ogc_response(exc.ogc_code, exc.message, exc.status, exc.locator)
    return jsonify(exc.to_json()), exc.status


def handle_http_error(exc: HTTPException):
    """Werkzeug's errors (404 routing, 405, 413, bad JSON…)."""
    status = exc.code or 500
    names = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}
    code = names.get(status, exc.name.replace(" ", ""))
    if _wants_ogc():
        ogc = {404: "NotFound", 413: "InvalidParameterValue"}.get(status, "NoApplicableCode")
        return ogc_response(ogc, exc.description or exc.name, status)
    resp = jsonify({"code": code, "message": exc.description or exc.name})
    resp.status_code = status
    if status == 405 and getattr(exc, "valid_methods", None):
        resp.headers["Allow"] = ", ".join(exc.valid_methods)
    return resp


def handle_unexpected(exc: Exception):
    """Anything else is our bug: log it, answer 500 without a traceback."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    if _wants_ogc():
        return ogc_response("NoApplicableCode", "internal server error", 500)
    return jsonify({"code": "InternalServerError", "message": "internal server error"}), 500


def register(app: Flask) -> None:
    """Install the handlers."""
    app.register_error_handler(TileserverError, handle_tileserver_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
