"""The ``tileserver`` command in a subprocess: ``serve`` runs gunicorn, answers and stops
cleanly on SIGINT, and on the demo catalog registers a demo job and says where to go;
``demo-data`` writes (or finds) the demo catalog; ``jobs``, ``services`` and ``doctor`` on a
real SQLite registry."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[3]


def command() -> list[str]:
    """The console script if installed next to this Python, else the module."""
    script = Path(sys.executable).parent / "tileserver"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tileserver.cli"]


def env_for(home: Path, catalog: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILESERVER_")}
    env["TILESERVER_HOME"] = str(home)
    if catalog is not None:
        env["TILESERVER_CATALOG"] = str(catalog)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_console_script_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["tileserver"] == "tileserver.cli:main"


def test_help_lists_the_commands(capsys):
    from tileserver.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "serve" in out and "demo-data" in out


@pytest.mark.slow
def test_serve_runs_gunicorn_and_stops_on_sigint(tmp_path, small_catalog):
    port = free_port()
    proc = subprocess.Popen(
        [*command(), "serve", "--port", str(port)], env=env_for(tmp_path / "home", small_catalog),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        body, server = None, None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                resp = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
            except (requests.ConnectionError, requests.Timeout):  # the worker still booting
                time.sleep(0.3)
                continue
            body, server = resp.json(), resp.headers.get("Server", "")
            break
        assert proc.poll() is None, proc.communicate(timeout=10)
        assert body is not None and body["api_version"] == "0.0.2"
        assert server.startswith("gunicorn")  # the production server, not Werkzeug's
        data = requests.get(f"http://127.0.0.1:{port}/data", timeout=10).json()
        assert {p["product_id"] for p in data} == {"TEST", "FLOATS"}
        bad = requests.post(f"http://127.0.0.1:{port}/execute", data="nope", timeout=10)
        assert bad.status_code == 400 and bad.json()["code"] == "BadRequest"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "Booting worker" in err and "Shutting down" in err
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)


def test_serve_with_a_bad_setting_is_a_clear_error(monkeypatch, capsys, tmp_path):
    from tileserver.cli import main

    monkeypatch.setenv("TILESERVER_HOME", str(tmp_path))
    monkeypatch.setenv("TILESERVER_CACHE_BYTES", "a lot")
    assert main(["serve", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "cache_bytes" in err and "'a lot'" in err and "Traceback" not in err


def test_demo_data_command(demo_catalog, tmp_path):
    """``demo-data DIR`` on the session's demo directory (written by the same function) finds
    it complete and prints its catalog; the catalog has both products."""
    res = subprocess.run([*command(), "demo-data", str(demo_catalog.parent)],
                         env=env_for(tmp_path), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    printed = Path(res.stdout.strip().splitlines()[-1])
    assert printed == demo_catalog
    from tileserver.data.catalog import Catalog

    products = Catalog.load([str(printed)]).products
    assert set(products) >= {"S2_L2A_T32TPS_20M", "Sentinel2-L1C"}
    assert len(products["S2_L2A_T32TPS_20M"].items) >= 6


# -- the first start and the everyday commands -----------------------------------------------

def run_cli(home: Path, *args: str, env: dict[str, str] | None = None,
            timeout: int = 120) -> subprocess.CompletedProcess:
    """The console script in a subprocess on ``home`` (a real SQLite registry)."""
    return subprocess.run([*command(), *args], env=env or env_for(home), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def registry(tmp_path):
    """A home with a SQLite registry holding two users' jobs and a service."""
    from tests.support.hardening import ndvi_graph
    from tileserver.jobs.store import JobStore
    from tileserver.settings import load_settings

    home = tmp_path / "home"
    store = JobStore(load_settings(home=str(home)).db_url)
    first = store.create_job("alice", ndvi_graph(), title="alice's NDVI")
    time.sleep(1.1)  # a later submission time
    second = store.create_job("bob", ndvi_graph())
    service = store.create_service("alice", first["job_id"], "wmts")
    store.log(first["job_id"], "hello from the test")
    store.dispose()
    yield home, first["job_id"], second["job_id"], service["service_id"]


def test_help_lists_every_command(capsys):
    from tileserver.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("serve", "demo-data", "jobs", "services", "doctor", "users"):
        assert name in out


