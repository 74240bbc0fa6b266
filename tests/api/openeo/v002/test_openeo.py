"""openEO REST routes through the test client: capabilities, data, processes, metrics and
``POST /execute`` (the issue's example on the demo catalog, checked against plain
rasterio + numpy)."""

from __future__ import annotations

import json
import re
import warnings
from datetime import UTC, datetime

import numpy as np
import pytest
import rasterio
from numpy.testing import assert_allclose
from rasterio.io import MemoryFile
from rasterio.warp import transform_bounds

from tests.support.core import bbox, call, daterange, leaf, ndvi, reference_stack, stac_items
from tileserver.datacube.view import View
from tileserver.demo import example_request

EXAMPLE = example_request()
BOUNDS = (652000.0, 5161000.0, 672000.0, 5181000.0)


def _ok_graph():
    return call("min_time", call("NDVI", bbox(leaf(), 500_100, 504_000, 5_099_000, 5_096_000),
                                 red="B04", nir="B08"))


# -- capabilities, data, processes ------------------------------------------------------


def test_capabilities(client):
    body = client.get("/").get_json()
    assert body["api_version"] == body["version"] == "0.0.2"
    endpoints = {e["path"]: set(e["methods"]) for e in body["endpoints"]}
    for path, method in [("/data", "GET"), ("/data/{product_id}", "GET"),
                         ("/processes", "GET"), ("/processes/{process_id}", "GET"),
                         ("/execute", "POST"), ("/capabilities/output_formats", "GET"),
                         ("/metrics", "GET")]:
        assert method in endpoints[path], path


def test_output_formats(client):
    body = client.get("/capabilities/output_formats").get_json()
    assert body["default"] == "GTiff"
    formats = body["formats"]
    assert {formats[f]["media_type"] for f in ("GTiff", "PNG", "JPEG")} == {
        "image/tiff", "image/png", "image/jpeg"}
    assert "jpeg" in formats["GTiff"]["parameters"]["compress"]


def test_data_list(client):
    body = client.get("/data").get_json()
    assert {p["product_id"] for p in body} == {"TEST", "FLOATS"}
    assert all(p["description"] for p in body)


def test_data_detail_matches_the_files(client, small_catalog):
    body = client.get("/data/TEST").get_json()
    assert body["product_id"] == "TEST"
    # extent: the union of the files' footprints, computed with rasterio
    lefts, bottoms, rights, tops = [], [], [], []
    for item in stac_items(small_catalog, "TEST"):
        for asset in item.assets.values():
            with rasterio.open(asset.get_absolute_href()) as src:
                b = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
            lefts.append(b[0]), bottoms.append(b[1]), rights.append(b[2]), tops.append(b[3])
    ext = body["extent"]
    assert ext["srs"] == "EPSG:4326"
    assert_allclose([ext["left"], ext["bottom"], ext["right"], ext["top"]],
                    [min(lefts), min(bottoms), max(rights), max(tops)], atol=1e-6)
    assert body["time"] == {"from": "2020-05-01T10:00:00Z", "to": "2020-05-21T10:00:00Z"}
    bands = {b["band_id"]: b for b in body["bands"]}
    assert list(bands) == ["B04", "B08", "B11"]
    assert bands["B04"] == {"band_id": "B04", "type": "uint16", "nodata": 0.0, "res_m": 10.0,
                            "wavelength_nm": 665, "name": "red"}
    assert bands["B11"]["res_m"] == 20.0 and bands["B08"]["wavelength_nm"] == 842
    floats = client.get("/data/FLOATS").get_json()["bands"][0]
    assert floats["type"] == "float32" and floats["nodata"] == "nan"
    assert (floats["scale"], floats["offset"]) == (0.5, 10.0)


def test_data_unknown_is_404_json(client):
    resp = client.get("/data/S2")
    assert resp.status_code == 404 and resp.is_json
    assert resp.get_json()["code"] == "NotFound" and "S2" in resp.get_json()["message"]


def test_processes(client):
    body = client.get("/processes").get_json()
    ids = {p["process_id"] for p in body}
    assert ids >= {"filter_bbox", "filter_daterange", "filter_bands", "NDVI", "min_time",
                   "max_time", "mean_time", "median_time", "count_time"}
    assert all(p["summary"] and p["description"] for p in body)
    fb = client.get("/processes/filter_bands").get_json()
    assert set(fb["args"]) == {"imagery", "bands"}
    assert "1-based" in fb["description"] and "8 means B08" in fb["description"]
    schemas = fb["args"]["bands"]["schema"]["oneOf"]
    assert {s["type"] for s in schemas} == {"string", "array", "integer"}
    bb = client.get("/processes/filter_bbox").get_json()
    assert bb["args"]["srs"]["required"] is False and bb["args"]["left"]["required"] is True
    dr = client.get("/processes/filter_daterange").get_json()
    assert "inclusive" in dr["description"]
    resp = client.get("/processes/NDWI")
    assert resp.status_code == 404 and resp.get_json()["code"] == "NotFound"


