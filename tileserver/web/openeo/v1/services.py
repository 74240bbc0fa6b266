"""Secondary services: ``POST /services {type, process, configuration}`` makes a lazy job
and exposes it as XYZ tiles, a WMTS layer or a WCS coverage (the same public URLs as the
services of the 0.0.2 API)."""

from __future__ import annotations

from typing import Any

from flask import jsonify

from tileserver.jobs import usecases as jobs
from tileserver.jobs.services import (
    SERVICE_OWNER_KEY,
    SERVICE_TYPES,
    check_service_args,
    openeo_v1_service_type,
    service_owner,
)
from tileserver.jobs.store import iso
from tileserver.web.common import created, current_user, json_body, runtime, service_url
from tileserver.web.openeo.v1.processing import parse_process


def service_json(service: dict, job: dict, full: bool = True) -> dict[str, Any]:
    """A 1.x service description (``attributes.layers`` names the WMTS layer)."""
    kind = service["service_type"]
    out: dict[str, Any] = {
        "id": service["service_id"],
        "title": service.get("title"),
        "description": job.get("description"),
        "url": service_url(service),
        "type": SERVICE_TYPES[kind].openeo_v1_type,
        "enabled": True,
        "configuration": service.get("service_args") or {},
        "created": iso(service.get("created")),
    }
    if full:
        out["process"] = {"process_graph": job["process_graph"]}
        out["attributes"] = {"layers": [job["job_id"]]} if SERVICE_TYPES[kind].layers else {}
    return out


def _owned(service_id: str) -> tuple[dict, dict]:
    store, user = runtime().store, current_user()
    service = store.get_service(service_id, user)
    return service, store.get_job(service["job_id"], user)


def list_services():
    """The user's services."""
    store, user = runtime().store, current_user()
    out = []
    for service in store.list_services(user):
        out.append(service_json(service, store.get_job(service["job_id"], user), full=False))
    return jsonify({"services": out, "links": []})


def create_service():
    """A lazy job and its service (201 with ``Location`` and ``OpenEO-Identifier``)."""
    rt, user = runtime(), current_user()
    body = json_body()
    kind = openeo_v1_service_type(body.get("type")).name
    args = check_service_args(body.get("configuration"), "configuration")
    graph, output = parse_process(body)
    text = jobs.text_fields(body)
    job = jobs.create_job(rt, user, graph, output, **text)
    service = rt.store.create_service(user, job["job_id"], kind, args, text.get("title"))
    rt.store.update_job(job["job_id"], user, extra={SERVICE_OWNER_KEY: service["service_id"]})
    sid = service["service_id"]
    return created(None, ".get_service", sid, service_id=sid)


def get_service(service_id: str):
    """A service with its URL, process and configuration."""
    return jsonify(service_json(*_owned(service_id)))


def patch_service(service_id: str):
    """Change the title, description, configuration or process of a service."""
    rt, user = runtime(), current_user()
    service, job = _owned(service_id)
    body = json_body()
    fields: dict[str, Any] = {}
    if "configuration" in body:
        fields["service_args"] = check_service_args(body["configuration"], "configuration")
    if "title" in body:
        fields["title"] = jobs.text_fields(body, ("title",))["title"]
    job_fields = jobs.text_fields(body, ("description",))
    if "process" in body:
        graph, output = parse_process(body)
        job_fields.update(process_graph=graph.source, output=output)
    if job_fields:
        jobs.patch_job(rt, user, job["job_id"], job_fields)
    if fields:
        rt.store.update_service(service_id, user, **fields)
    return "", 204


def delete_service(service_id: str):
    """Delete a service (and the job it created)."""
    rt, user = runtime(), current_user()
    service, job = _owned(service_id)
    rt.store.delete_service(service_id, user)
    if service_owner(job) == service_id:
        jobs.delete_job(rt, user, job["job_id"])
    return "", 204
