"""openEO 1.x process graphs on the one engine: parsing errors with the 1.x codes, values
against plain rasterio + numpy references, laziness of callbacks, and equality with the
0.0.2 form of the same graph."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import numpy as np
import pytest
from numpy.testing import assert_allclose

import tileserver.engine.evaluator as evaluator_module
from tests.support.core import (
    TEST_BOUNDS_32632,
    make_engine,
    ndvi,
    pixels_read,
    reference_stack,
)
from tileserver.datacube.view import View
from tileserver.demo import L2A_PRODUCT_ID, example_graph
from tileserver.errors import ProcessGraphError

L, B, R, T = TEST_BOUNDS_32632
#: Full-resolution views, as in test_processes: the native grid widened by 40 px (no data
#: there), and the other UTM zone (every item warped).
VIEW = View("EPSG:32632", (L, B - 400, R + 400, T), 552, 552)
VIEW33 = View("EPSG:32633", (35_600.0, 5_112_600.0, 41_600.0, 5_117_400.0), 600, 480)


@pytest.fixture
def band_reads(monkeypatch) -> list[str]:
    """The ids of the bands the evaluator reads (each real read, in order)."""
    reads: list[str] = []
    real = evaluator_module.read_window

    def spy(href, band, view, *args, **kwargs):
        reads.append(band.id)
        return real(href, band, view, *args, **kwargs)

    monkeypatch.setattr(evaluator_module, "read_window", spy)
    return reads


def load(**args) -> dict:
    return {"process_id": "load_collection", "arguments": {"id": "TEST", **args}}


def ref(name: str) -> dict:
    return {"from_node": name}


def param(name: str) -> dict:
    return {"from_parameter": name}


def reducer(process_id: str, **args) -> dict:
    return {"process_graph": {"r": {"process_id": process_id, "arguments": {
        "data": param("data"), **args}, "result": True}}}


def band_math_ndvi(red: str = "B04", nir: str = "B08") -> dict:
    """(nir - red) / (nir + red) as the openeo client writes ``cube.band(...)`` math."""
    return {"process_graph": {
        "red": {"process_id": "array_element", "arguments": {"data": param("data"),
                                                             "label": red}},
        "nir": {"process_id": "array_element", "arguments": {"data": param("data"),
                                                             "label": nir}},
        "sub": {"process_id": "subtract", "arguments": {"x": ref("nir"), "y": ref("red")}},
        "add": {"process_id": "add", "arguments": {"x": ref("nir"), "y": ref("red")}},
        "div": {"process_id": "divide", "arguments": {"x": ref("sub"), "y": ref("add")},
                "result": True}}}


def graph(**nodes) -> dict:
    """Nodes in order; the last one is the result."""
    last = list(nodes)[-1]
    return {k: {**v, **({"result": True} if k == last else {})} for k, v in nodes.items()}


def test_band_math_then_min_over_time_equals_reference(engine, small_catalog):
    g = engine.parse(graph(
        load=load(bands=["B04", "B08"]),
        nd={"process_id": "reduce_dimension", "arguments": {
            "data": ref("load"), "dimension": "bands", "reducer": band_math_ndvi()}},
        mn={"process_id": "reduce_dimension", "arguments": {
            "data": ref("nd"), "dimension": "t", "reducer": reducer("min")}},
        save={"process_id": "save_result", "arguments": {"data": ref("mn"),
                                                         "format": "GTiff"}}))
    assert g.dialect == "1.x" and g.save_result == {"format": "GTiff", "parameters": {}}
    assert g.meta.kind == "ndvi" and g.meta.reduced and set(g.meta.source_bands) == {
        "B04", "B08"}
    for view in (VIEW, VIEW33):
        cube = engine.evaluate(g, view)
        _, stack = reference_stack(small_catalog, "TEST", view,
                                   ["B04", "B08"])
        with np.errstate(all="ignore"):
            expected = np.fmin.reduce(ndvi(stack[:, 0], stack[:, 1]), axis=0)
        assert cube.data.shape == (1, 1, view.height, view.width)
        assert_allclose(cube.data[0, 0], expected, rtol=1e-5, atol=1e-6, equal_nan=True)
        assert np.isnan(expected).any() and np.isfinite(expected).any()


def test_ndvi_process_and_temporal_extent_end_is_excluded(engine, small_catalog):
    # 2020-05-21 is the last date: [05-01, 05-21) keeps the first two days only
    g = engine.parse(graph(
        load=load(temporal_extent=["2020-05-01", "2020-05-21"]),
        nd={"process_id": "ndvi", "arguments": {"data": ref("load"), "red": "B04",
                                                "nir": "B08"}}))
    assert not g.meta.has_bands and g.meta.source_bands == ("B04", "B08")
    cube = engine.evaluate(g, VIEW)
    assert [t.date().isoformat() for t in cube.times] == ["2020-05-01", "2020-05-11"]
    days, stack = reference_stack(small_catalog, "TEST", VIEW,
                                  ["B04", "B08"], end=datetime(2020, 5, 20, tzinfo=UTC))
    assert days == ["2020-05-01", "2020-05-11"]
    with np.errstate(all="ignore"):
        assert_allclose(cube.data[:, 0], ndvi(stack[:, 0], stack[:, 1]), rtol=1e-5,
                        atol=1e-6, equal_nan=True)


def test_apply_linear_scale_range_and_common_band_names(engine, small_catalog):
    g = engine.parse(graph(
        load=load(bands=["B08"], temporal_extent=["2020-05-11", None]),
        sc={"process_id": "apply", "arguments": {"data": ref("load"), "process": {
            "process_graph": {"s": {"process_id": "linear_scale_range", "arguments": {
                "x": param("x"), "inputMin": 0, "inputMax": 5000, "outputMin": 0,
                "outputMax": 255}, "result": True}}}}}))
    cube = engine.evaluate(g, VIEW)
    _, stack = reference_stack(small_catalog, "TEST", VIEW, ["B08"],
                               start=datetime(2020, 5, 11, tzinfo=UTC))
    assert_allclose(cube.data, np.clip(stack, 0, 5000) / 5000 * 255, rtol=1e-5,
                    equal_nan=True)


@pytest.mark.parametrize(("method", "resampling"), [("bilinear", "bilinear"),
                                                    ("cubic", "cubic")])
def test_resample_spatial_method_warps_the_reads(engine, small_catalog, method, resampling):
    """Any view (a tile's, a coverage's) is read with resample_spatial's method: here a 10 m
    view shifted by half a pixel, against rasterio's warp of the whole file."""
    from rasterio.enums import Resampling

    view = View("EPSG:32632", (L + 1005, B + 1005, L + 2205, B + 2005), 120, 100)
    g = engine.parse(graph(
        load=load(bands=["B08"], temporal_extent=["2020-05-11", "2020-05-12"]),
        rs={"process_id": "resample_spatial", "arguments": {"data": ref("load"),
                                                            "method": method}}))
    cube = engine.evaluate(g, view)
    plain = engine.evaluate(engine.parse(graph(
        load=load(bands=["B08"], temporal_extent=["2020-05-11", "2020-05-12"]))), view)
    start, end = datetime(2020, 5, 11, tzinfo=UTC), datetime(2020, 5, 11, 23, tzinfo=UTC)
    _, expected = reference_stack(small_catalog, "TEST", view, ["B08"], start, end,
                                  Resampling[resampling])
    _, nearest = reference_stack(small_catalog, "TEST", view, ["B08"], start, end)
    assert_allclose(cube.data, expected, rtol=1e-5, equal_nan=True)
    assert_allclose(plain.data, nearest, rtol=1e-6, equal_nan=True)
    assert not np.allclose(expected, nearest, equal_nan=True)


