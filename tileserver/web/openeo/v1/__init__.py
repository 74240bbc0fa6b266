"""The openEO API 1.x dialect, mounted once per version of :data:`~.versions.VERSIONS` (1.2
under ``/openeo/1.2/``, 1.3 under ``/openeo/1.3/``), and ``/.well-known/openeo`` at the root.

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

from tileserver.web.openeo.v1 import (
    capabilities,
    catalog,
    files,
    processing,
    services,
    udp,
    workspaces,
)
from tileserver.web.openeo.v1.versions import EVERY, SERVED, V1_3, VERSIONS, ApiVersion, Gate

wellknown = Blueprint("openeo_wellknown", __name__)
wellknown.add_url_rule("/.well-known/openeo", view_func=capabilities.well_known)


class Route(NamedTuple):
    """One endpoint: ``public`` ones answer without credentials when users are configured;
    ``gate`` says which versions have it; ``wanted`` (when set) whether the app's
    configuration has it at all (``/credentials/oidc`` with OpenID Connect providers)."""

    rule: str
    methods: list[str]
    view: Callable[..., Any]
    public: bool
    gate: Gate = EVERY
    wanted: Callable[[Flask], bool] | None = None


GET, POST, PATCH, PUT, DELETE = ["GET"], ["POST"], ["PATCH"], ["PUT"], ["DELETE"]

#: Every route of the 1.x dialect.
ROUTES: list[Route] = [Route(*row) for row in [
    ("/", GET, capabilities.index, True),
    ("/conformance", GET, capabilities.conformance, True),
    ("/file_formats", GET, capabilities.file_formats, True),
    ("/service_types", GET, capabilities.service_types, True),
    ("/udf_runtimes", GET, capabilities.udf_runtimes, True),
    ("/credentials/basic", GET, capabilities.credentials_basic, True),
    ("/credentials/oidc", GET, capabilities.credentials_oidc, True, EVERY,
     capabilities.has_oidc),
    ("/me", GET, capabilities.me, False),
    ("/collections", GET, catalog.collections, True),
    ("/collections/<collection_id>", GET, catalog.collection, True),
    ("/collections/<collection_id>/items", GET, catalog.collection_items, True),
    ("/processes", GET, catalog.processes, True),
    ("/result", POST, processing.result, False),
    ("/result/logs/<token>", GET, processing.result_logs, False),
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
    ("/jobs/<job_id>/estimate", GET, processing.estimate_job, False),
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
    ("/processing_parameters", GET, capabilities.processing_parameters, True, Gate(since=V1_3)),
    ("/workspace_providers", GET, workspaces.providers, True, Gate(since=V1_3)),
    ("/workspaces", GET, workspaces.list_workspaces, False, Gate(since=V1_3)),
    ("/workspaces", POST, workspaces.create_workspace, False, Gate(since=V1_3)),
    ("/workspaces/<workspace_id>", GET, workspaces.get_workspace, False, Gate(since=V1_3)),
    ("/workspaces/<workspace_id>", PATCH, workspaces.patch_workspace, False, Gate(since=V1_3)),
    ("/workspaces/<workspace_id>", DELETE, workspaces.delete_workspace, False,
     Gate(since=V1_3)),
    ("/workspaces/<workspace_id>/files", GET, workspaces.workspace_files, False,
     Gate(since=V1_3)),
    ("/workspaces/<workspace_id>/files/<path:path>", GET, workspaces.workspace_file, False,
     Gate(since=V1_3)),
]]


def mount(app: Flask, version: ApiVersion) -> None:
    """Serve ``version`` under its base: a blueprint named after it with the routes its
    gates admit. Its public routes answer without credentials, :func:`~.versions.current`
    and ``/.well-known/openeo`` know it, and the root API's OpenAPI document leaves it out."""
    bp = Blueprint(version.name, __name__, url_prefix=version.base)
    public = app.extensions.setdefault("tileserver.public_endpoints", set())
    for route in ROUTES:
        if route.gate.admits(version) and (route.wanted is None or route.wanted(app)):
            bp.add_url_rule(route.rule, endpoint=route.view.__name__, view_func=route.view,
                            methods=route.methods)
            if route.public:
                public.add(f"{version.name}.{route.view.__name__}")
    app.register_blueprint(bp)
    app.extensions.setdefault(SERVED, {})[version.name] = version
    app.extensions.setdefault("tileserver.versioned_blueprints", set()).add(version.name)


def init_app(app: Flask) -> None:
    """Mount every version of :data:`~.versions.VERSIONS`, and ``/.well-known/openeo``."""
    for version in VERSIONS:
        mount(app, version)
    app.register_blueprint(wellknown)
    app.extensions["tileserver.public_endpoints"].add(f"{wellknown.name}.well_known")
    app.extensions["tileserver.versioned_blueprints"].add(wellknown.name)
