"""The lint rules of ``[tool.ruff]`` (pyproject.toml) hold for the package, the tests and the
benchmarks: a warning fails the suite instead of piling up until someone runs ``make lint``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).with_name("ruff")
    run = subprocess.run([str(ruff), "check", "--no-cache", "--output-format", "concise",
                          "tileserver", "tests", "bench"],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
