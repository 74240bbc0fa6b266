"""The job and service registry in a real database (SQLite by default, any SQLAlchemy URL).

Every call is its own short transaction, so several worker processes can share the file;
SQLite runs in WAL mode with a busy timeout.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from tileserver.errors import (
    JobNotFound,
    ProcessGraphNotFound,
    ServiceNotFound,
    WorkspaceNotFound,
)
from tileserver.jobs import lifecycle

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("user_id", String(128), nullable=False, index=True),
    Column("title", String(500)),
    Column("description", Text),
    Column("process_graph", JSON, nullable=False),
    Column("output", JSON),
    Column("status", String(16), nullable=False, default=lifecycle.SUBMITTED),
    Column("progress", Float, default=0.0),
    Column("error", Text),
    Column("submitted", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Column("extra", JSON),
)

services = Table(
    "services",
    metadata,
    Column("service_id", String(64), primary_key=True),
    Column("job_id", String(64), ForeignKey("jobs.job_id", ondelete="CASCADE"), index=True),
    Column("user_id", String(128), nullable=False, index=True),
    Column("service_type", String(16), nullable=False),
    Column("service_args", JSON),
    Column("title", String(500)),
    Column("created", DateTime(timezone=True), nullable=False),
)

#: A service and its job (every tile asks): built once, so that a tile does not rebuild
#: the statement and its cache key (a third of the lookup's time).
_SERVICE_AND_JOB = (select(services, jobs).join(jobs, jobs.c.job_id == services.c.job_id)
                    .where(services.c.service_id == bindparam("service_id")))

#: openEO 1.x user-defined processes (``/process_graphs``), stored per user.
user_processes = Table(
    "user_processes",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("process_id", String(128), primary_key=True),
    Column("process", JSON, nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

job_logs = Table(
    "job_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), ForeignKey("jobs.job_id", ondelete="CASCADE"), index=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("level", String(16), nullable=False),
    Column("message", Text, nullable=False),
)


#: openEO 1.3 workspaces a user created (``POST /workspaces``): their metadata; the data is
#: in the server's store under ``workspaces/<user_id>/<workspace_id>/``.
workspaces = Table(
    "workspaces",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("workspace_id", String(64), primary_key=True),
    Column("type", String(32), nullable=False),
    Column("title", String(500)),
    Column("description", Text),
    Column("created", DateTime(timezone=True), nullable=False),
)


#: What finished batch jobs measured on this machine (their estimates learn from it): the
#: values read and the seconds they took, the planned raw and the written bytes.
measurements = Table(
    "measurements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False, index=True),
    Column("format", String(32)),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("pixels", Float, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("raw_bytes", Float),
    Column("bytes", Float),
)

#: Measurements kept per kind (the oldest are dropped).
MEASUREMENTS_KEPT = 50


def now() -> datetime:
    """Current UTC time, second precision."""
    return datetime.now(UTC).replace(microsecond=0)


def iso(t: datetime | None) -> str | None:
    """RFC 3339 in UTC."""
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: Lifecycle times a job keeps in its ``extra`` (RFC 3339 strings, openEO 1.3 job metadata):
#: when it was last queued, when it last started running, when its results were last
#: discarded (``unpublished``); and ``stacktrace``, the traceback of its last failure.
TIMES = ("queued", "started", "unpublished")
STACKTRACE = "stacktrace"
#: Characters of a failure's traceback that are kept (its end).
MAX_STACKTRACE = 16000


def job_times(job: dict) -> dict[str, str | None]:
    """A job's :data:`TIMES` (``None`` when it has not happened)."""
    extra = job.get("extra") or {}
    return {name: extra.get(name) for name in TIMES}


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def database_url(url: str) -> str:
    """``postgresql://`` (libpq's spelling) means psycopg 3 in SQLAlchemy."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine; creates the SQLite folder and sets its pragmas; PostgreSQL
    sessions run in UTC and the tables are created under an advisory lock (several worker
    processes start at once)."""
    url = database_url(url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    elif url.startswith("postgresql"):
        engine = create_engine(url, pool_pre_ping=True,
                               connect_args={"options": "-c timezone=UTC"})
    else:
        engine = create_engine(url, pool_pre_ping=True)
    for attempt in range(5):
        try:
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(7242011)"))
                metadata.create_all(conn)
            break
        except OperationalError:  # another worker process created the tables meanwhile
            if attempt == 4:
                raise
    return engine


def _job_row(row) -> dict[str, Any]:
    return dict(row._mapping)


class JobStore:
    """CRUD of jobs, services and job logs. Ownership is enforced by ``user_id`` filters."""

    def __init__(self, url: str):
        self.engine = make_engine(url)

    # -- jobs ---------------------------------------------------------------------------

    def create_job(self, user_id: str, process_graph: dict, output: dict | None = None,
                   title: str | None = None, description: str | None = None) -> dict:
        """Store a new job with status ``submitted`` (:data:`lifecycle.SUBMITTED`)."""
        t = now()
        row = {
            "job_id": uuid.uuid4().hex,
            "user_id": user_id,
            "title": title,
            "description": description,
            "process_graph": process_graph,
            "output": output,
            "status": lifecycle.SUBMITTED,
            "progress": 0.0,
            "submitted": t,
            "updated": t,
            "extra": {},
        }
        with self.engine.begin() as conn:
            conn.execute(insert(jobs).values(**row))
        return row

    def get_job(self, job_id: str, user_id: str | None = None) -> dict:
        """The job row, or :class:`JobNotFound` (also for another user's job)."""
        q = select(jobs).where(jobs.c.job_id == str(job_id))
        if user_id is not None:
            q = q.where(jobs.c.user_id == user_id)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            raise JobNotFound(f"job {job_id} does not exist")
        return _job_row(row)

    def list_jobs(self, user_id: str) -> list[dict]:
        """The user's jobs, newest first."""
        q = select(jobs).where(jobs.c.user_id == user_id).order_by(jobs.c.submitted.desc())
        with self.engine.connect() as conn:
            return [_job_row(r) for r in conn.execute(q)]

    def update_job(self, job_id: str, user_id: str | None = None, *,
                   expect_status: tuple[str, ...] | None = None, **fields: Any) -> bool:
        """Change fields (``updated`` is set); with ``expect_status`` only from those states.

        Returns whether a row changed (a compare-and-set for status transitions).
        """
        fields["updated"] = now()
        q = update(jobs).where(jobs.c.job_id == job_id)
        if user_id is not None:
            q = q.where(jobs.c.user_id == user_id)
        if expect_status is not None:
            q = q.where(jobs.c.status.in_(expect_status))
        with self.engine.begin() as conn:
            return conn.execute(q.values(**fields)).rowcount > 0

    def transition(self, job_id: str, action: str, user_id: str | None = None,
                   **fields: Any) -> bool:
        """Apply a :mod:`~tileserver.jobs.lifecycle` action as a compare-and-set: only from
        the statuses it is allowed from (to its target status, with ``fields``); returns
        whether the job moved."""
        to = lifecycle.target(action)
        if to is not None:
            fields["status"] = to
        return self.update_job(job_id, user_id, expect_status=lifecycle.sources(action),
                               **fields)

    def delete_job(self, job_id: str, user_id: str | None = None) -> None:
        """Delete a job, its services and logs."""
        self.get_job(job_id, user_id)
        with self.engine.begin() as conn:
            conn.execute(delete(services).where(services.c.job_id == job_id))
            conn.execute(delete(job_logs).where(job_logs.c.job_id == job_id))
            conn.execute(delete(jobs).where(jobs.c.job_id == job_id))

    def jobs_with_status(self, statuses: tuple[str, ...]) -> list[dict]:
        """All jobs (any user) in one of ``statuses``."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs).where(jobs.c.status.in_(statuses)))
            return [_job_row(r) for r in rows]

    # -- measurements -------------------------------------------------------------------

    def record_measurement(self, kind: str, pixels: float, seconds: float, *,
                           fmt: str | None = None, raw_bytes: float | None = None,
                           nbytes: float | None = None) -> None:
        """Store one measurement of ``kind`` (keeping the newest :data:`MEASUREMENTS_KEPT`)."""
        with self.engine.begin() as conn:
            conn.execute(insert(measurements).values(
                kind=kind, format=fmt, time=now(), pixels=float(pixels),
                seconds=float(seconds), raw_bytes=raw_bytes, bytes=nbytes))
            old = select(measurements.c.id).where(measurements.c.kind == kind).order_by(
                measurements.c.id.desc()).offset(MEASUREMENTS_KEPT)
            conn.execute(delete(measurements).where(measurements.c.id.in_(old)))

    def measurements(self, kind: str) -> list[dict]:
        """The measurements of ``kind``, newest first."""
        q = select(measurements).where(measurements.c.kind == kind).order_by(
            measurements.c.id.desc())
        with self.engine.connect() as conn:
            return [_job_row(r) for r in conn.execute(q)]

    # -- logs ---------------------------------------------------------------------------

    def log(self, job_id: str, message: str, level: str = "info") -> None:
        """Append to the job's log."""
        with self.engine.begin() as conn:
            conn.execute(insert(job_logs).values(
                job_id=job_id, time=now(), level=level, message=message))

    def logs(self, job_id: str) -> list[dict]:
        """The job's log, oldest first."""
        q = select(job_logs).where(job_logs.c.job_id == job_id).order_by(job_logs.c.id)
        with self.engine.connect() as conn:
            return [
                {"time": iso(r.time), "level": r.level, "message": r.message}
                for r in conn.execute(q)
            ]

    # -- services -----------------------------------------------------------------------

    def create_service(self, user_id: str, job_id: str, service_type: str,
                       service_args: dict | None = None, title: str | None = None) -> dict:
        """A new service with an unguessable id (256 random bits)."""
        self.get_job(job_id, user_id)
        row = {
            "service_id": secrets.token_hex(32),
            "job_id": job_id,
            "user_id": user_id,
            "service_type": service_type,
            "service_args": service_args or {},
            "title": title,
            "created": now(),
        }
        with self.engine.begin() as conn:
            conn.execute(insert(services).values(**row))
        return row

    def get_service(self, service_id: str, user_id: str | None = None) -> dict:
        """The service row or :class:`ServiceNotFound`."""
        q = select(services).where(services.c.service_id == str(service_id))
        if user_id is not None:
            q = q.where(services.c.user_id == user_id)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            raise ServiceNotFound(f"service {service_id} does not exist")
        return dict(row._mapping)

    def get_service_and_job(self, service_id: str) -> tuple[dict, dict]:
        """``(service row, its job's row)`` in one query (every tile of a service asks), or
        :class:`ServiceNotFound` when either is gone."""
        with self.engine.connect() as conn:
            row = conn.execute(_SERVICE_AND_JOB, {"service_id": str(service_id)}).first()
        if row is None:
            raise ServiceNotFound(f"service {service_id} does not exist")
        found = row._mapping
        return ({c.name: found[c] for c in services.c}, {c.name: found[c] for c in jobs.c})

    def list_services(self, user_id: str) -> list[dict]:
        """The user's services."""
        q = select(services).where(services.c.user_id == user_id).order_by(services.c.created)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def update_service(self, service_id: str, user_id: str, **fields: Any) -> None:
        """Change a service's args or title."""
        self.get_service(service_id, user_id)
        with self.engine.begin() as conn:
            conn.execute(update(services).where(services.c.service_id == service_id)
                         .values(**fields))

    def delete_service(self, service_id: str, user_id: str) -> None:
        """Delete a service: its URLs stop answering."""
        self.get_service(service_id, user_id)
        with self.engine.begin() as conn:
            conn.execute(delete(services).where(services.c.service_id == service_id))

    # -- user-defined processes (openEO 1.x) ---------------------------------------------

    def put_process(self, user_id: str, process_id: str, process: dict) -> bool:
        """Store or replace a user-defined process; whether it is new."""
        with self.engine.begin() as conn:
            where = ((user_processes.c.user_id == user_id)
                     & (user_processes.c.process_id == process_id))
            changed = conn.execute(update(user_processes).where(where).values(
                process=process, updated=now())).rowcount
            if not changed:
                conn.execute(insert(user_processes).values(
                    user_id=user_id, process_id=process_id, process=process, updated=now()))
        return not changed

    def get_process(self, user_id: str, process_id: str) -> dict:
        """A user-defined process, or :class:`ProcessGraphNotFound`."""
        q = select(user_processes.c.process).where(
            (user_processes.c.user_id == user_id) & (user_processes.c.process_id == process_id))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            raise ProcessGraphNotFound(f"process graph {process_id!r} does not exist")
        return row.process

    def get_processes(self, user_id: str, process_ids) -> dict[str, dict]:
        """The user's processes among ``process_ids`` (id -> process; missing ones left
        out), in one query."""
        ids = list(process_ids)
        if not ids:
            return {}
        q = select(user_processes.c.process_id, user_processes.c.process).where(
            (user_processes.c.user_id == user_id) & user_processes.c.process_id.in_(ids))
        with self.engine.connect() as conn:
            return {r.process_id: r.process for r in conn.execute(q)}

    def list_processes(self, user_id: str) -> list[dict]:
        """The user's processes, by id."""
        q = (select(user_processes.c.process).where(user_processes.c.user_id == user_id)
             .order_by(user_processes.c.process_id))
        with self.engine.connect() as conn:
            return [r.process for r in conn.execute(q)]

    def delete_process(self, user_id: str, process_id: str) -> None:
        """Delete a user-defined process (:class:`ProcessGraphNotFound` if there is none)."""
        self.get_process(user_id, process_id)
        with self.engine.begin() as conn:
            conn.execute(delete(user_processes).where(
                (user_processes.c.user_id == user_id)
                & (user_processes.c.process_id == process_id)))

    # -- workspaces (openEO 1.3) -----------------------------------------------------------

    def create_workspace(self, user_id: str, type_: str, title: str | None = None,
                         description: str | None = None) -> dict:
        """Register a new workspace of ``user_id``; its row."""
        row = {"user_id": user_id, "workspace_id": uuid.uuid4().hex[:16], "type": type_,
               "title": title, "description": description, "created": now()}
        with self.engine.begin() as conn:
            conn.execute(insert(workspaces).values(**row))
        return row

    def get_workspace(self, user_id: str, workspace_id: str) -> dict:
        """The user's workspace, or :class:`WorkspaceNotFound` (also another user's)."""
        q = select(workspaces).where((workspaces.c.user_id == user_id)
                                     & (workspaces.c.workspace_id == str(workspace_id)))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            raise WorkspaceNotFound(f"there is no workspace {str(workspace_id)[:64]!r} of "
                                    "yours (GET /workspaces lists them)")
        return dict(row._mapping)

    def list_workspaces(self, user_id: str) -> list[dict]:
        """The user's workspaces, oldest first."""
        q = (select(workspaces).where(workspaces.c.user_id == user_id)
             .order_by(workspaces.c.created, workspaces.c.workspace_id))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def update_workspace(self, user_id: str, workspace_id: str, **fields: Any) -> None:
        """Change a workspace's ``title``/``description`` (:class:`WorkspaceNotFound`)."""
        self.get_workspace(user_id, workspace_id)
        with self.engine.begin() as conn:
            conn.execute(update(workspaces).where(
                (workspaces.c.user_id == user_id)
                & (workspaces.c.workspace_id == workspace_id)).values(**fields))

    def delete_workspace(self, user_id: str, workspace_id: str) -> None:
        """Forget a workspace (:class:`WorkspaceNotFound` if the user has none so named)."""
        self.get_workspace(user_id, workspace_id)
        with self.engine.begin() as conn:
            conn.execute(delete(workspaces).where(
                (workspaces.c.user_id == user_id)
                & (workspaces.c.workspace_id == workspace_id)))

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


def dumps(value: Any) -> str:
    """JSON for logs."""
    return json.dumps(value, default=str)
