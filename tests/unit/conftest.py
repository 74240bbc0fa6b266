"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest

from tests.support.core import make_engine
from tileserver.engine.evaluator import Engine


@pytest.fixture(scope="module")
def engine(small_catalog) -> Engine:
    """An engine over the synthetic catalog (one per test module: its caches start empty)."""
    return make_engine(small_catalog)
