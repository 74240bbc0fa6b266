"""``tileserver doctor``: the optional parts of the system the features need, each with what
is missing and what its absence disables."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from tileserver.graph import specs
from tileserver.jobs.store import make_engine
from tileserver.settings import Settings, load_settings
from tileserver.web import assets

#: The system Python that carries QGIS (python3-qgis), as the QGIS tests use it.
SYSTEM_PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class Check:
    """One part: ``ok`` is True, False (missing) or None (not configured, not needed)."""

    name: str
    ok: bool | None
    detail: str
    disables: str = ""


def _bwrap(settings: Settings) -> Check:
    found = shutil.which("bwrap")
    if settings.udf_isolation != "bwrap":
        return Check("bubblewrap", None, f"udf_isolation is {settings.udf_isolation!r}: UDFs "
                     "run without namespaces")
    if found:
        return Check("bubblewrap", True, found)
    return Check("bubblewrap", False, "bwrap not on PATH (Debian/Ubuntu: apt install "
                 "bubblewrap)", "user-defined functions (run_udf) answer 'UDFs unavailable'")


def _database(settings: Settings) -> Check:
    url = settings.db_url
    if url.startswith("sqlite"):
        return Check("database", True, f"SQLite ({url.split(':///', 1)[-1]})")
    from sqlalchemy import text  # noqa: PLC0415 - only when configured

    shown = url.split("@")[-1]
    try:
        engine = make_engine(url)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # any driver's error: report it, do not crash
        return Check("database", False, f"{shown}: {str(exc).splitlines()[0]}",
                     "the server (jobs and services are stored there)")
    return Check("database", True, shown)


def _cache(settings: Settings) -> Check:
    url = settings.cache_url
    if not url or not url.startswith(("redis://", "rediss://", "unix://")):
        return Check("redis", None, f"cache_url is {url or 'null'}: shared tier on disk "
                     "or none")
    shown = url.split("@")[-1]
    try:
        import redis  # noqa: PLC0415 - only when configured

        redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3).ping()
    except Exception as exc:  # connection refused, auth, DNS...
        return Check("redis", False, f"{shown}: {exc}", "the shared cache tier (each "
                     "process keeps its own memory cache)")
    return Check("redis", True, shown)


def _qgis() -> Check:
    try:
        ok = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True,
                            timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if ok:
        return Check("qgis", True, f"python3-qgis ({SYSTEM_PYTHON})")
    return Check("qgis", False, "python3-qgis not importable by " + SYSTEM_PYTHON,
                 "the QGIS tests (tests/e2e/qgis/test_wmts_qgis.py) are skipped")


def _chromium() -> Check:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return Check("chromium", True, found)
    return Check("chromium", False, "chromium not on PATH (.ci/run installs it)",
                 "the viewer's browser tests (tests/api/web/test_viewer.py) are skipped")


def _specs() -> Check:
    ids = specs.spec_ids()
    if ids:
        return Check("process specs", True, f"{len(ids)} official openEO process descriptions")
    return Check("process specs", False, "no official openEO process descriptions (python -m "
                 "tileserver.graph.specs install)", "the openEO 1.2 process list (GET "
                 "/openeo/1.2/processes is empty, so openeo.connect(...) cannot build graphs)")


def _leaflet() -> Check:
    if assets.leaflet_available():
        return Check("leaflet", True, str(assets.leaflet_dir()))
    return Check("leaflet", False, "Leaflet's files are missing (python -m "
                 "tileserver.web.assets install)", "the map of the viewer page "
                 "(/jobs/{id}/viewer says what is missing)")


def checks(settings: Settings) -> list[Check]:
    """Every check, in the order printed."""
    return [_bwrap(settings), _database(settings), _cache(settings), _specs(), _leaflet(),
            _qgis(), _chromium()]


def doctor(args: argparse.Namespace) -> int:
    """Print the checks; exit 1 when something is missing."""
    results = checks(load_settings())
    if args.json:
        print(json.dumps([asdict(c) for c in results], indent=2))
    else:
        mark = {True: "ok  ", False: "MISSING", None: "-   "}
        for c in results:
            print(f"{mark[c.ok]:8} {c.name:14} {c.detail}")
            if c.disables:
                print(f"{'':8} {'':14} disables: {c.disables}")
    return 1 if any(c.ok is False for c in results) else 0


def add_commands(sub: Any) -> None:
    """The ``doctor`` subcommand."""
    parser = sub.add_parser("doctor", help="check the optional system parts (bubblewrap, "
                            "database, Redis, process specs, Leaflet, QGIS, Chromium)")
    parser.add_argument("--json", action="store_true", help="JSON instead of lines")
    parser.set_defaults(func=doctor)
