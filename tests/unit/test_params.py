"""The shared parameter parsers (``tileserver.params``), without HTTP."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.support.fuzz import EDGES, examples
from tileserver import params
from tileserver.errors import InvalidExtent, InvalidParameterValue, LimitExceeded, TileserverError

NON_FINITE = ["NaN", "nan", "-nan", "inf", "-inf", "Infinity", "1e309", "-1e309"]


@pytest.mark.parametrize("text", [*NON_FINITE, "0x10", "1_000", "²", "١٢", "𝟙", "", " ",
                                  "1,2", "[1]", "null", "true", "\u202e1", "1" * 65])
def test_number_rejects_what_is_not_a_plain_finite_decimal(text):
    with pytest.raises(InvalidExtent) as info:
        params.number(text, "scalefactor", error=InvalidExtent)
    assert info.value.locator == "scalefactor"
    assert "SCALEFACTOR" in info.value.message


@pytest.mark.parametrize(("text", "value"), [("1", 1.0), (" -2.5 ", -2.5), ("1e3", 1000.0),
                                             (".5", 0.5), ("-0", -0.0), ("+7.", 7.0)])
def test_number_reads_decimal_notation(text, value):
    assert params.number(text, "x") == value


def test_number_bounds_and_json_values():
    assert params.number(3, "lon", minimum=-180, maximum=180) == 3.0
    for bad in (True, None, [1], 10**400, float("nan"), float("inf")):
        with pytest.raises(InvalidParameterValue):
            params.number(bad, "lon")
    with pytest.raises(TileserverError, match=r"in \[-90"):
        params.number("91", "lat", minimum=-90, maximum=90, error=TileserverError)
    with pytest.raises(InvalidParameterValue, match="positive"):
        params.number("-0", "resx", positive=True)


def test_integer_is_strict():
    assert params.integer(" 12 ", "tilerow") == 12
    assert params.integer("-3", "tilerow") == -3
    for bad in ("1.0", "1e3", "²", "١٢", "1_000", "9" * 65, "", True, 1.5):
        with pytest.raises(InvalidParameterValue) as info:
            params.integer(bad, "tilerow")
        assert info.value.locator == "tilerow"
    with pytest.raises(InvalidParameterValue, match=r"in \[0"):
        params.integer("-1", "tilecol", minimum=0)


def test_size_is_a_positive_bounded_integer():
    assert params.size("10", "width") == 10
    assert params.size("10.0", "width") == 10
    assert params.size(params.MAX_SIZE, "width") == params.MAX_SIZE
    for bad in ("0", "-5", "0.5", "-0", "1e309", "NaN", str(params.MAX_SIZE + 1), "9" * 40):
        with pytest.raises(InvalidParameterValue) as info:
            params.size(bad, "width")
        assert info.value.locator == "width" and "WIDTH" in info.value.message


def test_computed_sizes_beyond_the_maximum_are_limits():
    assert params.computed_size(0.2, "resx") == 1
    assert params.computed_size(99.5, "resx") == 100
    for bad in (math.inf, math.nan, 1e306, params.MAX_SIZE + 1.0):
        with pytest.raises(LimitExceeded) as info:
            params.computed_size(bad, "resx")
        assert info.value.status == 413 and info.value.locator == "resx"


def test_bbox():
    assert params.bbox("1,2,3,4") == (1.0, 2.0, 3.0, 4.0)
    assert params.bbox(" 1, 2 ,3,4,EPSG:4326") == (1.0, 2.0, 3.0, 4.0)
    for bad in ("1,2,3", "3,2,1,4", "1,4,3,2", "1,2,1,4", "NaN,2,3,4", "1,2,3,1e309",
                ",".join(["1"] * 6), "", "1,2,3,4,5", "1,2,3,4,NaN"):
        with pytest.raises(InvalidParameterValue) as info:
            params.bbox(bad)
        assert info.value.locator == "bbox"


def test_crs_forms():
    assert params.crs("EPSG:32632", "crs").to_epsg() == 32632
    assert params.crs("urn:ogc:def:crs:EPSG::3857", "crs").to_epsg() == 3857
    assert params.crs("http://www.opengis.net/def/crs/EPSG/0/4326", "crs").to_epsg() == 4326
    assert "CRS84" in params.crs("http://www.opengis.net/def/crs/OGC/1.3/CRS84", "crs") \
        .to_string()
    for bad in ("EPSG:0", "EPSG:99999999999", "EPSG:" + "9" * 400, "EPSG:²", "WGS84", "",
                "x" * 5000):
        with pytest.raises(InvalidParameterValue) as info:
            params.crs(bad, "outputcrs")
        assert info.value.locator == "outputcrs"


def test_dates():
    assert params.date("2020-05-11", "time") == datetime(2020, 5, 11, tzinfo=UTC)
    assert params.date("2020-05-11", "time", end=True).hour == 23
    assert params.date("2020-05-11T12:00:00+02:00", "time").hour == 10
    # out of range once converted to UTC: an error, not an OverflowError
    for bad in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2020-13-45",
                "NaN", "", "2020-05-11" + "0" * 100):
        with pytest.raises(InvalidParameterValue) as info:
            params.date(bad, "time")
        assert info.value.locator == "time"


def test_booleans():
    assert params.boolean("TRUE", "series") is True and params.boolean(" 0", "series") is False
    assert params.boolean("", "series") is False and params.boolean(True, "series") is True
    for bad in ("2", "nan", "y e s", "x" * 20, 1, None):
        with pytest.raises(InvalidParameterValue) as info:
            params.boolean(bad, "series")
        assert info.value.locator == "series"


def test_lists_and_texts():
    assert params.items("a, b ,c", "rangesubset") == ["a", "b", "c"]
    with pytest.raises(InvalidParameterValue, match="at most 3"):
        params.items("a,b,c,d", "time", max_items=3)
    for bad in ("a\x00b", "x" * (params.MAX_TEXT + 1), 3, None):
        with pytest.raises(InvalidParameterValue):
            params.text(bad, "layer")


@settings(max_examples=examples(300))
@given(st.text(max_size=80) | st.sampled_from(EDGES) | st.floats().map(repr)
       | st.integers().map(str))
@example("1e-400")
@example("5e-324")
def test_every_parser_answers_a_value_or_its_error(text):
    """No text makes a parser raise anything but the protocol's error."""
    for parse in (params.number, params.integer, params.size, params.bbox, params.crs,
                  params.date, params.items, params.text, params.boolean):
        try:
            value = parse(text, "p", error=InvalidExtent)
        except InvalidExtent as exc:
            assert exc.locator == "p"
            continue
        if parse is params.number:
            assert math.isfinite(value)
        if parse is params.size:
            assert 1 <= value <= params.MAX_SIZE


@pytest.mark.skipif(os.environ.get("HYPOTHESIS_PROFILE", "ci") != "ci",
                    reason="only the CI profile is deterministic")
def test_ci_profile_is_deterministic():
    assert settings.default.derandomize is True
    assert settings.default.database is None
