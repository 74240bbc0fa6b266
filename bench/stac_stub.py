"""A minimal STAC API over a static catalog's collection, for peers that only read STAC APIs
(titiler-openeo): landing page, conformance, ``/collections``, ``/collections/{id}``,
``/collections/{id}/items`` and ``/search`` (GET and POST: collections, bbox, datetime,
limit). Items are served with absolute asset hrefs. Not a benchmark itself.

    with StacStub(catalog_json) as url: ...
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from datetime import datetime
from pathlib import Path

from flask import Flask, jsonify, request
from werkzeug.serving import make_server

CONFORMS = ["https://api.stacspec.org/v1.0.0/core",
            "https://api.stacspec.org/v1.0.0/collections",
            "https://api.stacspec.org/v1.0.0/item-search",
            "https://api.stacspec.org/v1.0.0/ogcapi-features",
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"]


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def load(catalog_json: Path) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """Collections and their items (absolute asset hrefs) of a static catalog."""
    root = catalog_json.parent
    collections, items = {}, {}
    for link in json.loads(catalog_json.read_text())["links"]:
        if link["rel"] != "child":
            continue
        cpath = (root / link["href"]).resolve()
        col = json.loads(cpath.read_text())
        collections[col["id"]] = col
        items[col["id"]] = []
        for ilink in col["links"]:
            if ilink["rel"] != "item":
                continue
            ipath = (cpath.parent / ilink["href"]).resolve()
            item = json.loads(ipath.read_text())
            for asset in item["assets"].values():
                # file:// (a bare absolute path would resolve against the API URL)
                asset["href"] = (ipath.parent / asset["href"]).resolve().as_uri()
            item["collection"] = col["id"]
            items[col["id"]].append(item)
    return collections, items


def app_for(catalog_json: Path, base: str) -> Flask:
    collections, items = load(catalog_json)
    app = Flask(__name__)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

    def links_of(col: dict) -> dict:
        out = {k: v for k, v in col.items() if k != "links"}
        out["links"] = [{"rel": "self", "href": f"{base}/collections/{col['id']}"},
                        {"rel": "items", "href": f"{base}/collections/{col['id']}/items"},
                        {"rel": "root", "href": f"{base}/"}]
        return out

    def item_links(item: dict) -> dict:
        out = {k: v for k, v in item.items() if k != "links"}
        out["links"] = [{"rel": "self", "href":
                         f"{base}/collections/{item['collection']}/items/{item['id']}"},
                        {"rel": "collection", "href": f"{base}/collections/{item['collection']}"},
                        {"rel": "root", "href": f"{base}/"}]
        return out

    @app.get("/")
    def landing():
        return jsonify({"type": "Catalog", "id": "stub", "stac_version": "1.0.0",
                        "description": "STAC API stub", "conformsTo": CONFORMS, "links": [
                            {"rel": "self", "href": f"{base}/"},
                            {"rel": "root", "href": f"{base}/"},
                            {"rel": "conformance", "href": f"{base}/conformance"},
                            {"rel": "data", "href": f"{base}/collections"},
                            {"rel": "search", "href": f"{base}/search", "method": "GET",
                             "type": "application/geo+json"},
                            {"rel": "search", "href": f"{base}/search", "method": "POST",
                             "type": "application/geo+json"}]})

    @app.get("/conformance")
    def conformance():
        return jsonify({"conformsTo": CONFORMS})

    @app.get("/collections")
    def list_collections():
        return jsonify({"collections": [links_of(c) for c in collections.values()],
                        "links": [{"rel": "self", "href": f"{base}/collections"}]})

    @app.get("/collections/<cid>")
    def one_collection(cid):
        if cid not in collections:
            return jsonify({"code": "NotFound"}), 404
        return jsonify(links_of(collections[cid]))

    def search(params: dict):
        cids = params.get("collections") or list(collections)
        if isinstance(cids, str):
            cids = cids.split(",")
        bbox = params.get("bbox")
        if isinstance(bbox, str):
            bbox = [float(v) for v in bbox.split(",")]
        interval = params.get("datetime")
        found = []
        for cid in cids:
            for item in items.get(cid, []):
                if bbox:
                    b = item["bbox"]
                    if b[2] < bbox[0] or b[0] > bbox[2] or b[3] < bbox[1] or b[1] > bbox[3]:
                        continue
                if interval:
                    start, _, end = interval.partition("/") if "/" in interval \
                        else (interval, "/", interval)
                    when = _when(item["properties"]["datetime"])
                    if start not in ("", "..") and when < _when(start):
                        continue
                    if end not in ("", "..") and when > _when(end):
                        continue
                found.append(item_links(item))
        limit = int(params.get("limit") or 100)
        return jsonify({"type": "FeatureCollection", "features": found[:limit],
                        "numberMatched": len(found), "numberReturned": len(found[:limit]),
                        "links": []})

    @app.route("/search", methods=["GET", "POST"])
    def search_route():
        return search(request.get_json() if request.method == "POST" else request.args)

    @app.get("/collections/<cid>/items")
    def collection_items(cid):
        return search({**request.args, "collections": [cid]})

    return app


class StacStub:
    """The stub on a free loopback port, in a thread."""

    def __init__(self, catalog_json: Path):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server("127.0.0.1", self.port, app_for(catalog_json, self.url),
                                  threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
