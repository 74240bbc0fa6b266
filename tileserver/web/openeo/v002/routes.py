"""openEO REST API (0.0.2 flavour): capabilities, data, processes, execute, jobs, services."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from tileserver import __version__
from tileserver.errors import NotFound, TileserverError
from tileserver.jobs import usecases as jobs
from tileserver.jobs.services import SERVICE_TYPES, check_service_args, service_type
from tileserver.metrics import exposition as metrics_text
from tileserver.processes import TRANSLATIONS
from tileserver.render.formats import output_formats, validate_output
from tileserver.web.apidoc import (
    ANY_ARRAY,
    ANY_OBJECT,
    EVALUATION_ERRORS,
    FILE,
    NO_CONTENT,
    json_request,
    json_response,
    operation,
    ref,
)
from tileserver.web.common import (
    created,
    current_user,
    job_json,
    json_body,
    result_file,
    root_api_rules,
    runtime,
    service_json,
)

bp = Blueprint("openeo", __name__)


@bp.get("/")
@operation("Capabilities: API version and the list of endpoints", json_response(ANY_OBJECT))
def capabilities():
    """The list of endpoints (0.0.2 ``GET /``)."""
    all_rules = root_api_rules()
    rules = sorted({r.rule for r in all_rules})
    endpoints = []
    for rule in rules:
        methods = set()
        for r in all_rules:
            if r.rule == rule:
                methods |= set(r.methods or ()) - {"HEAD", "OPTIONS"}
        path = rule.replace("<", "{").replace(">", "}")
        path = path.replace("{path:", "{").replace("{int:", "{")
        endpoints.append({"path": path, "methods": sorted(methods)})
    return jsonify({
        "version": "0.0.2",
        "api_version": "0.0.2",
        "backend_version": __version__,
        "title": "tileserver",
        "description": "openEO process graphs over STAC imagery, served lazily as WMTS/WCS",
        "endpoints": endpoints,
    })


@bp.get("/capabilities")
@operation("The endpoints as strings", json_response({"type": "array"}))
def capabilities_list():
    """0.0.2 also lists the endpoints as plain strings."""
    return jsonify(sorted({r.rule for r in root_api_rules()}))


@bp.get("/capabilities/output_formats")
@operation("Output formats and their parameters", json_response(ANY_OBJECT))
def formats():
    """Supported output formats and their options."""
    return jsonify(output_formats())


@bp.get("/capabilities/services")
@operation("Secondary service types",
           json_response({"type": "array", "items": {"type": "string"}}))
def service_types():
    """Supported secondary web service types."""
    return jsonify(list(SERVICE_TYPES))


@bp.get("/data")
@operation("All products", json_response(ANY_ARRAY))
def data_list():
    """All products."""
    return jsonify([p.to_json() for p in runtime().catalog])


@bp.get("/data/<product_id>")
@operation("One product: extent, time, bands", json_response(ANY_OBJECT), "NotFound")
def data_detail(product_id: str):
    """One product with extent, time and bands."""
    try:
        product = runtime().catalog.get(product_id)
    except TileserverError:
        raise NotFound(f"product {product_id!r} does not exist") from None
    return jsonify(product.to_json(full=True))


@bp.get("/processes")
@operation("All processes", json_response(ANY_ARRAY))
def process_list():
    """All processes."""
    return jsonify([p.to_json() for p in TRANSLATIONS.values()])


@bp.get("/processes/<process_id>")
@operation("One process with its arguments", json_response(ANY_OBJECT), "NotFound")
def process_detail(process_id: str):
    """One process with its arguments."""
    if process_id not in TRANSLATIONS:
        raise NotFound(f"process {process_id!r} does not exist")
    return jsonify(TRANSLATIONS[process_id].to_json(full=True))


@bp.get("/metrics")
@operation("Prometheus metrics",
           {"description": "text exposition", "content": {"text/plain": {}}})
def metrics():
    """Prometheus counters (of every worker process under ``tileserver serve``)."""
    return Response(metrics_text(), mimetype=CONTENT_TYPE_LATEST)


def _graph_and_output(body: dict):
    if "process_graph" not in body:
        raise TileserverError("missing 'process_graph'", locator="process_graph")
    return jobs.parse(runtime(), body["process_graph"], body.get("output"))


@bp.post("/execute")
@operation("Evaluate a graph synchronously; the answer is the file", FILE,
           *EVALUATION_ERRORS, body=json_request(ref("JobRequest")))
def execute():
    """Evaluate a graph on its native view and return the file."""
    body = json_body()
    jobs.text_fields(body)  # JobRequest's title and description: checked, not kept
    graph, output = _graph_and_output(body)
    return result_file(jobs.execute(runtime(), current_user(), graph, output), graph.notes)


# -- jobs ------------------------------------------------------------------------------


def _job_fields(body: dict, partial: bool = False) -> dict:
    fields: dict = {}
    if "process_graph" in body or not partial:
        graph, output = _graph_and_output(body)
        fields["process_graph"] = graph.source
        fields["output"] = output
    elif "output" in body:
        fields["output"] = validate_output(body["output"])
    fields.update(jobs.text_fields(body))
    return fields


@bp.post("/jobs")
@operation("Register a lazy job", json_response(ref("Job"), "created"), "BadRequest",
           "Unauthorized", "TooLarge", status=201, body=json_request(ref("JobRequest")))
def create_job():
    """Validate and store a lazy job."""
    fields = _job_fields(json_body())
    job = runtime().store.create_job(current_user(), **fields)
    return created(job_json(job), ".get_job", job["job_id"], absolute=False,
                   job_id=job["job_id"])


@bp.get("/jobs/<job_id>")
@operation("Job description", json_response(ref("Job")), "Unauthorized", "NotFound")
def get_job(job_id: str):
    """Job meta."""
    return jsonify(job_json(runtime().store.get_job(job_id, current_user())))


@bp.patch("/jobs/<job_id>")
@operation("Change a job's graph, output, title or description", json_response(ref("Job")),
           "BadRequest", "Unauthorized", "NotFound", "Conflict",
           body=json_request(ref("JobPatch")))
def patch_job(job_id: str):
    """Replace the graph, output, title or description."""
    rt, user = runtime(), current_user()
    jobs.unlocked_job(rt, user, job_id)
    job = jobs.patch_job(rt, user, job_id, _job_fields(json_body(), partial=True))
    return jsonify(job_json(job))


@bp.delete("/jobs/<job_id>")
@operation("Delete a job and its services", NO_CONTENT, "Unauthorized", "NotFound",
           status=204)
def delete_job(job_id: str):
    """Delete a job and its services."""
    jobs.delete_job(runtime(), current_user(), job_id)
    return "", 204


@bp.get("/users/<user_id>/jobs")
@operation("The user's jobs", json_response(ANY_ARRAY), "Unauthorized", "NotFound")
def user_jobs(user_id: str):
    """The user's jobs."""
    _same_user(user_id)
    return jsonify([job_json(j, full=False) for j in runtime().store.list_jobs(user_id)])


