"""The official ``openeo`` Python client drives a real ``tileserver serve`` (gunicorn) over
HTTP, from the bare root URL (where it picks openEO 1.3, the newest production version), and
through 1.2 at its base (connect, basic auth, sync result, batch job, services: the last
section); values are compared with plain rasterio + numpy references computed here."""

from __future__ import annotations

import shutil
import warnings
from datetime import UTC, datetime

import numpy as np
import openeo
import pytest
import rasterio
import requests
from numpy.testing import assert_allclose
from openeo.api.process import Parameter
from openeo.rest import OpenEoApiError
from openeo.rest.auth.auth import BearerAuth
from owslib.wmts import WebMapTileService
from rasterio.crs import CRS
from rasterio.io import MemoryFile

from tests.support.core import ndvi, reference_stack, stac_items
from tests.support.hardening import PASSWORDS, users_file
from tests.support.load import serve
from tests.support.process_server import ProcessServer
from tileserver.datacube.view import View
from tileserver.settings import load_settings
from tileserver.web.auth import users_path

pytestmark = pytest.mark.slow

#: A window of the synthetic TEST collection (both UTM zones' items cover it).
EXTENT = {"west": 500_000, "south": 5_096_000, "east": 503_000, "north": 5_099_000,
          "crs": "EPSG:32632"}
DATES = ["2020-05-01", "2020-05-31"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, small_catalog):
    home = tmp_path_factory.mktemp("client") / "home"
    home.mkdir()
    shutil.copyfile(users_file(tmp_path_factory), users_path(load_settings(home=str(home))))
    # remote process definitions from the tests' own loopback server are allowed
    with serve(home, small_catalog, 256 * 1024 * 1024, threads=4,
               TILESERVER_REMOTE_PROCESS_ALLOW="127.0.0.1") as (base, _pids):
        yield base


@pytest.fixture(scope="module")
def con(server):
    connection = openeo.connect(server)
    connection.authenticate_basic("alice", PASSWORDS["alice"])
    return connection


def expected_grid(catalog) -> View:
    """The grid a download of :data:`EXTENT` must have, computed without the server: the
    extent in its CRS at the pixel size of the collection's items in that CRS."""
    for item in stac_items(catalog, "TEST"):
        with rasterio.open(item.assets["B04"].get_absolute_href()) as src:
            if src.crs == CRS.from_user_input(EXTENT["crs"]):
                res = src.res
                break
    west, south, east, north = (EXTENT[k] for k in ("west", "south", "east", "north"))
    return View(EXTENT["crs"], (west, south, east, north), round((east - west) / res[0]),
                round((north - south) / res[1]))


def reference(catalog, path, bands=("B04", "B08"), grid: bool = True):
    """``(dataset profile, (t, b, y, x) reference)`` on the grid of the file at ``path``;
    that grid is first checked against :func:`expected_grid` (CRS, bounds, transform and
    shape) unless ``grid`` is false (a result on another grid, checked by its test)."""
    with rasterio.open(path) as src:
        view = View(src.crs, tuple(src.bounds), src.width, src.height)
        if grid:
            want = expected_grid(catalog)
            assert src.crs == want.crs, (src.crs, want.crs)
            assert tuple(src.bounds) == pytest.approx(want.bounds, abs=1e-6), src.bounds
            assert (src.height, src.width) == (want.height, want.width)
            assert src.transform.almost_equals(want.transform), src.transform
        data = src.read().astype("float64")
        data[~np.isfinite(data)] = np.nan
    _days, stack = reference_stack(catalog, "TEST", view, list(bands),
                                   datetime(2020, 5, 1, tzinfo=UTC),
                                   datetime(2020, 5, 31, 23, 59, tzinfo=UTC))
    return data, stack


