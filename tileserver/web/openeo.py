"""openEO REST API (0.0.2 flavour): capabilities, data, processes, execute, jobs, services."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tileserver import __version__
from tileserver.core import params
from tileserver.core.encoders import encode, output_formats, validate_output
from tileserver.core.processes import REGISTRY
from tileserver.core.userfiles import eval_context
from tileserver.errors import LimitExceeded, NotFound, TileserverError
from tileserver.jobs.store import SERVICE_TYPES
from tileserver.web.common import (
    current_user,
    job_json,
    json_body,
    runtime,
    service_json,
)

bp = Blueprint("openeo", __name__)


@bp.get("/")
def capabilities():
    """The list of endpoints (0.0.2 ``GET /``)."""
    rules = sorted({r.rule for r in current_app.url_map.iter_rules() if r.endpoint != "static"})
    endpoints = []
    for rule in rules:
        methods = set()
        for r in current_app.url_map.iter_rules():
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
def capabilities_list():
    """0.0.2 also lists the endpoints as plain strings."""
    return jsonify(sorted({r.rule for r in current_app.url_map.iter_rules()
                           if r.endpoint != "static"}))


@bp.get("/capabilities/output_formats")
def formats():
    """Supported output formats and their options."""
    return jsonify(output_formats())


@bp.get("/capabilities/services")
def service_types():
    """Supported secondary web service types."""
    return jsonify(list(SERVICE_TYPES))


@bp.get("/data")
def data_list():
    """All products."""
    return jsonify([p.to_json() for p in runtime().catalog])


@bp.get("/data/<product_id>")
def data_detail(product_id: str):
    """One product with extent, time and bands."""
    try:
        product = runtime().catalog.get(product_id)
    except TileserverError:
        raise NotFound(f"product {product_id!r} does not exist") from None
    return jsonify(product.to_json(full=True))


@bp.get("/processes")
def process_list():
    """All processes."""
    return jsonify([p.to_json() for p in REGISTRY.values()])


@bp.get("/processes/<process_id>")
def process_detail(process_id: str):
    """One process with its arguments."""
    if process_id not in REGISTRY:
        raise NotFound(f"process {process_id!r} does not exist")
    return jsonify(REGISTRY[process_id].to_json(full=True))


@bp.get("/metrics")
def metrics():
    """Prometheus counters."""
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


def _graph_and_output(body: dict):
    if "process_graph" not in body:
        raise TileserverError("missing 'process_graph'", locator="process_graph")
    graph = runtime().engine.parse(body["process_graph"])
    output = validate_output(body.get("output"))
    return graph, output


@bp.post("/execute")
def execute():
    """Evaluate a graph on its native view and return the file."""
    graph, output = _graph_and_output(json_body())
    result = execute_graph(graph, output)
    resp = Response(result.content, mimetype=result.media_type)
    resp.headers["Content-Disposition"] = f'attachment; filename="result.{result.extension}"'
    for note in graph.notes:
        resp.headers.add("Warning", f'299 tileserver "{note}"')
    resp.headers["X-Tileserver-Notes"] = " | ".join(graph.notes) if graph.notes else ""
    if not graph.notes:
        del resp.headers["X-Tileserver-Notes"]
    return resp


def execute_graph(graph, output):
    """Evaluate on the native view and encode (images and zonal statistics tables)."""
    rt = runtime()
    engine = rt.engine
    view = engine.native_view(graph)
    limit = rt.settings.max_output_pixels
    # tables (zonal statistics) choose their own views: the native view is only nominal
    if graph.is_raster and view.pixels > limit:
        raise LimitExceeded(
            f"the result would be {view.width}x{view.height} = {view.pixels} pixels, more than "
            f"the limit of {limit} for synchronous execution; use a batch job or a smaller bbox"
        )
    context = eval_context(rt.settings.home, current_user())
    result = engine.evaluate(graph, view, purpose="execute", context=context)
    return encode(result, output)


# -- jobs ------------------------------------------------------------------------------


def _job_fields(body: dict, partial: bool = False) -> dict:
    fields: dict = {}
    if "process_graph" in body or not partial:
        graph, output = _graph_and_output(body)
        fields["process_graph"] = graph.source
        fields["output"] = output
    elif "output" in body:
        fields["output"] = validate_output(body["output"])
    for key in ("title", "description"):
        if key in body:
            fields[key] = _optional_text(body, key)
    return fields


#: Longest accepted title and description of a job or service (characters).
TEXT_LIMITS = {"title": 1000, "description": 100_000}


def _optional_text(body: dict, key: str) -> str | None:
    """A ``title``/``description`` field: a string of bounded length, or null."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TileserverError(f"'{key}' must be a string", locator=key)
    return params.text(value, key, error=TileserverError, max_length=TEXT_LIMITS[key],
                       name=f"'{key}'")


