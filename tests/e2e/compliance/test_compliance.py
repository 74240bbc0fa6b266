"""The openEO compliance suite (``openeo-test-suite``, ``tests/general``) against a real
server through the 1.2 base: every failure must be a documented deviation."""

from __future__ import annotations

import pytest

from tests.support.compliance import (
    DEVIATIONS,
    PASSWORD,
    PROCESS_TEST_DEVIATIONS,
    SHARED,
    USER,
    make_compliance_catalog,
    run_process_tests,
    run_suite,
)
from tests.support.load import serve
from tileserver.settings import load_settings
from tileserver.web.auth import add_user

pytestmark = pytest.mark.slow


def test_compliance_suite_fails_only_on_documented_deviations(tmp_path, small_catalog):
    pytest.importorskip("openeo_test_suite")
    if not (SHARED / "openapi-1.2.0.yaml").is_file():
        pytest.skip(f"the openEO API document and payload examples are not in {SHARED}")
    home = tmp_path / "home"
    add_user(load_settings(home=str(home)), USER, PASSWORD)
    catalogs = f"{small_catalog},{make_compliance_catalog(tmp_path / 'ssm')}"
    with serve(home, catalogs, 256 * 1024 * 1024) as (base, _pids):
        outcomes = run_suite(f"{base}/openeo/1.2/", tmp_path / "report.xml")
    failed = {name for name, outcome in outcomes.items() if outcome == "failed"}
    assert failed <= set(DEVIATIONS), sorted(failed - set(DEVIATIONS))
    passed = {name for name, outcome in outcomes.items() if outcome == "passed"}
    # the job, result, validation and capability checks are among the passing ones
    assert {"test_GET_backend_info", "test_GET_well_known", "test_GET_collections",
            "test_POST_jobs", "test_GET_jobs_job_id_results", "test_PATCH_jobs_job_id",
            "test_POST_validation", "test_GET_me", "test_GET_process_graphs_process_id",
            "test_GET_jobs_job_id_estimate"} <= passed
    assert len(outcomes) >= 40


def test_process_tests_of_the_suite_through_result(tmp_path, small_catalog):
    """The suite's process tests (the official openeo-processes cases, sent one process at
    a time to ``POST /result`` by its HTTP runner): every failure is one of the runner's
    limits listed in PROCESS_TEST_DEVIATIONS."""
    import re  # noqa: PLC0415

    pytest.importorskip("openeo_test_suite")
    if not (SHARED / "processes" / "tests").is_dir():
        pytest.skip(f"the openEO process tests are not in {SHARED}")
    home = tmp_path / "home"
    add_user(load_settings(home=str(home)), USER, PASSWORD)
    with serve(home, str(small_catalog), 256 * 1024 * 1024) as (base, _pids):
        outcomes = run_process_tests(f"{base}/openeo/1.2/", tmp_path / "processes.xml")
    unexplained = {name: message[:300] for name, (outcome, message) in outcomes.items()
                   if outcome == "failed" and not any(
                       re.search(pattern, message) for pattern, _ in PROCESS_TEST_DEVIATIONS)}
    assert not unexplained, unexplained
    passed = [name for name, (outcome, _) in outcomes.items() if outcome == "passed"]
    assert len(passed) >= 500, len(passed)
    assert any(name.startswith("test_process[sort-") for name in passed)
