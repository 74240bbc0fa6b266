"""What the openEO Web Editor and the official Python client tripped over (issue 20, item 5),
driven through the official ``openeo`` client against a real ``tileserver serve``; values
are compared with plain rasterio + numpy references computed here (and GDAL's own
statistics).

- results carry band names and statistics (GDAL ``STATISTICS_*``, STAC ``raster:bands``);
- ``GET /jobs`` lists batch jobs only (not the lazy jobs behind services);
- ``merge_cubes`` of collections with different bands, CRSs and resolutions;
- ``run_udf`` on cubes of every shape;
- ``aggregate_spatial`` JSON as ``timeseries_json_to_pandas`` reads it, feature
  properties kept in every vector output;
- empty results reported (a job log warning, an ``OpenEO-Warning`` header).
"""

from __future__ import annotations

import json
import math
import shutil
import textwrap
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import openeo
import pystac
import pytest
import rasterio
import requests
from numpy.testing import assert_allclose
from owslib.wmts import WebMapTileService
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from shapely.geometry import box, mapping

from tests.support.core import ndvi, reference_stack, warp_file
from tests.support.hardening import PASSWORDS, users_file
from tests.support.load import serve
from tileserver.datacube.view import View
from tileserver.settings import load_settings
from tileserver.web.auth import users_path

pytestmark = pytest.mark.slow

#: A window of the synthetic TEST collection (both UTM zones' items cover it).
EXTENT = {"west": 500_000, "south": 5_096_000, "east": 503_000, "north": 5_099_000,
          "crs": "EPSG:32632"}
DATES = ["2020-05-01", "2020-05-31"]
START, END = datetime(2020, 5, 1, tzinfo=UTC), datetime(2020, 5, 31, 23, 59, tzinfo=UTC)

# -- a second collection: other band, CRS and resolution ---------------------------------

#: ``RADAR``: one band ``VV`` in EPSG:4326 at 0.0005 deg (about 40 x 55 m), over TEST.
RADAR_BOUNDS = (8.99, 45.99, 9.08, 46.05)
RADAR_PIXEL = 0.0005
#: One date of its own, one on a day of TEST (2020-05-11).
RADAR_DATES = [datetime(2020, 5, 3, 5, 30, tzinfo=UTC), datetime(2020, 5, 11, 5, 30, tzinfo=UTC)]


