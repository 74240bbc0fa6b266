"""pytest plugin for the openEO compliance suite: its access token from HTTP Basic when no
OpenID provider is at hand.

``openeo_test_suite.lib.compliance_util.get_access_token`` always logs in with OIDC. With
``OPENEO_AUTH_METHOD`` set (a real provider configured on the server, the client's
``authenticate_oidc()`` then takes client credentials from ``OPENEO_AUTH_*``) that stays;
otherwise this replaces it with ``GET /credentials/basic`` for the user in
``TILESERVER_COMPLIANCE_USER`` and ``TILESERVER_COMPLIANCE_PASSWORD``, returning the
``basic//<token>`` the suite puts after ``Bearer``.
"""

from __future__ import annotations

import os

import requests
from openeo.rest.connection import Connection
from openeo_test_suite.lib import compliance_util
from openeo_test_suite.lib.backend_under_test import get_backend_url


def basic_access_token(pytestconfig) -> str:
    """``basic//<token>`` from the back-end's ``/credentials/basic``."""
    base = get_backend_url(pytestconfig, required=True).rstrip("/")
    auth = (os.environ["TILESERVER_COMPLIANCE_USER"],
            os.environ["TILESERVER_COMPLIANCE_PASSWORD"])
    resp = requests.get(f"{base}/credentials/basic", auth=auth, timeout=60)
    resp.raise_for_status()
    return "basic//" + resp.json()["access_token"]


def basic_instead_of_oidc(connection, *args, **kwargs):
    """The suite's process tests call ``authenticate_oidc()``: HTTP Basic instead."""
    return connection.authenticate_basic(os.environ["TILESERVER_COMPLIANCE_USER"],
                                         os.environ["TILESERVER_COMPLIANCE_PASSWORD"])


def pytest_configure(config) -> None:
    """Install the basic-auth token function (and the process tests' connection's
    authentication) before the suite's fixtures run."""
    if os.environ.get("OPENEO_AUTH_METHOD"):
        return  # the suite's own OpenID Connect login, against a real provider
    compliance_util.get_access_token = basic_access_token
    Connection.authenticate_oidc = basic_instead_of_oidc


def _unsendable(value) -> str | None:
    """Why the suite's HTTP runner refuses to send an argument (before any request), or
    None: NaN and infinities have no JSON form; ``$ref`` loads a file it does not ship."""
    import math  # noqa: PLC0415

    if isinstance(value, float) and math.isnan(value):
        return "a NaN argument"
    if isinstance(value, float) and math.isinf(value):
        return "an infinite argument"
    if isinstance(value, dict):
        if "$ref" in value:
            return "an external reference"
        values = list(value.values())
    elif isinstance(value, list):
        values = value
    else:
        return None
    return next((why for why in map(_unsendable, values) if why), None)


def pytest_collection_modifyitems(items) -> None:
    """Name each process case by its process and index in that process's test file
    (``sqrt#3``), with its exact expected value, in the JUnit report (``<properties>``):
    the allow-list of :mod:`tests.support.compliance` is keyed by these."""
    import json  # noqa: PLC0415

    seen: dict[str, int] = {}
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "process_id" not in params or "example" not in params:
            continue
        pid, example = params["process_id"], params["example"]
        index = seen.get(pid, 0)
        seen[pid] = index + 1
        item.user_properties.append(("case", f"{pid}#{index}"))
        item.user_properties.append(
            ("returns", json.dumps(example["returns"]) if "returns" in example else "-"))
        item.user_properties.append(("unsendable", _unsendable(example.get("arguments"))
                                     or ""))
