"""The cache tiers end to end: real gunicorn workers sharing the disk tier, a real Redis
(also one that is killed mid-run), corrupted entries, a cache directory deleted mid-run,
and answers that change with the job, the service and the catalog."""

from __future__ import annotations

import shutil
from pathlib import Path

import diskcache
import morecantile
import numpy as np
import pytest
import rasterio
import requests
from pyproj import Transformer
from rasterio.io import MemoryFile

from tests.support.cache import redis_server, single_zone_catalog
from tests.support.hardening import BBOX, ndvi_graph
from tests.support.load import serve
from tests.support.synthetic import make_catalog

HEADER = "X-Tileserver-Cache"


def _tiles(zooms=(12, 13)) -> list[tuple[int, int, int]]:
    to_wgs84 = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    west, south = to_wgs84.transform(BBOX["left"], BBOX["bottom"])
    east, north = to_wgs84.transform(BBOX["right"], BBOX["top"])
    tms = morecantile.tms.get("WebMercatorQuad")
    return [(t.z, t.x, t.y) for z in zooms for t in tms.tiles(west, south, east, north, [z])]


def _xyz_service(base: str, graph: dict | None = None) -> str:
    s = requests.Session()
    job = s.post(f"{base}/jobs", json={"process_graph": graph or ndvi_graph()}, timeout=60)
    job.raise_for_status()
    resp = s.post(f"{base}/services", json={"job_id": job.json()["job_id"], "type": "xyz"},
                  timeout=60)
    resp.raise_for_status()
    return resp.json()["service_url"]


def _pass(url: str, tiles) -> dict:
    """Every tile once, each on a fresh connection (requests spread over the workers)."""
    out = {}
    for z, x, y in tiles:
        resp = requests.get(url.replace("{z}", str(z)).replace("{x}", str(x))
                            .replace("{y}", str(y)), timeout=120,
                            headers={"Connection": "close"})
        assert resp.status_code == 200, resp.text[:300]
        assert resp.headers["Content-Type"] == "image/png"
        out[(z, x, y)] = (resp.content, resp.headers["ETag"], resp.headers.get(HEADER))
    return out


def _sources(answers: dict) -> set:
    return {a[2] for a in answers.values()}


def _same_bytes(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k][0] == b[k][0], k
        assert a[k][1] == b[k][1], k  # the ETag does not depend on the process


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return make_catalog(tmp_path_factory.mktemp("tiercat"))


