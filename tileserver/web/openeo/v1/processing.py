"""Processing: ``POST /result``, ``POST /validation`` and batch jobs (``/jobs``)."""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from datetime import UTC, datetime

from flask import jsonify, request

from tileserver.errors import JobNotFinished, TileserverError
from tileserver.jobs import estimates, lifecycle
from tileserver.jobs import usecases as jobs
from tileserver.web.apidoc import ANY_OBJECT, EVALUATION_ERRORS, FILE, json_response, operation
from tileserver.web.common import (
    created,
    current_user,
    external_url,
    json_body,
    result_file,
    runtime,
)
from tileserver.web.errors import v1_body, v1_code
from tileserver.web.openeo.v1 import workspaces
from tileserver.web.openeo.v1.bodies import check_nodes, own_process_graph, process_graph
from tileserver.web.openeo.v1.serializers import job_json, log_json
from tileserver.web.openeo.v1.versions import V1_3, current


def parse_process(body: dict):
    """``(graph, output)`` of a request's process; the output comes from ``save_result``.
    Its ``plan``, when billing is configured, must be one of the plans of ``GET /``."""
    estimates.check_plan(runtime().settings, body.get("plan"))
    return jobs.parse(runtime(), process_graph(body), v1=True, user=current_user())


@operation("Process and download data synchronously", FILE, *EVALUATION_ERRORS)
def result():
    """Evaluate synchronously and return the file of ``save_result``'s format (from openEO
    1.3 on with an ``OpenEO-Identifier`` header naming the request).

    An empty result (no acquisition, or no valid value, in the extent and dates asked) is
    answered with a ``Warning: 299`` header that says so (what HTTP tools and the Python
    client's ``on_response_headers`` show) and the 1.x ``Link: <...>; rel="monitor"`` to
    its log (what the JavaScript client reads into ``logs``, shown by the Web Editor)."""
    body = json_body()
    estimates.check_plan(runtime().settings, body.get("plan"))
    done, value = jobs.compute_value(runtime(), process_graph(body), current_user())
    if done:  # array processes only (the openEO process tests): their value as JSON
        resp = jsonify(value)
    else:
        graph, output = parse_process(body)
        rt = runtime()
        cost = estimates.result_costs(rt, graph)
        warnings: list[str] = []
        encoded = jobs.execute(rt, current_user(), graph, output, warnings)
        resp = result_file(encoded, (*graph.notes, *warnings))
        if warnings:
            link = external_url(".result_logs", token=log_token(warnings))
            resp.headers.add("Link", f'<{link}>; rel="monitor"')
        if cost is not None:  # costs are configured (cost_per_megapixel)
            resp.headers["OpenEO-Costs"] = str(cost)
    if current().at_least(V1_3):
        resp.headers["OpenEO-Identifier"] = uuid.uuid4().hex
    return resp


def _v13() -> bool:
    return current().at_least(V1_3)


#: Most entries, and characters of each, of a synchronous result's log in its link.
MAX_LOG_ENTRIES, MAX_LOG_MESSAGE = 8, 500


def log_token(messages: list[str]) -> str:
    """The log of a synchronous result (its warnings) as a URL segment: the log travels in
    its own link, so that no state is kept for it and any worker answers it."""
    kept = [m[:MAX_LOG_MESSAGE] for m in messages[:MAX_LOG_ENTRIES]]
    raw = zlib.compress(json.dumps(kept).encode())
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def result_logs(token: str):
    """The log of a synchronous result (``Link: rel="monitor"`` of ``POST /result``), in
    the format of the job logs; the time is when it is read."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        # bounded: a crafted token cannot inflate into more than a log's worth
        messages = json.loads(zlib.decompressobj().decompress(
            raw, MAX_LOG_ENTRIES * (MAX_LOG_MESSAGE + 8) + 2))
        if not isinstance(messages, list) or not all(isinstance(m, str) for m in messages):
            raise ValueError("not a list of messages")
    except (ValueError, zlib.error):
        raise TileserverError("not the log link of a result", locator="token") from None
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    entries = [{"id": str(i), "code": "EmptyResult", "level": "warning", "message": m,
                "time": now} for i, m in enumerate(messages)]
    return jsonify({"logs": entries, "links": [], "level": "warning"})


def validation():
    """Validate a process (the body is the process itself, with its ``process_graph``):
    ``{"errors": [...]}``, empty when it is valid (a missing graph is one of the errors)."""
    body = json_body()
    try:
        graph = own_process_graph(body)
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
    """The user's batch jobs (not the lazy jobs of their services)."""
    user_jobs = jobs.batch_jobs(runtime().store.list_jobs(current_user()))
    return jsonify({"jobs": [job_json(j, full=False, times=_v13()) for j in user_jobs],
                    "links": []})


