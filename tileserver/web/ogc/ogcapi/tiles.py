"""OGC API - Tiles: a collection's map tilesets in ``WebMercatorQuad`` and
``WorldCRS84Quad`` (the maps layer's ``GoogleMapsCompatible`` and ``WorldCRS84Quad``), their
metadata with the limits of the job's extent, the tiles (PNG, JPEG, GeoTIFF values; the
same tiles, cache entries and ETags as WMTS) and the tile matrix set definitions."""

from __future__ import annotations

from functools import cache

import morecantile
from flask import g

from tileserver import params
from tileserver.errors import NotFound
from tileserver.maps.served import ServedJob
from tileserver.maps.tilematrix import extent_in, get_tms
from tileserver.web.conditional import PRIVATE_CACHE, conditional
from tileserver.web.ogc.ogcapi.base import (
    CRS84,
    GEOTIFF,
    JSON,
    REL,
    arg,
    bp,
    document,
    find_collection,
    link,
    pick_format,
    root,
    select_date,
    self_links,
)

#: OGC API tile matrix set id -> the maps layer's matrix set (the same matrices).
TILE_MATRIX_SETS = {"WebMercatorQuad": "GoogleMapsCompatible",
                    "WorldCRS84Quad": "WorldCRS84Quad"}
TMS_URI = "http://www.opengis.net/def/tilematrixset/OGC/1.0/"
#: ``f`` values of tiles -> media type.
TILE_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg",
                "tiff": "image/tiff", "tif": "image/tiff", "geotiff": "image/tiff"}
#: Tile links: media type advertised -> ``f``.
_ITEM_TYPES = {"image/png": "png", "image/jpeg": "jpeg", GEOTIFF: "tiff"}
#: Locators of the tile parsers (shared with WMTS) -> OGC API path parameters.
_LOCATORS = {"tilematrixset": "tileMatrixSetId", "tilematrix": "tileMatrix",
             "tilerow": "tileRow", "tilecol": "tileCol", "time": "datetime", "format": "f"}


def _tms(tms_id: str):
    name = params.text(tms_id, "tileMatrixSetId", max_length=100)
    if name not in TILE_MATRIX_SETS:
        raise NotFound(f"tile matrix set {name[:100]!r} is not offered; use "
                       f"{' or '.join(TILE_MATRIX_SETS)}", locator="tileMatrixSetId")
    return name, get_tms(TILE_MATRIX_SETS[name])


def _crs_of(name: str) -> str:
    return CRS84 if name == "WorldCRS84Quad" else "http://www.opengis.net/def/crs/EPSG/0/3857"


def _tileset_summary(served: ServedJob, name: str) -> dict:
    href = f"{root()}/collections/{served.identifier}/tiles/{name}"
    return {
        "title": f"{served.title} ({name})",
        "tileMatrixSetURI": TMS_URI + name,
        "crs": _crs_of(name),
        "dataType": "map",
        "links": [link(f"{href}?f=json", "self", JSON, f"{name} tileset"),
                  link(f"{root()}/tileMatrixSets/{name}", REL + "tiling-scheme", JSON,
                       f"{name} definition")],
    }


@bp.get("/ogcapi/collections/<collection_id>/tiles")
def tilesets(collection_id: str):
    """The map tilesets of a collection."""
    served = find_collection(collection_id)
    href = f"{root()}/collections/{served.identifier}/tiles"
    doc = {"links": self_links(href, "Tilesets"),
           "tilesets": [_tileset_summary(served, name) for name in TILE_MATRIX_SETS]}
    return document(doc, "generic.html", f"{served.title}: tilesets")


def _limits(served: ServedJob, tms) -> list[tuple[str, int, int, int, int]]:
    """The matrices where the job's extent spans one pixel or more (the coarser ones have
    no detail of their own to offer), each whole: every tile of a matrix is answered
    (transparent outside the extent). GDAL before 3.7 reads limits narrower than the matrix
    wrongly (rows: a wrong size; columns: tiles counted from the first limited column), and
    fails on a matrix where the extent is less than a pixel."""
    extent = extent_in(tms, *served.extent)
    if extent is None:
        return []
    width, height = extent[2] - extent[0], extent[3] - extent[1]
    return [(m.identifier, 0, m.matrix_height - 1, 0, m.matrix_width - 1)
            for m in tms.matrices if width >= m.cell_size and height >= m.cell_size]


