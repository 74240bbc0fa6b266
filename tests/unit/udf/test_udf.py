"""User-defined functions: the sandbox holds against hostile scripts (real worker processes,
real namespaces and rlimits), the openEO 0.0.2 use case 2 end to end, the UDF contracts.

Values are compared with numpy on the source COGs read by rasterio. Hostile scripts each get
a clear 4xx (504 for the time limit) naming the UDF, while other users keep being served.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import psutil
import pytest
import rasterio
from PIL import Image
from rasterio.warp import Resampling, reproject

from tests.support.hardening import basic, users_file, with_users
from tests.support.requirements import requires
from tests.support.udf import SMALL, source
from tileserver.demo import S1_PRODUCT_ID, s1_grid, write_s1_product
from tileserver.settings import load_settings
from tileserver.web.app import create_app

pytestmark = requires("bubblewrap")

TIMEOUT = 3
ALICE, BOB = basic("alice"), basic("bob")


@pytest.fixture(scope="module")
def s1_catalog(tmp_path_factory) -> Path:
    return write_s1_product(tmp_path_factory.mktemp("s1"))


@pytest.fixture(scope="module")
def app(tmp_path_factory, s1_catalog, demo_catalog):
    os.environ["TILESERVER_UDF_TEST_SECRET"] = "server-secret"
    home = tmp_path_factory.mktemp("udfhome")
    settings = load_settings(home=str(home), catalog=f"{demo_catalog},{s1_catalog}",
                             udf_timeout=TIMEOUT, udf_workers=2, udf_memory="512MiB")
    application = create_app(settings)
    application.config["TESTING"] = True
    with_users(application, users_file(tmp_path_factory))
    yield application
    application.extensions["tileserver"].close()
    os.environ.pop("TILESERVER_UDF_TEST_SECRET", None)


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def put(client, user, path, code, auth):
    resp = client.put(f"/users/{user}/files/{path}", data=code.encode(), headers=auth)
    assert resp.status_code in (200, 201), resp.json


def s1_graph(udf_type, script, bbox=SMALL, dates=("2017-01-01", "2017-01-31")):
    leaf = {"process_id": "filter_bbox", "args": {"imagery": {"product_id": S1_PRODUCT_ID},
                                                  **bbox}}
    return {"process_id": f"/udf/Python/{udf_type}", "args": {
        "script": script,
        "imagery": {"process_id": "filter_daterange",
                    "args": {"imagery": leaf, "from": dates[0], "to": dates[1]}}}}


def execute(client, graph, auth):
    return client.post("/execute", json={"process_graph": graph, "output": {"format": "GTiff"}},
                       headers=auth)


def tiff(resp) -> np.ndarray:
    assert resp.status_code == 200, resp.get_json(silent=True)
    with rasterio.MemoryFile(resp.data) as mem, mem.open() as src:
        return src.read()


def nanmean(a, axis=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def error(resp, status, *parts):
    body = resp.get_json()
    assert resp.status_code == status, body
    for part in parts:
        assert part in body["message"], body
    return body["message"]


# -- the contracts, with values --------------------------------------------------------------


def test_udf_runtimes_in_the_documented_shape(client):
    body = client.get("/udf_runtimes").json
    assert set(body) == {"Python"}
    assert set(body["Python"]["udf_types"]) == {"apply_pixel", "reduce_time", "aggregate_time"}
    (version, info), = body["Python"]["versions"].items()
    assert version.count(".") == 2 and {"numpy", "pandas", "xarray"} <= set(info["packages"])
    detail = client.get("/udf_runtimes/Python/aggregate_time").json
    assert detail["process_id"] == "/udf/Python/aggregate_time"
    assert set(detail["args"]) == {"imagery", "script", "version"}
    assert "DataFrame" in detail["args"]["script"]["description"] + detail["description"]
    assert detail["args"]["version"]["default"] == "latest"
    assert client.get("/udf_runtimes/R/aggregate_time").status_code == 404
    assert client.get("/udf_runtimes/Python/window_time").status_code == 404


def test_reduce_time_and_apply_pixel_equal_numpy(client, s1_catalog):
    put(client, "alice", "median.py", "def reduce_time(data):\n"
        "    return data.median('t')\n", ALICE)
    got = tiff(execute(client, s1_graph("reduce_time", "/users/alice/files/median.py"), ALICE))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(source(s1_catalog), axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)

    put(client, "alice", "db.py", "import numpy as np\n\ndef apply_pixel(data):\n"
        "    return 10 * np.log10(data)\n", ALICE)
    got = tiff(execute(client, s1_graph("apply_pixel", "/users/me/files/db.py",
                                        dates=("2017-01-13", "2017-01-13")), ALICE))
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = 10 * np.log10(source(s1_catalog, dates=[2])[0])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_editing_the_script_invalidates_cached_results(client):
    graph = s1_graph("reduce_time", "/users/alice/files/edit.py")
    put(client, "alice", "edit.py", "def reduce_time(data):\n    return data.max('t')\n", ALICE)
    first = tiff(execute(client, graph, ALICE))
    put(client, "alice", "edit.py", "def reduce_time(data):\n    return data.max('t') * 2\n",
        ALICE)
    second = tiff(execute(client, graph, ALICE))
    np.testing.assert_allclose(second, first * 2, rtol=1e-6, equal_nan=True)


def test_same_path_of_two_users_never_shares_results(client):
    graph = s1_graph("reduce_time", "/users/me/files/mine.py")
    put(client, "alice", "mine.py", "def reduce_time(data):\n    return data.min('t')\n", ALICE)
    put(client, "bob", "mine.py", "def reduce_time(data):\n    return data.min('t') + 1\n", BOB)
    a, b = tiff(execute(client, graph, ALICE)), tiff(execute(client, graph, BOB))
    np.testing.assert_allclose(b, a + 1, rtol=1e-6, equal_nan=True)


def test_use_case_2_the_documentations_six_requests(client, s1_catalog):
    # 1. the product
    data = client.get(f"/data/{S1_PRODUCT_ID}", headers=ALICE).json
    assert [b["band_id"] for b in data["bands"]] == ["VV", "VH"]
    # 2. runtimes
    assert "aggregate_time" in client.get("/udf_runtimes").json["Python"]["udf_types"]
    assert client.get("/udf_runtimes/Python/aggregate_time").status_code == 200
    # 3. upload the script
    put(client, "alice", "s1_aggregate.py",
        "def aggregate_time(series):\n    return series.resample('MS').mean()\n", ALICE)
    # 4. the job (the documentation's graph; /users/me/ is the caller's folder)
    graph = {"process_id": "/udf/Python/aggregate_time", "args": {
        "script": "/users/me/files/s1_aggregate.py",
        "imagery": {"process_id": "filter_daterange", "args": {
            "imagery": {"process_id": "filter_bbox", "args": {
                "imagery": {"product_id": S1_PRODUCT_ID}, "left": 16.1, "right": 16.6,
                "top": 48.6, "bottom": 47.2, "srs": "EPSG:4326"}},
            "from": "2017-01-01", "to": "2017-01-31"}}}}
    resp = client.post("/jobs", json={"process_graph": graph}, headers=ALICE)
    assert resp.status_code in (200, 201), resp.json
    job_id = resp.json["job_id"]
    # 5. a TMS service
    resp = client.post("/services", json={"job_id": job_id, "type": "tms",
                                          "args": {"range": [0, 0.4], "colormap": "gray"}},
                       headers=ALICE)
    assert resp.status_code in (200, 201), resp.json
    assert resp.json["service_type"] == "tms"
    url = resp.json["service_url"].split("localhost", 1)[1]
    # 6. a tile: the date in the path, TMS rows counted from the south, band 1 (VV)
    resp = client.get(f"{url}/2017-01-01/12/2232/2668/?bands=1")
    assert resp.status_code == 200 and resp.mimetype == "image/png", resp.get_json(silent=True)
    rgba = np.asarray(Image.open(io.BytesIO(resp.data)).convert("RGBA"))

    # the same tile by numpy: the monthly mean of VV on the whole source grid, warped to the
    # tile (nearest, as the server reads), scaled by the range
    transform, width, height = s1_grid()
    items = sorted((s1_catalog.parent / S1_PRODUCT_ID).iterdir())
    stack = []
    for item in items:
        with rasterio.open(item / "VV.tif") as src:
            stack.append(src.read(1))
    mean = nanmean(np.array(stack))
    n = 2 ** 12
    y_xyz = n - 1 - 2668
    half = 20037508.342789244
    size = 2 * half / n
    left, top = -half + 2232 * size, half - y_xyz * size
    tile = np.full((256, 256), np.nan, np.float32)
    reproject(mean, tile, src_transform=transform, src_crs="EPSG:4326",
              dst_transform=rasterio.transform.from_origin(left, top, size / 256, size / 256),
              dst_crs="EPSG:3857", resampling=Resampling.nearest, src_nodata=np.nan,
              dst_nodata=np.nan)
    valid = np.isfinite(tile)
    assert valid.mean() > 0.9  # the tile is inside the data
    np.testing.assert_array_equal(rgba[..., 3] > 0, valid)
    expected = np.clip(np.nan_to_num(tile / 0.4 * 255.0), 0, 255).astype(np.uint8)
    diff = np.abs(rgba[..., 0].astype(int) - expected.astype(int))[valid]
    assert diff.max() <= 1, diff.max()
    # the only date of the monthly result is 2017-01-01: another date is a 404
    assert client.get(f"{url}/2017-01-07/12/2232/2668/?bands=1").status_code == 404
    assert client.get(f"{url}/2017-13-01/12/2232/2668/").status_code == 400
    assert client.get(f"{url}/2017-01-01/12/2232/2668/?bands=3").status_code == 400


@pytest.mark.filterwarnings("ignore:Truth-testing of elements:FutureWarning")  # OWSLib's
def test_aggregate_time_layers_list_the_dates_the_script_returns(client, s1_catalog):
    # the WMTS Time dimension and the TMS dates are the script's (semi-monthly: the 1st and
    # the 15th), not the input dates (1, 7, 13, 19, 25, 31 January); editing the script
    # changes them
    from owslib.wmts import WebMapTileService

    put(client, "alice", "semi.py",
        "def aggregate_time(series):\n    return series.resample('SMS').mean()\n", ALICE)
    graph = s1_graph("aggregate_time", "/users/alice/files/semi.py")
    job = client.post("/jobs", json={"process_graph": graph}, headers=ALICE).json["job_id"]
    wmts = client.post("/services", json={"job_id": job, "type": "wmts"}, headers=ALICE).json
    tms = client.post("/services", json={"job_id": job, "type": "tms"}, headers=ALICE).json
    base = wmts["service_url"].replace("http://localhost", "")
    tms_url = tms["service_url"].replace("http://localhost", "")

    def dimension():
        caps = client.get(f"{base}/1.0.0/WMTSCapabilities.xml")
        assert caps.status_code == 200
        return WebMapTileService(url="x", xml=caps.data).contents[job].dimensions["Time"]

    assert dimension()["values"] == ["2017-01-01", "2017-01-15"]
    assert dimension()["default"] == "2017-01-15"
    z, x, y = 14, 8930, 5693  # a tile over SMALL

    def tile(day):
        resp = client.get(f"{base}?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={job}"
                          "&STYLE=default&FORMAT=image/tiff&TILEMATRIXSET=GoogleMapsCompatible"
                          f"&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&TIME={day}")
        return tiff(resp)

    # each date's tile is the mean of its half month, warped to the tile by numpy
    transform, _, _ = s1_grid()
    items = sorted((s1_catalog.parent / S1_PRODUCT_ID).iterdir())
    size = 2 * 20037508.342789244 / 2 ** z
    dst = rasterio.transform.from_origin(-20037508.342789244 + x * size,
                                         20037508.342789244 - y * size, size / 256, size / 256)
    for day, dates in (("2017-01-01", (0, 1, 2)), ("2017-01-15", (3, 4, 5))):
        got = tile(day)
        for b, band in enumerate(("VV", "VH")):
            stack = []
            for i in dates:
                with rasterio.open(items[i] / f"{band}.tif") as src:
                    stack.append(src.read(1))
            expected = np.full((256, 256), np.nan, np.float32)
            reproject(nanmean(np.array(stack)), expected, src_transform=transform,
                      src_crs="EPSG:4326", dst_transform=dst, dst_crs="EPSG:3857",
                      resampling=Resampling.nearest, src_nodata=np.nan, dst_nodata=np.nan)
            valid = np.isfinite(got[b])
            assert valid.mean() > 0.2  # the bbox covers part of the tile
            np.testing.assert_allclose(got[b][valid], expected[valid], rtol=1e-6)
    resp = client.get(f"{tms_url}/2017-01-15/{z}/{x}/{2 ** z - 1 - y}/?bands=1")
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    missing = client.get(f"{tms_url}/2017-01-07/{z}/{x}/{2 ** z - 1 - y}/")
    error(missing, 404, "dates: 2017-01-01, 2017-01-15")
    # a new version of the script: its dates
    put(client, "alice", "semi.py",
        "def aggregate_time(series):\n    return series.resample('MS').mean()\n", ALICE)
    assert dimension()["values"] == ["2017-01-01"]


# -- hostile scripts ---------------------------------------------------------------------------


def run(client, user, auth, name, code, udf_type="reduce_time"):
    put(client, user, name, code, auth)
    return execute(client, s1_graph(udf_type, f"/users/{user}/files/{name}"), auth)


def test_no_server_files_are_visible(client, app):
    settings = app.extensions["tileserver"].settings
    put(client, "bob", "secret.txt", "bob's secret", BOB)
    db = settings.db_url.removeprefix("sqlite:///")
    client.get("/jobs", headers=ALICE)  # the database exists
    assert Path(db).exists()
    targets = {
        "/etc/passwd": "/etc/passwd",
        "the job database": db,
        "the users file": str(settings.home / "users.yaml"),
        "bob's file": str(settings.home / "files" / "bob" / "secret.txt"),
        "the server's home": str(settings.home),
    }
    for label, target in targets.items():
        code = ("import os\n\ndef reduce_time(data):\n"
                f"    seen = os.listdir({target!r}) if os.path.isdir({target!r}) else "
                f"open({target!r}).read()\n"
                "    raise RuntimeError(f'READ {seen!r:.60}')\n")
        resp = run(client, "alice", ALICE, "peek.py", code)
        message = error(resp, 400, "UDF /users/alice/files/peek.py", "FileNotFoundError",
                        "line 4:")
        assert "READ" not in message, label


def test_another_users_script_is_not_found(client):
    put(client, "bob", "b.py", "def reduce_time(data):\n    return data.max('t')\n", BOB)
    resp = execute(client, s1_graph("reduce_time", "/users/bob/files/b.py"), ALICE)
    error(resp, 400, "UDF /users/bob/files/b.py", "no file")


def test_no_network(client):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    code = ("import socket\n\ndef reduce_time(data):\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "    return data.max('t')\n")
    error(run(client, "alice", ALICE, "net.py", code), 400, "UDF /users/alice/files/net.py",
          "line 4:", "create_connection")
    with pytest.raises(socket.timeout):
        server.accept()  # nothing reached the host
    server.close()
    code = ("import socket\n\ndef reduce_time(data):\n"
            "    socket.getaddrinfo('pypi.org', 443)\n    return data.max('t')\n")
    error(run(client, "alice", ALICE, "dns.py", code), 400, "gaierror")


def test_no_ptrace_process_memory_namespaces_or_sockets(client, app):
    # the worker (the script's parent) forks every user's script processes: a script must not
    # read or trace it; seccomp adds the refusal of sockets and new namespaces
    assert app.extensions["tileserver"].udf.describe()["seccomp"] is True
    code = ("import ctypes, os, socket\n\ndef reduce_time(data):\n"
            "    out, parent = [], os.getppid()\n"
            "    for name in ('mem', 'environ', 'maps'):\n"
            "        try:\n"
            "            open(f'/proc/{parent}/{name}', 'rb').read(1)\n"
            "            out.append('READ ' + name)\n"
            "        except OSError as exc:\n"
            "            out.append(f'{name}:{exc.errno}')\n"
            "    libc = ctypes.CDLL(None, use_errno=True)\n"
            "    for call, args in (('ptrace', (16, parent, 0, 0)), ('unshare', (0x10000000,)),\n"
            "                       ('unshare', (0x40000000,))):\n"
            "        out.append(f'{call}={getattr(libc, call)(*args)}/{ctypes.get_errno()}')\n"
            "    for family in (socket.AF_INET, socket.AF_INET6, socket.AF_PACKET):\n"
            "        try:\n"
            "            socket.socket(family, socket.SOCK_DGRAM).close()\n"
            "            out.append(f'SOCKET {family}')\n"
            "        except OSError as exc:\n"
            "            out.append(f'socket:{exc.errno}')\n"
            "    raise RuntimeError(' '.join(out))\n")
    message = error(run(client, "alice", ALICE, "trace.py", code), 400, "RuntimeError")
    assert "READ" not in message and "SOCKET" not in message, message
    assert "mem:13 environ:13 maps:13" in message  # EACCES: the worker is not dumpable
    assert "ptrace=-1/1 " in message  # EPERM
    assert "unshare=-1/1 unshare=-1/1" in message
    assert message.count("socket:1") == 3, message


def test_a_script_leaving_a_process_behind_is_cleaned_up(client, app):
    # a script that returns normally but leaves a daemon (its own session): the answer is
    # sent at once, the daemon is killed before the worker takes another request
    code = ("import os, time\n\ndef reduce_time(data):\n    if os.fork() == 0:\n"
            "        os.setsid()\n        time.sleep(600)\n        os._exit(0)\n"
            "    return data.max('t')\n")
    assert run(client, "alice", ALICE, "daemon.py", code).status_code == 200
    look = ("import os\n\ndef reduce_time(data):\n    others = sorted(int(p) for p in "
            "os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid(), "
            "os.getppid()))\n    raise RuntimeError(f'others={others}')\n")
    workers = app.extensions["tileserver"].udf.config.workers
    for _ in range(workers):  # every worker (they take turns)
        error(run(client, "bob", BOB, "look.py", look), 400, "others=[]")


def test_scrubbed_environment_and_unprivileged_user(client):
    code = ("import os\n\ndef reduce_time(data):\n"
            "    raise RuntimeError(f'uid={os.getuid()} env={sorted(os.environ)}')\n")
    message = error(run(client, "alice", ALICE, "env.py", code), 400, "RuntimeError")
    assert "uid=0" not in message and "TILESERVER" not in message
    assert "server-secret" not in message


def test_endless_loop_is_a_504(client):
    resp = run(client, "alice", ALICE, "loop.py", "def reduce_time(data):\n    while True:\n"
               "        pass\n")
    error(resp, 504, "UDF /users/alice/files/loop.py", "time limit")


def test_others_keep_being_served_while_a_script_burns(tmp_path_factory, s1_catalog,
                                                       demo_catalog):
    # a long limit, so that "alice is still burning" does not depend on timing; her
    # worker is killed at the end
    home = tmp_path_factory.mktemp("udfburn")
    settings = load_settings(home=str(home), catalog=f"{demo_catalog},{s1_catalog}",
                             udf_timeout=300, udf_workers=2)
    application = with_users(create_app(settings), users_file(tmp_path_factory))
    c = application.test_client()
    runner = application.extensions["tileserver"].udf
    try:
        put(c, "alice", "loop.py", "def reduce_time(data):\n    while True:\n        pass\n",
            ALICE)
        put(c, "bob", "mean.py", "def reduce_time(data):\n    return data.mean('t')\n", BOB)
        results = {}

        def alice():
            results["alice"] = execute(c, s1_graph("reduce_time", "/users/alice/files/loop.py"),
                                       ALICE)

        thread = threading.Thread(target=alice)
        thread.start()
        for _ in range(600):  # until alice's call holds a worker (bounded)
            if runner.pool._users.get("alice"):
                break
            thread.join(0.1)
        assert runner.pool._users.get("alice") == 1
        bob = execute(c, s1_graph("reduce_time", "/users/bob/files/mean.py"), BOB)
        assert thread.is_alive()  # bob was served while alice's script burns (limit 300 s)
        np.testing.assert_allclose(tiff(bob), nanmean(source(s1_catalog)), rtol=1e-6,
                                   equal_nan=True)
        # a second call of alice waits for her own worker (her share is 1 of 2)
        assert runner.pool._users.get("alice") == 1
    finally:
        runner.close()  # kills alice's worker: her request ends
        thread.join(60)
        application.extensions["tileserver"].close()
    assert results["alice"].status_code in (400, 503, 504)


def test_a_long_script_yields_the_cpu(client):
    # past 50 ms a script and every process it started (even in another session) run at
    # nice 10, which they cannot undo
    code = ("import os, time\n\ndef reduce_time(data):\n    r, w = os.pipe()\n"
            "    if os.fork() == 0:\n        os.setsid()\n        time.sleep(0.8)\n"
            "        os.write(w, str(os.getpriority(os.PRIO_PROCESS, 0)).encode())\n"
            "        os._exit(0)\n    end = time.monotonic() + 0.8\n"
            "    while time.monotonic() < end:\n        pass\n"
            "    other = os.read(r, 10).decode()\n    os.wait()\n    try:\n"
            "        os.setpriority(os.PRIO_PROCESS, 0, 0)\n        undo = 'UNDONE'\n"
            "    except OSError:\n        undo = 'kept'\n"
            "    raise RuntimeError(f'nice={os.getpriority(os.PRIO_PROCESS, 0)} other={other} "
            "{undo}')\n")
    nice = max(10, os.nice(0))  # the sandbox inherits the server's (this process's) nice
    error(run(client, "alice", ALICE, "long.py", code), 400,
          f"nice={nice} other={nice} kept")


def _sandbox_processes() -> int:
    """Processes in the UDF sandboxes this test process started (bubblewrap and below)."""
    count = 0
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() == "bwrap" and child.parent().name() != "bwrap":
                count += len(child.children(recursive=True)) + 1
        except psutil.NoSuchProcess:
            pass
    return count


def test_fork_bomb_is_stopped_and_nothing_of_it_survives(client, app):
    fine = "def reduce_time(data):\n    return data.max('t')\n"
    assert run(client, "alice", ALICE, "fine.py", fine).status_code == 200
    pool = app.extensions["tileserver"].udf.pool
    at_rest = _sandbox_processes()
    assert at_rest >= 1
    code = ("import os\n\ndef reduce_time(data):\n    while True:\n        try:\n"
            "            os.fork()\n        except OSError:\n            pass\n")
    replaced = pool.replaced
    resp = run(client, "alice", ALICE, "bomb.py", code)
    assert resp.status_code in (400, 504), resp.json
    assert "UDF /users/alice/files/bomb.py" in resp.json["message"]
    # the worker's kill of the script's process group stops the bomb whole, or the worker
    # finds processes left, retires and the pool replaces it: either way, once the pool is
    # back at rest no process of the bomb is left in any sandbox
    deadline = time.monotonic() + 30
    while _sandbox_processes() > at_rest and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sandbox_processes() <= at_rest, (at_rest, pool.replaced - replaced)
    assert run(client, "alice", ALICE, "fine.py", fine).status_code == 200


def test_ten_gigabytes_is_a_413(client):
    code = ("import numpy as np\n\ndef reduce_time(data):\n"
            "    big = np.ones(10 * 2**30 // 8)\n    return data.max('t')\n")
    error(run(client, "alice", ALICE, "big.py", code), 413, "UDF /users/alice/files/big.py",
          "memory limit", "line 4:")


def test_huge_output_is_a_413(client):
    code = ("import numpy as np\nimport pandas as pd\n\ndef aggregate_time(series):\n"
            "    index = pd.date_range('1900-01-01', periods=1000, freq='D')\n"
            "    return pd.DataFrame(np.zeros((1000, series.shape[1]), np.float32), "
            "index=index, columns=series.columns)\n")
    put(client, "alice", "huge.py", code, ALICE)
    graph = s1_graph("aggregate_time", "/users/alice/files/huge.py",
                     bbox={**SMALL, "right": 16.6, "bottom": 47.6})
    error(execute(client, graph, ALICE), 413, "UDF /users/alice/files/huge.py", "output limit")


def test_wrong_results(client, s1_catalog):
    cases = {
        "shape.py": ("def reduce_time(data):\n    return data\n", "returned shape"),
        "text.py": ("def reduce_time(data):\n    return 'hello'\n", "not numbers"),
        "inf.py": ("def reduce_time(data):\n    return data.max('t') * 1e39\n", "infinite"),
        "none.py": ("def reduce_time(data):\n    pass\n", "not numbers"),
    }
    for name, (code, why) in cases.items():
        error(run(client, "alice", ALICE, name, code), 400, f"UDF /users/alice/files/{name}",
              why)
    # NaN is nodata: an all-NaN result is a valid (empty) answer, 1e9 a valid value
    got = tiff(run(client, "alice", ALICE, "nan.py",
                   "def reduce_time(data):\n    return data.max('t') * float('nan')\n"))
    assert np.isnan(got).all()
    got = tiff(run(client, "alice", ALICE, "e9.py",
                   "def reduce_time(data):\n    return data.max('t') * 0 + 1e9\n"))
    valid = np.isfinite(nanmean(source(s1_catalog)))
    assert valid.any() and (got[valid] == 1e9).all()


def test_script_errors_quote_the_line(client):
    cases = {
        "missing_module.py": ("import tileserver_no_such_module\n\ndef reduce_time(d):\n"
                              "    return d.max('t')\n",
                              ["ModuleNotFoundError", "line 1: import tileserver_no_such"]),
        "syntax.py": ("def reduce_time(data):\n    return data.max('t'\n",
                      ["SyntaxError", "line 2: return data.max('t'"]),
        "nofunc.py": ("def reduce(data):\n    return data\n", ["no function reduce_time"]),
        "raise.py": ("def reduce_time(data):\n    x = 1\n    return data.max('t') / 0 + x[0]\n",
                     ["TypeError", "line 3:"]),
        "recursion.py": ("def reduce_time(data):\n    return reduce_time(data)\n",
                         ["RecursionError", "line 2:"]),
    }
    for name, (code, parts) in cases.items():
        error(run(client, "alice", ALICE, name, code), 400, f"UDF /users/alice/files/{name}",
              *parts)
    resp = execute(client, s1_graph("reduce_time", "/users/alice/files/absent.py"), ALICE)
    error(resp, 400, "UDF /users/alice/files/absent.py", "no file")
    resp = execute(client, s1_graph("reduce_time", "alice/absent.py"), ALICE)
    assert resp.status_code == 400
    graph = s1_graph("reduce_time", "/users/alice/files/raise.py")
    graph["args"]["version"] = "2.7"
    error(execute(client, graph, ALICE), 400, "Python '2.7' is not available")


def test_only_allowed_users_run_udfs(tmp_path_factory, s1_catalog, demo_catalog):
    home = tmp_path_factory.mktemp("udfallowed")
    settings = load_settings(home=str(home), catalog=f"{demo_catalog},{s1_catalog}",
                             udf_allowed_users="alice", udf_workers=1)
    application = with_users(create_app(settings), users_file(tmp_path_factory))
    c = application.test_client()
    try:
        put(c, "bob", "m.py", "def reduce_time(data):\n    return data.max('t')\n", BOB)
        resp = execute(c, s1_graph("reduce_time", "/users/bob/files/m.py"), BOB)
        error(resp, 403, "udf_allowed_users")
        put(c, "alice", "m.py", "def reduce_time(data):\n    return data.max('t')\n", ALICE)
        assert execute(c, s1_graph("reduce_time", "/users/alice/files/m.py"),
                       ALICE).status_code == 200
    finally:
        application.extensions["tileserver"].close()


def test_the_wire_refuses_pickles_and_broken_frames():
    from tileserver.udf import wire

    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4), np.float64(2.5),
              np.asfortranarray(np.ones((2, 3))), np.zeros((0, 3), ">i4")]
    header, back = wire.read_message(wire.Reader(wire.encode({"a": 1}, arrays)), 1 << 20)
    assert header["a"] == 1
    for sent, got in zip(arrays, back, strict=True):
        assert got.dtype == sent.dtype and got.shape == np.shape(sent)
        np.testing.assert_array_equal(got, sent)
    back[0][0, 0] = 7  # writable, like any array a script gets
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    message = wire.header_frame({}, 1) + wire.length(len(pickled.getvalue())) + \
        pickled.getvalue()
    with pytest.raises(wire.WireError, match="object arrays"):
        wire.read_message(wire.Reader(message), 1 << 20)
    good = wire.array_bytes(np.ones(4, np.float32))
    for data in (good[:-1], good + b"x"):  # truncated, or trailing bytes
        with pytest.raises(wire.WireError, match="bytes of data"):
            wire.parse_array(bytearray(data))
    with pytest.raises(wire.WireError, match="exceeds the limit"):
        wire.read_message(wire.Reader(wire.encode({}, [np.ones(100)])), 100)


def test_waiting_for_a_worker_gives_the_evaluation_slot_back():
    from tileserver.errors import TooManyRequests
    from tileserver.limits import Limiter, slot_released

    limiter = Limiter(1, queue_timeout=0.01, timeout=60)
    served = []

    def other():
        try:
            with limiter.slot("tile"):
                served.append(limiter.inflight)
        except TooManyRequests:
            served.append("refused")

    with limiter.slot("tile"):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert served == ["refused"]  # the only slot is held
        served.clear()

        with slot_released():  # e.g. waiting for a UDF worker
            thread = threading.Thread(target=other)
            thread.start()
            thread.join()
        assert served == [1]  # another request ran in the slot meanwhile
        assert limiter.inflight == 1  # and this one holds it again
    with slot_released():  # outside an evaluation: nothing to give back
        pass


def test_a_batch_job_runs_the_udf_like_execute(tmp_path_factory, s1_catalog, demo_catalog):
    """Batch jobs run UDFs in a sandbox of each Dask worker process: the stored result
    equals /execute's; an aggregate_time job writes the script's dates."""
    settings = load_settings(home=str(tmp_path_factory.mktemp("udfbatch")),
                             catalog=f"{demo_catalog},{s1_catalog}", udf_timeout=30,
                             udf_workers=1, batch_workers=1)
    application = create_app(settings)
    application.config["TESTING"] = True
    with_users(application, users_file(tmp_path_factory))
    client = application.test_client()
    try:
        put(client, "alice", "median.py", "def reduce_time(data):\n"
            "    return data.median('t')\n", ALICE)
        graph = s1_graph("reduce_time", "/users/alice/files/median.py")
        expected = tiff(execute(client, graph, ALICE))
        urls = _batch(client, graph)
        tif = next(u for u in urls if u.split("?")[0].endswith(".tif"))
        got = _download(client, tif)
        np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)
        assert np.isfinite(got).any()
        # aggregate_time: one file per date the script returns (semi-monthly), each the
        # mean of its half month by numpy
        put(client, "alice", "semi.py",
            "def aggregate_time(series):\n    return series.resample('SMS').mean()\n", ALICE)
        urls = _batch(client, s1_graph("aggregate_time", "/users/alice/files/semi.py"))
        tifs = sorted(u for u in urls if u.split("?")[0].endswith(".tif"))
        assert len(tifs) == 2 and "2017-01-01" in tifs[0] and "2017-01-15" in tifs[1], tifs
        for url, dates in zip(tifs, (range(3), range(3, 6)), strict=True):
            np.testing.assert_allclose(_download(client, url),
                                       nanmean(source(s1_catalog, dates=dates)), rtol=1e-6,
                                       equal_nan=True)
    finally:
        application.extensions["tileserver"].close()


def _batch(client, graph) -> list[str]:
    """Run a batch job to its end; the download URLs of its files."""
    import time

    resp = client.post("/jobs", json={"process_graph": graph, "output": {"format": "GTiff"}},
                       headers=ALICE)
    job_id = resp.get_json()["job_id"]
    assert client.patch(f"/jobs/{job_id}/queue", headers=ALICE).status_code == 202
    deadline = time.monotonic() + 300
    while True:
        job = client.get(f"/jobs/{job_id}", headers=ALICE).get_json()
        if job["status"] in ("finished", "error") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    logs = client.get(f"/jobs/{job_id}/logs", headers=ALICE).get_json()
    assert job["status"] == "finished", logs
    return client.get(f"/jobs/{job_id}/download", headers=ALICE).get_json()


def _download(client, url: str) -> np.ndarray:
    resp = client.get("/" + url.split("/", 3)[3], headers=ALICE)
    try:
        return tiff(resp)
    finally:
        resp.close()


#: User B's script: scan every writable mapping of its own process (read with ctypes)
#: for ``first + second`` (never built as one string here: the needle is found only where
#: something else left it) and for eight float32 values of ``pattern`` in a row; a marker it
#: builds itself must be found (the scan works).
SCAN = '''import ctypes

import numpy as np

def reduce_time(data):
    first, second = {first!r}, {second!r}
    pattern = np.float32({pattern!r}).tobytes() * 4
    mine = (second + first).encode()  # a control the scan must find
    hits = {{"secret": 0, "pattern": 0, "control": 0}}
    needles = {{"secret": (first.encode(), second.encode()),
               "pattern": (pattern, pattern),
               "control": (second.encode(), first.encode())}}
    scanned = 0
    for line in open("/proc/self/maps").read().splitlines():
        parts = line.split()
        name = parts[5] if len(parts) > 5 else ""
        if not parts[1].startswith("rw") or name.startswith(("[v", "/dev")):
            continue
        lo, hi = (int(v, 16) for v in parts[0].split("-"))
        pos = lo
        while pos < hi:
            size = min(hi - pos, 1 << 22)
            chunk = ctypes.string_at(pos, size)
            scanned += len(chunk)
            for name, (head, tail) in needles.items():
                i = chunk.find(head)
                while i >= 0:
                    if chunk[i + len(head):i + len(head) + len(tail)] == tail:
                        hits[name] += 1
                    i = chunk.find(head, i + 1)
            pos += size - 64 if size == (1 << 22) else size
    raise RuntimeError(f"scanned={{scanned}} " + " ".join(f"{{k}}={{v}}" for k, v in hits.items())
                       + f" {{len(mine)}}")
'''


def test_a_script_cannot_find_another_users_script_or_data_in_its_memory(
        tmp_path_factory, s1_catalog, demo_catalog):
    # one worker: user A's call and then user B's run on it one after the other; B's script
    # process must not hold (inherited from whatever forked it) A's script text or results
    import uuid

    secret = f"LEAK{uuid.uuid4().hex}{uuid.uuid4().hex}"
    first, second = secret[:30], secret[30:]
    pattern = 4242.125
    home = tmp_path_factory.mktemp("udfleak")
    settings = load_settings(home=str(home), catalog=f"{demo_catalog},{s1_catalog}",
                             udf_workers=1, udf_timeout=20)
    application = with_users(create_app(settings), users_file(tmp_path_factory))
    c = application.test_client()
    try:
        code_a = (f"SECRET = {secret!r}\n\ndef reduce_time(data):\n"
                  f"    note = SECRET * 3\n    return data.max('t') * 0 + {pattern!r}\n")
        for i in range(3):  # a few calls: more chances for their bytes to stay somewhere
            out = tiff(run(c, "alice", ALICE, f"a{i}.py", code_a + f"# {i}\n"))
            assert np.all(out == np.float32(pattern))
        scan = SCAN.format(first=first, second=second, pattern=pattern)
        message = error(run(c, "bob", BOB, "scan.py", scan), 400, "scanned=")
        scanned = int(message.split("scanned=")[1].split()[0])
        assert scanned > 1 << 20, message
        assert "control=0" not in message, message  # the scan finds what is there
        assert "secret=0 pattern=0" in message, message
    finally:
        application.extensions["tileserver"].close()


def test_a_worker_gone_before_a_request_retires_and_the_request_runs_elsewhere():
    # a script may kill its own worker (the process that forks the script processes). The
    # worker's pid namespace dies with it, so the script's own answer arrives whole only if
    # it was written before the namespace was torn down: on a busy machine it is lost and
    # that call is a "worker died" crash answer (the script's own doing; nobody else is
    # affected). Once an answer did arrive, the worker's next request is not sent to it
    # (retired: WorkerRetired) and the pool sends it to another worker instead.
    from tileserver.udf.sandbox import UdfConfig, UdfPool, Worker, WorkerDied, WorkerRetired

    config = UdfConfig.from_settings(None, workers=2, timeout=TIMEOUT, memory=512 << 20)
    header = {"udf_type": "reduce_time", "times": ["2017-01-01T00:00:00",
                                                   "2017-01-02T00:00:00"],
              "bands": ["b"], "shape": [2, 1, 2, 2], "op": "run", "timeout": TIMEOUT,
              "memory": 512 << 20, "max_output": 1 << 20, "nproc": 16}
    data = np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2)
    arrays = [data, np.zeros(2), np.zeros(2)]
    kill = ("import os, signal\n\ndef reduce_time(data):\n"
            "    os.kill(os.getppid(), signal.SIGKILL)\n    return data.max('t')\n")
    fine = "def reduce_time(data):\n    return data.mean('t')\n"
    retired = 0
    for _ in range(5):  # until one killing call's answer arrives before the teardown
        worker = Worker(config)
        try:
            try:
                answer, out = worker.call(dict(header, code=kill), arrays, TIMEOUT + 5)
            except WorkerRetired:
                raise
            except WorkerDied:
                continue  # the answer was lost with the namespace: try again
            assert answer["ok"], answer
            np.testing.assert_array_equal(out[0][0], data.max(axis=0))
            with pytest.raises(WorkerRetired):
                worker.call(dict(header, code=fine), arrays, TIMEOUT + 5)
            retired += 1
            break
        finally:
            worker.kill()
    assert retired == 1, "no killing call's answer arrived in 5 tries"
    pool = UdfPool(config)
    try:
        pool.wait_ready()
        for code in (kill, fine, kill, fine, fine):
            answer, out = pool.call("alice", dict(header, code=code), arrays)
            if code == kill and not answer["ok"]:
                assert answer["kind"] == "crash" and "worker died" in answer["message"], answer
                continue
            assert answer["ok"], answer
            expected = data.max(axis=0) if code == kill else data.mean(axis=0)
            np.testing.assert_array_equal(out[0][0], expected)
        assert pool.replaced >= 2
    finally:
        pool.close()
