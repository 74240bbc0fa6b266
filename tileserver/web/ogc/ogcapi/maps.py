"""OGC API - Maps: ``/collections/{id}/map`` with ``bbox`` (in ``bbox-crs``, default CRS84),
``width``/``height``, ``crs`` (default: the CRS of the bbox), ``datetime``, ``transparent``
and ``bgcolor``. The map is evaluated lazily on exactly that grid, like a tile (the same
evaluation, style, overview choice and caches); PNG and JPEG are styled, GeoTIFF holds the
float32 values."""

from __future__ import annotations

import io
import re

from flask import g
from PIL import Image

from tileserver import params
from tileserver.cache.shared import digest_key
from tileserver.datacube.view import View
from tileserver.errors import InvalidParameterValue, LimitExceeded
from tileserver.maps.coverage import CoverageRequest, axes_of, check_budget
from tileserver.maps.responses import cached_answer
from tileserver.maps.served import ServedJob, day_range
from tileserver.render import formats
from tileserver.render.encoders import Encoded
from tileserver.web.common import runtime
from tileserver.web.conditional import PRIVATE_CACHE, conditional
from tileserver.web.ogc.ogcapi.base import (
    CRS84,
    arg,
    bp,
    crs_uri,
    find_collection,
    grid_crs,
    pick_format,
    request_crs,
    select_date,
)
from tileserver.web.ogc.wcs_request import reproject_bounds

#: ``f`` values of maps -> media type.
MAP_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg",
               "tiff": "image/tiff", "tif": "image/tiff", "geotiff": "image/tiff"}
#: The longer side of a map whose request gives neither width nor height (pixels).
DEFAULT_SIZE = 1024
#: Locators of the shared parsers -> OGC API parameters.
_LOCATORS = {"scalesize": "width", "subset": "bbox", "time": "datetime"}


def request_bbox(text: str | None, crs_text: str | None, served: ServedJob,
                 locator: str = "bbox"):
    """``(bounds in x/y order, crs of a view, crs as given)`` of ``bbox``/``bbox-crs``
    (default CRS84); a CRS whose first axis is northing (EPSG:4326, EPSG:3035) takes its
    bbox in that order; no bbox: the collection's extent."""
    given = request_crs(crs_text or CRS84, f"{locator}-crs")
    crs = grid_crs(given)
    if text is None:
        bounds, native = served.extent
        return reproject_bounds(bounds, native, crs, InvalidParameterValue,
                                f"{locator}-crs"), crs, given
    box = params.bbox(text, locator)
    if axes_of(given)[1]:  # northing first
        box = (box[1], box[0], box[3], box[2])
    return box, crs, given


def _size(bounds, crs, served: ServedJob) -> tuple[int, int]:
    width, height = arg("width"), arg("height")
    aspect = (bounds[2] - bounds[0]) / (bounds[3] - bounds[1])
    if width is not None and height is not None:
        return params.size(width, "width"), params.size(height, "height")
    if width is not None:
        w = params.size(width, "width")
        return w, params.computed_size(w / aspect, "width")
    if height is not None:
        h = params.size(height, "height")
        return params.computed_size(h * aspect, "height"), h
    # the native resolution, at most DEFAULT_SIZE pixels along the longer side
    native_bounds, native = served.extent
    full = reproject_bounds(native_bounds, native, crs, InvalidParameterValue, "crs")
    view = served.engine.native_view(served.graph)
    rx = (full[2] - full[0]) / view.width
    nx = params.computed_size((bounds[2] - bounds[0]) / rx, "width")
    ny = params.computed_size(nx / aspect, "height")
    scale = min(1.0, DEFAULT_SIZE / max(nx, ny))
    return max(1, round(nx * scale)), max(1, round(ny * scale))


