"""Bounds moved from one CRS to another: the one place that does it.

The same densified-edge algorithm as ``rasterio.warp.transform_bounds`` (GDAL's
``OCTTransformBounds`` was ported from pyproj's ``transform_bounds``: same results,
antimeridian crossings included), but with the PROJ transformer kept. Building one searches
PROJ's database for the operation (0.2-0.5 ms), and every cold tile moves its bounds at
least twice (to WGS84 for the item search and the cache version, to each file's CRS for
the read window); a kept transformer does it in about 20 µs.

Transformers are kept per thread (pyproj's are not thread-safe), at most
:data:`MAX_TRANSFORMERS` per thread.
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache

import pyproj
from rasterio.crs import CRS

#: Points added along each edge (the value every caller used with rasterio's function).
DENSIFY_PTS = 21
#: Transformers kept per thread (CRS pairs); the set is dropped when it is full.
MAX_TRANSFORMERS = 64

_local = threading.local()


def _proj_crs(crs) -> pyproj.CRS:
    if isinstance(crs, CRS):
        epsg = crs.to_epsg(confidence_threshold=100)
        return pyproj.CRS.from_epsg(epsg) if epsg else pyproj.CRS.from_wkt(crs.to_wkt())
    return pyproj.CRS.from_user_input(crs)


def transformer(src, dst) -> pyproj.Transformer:
    """This thread's transformer from ``src`` to ``dst`` (rasterio CRSs, or anything
    ``CRS.from_user_input`` reads), in x/y (longitude, latitude) order."""
    kept = getattr(_local, "transformers", None)
    if kept is None:
        kept = _local.transformers = {}
    key = (src, dst)
    found = kept.get(key)
    if found is None:
        if len(kept) >= MAX_TRANSFORMERS:
            kept.clear()
        found = kept[key] = pyproj.Transformer.from_crs(_proj_crs(src), _proj_crs(dst),
                                                        always_xy=True)
    return found


def transform_bounds(src, dst, left: float, bottom: float, right: float, top: float,
                     densify_pts: int = DENSIFY_PTS) -> tuple[float, float, float, float]:
    """``(left, bottom, right, top)`` of ``src`` as bounds in ``dst`` (``left > right``
    when they cross the antimeridian of a geographic ``dst``). Raises on a box PROJ cannot
    move (``pyproj.exceptions.ProjError``); may return non-finite values."""
    if src is dst or (type(src) is type(dst) and src == dst):
        return (float(left), float(bottom), float(right), float(top))
    return tuple(transformer(src, dst).transform_bounds(left, bottom, right, top,
                                                        densify_pts=densify_pts))


def wgs84_bounds(view) -> tuple[float, float, float, float] | None:
    """A view's bounds in WGS84 (item searches, cache versions, the planner), or ``None``
    when they have none: a view that does not transform, or to non-finite values.

    Memoised by the CRS's text (a tile's view is moved by its cache key, its evaluation's
    version, the item search and the planner; hashing a CRS object costs more than the
    kept transformer's work)."""
    return _wgs84_bounds(view.crs_key, tuple(view.bounds))


@lru_cache(maxsize=4096)
def _wgs84_bounds(crs_key: str, bounds: tuple) -> tuple[float, float, float, float] | None:
    try:
        bbox = transform_bounds(crs_key, "EPSG:4326", *bounds)
    except Exception:  # noqa: BLE001 - no extent in degrees
        return None
    return tuple(bbox) if all(math.isfinite(v) for v in bbox) else None
