"""``deploy/``: the systemd units pass ``systemd-analyze verify``, the compose file is valid
against the compose specification's schema (as vendored by check-jsonschema), and the units,
the compose services and the Procfile run the same commands with the same environment file
(which the namespace cluster test runs)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.deploy import (
    DEPLOY,
    ENV_FILE,
    UNITS,
    expand,
    procfile,
    read_env,
    unit_exec_start,
)
from tests.support.requirements import requires


def test_environment_file_is_plain_key_value_with_the_shared_settings():
    env = read_env()
    for key in ("TILESERVER_DATABASE_URL", "TILESERVER_CACHE_URL", "TILESERVER_STORAGE_URL",
                "TILESERVER_DASK_SCHEDULER", "TILESERVER_CATALOG", "TILESERVER_HOME",
                "TILESERVER_USERS_FILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env.get(key), key
    # no quotes or shell: systemd, compose and the Procfile runners read them alike
    for key, value in env.items():
        assert not value.startswith(("'", '"')) and "$" not in value, key
    # every setting is one the server knows (the rest are Dask's and AWS's)
    defaults = yaml.safe_load((DEPLOY.parent / "config" / "default.yaml").read_text())
    for key in env:
        if key.startswith("TILESERVER_"):
            assert key.removeprefix("TILESERVER_").lower() in defaults, key


def test_units_run_the_procfile_commands():
    roles = procfile()
    assert set(roles) == set(UNITS)
    for role, unit in UNITS.items():
        text = unit.read_text()
        assert unit_exec_start(role) == roles[role], role
        assert "EnvironmentFile=/etc/tileserver/tileserver.env" in text
        # every ${VAR} of the command is in the environment file
        expand(roles[role], read_env())


def test_compose_services_run_the_procfile_commands():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    roles = procfile()
    for role in UNITS:
        service = compose["services"][role]
        command = service["command"]
        if command[:2] == ["sh", "-c"]:  # ${VAR} expanded by the container's shell
            command = shlex.split(command[2].removeprefix("exec ").replace("$$", "$"))
        words = shlex.split(roles[role].replace("${", "$").replace("}", ""))
        assert command == words, role
        assert service["env_file"] == ENV_FILE.name


def test_compose_file_is_valid_against_the_compose_specification():
    out = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                          "vendor.compose-spec", str(DEPLOY / "compose.yaml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@requires("systemd-analyze")
def test_units_pass_systemd_analyze_verify(tmp_path):
    """In a scratch root with the system's units (for the targets they name) and stand-ins
    for the programs; any message about our units is a failure (verify warns and goes on)."""
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    for unit in UNITS.values():
        shutil.copy(unit, units / unit.name)
        program = Path(unit.read_text().split("ExecStart=", 1)[1].split()[0])
        stand_in = root / program.relative_to("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("#!/bin/sh\n")
        stand_in.chmod(0o755)
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}",
                          *sorted(str(p) for p in units.iterdir())],
                         capture_output=True, text=True)
    messages = [line for line in (out.stdout + out.stderr).splitlines()
                if "tileserver-" in line]
    assert out.returncode == 0 and not messages, out.stdout + out.stderr