@bp.post("/jobs")
def create_job():
    """Validate and store a lazy job."""
    fields = _job_fields(json_body())
    job = runtime().store.create_job(current_user(), **fields)
    resp = jsonify(job_json(job))
    resp.status_code = 201
    resp.headers["Location"] = f"/jobs/{job['job_id']}"
    resp.headers["OpenEO-Identifier"] = job["job_id"]
    return resp


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    """Job meta."""
    return jsonify(job_json(runtime().store.get_job(job_id, current_user())))


@bp.patch("/jobs/<job_id>")
def patch_job(job_id: str):
    """Replace the graph, output, title or description."""
    store = runtime().store
    user = current_user()
    job = store.get_job(job_id, user)
    if job["status"] in ("queued", "running"):
        from tileserver.errors import Conflict  # noqa: PLC0415

        raise Conflict(f"job {job_id} is {job['status']}; pause or cancel it before changing it")
    fields = _job_fields(json_body(), partial=True)
    changes_result = ("process_graph" in fields and fields["process_graph"] != job[
        "process_graph"]) or ("output" in fields and fields["output"] != job["output"])
    if changes_result and job["status"] != "submitted":
        # the stored results and finished blocks belong to the old graph: drop them, and
        # the job starts its lifecycle again
        hook = current_app.extensions.get("tileserver.on_job_change")
        if hook:
            hook(job_id)
        fields.update(status="submitted", progress=0.0, error=None, extra={})
        store.log(job_id, "graph or output changed: previous results discarded")
    if fields:
        store.update_job(job_id, user, **fields)
    return jsonify(job_json(store.get_job(job_id, user)))


@bp.delete("/jobs/<job_id>")
def delete_job(job_id: str):
    """Delete a job and its services."""
    rt = runtime()
    user = current_user()
    rt.store.get_job(job_id, user)
    hook = current_app.extensions.get("tileserver.on_job_delete")
    if hook:
        hook(job_id)
    rt.store.delete_job(job_id, user)
    return "", 204


@bp.get("/users/<user_id>/jobs")
def user_jobs(user_id: str):
    """The user's jobs."""
    _same_user(user_id)
    return jsonify([job_json(j, full=False) for j in runtime().store.list_jobs(user_id)])


def _same_user(user_id: str) -> None:
    if user_id != current_user():
        raise NotFound(f"user {user_id} does not exist")


# -- services --------------------------------------------------------------------------


def _service_args(kind: str, args) -> dict:
    from tileserver.core.styles import style_from_args  # noqa: PLC0415

    if args is None:
        return {}
    if not isinstance(args, dict):
        raise TileserverError("'args' must be an object", locator="args")
    style_args = {k: args[k] for k in ("colormap", "range") if k in args}
    if style_args:
        try:
            style_from_args(style_args, "reflectance")
        except TileserverError as exc:
            raise TileserverError(exc.message, locator="args") from None
    return args


@bp.post("/services")
def create_service():
    """Expose a job as a WMTS layer, XYZ tiles or a WCS coverage."""
    body = json_body()
    kind = body.get("type")
    if kind not in SERVICE_TYPES:
        raise TileserverError(
            f"'type' must be one of {list(SERVICE_TYPES)}, got {kind!r}", locator="type")
    job_id = body.get("job_id")
    if not isinstance(job_id, str):
        raise TileserverError("'job_id' must be a job id string", locator="job_id")
    args = _service_args(kind, body.get("args"))
    service = runtime().store.create_service(current_user(), job_id, kind, args,
                                             _optional_text(body, "title"))
    resp = jsonify(service_json(service))
    resp.status_code = 201
    resp.headers["Location"] = f"/services/{service['service_id']}"
    resp.headers["OpenEO-Identifier"] = service["service_id"]
    return resp


@bp.get("/services/<service_id>")
def get_service(service_id: str):
    """Service description."""
    return jsonify(service_json(runtime().store.get_service(service_id, current_user())))


@bp.patch("/services/<service_id>")
def patch_service(service_id: str):
    """Change a service's args or title."""
    store = runtime().store
    user = current_user()
    service = store.get_service(service_id, user)
    body = json_body()
    fields = {}
    if "args" in body:
        fields["service_args"] = _service_args(service["service_type"], body["args"])
    if "title" in body:
        fields["title"] = _optional_text(body, "title")
    if fields:
        store.update_service(service_id, user, **fields)
    return jsonify(service_json(store.get_service(service_id, user)))


@bp.delete("/services/<service_id>")
def delete_service(service_id: str):
    """Delete a service: its URLs answer 404 from now on."""
    runtime().store.delete_service(service_id, current_user())
    return "", 204


@bp.get("/users/<user_id>/services")
def user_services(user_id: str):
    """The user's services."""
    _same_user(user_id)
    return jsonify([service_json(s) for s in runtime().store.list_services(user_id)])

