"""Every error becomes a response here, and only here.

REST requests of the root API get openEO 0.0.2 JSON ``{"code", "message"}``; requests under
an openEO 1.x base (``/openeo/<version>/``) get ``{"id", "code", "message", "links"}`` with the
1.x codes of :data:`V1_ERRORS`; OGC requests (views that set ``g.ogc``) get an
``ows:ExceptionReport`` rendered from ``templates/ows_exception.xml``; OGC API requests (under
:data:`OGCAPI_PREFIX`) get RFC 7807 problem details ``{"type", "title", "status", "detail"}``
(plus ``code`` and ``locator``).
"""

from __future__ import annotations

import logging
import uuid

from flask import Flask, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from tileserver.errors import (
    BandNotFound,
    CollectionNotFound,
    Conflict,
    InvalidCredentials,
    JobLocked,
    JobNotFinished,
    MemoryBusy,
    MemoryTooLarge,
    NoSuchCoverage,
    OGCError,
    ProductNotFound,
    StoreUnavailable,
    TileserverError,
    WrongPassword,
)

log = logging.getLogger(__name__)

#: Path prefix of the openEO 1.x bases; their errors use the 1.x format.
V1_PREFIX = "/openeo/"

#: The one table from our exception classes to openEO 1.x error codes (and the HTTP status
#: where 1.x differs). A class not listed uses the ``code`` and ``status`` of the nearest
#: class in its MRO that sets them or is listed (``JobNotFound``, ``ProcessUnsupported``,
#: ``FormatUnsupported``, ``AuthenticationRequired``… are the same in both dialects).
V1_ERRORS: dict[type, tuple[str, int | None]] = {
    TileserverError: ("BadRequest", None),
    ProductNotFound: ("CollectionNotFound", 404),
    CollectionNotFound: ("CollectionNotFound", 404),
    BandNotFound: ("ProcessParameterInvalid", None),
    InvalidCredentials: ("TokenInvalid", 403),
    WrongPassword: ("CredentialsInvalid", 403),
    JobLocked: ("JobLocked", 400),
    JobNotFinished: ("JobNotFinished", 400),
    Conflict: ("Conflict", 409),
    MemoryTooLarge: ("PayloadTooLarge", 413),
    MemoryBusy: ("TooManyRequests", 429),
    StoreUnavailable: ("ServiceUnavailable", 503),
}

#: Path prefix of OGC API (Tiles, Maps, Coverages, Processes); its errors are RFC 7807 JSON.
OGCAPI_PREFIX = "/ogcapi"

#: Werkzeug's errors (404 routing, 405, 413…) by status, for both JSON dialects.
HTTP_CODES = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge",
              429: "TooManyRequests"}


def v1_code(exc: TileserverError) -> tuple[str, int]:
    """``(code, status)`` of one of our errors in openEO 1.x."""
    for cls in type(exc).__mro__:
        if cls in V1_ERRORS:
            code, status = V1_ERRORS[cls]
            return code, status or exc.status
        if "code" in cls.__dict__ or "status" in cls.__dict__:
            return exc.code, exc.status
    return exc.code, exc.status


def v1_body(code: str, message: str) -> dict:
    """An openEO 1.x error object."""
    return {"id": uuid.uuid4().hex, "code": code, "message": message, "links": []}


def _wants_v1() -> bool:
    return request.path.startswith(V1_PREFIX)


def ogc_response(code: str, message: str, status: int, locator: str | None = None):
    """An ``ows:ExceptionReport`` (OWS 1.1 for WMTS/WCS 1.1+/2.0, or the WCS 1.0 form)."""
    version = getattr(g, "ogc_version", None) or "1.1.0"
    template = getattr(g, "ogc_exception_template", None) or "ows_exception.xml"
    body = render_template(template, code=code, message=message, locator=locator,
                           version=version)
    mimetype = getattr(g, "ogc_exception_mimetype", None) or "application/xml"
    resp = current_app_response(body, status, mimetype)
    return resp


def current_app_response(body: str, status: int, mimetype: str = "application/xml"):
    """An XML response (WMS 1.1.1: ``application/vnd.ogc.se_xml``)."""
    from flask import current_app  # noqa: PLC0415

    return current_app.response_class(body, status=status, mimetype=mimetype)


def _wants_ogc() -> bool:
    return bool(getattr(g, "ogc", False))


def _wants_ogcapi() -> bool:
    return request.path == OGCAPI_PREFIX or request.path.startswith(OGCAPI_PREFIX + "/")


def problem_response(code: str, message: str, status: int, locator: str | None = None):
    """RFC 7807 problem details (``application/problem+json``), as OGC API answers errors;
    ``g.ogcapi_locators`` may rename a parser's locator to the OGC API parameter."""
    locator = (getattr(g, "ogcapi_locators", None) or {}).get(locator, locator)
    body = {"type": f"urn:tileserver:problem:{code}", "title": code,
            "status": status, "detail": message, "code": code}
    if locator:
        body["locator"] = locator
    resp = jsonify(body)
    resp.status_code = status
    resp.mimetype = "application/problem+json"
    return resp


def handle_tileserver_error(exc: TileserverError):
    """Our own errors: status and code come from the class."""
    if _wants_ogcapi():
        # the WCS codes answered 404 (InvalidSubsetting, NoSuchField…) are bad input here;
        # only a resource that does not exist is a 404
        bad_input = isinstance(exc, OGCError) and not isinstance(exc, NoSuchCoverage)
        status = 400 if exc.status == 404 and bad_input else exc.status
        return problem_response(exc.code, exc.message, status, exc.locator)
    if _wants_ogc():
        return ogc_response(exc.ogc_code, exc.message, exc.status, exc.locator)
    if _wants_v1():
        code, status = v1_code(exc)
        return jsonify(v1_body(code, exc.message)), status
    return jsonify(exc.to_json()), exc.status


def handle_http_error(exc: HTTPException):
    """Werkzeug's errors (404 routing, 405, 413, bad JSON…)."""
    status = exc.code or 500
    code = HTTP_CODES.get(status, exc.name.replace(" ", ""))
    if _wants_ogcapi():
        resp = problem_response(code, exc.description or exc.name, status)
        if status == 405 and getattr(exc, "valid_methods", None):
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp
    if _wants_ogc():
        ogc = {404: "NotFound", 413: "InvalidParameterValue"}.get(status, "NoApplicableCode")
        return ogc_response(ogc, exc.description or exc.name, status)
    message = exc.description or exc.name
    resp = jsonify(v1_body(code, message) if _wants_v1() else {"code": code, "message": message})
    resp.status_code = status
    if status == 405 and getattr(exc, "valid_methods", None):
        resp.headers["Allow"] = ", ".join(exc.valid_methods)
    return resp


def handle_unexpected(exc: Exception):
    """Anything else is our bug: log it, answer 500 without a traceback."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    if _wants_ogcapi():
        return problem_response("InternalServerError", "internal server error", 500)
    if _wants_ogc():
        return ogc_response("NoApplicableCode", "internal server error", 500)
    if _wants_v1():
        return jsonify(v1_body("Internal", "internal server error")), 500
    return jsonify({"code": "InternalServerError", "message": "internal server error"}), 500


def register(app: Flask) -> None:
    """Install the handlers."""
    app.register_error_handler(TileserverError, handle_tileserver_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