@bp.get("/ogcapi/collections/<collection_id>/tiles/<tms_id>")
def tileset(collection_id: str, tms_id: str):
    """A tileset's metadata: its matrix set, the limits of the job's extent, tile links."""
    served = find_collection(collection_id)
    name, tms = _tms(tms_id)
    doc = _tileset_summary(served, name)
    href = f"{root()}/collections/{served.identifier}/tiles/{name}"
    doc["tileMatrixSetLimits"] = [
        {"tileMatrix": m, "minTileRow": r0, "maxTileRow": r1, "minTileCol": c0,
         "maxTileCol": c1} for m, r0, r1, c0, c1 in _limits(served, tms)]
    times = served.time_values
    if times:
        doc["datetime"] = {"default": times[-1], "values": times}
    doc["links"] = [
        *self_links(href, f"{name} tileset"),
        link(f"{root()}/tileMatrixSets/{name}", REL + "tiling-scheme", JSON,
             f"{name} definition"),
        link(f"{root()}/collections/{served.identifier}", "collection", JSON, served.title),
        *(link(f"{href}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}?f={f}", "item", media,
               f"{f.upper()} tiles", templated=True) for media, f in _ITEM_TYPES.items()),
    ]
    return document(doc, "generic.html", doc["title"])


@bp.get("/ogcapi/collections/<collection_id>/tiles/<tms_id>/<z>/<row>/<col>")
def tile(collection_id: str, tms_id: str, z: str, row: str, col: str):
    """One tile, evaluated lazily (``datetime`` selects the date; default: the latest)."""
    g.ogcapi_locators = _LOCATORS
    served = find_collection(collection_id)
    name, _ = _tms(tms_id)
    media_type = pick_format(TILE_FORMATS, "image/png")
    day = select_date(served, arg("datetime"))
    address = served.tile_address(TILE_MATRIX_SETS[name], z, row, col,
                                  media_type=media_type, time=day)
    key = served.tile_key(address)
    return conditional(key, lambda: served.tile(address, key), PRIVATE_CACHE,
                       stored=served.stored is not None)


# -- tile matrix sets ------------------------------------------------------------------


@cache
def _definition(name: str) -> dict:
    """The 2D-TMS 2.0 definition, with the members of the 1.0 JSON encoding beside them
    (``identifier``, ``supportedCRS``, ``boundingBox``, each matrix's ``identifier`` and
    ``topLeftCorner``): GDAL before 3.7 reads only those."""
    tms = morecantile.tms.get(name)
    doc = tms.model_dump(mode="json", exclude_none=True)
    crs = _crs_of(name)
    left, bottom, right, top = tms.xy_bbox
    doc.update({"type": "TileMatrixSetType", "identifier": name, "supportedCRS": crs,
                "boundingBox": {"type": "BoundingBoxType", "crs": crs,
                                "lowerCorner": [left, bottom], "upperCorner": [right, top]}})
    for matrix in doc["tileMatrices"]:
        matrix["identifier"] = matrix["id"]
        matrix["topLeftCorner"] = matrix["pointOfOrigin"]
    return doc


@bp.get("/ogcapi/tileMatrixSets")
def tile_matrix_sets():
    """The tile matrix sets offered."""
    top = root()
    doc = {"tileMatrixSets": [
        {"id": name, "title": _definition(name).get("title", name), "uri": TMS_URI + name,
         "links": [link(f"{top}/tileMatrixSets/{name}", "self", JSON, name)]}
        for name in TILE_MATRIX_SETS],
        "links": self_links(f"{top}/tileMatrixSets", "Tile matrix sets")}
    return document(doc, "generic.html", "Tile matrix sets")


@bp.get("/ogcapi/tileMatrixSets/<tms_id>")
def tile_matrix_set(tms_id: str):
    """A tile matrix set's definition (OGC 2D Tile Matrix Set 2.0, from morecantile)."""
    name, _ = _tms(tms_id)
    return document(_definition(name), "generic.html", name)
