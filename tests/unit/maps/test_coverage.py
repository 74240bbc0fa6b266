"""Core tests of :mod:`tileserver.maps.coverage`: KVP, CRS forms and axis order, the GML
values of descriptions, ``describe`` against the synthetic catalog. No HTTP."""

from __future__ import annotations

import pytest
from rasterio.crs import CRS

from tests.support.core import bbox, call, leaf, make_engine
from tests.support.coverage import GEO, cov
from tileserver.errors import InvalidParameterValue, MissingParameterValue
from tileserver.maps.coverage import axes_of, describe, parse_crs
from tileserver.web.ogc.kvp import Kvp

# -- parsing ---------------------------------------------------------------------------


def test_kvp_is_case_insensitive_and_collects_numbered_subsets():
    k = Kvp([("service", "WCS"), ("SubSet", "E(1,2)"), ("SUBSET0", 'time("2020-05-01")')])
    assert k.get("SERVICE") == "WCS"
    assert k.getall("subset") == ["E(1,2)", 'time("2020-05-01")']
    with pytest.raises(MissingParameterValue) as exc:
        k.require("coverageid")
    assert exc.value.locator == "coverageid"


@pytest.mark.parametrize("text, epsg", [
    ("EPSG:32632", 32632), ("urn:ogc:def:crs:EPSG::4326", 4326),
    ("http://www.opengis.net/def/crs/EPSG/0/3857", 3857), ("epsg:4326", 4326),
])
def test_crs_forms(text, epsg):
    assert parse_crs(text, locator="crs").to_epsg() == epsg


def test_crs84_and_bad_crs():
    assert parse_crs("http://www.opengis.net/def/crs/OGC/1.3/CRS84", locator="c").is_geographic
    with pytest.raises(InvalidParameterValue) as exc:
        parse_crs("EPSG:999999", locator="outputcrs")
    assert exc.value.locator == "outputcrs"
    with pytest.raises(InvalidParameterValue):
        parse_crs("mercator", locator="crs")


def test_axis_order_of_crs():
    assert axes_of(CRS.from_epsg(32632))[:2] == (("E", "N"), False)
    assert axes_of(CRS.from_epsg(4326))[:2] == (("Lat", "Long"), True)
    assert axes_of(CRS.from_epsg(3035))[:2] == (("Y", "X"), True)  # northing first


# -- descriptions ----------------------------------------------------------------------


def test_gml_of_projected_grid_has_origin_at_pixel_centre():
    g = cov().gml()
    assert g["labels"] == "E N"
    assert g["lower"] == "500000.0 5090000.0" and g["upper"] == "504000.0 5100000.0"
    assert g["origin"] == "500005.0 5099995.0"
    assert (g["offset_i"], g["offset_j"]) == ("10.0 0.0", "0.0 -10.0")
    assert g["high"] == "399 999"


def test_gml_of_latitude_first_crs_is_in_epsg_axis_order():
    g = cov(GEO).gml()
    assert g["srs"] == "http://www.opengis.net/def/crs/EPSG/0/4326"
    assert g["labels"] == "Lat Long"
    assert g["lower"] == "46.0 9.0" and g["upper"] == "46.25 9.5"
    assert g["origin"] == "46.2495 9.0005"
    # grid axis i (columns) moves east, j (rows) moves south; positions are (lat, long)
    assert (g["offset_i"], g["offset_j"]) == ("0.0 0.001", "-0.001 0.0")
    assert cov(GEO).gml_xy()["origin"] == "9.0005 46.2495"  # WCS 1.0: x/y


def test_describe_matches_the_engine(small_catalog):
    engine = make_engine(small_catalog)
    graph = engine.parse(call("NDVI", bbox(leaf(), 500_500, 504_500, 5_099_500, 5_095_500),
                              red="B04", nir="B08"))
    c = describe(engine, graph, "job_x", "title")
    assert c.view == engine.native_view(graph)
    assert (c.view.width, c.view.height, c.view.res) == (400, 400, (10.0, 10.0))
    assert c.bands == ("ndvi",) and c.source_bands == 2
    assert [t.strftime("%Y-%m-%d") for t in c.times] == ["2020-05-01", "2020-05-11",
                                                         "2020-05-21"]
    assert c.source_dates == 3
    reduced = describe(engine, engine.parse(call("min_time", graph.source)), "r", "r")
    assert reduced.times is None and reduced.source_dates == 3