def create_job():
    """Store a job (201 with ``Location`` and ``OpenEO-Identifier``)."""
    fields = _job_fields(json_body())
    job = runtime().store.create_job(current_user(), **fields)
    return created(None, ".get_job", job["job_id"], job_id=job["job_id"])


def _owned(job_id: str) -> dict:
    return runtime().store.get_job(job_id, current_user())


def get_job(job_id: str):
    """A job with its status and progress."""
    return jsonify(job_json(_owned(job_id), times=_v13()))


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
    storage, prefix = rt.batch.storage, rt.batch.result_key(job_id)
    item = json.loads(storage.get(f"{prefix}/item.json"))
    # clients that reach the object store download from it (presigned URLs); otherwise
    # through this server, the URL's token being the credential
    public = rt.settings.storage_public and storage.scheme == "s3"
    exported = (job.get("extra") or {}).get("exported")
    for asset in item.get("assets", {}).values():
        name = asset["href"]
        signed = storage.presigned_url(f"{prefix}/{name}", rt.settings.storage_presign_seconds) \
            if public else None
        asset["href"] = signed or external_url("jobs.result_file", job_id=job_id,
                                               token=token, name=name)
        if exported and name in exported["files"]:  # export_workspace: the copy too
            asset.setdefault("alternate", {})["workspace"] = workspaces.alternate(
                exported, name, public)
    item["links"] = [
        {"rel": "self", "href": external_url(".job_results", job_id=job_id),
         "type": "application/geo+json"},
        {"rel": "canonical", "type": "application/geo+json",
         "href": external_url("jobs.result_file", job_id=job_id, token=token,
                              name="item.json")},
    ]
    if exported:
        item["links"].append(workspaces.exported_link(exported))
        extensions = item.setdefault("stac_extensions", [])
        if workspaces.ALTERNATE_ASSETS not in extensions:
            extensions.append(workspaces.ALTERNATE_ASSETS)
    item["openeo:status"] = lifecycle.to_v1(job["status"])
    props = item.setdefault("properties", {})
    if props.get("datetime") is None and props.get("start_datetime"):
        # the 1.2 document types it as a (nullable, in OpenAPI 3.0 terms) string; validators
        # with 3.1 semantics refuse null: the start of the range is the nominal time
        props["datetime"] = props["start_datetime"]
    if _v13():  # every batch job timestamp, as in the job's metadata
        meta = job_json(job, full=False, times=True)
        props.update({k: meta[k] for k in ("created", "updated", "queued", "started",
                                            "unpublished") if meta[k]})
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
    """The job's log (``offset``: entries after that id; ``level``: the minimum level;
    from openEO 1.3 on the failure's entry has the ``stacktrace``)."""
    job = _owned(job_id)
    entries = log_json(runtime().store.logs(job_id), job if _v13() else None)
    offset = request.args.get("offset")
    if offset is not None and offset.isdigit():
        entries = [e for e in entries if int(e["id"]) > int(offset)]
    order = ["debug", "info", "warning", "error"]
    level = request.args.get("level")
    if level in order:
        entries = [e for e in entries if e["level"] not in order
                   or order.index(e["level"]) >= order.index(level)]
    return jsonify({"logs": entries, "links": [], "level": level or "debug"})