def radar_values(index: int, shape: tuple[int, int]) -> np.ndarray:
    """float32 backscatter-like values with NaN holes, different per date."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    values = (0.05 + 0.03 * np.sin(xx / 11.0 + index) * np.cos(yy / 7.0)
              + 0.001 * index).astype(np.float32)
    values[(xx + 2 * yy + 9 * index) % 53 < 3] = np.nan
    return values


def make_radar_catalog(root: Path) -> Path:
    """A STAC catalog of the ``RADAR`` collection; the path of its ``catalog.json``."""
    west, south, east, north = RADAR_BOUNDS
    width, height = round((east - west) / RADAR_PIXEL), round((north - south) / RADAR_PIXEL)
    catalog = pystac.Catalog("radar-catalog", "synthetic radar")
    collection = pystac.Collection(
        "RADAR", "Synthetic VV backscatter in EPSG:4326",
        pystac.Extent(pystac.SpatialExtent([list(RADAR_BOUNDS)]),
                      pystac.TemporalExtent([[RADAR_DATES[0], RADAR_DATES[-1]]])))
    collection.summaries.add("eo:bands", [{"name": "VV"}])
    for i, when in enumerate(RADAR_DATES):
        folder = root / "RADAR" / f"radar_{i}"
        folder.mkdir(parents=True, exist_ok=True)
        with rasterio.open(folder / "VV.tif", "w", driver="GTiff", width=width, height=height,
                           count=1, dtype="float32", crs="EPSG:4326", nodata=float("nan"),
                           transform=from_origin(west, north, RADAR_PIXEL, RADAR_PIXEL)) as dst:
            dst.write(radar_values(i, (height, width)), 1)
        item = pystac.Item(f"radar_{i}", mapping(box(*RADAR_BOUNDS)), list(RADAR_BOUNDS),
                           when, {})
        item.add_asset("VV", pystac.Asset(str(folder / "VV.tif"), roles=["data"],
                                          media_type=pystac.MediaType.GEOTIFF))
        collection.add_item(item)
    catalog.add_child(collection)
    catalog.normalize_hrefs(str(root))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


def radar_file(catalog: Path, index: int) -> str:
    return str(catalog.parent / "RADAR" / f"radar_{index}" / "VV.tif")


@pytest.fixture(scope="module")
def radar_catalog(tmp_path_factory) -> Path:
    return make_radar_catalog(tmp_path_factory.mktemp("radar"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, small_catalog, radar_catalog):
    home = tmp_path_factory.mktemp("trips") / "home"
    home.mkdir()
    shutil.copyfile(users_file(tmp_path_factory), users_path(load_settings(home=str(home))))
    with serve(home, f"{small_catalog},{radar_catalog}", 256 * 1024 * 1024,
               threads=4) as (base, _pids):
        yield base


@pytest.fixture(scope="module")
def con(server):
    connection = openeo.connect(server)
    connection.authenticate_basic("alice", PASSWORDS["alice"])
    return connection


def load(con, bands=("B04", "B08"), collection="TEST", **kwargs):
    return con.load_collection(collection, spatial_extent=kwargs.pop("extent", EXTENT),
                               temporal_extent=kwargs.pop("dates", DATES), bands=list(bands),
                               **kwargs)


def wait(job) -> None:
    job.start_and_wait(max_poll_interval=1, connection_retry_interval=1, print=lambda *a: None)


def view_of(path) -> View:
    with rasterio.open(path) as src:
        return View(src.crs, tuple(src.bounds), src.width, src.height)


def read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read().astype("float64")


def gdal_statistics(path) -> list[dict]:
    """GDAL's own statistics of every band of the file's values (computed by GDAL on a
    copy that carries none: the file's own ``STATISTICS_*`` items play no part)."""
    with rasterio.open(path) as src:
        data, profile = src.read(), src.profile
    profile.update(driver="GTiff")
    for key in ("blockxsize", "blockysize", "tiled", "compress", "interleave"):
        profile.pop(key, None)
    out = []
    with MemoryFile() as mem, mem.open(**profile) as copy:
        copy.write(data)
        for band in copy.indexes:
            if not np.isfinite(data[band - 1]).any():
                out.append({})
                continue
            (stats,) = copy.stats(indexes=[band], approx=False)
            valid = 100.0 * np.isfinite(data[band - 1]).mean()
            out.append({"min": stats.min, "max": stats.max, "mean": stats.mean,
                        "std": stats.std, "valid": valid})
    return out


def assert_statistics_are_gdals(path) -> list[dict]:
    """Every band of the file has ``STATISTICS_*`` items equal to GDAL's statistics of its
    values; returns GDAL's."""
    expected = gdal_statistics(path)
    with rasterio.open(path) as src:
        tags = [src.tags(band) for band in src.indexes]
    for band, exp in zip(tags, expected, strict=True):
        if not exp:
            assert band["STATISTICS_VALID_PERCENT"] == "0"
            continue
        assert float(band["STATISTICS_MINIMUM"]) == pytest.approx(exp["min"], rel=1e-12)
        assert float(band["STATISTICS_MAXIMUM"]) == pytest.approx(exp["max"], rel=1e-12)
        assert float(band["STATISTICS_MEAN"]) == pytest.approx(exp["mean"], rel=1e-9)
        assert float(band["STATISTICS_STDDEV"]) == pytest.approx(exp["std"], rel=1e-9)
        assert float(band["STATISTICS_VALID_PERCENT"]) == pytest.approx(exp["valid"], abs=0.01)
    return expected


def nanreduce(fn, stack: np.ndarray, axis=0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        return fn(stack, axis=axis)


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    assert np.isfinite(expected).mean() > 0.5  # the comparison is about real values
    assert_allclose(actual, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


# -- band statistics and names --------------------------------------------------------------


def test_synchronous_geotiff_has_band_names_and_gdals_statistics(con, small_catalog, tmp_path):
    path = tmp_path / "stack.tif"
    load(con).download(path, format="GTiff")
    with rasterio.open(path) as src:
        assert src.descriptions == ("2020-05-01 B04", "2020-05-01 B08", "2020-05-11 B04",
                                    "2020-05-11 B08", "2020-05-21 B04", "2020-05-21 B08")
    expected = assert_statistics_are_gdals(path)
    # and they are the statistics of the data (rasterio + numpy reference)
    _days, stack = reference_stack(small_catalog, "TEST", view_of(path), ["B04", "B08"],
                                   START, END)
    flat = stack.reshape(-1, *stack.shape[2:])
    for exp, ref in zip(expected, flat, strict=True):
        assert exp["min"] == pytest.approx(np.nanmin(ref))
        assert exp["mean"] == pytest.approx(np.nanmean(ref), rel=1e-6)
    reduced = tmp_path / "ndvi.tif"
    load(con).ndvi().reduce_dimension(dimension="t", reducer="max").download(reduced)
    with rasterio.open(reduced) as src:
        assert src.descriptions == ("ndvi",)
    (stats,) = assert_statistics_are_gdals(reduced)
    assert -1 <= stats["min"] < stats["max"] <= 1


def test_batch_cogs_and_stac_carry_statistics_names_size_and_projection(con, tmp_path):
    job = load(con).create_job(out_format="GTiff", title="stack")
    wait(job)
    assets = job.get_results().get_metadata()["assets"]
    assert sorted(assets) == ["result_2020-05-01", "result_2020-05-11", "result_2020-05-21"]
    for name, asset in assets.items():
        path = tmp_path / f"{name}.tif"
        path.write_bytes(requests.get(asset["href"], timeout=60).content)
        with rasterio.open(path) as src:
            assert src.descriptions == ("B04", "B08")  # as in the synchronous GeoTIFF
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert asset["proj:code"] == f"EPSG:{src.crs.to_epsg()}"
            assert asset["proj:shape"] == [src.height, src.width]
            assert asset["proj:bbox"] == pytest.approx(list(src.bounds))
        assert asset["file:size"] == path.stat().st_size
        expected = assert_statistics_are_gdals(path)
        bands = asset["raster:bands"]
        assert [b["name"] for b in bands] == ["B04", "B08"]
        for band, exp in zip(bands, expected, strict=True):
            stats = band["statistics"]
            assert stats["minimum"] == pytest.approx(exp["min"])
            assert stats["maximum"] == pytest.approx(exp["max"])
            assert stats["mean"] == pytest.approx(exp["mean"], rel=1e-9)
            assert stats["stddev"] == pytest.approx(exp["std"], rel=1e-9)
            assert stats["valid_percent"] == pytest.approx(exp["valid"], abs=1e-6)
    job.delete()


def test_batch_netcdf_stac_carries_the_statistics_of_its_values(con, tmp_path):
    job = load(con).reduce_dimension(dimension="t", reducer="max").create_job(
        out_format="netCDF")
    wait(job)
    (asset,) = job.get_results().get_metadata()["assets"].values()
    path = tmp_path / "result.nc"
    path.write_bytes(requests.get(asset["href"], timeout=60).content)
    assert asset["file:size"] == path.stat().st_size
    import xarray  # noqa: PLC0415

    with xarray.open_dataset(path) as ds:  # one variable per band (GDAL's netCDF writer)
        values = [ds[name].values.astype("float64") for name in ds.data_vars
                  if ds[name].ndim == 2]
    for band, stats in zip(values, [b["statistics"] for b in asset["raster:bands"]],
                           strict=True):
        assert stats["minimum"] == pytest.approx(np.nanmin(band))
        assert stats["maximum"] == pytest.approx(np.nanmax(band))
        assert stats["mean"] == pytest.approx(np.nanmean(band), rel=1e-9)
        assert stats["stddev"] == pytest.approx(np.nanstd(band), rel=1e-9)
        assert stats["valid_percent"] == pytest.approx(100 * np.isfinite(band).mean())
    job.delete()


# -- GET /jobs: batch jobs only ------------------------------------------------------------


def test_services_are_not_listed_as_batch_jobs(con, server):
    cube = load(con).ndvi().reduce_dimension(dimension="t", reducer="max")
    job = cube.create_job(title="mine")
    xyz = cube.tiled_viewing_service(type="XYZ", title="quick view")
    wmts = cube.tiled_viewing_service(type="WMTS", title="layer")
    (layer,) = wmts.describe_service()["attributes"]["layers"]
    listed = {j["id"] for j in con.list_jobs()}
    assert job.job_id in listed and layer not in listed
    assert {j.get("title") for j in con.list_jobs()} & {"quick view", "layer"} == set()
    # a changed process keeps the service's job a service's
    graph = load(con).ndvi().reduce_dimension(dimension="t", reducer="min").flat_graph()
    con.patch(f"/services/{wmts.service_id}", json={"process": {"process_graph": graph}},
              expected_status=204)
    assert layer not in {j["id"] for j in con.list_jobs()}
    # the 0.0.2 API (frozen) still shows it as the lazy job it is
    old = requests.get(f"{server}/jobs/{layer}", auth=("alice", PASSWORDS["alice"]),
                       timeout=30)
    assert old.status_code == 200 and old.json()["job_id"] == layer
    for thing in (xyz, wmts):
        thing.delete_service()
    job.delete()


# -- merge_cubes across collections -------------------------------------------------------


def merged_cube(con):
    optical = load(con, bands=["B04"])
    radar = load(con, bands=["VV"], collection="RADAR")
    return optical.merge_cubes(radar)


def assert_merged(path, small_catalog, radar_catalog) -> None:
    """The merged file: B04 of TEST and VV of RADAR (nearest) on TEST's grid, per date of
    either collection."""
    view = view_of(path)
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32632 and src.res == (10.0, 10.0)
        names = src.descriptions
    data = read(path)
    days, optical = reference_stack(small_catalog, "TEST", view, ["B04"], START, END)
    assert names == tuple(f"{d} {b}" for d in ["2020-05-01", "2020-05-03", "2020-05-11",
                                                 "2020-05-21"] for b in ("B04", "VV"))
    for t, day in enumerate(["2020-05-01", "2020-05-03", "2020-05-11", "2020-05-21"]):
        b04, vv = data[2 * t], data[2 * t + 1]
        if day in days:
            assert_same(b04, optical[days.index(day), 0])
        else:
            assert np.isnan(b04).all()
        if day in ("2020-05-03", "2020-05-11"):
            assert_same(vv, warp_file(radar_file(radar_catalog, 0 if day == "2020-05-03"
                                                 else 1), view))
        else:
            assert np.isnan(vv).all()


def test_merge_cubes_of_two_collections_synchronously(con, small_catalog, radar_catalog,
                                                      tmp_path):
    path = tmp_path / "merged.tif"
    merged_cube(con).download(path, format="GTiff")
    assert_merged(path, small_catalog, radar_catalog)
    # and reduced: the band math of both collections' values
    cube = merged_cube(con).reduce_dimension(dimension="t", reducer="max")
    ratio = cube.band("VV") / cube.band("B04")
    ratio.download(tmp_path / "ratio.tif", format="GTiff")
    view = view_of(tmp_path / "ratio.tif")
    _days, optical = reference_stack(small_catalog, "TEST", view, ["B04"], START, END)
    radar = np.stack([warp_file(radar_file(radar_catalog, i), view) for i in (0, 1)])
    expected = nanreduce(np.nanmax, radar) / nanreduce(np.nanmax, optical[:, 0])
    assert_same(read(tmp_path / "ratio.tif")[0], expected)


def test_merge_cubes_of_two_collections_in_a_batch_job(con, small_catalog, radar_catalog,
                                                       tmp_path):
    job = merged_cube(con).create_job(out_format="GTiff", title="merged")
    wait(job)
    assets = job.get_results().get_metadata()["assets"]
    assert sorted(assets) == [f"result_{d}" for d in (
        "2020-05-01", "2020-05-03", "2020-05-11", "2020-05-21")]
    files = []
    for name in sorted(assets):
        files.append(tmp_path / f"{name}.tif")
        files[-1].write_bytes(requests.get(assets[name]["href"], timeout=60).content)
    # one file per date: stacked, they are the synchronous result
    path = tmp_path / "stacked.tif"
    with rasterio.open(files[0]) as src:
        profile = src.profile
    profile.update(driver="GTiff", count=2 * len(files))
    profile.pop("blockxsize", None), profile.pop("blockysize", None)
    names = []
    with rasterio.open(path, "w", **{k: v for k, v in profile.items() if k != "tiled"}) as dst:
        for i, f in enumerate(files):
            with rasterio.open(f) as src:
                dst.write(src.read(), [2 * i + 1, 2 * i + 2])
                day = f.stem.removeprefix("result_")
                names += [f"{day} {b}" for b in src.descriptions]
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)
    assert_merged(path, small_catalog, radar_catalog)
    job.delete()


def test_merge_cubes_of_two_collections_as_xyz_and_wmts_tiles(con, radar_catalog):
    cube = merged_cube(con).reduce_dimension(dimension="t", reducer="max").band("VV")
    xyz = cube.tiled_viewing_service(type="XYZ")
    # web mercator z=14 at 9.02E 46.03N
    png = requests.get(xyz.describe_service()["url"].format(z=14, x=8602, y=5826), timeout=60)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    xyz.delete_service()
    # the same tile as GeoTIFF values (WMTS)
    wmts = cube.tiled_viewing_service(type="WMTS")
    meta = wmts.describe_service()
    (layer,) = meta["attributes"]["layers"]
    tile = WebMapTileService(meta["url"]).gettile(
        layer=layer, tilematrixset="GoogleMapsCompatible", tilematrix="14", row=5826,
        column=8602, format="image/tiff")
    with MemoryFile(tile.read()) as mem, mem.open() as src:
        view = View(src.crs, tuple(src.bounds), src.width, src.height)
        values = src.read(1).astype("float64")
    radar = np.stack([warp_file(radar_file(radar_catalog, i), view) for i in (0, 1)])
    assert_same(values, nanreduce(np.nanmax, radar))
    wmts.delete_service()


# -- run_udf on cubes of every shape ----------------------------------------------------------


def scaling_udf(dims: tuple[str, ...], factor: float = 2.0) -> openeo.UDF:
    """A UDF that checks the dimensions it is given, then scales the values."""
    return openeo.UDF(textwrap.dedent(f"""
        import xarray

        def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
            assert cube.dims == {dims!r}, f"dimensions {{cube.dims}}"
            return cube * {factor}
    """), runtime="Python")


def reference_values(small_catalog, path, bands=("B04", "B08"), start=START, end=END):
    _days, stack = reference_stack(small_catalog, "TEST", view_of(path), list(bands),
                                   start, end)
    return stack


@pytest.mark.skipif(shutil.which("bwrap") is None,
                    reason="UDFs need bubblewrap (.ci/run installs it)")
@pytest.mark.parametrize("shape", ["time reduced", "bands reduced", "ndvi, time reduced",
                                   "one date", "one band", "reduce time by a UDF after ndvi"])
def test_run_udf_on_cubes_of_every_shape(con, small_catalog, tmp_path, shape):
    path = tmp_path / "out.tif"
    if shape == "time reduced":
        cube = load(con).reduce_dimension(dimension="t", reducer="max")
        cube.apply(scaling_udf(("bands", "y", "x"))).download(path, format="GTiff")
        expected = 2 * nanreduce(np.nanmax, reference_values(small_catalog, path))
    elif shape == "bands reduced":
        cube = load(con).reduce_dimension(dimension="bands", reducer="mean")
        cube.apply(scaling_udf(("t", "y", "x"))).download(path, format="GTiff")
        expected = 2 * nanreduce(np.nanmean, reference_values(small_catalog, path), axis=1)
    elif shape == "ndvi, time reduced":  # the example
        cube = load(con).ndvi().reduce_dimension(dimension="t", reducer="max")
        cube.apply(scaling_udf(("y", "x"))).download(path, format="GTiff")
        stack = reference_values(small_catalog, path)
        expected = 2 * nanreduce(np.nanmax, ndvi(stack[:, 0], stack[:, 1]))[None]
    elif shape == "one date":
        cube = load(con, dates=["2020-05-01", "2020-05-02"])
        cube.apply(scaling_udf(("t", "bands", "y", "x"))).download(path, format="GTiff")
        expected = 2 * reference_values(small_catalog, path, end=datetime(
            2020, 5, 2, tzinfo=UTC))[0]
    elif shape == "one band":
        cube = load(con, bands=["B08"])
        cube.apply(scaling_udf(("t", "bands", "y", "x"))).download(path, format="GTiff")
        expected = 2 * reference_values(small_catalog, path, bands=("B08",))[:, 0]
    else:
        reducer = openeo.UDF(textwrap.dedent("""
            import xarray

            def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
                assert cube.dims == ("t", "y", "x"), f"dimensions {cube.dims}"
                return cube.max(dim="t")
        """), runtime="Python")
        load(con).ndvi().reduce_dimension(dimension="t", reducer=reducer).download(
            path, format="GTiff")
        stack = reference_values(small_catalog, path)
        expected = nanreduce(np.nanmax, ndvi(stack[:, 0], stack[:, 1]))[None]
    assert_same(read(path), expected)


# -- aggregate_spatial: the clients' JSON, the features' properties ------------------------

FIELDS = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"name": "north field", "crop": "maize", "area_ha": 12.5},
     "geometry": {"type": "Polygon", "coordinates": [[
         [9.0012, 46.0112], [9.02, 46.0112], [9.02, 46.02], [9.0012, 46.02], [9.0012, 46.0112]]]}},
    {"type": "Feature", "properties": {"name": "south field", "crop": "wheat", "id": 7},
     "geometry": {"type": "Polygon", "coordinates": [[
         [9.005, 46.0012], [9.03, 46.0012], [9.03, 46.009], [9.005, 46.009], [9.005, 46.0012]]]}},
]}