def test_band_reducer_reads_only_the_bands_it_uses(engine, band_reads):
    g = engine.parse(graph(
        load=load(),  # all three bands offered, two used
        nd={"process_id": "reduce_dimension", "arguments": {
            "data": ref("load"), "dimension": "bands", "reducer": band_math_ndvi()}}))
    engine.evaluate(g, View("EPSG:32632", TEST_BOUNDS_32632, 77, 77))
    assert band_reads and set(band_reads) == {"B04", "B08"}


def test_band_reducer_by_index_without_a_bands_filter(engine, small_catalog, band_reads):
    """The client's cube.band("B08") on a collection loaded without bands= sends
    array_element(index=1): only B04 and B08 are read, and index 1 is still B08."""
    by_index = {"process_graph": {
        "r": {"process_id": "array_element", "arguments": {"data": param("data"), "index": 0}},
        "n": {"process_id": "array_element", "arguments": {"data": param("data"), "index": 1}},
        "d": {"process_id": "normalized_difference", "arguments": {"x": ref("n"),
                                                                   "y": ref("r")},
              "result": True}}}
    g = engine.parse(graph(
        load=load(temporal_extent=["2020-05-01", "2020-05-02"]),
        nd={"process_id": "reduce_dimension", "arguments": {
            "data": ref("load"), "dimension": "bands", "reducer": by_index}}))
    cube = engine.evaluate(g, VIEW)
    assert set(band_reads) == {"B04", "B08"}
    _, stack = reference_stack(small_catalog, "TEST", VIEW, ["B04", "B08"],
                               end=datetime(2020, 5, 2, tzinfo=UTC))
    with np.errstate(all="ignore"):
        assert_allclose(cube.data[:, 0], ndvi(stack[:, 0], stack[:, 1]), rtol=1e-5,
                        atol=1e-6, equal_nan=True)


