"""Batch job endpoints: queue/pause/cancel, logs, download and the result files.

The views only change the job's status (a compare-and-set) and return; the work happens
in :class:`tileserver.jobs.batch.BatchRunner` threads and on the Dask cluster.
"""

from __future__ import annotations

import mimetypes
import secrets

from flask import Blueprint, Flask, jsonify

from tileserver.errors import Conflict, FileNotFound
from tileserver.jobs import lifecycle
from tileserver.jobs.batch_tasks import ITEM_MEDIA_TYPE
from tileserver.web.apidoc import FILE, json_response, operation, ref
from tileserver.web.common import base_url, current_user, job_json, runtime
from tileserver.web.objects import send_object

bp = Blueprint("jobs", __name__)

_METHODS = ["PATCH", "GET"]  # 0.0.2 documents PATCH; its own examples use GET


def _owned_job(job_id: str) -> dict:
    return runtime().store.get_job(job_id, current_user())


def _answer(job: dict, status: int = 200):
    resp = jsonify(job_json(job))
    resp.status_code = status
    return resp


@bp.route("/jobs/<job_id>/queue", methods=_METHODS)
@operation("Start or resume the batch computation", json_response(ref("Job")),
           "Unauthorized", "NotFound", "Conflict", status=202)
def queue(job_id: str):
    """Start (or resume) the batch computation; 202, the work runs in the background."""
    return _answer(runtime().batch.queue(_owned_job(job_id)), 202)


@bp.route("/jobs/<job_id>/pause", methods=_METHODS)
@operation("Pause; finished blocks are kept", json_response(ref("Job")), "Unauthorized",
           "NotFound", "Conflict")
def pause(job_id: str):
    """Pause: finished blocks are kept, ``queue`` resumes from them."""
    return _answer(runtime().batch.pause(_owned_job(job_id)))


@bp.route("/jobs/<job_id>/cancel", methods=_METHODS)
@operation("Cancel; partial results are deleted, services stop",
           json_response(ref("Job")), "Unauthorized", "NotFound", "Conflict")
def cancel(job_id: str):
    """Cancel: tasks stop, partial results are deleted, the job's services stop answering."""
    return _answer(runtime().batch.cancel(_owned_job(job_id)))


@bp.get("/jobs/<job_id>/logs")
@operation("The job's log, oldest first",
           json_response({"type": "array", "items": {"type": "object", "properties": {
               "time": {"type": "string"}, "level": {"type": "string"},
               "message": {"type": "string"}}}}),
           "Unauthorized", "NotFound")
def logs(job_id: str):
    """The job's log, oldest first: ``[{time, level, message}]``."""
    _owned_job(job_id)
    return jsonify(runtime().store.logs(job_id))


@bp.get("/jobs/<job_id>/download")
@operation("URLs of the result files of a finished job",
           json_response({"type": "array", "items": {"type": "string", "format": "uri"}}),
           "Unauthorized", "NotFound", "Conflict")
def download(job_id: str):
    """The JSON array of the result URLs (data files, then the STAC ``item.json``)."""
    job = _owned_job(job_id)
    if job["status"] not in lifecycle.HAS_RESULTS:
        raise Conflict(f"job {job_id} is {job['status']}; results exist once it is finished")
    token = lifecycle.results_token(job)
    if not token:
        raise Conflict(f"job {job_id} has no batch results; queue it to compute them")
    extra = job.get("extra") or {}
    root = f"{base_url()}/jobs/{job_id}/results/{token}"
    names = [a["name"] for a in extra.get("results", [])] + ["item.json"]
    return jsonify([f"{root}/{name}" for name in names])


@bp.get("/jobs/<job_id>/results/<token>/<path:name>")
@operation("A result file (the URL's token is the credential; Range requests answer 206)",
           FILE, "NotFound")
def result_file(job_id: str, token: str, name: str):
    """A result file. The URL carries an unguessable token (so GDAL's ``/vsicurl/`` and
    other clients need no credentials); Range requests are answered with 206. From an
    object store the file is streamed through the server (:mod:`tileserver.web.objects`)."""
    rt = runtime()
    try:
        job = rt.store.get_job(job_id)
    except Exception:  # noqa: BLE001 - any lookup failure is "no such file"
        raise FileNotFound(f"no result {name!r} for job {job_id}") from None
    extra = job.get("extra") or {}
    expected = lifecycle.results_token(job)
    if not expected or not secrets.compare_digest(token, expected):
        raise FileNotFound(f"no result {name!r} for job {job_id}")
    types = {a["name"]: a["type"] for a in extra.get("results", [])}
    types["item.json"] = ITEM_MEDIA_TYPE
    if name not in types:
        raise FileNotFound(f"no result {name!r} for job {job_id}")
    mimetype = types.get(name) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    try:
        return send_object(rt.batch.storage, f"{rt.batch.result_key(job_id)}/{name}",
                           mimetype=mimetype, download_name=name, max_age=3600)
    except FileNotFound:
        raise FileNotFound(f"no result {name!r} for job {job_id}") from None


def init_app(app: Flask) -> None:
    """Start the watchdog that resumes orphaned jobs."""
    app.extensions["tileserver"].batch.start_watchdog()