#: Means of thousands of pixels; the reference warps the 2020-05-21 acquisition (EPSG:32633)
#: to the 32632 grid by nearest neighbour, where a pixel or two at a field's edge differ.
RTOL = 1e-4


def field_means(small_catalog) -> tuple[list[str], np.ndarray]:
    """``(days, means (field, day, band))`` over the pixel centres inside each field, on the
    native grid of TEST (rasterio + numpy)."""
    from rasterio.features import geometry_mask  # noqa: PLC0415
    from rasterio.warp import transform_geom  # noqa: PLC0415

    from tests.support.core import TEST_BOUNDS_32632  # noqa: PLC0415

    native = View("EPSG:32632", TEST_BOUNDS_32632, 512, 512)
    days, stack = reference_stack(small_catalog, "TEST", native, ["B04", "B08"], START, END)
    out = []
    for feature in FIELDS["features"]:
        inside = ~geometry_mask([transform_geom("EPSG:4326", "EPSG:32632",
                                                feature["geometry"])], (512, 512),
                                native.transform)
        assert inside.sum() > 500
        out.append([[nanreduce(np.nanmean, stack[t, b][inside], axis=None) for b in (0, 1)]
                    for t in range(len(days))])
    return days, np.array(out)


def test_aggregate_spatial_json_is_what_timeseries_json_to_pandas_reads(con, small_catalog):
    from openeo.rest.conversions import timeseries_json_to_pandas  # noqa: PLC0415

    cube = con.load_collection("TEST", temporal_extent=DATES, bands=["B04", "B08"])
    series = cube.aggregate_spatial(FIELDS, "mean").execute()
    days, expected = field_means(small_catalog)
    assert list(series) == [f"{d}T00:00:00Z" for d in days]
    frame = timeseries_json_to_pandas(series)
    assert frame.shape == (len(days), 2 * 2)  # dates x (polygon, band)
    for p in range(2):
        for b in range(2):
            assert_allclose(frame[(p, b)].to_numpy(dtype=float), expected[p, :, b], rtol=RTOL)
    by_polygon = timeseries_json_to_pandas(series, index="polygon")
    assert list(by_polygon.index) == [0, 1]
    # one band, one polygon: a Series per date (the client collapses the single levels)
    one = cube.filter_bands(["B08"]).aggregate_spatial(FIELDS["features"][0], "mean").execute()
    single = timeseries_json_to_pandas(one)
    assert_allclose(single.to_numpy(dtype=float), expected[0, :, 1], rtol=RTOL)
    # time reduced: [[value per band] per polygon]
    reduced = cube.reduce_dimension(dimension="t", reducer="max").aggregate_spatial(
        FIELDS, "max").execute()
    assert len(reduced) == 2 and all(len(bands) == 2 for bands in reduced)


