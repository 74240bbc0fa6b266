"""A view: the grid (CRS, bounds, width, height) for which a graph is evaluated."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from affine import Affine
from rasterio.crs import CRS


@dataclass(frozen=True)
class Lattice:
    """The pixel grid a view is one tile of: a tile matrix (its upper-left ``origin``, its
    ``cell`` size ``(x, y)`` and tile size in pixels). Views of one lattice share their
    pixels' positions, so a reader may keep work done for one tile (a warp set up on the
    lattice) for the next; it never changes what a view is."""

    origin: tuple[float, float]
    cell: tuple[float, float]
    tile_width: int
    tile_height: int

    @property
    def tile_span(self) -> tuple[float, float]:
        """A tile's width and height in CRS units."""
        return self.cell[0] * self.tile_width, self.cell[1] * self.tile_height


@dataclass(frozen=True)
class View:
    """A target grid. ``bounds`` are ``(left, bottom, right, top)`` in ``crs`` (x/y order)."""

    crs: CRS
    bounds: tuple[float, float, float, float]
    width: int
    height: int
    #: The exact pixel size ``(x, y)`` of a grid taken from files (their transform's), which
    #: ``bounds / size`` may miss by a rounding error (0.0005 degrees); None: from the bounds.
    pixel: tuple[float, float] | None = field(default=None, compare=False)
    #: The tile matrix the view is a tile of (:class:`Lattice`), when it is one.
    lattice: Lattice | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.crs, CRS):
            object.__setattr__(self, "crs", CRS.from_user_input(self.crs))
        object.__setattr__(self, "bounds", tuple(float(b) for b in self.bounds))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @cached_property
    def transform(self) -> Affine:
        """Affine transform of the grid (north up)."""
        if self.pixel is not None:
            return Affine(self.pixel[0], 0.0, self.bounds[0], 0.0, -self.pixel[1],
                          self.bounds[3])
        left, bottom, right, top = self.bounds
        # rasterio's from_bounds (a translation times a scale: exactly these numbers)
        # without its two Affine products, which cost a tile 0.1 ms
        return Affine((right - left) / self.width, 0.0, left, 0.0,
                      (bottom - top) / self.height, top)

    @classmethod
    def of_grid(cls, crs, left: float, top: float, xres: float, yres: float, width: int,
                height: int) -> View:
        """The view of ``width`` x ``height`` pixels of ``xres`` x ``yres`` whose upper-left
        corner is ``(left, top)``: its transform is exactly these numbers."""
        return cls(crs, (left, top - height * yres, left + width * xres, top), width, height,
                   (float(xres), float(yres)))

    def window(self, col: int, row: int, width: int, height: int) -> View:
        """The view of a window of this grid's pixels (on the same pixel lattice)."""
        t = self.transform
        left, top = t * (col, row)
        if self.pixel is not None:
            return View.of_grid(self.crs, left, top, *self.pixel, width, height)
        right, bottom = t * (col + width, row + height)
        return View(self.crs, (left, bottom, right, top), width, height)

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units."""
        if self.pixel is not None:
            return self.pixel
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
