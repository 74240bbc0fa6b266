"""Tile matrix sets: scale denominators, corners, tile views and limits (no HTTP)."""

from __future__ import annotations

import math

import morecantile
import pytest
from pyproj import Transformer

from tileserver.maps.tilematrix import (
    corner_text,
    get_tms,
    limits,
    tile_bounds,
    tile_in_matrix,
    tile_view,
)

UTM_EXTENT = ((500_000.0, 5_094_880.0, 505_120.0, 5_100_000.0), "EPSG:32632")


def test_google_maps_compatible_is_the_well_known_scale_set():
    tms = get_tms("GoogleMapsCompatible")
    assert tms.supported_crs == "urn:ogc:def:crs:EPSG::3857"
    assert tms.well_known_scale_set == "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible"
    # WMTS 1.0.0 annex E.4: level 0 is 559082264.0287178, each level halves it
    for z, m in enumerate(tms.matrices):
        assert m.scale_denominator == pytest.approx(559082264.0287178 / 2**z, rel=1e-12)
        assert (m.matrix_width, m.matrix_height) == (2**z, 2**z)
    assert tms.top_left_text(tms.matrices[0]) == "-20037508.342789244 20037508.342789244"


def test_crs84_quad_scale_by_the_028mm_rule_and_lon_lat_corner():
    tms = get_tms("WorldCRS84Quad")
    m0 = tms.matrices[0]
    assert (m0.matrix_width, m0.matrix_height) == (2, 1)
    degrees_per_pixel = 180.0 / 256
    expected = degrees_per_pixel * (2 * math.pi * 6378137 / 360) / 0.00028
    assert m0.scale_denominator == pytest.approx(expected, rel=1e-12)
    assert tms.top_left_text(m0) == "-180.0 90.0"  # CRS84 is lon/lat


def test_corner_follows_the_axis_order_of_the_crs_as_written():
    assert corner_text("urn:ogc:def:crs:EPSG::4326", -180.0, 90.0) == "90.0 -180.0"
    assert corner_text("urn:ogc:def:crs:OGC:1.3:CRS84", -180.0, 90.0) == "-180.0 90.0"
    assert corner_text("urn:ogc:def:crs:EPSG::3857", 1.5, 2.5) == "1.5 2.5"


@pytest.mark.parametrize("z,x,y", [(0, 0, 0), (9, 268, 181), (14, 8602, 5826)])
def test_tile_view_matches_morecantile(z, x, y):
    tms = get_tms("GoogleMapsCompatible")
    view = tile_view(tms, tms.matrix(str(z)), y, x)
    ref = morecantile.tms.get("WebMercatorQuad").xy_bounds(x, y, z)
    assert view.bounds == pytest.approx(tuple(ref), abs=1e-6)
    assert (view.width, view.height) == (256, 256)
    assert view.crs.to_epsg() == 3857


def test_tile_view_crs84():
    tms = get_tms("WorldCRS84Quad")
    view = tile_view(tms, tms.matrix("1"), 0, 3)
    assert view.bounds == pytest.approx((90.0, 0.0, 180.0, 90.0))  # 4x2 tiles of 90 deg
    assert view.crs.to_epsg() == 4326


def test_tile_in_matrix():
    tms = get_tms("GoogleMapsCompatible")
    m = tms.matrix("2")
    assert tile_in_matrix(m, 3, 3) and not tile_in_matrix(m, 4, 0)
    assert not tile_in_matrix(m, 0, -1)


@pytest.mark.parametrize("tms_id", ["GoogleMapsCompatible", "WorldCRS84Quad"])
def test_limits_cover_exactly_the_extent(tms_id):
    tms = get_tms(tms_id)
    bounds, crs = UTM_EXTENT
    lim = limits(tms, bounds, crs)
    assert [row[0] for row in lim] == [m.identifier for m in tms.matrices]
    to_tms = Transformer.from_crs(crs, tms.view_crs, always_xy=True)
    # the four corners and the centre of the extent fall in tiles within the limits,
    # and the tiles just outside the limits do not touch the extent
    xs, ys = to_tms.transform([bounds[0], bounds[2], bounds[0], bounds[2]],
                              [bounds[1], bounds[1], bounds[3], bounds[3]])
    ext = (min(xs), min(ys), max(xs), max(ys))
    for ident, rmin, rmax, cmin, cmax in lim:
        m = tms.matrix(ident)
        for x, y in zip(xs, ys, strict=True):
            sx, sy = m.span
            col = math.floor((x - m.origin[0]) / sx)
            row = math.floor((m.origin[1] - y) / sy)
            assert cmin <= col <= cmax and rmin <= row <= rmax, (ident, row, col)
        if cmin > 0:
            left, _, right, _ = tile_bounds(tms, m, rmin, cmin - 1)
            assert right <= ext[0] + 1e-6
        if rmax < m.matrix_height - 1:
            _, bottom, _, top = tile_bounds(tms, m, rmax + 1, cmin)
            assert top <= ext[1] + 1e-6


def test_limits_none_outside_mercator():
    tms = get_tms("GoogleMapsCompatible")
    assert limits(tms, (-10.0, 86.0, 10.0, 89.0), "EPSG:4326") is None