@pytest.mark.parametrize("fmt", ["GeoJSON", "CSV", "GPKG"])
def test_aggregate_spatial_keeps_the_features_properties(con, small_catalog, tmp_path, fmt):
    cube = con.load_collection("TEST", temporal_extent=DATES, bands=["B04", "B08"]) \
        .aggregate_spatial(FIELDS, "mean")
    path = tmp_path / f"fields.{fmt.lower()}"
    cube.download(path, format=fmt)
    days, expected = field_means(small_catalog)
    if fmt == "GeoJSON":
        features = json.loads(path.read_text())["features"]
        rows = [f["properties"] for f in features]
    elif fmt == "CSV":
        import csv  # noqa: PLC0415

        with open(path, newline="") as f:
            long_rows = list(csv.DictReader(f))
        rows = []
        for region in ("1", "2"):
            mine = [r for r in long_rows if r["region_id"] == region]
            row = dict(mine[0])
            for r in mine:
                row[f"avg_{r['band']}_{r['date'].replace('-', '_')}"] = float(r["value"])
            rows.append(row)
        for row in rows:  # CSV has text only
            row["area_ha"] = float(row["area_ha"]) if row["area_ha"] else None
            row["id"] = int(row["id"]) if row["id"] else None
    else:
        import pyogrio  # noqa: PLC0415

        frame = pyogrio.read_dataframe(path, layer="regions")
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v)
                 for k, v in r.items()} for r in frame.drop(columns="geometry").to_dict(
                     "records")]
    assert [r["name"] for r in rows] == ["north field", "south field"]
    assert [r["crop"] for r in rows] == ["maize", "wheat"]
    assert [r["area_ha"] for r in rows] == [12.5, None]
    assert [None if r["id"] is None else int(r["id"]) for r in rows] == [None, 7]
    for p, row in enumerate(rows):
        for t, day in enumerate(days):
            for b, band in enumerate(("B04", "B08")):
                assert row[f"avg_{band}_{day.replace('-', '_')}"] == pytest.approx(
                    expected[p, t, b], rel=RTOL)


