"""WMS 1.3.0 and 1.1.1 (KVP): a ``wms`` service's job at ``/service/wms/<id>``, and every
job of the user at ``/wms``. GetCapabilities, GetMap, GetFeatureInfo, GetLegendGraphic.

Each GetMap is evaluated lazily for its own window and size
(:mod:`tileserver.maps.window`, through the served job: the same caches as tiles);
GetFeatureInfo answers a pixel's values on the requested date and its whole time series.
``TIME``: one date, a list or a range (``start/end[/period]``); a list or a range selects
the latest of the layer's dates it contains (a map shows one date). Errors are
``ServiceExceptionReport`` documents (``templates/wms/exception_*.xml``) with a 4xx status.
"""

from __future__ import annotations

import io
import json
import logging
import math
from dataclasses import dataclass

from flask import Blueprint, Response, g, render_template, request
from PIL import Image
from rasterio.crs import CRS

from tileserver import params
from tileserver.datacube.bounds import transform_bounds
from tileserver.datacube.view import View
from tileserver.errors import (
    InvalidCRS,
    InvalidDimensionValue,
    InvalidFormat,
    InvalidParameterValue,
    InvalidPoint,
    LayerNotDefined,
    LimitExceeded,
    MissingDimensionValue,
    MissingParameterValue,
    NotFound,
    OperationNotSupported,
    StyleNotDefined,
    TileserverError,
)
from tileserver.maps import window
from tileserver.maps.coverage import axes_of, crs_code
from tileserver.maps.served import ServedJob
from tileserver.maps.window import MAP_FORMATS, MapRequest, legend_for, pixel_info, styles_of
from tileserver.render import legend
from tileserver.web.common import REVOKED_STATUSES, base_url, current_user, live_service, runtime
from tileserver.web.conditional import PRIVATE_CACHE, PUBLIC_CACHE, cache_control, conditional
from tileserver.web.ogc.kvp import Kvp
from tileserver.web.served import served_job, served_or_none

log = logging.getLogger(__name__)
bp = Blueprint("wms", __name__)

VERSIONS = ("1.3.0", "1.1.1")
#: CRSs every layer is offered in, besides its native one.
EXTRA_CRS = ("EPSG:3857", "EPSG:4326")
#: GetFeatureInfo formats.
INFO_FORMATS = ("application/json", "text/html", "text/plain")
#: Largest BBOX coordinate accepted (beyond any CRS's domain; PROJ can take minutes on
#: astronomically large ones).
MAX_COORDINATE = 1e9
#: Web Mercator's latitude limit.
MERCATOR_LAT = 85.0511287798066


@bp.before_request
def _ogc() -> None:
    g.ogc = True
    _set_version(VERSIONS[0])  # errors in the parameters themselves: a 1.3.0 report
    try:
        _set_version(_version(Kvp(request.args.items(multi=True)), capabilities=False,
                              strict=False))
    except TileserverError:
        pass  # raised again, as a report, when the request is read


def _set_version(version: str) -> None:
    g.ogc_version = version
    g.ogc_exception_template = f"wms/exception_{version.replace('.', '')}.xml"
    g.ogc_exception_mimetype = "text/xml" if version == "1.3.0" else \
        "application/vnd.ogc.se_xml"


def _known_version(text: str) -> str | None:
    """The version of ours a VERSION (or WMTVER) names: 1.3.0, 1.1.1 for 1.0.x/1.1.x."""
    text = text.strip()
    if text in VERSIONS:
        return text
    if text.startswith("1.1") or text.startswith("1.0"):
        return "1.1.1"
    return None


