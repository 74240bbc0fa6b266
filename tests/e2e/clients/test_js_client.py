"""The official openEO JavaScript client (``@openeo/js-client``, in node) drives a real
``tileserver serve`` over HTTP through openEO 1.3 (found from the bare root URL) and 1.2 (at
its base): basic auth, OpenID Connect (the client's own client-credentials flow against a
real provider, and a token set by hand), collections, processes, a synchronous NDVI result,
a batch job, XYZ and WMTS services. The node scenario (tests/support/jsclient/scenario.mjs)
prints what it saw as JSON; the downloaded GeoTIFFs are compared here with rasterio + numpy.
"""

from __future__ import annotations

import json
import shutil
import warnings
from datetime import UTC, datetime

import numpy as np
import pytest
import rasterio
from numpy.testing import assert_allclose

from tests.support.core import ndvi, reference_stack
from tests.support.hardening import PASSWORDS, users_file
from tests.support.js_client import client_modules, run_scenario
from tests.support.load import serve
from tests.support.oidc import SERVICE, start_provider
from tileserver.datacube.view import View
from tileserver.settings import load_settings
from tileserver.web.auth import users_path

pytestmark = pytest.mark.slow

EXTENT = {"west": 500_000, "south": 5_096_000, "east": 503_000, "north": 5_099_000,
          "crs": "EPSG:32632"}
