"""The openEO compliance suite (PyPI ``openeo-test-suite``, its ``tests/general`` module)
against a real ``tileserver serve`` through the 1.2 base.

The suite validates every answer against the openEO API 1.2.0 document and posts the
request bodies of its ``payload_examples`` (from ``../shared/openeo/``: its wheel ships
neither). It finds both two folders above its installed package, so they are copied there
(:func:`install_suite_files`). Its access token comes from OIDC;
:mod:`tests.support.compliance_plugin` replaces that with ``GET /credentials/basic``. The
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
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pystac
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box, mapping

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "openeo"
USER, PASSWORD = "compliance", "compliance-secret"

#: Failures that are deliberate deviations (test name -> reason); README lists them too.
SCHEMA = ("the 1.2 document's data_type_schema is oneOf(Generic, process-graph, datacube), "
          "which every plain JSON schema matches thrice when validated with OpenAPI 3.1 "
          "semantics as the suite does")
DEVIATIONS: dict[str, str] = {
    "test_GET_credentials_oidc": "no OpenID Connect: HTTP Basic only (GET /credentials/basic)",
    "test_PUT_process_graphs_process_id": "the suite PUTs uuid4 strings as ids; the 1.2 "
                                          "document's pattern for them is ^\\w+$ (no '-')",
    "test_POST_result": "the suite expects 201 from POST /result; the 1.2 document says 200",
    "test_GET_file_formats": "format parameter schemas: " + SCHEMA,
    "test_GET_service_types": "service configuration schemas: " + SCHEMA,
    "test_GET_processes": "the official openEO process descriptions (openeo-processes, "
                          "served as published) fail the same check: " + SCHEMA,
}


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


def run_suite(base_url: str, report: Path, *extra: str) -> dict[str, str]:
    """Run ``tests/general`` against ``base_url`` (the 1.2 base, trailing slash); returns
    ``{test name: "passed" | "failed" | "skipped"}`` read from its JUnit report."""
    install_suite_files()
    import openeo_test_suite  # noqa: PLC0415

    tests = Path(openeo_test_suite.__file__).parent / "tests" / "general"
    env = {**os.environ, "TILESERVER_COMPLIANCE_USER": USER,
           "TILESERVER_COMPLIANCE_PASSWORD": PASSWORD, "PYTHONPATH": str(REPO)}
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


#: Failures of the suite's process tests (``tests/processes``, HTTP runner) that say
#: nothing about the back-end: (regular expression on the failure message, reason).
PROCESS_TEST_DEVIATIONS: list[tuple[str, str]] = [
    (r"HTTP JSON APIs don't support (NaN|infinity) values",
     "the suite's HTTP runner cannot send NaN or infinite arguments in JSON"),
    (r"Failed to load external reference assets/",
     "the HTTP runner sends no data cubes (the cube cases run in "
     "tests/unit/processes/test_official_cube_processes.py)"),
    (r"Got None instead of NaN|Expected a numerical result but got None",
     "a NaN result is null in JSON"),
    (r"Expected exception (\w+) but got OpenEoApiError\(\"\[400\] \1:",
     "the error has the expected code; over HTTP every error is the client's OpenEoApiError"),
    (r"parameter 'element' is not defined",
     "count cases read the parameter 'element'; count.json names it 'x'"),
    (r"array_filter' has no argument 'process'",
     "array_filter cases pass 'process'; array_filter.json names it 'condition'"),
    (r"ArrayNotLabeled|'process' in process 'array_apply' is invalid",
     "labelled arrays have no JSON form in the API: the runner cannot send them"),
    (r"Differences: \{'values_changed': \{'root\[0\]': \{'new_value': 0, 'old_value': 1",
     "array_append case 0 expects [1] for appending 0 to an empty array"),
]


def run_process_tests(base_url: str, report: Path) -> dict[str, tuple[str, str]]:
    """Run the suite's process tests (``tests/processes/processing``, the official
    openeo-processes cases from ``../shared/openeo/processes``) through ``POST /result``
    (the suite's HTTP runner); ``{case: (outcome, failure message)}``."""
    import openeo_test_suite  # noqa: PLC0415

    tests = Path(openeo_test_suite.__file__).parent / "tests" / "processes" / "processing"
    env = {**os.environ, "TILESERVER_COMPLIANCE_USER": USER,
           "TILESERVER_COMPLIANCE_PASSWORD": PASSWORD, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "assets").mkdir()
        (Path(tmp) / "assets" / "processes").symlink_to(SHARED / "processes")
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n")
        cmd = [sys.executable, "-m", "pytest", str(tests / "test_example.py"), "-c",
               str(ini), "--rootdir", tmp, "-p", "openeo_test_suite.lib.pytest_plugin",
               "-p", "tests.support.compliance_plugin", "-U", base_url, "--runner", "http", "-q",
               f"--junitxml={report}", "-p", "no:cacheprovider"]
        subprocess.run(cmd, env=env, cwd=tmp, check=False, timeout=900,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    outcomes: dict[str, tuple[str, str]] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        outcome = ("failed" if bad is not None else
                   "skipped" if case.find("skipped") is not None else "passed")
        outcomes[case.get("name", "?")] = (outcome, "" if bad is None else
                                           bad.get("message") or "")
    return outcomes


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
        with serve(home, catalogs, 256 * 1024 * 1024) as (base, _pids):
            outcomes = run_suite(f"{base}/openeo/1.2/", work / "report.xml")
    counts = {k: sum(v == k for v in outcomes.values()) for k in ("passed", "failed",
                                                                  "skipped")}
    print(json.dumps(counts))
    for name, outcome in sorted(outcomes.items()):
        if outcome == "failed":
            print(f"FAILED {name}: {DEVIATIONS.get(name, 'NOT A DOCUMENTED DEVIATION')}")
    unexpected = [n for n, o in outcomes.items() if o == "failed" and n not in DEVIATIONS]
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
