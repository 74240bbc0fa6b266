"""XYZ tiles for web maps: ``/service/xyz/<id>/{z}/{x}/{y}.png``, the GoogleMapsCompatible
WMTS tiles of the service's job (same bytes, same ETag)."""

from __future__ import annotations

from flask import Blueprint, request

from tileserver.errors import InvalidParameterValue
from tileserver.web.common import live_service, runtime
from tileserver.web.ogc.layers import make_layer
from tileserver.web.ogc.wmts import tile_response

bp = Blueprint("xyz", __name__)


@bp.get("/service/xyz/<service_id>/<z>/<x>/<last>")
def tile(service_id: str, z: str, x: str, last: str):
    """One PNG tile; ``TIME``/``time`` selects the date of a layer with a time axis."""
    service, job = live_service(service_id, "xyz")
    y, _, ext = last.rpartition(".")
    if ext.lower() != "png" or not y:
        raise InvalidParameterValue(f"XYZ tiles are {{y}}.png, got {last!r}", locator="y")
    layer = make_layer(runtime().engine, job, service.get("service_args"))
    time = request.args.get("time") or request.args.get("TIME")
    return tile_response(layer, None, "image/png", "GoogleMapsCompatible", z, y, x, time)
