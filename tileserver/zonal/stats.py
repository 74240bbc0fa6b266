"""Zonal statistics: one value per region, date and band of an imagery subgraph.

Which pixels belong to a region: those whose **centre** lies inside the polygon (GDAL's
rasterisation rule with ``all_touched=False``), on the product's native pixel grid in its
native CRS; a point (1.x ``aggregate_spatial``) is the pixel it falls in. Holes are
excluded, the parts of a multipolygon are united. A polygon that
contains no pixel centre (smaller than a pixel, or a thin sliver) has **no value** (null):
we do not fall back to the pixel under its centroid, so that every value is computed with
the same rule and a null says honestly "no pixel of this region". Nodata pixels are left
out; a region, date and band with no valid pixel is null for every ``func`` (also for
``count`` and ``sum``: no value, not zero). Regions wholly outside the data extent (the
product's footprint cut by any ``filter_bbox``) are null and cost no read.

Laziness: the imagery is evaluated on small views, never on its whole extent. Each
region's envelope is snapped outward to the native pixel grid; regions whose envelopes
start in the same source tile are grouped (a cluster's view is the union of its members'
envelopes, at most 2 x 2 tiles; see :func:`plan_views`), and the imagery subgraph is
evaluated once per cluster view at native resolution. Reads therefore stay within the
regions' envelopes, or the source tiles that hold them, which GDAL decompresses whole in
any case; regions in different tiles never cause the pixels between them to be read.
Only when the cluster views would cover most of their common bounding box anyway (dense
regions) is that box read in one go.
"""

from __future__ import annotations

import math
import zipfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from rasterio.features import rasterize
from shapely.geometry import box

from tileserver.data.catalog import Product
from tileserver.datacube.cube import Cube
from tileserver.datacube.query import CubeMeta
from tileserver.datacube.view import View
from tileserver.errors import LimitExceeded, ProcessGraphError
from tileserver.zonal.tables import Regions, ZonalTable

#: The statistics ``func`` may name.
FUNCS = ("avg", "min", "max", "median", "q25", "q75", "count", "sum", "std")
#: Files of a folder that are read as regions (others are ignored).
REGION_SUFFIXES = (".geojson", ".json", ".gpkg", ".zip", ".shp", ".fgb", ".kml")
#: OGR drivers region files may be read with. Formats that can point at other files or
#: URLs (OGR VRT, CSV, GML with xlinks, LIBKML network links, SQLite…) are refused: a
#: user file must never make the server read something else.
ALLOWED_DRIVERS = ("GeoJSON", "GeoJSONSeq", "GPKG", "ESRI Shapefile", "FlatGeobuf", "KML")
MAX_REGIONS = 100_000
#: Block size used to group regions when the files are not tiled (strips).
DEFAULT_BLOCK = 512
WGS84 = ProjCRS.from_epsg(4326)


class RegionsError(ProcessGraphError):
    """A regions file or folder that cannot be used (unreadable, empty, not polygons…)."""

    code = "RegionsInvalid"


# -- reading regions -----------------------------------------------------------------


def region_files(target: Path, base: Path) -> list[tuple[str, str]]:
    """``(OGR path, label)`` of a regions file, or of every region file in a folder."""
    base = base.resolve()

    def entries(p: Path) -> list[tuple[str, str]]:
        label = p.resolve().relative_to(base).as_posix()
        return _zip_members(p, label) if p.suffix.lower() == ".zip" else [(str(p), label)]

    if target.is_file():
        return entries(target)
    found = sorted(
        p for p in target.rglob("*")
        if p.is_file() and not p.is_symlink() and p.suffix.lower() in REGION_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(target).parts)
    )
    if not found:
        raise RegionsError(
            f"the folder {target.relative_to(base).as_posix() or '/'} holds no region file "
            f"({', '.join(REGION_SUFFIXES)})")
    return [e for p in found for e in entries(p)]


