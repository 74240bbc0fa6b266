"""Windowed reads: the needed window at the needed overview level, warped to a view."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import rasterio
import rasterio._err
import rasterio.errors
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import reproject
from rasterio.windows import Window, from_bounds

from tileserver import metrics
from tileserver.data.catalog import Band
from tileserver.data.handles import datasets
from tileserver.data.remote import classify, gdal_path
from tileserver.data.warped import block_of, lattice_grid, warped_vrt
from tileserver.datacube.bounds import transform_bounds
from tileserver.datacube.view import View

#: Extra source pixels read around the window so that resampling has its neighbours.
PAD = 2

# rasterio's in-memory datasets (ndarray sources of reproject) guard a spurious
# NotGeoreferencedWarning with ``warnings.catch_warnings``, which is not thread-safe: under
# concurrent reads it leaks out at random. Ignore it once, process-wide (a per-call
# ``catch_warnings`` here would race the same way).
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)


#: What GDAL raises on a failed open or read (rasterio's errors and GDAL's CPLE_* ones).
GDAL_ERRORS = (rasterio.errors.RasterioError, rasterio._err.CPLE_BaseError)


def choose_overview(factor: float, overviews: list[int]) -> int | None:
    """Index of the coarsest overview not coarser than ``factor`` (None: full resolution).

    ``factor`` is the view's pixel size divided by the file's; ``overviews`` are GDAL's
    decimation factors (``src.overviews(1)``), e.g. ``[2, 4, 8]``.
    """
    best = None
    for i, ovr in enumerate(overviews):
        if ovr <= factor * 1.0001:
            best = i
    return best


def _view_bounds_in(view: View, crs: CRS) -> tuple[float, float, float, float] | None:
    if view.crs == crs:
        return view.bounds
    try:
        return transform_bounds(view.crs, crs, *view.bounds, densify_pts=21)
    except Exception:  # noqa: BLE001 - a view outside the CRS's area of use
        return None


def aligned_offset(src_transform, src_crs: CRS, view: View) -> tuple[int, int] | None:
    """``(col, row)`` of the view's upper-left pixel in the source array when the view is
    a pixel-aligned part of the same grid (same CRS, same pixel size, integer shift)."""
    vt = view.transform
    if src_transform.b or src_transform.d or vt.b or vt.d:
        return None
    if not (math.isclose(src_transform.a, vt.a, rel_tol=1e-9)
            and math.isclose(src_transform.e, vt.e, rel_tol=1e-9)):
        return None
    col = (vt.c - src_transform.c) / src_transform.a
    row = (vt.f - src_transform.f) / src_transform.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6 or src_crs != view.crs:
        return None
    return round(col), round(row)


@dataclass(frozen=True)
class FileInfo:
    """What the reader needs to know of a file before choosing a window and a level."""

    crs: CRS
    bounds: tuple[float, float, float, float]
    res: float
    overviews: tuple[int, ...]


@lru_cache(maxsize=4096)
def _file_info(href: str, signature: tuple) -> FileInfo:
    with datasets().acquire(gdal_path(href), None, href) as src:
        return FileInfo(src.crs, tuple(src.bounds), abs(src.res[0]), tuple(src.overviews(1)))


def file_info(href: str) -> FileInfo:
    """Header facts of ``href``, cached (keyed on size and mtime for local files) so that
    a read opens the file once, at the level it needs (remote files: keyed on the href;
    GDAL's /vsicurl/ cache keeps their headers, so a read costs the ranges of its window)."""
    try:
        st = os.stat(href)
        signature: tuple = (st.st_size, st.st_mtime_ns)
    except OSError:  # a URL or a GDAL virtual path
        signature = ()
    return _file_info(href, signature)


def _wkt_node(wkt: str, keyword: str) -> str | None:
    """The first ``KEYWORD[...]`` node of ``wkt`` (brackets balanced), None if absent."""
    start = wkt.find(keyword + "[")
    if start < 0:
        return None
    depth = 0
    for i in range(start + len(keyword), len(wkt)):
        if wkt[i] == "[":
            depth += 1
        elif wkt[i] == "]":
            depth -= 1
            if depth == 0:
                return wkt[start : i + 1]
    return None


@lru_cache(maxsize=1024)
def _area_of_interest(src_wkt: str, dst_wkt: str, bounds: tuple) -> str | None:
    """A fixed GDAL ``AREA_OF_INTEREST`` (the file's extent in degrees) for warps from
    ``src_wkt`` to ``dst_wkt``, or None when the pair is not eligible.

    Unless told one, GDAL's warper computes the area of interest of each source array
    (a tile's window) and passes it to the coordinate operation, so that each warp misses
    GDAL's cache of coordinate transformations and has PROJ search its database anew
    (about 1 ms of a tile). The area only chooses between candidate operations; between
    two CRSs on the same datum and prime meridian the only operation is the conversion
    (inverse projection, projection), whatever the area: the pixels are the same, and the
    transformation is built once. Other pairs (a datum shift, which may depend on the
    area) keep GDAL's own per-window choice, and so do compound (vertical) CRSs.
    """
    if any(k in wkt for wkt in (src_wkt, dst_wkt) for k in ("COMPD_CS", "VERT_", "COMPOUND")):
        return None
    for node in ("DATUM", "PRIMEM"):
        a = _wkt_node(src_wkt, node)
        if a is None or a != _wkt_node(dst_wkt, node):
            return None
    try:
        west, south, east, north = transform_bounds(
            CRS.from_wkt(src_wkt), CRS.from_epsg(4326), *bounds, densify_pts=21
        )
    except Exception:  # noqa: BLE001 - no extent in degrees: GDAL's own choice
        return None
    if not all(map(math.isfinite, (west, south, east, north))):
        return None
    return f"{west!r},{south!r},{east!r},{north!r}"


def _on_lattice(path: str, info: FileInfo, level: int | None, src, index: int, band: Band,
                view: View, resampling: Resampling | None
                ) -> tuple[str, tuple[int, int]] | None:
    """The warped dataset (its XML) and the block's ``(col, row)`` that give the tile
    ``view`` exactly as its own warp would (:mod:`tileserver.data.warped`), or None when
    the view is no tile, the warp is not nearest neighbour, nodata is a mask, the CRSs
    differ in datum or the GDAL ``path`` cannot name an overview. ``info`` and ``src`` (the
    handle at ``level``) are the caller's; it has checked that the padded window lies
    inside the file."""
    if view.lattice is None or resampling != Resampling.nearest:
        return None
    flags = src.mask_flag_enums[index - 1]
    if MaskFlags.per_dataset in flags or MaskFlags.alpha in flags:
        return None
    if _area_of_interest(info.crs.wkt, view.crs.wkt, info.bounds) is None:
        return None
    if "?" in path:
        return None
    nodata = src.nodata
    if nodata is None:
        nodata = band.nodata
    elif math.isnan(nodata):
        nodata = None  # NaN stays NaN through a nearest warp
    grid = _lattice_grid(view.lattice, view.crs.wkt, info.crs.wkt, info.bounds)
    if grid is None:
        return None
    at = block_of(grid, view)
    if at is None:
        return None
    source = path if level is None else f"vrt://{path}?ovr={level}"
    xml = warped_vrt(source, src.transform, info.crs.wkt, src.count, nodata, grid,
                     view.crs.wkt, (view.width, view.height))
    return xml, at


@lru_cache(maxsize=1024)
def _lattice_grid(lattice, crs_wkt: str, src_wkt: str, bounds: tuple):
    return lattice_grid(lattice, CRS.from_wkt(crs_wkt), CRS.from_wkt(src_wkt), bounds)


#: Resamplings for which one GDAL warp of several bands gives each band exactly the values
#: of its own warp (checked bit for bit by tests/unit/data/test_warp_identity.py). The
#: interpolating kernels are not among them: GDAL takes another code path for a band with
#: no nodata in the window when it is warped alone, and the last bits differ.
SHARED_WARP = frozenset({
    Resampling.nearest, Resampling.average, Resampling.mode, Resampling.max, Resampling.min,
    Resampling.med, Resampling.q1, Resampling.q3, Resampling.sum, Resampling.rms,
})


@dataclass(frozen=True)
class Unwarped:
    """A window read from a file that still has to be warped to the view: float32 values
    with NaN for nodata, on the source grid ``transform`` of ``crs``."""

    values: np.ndarray
    transform: Affine
    crs: CRS
    #: GDAL's fixed area of interest for the warp, or None (:func:`_area_of_interest`).
    aoi: str | None

    @property
    def grid(self) -> tuple:
        """What must be equal for windows to share one warp."""
        return (self.crs.wkt, tuple(self.transform), self.values.shape, self.aoi)


def read_band(
    href: str,
    band: Band,
    view: View,
    resampling: Resampling = Resampling.nearest,
    index: int = 1,
    into: np.ndarray | None = None,
) -> np.ndarray | None:
    """Values of band ``index`` of ``href`` on the ``view`` grid as float32 with NaN for
    nodata.

    Only the window of the file that the view covers is read, from the overview level
    whose resolution matches the view's (never finer than needed by more than 2x).
    Returns ``None`` when the file does not intersect the view. ``into`` (a contiguous
    float32 array of the view's shape) receives the values when the view is a window of
    the file's own grid and is returned (no copy; a batch block's read); it may be
    written to even when another array is returned.
    """
    return warp_many([read_window(href, band, view, index, into, resampling)], view,
                     resampling)[0]


def read_window(
    href: str,
    band: Band,
    view: View,
    index: int = 1,
    into: np.ndarray | None = None,
    resampling: Resampling | None = None,
) -> np.ndarray | Unwarped | None:
    """:func:`read_band` up to the warp: the values on the view's grid when no warp is
    needed (a window of the file's own grid) or when the view is a tile that a warped
    dataset kept for its lattice gives (:mod:`tileserver.data.warped`; ``resampling``
    says which warp is wanted), else the :class:`Unwarped` window, which
    :func:`warp_many` warps together with the other windows of the same source grid."""
    try:
        info = file_info(href)
        src_crs = info.crs
        bounds = _view_bounds_in(view, src_crs)
        if bounds is None:
            return None
        left = max(bounds[0], info.bounds[0])
        right = min(bounds[2], info.bounds[2])
        bottom = max(bounds[1], info.bounds[1])
        top = min(bounds[3], info.bounds[3])
        if left >= right or bottom >= top:
            return None
        view_res = min(
            (bounds[2] - bounds[0]) / view.width, (bounds[3] - bounds[1]) / view.height
        )
        factor = view_res / info.res
        level = choose_overview(factor, info.overviews)
        # an open handle of the file at that level, kept across requests (data/handles.py)
        on_lattice = None
        path = gdal_path(href)
        with datasets().acquire(path, level, href) as src:
            # the view on the file's own grid (a batch block, a native-resolution coverage):
            # read exactly its pixels, nothing to pad, warp or copy
            same_grid = aligned_offset(src.transform, src_crs, view)
            if same_grid is not None:
                col0, row0 = max(0, same_grid[0]), max(0, same_grid[1])
                col1 = min(src.width, same_grid[0] + view.width)
                row1 = min(src.height, same_grid[1] + view.height)
            else:
                win = from_bounds(left, bottom, right, top, transform=src.transform)
                col0 = math.floor(win.col_off) - PAD
                row0 = math.floor(win.row_off) - PAD
                col1 = math.ceil(win.col_off + win.width) + PAD
                row1 = math.ceil(win.row_off + win.height) + PAD
                if col0 >= 0 and row0 >= 0 and col1 <= src.width and row1 <= src.height:
                    on_lattice = _on_lattice(path, info, level, src, index, band, view,
                                             resampling)
                col0, row0 = max(0, col0), max(0, row0)
                col1, row1 = min(src.width, col1), min(src.height, row1)
            if col1 <= col0 or row1 <= row0:
                return None
            window = Window(col0, row0, col1 - col0, row1 - row0)
            if on_lattice is None:
                # float32 straight from GDAL; nodata (value or mask) becomes NaN below
                exact = same_grid is not None and (col0, row0) == same_grid and \
                    (row1 - row0, col1 - col0) == (view.height, view.width)
                if exact and into is not None:
                    values = src.read(index, window=window, out=into)
                else:
                    values = src.read(index, window=window, out_dtype="float32")
                file_nodata = src.nodata
                flags = src.mask_flag_enums[index - 1]
                if MaskFlags.per_dataset in flags or MaskFlags.alpha in flags:
                    values[src.read_masks(index, window=window) == 0] = np.nan
                elif file_nodata is not None and not math.isnan(file_nodata):
                    values[values == np.float32(file_nodata)] = np.nan
                win_transform = src.window_transform(window)
            metrics.PIXELS_READ.inc(window.width * window.height)
            metrics.SOURCE_READS.labels(str(0 if level is None else level + 1)).inc()
        if on_lattice is not None:  # a tile: one block of the lattice's warped dataset
            xml, (col, row) = on_lattice
            with datasets().acquire(xml, None, href) as vrt:
                values = vrt.read(index, window=Window(col, row, view.width, view.height))
            if band.scale != 1.0 or band.offset != 0.0:
                values = values * np.float32(band.scale) + np.float32(band.offset)
            return values
    except GDAL_ERRORS as exc:
        raise classify(href, exc) from exc
    if file_nodata is None and band.nodata is not None:  # declared only in raster:bands
        values[values == np.float32(band.nodata)] = np.nan
    if band.scale != 1.0 or band.offset != 0.0:
        values = values * np.float32(band.scale) + np.float32(band.offset)
    if values.shape == (view.height, view.width) and same_grid is not None \
            and (col0, row0) == same_grid:
        return values  # exactly the view's pixels
    offset = aligned_offset(win_transform, src_crs, view)
    if offset is not None:  # same grid: copy, no warp (exactly what nearest would give)
        out = np.full((view.height, view.width), np.nan, dtype=np.float32)
        col, row = offset
        r0, c0 = max(0, -row), max(0, -col)
        r1, c1 = min(view.height, values.shape[0] - row), min(view.width, values.shape[1] - col)
        if r1 > r0 and c1 > c0:
            out[r0:r1, c0:c1] = values[r0 + row : r1 + row, c0 + col : c1 + col]
        return out
    return Unwarped(values, win_transform, src_crs,
                    _area_of_interest(src_crs.wkt, view.crs.wkt, info.bounds))


def warp_many(windows: list, view: View, resampling: Resampling) -> list:
    """What :func:`read_window` gave, in order, each :class:`Unwarped` window warped to
    ``view`` (float32, NaN where nothing maps); arrays and ``None`` stay as they are.

    Windows on one source grid (the same window of files that share a grid: the dates and
    bands of a tile of one collection) are warped by one GDAL warp when ``resampling`` is
    in :data:`SHARED_WARP`: the transformation of each target pixel is computed once for
    all of them (8 windows of a 4-date NDVI tile: 18 ms of separate warps, 5 ms together),
    and each band's values are exactly those of its own warp. Every warp is the same as
    always (GDAL's default approximation, NaN as nodata); only the area of interest is
    fixed when it cannot change the operation (:func:`_area_of_interest`).
    """
    groups: dict = {}
    for i, window in enumerate(windows):
        if isinstance(window, Unwarped):
            key = window.grid if resampling in SHARED_WARP else i
            groups.setdefault(key, []).append(i)
    out = list(windows)
    for members in groups.values():
        first = windows[members[0]]
        extra = {} if first.aoi is None else {"AREA_OF_INTEREST": first.aoi}
        if len(members) == 1:
            source = first.values
            target = np.full((view.height, view.width), np.nan, dtype=np.float32)
        else:  # each band's nodata on its own (GDAL's default would unify some of them)
            source = np.stack([windows[i].values for i in members])
            target = np.full((len(members), view.height, view.width), np.nan, np.float32)
            extra["UNIFIED_SRC_NODATA"] = "NO"
        reproject(
            source,
            target,
            src_transform=first.transform,
            src_crs=first.crs,
            src_nodata=np.nan,
            dst_transform=view.transform,
            dst_crs=view.crs,
            dst_nodata=np.nan,
            resampling=resampling,
            **extra,
        )
        if len(members) == 1:
            out[members[0]] = target
        else:
            for k, i in enumerate(members):
                out[i] = target[k]
    return out