def _boolean(text: str | None, locator: str, default: bool) -> bool:
    """A boolean query parameter: ``true`` or ``false`` (the OpenAPI form of the standard's
    ``type: boolean``; any case), not 0/1 or yes/no."""
    if text is None:
        return default
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise InvalidParameterValue(f"{locator} must be true or false, got {text[:20]!r}",
                                    locator=locator)
    return value == "true"


def _color(text: str | None) -> tuple[int, int, int]:
    if text is None:
        return 255, 255, 255
    raw = text.strip().removeprefix("0x").removeprefix("0X").removeprefix("#")
    if not re.fullmatch(r"[0-9A-Fa-f]{6}", raw, re.ASCII):
        raise InvalidParameterValue(f"bgcolor {text[:20]!r} must be a hexadecimal RGB "
                                    "colour such as 0xFFFFFF", locator="bgcolor")
    value = int(raw, 16)
    return value >> 16, (value >> 8) & 255, value & 255


def _flatten(encoded: Encoded, color: tuple[int, int, int]) -> Encoded:
    """The styled picture on an opaque background colour."""
    img = Image.open(io.BytesIO(encoded.content)).convert("RGBA")
    out = Image.alpha_composite(Image.new("RGBA", img.size, (*color, 255)), img).convert("RGB")
    buf = io.BytesIO()
    if encoded.media_type == "image/png":
        out.save(buf, format="PNG", compress_level=1)
    else:
        out.save(buf, format="JPEG", quality=85)
    return Encoded(buf.getvalue(), encoded.media_type, encoded.extension)


@bp.get("/ogcapi/collections/<collection_id>/map")
def collection_map(collection_id: str):
    """A map of any bbox, size and CRS, evaluated for that grid only."""
    g.ogcapi_locators = _LOCATORS
    served = find_collection(collection_id)
    media_type = pick_format(MAP_FORMATS, "image/png")
    bounds, bbox_crs, given = request_bbox(arg("bbox"), arg("bbox-crs"), served)
    crs_text = arg("crs")
    if crs_text:
        given = request_crs(crs_text, "crs")
    crs = grid_crs(given)
    if crs != bbox_crs:
        bounds = reproject_bounds(bounds, bbox_crs, crs, InvalidParameterValue, "crs")
    width, height = _size(bounds, crs, served)
    view = View(crs, bounds, width, height)
    settings = runtime().settings
    if view.pixels > settings.max_output_pixels:
        raise LimitExceeded(f"the map would be {width}x{height} = {view.pixels} pixels, more "
                            f"than the limit of {settings.max_output_pixels}",
                            locator="width")
    check_budget(served.describe(served.identifier, served.title),
                 CoverageRequest(view, None, 1, None), settings.max_output_pixels,
                 settings.max_pixels)
    day = select_date(served, arg("datetime"))
    transparent = _boolean(arg("transparent"), "transparent", default=True)
    background = None
    if not transparent or arg("bgcolor") is not None:
        background = _color(arg("bgcolor"))
    if media_type == "image/tiff":
        background = None  # values, not a picture
    key = digest_key("map", served.graph.root.hash, served.style.to_json(), view.key,
                     media_type, day, background, served.source(view, day_range(day)),
                     served.engine.cache_token(served.graph, served.context))

    def produce() -> tuple[Encoded, str]:
        cube = served.evaluate(view, day)
        fmt = formats.tile_format(media_type)
        assert fmt is not None and fmt.tiles is not None  # MAP_FORMATS are tile formats
        encoded = fmt.tiles.encode(cube, served.style)
        if background is not None:
            encoded = _flatten(encoded, background)
        return encoded, "stored" if served.stored is not None else "computed"

    resp = conditional(key, lambda: cached_answer(served.engine, ("map", key), produce),
                       PRIVATE_CACHE, stored=served.stored is not None)
    resp.headers["Content-Crs"] = f"<{crs_uri(given)}>"
    resp.headers["Content-Bbox"] = ",".join(repr(float(v)) for v in bounds)
    return resp