def _zip_members(path: Path, label: str) -> list[tuple[str, str]]:
    """The region files inside a zip (a zipped shapefile, possibly in a sub-folder)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = sorted(n for n in zf.namelist()
                           if Path(n).suffix.lower() in REGION_SUFFIXES
                           and Path(n).suffix.lower() != ".zip"
                           and not any(part.startswith((".", "__MACOSX"))
                                       for part in Path(n).parts))
    except (zipfile.BadZipFile, OSError):
        raise RegionsError(f"{label}: not a vector file OGR can read (not a valid zip "
                           "archive)") from None
    if not names:
        raise RegionsError(f"{label}: the zip archive holds no region file "
                           f"({', '.join(s for s in REGION_SUFFIXES if s != '.zip')})")
    if len(names) == 1:
        return [(f"/vsizip/{path}/{names[0]}", label)]
    return [(f"/vsizip/{path}/{n}", f"{label}/{n}") for n in names]


def _read_layer(ogr_path: str, layer: str, label: str):
    import pyogrio.raw  # noqa: PLC0415

    try:
        meta, _, wkb, fields = pyogrio.raw.read(ogr_path, layer=layer, force_2d=True,
                                                datetime_as_string=True)
    except Exception as exc:  # noqa: BLE001 - pyogrio/OGR errors of many kinds
        raise _unreadable(label, ogr_path, exc) from None
    if meta.get("geometry_type") is None or wkb is None:
        return None
    if meta.get("crs"):
        crs = ProjCRS.from_user_input(meta["crs"])
    else:
        crs = None
    geoms = shapely.from_wkb(wkb)
    return crs, geoms, list(meta["fields"]), fields


def _unreadable(label: str, ogr_path: str, exc: Exception) -> RegionsError:
    """A 400 naming the user's file, without the server's paths."""
    reason = str(exc).replace(ogr_path.removeprefix("/vsizip/"), label)
    reason = reason.replace(ogr_path, label).split(" It might help")[0].strip()
    return RegionsError(f"{label}: not a vector file OGR can read ({reason})")


def _polygonal(geom, label: str, index: int):
    if geom is None or geom.is_empty:
        raise RegionsError(f"{label}: feature {index + 1} has no geometry")
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise RegionsError(
            f"{label}: feature {index + 1} is a {geom.geom_type}; regions must be polygons")
    if not geom.is_valid:
        fixed = shapely.make_valid(geom)
        parts = [g for g in getattr(fixed, "geoms", [fixed])
                 if g.geom_type in ("Polygon", "MultiPolygon")]
        geom = shapely.union_all(parts) if parts else geom
    return geom


def read_regions(files: list[tuple[str, str]]) -> Regions:
    """Every polygon of every layer of ``files``, in one CRS (theirs if they agree, else
    WGS84), with their attributes. Unreadable, empty or non-polygon files raise
    :class:`RegionsError` (400) naming the file."""
    import pyogrio  # noqa: PLC0415

    parts = []
    for ogr_path, label in files:
        try:
            layers = [str(name) for name, _ in pyogrio.list_layers(ogr_path)]
            driver = pyogrio.read_info(ogr_path, layer=layers[0])["driver"] if layers else None
        except Exception as exc:  # noqa: BLE001
            raise _unreadable(label, ogr_path, exc) from None
        if driver not in ALLOWED_DRIVERS:
            raise RegionsError(f"{label}: {driver or 'unknown'} files are not accepted as "
                               f"regions; use one of {', '.join(ALLOWED_DRIVERS)}")
        found = 0
        for layer in layers:
            got = _read_layer(ogr_path, layer, label)
            if got is None:
                continue
            crs, geoms, names, values = got
            tag = label if len(layers) == 1 else f"{label}:{layer}"
            if crs is None:
                bounds = shapely.total_bounds(geoms) if len(geoms) else None
                if bounds is None or not (-180 <= bounds[0] and bounds[2] <= 180
                                          and -90 <= bounds[1] and bounds[3] <= 90):
                    raise RegionsError(f"{tag}: no CRS (a .prj file is missing?)")
                crs = WGS84
            geoms = [_polygonal(g, tag, i) for i, g in enumerate(geoms)]
            found += len(geoms)
            parts.append((tag, crs, geoms, names, values))
        if not found:
            raise RegionsError(f"{label}: no polygon in this file (empty, or no geometry)")
    total = sum(len(p[2]) for p in parts)
    if total > MAX_REGIONS:
        raise LimitExceeded(f"{total} regions, more than the limit of {MAX_REGIONS}")
    crss = [p[1] for p in parts]
    common = crss[0] if all(c.equals(crss[0], ignore_axis_order=True) for c in crss) else WGS84
    regions = Regions([], common, [])
    attrs: dict[str, list] = defaultdict(list)
    for tag, crs, geoms, names, values in parts:
        start = len(regions.geoms)
        regions.geoms.extend(_transform(geoms, crs, common))
        regions.sources.extend([tag] * len(geoms))
        for name, column in zip(names, values, strict=True):
            col = attrs[str(name)]
            col.extend([None] * (start - len(col)))
            col.extend(_py(v) for v in column)
    for col in attrs.values():
        col.extend([None] * (len(regions.geoms) - len(col)))
    regions.attributes = dict(attrs)
    return regions


def _py(v):
    if isinstance(v, np.ndarray):  # OGR list fields
        return [_py(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _transform(geoms, src: ProjCRS, dst: ProjCRS) -> list:
    if src.equals(dst, ignore_axis_order=True):
        return list(geoms)
    tr = Transformer.from_crs(src, dst, always_xy=True)
    arr = shapely.transform(np.array(geoms, dtype=object),
                            lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    return list(arr)


# -- the native grid -----------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """A pixel grid: origin ``(x0, y0)`` (top left) and pixel size ``(rx, ry)`` in ``crs``;
    ``block`` is the size of the source files' tiles (what GDAL decompresses at once)."""

    crs: rasterio.crs.CRS
    x0: float
    y0: float
    rx: float
    ry: float
    block: int = DEFAULT_BLOCK

    def window(self, bounds) -> tuple[int, int, int, int]:
        """``(col0, row0, col1, row1)``: ``bounds`` snapped outward to whole pixels."""
        minx, miny, maxx, maxy = bounds
        c0 = math.floor((minx - self.x0) / self.rx)
        c1 = math.ceil((maxx - self.x0) / self.rx)
        r0 = math.floor((self.y0 - maxy) / self.ry)
        r1 = math.ceil((self.y0 - miny) / self.ry)
        return c0, r0, max(c1, c0 + 1), max(r1, r0 + 1)

    def transform(self, window) -> Affine:
        """The affine transform of a window of the grid."""
        return Affine(self.rx, 0.0, self.x0 + window[0] * self.rx,
                      0.0, -self.ry, self.y0 - window[1] * self.ry)

    def view(self, window) -> View:
        """The view of a window of the grid."""
        c0, r0, c1, r1 = window
        return View(self.crs, (self.x0 + c0 * self.rx, self.y0 - r1 * self.ry,
                               self.x0 + c1 * self.rx, self.y0 - r0 * self.ry), c1 - c0, r1 - r0)


