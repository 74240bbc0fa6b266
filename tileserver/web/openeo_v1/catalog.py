"""Collections (STAC, from the catalog) and process descriptions (the official specs)."""

from __future__ import annotations

from flask import jsonify

from tileserver.core.processes import supported_v1
from tileserver.core.processes.specs import load_spec
from tileserver.errors import CollectionNotFound
from tileserver.web.common import external_url, runtime
from tileserver.web.openeo_v1.capabilities import NAME
from tileserver.web.openeo_v1.serializers import collection_json


def _collection(product) -> dict:
    links = [
        {"rel": "self", "href": external_url(f"{NAME}.collection", collection_id=product.id),
         "type": "application/json"},
        {"rel": "root", "href": external_url(f"{NAME}.index"), "type": "application/json"},
        {"rel": "parent", "href": external_url(f"{NAME}.collections"),
         "type": "application/json"},
    ]
    return collection_json(product, links)


def collections():
    """All collections."""
    return jsonify({"collections": [_collection(p) for p in runtime().catalog], "links": []})


def collection(collection_id: str):
    """One collection with its dimensions and bands."""
    catalog = runtime().catalog
    if collection_id not in catalog.products:
        raise CollectionNotFound(f"collection {collection_id!r} does not exist; available: "
                              f"{', '.join(sorted(catalog.products))}")
    return jsonify(_collection(catalog.get(collection_id)))


def process_descriptions() -> list[dict]:
    """The official description of every 1.x process the engine runs."""
    specs = (load_spec(pid) for pid in supported_v1())
    return [spec for spec in specs if spec]


def processes():
    """The processes (``GET /processes``)."""
    return jsonify({"processes": process_descriptions(), "links": []})
