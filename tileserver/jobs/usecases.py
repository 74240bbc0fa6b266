"""Jobs: validation of a graph and its output, create/patch/delete, synchronous execution.

The use cases take what they need of the composition root
(:class:`tileserver.runtime.Runtime`) as ``rt``, typed by the protocols below, so that this
package never imports the layers above it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from tileserver import params
from tileserver.data.userfiles import eval_context
from tileserver.engine.evaluator import Engine
from tileserver.errors import (
    ExportNeedsBatchJob,
    LimitExceeded,
    TileserverError,
    UnknownProcess,
    WorkspaceNotFound,
    WorkspaceUnsupported,
)
from tileserver.graph import remote_process, udp
from tileserver.graph.v1 import is_flat_graph
from tileserver.jobs import lifecycle
from tileserver.jobs.empty import empty_result
from tileserver.jobs.services import SERVICE_OWNER_KEY, service_owner
from tileserver.jobs.store import JobStore, iso, now
from tileserver.processes import is_predefined
from tileserver.render.encoders import Encoded
from tileserver.render.formats import default_output, encode, validate_output
from tileserver.settings import Settings
from tileserver.storage import open_store


class HasStore(Protocol):
    """Anything with the job store and the settings (the runtime, the batch runner)."""

    @property
    def store(self) -> JobStore:
        """The job store."""
        ...

    @property
    def settings(self) -> Settings:
        """The settings (remote process definitions are fetched under them)."""
        ...


class Batch(Protocol):
    """What the use cases ask of the batch runner."""

    def on_delete(self, job_id: str) -> None:
        """Forget a deleted job's work and results."""
        ...


class Backend(HasStore, Protocol):
    """What the use cases need of the runtime."""

    @property
    def settings(self) -> Settings:
        """The server's settings."""
        ...

    @property
    def engine(self) -> Engine:
        """The evaluator."""
        ...

    @property
    def batch(self) -> Batch:
        """The batch runner."""
        ...


#: Longest accepted title and description of a job or service (characters).
TEXT_LIMITS = {"title": 1000, "description": 100_000}