def _version(kvp: Kvp, *, capabilities: bool, strict: bool = True) -> str:
    """1.3.0 or 1.1.1: negotiated for GetCapabilities, as given otherwise. ``WMTVER`` is
    the name of ``VERSION`` in WMS 1.0 (still accepted by WMS 1.1.1 servers); ``VERSION``
    wins when both are given, but a WMTVER that names no version is an error too."""
    given = [(key, text) for key in ("VERSION", "WMTVER") if (text := kvp.get(key))]
    if not given:
        return VERSIONS[0]
    found = [_known_version(text) for _, text in given]
    if strict and not capabilities:
        for (key, text), version in zip(given, found, strict=True):
            if version is None:
                raise InvalidParameterValue(f"{key} {text[:20]!r} is not supported; use "
                                            "1.3.0 or 1.1.1", locator=key.lower())
    return found[0] or "1.3.0"


# -- where layers come from ------------------------------------------------------------


class ServiceLayers:
    """The one layer of a ``wms`` service (404 when the service or its job is gone)."""

    def __init__(self, service_id: str):
        self.service, self.job = live_service(service_id, "wms")
        self.root = f"{base_url()}/service/wms/{service_id}"
        self.title = self.service.get("title") or self.job.get("title") or "tileserver WMS"
        self.cache_control = PUBLIC_CACHE

    def layers(self) -> list[ServedJob]:
        """The service's job, styled by the service's configuration."""
        return [served_job(self.job, self.service.get("service_args"),
                           self.service.get("title"))]

    def layer(self, name: str, locator: str) -> ServedJob:
        """The layer ``name`` (:class:`LayerNotDefined` otherwise)."""
        for layer in self.layers():
            if layer.identifier == name:
                return layer
        raise LayerNotDefined(f"layer {name[:100]!r} is not offered here; the layer is "
                              f"{self.job['job_id']}", locator=locator)


class UserLayers:
    """Every job of the current user that computes an image (the global ``/wms``)."""

    def __init__(self):
        self.user = current_user()
        self.root = f"{base_url()}/wms"
        self.title = f"tileserver: jobs of {self.user}"
        self.cache_control = PRIVATE_CACHE

    def layers(self) -> list[ServedJob]:
        """The jobs whose graph validates and gives images, newest first (a job left out is
        logged: one bad job does not take the others' capabilities down)."""
        out = []
        for job in runtime().store.list_jobs(self.user):
            if job["status"] in REVOKED_STATUSES:
                continue
            layer = served_or_none(runtime().store.get_job(job["job_id"], self.user))
            if layer is None or not layer.graph.is_raster:
                continue
            try:
                _ = (layer.wgs84, layer.time_values, layer.style)
            except TileserverError as exc:
                log.warning("job %s is not listed as a WMS layer: %s", job["job_id"],
                            exc.message)
                continue
            out.append(layer)
        return out

    def layer(self, name: str, locator: str) -> ServedJob:
        """One job of the user (:class:`LayerNotDefined` when unknown)."""
        try:
            job = runtime().store.get_job(name, self.user)
        except (NotFound, TileserverError):
            job = None
        if job is None or job["status"] in REVOKED_STATUSES:
            raise LayerNotDefined(f"layer {name[:100]!r} is not one of your jobs",
                                  locator=locator)
        layer = served_job(job)
        if not layer.graph.is_raster:
            raise LayerNotDefined(f"job {name} computes a {layer.graph.meta.kind}, not a "
                                  "map", locator=locator)
        return layer


# -- capabilities ----------------------------------------------------------------------


def _fmt(value: float) -> str:
    return repr(round(float(value), 9))


def _north_first(crs: CRS) -> bool:
    return axes_of(crs)[1]


def _bounds_in(layer: ServedJob, code: str) -> tuple[float, float, float, float] | None:
    bounds, crs = layer.extent
    target = CRS.from_user_input(code)
    try:
        out = transform_bounds(crs, target, *bounds, densify_pts=21)
    except Exception:  # noqa: BLE001 - outside the CRS's area of use
        return None
    if not all(math.isfinite(v) for v in out):
        return None
    return out


def _layer_crs(layer: ServedJob) -> list[str]:
    native = crs_code(layer.extent[1])
    return [native] + [c for c in EXTRA_CRS if c != native]


