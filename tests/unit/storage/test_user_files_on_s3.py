"""Processes read user files kept in an object store (zonal statistics' regions): a local
copy per object version, the same table as from the disk. moto's server is the store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import box, mapping

from tests.support.core import TEST_BOUNDS_32632, call, leaf
from tests.support.s3 import moto_server
from tileserver.data.userfiles import ObjectUserFiles, UserFiles, eval_context
from tileserver.errors import TileserverError
from tileserver.storage import store_for

OPTIONS = {"timeout": 5, "retries": 0, "multipart_bytes": 64 * 1024 * 1024}


@pytest.fixture(scope="module")
def s3():
    with moto_server() as server, pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        yield server


def _regions() -> bytes:
    """Three boxes inside the TEST grid, as WGS84 GeoJSON."""
    x0, y0 = TEST_BOUNDS_32632[0], TEST_BOUNDS_32632[3]
    tr = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)

    def to_wgs84(xy):
        return np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))

    features = [{"type": "Feature", "properties": {"name": f"r{i}"},
                 "geometry": mapping(shapely.transform(box(
                     x0 + c0 * 10, y0 - r1 * 10, x0 + c1 * 10, y0 - r0 * 10), to_wgs84))}
                for i, (c0, r0, c1, r1) in enumerate([(10, 10, 90, 70), (200, 150, 330, 300),
                                                     (400, 380, 500, 500)])]
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def _zonal(engine, context, regions: str):
    graph = engine.parse({"process_id": "zonal_statistics", "args": {
        "imagery": call("filter_bands", leaf(), bands="B04"), "regions": regions,
        "func": "avg"}})
    return engine.evaluate(graph, engine.native_view(graph), context=context)


def test_zonal_statistics_read_regions_from_the_object_store(engine, s3, tmp_path):
    body = _regions()
    UserFiles(tmp_path / "home" / "files", "me", 10**6).write("fields/a.geojson", [body])
    store = store_for(f"s3://{s3.bucket('zonal-files')}/tileserver", **OPTIONS)
    ObjectUserFiles(store, "me", 10**6).write("fields/a.geojson", [body])
    context = eval_context(tmp_path / "other", "me", store)
    assert context["files_root"] == "s3://zonal-files/tileserver/files"
    for regions in ("/users/me/files/fields/", "/users/me/files/fields/a.geojson"):
        local = _zonal(engine, eval_context(tmp_path / "home", "me"), regions)
        remote = _zonal(engine, context, regions)
        assert np.isfinite(local.values).any()
        np.testing.assert_array_equal(remote.values, local.values)
        assert list(remote.regions.sources) == list(local.regions.sources)
    with pytest.raises(TileserverError, match="no file or folder"):
        _zonal(engine, context, "/users/me/files/missing.geojson")
    with pytest.raises(TileserverError, match="no file or folder"):  # another user's
        _zonal(engine, {**context, "user_id": "someone"}, "/users/me/files/fields/")
    # a file deleted from the store is gone from the folder's local copy too
    ObjectUserFiles(store, "me", 10**6).write("fields/b.geojson", [body])
    assert len(_zonal(engine, context, "/users/me/files/fields/").regions) == 6
    ObjectUserFiles(store, "me", 10**6).delete("fields/b.geojson")
    assert len(_zonal(engine, context, "/users/me/files/fields/").regions) == 3
