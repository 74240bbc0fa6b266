"""openEO 1.x ``run_udf`` with the official ``openeo`` client against a real ``tileserver
serve``: ``openeo.UDF(code)`` inside ``reduce_dimension``, ``apply`` and ``apply_dimension``,
run by the client's own UDF library (``openeo.udf``) in the sandbox; values compared with
numpy on the source COGs."""

from __future__ import annotations

import shutil
import textwrap
import warnings

import numpy as np
import openeo
import pytest
import rasterio
from openeo.rest import OpenEoApiError

from tests.support.hardening import PASSWORDS, users_file
from tests.support.load import serve
from tests.support.requirements import requires
from tests.support.udf import SMALL, source
from tileserver.demo import S1_PRODUCT_ID, write_s1_product
from tileserver.settings import load_settings
from tileserver.web.auth import users_path

pytestmark = [pytest.mark.slow,
              requires("bubblewrap")]

EXTENT = {"west": SMALL["left"], "east": SMALL["right"], "south": SMALL["bottom"],
          "north": SMALL["top"]}


@pytest.fixture(scope="module")
def s1_catalog(tmp_path_factory):
    return write_s1_product(tmp_path_factory.mktemp("s1v1"))


@pytest.fixture(scope="module")
def con(tmp_path_factory, s1_catalog):
    home = tmp_path_factory.mktemp("udfv1") / "home"
    home.mkdir()
    shutil.copyfile(users_file(tmp_path_factory), users_path(load_settings(home=str(home))))
    with serve(home, s1_catalog, 64 * 1024 * 1024, threads=4,
               TILESERVER_UDF_TIMEOUT="10") as (base, _pids):
        connection = openeo.connect(base)
        connection.authenticate_basic("alice", PASSWORDS["alice"])
        yield connection


def cube(con):
    return con.load_collection(S1_PRODUCT_ID, spatial_extent=EXTENT,
                               temporal_extent=["2017-01-01", "2017-02-01"], bands=["VV", "VH"])


def download(result, tmp_path) -> np.ndarray:
    path = tmp_path / "out.tif"
    result.download(path, format="GTiff")
    with rasterio.open(path) as src:
        return src.read()


def udf(code: str) -> openeo.UDF:
    return openeo.UDF(textwrap.dedent(code), runtime="Python")


def test_udf_runtimes_in_the_1x_shape(con):
    runtimes = con.list_udf_runtimes()
    assert "Python" in runtimes


def test_reduce_dimension_with_apply_datacube(con, s1_catalog, tmp_path):
    code = udf("""
        import xarray

        def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
            return cube.max(dim="t") - cube.min(dim="t")
    """)
    got = download(cube(con).reduce_dimension(dimension="t", reducer=code), tmp_path)
    src = source(s1_catalog)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmax(src, axis=0) - np.nanmin(src, axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)


def test_apply_with_context(con, s1_catalog, tmp_path):
    code = udf("""
        import numpy as np
        import xarray

        def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
            return 10 * np.log10(cube) + context["offset"]
    """)
    code.context = {"offset": 3}
    result = cube(con).filter_temporal("2017-01-07", "2017-01-08").apply(code)
    got = download(result, tmp_path)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = 10 * np.log10(source(s1_catalog, dates=[1])[0]) + 3
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_apply_dimension_with_apply_timeseries(con, s1_catalog, tmp_path):
    code = udf("""
        import pandas as pd

        def apply_timeseries(series: pd.Series, context: dict) -> pd.Series:
            return series - series.mean()
    """)
    result = (cube(con).filter_bbox(west=16.2, east=16.21, south=48.03, north=48.04)
              .apply_dimension(dimension="t", process=code).reduce_dimension(
                  dimension="t", reducer="max"))
    got = download(result, tmp_path)
    small = {**SMALL, "right": 16.21, "bottom": 48.03}
    src = source(s1_catalog, bbox=small)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmax(src - np.nanmean(src, axis=0), axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_udf_errors_are_4xx_with_the_line(con, tmp_path):
    broken = udf("""
        import xarray

        def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
            return cube.mean(dim="t") / undefined_name
    """)
    with pytest.raises(OpenEoApiError) as info:
        download(cube(con).reduce_dimension(dimension="t", reducer=broken), tmp_path)
    assert info.value.http_status_code == 400
    assert "NameError" in info.value.message and "line 5" in info.value.message
    syntax = udf("def apply_datacube(cube, context:\n    return cube\n")
    with pytest.raises(OpenEoApiError) as info:
        download(cube(con).apply(syntax), tmp_path)
    assert info.value.http_status_code == 400 and "SyntaxError" in info.value.message
    loop = udf("""
        import xarray

        def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
            while True:
                pass
    """)
    with pytest.raises(OpenEoApiError) as info:
        download(cube(con).apply(loop), tmp_path)
    assert info.value.http_status_code == 504


def test_run_udf_through_an_xyz_service(con):
    import io

    import morecantile
    import requests
    from PIL import Image

    code = udf("""
        import xarray

        def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
            return cube.mean(dim="t")
    """)
    service = (cube(con).filter_bands(["VV"]).reduce_dimension(dimension="t", reducer=code)
               .tiled_viewing_service(type="XYZ"))
    template = service.describe_service()["url"]
    tile = morecantile.tms.get("WebMercatorQuad").tile(16.22, 48.02, 12)
    url = template.replace("{z}", "12").replace("{x}", str(tile.x)).replace("{y}", str(tile.y))
    resp = requests.get(url, timeout=120)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/png", resp.text
    alpha = np.asarray(Image.open(io.BytesIO(resp.content)).convert("RGBA"))[..., 3]
    assert alpha.any()  # the owner's UDF ran for the tile's window


def test_a_batch_job_runs_the_udf(con, s1_catalog, tmp_path):
    """start_and_wait + download_files: the Dask worker runs the UDF in its own sandbox."""
    code = udf("""
        import xarray

        def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
            return cube.max(dim="t") - cube.min(dim="t")
    """)
    job = cube(con).reduce_dimension(dimension="t", reducer=code).save_result(
        "GTiff").create_job(title="udf batch")
    job.start_and_wait(print=lambda *a, **k: None, max_poll_interval=1)
    paths = job.get_results().download_files(tmp_path / "results")
    tif = next(p for p in paths if str(p).endswith(".tif"))
    with rasterio.open(tif) as src_file:
        got = src_file.read()
    src = source(s1_catalog)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmax(src, axis=0) - np.nanmin(src, axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)
