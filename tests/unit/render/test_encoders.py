"""Encoders: GeoTIFF creation options mapped and checked, PNG/JPEG with styles. Outputs are
decoded with rasterio/Pillow and compared as data."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import matplotlib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from PIL import Image
from rasterio.io import MemoryFile

from tileserver.datacube.cube import Cube
from tileserver.datacube.view import View
from tileserver.errors import OutputFormatError
from tileserver.render.formats import encode, validate_output
from tileserver.render.styles import Style, render_rgba

VIEW = View("EPSG:32632", (652_000, 5_161_000, 653_280, 5_162_280), 64, 64)


def ndvi_cube() -> Cube:
    yy, xx = np.mgrid[0:64, 0:64]
    data = ((xx - 32) / 32.0 * np.cos(yy / 9.0)).astype(np.float32)[None, None]
    data[0, 0, :8, :8] = np.nan
    return Cube(data, None, ("ndvi",), VIEW, "ndvi")


def stack_cube() -> Cube:
    rng = np.random.default_rng(5)
    data = rng.uniform(0, 5000, (2, 3, 64, 64)).astype(np.float32)
    data[1, 2, 10:20, 10:20] = np.nan
    times = (datetime(2017, 1, 5, tzinfo=UTC), datetime(2017, 1, 15, tzinfo=UTC))
    return Cube(data, times, ("B04", "B03", "B02"), VIEW)


def decode(content: bytes):
    mem = MemoryFile(content)
    return mem, mem.open()


def test_default_gtiff_is_lossless_float_with_nodata():
    cube = stack_cube()
    out = encode(cube, {"format": "GTiff"})
    assert out.media_type == "image/tiff" and out.extension == "tif"
    mem, src = decode(out.content)
    with mem, src:
        assert src.crs.to_epsg() == 32632
        assert src.transform == VIEW.transform
        assert (src.width, src.height, src.count) == (64, 64, 6)
        assert src.dtypes == ("float32",) * 6 and np.isnan(src.nodata)
        assert src.compression.value == "DEFLATE"
        assert src.descriptions == ("2017-01-05 B04", "2017-01-05 B03", "2017-01-05 B02",
                                    "2017-01-15 B04", "2017-01-15 B03", "2017-01-15 B02")
        assert_array_equal(src.read(), cube.data.reshape(6, 64, 64))
        assert src.tags()["TILESERVER_KIND"] == "reflectance"


@pytest.mark.parametrize("opts, compression", [
    ({"compress": "lzw", "predictor": 2}, "LZW"),
    ({"compress": "deflate", "predictor": 3, "zlevel": 9}, "DEFLATE"),
    ({"compress": "zstd", "zstd_level": 3, "tiled": True, "blockxsize": 32}, "ZSTD"),
    ({"compress": "none", "interleave": "pixel", "bigtiff": "YES"}, None),
    ({"compress": "lerc", "max_z_error": 0}, "LERC"),
    ({"compress": "packbits"}, "PACKBITS"),
    ({"parameters": {"compress": "lzma", "tiled": "true"}}, "LZMA"),
])
def test_lossless_options_round_trip(opts, compression):
    cube = ndvi_cube()
    mem, src = decode(encode(cube, {"format": "gtiff", **opts}).content)
    with mem, src:
        assert (src.compression.value if src.compression else None) == compression
        assert_array_equal(src.read(1), cube.data[0, 0])
        if opts.get("tiled") or opts.get("parameters", {}).get("tiled"):
            assert src.profile["tiled"]
        if "blockxsize" in opts:
            assert src.block_shapes[0] == (32, 32)


def test_lerc_max_z_error_is_applied():
    cube = ndvi_cube()
    exact = encode(cube, {"format": "GTiff", "compress": "lerc"}).content
    lossy = encode(cube, {"format": "GTiff", "compress": "lerc", "max_z_error": 0.05}).content
    assert len(lossy) < len(exact)
    mem, src = decode(lossy)
    with mem, src:
        got = src.read(1)
    assert np.nanmax(np.abs(got - cube.data[0, 0])) <= 0.05 + 1e-6
    assert np.isnan(got[:8, :8]).all()


def _ramp(values, name="RdYlGn", vmin=-1.0, vmax=1.0):
    """The colour of each value by matplotlib directly (another way than the LUT)."""
    rgba = matplotlib.colormaps[name]((values - vmin) / (vmax - vmin))
    return (rgba[..., :3] * 255).round()


def test_jpeg_ycbcr_gtiff_is_styled_rgb_with_mask():
    cube = ndvi_cube()
    out = encode(cube, {"format": "GTiff", "tiled": True, "compress": "jpeg",
                        "photometric": "YCBCR", "jpeg_quality": 90})
    mem, src = decode(out.content)
    with mem, src:
        assert src.count == 3 and src.dtypes == ("uint8",) * 3
        assert src.compression.value == "JPEG" and src.photometric.value == "YCbCr"
        assert src.profile["tiled"] and src.block_shapes[0] == (256, 256)
        assert src.crs.to_epsg() == 32632 and src.transform == VIEW.transform
        mask = src.dataset_mask()
        rgb = src.read().transpose(1, 2, 0).astype(float)
    assert (mask[:8, :8] == 0).all() and (mask[8:, 8:] == 255).all()
    expected = _ramp(cube.data[0, 0])
    valid = np.isfinite(cube.data[0, 0])
    assert np.abs(rgb[valid] - expected[valid]).mean() < 6  # JPEG at quality 90


def test_gtiff_styled_rgb_lossless():
    cube = ndvi_cube()
    out = encode(cube, {"format": "GTiff", "photometric": "RGB", "colormap": "viridis",
                        "range": [-0.5, 0.5]})
    mem, src = decode(out.content)
    with mem, src:
        rgb = src.read().transpose(1, 2, 0).astype(float)
        assert src.compression.value == "DEFLATE"
    values = np.clip(cube.data[0, 0], -0.5, 0.5)
    valid = np.isfinite(values)
    assert np.abs(rgb[valid] - _ramp(values, "viridis", -0.5, 0.5)[valid]).max() <= 4


def test_png_and_jpeg():
    cube = ndvi_cube()
    png = encode(cube, {"format": "PNG"})
    assert png.media_type == "image/png"
    img = np.asarray(Image.open(io.BytesIO(png.content)))
    assert img.shape == (64, 64, 4)
    assert (img[:8, :8, 3] == 0).all() and (img[8:, 8:, 3] == 255).all()
    valid = np.isfinite(cube.data[0, 0])
    assert np.abs(img[..., :3][valid] - _ramp(cube.data[0, 0])[valid]).max() <= 4
    jpeg = encode(cube, {"format": "jpeg", "jpeg_quality": 95})
    assert jpeg.media_type == "image/jpeg"
    rgb = np.asarray(Image.open(io.BytesIO(jpeg.content))).astype(float)
    assert rgb.shape == (64, 64, 3)
    assert rgb[1:6, 1:6].max() < 20  # nodata is black
    assert np.abs(rgb[valid] - _ramp(cube.data[0, 0])[valid]).mean() < 6


def test_rgb_composite_png_uses_last_date():
    cube = stack_cube()
    img = np.asarray(Image.open(io.BytesIO(encode(cube, {"format": "PNG"}).content)))
    scaled = np.nan_to_num(np.clip(cube.data[-1] / 3000 * 255, 0, 255))
    expected = scaled.astype(np.uint8).transpose(1, 2, 0)
    valid = np.isfinite(cube.data[-1]).all(axis=0)
    assert_array_equal(img[..., :3][valid], expected[valid])
    assert (img[10:20, 10:20, 3] == 0).all()


def test_render_rgba_nodata_transparent():
    image = np.array([[[np.nan, -1.0, 0.0, 1.0]]], dtype=np.float32)
    rgba = render_rgba(image, Style("RdYlGn", -1, 1))
    assert rgba[0, 0].tolist() == [0, 0, 0, 0]
    assert (rgba[0, 1:, 3] == 255).all()
    assert_allclose(rgba[0, 1:, :3], _ramp(image[0, 0, 1:]), atol=3)


def test_count_cube_and_empty_cube():
    count = Cube(np.full((1, 1, 64, 64), 2, np.float32), None, ("B04",), VIEW, "count")
    img = np.asarray(Image.open(io.BytesIO(encode(count, {"format": "PNG"}).content)))
    assert (img[..., 3] == 255).all()
    empty = Cube(np.zeros((0, 1, 64, 64), np.float32), (), ("B04",), VIEW)
    mem, src = decode(encode(empty, None).content)
    with mem, src:
        assert src.count == 1 and np.isnan(src.read(1)).all()


@pytest.mark.parametrize("output, match", [
    ({"format": "HDF5"}, "unknown output format 'HDF5'; supported: .*GTiff"),
    ({"format": "NetCDF", "compress": "deflate"}, "NetCDF takes no options"),
    ({"format": 3}, "unknown output format 3"),
    ({"format": "GTiff", "photometric": "YCBCR", "compress": "deflate"},
     "YCBCR requires compress=jpeg"),
    ({"format": "GTiff", "photometric": "YCBCR"}, "YCBCR requires compress=jpeg"),
    ({"format": "GTiff", "compress": "jpeg", "predictor": 2},
     "'predictor' needs a compress of deflate"),
    ({"format": "GTiff", "compress": "deflate", "predictor": 4}, r"'predictor' must be .*\[1, 3\]"),
    ({"format": "GTiff", "compress": "jpeg", "photometric": "RGB", "predictor": 3},
     "'predictor'"),
    ({"format": "GTiff", "tiled": True, "blockxsize": 100},
     "'blockxsize' must be a multiple of 16"),
    ({"format": "GTiff", "blockysize": 8}, r"'blockysize' must be an integer in \[16, 4096\]"),
    ({"format": "GTiff", "tiled": False, "blockxsize": 256}, "need tiled=true"),
    ({"format": "GTiff", "tiled": "maybe"}, "'tiled' must be a boolean"),
    ({"format": "GTiff", "colour": "red"}, r"unknown GTiff option\(s\) \['colour'\]"),
    ({"format": "GTiff", "compress": "rle"}, "'compress': 'rle' is not one of"),
    ({"format": "GTiff", "compress": "jpeg", "jpeg_quality": 0}, "'jpeg_quality' must be"),
    ({"format": "GTiff", "compress": "deflate", "jpeg_quality": 80},
     "'jpeg_quality' needs compress=jpeg"),
    ({"format": "GTiff", "compress": "lzw", "zlevel": 6}, "'zlevel' needs compress=deflate"),
    ({"format": "GTiff", "compress": "deflate", "webp_level": 50}, "'webp_level' needs"),
    ({"format": "GTiff", "compress": "lerc", "max_z_error": -1}, "'max_z_error' must be"),
    ({"format": "GTiff", "photometric": "CMYK"}, "'photometric': 'CMYK' is not one of"),
    ({"format": "GTiff", "bigtiff": "sometimes"}, "'bigtiff' must be"),
    ({"format": "PNG", "compress": "deflate"}, r"unknown PNG option\(s\) \['compress'\]"),
    ({"format": "PNG", "colormap": "no-such-map"}, "unknown colormap 'no-such-map'"),
    ({"format": "JPEG", "range": [1, 0]}, r"'range' must be \[min, max\] with min < max"),
    ({"format": "JPEG", "jpeg_quality": 101}, "'jpeg_quality' must be"),
    ({"format": "GTiff", "parameters": [1]}, "'output.parameters' must be an object"),
    ([1, 2], "'output' must be an object"),
])
def test_impossible_options_are_400(output, match):
    with pytest.raises(OutputFormatError, match=match) as exc:
        validate_output(output)
    assert exc.value.status == 400 and exc.value.code == "FormatUnsupported"
    if isinstance(output, dict):
        # encoding checks the same things (never a GDAL error or a 500)
        with pytest.raises(OutputFormatError):
            encode(ndvi_cube(), output)


def test_validate_output_normalises():
    assert validate_output(None) == {"format": "GTiff"}
    assert validate_output({"format": "tif", "compress": "lzw"}) == {"format": "GTiff",
                                                                     "compress": "lzw"}
    assert validate_output({"format": "jpg"})["format"] == "JPEG"
