"""The evaluator reads only what a view needs: the items of the view and the date range,
the bands the graph uses, the window at the overview level matching the view."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from numpy.testing import assert_allclose
from prometheus_client import REGISTRY
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import reproject, transform_bounds
from shapely.geometry import box, mapping

import tileserver.engine.evaluator as evaluator_module
from tests.support.core import (
    TEST_BOUNDS_32632,
    bbox,
    call,
    daterange,
    leaf,
    make_engine,
    pixels_read,
)
from tileserver.data.reader import choose_overview
from tileserver.datacube.view import View
from tileserver.errors import LimitExceeded


@pytest.fixture
def reads(monkeypatch):
    """Every file read of the evaluator (``read_window``): ``(href, band id, view)``."""
    calls = []
    real = evaluator_module.read_window

    def spy(href, band, view, *args, **kwargs):
        calls.append((href, band.id, view))
        return real(href, band, view, *args, **kwargs)

    monkeypatch.setattr(evaluator_module, "read_window", spy)
    return calls


def _names(calls):
    return sorted({(Path(h).parent.name, b) for h, b, _ in calls})


VIEW = View("EPSG:32632", TEST_BOUNDS_32632, 256, 256)


def test_only_dates_of_the_range_and_bands_used(engine, reads):
    g = call("NDVI", daterange(leaf(), "2020-05-11", "2020-05-11"), red="B04", nir="B08")
    engine.evaluate(engine.parse(g), VIEW)
    assert _names(reads) == [("test_1", "B04"), ("test_1", "B08"),
                             ("test_2", "B04"), ("test_2", "B08")]


def test_filter_bands_pushes_down(engine, reads):
    engine.evaluate(engine.parse(call("count_time", call("filter_bands", leaf(), bands=3))),
                    VIEW)
    assert {b for _, b in _names(reads)} == {"B11"}
    assert len(reads) == 4


def test_only_items_intersecting_the_view(engine, reads):
    far = View("EPSG:32632", (600_000, 5_000_000, 601_000, 5_001_000), 50, 50)
    cube = engine.evaluate(engine.parse(leaf()), far)
    assert reads == [] and cube.data.shape[0] == 0


def test_filter_bbox_masks_outside(engine):
    """The bbox covers view rows/cols 5..50 (20 m pixels): everything else is nodata."""
    g = bbox(leaf(), 500_100, 501_000, 5_099_900, 5_099_000)
    cube = engine.evaluate(engine.parse(g), VIEW)
    assert np.isnan(cube.data[..., 51:, :]).all() and np.isnan(cube.data[..., :, 51:]).all()
    assert np.isnan(cube.data[..., :4, :]).all() and np.isnan(cube.data[..., :, :4]).all()
    assert np.isfinite(cube.data[..., 6:49, 6:49]).mean() > 0.8


@pytest.mark.parametrize("factor, overviews, expected", [
    (1.0, [2, 4, 8], None),
    (1.99, [2, 4, 8], None),
    (2.0, [2, 4, 8], 0),
    (3.9, [2, 4, 8], 0),
    (4.0, [2, 4, 8], 1),
    (7.9999999, [2, 4, 8], 2),  # tolerance for float noise
    (100.0, [2, 4, 8], 2),
    (0.25, [2, 4, 8], None),
    (50.0, [], None),
    (5.0, [2, 4, 8, 16, 32], 1),
])
def test_choose_overview(factor, overviews, expected):
    assert choose_overview(factor, overviews) == expected


def _overview_reads() -> dict[str, float]:
    out = {}
    for metric in REGISTRY.collect():
        if metric.name == "tileserver_source_reads":
            for s in metric.samples:
                if s.name.endswith("_total"):
                    out[s.labels["overview"]] = s.value
    return out


@pytest.mark.parametrize("size, level", [(512, 0), (256, 1), (128, 2), (64, 3), (16, 3)])
def test_overview_level_matches_the_view(small_catalog, size, level):
    """A view at 1/2, 1/4, 1/8 of the resolution reads overview 2, 4, 8; values equal
    the overview warped with plain rasterio."""
    engine = make_engine(small_catalog)
    before = _overview_reads()
    g = engine.parse(daterange(call("filter_bands", leaf(), bands="B08"), "2020-05-01",
                               "2020-05-01"))
    view = View("EPSG:32632", TEST_BOUNDS_32632, size, size)
    cube = engine.evaluate(g, view)
    after = _overview_reads()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert {k for k, v in delta.items() if v} == {str(level)}
    href = engine.catalog.get("TEST").items[0].assets["B08"]
    opts = {} if level == 0 else {"overview_level": level - 1}
    with rasterio.open(href, **opts) as src:
        arr = src.read(1).astype(np.float32)
        arr[arr == 0] = np.nan
        ref = np.full((size, size), np.nan, np.float32)
        reproject(arr, ref, src_transform=src.transform, src_crs=src.crs, src_nodata=np.nan,
                  dst_transform=view.transform, dst_crs=view.crs, dst_nodata=np.nan,
                  resampling=Resampling.nearest)
    assert_allclose(cube.data[0, 0], ref, equal_nan=True)


def test_native_view_and_times(engine):
    g = engine.parse(call("NDVI", bbox(leaf(), 500_100, 504_000, 5_099_000, 5_096_000),
                          red="B04", nir="B08"))
    v = engine.native_view(g)
    assert v.crs.to_epsg() == 32632
    assert v.bounds == (500_100, 5_096_000, 504_000, 5_099_000)
    assert (v.width, v.height) == (390, 300) and v.res == (10.0, 10.0)
    assert [t.day for t in engine.times(g)] == [1, 11, 21]
    b11 = engine.parse(call("filter_bands", bbox(leaf(), 500_100, 504_000, 5_099_000,
                                                   5_096_000), bands="B11"))
    assert engine.native_view(b11).res == (20.0, 20.0)
    reduced = engine.parse(call("mean_time", b11.source))
    assert engine.times(reduced) is None
    geo = engine.parse(bbox(leaf(), 9.01, 9.05, 46.045, 46.02, "EPSG:4326"))
    gv = engine.native_view(geo)
    assert gv.crs.to_epsg() == 4326 and gv.bounds == (9.01, 46.02, 9.05, 46.045)
    # about 10 m per pixel: 0.04 deg of longitude at 46 N is ~3.1 km
    assert 290 < gv.width < 330 and 260 < gv.height < 300


def test_max_pixels(small_catalog):
    engine = make_engine(small_catalog, max_pixels=256 * 256 * 3 * 3 - 1)
    with pytest.raises(LimitExceeded, match="evaluation too large.*3 bands x 3 dates"):
        engine.evaluate(engine.parse(leaf()), VIEW)
    # one band fits
    engine.evaluate(engine.parse(call("filter_bands", leaf(), bands="B04")), VIEW)


# -- laziness: a small view of a large scene --------------------------------------------

SCENE = 4096
ORIGIN = (600_000.0, 5_400_000.0)  # EPSG:32633, 10 m


@pytest.fixture(scope="module")
def big_catalog(tmp_path_factory) -> Path:
    """One 4096 x 4096 COG (10 m, 512 px tiles, overviews 2..32), used as two bands of
    three acquisitions."""
    root = tmp_path_factory.mktemp("big")
    n = SCENE
    x = np.arange(n, dtype=np.uint32)
    arr = ((x[None, :] * 7 + x[:, None] * 3) % 9000 + 1).astype(np.uint16)
    arr[((x[None, :] // 64 + x[:, None] // 64) % 17) == 0] = 0
    master = root / "master.tif"
    with rasterio.open(master, "w", driver="GTiff", width=n, height=n, count=1,
                       dtype="uint16", crs="EPSG:32633", transform=from_origin(*ORIGIN, 10, 10),
                       nodata=0, tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate") as dst:
        dst.write(arr, 1)
        dst.build_overviews([2, 4, 8, 16, 32], Resampling.nearest)
    with rasterio.open(master) as src:
        geo = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    col = pystac.Collection("BIG", "a large scene", pystac.Extent(
        pystac.SpatialExtent([list(geo)]), pystac.TemporalExtent([[None, None]])))
    for day in (3, 13, 23):
        item = pystac.Item(f"big{day}", mapping(box(*geo)), list(geo),
                           datetime(2021, 6, day, tzinfo=UTC), {})
        for band in ("B04", "B08"):
            path = root / f"big{day}" / f"{band}.tif"
            path.parent.mkdir(exist_ok=True)
            shutil.copy(master, path)
            item.add_asset(band, pystac.Asset(str(path), media_type=pystac.MediaType.COG,
                                              roles=["data"]))
        col.add_item(item)
    col.normalize_hrefs(str(root))
    col.make_all_asset_hrefs_relative()
    col.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "collection.json"


def _scene_view(scale: int, crs="EPSG:32633", size=256) -> View:
    """A size x size view whose pixels are ``scale`` source pixels, near the scene centre."""
    cx, cy = ORIGIN[0] + SCENE * 5, ORIGIN[1] - SCENE * 5
    half = size * 10 * scale / 2
    bounds = (cx - half, cy - half, cx + half, cy + half)
    if crs != "EPSG:32633":
        bounds = transform_bounds("EPSG:32633", crs, *bounds)
    return View(crs, bounds, size, size)


NDVI_GRAPH = call("NDVI", leaf("BIG"), red="B04", nir="B08")


@pytest.mark.parametrize("scale, crs", [
    (1, "EPSG:32633"),  # full resolution
    (8, "EPSG:32633"),  # 1/64 of the resolution (64x the extent)
    (16, "EPSG:32633"),  # the whole scene
    (3, "EPSG:32633"),  # between overview levels
    (1, "EPSG:3857"),  # warped, full resolution
    (16, "EPSG:4326"),  # warped, zoomed far out
])
def test_pixels_read_stay_near_the_view(big_catalog, scale, crs):
    engine = make_engine(big_catalog)
    view = _scene_view(scale, crs)
    before = pixels_read()
    cube = engine.evaluate(engine.parse(NDVI_GRAPH), view)
    read = pixels_read() - before
    needed = view.pixels * 2 * 3  # bands x dates
    assert cube.data.shape == (3, 1, 256, 256)
    assert np.isfinite(cube.data).mean() > 0.5
    # a window of the right overview: at most 2x finer per axis (4x pixels) plus padding
    # and, for warped views, the bounding box of the rotated footprint
    assert needed * 0.9 <= read <= needed * 4.5, (read, needed, read / needed)
    # far from the naive read of full-resolution windows
    naive = (view.pixels * scale * scale) * 6
    if scale >= 8:
        assert read < naive / 10


def test_pixels_read_on_the_demo_scene(demo_catalog):
    """The same bound on the demo's Sentinel-2 L1C 10 m bands (5616 x 3084 per file)."""
    engine = make_engine(demo_catalog)
    g = engine.parse(call("NDVI", leaf("Sentinel2-L1C"), red="B04", nir="B08"))
    ndates = len(engine.times(g))
    product = engine.catalog.get("Sentinel2-L1C")
    with rasterio.open(product.items[0].assets["B04"]) as src:
        cx, cy = (src.bounds.left + src.bounds.right) / 2, (src.bounds.top + src.bounds.bottom) / 2
    for scale in (1, 8, 12):
        half = 128 * 10 * scale
        view = View(src.crs, (cx - half, cy - half, cx + half, cy + half), 256, 256)
        before = pixels_read()
        engine.evaluate(g, view)
        read = pixels_read() - before
        assert 0 < read <= 4.5 * view.pixels * 2 * ndates, (scale, read)


