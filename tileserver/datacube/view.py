"""A view: the grid (CRS, bounds, width, height) for which a graph is evaluated."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import from_bounds


@dataclass(frozen=True)
class View:
    """A target grid. ``bounds`` are ``(left, bottom, right, top)`` in ``crs`` (x/y order)."""

    crs: CRS
    bounds: tuple[float, float, float, float]
    width: int
    height: int

    def __post_init__(self) -> None:
        if not isinstance(self.crs, CRS):
            object.__setattr__(self, "crs", CRS.from_user_input(self.crs))
        object.__setattr__(self, "bounds", tuple(float(b) for b in self.bounds))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @cached_property
    def transform(self) -> Affine:
        """Affine transform of the grid (north up)."""
        return from_bounds(*self.bounds, self.width, self.height)

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units."""
        left, bottom, right, top = self.bounds
        return (right - left) / self.width, (top - bottom) / self.height

    @cached_property
    def crs_key(self) -> str:
        """A canonical string for the CRS."""
        epsg = self.crs.to_epsg()
        return f"EPSG:{epsg}" if epsg else self.crs.to_wkt()

    @property
    def key(self) -> tuple:
        """Hashable identity of the grid, used in cache keys."""
        return (self.crs_key, tuple(round(b, 9) for b in self.bounds), self.width, self.height)

    @property
    def pixels(self) -> int:
        """Number of pixels of the grid."""
        return self.width * self.height
