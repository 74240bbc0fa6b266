"""Shared fixtures: synthetic catalogs, the demo catalog, apps and clients.

Skips: outside CI a test whose system part is missing is skipped, and the run ends with a
one-line summary of the skips and their reasons. Under CI (``CI=true``) every skip is a
failure (see :mod:`tests.support.requirements`), except a case that cannot apply at all
(reason starting with ``not applicable: ``); xfail is not a skip.

Hypothesis runs under one global settings profile, loaded here before any test module is
imported (so it covers every test file, including ones added later):

- ``ci`` (default): ``derandomize=True`` (the examples are a function of the test alone:
  the same on every run and every machine), no example database, no deadline. A test
  cannot pass on one run and fail on the next.
- ``fuzz`` (``HYPOTHESIS_PROFILE=fuzz``, used by ``make fuzz``): random search, examples
  multiplied by ``TILESERVER_FUZZ_SCALE`` (see :func:`tests.support.fuzz.examples`),
  failures kept in ``.hypothesis/``. What it finds becomes an explicit ``@example``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support.requirements import NOT_APPLICABLE, in_ci
from tests.support.synthetic import make_catalog
from tests.support.wmts import LiveServer
from tileserver.settings import load_settings

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.register_profile(
    "fuzz", derandomize=False, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI a skip (other than a case that cannot apply) fails, naming what is missing."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or not in_ci():
        return
    reason = _skip_reason(report)
    if reason.startswith(NOT_APPLICABLE):
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI=true, where every test must run: {reason}\n"
                       "(a skip outside CI is fine; see tests/support/requirements.py)")


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    """One line: how many tests were skipped, grouped by reason (cases that cannot apply
    are counted apart)."""
    reports = [r for r in terminalreporter.stats.get("skipped", ())
               if not hasattr(r, "wasxfail")]
    if not reports:
        return
    reasons: dict[str, int] = {}
    not_applicable = 0
    for report in reports:
        reason = _skip_reason(report)
        if reason.startswith(NOT_APPLICABLE):
            not_applicable += 1
        else:
            short = reason.split(" (install:")[0]
            reasons[short] = reasons.get(short, 0) + 1
    parts = [f"{n}× {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    if not_applicable:
        parts.append(f"{not_applicable}× official cases that cannot apply")
    failing = sum(reasons.values())
    note = "" if in_ci() or not failing else f" ({failing} of them fail under CI=true)"
    terminalreporter.write_line(f"SKIPPED {len(reports)}{note}: " + "; ".join(parts),
                                yellow=True, bold=True)


@pytest.fixture(scope="session")
def small_catalog(tmp_path_factory) -> Path:
    """The synthetic two-zone catalog of ``tests/support/synthetic.py``."""
    return make_catalog(tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="session")
def demo_catalog(tmp_path_factory) -> Path:
    """The full demo catalog (cached between runs in ``TILESERVER_TEST_DEMO_DIR``)."""
    from tileserver.demo import write_demo_catalog

    cached = os.environ.get("TILESERVER_TEST_DEMO_DIR")
    directory = Path(cached) if cached else tmp_path_factory.mktemp("demo")
    return write_demo_catalog(directory)


def _app(tmp_path, catalogs, **overrides):
    from tileserver.web.app import create_app

    settings = load_settings(home=str(tmp_path / "home"),
                             catalog=",".join(str(c) for c in catalogs), **overrides)
    app = create_app(settings)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def make_app(tmp_path):
    """Factory: ``make_app(catalogs, **settings)`` -> Flask app with its own home."""
    apps = []

    def factory(catalogs, **overrides):
        app = _app(tmp_path, catalogs, **overrides)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["tileserver"].close()


@pytest.fixture
def small_app(make_app, small_catalog):
    """An app over the synthetic catalog."""
    return make_app([small_catalog])


@pytest.fixture
def client(small_app):
    """A test client of ``small_app``."""
    return small_app.test_client()


@pytest.fixture
def live(small_app):
    """``small_app`` served over real HTTP in a thread (:class:`tests.support.wmts.LiveServer`)."""
    server = LiveServer(small_app)
    yield server
    server.close()


@pytest.fixture(scope="session")
def pg_cluster():
    """A throw-away PostgreSQL + PostGIS cluster (skipped without the packages, except
    under CI)."""
    from tests.support.pg import PostgresCluster, require_postgres

    cluster = PostgresCluster(require_postgres()).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster, monkeypatch):
    """A fresh database; ``TILESERVER_DATABASE_URL`` points at it (servers started by the
    tests inherit it). The ``*_on_postgresql`` tests run the concurrency and restart tests
    that SQLite passes again on PostgreSQL."""
    url = pg_cluster.create_db(f"jobs_{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("TILESERVER_DATABASE_URL", url)
    return url


@pytest.fixture(autouse=True)
def _aws_keys_back_in_the_environment(monkeypatch):
    """Static AWS keys a test's app took out of the environment
    (:mod:`tileserver.storage.credentials`) go back there after the test, before the test's
    monkeypatch undoes what it set: each test sees the environment its fixtures made."""
    yield
    from tileserver.storage import credentials

    credentials.release()
