"""The openEO compliance suite (``openeo-test-suite``, ``tests/general``) against a real
server through the 1.2 base: every failure must be a documented deviation."""

from __future__ import annotations

import pytest

from tests.support.compliance import (
    DEVIATIONS,
    GENERAL_PASSED,
    PASSWORD,
    USER,
    make_compliance_catalog,
    oidc_provider,
    process_test_problems,
    run_process_tests,
    run_suite,
)
from tests.support.load import serve
from tests.support.requirements import require
from tileserver.settings import load_settings
from tileserver.web.auth import add_user

pytestmark = pytest.mark.slow


def test_compliance_suite_fails_only_on_documented_deviations(tmp_path, small_catalog):
    pytest.importorskip("openeo_test_suite")
    require("openeo-shared")
    home = tmp_path / "home"
    add_user(load_settings(home=str(home)), USER, PASSWORD)
    catalogs = f"{small_catalog},{make_compliance_catalog(tmp_path / 'ssm')}"
    # a real OpenID provider: the suite logs in with client credentials and checks
    # GET /credentials/oidc
    with oidc_provider(tmp_path) as oidc, \
            serve(home, catalogs, 256 * 1024 * 1024, **oidc) as (base, _pids):
        outcomes = run_suite(f"{base}/openeo/1.2/", tmp_path / "report.xml", env=oidc)
    failed = {name for name, outcome in outcomes.items() if outcome == "failed"}
    assert failed <= set(DEVIATIONS), sorted(failed - set(DEVIATIONS))
    # a listed deviation that passes (or no longer runs) is stale: the entry must go
    assert set(DEVIATIONS) <= failed, sorted(set(DEVIATIONS) - failed)
    passed = {name for name, outcome in outcomes.items() if outcome == "passed"}
    # the job, result, validation and capability checks are among the passing ones
    assert {"test_GET_backend_info", "test_GET_well_known", "test_GET_collections",
            "test_POST_jobs", "test_GET_jobs_job_id_results", "test_PATCH_jobs_job_id",
            "test_POST_validation", "test_GET_me", "test_GET_process_graphs_process_id",
            "test_GET_credentials_oidc", "test_GET_jobs_job_id_estimate",
            "test_PUT_process_graphs_process_id"} <= passed  # uuid4 ids with dashes
    assert len(passed) == GENERAL_PASSED, (len(passed), sorted(passed))


def test_process_tests_of_the_suite_through_result(tmp_path, small_catalog):
    """The suite's process tests (the official openeo-processes cases, sent one process at
    a time to ``POST /result`` by its HTTP runner): every failure is a case the runner
    cannot send or one named in PROCESS_TEST_DEVIATIONS with its exact expected value; no
    entry is stale; the passed and skipped counts are today's."""
    pytest.importorskip("openeo_test_suite")
    require("openeo-shared")
    home = tmp_path / "home"
    add_user(load_settings(home=str(home)), USER, PASSWORD)
    with serve(home, str(small_catalog), 256 * 1024 * 1024) as (base, _pids):
        outcomes = run_process_tests(f"{base}/openeo/1.2/", tmp_path / "processes.xml")
    problems = process_test_problems(outcomes)
    assert not problems, "\n".join(problems)
    assert outcomes["sort#0"]["outcome"] == "passed"
