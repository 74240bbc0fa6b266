"""Spectral indices."""

from __future__ import annotations

from tileserver.errors import BandNotFound
from tileserver.graph.nodes import IMAGERY
from tileserver.graph.v1 import v1_node
from tileserver.processes.registry import REGISTRY
from tileserver.processes.v002.table import Arg, translation


def _ndvi_meta(ctx, node):
    child = ctx.meta(node.args[IMAGERY])
    for name in ("red", "nir"):
        band = node.args[name]
        if band not in child.bands:
            raise BandNotFound(
                f"{node.path}.args.{name}: band {band!r} is not in the input; "
                f"available: {', '.join(child.bands)}",
                path=f"{node.path}.args.{name}",
            )
    return child.but(
        bands=("ndvi",), source_bands=(node.args["red"], node.args["nir"]), kind="ndvi"
    )


@translation(
    "NDVI",
    "Normalized Difference Vegetation Index",
    "(nir - red) / (nir + red) per pixel and date, in [-1, 1]. Nodata where either band is "
    "nodata or both are 0.",
    [
        Arg(IMAGERY, "imagery", "The input cube."),
        Arg("red", "band", "Band id of the red band, e.g. 'B04'."),
        Arg("nir", "band", "Band id of the near-infrared band, e.g. 'B08' or 'B8A'."),
    ],
    meta=_ndvi_meta,
)
def ndvi(ctx, node, data):
    """1.x ``ndvi`` (the bands dimension is dropped)."""
    return v1_node("ndvi", node.path, REGISTRY, data=data, red=node.args["red"],
                   nir=node.args["nir"])
