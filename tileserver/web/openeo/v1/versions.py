"""The openEO 1.x versions this server speaks, and the gates of the endpoints that only some
of them have (as openeo-python-driver's ``api_endpoint(version=...)`` does).

Each row of :data:`VERSIONS` is mounted once, as a blueprint of its own under its base
(:func:`tileserver.web.openeo.v1.mount`), from the one route table ``ROUTES``: a route whose
:class:`Gate` does not admit a version is simply not there, so its capabilities' endpoint
list (built from the URL map) is right by construction. A view that answers differently in
one version asks :func:`current`; URLs to sibling routes are built with a relative endpoint
(``url_for(".get_job")``) and so stay in the request's version.

A version is one row here plus its real differences: ``Gate(since=...)`` on routes it adds,
``Gate(until=...)`` on routes it drops, ``current().at_least(...)`` in a view whose answer
changes. openEO 1.3 (:data:`V1_3`) answers as 1.2 does except where a view asks
``current().at_least(V1_3)``: the ``web-editor`` link of ``GET /``, ``version`` in ``GET
/processes``, ``OpenEO-Identifier`` on ``POST /result``, ``stacktrace`` in log entries, the
``queued``/``started``/``unpublished`` job timestamps (metadata and STAC results), a JSON Web
Token from ``GET /credentials/basic`` and the 401 message naming it; and it has one route
more, ``GET /processing_parameters`` (``Gate(since=V1_3)``, the Processing Parameters
extension: this back-end takes no extra parameters, the lists are empty).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, request

#: STAC API conformance of the collections endpoints (the same in every 1.x version).
STAC_CONFORMANCE = "https://api.stacspec.org/v1.0.0/collections"
#: The conformance class of the openEO Processing Parameters extension (served from 1.3 on).
PROCESSING_PARAMETERS = "https://api.openeo.org/extensions/processing-parameters/0.1.0"
#: The conformance class of the openEO Remote Process Definition extension (1.3 on, when the
#: ``remote_processes`` setting is on: :func:`tileserver.web.openeo.v1.capabilities.conformance`).
REMOTE_PROCESS_DEFINITION = "https://api.openeo.org/extensions/remote-process-definition/0.1.0"
#: The conformance class of the openEO Workspaces extension (1.3 on): every route it defines
#: is served (``POST /workspaces`` with the ``create`` intent of the ``store`` provider).
WORKSPACES = "https://api.openeo.org/extensions/workspaces/0.1.0"
#: The first version with the 1.3 additions (compare with ``current().at_least(V1_3)``).
V1_3 = "1.3.0"


def _key(number: str) -> tuple[int, ...]:
    return tuple(int(part) for part in number.split("."))


@dataclass(frozen=True)
class ApiVersion:
    """One openEO 1.x version: its number, blueprint name (endpoints ``<name>.<view>``) and
    URL prefix."""

    number: str
    name: str
    base: str
    production: bool = True

    def at_least(self, number: str) -> bool:
        """Whether this version is ``number`` or newer."""
        return _key(self.number) >= _key(number)

    @property
    def conformance(self) -> list[str]:
        """The conformance classes (``conformsTo``): from 1.3 on with the Processing
        Parameters and Workspaces extensions (``GET /processing_parameters``, ``GET /
        workspace_providers``, ``/workspaces``…) and plain JSON Web Tokens as
        bearer tokens (``authentication/jwt``: no ``basic//`` or ``oidc/<provider>/``
        prefix needed; the JavaScript client then sends the token alone)."""
        classes = [f"https://api.openeo.org/{self.number}", STAC_CONFORMANCE]
        if self.at_least(V1_3):
            classes += [f"https://api.openeo.org/{self.number}/authentication/jwt",
                        PROCESSING_PARAMETERS, WORKSPACES]
        return classes


#: Every openEO 1.x version served, oldest first.
VERSIONS: tuple[ApiVersion, ...] = (
    ApiVersion("1.2.0", "openeo_v1", "/openeo/1.2"),
    ApiVersion(V1_3, "openeo_v1_3", "/openeo/1.3"),
)
#: ``app.extensions`` key of the versions an app serves (``{blueprint name: ApiVersion}``;
#: ``tileserver.web.auth.OPENEO_VERSIONS`` reads it without importing this package).
SERVED = "tileserver.openeo_versions"


@dataclass(frozen=True)
class Gate:
    """The versions that have an endpoint: from ``since`` (inclusive) to ``until``
    (exclusive); no bound means every version on that side."""

    since: str | None = None
    until: str | None = None

    def admits(self, version: ApiVersion) -> bool:
        """Whether ``version`` has the endpoint."""
        return ((self.since is None or version.at_least(self.since))
                and (self.until is None or not version.at_least(self.until)))


#: The gate of an endpoint every 1.x version has.
EVERY = Gate()


def served() -> list[ApiVersion]:
    """The 1.x versions the current app serves, oldest first."""
    versions = current_app.extensions.get(SERVED, {}).values()
    return sorted(versions, key=lambda version: _key(version.number))


def current() -> ApiVersion:
    """The version of the request being answered (from its blueprint)."""
    return current_app.extensions[SERVED][request.blueprint]
