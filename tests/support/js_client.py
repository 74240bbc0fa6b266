"""The official openEO JavaScript client (``@openeo/js-client``) run by node on
``tests/support/jsclient/scenario.mjs``.

The npm package is installed on first use into a cache folder (``TILESERVER_TEST_NPM_CACHE``,
default ``~/.cache/tileserver-tests/npm``), never into the repository, as
:mod:`tests.support.oidc` does for oidc-provider; without node/npm the tests are skipped
(they fail under CI, naming the install command).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support.npm import npm_modules

#: The client version the scenario is written for.
JS_CLIENT = "@openeo/js-client@2.12.0"
SCRIPT = Path(__file__).with_name("jsclient") / "scenario.mjs"


def client_modules() -> Path:
    """The ``node_modules`` folder holding the JS client (installed on first use)."""
    return npm_modules(JS_CLIENT, "@openeo/js-client")


def run_scenario(config: dict, folder: Path, timeout: float = 600) -> dict:
    """Run the scenario with ``config`` (its files go to ``folder``); what it printed."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps({**config, "out": str(folder)}))
    env = {**os.environ, "JS_CLIENT_MODULES": str(client_modules())}
    proc = subprocess.run(["node", str(SCRIPT), str(path)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"the JS client scenario failed ({proc.returncode}):\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])
