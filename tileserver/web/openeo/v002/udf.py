"""openEO 0.0.2 UDF runtimes: ``GET /udf_runtimes`` and ``GET /udf_runtimes/{lang}/{udf_type}``
(public, like ``/processes``); the UDF processes themselves are in
``tileserver.processes.v002.udf``."""

from __future__ import annotations

import importlib.metadata
import platform

from flask import Blueprint, jsonify

from tileserver.errors import NotFound
from tileserver.processes import TRANSLATIONS
from tileserver.processes.v002.udf import LANGUAGE, UDF_TYPES
from tileserver.web.apidoc import ANY_OBJECT, json_response, operation

bp = Blueprint("udf", __name__)

#: Packages a script can import in the sandbox (when installed).
PACKAGES = ("numpy", "pandas", "xarray", "openeo")


def installed_packages() -> list[str]:
    """The listed packages that are installed (the sandbox uses the server's Python)."""
    out = []
    for name in PACKAGES:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        out.append(name)
    return out


def runtimes_v1() -> dict:
    """``GET /openeo/1.2/udf_runtimes`` (the 1.x shape): Python, its version and libraries;
    ``run_udf`` runs the official client's ``openeo.udf`` signatures in the sandbox."""
    libraries = {name: {"version": importlib.metadata.version(name)}
                 for name in installed_packages()}
    version = platform.python_version()
    return {LANGUAGE: {
        "title": f"Python {version.rsplit('.', 1)[0]}",
        "description": "run_udf inside apply, apply_dimension and reduce_dimension, with the "
        "openeo.udf signatures apply_datacube(cube, context) and apply_timeseries(series, "
        "context), in a sandbox (no network, no files, limited CPU time, memory and output)",
        "type": "language",
        "default": version,
        "versions": {version: {"libraries": libraries}},
    }}


@bp.get("/udf_runtimes")
@operation("The UDF runtimes: languages, UDF types, versions, packages",
           json_response(ANY_OBJECT))
def runtimes():
    """The languages, UDF types, versions and packages (0.0.2 shape)."""
    return jsonify({LANGUAGE: {
        "udf_types": list(UDF_TYPES),
        "versions": {platform.python_version(): {"packages": installed_packages()}},
    }})


@bp.get("/udf_runtimes/<lang>/<udf_type>")
@operation("One UDF runtime", json_response(ANY_OBJECT), "NotFound")
def runtime_detail(lang: str, udf_type: str):
    """One UDF type as a process description (``process_id`` ``/udf/<lang>/<type>``)."""
    process = TRANSLATIONS.get(f"/udf/{lang}/{udf_type}")
    if lang != LANGUAGE or process is None:
        raise NotFound(f"no UDF runtime {lang}/{udf_type}; available: "
                       + ", ".join(f"{LANGUAGE}/{t}" for t in UDF_TYPES))
    out = process.to_json(full=True)
    out.pop("udf_type", None)
    out.pop("language", None)
    return jsonify(out)
