"""The files of ``deploy/`` read as the tests run them: the environment file (systemd's
``EnvironmentFile=``, compose's ``env_file:``) and the Procfile's command of each role, so that
the namespace cluster (``tests/e2e/cluster``) starts exactly what an operator starts."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ENV_FILE = DEPLOY / "tileserver.env"
PROCFILE = DEPLOY / "Procfile"
UNITS = {role: DEPLOY / "systemd" / f"tileserver-{role}.service"
         for role in ("server", "scheduler", "worker")}

#: The programs of the deploy files, as this checkout runs them (an installed package has
#: them as console scripts; the tests run the source tree with ``PYTHONPATH``).
PROGRAMS = {"tileserver": [sys.executable, "-m", "tileserver.cli"],
            "dask": [sys.executable, "-m", "dask"]}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def read_env(path: Path = ENV_FILE) -> dict[str, str]:
    """``KEY=VALUE`` lines (comments and blank lines skipped), as systemd reads them."""
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{path}:{number}: not KEY=VALUE: {line!r}")
        env[key] = value
    return env


def procfile(path: Path = PROCFILE) -> dict[str, str]:
    """``{role: command}`` of the Procfile."""
    roles: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            role, _, command = line.partition(":")
            roles[role.strip()] = command.strip()
    return roles


def expand(command: str, env: dict[str, str]) -> list[str]:
    """The words of ``command`` with ``${VAR}`` taken from ``env`` (a missing one is an
    error, as it would be a broken unit)."""
    def sub(match: re.Match) -> str:
        if match.group(1) not in env:
            raise KeyError(f"{command!r} needs {match.group(1)}, which the environment lacks")
        return env[match.group(1)]
    return shlex.split(_VAR.sub(sub, command))


def argv(role: str, env: dict[str, str]) -> list[str]:
    """The command line of ``role`` as this checkout runs it (see :data:`PROGRAMS`)."""
    words = expand(procfile()[role], env)
    return PROGRAMS[words[0]] + words[1:]


def unit_exec_start(role: str) -> str:
    """The ``ExecStart=`` of the role's systemd unit, with the program's folder dropped."""
    for line in UNITS[role].read_text().splitlines():
        if line.startswith("ExecStart="):
            program, _, rest = line.removeprefix("ExecStart=").partition(" ")
            return f"{Path(program).name} {rest}".strip()
    raise AssertionError(f"{UNITS[role]} has no ExecStart")