# -- empty results reported ------------------------------------------------------------------

#: A bbox of the right zone where TEST has no data (100 km east of it).
OUTSIDE = {"west": 600_000, "south": 5_096_000, "east": 601_000, "north": 5_097_000,
           "crs": "EPSG:32632"}


def result_headers(con, cube, fmt="GTiff") -> dict:
    """The response headers of the synchronous result, as the client hands them to
    ``on_response_headers``."""
    seen: dict = {}
    cube.download(format=fmt, on_response_headers=seen.update)
    return seen


def monitor_log(con, headers) -> list[dict]:
    """The entries of the log that the ``Link: rel="monitor"`` header points at (what the
    JavaScript client reads into a result's ``logs``), read with the user's token."""
    (link,) = [v for v in requests.utils.parse_header_links(headers["Link"])
               if v["rel"] == "monitor"]
    resp = con.get(link["url"].removeprefix(con.root_url.rstrip("/")), expected_status=200)
    return resp.json()["logs"]


def all_masked(con):
    """A cube with acquisitions whose every value is masked (nodata)."""
    cube = load(con)
    return cube.mask(cube.band("B04") > -1).reduce_dimension(dimension="t", reducer="max")


@pytest.mark.parametrize("case", ["bbox outside the data", "dates without acquisitions",
                                  "no valid value"])
