"""The openEO API 1.2 dialect under ``/openeo/1.2/``, and ``/.well-known/openeo`` at the root.

Every route of the version is in :data:`ROUTES` (the capabilities' ``endpoints`` are built
from it through the URL map); the views live in the modules named there and use the shared
use cases of :mod:`tileserver.services`. Errors under the base use the 1.x format
(:mod:`tileserver.web.errors`). A 1.3 dialect would be another such package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask

from tileserver.web.openeo.v1 import capabilities

from tileserver.web.openeo.v1 import catalog

from tileserver.web.openeo.v1 import files

from tileserver.web.openeo.v1 import processing

from tileserver.web.openeo.v1 import services

from tileserver.web.openeo.v1 import udp
from tileserver.web.openeo.v1.capabilities import BASE, NAME

bp = Blueprint(NAME, __name__, url_prefix=BASE)
wellknown = Blueprint("openeo_wellknown", __name__)
wellknown.add_url_rule("/.well-known/openeo", view_func=capabilities.well_known)

GET, POST, PATCH, PUT, DELETE = ["GET"], ["POST"], ["PATCH"], ["PUT"], ["DELETE"]

#: ``(rule, methods, view, public)``: every route of the 1.2 API; ``public`` ones answer
#: without credentials when users are configured.
ROUTES: list[tuple[str, list[str], Callable[..., Any], bool]] = [
    ("/", GET, capabilities.index, True),
    ("/conformance", GET, capabilities.conformance, True),
    ("/file_formats", GET, capabilities.file_formats, True),
    ("/service_types", GET, capabilities.service_types, True),
    ("/udf_runtimes", GET, capabilities.udf_runtimes, True),
    ("/credentials/basic", GET, capabilities.credentials_basic, True),
    ("/me", GET, capabilities.me, False),
    ("/collections", GET, catalog.collections, True),
    ("/collections/<collection_id>", GET, catalog.collection, True),
    ("/collections/<collection_id>/items", GET, catalog.collection_items, True),
    ("/processes", GET, catalog.processes, True),
    ("/result", POST, processing.result, False),
    ("/validation", POST, processing.validation, False),
    ("/jobs", GET, processing.list_jobs, False),
    ("/jobs", POST, processing.create_job, False),
    ("/jobs/<job_id>", GET, processing.get_job, False),
    ("/jobs/<job_id>", PATCH, processing.patch_job, False),
    ("/jobs/<job_id>", DELETE, processing.delete_job, False),
    ("/jobs/<job_id>/results", POST, processing.start_job, False),
    ("/jobs/<job_id>/results", GET, processing.job_results, False),
    ("/jobs/<job_id>/results", DELETE, processing.cancel_job, False),
    ("/jobs/<job_id>/logs", GET, processing.job_logs, False),
    ("/services", GET, services.list_services, False),
    ("/services", POST, services.create_service, False),
    ("/services/<service_id>", GET, services.get_service, False),
    ("/services/<service_id>", PATCH, services.patch_service, False),
    ("/services/<service_id>", DELETE, services.delete_service, False),
    ("/process_graphs", GET, udp.list_udps, False),
    ("/process_graphs/<process_graph_id>", GET, udp.get_udp, False),
    ("/process_graphs/<process_graph_id>", PUT, udp.put_udp, False),
    ("/process_graphs/<process_graph_id>", DELETE, udp.delete_udp, False),
    ("/files", GET, files.list_files, False),
    ("/files/<path:path>", GET, files.get_file, False),
    ("/files/<path:path>", PUT, files.put_file, False),
    ("/files/<path:path>", DELETE, files.delete_file, False),
]

for _rule, _methods, _view, _public in ROUTES:
    bp.add_url_rule(_rule, endpoint=_view.__name__, view_func=_view, methods=_methods)

#: Endpoints that need no credentials.
PUBLIC_ENDPOINTS = frozenset(
    [f"{NAME}.{view.__name__}" for _r, _m, view, public in ROUTES if public]
    + ["openeo_wellknown.well_known"])


def init_app(app: Flask) -> None:
    """Serve ``/.well-known/openeo`` and let the public routes answer without credentials."""
    app.register_blueprint(wellknown)
    public = app.extensions.setdefault("tileserver.public_endpoints", set())
    public.update(PUBLIC_ENDPOINTS)
    versioned = app.extensions.setdefault("tileserver.versioned_blueprints", set())
    versioned.update({NAME, wellknown.name})
