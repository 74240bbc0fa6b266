"""``load_collection``, ``load_stac`` (the data leaves: they read only the window, dates and
bands the processes above them need), ``save_result`` and ``export_workspace``."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from rasterio.crs import CRS

from tileserver.data.catalog import FilteredProduct
from tileserver.datacube.cube import Cube
from tileserver.datacube.query import CubeMeta
from tileserver.errors import CollectionNotFound, ProcessArgumentInvalid, ProductNotFound
from tileserver.graph.nodes import Callback, Node
from tileserver.processes.callbacks import run_callback
from tileserver.processes.cube.common import (
    DATA_PARAM,
    check_bbox_area,
    invalid_argument,
    mask_outside,
    resolve_band,
    spatial_extent,
    temporal_extent,
)
from tileserver.processes.registry import Param, process


def _load_meta(ctx, node: Node) -> CubeMeta:
    a = node.args
    cid = collection_id(node, ctx.catalog)
    try:
        product = ctx.catalog.get(cid, node.arg_path("id"))
    except ProductNotFound:
        raise CollectionNotFound(
            f"node '{node.path}': collection {cid!r} does not exist; available: "
            f"{', '.join(p.id for p in ctx.catalog)}", path=node.arg_path("id")) from None
    bands = tuple(product.bands)
    if a.get("bands") is not None:
        wanted = a["bands"]
        if not isinstance(wanted, list) or not wanted:
            raise invalid_argument(node, "bands", "expected a non-empty list of band names")
        bands = tuple(resolve_band(product, bands, b, node, "bands") for b in wanted)
        if len(set(bands)) != len(bands):
            raise invalid_argument(node, "bands", "a band is listed twice")
    if a.get("properties") is not None:
        product = FilteredProduct(product, _property_filter(node, a["properties"]))
    meta = CubeMeta(product, bands, bands)
    if a.get("spatial_extent") is not None:
        bounds, crs, _ = spatial_extent(node, "spatial_extent", a["spatial_extent"])
        check_extent(node, "spatial_extent", bounds, crs, product.crs)
        meta = meta.but(bbox=bounds, srs=crs)
    if a.get("temporal_extent") is not None:
        meta = meta.but(time_range=temporal_extent(node, "temporal_extent",
                                                   a["temporal_extent"]))
    return meta


def _property_filter(node: Node, filters: Any):
    """The predicate on items of ``load_collection``'s ``properties``: every callback
    (its parameter ``value`` is the item's property, null when absent) returns true."""
    if not isinstance(filters, dict) or not all(
            isinstance(k, str) and isinstance(v, Callback) for k, v in filters.items()):
        raise invalid_argument(node, "properties", "expected an object of property names and "
                               "callbacks ({\"eo:cloud_cover\": {\"process_graph\": ...}})")

    def keep(item) -> bool:
        for name, callback in filters.items():
            result = run_callback(callback, {"value": item.properties.get(name)})
            try:
                if result is None or not bool(np.asarray(result).item()):
                    return False
            except (TypeError, ValueError):
                raise invalid_argument(node, "properties", f"the filter of {name!r} returned "
                                       f"{result!r}, not a boolean") from None
        return True

    return keep


def check_extent(node: Node, name: str, bounds, crs: CRS, product_crs: CRS) -> None:
    """The bbox checks of :func:`check_bbox_area`, as a 400 naming the argument."""
    try:
        check_bbox_area(node, bounds, crs, product_crs)
    except ProcessArgumentInvalid:
        raise
    except Exception as exc:  # the 0.0.2 checker words its messages for 0.0.2 arguments
        raise invalid_argument(node, name, getattr(exc, "message", str(exc)).split(": ", 1)[-1]) \
            from None


def geometry_of(node: Node):
    """The GeoJSON geometry of a spatial filter (None for a bounding box)."""
    value = node.args.get("spatial_extent" if node.process_id.startswith("load_") else
                          "geometries" if node.process_id == "filter_spatial" else "extent")
    if isinstance(value, dict) and "type" in value:
        return spatial_extent(node, "geometries", value)[2]
    return None


def wanted_bands(bands: tuple[str, ...], query) -> tuple[str, ...]:
    """The bands of ``bands`` that the query asks for, in their order (at least one)."""
    if query.bands is None:
        return bands
    return tuple(b for b in bands if b in query.bands) or bands[:1]


def _read(ctx, node: Node, query) -> Cube:
    """Read the window, dates and bands that the processes above need."""
    meta = ctx.meta(node)
    q = query
    if meta.time_range is not None:
        q = q.narrow_time(*meta.time_range)
    cube = ctx.engine.load(meta.product, q.with_bands(wanted_bands(meta.bands, query)))
    if meta.bbox is not None and meta.srs is not None:
        cube = mask_outside(cube, meta.bbox, meta.srs, geometry_of(node))
    return cube


def collection_id(node: Node, catalog) -> Any:
    """The collection a ``load_collection`` (its ``id``) or ``load_stac`` (the collection of
    our catalog its URL names) node reads."""
    if node.process_id == "load_collection":
        return node.args.get("id")
    url = node.args.get("url")
    if not isinstance(url, str) or not url:
        raise invalid_argument(node, "url", "expected the URL of a STAC collection")
    parts = [p for p in url.rstrip("/").split("/") if p]
    if parts and parts[-1] in ("collection.json", "catalog.json") and len(parts) > 1:
        parts = parts[:-1]
    ids = {p.id for p in catalog}
    for candidate in reversed(parts[-2:]):
        if candidate in ids:
            return candidate
    raise invalid_argument(node, "url", f"{url!r} is not a collection of this back-end's catalog "
                           f"(one of: {', '.join(sorted(ids))}); other STAC sources are not read")


_LOAD_OPTIONS = [Param("spatial_extent", required=False),
                 Param("temporal_extent", required=False), Param("bands", required=False),
                 Param("properties", required=False)]
process("load_collection", [Param("id"), *_LOAD_OPTIONS], meta=_load_meta)(_read)
process("load_stac", [Param("url"), *_LOAD_OPTIONS], meta=_load_meta)(_read)


def _save_meta(ctx, node):
    fmt = node.args.get("format")
    if not isinstance(fmt, str) or not fmt:
        raise invalid_argument(node, "format", "expected an output format name such as 'GTiff'")
    if node.args.get("options") is not None and not isinstance(node.args["options"], dict):
        raise invalid_argument(node, "options", "expected an object")
    return ctx.meta(node.args["data"])


@process(
    "save_result",
    [DATA_PARAM, Param("format"), Param("options", required=False)],
    meta=_save_meta,
)
def save_result(ctx, node, query):
    """The data; the format is applied by the encoder (``Graph.save_result``)."""
    return ctx.eval(node.args["data"], query)


#: What a workspace id (openEO Workspaces extension) and a ``merge`` path may be.
WORKSPACE_ID = re.compile(r"^[\w\-.~]+$")
MERGE_PATH = re.compile(r"^[\w\-.~]+(/[\w\-.~]+)*$")


def _export_meta(ctx, node):
    data = node.args.get("data")
    if not isinstance(data, Node) or data.process_id != "save_result":
        raise invalid_argument(node, "data", "expected the result of save_result (export_"
                               "workspace exports the files save_result writes)")
    workspace = node.args.get("workspace")
    if not isinstance(workspace, str) or not WORKSPACE_ID.match(workspace):
        raise invalid_argument(node, "workspace", "expected a workspace id (GET /workspaces)")
    merge = node.args.get("merge")
    if merge is not None and (not isinstance(merge, str) or len(merge) > 200
                              or not MERGE_PATH.match(merge)
                              or any(part in (".", "..") for part in merge.split("/"))):
        raise invalid_argument(node, "merge", "expected null or a relative folder of the "
                               "workspace such as 'ndvi/2020' (letters, digits, '-', '_', "
                               "'.', '~' and '/'; no '..')")
    return ctx.meta(data)


@process(
    "export_workspace",
    [DATA_PARAM, Param("workspace"), Param("merge", required=False)],
    meta=_export_meta,
)
def export_workspace(ctx, node, query):
    """The data of its ``save_result``: the batch runner copies the files written to the
    workspace after the job (``Graph.export``)."""
    return ctx.eval(node.args["data"], query)
