"""The synthetic demo catalog (``tileserver.demo``): STAC structure, COG layout, value
ranges, realism checks (spectra per SCL class, NDVI changing between dates, clouds,
nodata) and determinism (any piece regenerates byte for byte, in another process too)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time
from datetime import UTC, datetime

import numpy as np
import pytest

from tileserver import demo
from tileserver.demo import (
    GENERATOR_VERSION,
    L1C_PRODUCT_ID,
    L2A_PRODUCT_ID,
    MARKER_NAME,
    PRODUCTS,
    SCL_CLASSES,
    band_grid,
    files,
    generate_band,
    synth,
    write_demo_catalog,
)
from tileserver.render.cog import COG_MEDIA_TYPE

rasterio = pytest.importorskip("rasterio")
pystac = pytest.importorskip("pystac")

from rasterio.warp import transform_bounds  # noqa: E402
from rasterio.windows import Window  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[3]

L2A_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12", "SCL"]
L1C_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
             "B11", "B12"]
L1C_RES = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B06": 20, "B07": 20,
           "B8A": 20, "B11": 20, "B12": 20, "B01": 60, "B09": 60, "B10": 60}
# Real Sentinel-2 (S2A) centre wavelengths in micrometres and STAC common names.
S2_WAVELENGTHS = {"B01": 0.443, "B02": 0.490, "B03": 0.560, "B04": 0.665, "B05": 0.705,
                  "B06": 0.740, "B07": 0.783, "B08": 0.842, "B8A": 0.865, "B09": 0.945,
                  "B10": 1.375, "B11": 1.610, "B12": 2.190}
S2_COMMON = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge",
             "B06": "rededge", "B07": "rededge", "B08": "nir", "B8A": "nir08", "B09": "nir09",
             "B10": "cirrus", "B11": "swir16", "B12": "swir22"}
EO_SCHEMA = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
RASTER_SCHEMA = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
PROJ_SCHEMA = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"

L2A_IDS = ["S2A_MSIL2A_20170105T102032_T32TPS", "S2A_MSIL2A_20170115T102032_T32TPS",
           "S2A_MSIL2A_20170125T102032_T32TPS", "S2A_MSIL2A_20170214T102032_T32TPS",
           "S2A_MSIL2A_20170306T102032_T32TPS", "S2A_MSIL2A_20170326T102032_T32TPS"]
L1C_IDS = ["S2A_MSIL1C_20170108T100021_T33UXP", "S2A_MSIL1C_20170118T100021_T33UXP",
           "S2A_MSIL1C_20170128T100021_T33UXP"]
STRIP_ITEM = "S2A_MSIL2A_20170115T102032_T32TPS"  # east ~15 % outside the swath


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def demo_dir(request, tmp_path_factory) -> pathlib.Path:
    """The demo catalog's directory, written once per session.

    Shares the suite-wide ``demo_catalog`` fixture when there is one (so the catalog is
    generated once for all modules), else writes into ``TILESERVER_TEST_DEMO_DIR`` or a
    temporary directory.
    """
    try:
        catalog = request.getfixturevalue("demo_catalog")
    except pytest.FixtureLookupError:
        cached = os.environ.get("TILESERVER_TEST_DEMO_DIR")
        directory = pathlib.Path(cached) if cached else tmp_path_factory.mktemp("demo")
        catalog = write_demo_catalog(directory)
    catalog = pathlib.Path(catalog)
    assert catalog.name == "catalog.json" and catalog.is_file()
    return catalog.parent


def tif(root: pathlib.Path, product: str, item: str, band: str) -> pathlib.Path:
    return root / product / item / f"{band}.tif"


def read(root: pathlib.Path, product: str, item: str, band: str, **kw) -> np.ndarray:
    with rasterio.open(tif(root, product, item, band)) as src:
        return src.read(1, **kw)


def raw_json(path: pathlib.Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def item_json(root: pathlib.Path, product: str, item: str) -> dict:
    return raw_json(root / product / item / f"{item}.json")


def ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    red, nir = red.astype(np.float64), nir.astype(np.float64)
    return (nir - red) / (nir + red)


# -- module API ----------------------------------------------------------------------------


def test_products_description():
    assert set(PRODUCTS) == {L2A_PRODUCT_ID, L1C_PRODUCT_ID}
    l2a, l1c = PRODUCTS[L2A_PRODUCT_ID], PRODUCTS[L1C_PRODUCT_ID]
    assert list(l2a.band_names) == L2A_BANDS
    assert list(l1c.band_names) == L1C_BANDS
    assert [i.id for i in l2a.items] == L2A_IDS
    assert [i.id for i in l1c.items] == L1C_IDS
    assert {b.resolution for b in l2a.bands} == {20}
    assert {b.name: b.resolution for b in l1c.bands} == L1C_RES
    assert l2a.band("SCL").dtype == "uint8" and l2a.band("B04").dtype == "uint16"
    assert set(SCL_CLASSES) == {0, 3, 4, 5, 6, 8, 9, 10, 11}
    assert set(demo.__all__) <= set(dir(demo))
    for name in ("write_demo_catalog", "generate_band", "band_grid"):
        assert getattr(demo, name).__doc__


def test_l1c_grid_is_the_snapped_utm_box():
    """The L1C bounds are the UTM 33N bounds of the lon/lat box, snapped out to 60 m."""
    b = transform_bounds("EPSG:4326", "EPSG:32633", 16.15, 47.90, 16.55, 48.40,
                         densify_pts=101)
    snapped = (np.floor(b[0] / 60) * 60, np.floor(b[1] / 60) * 60,
               np.ceil(b[2] / 60) * 60, np.ceil(b[3] / 60) * 60)
    assert PRODUCTS[L1C_PRODUCT_ID].bounds == tuple(int(v) for v in snapped)
    for res, (w, h) in {10: (3084, 5616), 20: (1542, 2808), 60: (514, 936)}.items():
        transform, width, height = band_grid(L1C_PRODUCT_ID, res)
        assert (width, height) == (w, h)
        assert (transform.c, transform.f) == (585060.0, 5361960.0)


def test_import_is_cheap():
    """Importing the package does not pull in rasterio, pystac nor tqdm."""
    code = (
        "import sys\n"
        "import tileserver.demo\n"
        "print(sorted(m for m in ('rasterio', 'pystac', 'osgeo', 'tqdm') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                         text=True, check=True, timeout=120, env=env)
    assert out.stdout.strip() == "[]"
    assert importlib.util.find_spec("tileserver.demo") is not None


# -- STAC -----------------------------------------------------------------------------------


def test_catalog_reads_with_pystac(demo_dir):
    catalog = pystac.Catalog.from_file(str(demo_dir / "catalog.json"))
    collections = {c.id: c for c in catalog.get_collections()}
    assert set(collections) == {L2A_PRODUCT_ID, L1C_PRODUCT_ID}
    expected_ids = {L2A_PRODUCT_ID: L2A_IDS, L1C_PRODUCT_ID: L1C_IDS}
    expected_bands = {L2A_PRODUCT_ID: L2A_BANDS, L1C_PRODUCT_ID: L1C_BANDS}
    for cid, coll in collections.items():
        assert "SYNTHETIC" in coll.description and "Sentinel-2" in coll.description
        assert coll.license in ("CC0-1.0", "proprietary")
        names = [b["name"] for b in coll.summaries.lists["eo:bands"]]
        assert names == expected_bands[cid]
        for b in coll.summaries.lists["eo:bands"]:
            if b["name"] != "SCL":
                assert b["center_wavelength"] == pytest.approx(S2_WAVELENGTHS[b["name"]])
                assert b["common_name"] == S2_COMMON[b["name"]]
        items = sorted(coll.get_items(), key=lambda i: i.datetime)
        assert [i.id for i in items] == expected_ids[cid]
        (start, end), = coll.extent.temporal.intervals
        assert start == items[0].datetime and end == items[-1].datetime
        sbox = coll.extent.spatial.bboxes[0]
        for item in items:
            assert item.collection_id == cid
            assert item.datetime.tzinfo is not None
            assert item.datetime.utcoffset().total_seconds() == 0
            assert item.geometry["type"] == "Polygon"
            ring = np.array(item.geometry["coordinates"][0])
            assert np.array_equal(ring[0], ring[-1])
            assert item.bbox == pytest.approx([ring[:, 0].min(), ring[:, 1].min(),
                                               ring[:, 0].max(), ring[:, 1].max()])
            assert sbox[0] <= item.bbox[0] and sbox[1] <= item.bbox[1]
            assert sbox[2] >= item.bbox[2] and sbox[3] >= item.bbox[3]
            assert list(item.assets) == expected_bands[cid]
            for key, asset in item.assets.items():
                assert asset.media_type == COG_MEDIA_TYPE
                assert asset.roles == ["data"]
                assert pathlib.Path(asset.get_absolute_href()) == tif(demo_dir, cid, item.id, key)
                assert pathlib.Path(asset.get_absolute_href()).is_file()
            # survives a dict round trip
            assert pystac.Item.from_dict(item.to_dict()).id == item.id


def test_dates(demo_dir):
    catalog = pystac.Catalog.from_file(str(demo_dir / "catalog.json"))
    l2a = sorted(catalog.get_child(L2A_PRODUCT_ID).get_items(), key=lambda i: i.datetime)
    l1c = sorted(catalog.get_child(L1C_PRODUCT_ID).get_items(), key=lambda i: i.datetime)
    assert len(l2a) == 6 and len(l1c) == 3
    assert sum(i.datetime.month == 1 for i in l2a) == 3
    assert all(datetime(2017, 1, 1, tzinfo=UTC) <= i.datetime < datetime(2017, 4, 1, tzinfo=UTC)
               for i in l2a)
    assert all((i.datetime.year, i.datetime.month) == (2017, 1) for i in l1c)
    assert l2a[0].datetime == datetime(2017, 1, 5, 10, 20, 32, tzinfo=UTC)


def test_raw_json_metadata(demo_dir):
    """The files as written: relative hrefs, extension fields and their schemas."""
    cat = raw_json(demo_dir / "catalog.json")
    assert cat["type"] == "Catalog"
    assert all(not link["href"].startswith("/") for link in cat["links"])
    for product in PRODUCTS.values():
        coll = raw_json(demo_dir / product.id / "collection.json")
        assert coll["id"] == product.id
        assert {EO_SCHEMA, RASTER_SCHEMA, PROJ_SCHEMA} <= set(coll["stac_extensions"])
        assert coll["summaries"]["proj:epsg"] == [product.epsg]
        for item_spec in product.items:
            d = item_json(demo_dir, product.id, item_spec.id)
            assert {EO_SCHEMA, RASTER_SCHEMA, PROJ_SCHEMA} <= set(d["stac_extensions"])
            props = d["properties"]
            assert props["proj:epsg"] == product.epsg
            finest = min(b.resolution for b in product.bands)
            transform, width, height = band_grid(product, finest)
            assert props["proj:shape"] == [height, width]
            assert props["proj:transform"] == [transform.a, transform.b, transform.c,
                                               transform.d, transform.e, transform.f]
            assert 5 <= props["eo:cloud_cover"] <= 40
            assert all(not link["href"].startswith("/") for link in d["links"])
            for key, asset in d["assets"].items():
                spec = product.band(key)
                assert asset["href"] == f"./{key}.tif"
                assert asset["type"] == COG_MEDIA_TYPE and asset["roles"] == ["data"]
                assert len(asset["eo:bands"]) == 1 and asset["eo:bands"][0]["name"] == key
                if key != "SCL":
                    assert asset["eo:bands"][0]["center_wavelength"] == S2_WAVELENGTHS[key]
                    assert asset["eo:bands"][0]["common_name"] == S2_COMMON[key]
                rb, = asset["raster:bands"]
                assert rb == {"nodata": 0, "data_type": spec.dtype,
                              "spatial_resolution": spec.resolution}
                assert "scale" not in rb and "offset" not in rb
                t, w, h = band_grid(product, key)
                assert asset["proj:shape"] == [h, w]
                assert asset["proj:transform"][:6] == [t.a, t.b, t.c, t.d, t.e, t.f]


def test_cloud_cover_differs_between_dates(demo_dir):
    for product in PRODUCTS.values():
        covers = [item_json(demo_dir, product.id, i.id)["properties"]["eo:cloud_cover"]
                  for i in product.items]
        assert len(set(covers)) == len(covers)


def test_footprints(demo_dir):
    """Footprints cover the required areas; the partial swath has a smaller one."""
    l2a = {i: item_json(demo_dir, L2A_PRODUCT_ID, i) for i in L2A_IDS}
    inner = transform_bounds("EPSG:32632", "EPSG:4326", 652000, 5161000, 672000, 5181000)
    for iid, d in l2a.items():
        bbox = d["bbox"]
        assert bbox[0] <= inner[0] and bbox[1] <= inner[1] and bbox[3] >= inner[3]
        if iid != STRIP_ITEM:
            assert bbox[2] >= inner[2]
    full = l2a[L2A_IDS[0]]["bbox"]
    strip = l2a[STRIP_ITEM]["bbox"]
    assert strip[2] < full[2] - 0.02  # ~15 % of 0.43 degrees missing in the east
    for iid in L1C_IDS:
        bbox = item_json(demo_dir, L1C_PRODUCT_ID, iid)["bbox"]
        assert bbox[0] <= 16.15 and bbox[1] <= 47.90 and bbox[2] >= 16.55 and bbox[3] >= 48.40


# -- COG files ----------------------------------------------------------------------------


def test_cogs_layout(demo_dir):
    files = sorted(demo_dir.rglob("*.tif"))
    assert len(files) == 6 * 10 + 3 * 13
    assert not list(demo_dir.rglob("*.tmp")) and not list(demo_dir.rglob("*.aux.xml"))
    for path in files:
        product = PRODUCTS[path.parent.parent.name]
        spec = product.band(path.stem)
        with rasterio.open(path) as src:
            assert src.driver == "GTiff"
            assert src.count == 1 and src.dtypes[0] == spec.dtype
            assert src.nodata == 0
            assert src.crs.to_epsg() == product.epsg
            assert src.res == (spec.resolution, spec.resolution)
            transform, width, height = band_grid(product, spec.name)
            assert (src.width, src.height) == (width, height)
            assert tuple(src.transform)[:6] == tuple(transform)[:6]
            prof = src.profile
            assert prof["tiled"] is True
            assert (prof["blockxsize"], prof["blockysize"]) == (512, 512)
            assert src.compression.name.lower() in ("zstd", "deflate")
            structure = src.tags(ns="IMAGE_STRUCTURE")
            assert structure.get("LAYOUT") == "COG"
            assert structure.get("PREDICTOR") == "2"
            ovr = src.overviews(1)
            assert ovr and ovr[0] == 2
            assert max(-(-width // ovr[-1]), -(-height // ovr[-1])) <= 512
            assert src.descriptions == (spec.name,)
            # a lossless, compressed file: much smaller than the raw pixels
            assert path.stat().st_size < width * height * np.dtype(spec.dtype).itemsize


def test_bounds_cover_required_areas(demo_dir):
    for iid in L2A_IDS:
        for band in L2A_BANDS:
            with rasterio.open(tif(demo_dir, L2A_PRODUCT_ID, iid, band)) as src:
                left, bottom, right, top = src.bounds
                assert (left, bottom, right, top) == (646000, 5155000, 678000, 5187000)
                assert left <= 652000 and right >= 672000 and bottom <= 5161000 and top >= 5181000
    box = transform_bounds("EPSG:4326", "EPSG:32633", 16.15, 47.90, 16.55, 48.40,
                           densify_pts=101)
    for iid in L1C_IDS:
        seen = set()
        for band in L1C_BANDS:
            with rasterio.open(tif(demo_dir, L1C_PRODUCT_ID, iid, band)) as src:
                b = tuple(src.bounds)
                seen.add(b)
                assert b[0] <= box[0] and b[1] <= box[1] and b[2] >= box[2] and b[3] >= box[3]
                assert all(v % 60 == 0 for v in b)
        assert len(seen) == 1  # 10, 20 and 60 m grids are aligned


# -- values ---------------------------------------------------------------------------------


def test_value_ranges_and_nodata(demo_dir):
    for iid in L2A_IDS:
        for band in L2A_BANDS:
            a = read(demo_dir, L2A_PRODUCT_ID, iid, band)
            w = a.shape[1]
            if band == "SCL":
                assert a.dtype == np.uint8
                assert set(np.unique(a).tolist()) <= set(SCL_CLASSES)
            else:
                assert a.dtype == np.uint16 and a.max() <= 10000
            if iid == STRIP_ITEM:
                assert (a[:, int(0.88 * w):] == 0).all()  # outside the swath
                assert (a[:, : int(0.8 * w)] > 0).all()
            else:
                assert (a > 0).all()
    for iid in L1C_IDS:
        for band in L1C_BANDS:
            a = read(demo_dir, L1C_PRODUCT_ID, iid, band)
            assert a.dtype == np.uint16
            assert a.min() >= 1 and a.max() <= 10000


def test_nodata_edge_is_consistent_across_bands(demo_dir):
    masks = [read(demo_dir, L2A_PRODUCT_ID, STRIP_ITEM, b) == 0 for b in L2A_BANDS]
    assert all(np.array_equal(masks[0], m) for m in masks[1:])
    frac = masks[0].mean()
    assert 0.12 < frac < 0.18


def test_overviews_ignore_nodata(demo_dir):
    """Overviews are averages of valid pixels only (no dark seam at the swath edge)."""
    with rasterio.open(tif(demo_dir, L2A_PRODUCT_ID, STRIP_ITEM, "B04")) as src:
        full = src.read(1)
        small = src.read(1, out_shape=(src.height // 4, src.width // 4))
    valid = small > 0
    assert 0.8 < valid.mean() < 0.9
    # the valid overview pixels have the same distribution as the full-resolution ones
    assert abs(np.median(small[valid]) - np.median(full[full > 0])) < 100


def test_scl_classes_and_cloud_cover(demo_dir):
    union = set()
    for iid in L2A_IDS:
        scl = read(demo_dir, L2A_PRODUCT_ID, iid, "SCL")
        codes = set(np.unique(scl).tolist())
        union |= codes
        assert {4, 5} <= codes
        valid = scl > 0
        cloudy = np.isin(scl, (8, 9, 10))[valid].mean()
        assert 0.03 <= cloudy <= 0.45, (iid, cloudy)
        cover = item_json(demo_dir, L2A_PRODUCT_ID, iid)["properties"]["eo:cloud_cover"]
        assert cover == pytest.approx(100 * cloudy, abs=5)
    assert {3, 4, 5, 6, 8, 9, 10, 11} <= union


@pytest.fixture(scope="module")
def l2a_stack(demo_dir):
    """All L2A items: {item id: {band: array}}."""
    return {iid: {b: read(demo_dir, L2A_PRODUCT_ID, iid, b) for b in L2A_BANDS}
            for iid in L2A_IDS}


def test_spectral_signatures_per_scl_class(l2a_stack):
    d = l2a_stack[L2A_IDS[0]]
    scl = d["SCL"]

    def med(band, cls):
        return float(np.median(d[band][scl == cls]))

    # vegetation: dark red, bright NIR
    assert 150 <= med("B04", 4) <= 800 and 1800 <= med("B8A", 4) <= 4800
    assert med("B8A", 4) > 2.5 * med("B04", 4)
    # water: dark, NIR below red
    assert med("B04", 6) < 1000 and med("B8A", 6) < med("B04", 6)
    # not vegetated (soil, towns): bright red, NDVI low
    assert 700 <= med("B04", 5) <= 2600
    # clouds: bright and white in the visible, bright in SWIR
    vis = [med(b, 9) for b in ("B02", "B03", "B04")]
    assert min(vis) > 5000 and max(vis) / min(vis) < 1.15 and med("B11", 9) > 3000
    # snow: very bright in the visible, dark in SWIR (unlike clouds)
    assert med("B03", 11) > 5000 and med("B11", 11) < 1500
    # cloud shadows: darker than the same ground on another date without clouds
    other = l2a_stack[L2A_IDS[2]]
    pix = (scl == 3) & np.isin(other["SCL"], (4, 5, 6, 11))
    assert pix.sum() > 1000
    ratio = d["B03"][pix].astype(float) / other["B03"][pix]
    assert np.median(ratio) < 0.7


def test_ndvi_changes_between_january_dates(l2a_stack):
    """Over vegetation, NDVI differs between two January dates, differently per field."""
    a, b = l2a_stack[L2A_IDS[0]], l2a_stack[L2A_IDS[2]]
    veg = (a["SCL"] == 4) & (b["SCL"] == 4)
    assert veg.mean() > 0.1
    diff = ndvi(b["B04"], b["B8A"])[veg] - ndvi(a["B04"], a["B8A"])[veg]
    assert np.abs(diff).mean() > 0.03
    assert diff.std() > 0.05
    assert (diff > 0.05).mean() > 0.05 and (diff < -0.05).mean() > 0.05


def test_same_landscape_on_all_dates(l2a_stack):
    """The land cover is the same place: water stays water where both dates are clear."""
    water = [d["SCL"] == 6 for d in l2a_stack.values()]
    clear = [np.isin(d["SCL"], (4, 5, 6)) for d in l2a_stack.values()]
    both = clear[0] & clear[2]
    assert np.array_equal(water[0][both], water[2][both])


def test_l1c_realism(demo_dir):
    iid = L1C_IDS[2]
    b02 = read(demo_dir, L1C_PRODUCT_ID, iid, "B02")
    b04 = read(demo_dir, L1C_PRODUCT_ID, iid, "B04")
    b08 = read(demo_dir, L1C_PRODUCT_ID, iid, "B08")
    b11 = read(demo_dir, L1C_PRODUCT_ID, iid, "B11")
    b10 = read(demo_dir, L1C_PRODUCT_ID, iid, "B10")
    # 10 m bands are 2x the 20 m grid, 60 m bands 1/3 of it
    assert b02.shape == (2 * b11.shape[0], 2 * b11.shape[1])
    assert b10.shape == (b11.shape[0] // 3, b11.shape[1] // 3)
    # cloudy vs clear at 60 m (block means of the finer bands)
    b02_60 = b02.reshape(b10.shape[0], 6, b10.shape[1], 6).mean(axis=(1, 3))
    b11_60 = b11.reshape(b10.shape[0], 3, b10.shape[1], 3).mean(axis=(1, 3))
    cloud = (b02_60 > 5000) & (b11_60 > 3000)
    clear = b02_60 < 2000
    assert 0.05 < cloud.mean() < 0.45 and clear.mean() > 0.4
    assert np.median(b10[clear]) < 100 and np.median(b10[cloud]) > 1000
    # top of atmosphere: haze makes the blue band brighter than the surface would be
    assert np.median(b02[::2, ::2][np.repeat(np.repeat(clear, 3, 0), 3, 1)]) > 800
    # vegetation exists and NDVI varies between dates
    v = ndvi(b04, b08)
    assert (v > 0.4).mean() > 0.1
    b04_0 = read(demo_dir, L1C_PRODUCT_ID, L1C_IDS[1], "B04")
    b08_0 = read(demo_dir, L1C_PRODUCT_ID, L1C_IDS[1], "B08")
    both = (v > 0.3) & (ndvi(b04_0, b08_0) > 0.3)
    assert np.abs(v[both] - ndvi(b04_0, b08_0)[both]).mean() > 0.03


# -- determinism, idempotence, atomicity -----------------------------------------------------


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


DETERMINISM_CASES = [
    (L2A_PRODUCT_ID, STRIP_ITEM, "B8A", Window(1200, 700, 384, 256)),
    (L2A_PRODUCT_ID, L2A_IDS[4], "SCL", Window(0, 0, 1600, 1600)),
    (L1C_PRODUCT_ID, L1C_IDS[0], "B04", Window(1500, 2500, 300, 200)),
    (L1C_PRODUCT_ID, L1C_IDS[1], "B09", Window(100, 300, 128, 64)),
]


def test_generate_band_matches_files(demo_dir):
    for product, iid, band, window in DETERMINISM_CASES:
        expected = read(demo_dir, product, iid, band, window=window)
        assert np.array_equal(generate_band(product, iid, band, window), expected)
    full = generate_band(L2A_PRODUCT_ID, L2A_IDS[0], "B03")
    assert np.array_equal(full, read(demo_dir, L2A_PRODUCT_ID, L2A_IDS[0], "B03"))
    rows, cols = slice(10, 20), slice(30, 45)
    assert np.array_equal(generate_band(L2A_PRODUCT_ID, L2A_IDS[0], "B03", (rows, cols)),
                          full[rows, cols])


def test_determinism_in_a_fresh_process(demo_dir):
    """Another interpreter (other hash seed, fresh RNGs) regenerates the same bytes."""
    cases = [(p, i, b, tuple(w.flatten())) for p, i, b, w in DETERMINISM_CASES]
    code = (
        "import hashlib, sys\n"
        "from rasterio.windows import Window\n"
        "from tileserver.demo import generate_band\n"
        f"for p, i, b, w in {cases!r}:\n"
        "    a = generate_band(p, i, b, Window(*w))\n"
        "    print(hashlib.sha256(a.tobytes()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                         text=True, timeout=300, env=env, cwd=str(REPO))
    assert out.returncode == 0, out.stderr
    hashes = out.stdout.split()
    expected = [sha(read(demo_dir, p, i, b, window=w)) for p, i, b, w in DETERMINISM_CASES]
    assert hashes == expected


def test_idempotent(demo_dir):
    catalog = demo_dir / "catalog.json"
    marker = raw_json(demo_dir / MARKER_NAME)
    assert marker["generator_version"] == GENERATOR_VERSION
    before = {p: p.stat().st_mtime_ns for p in (catalog, demo_dir / MARKER_NAME)}
    t = time.perf_counter()
    assert write_demo_catalog(demo_dir) == catalog
    assert write_demo_catalog(str(demo_dir)) == catalog
    assert time.perf_counter() - t < 2
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_is_complete_needs_catalog_and_matching_marker(tmp_path):
    assert not files.is_complete(tmp_path)
    (tmp_path / "catalog.json").write_text("{}")
    assert not files.is_complete(tmp_path)
    (tmp_path / MARKER_NAME).write_text(json.dumps({"generator_version": "0-old"}))
    assert not files.is_complete(tmp_path)
    (tmp_path / MARKER_NAME).write_text("not json")
    assert not files.is_complete(tmp_path)
    (tmp_path / MARKER_NAME).write_text(json.dumps({"generator_version": GENERATOR_VERSION}))
    assert files.is_complete(tmp_path)


def test_interrupted_run_leaves_no_catalog(tmp_path, monkeypatch):
    """A run that dies half-way leaves no catalog.json nor marker (and no temp files)."""
    calls = []
    real_state = synth._make_state

    def failing_state(p, scene, d):
        calls.append(d)
        if len(calls) > 1:
            raise KeyboardInterrupt("simulated interruption")
        return real_state(p, scene, d)

    (tmp_path / "catalog.json").write_text("{}")  # stale catalog of an older run
    (tmp_path / MARKER_NAME).write_text(json.dumps({"generator_version": "0-old"}))
    monkeypatch.setattr(synth, "_make_state", failing_state)
    with pytest.raises(KeyboardInterrupt):
        write_demo_catalog(tmp_path, workers=1)
    assert not (tmp_path / "catalog.json").exists()
    assert not (tmp_path / MARKER_NAME).exists()
    assert not list(tmp_path.rglob("*.json"))
    assert not list(tmp_path.rglob("*.tmp"))


def test_cog_write_is_atomic(tmp_path, monkeypatch):
    """A COG whose writing fails leaves neither the file nor a temporary behind."""
    product = PRODUCTS[L1C_PRODUCT_ID]
    spec = product.band("B10")
    arr = np.ones((936, 514), np.uint16)
    target = tmp_path / "B10.tif"
    import rasterio.shutil

    def broken_copy(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(rasterio.shutil, "copy", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        demo.write_band(target, arr, product, spec)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    demo.write_band(target, arr, product, spec)
    assert [p.name for p in tmp_path.iterdir()] == ["B10.tif"]
    with rasterio.open(target) as src:
        assert src.overviews(1) == [2] and np.array_equal(src.read(1), arr)


# -- progress of the first start --------------------------------------------------------------

def test_line_progress_reports_files_megabytes_and_time_left():
    from tileserver.demo.progress import LineProgress

    lines: list[str] = []
    progress = LineProgress(lines.append, every=0)
    progress.start(4, 400)
    progress.t0 -= 10  # ten seconds ago
    progress.advance(100, 3 * 1024 * 1024)
    progress.advance(100, 1024 * 1024)
    progress.finish()
    assert lines[0] == "writing the demo data: 4 files (first start only)"
    assert lines[1].startswith("demo data: 1/4 files, 3 MB written, about 30 s left")
    assert lines[2].startswith("demo data: 2/4 files, 4 MB written, about 10 s left")


def test_progress_on_a_terminal_is_a_bar_and_in_a_pipe_plain_lines():
    import io

    from tileserver.demo.progress import BarProgress, LineProgress, progress_for

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    bar = progress_for(term)
    assert isinstance(bar, BarProgress)
    bar.start(2, 10)
    bar.advance(5, 2 * 1024 * 1024)
    bar.finish()
    assert "demo data:" in term.getvalue() and "1/2 files, 2 MB written" in term.getvalue()
    pipe = io.StringIO()
    assert isinstance(progress_for(pipe), LineProgress)


@pytest.mark.slow
def test_writing_tells_the_progress_of_every_file(tmp_path):
    """The writer announces its files and their pixels, then every COG with its size on
    disk (biggest first), and finishes the report also when the run is cut short."""
    from tileserver.demo import Progress

    class Recorder(Progress):
        def __init__(self):
            self.started, self.files, self.finished = None, [], False

        def start(self, files, weight):
            self.started = (files, weight)

        def advance(self, weight, nbytes):
            self.files.append((weight, nbytes))
            if len(self.files) == 2:
                raise KeyboardInterrupt("enough")

        def finish(self):
            self.finished = True

    rec = Recorder()
    with pytest.raises(KeyboardInterrupt):
        write_demo_catalog(tmp_path, workers=1, progress=rec)
    bands = [(p, b) for p in PRODUCTS.values() for _ in p.items for b in p.bands]
    pixels = sum(band_grid(p, b.name)[1] * band_grid(p, b.name)[2] for p, b in bands)
    assert rec.started == (len(bands), pixels) and rec.finished
    # the L1C 10 m bands first; a task already running when the run stopped may finish
    assert [w for w, _ in rec.files[:2]] == [3084 * 5616] * 2
    written = list(tmp_path.rglob("*.tif"))
    assert sorted(n for _, n in rec.files) == sorted(f.stat().st_size for f in written)
