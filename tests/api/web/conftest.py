"""Fixtures of the tests of the web layer's cross-cutting parts (auth, CORS, isolation)."""

from __future__ import annotations

import pytest

from tests.support.hardening import users_file, with_users


@pytest.fixture
def app(make_app, small_catalog, tmp_path_factory):
    """An app over the synthetic catalog with the users of
    :func:`tests.support.hardening.users_file` (alice, bob...)."""
    return with_users(make_app([small_catalog]), users_file(tmp_path_factory))
