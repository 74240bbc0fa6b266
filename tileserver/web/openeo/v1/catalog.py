"""Collections (STAC, from the catalog) and process descriptions (the official specs)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from flask import jsonify, request
from shapely.geometry import mapping

from tileserver.errors import CollectionNotFound, TileserverError
from tileserver.graph.specs import PROCESSES_VERSION, load_spec
from tileserver.params import parse_iso_date as parse_date
from tileserver.processes import supported_v1
from tileserver.web.common import external_url, runtime
from tileserver.web.openeo.v1.serializers import collection_json
from tileserver.web.openeo.v1.versions import V1_3, current


def _collection(product) -> dict:
    links = [
        {"rel": "self", "href": external_url(".collection", collection_id=product.id),
         "type": "application/json"},
        {"rel": "root", "href": external_url(".index"), "type": "application/json"},
        {"rel": "parent", "href": external_url(".collections"),
         "type": "application/json"},
    ]
    return collection_json(product, links)


def collections():
    """All collections."""
    return jsonify({"collections": [_collection(p) for p in runtime().catalog], "links": []})


def _product(collection_id: str):
    catalog = runtime().catalog
    if collection_id not in catalog.products:
        raise CollectionNotFound(f"collection {collection_id!r} does not exist; available: "
                                 f"{', '.join(sorted(catalog.products))}")
    return catalog.get(collection_id)


def collection(collection_id: str):
    """One collection with its dimensions and bands."""
    return jsonify(_collection(_product(collection_id)))


#: Items per page of ``/collections/{id}/items``: the default and the largest ``limit``.
ITEMS_LIMIT, MAX_ITEMS_LIMIT = 10, 1000


def _bbox_arg(value: str | None):
    if value is None:
        return None
    try:
        bbox = tuple(float(v) for v in value.split(","))
    except ValueError:
        bbox = ()
    if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox) or bbox[0] > bbox[2] \
            or bbox[1] > bbox[3]:
        raise TileserverError(f"bbox {value[:100]!r} must be west,south,east,north in WGS84 "
                              "degrees", locator="bbox")
    return bbox


def _datetime_arg(value: str | None):
    if value is None:
        return None
    parts = value.split("/")
    try:
        if len(parts) == 1:
            t = parse_date(parts[0])
            return t, t
        if len(parts) == 2 and parts != ["..", ".."]:
            start = parse_date(parts[0]) if parts[0] not in ("", "..") else \
                datetime(1, 1, 1, tzinfo=UTC)
            end = parse_date(parts[1], end=True) if parts[1] not in ("", "..") else \
                datetime(9999, 12, 31, tzinfo=UTC)
            if start <= end:
                return start, end
    except (ValueError, TypeError):
        pass
    raise TileserverError(f"datetime {value[:100]!r} must be an RFC 3339 instant or an "
                          "interval start/end (.. for open)", locator="datetime")


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise TileserverError(f"{name} must be an integer from {low} to {high}",
                              locator=name)
    return int(value)


def _json_value(value):
    """A STAC property value as JSON (what json cannot hold is left out as None)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value if not isinstance(value, float) or math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return None


def _item(product, item) -> dict:
    props = {k: _json_value(v) for k, v in item.properties.items()}
    props["datetime"] = item.datetime.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {
        "stac_version": "1.0.0", "stac_extensions": [], "type": "Feature", "id": item.id,
        "bbox": list(item.bbox), "geometry": mapping(item.geometry), "properties": props,
        "collection": product.id,
        "links": [{"rel": "collection", "type": "application/json",
                   "href": external_url(".collection", collection_id=product.id)}],
        # the files are read by the back-end (load_collection); their paths are not shown
        "assets": {},
    }


def collection_items(collection_id: str):
    """The items of a collection (a STAC ItemCollection page): ``bbox`` (WGS84),
    ``datetime`` (an instant or ``start/end``), ``limit`` and the ``next`` link's
    ``token``."""
    product = _product(collection_id)
    bbox = _bbox_arg(request.args.get("bbox"))
    when = _datetime_arg(request.args.get("datetime"))
    limit = _int_arg("limit", ITEMS_LIMIT, 1, MAX_ITEMS_LIMIT)
    offset = _int_arg("token", 0, 0, 10**9)
    items = product.items_for(bbox, when)
    page = items[offset:offset + limit]
    args = {k: v for k, v in request.args.items() if k in ("bbox", "datetime")}
    links = [{"rel": "self", "type": "application/geo+json", "href": external_url(
        ".collection_items", collection_id=collection_id, **args, limit=limit,
        token=offset)}]
    if offset + limit < len(items):
        links.append({"rel": "next", "type": "application/geo+json", "href": external_url(
            ".collection_items", collection_id=collection_id, **args, limit=limit,
            token=offset + limit)})
    return jsonify({"type": "FeatureCollection", "features": [_item(product, i) for i in page],
                    "numberMatched": len(items), "numberReturned": len(page), "links": links})


def process_descriptions() -> list[dict]:
    """The official description of every 1.x process the engine runs."""
    specs = (load_spec(pid) for pid in supported_v1())
    return [spec for spec in specs if spec]


def processes():
    """The processes (``GET /processes``; from openEO 1.3 on with the ``version`` of the
    openeo-processes set)."""
    body = {"processes": process_descriptions(), "links": []}
    if current().at_least(V1_3):
        body["version"] = PROCESSES_VERSION
    return jsonify(body)