def _layer_context(source, layer: ServedJob, version: str) -> dict:
    w, s, e, n = layer.wgs84
    w, s, e, n = max(w, -180.0), max(s, -90.0), min(e, 180.0), min(n, 90.0)
    boxes = []
    for code in _layer_crs(layer):
        if code == "EPSG:3857":
            if s >= MERCATOR_LAT or n <= -MERCATOR_LAT:
                continue
            box = transform_bounds("EPSG:4326", "EPSG:3857", w, max(s, -MERCATOR_LAT), e,
                                   min(n, MERCATOR_LAT))
        else:
            box = _bounds_in(layer, code)
        if box is None:
            continue
        if version == "1.3.0" and _north_first(CRS.from_user_input(code)):
            box = (box[1], box[0], box[3], box[2])
        boxes.append({"crs": code, "minx": _fmt(box[0]), "miny": _fmt(box[1]),
                      "maxx": _fmt(box[2]), "maxy": _fmt(box[3])})
    styles = []
    for name, style in styles_of(layer).items():
        url = (f"{source.root}?SERVICE=WMS&REQUEST=GetLegendGraphic&VERSION={version}"
               f"&FORMAT=image/png&LAYER={layer.identifier}&STYLE={name}")
        styles.append({"name": name, "title": _style_title(style),
                       "legend": url, "width": legend.WIDTH, "height": legend.HEIGHT})
    times = layer.time_values
    return {
        "name": layer.identifier, "title": layer.title,
        "abstract": layer.job.get("description") or f"openEO job {layer.identifier}, "
                    "evaluated lazily for each map",
        "crs": _layer_crs(layer), "boxes": boxes,
        "west": _fmt(w), "south": _fmt(s), "east": _fmt(e), "north": _fmt(n),
        "styles": styles,
        "times": times, "default_time": times[-1] if times else None,
    }


def _style_title(style) -> str:
    return f"{style.colormap or 'RGB'} {style.vmin:g} to {style.vmax:g}"


def capabilities(source, version: str) -> Response:
    """The capabilities document of a layer source."""
    _set_version(version)
    layers = [_layer_context(source, layer, version) for layer in source.layers()]
    if layers:
        west = min(float(ly["west"]) for ly in layers)
        south = min(float(ly["south"]) for ly in layers)
        east = max(float(ly["east"]) for ly in layers)
        north = max(float(ly["north"]) for ly in layers)
    else:
        west, south, east, north = -180.0, -90.0, 180.0, 90.0
    crs = sorted({c for ly in layers for c in ly["crs"]} | set(EXTRA_CRS))
    limit = runtime().settings.max_output_pixels
    side = min(params.MAX_SIZE, limit)
    xml = render_template(
        f"wms/capabilities_{version.replace('.', '')}.xml", title=source.title,
        url=f"{source.root}?", layers=layers, crs=crs, max_side=side,
        west=_fmt(west), south=_fmt(south), east=_fmt(east), north=_fmt(north),
        map_formats=["image/png", "image/jpeg", "image/tiff"], info_formats=INFO_FORMATS,
        abstract="openEO process graphs evaluated lazily for each map: any window, size, "
                 "CRS and date.")
    mimetype = "text/xml" if version == "1.3.0" else "application/vnd.ogc.wms_xml"
    return Response(xml, mimetype=mimetype)


# -- the request's words ---------------------------------------------------------------


@dataclass
class MapWords:
    """A GetMap (or the map part of a GetFeatureInfo), parsed."""

    layers: list[ServedJob]
    styles: list
    crs: CRS
    view: View
    times: list[str | None]


def _crs(kvp: Kvp, version: str) -> tuple[CRS, str]:
    key = "CRS" if version == "1.3.0" else "SRS"
    text = kvp.get(key) or kvp.get("SRS" if key == "CRS" else "CRS")
    if not text:
        raise MissingParameterValue(f"parameter {key} is required", locator=key.lower())
    return params.crs(text, key.lower(), error=InvalidCRS), text


