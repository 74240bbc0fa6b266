"""The output-format table: every reader of formats (the output checks, batch, tiles, both
capabilities documents, OpenAPI) sees the same formats; a registered format shows up in all
of them. And the COG writer of render.cog against GDAL's COG driver."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.transform import from_origin

from tileserver.errors import OutputFormatError
from tileserver.maps import tiles as layers
from tileserver.render import cog, formats
from tileserver.render.encoders import Encoded
from tileserver.zonal import tables  # noqa: F401  registers the table formats

RASTERS = ["GTiff", "PNG", "NetCDF", "JPEG"]
TABLES = ["GPKG", "GeoJSON", "CSV", "JSON"]


def test_the_table_holds_the_raster_formats_then_the_tables():
    assert formats.names() == RASTERS + TABLES
    assert formats.names(formats.RASTER) == RASTERS
    for name in RASTERS:
        fmt = formats.FORMATS[name]
        assert fmt.batch is not None, name  # every raster format is written by batch jobs
        assert fmt.extension and fmt.media_type


@pytest.mark.parametrize(("alias", "name"), [
    ("tif", "GTiff"), ("COG", "GTiff"), ("geotiff", "GTiff"), ("jpg", "JPEG"),
    ("nc", "NetCDF"), ("netcdf4", "NetCDF"), ("Png", "PNG"), ("geopackage", "GPKG"),
    ("geo+json", "GeoJSON"), ("csv", "CSV"), ("json", "JSON")])
def test_aliases(alias, name):
    assert formats.get(alias).name == name
    assert formats.validate_output({"format": alias})["format"] == name


def test_unknown_format_names_every_format():
    with pytest.raises(OutputFormatError) as err:
        formats.get("webp")
    assert "supported: " + ", ".join(sorted(RASTERS + TABLES)) in str(err.value)


def test_tile_formats_are_the_pictures_then_the_values():
    assert [f.name for f in formats.tile_formats()] == ["PNG", "JPEG", "GTiff"]
    assert layers.FORMATS == {"image/png": ("PNG", "png"), "image/jpeg": ("JPEG", "jpg"),
                              "image/tiff": ("GTiff", "tif")}
    assert layers.EXTENSIONS == {"png": "image/png", "jpg": "image/jpeg",
                                 "jpeg": "image/jpeg", "tif": "image/tiff",
                                 "tiff": "image/tiff"}
    assert formats.tile_format("image/gif") is None


def test_styled_results_in_batch():
    assert formats.get("PNG").styled({}) and formats.get("JPEG").styled({})
    gtiff = formats.get("GTiff")
    assert not gtiff.styled({}) and gtiff.styled({"compress": "jpeg"})
    assert gtiff.styled({"photometric": "RGB"}) and not formats.get("NetCDF").styled({})


@pytest.fixture
def extra_format():
    """A raster format registered for one test (removed afterwards)."""
    before = dict(formats.FORMATS)
    aliases = dict(formats._ALIASES)
    gtiff = formats.FORMATS["GTiff"]
    fmt = replace(gtiff, name="XTEST", aliases=("xt",), description={
        "media_type": "image/x-test", "description": "test", "parameters": {"level": "1-9"}},
        encode=lambda cube, opts: Encoded(b"x", "image/x-test", "xt"), tiles=None)
    formats.register_format(fmt)
    yield fmt
    formats.FORMATS.clear()
    formats.FORMATS.update(before)
    formats._ALIASES.clear()
    formats._ALIASES.update(aliases)


def test_a_registered_format_is_in_every_document(client, extra_format):
    assert formats.validate_output({"format": "xt"})["format"] == "XTEST"
    caps = client.get("/capabilities/output_formats").get_json()
    assert caps["formats"]["XTEST"]["media_type"] == "image/x-test"
    v1 = client.get("/openeo/1.2/file_formats").get_json()["output"]["XTEST"]
    assert v1["gis_data_types"] == ["raster"] and "level" in v1["parameters"]
    examples = client.get("/openapi.json").get_json()["components"]["schemas"]["Output"][
        "properties"]["format"]["examples"]
    assert "XTEST" in examples
    with pytest.raises(OutputFormatError, match="for data cubes use .*XTEST"):
        formats.check_output_kind({"format": "CSV"}, raster=True)


def test_capabilities_are_the_table():
    doc = formats.output_formats()
    assert doc["default"] == "GTiff"
    assert list(doc["formats"]) == RASTERS + TABLES
    assert doc["formats"]["NetCDF"]["media_type"] == "application/netcdf"
    # the GTiff options documented are the ones the GTiff check accepts
    from tileserver.render.encoders import GTIFF_OPTIONS

    assert set(doc["formats"]["GTiff"]["parameters"]) == GTIFF_OPTIONS


def test_cog_options_of_an_output():
    opts = cog.cog_options({"format": "GTiff", "parameters": {"compress": "zstd",
                                                             "zstd_level": 9,
                                                             "blockxsize": 256}})
    assert opts == {"compress": "ZSTD", "overview_resampling": "nearest",
                    "num_threads": "ALL_CPUS", "blocksize": 256, "level": 9,
                    "bigtiff": "IF_SAFER"}
    assert cog.tile_size({"format": "GTiff"}) == 512
    assert cog.overview_factors(8192, 100, 512) == (2, 4, 8, 16)
    assert cog.overview_factors(512, 512, 512) == ()


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("resampling", [None, "nearest", "average"])
def test_write_cog_is_gdals_cog(tmp_path, resampling):
    """write_cog equals GDAL's COG driver on the same values (overviews made by GDAL, or
    built in memory first with the same resampling)."""
    yy, xx = np.mgrid[0:700, 0:900]
    data = ((xx * 3 + yy * 7) % 1000).astype("uint16")
    transform = from_origin(600_000.0, 5_200_000.0, 10.0, 10.0)
    ours = tmp_path / "ours.tif"
    cog.write_cog(ours, data, crs="EPSG:32632", transform=transform, nodata=0,
                  descriptions=["B04"], tags={"PRODUCT": "x"}, resampling=resampling,
                  blocksize=256, compress="DEFLATE")
    assert not list(tmp_path.glob(".*.tmp"))
    with rasterio.open(ours) as src:
        assert src.driver == "GTiff" and src.descriptions == ("B04",)
        assert src.tags()["PRODUCT"] == "x" and src.overviews(1) == [2, 4]
        np.testing.assert_array_equal(src.read(1), data)
    gdal = tmp_path / "gdal.tif"
    profile = dict(driver="GTiff", width=900, height=700, count=1, dtype="uint16",
                   crs="EPSG:32632", transform=transform, nodata=0)
    with rasterio.MemoryFile() as mem, mem.open(**profile) as src:
        src.write(data, 1)
        src.set_band_description(1, "B04")
        src.update_tags(PRODUCT="x")
        extra = {}
        if resampling:
            src.build_overviews([2, 4], Resampling[resampling])
            extra = {"overviews": "AUTO", "overview_resampling": resampling.upper()}
        rasterio.shutil.copy(src, gdal, driver="COG", blocksize=256, compress="DEFLATE",
                             **extra)
    assert _digest(ours) == _digest(gdal)