def test_metrics_is_prometheus_text(client):
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    text = resp.get_data(as_text=True)
    assert "# TYPE tileserver_source_pixels_read_total counter" in text
    assert "# TYPE tileserver_evaluation_seconds histogram" in text


# -- POST /execute on the small catalog --------------------------------------------------


def test_execute_small_lossless_matches_reference(client, small_catalog):
    resp = client.post("/execute", json={"process_graph": _ok_graph()})
    assert resp.status_code == 200 and resp.mimetype == "image/tiff"
    assert "Warning" not in resp.headers
    view = View("EPSG:32632", (500_100, 5_096_000, 504_000, 5_099_000), 390, 300)
    _, ref = reference_stack(small_catalog, "TEST", view, ["B04", "B08"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmin(ndvi(ref[:, 0], ref[:, 1]), axis=0)
    with MemoryFile(resp.data) as mem, mem.open() as src:
        assert src.crs.to_epsg() == 32632 and tuple(src.bounds) == view.bounds
        assert (src.width, src.height) == (390, 300)
        assert_allclose(src.read(1), expected, rtol=1e-6, atol=1e-6, equal_nan=True)


def test_execute_swapped_bbox_says_so(client):
    graph = call("min_time", call("NDVI", bbox(leaf(), 500_100, 504_000, 5_096_000, 5_099_000),
                                  red="B04", nir="B08"))
    resp = client.post("/execute", json={"process_graph": graph, "output": {"format": "PNG"}})
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    warning = resp.headers["Warning"]
    assert warning.startswith('299 tileserver "') and "swapping" in warning
    assert "process_graph.args.imagery.args.imagery" in warning


def _post(client, data, content_type="application/json"):
    return client.post("/execute", data=data, content_type=content_type)


@pytest.mark.parametrize("data, status, code, match", [
    ("", 400, "BadRequest", "needs a JSON body"),
    ("{not json", 400, "BadRequest", "not valid JSON"),
    ("[1, 2]", 400, "BadRequest", "must be a JSON object"),
    ('"text"', 400, "BadRequest", "must be a JSON object"),
    ("{}", 400, "BadRequest", "missing 'process_graph'"),
    ('{"process_graph": 5}', 400, "ProcessGraphInvalid", "expected a process node object"),
    ('{"process_graph": {"process_id": "NDWI"}}', 400, "ProcessUnsupported",
     "unknown process 'NDWI'"),
    (json.dumps({"process_graph": leaf("S2")}), 400, "ProductNotFound", "unknown product_id"),
    (json.dumps({"process_graph": call("min_time", leaf()), "output": {"format": "HDF5"}}),
     400, "FormatUnsupported", "unknown output format"),
    (json.dumps({"process_graph": call("min_time", leaf()),
                 "output": {"format": "GTiff", "compress": "deflate", "photometric": "YCBCR"}}),
     400, "FormatUnsupported", "YCBCR requires compress=jpeg"),
    (json.dumps({"process_graph": call("min_time", leaf()),
                 "output": {"format": "GTiff", "compress": "jpeg", "predictor": 2}}),
     400, "FormatUnsupported", "'predictor' needs"),
    (json.dumps({"process_graph": call("min_time", leaf()),
                 "output": {"format": "GTiff", "tiled": True, "blockxsize": 200}}),
     400, "FormatUnsupported", "multiple of 16"),
    (json.dumps({"process_graph": call("min_time", leaf()),
                 "output": {"format": "GTiff", "quality": 3}}),
     400, "FormatUnsupported", r"unknown GTiff option\(s\) \['quality'\]"),
    ("[" * 100_000 + "]" * 100_000, 400, "BadRequest", "not valid JSON"),
])
def test_execute_bad_input_is_400_json(client, data, status, code, match):
    resp = _post(client, data)
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["code"] == code
    assert re.search(match, body["message"]), body["message"]


def test_execute_graph_errors_carry_the_path(client):
    g = daterange(leaf(), "2020-05-01", "yesterday")
    resp = client.post("/execute", json={"process_graph": g})
    body = resp.get_json()
    assert resp.status_code == 400
    assert body["path"] == "process_graph.args.to"
    assert body["message"].startswith("process_graph.args.to: 'yesterday' is not an ISO 8601")


def test_execute_deep_graph_is_400(client):
    g = leaf()
    for _ in range(60):
        g = call("filter_bands", g, bands="B04")
    resp = client.post("/execute", json={"process_graph": g})
    assert resp.status_code == 400 and "deeper than the limit" in resp.get_json()["message"]


def test_execute_too_large_is_413_and_server_keeps_serving(make_app, small_catalog):
    app = make_app([small_catalog], max_output_pixels=10_000)
    c = app.test_client()
    resp = c.post("/execute", json={"process_graph": _ok_graph()})
    assert resp.status_code == 413 and "batch job" in resp.get_json()["message"]
    small = call("min_time", call("NDVI", bbox(leaf(), 500_100, 501_000, 5_099_000, 5_098_200),
                                  red="B04", nir="B08"))
    assert c.post("/execute", json={"process_graph": small}).status_code == 200


def test_wrong_method_and_route_are_json(client):
    resp = client.get("/execute")
    assert resp.status_code == 405 and resp.get_json()["code"] == "MethodNotAllowed"
    resp = client.get("/no/such/route")
    assert resp.status_code == 404 and resp.is_json


def test_server_keeps_serving_after_bad_input(client):
    for data in ("", "nope", "[]", '{"process_graph": []}', '{"process_graph": {}}'):
        assert _post(client, data).status_code == 400
    assert _post(client, "{}", content_type="text/plain").status_code == 400
    resp = client.post("/execute", json={"process_graph": _ok_graph(),
                                         "output": {"format": "JPEG"}})
    assert resp.status_code == 200 and resp.mimetype == "image/jpeg"
    assert client.get("/").status_code == 200


# -- POST /execute: the example on the demo catalog ------------------------------


@pytest.fixture(scope="module")
def demo_client(demo_catalog, tmp_path_factory):
    from tileserver.settings import load_settings
    from tileserver.web.app import create_app

    app = create_app(load_settings(home=str(tmp_path_factory.mktemp("home")),
                                   catalog=str(demo_catalog)))
    app.config["TESTING"] = True
    yield app.test_client()
    app.extensions["tileserver"].close()


@pytest.fixture(scope="module")
def demo_reference(demo_catalog):
    """min over January 2017 of NDVI(B04, B8A) on the example's bbox, from the COGs."""
    view = View("EPSG:32632", BOUNDS, 1000, 1000)
    days, stack = reference_stack(demo_catalog, "S2_L2A_T32TPS_20M", view, ["B04", "B8A"],
                                  datetime(2017, 1, 1, tzinfo=UTC),
                                  datetime(2017, 1, 31, 23, 59, 59, tzinfo=UTC))
    assert len(days) >= 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmin(ndvi(stack[:, 0], stack[:, 1]), axis=0)


def test_example_request_jpeg_ycbcr(demo_client, demo_reference):
    resp = demo_client.post("/execute", json=EXAMPLE)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "image/tiff"
    assert "swapping" in resp.headers["Warning"]
    with MemoryFile(resp.data) as mem, mem.open() as src:
        assert src.driver == "GTiff"
        assert src.profile["tiled"] is True
        assert src.compression.value == "JPEG" and src.photometric.value == "YCbCr"
        assert src.count == 3 and src.dtypes == ("uint8",) * 3
        assert src.crs.to_epsg() == 32632
        assert_allclose(tuple(src.bounds), BOUNDS)
        assert (src.width, src.height) == (1000, 1000) and src.res == (20.0, 20.0)
        rgb = src.read().astype(float)
        mask = src.dataset_mask()
    valid = np.isfinite(demo_reference)
    assert_allclose(mask > 0, valid)
    # the default NDVI style: RdYlGn over [-1, 1]; compare with matplotlib directly
    import matplotlib

    expected = matplotlib.colormaps["RdYlGn"]((np.nan_to_num(demo_reference) + 1) / 2)
    expected = (expected[..., :3] * 255).transpose(2, 0, 1)
    assert np.abs(rgb[:, valid] - expected[:, valid]).mean() < 8  # JPEG quality 80


def test_example_request_lossless_values(demo_client, demo_reference):
    body = {**EXAMPLE, "output": {"format": "GTiff", "compress": "deflate", "predictor": 3}}
    resp = demo_client.post("/execute", json=body)
    assert resp.status_code == 200 and resp.mimetype == "image/tiff"
    with MemoryFile(resp.data) as mem, mem.open() as src:
        assert src.dtypes == ("float32",) and np.isnan(src.nodata)
        assert src.crs.to_epsg() == 32632 and (src.width, src.height) == (1000, 1000)
        assert_allclose(tuple(src.bounds), BOUNDS)
        values = src.read(1)
    assert_allclose(values, demo_reference, rtol=1e-6, atol=1e-6, equal_nan=True)
    assert np.isfinite(values).mean() > 0.5


@pytest.mark.parametrize("fmt, media, mode", [("PNG", "image/png", "RGBA"),
                                              ("JPEG", "image/jpeg", "RGB")])
def test_example_request_png_jpeg(demo_client, demo_reference, fmt, media, mode):
    import io

    from PIL import Image

    resp = demo_client.post("/execute", json={**EXAMPLE, "output": {"format": fmt}})
    assert resp.status_code == 200 and resp.mimetype == media
    img = Image.open(io.BytesIO(resp.data))
    assert img.size == (1000, 1000) and img.mode == mode
    if fmt == "PNG":
        alpha = np.asarray(img)[..., 3]
        assert ((alpha > 0) == np.isfinite(demo_reference)).all()


def test_mutated_graphs_never_500(client):
    """Random mutations of a valid graph: each answer is a 200 or a 4xx JSON error."""
    import copy
    import random

    rng = random.Random(20170101)
    values = [None, True, 0, -1, 1e308, 1.5, 2**70, "", "x", "EPSG:4326", "EPSG:3857",
              "EPSG:32633", "2020-05-01", "2020-13-01", "2020-05-01T10:00:00+05:00", [], [1],
              ["B04"], ["B04", "B04"], {}, {"product_id": "TEST"}, {"process_id": "min_time"},
              "B04", "B11", 3, 9.0, 46.0, 500_100, 5_099_000, "+proj=longlat", "🙂"]
    keys = ["left", "right", "top", "bottom", "srs", "from", "to", "bands", "red", "nir"]
    processes = ["filter_bbox", "filter_daterange", "filter_bands", "NDVI", "min_time",
                 "count_time", "median_time"]
    base = call("min_time", call("NDVI", daterange(
        bbox(leaf(), 500_100, 502_000, 5_099_000, 5_097_000), "2020-05-01", "2020-05-31"),
        red="B04", nir="B08"))

    def nodes(g, acc):
        if isinstance(g, dict):
            acc.append(g)
            args = g.get("args")
            for v in args.values() if isinstance(args, dict) else ():
                nodes(v, acc)
        return acc

    statuses = []
    for _ in range(150):
        g = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            node = rng.choice(nodes(g, []))
            r = rng.random()
            if r < 0.45 and isinstance(node.get("args"), dict):
                node["args"][rng.choice(keys)] = rng.choice(values)
            elif r < 0.65 and "process_id" in node:
                node["process_id"] = rng.choice(processes)
            elif r < 0.8 and isinstance(node.get("args"), dict) and node["args"]:
                node["args"].pop(rng.choice(list(node["args"])))
            elif node:
                node.pop(rng.choice(list(node)))
        output = rng.choice([None, {"format": "PNG"}, {"format": "GTiff", "compress": "lzw"}])
        resp = client.post("/execute", json={"process_graph": g, "output": output})
        statuses.append(resp.status_code)
        assert resp.status_code == 200 or 400 <= resp.status_code < 500, (
            resp.status_code, resp.get_data(as_text=True)[:300], g)
        if resp.status_code != 200:
            assert resp.is_json and resp.get_json()["message"]
    assert statuses.count(200) >= 5 and len(set(statuses)) >= 2


def _counter(client, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not in /metrics")


def test_execute_small_bbox_of_a_large_scene_reads_little(demo_client):
    """A 2.56 km bbox of the 56 x 31 km L1C scene: the /metrics counter of source pixels
    grows by about the view's pixels x bands x dates, not by the scene's."""
    graph = call("NDVI", bbox(leaf("Sentinel2-L1C"), 600_000, 602_560, 5_335_560, 5_333_000,
                              "EPSG:32633"), red="B04", nir="B08")
    before = _counter(demo_client, "tileserver_source_pixels_read_total")
    resp = demo_client.post("/execute", json={"process_graph": graph})
    assert resp.status_code == 200
    read = _counter(demo_client, "tileserver_source_pixels_read_total") - before
    with MemoryFile(resp.data) as mem, mem.open() as src:
        assert (src.width, src.height) == (256, 256)
        dates = src.count  # one band per date
    assert dates >= 3
    needed = 256 * 256 * 2 * dates
    assert needed <= read <= 1.2 * needed, read / needed
