"""Cross-cutting protections of every request: CORS, body size limits, retry hints, and a
bounded GDAL block cache.

CORS follows the openEO 0.0.2 specification: the request's ``Origin`` is echoed in
``Access-Control-Allow-Origin`` with ``Access-Control-Allow-Credentials: true`` (no CORS
headers without an ``Origin``); every ``OPTIONS`` request is answered 204 (with no
credentials needed) with the methods of the path. Tiles and coverages get the same
headers, so web maps on other origins can use them.
"""

from __future__ import annotations

import os
import re

from flask import Flask, current_app, make_response, request
from rasterio.env import set_gdal_config
from werkzeug.exceptions import HTTPException

from tileserver.errors import LimitExceeded, TooManyRequests

#: Headers a browser script may read from our responses.
EXPOSE_HEADERS = ("Location", "OpenEO-Identifier", "OpenEO-Costs", "Content-Disposition",
                  "Content-Length", "Warning", "X-Tileserver-Notes", "Retry-After",
                  "WWW-Authenticate", "Link")
#: Request headers a browser script may send.
ALLOW_HEADERS = ("Authorization", "Content-Type", "Accept", "Range", "If-None-Match")
#: How long a browser may cache a preflight answer (seconds).
PREFLIGHT_MAX_AGE = 3600
#: GDAL block cache of a server process (MB) unless ``GDAL_CACHEMAX`` is set.
GDAL_CACHE_MB = 128
#: Uploads of user files may be larger than JSON bodies.
UPLOAD_PATH = re.compile(r"^/(users/[^/]+|openeo/[^/]+)/files/.+")


def is_upload(method: str, path: str) -> bool:
    """Whether the request is a user file upload (streamed, with its own limit)."""
    return method == "PUT" and UPLOAD_PATH.match(path) is not None


def _limit_body():
    settings = current_app.extensions["tileserver"].settings
    upload = is_upload(request.method, request.path)
    limit = settings.max_upload_bytes if upload else settings.max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        raise LimitExceeded(
            f"the request body has {length} bytes, more than the limit of {limit}",
            locator="body")
    # Bodies without Content-Length (chunked): werkzeug stops reading at the maximum without
    # an error, so allow one byte more and look whether it came. Uploads are streamed and
    # count their bytes themselves; JSON bodies are read here.
    request.max_content_length = limit + 1
    if length is None and not upload and request.environ.get("wsgi.input_terminated"):
        if len(request.get_data(cache=True)) > limit:
            raise LimitExceeded(f"the request body is larger than the limit of {limit} bytes",
                                locator="body")
    return None


def _preflight():
    """Every ``OPTIONS`` request on a route: 204 with the route's methods (the openEO CORS
    page: "all endpoints must respond to the OPTIONS HTTP method ... with 204")."""
    if request.method != "OPTIONS":
        return None
    if isinstance(request.routing_exception, HTTPException):
        raise request.routing_exception
    adapter = current_app.url_map.bind_to_environ(request.environ)
    methods = sorted(set(adapter.allowed_methods(request.path)) | {"OPTIONS"})
    resp = current_app.response_class(status=204, content_type="application/json")
    resp.headers["Allow"] = ", ".join(methods)
    resp.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
    requested = request.headers.get("Access-Control-Request-Headers", "")
    allowed = list(ALLOW_HEADERS) + [h.strip() for h in requested.split(",")
                                     if h.strip() and h.strip().title() not in ALLOW_HEADERS]
    resp.headers["Access-Control-Allow-Headers"] = ", ".join(allowed)
    resp.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    return resp


def _cors(resp):
    origin = request.headers.get("Origin")
    if origin:
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.headers["Access-Control-Allow-Credentials"] = "true"
        resp.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSE_HEADERS)
        resp.vary.add("Origin")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


def _too_many(exc: TooManyRequests):
    from tileserver.web.errors import handle_tileserver_error  # noqa: PLC0415

    resp = make_response(handle_tileserver_error(exc))
    resp.headers["Retry-After"] = str(getattr(exc, "retry_after", 1))
    return resp


def bound_gdal_cache() -> None:
    """Cap GDAL's block cache (by default 5 % of the machine's RAM) so that a worker's
    memory is bounded by our own cache limit plus this; ``GDAL_CACHEMAX`` overrides it."""
    if "GDAL_CACHEMAX" not in os.environ:
        set_gdal_config("GDAL_CACHEMAX", GDAL_CACHE_MB)


def init_app(app: Flask) -> None:
    """Install CORS, the preflight answer, the body limits and the 503 retry hint."""
    bound_gdal_cache()
    app.before_request_funcs.setdefault(None, []).insert(0, _preflight)
    app.before_request(_limit_body)
    app.after_request(_cors)
    app.register_error_handler(TooManyRequests, _too_many)
