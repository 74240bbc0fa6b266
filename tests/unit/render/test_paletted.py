"""Paletted PNG tiles (issue 23): a single-band style is encoded as a palette image (``P``
with ``tRNS`` for nodata) whose decoded colours equal the RGBA encoding's, pixel for pixel;
RGB composites and tiles that use every colour and have nodata stay RGBA."""

from __future__ import annotations

import io

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from PIL import Image

from tileserver.datacube.cube import Cube
from tileserver.datacube.view import View
from tileserver.render.encoders import encode_image, encode_rgba
from tileserver.render.formats import tile_format
from tileserver.render.styles import Style, render_indexed, render_rgba

VIEW = View("EPSG:3857", (0, 0, 2560, 2560), 256, 256)


def rgba_of(content: bytes) -> tuple[str, np.ndarray]:
    """The PNG's mode and its pixels as RGBA (as a browser composes them)."""
    img = Image.open(io.BytesIO(content))
    return img.mode, np.asarray(img.convert("RGBA"))


def values(seed: int = 3, nodata: bool = True, levels: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.uniform(-200, 3300, (1, 256, 256)).astype(np.float32)
    if levels is not None:  # only a few distinct colours
        data = np.round(data / 3500 * levels) * (3000 / levels)
    if nodata:
        data[0, :40, :] = np.nan
        data[0, 100:120, 30:90] = np.nan
    return data


@pytest.mark.parametrize("style", [Style("viridis", 0, 3000), Style("gray", 0, 3000),
                                   Style("RdYlGn", -1, 1), Style(None, 0, 3000)])
@pytest.mark.parametrize("nodata", [True, False])
def test_palette_tile_decodes_to_the_rgba_colours(style, nodata):
    data = values(nodata=nodata, levels=40)
    cube = Cube(data[None], None, ("b",), VIEW)
    fmt = tile_format("image/png")
    mode, got = rgba_of(fmt.tiles.encode(cube, style).content)
    expected = render_rgba(data, style)
    assert mode == "P"
    assert_array_equal(got, expected)
    _, rgba_png = rgba_of(encode_rgba(expected, "PNG").content)
    assert_array_equal(got, rgba_png)
    alpha = got[..., 3]
    assert_array_equal(alpha == 0, np.isnan(data[0]))
    assert set(np.unique(alpha)) <= {0, 255}


def all_colours() -> np.ndarray:
    """A tile whose columns take each of the 256 colours of a 0..3000 style."""
    row = ((np.arange(256) + 0.5) / 255 * 3000).astype(np.float32)
    return np.tile(row, (256, 1))[None].copy()


def test_every_colour_used_with_nodata_stays_rgba():
    data = all_colours()
    data[0, 0, 0] = np.nan  # one nodata pixel, and all 256 colours in use
    data[0, 1, 0] = 0.0  # colour 0 still used elsewhere
    style = Style("viridis", 0, 3000)
    assert render_indexed(data, style) is None
    cube = Cube(data[None], None, ("b",), VIEW)
    mode, got = rgba_of(tile_format("image/png").tiles.encode(cube, style).content)
    assert mode == "RGBA"
    assert_array_equal(got, render_rgba(data, style))


def test_every_colour_used_without_nodata_is_paletted():
    data = all_colours()
    style = Style("magma", 0, 3000)
    cube = Cube(data[None], None, ("b",), VIEW)
    mode, got = rgba_of(tile_format("image/png").tiles.encode(cube, style).content)
    assert mode == "P"
    assert_array_equal(got, render_rgba(data, style))


def test_rgb_composites_stay_rgba():
    rng = np.random.default_rng(1)
    data = rng.uniform(0, 3000, (3, 256, 256)).astype(np.float32)
    style = Style(None, 0, 3000)
    assert render_indexed(data, style) is None
    cube = Cube(data[None], None, ("r", "g", "b"), VIEW)
    mode, got = rgba_of(tile_format("image/png").tiles.encode(cube, style).content)
    assert mode == "RGBA"
    assert_array_equal(got, render_rgba(data, style))


def test_result_png_stays_rgba():
    """``/result`` and ``/execute`` PNGs keep their documented RGBA form."""
    cube = Cube(values(levels=40)[None], None, ("b",), VIEW)
    mode, got = rgba_of(encode_image(cube, "PNG", style=Style("viridis", 0, 3000)).content)
    assert mode == "RGBA"
    mode_p, got_p = rgba_of(encode_image(cube, "PNG", style=Style("viridis", 0, 3000),
                                         paletted=True).content)
    assert mode_p == "P"
    assert_array_equal(got, got_p)