def optional_text(body: dict, key: str) -> str | None:
    """A ``title``/``description`` field: a string of bounded length, or null."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TileserverError(f"'{key}' must be a string", locator=key)
    return params.text(value, key, error=TileserverError, max_length=TEXT_LIMITS[key],
                       name=f"'{key}'")


def text_fields(body: dict, keys: tuple[str, ...] = ("title", "description")) -> dict:
    """The optional text fields present in a request body."""
    return {key: optional_text(body, key) for key in keys if key in body}


def user_processes(rt: HasStore, user: str | None, process_graph: Any) -> dict[str, dict]:
    """The stored processes of ``user`` and the remote process definitions that a 1.x graph
    calls (directly or through other definitions): read on every parse, so that a replaced
    process takes effect (remote ones from a TTL cache,
    :mod:`tileserver.graph.remote_process`). The one lookup of a graph's processes (the
    APIs, the OGC services and batch); raises ``ProcessNamespaceInvalid`` for a remote
    definition that cannot be fetched."""
    if not is_flat_graph(process_graph):
        return {}
    fetcher = remote_process.fetcher(rt.settings)

    def lookup(ids):
        return rt.store.get_processes(user, ids) if user is not None else {}

    return udp.collect(process_graph, lookup, is_predefined,
                       fetcher.definition if fetcher is not None else None)


def parse(rt: Backend, process_graph: Any, output: Any = None, *, v1: bool = False,
          user: str | None = None):
    """``(graph, output)``: the parsed graph and the validated output.

    ``v1``: an openEO 1.x flat graph whose output comes from its ``save_result`` (GTiff
    when it has none); otherwise the graph of either form and the ``output`` object.
    ``user``: whose stored processes the graph may call.
    """
    processes = user_processes(rt, user, process_graph)
    if v1:
        graph = rt.engine.parse(process_graph, dialect="1.x", processes=processes)
        check_export(rt, user, graph)
        return graph, graph.save_result or default_output(graph.is_raster)
    graph = rt.engine.parse(process_graph, processes=processes)
    check_export(rt, user, graph)
    return graph, validate_output(output)


def check_export(rt: HasStore, user: str | None, graph) -> None:
    """That the workspace a graph exports to (``export_workspace``) is one the user
    created, before the graph is stored or said valid: :class:`WorkspaceNotFound` (also
    for another user's workspace) or :class:`WorkspaceUnsupported` (``files``) otherwise."""
    export = graph.export
    if export is None:
        return
    workspace = export["workspace"]
    if workspace.lower() == "files":
        raise WorkspaceUnsupported(
            "results are not exported to 'files' (your uploaded files); create a workspace "
            "(POST /workspaces) and export there")
    if user is None:
        raise WorkspaceNotFound(f"there is no workspace {workspace[:64]!r} without a user")
    rt.store.get_workspace(user, workspace)


def check_definition(rt: Backend, user: str | None, process_graph: dict) -> None:
    """Validate a process definition that declares parameters (a user-defined process the
    client checks before storing it): its parameters are bound only where it is called, so
    what is checked is what holds whatever they are: every process it calls exists
    (predefined, or stored by ``user``); raises :class:`UnknownProcess`."""
    stored = set(user_processes(rt, user, process_graph))
    for pid, namespace in udp.calls(process_graph):
        if namespace in udp.PREDEFINED_NAMESPACES and is_predefined(pid):
            continue
        if udp.may_be_user_process(pid, namespace, is_predefined) and pid in stored:
            continue
        if remote_process.is_remote_namespace(namespace) and \
                remote_process.remote_key(pid, namespace) in stored:
            continue
        where = "" if namespace is None else f" in namespace {str(namespace)[:64]!r}"
        raise UnknownProcess(f"process {pid[:64]!r}{where} is not supported (GET /processes "
                             "lists the predefined ones, GET /process_graphs yours)")


def compute_value(rt: Backend, process_graph: Any, user: str | None = None
                  ) -> tuple[bool, Any]:
    """``(True, value)`` of a 1.x graph of array processes only (no data cube), as JSON
    values (NaN as null); ``(False, None)`` for other graphs."""
    if not is_flat_graph(process_graph):
        return False, None
    done, value = rt.engine.compute_value(process_graph,
                                          user_processes(rt, user, process_graph))
    return done, (json_value(value) if done else None)


def json_value(value: Any) -> Any:
    """A value of the array processes as JSON: arrays as lists, NaN as null, dates as
    RFC 3339 strings."""
    if hasattr(value, "values") and hasattr(value, "labels"):  # a labelled array
        value = value.values
    if isinstance(value, np.ndarray):
        return [json_value(v) for v in value.tolist()] if value.ndim else json_value(
            value.item())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return value


def parse_job(rt: Backend, job: dict, processes: dict[str, dict] | None = None):
    """The parsed graph of a stored job, with its owner's stored processes (``processes``:
    already read with :func:`user_processes`)."""
    if processes is None:
        processes = user_processes(rt, job.get("user_id"), job["process_graph"])
    return rt.engine.parse(job["process_graph"], processes=processes)


def batch_jobs(jobs: list[dict]) -> list[dict]:
    """The jobs the user made (1.x ``GET /jobs``): without the lazy jobs behind 1.x services
    (an XYZ/WMTS/WCS service, the Web Editor's "Quick view", is no batch job)."""
    return [job for job in jobs if service_owner(job) is None]


def create_job(rt: Backend, user: str, graph, output: dict, **text: Any) -> dict:
    """Store a lazy job (its WMTS/WCS/XYZ services and batch runs come later)."""
    return rt.store.create_job(user, graph.source, output, **text)


def unlocked_job(rt: Backend, user: str, job_id: str) -> dict:
    """The user's job, or :class:`JobLocked` while it is queued or running."""
    return lifecycle.require("patch", rt.store.get_job(job_id, user))


def patch_job(rt: Backend, user: str, job_id: str, fields: dict) -> dict:
    """Change a job's graph, output, title or description.

    A new graph or output discards stored batch results: the job starts its lifecycle
    again. Refused (:class:`JobLocked`) while the job is queued or running.
    """
    store = rt.store
    job = unlocked_job(rt, user, job_id)
    fields = dict(fields)
    changes_result = ("process_graph" in fields and fields["process_graph"] != job[
        "process_graph"]) or ("output" in fields and fields["output"] != job["output"])
    if changes_result and lifecycle.allowed("reset", job["status"]):
        # the stored results and finished blocks belong to the old graph: drop them
        rt.batch.on_delete(job_id)
        # a service's lazy job stays its service's (the mark is not a result)
        owner = service_owner(job)
        extra = {} if owner is None else {SERVICE_OWNER_KEY: owner}
        if lifecycle.results_token(job):
            extra["unpublished"] = iso(now())
        fields.update(status=lifecycle.target("reset"), progress=0.0, error=None, extra=extra)
        store.log(job_id, "graph or output changed: previous results discarded")
    if fields:
        store.update_job(job_id, user, **fields)
    return store.get_job(job_id, user)


def delete_job(rt: Backend, user: str, job_id: str) -> None:
    """Delete a job, its batch work and results, and its services."""
    lifecycle.require("delete", rt.store.get_job(job_id, user))
    rt.batch.on_delete(job_id)
    rt.store.delete_job(job_id, user)


def execute(rt: Backend, user: str, graph, output: dict,
            warnings: list[str] | None = None) -> Encoded:
    """Evaluate on the graph's native view and encode (images and zonal statistics);
    ``warnings`` (when given) receives why the result is empty
    (:func:`~tileserver.jobs.empty.empty_result`)."""
    if graph.export is not None:
        raise ExportNeedsBatchJob(
            "export_workspace exports the results of a batch job: run the graph with POST "
            "/jobs (a synchronous request returns its file directly)", path="process_graph")
    engine = rt.engine
    view = engine.native_view(graph)
    limit = rt.settings.max_output_pixels
    # tables (zonal statistics) choose their own views: the native view is only nominal
    if graph.is_raster and view.pixels > limit:
        raise LimitExceeded(
            f"the result would be {view.width}x{view.height} = {view.pixels} pixels, more than "
            f"the limit of {limit} for synchronous execution; use a batch job or a smaller bbox"
        )
    context = eval_context(rt.settings.home, user, open_store(rt.settings))
    result = engine.evaluate(graph, view, purpose="execute", context=context)
    if warnings is not None and (why := empty_result(result)):
        warnings.append(why)
    return encode(result, output)
