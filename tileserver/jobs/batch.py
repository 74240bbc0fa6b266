"""The batch runner: drives queued jobs over their whole extent on dask.distributed.

The statuses and which action moves a job from which one are :mod:`tileserver.jobs.lifecycle`
(queue, pause and cancel from the APIs; start, finish, fail and requeue by the drivers).

Every status change is a compare-and-set in the database, so several server processes
(gunicorn workers) can serve the same jobs. The process that wins the ``queued ->
running`` transition *drives* the job from a background thread: it owns the run token
``extra.run``, submits one Dask task per block (a bounded number in flight), records
progress in ``extra``, and watches the database for ``pause``/``cancel`` coming through
any process. Each process's watchdog thread touches the ``updated`` time of the jobs it
drives every ``batch_heartbeat_seconds`` (a heartbeat that no slow step of a driver can
delay). A job whose driver died (server killed) stops being touched; the watchdogs take
such a job over (a compare-and-set on the old token and ``updated``) and resume it from its
finished blocks. A clean shutdown hands its jobs back (``queued``, ``extra.handed_back``)
so the next process resumes them at once.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import shutil
import tempfile
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

from sqlalchemy import update

from tileserver.data.userfiles import eval_context
from tileserver.engine.evaluator import Engine, day_key
from tileserver.engine.plan import Plan
from tileserver.errors import Conflict, JobNotFound, StoreUnavailable, TileserverError
from tileserver.jobs import batch_tasks, estimates, lifecycle, results, workspaces
from tileserver.jobs.batch_tasks import SINGLE, JobSpec
from tileserver.jobs.lifecycle import ACTIVE, CANCELED, QUEUED, RUNNING
from tileserver.jobs.store import MAX_STACKTRACE, STACKTRACE, JobStore, iso, jobs, now
from tileserver.jobs.usecases import user_processes
from tileserver.render import cog, formats
from tileserver.render.styles import style_args, style_from_args
from tileserver.settings import BatchSettings, Settings
from tileserver.storage import credentials, join, open_store, store_options

log = logging.getLogger(__name__)

def batch_options(settings: Settings) -> dict[str, Any]:
    """The ``batch_*`` settings of ``settings`` (:class:`~tileserver.settings.BatchSettings`;
    their defaults are in ``config/default.yaml``, each also a ``TILESERVER_*`` variable)."""
    return {k: getattr(settings, k) for k in BatchSettings.model_fields if k.startswith("batch_")}


#: Values (pixels x bands x dates) of one block at most, whatever ``max_pixels`` allows: the
#: block's float32 cube (32 MiB) and its intermediate results keep a worker far under 1 GiB,
#: and its buffers are reused block after block (``batch_tasks.reuse_block_memory``).
BLOCK_VALUES = 8 * 1024 * 1024

#: Dask settings of the embedded cluster. Its workers run one block at a time and nobody
#: reads their statistical profiles: the profiler thread sampling every 10 ms, the event
#: loop ticks every 20 ms and the system monitor every 0.5 s cost 7 % of a core per worker
#: and 5 % in the server while idle (measured: 1.2 CPU-s per 10 s, 0.3 once off / slower),
#: which blocks could use.
EMBEDDED_DASK = {"distributed.worker.profile.enabled": False,
                 "distributed.admin.tick.interval": "500ms",
                 "distributed.admin.system-monitor.interval": "2s"}

#: Share of the progress given to the blocks; writing the result files is the rest.
BLOCKS_SHARE = 90.0

#: The folder of batch results in the store (``$TILESERVER_HOME/results`` by default).
RESULTS = "results"

#: Version of the scratch block files (a change makes older scratch files useless).
SCRATCH_VERSION = 3



def aligned_side(side: int, file_block: int | None) -> int:
    """A block side at most ``side`` that is a multiple of the files' internal block side
    when ``side`` is at least one file block, so that the blocks of a view on the files'
    grid starting on one of their block corners read whole file blocks (a smaller side,
    set on purpose, is kept)."""
    if not file_block or side <= file_block:
        return side
    return side // file_block * file_block


def on_grid(view, grid, block: int) -> str:
    """What the job log says of a view on the files' own grid (empty when it is not)."""
    if grid is None or view.crs != grid.crs or not math.isclose(
            view.res[0], grid.xres, rel_tol=1e-9):
        return ""
    fcol, frow = (view.bounds[0] - grid.x0) / grid.xres, (grid.y0 - view.bounds[3]) / grid.yres
    col, row = round(fcol), round(frow)
    if abs(fcol - col) > 1e-6 or abs(frow - row) > 1e-6:
        return ""
    out = f", on the files' grid (at their pixel {col}, {row})"
    fb = grid.block
    if fb and col % fb == 0 and row % fb == 0 and (block % fb == 0 or fb % block == 0):
        out += f", blocks aligned with their {fb}-px tiles"
    return out


