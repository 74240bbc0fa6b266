"""Spatial aggregation: ``aggregate_spatial`` (the zonal statistics engine)."""

from __future__ import annotations

from dataclasses import replace

from shapely.geometry import shape

from tileserver.datacube.query import Query
from tileserver.graph.nodes import Node
from tileserver.processes.callbacks import root_process
from tileserver.processes.cube.common import (
    CONTEXT_PARAM,
    DATA_PARAM,
    geojson_geometries,
    invalid_argument,
)
from tileserver.processes.registry import Param, process
from tileserver.zonal import stats as zonal
from tileserver.zonal.tables import Regions

#: openEO reducers that the zonal statistics compute exactly (``sd`` is the sample standard
#: deviation in openEO, the zonal ``std`` the population one: not mapped).
ZONAL_REDUCERS = {"mean": "avg", "min": "min", "max": "max", "median": "median",
                  "count": "count", "sum": "sum"}


def feature_properties(value: dict) -> list[dict]:
    """The ``properties`` of each feature of GeoJSON ``geometries`` (one region each; ``{}``
    for a bare geometry)."""
    if value.get("type") == "FeatureCollection":
        return [p for f in value.get("features") or [] for p in feature_properties(f)]
    if value.get("type") == "Feature":
        props = value.get("properties")
        return [props if isinstance(props, dict) else {}]
    return [{}]


def _attributes(properties: list[dict]) -> dict[str, list]:
    """Per property name (in order of appearance), its value in each region (or null)."""
    names = list(dict.fromkeys(str(k) for props in properties for k in props))
    return {name: [props.get(name) for props in properties] for name in names}


def _zonal_regions(node: Node):
    value = node.args.get("geometries")
    if isinstance(value, dict) and "type" in value:
        geoms = [shape(g) for g in geojson_geometries(node, "geometries", value,
                                                      points=True)]
        if len(geoms) > zonal.MAX_REGIONS:
            raise invalid_argument(node, "geometries", f"more than {zonal.MAX_REGIONS} polygons")
        properties = feature_properties(value)
        # the input features' properties go into every vector output (not JSON's series)
        attributes = _attributes(properties) if len(properties) == len(geoms) else {}
        return Regions(geoms, zonal.WGS84, ["geometries"] * len(geoms), attributes)
    raise invalid_argument(node, "geometries", "expected GeoJSON polygons or points (a Polygon, "
                           "MultiPolygon, Point, MultiPoint, Feature or FeatureCollection); for "
                           "uploaded region files use the 0.0.2 zonal_statistics process")


def _zonal_func(node: Node) -> str:
    reducer = node.args["reducer"]
    root = root_process(reducer)
    if root not in ZONAL_REDUCERS or not isinstance(reducer.root, Node) or any(
            isinstance(v, Node) for v in reducer.root.args.values()):
        raise invalid_argument(node, "reducer", f"a single reducer of {', '.join(ZONAL_REDUCERS)} "
                               "applied to the pixels is supported")
    return ZONAL_REDUCERS[root]


def _aggregate_spatial_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    _zonal_regions(node)
    _zonal_func(node)
    if node.args.get("target_dimension") not in (None, "result"):
        raise invalid_argument(node, "target_dimension", "only the default 'result' is supported")
    return child.but(kind="table")


@process("aggregate_spatial", [DATA_PARAM, Param("geometries"),
                               Param("reducer", "callback",
                                     callback_params=("data", "context")),
                               Param("target_dimension", required=False,
                                     default="result"), CONTEXT_PARAM],
         meta=_aggregate_spatial_meta, returns="table")
def aggregate_spatial(ctx, node, query):
    """Zonal statistics per polygon, date and band (the 0.0.2 ``zonal_statistics`` engine:
    only the pixels under the polygons are read, at native resolution)."""
    data = node.args["data"]
    meta = ctx.meta(data)
    grid = zonal.native_grid(meta.product, meta.product_bands)
    table = zonal.zonal_statistics(lambda view: ctx.eval(data, Query(view, query.time)),
                                   meta, _zonal_regions(node), _zonal_func(node), grid,
                                   ctx.engine.max_pixels)
    # openEO's JSON of aggregate_spatial (what the clients' tools read)
    return replace(table, json_shape="timeseries")