def _bbox(kvp: Kvp, crs: CRS, crs_text: str, version: str) -> tuple[float, ...]:
    box = params.bbox(kvp.require("BBOX"), "bbox")
    if max(abs(v) for v in box) > MAX_COORDINATE:
        raise InvalidParameterValue(f"BBOX {kvp.get('BBOX')[:100]!r} lies outside the domain "
                                    "of any CRS (coordinates beyond 1e9)", locator="bbox")
    if version == "1.3.0" and "CRS:84" not in crs_text.upper() \
            and "CRS84" not in crs_text.upper() and _north_first(crs):
        box = (box[1], box[0], box[3], box[2])
    return box


def select_time(layer: ServedJob, text: str | None) -> str | None:
    """The date of the layer a ``TIME`` selects: the default (latest) when absent, the day
    of one date, the latest listed date, or the latest date inside a range
    ``start/end[/period]`` (``InvalidDimensionValue`` when none is the layer's)."""
    values = layer.time_values
    if values is None:
        return None  # no time axis: TIME does not apply
    if text is None or text.strip().lower() in ("", "current", "default", "now"):
        if not values:
            raise MissingDimensionValue(f"layer {layer.identifier} has no dates yet; there "
                                        "is no default TIME", locator="time")
        return values[-1]
    shown = ", ".join(values[:20]) + (" …" if len(values) > 20 else "")

    def day(part: str, end: bool = False):
        return params.date(part, "time", end=end, error=InvalidDimensionValue)

    picked: list[str] = []
    for item in params.items(text, "time", error=InvalidDimensionValue):
        if "/" in item:
            parts = item.split("/")
            if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
                raise InvalidDimensionValue(f"TIME range {item[:64]!r} must be "
                                            "start/end[/period]", locator="time")
            lo, hi = day(parts[0]), day(parts[1], end=True)
            if lo > hi:
                raise InvalidDimensionValue(f"TIME range {item[:64]!r} ends before it "
                                            "starts", locator="time")
            # a date of the layer is a UTC day: inside when the day meets the range
            picked += [v for v in values if day(v) <= hi and day(v, end=True) >= lo]
        else:
            d = f"{day(item):%Y-%m-%d}"
            if d not in values:
                raise InvalidDimensionValue(f"TIME {item[:64]!r} is not one of the layer's "
                                            f"dates: {shown}", locator="time")
            picked.append(d)
    if not picked:
        raise InvalidDimensionValue(f"TIME {text[:64]!r} contains none of the layer's dates: "
                                    f"{shown}", locator="time")
    return max(picked)


def _style_name(text: str) -> str:
    """A style name as given, spaces around it dropped; empty: the default style, blank
    (only spaces): not a name (StyleNotDefined)."""
    return text.strip() or text


def _styles(kvp: Kvp, layers: list[ServedJob], key: str = "STYLES") -> list:
    """One style per layer. ``STYLES=`` (empty, as QGIS, OWSLib and GDAL send it) or an
    empty name in the list (``STYLES=,gray``) is the layer's default style (WMS 1.3.0
    7.3.3.4); a blank name is no style."""
    text = kvp.get(key) or ""
    names = text.split(",") if text else []
    if names and len(names) != len(layers):
        raise StyleNotDefined(f"{key} names {len(names)} styles for {len(layers)} layers",
                              locator=key.lower())
    out = []
    for i, layer in enumerate(layers):
        name = _style_name(names[i] if names else "")
        offered = styles_of(layer)
        if name in ("", "default"):
            out.append(offered["default"])
        elif name in offered:
            out.append(offered[name])
        else:
            raise StyleNotDefined(f"style {name[:100]!r} is not a style of layer "
                                  f"{layer.identifier}; use one of {', '.join(offered)}",
                                  locator=key.lower())
    return out


