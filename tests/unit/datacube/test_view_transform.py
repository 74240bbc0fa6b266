"""A view's transform is exactly rasterio's ``from_bounds`` (computed without its Affine
products): every pixel position derived from it stays bit for bit the same."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from rasterio.transform import from_bounds

from tileserver.datacube.view import View

coord = st.floats(-2e7, 2e7, allow_nan=False)
span = st.floats(1e-9, 1e7, allow_nan=False, exclude_min=True)
size = st.integers(1, 100_000)


@given(coord, coord, span, span, size, size)
def test_transform_is_from_bounds_bit_for_bit(left, bottom, dx, dy, width, height):
    view = View("EPSG:3857", (left, bottom, left + dx, bottom + dy), width, height)
    assert tuple(view.transform) == tuple(from_bounds(*view.bounds, width, height))