def test_zoomed_out_1x_tile_reads_about_the_view(engine):
    g = engine.parse(graph(
        load=load(),
        nd={"process_id": "reduce_dimension", "arguments": {
            "data": ref("load"), "dimension": "bands", "reducer": band_math_ndvi()}},
        mn={"process_id": "reduce_dimension", "arguments": {
            "data": ref("nd"), "dimension": "t", "reducer": reducer("max")}}))
    view = View("EPSG:32632", TEST_BOUNDS_32632, 64, 64)  # 1/8 of the 512 px grid
    before = pixels_read()
    engine.evaluate(g, view)
    read = pixels_read() - before
    # 2 bands x 4 acquisitions at the 1/8 overview, plus a few edge blocks
    assert 0 < read <= 2 * 4 * 64 * 64 * 1.6


def test_1x_equals_the_0_0_2_example(demo_catalog):
    engine = make_engine(demo_catalog)
    old = engine.parse(example_graph())
    new = engine.parse(graph(
        load={"process_id": "load_collection", "arguments": {
            "id": L2A_PRODUCT_ID, "spatial_extent": {
                "west": 652000, "east": 672000, "south": 5161000, "north": 5181000,
                "crs": 32632}, "temporal_extent": ["2017-01-01", "2017-02-01"],
            "bands": ["B04", "B8A"]}},
        nd={"process_id": "ndvi", "arguments": {"data": ref("load"), "red": "B04",
                                                "nir": "B8A"}},
        mn={"process_id": "reduce_dimension", "arguments": {
            "data": ref("nd"), "dimension": "t", "reducer": reducer("min")}}))
    view = engine.native_view(new)
    assert view == engine.native_view(old)
    small = View(view.crs, view.bounds, 250, 250)
    a, b = engine.evaluate(old, small), engine.evaluate(new, small)
    assert_allclose(a.data, b.data, equal_nan=True)
    assert np.isfinite(a.data).sum() > 1000


def test_same_graph_other_node_ids_hash_equal(engine):
    def g(prefix):
        return engine.parse(graph(**{
            f"{prefix}1": load(bands=["B04"]),
            f"{prefix}2": {"process_id": "reduce_dimension", "arguments": {
                "data": ref(f"{prefix}1"), "dimension": "t", "reducer": reducer("mean")}}}))

    assert g("a").root.hash == g("zz").root.hash


