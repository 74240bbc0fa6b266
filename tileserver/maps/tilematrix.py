"""Tile matrix sets (OGC WMTS 1.0.0 / 2D-TMS): tiles to views, limits, scale denominators.

Built from morecantile's definitions: ``GoogleMapsCompatible`` is morecantile's
``WebMercatorQuad`` (EPSG:3857, the well-known GoogleMapsCompatible scale set) and
``WorldCRS84Quad`` is the CRS84 (longitude, latitude) quad with two tiles at level 0.
No HTTP in here: the WMTS and XYZ protocol modules call these functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import morecantile
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS

from tileserver.datacube.bounds import transform_bounds
from tileserver.datacube.view import Lattice, View

#: The standardised rendering pixel size of WMTS 1.0.0 (0.28 mm).
PIXEL_SIZE_M = 0.00028
#: Metres per degree on the equator of the WGS84 ellipsoid (WMTS 1.0.0 annex E).
METRES_PER_DEGREE = 2 * math.pi * 6378137.0 / 360.0
#: Web Mercator cannot show the poles.
MAX_MERCATOR_LAT = 85.0511287798066

WGS84 = CRS.from_epsg(4326)


@dataclass(frozen=True)
class TileMatrix:
    """One zoom level: ``identifier`` is its zoom number as a string."""

    identifier: str
    cell_size: float  # CRS units per pixel
    scale_denominator: float
    origin: tuple[float, float]  # top-left corner in x/y (east/north) order
    tile_width: int
    tile_height: int
    matrix_width: int
    matrix_height: int

    @property
    def span(self) -> tuple[float, float]:
        """Size of one tile in CRS units (x, y)."""
        return self.cell_size * self.tile_width, self.cell_size * self.tile_height


@dataclass(frozen=True)
class TileMatrixSet:
    """A tile matrix set as WMTS capabilities describe it."""

    identifier: str
    supported_crs: str  # the URN clients see
    view_crs: CRS  # the CRS of views (rasterio, x/y = east/north order)
    well_known_scale_set: str | None
    matrices: tuple[TileMatrix, ...]

    def matrix(self, identifier: str) -> TileMatrix | None:
        """The matrix with this identifier, or ``None``."""
        for m in self.matrices:
            if m.identifier == identifier:
                return m
        return None

    def top_left_text(self, matrix: TileMatrix) -> str:
        """``TopLeftCorner`` in the axis order of :attr:`supported_crs` as written."""
        return corner_text(self.supported_crs, *matrix.origin)

    def bounds(self) -> tuple[float, float, float, float]:
        """The full extent of the set in :attr:`view_crs`."""
        m = self.matrices[0]
        left, top = m.origin
        sx, sy = m.span
        return left, top - sy * m.matrix_height, left + sx * m.matrix_width, top


def axis_order_is_yx(crs_urn: str) -> bool:
    """Whether the first axis of the CRS (as written, e.g. EPSG:4326) is north/south."""
    axes = ProjCRS.from_user_input(crs_urn).axis_info
    return bool(axes) and axes[0].direction.lower() in ("north", "south")


def corner_text(crs_urn: str, x: float, y: float) -> str:
    """A coordinate pair ``x y`` (east north) written in the CRS's own axis order."""
    a, b = (y, x) if axis_order_is_yx(crs_urn) else (x, y)
    return f"{a!r} {b!r}"


def _from_morecantile(name: str, identifier: str, urn: str, view_crs: CRS,
                      wkss: str | None, max_zoom: int) -> TileMatrixSet:
    tms = morecantile.tms.get(name)
    metres_per_unit = METRES_PER_DEGREE if view_crs.is_geographic else 1.0
    matrices = []
    for m in tms.tileMatrices[: max_zoom + 1]:
        matrices.append(TileMatrix(
            identifier=str(m.id),
            cell_size=float(m.cellSize),
            scale_denominator=float(m.cellSize) * metres_per_unit / PIXEL_SIZE_M,
            origin=(float(m.pointOfOrigin[0]), float(m.pointOfOrigin[1])),
            tile_width=int(m.tileWidth),
            tile_height=int(m.tileHeight),
            matrix_width=int(m.matrixWidth),
            matrix_height=int(m.matrixHeight),
        ))
    return TileMatrixSet(identifier, urn, view_crs, wkss, tuple(matrices))


