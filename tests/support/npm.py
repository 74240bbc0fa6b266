"""npm packages the tests run with node (the openEO JavaScript client, an OpenID provider),
installed on first use into a cache folder outside the repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.requirements import in_ci, require


def npm_modules(spec: str, package: str) -> Path:
    """The ``node_modules`` folder holding ``package`` as npm installs ``spec`` (e.g.
    ``oidc-provider@9``), in its own folder under ``TILESERVER_TEST_NPM_CACHE`` (default
    ``~/.cache/tileserver-tests/npm``); installed on first use. Without node and npm, or
    when the install fails, the test is skipped (a failure under CI)."""
    require("node")
    cache = Path(os.environ.get("TILESERVER_TEST_NPM_CACHE")
                 or Path.home() / ".cache" / "tileserver-tests" / "npm")
    folder = cache / spec.lstrip("@").replace("/", "-").replace("@", "-")
    modules = folder / "node_modules"
    if (modules / package / "package.json").is_file():
        return modules
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text('{"private": true}\n')
    proc = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", spec],
        cwd=folder, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0 or not (modules / package).is_dir():
        reason = f"npm install {spec} failed: {proc.stderr.strip()[-500:]}"
        if in_ci():
            pytest.fail(f"{reason} (.ci/run installs it with network access)")
        pytest.skip(reason)
    return modules
