"""XYZ tiles for web maps: ``/service/xyz/<id>/{z}/{x}/{y}.png``, the GoogleMapsCompatible
tiles of the service's served job (the same bytes and ETag as its WMTS tiles)."""

from __future__ import annotations

from flask import Blueprint, request

from tileserver.errors import InvalidParameterValue
from tileserver.web.common import live_service
from tileserver.web.conditional import PUBLIC_CACHE, conditional
from tileserver.web.served import served_job

bp = Blueprint("xyz", __name__)

TMS_ID = "GoogleMapsCompatible"


@bp.get("/service/xyz/<service_id>/<z>/<x>/<last>")
def tile(service_id: str, z: str, x: str, last: str):
    """One PNG tile; ``TIME``/``time`` selects the date of a layer with a time axis."""
    service, job = live_service(service_id, "xyz")
    y, _, ext = last.rpartition(".")
    if ext.lower() != "png" or not y:
        raise InvalidParameterValue(f"XYZ tiles are {{y}}.png, got {last!r}", locator="y")
    served = served_job(job, service.get("service_args"))
    time = request.args.get("time") or request.args.get("TIME")
    address = served.tile_address(TMS_ID, z, y, x, media_type="image/png", time=time)
    key = served.tile_key(address)
    return conditional(key, lambda: served.tile(address, key), PUBLIC_CACHE,
                       stored=served.stored is not None)
