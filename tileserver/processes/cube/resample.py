"""Resampling: ``resample_spatial``, ``resample_cube_spatial``."""

from __future__ import annotations

import math

from rasterio.crs import CRS

from tileserver.datacube.query import CubeMeta
from tileserver.processes.cube.common import DATA_PARAM, crs_argument, invalid_argument
from tileserver.processes.registry import Param, process

#: resample_spatial's methods as the resampling of GDAL's warper (rasterio's names).
RESAMPLING = {"near": "nearest", "bilinear": "bilinear", "cubic": "cubic",
              "cubicspline": "cubic_spline", "lanczos": "lanczos", "average": "average",
              "mode": "mode", "min": "min", "max": "max", "med": "med", "q1": "q1",
              "q3": "q3", "rms": "rms", "sum": "sum"}


def _resample_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    res = node.args.get("resolution", 0)
    values = res if isinstance(res, list) else [res]
    if not values or any(isinstance(v, bool) or not isinstance(v, int | float)
                         or not math.isfinite(v) or v < 0 for v in values):
        raise invalid_argument(node, "resolution", "expected a number >= 0 or [x, y] numbers")
    proj = node.args.get("projection")
    crs = crs_argument(node, "projection", proj) if proj is not None else None
    if node.args.get("method", "near") not in RESAMPLING:
        raise invalid_argument(node, "method", f"unknown method {node.args['method']!r}; one of "
                               f"{', '.join(RESAMPLING)}")
    return child.but(native_res=float(max(values)) or None, native_crs=crs)


@process("resample_spatial", [DATA_PARAM, Param("resolution", required=False, default=0),
                              Param("projection", required=False),
                              Param("method", required=False, default="near"),
                              Param("align", required=False, default="upper-left")],
         meta=_resample_meta)
def resample_spatial(ctx, node, query):
    """The native grid of the result changes (for /result and batch jobs); tiles and
    coverages keep choosing their own grid, read from the fitting overview. Everywhere the
    files are warped onto the grid with ``method``."""
    return ctx.eval(node.args["data"], query.with_resampling(
        RESAMPLING[node.args.get("method", "near")]))


def native_grid_of(meta: CubeMeta) -> tuple[CRS, float]:
    """``(crs, resolution)`` of the native grid of a cube: resample_spatial's, else the
    collection's CRS at the finest resolution of the bands read."""
    product = meta.product
    crs = meta.native_crs or product.crs
    if meta.native_res:
        return crs, meta.native_res
    res = min(product.bands[b].res_m for b in meta.product_bands)
    return crs, res / 111_320.0 if crs.is_geographic else res


def _resample_cube_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    target = ctx.meta(node.args["target"])
    if node.args.get("method", "near") not in RESAMPLING:
        raise invalid_argument(node, "method", f"unknown method {node.args['method']!r}; one of "
                               f"{', '.join(RESAMPLING)}")
    crs, res = native_grid_of(target)
    return child.but(native_res=res, native_crs=crs)


@process("resample_cube_spatial", [DATA_PARAM, Param("target", "cube"),
                                   Param("method", required=False, default="near")],
         meta=_resample_cube_meta)
def resample_cube_spatial(ctx, node, query):
    """``data`` on the CRS and resolution of ``target``'s native grid (only its grid is
    used: ``target`` is not read); the files are warped with ``method``."""
    return ctx.eval(node.args["data"], query.with_resampling(
        RESAMPLING[node.args.get("method", "near")]))
