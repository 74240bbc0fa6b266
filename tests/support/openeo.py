"""Helpers of the openEO 1.x tests: where the openEO reference files are.

``../shared/openeo`` beside the repository (CI lays it there), or ``TILESERVER_OPENEO_SHARED``
(for a checkout elsewhere, e.g. a git worktree).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_openeo() -> Path:
    """The folder of the openEO reference files; skips the test when it is absent."""
    env = os.environ.get("TILESERVER_OPENEO_SHARED")
    path = Path(env) if env else REPO.parent / "shared" / "openeo"
    if not (path / "processes" / "tests").is_dir():
        pytest.skip(f"openEO reference files not found at {path} "
                    "(set TILESERVER_OPENEO_SHARED to the shared/openeo folder)")
    return path
