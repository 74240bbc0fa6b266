"""The data's own pixel grids: each file's (from the catalog's ``proj:transform`` and
``proj:shape``, or from the file's header), and the native grid of a collection: the
union of its files on their common pixel lattice, onto which a box is snapped outwards.

A graph's result on this grid reads every file of the lattice window by window (no warp,
:func:`tileserver.data.reader.read_band`), and files of one lattice (the tiles of a UTM
zone) mosaic without resampling.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import rasterio
from affine import Affine
from rasterio.crs import CRS

from tileserver.data.model import Item, Product
from tileserver.data.reader import GDAL_ERRORS
from tileserver.data.remote import BrokenSource, gdal_path
from tileserver.datacube.bounds import transform_bounds

log = logging.getLogger(__name__)
WGS84 = CRS.from_epsg(4326)

#: A coordinate within this fraction of a pixel of a grid line is on it (float noise of
#: bounds given in metres, of ``proj:transform`` written as decimals).
SNAP_TOLERANCE = 1e-6

#: Files whose grid the catalog does not give that a native grid reads the header of; the
#: other such items count by their footprints (a STAC API's collection of many items).
MAX_HEADERS = 32

Bounds = tuple[float, float, float, float]


@dataclass(frozen=True)
class FileGrid:
    """The pixel grid of one file: CRS, affine transform, size, internal block side."""

    crs: CRS
    transform: Affine
    width: int
    height: int
    #: the side of the file's internal blocks (COG tiles) when known and square
    block: int | None = None

    @property
    def north_up(self) -> bool:
        """Not rotated, rows going south."""
        t = self.transform
        return t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0

    @property
    def bounds(self) -> Bounds:
        """``(left, bottom, right, top)``."""
        t = self.transform
        xs = (t.c, t.c + t.a * self.width)
        ys = (t.f, t.f + t.e * self.height)
        return min(xs), min(ys), max(xs), max(ys)


@dataclass(frozen=True)
class PixelGrid:
    """A north-up pixel lattice: a CRS, a pixel size and the corner of one pixel; with the
    extent of the files on it (``bounds``, on its lines)."""

    crs: CRS
    xres: float
    yres: float  # positive: rows go south
    x0: float
    y0: float
    bounds: Bounds
    #: the files' internal block side (COG tiles), when every file of the lattice says it
    block: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of :attr:`bounds`."""
        left, bottom, right, top = self.bounds
        return round((top - bottom) / self.yres), round((right - left) / self.xres)

    def window(self, bounds: Bounds) -> tuple[int, int, int, int]:
        """``(col, row, width, height)`` of the lattice's pixels (from its origin) that
        ``bounds`` touches: the box grown outwards to the lattice's lines."""
        left, bottom, right, top = bounds
        c0 = _floor((left - self.x0) / self.xres)
        c1 = _ceil((right - self.x0) / self.xres)
        r0 = _floor((self.y0 - top) / self.yres)
        r1 = _ceil((self.y0 - bottom) / self.yres)
        return c0, r0, max(1, c1 - c0), max(1, r1 - r0)

    def snap(self, bounds: Bounds) -> Bounds:
        """``bounds`` grown outwards to the lattice's lines."""
        col, row, width, height = self.window(bounds)
        return (self.x0 + col * self.xres, self.y0 - (row + height) * self.yres,
                self.x0 + (col + width) * self.xres, self.y0 - row * self.yres)


def _floor(v: float) -> int:
    r = round(v)
    return r if abs(v - r) <= SNAP_TOLERANCE else math.floor(v)


def _ceil(v: float) -> int:
    r = round(v)
    return r if abs(v - r) <= SNAP_TOLERANCE else math.ceil(v)


def _phase(origin: float, res: float) -> float:
    """Where the lattice lines of ``res`` through ``origin`` cross zero, in pixels [0, 1)."""
    p = (origin / res) % 1.0
    return 0.0 if p > 1.0 - SNAP_TOLERANCE or p < SNAP_TOLERANCE else round(p, 6)


def _key(grid: FileGrid) -> tuple:
    t = grid.transform
    return (round(t.a, 9), round(-t.e, 9), _phase(t.c, t.a), _phase(t.f, -t.e))


