"""Spectral indices."""

from __future__ import annotations

import numpy as np

from tileserver.graph.nodes import IMAGERY
from tileserver.graph.v1 import v1_node
from tileserver.processes.registry import Param, register
from tileserver.errors import BandNotFound


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


@register(
    "NDVI",
    "Normalized Difference Vegetation Index",
    "(nir - red) / (nir + red) per pixel and date, in [-1, 1]. Nodata where either band is "
    "nodata or both are 0.",
    [
        Param(IMAGERY, "imagery", "The input cube."),
        Param("red", "band", "Band id of the red band, e.g. 'B04'."),
        Param("nir", "band", "Band id of the near-infrared band, e.g. 'B08' or 'B8A'."),
    ],
    meta=_ndvi_meta,
    translation=True,
)
def ndvi(ctx, node, data):
    """1.x ``ndvi`` (the bands dimension is dropped)."""
    return v1_node("ndvi", node.path, data=data, red=node.args["red"], nir=node.args["nir"])


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)`` as float32; nodata where either is nodata or both are 0."""
    den = np.add(a, b, dtype=np.float32)
    out = np.subtract(a, b, dtype=np.float32)  # divided in place: no other full-size copy
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(out, den, out=out)
    out[~np.isfinite(den) | (den == 0)] = np.nan  # nodata, or both 0
    return out
