"""Helpers of the openEO 1.x tests: where the openEO reference files are.

``../shared/openeo`` beside the repository (CI lays it there), or ``TILESERVER_OPENEO_SHARED``
(for a checkout elsewhere, e.g. a git worktree).
"""

from __future__ import annotations

from pathlib import Path

from tests.support.requirements import openeo_shared_dir, require

REPO = Path(__file__).resolve().parents[2]


def shared_openeo() -> Path:
    """The folder of the openEO reference files; skips the test (fails it under CI) when
    it is absent."""
    require("openeo-shared")
    return openeo_shared_dir()
