"""zonal_statistics: a time series of a statistic per user-uploaded region.

A 0.0.2 process without a 1.x equivalent: its translation is a node of the same id, an
executable cube process that the 1.x API does not list (``public=False``)."""

from __future__ import annotations

from tileserver.data.userfiles import (
    InvalidPath,
    parse_graph_path,
    resolve_graph_path,
    user_root,
)
from tileserver.datacube.query import Query
from tileserver.errors import FileNotFound, ProcessGraphError
from tileserver.graph.nodes import IMAGERY
from tileserver.graph.v1 import v1_node
from tileserver.processes.registry import REGISTRY, Param, process
from tileserver.processes.v002.table import Arg, translation
from tileserver.zonal import stats as zonal

_DESCRIPTION = (
    "For each region (polygon) of `regions` and each date of `imagery`, one value of `func` "
    "over the region's pixels (one value per region once the time axis has been reduced; "
    "one per band when several bands are kept). `regions` is a user file path "
    "'/users/<user_id>/files/<path>' of the calling user: a GeoJSON, GeoPackage (every "
    "polygon layer), zipped Shapefile or any polygon file OGR reads, in any CRS, or a "
    "folder ending with '/' (then every region file in it, recursively). "
    "A pixel belongs to a region when its centre lies inside the polygon, on the product's "
    "native grid (holes excluded, multipolygon parts united). A region with no pixel centre "
    "inside (smaller than a pixel) has no value (null) — there is no centroid fallback. "
    "Nodata pixels are ignored; a region, date and band without any valid pixel is null, "
    "for every func (count and sum included); regions outside the data are null. "
    "`std` is the population standard deviation; `median`, `q25`, `q75` are "
    "linear-interpolation percentiles. Only the pixels under the regions' envelopes are "
    "read, at native resolution. The result is a table: output formats GPKG (layer "
    "'regions' with one column per date, and the long table 'timeseries'), GeoJSON, CSV, "
    "JSON."
)


def _check_regions(node) -> str:
    value = node.args["regions"]
    try:
        parse_graph_path(value)
    except InvalidPath as exc:
        raise ProcessGraphError(f"{node.path}.args.regions: {exc.message}",
                                path=f"{node.path}.args.regions") from None
    return value


def _meta(ctx, node):
    _check_regions(node)
    child = ctx.meta(node.args[IMAGERY])
    return child.but(kind="table")


@translation(
    "zonal_statistics",
    "Zonal statistics time series",
    _DESCRIPTION,
    [
        Arg(IMAGERY, "imagery", "The input cube (with or without a time axis)."),
        Arg("regions", "path", "A user file or folder of polygons, e.g. "
            "'/users/me/files/fields.geojson' or '/users/me/files/'."),
        Arg("func", "enum", "The statistic per region and date.", choices=zonal.FUNCS),
    ],
    meta=_meta,
    returns="table",
)
def translate(ctx, node, data):
    """The executable process of the same id, on the translated input."""
    return v1_node("zonal_statistics", node.path, REGISTRY, imagery=data,
                   regions=node.args["regions"], func=node.args["func"])


@process("zonal_statistics", [Param(IMAGERY, "cube"), Param("regions"), Param("func")],
         meta=_meta, returns="table", public=False)
def zonal_statistics(ctx, node, query):
    """Read the calling user's regions and compute the table."""
    context = getattr(ctx, "context", None) or {}
    user, root = context.get("user_id"), context.get("files_root")
    where = f"{node.path}.args.regions"
    if not user or not root:
        raise ProcessGraphError(
            f"{node.path}: zonal_statistics reads the calling user's files; run it with "
            "POST /execute or as a batch job", path=node.path)
    value = _check_regions(node)
    try:
        target = resolve_graph_path(value, root, user)
        regions = zonal.read_regions(zonal.region_files(target, user_root(root, user)))
        imagery = node.args[IMAGERY]
        meta = ctx.meta(imagery)
        grid = zonal.native_grid(meta.product, meta.source_bands)
        return zonal.zonal_statistics(
            lambda view: ctx.eval(imagery, Query(view, query.time)),
            meta, regions, node.args["func"], grid, ctx.engine.max_pixels)
    except (FileNotFound, InvalidPath) as exc:
        raise zonal.RegionsError(f"{where}: {exc.message}", path=where) from None
    except zonal.RegionsError as exc:
        exc.path = exc.path or where
        raise
