"""The openEO compliance suite (PyPI ``openeo-test-suite``, its ``tests/general`` module)
against a real ``tileserver serve`` through the 1.2 base.

The suite validates every answer against the openEO API 1.2.0 document and posts the
request bodies of its ``payload_examples`` (from ``../shared/openeo/``: its wheel ships
neither). It finds both two folders above its installed package, so they are copied there
(:func:`install_suite_files`). Its access token comes from OIDC: the runs of
:func:`main` and of the e2e test start a real OpenID provider (:func:`oidc_provider`) and the
suite logs in with client credentials; without one, :mod:`tests.support.compliance_plugin`
replaces that with ``GET /credentials/basic``. The
payloads load ``CGLS_SSM_1KM`` (band ``B01``, near Vienna, 2020), so the server gets a small
synthetic collection of that name (:func:`make_compliance_catalog`) besides the test catalog.

``python -m tests.support.compliance`` (``make compliance``) runs it and prints the counts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pystac
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box, mapping

from tests.support.requirements import openeo_shared_dir

REPO = Path(__file__).resolve().parents[2]
SHARED = openeo_shared_dir()
USER, PASSWORD = "compliance", "compliance-secret"

#: Failures that are deliberate deviations (test name -> reason); README lists them too.
SCHEMA = ("the 1.2 document's data_type_schema is oneOf(Generic, process-graph, datacube), "
          "which every plain JSON schema matches thrice when validated with OpenAPI 3.1 "
          "semantics as the suite does")
DEVIATIONS: dict[str, str] = {
    "test_POST_result": "the suite expects 201 from POST /result; the 1.2 document says 200",
    "test_GET_file_formats": "format parameter schemas: " + SCHEMA,
    "test_GET_service_types": "service configuration schemas: " + SCHEMA,
    "test_GET_processes": "the official openEO process descriptions (openeo-processes, "
                          "served as published) fail the same check: " + SCHEMA,
}
#: Passed tests of ``tests/general`` today: asserted exactly.
GENERAL_PASSED = 38


@contextmanager
def oidc_provider(work: Path):
    """A real OpenID provider (:mod:`tests.support.oidc`) for a compliance run: yields the
    environment of the server (``TILESERVER_OIDC_PROVIDERS``) and of the suite (the client's
    ``OPENEO_AUTH_*`` variables: its ``authenticate_oidc()`` takes the client credentials)."""
    from tests.support.oidc import SERVICE, start_provider  # noqa: PLC0415

    provider = start_provider(work)
    try:
        yield {"TILESERVER_OIDC_PROVIDERS": json.dumps([provider.config()]),
               "OPENEO_AUTH_METHOD": "client_credentials", "OPENEO_AUTH_PROVIDER_ID": "testidp",
               "OPENEO_AUTH_CLIENT_ID": SERVICE[0], "OPENEO_AUTH_CLIENT_SECRET": SERVICE[1]}
    finally:
        provider.close()


def suite_root() -> Path:
    """Where the suite looks for ``assets/openeo-api`` (two folders above its package)."""
    import openeo_test_suite  # noqa: PLC0415

    return Path(openeo_test_suite.__file__).resolve().parents[2]


def install_suite_files() -> None:
    """Copy the API document and the payload examples to where the suite reads them."""
    root = suite_root()
    spec = root / "assets" / "openeo-api" / "openapi.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SHARED / "openapi-1.2.0.yaml", spec)
    examples = root / "src" / "openeo_test_suite" / "tests" / "general" / "payload_examples"
    shutil.rmtree(examples, ignore_errors=True)
    shutil.copytree(SHARED / "test-suite" / "payload_examples", examples)


def make_compliance_catalog(root: Path) -> Path:
    """``CGLS_SSM_1KM``: band B01, EPSG:4326 at ~1 km over Vienna, three dates in 2020."""
    root.mkdir(parents=True, exist_ok=True)
    col = pystac.Collection(
        "CGLS_SSM_1KM", "Synthetic stand-in for the compliance suite's payloads",
        pystac.Extent(pystac.SpatialExtent([[16.0, 48.0, 16.8, 48.4]]),
                      pystac.TemporalExtent([[datetime(2020, 1, 1, tzinfo=UTC),
                                              datetime(2020, 12, 1, tzinfo=UTC)]])))
    col.summaries.add("eo:bands", [{"name": "B01"}])
    res, width, height = 0.01, 80, 40
    for month in (1, 6, 12):
        when = datetime(2020, month, 1, 10, tzinfo=UTC)
        item_id = f"ssm-2020-{month:02d}"
        folder = root / item_id
        folder.mkdir(exist_ok=True)
        values = (np.arange(width * height, dtype=np.float32).reshape(height, width) % 97
                  + month)
        path = folder / "B01.tif"
        with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1,
                           dtype="float32", crs="EPSG:4326", nodata=float("nan"),
                           transform=from_origin(16.0, 48.4, res, res)) as dst:
            dst.write(values, 1)
        item = pystac.Item(item_id, mapping(box(16.0, 48.0, 16.8, 48.4)),
                           [16.0, 48.0, 16.8, 48.4], when, {"proj:epsg": 4326})
        item.add_asset("B01", pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF,
                                           roles=["data"]))
        col.add_item(item)
    col.normalize_hrefs(str(root))
    col.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "collection.json"


def run_suite(base_url: str, report: Path, *extra: str,
              env: dict[str, str] | None = None) -> dict[str, str]:
    """Run ``tests/general`` against ``base_url`` (the 1.2 base, trailing slash), with
    ``env`` added to its environment; returns ``{test name: "passed" | "failed" |
    "skipped"}`` read from its JUnit report."""
    install_suite_files()
    import openeo_test_suite  # noqa: PLC0415

    tests = Path(openeo_test_suite.__file__).parent / "tests" / "general"
    env = {**os.environ, "TILESERVER_COMPLIANCE_USER": USER,
           "TILESERVER_COMPLIANCE_PASSWORD": PASSWORD, "PYTHONPATH": str(REPO), **(env or {})}
    with tempfile.TemporaryDirectory() as tmp:
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\nmarkers =\n    optional: optional\n    longrunning: long\n")
        cmd = [sys.executable, "-m", "pytest", str(tests), "-c", str(ini),
               "--rootdir", tmp, "-p", "openeo_test_suite.lib.pytest_plugin",
               "-p", "tests.support.compliance_plugin", "-U", base_url, "-q",
               f"--junitxml={report}", "-p", "no:cacheprovider", *extra]
        subprocess.run(cmd, env=env, cwd=tmp, check=False, timeout=600)
    outcomes: dict[str, str] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = ("failed" if kinds & {"failure", "error"} else
                   "skipped" if "skipped" in kinds else "passed")
        outcomes[case.get("name", "?")] = outcome
    return outcomes


#: The suite's process tests (``tests/processes``, HTTP runner) and how this back-end
#: answers them. A case whose arguments hold NaN, an infinity or an external reference is
#: refused by the runner itself before any request (:data:`RUNNER_REFUSES`): it says nothing
#: about the back-end. Every other failing case is named here, by process and index in its
#: test file, with the exact expected value (JSON) and the reason; a case listed here that
#: passes, or whose expected value changed, fails the test (the entry is stale).
NAN_NULL = "a NaN result has no JSON form: the answer is null"
INF_NULL = "an infinite result has no JSON form: the answer is null"
NO_DATA = ("the case contradicts the truth table of the process description "
           "(a lone no-data value reduces to no-data); the unit tests record the same case")
FROM_ARGUMENT = ("the case's child process reads its parameters with 'from_argument' (the "
                 "pre-1.0 name of 'from_parameter'), which an API 1.x graph does not have: the "
                 "object is no child process (the unit tests run the case with the old name)")
ELEMENT = ("the condition reads parameter 'element'; count.json names it 'x' (the unit tests "
           "record the same case)")
FILTER_PROCESS = "the case passes 'process'; array_filter.json names the argument 'condition'"
PROCESS_TEST_DEVIATIONS: dict[str, tuple[str, str]] = {
    # case: (expected value as JSON, reason)
    **{case: ("NaN", NAN_NULL) for case in (
        "arccos#5", "arccos#6", "arcosh#5", "arcosh#6", "arcsin#5", "arcsin#6", "artanh#5",
        "artanh#6", "divide#7", "ln#5", "log#0", "mod#8", "sqrt#3")},
    **{case: ("Infinity", INF_NULL) for case in ("artanh#3", "divide#5", "mod#6")},
    **{case: ("-Infinity", INF_NULL) for case in ("artanh#4", "divide#6", "ln#4", "log#1",
                                                  "mod#7")},
    "all#8": ("true", NO_DATA),
    "any#8": ("false", NO_DATA),
    "array_append#0": ("[1]", "the case expects [1] for appending 0 to an empty array; "
                              "the result is [0] (the unit tests record the same case)"),
    "array_apply#0": ("[]", FROM_ARGUMENT),
    "array_apply#2": ("[2.5, 6.25]", FROM_ARGUMENT),
    "array_apply#4": ("[0, 1, 2, 3]", FROM_ARGUMENT),
    "array_filter#0": ("[]", FILTER_PROCESS),
    "array_filter#2": ("[1, 2, 3]", FILTER_PROCESS),
    "count#4": ("3", ELEMENT),
    "count#5": ("3", ELEMENT),
}

#: The runner's own refusals (checked before it sends anything): (unsendable kind, message).
RUNNER_REFUSES = {
    "a NaN argument": "HTTP JSON APIs don't support NaN values",
    "an infinite argument": "HTTP JSON APIs don't support infinity values",
    "an external reference": "Failed to load external reference assets/",
}

#: Passed cases of today's run: asserted exactly (a new pass updates it, a lost one fails).
PROCESS_TESTS_PASSED = 547
#: Skipped cases (the suite's own skips: no expected result, unsupported argument types).
PROCESS_TESTS_SKIPPED = 58


def run_process_tests(base_url: str, report: Path) -> dict[str, dict[str, str]]:
    """Run the suite's process tests (``tests/processes/processing``, the official
    openeo-processes cases from ``../shared/openeo/processes``) through ``POST /result``
    (the suite's HTTP runner). ``{case ("sqrt#3"): {"outcome", "message", "returns",
    "unsendable", "name"}}``; the case names and expected values come from
    :mod:`tests.support.compliance_plugin`."""
    import openeo_test_suite  # noqa: PLC0415

    tests = Path(openeo_test_suite.__file__).parent / "tests" / "processes" / "processing"
    env = {**os.environ, "TILESERVER_COMPLIANCE_USER": USER,
           "TILESERVER_COMPLIANCE_PASSWORD": PASSWORD, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "assets").mkdir()
        (Path(tmp) / "assets" / "processes").symlink_to(SHARED / "processes")
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\njunit_logging = no\n")
        cmd = [sys.executable, "-m", "pytest", str(tests / "test_example.py"), "-c",
               str(ini), "--rootdir", tmp, "-p", "openeo_test_suite.lib.pytest_plugin",
               "-p", "tests.support.compliance_plugin", "-U", base_url, "--runner", "http", "-q",
               f"--junitxml={report}", "-p", "no:cacheprovider"]
        subprocess.run(cmd, env=env, cwd=tmp, check=False, timeout=900,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    outcomes: dict[str, dict[str, str]] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        name = case.get("name", "?")
        outcomes[props.get("case", name)] = {
            "name": name,
            "outcome": ("failed" if bad is not None else
                        "skipped" if skipped is not None else "passed"),
            "message": (bad.get("message") if bad is not None else
                        skipped.get("message") if skipped is not None else "") or "",
            "returns": props.get("returns", "?"), "unsendable": props.get("unsendable", "")}
    return outcomes


def process_test_problems(outcomes: dict[str, dict[str, str]]) -> list[str]:
    """What is wrong with a run of the process tests: an unexpected failure, a stale
    allow-list entry (the case passes, or expects another value), a runner refusal that
    is not one, or counts that differ from today's."""
    problems = []
    for case, out in sorted(outcomes.items()):
        excused = PROCESS_TEST_DEVIATIONS.get(case)
        refused = RUNNER_REFUSES.get(out["unsendable"])
        if excused and out["returns"] != excused[0]:
            problems.append(f"{case}: the allow-list expects {excused[0]}, the case "
                            f"now expects {out['returns']}")
        if out["outcome"] == "failed":
            if refused and refused in out["message"]:
                continue
            if not excused:
                problems.append(f"{case} ({out['name']}) FAILED, not an allowed deviation: "
                                f"{out['message'][:300]}")
        elif excused:
            problems.append(f"{case}: {out['outcome']}, but the allow-list excuses it "
                            f"({excused[1]}): remove the entry")
        elif refused and out["outcome"] == "passed":
            problems.append(f"{case}: passed although the runner should refuse it "
                            f"({out['unsendable']})")
    counts = {k: sum(o["outcome"] == k for o in outcomes.values()) for k in ("passed",
                                                                            "skipped")}
    if counts["passed"] != PROCESS_TESTS_PASSED:
        problems.append(f"{counts['passed']} cases passed, today's count is "
                        f"{PROCESS_TESTS_PASSED} (PROCESS_TESTS_PASSED)")
    if counts["skipped"] != PROCESS_TESTS_SKIPPED:
        problems.append(f"{counts['skipped']} cases skipped, today's count is "
                        f"{PROCESS_TESTS_SKIPPED} (PROCESS_TESTS_SKIPPED)")
    return problems


