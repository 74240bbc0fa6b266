"""What every OGC API resource shares: the blueprint, content negotiation (``f`` and
``Accept``), links, the conformance classes and the lookup of a collection (one per lazy
job the caller may see, as the global ``/wmts`` and ``/wcs`` list them)."""

from __future__ import annotations

import json
from datetime import datetime

from flask import Blueprint, Response, g, jsonify, render_template, request
from rasterio.crs import CRS

from tileserver import params
from tileserver.errors import InvalidParameterValue, NotFound, TileserverError
from tileserver.maps.coverage import crs_uri as _crs_uri
from tileserver.maps.coverage import parse_crs
from tileserver.maps.served import ServedJob
from tileserver.web.common import REVOKED_STATUSES, base_url, current_user, runtime
from tileserver.web.ogc.wmts import UserLayers
from tileserver.web.served import served_job

bp = Blueprint("ogcapi", __name__)

#: Where OGC API lives.
PREFIX = "/ogcapi"
JSON = "application/json"
HTML = "text/html"
GEOTIFF = "image/tiff; application=geotiff"
#: OGC link relations.
REL = "http://www.opengis.net/def/rel/ogc/1.0/"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GREGORIAN = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"

_COMMON = "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/"
_TILES = "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/"
_MAPS = "http://www.opengis.net/spec/ogcapi-maps-1/1.0/conf/"
_COVERAGES = "http://www.opengis.net/spec/ogcapi-coverages-1/1.0/conf/"
_PROCESSES = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/"
_WORKFLOWS = "http://www.opengis.net/spec/ogcapi-processes-3/0.0/conf/"

#: The conformance classes implemented here (``/ogcapi/conformance``).
CONFORMANCE = [
    *(_COMMON + c for c in ("core", "landing-page", "json", "html", "oas30")),
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    *(_TILES + c for c in ("core", "tileset", "tilesets-list", "geodata-tilesets", "png",
                           "jpeg", "tiff")),
    *(_MAPS + c for c in ("core", "collection-map", "spatial-subsetting", "crs", "datetime",
                          "scaling", "background", "png", "jpeg", "tiff")),
    *(_COVERAGES + c for c in ("core", "subsetting", "bbox", "datetime", "scaling",
                               "field-selection", "crs", "geotiff", "png", "netcdf")),
    *(_PROCESSES + c for c in ("core", "ogc-process-description", "json", "html")),
    *(_WORKFLOWS + c for c in ("openeo-workflows", "collection-output")),
]


@bp.before_request
def _ogcapi() -> None:
    """Errors of every route here are RFC 7807 JSON (:mod:`tileserver.web.errors`)."""
    g.ogcapi = True
    g.ogcapi_locators = {}


def root() -> str:
    """The public URL of the landing page (no trailing slash)."""
    return base_url() + PREFIX


def arg(name: str, *aliases: str) -> str | None:
    """A query parameter (its first value; control characters and length checked). An
    empty (or blank) value is a 400 naming the parameter: an OpenAPI 3.0 query parameter
    takes no empty value (``allowEmptyValue`` is false, see ``/ogcapi/api``), and none of
    the OGC API parameters here says that empty means its default."""
    for key in (name, *aliases):
        value = request.args.get(key)
        if value is not None:
            value = params.text(value, name)
            if not value.strip():
                raise InvalidParameterValue(f"{name} is empty; give a value or leave the "
                                            "parameter out", locator=name)
            return value
    return None


def link(href: str, rel: str, type_: str | None = None, title: str | None = None,
         **extra) -> dict:
    """An OGC API link object."""
    out = {"href": href, "rel": rel}
    if type_:
        out["type"] = type_
    if title:
        out["title"] = title
    out.update(extra)
    return out


def self_links(href: str, title: str) -> list[dict]:
    """``self`` (JSON) and ``alternate`` (HTML) of a metadata resource at ``href``; the
    HTML form when the request asked for HTML (``self`` is what was answered)."""
    html = wants_html()
    return [link(f"{href}?f=json", "alternate" if html else "self", JSON, f"{title} (JSON)"),
            link(f"{href}?f=html", "self" if html else "alternate", HTML, f"{title} (HTML)")]


def wants_html() -> bool:
    """``f=html``/``f=json``, else the ``Accept`` header (JSON unless HTML is preferred)."""
    f = arg("f")
    if f is not None:
        value = f.strip().lower()
        if value in ("json", "application/json"):
            return False
        if value in ("html", "text/html"):
            return True
        raise InvalidParameterValue(f"f={f[:40]!r} is not offered here; use json or html",
                                    locator="f")
    best = request.accept_mimetypes.best_match([JSON, HTML])
    return best == HTML and request.accept_mimetypes[HTML] > request.accept_mimetypes[JSON]


