"""Warped views of a file kept open per tile lattice: a tile's warp without GDAL's setup.

A cold tile warped on its own (``rasterio.warp.reproject`` of the window read for it) pays
GDAL's set-up on every call: two in-memory datasets, the coordinate transformation, the
warp operation (about 1.2 ms of a 2.1 ms warp of 256² pixels), besides reading a padded
float32 window. A tile matrix is a fixed lattice of pixels, though: every tile of one zoom
level is a block of the same grid. So the reader keeps, per file, overview level and
lattice, one GDAL warped VRT (``VRTWarpedDataset``) over the file's footprint on that
lattice, with blocks the size of a tile and aligned with the tiles; a tile is then one
block read of that dataset. GDAL sets the warp up once, warps only the block asked for
(reading its source blocks through the block cache) and keeps the warped block in its
block cache. The handles are pooled like any other (:mod:`tileserver.data.handles`).

The values are those of the per-tile warp: the same kernel, the same approximation
(GDAL's default error of 0.125 pixels, evaluated along each row of the block, which is the
row of the tile), the same source pixels. :func:`tileserver.data.reader.read_window` takes
this path only where that holds, checked bit for bit by
``tests/unit/data/test_warp_identity.py``: nearest neighbour; a tile whose padded source
window lies inside the file (over the edges GDAL splits the warp of a tile differently);
no datum change (the coordinate operation then cannot depend on the area); nodata as a
value, not a mask.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache

from affine import Affine
from rasterio.crs import CRS

from tileserver.datacube.bounds import transform_bounds
from tileserver.datacube.view import Lattice, View

#: GDAL's default error of its approximate transformer (pixels), as reproject uses it.
MAX_ERROR = 0.125


@dataclass(frozen=True)
class LatticeGrid:
    """The part of a lattice a warped VRT covers: whole tiles around a file's footprint."""

    transform: Affine
    width: int
    height: int


def lattice_grid(lattice: Lattice, crs: CRS, src_crs: CRS,
                 src_bounds: tuple[float, float, float, float]) -> LatticeGrid | None:
    """The whole tiles of ``lattice`` (in ``crs``) that the file's bounds (in ``src_crs``)
    touch, or None when they cannot be placed on it."""
    try:
        left, bottom, right, top = transform_bounds(src_crs, crs, *src_bounds, densify_pts=21)
    except Exception:  # noqa: BLE001 - outside the CRS's area of use
        return None
    if not all(map(math.isfinite, (left, bottom, right, top))):
        return None
    x0, y0 = lattice.origin
    tw, th = lattice.tile_span
    col0 = math.floor((left - x0) / tw)
    col1 = math.ceil((right - x0) / tw)
    row0 = math.floor((y0 - top) / th)
    row1 = math.ceil((y0 - bottom) / th)
    if col1 <= col0 or row1 <= row0:
        return None
    width = (col1 - col0) * lattice.tile_width
    height = (row1 - row0) * lattice.tile_height
    if width > 2**31 - 1 or height > 2**31 - 1:
        return None
    return LatticeGrid(Affine(lattice.cell[0], 0.0, x0 + col0 * tw, 0.0, -lattice.cell[1],
                              y0 - row0 * th), width, height)


def block_of(grid: LatticeGrid, view: View) -> tuple[int, int] | None:
    """``(col, row)`` of the view's upper-left pixel in ``grid`` when the view is a whole
    tile of it, else None."""
    t = grid.transform
    col = (view.bounds[0] - t.c) / t.a
    row = (t.f - view.bounds[3]) / -t.e
    c, r = round(col), round(row)
    if abs(col - c) > 1e-6 or abs(row - r) > 1e-6:
        return None
    if c < 0 or r < 0 or c + view.width > grid.width or r + view.height > grid.height:
        return None
    return c, r


def _gt(transform: Affine) -> str:
    return ",".join(repr(float(v)) for v in transform.to_gdal())


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs) -> ET.Element:
    node = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        node.text = text
    return node


@lru_cache(maxsize=1024)
def warped_vrt(source: str, src_transform: Affine, src_crs_wkt: str, count: int,
               nodata: float | None, grid: LatticeGrid, crs_wkt: str, block: tuple[int, int]
               ) -> str:
    """The XML of a float32 ``VRTWarpedDataset`` of all ``count`` bands of ``source`` (a
    GDAL path, an overview as ``vrt://...?ovr=N``) on ``grid``, nearest neighbour, NaN
    where nothing maps, ``nodata`` (None: none) masked in the source."""
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height),
                      subClass="VRTWarpedDataset")
    _sub(root, "SRS", crs_wkt)
    _sub(root, "GeoTransform", _gt(grid.transform))
    for b in range(1, count + 1):
        band = _sub(root, "VRTRasterBand", dataType="Float32", band=b,
                    subClass="VRTWarpedRasterBand")
        _sub(band, "NoDataValue", "nan")
    _sub(root, "BlockXSize", str(block[0]))
    _sub(root, "BlockYSize", str(block[1]))
    opts = _sub(root, "GDALWarpOptions")
    _sub(opts, "WarpMemoryLimit", str(64 * 2**20))
    _sub(opts, "ResampleAlg", "NearestNeighbour")
    _sub(opts, "WorkingDataType", "Float32")
    _sub(opts, "Option", "NO_DATA", name="INIT_DEST")
    _sub(opts, "SourceDataset", source, relativeToVRT="0")
    approx = _sub(_sub(opts, "Transformer"), "ApproxTransformer")
    _sub(approx, "MaxError", repr(MAX_ERROR))
    gen = _sub(_sub(approx, "BaseTransformer"), "GenImgProjTransformer")
    _sub(gen, "SrcGeoTransform", _gt(src_transform))
    _sub(gen, "SrcInvGeoTransform", _gt(~src_transform))
    _sub(gen, "DstGeoTransform", _gt(grid.transform))
    _sub(gen, "DstInvGeoTransform", _gt(~grid.transform))
    proj = _sub(_sub(gen, "ReprojectTransformer"), "ReprojectionTransformer")
    _sub(proj, "SourceSRS", src_crs_wkt)
    _sub(proj, "TargetSRS", crs_wkt)
    bands = _sub(opts, "BandList")
    for b in range(1, count + 1):
        mapping = _sub(bands, "BandMapping", src=b, dst=b)
        if nodata is not None:
            _sub(mapping, "SrcNoDataReal", repr(float(nodata)))
        _sub(mapping, "DstNoDataReal", "nan")
    return ET.tostring(root, encoding="unicode")
