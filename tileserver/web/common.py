"""Small helpers shared by the protocol modules."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify, request, url_for

from tileserver.errors import ServiceNotFound, TileserverError
from tileserver.jobs import lifecycle
from tileserver.jobs.services import SERVICE_TYPES
from tileserver.jobs.store import iso
from tileserver.runtime import Runtime


def runtime() -> Runtime:
    """The application's :class:`Runtime`."""
    return current_app.extensions["tileserver"]


def current_user() -> str:
    """The authenticated user (``tileserver.web.auth`` decides; ``me`` in single-user mode)."""
    hook = current_app.extensions.get("tileserver.auth")
    return hook() if hook else "me"


def base_url() -> str:
    """Public base URL without trailing slash."""
    public = runtime().settings.public_url
    return (public or request.host_url).rstrip("/")


def root_api_rules() -> list:
    """The URL rules of the root (0.0.2) API: not ``static``, not another API version's
    (their blueprints are listed in ``app.extensions["tileserver.versioned_blueprints"]``)."""
    other = current_app.extensions.get("tileserver.versioned_blueprints", ())
    return [r for r in current_app.url_map.iter_rules()
            if r.endpoint != "static" and r.endpoint.split(".")[0] not in other]


def external_url(endpoint: str, **values: Any) -> str:
    """Public URL of a route (``url_for`` below :func:`base_url`)."""
    return base_url() + url_for(endpoint, **values)


def created(body: Any, endpoint: str, identifier: str, *, absolute: bool = True,
            **values: Any):
    """A 201 answer with ``Location`` and ``OpenEO-Identifier``. The 0.0.2 API keeps the
    path-only ``Location`` it has always sent (``absolute=False``): clients join it to
    their base URL."""
    resp = jsonify(body) if body is not None else current_app.response_class(status=201)
    resp.status_code = 201
    resp.headers["Location"] = (external_url(endpoint, **values) if absolute
                                else url_for(endpoint, **values))
    resp.headers["OpenEO-Identifier"] = identifier
    return resp


def result_file(encoded, notes: list[str] | tuple[str, ...] = ()):
    """A synchronous result: the encoded file as an attachment, the graph's notes as
    ``Warning`` headers (and ``X-Tileserver-Notes``)."""
    resp = current_app.response_class(encoded.content, mimetype=encoded.media_type)
    resp.headers["Content-Disposition"] = f'attachment; filename="result.{encoded.extension}"'
    for note in notes:
        resp.headers.add("Warning", f'299 tileserver "{note}"')
    if notes:
        resp.headers["X-Tileserver-Notes"] = " | ".join(notes)
    return resp


def json_body(required: bool = True) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong."""
    if not request.data:
        if required:
            raise TileserverError("the request needs a JSON body", locator="body")
        return {}
    try:
        body = request.get_json(force=True, silent=False)
    except Exception:  # noqa: BLE001 - werkzeug raises BadRequest with HTML text
        raise TileserverError("the request body is not valid JSON", locator="body") from None
    if not isinstance(body, dict):
        raise TileserverError("the request body must be a JSON object", locator="body")
    return body


def service_url(service: dict) -> str:
    """Public URL of a service (a ``{z}/{x}/{y}.png`` template for ``xyz``)."""
    sid, kind = service["service_id"], service["service_type"]
    return f"{base_url()}/service/{kind}/{sid}{SERVICE_TYPES[kind].url_template}"


def service_json(service: dict) -> dict[str, Any]:
    """The 0.0.2 service description."""
    return {
        "service_id": service["service_id"],
        "service_url": service_url(service),
        "service_type": service["service_type"],
        "service_args": service.get("service_args") or {},
        "job_id": service["job_id"],
        "title": service.get("title"),
        "created": iso(service.get("created")),
    }


def job_json(job: dict, full: bool = True) -> dict[str, Any]:
    """The 0.0.2 job description."""
    out: dict[str, Any] = {
        "job_id": job["job_id"],
        "user_id": job["user_id"],
        "status": job["status"],
        "submitted": iso(job["submitted"]),
        "updated": iso(job["updated"]),
        "title": job.get("title"),
        "description": job.get("description"),
        "progress": round(float(job.get("progress") or 0.0), 1),
    }
    if job.get("error"):
        out["error"] = job["error"]
    if full:
        out["process_graph"] = job["process_graph"]
        out["output"] = job.get("output")
        extra = job.get("extra") or {}
        if extra.get("blocks_total"):
            out["blocks"] = {"done": extra.get("blocks_done", 0), "total": extra["blocks_total"]}
    return out


#: Job states in which a job's lazy services stop answering.
REVOKED_STATUSES = lifecycle.REVOKED


def live_service(service_id: str, service_type: str | tuple[str, ...]) -> tuple[dict, dict]:
    """``(service, job)`` of a public service URL, or :class:`ServiceNotFound` (404) when
    the service does not exist, is of another type, or its job is gone or canceled."""
    service, job = runtime().store.get_service_and_job(service_id)
    types = (service_type,) if isinstance(service_type, str) else service_type
    if service["service_type"] not in types:
        raise ServiceNotFound(f"service {service_id} does not exist")
    if job["status"] in REVOKED_STATUSES:
        raise ServiceNotFound(f"service {service_id}: its job was {job['status']}")
    return service, job
