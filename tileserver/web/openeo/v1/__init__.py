"""The openEO API 1.x dialect, mounted once per version of :data:`~.versions.VERSIONS` (1.2
under ``/openeo/1.2/``), and ``/.well-known/openeo`` at the root.

Every route of the dialect is in :data:`ROUTES`, with the :class:`~.versions.Gate` of the
versions that have it; each version's blueprint gets the routes its gate admits (the
capabilities' ``endpoints`` are built from it through the URL map). The views live in the
modules named there and use the shared use cases of :mod:`tileserver.jobs`. Errors under a
base use the 1.x format (:mod:`tileserver.web.errors`). Adding a version: see
:mod:`tileserver.web.openeo.v1.versions`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from flask import Blueprint, Flask

from tileserver.web.openeo.v1 import capabilities, catalog, files, processing, services, udp
from tileserver.web.openeo.v1.versions import EVERY, VERSIONS, ApiVersion, Gate

wellknown = Blueprint("openeo_wellknown", __name__)
wellknown.add_url_rule("/.well-known/openeo", view_func=capabilities.well_known)


class Route(NamedTuple):
    """One endpoint: ``public`` ones answer without credentials when users are configured;
    ``gate`` says which versions have it."""

    rule: str
    methods: list[str]
    view: Callable[..., Any]
    public: bool
    gate: Gate = EVERY


GET, POST, PATCH, PUT, DELETE = ["GET"], ["POST"], ["PATCH"], ["PUT"], ["DELETE"]

#: Every route of the 1.x dialect.
ROUTES: list[Route] = [Route(*row) for row in [
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
]]



def blueprint(version: ApiVersion) -> Blueprint:
    """The routes of ``version`` under its base (endpoints ``<version.name>.<view>``)."""
    bp = Blueprint(version.name, __name__, url_prefix=version.base)
    for route in ROUTES:
        if route.gate.admits(version):
            bp.add_url_rule(route.rule, endpoint=route.view.__name__, view_func=route.view,
                            methods=route.methods)
    return bp


#: One blueprint per version.
BLUEPRINTS = [blueprint(version) for version in VERSIONS]

#: Endpoints that need no credentials.
PUBLIC_ENDPOINTS = frozenset(
    [f"{bp.name}.{route.view.__name__}" for bp in BLUEPRINTS for route in ROUTES
     if route.public]
    + ["openeo_wellknown.well_known"])


def init_app(app: Flask) -> None:
    """Mount every version and ``/.well-known/openeo``; let the public routes answer without
    credentials, and keep these routes out of the root API's OpenAPI document."""
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    app.register_blueprint(wellknown)
    public = app.extensions.setdefault("tileserver.public_endpoints", set())
    public.update(PUBLIC_ENDPOINTS)
    versioned = app.extensions.setdefault("tileserver.versioned_blueprints", set())
    versioned.update({bp.name for bp in BLUEPRINTS} | {wellknown.name})