@cache
def tile_matrix_sets() -> dict[str, TileMatrixSet]:
    """The tile matrix sets every layer offers, by identifier."""
    return {
        "GoogleMapsCompatible": _from_morecantile(
            "WebMercatorQuad", "GoogleMapsCompatible", "urn:ogc:def:crs:EPSG::3857",
            CRS.from_epsg(3857), "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible", 18),
        "WorldCRS84Quad": _from_morecantile(
            "WorldCRS84Quad", "WorldCRS84Quad", "urn:ogc:def:crs:OGC:1.3:CRS84",
            CRS.from_epsg(4326), None, 17),
    }


def get_tms(identifier: str) -> TileMatrixSet | None:
    """A tile matrix set by identifier, or ``None``."""
    return tile_matrix_sets().get(identifier)


def tile_bounds(tms: TileMatrixSet, matrix: TileMatrix, row: int, col: int
                ) -> tuple[float, float, float, float]:
    """``(left, bottom, right, top)`` of a tile in :attr:`TileMatrixSet.view_crs`."""
    x0, y0 = matrix.origin
    sx, sy = matrix.span
    left, top = x0 + col * sx, y0 - row * sy
    return left, top - sy, left + sx, top


def tile_in_matrix(matrix: TileMatrix, row: int, col: int) -> bool:
    """Whether the indices exist in the matrix."""
    return 0 <= row < matrix.matrix_height and 0 <= col < matrix.matrix_width


def tile_view(tms: TileMatrixSet, matrix: TileMatrix, row: int, col: int) -> View:
    """The view a tile is evaluated on: its bounds at its resolution."""
    lattice = Lattice(matrix.origin, (matrix.cell_size, matrix.cell_size),
                      matrix.tile_width, matrix.tile_height)
    return View(tms.view_crs, tile_bounds(tms, matrix, row, col),
                matrix.tile_width, matrix.tile_height, lattice=lattice)


def extent_in(tms: TileMatrixSet, bounds, crs) -> tuple[float, float, float, float] | None:
    """An extent (``bounds`` in ``crs``) in the set's CRS, clipped to the set; ``None`` when
    they do not overlap."""
    wgs = transform_bounds(crs, WGS84, *bounds, densify_pts=21)
    if tms.view_crs.to_epsg() == 3857:
        lat0 = max(-MAX_MERCATOR_LAT, wgs[1])
        lat1 = min(MAX_MERCATOR_LAT, wgs[3])
        if lat0 >= lat1:
            return None
        wgs = (wgs[0], lat0, wgs[2], lat1)
    out = transform_bounds(WGS84, tms.view_crs, *wgs, densify_pts=21)
    full = tms.bounds()
    clipped = (max(out[0], full[0]), max(out[1], full[1]),
               min(out[2], full[2]), min(out[3], full[3]))
    if clipped[0] >= clipped[2] or clipped[1] >= clipped[3]:
        return None
    return clipped


def matrix_limits(matrix: TileMatrix, extent) -> tuple[int, int, int, int]:
    """``(min_row, max_row, min_col, max_col)`` of the tiles covering ``extent``
    (in the set's CRS)."""
    x0, y0 = matrix.origin
    sx, sy = matrix.span
    left, bottom, right, top = extent
    eps = 1e-9

    def clamp(v: int, n: int) -> int:
        return min(max(v, 0), n - 1)

    min_col = clamp(math.floor((left - x0) / sx + eps), matrix.matrix_width)
    max_col = clamp(math.ceil((right - x0) / sx - eps) - 1, matrix.matrix_width)
    min_row = clamp(math.floor((y0 - top) / sy + eps), matrix.matrix_height)
    max_row = clamp(math.ceil((y0 - bottom) / sy - eps) - 1, matrix.matrix_height)
    return min_row, max(min_row, max_row), min_col, max(min_col, max_col)


def limits(tms: TileMatrixSet, bounds, crs) -> list[tuple[str, int, int, int, int]] | None:
    """``TileMatrixSetLimits`` of an extent: ``(matrix id, min_row, max_row, min_col,
    max_col)`` per matrix, or ``None`` when the extent lies outside the set."""
    extent = extent_in(tms, bounds, crs)
    if extent is None:
        return None
    return [(m.identifier, *matrix_limits(m, extent)) for m in tms.matrices]


def wgs84_bbox(bounds, crs) -> tuple[float, float, float, float]:
    """An extent as a WGS84 (lon/lat) bounding box."""
    return transform_bounds(crs, WGS84, *bounds, densify_pts=21)