def reduce_t(stack: np.ndarray, fn) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        return fn(stack, axis=0)


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    assert np.isfinite(expected).mean() > 0.5  # the comparison is about real values
    assert_allclose(actual, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


def load(con, bands=("B04", "B08")):
    return con.load_collection("TEST", spatial_extent=EXTENT, temporal_extent=DATES,
                               bands=list(bands))


# -- discovery, auth, collections ------------------------------------------------------


def test_bare_root_finds_the_13_api(server):
    con = openeo.connect(server)
    assert con.root_url.rstrip("/").endswith("/openeo/1.3")
    assert con.capabilities().api_version() == "1.3.0"
    links = {link["rel"]: link for link in con.capabilities().capabilities["links"]}
    assert links["web-editor"]["href"].startswith("https://editor.openeo.org/?server=")
    assert {"XYZ", "WMTS"} <= set(con.list_service_types())
    assert "GTiff" in con.list_output_formats()
    with pytest.raises(OpenEoApiError) as err:
        con.describe_account()
    assert err.value.http_status_code == 401


def test_authenticate_basic(server, con):
    assert con.describe_account()["user_id"] == "alice"
    other = openeo.connect(server)
    with pytest.raises(OpenEoApiError) as err:
        other.authenticate_basic("alice", "not-her-password")
    assert err.value.http_status_code == 403 and err.value.code == "CredentialsInvalid"


def test_collections(con):
    assert {"TEST", "FLOATS"} <= set(con.list_collection_ids())
    meta = con.describe_collection("TEST")
    assert set(meta["cube:dimensions"]) == {"x", "y", "t", "bands"}
    cube = con.load_collection("TEST")
    assert cube.metadata.band_names == ["B04", "B08", "B11"]
    assert cube.metadata.band_dimension.band_index("red") == 0
    assert cube.metadata.band_dimension.band_index("nir") == 1
    assert "ndvi" in {p["id"] for p in con.list_processes()}


def test_collection_items(server, con, small_catalog):
    """``collection_items``: the items of the catalog in the bbox and dates, as STAC
    features with their properties, page by page (``limit`` and the ``next`` link)."""
    from tests.support.core import stac_items, when  # noqa: PLC0415

    everything = sorted(stac_items(small_catalog, "TEST"), key=lambda i: (when(i), i.id))
    pages = list(con.collection_items("TEST", limit=3))
    assert [len(p["features"]) for p in pages] == [3, 1]
    features = [f for p in pages for f in p["features"]]
    assert [f["id"] for f in features] == [i.id for i in everything]
    assert [f["properties"]["eo:cloud_cover"] for f in features] == [
        i.properties["eo:cloud_cover"] for i in everything]
    assert all(f["assets"] == {} and f["collection"] == "TEST" for f in features)
    (page,) = con.collection_items("TEST", spatial_extent=[8.99, 45.99, 9.1, 46.1],
                                   temporal_extent=["2020-05-11", "2020-05-21"])
    assert [f["id"] for f in page["features"]] == [  # a STAC interval: the end day included
        i.id for i in everything if "2020-05-11" <= f"{when(i):%Y-%m-%d}" <= "2020-05-21"]
    (page,) = con.collection_items("TEST", temporal_extent=["2020-05-02", "2020-05-11"])
    assert [f["id"] for f in page["features"]] == ["test_1", "test_2"]
    assert not con.collection_items("TEST", spatial_extent=[0, 0, 1, 1]).__next__()[
        "features"]
    bad = requests.get(f"{server}/openeo/1.2/collections/TEST/items?bbox=1,2", timeout=30)
    assert bad.status_code == 400 and bad.json()["code"] == "BadRequest"
    assert requests.get(f"{server}/openeo/1.2/collections/NOPE/items",
                        timeout=30).status_code == 404


# -- synchronous processing ------------------------------------------------------------


def test_ndvi_min_over_time_download(con, small_catalog, tmp_path):
    path = tmp_path / "ndvi.tif"
    load(con).ndvi().reduce_dimension(dimension="t", reducer="min").download(
        path, format="GTiff")
    data, stack = reference(small_catalog, path)
    assert data.shape[0] == 1
    expected = reduce_t(ndvi(stack[:, 0], stack[:, 1]), np.nanmin)
    assert_same(data[0], expected)


def test_band_math_with_cube_band(con, small_catalog, tmp_path):
    cube = load(con)
    red, nir = cube.band("red"), cube.band("B08")
    path = tmp_path / "bandmath.tif"
    ((nir - red) / (nir + red)).reduce_dimension(dimension="t", reducer="max").download(
        path, format="GTiff")
    data, stack = reference(small_catalog, path)
    expected = reduce_t(ndvi(stack[:, 0], stack[:, 1]), np.nanmax)
    assert_same(data[0], expected)


def test_apply_linear_scale_range(con, small_catalog, tmp_path):
    cube = load(con, bands=["B08"]).apply(lambda x: x.linear_scale_range(0, 4000, 0, 1))
    path = tmp_path / "scaled.tif"
    cube.reduce_dimension(dimension="t", reducer="mean").download(path, format="GTiff")
    data, stack = reference(small_catalog, path, bands=["B08"])
    scaled = np.clip(stack[:, 0], 0, 4000) / 4000.0
    assert_same(data[0], reduce_t(scaled, np.nanmean))


def test_load_collection_property_filters(con, small_catalog, tmp_path):
    """``max_cloud_cover`` and ``properties`` callbacks (their parameter is ``value``) select
    the items read; the dates of the others are gone."""
    path = tmp_path / "clear.tif"
    con.load_collection("TEST", spatial_extent=EXTENT, temporal_extent=DATES, bands=["B04"],
                        max_cloud_cover=20).download(path, format="GTiff")
    with rasterio.open(path) as src:
        view = View(src.crs, tuple(src.bounds), src.width, src.height)
        data = src.read().astype("float64")
        names = src.descriptions
    days, stack = reference_stack(small_catalog, "TEST", view, ["B04"], keep=lambda item:
                                  item.properties["eo:cloud_cover"] <= 20)
    assert days == ["2020-05-01", "2020-05-11"]  # 05-11 from its clear item only
    assert [n.split()[0] for n in names] == days
    assert_same(data, stack[:, 0])
    cube = con.load_collection("TEST", spatial_extent=EXTENT, temporal_extent=DATES,
                               bands=["B04"], properties={
                                   "eo:cloud_cover": lambda v: v.between(30, 50)})
    cube.reduce_dimension(dimension="t", reducer="max").download(path, format="GTiff")
    data, _ = reference(small_catalog, path, bands=["B04"])
    with rasterio.open(path) as src:
        view = View(src.crs, tuple(src.bounds), src.width, src.height)
    days, stack = reference_stack(small_catalog, "TEST", view, ["B04"], keep=lambda item:
                                  item.properties["eo:cloud_cover"] == 40)
    assert days == ["2020-05-11"]
    assert_same(data[0], stack[0, 0])
    with pytest.raises(OpenEoApiError) as err:
        con.datacube_from_process("load_collection", id="TEST", spatial_extent=EXTENT,
                                  properties={"eo:cloud_cover": 20}).download(format="GTiff")
    assert err.value.http_status_code == 400 and "properties" in err.value.message


def test_aggregate_spatial_download_and_execute(con, small_catalog, tmp_path):
    """The client's aggregate_spatial paths: ``execute()`` (no save_result: JSON),
    ``download(format="JSON"/"CSV")`` (a save_result after the table), a batch job; the
    means equal rasterio + numpy over the pixel centres inside the polygon."""
    import csv  # noqa: PLC0415
    import json  # noqa: PLC0415

    from rasterio.features import geometry_mask  # noqa: PLC0415
    from rasterio.warp import transform_geom  # noqa: PLC0415

    from tests.support.core import TEST_BOUNDS_32632  # noqa: PLC0415

    poly = {"type": "Polygon", "coordinates": [[
        [9.0012, 46.0012], [9.03, 46.0012], [9.03, 46.02], [9.0012, 46.02], [9.0012, 46.0012]]]}
    cube = con.load_collection("TEST", temporal_extent=DATES, bands=["B04", "B08"]) \
        .aggregate_spatial(poly, "mean")
    native = View("EPSG:32632", TEST_BOUNDS_32632, 512, 512)
    days, stack = reference_stack(small_catalog, "TEST", native, ["B04", "B08"])
    inside = ~geometry_mask([transform_geom("EPSG:4326", "EPSG:32632", poly)], (512, 512),
                            native.transform)
    assert 1000 < inside.sum() < 512 * 512
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = {band: [np.nanmean(stack[t, b][inside]) for t in range(len(days))]
                    for b, band in enumerate(["B04", "B08"])}

    def check(table):
        # openEO's aggregate_spatial JSON: {date: [[value per band] per polygon]}
        assert list(table) == [f"{day}T00:00:00Z" for day in days]
        for b, values in enumerate(expected.values()):
            assert_allclose([table[f"{day}T00:00:00Z"][0][b] for day in days], values,
                            rtol=1e-5)

    check(cube.execute())
    cube.download(tmp_path / "means.json", format="JSON")
    check(json.loads((tmp_path / "means.json").read_text()))
    cube.download(tmp_path / "means.csv", format="CSV")
    with open(tmp_path / "means.csv", newline="") as f:
        rows = {(r["date"], r["band"]): float(r["value"]) for r in csv.DictReader(f)}
    for band, values in expected.items():
        assert_allclose([rows[(d, band)] for d in days], values, rtol=1e-5)
    job = cube.create_job(out_format="JSON")
    job.start_and_wait(max_poll_interval=1, connection_retry_interval=1, print=lambda *a: None)
    (path,) = [p for p in job.get_results().download_files(tmp_path / "job")
               if p.name.startswith("result")]
    check(json.loads(path.read_text()))
    job.delete()
    with pytest.raises(OpenEoApiError) as err:  # a table in an image format, before work
        cube.download(tmp_path / "x.tif", format="GTiff")
    assert err.value.http_status_code == 400 and err.value.code == "FormatUnsupported"


@pytest.mark.parametrize("method", ["near", "average"])
def test_resample_cube_spatial_to_the_grid_of_another_cube(con, small_catalog, tmp_path,
                                                             method):
    """10 m bands onto the 20 m grid of a cube of B11 (only its grid is used), warped with
    ``method``: equal to rasterio's warp of the files onto the result's grid (from their
    first overview, 20 m, as the server reads the level that fits)."""
    from rasterio.enums import Resampling  # noqa: PLC0415

    target = load(con, bands=["B11"])
    path = tmp_path / "on20m.tif"
    load(con).resample_cube_spatial(target, method=method).reduce_dimension(
        dimension="t", reducer="max").download(path, format="GTiff")
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32632 and src.res == (20.0, 20.0)
        view = View(src.crs, tuple(src.bounds), src.width, src.height)
        data = src.read().astype("float64")
    _days, stack = reference_stack(small_catalog, "TEST", view, ["B04", "B08"],
                                   datetime(2020, 5, 1, tzinfo=UTC),
                                   datetime(2020, 5, 31, 23, 59, tzinfo=UTC),
                                   resampling=Resampling.nearest if method == "near" else
                                   Resampling.average, overview_level=0)
    assert_same(data, reduce_t(stack, np.nanmax))


def test_mask_polygon(con, small_catalog, tmp_path):
    """Pixels whose centre is outside the polygon (or inside, with ``inside``) become
    nodata or ``replacement``; the extent stays that of the data."""
    from rasterio.features import geometry_mask  # noqa: PLC0415
    from rasterio.warp import transform_geom  # noqa: PLC0415

    poly = {"type": "Polygon", "coordinates": [[
        [9.005, 46.025], [9.03, 46.025], [9.03, 46.04], [9.005, 46.04], [9.005, 46.025]]]}
    base = load(con, bands=["B04"]).reduce_dimension(dimension="t", reducer="max")
    path = tmp_path / "masked.tif"
    base.mask_polygon(poly).download(path, format="GTiff")
    data, stack = reference(small_catalog, path, bands=["B04"])
    with rasterio.open(path) as src:
        assert tuple(src.bounds) == pytest.approx((EXTENT["west"], EXTENT["south"],
                                                   EXTENT["east"], EXTENT["north"]))
        outside = geometry_mask([transform_geom("EPSG:4326", src.crs, poly)],
                                (src.height, src.width), src.transform)
    assert 0.2 < outside.mean() < 0.9
    full = reduce_t(stack[:, 0], np.nanmax)
    assert_allclose(data[0], np.where(outside, np.nan, full), equal_nan=True, rtol=1e-6)
    cube = con.datacube_from_process("mask_polygon", data=base, mask=poly, replacement=-1,
                                     inside=True)
    cube.download(path, format="GTiff")
    data, _ = reference(small_catalog, path, bands=["B04"])
    assert_allclose(data[0], np.where(outside, full, -1), equal_nan=True, rtol=1e-6)


def test_aggregate_temporal_intervals(con, small_catalog, tmp_path):
    """One step per interval ([start, end), overlapping allowed), the dates inside reduced;
    an interval without data is nodata; the labels are the interval starts or ``labels``."""
    intervals = [["2020-05-01", "2020-05-11"], ["2020-05-01", "2020-05-31"],
                 ["2020-05-11", "2020-05-21"], ["2020-05-25", "2020-05-31"]]
    path = tmp_path / "intervals.tif"
    load(con, bands=["B08"]).aggregate_temporal(intervals, reducer="mean").download(
        path, format="GTiff")
    data, stack = reference(small_catalog, path, bands=["B08"])  # 05-01, 05-11, 05-21
    with rasterio.open(path) as src:
        assert [d.split()[0] for d in src.descriptions] == [
            "2020-05-01", "2020-05-01", "2020-05-11", "2020-05-25"]
    b08 = stack[:, 0]
    assert_same(data[0], b08[0])
    assert_same(data[1], reduce_t(b08, np.nanmean))
    assert_same(data[2], b08[1])
    assert np.isnan(data[3]).all()
    labelled = load(con, bands=["B08"]).aggregate_temporal(
        intervals[1:3], reducer="max", labels=["2020-05-15", "2020-05-16"])
    labelled.download(path, format="GTiff")
    with rasterio.open(path) as src:
        assert [d.split()[0] for d in src.descriptions] == ["2020-05-15", "2020-05-16"]
        assert_same(src.read(2).astype("float64"), b08[1])


def test_netcdf_download_is_a_labelled_data_cube(con, small_catalog, tmp_path):
    """``download("x.nc")`` gives what xarray users expect: one variable per band over
    (t, y, x) with dates, pixel-centre coordinates and the CRS; (y, x) once t is reduced."""
    import xarray  # noqa: PLC0415

    cube = load(con)
    cube.download(tmp_path / "cube.nc")
    cube.download(tmp_path / "cube.tif")
    data, stack = reference(small_catalog, tmp_path / "cube.tif")
    with rasterio.open(tmp_path / "cube.tif") as src:
        xs = src.bounds.left + (np.arange(src.width) + 0.5) * src.res[0]
        ys = src.bounds.top - (np.arange(src.height) + 0.5) * src.res[1]
    with xarray.open_dataset(tmp_path / "cube.nc") as ds:
        assert [str(t)[:10] for t in ds["t"].values] == ["2020-05-01", "2020-05-11",
                                                          "2020-05-21"]
        assert_allclose(ds["x"].values, xs)
        assert_allclose(ds["y"].values, ys)
        assert ds["B04"].dims == ("t", "y", "x")
        assert_same(ds["B04"].values.astype("float64"), stack[:, 0])
        assert_same(ds["B08"].values.astype("float64"), stack[:, 1])
        assert "32632" in ds["crs"].attrs["crs_wkt"] or "UTM zone 32N" in \
            ds["crs"].attrs["crs_wkt"]
    with rasterio.open(f"netcdf:{tmp_path / 'cube.nc'}:B08") as src:  # GDAL reads it too
        assert src.crs.to_epsg() == 32632 and src.count == 3
    load(con).ndvi().reduce_dimension(dimension="t", reducer="max").download(
        tmp_path / "ndvi.nc")
    with xarray.open_dataset(tmp_path / "ndvi.nc") as ds:
        (name,) = [v for v in ds.data_vars if v != "crs"]
        assert ds[name].dims == ("y", "x")
        assert_same(ds[name].values.astype("float64"),
                    reduce_t(ndvi(stack[:, 0], stack[:, 1]), np.nanmax))


def test_aggregate_spatial_time_series_at_points(con, small_catalog):
    """Points (a Point and a MultiPoint Feature beside a polygon): the values of the pixel
    each point falls in, per date, as rasterio reads them at that coordinate."""
    from rasterio.warp import transform as warp_points  # noqa: PLC0415

    from tests.support.core import TEST_BOUNDS_32632  # noqa: PLC0415

    pts = [(9.0101, 46.0102), (9.0222, 46.0333), (9.0305, 46.0251)]
    poly = {"type": "Polygon", "coordinates": [[
        [9.0012, 46.0012], [9.03, 46.0012], [9.03, 46.02], [9.0012, 46.02], [9.0012, 46.0012]]]}
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point",
                                                           "coordinates": pts[0]}},
        {"type": "Feature", "properties": {}, "geometry": {"type": "MultiPoint",
                                                           "coordinates": pts[1:]}},
        {"type": "Feature", "properties": {}, "geometry": poly}]}
    table = con.load_collection("TEST", temporal_extent=DATES, bands=["B04"]) \
        .aggregate_spatial(fc, "mean").execute()
    native = View("EPSG:32632", TEST_BOUNDS_32632, 512, 512)
    days, stack = reference_stack(small_catalog, "TEST", native, ["B04"])
    xs, ys = warp_points("EPSG:4326", "EPSG:32632", [p[0] for p in pts], [p[1] for p in pts])
    rows, cols = rasterio.transform.rowcol(native.transform, xs, ys)
    at = [stack[:, 0, r, c] for r, c in zip(rows, cols, strict=True)]
    # openEO's aggregate_spatial JSON: {date: [[value per band] per geometry]}
    assert list(table) == [f"{day}T00:00:00Z" for day in days]
    first, multi, area = (np.array([table[f"{day}T00:00:00Z"][i][0] for day in days],
                                   dtype=float) for i in range(3))
    assert np.isfinite(at[0]).sum() >= 2
    assert_allclose(first, at[0], equal_nan=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert_allclose(multi, np.nanmean([at[1], at[2]], axis=0), equal_nan=True)
    assert np.isfinite(area).all()


def test_drop_dimension(con, small_catalog, tmp_path):
    """The single band and the single date can be dropped; a dimension with more labels is
    a 400 DimensionLabelCountMismatch."""
    path = tmp_path / "dropped.nc"
    one_day = con.load_collection("TEST", spatial_extent=EXTENT, bands=["B08"],
                                  temporal_extent=["2020-05-11", "2020-05-12"])
    one_day.drop_dimension("bands").drop_dimension("t").download(path)
    import xarray  # noqa: PLC0415

    one_day.download(tmp_path / "day.tif")
    _data, stack = reference(small_catalog, tmp_path / "day.tif", bands=["B08"])
    with xarray.open_dataset(path) as ds:
        (name,) = [v for v in ds.data_vars if v != "crs"]
        assert ds[name].dims == ("y", "x")
        assert_same(ds[name].values.astype("float64"), stack[1, 0])  # 05-11
    for cube, dim in ((load(con), "bands"), (load(con), "t")):
        with pytest.raises(OpenEoApiError) as err:
            cube.drop_dimension(dim).download(format="GTiff")
        assert err.value.http_status_code == 400
        assert err.value.code == "DimensionLabelCountMismatch", err.value.message


@pytest.mark.parametrize(("border", "invalid"), [(0, 0), (100, 50)])
def test_apply_kernel(con, small_catalog, tmp_path, border, invalid):
    """A 3 x 5 convolution over x/y of each date: nodata counts as ``replace_invalid``,
    the pixels beyond the extent as ``border``; equal to numpy's sliding windows over the
    rasterio reference."""
    from numpy.lib.stride_tricks import sliding_window_view  # noqa: PLC0415

    kernel = np.array([[1, 2, 1, 0, -1], [2, 4, 2, 0, -2], [1, 2, 1, 0, 3]], dtype=float)
    path = tmp_path / "smooth.tif"
    load(con, bands=["B04"]).apply_kernel(kernel.tolist(), factor=0.125, border=border,
                                          replace_invalid=invalid).download(path)
    with rasterio.open(path) as src:  # the result's grid grown by the kernel's half size
        (left, bottom, right, top), (rx, ry) = src.bounds, src.res
        grown = View(src.crs, (left - 2 * rx, bottom - ry, right + 2 * rx, top + ry),
                     src.width + 4, src.height + 2)
        data = src.read().astype("float64")
    _days, stack = reference_stack(small_catalog, "TEST", grown, ["B04"],
                                   datetime(2020, 5, 1, tzinfo=UTC),
                                   datetime(2020, 5, 31, 23, 59, tzinfo=UTC))
    padded = np.where(np.isnan(stack[:, 0]), invalid, stack[:, 0])
    padded[:, [0, -1], :] = border  # beyond the spatial extent
    padded[:, :, [0, 1, -2, -1]] = border
    windows = sliding_window_view(padded, (3, 5), axis=(1, 2))
    expected = np.einsum("thwij,ij->thw", windows, kernel[::-1, ::-1]) * 0.125
    assert_same(data, expected)


def test_apply_kernel_refuses_an_even_kernel(con):
    with pytest.raises(OpenEoApiError) as err:
        load(con).apply_kernel([[1, 1], [1, 1]]).download(format="GTiff")
    assert err.value.http_status_code == 400 and err.value.code == "KernelDimensionsUneven"


def test_execute_a_graph_of_array_processes(con):
    """``execute`` of a graph without data cubes (as the openEO process tests send): its
    value as JSON, NaN as null, callbacks included; a bad argument is a 400."""
    assert con.execute({"add": {"process_id": "add", "arguments": {"x": 1, "y": 2.5},
                                "result": True}}) == 3.5
    graph = {"sorted": {"process_id": "sort", "arguments": {"data": [3, None, 1, 2]}},
             "twice": {"process_id": "array_apply", "arguments": {
                 "data": {"from_node": "sorted"}, "process": {"process_graph": {"m": {
                     "process_id": "multiply", "arguments": {
                         "x": {"from_parameter": "x"}, "y": 2}, "result": True}}}},
                 "result": True}}
    assert con.execute(graph) == [2, 4, 6]
    assert con.execute({"s": {"process_id": "sqrt", "arguments": {"x": -1},
                              "result": True}}) is None
    with pytest.raises(OpenEoApiError) as err:
        con.execute({"c": {"process_id": "clip", "arguments": {"x": 1, "min": 3, "max": 2},
                           "result": True}})
    assert err.value.http_status_code == 400 and err.value.code == "MinMaxSwapped"


NEIGHBORHOOD_UDF = """
from openeo.udf import XarrayDataCube


def apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube:
    array = cube.get_array()
    return XarrayDataCube(array - array.mean(dim=("x", "y"), skipna=True))
"""


def test_apply_neighborhood(con, small_catalog, tmp_path):
    """A UDF on 64 px neighbourhoods with 8 px overlap (here: minus the chunk's mean, which
    depends on the chunking), and array processes on each chunk; equal to numpy on the
    same chunks of the rasterio reference."""
    size = [{"dimension": "x", "value": 64, "unit": "px"},
            {"dimension": "y", "value": 64, "unit": "px"}]
    overlap = [{"dimension": "x", "value": 8, "unit": "px"},
               {"dimension": "y", "value": 8, "unit": "px"}]
    path = tmp_path / "neighbourhoods.tif"
    load(con, bands=["B04"]).apply_neighborhood(
        openeo.UDF(NEIGHBORHOOD_UDF, runtime="Python"), size=size, overlap=overlap).download(
        path, format="GTiff")
    with rasterio.open(path) as src:
        (left, bottom, right, top), (rx, ry) = src.bounds, src.res
        grown = View(src.crs, (left - 8 * rx, bottom - 8 * ry, right + 8 * rx, top + 8 * ry),
                     src.width + 16, src.height + 16)
        data, height, width = src.read().astype("float64"), src.height, src.width
    _days, stack = reference_stack(small_catalog, "TEST", grown, ["B04"],
                                   datetime(2020, 5, 1, tzinfo=UTC),
                                   datetime(2020, 5, 31, 23, 59, tzinfo=UTC))
    values = stack[:, 0]
    values[:, [*range(8), *range(-8, 0)], :] = np.nan  # beyond the spatial extent: no data
    values[:, :, [*range(8), *range(-8, 0)]] = np.nan
    expected = np.full((values.shape[0], height, width), np.nan)
    for r0 in range(0, height, 64):
        for c0 in range(0, width, 64):
            h, w = min(64, height - r0), min(64, width - c0)
            chunk = values[:, r0:r0 + h + 16, c0:c0 + w + 16]
            mean = np.nanmean(chunk, axis=(1, 2))[:, None, None]
            expected[:, r0:r0 + h, c0:c0 + w] = (chunk - mean)[:, 8:8 + h, 8:8 + w]
    assert_allclose(data, expected, rtol=1e-4, atol=1e-2, equal_nan=True)
    assert np.isfinite(expected).mean() > 0.5
    load(con, bands=["B04"]).apply_neighborhood(lambda data: data * 2 + 1, size=size,
                                                overlap=overlap).download(path)
    with rasterio.open(path) as src:  # read on the same grown grid as the UDF's chunks
        assert_same(src.read().astype("float64"), values[:, 8:-8, 8:-8] * 2 + 1)
    with pytest.raises(OpenEoApiError) as err:
        load(con).apply_neighborhood(lambda data: data * 1, size=[
            {"dimension": "x", "value": 64, "unit": "m"}]).download(format="GTiff")
    assert err.value.http_status_code == 400 and "pixels" in err.value.message


def test_bad_graph_is_a_clear_400(con):
    with pytest.raises(OpenEoApiError) as err:
        con.load_collection("NOPE").download(format="GTiff")
    assert err.value.http_status_code in (400, 404)
    assert err.value.code == "CollectionNotFound"
    assert "NOPE" in err.value.message


# -- user-defined processes ------------------------------------------------------------


def save_scaled_ndvi(con, reducer: str = "max", default: float = 1):
    """``scaled_ndvi(factor)``: the NDVI of the extent reduced over t, times ``factor``
    (a parameter read inside apply's callback), stored with the client."""
    factor = Parameter.number("factor", description="scale", default=default)
    cube = load(con).ndvi().reduce_dimension(dimension="t", reducer=reducer) * factor
    return con.save_user_defined_process("scaled_ndvi", cube, parameters=[factor],
                                         summary="scaled NDVI")


def test_user_defined_processes_in_graphs(con, small_catalog, tmp_path):
    save_scaled_ndvi(con)
    assert "scaled_ndvi" in {p["id"] for p in con.list_user_defined_processes()}
    path = tmp_path / "udp.tif"
    con.datacube_from_process("scaled_ndvi", namespace="user", factor=10).download(
        path, format="GTiff")
    data, stack = reference(small_catalog, path)
    expected = reduce_t(ndvi(stack[:, 0], stack[:, 1]), np.nanmax)
    assert_same(data[0], 10 * expected)
    # no namespace (no predefined process has the id) and the parameter's default
    con.datacube_from_process("scaled_ndvi").download(path, format="GTiff")
    assert_same(reference(small_catalog, path)[0][0], expected)
    # replaced: the next graph uses the new definition
    save_scaled_ndvi(con, reducer="min")
    con.datacube_from_process("scaled_ndvi", factor=2).download(path, format="GTiff")
    assert_same(reference(small_catalog, path)[0][0],
                2 * reduce_t(ndvi(stack[:, 0], stack[:, 1]), np.nanmin))
    # a process with a data cube parameter, written as a flat graph
    con.save_user_defined_process("offset", {"a": {
        "process_id": "apply", "arguments": {"data": {"from_parameter": "data"}, "process": {
            "process_graph": {"add": {"process_id": "add", "arguments": {
                "x": {"from_parameter": "x"}, "y": {"from_parameter": "by"}},
                "result": True}}}}, "result": True}},
        parameters=[Parameter.datacube("data"), Parameter.number("by", "an offset")])
    cube = con.datacube_from_process("offset", namespace="user",
                                     data=load(con, bands=["B08"]), by=-100)
    cube.reduce_dimension(dimension="t", reducer="mean").download(path, format="GTiff")
    data, stack = reference(small_catalog, path, bands=["B08"])
    assert_same(data[0], reduce_t(stack[:, 0] - 100, np.nanmean))


def test_storing_a_process_validates_it_with_its_parameters(con, caplog):
    """The client validates a process before storing it (``POST /validation`` with its
    ``parameters``): declared parameters are not errors, unknown processes are."""
    import logging  # noqa: PLC0415

    caplog.set_level(logging.WARNING, logger="openeo")
    save_scaled_ndvi(con)
    con.save_user_defined_process("double", {"m": {"process_id": "multiply", "arguments": {
        "x": {"from_parameter": "x"}, "y": 2}, "result": True}},
        parameters=[Parameter.number("x", "a number")])
    con.save_user_defined_process("twice_scaled", {"s": {
        "process_id": "scaled_ndvi", "namespace": "user", "arguments": {
            "factor": {"from_parameter": "f"}}, "result": True}},
        parameters=[Parameter.number("f", "a factor")])
    assert not [r for r in caplog.records if "validation" in r.getMessage()], caplog.text
    definition = {"process_graph": {"m": {"process_id": "multiplyy", "arguments": {
        "x": {"from_parameter": "x"}, "y": 2}, "result": True}},
        "parameters": [{"name": "x", "description": "x", "schema": {"type": "number"}}]}
    errors = con.post("/validation", json=definition, expected_status=200).json()["errors"]
    assert [e["code"] for e in errors] == ["ProcessUnsupported"]
    assert "multiplyy" in errors[0]["message"]
    for pid in ("double", "twice_scaled"):
        con.user_defined_process(pid).delete()


def test_user_defined_process_errors(con):
    with pytest.raises(OpenEoApiError) as err:
        con.datacube_from_process("no_such_udp", namespace="user").download(format="GTiff")
    assert err.value.http_status_code == 400 and err.value.code == "ProcessUnsupported"
    save_scaled_ndvi(con)
    with pytest.raises(OpenEoApiError) as err:
        con.datacube_from_process("scaled_ndvi", factr=2).download(format="GTiff")
    assert err.value.code == "ProcessArgumentUnsupported" and "factr" in err.value.message
    with pytest.warns(UserWarning, match="without parameters"):  # the client's remark
        con.save_user_defined_process("loop", {"a": {
            "process_id": "loop", "namespace": "user", "arguments": {}, "result": True}})
    with pytest.raises(OpenEoApiError) as err:
        con.datacube_from_process("loop").download(format="GTiff")
    assert err.value.code == "ProcessGraphInvalid" and "loop -> loop" in err.value.message


def test_a_lazy_service_follows_its_replaced_process(con, small_catalog):
    """A WMTS layer over a graph that calls a stored process: after the process is
    replaced, the same tile is computed with the new definition (new cache keys)."""
    save_scaled_ndvi(con, default=1)
    service = con.datacube_from_process("scaled_ndvi", namespace="user") \
        .tiled_viewing_service(type="WMTS")
    meta = service.describe_service()
    (layer,) = meta["attributes"]["layers"]

    def tile():
        wmts = WebMapTileService(meta["url"])
        raw = wmts.gettile(layer=layer, tilematrixset="GoogleMapsCompatible",
                           tilematrix="14", row=5826, column=8602, format="image/tiff")
        with MemoryFile(raw.read()) as mem, mem.open() as src:
            return src.read(1).astype(np.float64)

    before = tile()
    assert np.isfinite(before).mean() > 0.2
    assert_allclose(tile(), before, equal_nan=True)  # (a cached answer)
    save_scaled_ndvi(con, default=3)
    assert_allclose(tile(), 3 * before, rtol=1e-5, equal_nan=True)
    service.delete_service()


def test_batch_job_of_a_stored_process(con, small_catalog, tmp_path):
    save_scaled_ndvi(con, reducer="max", default=5)
    job = con.datacube_from_process("scaled_ndvi", namespace="user").create_job(
        out_format="GTiff", title="udp")
    job.start_and_wait(max_poll_interval=1, connection_retry_interval=1, print=lambda *a: None)
    (path,) = [p for p in job.get_results().download_files(tmp_path / "out")
               if p.suffix == ".tif"]
    data, stack = reference(small_catalog, path)
    assert_same(data[0], 5 * reduce_t(ndvi(stack[:, 0], stack[:, 1]), np.nanmax))
    job.delete()


# -- batch jobs ------------------------------------------------------------------------


def test_batch_job_start_and_wait_download_files(con, small_catalog, tmp_path):
    cube = load(con).ndvi().reduce_dimension(dimension="t", reducer="min")
    job = cube.create_job(out_format="GTiff", title="ndvi min")
    assert job.status() == "created"
    job.start_and_wait(max_poll_interval=1, connection_retry_interval=1, print=lambda *a: None)
    assert job.status() == "finished"
    files = [p for p in job.get_results().download_files(tmp_path / "out")
             if p.suffix == ".tif"]
    assert len(files) == 1
    data, stack = reference(small_catalog, files[0])
    assert_same(data[0], reduce_t(ndvi(stack[:, 0], stack[:, 1]), np.nanmin))
    assert any("finished" in entry.message for entry in job.logs())
    assert job.job_id in {j["id"] for j in con.list_jobs()}
    job.delete()
    assert job.job_id not in {j["id"] for j in con.list_jobs()}


# -- secondary services ----------------------------------------------------------------


def test_xyz_service(con, server):
    cube = load(con).ndvi().reduce_dimension(dimension="t", reducer="min")
    service = cube.tiled_viewing_service(type="XYZ", title="ndvi tiles")
    meta = service.describe_service()
    assert meta["type"] == "XYZ" and "{z}" in meta["url"]
    # a tile over the extent (web mercator z=14 at 9.02E 46.03N)
    tile = requests.get(meta["url"].format(z=14, x=8602, y=5826), timeout=60)
    assert tile.status_code == 200 and tile.content.startswith(b"\x89PNG")
    service.delete_service()
    assert requests.get(meta["url"].format(z=14, x=8602, y=5826), timeout=60).status_code == 404


def test_wmts_service_is_a_lazy_job_with_a_layer(con, server):
    cube = load(con).ndvi().reduce_dimension(dimension="t", reducer="min")
    service = cube.tiled_viewing_service(type="WMTS", configuration={"colormap": "RdYlGn"})
    meta = service.describe_service()
    (layer,) = meta["attributes"]["layers"]
    wmts = WebMapTileService(meta["url"])
    assert layer in wmts.contents
    tile = wmts.gettile(layer=layer, tilematrixset="GoogleMapsCompatible", tilematrix="14",
                        row=5826, column=8602, format="image/png")
    assert tile.read().startswith(b"\x89PNG")
    # the job behind it is no batch job: not listed by GET /jobs (the Web Editor's list),
    # but a lazy job like any other by its id, with a viewer
    assert layer not in {j["id"] for j in con.list_jobs()}
    assert con.job(layer).describe()["id"] == layer
    viewer = requests.get(f"{server}/jobs/{layer}/viewer",
                          auth=("alice", PASSWORDS["alice"]), timeout=60)
    assert viewer.status_code == 200 and layer in viewer.text


def test_single_user_mode_needs_no_authentication(tmp_path, small_catalog):
    home = tmp_path / "home"
    home.mkdir()
    with serve(home, small_catalog, 64 * 1024 * 1024, threads=2) as (base, _pids):
        con = openeo.connect(base)
        assert con.describe_account()["user_id"] == "me"
        job = load(con).ndvi().reduce_dimension(dimension="t", reducer="min").create_job()
        assert job.status() == "created"
        assert [j["id"] for j in con.list_jobs()] == [job.job_id]


def test_remote_process_definition(con, small_catalog, tmp_path):
    """openEO 1.3 Remote Process Definition: ``datacube_from_process(..., namespace=url)``
    with the definition on an HTTP server of its own, fetched by the server; a refused URL
    is a 400 the client raises."""
    conforms = con.get("/").json()["conformsTo"]
    assert "https://api.openeo.org/extensions/remote-process-definition/0.1.0" in conforms
    factor = Parameter.number("factor", description="scale", default=1)
    data = Parameter.datacube("data", description="a cube with B04 and B08")
    definition = {"id": "remote_ndvi", "parameters": [data.to_dict(), factor.to_dict()],
                  "process_graph": {
                      "n": {"process_id": "ndvi", "arguments": {
                          "data": {"from_parameter": "data"}, "red": "B04", "nir": "B08"}},
                      "m": {"process_id": "apply", "arguments": {
                          "data": {"from_node": "n"}, "process": {"process_graph": {"x": {
                              "process_id": "multiply", "arguments": {
                                  "x": {"from_parameter": "x"},
                                  "y": {"from_parameter": "factor"}}, "result": True}}}},
                            "result": True}}}
    processes = ProcessServer()
    try:
        url = processes.json("/remote_ndvi.json", definition)
        cube = con.datacube_from_process("remote_ndvi", namespace=url, data=load(con),
                                         factor=10)
        path = tmp_path / "remote.tif"
        cube.reduce_dimension(dimension="t", reducer="max").download(path, format="GTiff")
        result, stack = reference(small_catalog, path)
        expected = 10 * reduce_t(ndvi(stack[:, 0], stack[:, 1]), np.nanmax)
        assert_same(result[0], expected)
        # a batch job: its runner fetches the definition too
        job = cube.reduce_dimension(dimension="t", reducer="max").create_job(out_format="GTiff")
        job.start_and_wait(max_poll_interval=1, connection_retry_interval=1,
                           print=lambda *a: None)
        (tif,) = [p for p in job.get_results().download_files(tmp_path / job.job_id)
                  if p.suffix == ".tif"]
        assert_same(reference(small_catalog, tif)[0][0], expected)
        job.delete()
        for bad in ("http://169.254.169.254/latest/meta-data/remote_ndvi",
                    "file:///etc/passwd", processes.url + "/missing.json"):
            with pytest.raises(OpenEoApiError) as err:
                con.datacube_from_process("remote_ndvi", namespace=bad, data=load(con)
                                          ).download(tmp_path / "bad.tif", format="GTiff")
            assert err.value.http_status_code == 400
            assert err.value.code == "ProcessNamespaceInvalid", err.value.message
    finally:
        processes.close()


# -- openEO 1.2 at its base, beside 1.3 ------------------------------------------------


@pytest.fixture(scope="module")
def con12(server):
    connection = openeo.connect(f"{server}/openeo/1.2")
    connection.authenticate_basic("alice", PASSWORDS["alice"])
    return connection


def test_12_connect_and_authenticate_basic(server, con12):
    assert con12.capabilities().api_version() == "1.2.0"
    assert "web-editor" not in {link["rel"] for link in con12.capabilities().capabilities["links"]}
    assert con12.describe_account()["user_id"] == "alice"
    anonymous = openeo.connect(f"{server}/openeo/1.2")
    with pytest.raises(OpenEoApiError) as err:
        anonymous.describe_account()
    assert err.value.http_status_code == 401
    assert "GET /openeo/1.2/credentials/basic" in err.value.message


def test_13_basic_token_is_a_plain_bearer_json_web_token(server):
    """The client sends ``basic//<token>`` in 1.3 too; the token alone (a JWT) works as
    well, as a 1.3 client without the openEO-specific form would send it."""
    login = requests.get(f"{server}/openeo/1.3/credentials/basic",
                         auth=("alice", PASSWORDS["alice"]), timeout=60).json()
    assert login["access_token"].count(".") == 2
    con = openeo.connect(server)
    con.auth = BearerAuth(bearer=login["access_token"])
    assert con.describe_account()["user_id"] == "alice"
    assert con.list_jobs() is not None


def test_12_sync_result(con12, small_catalog, tmp_path):
    path = tmp_path / "ndvi12.tif"
    load(con12).ndvi().reduce_dimension(dimension="t", reducer="min").download(
        path, format="GTiff")
    data, stack = reference(small_catalog, path)
    assert_same(data[0], reduce_t(ndvi(stack[:, 0], stack[:, 1]), np.nanmin))


def test_12_and_13_batch_jobs(con, con12, small_catalog, tmp_path):
    """One batch job through each version; each sees the other's (one store)."""
    for connection in (con12, con):
        cube = load(connection).ndvi().reduce_dimension(dimension="t", reducer="max")
        job = cube.create_job(out_format="GTiff", title=f"ndvi max {connection.root_url}")
        job.start_and_wait(max_poll_interval=1, connection_retry_interval=1,
                           print=lambda *a: None)
        assert job.status() == "finished"
        (path,) = [p for p in job.get_results().download_files(tmp_path / job.job_id)
                   if p.suffix == ".tif"]
        data, stack = reference(small_catalog, path)
        assert_same(data[0], reduce_t(ndvi(stack[:, 0], stack[:, 1]), np.nanmax))
        meta = job.describe()
        if connection is con:  # 1.3: the timestamps of the run
            assert meta["created"] <= meta["queued"] <= meta["started"] <= meta["updated"]
            props = job.get_results().get_metadata()["properties"]
            assert props["started"] == meta["started"]
        else:
            assert "queued" not in meta and "started" not in meta
        other = con if connection is con12 else con12
        assert job.job_id in {j["id"] for j in other.list_jobs()}
        job.delete()


def test_12_xyz_service(con12):
    cube = load(con12).ndvi().reduce_dimension(dimension="t", reducer="min")
    service = cube.tiled_viewing_service(type="XYZ", title="ndvi tiles 1.2")
    meta = service.describe_service()
    tile = requests.get(meta["url"].format(z=14, x=8602, y=5826), timeout=60)
    assert tile.status_code == 200 and tile.content.startswith(b"\x89PNG")
    service.delete_service()