def test_aggregate_temporal_period_and_merge_cubes(engine, small_catalog):
    g = engine.parse(graph(
        a=load(bands=["B04"]),
        b=load(bands=["B08"]),
        m={"process_id": "merge_cubes", "arguments": {"cube1": ref("a"), "cube2": ref("b")}},
        p={"process_id": "aggregate_temporal_period", "arguments": {
            "data": ref("m"), "period": "month", "reducer": reducer("mean")}}))
    cube = engine.evaluate(g, VIEW)
    assert cube.bands == ("B04", "B08") and len(cube.times) == 1
    assert cube.times[0] == datetime(2020, 5, 1, tzinfo=UTC)
    _, stack = reference_stack(small_catalog, "TEST", VIEW, ["B04", "B08"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nodata pixels
        expected = np.nanmean(stack, axis=0)
    assert_allclose(cube.data[0], expected, rtol=1e-5, equal_nan=True)


def test_mask_and_rename_labels(engine, small_catalog):
    g = engine.parse(graph(
        a=load(bands=["B04", "B08"]),
        r={"process_id": "rename_labels", "arguments": {
            "data": ref("a"), "dimension": "bands", "target": ["red", "nir"]}},
        gt={"process_id": "apply", "arguments": {"data": ref("a"), "process": {
            "process_graph": {"g": {"process_id": "gt", "arguments": {
                "x": param("x"), "y": 1000}, "result": True}}}}},
        k={"process_id": "filter_bands", "arguments": {"data": ref("gt"),
                                                       "bands": ["B04"]}},
        m={"process_id": "mask", "arguments": {"data": ref("r"), "mask": ref("k")}}))
    cube = engine.evaluate(g, VIEW)
    assert cube.bands == ("red", "nir")
    _, stack = reference_stack(small_catalog, "TEST", VIEW, ["B04", "B08"])
    expected = np.where((stack[:, :1] > 1000), np.nan, stack)
    assert_allclose(cube.data, expected, equal_nan=True)


R = {"result": True}


@pytest.mark.parametrize("pg, code, where", [
    ({}, "ProcessGraphInvalid", "process_graph"),
    ({"a": {"process_id": "nope", "arguments": {}, **R}}, "ProcessUnsupported", "a"),
    ({"a": {"process_id": "load_collection", "arguments": {}, **R}},
     "ProcessArgumentRequired", "a.arguments.id"),
    ({"a": {"process_id": "load_collection", "arguments": {"id": "TEST", "zoom": 1}, **R}},
     "ProcessArgumentUnsupported", "a.arguments.zoom"),
    ({"a": {"process_id": "load_collection", "arguments": {"id": "NOPE"}, **R}},
     "CollectionNotFound", "a.arguments.id"),
    ({"a": {**load(), **R}, "b": {**load(), **R}}, "ProcessGraphInvalid", "process_graph"),
    ({"a": {**load()}}, "ProcessGraphInvalid", "process_graph"),
    ({"a": {"process_id": "ndvi", "arguments": {"data": ref("b")}, **R},
      "b": {"process_id": "ndvi", "arguments": {"data": ref("a")}}},
     "ProcessGraphInvalid", "a"),
    ({"a": {"process_id": "ndvi", "arguments": {"data": ref("zz")}, **R}},
     "ProcessGraphInvalid", "a.arguments.data"),
    ({"a": {"process_id": "load_collection", "arguments": {"id": param("cid")}, **R}},
     "ProcessParameterMissing", "a.arguments.id"),
    ({"l": load(), "a": {"process_id": "reduce_dimension", "arguments": {
        "data": ref("l"), "dimension": "t", "reducer": reducer("min", ignore_nodata=param(
            "x"))}, **R}}, "ProcessParameterMissing", "a.arguments.reducer.r.arguments."
                                                      "ignore_nodata"),
    ({"l": load(), "a": {"process_id": "reduce_dimension", "arguments": {
        "data": ref("l"), "dimension": "t", "reducer": {"min": 1}}, **R}},
     "ProcessGraphInvalid", "a.arguments.reducer"),
    ({"l": load(), "a": {"process_id": "reduce_dimension", "arguments": {
        "data": ref("l"), "dimension": "x", "reducer": reducer("min")}, **R}},
     "ProcessArgumentInvalid", "a.arguments.dimension"),
    ({"l": load(), "a": {"process_id": "reduce_dimension", "arguments": {
        "data": ref("l"), "dimension": "t", "reducer": reducer("min")}},
      "b": {"process_id": "reduce_dimension", "arguments": {
          "data": ref("a"), "dimension": "t", "reducer": reducer("max")}, **R}},
     "DimensionNotAvailable", "b.arguments.dimension"),
    ({"a": {**load(spatial_extent={"west": 1, "east": 0, "south": 0, "north": 1}), **R}},
     "ProcessArgumentInvalid", "a.arguments.spatial_extent"),
    ({"a": {**load(spatial_extent={"west": float("nan"), "east": 1, "south": 0,
                                   "north": 1}), **R}},
     "ProcessArgumentInvalid", "a.arguments.spatial_extent"),
    ({"a": {**load(temporal_extent=["2020-06-01", "2020-05-01"]), **R}},
     "ProcessArgumentInvalid", "a.arguments.temporal_extent"),
    ({"a": {**load(temporal_extent=["soon", None]), **R}},
     "ProcessArgumentInvalid", "a.arguments.temporal_extent"),
    ({"a": {**load(bands=["B99"]), **R}}, "BandNotFound", "a.arguments.bands"),
    ({"l": load(), "a": {"process_id": "ndvi", "arguments": {"data": ref("l"),
                                                              "red": "B04", "nir": "B99"},
                         **R}},
     "BandNotFound", "a.arguments.nir"),
    ({"a": {"process_id": "add", "arguments": {"x": 1, "y": 2}, **R}},
     "ProcessGraphInvalid", "process_graph"),
    ({"a": {"process_id": "load_collection", "namespace": "https://x.y/udp",
            "arguments": {"id": "TEST"}, **R}}, "ProcessUnsupported", "a"),
])
def test_invalid_graphs_name_the_node_and_argument(engine, pg, code, where):
    with pytest.raises(ProcessGraphError) as exc:
        engine.parse(pg)
    assert exc.value.code == code, exc.value.message
    assert exc.value.path == where, exc.value.message
    assert exc.value.status == 400


def test_graph_size_limits(small_catalog):
    engine = make_engine(small_catalog, max_graph_nodes=20,
                         max_graph_depth=10)
    nodes = {"n0": load()}
    for i in range(1, 30):
        nodes[f"n{i}"] = {"process_id": "apply", "arguments": {
            "data": ref(f"n{i - 1}"), "process": {"process_graph": {"x": {
                "process_id": "absolute", "arguments": {"x": param("x")}, **R}}}}}
    nodes["n29"]["result"] = True
    with pytest.raises(ProcessGraphError, match="limit"):
        engine.parse(nodes)


def test_aggregate_spatial_mean_per_polygon_and_date(engine, small_catalog):
    from rasterio.features import geometry_mask
    from rasterio.warp import transform_geom

    poly = {"type": "Polygon", "coordinates": [[
        [9.0012, 46.0012], [9.03, 46.0012], [9.03, 46.02], [9.0012, 46.02], [9.0012, 46.0012]]]}
    g = engine.parse(graph(
        a=load(bands=["B04"]),
        z={"process_id": "aggregate_spatial", "arguments": {
            "data": ref("a"), "geometries": {"type": "FeatureCollection", "features": [
                {"type": "Feature", "properties": {}, "geometry": poly}]},
            "reducer": reducer("mean")}}))
    assert not g.is_raster
    native = View("EPSG:32632", TEST_BOUNDS_32632, 512, 512)
    table = engine.evaluate(g, native)
    days, stack = reference_stack(small_catalog, "TEST", native, ["B04"])
    inside = ~geometry_mask([transform_geom("EPSG:4326", "EPSG:32632", poly)], (512, 512),
                            native.transform)
    assert 1000 < inside.sum() < 512 * 512
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = [np.nanmean(stack[t, 0][inside]) for t in range(len(days))]
    assert table.values.shape == (1, len(days), 1)
    assert_allclose(table.values[0, :, 0], expected, rtol=1e-5)


def test_aggregate_spatial_rejects_what_it_cannot_compute(engine):
    base = {"data": ref("a"), "geometries": {"type": "LineString", "coordinates": [
        [9, 46], [9.1, 46]]}, "reducer": reducer("mean")}
    with pytest.raises(ProcessGraphError, match="GeoJSON type 'LineString'"):
        engine.parse(graph(a=load(), z={"process_id": "aggregate_spatial",
                                        "arguments": base}))
    with pytest.raises(ProcessGraphError, match="single reducer"):
        engine.parse(graph(a=load(), z={"process_id": "aggregate_spatial", "arguments": {
            **base, "geometries": {"type": "Polygon", "coordinates": [[
                [9, 46], [9.1, 46], [9.1, 46.1], [9, 46]]]}, "reducer": reducer("sd")}}))


def test_ndvi_defaults_find_a_narrow_nir_band(demo_catalog):
    """The client's ndvi() sends no band names: "red" and "nir" are common names, and "nir"
    falls back to nir08 on the 20 m L2A product, whose only NIR band is B8A."""
    engine = make_engine(demo_catalog)
    g = engine.parse(graph(
        load={"process_id": "load_collection", "arguments": {"id": L2A_PRODUCT_ID}},
        nd={"process_id": "ndvi", "arguments": {"data": ref("load")}}))
    assert set(g.meta.source_bands) == {"B04", "B8A"}
