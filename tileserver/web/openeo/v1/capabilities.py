"""Discovery (``/.well-known/openeo`` and ``GET /``), formats, service types, auth, ``/me``."""

from __future__ import annotations

from urllib.parse import quote

from flask import Flask, current_app, jsonify

from tileserver import __version__
from tileserver.jobs import estimates
from tileserver.jobs.services import OPENEO_V1_SERVICES
from tileserver.render import formats
from tileserver.web.auth import Authenticator, basic_login, issue_jwt
from tileserver.web.common import current_user, external_url, runtime
from tileserver.web.openeo.v002.udf import runtimes_v1
from tileserver.web.openeo.v1.versions import (
    REMOTE_PROCESS_DEFINITION,
    V1_3,
    current,
    served,
)

SERVICE_CONFIGURATION = {
    "colormap": {"type": "string", "default": "viridis",
                 "description": "matplotlib colour map of single-band results"},
    "range": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
              "description": "[min, max] of the values mapped to the colour map"},
}
SERVICE_DESCRIPTIONS = OPENEO_V1_SERVICES
def well_known():
    """The API versions: each 1.x version at its base (newest first), 0.0.2 at the root."""
    return jsonify({"versions": [
        *({"url": external_url(f"{v.name}.index"), "api_version": v.number,
           "production": v.production} for v in reversed(served())),
        {"url": external_url("openeo.capabilities"), "api_version": "0.0.2",
         "production": True},
    ]})


def endpoints() -> list[dict]:
    """Every route of this API version, relative to its base, with its methods."""
    version = current()
    methods: dict[str, set] = {}
    for rule in current_app.url_map.iter_rules():
        if not rule.endpoint.startswith(f"{version.name}."):
            continue
        path = rule.rule.removeprefix(version.base)
        for conv in ("path:", "int:"):
            path = path.replace(f"<{conv}", "<")
        path = path.replace("<", "{").replace(">", "}")
        methods.setdefault(path, set()).update(set(rule.methods or ()) - {"HEAD", "OPTIONS"})
    return [{"path": p, "methods": sorted(m)} for p, m in sorted(methods.items())]


def _web_editor_link() -> dict:
    """The 1.3 ``web-editor`` link: the openEO Web Editor connected to this version (the
    ``web_editor_url`` setting; ``{url}``: the version's base URL, quoted)."""
    template = runtime().settings.web_editor_url
    href = template.format(url=quote(external_url(".index"), safe=""))
    return {"rel": "web-editor", "href": href, "type": "text/html",
            "title": "openEO Web Editor"}


def index():
    """The capabilities of the request's 1.x version (1.3 adds the ``web-editor`` link;
    ``type`` and ``conformsTo``, required from 1.3 on, are there in every version;
    ``billing`` when costs are configured, :func:`tileserver.jobs.estimates.billing`)."""
    links = [
        {"rel": "self", "href": external_url(".index"), "type": "application/json"},
        {"rel": "version-history", "href": external_url("openeo_wellknown.well_known"),
         "type": "application/json"},
        {"rel": "data", "href": external_url(".collections"),
         "type": "application/json"},
        {"rel": "conformance", "href": external_url(".conformance"),
         "type": "application/json"},
    ]
    if current().at_least(V1_3):
        links.append(_web_editor_link())
    billing = estimates.billing(runtime().settings)
    return jsonify({
        **({"billing": billing} if billing else {}),
        "api_version": current().number,
        "backend_version": __version__,
        "stac_version": "1.0.0",
        "type": "Catalog",
        "id": "tileserver",
        "title": "tileserver",
        "description": "openEO process graphs over STAC imagery, served lazily as WMTS/XYZ/WCS, "
                       "synchronously and as batch jobs.",
        "production": True,
        "conformsTo": conformance_classes(),
        "endpoints": endpoints(),
        "links": links,
    })


def conformance_classes() -> list[str]:
    """The conformance classes of the request's version, with the extensions this server's
    settings turn on (1.3: Remote Process Definition unless ``remote_processes`` is off)."""
    version = current()
    classes = list(version.conformance)
    if version.at_least(V1_3) and runtime().settings.remote_processes:
        classes.append(REMOTE_PROCESS_DEFINITION)
    return classes


def conformance():
    """The conformance classes."""
    return jsonify({"conformsTo": conformance_classes()})


def _parameter_schema(value) -> dict:
    if isinstance(value, list):
        return {"type": "string", "enum": value, "description": "one of the listed values"}
    if value == "boolean":
        return {"type": "boolean", "description": "true or false"}
    return {"type": ["string", "number", "array"], "description": str(value)}


def file_formats():
    """Output formats (from the format table), no input formats."""
    out = {}
    for name, fmt in formats.FORMATS.items():
        out[name] = {
            "title": fmt.description.get("description", name),
            "gis_data_types": fmt.gis_data_types,
            "parameters": {k: _parameter_schema(v)
                           for k, v in (fmt.description.get("parameters") or {}).items()},
            "links": [],
        }
    return jsonify({"input": {}, "output": out})


def service_types():
    """The secondary service types: XYZ, WMTS, WCS."""
    return jsonify({kind: {"title": kind, "description": text,
                           "configuration": SERVICE_CONFIGURATION,
                           "process_parameters": [], "links": []}
                    for kind, text in SERVICE_DESCRIPTIONS.items()})


def udf_runtimes():
    """The UDF runtimes (``run_udf``), described by the UDF module."""
    return jsonify(runtimes_v1())


def processing_parameters():
    """The Processing Parameters extension (1.3): the extra parameters of ``POST /result``,
    ``POST /jobs`` and ``POST /services``; this back-end takes none."""
    return jsonify({"create_job_parameters": [], "create_synchronous_parameters": [],
                    "create_service_parameters": [], "links": []})


def credentials_basic():
    """HTTP Basic in, ``{"access_token"}`` out: sent back as ``Bearer basic//<token>`` (1.2),
    from 1.3 on a JSON Web Token that is also accepted as a plain ``Bearer <token>``."""
    user, token = basic_login()
    if current().at_least(V1_3):
        token = issue_jwt(user)
    return jsonify({"access_token": token})


def has_oidc(app: Flask) -> bool:
    """Whether OpenID Connect providers are configured (else no ``/credentials/oidc``)."""
    return bool(app.extensions["tileserver"].settings.oidc_providers)


def credentials_oidc():
    """The OpenID Connect providers (``authorization_parameters`` since 1.3)."""
    auth: Authenticator = current_app.extensions["tileserver.authenticator"]
    providers = auth.oidc.providers.values()
    with_params = current().at_least("1.3.0")
    return jsonify({"providers": [p.describe(with_params) for p in providers]})


def me():
    """The authenticated user."""
    user = current_user()
    return jsonify({"user_id": user, "name": user, "links": [
        {"rel": "related", "href": external_url(".list_jobs"),
         "title": "batch jobs"}]})