def test_jobs_list_show_and_delete(registry):
    from tests.support.hardening import ndvi_graph
    from tileserver.jobs.store import JobStore
    from tileserver.runtime import Runtime
    from tileserver.settings import load_settings

    home, first, second, service = registry
    listing = run_cli(home, "jobs", "list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["JOB", "USER", "STATUS", "SUBMITTED", "TITLE"]
    assert lines[1].startswith(second) and lines[2].startswith(first)  # newest first
    assert "alice's NDVI" in lines[2] and "submitted" in lines[2]
    only = json.loads(run_cli(home, "jobs", "list", "--user", "alice", "--json").stdout)
    assert [(j["job_id"], j["user_id"], j["status"]) for j in only] == [
        (first, "alice", "submitted")]

    shown = run_cli(home, "jobs", "show", first)
    assert shown.returncode == 0, shown.stderr
    job = json.loads(shown.stdout)
    assert job["job_id"] == first and job["process_graph"] == ndvi_graph()
    assert [entry["message"] for entry in job["logs"]] == ["hello from the test"]
    missing = run_cli(home, "jobs", "show", "nope")
    assert missing.returncode == 1 and "job nope does not exist" in missing.stderr

    settings = load_settings(home=str(home))
    results = Runtime(settings).batch.result_dir(first)
    results.mkdir(parents=True)
    (results / "result.tif").write_bytes(b"II*\x00")
    deleted = run_cli(home, "jobs", "delete", first, "nope")
    assert deleted.returncode == 1 and f"deleted job {first}" in deleted.stdout
    assert "job nope does not exist" in deleted.stderr
    assert not results.exists()
    store = JobStore(settings.db_url)
    try:
        assert [j["job_id"] for j in store.jobs_with_status(("submitted",))] == [second]
        assert store.list_services("alice") == []  # the job's services went with it
    finally:
        store.dispose()
    assert run_cli(home, "services", "list").stdout.startswith("no services")


def test_services_list(registry):
    home, first, _, service = registry
    listing = run_cli(home, "services", "list")
    assert listing.returncode == 0, listing.stderr
    header, row = listing.stdout.splitlines()
    assert header.split() == ["SERVICE", "TYPE", "JOB", "USER"]
    assert row.split() == [service, "wmts", first, "alice"]
    as_json = json.loads(run_cli(home, "services", "list", "--user", "bob", "--json").stdout)
    assert as_json == []


def test_doctor_says_what_is_missing_and_what_it_disables(tmp_path):
    """Everything present (as this machine's CI has it) but a Redis and a PostgreSQL that do
    not answer, and a PATH without bubblewrap."""
    env = env_for(tmp_path / "home")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    env["TILESERVER_CACHE_URL"] = f"redis://127.0.0.1:{dead}/0"
    env["TILESERVER_DATABASE_URL"] = f"postgresql://nobody@127.0.0.1:{dead}/none"
    python_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not (Path(p) / "bwrap").exists()) + os.pathsep + python_dir
    res = run_cli(tmp_path, "doctor", "--json", env=env)
    assert res.returncode == 1, res.stderr
    checks = {c["name"]: c for c in json.loads(res.stdout)}
    assert set(checks) == {"bubblewrap", "database", "redis", "process specs", "leaflet",
                           "qgis", "chromium"}
    assert checks["bubblewrap"]["ok"] is False and "run_udf" in checks["bubblewrap"]["disables"]
    assert checks["redis"]["ok"] is False and str(dead) in checks["redis"]["detail"]
    assert checks["database"]["ok"] is False and "nobody@" not in checks["database"]["detail"]
    assert checks["process specs"]["ok"] is True
    lines = run_cli(tmp_path, "doctor", env=env).stdout
    assert "MISSING  bubblewrap" in lines and "disables: user-defined functions" in lines

    env = env_for(tmp_path / "home")
    env["TILESERVER_UDF_ISOLATION"] = "process"
    checks = {c["name"]: c for c in json.loads(run_cli(tmp_path, "doctor", "--json",
                                                       env=env).stdout)}
    assert checks["bubblewrap"]["ok"] is None and checks["redis"]["ok"] is None
    assert checks["database"]["ok"] is True and "SQLite" in checks["database"]["detail"]


@pytest.mark.slow
def test_first_start_registers_the_demo_job_and_says_where_to_go(tmp_path, demo_catalog):
    """``serve`` on the demo catalog (the session's, linked into ``$TILESERVER_HOME/demo``) with no
    users: it answers, prints the viewer of its demo job, openEO, WMTS, WCS and how to add a
    user; the demo job's map answers; a second start finds the same demo job."""
    home = tmp_path / "home"
    (home / "demo").mkdir(parents=True)
    for entry in demo_catalog.parent.iterdir():  # the Sentinel-1 part is written in home
        if entry.name != "sentinel1":
            (home / "demo" / entry.name).symlink_to(entry)
    ids = []
    for _start in range(2):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([*command(), "serve", "--port", str(port)], env=env_for(home),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if requests.get(base + "/", timeout=5).status_code == 200:
                        break
                except (requests.ConnectionError, requests.Timeout):
                    time.sleep(0.3)
            jobs = json.loads(run_cli(home, "jobs", "list", "--json").stdout)
            assert len(jobs) == 1 and jobs[0]["user_id"] == "me"
            ids.append(jobs[0]["job_id"])
            viewer = requests.get(f"{base}/jobs/{ids[-1]}/viewer", timeout=120)
            assert viewer.status_code == 200
            tile = requests.get(f"{base}/wmts/1.0.0/{ids[-1]}/default/GoogleMapsCompatible/"
                                "12/1446/2174.png", timeout=300)
            assert tile.status_code == 200 and tile.content.startswith(b"\x89PNG")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0 and "Traceback" not in err, err
        assert f"tileserver is ready on {base}" in err
        assert f"{base}/jobs/{ids[-1]}/viewer" in err
        assert f'openeo.connect("{base}")' in err
        assert f"{base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities" in err
        assert f"{base}/wcs?SERVICE=WCS&REQUEST=GetCapabilities" in err
        assert "tileserver users add NAME" in err
    assert ids[0] == ids[1]
