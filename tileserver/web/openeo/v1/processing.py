"""Processing: ``POST /result``, ``POST /validation`` and batch jobs (``/jobs``)."""

from __future__ import annotations

import json

from flask import jsonify, request

from tileserver.errors import JobNotFinished, TileserverError
from tileserver.jobs import estimates, lifecycle
from tileserver.jobs import usecases as jobs
from tileserver.web.apidoc import EVALUATION_ERRORS, ANY_OBJECT, FILE, json_response, operation
from tileserver.web.common import (
    created,
    current_user,
    external_url,
    json_body,
    result_file,
    runtime,
)
from tileserver.web.errors import v1_body, v1_code
from tileserver.web.openeo.v1.bodies import check_nodes, process_graph
from tileserver.web.openeo.v1.serializers import job_json, log_json


def parse_process(body: dict):
    """``(graph, output)`` of a request's process; the output comes from ``save_result``."""
    return jobs.parse(runtime(), process_graph(body), v1=True, user=current_user())


@operation("Process and download data synchronously", FILE, *EVALUATION_ERRORS)
def result():
    """Evaluate synchronously and return the file of ``save_result``'s format."""
    body = json_body()
    done, value = jobs.compute_value(runtime(), process_graph(body), current_user())
    if done:  # array processes only (the openEO process tests): their value as JSON
        return jsonify(value)
    graph, output = parse_process(body)
    rt = runtime()
    cost = estimates.result_costs(rt, graph)
    resp = result_file(jobs.execute(rt, current_user(), graph, output), graph.notes)
    if cost is not None:  # costs are configured (cost_per_megapixel)
        resp.headers["OpenEO-Costs"] = str(cost)
    return resp


def validation():
    """Validate a process (the body is the process itself, with its ``process_graph``):
    ``{"errors": [...]}``, empty when it is valid (a missing graph is one of the errors)."""
    body = json_body()
    try:
        graph = process_graph({"process": body})
        if isinstance(body.get("parameters"), list) and body["parameters"]:
            # a process with parameters (the client validates a user-defined process
            # before storing it): they are bound where it is called
            check_nodes(graph)
            jobs.check_definition(runtime(), current_user(), graph)
        else:
            jobs.parse(runtime(), graph, v1=True, user=current_user())
    except TileserverError as exc:
        code, _status = v1_code(exc)
        return jsonify({"errors": [{"code": code, "message": exc.message}]})
    return jsonify({"errors": []})


# -- batch jobs ------------------------------------------------------------------------


def _job_fields(body: dict, partial: bool = False) -> dict:
    fields: dict = {}
    if "process" in body or not partial:
        graph, output = parse_process(body)
        fields.update(process_graph=graph.source, output=output)
    fields.update(jobs.text_fields(body))
    return fields


def list_jobs():
    """The user's jobs."""
    user_jobs = runtime().store.list_jobs(current_user())
    return jsonify({"jobs": [job_json(j, full=False) for j in user_jobs], "links": []})


def create_job():
    """Store a job (201 with ``Location`` and ``OpenEO-Identifier``)."""
    fields = _job_fields(json_body())
    job = runtime().store.create_job(current_user(), **fields)
    return created(None, ".get_job", job["job_id"], job_id=job["job_id"])


def _owned(job_id: str) -> dict:
    return runtime().store.get_job(job_id, current_user())


def get_job(job_id: str):
    """A job with its status and progress."""
    return jsonify(job_json(_owned(job_id)))


def patch_job(job_id: str):
    """Change the process, title or description (not while queued or running)."""
    rt, user = runtime(), current_user()
    jobs.unlocked_job(rt, user, job_id)
    jobs.patch_job(rt, user, job_id, _job_fields(json_body(), partial=True))
    return "", 204


def delete_job(job_id: str):
    """Delete a job, its results and its services."""
    jobs.delete_job(runtime(), current_user(), job_id)
    return "", 204


def start_job(job_id: str):
    """Queue the batch computation (no effect while queued, running or finished)."""
    job = _owned(job_id)
    if job["status"] in lifecycle.V1_STARTABLE:
        runtime().batch.queue(job)
    return "", 202


def cancel_job(job_id: str):
    """Cancel a queued or running computation (no effect otherwise: a paused job is
    ``created`` in 1.x and stays so)."""
    job = _owned(job_id)
    if job["status"] in lifecycle.V1_CANCELABLE:
        runtime().batch.cancel(job)
    return "", 204


def job_results(job_id: str):
    """The results as a STAC item whose asset hrefs download without credentials."""
    rt = runtime()
    job = _owned(job_id)
    if job["status"] == lifecycle.ERROR:
        return jsonify(v1_body("JobFailed", job.get("error") or "the job failed")), 424
    token = lifecycle.results_token(job)
    if not token:
        raise JobNotFinished(f"job {job_id} is {job_json(job)['status']}; its results exist "
                             "once it is finished (POST /jobs/{job_id}/results starts it)")
    item = json.loads((rt.batch.result_dir(job_id) / "item.json").read_text())
    for asset in item.get("assets", {}).values():
        asset["href"] = external_url("jobs.result_file", job_id=job_id, token=token,
                                     name=asset["href"])
    item["links"] = [
        {"rel": "self", "href": external_url(".job_results", job_id=job_id),
         "type": "application/geo+json"},
        {"rel": "canonical", "type": "application/geo+json",
         "href": external_url("jobs.result_file", job_id=job_id, token=token,
                              name="item.json")},
    ]
    item["openeo:status"] = lifecycle.to_v1(job["status"])
    props = item.setdefault("properties", {})
    if props.get("datetime") is None and props.get("start_datetime"):
        # the 1.2 document types it as a (nullable, in OpenAPI 3.0 terms) string; validators
        # with 3.1 semantics refuse null: the start of the range is the nominal time
        props["datetime"] = props["start_datetime"]
    resp = jsonify(item)
    resp.headers["OpenEO-Costs"] = "0"  # no billing: the owner downloads for free
    return resp


@operation("Estimate a batch job before it runs: duration, size, costs and the pixels it "
           "reads", json_response(ANY_OBJECT), "BadRequest", "Unauthorized", "NotFound")
def estimate_job(job_id: str):
    """The job's estimate: ``duration`` (ISO 8601) and ``size`` (bytes) from the planner's
    pixel counts and what finished jobs measured here, ``costs`` when configured, and the
    ``pixels_read``."""
    return jsonify(estimates.job_estimate(runtime(), current_user(), job_id))


def job_logs(job_id: str):
    """The job's log (``offset``: entries after that id; ``level``: the minimum level)."""
    _owned(job_id)
    entries = log_json(runtime().store.logs(job_id))
    offset = request.args.get("offset")
    if offset is not None and offset.isdigit():
        entries = [e for e in entries if int(e["id"]) > int(offset)]
    order = ["debug", "info", "warning", "error"]
    level = request.args.get("level")
    if level in order:
        entries = [e for e in entries if e["level"] not in order
                   or order.index(e["level"]) >= order.index(level)]
    return jsonify({"logs": entries, "links": [], "level": level or "debug"})