def udf_sandbox_args(settings) -> tuple:
    """``(UdfConfig, allowed users, home)``: what a batch worker needs to start its own UDF
    sandbox (picklable; the workers start only when a block runs a UDF)."""
    from tileserver.udf import UdfRunner  # noqa: PLC0415

    runner = UdfRunner.from_settings(settings)
    return runner.config, runner.allowed_users, runner.home


class _Stop(Exception):
    """The driver must stop: the job was paused, canceled, deleted or taken over."""


class BatchRunner:
    """Batch jobs of one server process (see the module docstring)."""

    def __init__(self, settings: Settings, store: JobStore,
                 engine: Callable[[], Engine], catalogs: Callable[[], list[str]]):
        self.settings = settings
        self.store = store
        self._engine = engine
        self._catalogs = catalogs
        self.options = batch_options(settings)
        self.results_root = settings.home / "results"
        #: where results live (``$TILESERVER_HOME`` or ``storage_url``; :mod:`tileserver.storage`)
        self.storage = open_store(settings)
        self._lock = threading.Lock()
        self._client_lock = threading.Lock()
        self._drivers: dict[str, threading.Thread] = {}
        self._closing = threading.Event()
        self._wakeup: dict[str, threading.Event] = {}
        self._tokens: dict[str, str] = {}  # job id -> run token of the jobs driven here
        self._watchdog: threading.Thread | None = None
        self._client = None
        self._cluster = None

    # -- paths -----------------------------------------------------------------------------

    def result_dir(self, job_id: str) -> Path:
        """Published results of a finished job on the server's disk (the default store)."""
        return self.results_root / job_id

    @staticmethod
    def result_key(job_id: str) -> str:
        """The folder of a finished job's published results in :attr:`storage`."""
        return join(RESULTS, job_id)

    @staticmethod
    def work_key(job_id: str) -> str:
        """The folder of a job's scratch files (blocks, temporary outputs) in the store."""
        return join(RESULTS, ".work", job_id)

    def work_root(self, job_id: str) -> Path:
        """Scratch space of a job on this host: the store's own folder on the server's
        disk, a folder of the temporary directory when the store is an object store
        (each worker keeps there only what its task needs)."""
        local = self.storage.local_path(self.work_key(job_id))
        if local is not None:
            return local
        return Path(tempfile.gettempdir()) / "tileserver-work" / job_id

    def drop_work(self, job_id: str) -> None:
        """Remove a job's scratch files (from the store and from this host). A store that
        fails meanwhile leaves them (logged): they are scratch, and a cancel or a finished
        job must not fail for them."""
        try:
            self.storage.delete_prefix(self.work_key(job_id))
        except StoreUnavailable as exc:
            log.warning("batch job %s: its scratch objects stay: %s", job_id, exc.message)
        root = self.work_root(job_id)
        for _ in range(3):  # a task that was writing a file meanwhile leaves the folder
            shutil.rmtree(root, ignore_errors=True)  # (its next file cannot: WorkGone)
            if not root.exists():
                break

    # -- dask ------------------------------------------------------------------------------

    @property
    def client(self):
        """The Dask client: of ``settings.dask_scheduler``, or of an embedded LocalCluster."""
        with self._client_lock:  # not self._lock: starting a cluster takes seconds
            if self._client is None:
                from distributed import Client, LocalCluster  # noqa: PLC0415

                from tileserver.jobs.worker_setup import WorkerSetup  # noqa: PLC0415

                if self.settings.dask_scheduler:
                    self._client = Client(self.settings.dask_scheduler, timeout=30,
                                          set_as_default=False)
                else:
                    import dask  # noqa: PLC0415

                    with dask.config.set(EMBEDDED_DASK):  # the workers get it from their nanny
                        self._cluster = LocalCluster(
                            n_workers=self.options["batch_workers"], threads_per_worker=1,
                            processes=True, memory_limit=self.options["batch_worker_memory"],
                            dashboard_address=":0", silence_logs=logging.ERROR,
                            env=credentials.child_env())  # the keys this process adopted
                    self._client = Client(self._cluster, set_as_default=False)
                self._client.register_plugin(
                    WorkerSetup(dataset_handles=self.settings.dataset_handles))
                # after distributed's own exit handlers, so this one runs first: a process
                # that exits (a gunicorn worker stopping) hands its jobs back while its
                # client still works
                atexit.register(_close_at_exit, weakref.ref(self))
            return self._client

    def _inflight(self) -> int:
        if self.options["batch_inflight"] > 0:
            return self.options["batch_inflight"]
        threads = sum(self.client.nthreads().values()) or 1
        return 2 * threads

    # -- lifecycle (called by the web layer) -----------------------------------------------

    def queue(self, job: dict) -> dict:
        """``queued`` and start driving it in the background; 409 from other states."""
        job_id = job["job_id"]
        if job["status"] in lifecycle.HAS_RESULTS:
            raise lifecycle.forbidden("queue", job_id, job["status"])
        token = uuid.uuid4().hex
        extra = dict(job.get("extra") or {})
        extra.update(run=token, queued=iso(now()))
        extra.pop("handed_back", None)
        extra.pop(STACKTRACE, None)
        extra.pop("started", None)  # until the new run starts
        restart = job["status"] in lifecycle.RESTARTS
        if restart:
            extra.update(blocks_done=0, strips_done=0)
        fields: dict[str, Any] = {"extra": extra, "error": None}
        if restart:
            fields["progress"] = 0.0
        if not self.store.transition(job_id, "queue", **fields):
            raise self._conflict(job_id, "queue")
        self.store.log(job_id, "queued" + (" (restarting)" if restart else ""))
        self._start(job_id, token)
        return self.store.get_job(job_id)

    def pause(self, job: dict) -> dict:
        """``paused``: in-flight blocks are canceled, finished blocks are kept."""
        if not self.store.transition(job["job_id"], "pause"):
            raise self._conflict(job["job_id"], "pause")
        self.store.log(job["job_id"], "paused; finished blocks are kept")
        self._wake(job["job_id"])
        return self.store.get_job(job["job_id"])

    def cancel(self, job: dict) -> dict:
        """``canceled``: tasks stop, partial work is deleted, lazy services stop answering."""
        job_id = job["job_id"]
        if not self.store.transition(job_id, "cancel"):
            raise self._conflict(job_id, "cancel")
        self.store.log(job_id, "canceled; partial results deleted")
        self._wake(job_id)
        self.drop_work(job_id)
        return self.store.get_job(job_id)

    def on_delete(self, job_id: str) -> None:
        """Before a job is deleted: stop its work and remove its files (or objects)."""
        self._wake(job_id)
        self.drop_work(job_id)
        self.storage.delete_prefix(self.result_key(job_id))

    def _conflict(self, job_id: str, action: str) -> Conflict:
        """The error of a refused ``action`` (its compare-and-set lost): the status now."""
        return lifecycle.forbidden(action, job_id, self.store.get_job(job_id)["status"])

    def _wake(self, job_id: str) -> None:
        event = self._wakeup.get(job_id)
        if event is not None:
            event.set()

    # -- drivers ---------------------------------------------------------------------------

    def _start(self, job_id: str, token: str) -> None:
        with self._lock:
            previous = self._drivers.get(job_id)
            self._wakeup[job_id] = threading.Event()
            self._tokens[job_id] = token
            thread = threading.Thread(target=self._drive, args=(job_id, token, previous),
                                      name=f"batch-{job_id[:8]}", daemon=True)
            self._drivers[job_id] = thread
        thread.start()

    def _cas(self, job_id: str, token: str, statuses: tuple[str, ...], **fields: Any) -> bool:
        """Update only if the job is in ``statuses`` and still driven by ``token``."""
        q = (update(jobs).where(jobs.c.job_id == job_id, jobs.c.status.in_(statuses),
                                jobs.c.extra["run"].as_string() == token))
        with self.store.engine.begin() as conn:
            return conn.execute(q.values(updated=now(), **fields)).rowcount > 0

    def _move(self, job_id: str, token: str, action: str, **fields: Any) -> bool:
        """A driver's lifecycle ``action`` (start, finish, fail, requeue) while ``token``
        still drives the job."""
        return self._cas(job_id, token, lifecycle.sources(action),
                         status=lifecycle.target(action), **fields)

    def _drive(self, job_id: str, token: str, previous: threading.Thread | None) -> None:
        if previous is not None and previous is not threading.current_thread():
            previous.join()
        run = _Run(self, job_id, token)
        try:
            run.execute()
        except _Stop:
            pass
        except Exception as exc:  # noqa: BLE001 - any failure becomes the job's error
            try:
                run.fail(exc)
            except Exception:  # noqa: BLE001 - e.g. the database went away at shutdown
                log.exception("batch job %s: cannot record its failure", job_id)
        finally:
            with self._lock:
                if self._drivers.get(job_id) is threading.current_thread():
                    self._drivers.pop(job_id, None)
                    self._wakeup.pop(job_id, None)
                    self._tokens.pop(job_id, None)

    # -- orphans ---------------------------------------------------------------------------

    def start_watchdog(self) -> None:
        """Look for orphaned jobs now and every ``batch_watchdog_seconds``."""
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="batch-watchdog",
                                              daemon=True)
            self._watchdog.start()

    def _watch(self) -> None:
        every = self.options["batch_heartbeat_seconds"]
        last_scan = 0.0
        while not self._closing.is_set():
            try:
                self.beat()
                if time.monotonic() - last_scan >= self.options["batch_watchdog_seconds"]:
                    last_scan = time.monotonic()
                    self.recover()
            except Exception:  # noqa: BLE001 - the watchdog must survive a database hiccup
                log.exception("batch watchdog")
            self._closing.wait(every)

    def beat(self) -> None:
        """Touch ``updated`` of the jobs driven by this process (their heartbeat)."""
        with self._lock:
            driven = list(self._tokens.items())
        for job_id, token in driven:
            self._cas(job_id, token, ACTIVE)

    def recover(self) -> list[str]:
        """Take over ``queued``/``running`` jobs whose driver stopped beating; returns them."""
        taken = []
        stale = self.options["batch_stale_seconds"]
        for job in self.store.jobs_with_status(lifecycle.sources("requeue")):
            extra = dict(job.get("extra") or {})
            if job["job_id"] in self._tokens:
                continue  # driven here
            if not extra.get("handed_back") and _age(job["updated"]) < stale:
                continue
            token = uuid.uuid4().hex
            q = update(jobs).where(jobs.c.job_id == job["job_id"],
                                   jobs.c.status == job["status"],
                                   jobs.c.updated == job["updated"])
            if extra.get("run") is not None:
                q = q.where(jobs.c.extra["run"].as_string() == extra["run"])
            extra.update(run=token)
            extra.pop("handed_back", None)
            with self.store.engine.begin() as conn:
                won = conn.execute(q.values(status=lifecycle.target("requeue"), extra=extra,
                                            updated=now())).rowcount > 0
            if won:
                self.store.log(job["job_id"], "the server that ran this job stopped; "
                               "resuming from the finished blocks")
                self._start(job["job_id"], token)
                taken.append(job["job_id"])
        return taken

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closing.is_set()

    def close(self) -> None:
        """Stop the drivers (handing their jobs back as ``queued``) and the cluster."""
        self._closing.set()
        with self._lock:
            drivers = list(self._drivers.items())
            for event in self._wakeup.values():
                event.set()
        for _job_id, thread in drivers:
            thread.join(timeout=30)
        if self._watchdog is not None:
            self._watchdog.join(timeout=30)
        with self._client_lock:
            client, cluster, self._client, self._cluster = self._client, self._cluster, None, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        self.store.dispose()


