"""The job lifecycle: the statuses of a job, which action may move it from which status, and
how the openEO 1.x API names them. The store, the batch runner, the use cases, both openEO
dialects, the OGC services and the OpenAPI document read these tables; none keeps its own.

::

    submitted -> queued -> running -> finished | error
    queued | running -> paused -> (queue) -> queued ...   finished blocks are kept
    queued | running | paused -> canceled                 work is deleted, services revoked
    error | canceled -> (queue) -> queued ...             error resumes, canceled restarts
    finished -> (queue) -> 409 Conflict                   results stay; delete to recompute
    queued | running -> (requeue) -> queued               a driver stopped: another resumes
    not queued | running -> (patch) a new graph or output -> submitted   results discarded
    any -> (delete)

The 0.0.2 API shows the stored statuses; 1.x shows ``created`` for ``submitted`` and
``paused`` (a paused job waits to be started again), the others as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from tileserver.errors import Conflict, JobLocked

SUBMITTED = "submitted"
QUEUED = "queued"
RUNNING = "running"
FINISHED = "finished"
PAUSED = "paused"
CANCELED = "canceled"
ERROR = "error"

#: Every stored status (the 0.0.2 API's values, in its documented order).
STATUSES = (SUBMITTED, QUEUED, RUNNING, FINISHED, PAUSED, CANCELED, ERROR)

#: Statuses of a job that a batch driver owns (it beats, a stale one is taken over).
ACTIVE = (QUEUED, RUNNING)


@dataclass(frozen=True)
class Transition:
    """An action on a job: the statuses it is allowed from and the status it leads to
    (``None``: it keeps the status, or removes the job). ``by``: who does it, the user
    through an API or the batch runner."""

    action: str
    sources: tuple[str, ...]
    target: str | None
    by: str = "user"


#: Every action on a job, by name.
TRANSITIONS: dict[str, Transition] = {t.action: t for t in (
    Transition("queue", (SUBMITTED, PAUSED, ERROR, CANCELED), QUEUED),
    Transition("pause", ACTIVE, PAUSED),
    Transition("cancel", (*ACTIVE, PAUSED), CANCELED),
    # a change of title or description; of graph or output, see "reset"
    Transition("patch", tuple(s for s in STATUSES if s not in ACTIVE), None),
    # a new graph or output: stored results and blocks belong to the old one
    Transition("reset", (FINISHED, PAUSED, CANCELED, ERROR), SUBMITTED),
    Transition("delete", STATUSES, None),
    Transition("start", (QUEUED,), RUNNING, by="runner"),
    Transition("finish", (RUNNING,), FINISHED, by="runner"),
    Transition("fail", ACTIVE, ERROR, by="runner"),
    # shutdown hands the job back, or a watchdog takes over an orphan
    Transition("requeue", ACTIVE, QUEUED, by="runner"),
)}


def sources(action: str) -> tuple[str, ...]:
    """The statuses ``action`` is allowed from."""
    return TRANSITIONS[action].sources


def target(action: str) -> str | None:
    """The status ``action`` leads to."""
    return TRANSITIONS[action].target


def allowed(action: str, status: str) -> bool:
    """Whether ``action`` is allowed on a job in ``status``."""
    return status in TRANSITIONS[action].sources


#: What the user may do, from which statuses.
QUEUEABLE = sources("queue")
PAUSABLE = sources("pause")
CANCELABLE = sources("cancel")
#: Statuses in which a job's graph or output may not change (pause or cancel it first).
LOCKED = tuple(s for s in STATUSES if not allowed("patch", s))
#: Statuses from which queueing starts over (progress and blocks reset); the others resume.
RESTARTS = (CANCELED,)
#: Statuses in which a job's lazy services stop answering (404).
REVOKED = (CANCELED,)
#: The status in which a job's batch results can be downloaded.
HAS_RESULTS = (FINISHED,)


class TransitionForbidden(Conflict):
    """An action on a job that its status does not allow (409; ``Conflict`` in 1.x)."""


def forbidden(action: str, job_id: str, status: str) -> Conflict:
    """The error for ``action`` refused on a job in ``status``."""
    if action == "queue" and status == FINISHED:
        return TransitionForbidden(
            f"job {job_id} is finished; its results stay available at "
            f"/jobs/{job_id}/download (delete the job to compute it anew)")
    if action in ("patch", "reset") and status in LOCKED:
        return JobLocked(f"job {job_id} is {status}; pause or cancel it before changing it")
    return TransitionForbidden(f"cannot {action} job {job_id}: it is {status} "
                               f"({action} is possible from {', '.join(sources(action))})")


def require(action: str, job: dict) -> dict:
    """``job`` if ``action`` is allowed in its status, else the error of :func:`forbidden`."""
    if not allowed(action, job["status"]):
        raise forbidden(action, job["job_id"], job["status"])
    return job


def results_token(job: dict) -> str | None:
    """The token of a job's downloadable batch results (``None``: it has none)."""
    token = (job.get("extra") or {}).get("results_token")
    return str(token) if job["status"] in HAS_RESULTS and token else None


# -- openEO 1.x ------------------------------------------------------------------------------

#: The 1.x statuses (the 1.2 document's enum).
V1_STATUSES = ("created", "queued", "running", "canceled", "finished", "error")
#: 1.x status of each stored status.
V1_STATUS = {s: ("created" if s in (SUBMITTED, PAUSED) else s) for s in STATUSES}


def to_v1(status: str) -> str:
    """The 1.x name of a stored status."""
    return V1_STATUS.get(status, status)


def from_v1(status: str) -> tuple[str, ...]:
    """The stored statuses a 1.x status stands for."""
    return tuple(s for s in STATUSES if V1_STATUS[s] == status)


#: ``POST /jobs/{id}/results`` queues a job in these statuses; elsewhere it has no effect
#: (already queued or running; a finished job keeps its results).
V1_STARTABLE = QUEUEABLE
#: ``DELETE /jobs/{id}/results`` cancels a job in these statuses; elsewhere it has no
#: effect. A paused job is ``created`` to a 1.x client, and canceling a ``created`` job
#: leaves it ``created`` (the 1.2 document's status description).
V1_CANCELABLE = tuple(s for s in CANCELABLE if to_v1(s) != "created")
#: Statuses whose 1.x description carries ``progress`` (not the ``created`` ones).
V1_WITH_PROGRESS = tuple(s for s in STATUSES if to_v1(s) != "created")
