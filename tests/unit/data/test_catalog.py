"""The catalog convention of DESIGN.md on catalogs that are not the demo: several CRSs,
relative hrefs, nodata from the file, ``raster:bands`` scale/offset, files without
overviews, plain stripped GeoTIFF and JPEG 2000, uint16/int16/float32."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from numpy.testing import assert_allclose, assert_array_equal
from rasterio.transform import from_origin
from shapely.geometry import box, mapping

from tests.support.core import leaf, make_engine, reference_stack
from tileserver.data.catalog import Catalog, CatalogError
from tileserver.data.reader import read_band
from tileserver.datacube.view import View
from tileserver.errors import ProductNotFound

WHEN = datetime(2021, 7, 1, 10, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalog(small_catalog):
    return Catalog.load([str(small_catalog)])


def test_products_bands_dtypes_nodata(catalog):
    test = catalog.get("TEST")
    assert test.band_ids() == ["B04", "B08", "B11"]
    b04, b11 = test.bands["B04"], test.bands["B11"]
    # the STAC JSON says nothing about them: nodata, dtype and resolution come from the file
    assert (b04.dtype, b04.nodata, b04.res_m, b04.wavelength_nm) == ("uint16", 0.0, 10.0, 665)
    assert (b11.res_m, b11.scale, b11.offset) == (20.0, 1.0, 0.0)
    floats = catalog.get("FLOATS").bands["T"]
    assert floats.dtype == "float32" and np.isnan(floats.nodata)
    assert (floats.scale, floats.offset, floats.res_m) == (0.5, 10.0, 20.0)


def test_items_in_several_crs(catalog):
    test = catalog.get("TEST")
    assert [i.crs.to_epsg() for i in test.items] == [32632, 32632, 32633, 32633]
    assert [i.datetime for i in test.items] == sorted(i.datetime for i in test.items)
    assert test.crs.to_epsg() in (32632, 32633)
    t0, t1 = test.time_range
    assert (t0.isoformat(), t1.isoformat()) == ("2020-05-01T10:00:00+00:00",
                                                "2020-05-21T10:00:00+00:00")
    west, south, east, north = test.bbox
    assert 8.99 < west < 9.0 < east < 9.07 and 46.0 < south < north < 46.06


def test_items_for_filters_space_and_time(catalog):
    test = catalog.get("TEST")
    may11 = (datetime(2020, 5, 11, tzinfo=UTC), datetime(2020, 5, 11, 23, tzinfo=UTC))
    assert [i.id for i in test.items_for(None, may11)] == ["test_1", "test_2"]
    assert [i.id for i in test.items_for((9.01, 46.02, 9.02, 46.03), None)] == [
        "test_0", "test_1", "test_2", "test_3"]
    assert test.items_for((10.0, 46.0, 10.1, 46.1), None) == []


def test_relative_hrefs_survive_a_move(small_catalog, tmp_path):
    item_json = json.loads((small_catalog.parent / "TEST/test_0/test_0.json").read_text())
    assert item_json["assets"]["B04"]["href"] == "./B04.tif"
    moved = tmp_path / "moved"
    shutil.copytree(small_catalog.parent, moved)
    cat = Catalog.load([str(moved / "catalog.json")])
    href = cat.get("TEST").items[0].assets["B04"]
    assert Path(href).is_file() and Path(href).is_relative_to(moved)


def test_unknown_product_and_bad_paths(catalog, tmp_path):
    with pytest.raises(ProductNotFound, match="'NOPE'; available: FLOATS, TEST"):
        catalog.get("NOPE")
    with pytest.raises(CatalogError, match="does not exist"):
        Catalog.load([str(tmp_path / "missing.json")])
    empty = pystac.Collection("EMPTY", "no items", pystac.Extent(
        pystac.SpatialExtent([[0, 0, 1, 1]]), pystac.TemporalExtent([[WHEN, WHEN]])))
    empty.normalize_hrefs(str(tmp_path / "empty"))
    empty.save(pystac.CatalogType.SELF_CONTAINED)
    with pytest.raises(CatalogError, match="EMPTY has no items"):
        Catalog.load([str(tmp_path / "empty" / "collection.json")])


# -- a collection of my own: plain files in odd formats -----------------------------------

ORIGIN = (600_000.0, 5_300_000.0)  # EPSG:32633


def _values(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(-2000, 9000, size=shape).astype(np.int16)


@pytest.fixture(scope="module")
def odd_collection(tmp_path_factory) -> Path:
    """``collection.json`` (no catalog above it) with one item in EPSG:32633 whose bands are
    a stripped int16 GeoTIFF (nodata -9999, no overviews), a lossless JPEG 2000 uint16
    and a 30 m float32 GeoTIFF; ``proj:epsg`` given, datetime only as start_datetime."""
    root = tmp_path_factory.mktemp("odd")
    d = root / "item1"
    d.mkdir()
    arr = _values((300, 200), 1)
    arr[:50, :50] = -9999
    common = dict(crs="EPSG:32633", count=1)
    with rasterio.open(d / "a.tif", "w", driver="GTiff", width=200, height=300, dtype="int16",
                       nodata=-9999, transform=from_origin(*ORIGIN, 10, 10), **common) as dst:
        dst.write(arr, 1)
    jp2 = (np.abs(_values((300, 200), 2)).astype(np.uint16) + 1)
    with rasterio.open(d / "b.jp2", "w", driver="JP2OpenJPEG", width=200, height=300,
                       dtype="uint16", transform=from_origin(*ORIGIN, 10, 10), QUALITY=100,
                       REVERSIBLE="YES", **common) as dst:
        dst.write(jp2, 1)
    coarse = np.linspace(0, 1, 100 * 67, dtype=np.float32).reshape(100, 67)
    with rasterio.open(d / "c.tif", "w", driver="GTiff", width=67, height=100,
                       dtype="float32", transform=from_origin(*ORIGIN, 30, 30), **common) as dst:
        dst.write(coarse, 1)
    stac_nodata = (np.arange(300 * 200) % 7).reshape(300, 200).astype(np.uint16)
    with rasterio.open(d / "d.tif", "w", driver="GTiff", width=200, height=300, dtype="uint16",
                       transform=from_origin(*ORIGIN, 10, 10), **common) as dst:
        dst.write(stac_nodata, 1)
    col = pystac.Collection("ODD", "odd files", pystac.Extent(
        pystac.SpatialExtent([[0, 0, 1, 1]]), pystac.TemporalExtent([[WHEN, WHEN]])),
        title="Odd formats")
    with rasterio.open(d / "a.tif") as src:
        geo = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    item = pystac.Item("item1", mapping(box(*geo)), list(geo), None,
                       {"start_datetime": WHEN.isoformat(), "end_datetime": WHEN.isoformat(),
                        "proj:epsg": 32633})
    item.add_asset("a", pystac.Asset(str(d / "a.tif"), media_type=pystac.MediaType.TIFF,
                                     roles=["data"]))
    item.add_asset("b", pystac.Asset(str(d / "b.jp2"), media_type=pystac.MediaType.JPEG2000,
                                     roles=["data"]))
    item.add_asset("c", pystac.Asset(str(d / "c.tif"), media_type=pystac.MediaType.GEOTIFF,
                                     roles=["data"]))
    item.add_asset("d", pystac.Asset(str(d / "d.tif"), media_type=pystac.MediaType.GEOTIFF,
                                     roles=["data"],
                                     extra_fields={"raster:bands": [{"nodata": 0}]}))
    item.add_asset("thumbnail", pystac.Asset(str(d / "a.tif"), media_type="image/png",
                                             roles=["thumbnail"]))
    col.add_item(item)
    col.normalize_hrefs(str(root))
    col.make_all_asset_hrefs_relative()
    col.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "collection.json"


def test_odd_collection_loads(odd_collection):
    product = Catalog.load([str(odd_collection)]).get("ODD")
    assert product.band_ids() == ["a", "b", "c", "d"]  # the thumbnail is not a band
    a, b, c = (product.bands[k] for k in "abc")
    assert (a.dtype, a.nodata, a.res_m) == ("int16", -9999.0, 10.0)
    assert (b.dtype, b.nodata) == ("uint16", None)
    assert (c.dtype, c.res_m) == ("float32", 30.0)
    assert product.bands["d"].nodata == 0.0  # from raster:bands, the file has none
    assert product.items[0].datetime == WHEN
    assert product.crs.to_epsg() == 32633
    assert product.to_json()["title"] == "Odd formats"


def test_odd_collection_values(odd_collection):
    engine = make_engine(odd_collection)
    graph = engine.parse(leaf("ODD"))
    view = View("EPSG:32633", (ORIGIN[0], ORIGIN[1] - 3000, ORIGIN[0] + 2000, ORIGIN[1]),
                200, 300)
    cube = engine.evaluate(graph, view)
    _, ref = reference_stack(odd_collection, "ODD", view, ["a", "b", "c"])
    assert_allclose(cube.data[:, :3], ref, equal_nan=True)
    assert np.isnan(cube.data[0, 0, :50, :50]).all()  # int16 nodata -9999 from the file
    assert not np.isnan(cube.data[0, 1]).any()  # the JPEG 2000 has no nodata
    with rasterio.open(odd_collection.parent / "item1" / "b.jp2") as src:
        assert_array_equal(cube.data[0, 1], src.read(1))  # lossless round trip
    with rasterio.open(odd_collection.parent / "item1" / "d.tif") as src:
        raw = src.read(1).astype(np.float32)
        assert src.nodata is None
    # nodata declared only in raster:bands masks the file's zeros
    assert_array_equal(cube.data[0, 3], np.where(raw == 0, np.nan, raw))


def test_file_without_overviews_read_at_coarse_view(catalog, small_catalog):
    """A zoomed-out view of a file without overviews reads the full-resolution window."""
    product = catalog.get("FLOATS")
    href = product.items[0].assets["T"]
    with rasterio.open(href) as src:
        assert src.overviews(1) == []
        bounds, full = tuple(src.bounds), src.read(1)
    view = View("EPSG:32632", bounds, 64, 64)  # factor 4
    out = read_band(href, product.bands["T"], view)
    sample = full[2::4, 2::4] * 0.5 + 10
    assert out.shape == (64, 64)
    assert_allclose(out, sample, equal_nan=True)
