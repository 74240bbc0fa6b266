"""A synthetic collection of 10 000 items spread over Europe, for STAC API searches and
start-up measurements: 100 cells of 0.5 x 0.5 degrees on a 10 x 10 grid (9 W to 31 E,
36 N to 66 N), 100 acquisitions per cell (every 3 days of 2020). Each cell has two small
COGs (bands B04 and B08, EPSG:4326, uint16, nodata 0) shared by its acquisitions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

COLLECTION = "CONTINENT"
NX = NY = 10
DATES = 100
CELL = 0.5
PX = 64
START = datetime(2020, 1, 1, 10, 0, tzinfo=UTC)
BANDS = ("B04", "B08")


def cell_origin(i: int, j: int) -> tuple[float, float]:
    """West and north edges of cell ``(i, j)``."""
    return -9.0 + 4.0 * i, 36.0 + 3.0 * j + CELL


def cell_bbox(i: int, j: int) -> tuple[float, float, float, float]:
    west, north = cell_origin(i, j)
    return (west, north - CELL, west + CELL, north)


def when(k: int) -> datetime:
    return START + timedelta(days=3 * k)


def write_files(directory: Path) -> Path:
    """The 200 COGs (idempotent)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(NX):
        for j in range(NY):
            west, north = cell_origin(i, j)
            for b, band in enumerate(BANDS):
                path = directory / f"c{i}{j}_{band}.tif"
                if path.exists():
                    continue
                yy, xx = np.mgrid[0:PX, 0:PX]
                data = (1000 + 100 * i + 10 * j + 3000 * b + xx + yy).astype("uint16")
                data[:2, :2] = 0  # some nodata
                profile = {"driver": "COG", "width": PX, "height": PX, "count": 1,
                           "dtype": "uint16", "nodata": 0, "crs": "EPSG:4326",
                           "transform": from_origin(west, north, CELL / PX, CELL / PX),
                           "blocksize": 128}
                tmp = path.with_suffix(".tmp.tif")
                with rasterio.open(tmp, "w", **profile) as dst:
                    dst.write(data, 1)
                tmp.rename(path)
    return directory


def collection() -> dict:
    """The collection's JSON (with ``item_assets``: bands known without reading a file)."""
    res_m = CELL / PX * 111_320.0
    return {
        "type": "Collection", "stac_version": "1.0.0", "id": COLLECTION,
        "description": "10 000 synthetic items over Europe", "license": "CC0-1.0",
        "extent": {"spatial": {"bbox": [[-9.0, 36.0, 27.5 + CELL, 63.5 + CELL]]},
                   "temporal": {"interval": [[when(0).isoformat(),
                                              when(DATES - 1).isoformat()]]}},
        "summaries": {"proj:epsg": [4326]},
        "item_assets": {band: {"type": "image/tiff; application=geotiff; "
                               "profile=cloud-optimized", "roles": ["data"],
                               "raster:bands": [{"data_type": "uint16", "nodata": 0,
                                                 "spatial_resolution": res_m}]}
                        for band in BANDS},
        "links": [],
    }


def items(base_href: str):
    """The 10 000 items' JSON; assets at ``{base_href}/c{i}{j}_{band}.tif``."""
    for k in range(DATES):
        for i in range(NX):
            for j in range(NY):
                w, s, e, n = cell_bbox(i, j)
                yield {
                    "type": "Feature", "stac_version": "1.0.0", "id": f"c{i}{j}-{k:03d}",
                    "collection": COLLECTION, "bbox": [w, s, e, n],
                    "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n],
                                                                     [w, n], [w, s]]]},
                    "properties": {"datetime": when(k).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                   "proj:epsg": 4326},
                    "assets": {band: {"href": f"{base_href}/c{i}{j}_{band}.tif",
                                      "type": "image/tiff; application=geotiff",
                                      "roles": ["data"]} for band in BANDS},
                    "links": [],
                }


def write_static(directory: Path, base_href: str) -> Path:
    """The same collection as a static ``collection.json`` with one JSON file per item."""
    directory.mkdir(parents=True, exist_ok=True)
    col = collection()
    links = [{"rel": "root", "href": "./collection.json"}]
    for item in items(base_href):
        name = f"items/{item['id']}.json"
        item["links"] = [{"rel": "collection", "href": "../collection.json"},
                         {"rel": "root", "href": "../collection.json"}]
        path = directory / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(item))
        links.append({"rel": "item", "href": f"./{name}", "type": "application/geo+json"})
    col["links"] = links
    out = directory / "collection.json"
    out.write_text(json.dumps(col))
    return out