@lru_cache(maxsize=64)
def _file_grid(href: str) -> tuple[str, float, float, float, float, int]:
    with rasterio.open(href) as src:
        t = src.transform
        bh, bw = src.block_shapes[0]
        tiled = bh == bw and bw >= 64 and bw < src.width
        return src.crs.to_wkt(), t.c, t.f, t.a, -t.e, bw if tiled else DEFAULT_BLOCK


def native_grid(product: Product, bands: tuple[str, ...]) -> Grid:
    """The grid of the finest of ``bands`` in the product's CRS, read from one of its files."""
    band = min(bands, key=lambda b: product.bands[b].res_m)
    for item in product.some_items():
        href = item.assets.get(band)
        if href and item.crs == product.crs:
            wkt, x0, y0, rx, ry, block = _file_grid(href)
            return Grid(rasterio.crs.CRS.from_wkt(wkt), x0, y0, rx, ry, block)
    raise ProcessGraphError(f"product {product.id} has no file of band {band}")


def data_extent(meta: CubeMeta, crs) -> shapely.Geometry:
    """The product's footprint, cut by the graph's bbox filter, as a polygon in ``crs``."""
    dst = ProjCRS.from_user_input(crs.to_wkt())
    extent = _densified(box(*meta.product.bbox), WGS84, dst)
    if meta.bbox is not None and meta.srs is not None:
        bbox = _densified(box(*meta.bbox), ProjCRS.from_user_input(meta.srs.to_wkt()), dst)
        extent = extent.intersection(bbox)
    return extent


def _densified(geom, src: ProjCRS, dst: ProjCRS):
    minx, miny, maxx, maxy = geom.bounds
    geom = shapely.segmentize(geom, max(maxx - minx, maxy - miny) / 64)
    return _transform([geom], src, dst)[0]


# -- planning the views --------------------------------------------------------------


@dataclass
class Cluster:
    """One view to evaluate and the regions (index, window) computed from it."""

    window: tuple[int, int, int, int]
    members: list[tuple[int, tuple[int, int, int, int]]]


def _area(w) -> int:
    return (w[2] - w[0]) * (w[3] - w[1])


def _union(ws) -> tuple[int, int, int, int]:
    return (min(w[0] for w in ws), min(w[1] for w in ws),
            max(w[2] for w in ws), max(w[3] for w in ws))


