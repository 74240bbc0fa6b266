"""The ``tileserver`` command in a subprocess: ``serve`` runs gunicorn, answers and stops
cleanly on SIGINT; ``demo-data`` writes (or finds) the demo catalog."""

from __future__ import annotations

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
