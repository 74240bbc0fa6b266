"""STAC API catalogs against a real pgSTAC served by stac-fastapi-pgstac, with the COGs
read over HTTP by GDAL's /vsicurl/ from a server that honours Range requests: the same
products and the same values as the static catalog with local files, searches cached and
bounded, bad sources skipped or answered 502/504."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import morecantile
import numpy as np
import pytest
import rasterio
from numpy.testing import assert_array_equal
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from shapely.geometry import box, mapping

from tests.support import continent
from tests.support.stac import deployment
from tests.support.wmts import create_job, create_service
from tileserver import metrics
from tileserver.cache.memory import NodeCache
from tileserver.data.catalog import Catalog
from tileserver.data.stac_api import ApiOptions, snap_bbox
from tileserver.datacube.view import View
from tileserver.demo import example_graph
from tileserver.engine.evaluator import Engine

GOOD = (10.0, 50.0)  # west, north of the EXTRAS file
SECRET = "sv=2024&sig=TOPSECRET"
#: A z13 tile inside the bbox of the example graph (EPSG:32632 652000..672000 E,
#: 5161000..5181000 N)
TILE = morecantile.tms.get("WebMercatorQuad").tile(
    *Transformer.from_crs(32632, 4326, always_xy=True).transform(660000, 5170000), 13)


def api_options(**changes) -> ApiOptions:
    """The STAC API options of the default settings, with ``changes``."""
    return ApiOptions.from_settings(None, **changes)


def _extras(base_url, directory):
    """Collections EXTRAS (a good item, a 404 href, an item without band assets), SLOW and
    FAILING (their host is made slow / failing by the tests); the query string of their
    hrefs stands for a signed URL's credentials."""
    west, north = GOOD
    data = (np.arange(100 * 100).reshape(100, 100) % 1000 + 1).astype("uint16")
    profile = {"driver": "COG", "width": 100, "height": 100, "count": 1, "dtype": "uint16",
               "nodata": 0, "crs": "EPSG:4326",
               "transform": from_origin(west, north, 0.001, 0.001)}
    for sub in ("", "slow/", "fail/"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
        with rasterio.open(directory / sub / "good.tif", "w", **profile) as dst:
            dst.write(data, 1)
    geom = box(west, north - 0.1, west + 0.1, north)

    def item(cid, iid, day, assets):
        return {"type": "Feature", "stac_version": "1.0.0", "id": iid, "collection": cid,
                "bbox": list(geom.bounds), "geometry": mapping(geom),
                "properties": {"datetime": f"2021-01-0{day}T10:00:00Z", "proj:epsg": 4326},
                "assets": assets, "links": []}

    def band(href):
        return {"B1": {"href": href, "type": "image/tiff; application=geotiff",
                       "roles": ["data"]}}

    def col(cid):
        return {"type": "Collection", "stac_version": "1.0.0", "id": cid, "description": cid,
                "license": "CC0-1.0", "links": [],
                "extent": {"spatial": {"bbox": [list(geom.bounds)]},
                           "temporal": {"interval": [["2021-01-01T00:00:00Z",
                                                      "2021-01-31T00:00:00Z"]]}},
                "item_assets": {"B1": {"type": "image/tiff; application=geotiff",
                                       "roles": ["data"], "raster:bands": [
                                           {"data_type": "uint16", "nodata": 0,
                                            "spatial_resolution": 111.32}]}}}

    base = f"{base_url}/extra"
    items = [
        item("EXTRAS", "good", 1, band(f"{base}/good.tif")),
        item("EXTRAS", "broken", 2, band(f"{base}/missing.tif")),
        item("EXTRAS", "noassets", 3, {"thumbnail": {"href": f"{base}/x.png",
                                                     "type": "image/png",
                                                     "roles": ["thumbnail"]}}),
        item("SLOW", "slow", 1, band(f"{base}/slow/good.tif?{SECRET}")),
        item("FAILING", "failing", 1, band(f"{base}/fail/good.tif?{SECRET}")),
    ]
    return [col("EXTRAS"), col("SLOW"), col("FAILING")], items


@pytest.fixture(scope="module")
def stac(pg_cluster, demo_catalog, tmp_path_factory):
    with deployment(pg_cluster, demo_catalog, tmp_path_factory.mktemp("stac"),
                    _extras) as dep:
        yield dep


@pytest.fixture(scope="module")
def api_catalog(stac):
    return Catalog.load([stac.url], api_options(page_size=50, max_pages=20))


@pytest.fixture(scope="module")
def static_catalog(demo_catalog):
    return Catalog.load([str(demo_catalog)])


def _counter(metric, *labels) -> float:
    return (metric.labels(*labels) if labels else metric)._value.get()


# -- products --------------------------------------------------------------------------


def test_the_api_products_are_the_static_products(api_catalog, static_catalog):
    assert {"CONTINENT", "EXTRAS", "SLOW", "FAILING"} < set(api_catalog.products)
    for static in static_catalog:
        api = api_catalog.get(static.id)
        assert api.band_ids() == static.band_ids()
        assert api.bands == static.bands  # dtype, nodata, resolution, wavelength, scale
        assert api.crs == static.crs
        assert api.time_range == static.time_range
        np.testing.assert_allclose(api.bbox, static.bbox, atol=1e-6)
        everything = api.items_for(static.bbox, static.time_range)
        assert [i.id for i in everything] == [i.id for i in static.items]
        assert [i.datetime for i in everything] == [i.datetime for i in static.items]
        assert all(a.assets[b].startswith("http://127.0.0.1:") for a in everything
                   for b in a.assets)


def test_selected_collections_only(stac):
    cat = Catalog.load([f"{stac.url}#collections=Sentinel2-L1C,CONTINENT"])
    assert sorted(cat.products) == ["CONTINENT", "Sentinel2-L1C"]


def test_same_graph_same_values_from_the_api_and_http_files(api_catalog, static_catalog):
    graph = example_graph()
    results = []
    for cat in (api_catalog, static_catalog):
        engine = Engine(cat, NodeCache(64 << 20))
        g = engine.parse(graph)
        view = engine.native_view(g)
        view = View(view.crs, view.bounds, view.width // 4, view.height // 4)
        results.append(np.asarray(engine.evaluate(g, view).data))
    assert np.isfinite(results[0]).sum() > 1000
    assert_array_equal(results[0], results[1])


def test_tiles_through_the_server_are_identical(make_app, stac, demo_catalog):
    """A WMTS GeoTIFF tile of the same lazy job from both catalogs."""
    tiles = []
    for catalog in ([stac.url], [demo_catalog]):
        client = make_app(catalog, stac_page_size=50).test_client()
        job = create_job(client, example_graph())
        svc = create_service(client, job, "wmts")
        base = svc["service_url"].replace("http://localhost", "")
        resp = client.get(f"{base}/1.0.0/{job}/default/GoogleMapsCompatible/"
                          f"{TILE.z}/{TILE.y}/{TILE.x}.tif")
        assert resp.status_code == 200, resp.data[:300]
        with MemoryFile(resp.data) as mem, mem.open() as ds:
            tiles.append(ds.read())
    assert np.isfinite(tiles[0]).sum() > 1000
    assert_array_equal(tiles[0], tiles[1])


# -- searches --------------------------------------------------------------------------


def test_neighbouring_windows_share_one_cached_search(stac):
    cat = Catalog.load([f"{stac.url}#collections=CONTINENT"], api_options(page_size=200))
    product = cat.get("CONTINENT")
    t = (datetime(2020, 3, 1, tzinfo=UTC), datetime(2020, 4, 30, tzinfo=UTC))
    west, south, east, north = continent.cell_bbox(3, 4)
    tiles = [(west + dx * 0.1, south + dy * 0.1, west + dx * 0.1 + 0.1, south + dy * 0.1 + 0.1)
             for dx in range(2) for dy in range(2)]
    assert len({snap_bbox(b) for b in tiles}) == 1
    before = _counter(metrics.STAC_SEARCHES, "CONTINENT")
    hits = _counter(metrics.STAC_SEARCH_CACHE_HITS, "CONTINENT")
    found = [product.items_for(b, t) for b in tiles]
    assert _counter(metrics.STAC_SEARCHES, "CONTINENT") - before == 1
    assert _counter(metrics.STAC_SEARCH_CACHE_HITS, "CONTINENT") - hits == 3
    dates = [continent.when(k) for k in range(continent.DATES)]
    expected = [f"c34-{k:03d}" for k, d in enumerate(dates) if t[0] <= d <= t[1]]
    assert all([i.id for i in f] == expected for f in found)


def map_view(centre: tuple[float, float]) -> list:
    """The 24 tiles of a map view around ``centre`` (lon, lat): 4 x 3 tiles at zoom 15, then
    zoomed in, 4 x 3 tiles at zoom 16."""
    tms = morecantile.tms.get("WebMercatorQuad")
    out = []
    for z in (15, 16):
        c = tms.tile(*centre, z)
        out += [morecantile.Tile(c.x + dx, c.y + dy, z) for dy in (-1, 0, 1)
                for dx in (-2, -1, 0, 1)]
    return out


def test_panning_a_map_costs_few_searches_and_the_static_values(stac, static_catalog):
    """24 distinct tiles of a map view at zoom 15-16 of the example graph: at most 0.3
    searches per tile (one search of a larger snapped area serves the neighbouring tiles
    and both zoom levels), and every tile has the static catalog's values."""
    tms = morecantile.tms.get("WebMercatorQuad")
    centre = Transformer.from_crs(32632, 4326, always_xy=True).transform(662000, 5171000)
    tiles = map_view(centre)
    assert len(set(tiles)) == 24
    cat = Catalog.load([f"{stac.url}#collections=S2_L2A_T32TPS_20M"], api_options(page_size=50))
    engines = [Engine(c, NodeCache(64 << 20)) for c in (cat, static_catalog)]
    graphs = [e.parse(example_graph()) for e in engines]
    before = _counter(metrics.STAC_SEARCHES, "S2_L2A_T32TPS_20M")
    for t in tiles:
        b = tms.xy_bounds(t)
        view = View(CRS.from_epsg(3857), (b.left, b.bottom, b.right, b.top), 256, 256)
        got, expected = (np.asarray(e.evaluate(g, view, purpose="tile").data)
                         for e, g in zip(engines, graphs, strict=True))
        assert np.isfinite(expected).sum() > 1000
        assert_array_equal(got, expected)
    searches = _counter(metrics.STAC_SEARCHES, "S2_L2A_T32TPS_20M") - before
    print(f"panning: {searches:.0f} searches for {len(tiles)} tiles")
    assert searches / len(tiles) <= 0.3


def test_searches_over_ten_thousand_items_match_a_brute_force_filter(stac):
    cat = Catalog.load([f"{stac.url}#collections=CONTINENT"],
                       api_options(page_size=500, max_pages=50))
    product = cat.get("CONTINENT")
    everything = list(continent.items("x"))
    assert len(everything) == 10_000
    for bbox, t in [((0.0, 40.0, 12.0, 50.0), (datetime(2020, 6, 1, tzinfo=UTC),
                                               datetime(2020, 7, 15, tzinfo=UTC))),
                    ((-9.0, 36.0, -8.0, 37.0), None),
                    ((20.0, 60.0, 40.0, 70.0), (datetime(2020, 10, 1, tzinfo=UTC),
                                                datetime(2021, 1, 1, tzinfo=UTC)))]:
        expected = sorted(
            (it["properties"]["datetime"], it["id"]) for it in everything
            if box(*it["bbox"]).intersects(box(*bbox)) and (t is None or t[0] <= datetime.fromisoformat(it["properties"]["datetime"].replace("Z", "+00:00")) <= t[1]))  # noqa: E501
        got = product.items_for(bbox, t)
        assert [i.id for i in got] == [e[1] for e in expected]
        assert len(got) > 0


def test_an_api_that_pages_forever_is_bounded(stac, caplog):
    cat = Catalog.load([f"{stac.url}#collections=CONTINENT"], api_options(page_size=10,
                                                                         max_pages=3))
    before = _counter(metrics.STAC_SEARCH_TRUNCATED, "CONTINENT")
    with caplog.at_level(logging.WARNING, logger="tileserver"):
        got = cat.get("CONTINENT").items_for((-10.0, 30.0, 40.0, 70.0), None)
    assert len(got) == 30
    assert _counter(metrics.STAC_SEARCH_TRUNCATED, "CONTINENT") - before == 1
    assert "stac_max_pages" in caplog.text


def test_metrics_count_searches_and_their_latency(make_app, stac):
    client = make_app([f"{stac.url}#collections=CONTINENT"]).test_client()
    graph = {"process_id": "min_time", "args": {"imagery": {
        "process_id": "NDVI", "args": {"imagery": {"process_id": "filter_bbox", "args": {
            "imagery": {"product_id": "CONTINENT"}, "left": 3.0, "right": 3.5,
            "bottom": 48.0, "top": 48.5, "srs": "EPSG:4326"}}, "red": "B04", "nir": "B08"}}}}
    resp = client.post("/execute", json={"process_graph": graph,
                                         "output": {"format": "GTiff"}})
    assert resp.status_code == 200, resp.data[:300]
    with MemoryFile(resp.data) as mem, mem.open() as ds:
        values = ds.read(1)
    i, j = 3, 4  # the cell at 3..3.5 E, 48..48.5 N
    b4 = 1000 + 100 * i + 10 * j + np.add.outer(np.arange(64), np.arange(64))
    expected = ((b4 + 3000) - b4) / ((b4 + 3000) + b4)
    expected[:2, :2] = np.nan
    np.testing.assert_allclose(values, expected.astype("float32"), rtol=1e-6)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'tileserver_stac_searches_total{collection="CONTINENT"}' in text
    assert 'tileserver_stac_search_seconds_count{collection="CONTINENT"}' in text


# -- bad sources -----------------------------------------------------------------------


def test_an_unreachable_api_is_logged_and_the_other_catalogs_served(
        make_app, demo_catalog, caplog):
    from tests.support.pg import free_port

    dead = f"http://127.0.0.1:{free_port()}/stac"
    with caplog.at_level(logging.ERROR, logger="tileserver"):
        app = make_app([dead, demo_catalog], remote_retries=0)
        data = app.test_client().get("/data")
    assert data.status_code == 200
    assert {"Sentinel2-L1C", "S2_L2A_T32TPS_20M"} == {p["product_id"] for p in data.json}
    assert "cannot be read" in caplog.text and "127.0.0.1" in caplog.text


def _execute(client, product):
    west, north = GOOD
    graph = {"process_id": "filter_bbox", "args": {
        "imagery": {"product_id": product}, "left": west, "right": west + 0.1,
        "bottom": north - 0.1, "top": north, "srs": "EPSG:4326"}}
    return client.post("/execute", json={"process_graph": graph,
                                         "output": {"format": "GTiff"}})


def test_items_with_broken_hrefs_or_no_assets_are_skipped(make_app, stac, caplog):
    client = make_app([f"{stac.url}#collections=EXTRAS"]).test_client()
    skipped = _counter(metrics.SKIPPED_SOURCES)
    with caplog.at_level(logging.WARNING, logger="tileserver"):
        resp = _execute(client, "EXTRAS")
    assert resp.status_code == 200, resp.data[:300]
    with MemoryFile(resp.data) as mem, mem.open() as ds:
        # 'noassets' has no band: not an acquisition; 'broken' is one, without pixels
        assert ds.count == 2
        assert np.isfinite(ds.read(1)).all() and np.isnan(ds.read(2)).all()
    assert _counter(metrics.SKIPPED_SOURCES) - skipped == 1
    assert "item broken skipped" in caplog.text and "HTTP 404" in caplog.text
    assert "item noassets has no band assets: skipped" in caplog.text


def test_a_slow_source_is_a_504_naming_its_host(make_app, stac):
    stac.files.delays["/extra/slow"] = 4
    try:
        client = make_app([f"{stac.url}#collections=SLOW"], remote_timeout=1,
                          remote_retries=0).test_client()
        resp = _execute(client, "SLOW")
    finally:
        stac.files.delays.clear()
    assert resp.status_code == 504, resp.data[:300]
    body = json.loads(resp.data)
    assert body["code"] == "UpstreamTimeout"
    assert stac.files.url.removeprefix("http://") in body["message"]
    assert "TOPSECRET" not in body["message"]


def test_a_failing_source_is_a_502_naming_its_host(make_app, stac):
    stac.files.statuses["/extra/fail"] = 500
    try:
        client = make_app([f"{stac.url}#collections=FAILING"], remote_retries=0
                          ).test_client()
        resp = _execute(client, "FAILING")
    finally:
        stac.files.statuses.clear()
    assert resp.status_code == 502, resp.data[:300]
    body = json.loads(resp.data)
    assert body["code"] == "UpstreamError" and "HTTP 500" in body["message"]
    assert stac.files.url.removeprefix("http://") in body["message"]
    assert "TOPSECRET" not in body["message"]


def test_tiles_cost_range_requests_not_whole_files(api_catalog, stac):
    """Windows of a remote COG are read with Range requests (never a whole file)."""
    engine = Engine(api_catalog, NodeCache(0))
    g = engine.parse(example_graph())
    view = engine.native_view(g)
    x0, y0, x1, y1 = view.bounds
    small = View(view.crs, (x0, y1 - 2560, x0 + 2560, y1), 256, 256)
    stac.files.reset()
    engine.evaluate(g, small)
    assert stac.files.ranges > 0
    assert stac.files.total("GET") <= stac.files.ranges


def test_the_api_items_carry_the_files_grids(api_catalog, static_catalog):
    """``proj:transform``/``proj:shape`` of the API's items are the static catalog's, and a
    graph over the whole collection is on the files' own grid in both."""
    static = static_catalog.get("Sentinel2-L1C").items_for(None, None)
    api = api_catalog.get("Sentinel2-L1C").items_for(None, None)
    assert all(i.grids for i in api)
    assert [i.grids for i in api] == [i.grids for i in static]
    graph = {"load": {"process_id": "load_collection", "arguments": {
        "id": "Sentinel2-L1C", "spatial_extent": None, "temporal_extent": None,
        "bands": ["B04", "B08"]}, "result": True}}
    views = []
    for cat in (api_catalog, static_catalog):
        engine = Engine(cat, NodeCache(0))
        views.append(engine.native_view(engine.parse(graph)))
    assert views[0] == views[1] and views[0].transform == views[1].transform
    with rasterio.open(static[0].assets["B04"]) as src:
        assert views[1].crs == src.crs and views[1].res == src.res
        col = (src.transform.c - views[1].transform.c) / src.res[0]
        row = (views[1].transform.f - src.transform.f) / src.res[1]
        assert col == round(col) and row == round(row)  # the files' pixels
