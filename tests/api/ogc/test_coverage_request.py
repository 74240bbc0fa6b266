"""Core tests of :mod:`tileserver.web.ogc.wcs_request`: SUBSET parsing and the request ->
view math of WCS 2.0.1 and 1.0.0, their errors and the budget. No HTTP, no data read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from tests.support.coverage import DAYS, GEO, LIMITS, UTM, cov
from tileserver.errors import (
    InvalidAxisLabel,
    InvalidExtent,
    InvalidParameterValue,
    InvalidScaleFactor,
    InvalidSubsetting,
    LimitExceeded,
    MissingParameterValue,
    NoSuchField,
    SubsettingCrsNotSupported,
)
from tileserver.maps.coverage import Coverage
from tileserver.web.ogc.kvp import Kvp
from tileserver.web.ogc.wcs_request import parse_subset, request_10, request_20


def kvp(**params) -> Kvp:
    """KVP from keyword arguments; list values repeat the key."""
    pairs = []
    for key, value in params.items():
        for v in value if isinstance(value, list) else [value]:
            pairs.append((key, v))
    return Kvp(pairs)


def req20(c=None, limits=LIMITS, **params):
    """A 2.0.1 GetCoverage on ``c``."""
    return request_20(c or cov(), kvp(**params), limits)


def test_subset_forms():
    s = parse_subset("E(500000,501000.5)")
    assert (s.axis, s.crs, s.low, s.high, s.point) == ("E", None, "500000", "501000.5", None)
    s = parse_subset('time("2020-05-11")')
    assert (s.axis, s.point) == ("time", "2020-05-11")
    s = parse_subset("x,http://www.opengis.net/def/crs/EPSG/0/4326(16.1,16.5)")
    assert (s.axis, s.crs, s.low, s.high) == (
        "x", "http://www.opengis.net/def/crs/EPSG/0/4326", "16.1", "16.5")
    s = parse_subset("N(*,5095000)")
    assert (s.low, s.high) == ("*", "5095000")
    for bad in ("E", "E(1,2,3)", "(1,2)"):
        with pytest.raises(InvalidSubsetting):
            parse_subset(bad)



# -- WCS 2.0.1 GetCoverage -------------------------------------------------------------


def test_no_subset_is_the_native_grid():
    r = req20()
    assert r.view == UTM and r.time_range is None and r.fields is None


def test_trims_snap_to_native_pixel_centres():
    r = req20(SUBSET=["E(500100,500200)", "N(5099000,5099500)"])
    assert r.view.bounds == (500100.0, 5099000.0, 500200.0, 5099500.0)
    assert (r.view.width, r.view.height) == (10, 50)
    # unaligned trim: pixels whose centres lie inside [500104, 500196] -> 500100..500200
    r = req20(SUBSET=["E(500104,500196)", "N(5099004,5099496)"])
    assert r.view.bounds == (500100.0, 5099000.0, 500200.0, 5099500.0)
    # open ends and clipping to the coverage
    r = req20(SUBSET=["E(*,500050)", "N(5099950,5200000)"])
    assert r.view.bounds == (500000.0, 5099950.0, 500050.0, 5100000.0)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 399), st.integers(1, 400), st.integers(0, 999), st.integers(1, 1000))
def test_any_pixel_window_gives_exactly_that_window(col, w, row, h):
    w, h = min(w, 400 - col), min(h, 1000 - row)
    left, top = 500_000 + col * 10, 5_100_000 - row * 10
    r = req20(SUBSET=[f"E({left},{left + w * 10})", f"N({top - h * 10},{top})"])
    assert (r.view.width, r.view.height) == (w, h)
    assert r.view.bounds == (left, top - h * 10, left + w * 10, top)


def test_slices_give_one_pixel():
    r = req20(SUBSET=["E(500123)", "N(5095000,5096000)"])
    assert r.view.bounds == (500120.0, 5095000.0, 500130.0, 5096000.0)
    assert (r.view.width, r.view.height) == (1, 100)


def test_axis_aliases_and_latitude_first_labels():
    r = req20(SUBSET=["x(500000,501000)", "y(5099000,5100000)"])
    assert (r.view.width, r.view.height) == (100, 100)
    r = req20(cov(GEO), SUBSET=["Lat(46.1,46.2)", "Long(9.1,9.2)"])
    assert r.view.bounds == pytest.approx((9.1, 46.1, 9.2, 46.2))
    assert (r.view.width, r.view.height) == (100, 100)


def test_scaling():
    r = req20(SCALESIZE="i(100),j(250)")
    assert (r.view.width, r.view.height, r.view.bounds) == (100, 250, UTM.bounds)
    assert (req20(SCALEFACTOR="4").view.width, req20(SCALEFACTOR="4").view.height) == (100, 250)
    r = req20(SCALEAXES="E(2),N(0.5)")
    assert (r.view.width, r.view.height) == (200, 2000)
    r = req20(SUBSET=["E(500000,501000)"], SCALESIZE="E(50)")
    assert (r.view.width, r.view.height) == (50, 1000)
    r = req20(SCALEEXTENT="i(0:99),j(0:9)")
    assert (r.view.width, r.view.height) == (100, 10)


def test_scaling_errors():
    for bad in ("0", "-2", "abc"):
        with pytest.raises(InvalidScaleFactor):
            req20(SCALEFACTOR=bad)
    with pytest.raises(InvalidScaleFactor):
        req20(SCALEAXES="i(0)")
    for bad in ("i(0)", "i(2.5)", "i(x)"):
        with pytest.raises(InvalidExtent):
            req20(SCALESIZE=bad)
    with pytest.raises(InvalidAxisLabel):
        req20(SCALESIZE="k(10)")
    with pytest.raises(InvalidParameterValue):
        req20(SCALESIZE="i(10)", SCALEFACTOR="2")


def test_openeo_documentation_form():
    """SUBSET=x,<4326 URI>(…)&SUBSET=y,…&SIZE=x(200)&SIZE=y(200) on a UTM coverage."""
    uri = "http://www.opengis.net/def/crs/EPSG/0/4326"
    inner = transform_bounds("EPSG:32632", "EPSG:4326", 500_500, 5_091_000, 503_500, 5_099_000)
    r = req20(SUBSET=[f"x,{uri}({inner[0]},{inner[2]})", f"y,{uri}({inner[1]},{inner[3]})"],
              SIZE=["x(200)", "y(200)"])
    assert r.view.crs == CRS.from_epsg(4326)
    assert (r.view.width, r.view.height) == (200, 200)
    assert r.view.bounds == pytest.approx(inner)


def test_output_and_subsetting_crs():
    r = req20(OUTPUTCRS="http://www.opengis.net/def/crs/EPSG/0/3857")
    expected = transform_bounds("EPSG:32632", "EPSG:3857", *UTM.bounds, densify_pts=21)
    assert r.view.crs == CRS.from_epsg(3857)
    assert r.view.bounds == pytest.approx(expected)
    # the native resolution is kept approximately (the grid has the native pixel count)
    assert r.view.width == 400 and r.view.height == 1000
    r = req20(SUBSETTINGCRS="EPSG:4326", SUBSET=["Long(9.001,9.02)", "Lat(46.0,46.05)"],
              OUTPUTCRS="EPSG:32632", SCALESIZE="i(10),j(10)")
    assert r.view.crs == CRS.from_epsg(32632) and r.view.width == 10
    with pytest.raises(SubsettingCrsNotSupported):
        req20(SUBSETTINGCRS="EPSG:0")
    with pytest.raises(SubsettingCrsNotSupported):
        req20(SUBSET=["x,EPSG:4326(9,9.01)", "y,EPSG:3857(1,2)"])


def test_subset_errors():
    with pytest.raises(InvalidAxisLabel) as exc:
        req20(SUBSET=["Z(1,2)"])
    assert "E, N" in exc.value.message
    with pytest.raises(InvalidSubsetting):
        req20(SUBSET=["E(501000,500000)"])  # low > high
    with pytest.raises(InvalidSubsetting):
        req20(SUBSET=["E(600000,700000)"])  # outside
    with pytest.raises(InvalidSubsetting):
        req20(SUBSET=["E(400000)"])  # slice outside
    with pytest.raises(InvalidSubsetting):
        req20(SUBSET=["E(500000,501000)", "E(500000,501000)"])
    with pytest.raises(InvalidSubsetting):
        req20(SUBSET=["E(abc,501000)"])
    with pytest.raises(InvalidSubsetting):
        req20(SUBSET=["E(500101,500102)"])  # no pixel centre inside
    with pytest.raises(InvalidParameterValue):
        req20(FORMAT="image/png")


def test_time_axis():
    c = cov(times=DAYS)
    default = req20(c)
    assert default.dates == 1 and default.time_range[0].day == 21  # the latest date
    r = req20(c, SUBSET=['time("2020-05-11")'])
    assert r.dates == 1
    assert r.time_range == (datetime(2020, 5, 11, tzinfo=UTC),
                            datetime(2020, 5, 11, 23, 59, 59, 999999, tzinfo=UTC))
    r = req20(c, SUBSET=['time("2020-05-01","2020-05-12")'])
    assert r.dates == 2 and r.time_range[0].day == 1 and r.time_range[1].day == 11
    r = req20(c, SUBSET=["t(*,*)"])
    assert r.dates == 3
    with pytest.raises(InvalidSubsetting) as exc:
        req20(c, SUBSET=['time("2020-05-02")'])
    assert "2020-05-11" in exc.value.message
    with pytest.raises(InvalidSubsetting):
        req20(c, SUBSET=['time("2020-05-21","2020-05-01")'])
    with pytest.raises(InvalidSubsetting):
        req20(c, SUBSET=['time("May")'])
    with pytest.raises(InvalidAxisLabel):
        req20(SUBSET=['time("2020-05-11")'])  # reduced: no time axis


def test_range_subset():
    c = cov(bands=("B04", "B08", "B11"), source_bands=3)
    assert req20(c, RANGESUBSET="B11,B04").fields == (2, 0)
    assert req20(c, RANGESUBSET="B04:B08").fields == (0, 1)
    assert req20(c, RANGESUBSET="3").fields == (2,)
    with pytest.raises(NoSuchField):
        req20(c, RANGESUBSET="B99")
    with pytest.raises(NoSuchField):
        req20(c, RANGESUBSET="B11:B04")


def test_budget():
    with pytest.raises(LimitExceeded) as exc:
        req20(SCALESIZE="i(10000),j(10000)")
    assert exc.value.status == 413 and "limit" in exc.value.message
    # pixels x source bands x dates
    c = cov(times=DAYS, source_bands=2)
    limits = (10**9, 400 * 1000 * 2 * 2)
    req20(c, limits, SUBSET=['time("2020-05-01","2020-05-11")'])
    with pytest.raises(LimitExceeded) as exc:
        req20(c, limits, SUBSET=["time(*,*)"])
    assert "3 dates" in exc.value.message
    # a reduced coverage reads every date of its time range for any answer
    reduced = Coverage("r", "r", UTM, ("ndvi",), 2, None, "ndvi", source_dates=3)
    with pytest.raises(LimitExceeded) as exc:
        req20(reduced, limits)
    assert "3 dates" in exc.value.message
    assert req20(reduced, limits, SCALEFACTOR="2").view.width == 200


# -- WCS 1.0.0 GetCoverage -------------------------------------------------------------


def req10(c=None, **params):
    """A 1.0.0 GetCoverage on ``c``."""
    params.setdefault("FORMAT", "GeoTIFF")
    params.setdefault("CRS", "EPSG:32632")
    return request_10(c or cov(), kvp(**params), LIMITS)


def test_wcs10_bbox_and_size_are_exact():
    r = req10(BBOX="500003,5090007,500503,5090507", WIDTH="7", HEIGHT="3")
    assert r.view.bounds == (500003.0, 5090007.0, 500503.0, 5090507.0)
    assert (r.view.width, r.view.height) == (7, 3)
    r = req10(BBOX="500000,5090000,501000,5090500", RESX="20", RESY="50")
    assert (r.view.width, r.view.height) == (50, 10)


def test_wcs10_response_crs_time_and_band():
    r = req10(BBOX="9,46,9.01,46.01", CRS="EPSG:4326", RESPONSE_CRS="EPSG:32632",
              WIDTH="10", HEIGHT="10")
    assert r.view.crs == CRS.from_epsg(32632)
    assert r.view.bounds == pytest.approx(
        transform_bounds("EPSG:4326", "EPSG:32632", 9, 46, 9.01, 46.01, densify_pts=21))
    c = cov(times=DAYS, bands=("B04", "B08"))
    assert req10(c, BBOX="500000,5090000,501000,5091000", WIDTH="1", HEIGHT="1",
                 TIME="2020-05-11T10:00:00Z").time_range[0].day == 11
    r = req10(c, BBOX="500000,5090000,501000,5091000", WIDTH="1", HEIGHT="1",
              TIME="2020-05-01/2020-05-21", BAND="2")
    assert r.dates == 3 and r.fields == (1,)


def test_wcs10_errors():
    with pytest.raises(MissingParameterValue):
        request_10(cov(), kvp(CRS="EPSG:32632", BBOX="1,2,3,4", WIDTH="1", HEIGHT="1"),
                   LIMITS)
    with pytest.raises(MissingParameterValue):
        req10(BBOX="500000,5090000,501000,5091000")  # no WIDTH/HEIGHT or RESX/RESY
    with pytest.raises(InvalidParameterValue):
        req10(BBOX="500000,5090000,500000,5091000", WIDTH="1", HEIGHT="1")
    with pytest.raises(InvalidParameterValue):
        req10(BBOX="1,2,3", WIDTH="1", HEIGHT="1")
    with pytest.raises(InvalidParameterValue):
        req10(BBOX="500000,5090000,501000,5091000", WIDTH="1", HEIGHT="1", FORMAT="PNG")
    with pytest.raises(InvalidParameterValue):
        req10(BBOX="500000,5090000,501000,5091000", WIDTH="1", HEIGHT="1", TIME="2020-05-01")
    with pytest.raises(LimitExceeded):
        req10(BBOX="500000,5090000,501000,5091000", WIDTH="100000", HEIGHT="100000")