def _layers(source, kvp: Kvp, key: str) -> list[ServedJob]:
    names = [n.strip() for n in params.items(kvp.require(key), key.lower(),
                                                error=LayerNotDefined) if n.strip()]
    if not names:
        raise LayerNotDefined(f"{key} names no layer", locator=key.lower())
    return [source.layer(name, key.lower()) for name in names]


def map_words(source, kvp: Kvp, version: str, layers_key: str = "LAYERS") -> MapWords:
    """LAYERS, STYLES, CRS/SRS, BBOX, WIDTH, HEIGHT and TIME, checked in that order."""
    layers = _layers(source, kvp, layers_key)
    styles = _styles(kvp, layers)
    crs, crs_text = _crs(kvp, version)
    box = _bbox(kvp, crs, crs_text, version)
    width = params.size(kvp.require("WIDTH"), "width")
    height = params.size(kvp.require("HEIGHT"), "height")
    limit = runtime().settings.max_output_pixels
    if width * height > limit:
        raise LimitExceeded(f"the map would be {width}x{height} = {width * height} pixels, "
                            f"more than the limit of {limit}", locator="width")
    times = [select_time(layer, kvp.get("TIME")) for layer in layers]
    return MapWords(layers, styles, crs, View(crs, box, width, height), times)


def _format(kvp: Kvp) -> str:
    text = kvp.require("FORMAT")
    media = text.split(";")[0].strip().lower()
    media = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg",
             "geotiff": "image/tiff", "image/png8": "image/png"}.get(media, media)
    if media not in MAP_FORMATS:
        raise InvalidFormat(f"FORMAT {text[:64]!r} is not supported; use image/png, "
                            "image/jpeg or image/tiff (float32 values)", locator="format")
    return media


def _bgcolor(kvp: Kvp) -> tuple[int, int, int]:
    """``BGCOLOR=0xRRGGBB`` (also ``#RRGGBB``); absent: white (WMS 1.3.0 7.3.3.10). An
    empty value is no colour."""
    text = kvp.get("BGCOLOR")
    text = "0xFFFFFF" if text is None else text.strip()
    hexa = text[2:] if text[:2].lower() == "0x" else text.lstrip("#")
    if len(hexa) != 6 or any(c not in "0123456789abcdefABCDEF" for c in hexa):
        raise InvalidParameterValue(f"BGCOLOR {text[:20]!r} must be 0xRRGGBB",
                                    locator="bgcolor")
    return int(hexa[0:2], 16), int(hexa[2:4], 16), int(hexa[4:6], 16)


def _transparent(text: str) -> bool:
    """``TRANSPARENT=TRUE|FALSE`` (WMS 1.3.0 7.3.3.9; any case, as Leaflet and OpenLayers
    send ``true``), not 0/1 or yes/no."""
    value = text.strip().upper()
    if value not in ("TRUE", "FALSE"):
        raise InvalidParameterValue(f"TRANSPARENT must be TRUE or FALSE, got {text[:20]!r}",
                                    locator="transparent")
    return value == "TRUE"


# -- operations ------------------------------------------------------------------------


def getmap(source, kvp: Kvp, version: str) -> Response:
    """A map of one or more layers (several: composited in order, PNG/JPEG only)."""
    words = map_words(source, kvp, version)
    media = _format(kvp)
    transparent_text = kvp.get("TRANSPARENT")
    # PNG nodata is transparent unless TRANSPARENT=FALSE asks for the background colour
    transparent = True if transparent_text is None else _transparent(transparent_text)
    bgcolor = _bgcolor(kvp)
    single = len(words.layers) == 1
    requests = [MapRequest(words.view, t, s, media if single else "image/png",
                           transparent or not single, bgcolor)
                for t, s in zip(words.times, words.styles, strict=True)]
    if single:
        layer, req = words.layers[0], requests[0]
        key = window.map_key(layer, req)
        return conditional(key, lambda: window.get_map(layer, req, key),
                           source.cache_control, stored=layer.stored is not None)
    if MAP_FORMATS[media] == "GTiff":
        raise InvalidFormat("a GeoTIFF map (values) takes one layer", locator="format")
    opaque = not transparent or media == "image/jpeg"
    canvas = Image.new("RGBA", (words.view.width, words.view.height),
                       (*bgcolor, 255 if opaque else 0))
    for layer, req in zip(words.layers, requests, strict=True):
        encoded, _ = window.get_map(layer, req)
        canvas.alpha_composite(Image.open(io.BytesIO(encoded.content)).convert("RGBA"))
    buf = io.BytesIO()
    if media == "image/jpeg":
        canvas.convert("RGB").save(buf, format="JPEG", quality=85)
    else:
        canvas.save(buf, format="PNG", compress_level=1)
    return cache_control(Response(buf.getvalue(), mimetype=media), source.cache_control)


