"""Helpers shared by the cube processes and by the 0.0.2 translations: bbox checks, masking
outside an extent, the normalised difference."""

from __future__ import annotations

import numpy as np
from rasterio.crs import CRS
from rasterio.features import geometry_mask
from rasterio.warp import transform_bounds, transform_geom
from shapely.geometry import box, mapping

from tileserver.errors import ProcessGraphError


def check_bbox_area(node, bounds, crs: CRS, product_crs: CRS) -> None:
    """A 400 when the bbox is outside its CRS's valid range or cannot reach the data's CRS
    (e.g. UTM metres given with ``srs`` EPSG:4326)."""
    path = f"{node.path}.args"
    if crs.is_geographic and not (-360 <= bounds[0] and bounds[2] <= 360
                                  and -90 <= bounds[1] and bounds[3] <= 90):
        raise ProcessGraphError(
            f"{path}: bbox {bounds} is outside the longitude/latitude range of "
            f"{node.args.get('srs') or 'EPSG:4326'} (are these projected coordinates? "
            "then set 'srs')", path=f"{path}.srs")
    try:
        moved = transform_bounds(crs, product_crs, *bounds, densify_pts=21)
    except Exception:  # noqa: BLE001 - PROJ refuses
        moved = (float("nan"),) * 4
    if not all(np.isfinite(moved)):
        raise ProcessGraphError(
            f"{path}: bbox {bounds} in {node.args.get('srs') or 'EPSG:4326'} cannot be "
            f"transformed to the data's CRS {product_crs.to_string()}", path=f"{path}.srs")


def intersect_inner(node, bounds, crs: CRS, child) -> tuple[float, float, float, float]:
    """A filter_bbox below this one narrows the extent: the native extent is the overlap."""
    if child.bbox is None or child.srs is None:
        return bounds
    inner = child.bbox
    if child.srs != crs:
        try:
            inner = transform_bounds(child.srs, crs, *inner, densify_pts=21)
        except Exception:  # noqa: BLE001 - not representable: keep this bbox
            return bounds
        if not all(np.isfinite(inner)):
            return bounds
    out = (max(bounds[0], inner[0]), max(bounds[1], inner[1]),
           min(bounds[2], inner[2]), min(bounds[3], inner[3]))
    if out[0] >= out[2] or out[1] >= out[3]:
        raise ProcessGraphError(
            f"{node.path}.args: the bbox does not overlap the bbox of the filter_bbox below it "
            "(the result would be empty)", path=f"{node.path}.args")
    return out


def mask_outside(cube, bounds, crs: CRS, geometry: dict | None = None):
    """Pixels whose centre lies outside ``bounds`` (or ``geometry``, GeoJSON in ``crs``)
    become nodata; a view entirely inside is returned untouched (no copy)."""
    view = cube.view
    try:
        vb = transform_bounds(view.crs, crs, *view.bounds, densify_pts=21)
        inside = (vb[0] >= bounds[0] and vb[1] >= bounds[1]
                  and vb[2] <= bounds[2] and vb[3] <= bounds[3])
    except Exception:  # noqa: BLE001 - view not representable in the bbox CRS
        inside = False
    if inside and geometry is None:
        return cube
    if geometry is None:
        geometry = mapping(box(*bounds).segmentize(
            max(bounds[2] - bounds[0], bounds[3] - bounds[1]) / 64))
    try:
        geom = transform_geom(crs, view.crs, geometry)
        outside = geometry_mask([geom], (view.height, view.width), view.transform)
    except Exception:  # noqa: BLE001
        outside = np.ones((view.height, view.width), dtype=bool)
    if not outside.any():
        return cube
    data = cube.data.copy()
    data[:, :, outside] = np.nan
    return cube.with_data(data)


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)`` as float32; nodata where either is nodata or both are 0."""
    den = np.add(a, b, dtype=np.float32)
    out = np.subtract(a, b, dtype=np.float32)  # divided in place: no other full-size copy
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(out, den, out=out)
    out[~np.isfinite(den) | (den == 0)] = np.nan  # nodata, or both 0
    return out
