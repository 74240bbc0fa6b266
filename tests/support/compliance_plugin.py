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