def _pixel(kvp: Kvp, version: str, view: View) -> tuple[int, int]:
    """The queried pixel: ``I``/``J`` (1.3.0) or ``X``/``Y`` (1.1.1), inside the map."""
    names = ("I", "J") if version == "1.3.0" else ("X", "Y")
    if names[0] not in kvp and ("X" in kvp or "I" in kvp):  # the other version's names
        names = ("X", "Y") if names[0] == "I" else ("I", "J")
    out = []
    for name, size in zip(names, (view.width, view.height), strict=True):
        value = params.integer(kvp.require(name), name.lower(), error=InvalidPoint)
        if not 0 <= value < size:
            raise InvalidPoint(f"{name} = {value} is outside the map (0..{size - 1})",
                               locator=name.lower())
        out.append(value)
    return out[0], out[1]


def _info_format(kvp: Kvp) -> str:
    text = kvp.get("INFO_FORMAT")
    if text is None:  # (mandatory in 1.3.0, optional in 1.1.1: plain text when left out)
        text = "text/plain"
    media = text.split(";")[0].strip().lower()
    media = {"json": "application/json", "application/geo+json": "application/json",
             "html": "text/html", "text": "text/plain"}.get(media, media)
    if media not in INFO_FORMATS:
        raise InvalidFormat(f"INFO_FORMAT {text[:64]!r} is not supported; use one of "
                            f"{', '.join(INFO_FORMATS)}", locator="info_format")
    return media


def getfeatureinfo(source, kvp: Kvp, version: str) -> Response:
    """The values of the queried layers at one pixel of a map: on the requested date and
    on every date (the series and the dates that have data)."""
    words = map_words(source, kvp, version)
    queried = _layers(source, kvp, "QUERY_LAYERS")
    names = {layer.identifier for layer in words.layers}
    for layer in queried:
        if layer.identifier not in names:
            raise LayerNotDefined(f"QUERY_LAYERS names {layer.identifier}, which is not in "
                                  "LAYERS", locator="query_layers")
    media = _info_format(kvp)
    i, j = _pixel(kvp, version, words.view)
    left, bottom, right, top = words.view.bounds
    rx, ry = words.view.res
    x, y = left + (i + 0.5) * rx, top - (j + 0.5) * ry
    times = dict(zip((ly.identifier for ly in words.layers), words.times, strict=True))
    infos = [pixel_info(layer, words.crs, x, y, times[layer.identifier]) for layer in queried]
    if media == "application/json":
        body = json.dumps(_geojson(infos), allow_nan=False)
    elif media == "text/html":
        body = render_template("wms/featureinfo.html", infos=infos, value=_value,
                               pyrepr=repr)
    else:
        body = _text(infos)
    return cache_control(Response(body, mimetype=media), source.cache_control)


def _geojson(infos: list[dict]) -> dict:
    features = []
    for info in infos:
        geometry = None
        if info["lon"] is not None and info["lat"] is not None:
            geometry = {"type": "Point", "coordinates": [info["lon"], info["lat"]]}
        features.append({"type": "Feature", "id": info["layer"], "geometry": geometry,
                         "properties": info})
    return {"type": "FeatureCollection", "features": features}


