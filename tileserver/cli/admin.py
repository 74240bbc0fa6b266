"""``tileserver jobs list|show|delete``, ``tileserver services list`` and ``tileserver
demo-data``: the registry of ``$TILESERVER_HOME`` (or ``database_url``) read directly, so
the first steps need no curl and no running server."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tileserver.demo import progress_for, write_demo_catalog
from tileserver.jobs.lifecycle import STATUSES as JOB_STATUSES
from tileserver.jobs.store import JobNotFound, JobStore
from tileserver.settings import load_settings


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else str(value)


def _all_jobs(store: JobStore, user: str | None) -> list[dict]:
    jobs = store.list_jobs(user) if user else store.jobs_with_status(JOB_STATUSES)
    return sorted(jobs, key=lambda j: j["submitted"], reverse=True)


def jobs_list(args: argparse.Namespace) -> int:
    """Every job (of ``--user``): id, user, status, submitted, title."""
    store = JobStore(load_settings().db_url)
    try:
        jobs = _all_jobs(store, args.user)
    finally:
        store.dispose()
    if args.json:
        print(json.dumps([{k: j[k] for k in ("job_id", "user_id", "status", "title")}
                          for j in jobs], indent=2))
    elif not jobs:
        print("no jobs (POST /jobs, or openeo.connect(...).create_job(...))")
    else:
        print(_table([[j["job_id"], j["user_id"], j["status"], _when(j["submitted"]),
                       j["title"] or ""] for j in jobs],
                     ["JOB", "USER", "STATUS", "SUBMITTED", "TITLE"]))
    return 0


def jobs_show(args: argparse.Namespace) -> int:
    """One job as JSON (graph, output, status, log)."""
    store = JobStore(load_settings().db_url)
    try:
        try:
            job = store.get_job(args.job_id)
        except JobNotFound as exc:
            print(f"tileserver: {exc}", file=sys.stderr)
            return 1
        job = {**job, "logs": store.logs(args.job_id)}
    finally:
        store.dispose()
    print(json.dumps(job, indent=2, default=_when))
    return 0


def jobs_delete(args: argparse.Namespace) -> int:
    """Delete jobs with their batch results and services."""
    # here, not at the top: ``tileserver serve`` imports this module before it sets up the
    # metrics of its workers, and these import prometheus_client (tileserver.cli.serve)
    from tileserver.jobs import usecases  # noqa: PLC0415
    from tileserver.runtime import Runtime  # noqa: PLC0415

    rt = Runtime(load_settings())
    status = 0
    try:
        for job_id in args.job_id:
            try:
                job = rt.store.get_job(job_id)
                usecases.delete_job(rt, job["user_id"], job_id)
            except JobNotFound as exc:
                print(f"tileserver: {exc}", file=sys.stderr)
                status = 1
            else:
                print(f"deleted job {job_id}")
    finally:
        rt.close()
    return status


def services_list(args: argparse.Namespace) -> int:
    """Every service (of ``--user``): id, type, job, user."""
    store = JobStore(load_settings().db_url)
    try:
        users = [args.user] if args.user else sorted(
            {j["user_id"] for j in store.jobs_with_status(JOB_STATUSES)})
        services = [s for u in users for s in store.list_services(u)]
    finally:
        store.dispose()
    if args.json:
        print(json.dumps([{k: s[k] for k in ("service_id", "service_type", "job_id", "user_id")}
                          for s in services], indent=2))
    elif not services:
        print("no services (POST /services with a job_id and type wmts, wcs or xyz)")
    else:
        print(_table([[s["service_id"], s["service_type"], s["job_id"], s["user_id"]]
                      for s in services], ["SERVICE", "TYPE", "JOB", "USER"]))
    return 0


def demo_data(args: argparse.Namespace) -> int:
    """Write (or find) the demo catalog in a directory, with progress; print its path."""
    print(write_demo_catalog(Path(args.directory), progress=progress_for(sys.stderr)))
    return 0


def add_commands(sub: Any) -> None:
    """The ``jobs``, ``services`` and ``demo-data`` subcommands."""
    demo = sub.add_parser("demo-data", help="write the synthetic demo STAC catalog and COGs "
                          "(with progress)")
    demo.add_argument("directory")
    demo.set_defaults(func=demo_data)

    jobs = sub.add_parser("jobs", help="list, show or delete jobs")
    actions = jobs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the jobs, newest first")
    listing.add_argument("--user", help="only this user's jobs")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(func=jobs_list)
    show = actions.add_parser("show", help="one job as JSON, with its log")
    show.add_argument("job_id")
    show.set_defaults(func=jobs_show)
    delete = actions.add_parser("delete", help="delete jobs, their results and services")
    delete.add_argument("job_id", nargs="+")
    delete.set_defaults(func=jobs_delete)

    services = sub.add_parser("services", help="list the services (WMTS, WCS, XYZ)")
    sactions = services.add_subparsers(dest="action", required=True)
    slist = sactions.add_parser("list", help="the services")
    slist.add_argument("--user", help="only this user's services")
    slist.add_argument("--json", action="store_true", help="JSON instead of a table")
    slist.set_defaults(func=services_list)