#: NDVI of the window, its minimum over May 2020, as a GeoTIFF.
GRAPH = {
    "load": {"process_id": "load_collection", "arguments": {
        "id": "TEST", "spatial_extent": EXTENT, "temporal_extent": ["2020-05-01", "2020-05-31"],
        "bands": ["B04", "B08"]}},
    "ndvi": {"process_id": "ndvi", "arguments": {"data": {"from_node": "load"}}},
    "min": {"process_id": "reduce_dimension", "arguments": {
        "data": {"from_node": "ndvi"}, "dimension": "t", "reducer": {"process_graph": {
            "m": {"process_id": "min", "arguments": {"data": {"from_parameter": "data"}},
                  "result": True}}}}},
    "save": {"process_id": "save_result", "arguments": {
        "data": {"from_node": "min"}, "format": "GTiff"}, "result": True},
}
#: A web mercator tile over the window (z=14 at 9.02E 46.03N).
TILE = [14, 8602, 5826]


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    client_modules()  # the client first: a missing node fails with its install command
    running = start_provider(tmp_path_factory.mktemp("jsoidc"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, small_catalog, provider):
    home = tmp_path_factory.mktemp("jsclient") / "home"
    home.mkdir()
    shutil.copyfile(users_file(tmp_path_factory), users_path(load_settings(home=str(home))))
    with serve(home, small_catalog, 256 * 1024 * 1024, threads=4,
               TILESERVER_OIDC_PROVIDERS=json.dumps([provider.config()])) as (base, _pids):
        yield base


def scenario(server, tmp_path_factory, url: str, direct: bool) -> dict:
    return run_scenario({
        "url": url, "direct": direct, "user": "alice", "password": PASSWORDS["alice"],
        "wrong_password": "not-her-password",
        "oidc": {"provider": "testidp", "client_id": SERVICE[0], "client_secret": SERVICE[1]},
        "graph": GRAPH, "tile": TILE}, tmp_path_factory.mktemp("js"))


@pytest.fixture(scope="module")
def run13(server, tmp_path_factory):
    """The scenario connected to the bare root URL (version discovery)."""
    return scenario(server, tmp_path_factory, server, direct=False)


@pytest.fixture(scope="module")
def run12(server, tmp_path_factory):
    """The scenario connected to the 1.2 base."""
    return scenario(server, tmp_path_factory, f"{server}/openeo/1.2", direct=True)


@pytest.fixture(params=["1.3", "1.2"])
def run(request):
    return request.getfixturevalue("run13" if request.param == "1.3" else "run12")


def ok(result):
    """A step's answer (the scenario's ``{error, code, status}`` when it threw: failed)."""
    assert not (isinstance(result, dict) and "error" in result), result
    return result


def reference_ndvi_min(catalog, path) -> tuple[np.ndarray, np.ndarray]:
    """The file's band and the NDVI minimum over May computed with rasterio on its grid."""
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32632
        assert tuple(src.bounds) == pytest.approx(
            (EXTENT["west"], EXTENT["south"], EXTENT["east"], EXTENT["north"]))
        assert src.count == 1
        view = View(src.crs, tuple(src.bounds), src.width, src.height)
        data = src.read(1).astype("float64")
    _days, stack = reference_stack(catalog, "TEST", view, ["B04", "B08"],
                                   datetime(2020, 5, 1, tzinfo=UTC),
                                   datetime(2020, 5, 31, 23, 59, tzinfo=UTC))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        expected = np.nanmin(ndvi(stack[:, 0], stack[:, 1]), axis=0)
    return data, expected


def assert_ndvi_min(catalog, path) -> None:
    data, expected = reference_ndvi_min(catalog, path)
    assert np.isfinite(expected).mean() > 0.5
    assert_allclose(data, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_connect_discovers_13_from_the_root(server, run13, run12):
    assert run13["connect"]["apiVersion"] == "1.3.0"
    assert run13["connect"]["baseUrl"].rstrip("/") == f"{server}/openeo/1.3"
    assert run13["connect"]["url"] == server
    assert run12["connect"]["apiVersion"] == "1.2.0"
    assert run12["connect"]["baseUrl"].rstrip("/") == f"{server}/openeo/1.2"


def test_basic_authentication(run):
    assert run["anonymous_account"]["status"] == 401
    assert run["wrong_password"]["status"] == 403
    assert run["wrong_password"]["code"] == "CredentialsInvalid"
    assert ok(run["account"])["user_id"] == "alice"
    # 1.3 declares authentication/jwt: the client sends the JWT alone; 1.2: basic//<token>
    assert run["basic_sent"] == (1 if run["connect"]["apiVersion"] == "1.3.0" else 3)


def test_openid_connect_client_credentials(run):
    """The client's own OIDC client-credentials login (no browser library needed) and a
    token from the provider set with ``setAuthToken``: the provider's user, auto-created."""
    found = ok(run["oidc"])
    assert "oidc.testidp" in found["providers"] and "basic" in found["providers"]
    assert found["account"]["user_id"] == "oidc-testidp-service"
    # 1.3 declares authentication/jwt: the access token alone; 1.2: oidc/<provider>/<token>
    assert found["sent"] == ([] if run["connect"]["apiVersion"] == "1.3.0"
                             else ["oidc", "testidp"])
    assert found["jobs"] == 0
    assert ok(run["oidc_token"])["account"]["user_id"] == "oidc-testidp-service"


def test_collections_and_processes(run):
    found = ok(run["collections"])
    assert {"TEST", "FLOATS"} <= set(found["ids"])
    assert found["id"] == "TEST"
    assert set(found["dimensions"]) == {"x", "y", "t", "bands"}
    assert found["bands"] == ["B04", "B08", "B11"]
    procs = ok(run["processes"])
    assert {"load_collection", "ndvi", "reduce_dimension", "save_result"} <= set(procs["ids"])
    assert procs["ndvi"]["id"] == "ndvi" and "data" in procs["ndvi"]["parameters"]
    assert {"XYZ", "WMTS"} <= set(ok(run["service_types"]))
    assert "GTIFF" in ok(run["file_types"])["output"]  # the client upper-cases the names
    assert run["validate"] == []


def test_synchronous_ndvi(run, small_catalog):
    sync = ok(run["sync"])
    assert sync["type"].startswith("image/tiff")
    assert_ndvi_min(small_catalog, sync["file"])
    assert run["sync_error"]["status"] in (400, 404)
    assert run["sync_error"]["code"] == "CollectionNotFound"


def test_batch_job(run, small_catalog):
    job = ok(run["job"])
    assert job["created"] == "created"
    assert job["status"] == "finished", job
    assert set(job["statuses"]) <= {"created", "queued", "running", "finished"}
    assert job["listed"] and not job["listed_after_delete"]
    tiffs = [a for a in job["assets"] if a["type"].startswith("image/tiff")]
    assert len(tiffs) == 1 and "data" in tiffs[0]["roles"]
    (path,) = [p for p in job["files"] if p.endswith(".tif")]
    assert_ndvi_min(small_catalog, path)
    assert any("finished" in message for message in job["logs"]), job["logs"]


def test_xyz_service(run):
    service = ok(run["service"])
    assert service["type"] == "XYZ" and "{z}" in service["url"] and service["listed"]
    assert service["tile_status"] == 200, service
    assert service["tile_type"] == "image/png"
    assert service["tile_magic"] == "89504e47"
    assert service["status_after_delete"] == 404


def test_wmts_service(run):
    service = ok(run["wmts"])
    assert service["type"] == "WMTS"
    assert service["capabilities_status"] == 200 and service["layer_in_capabilities"], service
    assert service["tile_status"] == 200, service
    assert service["tile_type"] == "image/png" and service["tile_magic"] == "89504e47"
