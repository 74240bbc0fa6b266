"""The served job and the tile address (``tileserver.maps``), without HTTP: what WMTS, XYZ,
TMS, WCS and the viewer ask for pixels."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import morecantile
import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from tests.support.core import bbox, call, leaf, make_engine
from tileserver.errors import InvalidParameterValue, TileOutOfRange
from tileserver.maps.served import served_job
from tileserver.maps.tilematrix import get_tms, tile_view
from tileserver.maps.tiles import TileAddress, tile_address

GRAPH = call("NDVI", bbox(leaf(), 500_500, 504_500, 5_099_500, 5_095_500), red="B04",
             nir="B08")


def _job(graph=GRAPH, **extra) -> dict:
    return {"job_id": "j1", "user_id": "me", "status": "submitted", "process_graph": graph,
            "output": None, **extra}


def _tile_over_the_data(z: int = 14) -> tuple[int, int]:
    lon, lat = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True).transform(
        502_500, 5_097_500)
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, z)
    return t.y, t.x


def test_maps_imports_no_http():
    code = ("import sys, tileserver.maps.served, tileserver.maps.tiles; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'flask' "
            "or m.startswith(('tileserver.web', 'tileserver.jobs'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_tile_address_is_resolved_once_with_the_ogc_locators():
    a = tile_address("GoogleMapsCompatible", "3", "2", "5", "image/jpeg")
    tms = get_tms("GoogleMapsCompatible")
    assert (a.tms, a.z, a.row, a.col, a.media_type, a.encoder) == (
        tms, "3", 2, 5, "image/jpeg", "JPEG")
    assert a.view == tile_view(tms, tms.matrix("3"), 2, 5)
    cases = [(("Nope", "3", "0", "0"), InvalidParameterValue, "tilematrixset"),
             (("GoogleMapsCompatible", "99", "0", "0"), InvalidParameterValue, "tilematrix"),
             (("GoogleMapsCompatible", "3", "8", "0"), TileOutOfRange, "tilerow"),
             (("GoogleMapsCompatible", "3", "0", "-1"), TileOutOfRange, "tilecol")]
    for words, error, locator in cases:
        with pytest.raises(error) as info:
            tile_address(*words)
        assert info.value.locator == locator


def test_served_jobs_are_memoised_per_job_version_and_style(small_catalog):
    engine = make_engine(small_catalog)
    one = served_job(engine, _job(), processes={})
    assert served_job(engine, _job(), processes={}) is one
    styled = served_job(engine, _job(), processes={}, service_args={"colormap": "viridis"})
    assert styled is not one and styled.style_args == {"colormap": "viridis"}
    # a finished job whose result directory is not given never reads a stored result
    finished = served_job(engine, _job(status="finished", extra={"results_token": "t"}),
                          processes={}, results_token="t")
    assert finished.stored is None


def test_a_tile_is_the_graph_on_the_tile_view(small_catalog):
    engine = make_engine(small_catalog)
    served = served_job(engine, _job(), processes={})
    row, col = _tile_over_the_data()
    address = served.tile_address("GoogleMapsCompatible", "14", str(row), str(col),
                                  media_type="image/tiff", time=None)
    assert address.time == served.select_time(None)  # the latest date, if any
    key = served.tile_key(address)
    again = tile_address("GoogleMapsCompatible", "14", str(row), str(col), "image/tiff")
    assert served.tile_key(replace(again, time=address.time)) == key
    assert served.tile_key(replace(again, time=address.time, media_type="image/png")) != key
    encoded, origin = served.tile(address, key)
    assert origin == "computed" and encoded.media_type == "image/tiff"
    assert served.tile(address, key)[1] == "memory"
    reference = served.evaluate(address.view, address.time)
    with rasterio.MemoryFile(encoded.content) as mem, mem.open() as ds:
        assert ds.crs.to_epsg() == 3857 and (ds.width, ds.height) == (256, 256)
        np.testing.assert_allclose(ds.read(1), reference.image()[0], equal_nan=True)


def test_a_tile_outside_the_extent_is_empty_without_evaluating(small_catalog):
    engine = make_engine(small_catalog)
    served = served_job(engine, _job(), processes={})
    far = TileAddress(get_tms("GoogleMapsCompatible"), get_tms("GoogleMapsCompatible")
                      .matrix("14"), 0, 0, "image/tiff")
    assert served.outside(far)
    with rasterio.MemoryFile(served.render(far).content) as mem, mem.open() as ds:
        assert np.isnan(ds.read(1)).all()


def test_dates_are_selected_by_the_served_job(small_catalog):
    engine = make_engine(small_catalog)
    served = served_job(engine, _job(bbox(leaf(), 500_500, 504_500, 5_099_500, 5_095_500)),
                        processes={})
    values = served.time_values
    assert values and served.select_time(None) == values[-1]
    assert served.select_time(values[0]) == values[0]
    with pytest.raises(InvalidParameterValue) as info:
        served.select_time("1999-01-01")
    assert info.value.locator == "time"
