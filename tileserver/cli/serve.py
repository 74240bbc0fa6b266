"""``tileserver serve``: gunicorn at once, the demo data written with progress beside the
first requests on the first start, and, once it listens, where to go (viewer, openEO, WMTS,
WCS, users)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from tileserver.demo import example_graph, progress_for
from tileserver.demo.files import is_complete
from tileserver.jobs.store import JobStore
from tileserver.settings import Settings, load_settings
from tileserver.web.auth import SINGLE_USER, configured_users

#: gunicorn worker classes ``tileserver serve`` runs (``worker_class`` setting).
WORKER_CLASSES = ("gthread", "sync")

#: Title of the job registered on the demo catalog's first start (found again by it).
DEMO_JOB_TITLE = "Demo: minimum NDVI of January 2017 (the openEO 0.0.2 documentation's example)"


def single_user(settings: Settings) -> bool:
    """Whether the server runs in single-user mode (no users file, no OpenID provider)."""
    return not configured_users(settings) and not settings.oidc_providers


def demo_job(settings: Settings) -> str | None:
    """The id of the demo job (registered once, for the single user) when the server runs on
    the demo catalog without users; else ``None``."""
    if settings.catalog or not single_user(settings):
        return None
    store = JobStore(settings.db_url)
    try:
        for job in store.list_jobs(SINGLE_USER):
            if job.get("title") == DEMO_JOB_TITLE:
                return job["job_id"]
        return store.create_job(SINGLE_USER, example_graph(), title=DEMO_JOB_TITLE,
                                description="registered by the first start of tileserver "
                                "serve on the demo catalog; delete it at will")["job_id"]
    finally:
        store.dispose()


def where_to_go(settings: Settings, job_id: str | None) -> str:
    """The lines printed when the server is ready."""
    # here: its package imports the app's modules, prometheus_client among them (serve)
    from tileserver.web.openeo.v1.versions import VERSIONS  # noqa: PLC0415

    base = (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")
    newest = [v for v in VERSIONS if v.production][-1].number  # VERSIONS: oldest first
    lines = [f"tileserver is ready on {base}"]
    if job_id is not None:
        lines.append(f"  map of the demo job   {base}/jobs/{job_id}/viewer")
    lines += [
        f"  openEO (Python)       openeo.connect(\"{base}\")   (API {newest}; 0.0.2 at "
        f"{base}/)",
        f"  WMTS, every job       {base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities",
        f"  WCS, every job        {base}/wcs?SERVICE=WCS&REQUEST=GetCapabilities",
        "  jobs and services     tileserver jobs list | tileserver services list",
    ]
    if configured_users(settings):
        lines.append("  users                 tileserver users list | tileserver users add NAME")
    else:
        lines.append("  add a user            tileserver users add NAME   (single-user mode "
                     "until then: no login)")
    return "\n".join(lines)


#: prometheus_client's multiprocess mode (also tileserver.metrics.MULTIPROC_ENV; not
#: imported from there: that module imports prometheus_client, which reads the variable).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


def metrics_dir(settings: Settings) -> tuple[Path, bool] | None:
    """Set up ``PROMETHEUS_MULTIPROC_DIR`` so that ``/metrics`` adds up every gunicorn
    worker (:mod:`tileserver.metrics`), always under gunicorn, whatever ``workers``: a
    worker restarted (killed at ``timeout``) then keeps its counts. The operator's
    directory when the variable is set (created if missing, not wiped: theirs to empty
    between runs); else a fresh, empty ``$TILESERVER_HOME/run/prometheus-<pid>`` (the
    directories of servers no longer running there are removed). Returns ``(directory,
    ours)`` (``ours``: remove it on exit), or ``None`` when prometheus_client was imported
    before (too late for its multiprocess mode: each worker answers its own counts)."""
    own = os.environ.get(MULTIPROC_ENV)
    if own:
        path = Path(own)
        path.mkdir(parents=True, exist_ok=True)
        return path, False
    if "prometheus_client" in sys.modules:
        print("tileserver: prometheus_client was imported before the server set "
              f"{MULTIPROC_ENV}: /metrics answers the counts of the worker that answers",
              file=sys.stderr)
        return None
    run = (settings.home / "run").resolve()
    run.mkdir(parents=True, exist_ok=True)
    for old in run.glob("prometheus-*"):
        pid = old.name.removeprefix("prometheus-")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = run / f"prometheus-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)  # a pid used again (a container's pid 1)
    path.mkdir()
    os.environ[MULTIPROC_ENV] = str(path)
    return path, True


def serve(args: argparse.Namespace) -> int:
    """Run gunicorn (``worker_class`` workers, ``gthread`` by default) until Ctrl-C."""
    from gunicorn.app.base import BaseApplication  # noqa: PLC0415 - only the server needs it

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port),
                                   ("workers", args.workers)) if v is not None}
    settings = load_settings(**overrides)
    loopback = settings.host in ("127.0.0.1", "localhost", "::1")
    if not loopback and not settings.allow_remote and single_user(settings):
        print(
            "refusing to listen on a non-loopback address in single-user mode; add users "
            "(tileserver users add) or set allow_remote: true in the configuration",
            file=sys.stderr,
        )
        return 2
    if settings.worker_class not in WORKER_CLASSES:
        print(f"worker_class {settings.worker_class!r} is not one of "
              f"{', '.join(WORKER_CLASSES)}", file=sys.stderr)
        return 2
    # before anything imports prometheus_client (the app below, in this process: the
    # workers fork from it)
    prometheus = metrics_dir(settings)

    from tileserver import metrics  # noqa: PLC0415 - after metrics_dir
    from tileserver.web.app import create_app  # noqa: PLC0415 - the app, once per worker

    job_id = demo_job(settings)
    banner = where_to_go(settings, job_id)
    if not settings.catalog and not is_complete(settings.demo_dir):
        banner += ("\n  (first start: the demo data is being written, see the progress; /data, "
                   "maps and jobs answer when it is done)")

    class App(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{settings.host}:{settings.port}")
            self.cfg.set("workers", settings.workers)
            self.cfg.set("worker_class", settings.worker_class)
            if settings.worker_class == "gthread":
                self.cfg.set("threads", settings.threads)
            self.cfg.set("timeout", 300)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("accesslog", "-")
            self.cfg.set("when_ready", lambda _server: print(banner, file=sys.stderr,
                                                             flush=True))
            # a worker that exited leaves the live gauges of /metrics (its counts stay)
            self.cfg.set("child_exit", lambda _server, worker: metrics.process_exited(
                worker.pid))

        def load(self):
            app = create_app(settings)
            # the demo data (first start, with progress on stderr), the collections and the
            # batch cluster start now, beside the first requests
            app.extensions["tileserver"].start_background(progress_for(sys.stderr))
            return app

    print(f"tileserver on http://{settings.host}:{settings.port}", file=sys.stderr)
    master = os.getpid()
    try:
        App().run()
    finally:
        # the workers leave App().run() too (gunicorn's SystemExit in the forked child):
        # the directory goes with the master only
        if prometheus is not None and prometheus[1] and os.getpid() == master:
            shutil.rmtree(prometheus[0], ignore_errors=True)
    return 0
