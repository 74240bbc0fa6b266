"""The application factory."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from pathlib import Path

from flask import Flask
from jinja2 import select_autoescape

from tileserver.runtime import Runtime
from tileserver.settings import Settings, load_settings
from tileserver.web import errors

#: Protocol modules; each exposes a Flask blueprint ``bp`` (and optionally ``init_app``).
PROTOCOL_MODULES = ("openeo.v002.routes", "openeo.v1", "auth", "openeo.v002.files",
                    "openeo.v002.jobs", "ogc.wmts", "ogc.xyz", "ogc.wcs", "viewer", "openapi",
                    "hardening", "openeo.v002.udf", "ogc.tms", "ogc.ogcapi", "ogc.wms")


def templates_dir() -> Path:
    """``templates/`` of the source tree, or its installed copy under ``share/``."""
    here = Path(__file__).resolve().parents[2] / "templates"
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "tileserver" / "templates"


def create_app(settings: Settings | None = None) -> Flask:
    """A Flask app serving every protocol; nothing heavy happens until the first request."""
    settings = settings or load_settings()
    app = Flask(__name__, template_folder=str(templates_dir()), static_folder=None)
    app.jinja_env.autoescape = select_autoescape(["xml", "html"], default_for_string=True)
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    app.config["MAX_CONTENT_LENGTH"] = max(settings.max_body_bytes, settings.max_upload_bytes)
    app.json.sort_keys = False
    app.extensions["tileserver"] = Runtime(settings)
    errors.register(app)
    for name in PROTOCOL_MODULES:
        modname = f"tileserver.web.{name}"
        if importlib.util.find_spec(modname) is None:
            continue
        module = importlib.import_module(modname)
        if hasattr(module, "bp"):
            app.register_blueprint(module.bp)
        if hasattr(module, "init_app"):
            module.init_app(app)
    logging.getLogger("tileserver").setLevel(logging.INFO)
    return app