def main() -> int:
    """Serve the test catalog plus ``CGLS_SSM_1KM``, run the suite, print the counts."""
    from tests.support.load import serve  # noqa: PLC0415
    from tests.support.synthetic import make_catalog  # noqa: PLC0415
    from tileserver.settings import load_settings  # noqa: PLC0415
    from tileserver.web.auth import add_user  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = work / "home"
        add_user(load_settings(home=str(home)), USER, PASSWORD)
        catalogs = f"{make_catalog(work / 'test')},{make_compliance_catalog(work / 'ssm')}"
        with oidc_provider(work) as oidc, \
                serve(home, catalogs, 256 * 1024 * 1024, **oidc) as (base, _pids):
            outcomes = run_suite(f"{base}/openeo/1.2/", work / "report.xml", env=oidc)
    counts = {k: sum(v == k for v in outcomes.values()) for k in ("passed", "failed",
                                                                  "skipped")}
    print(json.dumps(counts))
    for name, outcome in sorted(outcomes.items()):
        if outcome == "failed":
            print(f"FAILED {name}: {DEVIATIONS.get(name, 'NOT A DOCUMENTED DEVIATION')}")
    unexpected = [n for n, o in outcomes.items() if o == "failed" and n not in DEVIATIONS]
    stale = [n for n in DEVIATIONS if outcomes.get(n) != "failed"]
    for name in stale:
        print(f"STALE DEVIATION {name}: {outcomes.get(name, 'not run')}")
    return 1 if unexpected or stale or counts["passed"] != GENERAL_PASSED else 0


if __name__ == "__main__":
    sys.exit(main())
