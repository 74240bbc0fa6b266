"""The Leaflet viewer of a job (``/jobs/<id>/viewer``) and its point query
(``/jobs/<id>/point``). Leaflet is served from the npm package installed at install time."""

from __future__ import annotations

import math

from flask import Blueprint, abort, jsonify, render_template, request, send_from_directory
from pyproj import Transformer

from tileserver.core import params
from tileserver.core.view import View
from tileserver.errors import TileserverError
from tileserver.web.assets import MISSING, leaflet_available, leaflet_dir
from tileserver.web.common import current_user, runtime
from tileserver.web.layers import Layer, make_layer

bp = Blueprint("viewer", __name__)


def _layer(job_id: str) -> Layer:
    job = runtime().store.get_job(job_id, current_user())
    return make_layer(runtime().engine, job)


@bp.get("/static/leaflet/<path:filename>")
def leaflet(filename: str):
    """Leaflet's ``dist/`` files (404 when Leaflet is not installed)."""
    root = leaflet_dir()
    if not root.is_dir():
        abort(404, MISSING)
    return send_from_directory(root, filename, max_age=86400)


@bp.get("/jobs/<job_id>/viewer")
def viewer(job_id: str):
    """An HTML map of the job: opacity control, time slider (``?time=`` picks the first
    date shown, default the latest), value on click."""
    layer = _layer(job_id)
    start = layer.select_time(request.args.get("time"))
    west, south, east, north = layer.wgs84
    tiles = f"/wmts/1.0.0/{job_id}/default/{{time}}GoogleMapsCompatible/{{z}}/{{y}}/{{x}}.png"
    return render_template(
        "viewer.html",
        job_id=job_id,
        title=layer.title,
        leaflet_missing=None if leaflet_available() else MISSING,
        config={
            "tiles": tiles,
            "point": f"/jobs/{job_id}/point",
            "bounds": [[south, west], [north, east]],
            "times": layer.time_values,
            "time": start,
            "style": layer.style.to_json(),
        },
    )


def _float_arg(name: str, lo: float, hi: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        raise TileserverError(f"'{name}' is required", locator=name)
    return params.number(raw, name, error=TileserverError, minimum=lo, maximum=hi,
                         name=f"'{name}'")


@bp.get("/jobs/<job_id>/point")
def point(job_id: str):
    """The job's values at ``lon``/``lat`` (WGS84) on its native grid, for ``time``."""
    layer = _layer(job_id)
    lon = _float_arg("lon", -180.0, 180.0)
    lat = _float_arg("lat", -90.0, 90.0)
    day = layer.select_time(request.args.get("time"))
    native = layer.engine.native_view(layer.graph)
    x, y = Transformer.from_crs("EPSG:4326", native.crs, always_xy=True).transform(lon, lat)
    left, bottom, right, top = native.bounds
    rx, ry = native.res
    out = {"job_id": job_id, "lon": lon, "lat": lat, "time": day,
           "crs": native.crs_key, "inside": False, "values": None}
    if not (left <= x < right and bottom < y <= top):
        return jsonify(out)
    col, row = math.floor((x - left) / rx), math.floor((top - y) / ry)
    x0, y1 = left + col * rx, top - row * ry
    cell = View(native.crs, (x0, y1 - ry, x0 + rx, y1), 1, 1)
    cube = layer.evaluate(cell, day)
    image = cube.image() if cube.data.shape[0] else None
    values = {b: (None if image is None or not math.isfinite(v := float(image[i, 0, 0]))
                  else v) for i, b in enumerate(cube.bands)}
    out.update(inside=True, x=x0 + rx / 2, y=y1 - ry / 2, values=values)
    return jsonify(out)
