"""Every process against numpy computed another way (tests/support/core.py), on the
synthetic two-zone product with nodata holes, on views in both UTM zones and beyond the data.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from pyproj import Transformer

from tests.support.core import (
    TEST_BOUNDS_32632,
    bbox,
    call,
    daterange,
    leaf,
    make_engine,
    ndvi,
    reference_stack,
)
from tileserver.datacube.view import View
from tileserver.errors import BandNotFound, ProcessGraphError

L, B, R, T = TEST_BOUNDS_32632
#: Views: the native 32632 grid widened by 40 px to the east and south (pixels there have
#: no observation at all), and a 10 m view in the other zone (every item warped).
VIEWS = {
    "utm32-native": View("EPSG:32632", (L, B - 400, R + 400, T), 552, 552),
    "utm33": View("EPSG:32633", (35_600.0, 5_112_600.0, 41_600.0, 5_117_400.0), 600, 480),
}
ALL_BANDS = ["B04", "B08", "B11"]


@pytest.fixture(scope="module", params=sorted(VIEWS))
def view(request):
    return VIEWS[request.param]


@pytest.fixture(scope="module")
def reference(small_catalog, view):
    """(days, stack) of all bands on the view."""
    return reference_stack(small_catalog, "TEST", view, ALL_BANDS)


def run(engine, graph, view):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # none from NaN arithmetic
        return engine.evaluate(engine.parse(graph), view)


def test_leaf_equals_reference_mosaic(engine, view, reference):
    days, ref = reference
    cube = run(engine, leaf(), view)
    assert [t.strftime("%Y-%m-%d") for t in cube.times] == days == [
        "2020-05-01", "2020-05-11", "2020-05-21"]
    assert cube.bands == tuple(ALL_BANDS)
    assert cube.data.dtype == np.float32
    assert_array_equal(np.isnan(cube.data), np.isnan(ref))
    assert_allclose(cube.data, ref, equal_nan=True)
    # the synthetic data has holes and the view has pixels without any observation
    assert np.isnan(ref).any() and (~np.isnan(ref)).mean() > 0.5


@pytest.mark.parametrize("bands, expected", [
    ("B08", ["B08"]),
    (["B11", "B04"], ["B11", "B04"]),
    (2, ["B08"]),  # 1-based index in catalog order B04, B08, B11
    (3, ["B11"]),
])
def test_filter_bands(engine, view, reference, bands, expected):
    _, ref = reference
    cube = run(engine, call("filter_bands", leaf(), bands=bands), view)
    assert cube.bands == tuple(expected)
    idx = [ALL_BANDS.index(b) for b in expected]
    assert_allclose(cube.data, ref[:, idx], equal_nan=True)


def test_filter_bands_errors(engine):
    with pytest.raises(BandNotFound, match="out of range.*1=B04, 2=B08, 3=B11") as exc:
        engine.parse(call("filter_bands", leaf(), bands=4))
    assert exc.value.path == "process_graph.args.bands"
    with pytest.raises(BandNotFound, match="B8A"):
        engine.parse(call("filter_bands", leaf(), bands=["B04", "B8A"]))
    with pytest.raises(ProcessGraphError, match="1-based"):
        engine.parse(call("filter_bands", leaf(), bands=0))
    with pytest.raises(ProcessGraphError, match="duplicate"):
        engine.parse(call("filter_bands", leaf(), bands=["B04", "B04"]))


def test_ndvi(engine, view, reference):
    _, ref = reference
    cube = run(engine, call("NDVI", leaf(), red="B04", nir="B08"), view)
    expected = ndvi(ref[:, 0], ref[:, 1])
    assert cube.bands == ("ndvi",) and cube.kind == "ndvi"
    assert_array_equal(np.isnan(cube.data[:, 0]), np.isnan(expected))
    assert_allclose(cube.data[:, 0], expected, rtol=1e-6, atol=1e-6, equal_nan=True)
    assert np.nanmin(cube.data) >= -1 and np.nanmax(cube.data) <= 1


def _nan_reduce(fn, stack):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(stack, axis=0)


@pytest.mark.parametrize("process_id, fn", [
    ("min_time", np.nanmin),
    ("max_time", np.nanmax),
    ("mean_time", np.nanmean),
    ("median_time", np.nanmedian),
])
def test_temporal_reductions(engine, view, reference, process_id, fn):
    _, ref = reference
    cube = run(engine, call(process_id, call("NDVI", leaf(), red="B04", nir="B08")), view)
    expected = _nan_reduce(fn, ndvi(ref[:, 0], ref[:, 1]))
    assert cube.times is None and cube.data.shape == (1, 1, view.height, view.width)
    got = cube.data[0, 0]
    no_obs = np.isnan(ref[:, :2]).any(axis=1).all(axis=0)
    assert no_obs.any(), "the view must have pixels without any valid observation"
    assert np.isnan(got[no_obs]).all(), "no valid observation must stay nodata"
    assert np.isfinite(got[~no_obs]).all()
    assert_allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_temporal_reductions_on_raw_bands(engine, view, reference):
    _, ref = reference
    cube = run(engine, call("max_time", leaf()), view)
    assert cube.bands == tuple(ALL_BANDS)
    assert_allclose(cube.data[0], _nan_reduce(np.nanmax, ref), equal_nan=True)


def test_count_time(engine, view, reference):
    _, ref = reference
    cube = run(engine, call("count_time", leaf()), view)
    expected = (~np.isnan(ref)).sum(axis=0)
    assert cube.kind == "count"
    assert_array_equal(cube.data[0], expected)
    assert (cube.data[0] == 0).any() and (cube.data[0] == 3).any()
    assert not np.isnan(cube.data).any()


def test_reductions_with_no_acquisition(engine):
    view = VIEWS["utm32-native"]
    empty = daterange(leaf(), "2020-06-01", "2020-06-30")
    assert run(engine, empty, view).data.shape[0] == 0
    assert np.isnan(run(engine, call("min_time", empty), view).data).all()
    assert np.isnan(run(engine, call("median_time", empty), view).data).all()
    assert (run(engine, call("count_time", empty), view).data == 0).all()


@pytest.mark.parametrize("start, end, days, n_items", [
    ("2020-05-11", "2020-05-21", ["2020-05-11", "2020-05-21"], 3),
    # a datetime bound is inclusive to the second: 10:00:05 (the 32633 item) is excluded
    ("2020-05-01T10:00:00Z", "2020-05-11T10:00:00Z", ["2020-05-01", "2020-05-11"], 2),
    ("2020-05-11T10:00:05Z", "2020-05-11T10:00:05Z", ["2020-05-11"], 1),
    ("2020-05-01", "2020-05-01", ["2020-05-01"], 1),
])
def test_filter_daterange_inclusive(engine, small_catalog, start, end, days, n_items):
    view = VIEWS["utm32-native"]
    cube = run(engine, daterange(leaf(), start, end), view)
    assert [t.strftime("%Y-%m-%d") for t in cube.times] == days
    t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
    t1 = datetime.fromisoformat(end.replace("Z", "+00:00"))
    if len(end) == 10:
        t1 = t1.replace(hour=23, minute=59, second=59, tzinfo=UTC)
    t0 = t0.replace(tzinfo=UTC)
    ref_days, ref = reference_stack(small_catalog, "TEST", view, ALL_BANDS, t0, t1)
    assert ref_days == days
    assert_allclose(cube.data, ref, equal_nan=True)
    assert len(engine.catalog.get("TEST").items_for(None, (t0, t1))) == n_items


def test_filter_daterange_errors(engine):
    with pytest.raises(ProcessGraphError, match="after") as exc:
        engine.parse(daterange(leaf(), "2020-05-21", "2020-05-01"))
    assert exc.value.path == "process_graph.args.from"
    with pytest.raises(ProcessGraphError, match="not an ISO 8601 date") as exc:
        engine.parse(daterange(leaf(), "2020-13-45", "2020-05-01"))
    assert exc.value.path == "process_graph.args.from"


def _centres_inside(view: View, bounds, srs) -> np.ndarray:
    """Pixel centres of the view transformed into ``srs`` with pyproj, tested in bounds."""
    left, bottom, right, top = view.bounds
    rx, ry = view.res
    xs = left + (np.arange(view.width) + 0.5) * rx
    ys = top - (np.arange(view.height) + 0.5) * ry
    gx, gy = np.meshgrid(xs, ys)
    tx, ty = Transformer.from_crs(view.crs, srs, always_xy=True).transform(gx, gy)
    return (tx > bounds[0]) & (tx < bounds[2]) & (ty > bounds[1]) & (ty < bounds[3])


@pytest.mark.parametrize("srs, box", [
    ("EPSG:4326", (9.01, 46.02, 9.05, 46.045)),  # left, bottom, right, top
    ("EPSG:32633", (36_500.0, 5_113_500.0, 39_000.0, 5_116_000.0)),
    ("EPSG:3857", (1_003_000.0, 5_782_000.0, 1_007_000.0, 5_786_000.0)),
])
def test_filter_bbox_in_another_crs(engine, view, reference, srs, box):
    _, ref = reference
    graph = bbox(call("filter_bands", leaf(), bands="B08"), box[0], box[2], box[3], box[1], srs)
    cube = run(engine, graph, view)
    inside = _centres_inside(view, box, srs)
    assert 0.05 < inside.mean() < 0.95
    got = cube.data[:, 0]
    expected = np.where(inside, ref[:, 1], np.nan)
    differ = np.isnan(got) != np.isnan(expected)
    # pixels whose centre lies on the (reprojected, curved) boundary may go either way
    assert differ.sum() <= 0.01 * inside.sum()
    both = ~np.isnan(got) & ~np.isnan(expected)
    assert_array_equal(got[both], expected[both])
    assert np.isnan(got[:, ~inside & ~_centres_inside(view, _grow(box, 0.02), srs)]).all()


def _grow(box, frac):
    dx, dy = (box[2] - box[0]) * frac, (box[3] - box[1]) * frac
    return (box[0] - dx, box[1] - dy, box[2] + dx, box[3] + dy)


def test_filter_bbox_swapped_is_normalised(engine):
    ok = engine.parse(bbox(leaf(), 500_100, 504_000, 5_099_000, 5_096_000))
    swapped = engine.parse(bbox(leaf(), 500_100, 504_000, 5_096_000, 5_099_000))
    assert ok.meta.bbox == swapped.meta.bbox == (500_100, 5_096_000, 504_000, 5_099_000)
    assert not ok.notes
    assert len(swapped.notes) == 1 and "swapping" in swapped.notes[0]
    view = engine.native_view(swapped)
    assert_allclose(run(engine, swapped.source, view).data, run(engine, ok.source, view).data,
                    equal_nan=True)


@pytest.mark.parametrize("left, right, top, bottom, path, match", [
    (504_000, 500_100, 5_099_000, 5_096_000, "left", "left .* must be smaller than right"),
    (500_100, 500_100, 5_099_000, 5_096_000, "left", "left .* must be smaller than right"),
    (500_100, 504_000, 5_099_000, 5_099_000, "top", "empty bbox"),
])
def test_filter_bbox_empty_or_inverted(engine, left, right, top, bottom, path, match):
    with pytest.raises(ProcessGraphError, match=match) as exc:
        engine.parse(bbox(leaf(), left, right, top, bottom))
    assert exc.value.path == f"process_graph.args.{path}"
    assert exc.value.status == 400


def test_ndvi_unknown_band(engine):
    with pytest.raises(BandNotFound, match="'B8A' is not in the input") as exc:
        engine.parse(call("NDVI", leaf(), red="B04", nir="B8A"))
    assert exc.value.path == "process_graph.args.nir"
    with pytest.raises(BandNotFound, match="'B08' is not in the input"):
        engine.parse(call("NDVI", call("filter_bands", leaf(), bands="B04"), red="B04",
                          nir="B08"))


def test_scale_offset_applied(engine, small_catalog):
    """FLOATS: float32, NaN nodata, raster:bands scale 0.5 offset 10, no overviews."""
    e = make_engine(small_catalog)
    g = e.parse(leaf("FLOATS"))
    view = e.native_view(g)
    cube = e.evaluate(g, view)
    _, ref = reference_stack(small_catalog, "FLOATS", view, ["T"])
    assert_allclose(cube.data, ref, rtol=1e-6, equal_nan=True)
    assert np.nanmin(cube.data) == 10.0 and np.nanmax(cube.data) == 0.5 * 999 + 10
    assert np.isnan(cube.data).sum() == 100


@pytest.mark.parametrize("left, right, top, bottom, srs, match", [
    # UTM metres given as degrees: a 400 naming srs, not a NaN grid and a 500
    (500_100, 504_000, 5_099_000, 5_096_000, "EPSG:4326", "outside the longitude/latitude"),
    (9.0, 9.05, 91.0, 46.0, "EPSG:4326", "outside the longitude/latitude"),
])
def test_filter_bbox_outside_its_crs(engine, left, right, top, bottom, srs, match):
    with pytest.raises(ProcessGraphError, match=match) as exc:
        engine.parse(bbox(leaf(), left, right, top, bottom, srs))
    assert exc.value.path == "process_graph.args.srs"


def test_nested_bboxes_intersect(engine, small_catalog):
    inner = bbox(leaf(), 500_100, 502_000, 5_099_000, 5_097_000)
    outer = engine.parse(bbox(inner, 501_000, 504_000, 5_098_500, 5_096_000))
    assert outer.meta.bbox == (501_000, 5_097_000, 502_000, 5_098_500)
    view = engine.native_view(outer)
    assert (view.width, view.height) == (100, 150)
    cube = engine.evaluate(outer, view)
    _, ref = reference_stack(small_catalog, "TEST", view, ALL_BANDS)
    assert_allclose(cube.data, ref, equal_nan=True)
    # a geographic bbox around a UTM one: the overlap, in the outer bbox's CRS
    geo = engine.parse(bbox(inner, 8.9, 9.2, 46.1, 45.9, "EPSG:4326"))
    west, south, east, north = geo.meta.bbox
    assert 9.0 < west < east < 9.04 and 46.02 < south < north < 46.05
    with pytest.raises(ProcessGraphError, match="does not overlap") as exc:
        engine.parse(bbox(inner, 503_000, 504_000, 5_099_000, 5_096_000))
    assert exc.value.path == "process_graph.args"