def _close_at_exit(ref: weakref.ref) -> None:
    runner = ref()
    if runner is not None and not runner.closed:
        runner.close()


def _age(updated) -> float:
    """Seconds since a ``updated`` time (naive values are UTC, as SQLite returns them)."""
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    return time.time() - updated.timestamp()


class _Run:
    """One run of a driver over a job (from ``queued`` to a final or paused state)."""

    def __init__(self, runner: BatchRunner, job_id: str, token: str):
        self.runner = runner
        self.store = runner.store
        self.job_id = job_id
        self.token = token
        self.wakeup = runner._wakeup.get(job_id) or threading.Event()
        self.futures: dict = {}
        self.extra: dict = {}
        self.files_done = 0.0  # fraction of the result files written
        self.plan_of_job: Plan | None = None  # what the job reads (the planner's figures)
        self.started = time.monotonic()  # when the job started running (its measurement)
        self.export: tuple[str, dict] | None = None  # (user, Graph.export): export_workspace

    def log(self, message: str, level: str = "info") -> None:
        self.store.log(self.job_id, message, level)

    # -- state -----------------------------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`_Stop` unless the job is still ours and running; beat."""
        if self.runner._closing.is_set():
            self.futures.clear()  # closing the client releases them
            if self.runner._move(self.job_id, self.token, "requeue",
                                 extra={**self.extra, "handed_back": True}):
                self.log("server shutting down; the job will resume on the next start")
            raise _Stop
        try:
            job = self.store.get_job(self.job_id)
        except JobNotFound:
            self.cancel_futures()
            raise _Stop from None
        extra = job.get("extra") or {}
        if job["status"] != RUNNING or extra.get("run") != self.token:
            self.cancel_futures()
            if job["status"] == CANCELED:
                self.runner.drop_work(self.job_id)
            raise _Stop

    def save(self, **fields: Any) -> None:
        done = self.extra.get("blocks_done", 0) + self.extra.get("strips_done", 0)
        total = self.extra.get("blocks_total", 0) + self.extra.get("strips_total", 0)
        progress = round(BLOCKS_SHARE * done / total, 1) if total else 0.0
        if total and done == total:
            progress = round(BLOCKS_SHARE + (100.0 - BLOCKS_SHARE) * self.files_done, 1)
        if not self.runner._cas(self.job_id, self.token, (RUNNING,), extra=dict(self.extra),
                                progress=progress, **fields):
            self.check()

    def wait(self, timeout: float) -> list:
        """The finished futures, waiting up to ``timeout`` for one (or a pause/cancel).

        Futures are polled (a local check every 20 ms) rather than given done-callbacks:
        distributed runs those in a thread pool that is gone while the process exits.
        """
        deadline = time.monotonic() + timeout
        while True:
            done = [f for f in self.futures if f.done()]
            if done or time.monotonic() >= deadline or self.wakeup.wait(0.02):
                self.wakeup.clear()
                return done

    def cancel_futures(self) -> None:
        if self.futures:
            try:
                self.runner.client.cancel(list(self.futures))
            except Exception:  # noqa: BLE001 - the cluster may be gone already
                log.debug("cancel failed", exc_info=True)
            self.futures.clear()

    def fail(self, exc: BaseException) -> None:
        self.cancel_futures()
        message = _reason(exc)
        trace = "".join(traceback.format_exception(exc))[-MAX_STACKTRACE:]
        if self.runner._move(self.job_id, self.token, "fail", error=message,
                             extra={**self.extra, STACKTRACE: trace}):
            self.log(message, "error")
        log.info("batch job %s failed: %s", self.job_id, message)

    # -- the run ---------------------------------------------------------------------------

    def wait_turn(self, job: dict) -> None:
        """Stay ``queued`` while the owner has ``max_user_batch_jobs`` jobs running (a
        pause, cancel or shutdown meanwhile stops the driver)."""
        limit = self.runner.settings.max_user_batch_jobs
        logged = False
        while limit > 0:
            running = [j for j in self.store.jobs_with_status((RUNNING,))
                       if j["user_id"] == job["user_id"] and j["job_id"] != self.job_id]
            if len(running) < limit:
                return
            if not logged:
                self.log(f"waiting: {len(running)} of your batch jobs are running, the most "
                         f"one user may run at once (max_user_batch_jobs = {limit})")
                logged = True
            self.wakeup.wait(self.runner.options["batch_poll_seconds"])
            self.wakeup.clear()
            if self.runner._closing.is_set():
                raise _Stop
            try:
                now_job = self.store.get_job(self.job_id)
            except JobNotFound:
                raise _Stop from None
            if now_job["status"] != QUEUED or (now_job.get("extra") or {}).get(
                    "run") != self.token:
                raise _Stop

    def execute(self) -> None:
        job = self.store.get_job(self.job_id)
        self.extra = dict(job.get("extra") or {})
        self.wait_turn(job)
        self.extra["started"] = iso(now())
        if not self.runner._move(self.job_id, self.token, "start", extra=dict(self.extra)):
            raise _Stop
        self.started = time.monotonic()
        spec, times = self.plan(job)
        waited = time.monotonic()
        client = self.runner.client
        self.started += time.monotonic() - waited  # starting the embedded cluster is not the job
        workers = len(client.scheduler_info().get("workers", {}))
        if spec.mode != "whole":
            started = time.monotonic()
            self.run_blocks(spec)
            self.log(f"all {self.extra['blocks_total']} blocks done "
                     f"({time.monotonic() - started:.1f} s); writing the result files")
            self.finish(spec, results.mosaic, *times)
        else:
            self.extra.update(blocks_total=1, blocks_done=0, strips_total=0, strips_done=0)
            self.log(f"running the graph once over its extent on {workers} worker(s)")
            self.finish(spec, results.run_whole)

    def plan(self, job: dict) -> tuple[JobSpec, tuple[dict[str, str], tuple[str, str]]]:
        """The job's spec: native view, blocks, layers, style; prepares the work dir."""
        runner = self.runner
        engine = runner._engine()
        processes = user_processes(runner, job["user_id"], job["process_graph"])
        graph = engine.parse(job["process_graph"], processes=processes)
        self.export = None if graph.export is None else (job["user_id"], graph.export)
        output = dict(job.get("output") or {"format": "GTiff"})
        fmt = formats.get(output.get("format", "GTiff"))
        view = engine.native_view(graph)
        raster = graph.is_raster
        self.plan_of_job = engine.plan(graph, view)
        context = eval_context(runner.settings.home.resolve(), job["user_id"], runner.storage)
        times = engine.times(graph, context=context)  # a UDF's own dates (aggregate_time)
        if times == [] and raster:
            raise BlockFailed("no acquisition lies in the job's extent and dates: there is "
                              "nothing to compute (check filter_bbox and filter_daterange)")
        layers = (SINGLE,) if times is None else tuple(day_key(t) for t in times)
        stamps = {} if times is None else {day_key(t): t.isoformat() for t in times}
        t0, t1 = graph.meta.time_range or graph.meta.product.time_range
        span = (t0.isoformat(), t1.isoformat())
        mode, style = "float", None
        params = formats.output_params(output)
        if not raster:
            mode = "whole"
        elif fmt.batch is None:
            raise BlockFailed(f"batch jobs do not write {fmt.name}; use one of "
                              f"{', '.join(f.name for f in formats.FORMATS.values() if f.batch)}")
        elif fmt.styled(params):
            mode = "rgba"
            style = style_from_args(style_args(params), graph.meta.kind,
                                    len(graph.meta.bands), len(layers))
        block = self.block_size(engine, graph, len(layers))
        tile, overviews = 512, ()  # type: tuple[int, tuple[int, ...]]
        if fmt.batch is not None and fmt.batch.cog:
            tile = cog.tile_size(output)
            if mode == "float":  # styled results: GDAL makes the overviews (and masks)
                overviews = cog.overview_factors(view.width, view.height, tile)
        key = hashlib.sha256(json.dumps([job["process_graph"], output, block, mode, tile,
                                         overviews, SCRATCH_VERSION], sort_keys=True,
                                        default=str).encode()).hexdigest()[:16]
        work = runner.work_root(self.job_id) / key
        work_key = join(runner.work_key(self.job_id), key)
        storage = runner.storage
        older = {o.key[len(work_key) - len(key):].split("/", 1)[0]
                 for o in storage.list(runner.work_key(self.job_id))}
        for other in older - {key}:  # blocks of an older graph are useless now
            storage.delete_prefix(join(runner.work_key(self.job_id), other))
        spec = JobSpec(
            job_id=self.job_id, catalogs=tuple(runner._catalogs()),
            engine_opts=(("max_pixels", engine.max_pixels),
                         ("max_graph_nodes", runner.settings.max_graph_nodes),
                         ("max_graph_depth", runner.settings.max_graph_depth),
                         ("resampling", engine.resampling.name),
                         ("udf", udf_sandbox_args(runner.settings))),
            graph=job["process_graph"], output=output, crs=view.crs_key,
            bounds=view.bounds, width=view.width, height=view.height, block=block,
            work_dir=str(work), fmt=fmt.name, mode=mode, style=style, layers=layers,
            context=context, tile=tile, overviews=overviews, processes=processes,
            pixel=view.pixel,
            store_url=storage.url, store_opts=tuple(sorted(store_options(runner.settings).items()))
            if storage.scheme == "s3" else (), work_key=work_key)
        if spec.shared:
            spec.blocks_dir.mkdir(parents=True, exist_ok=True)
        rows, cols = spec.grid()
        if mode != "whole":
            self.log(f"running on {view.width}x{view.height} pixels in {rows}x{cols} blocks "
                     f"of {block} px, {len(layers)} output file(s)"
                     f"{on_grid(view, engine.native_grid(graph), block)}")
        return spec, (stamps, span)

    def block_size(self, engine: Engine, graph, ndates: int) -> int:
        """The configured block side, shrunk so one block stays under ``max_pixels`` and
        :data:`BLOCK_VALUES` (the memory of a worker is bounded by the block, not by the
        extent)."""
        nbands = max(1, len(graph.meta.source_bands))
        meta = graph.meta
        days = {day_key(i.datetime) for i in meta.product.items_for(None, meta.time_range)}
        per_pixel = nbands * max(1, len(days), ndates)
        read = self.plan_of_job  # the planner's values per pixel (every product a graph reads)
        if read is not None:
            per_pixel = max(per_pixel, read.pixels_read // max(1, read.output_pixels))
        side = self.runner.options["batch_block_size"]
        budget = min(engine.max_pixels, BLOCK_VALUES)
        while side > 16 and side * side * per_pixel > budget:
            side //= 2
        grid = engine.native_grid(graph)
        return aligned_side(side, grid.block if grid is not None else None)

    def run_blocks(self, spec: JobSpec) -> None:
        """Submit the missing blocks, a bounded number at a time, and follow them; and
        the strips of the levels the blocks do not tile, each as soon as the blocks it
        needs are done (before the next blocks, so they overlap with the blocks)."""
        client = self.runner.client
        blocks = spec.all_blocks()
        finished = spec.finished()  # one listing of the store
        done = {b for b in blocks if spec.done(spec.block_path(*b), finished)}
        todo = [b for b in blocks if b not in done]
        strips = spec.all_strips()
        waiting = {s: set(spec.strip_blocks(*s)) for s in strips
                   if not spec.done(spec.strip_path(*s), finished)}
        self.extra.update(blocks_total=len(blocks), blocks_done=len(done),
                          strips_total=len(strips), strips_done=len(strips) - len(waiting))
        self.save()
        if done:
            self.log(f"resuming: {len(done)} of {len(blocks)} blocks already done")
        limit = self.runner._inflight()
        poll = self.runner.options["batch_poll_seconds"]
        pending = list(reversed(todo))
        ready: list[tuple[int, int]] = []

        def release() -> None:
            for strip, needs in list(waiting.items()):
                if needs <= done:
                    ready.append(strip)
                    del waiting[strip]

        release()
        prefix = f"batch-{self.job_id}-{self.token[:8]}"
        while pending or ready or self.futures:
            self.check()
            while (pending or ready) and len(self.futures) < limit:
                if ready:
                    factor, index = ready.pop(0)
                    fut = client.submit(batch_tasks.run_strip, spec, factor, index, pure=False,
                                        key=f"{prefix}-o{factor}s{index}")
                    self.futures[fut] = (None, factor, index)
                else:
                    row, col = pending.pop()
                    fut = client.submit(batch_tasks.run_block, spec, row, col, pure=False,
                                        key=f"{prefix}-r{row}c{col}")
                    self.futures[fut] = ((row, col), 0, 0)
            finished = self.wait(poll)
            for fut in finished:
                block, factor, index = self.futures.pop(fut)
                what = (f"block row {block[0]} col {block[1]}" if block else
                        f"strip {index} of overview level 1/{factor}")
                if fut.status == "error":
                    exc = fut.exception()
                    if block is None:  # only writes: a full disk, a file size limit
                        raise BlockFailed(f"writing the result failed: {_reason(exc)}")
                    raise BlockFailed(f"{what} failed: {_reason(exc)}")
                if fut.status == "cancelled":
                    self.check()  # a shutdown cancels the futures: hand the job back
                    raise BlockFailed(f"{what} was lost by the cluster")
                if block is None:
                    self.extra["strips_done"] = self.extra.get("strips_done", 0) + 1
                else:
                    done.add(block)
                    self.extra["blocks_done"] = self.extra.get("blocks_done", 0) + 1
                    release()
            if finished:
                self.save()

    def finish(self, spec: JobSpec, task, *args) -> list[dict]:
        """Run the final task into a temp dir, publish it by renaming, mark ``finished``."""
        runner = self.runner
        storage = runner.storage
        tmp = Path(spec.work_dir) / f"out-{self.token[:8]}"
        out_key, progress = spec.key_of(tmp), results.progress_key(spec, tmp)
        storage.delete_prefix(out_key)
        storage.delete(progress)
        started = time.monotonic()
        fut = runner.client.submit(task, spec, str(tmp), *args, pure=False,
                                   key=f"batch-{self.job_id}-{self.token[:8]}-final")
        self.futures = {fut: None}
        while not self.wait(runner.options["batch_poll_seconds"]):
            self.check()
            files_done = results.read_progress(storage, progress)
            if files_done > self.files_done:
                self.files_done = files_done
                self.save()
        self.futures = {}
        storage.delete(progress)
        if fut.status != "finished":
            raise BlockFailed(f"writing the result failed: {_reason(fut.exception())}")
        assets = fut.result()
        where = "" if spec.shared else f" to {storage.name}"
        self.log(f"result files written{where} ({time.monotonic() - started:.1f} s)")
        warnings = {a.pop("warning") for a in assets if "warning" in a}
        for warning in sorted(warnings):  # an empty result is answered, and said so
            self.log(warning, "warning")
        final = runner.result_key(self.job_id)
        storage.move_prefix(out_key, final)
        self.measure(spec, storage.size_of(final))
        if self.export is not None:  # export_workspace: a copy in the user's workspace
            try:
                exported = workspaces.export(runner, storage, *self.export[:1], self.job_id,
                                             final, self.export[1])
            except (TileserverError, OSError) as exc:
                raise BlockFailed(f"exporting to workspace {self.export[1]['workspace']!r} "
                                  f"failed: {getattr(exc, 'message', exc)}") from exc
            self.extra["exported"] = exported
            self.log(f"exported {len(exported['files'])} file(s) to workspace "
                     f"{exported['workspace']!r}, folder {exported['path']!r}")
        done = self.extra.get("blocks_total", 1)
        self.extra.update(blocks_done=done, results_token=uuid.uuid4().hex, results=assets)
        # logged before the status flips, so that whoever sees "finished" finds this line
        self.log("finished: " + ", ".join(a["name"] for a in assets))
        if not runner._move(self.job_id, self.token, "finish", progress=100.0,
                            extra=dict(self.extra), error=None):
            storage.delete_prefix(final)
            raise _Stop
        runner.drop_work(self.job_id)
        return assets


    def measure(self, spec: JobSpec, written: int) -> None:
        """Record what this job measured (values read, seconds, bytes written) before it is
        ``finished``: the estimates of the next jobs learn from it."""
        if self.plan_of_job is None:
            return
        try:
            estimates.record(self.store, self.plan_of_job, spec.output,
                             time.monotonic() - self.started, written)
        except Exception:  # noqa: BLE001 - a measurement is never worth failing a job
            log.exception("batch job %s: cannot record its measurement", self.job_id)


class BlockFailed(Exception):
    """A task of the job failed; the message is what the user sees."""


def _reason(exc: BaseException | None) -> str:
    """A one-line explanation for the job log."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, BlockFailed):
        return str(exc)
    name = type(exc).__name__
    if name == "KilledWorker":
        return ("a Dask worker died while computing this task (out of memory or killed): "
                f"{exc}")
    if name in ("OSError", "TimeoutError", "CommClosedError") and "connect" in str(exc).lower():
        return f"the Dask scheduler cannot be reached: {exc}"
    message = getattr(exc, "message", None) or str(exc) or name
    return f"{name}: {message}"