def test_cache_makes_repeats_free(big_catalog):
    engine = make_engine(big_catalog)
    g = engine.parse(call("max_time", NDVI_GRAPH))
    view = _scene_view(2)
    first = engine.evaluate(g, view)
    before = pixels_read()
    second = engine.evaluate(g, view)
    assert pixels_read() == before
    assert second is first



def test_concurrent_evaluations_equal_sequential_ones(small_catalog):
    """Threads evaluating overlapping graphs and views (shared cache, shared read pool)
    get exactly what a lone evaluation gets."""
    from concurrent.futures import ThreadPoolExecutor

    graphs = [call(p, call("NDVI", leaf(), red="B04", nir="B08"))
              for p in ("min_time", "max_time", "median_time", "count_time")]
    views = [View("EPSG:32632", TEST_BOUNDS_32632, s, s) for s in (64, 128, 200)] + [
        View("EPSG:32633", (35_600.0, 5_112_600.0, 41_600.0, 5_117_400.0), 150, 120)]
    jobs = [(g, v) for g in graphs for v in views] * 2
    expected = {}
    lone = make_engine(small_catalog)
    for g, v in jobs[: len(jobs) // 2]:
        expected[(id(g), v.key)] = lone.evaluate(lone.parse(g), v).data
    shared = make_engine(small_catalog)

    def run(job):
        g, v = job
        return job, shared.evaluate(shared.parse(g), v).data

    with ThreadPoolExecutor(8) as pool:
        for (g, v), data in pool.map(run, jobs):
            np.testing.assert_array_equal(data, expected[(id(g), v.key)])


def test_time_range_argument_narrows_the_reads(engine, reads):
    """``evaluate(..., time_range=)`` (a WMTS Time dimension) reads only that day."""
    day = (datetime(2020, 5, 11, tzinfo=UTC), datetime(2020, 5, 11, 23, 59, 59, tzinfo=UTC))
    g = engine.parse(call("NDVI", leaf(), red="B04", nir="B08"))
    cube = engine.evaluate(g, VIEW, time_range=day)
    assert [t.day for t in cube.times] == [11]
    assert {item for item, _ in _names(reads)} == {"test_1", "test_2"}
    full = engine.evaluate(g, VIEW)
    np.testing.assert_array_equal(cube.data[0], full.data[1])
