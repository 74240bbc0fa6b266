"""The reader's warp is cheaper but not different (issue 23): ``read_band`` gives, bit for
bit (NaN included), what the earlier algorithm gave: the padded window of the chosen
overview level read as float32, nodata to NaN, scale and offset, then
``rasterio.warp.reproject`` of the arrays with GDAL's defaults. Views: Web Mercator tiles
at full resolution and at overview levels, tiles over the files' edges, WGS 84 and
another UTM zone; sources: UTM (uint16, nodata), EPSG:4326 (float32), int16 with a
declared nodata and scale/offset, and an ETRS89 file with a mask (another datum)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from numpy.testing import assert_array_equal
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.transform import from_origin
from rasterio.warp import reproject, transform, transform_bounds
from rasterio.windows import Window, from_bounds

from tileserver.data import reader
from tileserver.data.model import Band
from tileserver.datacube.view import View
from tileserver.maps.tilematrix import extent_in, matrix_limits, tile_matrix_sets, tile_view

R = 6378137.0 * math.pi
MERCATOR = CRS.from_epsg(3857)


def reference(href: str, band: Band, view: View, resampling=Resampling.nearest):
    """The algorithm before the change, on plain rasterio: window read + reproject."""
    with rasterio.open(href) as src:
        crs, res, ovrs = src.crs, abs(src.res[0]), src.overviews(1)
        fb = tuple(src.bounds)
    b = view.bounds if view.crs == crs else transform_bounds(
        view.crs, crs, *view.bounds, densify_pts=21)
    left, right = max(b[0], fb[0]), min(b[2], fb[2])
    bottom, top = max(b[1], fb[1]), min(b[3], fb[3])
    if left >= right or bottom >= top:
        return None
    factor = min((b[2] - b[0]) / view.width, (b[3] - b[1]) / view.height) / res
    level = None
    for i, ovr in enumerate(ovrs):
        if ovr <= factor * 1.0001:
            level = i
    with rasterio.open(href, **({} if level is None else {"overview_level": level})) as src:
        win = from_bounds(left, bottom, right, top, transform=src.transform)
        col0 = max(0, math.floor(win.col_off) - reader.PAD)
        row0 = max(0, math.floor(win.row_off) - reader.PAD)
        col1 = min(src.width, math.ceil(win.col_off + win.width) + reader.PAD)
        row1 = min(src.height, math.ceil(win.row_off + win.height) + reader.PAD)
        if col1 <= col0 or row1 <= row0:
            return None
        window = Window(col0, row0, col1 - col0, row1 - row0)
        values = src.read(1, window=window, out_dtype="float32")
        flags = src.mask_flag_enums[0]
        if MaskFlags.per_dataset in flags or MaskFlags.alpha in flags:
            values[src.read_masks(1, window=window) == 0] = np.nan
        elif src.nodata is not None and not math.isnan(src.nodata):
            values[values == np.float32(src.nodata)] = np.nan
        file_nodata = src.nodata
        win_transform = src.window_transform(window)
    if file_nodata is None and band.nodata is not None:
        values[values == np.float32(band.nodata)] = np.nan
    if band.scale != 1.0 or band.offset != 0.0:
        values = values * np.float32(band.scale) + np.float32(band.offset)
    out = np.full((view.height, view.width), np.nan, dtype=np.float32)
    reproject(values, out, src_transform=win_transform, src_crs=crs, src_nodata=np.nan,
              dst_transform=view.transform, dst_crs=view.crs, dst_nodata=np.nan,
              resampling=resampling)
    return out


def write(path, crs, transform, data, nodata=None, mask=None):
    profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0],
               "count": 1, "dtype": data.dtype.name, "crs": crs, "transform": transform,
               "tiled": True, "blockxsize": 256, "blockysize": 256, "nodata": nodata}
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        if mask is not None:
            dst.write_mask(mask)
        dst.build_overviews([2, 4, 8], Resampling.average)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("warp")
    rng = np.random.default_rng(23)
    utm = rng.integers(1, 3000, (1024, 1024)).astype("uint16")
    utm[:300, :200] = 0  # nodata over the upper-left corner
    geo = rng.normal(0.3, 0.2, (512, 512)).astype("float32")
    geo[100:160, 300:400] = -9999
    i16 = rng.integers(-200, 3000, (768, 768)).astype("int16")
    i16[500:, 600:] = -1  # nodata declared in raster:bands only
    u8 = rng.integers(0, 255, (640, 640)).astype("uint8")
    mask = np.full(u8.shape, 255, "uint8")
    mask[:, :100] = 0
    return {
        "utm": (write(tmp / "utm.tif", "EPSG:32633", from_origin(300000, 5100000, 10, 10),
                      utm, nodata=0), Band("B", "uint16", 0, 10)),
        "geo": (write(tmp / "geo.tif", "EPSG:4326", from_origin(12.5, 46.3, 0.0005, 0.0005),
                      geo, nodata=-9999), Band("B", "float32", -9999, 50)),
        "i16": (write(tmp / "i16.tif", "EPSG:32632", from_origin(650000, 5130000, 20, 20),
                      i16), Band("B", "int16", -1, 20, scale=0.0001, offset=-0.1)),
        "etrs": (write(tmp / "etrs.tif", "EPSG:25833", from_origin(310000, 5090000, 15, 15),
                       u8, mask=mask), Band("B", "uint8", None, 15)),
    }


def mercator_tiles(lon: float, lat: float, z: int, around: int = 1) -> list[View]:
    (x,), (y,) = transform("EPSG:4326", MERCATOR, [lon], [lat])
    size = 2 * R / 2 ** z
    col, row = int((x + R) // size), int((R - y) // size)
    return [View(MERCATOR, (-R + c * size, R - (r + 1) * size, -R + (c + 1) * size,
                            R - r * size), 256, 256)
            for r in range(row - around, row + around + 1)
            for c in range(col - around, col + around + 1)]


def views_of(href: str) -> list[View]:
    with rasterio.open(href) as src:
        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        utm_b = transform_bounds(src.crs, "EPSG:32632", *src.bounds)
    cx, cy = (w + e) / 2, (s + n) / 2
    views = []
    for z in (10, 12, 13, 14, 15):  # the overview levels and full resolution
        views += mercator_tiles(cx, cy, z, around=0)
    views += mercator_tiles(w, n, 14)  # the upper-left corner: tiles half outside
    views += mercator_tiles(e, s, 13)  # the lower-right corner
    views.append(View("EPSG:4326", (cx - 0.03, cy - 0.02, cx + 0.01, cy + 0.02), 200, 180))
    ux, uy = (utm_b[0] + utm_b[2]) / 2, (utm_b[1] + utm_b[3]) / 2
    views.append(View("EPSG:32632", (ux - 3000, uy - 2000, ux + 2500, uy + 2600), 257, 300))
    return views


def same(expected, got) -> None:
    if expected is None:
        assert got is None
        return
    assert got is not None and got.shape == expected.shape and got.dtype == np.float32
    assert_array_equal(got.view(np.uint32), expected.view(np.uint32))  # NaN bits too


@pytest.mark.parametrize("name", ["utm", "geo", "i16", "etrs"])
def test_nearest_bit_identical(files, name):
    href, band = files[name]
    views = views_of(href)
    warped = 0
    for view in views:
        got = reader.read_band(href, band, view)
        same(reference(href, band, view), got)
        warped += got is not None and bool(np.isfinite(got).any())
    assert warped >= len(views) // 2  # the set is not empty tiles


RESAMPLINGS = [r for r in Resampling if r.name not in ("nearest", "gauss")]


@pytest.mark.parametrize("resampling", RESAMPLINGS, ids=lambda r: r.name)
def test_other_resamplings_bit_identical(files, resampling):
    for name in ("utm", "geo", "i16", "etrs"):
        href, band = files[name]
        for view in views_of(href)[1:12:2]:
            same(reference(href, band, view, resampling),
                 reader.read_band(href, band, view, resampling))


def test_fixed_area_of_interest_only_between_crs_on_one_datum(files):
    """The speed-up applies to the usual pairs (UTM/WGS 84 sources, Web Mercator tiles)
    and not to a datum shift, whose operation may depend on the area."""
    def aoi(name, dst):
        info = reader.file_info(files[name][0])
        return reader._area_of_interest(info.crs.wkt, CRS.from_user_input(dst).wkt,
                                        info.bounds)

    assert aoi("utm", MERCATOR) is not None
    assert aoi("geo", MERCATOR) is not None
    assert aoi("utm", "EPSG:32632") is not None
    assert aoi("etrs", MERCATOR) is None
    w, s, e, n = map(float, aoi("utm", MERCATOR).split(","))
    assert 12 < w < e < 13.5 and 45 < s < n < 46.5



@pytest.fixture(scope="module")
def one_grid(tmp_path_factory):
    """Six files on one UTM grid (the dates and bands of a collection's tile), each with its
    own nodata pattern; one has none at all (GDAL warps such a band by another path)."""
    tmp = tmp_path_factory.mktemp("one_grid")
    rng = np.random.default_rng(42)
    out = []
    for i in range(6):
        data = rng.integers(1, 3000, (1024, 1024)).astype("uint16")
        if i:
            data[rng.random(data.shape) < 0.04 * i] = 0
            data[: 100 * i, : 50 * i] = 0
        out.append((write(tmp / f"f{i}.tif", "EPSG:32633", from_origin(300000, 5100000, 10, 10),
                          data, nodata=0), Band("B", "uint16", 0, 10)))
    return out


@pytest.mark.parametrize("resampling", [r for r in Resampling if r.name != "gauss"],
                         ids=lambda r: r.name)
def test_windows_of_one_grid_warped_together_are_bit_identical(one_grid, resampling,
                                                               monkeypatch):
    """``warp_many`` gives each window exactly its own warp's values (the reference: one
    file, one plain rasterio warp), with one GDAL warp for all of them when the resampling
    is in ``SHARED_WARP``."""
    calls = []
    real = reader.reproject
    monkeypatch.setattr(reader, "reproject",
                        lambda src, *a, **kw: calls.append(src.shape) or real(src, *a, **kw))
    views = [v for v in views_of(one_grid[0][0]) if v.crs != CRS.from_epsg(32633)]
    joint = 0
    for view in views:
        windows = [reader.read_window(href, band, view) for href, band in one_grid]
        if any(w is None for w in windows):
            assert all(w is None for w in windows)
            continue
        assert all(isinstance(w, reader.Unwarped) for w in windows)
        calls.clear()
        got = reader.warp_many(windows, view, resampling)
        for (href, band), values in zip(one_grid, got, strict=True):
            same(reference(href, band, view, resampling), values)
        if resampling in reader.SHARED_WARP:
            assert calls == [(len(one_grid), *windows[0].values.shape)]
            joint += 1
        else:
            assert len(calls) == len(one_grid)
    assert resampling not in reader.SHARED_WARP or joint >= 5


def test_windows_of_other_grids_are_warped_apart(files):
    """Windows of different grids in one call: each gets its own warp, values as alone."""
    view = mercator_tiles(12.5, 46.0, 10, around=0)[0]  # utm, geo and etrs
    names = [n for n in ("utm", "geo", "i16", "etrs")
             if isinstance(reader.read_window(*files[n], view), reader.Unwarped)]
    assert len(names) >= 3
    windows = [reader.read_window(*files[n], view) for n in names]
    for name, values in zip(names, reader.warp_many(windows, view, Resampling.nearest),
                            strict=True):
        same(reference(*files[name], view), values)


def lattice_tiles(href: str, tms_id: str, zooms) -> list[View]:
    """Every tile of ``tms_id`` at ``zooms`` that touches the file (inside and over its
    edges), as the map layers make them (on their tile matrix's lattice)."""
    tms = tile_matrix_sets()[tms_id]
    with rasterio.open(href) as src:
        extent = extent_in(tms, src.bounds, src.crs)
    views = []
    for matrix in tms.matrices:
        if int(matrix.identifier) in zooms:
            row0, row1, col0, col1 = matrix_limits(matrix, extent)
            views += [tile_view(tms, matrix, row, col)
                      for row in range(row0, row1 + 1) for col in range(col0, col1 + 1)]
    return views


@pytest.mark.parametrize("name,tms_id,zooms", [
    ("utm", "GoogleMapsCompatible", (11, 12, 13, 14)),
    ("geo", "GoogleMapsCompatible", (12, 13, 14)),
    ("i16", "GoogleMapsCompatible", (11, 12, 13)),
    ("utm", "WorldCRS84Quad", (11, 12, 13)),
    ("etrs", "GoogleMapsCompatible", (12, 13)),
])
def test_tiles_of_a_lattice_bit_identical(files, monkeypatch, name, tms_id, zooms):
    """Map tiles (views on a tile matrix's lattice) inside a file come from the warped
    dataset kept for the lattice (no warp of their own), bit for bit what their own warp
    gives; tiles over the edges, and the masked file (another datum too), warp alone."""
    href, band = files[name]
    on_lattice = []
    real = reader._on_lattice
    monkeypatch.setattr(reader, "_on_lattice",
                        lambda *a: on_lattice.append(real(*a)) or on_lattice[-1])
    tiles = lattice_tiles(href, tms_id, zooms)
    valued = 0
    for view in tiles:
        expected = reference(href, band, view)
        same(expected, reader.read_band(href, band, view))
        valued += expected is not None and bool(np.isfinite(expected).any())
    assert valued >= len(tiles) // 2
    from_lattice = sum(got is not None for got in on_lattice)
    if name == "etrs":
        assert from_lattice == 0
    else:  # the tiles inside the file (a quarter to a half of these)
        assert from_lattice >= valued // 4, (from_lattice, valued)


def test_a_rewritten_file_is_read_anew_through_its_lattices(tmp_path, monkeypatch):
    """The warped datasets kept for a file's lattices see a file replaced (a stored result
    written again): every lattice, the one read before and one opened after, reads the new
    values."""
    path = tmp_path / "f.tif"
    band = Band("B", "uint16", 0, 10)
    on_lattice = []
    real = reader._on_lattice
    monkeypatch.setattr(reader, "_on_lattice",
                        lambda *a: on_lattice.append(real(*a)) or on_lattice[-1])

    def write_constant(value):
        data = np.full((1024, 1024), value, "uint16")
        write(tmp_path / "next.tif", "EPSG:32633", from_origin(300000, 5100000, 10, 10), data,
              nodata=0)
        (tmp_path / "next.tif").replace(path)

    def read(view):
        got = reader.read_band(str(path), band, view)
        assert on_lattice[-1] is not None  # from the lattice's warped dataset
        return np.nanmax(got)

    write_constant(100)
    tiles = lattice_tiles(str(path), "GoogleMapsCompatible", (14,))
    mercator = tiles[len(tiles) // 2]  # the middle of the file
    tiles = lattice_tiles(str(path), "WorldCRS84Quad", (13,))
    crs84 = tiles[len(tiles) // 2]
    assert read(mercator) == 100
    write_constant(200)
    assert read(crs84) == 200
    assert read(mercator) == 200