def _value(v) -> str:
    return "nodata" if v is None else f"{v:.6g}"


def _text(infos: list[dict]) -> str:
    lines = []
    for info in infos:
        lines.append(f"Layer '{info['layer']}' ({info['title']})")
        if not info["inside"]:
            lines.append("  outside the layer")
            continue
        lines.append(f"  {info['crs']}: x={info['x']!r} y={info['y']!r} "
                     f"(column {info['col']}, row {info['row']})")
        if info.get("time"):
            lines.append(f"  time = {info['time']}")
        for band, v in (info["bands"] or {}).items():
            lines.append(f"  {band} = {_value(v)}")
        if "series" in info:
            lines.append(f"  dates with data: {', '.join(info['data_available_for_dates'])}")
            lines.append("  series:")
            for step in info["series"]:
                values = ", ".join(f"{b}={_value(v)}" for b, v in step["bands"].items())
                lines.append(f"    {step['time']}: {values}")
    return "\n".join(lines) + "\n"


def getlegendgraphic(source, kvp: Kvp) -> Response:
    """The legend of one of a layer's styles (a PNG)."""
    layer = source.layer(kvp.require("LAYER"), "layer")
    fmt = kvp.get("FORMAT")
    if fmt and fmt.split(";")[0].strip().lower() != "image/png":
        raise InvalidFormat(f"FORMAT {fmt[:64]!r}: legends are image/png", locator="format")
    name = _style_name(kvp.get("STYLE") or "")
    offered = styles_of(layer)
    if name not in ("", *offered):
        raise StyleNotDefined(f"style {name[:100]!r} is not a style of layer "
                              f"{layer.identifier}; use one of {', '.join(offered)}",
                              locator="style")
    style = offered[name or "default"]
    resp = Response(legend.legend_png(legend_for(layer, style)), mimetype="image/png")
    return cache_control(resp, source.cache_control)


def dispatch(make_source) -> Response:
    """Answer one KVP request over the layers of ``make_source()``."""
    kvp = Kvp(request.args.items(multi=True))
    service = kvp.get("SERVICE")
    operation = kvp.require("REQUEST").strip().lower()
    # (WMS 1.1.1 has no SERVICE in GetMap and GetFeatureInfo: it may be left out there; a
    # SERVICE given, even empty, must be WMS)
    if service is None and operation not in ("getmap", "map", "getfeatureinfo",
                                             "feature_info"):
        raise MissingParameterValue("parameter SERVICE=WMS is required", locator="service")
    if service is not None and service.strip().upper() != "WMS":
        raise InvalidParameterValue(f"SERVICE must be WMS, got {service[:20]!r}",
                                    locator="service")
    if operation in ("getcapabilities", "capabilities"):
        return capabilities(make_source(), _version(kvp, capabilities=True))
    version = _version(kvp, capabilities=False)
    _set_version(version)
    if operation in ("getmap", "map"):
        return getmap(make_source(), kvp, version)
    if operation in ("getfeatureinfo", "feature_info"):
        return getfeatureinfo(make_source(), kvp, version)
    if operation == "getlegendgraphic":
        return getlegendgraphic(make_source(), kvp)
    raise OperationNotSupported(f"REQUEST {kvp.get('REQUEST')[:40]!r} is not supported; use "
                                "GetCapabilities, GetMap, GetFeatureInfo or GetLegendGraphic",
                                locator="request")


@bp.get("/service/wms/<service_id>")
def service_endpoint(service_id: str):
    """The WMS of one ``wms`` service: its job as one layer."""
    source = ServiceLayers(service_id)  # 404 before any parameter is checked
    return dispatch(lambda: source)


@bp.get("/wms")
def global_endpoint():
    """Every job of the current user as a layer."""
    source = UserLayers()  # 401 before any parameter is checked
    return dispatch(lambda: source)
