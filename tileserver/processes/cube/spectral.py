"""Spectral indices: ``ndvi``."""

from __future__ import annotations

import numpy as np

from tileserver.processes.cube.common import (
    DATA_PARAM,
    invalid_argument,
    normalized_difference,
    resolve_band,
)
from tileserver.processes.registry import Param, process


def _ndvi_bands(ctx, node) -> tuple[str, str]:
    child = ctx.meta(node.args["data"])
    if not child.has_bands:
        raise invalid_argument(node, "data", "the bands dimension was already reduced")
    return (resolve_band(child.product, child.bands, node.args.get("red", "red"), node, "red"),
            resolve_band(child.product, child.bands, node.args.get("nir", "nir"), node, "nir"))


def _ndvi_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    red, nir = _ndvi_bands(ctx, node)
    target = node.args.get("target_band")
    if target is not None:
        if not isinstance(target, str) or not target or target in child.bands:
            raise invalid_argument(node, "target_band", f"{target!r} must be a new band name")
        return child.but(bands=child.bands + (target,))
    return child.but(bands=("ndvi",), source_bands=(red, nir), kind="ndvi", has_bands=False)


@process("ndvi", [DATA_PARAM, Param("nir", required=False, default="nir"),
                  Param("red", required=False, default="red"),
                  Param("target_band", required=False)], meta=_ndvi_meta)
def ndvi(ctx, node, query):
    """(nir - red) / (nir + red), reading only the two bands unless they are kept."""
    red, nir = _ndvi_bands(ctx, node)
    target = node.args.get("target_band")
    if target is None:
        cube = ctx.eval(node.args["data"], query.with_bands((red, nir)))
        out = normalized_difference(cube.data[:, cube.bands.index(nir)],
                                    cube.data[:, cube.bands.index(red)])
        return cube.with_data(out[:, None], bands=("ndvi",), kind="ndvi")
    meta = ctx.meta(node)
    keep = meta.bands[:-1] if query.bands is None else tuple(
        b for b in meta.bands[:-1] if b in query.bands)
    cube = ctx.eval(node.args["data"], query.with_bands(tuple(dict.fromkeys(
        keep + (red, nir)))))
    out = normalized_difference(cube.data[:, cube.bands.index(nir)],
                                cube.data[:, cube.bands.index(red)])
    data = np.concatenate([cube.data[:, [cube.bands.index(b) for b in keep]], out[:, None]],
                          axis=1)
    return cube.with_data(data, bands=keep + (target,))