def document(doc: dict, template: str, title: str, **context) -> Response:
    """A metadata resource as JSON, or rendered from ``templates/ogcapi/<template>``."""
    if wants_html():
        body = render_template(f"ogcapi/{template}", doc=doc, title=title, root=root(),
                               pretty=json.dumps(doc, indent=2, default=str), **context)
        resp = Response(body, mimetype=HTML)
    else:
        resp = jsonify(doc)
    resp.headers["Vary"] = "Accept"
    return resp


def pick_format(offered: dict[str, str], default: str, locator: str = "f") -> str:
    """The media type of a data resource: ``f`` (a key of ``offered``: short name ->
    media type), else the best ``Accept`` match, else ``default``."""
    f = arg("f")
    if f is not None:
        value = f.strip().lower()
        if value in offered:
            return offered[value]
        if value in offered.values():
            return value
        raise InvalidParameterValue(f"f={f[:40]!r} is not offered here; use one of "
                                    f"{', '.join(sorted(offered))}", locator=locator)
    types = set(offered.values())
    for value, _quality in request.accept_mimetypes:  # best first
        base = value.split(";")[0].strip().lower()
        if base in types:
            return base
    return default


def iso(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z``."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- collections -----------------------------------------------------------------------


def collection_layers() -> list[ServedJob]:
    """The caller's lazy jobs that are images (those the global WMTS lists), newest first."""
    return UserLayers().layers()


def find_collection(collection_id: str) -> ServedJob:
    """The caller's job ``collection_id`` as served (404 when it is not a raster of theirs)."""
    cid = params.text(collection_id, "collectionId", max_length=200)
    try:
        job = runtime().store.get_job(cid, current_user())
    except NotFound:
        job = None
    if job is None or job["status"] in REVOKED_STATUSES:
        raise NotFound(f"collection {cid[:100]!r} does not exist", locator="collectionId")
    try:
        served = served_job(job)
    except TileserverError as exc:
        raise NotFound(f"collection {cid}: {exc.message}", locator="collectionId") from None
    if not served.graph.is_raster:
        raise NotFound(f"collection {cid}: job computes a {served.graph.meta.kind}, not a "
                       "raster", locator="collectionId")
    return served


# -- dates -----------------------------------------------------------------------------


def _instant(text: str, end: bool = False) -> datetime | None:
    """One end of a ``datetime`` interval; ``..`` or an empty string: unbounded (OGC API
    Features 1.0 / Common ``datetime``), anything else an RFC 3339 date-time."""
    if text in ("", ".."):
        return None
    return params.date(text, "datetime", end=end)


def select_date(served: ServedJob, text: str | None) -> str | None:
    """The day (``YYYY-MM-DD``) that ``datetime`` selects: an instant picks its UTC day
    (one of the collection's dates), an interval ``a/b`` (``..`` open) its latest date
    inside; none: the latest date. ``None`` for a result without a time axis (a valid
    ``datetime`` is then ignored)."""
    if text is None:
        return served.select_time(None)
    text = params.text(text, "datetime", max_length=200)
    if "/" in text:
        parts = text.split("/")
        if len(parts) != 2:
            raise InvalidParameterValue(f"datetime {text[:64]!r} is not an instant or an "
                                        "interval a/b", locator="datetime")
        lo, hi = _instant(parts[0]), _instant(parts[1], end=True)
        if lo and hi and lo > hi:
            raise InvalidParameterValue(f"datetime {text[:64]!r}: the start is after the "
                                        "end", locator="datetime")
        if served.times is None:
            return None
        inside = [t for t in served.times if (lo is None or t >= lo) and (hi is None or t <= hi)]
        if not inside:
            raise InvalidParameterValue(
                f"datetime {text[:64]!r} contains none of the collection's dates "
                f"({', '.join(served.time_values or [])[:300]})", locator="datetime")
        return f"{inside[-1]:%Y-%m-%d}"
    when = _instant(text)
    if when is None:
        raise InvalidParameterValue("datetime is empty", locator="datetime")
    if served.times is None:
        return None
    return served.select_time(f"{when:%Y-%m-%d}", locator="datetime")


# -- CRSs ------------------------------------------------------------------------------


def is_crs84(crs: CRS) -> bool:
    """Whether ``crs`` is OGC:CRS84 (longitude, latitude)."""
    return "CRS84" in crs.to_string().upper()


def request_crs(text: str, locator: str) -> CRS:
    """A CRS parameter (EPSG and CRS84 URIs, see :func:`tileserver.params.crs`)."""
    return parse_crs(text, locator=locator)


def grid_crs(crs: CRS) -> CRS:
    """The CRS a view is built in: CRS84 as EPSG:4326 (the same x/y order in rasterio)."""
    return CRS.from_epsg(4326) if is_crs84(crs) else crs


def crs_uri(crs: CRS) -> str:
    """The OGC URI of a CRS (CRS84 as CRS84)."""
    return CRS84 if is_crs84(crs) else _crs_uri(crs)
