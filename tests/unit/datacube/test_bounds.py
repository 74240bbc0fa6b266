"""datacube.bounds: bounds between CRSs with kept transformers, equal to rasterio's
(GDAL's) ``transform_bounds`` computed independently."""

from __future__ import annotations

import threading

import pytest
from rasterio.crs import CRS
from rasterio.warp import transform_bounds as gdal_transform_bounds

from tileserver.datacube import bounds
from tileserver.datacube.bounds import transform_bounds

CASES = [
    ("EPSG:3857", "EPSG:4326", (1113194.9, 6106854.8, 1123000.0, 6116000.0)),  # a tile
    ("EPSG:3857", "EPSG:32632", (1113194.9, 6106854.8, 1123000.0, 6116000.0)),
    ("EPSG:32632", "EPSG:4326", (166021.0, 0.0, 833978.0, 9329005.0)),  # a whole zone
    ("EPSG:4326", "EPSG:3857", (-180.0, -85.0, 180.0, 85.0)),
    ("EPSG:3031", "EPSG:4326", (-3e6, -3e6, 3e6, 3e6)),  # around the pole
    ("EPSG:32601", "EPSG:4326", (100000.0, 0.0, 900000.0, 1000000.0)),  # antimeridian
    ("EPSG:4326", "EPSG:3035", (5.0, 45.0, 15.0, 55.0)),
]
#: Between datums (ETRS89 -> WGS84), PROJ may pick another of the equivalent operations than
#: GDAL's coordinate transformation does: the bounds then differ by under a millimetre.
DATUM_CASES = [
    ("EPSG:3035", "EPSG:32633", (4321000.0, 2600000.0, 4400000.0, 2700000.0)),
    ("EPSG:25832", "EPSG:4326", (400000.0, 5000000.0, 410000.0, 5010000.0)),
]


@pytest.mark.parametrize("as_crs", [str, CRS.from_user_input], ids=["text", "rasterio"])
@pytest.mark.parametrize(("src", "dst", "box"), CASES)
def test_equal_to_gdal(src, dst, box, as_crs):
    ours = transform_bounds(as_crs(src), as_crs(dst), *box)
    theirs = gdal_transform_bounds(src, dst, *box, densify_pts=21)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize(("src", "dst", "box"), DATUM_CASES)
def test_between_datums_within_a_millimetre_of_gdal(src, dst, box):
    ours = transform_bounds(src, dst, *box)
    theirs = gdal_transform_bounds(src, dst, *box, densify_pts=21)
    tolerance = 1e-3 if CRS.from_user_input(dst).is_projected else 1e-8  # metres, degrees
    assert ours == pytest.approx(theirs, rel=0, abs=tolerance)


def test_antimeridian_crossing_gives_left_greater_than_right():
    west, _, east, _ = transform_bounds("EPSG:32601", "EPSG:4326", 100000, 0, 900000, 1000000)
    assert west > 0 > east


def test_a_custom_wkt_crs():
    wkt = CRS.from_epsg(32632).to_wkt().replace('"WGS 84 / UTM zone 32N"', '"my utm"')
    custom = CRS.from_wkt(wkt)
    box = (400000.0, 5000000.0, 410000.0, 5010000.0)
    assert transform_bounds(custom, "EPSG:4326", *box) == pytest.approx(
        gdal_transform_bounds(custom, "EPSG:4326", *box, densify_pts=21), rel=1e-12)


def test_same_crs_is_the_box_itself():
    assert transform_bounds("EPSG:4326", "EPSG:4326", 1, 2, 3, 4) == (1.0, 2.0, 3.0, 4.0)
    crs = CRS.from_epsg(32632)
    assert transform_bounds(crs, CRS.from_epsg(32632), 1, 2, 3, 4) == (1.0, 2.0, 3.0, 4.0)


def test_outside_the_area_of_use_raises_or_is_not_finite():
    try:
        out = transform_bounds("EPSG:4326", "EPSG:3857", -180, -90, 180, 90)
    except Exception:  # noqa: BLE001 - PROJ refuses: callers treat it as "no bounds"
        return
    assert abs(out[1]) > 1e8  # the pole is far away in Web Mercator, as with GDAL


def test_transformers_are_kept_per_thread_and_bounded():
    first = bounds.transformer("EPSG:3857", "EPSG:4326")
    assert bounds.transformer("EPSG:3857", "EPSG:4326") is first
    other: list = []
    thread = threading.Thread(target=lambda: other.append(
        bounds.transformer("EPSG:3857", "EPSG:4326")))
    thread.start()
    thread.join()
    assert other[0] is not first  # pyproj transformers are not shared between threads
    for zone in range(1, bounds.MAX_TRANSFORMERS + 2):
        bounds.transformer(f"EPSG:{32600 + zone}", "EPSG:4326")
    assert len(bounds._local.transformers) <= bounds.MAX_TRANSFORMERS


def test_many_threads_at_once_give_the_same_bounds():
    base = (1113194.9, 6106854.8, 1123000.0, 6116000.0)
    boxes = [(base[0] + 50 * i, base[1], base[2] + 50 * i, base[3]) for i in range(100)]
    want = [gdal_transform_bounds("EPSG:3857", "EPSG:32632", *b, densify_pts=21)
            for b in boxes]
    wrong: list = []

    def work() -> None:
        for box, expected in zip(boxes, want, strict=True):
            got = transform_bounds("EPSG:3857", "EPSG:32632", *box)
            if got != pytest.approx(expected, rel=1e-12, abs=1e-9):
                wrong.append((box, got, expected))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, wrong[:3]
