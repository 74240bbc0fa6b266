"""What a map is: any window (CRS, bounds, width, height) of a served job, on one date, in
one style and format; and what one pixel of it holds on every date. The WMS GetMap and
GetFeatureInfo answers, with no HTTP here: :mod:`tileserver.web.ogc.wms` parses the
request's words into a :class:`MapRequest` and calls :func:`get_map` / :func:`pixel_info`.

A map is evaluated lazily for its own view, through :meth:`ServedJob.evaluate` (the
stored result of a finished job when it can answer, else the graph: the same overview
choice, node caches and shared tier as tiles), and its encoded bytes go through the same
answer cache as tiles and coverages (:func:`tileserver.maps.responses.cached_answer`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from pyproj import Transformer
from rasterio.crs import CRS

from tileserver.cache.shared import digest_key
from tileserver.datacube.bounds import transform_bounds
from tileserver.datacube.cube import Cube, empty
from tileserver.datacube.view import View
from tileserver.maps.responses import cached_answer
from tileserver.maps.served import ServedJob, day_range
from tileserver.render.encoders import Encoded, encode_gtiff, encode_rgba
from tileserver.render.legend import Legend, legend_of
from tileserver.render.styles import Style, render_rgba

#: Map formats: media type -> encoder (``GTiff``: float32 values, no style).
MAP_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/tiff": "GTiff",
               "image/geotiff": "GTiff"}
#: Alternative colour ramps offered for one-band results besides the job's own style.
EXTRA_RAMPS = ("viridis", "gray")


def styles_of(served: ServedJob) -> dict[str, Style]:
    """The named styles of a served job: ``default`` (the job's, as its service args set
    it) and, for one-band results, the same range on :data:`EXTRA_RAMPS`."""
    style = served.style
    out = {"default": style}
    if style.colormap is not None:
        for ramp in EXTRA_RAMPS:
            if ramp != style.colormap:
                out[ramp] = replace(style, colormap=ramp, name=ramp)
    return out


def legend_for(served: ServedJob, style: Style) -> Legend:
    """The legend of one of the job's styles."""
    return legend_of(style, served.graph.meta.kind)


@dataclass(frozen=True)
class MapRequest:
    """A map, resolved: its grid, date (``YYYY-MM-DD``, ``None`` without a time axis),
    style, media type and background (``transparent``: nodata and the area outside the
    result are transparent in PNG; otherwise ``bgcolor``)."""

    view: View
    time: str | None
    style: Style
    media_type: str = "image/png"
    transparent: bool = True
    bgcolor: tuple[int, int, int] = (255, 255, 255)


def _outside(served: ServedJob, view: View) -> bool:
    """Whether the view lies entirely outside the result's extent."""
    bounds, crs = served.extent
    try:
        left, bottom, right, top = transform_bounds(view.crs, crs, *view.bounds,
                                                    densify_pts=21)
    except Exception:  # noqa: BLE001 - not expressible in the result's CRS: nothing there
        return True
    if not all(math.isfinite(v) for v in (left, bottom, right, top)):
        return False  # cannot tell: evaluate (the engine reads only what it finds)
    return right <= bounds[0] or left >= bounds[2] or top <= bounds[1] or bottom >= bounds[3]


def map_key(served: ServedJob, req: MapRequest) -> str:
    """The cache key (and ETag) of a map: everything its bytes depend on."""
    source = served.source(req.view, day_range(req.time))
    token = served.engine.cache_token(served.graph, served.context)
    return digest_key("map", served.graph.root.hash, served.style.to_json(),
                      req.style.to_json(), req.view.key, req.media_type, req.time,
                      req.transparent, req.bgcolor, source, token)


def evaluate(served: ServedJob, view: View, time: str | None) -> Cube:
    """The job on ``view`` for ``time``'s day (an empty image outside its extent)."""
    if _outside(served, view):
        meta = served.graph.meta
        cube = empty(view, tuple(meta.bands), None if meta.reduced else ())
        return cube.with_data(cube.data, kind=meta.kind)
    return served.evaluate(view, time)


def render(served: ServedJob, req: MapRequest) -> Encoded:
    """The encoded map, computed."""
    cube = evaluate(served, req.view, req.time)
    encoder = MAP_FORMATS[req.media_type]
    if encoder == "GTiff":
        return encode_gtiff(cube)
    image = cube.data[-1] if cube.data.shape[0] else np.full(cube.data.shape[1:], np.nan,
                                                             np.float32)
    rgba = render_rgba(image, req.style)
    if encoder == "JPEG" or not req.transparent:
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        background = np.array(req.bgcolor, np.float32)
        rgb = rgba[..., :3] * alpha + background * (1.0 - alpha)
        rgba = np.concatenate([rgb.round().astype(np.uint8),
                               np.full_like(rgba[..., 3:4], 255)], axis=-1)
    return encode_rgba(rgba, encoder)


def get_map(served: ServedJob, req: MapRequest, key: str | None = None
            ) -> tuple[Encoded, str]:
    """The encoded map and where it came from (a cache tier, ``stored`` or ``computed``)."""
    key = key or map_key(served, req)

    def produce() -> tuple[Encoded, str]:
        return render(served, req), "stored" if served.stored is not None else "computed"

    return cached_answer(served.engine, ("map", key), produce)


# -- one pixel -------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def pixel_info(served: ServedJob, crs: CRS, x: float, y: float, time: str | None) -> dict:
    """What the result holds at ``(x, y)`` of ``crs``: the native pixel containing it
    (its centre in the native CRS, column and row), its values on ``time``'s day, and,
    when the result keeps a time axis, its whole series (every date with its values) and
    the dates that have data. ``inside`` is false (and no values) outside the result."""
    native = served.engine.native_view(served.graph)
    nx, ny = Transformer.from_crs(crs, native.crs, always_xy=True).transform(x, y)
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    out: dict = {"layer": served.identifier, "title": served.title,
                 "lon": _finite(float(lon)), "lat": _finite(float(lat)),
                 "crs": native.crs_key, "time": time, "inside": False, "bands": None}
    times = served.time_values
    left, bottom, right, top = native.bounds
    rx, ry = native.res
    if not (math.isfinite(nx) and math.isfinite(ny)
            and left <= nx < right and bottom < ny <= top):
        if times is not None:
            out.update(series=[], data_available_for_dates=[])
        return out
    col, row = math.floor((nx - left) / rx), math.floor((top - ny) / ry)
    x0, y1 = left + col * rx, top - row * ry
    cell = View(native.crs, (x0, y1 - ry, x0 + rx, y1), 1, 1)
    out.update(inside=True, x=x0 + rx / 2, y=y1 - ry / 2, col=col, row=row)
    if times is None:
        cube = served.evaluate(cell, None)
        values = cube.data[-1, :, 0, 0] if cube.data.shape[0] else ()
        out["bands"] = {b: _finite(float(v)) for b, v in zip(cube.bands, values, strict=False)}
        return out
    cube = served.evaluate(cell, None)  # every date: one pixel of the whole time axis
    found = {f"{t:%Y-%m-%d}": {b: _finite(float(cube.data[i, j, 0, 0]))
                               for j, b in enumerate(cube.bands)}
             for i, t in enumerate(cube.times or ())}
    nodata = {b: None for b in cube.bands}
    # every date of the layer: one that no image covers here has no data
    series = [{"time": day, "bands": found.get(day, nodata)} for day in times]
    out["bands"] = found.get(time, nodata) if time else nodata
    out["series"] = series
    out["data_available_for_dates"] = [s["time"] for s in series
                                       if any(v is not None for v in s["bands"].values())]
    return out
