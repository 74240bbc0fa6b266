"""The landing page, the conformance declaration and the collections: one per lazy job of
the caller, with its spatial extent (CRS84 and native), its temporal extent (the result's
dates, or the time filter of a reduced result) and links to its tiles, map and coverage."""

from __future__ import annotations

import math

from tileserver.errors import TileserverError
from tileserver.maps.coverage import crs_uri
from tileserver.maps.served import ServedJob
from tileserver.maps.tilematrix import METRES_PER_DEGREE, PIXEL_SIZE_M
from tileserver.web.ogc.ogcapi.base import (
    CONFORMANCE,
    CRS84,
    GEOTIFF,
    GREGORIAN,
    HTML,
    JSON,
    REL,
    bp,
    collection_layers,
    document,
    find_collection,
    iso,
    link,
    root,
    self_links,
)

#: Output CRSs of maps and coverages besides the job's own.
EXTRA_CRS = ("http://www.opengis.net/def/crs/EPSG/0/4326",
             "http://www.opengis.net/def/crs/EPSG/0/3857")


@bp.get("/ogcapi")
@bp.get("/ogcapi/")
def landing():
    """The landing page: links to the conformance, the collections, the processes."""
    top = root()
    doc = {
        "title": "tileserver OGC API",
        "description": "Lazy openEO jobs as OGC API collections (Tiles, Maps, Coverages), "
                       "evaluated on request for each tile, map or coverage; openEO process "
                       "graphs executed through OGC API - Processes.",
        "links": [
            *self_links(f"{top}/", "this document"),
            link(f"{top}/api", "service-desc",
                 "application/vnd.oai.openapi+json;version=3.0", "The API definition"),
            link(f"{top}/conformance", "conformance", JSON, "Conformance classes"),
            link(f"{top}/conformance",
                 "http://www.opengis.net/def/rel/ogc/1.0/conformance", JSON,
                 "Conformance classes"),
            link(f"{top}/collections", "data", JSON, "Collections (lazy jobs)"),
            link(f"{top}/collections", REL + "data", JSON, "Collections (lazy jobs)"),
            link(f"{top}/tileMatrixSets", REL + "tiling-schemes", JSON, "Tile matrix sets"),
            link(f"{top}/processes", REL + "processes", JSON, "Processes"),
        ],
    }
    return document(doc, "landing.html", doc["title"])


@bp.get("/ogcapi/conformance")
def conformance():
    """The conformance classes implemented."""
    doc = {"conformsTo": CONFORMANCE}
    return document(doc, "generic.html", "Conformance")


@bp.get("/ogcapi/collections")
def collections():
    """One collection per lazy job of the caller (images only)."""
    top = root()
    items = [collection_doc(layer, brief=True) for layer in collection_layers()]
    doc = {"links": self_links(f"{top}/collections", "Collections"), "collections": items}
    return document(doc, "collections.html", "Collections")


@bp.route("/ogcapi/collections/<collection_id>", methods=["GET", "POST"])
def collection(collection_id: str):
    """One job as a collection. (POST: a client that sends its execution request again
    after the 303 of ``response=collection``, as GDAL does with a ``.moaw`` file, gets the
    collection too; the body is ignored.)"""
    served = find_collection(collection_id)
    return document(collection_doc(served), "collection.html", served.title)


# -- the collection document -------------------------------------------------------------


def collection_doc(served: ServedJob, brief: bool = False) -> dict:
    """The collection description of a served job (``brief``: as listed)."""
    cid = served.identifier
    href = f"{root()}/collections/{cid}"
    bounds, native = served.extent
    w, s, e, n = served.wgs84
    spatial = {"bbox": [[max(w, -180.0), max(s, -90.0), min(e, 180.0), min(n, 90.0)]],
               "crs": CRS84}
    native_uri = crs_uri(native)
    doc: dict = {
        "id": cid,
        "title": served.title,
        "description": served.job.get("description") or f"lazy openEO job {cid}",
        "dataType": "coverage",
        "extent": {"spatial": spatial},
        "crs": list(dict.fromkeys([CRS84, native_uri, *EXTRA_CRS])),
        "storageCrs": native_uri,
        "links": [
            link(f"{href}?f=json", "self", JSON, "This collection (JSON)"),
            link(f"{href}?f=html", "alternate", HTML, "This collection (HTML)"),
            link(f"{href}/tiles?f=json", REL + "tilesets-map", JSON, "Map tilesets"),
            link(f"{href}/map?f=png", REL + "map", "image/png", "Map (PNG)"),
            link(f"{href}/map?f=jpeg", REL + "map", "image/jpeg", "Map (JPEG)"),
            link(f"{href}/map?f=tiff", REL + "map", GEOTIFF, "Map (GeoTIFF, values)"),
            link(f"{href}/coverage?f=tiff", REL + "coverage", GEOTIFF, "Coverage (GeoTIFF)"),
            link(f"{href}/coverage?f=png", REL + "coverage", "image/png", "Coverage (PNG)"),
            link(f"{href}/coverage?f=netcdf", REL + "coverage", "application/netcdf",
                 "Coverage (NetCDF)"),
            link(f"{href}/coverage/domainset?f=json", REL + "coverage-domainset", JSON,
                 "Domain set"),
            link(f"{href}/coverage/rangetype?f=json", REL + "coverage-rangetype", JSON,
                 "Range type"),
            link(f"{root()}/collections", "collection", JSON, "All collections"),
        ],
    }
    if not brief:
        doc["extent"]["spatial"]["storageCrsBbox"] = [list(bounds)]
    temporal = temporal_extent(served)
    if temporal:
        doc["extent"]["temporal"] = temporal
    scale = scale_denominator(served)
    if scale:
        doc["scaleDenominator"] = scale
    return doc


def temporal_extent(served: ServedJob) -> dict | None:
    """The result's dates (their interval and each of them), or the time filter of a
    result whose time axis was reduced."""
    times = served.times
    if times:
        return {"interval": [[iso(times[0]), iso(times[-1])]], "trs": GREGORIAN,
                "grid": {"cellsCount": len(times), "coordinates": [iso(t) for t in times]}}
    time_range = served.graph.meta.time_range
    if time_range:
        return {"interval": [[iso(time_range[0]), iso(time_range[1])]], "trs": GREGORIAN}
    return None


def scale_denominator(served: ServedJob) -> float | None:
    """The scale of the native resolution (0.28 mm pixels, as GDAL sizes a map)."""
    try:
        view = served.engine.native_view(served.graph)
    except TileserverError:  # an extent the engine cannot grid: no scale
        return None
    w, _, e, _ = served.wgs84
    if view.width <= 0 or not math.isfinite(e - w) or e <= w:
        return None
    degrees = (e - w) / view.width
    return degrees * METRES_PER_DEGREE / PIXEL_SIZE_M
