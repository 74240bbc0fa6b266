"""The Leaflet viewer of a job (``/jobs/<id>/viewer``) and its point query
(``/jobs/<id>/point``). Leaflet is served from the npm package installed at install time."""

from __future__ import annotations

import math

from flask import Blueprint, abort, jsonify, render_template, request, send_from_directory
from pyproj import Transformer

from tileserver import params
from tileserver.datacube.view import View
from tileserver.errors import TileserverError
from tileserver.jobs.services import SERVICE_TYPES
from tileserver.maps.served import ServedJob
from tileserver.web.apidoc import ANY_OBJECT, HTML, json_response, operation
from tileserver.web.assets import MISSING, leaflet_available, leaflet_dir
from tileserver.web.common import (
    REVOKED_STATUSES,
    base_url,
    current_user,
    runtime,
    service_url,
)
from tileserver.web.served import served_job

bp = Blueprint("viewer", __name__)


def _layer(job_id: str) -> ServedJob:
    return served_job(runtime().store.get_job(job_id, current_user()))


@bp.get("/static/leaflet/<path:filename>")
def leaflet(filename: str):
    """Leaflet's ``dist/`` files (404 when Leaflet is not installed)."""
    root = leaflet_dir()
    if not root.is_dir():
        abort(404, MISSING)
    return send_from_directory(root, filename, max_age=86400)


@bp.get("/jobs/<job_id>/viewer")
@operation("Leaflet viewer page of the job", HTML, "Unauthorized", "NotFound")
def viewer(job_id: str):
    """An HTML map of the job: the user's jobs, legend, opacity, labelled date slider
    (``?time=`` picks the date shown, default the latest), click-to-query with the pixel's
    time series, the OGC URLs for QGIS, an optional base map; ``?at=lon,lat`` queries a
    point on load."""
    layer = _layer(job_id)
    start = layer.select_time(request.args.get("time"))
    at = None
    if request.args.get("at"):
        lon, lat = _pair(request.args["at"])
        at = [params.number(lon, "at", error=TileserverError, minimum=-180, maximum=180,
                            name="'at' longitude"),
              params.number(lat, "at", error=TileserverError, minimum=-90, maximum=90,
                            name="'at' latitude")]
    west, south, east, north = layer.wgs84
    tiles = f"/wmts/1.0.0/{job_id}/default/{{time}}GoogleMapsCompatible/{{z}}/{{y}}/{{x}}.png"
    settings = runtime().settings
    return render_template(
        "viewer.html",
        job_id=job_id,
        title=layer.title,
        leaflet_missing=None if leaflet_available() else MISSING,
        jobs=_user_jobs(job_id),
        links=_ogc_links(job_id),
        config={
            "tiles": tiles,
            "point": f"/jobs/{job_id}/point",
            "bounds": [[south, west], [north, east]],
            "times": layer.time_values,
            "time": start,
            "style": layer.style.to_json(),
            "legend": layer.legend.to_json(),
            "basemap": settings.viewer_basemap_url,
            "basemap_attribution": settings.viewer_basemap_attribution or "",
            "at": at,
        },
    )


def _pair(text: str) -> list[str]:
    parts = params.items(text, "at", error=TileserverError, max_items=2, name="'at'")
    if len(parts) != 2:
        raise TileserverError("'at' must be lon,lat", locator="at")
    return parts


def _user_jobs(current: str) -> list[dict]:
    """The user's jobs for the layer list (newest first; canceled jobs have no tiles)."""
    out = []
    for job in runtime().store.list_jobs(current_user()):
        if job["status"] in REVOKED_STATUSES:
            continue
        out.append({"id": job["job_id"], "title": job.get("title") or job["job_id"],
                    "status": job["status"], "current": job["job_id"] == current,
                    "url": f"/jobs/{job['job_id']}/viewer"})
    return out


def _ogc_links(job_id: str) -> list[dict]:
    """URLs to paste into QGIS (or GDAL, OWSLib): the job's services and the global ones."""
    root = base_url()
    links = [{"label": "WMTS, all my jobs", "url": f"{root}/wmts/1.0.0/WMTSCapabilities.xml"},
             {"label": "WCS, all my jobs",
              "url": f"{root}/wcs?SERVICE=WCS&REQUEST=GetCapabilities"},
             {"label": "WMS, all my jobs",
              "url": f"{root}/wms?SERVICE=WMS&REQUEST=GetCapabilities"}]
    for service in runtime().store.list_services(current_user()):
        if service["job_id"] != job_id:
            continue
        kind = service["service_type"]
        url = service_url(service) + SERVICE_TYPES[kind].capabilities
        links.insert(0, {"label": f"{kind.upper()} service of this job", "url": url})
    return links


def _float_arg(name: str, lo: float, hi: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        raise TileserverError(f"'{name}' is required", locator=name)
    return params.number(raw, name, error=TileserverError, minimum=lo, maximum=hi,
                         name=f"'{name}'")


@bp.get("/jobs/<job_id>/point")
@operation("The job's values at lon/lat (WGS84) on its native grid, for time",
           json_response(ANY_OBJECT), "BadRequest", "Unauthorized", "NotFound")
def point(job_id: str):
    """The job's values at ``lon``/``lat`` (WGS84) on its native grid, for ``time``."""
    layer = _layer(job_id)
    lon = _float_arg("lon", -180.0, 180.0)
    lat = _float_arg("lat", -90.0, 90.0)
    day = layer.select_time(request.args.get("time"))
    series = params.boolean(request.args.get("series", ""), "series", error=TileserverError,
                            name="'series'")
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
    if series and layer.times is not None:
        out["series"] = _series(layer.evaluate(cell, None))
    return jsonify(out)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _series(cube) -> list[dict]:
    """``[{time, values: {band: value|None}}]`` of a 1x1 cube with its time axis."""
    return [{"time": f"{t:%Y-%m-%d}",
             "values": {b: _finite(float(cube.data[i, j, 0, 0])) for j, b in
                        enumerate(cube.bands)}} for i, t in enumerate(cube.times or ())]