def test_empty_synchronous_results_carry_a_warning_and_a_log(con, case):
    if case == "bbox outside the data":
        cube = load(con, extent=OUTSIDE)
    elif case == "dates without acquisitions":
        cube = load(con, dates=["2020-06-01", "2020-06-30"])
    else:
        cube = all_masked(con)
    headers = result_headers(con, cube)
    warning = headers["Warning"]
    assert warning.startswith('299 tileserver "the result ')
    logs = monitor_log(con, headers)
    assert [e["level"] for e in logs] == ["warning"]
    assert logs[0]["message"] in warning
    # a result with data has neither
    full = result_headers(con, load(con).reduce_dimension(dimension="t", reducer="max"))
    assert "Warning" not in full and "Link" not in full
    # the log link is the user's (Bearer), and only what the server made is a log
    (link,) = requests.utils.parse_header_links(headers["Link"])
    assert requests.get(link["url"], timeout=30).status_code == 401
    bad = con.get("/result/logs/not-a-log", expected_status=400)
    assert bad.json()["code"] == "BadRequest"


def test_empty_tables_and_filters_are_errors_that_say_why(con):
    """Where the graph itself shows the result would be empty, the request is a 400 that
    says so, before any work (a filter_bbox off the data, regions off the data)."""
    far = {"type": "Polygon", "coordinates": [[[10.3, 46.0], [10.31, 46.0], [10.31, 46.01],
                                               [10.3, 46.01], [10.3, 46.0]]]}
    for cube, words in ((load(con).filter_bbox(**OUTSIDE), "would be empty"),
                        (load(con).aggregate_spatial(far, "mean"), "intersects the data")):
        with pytest.raises(openeo.rest.OpenEoApiError) as err:
            cube.execute()
        assert err.value.http_status_code == 400 and words in err.value.message


def test_empty_batch_results_are_reported_in_the_job_log(con):
    job = all_masked(con).create_job(out_format="GTiff", title="all masked")
    wait(job)  # the result is what was asked: the job finishes, and warns
    warned = [e for e in job.logs() if e["level"] == "warning"]
    assert len(warned) == 1 and "no valid value" in warned[0]["message"]
    job.delete()
    # no acquisition at all: nothing to compute, an error that says so
    job = load(con, dates=["2020-06-01", "2020-06-30"]).create_job(out_format="GTiff")
    with pytest.raises(openeo.rest.JobFailedException):
        wait(job)
    assert any("no acquisition" in e["message"] for e in job.logs(level="error"))
    job.delete()
    full = load(con).reduce_dimension(dimension="t", reducer="max").create_job()
    wait(full)
    assert not [e for e in full.logs() if e["level"] == "warning"]
    full.delete()
