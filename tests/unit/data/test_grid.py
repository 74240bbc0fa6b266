"""The native grid of a graph is the data's own grid (issue 23): the files' extent, CRS,
pixel size and alignment without a bbox; a bbox snapped outwards to the files' pixels;
views of the files' grid read, never warped; tiles of one grid mosaicked as they are."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from numpy.testing import assert_array_equal
from rasterio.warp import transform_bounds

from tests.support.core import make_engine
from tests.support.grids import (
    PRODUCTS,
    make_grid_catalog,
    ndvi_graph,
    plain_ndvi,
    plain_stack,
    source_grid,
)
from tileserver.data import reader
from tileserver.data.grid import file_grid, header_grid
from tileserver.jobs.batch import aligned_side


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return make_grid_catalog(tmp_path_factory.mktemp("grids"))


@pytest.fixture
def engine(catalog):
    return make_engine(catalog)


@pytest.fixture
def no_warp(monkeypatch):
    """Fail any warp of the reader: the views of these tests are windows of the files."""
    def warp(*args, **kwargs):
        raise AssertionError("a view on the files' grid was warped")
    monkeypatch.setattr(reader, "reproject", warp)


def load(product: str, extent: dict | None = None) -> dict:
    return {"load": {"process_id": "load_collection", "arguments": {
        "id": product, "spatial_extent": extent, "temporal_extent": None,
        "bands": ["B04", "B08"]}, "result": True}}


@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_without_a_bbox_the_view_is_the_files_grid(engine, product):
    crs, transform, shape = source_grid(product)
    view = engine.native_view(engine.parse(ndvi_graph(product)))
    assert view.crs == rasterio.crs.CRS.from_user_input(crs)
    assert view.transform == transform  # exactly: origin, pixel size
    assert (view.height, view.width) == shape


@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_the_whole_collection_is_read_not_warped_and_equals_the_files(engine, catalog,
                                                                      product, no_warp):
    """Several dates, nodata included, the tiles of TILES side by side: bit for bit the
    concatenated files."""
    g = engine.parse(load(product))
    cube = engine.evaluate(g, engine.native_view(g))
    expected = plain_stack(catalog.parent, product)
    assert cube.data.shape == expected.shape
    assert np.isnan(expected).any() and np.isfinite(expected).mean() > 0.5
    assert_array_equal(cube.data, expected)
    result = engine.evaluate(engine.parse(ndvi_graph(product)), engine.native_view(g))
    assert_array_equal(result.data[:, 0], plain_ndvi(catalog.parent, product))


def test_two_adjacent_tiles_mosaic_as_their_concatenation(engine, catalog, no_warp):
    """A window across the seam of the two TILES files: the numpy concatenation."""
    _, transform, _ = source_grid("TILES")
    x_seam = transform.c + 200 * transform.a
    extent = {"west": x_seam - 55 * 10.0, "east": x_seam + 45 * 10.0,
              "north": transform.f - 20 * 10.0, "south": transform.f - 100 * 10.0,
              "crs": "EPSG:32631"}
    g = engine.parse(load("TILES", extent))
    view = engine.native_view(g)
    assert (view.width, view.height) == (100, 80)
    cube = engine.evaluate(g, view)
    assert_array_equal(cube.data, plain_stack(catalog.parent, "TILES")[:, :, 20:100, 145:245])


@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_a_bbox_is_snapped_outwards_to_the_files_pixels(engine, catalog, product, no_warp):
    crs, transform, (height, width) = source_grid(product)
    res = transform.a
    # a box cutting pixels 10.3 .. 57.6 (columns) and 5.2 .. 40.9 (rows)
    left, right = transform.c + 10.3 * res, transform.c + 57.6 * res
    top, bottom = transform.f - 5.2 * res, transform.f - 40.9 * res
    g = engine.parse(ndvi_graph(product, {"west": left, "east": right, "north": top,
                                          "south": bottom, "crs": crs}))
    view = engine.native_view(g)
    assert view.transform == transform * Affine.translation(10, 5)
    assert (view.width, view.height) == (48, 36)
    values = engine.evaluate(g, view).data[:, 0]
    assert_array_equal(values, plain_ndvi(catalog.parent, product)[:, 5:41, 10:58])


def test_a_bbox_in_another_crs_is_transformed_then_snapped(engine, catalog, no_warp):
    crs, transform, _ = source_grid("LAEA")
    inner = (transform.c + 30.5 * 20, transform.f - 90.5 * 20,
             transform.c + 110.5 * 20, transform.f - 20.5 * 20)
    west, south, east, north = transform_bounds(crs, "EPSG:4326", *inner)
    g = engine.parse(ndvi_graph("LAEA", {"west": west, "east": east, "north": north,
                                         "south": south}))
    view = engine.native_view(g)
    assert view.crs.to_epsg() == 3035
    col = (view.transform.c - transform.c) / 20
    row = (transform.f - view.transform.f) / 20
    assert col == int(col) and row == int(row) and view.res == (20.0, 20.0)
    ours = transform_bounds("EPSG:4326", crs, west, south, east, north, densify_pts=21)
    vb = view.bounds
    assert vb[0] <= ours[0] < vb[0] + 20 and vb[2] - 20 < ours[2] <= vb[2]
    assert vb[1] <= ours[1] < vb[1] + 20 and vb[3] - 20 < ours[3] <= vb[3]
    c, r = int(col), int(row)
    values = engine.evaluate(g, view).data[:, 0]
    expected = plain_ndvi(catalog.parent, "LAEA")[:, r:r + view.height, c:c + view.width]
    # 1.x masks the pixels whose centre lies outside the (curved, reprojected) bbox: only
    # pixels of the outer ring, which the outward snap added
    masked = np.isnan(values) & ~np.isnan(expected)
    assert masked.any() and not masked[:, 1:-1, 1:-1].any()
    assert_array_equal(values[~masked], expected[~masked])


def test_0_0_2_bboxes_keep_their_grid(engine):
    """0.0.2 answers are frozen: its bbox is its grid, not snapped."""
    _, transform, _ = source_grid("TILES")
    left, top = transform.c + 3.5 * 10, transform.f - 2.5 * 10
    g = engine.parse({"process_id": "filter_bbox", "args": {
        "imagery": {"product_id": "TILES"}, "left": left, "right": left + 500,
        "top": top, "bottom": top - 300, "srs": "EPSG:32631"}})
    view = engine.native_view(g)
    assert view.bounds == (left, top - 300, left + 500, top)
    assert (view.width, view.height) == (50, 30)


def test_resample_spatial_to_another_resolution_keeps_the_files_extent(engine):
    graph = load("TILES")
    graph["load"].pop("result")
    graph["rs"] = {"process_id": "resample_spatial", "arguments": {
        "data": {"from_node": "load"}, "resolution": 25}, "result": True}
    view = engine.native_view(engine.parse(graph))
    _, transform, (height, width) = source_grid("TILES")
    assert view.res == (25.0, 25.0) and (view.width, view.height) == (160, 64)
    assert view.transform == Affine(25.0, 0, transform.c, 0, -25.0, transform.f)


def test_proj_fields_and_headers_give_the_same_grid(engine):
    tiles = engine.catalog.get("TILES").items[0]
    assert set(tiles.grids) == {"B04", "B08"}
    from_proj = file_grid(tiles, "B04", 10.0)
    header = header_grid(tiles.assets["B04"])
    assert (from_proj.crs, from_proj.transform, from_proj.width, from_proj.height) == (
        header.crs, header.transform, header.width, header.height)
    assert header.block == 64
    laea = engine.catalog.get("LAEA").items[0]
    assert laea.grids == {} and file_grid(laea, "B08", 20.0) == header_grid(laea.assets["B08"])


def test_the_native_grid_knows_the_files_block_side(engine):
    grid = engine.native_grid(engine.parse(ndvi_graph("TILES")))
    assert grid.block == 64 and grid.shape == (160, 400)


@pytest.mark.parametrize("side, block, expected", [
    (1024, 512, 1024), (1024, None, 1024), (1000, 512, 512), (256, 512, 256),
    (300, 512, 300), (1536, 512, 1536), (100, 64, 64), (96, 128, 96),
])
def test_batch_block_sides_align_with_the_files_blocks(side, block, expected):
    assert aligned_side(side, block) == expected


def test_headers_read_for_a_native_grid_are_bounded(engine, monkeypatch):
    """Items the catalog gives no grid of: at most MAX_HEADERS headers are read, the other
    items count by their footprints (a STAC API's collection of many items)."""
    from tileserver.data import grid as grids

    read = []
    real = grids._header_grid.__wrapped__
    monkeypatch.setattr(grids, "MAX_HEADERS", 1)
    monkeypatch.setattr(grids, "_header_grid",
                        lambda href, signature: read.append(href) or real(href, signature))
    grid = engine.native_grid(engine.parse(ndvi_graph("LAEA")))
    assert len(set(read)) == 1
    _, transform, (height, width) = source_grid("LAEA")
    assert (grid.x0, grid.y0, grid.xres, grid.yres) == (transform.c, transform.f, 20.0, 20.0)
    left, bottom, right, top = grid.bounds  # the footprints (WGS84 boxes) hold the files
    assert left <= transform.c and top >= transform.f
    assert right >= transform.c + 20 * width and bottom <= transform.f - 20 * height