def _same_user(user_id: str) -> None:
    if user_id != current_user():
        raise NotFound(f"user {user_id} does not exist")


# -- services --------------------------------------------------------------------------


@bp.post("/services")
@operation("Expose a job as WMTS, XYZ or WCS", json_response(ref("Service"), "created"),
           "BadRequest", "Unauthorized", "NotFound", status=201,
           body=json_request(ref("ServiceRequest")))
def create_service():
    """Expose a job as a WMTS layer, XYZ tiles or a WCS coverage."""
    body = json_body()
    kind = service_type(body.get("type")).name
    job_id = body.get("job_id")
    if not isinstance(job_id, str):
        raise TileserverError("'job_id' must be a job id string", locator="job_id")
    args = check_service_args(body.get("args"))
    service = runtime().store.create_service(current_user(), job_id, kind, args,
                                             jobs.optional_text(body, "title"))
    sid = service["service_id"]
    return created(service_json(service), ".get_service", sid, absolute=False,
                   service_id=sid)


@bp.get("/services/<service_id>")
@operation("Service description", json_response(ref("Service")), "Unauthorized",
           "NotFound")
def get_service(service_id: str):
    """Service description."""
    return jsonify(service_json(runtime().store.get_service(service_id, current_user())))


@bp.patch("/services/<service_id>")
@operation("Change a service's args or title", json_response(ref("Service")), "BadRequest",
           "Unauthorized", "NotFound", body=json_request(ref("ServicePatch")))
def patch_service(service_id: str):
    """Change a service's args or title."""
    store = runtime().store
    user = current_user()
    store.get_service(service_id, user)
    body = json_body()
    fields = {}
    if "args" in body:
        fields["service_args"] = check_service_args(body["args"])
    if "title" in body:
        fields["title"] = jobs.optional_text(body, "title")
    if fields:
        store.update_service(service_id, user, **fields)
    return jsonify(service_json(store.get_service(service_id, user)))


@bp.delete("/services/<service_id>")
@operation("Delete a service; its URLs answer 404", NO_CONTENT, "Unauthorized",
           "NotFound", status=204)
def delete_service(service_id: str):
    """Delete a service: its URLs answer 404 from now on."""
    runtime().store.delete_service(service_id, current_user())
    return "", 204


@bp.get("/users/<user_id>/services")
@operation("The user's services", json_response(ANY_ARRAY), "Unauthorized",
           "NotFound")
def user_services(user_id: str):
    """The user's services."""
    _same_user(user_id)
    return jsonify([service_json(s) for s in runtime().store.list_services(user_id)])

