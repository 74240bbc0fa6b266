"""The served job of a stored job, for the protocols (WMTS, XYZ, TMS, WCS, the viewer):
the web layer reads what :func:`tileserver.maps.served.served_job` needs from the runtime
(the owner's stored processes, where a finished job's result lives) and passes it in."""

from __future__ import annotations

import logging

from tileserver.errors import StoreUnavailable, TileserverError
from tileserver.jobs import lifecycle
from tileserver.jobs import usecases as jobs
from tileserver.maps.served import ServedJob
from tileserver.maps.served import served_job as _served_job
from tileserver.web.common import runtime

log = logging.getLogger(__name__)


def served_job(job: dict, service_args: dict | None = None,
               title: str | None = None) -> ServedJob:
    """The job as served, styled by ``service_args`` (the owner's stored processes are read
    each time: a replaced one takes effect at once)."""
    rt = runtime()
    token = lifecycle.results_token(job)
    return _served_job(
        rt.engine, job,
        processes=jobs.user_processes(rt, job.get("user_id"), job["process_graph"]),
        results_at=(rt.batch.storage, rt.batch.result_key(job["job_id"])) if token else None,
        results_token=token, service_args=service_args, title=title)


def served_or_none(job: dict, service_args: dict | None = None) -> ServedJob | None:
    """The served job, or ``None`` when the stored graph no longer validates (logged)."""
    try:
        return served_job(job, service_args)
    except StoreUnavailable:  # a finished job whose store does not answer: 503, not absent
        raise
    except TileserverError as exc:
        log.warning("job %s is not a valid layer any more: %s", job["job_id"], exc.message)
        return None
