"""Cross-cutting protections of every request: CORS, body size limits, retry hints, and a
bounded GDAL block cache.

CORS (flask-cors) follows the openEO specification: the request's ``Origin`` is echoed in
``Access-Control-Allow-Origin`` with ``Access-Control-Allow-Credentials: true`` (no CORS
headers without an ``Origin``), and the headers of :data:`EXPOSE_HEADERS` are readable by
browser scripts. Every ``OPTIONS`` request on a route is answered 204 without credentials,
with the route's methods ("all endpoints must respond to the OPTIONS HTTP method ... with
204"). Tiles and coverages get the same headers, so web maps on other origins can use them.
"""

from __future__ import annotations

import os
import re

from flask import Flask, current_app, make_response, request
from flask_cors import CORS
from rasterio.env import set_gdal_config
from werkzeug.exceptions import HTTPException

from tileserver.errors import LimitExceeded, TooManyRequests
from tileserver.web.errors import handle_tileserver_error

#: Headers a browser script may read from our responses.
EXPOSE_HEADERS = ("Location", "OpenEO-Identifier", "OpenEO-Costs", "Content-Disposition",
                  "Content-Length", "Warning", "X-Tileserver-Notes", "Retry-After",
                  "WWW-Authenticate", "Link")
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


def _options():
    """Every ``OPTIONS`` request on a route: 204 with the route's methods in ``Allow`` and
    ``Access-Control-Allow-Methods`` (flask-cors adds the CORS headers to it)."""
    if request.method != "OPTIONS":
        return None
    if isinstance(request.routing_exception, HTTPException):
        raise request.routing_exception
    adapter = current_app.url_map.bind_to_environ(request.environ)
    methods = ", ".join(sorted(set(adapter.allowed_methods(request.path)) | {"OPTIONS"}))
    resp = current_app.response_class(status=204, content_type="application/json")
    resp.headers["Allow"] = methods
    resp.headers["Access-Control-Allow-Methods"] = methods
    return resp


def _route_methods(resp):
    """flask-cors lists one fixed set of methods in a preflight answer; openEO asks for the
    endpoint's own (the ``Allow`` of :func:`_options`)."""
    if request.method == "OPTIONS" and "Allow" in resp.headers:
        resp.headers["Access-Control-Allow-Methods"] = resp.headers["Allow"]
    return resp


def _nosniff(resp):
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


def _too_many(exc: TooManyRequests):
    resp = make_response(handle_tileserver_error(exc))
    resp.headers["Retry-After"] = str(getattr(exc, "retry_after", 1))
    return resp


def bound_gdal_cache() -> None:
    """Cap GDAL's block cache (by default 5 % of the machine's RAM) so that a worker's
    memory is bounded by our own cache limit plus this; ``GDAL_CACHEMAX`` overrides it."""
    if "GDAL_CACHEMAX" not in os.environ:
        set_gdal_config("GDAL_CACHEMAX", GDAL_CACHE_MB)


def init_app(app: Flask) -> None:
    """Install CORS, the ``OPTIONS`` answer, the body limits and the 503 retry hint."""
    bound_gdal_cache()
    # before every other hook (authentication too): OPTIONS needs no credentials
    app.before_request_funcs.setdefault(None, []).insert(0, _options)
    app.before_request(_limit_body)
    # after_request hooks run last-registered first: _route_methods after flask-cors
    app.after_request(_route_methods)
    # error answers pass through after_request too: no need for flask-cors to wrap
    # the app's exception handlers (intercept_exceptions)
    CORS(app, origins="*", supports_credentials=True, allow_headers="*",
         expose_headers=list(EXPOSE_HEADERS), max_age=PREFLIGHT_MAX_AGE,
         intercept_exceptions=False)
    app.after_request(_nosniff)
    app.register_error_handler(TooManyRequests, _too_many)