@pytest.mark.slow
def test_two_gunicorn_workers_share_the_disk_tier(tmp_path, catalog):
    home = tmp_path / "home"
    home.mkdir()
    tiles = _tiles()
    # no per-process LRU: every repeated answer must come from the shared disk tier
    with serve(home, catalog, cache_bytes=0, workers=2) as (base, pids):
        url = _xyz_service(base)
        first = _pass(url, tiles)
        assert _sources(first) == {"computed"}
        second = _pass(url, tiles)
        assert _sources(second) == {"disk"}
        _same_bytes(first, second)

        # corrupt every stored entry: truncated values, bytes of another entry
        cache = diskcache.Cache(str(home / "cache"))
        keys = list(cache.iterkeys())
        assert keys
        values = [cache[k] for k in keys]
        for i, k in enumerate(keys):
            cache[k] = values[i][: len(values[i]) // 2] if i % 2 else values[(i + 1) % len(keys)]
        cache.close()
        third = _pass(url, tiles)
        assert _sources(third) == {"computed"}
        _same_bytes(first, third)
        assert _sources(_pass(url, tiles)) == {"disk"}  # stored again

        # the cache directory disappears mid-run: answers are computed, then shared again
        shutil.rmtree(home / "cache")
        fourth = _pass(url, tiles)
        assert _sources(fourth) <= {"computed", "disk"}
        _same_bytes(first, fourth)
        assert _sources(_pass(url, tiles)) == {"disk"}
        metrics = requests.get(f"{base}/metrics", timeout=30).text
        assert 'tileserver_cache_tier_hits_total{tier="disk"}' in metrics
        assert 'tileserver_cache_tier_bytes{tier="disk"}' in metrics
        assert "tileserver_cache_shared_seconds_bucket" in metrics
    log = (home.parent / next(p.name for p in home.parent.glob("serve-*.log"))).read_text()
    assert "Traceback" not in log


@pytest.mark.slow
def test_redis_tier_shared_by_workers_and_a_redis_killed_mid_run(tmp_path, catalog):
    home = tmp_path / "home"
    home.mkdir()
    tiles = _tiles()
    with redis_server(tmp_path / "redis") as (redis_url, redis_proc), \
            serve(home, catalog, cache_bytes=0, workers=2,
                  TILESERVER_CACHE_URL=redis_url) as (base, pids):
        url = _xyz_service(base)
        first = _pass(url, tiles)
        assert _sources(first) == {"computed"}
        second = _pass(url, tiles)
        assert _sources(second) == {"redis"}
        _same_bytes(first, second)
        assert not (home / "cache").exists()  # Redis replaces the disk tier
        redis_proc.kill()
        redis_proc.wait()
        third = _pass(url, tiles)  # no error, the same answers, computed
        assert _sources(third) == {"computed"}
        _same_bytes(first, third)
        # /metrics adds up both workers (whichever answers): the failed gets of the third
        # pass are counted, whichever worker served them
        counted = 'tileserver_cache_shared_errors_total{op="get",tier="redis"} '
        lines = requests.get(f"{base}/metrics", timeout=30).text.splitlines()
        assert [float(line[len(counted):]) >= 1 for line in lines
                if line.startswith(counted)] == [True]
    log = next(home.parent.glob("serve-*.log")).read_text()
    assert "Traceback" not in log
    assert log.count("failed (") <= 2  # logged once per worker process


# -- answers follow the job, the service and the catalog (in-process apps) --------------


def _tile_url(client, graph, service_args=None) -> tuple[str, str, str]:
    job_id = client.post("/jobs", json={"process_graph": graph}).get_json()["job_id"]
    body = {"job_id": job_id, "type": "xyz"}
    if service_args:
        body["args"] = service_args
    service = client.post("/services", json=body).get_json()
    z, x, y = _tiles((13,))[0]
    path = "/" + service["service_url"].split("/", 3)[3]
    return job_id, service["service_id"], path.replace("{z}", str(z)).replace(
        "{x}", str(x)).replace("{y}", str(y))


def _get(client, path):
    resp = client.get(path)
    assert resp.status_code == 200, resp.data[:300]
    return resp


def test_patched_job_and_service_do_not_serve_stale_bytes(make_app, catalog):
    app = make_app([catalog])
    fresh = make_app([catalog], cache_url="none", cache_bytes=0).test_client()
    client = app.test_client()
    job_id, service_id, path = _tile_url(client, ndvi_graph())
    before = _get(client, path)
    assert _get(client, path).headers[HEADER] == "memory"
    # PATCH the job's graph: new bytes, those of a fresh computation
    assert client.patch(f"/jobs/{job_id}", json={
        "process_graph": ndvi_graph(reduce="max_time")}).status_code in (200, 204)
    after = _get(client, path)
    assert after.headers[HEADER] == "computed"
    assert after.data != before.data and after.headers["ETag"] != before.headers["ETag"]
    _, _, ref_path = _tile_url(fresh, ndvi_graph(reduce="max_time"))
    assert _get(fresh, ref_path).data == after.data
    # PATCH the service's style
    assert client.patch(f"/services/{service_id}", json={
        "args": {"colormap": "magma", "range": [0, 1]}}).status_code in (200, 204)
    styled = _get(client, path)
    assert styled.data != after.data and styled.headers[HEADER] == "computed"
    # a deleted service answers 404 although its tiles are cached
    assert client.delete(f"/services/{service_id}").status_code in (200, 204)
    assert client.get(path).status_code == 404


def test_changed_catalog_file_does_not_serve_stale_bytes(make_app, tmp_path):
    catalog = make_catalog(tmp_path / "cat")
    app = make_app([catalog])
    client = app.test_client()
    # the 10 m grid of the bbox at full resolution: a GeoTIFF tile of values from WCS
    job_id = client.post("/jobs", json={"process_graph": ndvi_graph()}).get_json()["job_id"]
    wcs = client.post("/services", json={"job_id": job_id, "type": "wcs"}).get_json()
    path = "/" + wcs["service_url"].split("/", 3)[3]
    query = {"SERVICE": "WCS", "VERSION": "2.0.1", "REQUEST": "GetCoverage",
             "COVERAGEID": f"job_{job_id}", "FORMAT": "image/tiff"}
    before = client.get(path, query_string=query)
    assert before.status_code == 200
    assert client.get(path, query_string=query).headers[HEADER] == "memory"
    assert before.headers["Cache-Control"] == "public, max-age=60"
    assert client.get(path, query_string=query, headers={
        "If-None-Match": before.headers["ETag"]}).status_code == 304
    band = catalog.parent / "TEST" / "test_0" / "B04.tif"
    with rasterio.open(band, "r+") as dst:
        dst.write((dst.read(1) // 3).astype("uint16"), 1)
    after = client.get(path, query_string=query)
    assert after.headers[HEADER] == "computed"
    assert after.headers["ETag"] != before.headers["ETag"]
    assert client.get(path, query_string=query, headers={  # the old ETag is stale now
        "If-None-Match": before.headers["ETag"]}).status_code == 200
    fresh = make_app([catalog], cache_url="none", cache_bytes=0).test_client()
    job2 = fresh.post("/jobs", json={"process_graph": ndvi_graph()}).get_json()["job_id"]
    wcs2 = fresh.post("/services", json={"job_id": job2, "type": "wcs"}).get_json()
    ref = fresh.get("/" + wcs2["service_url"].split("/", 3)[3],
                    query_string={**query, "COVERAGEID": f"job_{job2}"})
    with MemoryFile(after.data) as a, MemoryFile(ref.data) as r, MemoryFile(before.data) as b:
        values, reference = a.open().read(), r.open().read()
        np.testing.assert_array_equal(values, reference)
        assert not np.array_equal(values, b.open().read(), equal_nan=True)


# -- finished jobs serve their stored result ----------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """A real LocalCluster (threads in this process) for the batch jobs of this module."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cl:
        yield cl


def _warped(result_dir: Path, when: str, z: int, x: int, y: int) -> np.ndarray:
    from rasterio.warp import Resampling, reproject

    name = f"result_{when.strip('/')}.tif" if when else "result.tif"
    b = morecantile.tms.get("WebMercatorQuad").xy_bounds(x, y, z)
    out = np.full((1, 256, 256), np.nan, np.float32)
    with rasterio.open(result_dir / name) as src:
        reproject(rasterio.band(src, 1), out[0], dst_crs="EPSG:3857",
                  dst_transform=rasterio.transform.from_bounds(*b, 256, 256),
                  dst_nodata=np.nan, resampling=Resampling.nearest)
    return out


def _values(data: bytes) -> np.ndarray:
    with MemoryFile(data) as mem, mem.open() as src:
        return src.read()


@pytest.fixture(scope="module")
def one_zone(tmp_path_factory) -> Path:
    return single_zone_catalog(tmp_path_factory.mktemp("onezone"))


@pytest.mark.parametrize("reduce", ["min_time", None])
def test_finished_job_tiles_and_coverages_read_the_stored_result(tmp_path, one_zone, cluster,
                                                                 reduce):
    # sources on the result's grid: the stored result holds exactly the lazy path's values
    catalog = one_zone
    from tests.support.batch import batch_settings, create_job, ndvi_graph, status_is, wait_job
    from tileserver.web.app import create_app

    settings = batch_settings(tmp_path / "home", [catalog], cluster.scheduler_address)
    app = create_app(settings)
    try:
        client = app.test_client()
        graph = ndvi_graph(reduce)
        lazy_id = create_job(client, graph)  # the same graph, never queued: the lazy path
        job_id = create_job(client, graph)
        assert client.patch(f"/jobs/{job_id}/queue").status_code == 202
        job = wait_job(client, job_id, status_is("finished", "error"))
        assert job["status"] == "finished", client.get(f"/jobs/{job_id}/logs").get_json()

        def service(jid, kind):
            url = client.post("/services", json={"job_id": jid, "type": kind}).get_json()
            return "/" + url["service_url"].split("/", 3)[3]

        wmts = {jid: service(jid, "wmts") for jid in (job_id, lazy_id)}
        wcs = {jid: service(jid, "wcs") for jid in (job_id, lazy_id)}
        times = [""]
        if reduce is None:
            caps = client.get(wmts[job_id] + "/1.0.0/WMTSCapabilities.xml").data.decode()
            times = sorted(set(__import__("re").findall(r"<Value>([\d-]+)</Value>", caps)))
            assert len(times) >= 2
            times = [t + "/" for t in times]
        # full resolution (z14) and an overview level (z12) of both files
        tiles = _tiles((14,))[:3] + _tiles((12,))[:2]
        finite: list[float] = []
        for when in times:
            for z, x, y in tiles:
                answers = {}
                for jid in (job_id, lazy_id):
                    for ext in ("tif", "png"):
                        path = (f"{wmts[jid]}/1.0.0/{jid}/default/{when}GoogleMapsCompatible/"
                                f"{z}/{y}/{x}.{ext}")
                        answers[jid, ext] = _get(client, path)
                stored, lazy = answers[job_id, "tif"], answers[lazy_id, "tif"]
                assert stored.headers[HEADER] == "stored"
                assert lazy.headers[HEADER] == "computed"
                assert stored.headers["Cache-Control"] == "public, max-age=86400, immutable"
                assert lazy.headers["Cache-Control"] == "public, max-age=60"
                sv, lv = _values(stored.data), _values(lazy.data)
                finite.append(np.isfinite(sv).mean())
                if z >= 14:  # full resolution: the same source pixels, the same values
                    np.testing.assert_array_equal(sv, lv)
                    assert answers[job_id, "png"].data == answers[lazy_id, "png"].data
                else:  # coarser: the result file is a source like any other (its own
                    # overviews, if any): the reference is the file warped with rasterio
                    ref = _warped(tmp_path / "home" / "results" / job_id, when, z, x, y)
                    same = (sv == ref) | (np.isnan(sv) & np.isnan(ref))
                    assert same.mean() > 0.99, same.mean()
        assert max(finite) > 0.3  # the tiles compared hold data
        # WCS: the native grid, and another CRS at another size
        for extra in ({}, {"OUTPUTCRS": "http://www.opengis.net/def/crs/EPSG/0/3857",
                           "SCALESIZE": "i(200),j(150)"}):
            got = {}
            for jid in (job_id, lazy_id):
                query = {"SERVICE": "WCS", "VERSION": "2.0.1", "REQUEST": "GetCoverage",
                         "COVERAGEID": f"job_{jid}", "FORMAT": "image/tiff", **extra}
                got[jid] = _get(client, wcs[jid] + "?" + "&".join(
                    f"{k}={v}" for k, v in query.items()))
            assert got[job_id].headers[HEADER] == "stored"
            if not extra:  # the native grid: exactly the lazy values
                np.testing.assert_array_equal(_values(got[job_id].data),
                                              _values(got[lazy_id].data))
                continue
            from rasterio.warp import Resampling, reproject

            with MemoryFile(got[job_id].data) as mem, mem.open() as answer:
                values, grid = answer.read(), (answer.crs, answer.transform, answer.shape)
            name = "result.tif" if reduce else f"result_{times[-1].strip('/')}.tif"
            ref = np.full(values.shape[1:], np.nan, np.float32)
            with rasterio.open(tmp_path / "home" / "results" / job_id / name) as src:
                reproject(rasterio.band(src, 1), ref, dst_crs=grid[0], dst_transform=grid[1],
                          dst_nodata=np.nan, resampling=Resampling.nearest)
            same = (values[-1] == ref) | (np.isnan(values[-1]) & np.isnan(ref))
            assert same.mean() > 0.99, same.mean()
        # a PATCH of the graph discards the result: the lazy path again, short max-age
        assert client.patch(f"/jobs/{job_id}", json={
            "process_graph": ndvi_graph(reduce, dates=("2020-05-01", "2020-05-30"))
        }).status_code in (200, 204)
        z, x, y = tiles[0]
        when = times[0] if reduce else times[0]
        again = _get(client, f"{wmts[job_id]}/1.0.0/{job_id}/default/{when}"
                     f"GoogleMapsCompatible/{z}/{y}/{x}.tif")
        assert again.headers[HEADER] == "computed"
        assert again.headers["Cache-Control"] == "public, max-age=60"
    finally:
        app.extensions["tileserver"].close()
