"""Fixtures of the OGC protocol tests: one app per test module, and that app on a real port
(for OWSLib, GDAL and QGIS)."""

from __future__ import annotations

import pytest

from tests.support.wmts import LiveServer
from tileserver.settings import load_settings


@pytest.fixture(scope="module")
def module_app(small_catalog, tmp_path_factory, request):
    """One app over the synthetic catalog for the whole test module (its own home)."""
    from tileserver.web.app import create_app

    home = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]) / "home"
    app = create_app(load_settings(home=str(home), catalog=str(small_catalog)))
    app.config["TESTING"] = True
    yield app
    app.extensions["tileserver"].close()


@pytest.fixture(scope="module")
def server(module_app):
    """The module's app on a real port."""
    live = LiveServer(module_app)
    yield live
    live.close()