@lru_cache(maxsize=4096)
def _header_grid(href: str, signature: tuple) -> FileGrid:
    with rasterio.open(gdal_path(href)) as src:
        bx, by = src.block_shapes[0] if src.block_shapes else (None, None)
        return FileGrid(src.crs, src.transform, src.width, src.height,
                        bx if bx == by and src.profile.get("tiled") else None)


def header_grid(href: str) -> FileGrid:
    """The grid of a file from its header (cached, keyed on size and mtime when local)."""
    try:
        st = os.stat(href)
        signature: tuple = (st.st_size, st.st_mtime_ns)
    except OSError:  # a URL or a GDAL virtual path
        signature = ()
    return _header_grid(href, signature)


def file_grid(item: Item, band: str, res: float | None = None,
              header: bool = True) -> FileGrid | None:
    """The grid of ``item``'s file of ``band``: the asset's ``proj:`` fields, the item's
    when their pixel size is the band's ``res`` (an item's fields describe its finest
    assets), else the file's header (``header``: else None). None when the item has no
    such file."""
    href = item.assets.get(band)
    if href is None:
        return None
    proj = item.grids.get(band)
    if proj is None and "" in item.grids:
        own = item.grids[""]
        if res is None or math.isclose(abs(own[0]), res, rel_tol=1e-6) or \
                len(item.assets) == 1:
            proj = own
    if proj is not None:
        height, width = proj[6]
        return FileGrid(item.crs, Affine(*proj[:6]), width, height)
    return header_grid(href) if header else None


def native_grid(product: Product, bands: tuple[str, ...],
                time: tuple[datetime, datetime] | None = None) -> PixelGrid | None:
    """The grid of the data itself for the ``bands`` read of ``product``: the lattice of
    its finest band's files in the product's CRS (the one most of them share when they
    differ), over the union of every item's extent (items in another CRS count by their
    bounds, transformed), snapped outwards to it. None when no file in the product's CRS
    is north-up (then the caller keeps a reprojected extent)."""
    band = min(bands, key=lambda b: product.bands[b].res_m)
    res = product.bands[band].res_m
    items = product.items_for(None, time) or product.items_for(None, None)
    crs = product.crs
    grids: list[FileGrid] = []
    hrefs: list[str] = []
    footprints: list[Bounds] = []  # WGS84, of items whose grid is not read
    headers = 0
    for item in items:
        if band not in item.assets:
            continue
        try:
            grid = file_grid(item, band, res, header=headers < MAX_HEADERS)
            if grid is None:
                footprints.append(item.bbox)
                continue
        except (BrokenSource, *GDAL_ERRORS, OSError) as exc:
            log.warning("product %s, item %s: no grid (%s)", product.id, item.id, exc)
            continue
        finally:
            headers += band not in item.grids and "" not in item.grids
        grids.append(grid)
        hrefs.append(item.assets[band])
    own = [g for g in grids if g.crs == crs and g.north_up]
    if not own:
        return None
    key, _ = Counter(_key(g) for g in own).most_common(1)[0]
    ref = next(g for g in own if _key(g) == key)
    lattice = [g for g in own if _key(g) == key]
    blocks = {g.block for g in lattice}
    if blocks == {None}:  # the catalog's proj: fields: the block side is in a header
        try:
            blocks = {header_grid(hrefs[grids.index(ref)]).block}
        except (BrokenSource, *GDAL_ERRORS, OSError):
            pass
    xs0, ys0, xs1, ys1 = zip(*(g.bounds for g in lattice), strict=True)
    union = [min(xs0), min(ys0), max(xs1), max(ys1)]
    others = [(g.crs, g.bounds) for g in grids if g not in lattice]
    others += [(WGS84, b) for b in footprints]
    for other_crs, other in others:  # the other files: their extent, in the product's CRS
        try:
            b = other if other_crs == crs else transform_bounds(other_crs, crs, *other,
                                                               densify_pts=21)
        except Exception:  # noqa: BLE001 - a file outside the CRS's area of use
            continue
        union = [min(union[0], b[0]), min(union[1], b[1]), max(union[2], b[2]),
                 max(union[3], b[3])]
    t = ref.transform
    grid = PixelGrid(crs, t.a, -t.e, t.c, t.f, (0.0, 0.0, 0.0, 0.0),
                     blocks.pop() if len(blocks) == 1 else None)
    bounds = grid.snap(tuple(union))  # type: ignore[arg-type]
    return PixelGrid(crs, grid.xres, grid.yres, grid.x0, grid.y0, bounds, grid.block)