def plan_views(windows: dict[int, tuple[int, int, int, int]], block: int,
               max_view_pixels: int = 0) -> list[Cluster]:
    """Group region windows into clusters of nearby regions.

    Regions larger than a source block get a view of their own. The others are grouped
    by the source block (tile) their envelope starts in, and each group is evaluated on
    the union of its members' envelopes, which spans at most 2 x 2 blocks: the reader
    decompresses whole tiles anyway, so one view per tile costs about the I/O of one per
    region, without the per-read overhead repeated for every region.

    When the views together cover at least half of their common bounding box (regions
    spread densely over an area) and that box has at most ``max_view_pixels``, the box
    itself is the single view: the same tiles, read in one go.
    """
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    clusters = []
    for ri, w in windows.items():
        if w[2] - w[0] > block or w[3] - w[1] > block:
            clusters.append(Cluster(w, [(ri, w)]))
        else:
            buckets[(w[0] // block, w[1] // block)].append(ri)
    for members in buckets.values():
        union = _union([windows[ri] for ri in members])
        clusters.append(Cluster(union, [(ri, windows[ri]) for ri in members]))
    if len(clusters) > 1:
        whole = _union(list(windows.values()))
        covered = sum(_area(c.window) for c in clusters)
        if _area(whole) <= max_view_pixels and 2 * covered >= _area(whole):
            return [Cluster(whole, list(windows.items()))]
    return clusters


def pixel_cells(geom, grid: Grid):
    """The cells of ``grid`` that hold the points of ``geom`` (a Point or MultiPoint in the
    grid's CRS), as polygons: the pixel centre of each cell, and no other, lies inside, so
    a point's value is the one of the pixel it falls in."""
    cells = []
    for p in getattr(geom, "geoms", [geom]):
        c = math.floor((p.x - grid.x0) / grid.rx)
        r = math.floor((grid.y0 - p.y) / grid.ry)
        cells.append(box(grid.x0 + c * grid.rx, grid.y0 - (r + 1) * grid.ry,
                         grid.x0 + (c + 1) * grid.rx, grid.y0 - r * grid.ry))
    return shapely.union_all(cells)


def region_masks(geoms: list, cluster: Cluster, grid: Grid):
    """``(region, window, pixel-centre-inside mask on the window)`` of a cluster's members.

    GDAL's rasteriser (``all_touched=False``) is called once per *layer* of regions that
    do not even touch each other (a greedy colouring of the intersection graph): within a
    layer no pixel can belong to two regions, so each region gets exactly the pixels it
    would get alone, at a fraction of the per-call cost.
    """
    members = cluster.members
    shapes = [geoms[ri] for ri, _ in members]
    tree = shapely.STRtree(shapes)
    left, right = tree.query(shapes, predicate="intersects")
    neighbours: dict[int, set[int]] = defaultdict(set)
    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        if a != b:
            neighbours[a].add(b)
    colour: dict[int, int] = {}
    for i in range(len(shapes)):
        used = {colour[j] for j in neighbours[i] if j in colour}
        colour[i] = next(c for c in range(len(used) + 1) if c not in used)
    C0, R0, C1, R1 = cluster.window
    with rasterio.Env():
        for layer in range(max(colour.values()) + 1):
            idx = [i for i in range(len(shapes)) if colour[i] == layer]
            labels = rasterize([(shapes[i], i + 1) for i in idx], out_shape=(R1 - R0, C1 - C0),
                               transform=grid.transform(cluster.window), fill=0,
                               all_touched=False, dtype="int32")
            for i in idx:
                ri, w = members[i]
                yield ri, w, labels[w[1] - R0:w[3] - R0, w[0] - C0:w[2] - C0] == i + 1


# -- statistics ----------------------------------------------------------------------


def statistic(values: np.ndarray, func: str) -> tuple[np.ndarray, np.ndarray]:
    """``(stat, valid count)`` over the last axis of ``values``, NaN = nodata.

    ``std`` is the population standard deviation (ddof=0); ``median``/``q25``/``q75`` are
    numpy's linear-interpolation percentiles; with no valid value the result is NaN.
    Only slices with a valid value are computed (no all-NaN warnings to silence, which
    would not be thread-safe).
    """
    values = values.astype(np.float64, copy=False)
    count = np.isfinite(values).sum(axis=-1)
    out = np.full(values.shape[:-1], np.nan)
    ok = count > 0
    if not ok.any():
        return out, count
    v = values[ok]  # (slices with data, pixels)
    if func == "count":
        out[ok] = count[ok]
    elif func == "sum":
        out[ok] = np.nansum(v, axis=-1)
    elif func == "avg":
        out[ok] = np.nansum(v, axis=-1) / count[ok]
    elif func == "min":
        out[ok] = np.nanmin(v, axis=-1)
    elif func == "max":
        out[ok] = np.nanmax(v, axis=-1)
    elif func == "std":
        out[ok] = np.nanstd(v, axis=-1)
    else:
        out[ok] = np.nanpercentile(v, {"median": 50, "q25": 25, "q75": 75}[func], axis=-1)
    return out, count


def zonal_statistics(
    evaluate: Callable[[View], Cube],
    meta: CubeMeta,
    regions: Regions,
    func: str,
    grid: Grid,
    max_pixels: int,
) -> ZonalTable:
    """Statistics of the imagery (``evaluate(view) -> Cube``, ``meta`` its description)
    per region, on the native ``grid``; ``max_pixels`` (pixels x bands x dates of one
    evaluation) bounds the views."""
    if func not in FUNCS:
        raise ProcessGraphError(f"unknown func {func!r}; one of {', '.join(FUNCS)}")
    geoms = _transform(regions.geoms, regions.crs, ProjCRS.from_user_input(grid.crs.to_wkt()))
    geoms = [pixel_cells(g, grid) if g.geom_type in ("Point", "MultiPoint") else g
             for g in geoms]
    extent = data_extent(meta, grid.crs)
    ext_win = grid.window(extent.bounds) if not extent.is_empty else None
    windows: dict[int, tuple[int, int, int, int]] = {}
    for ri, geom in enumerate(geoms):
        if ext_win is None or not geom.intersects(extent):
            continue
        c0, r0, c1, r1 = grid.window(geom.bounds)
        w = (max(c0, ext_win[0]), max(r0, ext_win[1]), min(c1, ext_win[2]),
             min(r1, ext_win[3]))
        if w[2] > w[0] and w[3] > w[1]:
            windows[ri] = w
    if not windows:
        raise RegionsError(
            f"none of the {len(geoms)} regions intersects the data: {meta.product.id}"
            + (" cut by the filter_bbox" if meta.bbox is not None else "")
            + f" covers {_fmt_bounds(extent.bounds)} in {grid.crs.to_string()}, the regions "
            f"{_fmt_bounds(shapely.total_bounds(geoms))}")
    n_days = _check_acquisitions(meta, [geoms[ri] for ri in windows], grid)
    max_view = max_pixels // max(1, n_days * len(meta.source_bands))

    per_day: dict[str | None, dict[int, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    day_time: dict[str | None, datetime | None] = {}
    bands: tuple[str, ...] = meta.bands
    kind = meta.kind
    for cluster in plan_views(windows, grid.block, max_view):
        cube = evaluate(grid.view(cluster.window))
        bands, kind = cube.bands, cube.kind
        keys = [None] if cube.times is None else [t.strftime("%Y-%m-%d") for t in cube.times]
        for key, t in zip(keys, cube.times or [None], strict=True):
            day_time.setdefault(key, t)
        C0, R0 = cluster.window[0], cluster.window[1]
        for ri, w, inside in region_masks(geoms, cluster, grid):
            sub = cube.data[:, :, w[1] - R0:w[3] - R0, w[0] - C0:w[2] - C0][:, :, inside]
            stat, count = statistic(sub, func)
            for ti, key in enumerate(keys):
                per_day[key][ri] = (stat[ti], count[ti])
    reduced = None in day_time
    days: list[str | None] = [None]
    if not reduced:
        days = list(sorted(k for k in day_time if k))
    n, nb = len(geoms), len(bands)
    values = np.full((n, len(days), nb), np.nan)
    pixels = np.zeros((n, len(days), nb), dtype=np.int64)
    for ti, key in enumerate(days):
        for ri, (stat, count) in per_day[key].items():
            values[ri, ti], pixels[ri, ti] = stat, count
    dates = None if reduced else tuple(t for k in days if (t := day_time[k]) is not None)
    return ZonalTable(regions, func, tuple(bands), dates, values, pixels, kind)


def _check_acquisitions(meta: CubeMeta, geoms: list, grid: Grid) -> int:
    """The number of acquisition days over the regions (400 when there is none)."""
    bounds = shapely.total_bounds(np.array(geoms, dtype=object))
    wgs = _densified(box(*bounds), ProjCRS.from_user_input(grid.crs.to_wkt()), WGS84).bounds
    items = meta.product.items_for(tuple(wgs), meta.time_range)
    if not items:
        t = meta.time_range
        when = f" between {t[0]:%Y-%m-%d} and {t[1]:%Y-%m-%d}" if t else ""
        raise RegionsError(f"no acquisition of {meta.product.id} covers the regions{when}")
    return len({i.datetime.strftime("%Y-%m-%d") for i in items})


def _fmt_bounds(b) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"
