"""Helpers of the auth, isolation, limits, CORS, fuzz and load tests."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

from tileserver.settings import load_settings
from tileserver.web.auth import add_user, users_path

#: A 256 x 256 window (10 m) inside the synthetic ``TEST`` product, in EPSG:32632.
BBOX = {"left": 500_000, "right": 502_560, "bottom": 5_097_440, "top": 5_100_000,
        "srs": "EPSG:32632"}
PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-22"}


def ndvi_graph(bbox: dict | None = None, reduce: str | None = "min_time") -> dict:
    """NDVI of ``TEST`` over ``bbox`` in May 2020, reduced over time by ``reduce``."""
    node = {"process_id": "NDVI", "args": {"imagery": {
        "process_id": "filter_daterange", "args": {"imagery": {
            "process_id": "filter_bbox", "args": {"imagery": {"product_id": "TEST"},
                                                  **(bbox or BBOX)}},
            "from": "2020-05-01", "to": "2020-05-31"}},
        "red": "B04", "nir": "B08"}}
    return {"process_id": reduce, "args": {"imagery": node}} if reduce else node


def basic(user: str, password: str | None = None) -> dict:
    """An ``Authorization: Basic`` header."""
    raw = f"{user}:{password if password is not None else PASSWORDS[user]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def bearer(token: str) -> dict:
    """An ``Authorization: Bearer`` header."""
    return {"Authorization": f"Bearer {token}"}


_USERS_FILES: dict[Path, Path] = {}


def users_file(tmp_path_factory) -> Path:
    """A users file with alice and bob, hashed once per test session (scrypt is slow)."""
    base = tmp_path_factory.getbasetemp()
    if base not in _USERS_FILES:
        settings = load_settings(home=str(tmp_path_factory.mktemp("users")))
        for user, password in PASSWORDS.items():
            add_user(settings, user, password)
        _USERS_FILES[base] = users_path(settings)
    return _USERS_FILES[base]


def with_users(app, source: Path):
    """Configure the users of ``source`` on an app built by ``make_app`` (a copy in the
    app's home, so that a test may change it)."""
    target = users_path(app.extensions["tileserver"].settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return app


def route_args(rule: str) -> list[str]:
    """Names of the variables of a Flask rule."""
    return re.findall(r"<(?:[a-z]+:)?([A-Za-z_]\w*)>", rule)


def fill_rule(rule: str, values: dict) -> str | None:
    """``rule`` with its variables replaced from ``values`` (None if one is missing)."""
    missing = [a for a in route_args(rule) if a not in values]
    if missing:
        return None
    return re.sub(r"<(?:[a-z]+:)?([A-Za-z_]\w*)>", lambda m: str(values[m.group(1)]), rule)
