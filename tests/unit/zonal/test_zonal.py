"""zonal_statistics: values against plain rasterio + numpy, pixel rule, region files, outputs.

The references rasterise each polygon themselves with ``rasterio.features.rasterize`` on
the product's grid, over the whole mosaic built by ``tests.support.core.reference_stack``
(whole files warped with plain rasterio), and compute the statistic with numpy.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import shapely
from numpy.testing import assert_allclose
from pyproj import Transformer
from rasterio.features import rasterize
from shapely.geometry import MultiPolygon, Polygon, box, mapping

from tests.support.core import (
    TEST_BOUNDS_32632,
    bbox,
    call,
    daterange,
    leaf,
    make_engine,
    pixels_read,
    reference_stack,
)
from tests.support.qgis import SCRIPTS as QGIS_SCRIPTS
from tests.support.requirements import require, requires
from tileserver.data.userfiles import UserFiles, eval_context
from tileserver.datacube.view import View
from tileserver.errors import TileserverError
from tileserver.zonal.tables import ZonalTable

X0, Y0, RES = TEST_BOUNDS_32632[0], TEST_BOUNDS_32632[3], 10.0
#: Index of the date whose only acquisition is in EPSG:32633 (warped into the 32632 grid).
WARPED_DATE = 2
GRID = View("EPSG:32632", TEST_BOUNDS_32632, 512, 512)
TRANSFORM = GRID.transform

REFERENCE = {
    "avg": np.mean, "min": np.min, "max": np.max, "median": np.median,
    "q25": lambda v: np.percentile(v, 25), "q75": lambda v: np.percentile(v, 75),
    "count": len, "sum": np.sum, "std": np.std,
}


def px(col: float, row: float) -> tuple[float, float]:
    """Map coordinates (EPSG:32632) of a position given in pixels of the TEST grid."""
    return X0 + col * RES, Y0 - row * RES


def poly(*pts, holes=()) -> Polygon:
    return Polygon([px(*p) for p in pts], [[px(*p) for p in h] for h in holes])


#: Regions on the TEST grid: a triangle, a square with a hole, a two-part multipolygon.
REGIONS = [
    ("triangle", poly((300.3, 300.2), (330.7, 305.1), (310.4, 335.6))),
    ("donut", poly((100.2, 350.2), (140.2, 350.2), (140.2, 390.2), (100.2, 390.2),
                   holes=[((110.2, 360.2), (130.2, 360.2), (130.2, 380.2), (110.2, 380.2))])),
    ("pair", MultiPolygon([poly((400.2, 100.2), (412.2, 100.2), (412.2, 112.2), (400.2, 112.2)),
                           poly((450.7, 150.7), (470.1, 150.7), (470.1, 171.3))])),
]


# -- helpers ---------------------------------------------------------------------------


def write_vector(path: Path, geoms, crs="EPSG:32632", props=None, driver=None) -> Path:
    """A real vector file written by OGR (through pyogrio)."""
    props = props or {"name": [f"r{i}" for i in range(len(geoms))]}
    names = list(props)
    data = [np.array(v, dtype=object if isinstance(v[0], str) else None)
            for v in props.values()]
    multi = any(g.geom_type == "MultiPolygon" for g in geoms)
    geoms = [MultiPolygon([g]) if multi and g.geom_type == "Polygon" else g for g in geoms]
    pyogrio.raw.write(str(path), np.array(shapely.to_wkb(geoms), dtype=object), data, names,
                      driver=driver, crs=crs,
                      geometry_type="MultiPolygon" if multi else "Polygon")
    return path


def reproject_geoms(geoms, dst: str, src: str = "EPSG:32632"):
    tr = Transformer.from_crs(src, dst, always_xy=True)
    return [shapely.transform(g, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
            for g in geoms]


def zipped_shapefile(folder: Path, name: str, geoms, crs: str, inner: str = "") -> Path:
    tmp = folder / f"_{name}"
    tmp.mkdir()
    write_vector(tmp / f"{name}.shp", geoms, crs=crs)
    target = folder / f"{name}.zip"
    with zipfile.ZipFile(target, "w") as zf:
        for f in sorted(tmp.iterdir()):
            zf.write(f, inner + f.name)
    shutil.rmtree(tmp)
    return target


@pytest.fixture(scope="module")
def reference(small_catalog):
    """``(days, (t, 2, 512, 512))`` mosaic of B04 and B08 on the TEST grid."""
    return reference_stack(small_catalog, "TEST", GRID, ["B04", "B08"])


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def upload(home: Path, rel: str, source: Path | bytes) -> None:
    data = source if isinstance(source, bytes) else source.read_bytes()
    UserFiles(home / "files", "me", 10**9).write(rel, [data])


def zonal(engine, home, imagery, regions="/users/me/files/", func="avg",
          user="me") -> ZonalTable:
    graph = engine.parse({"process_id": "zonal_statistics",
                          "args": {"imagery": imagery, "regions": regions, "func": func}})
    return engine.evaluate(graph, engine.native_view(graph),
                           context=eval_context(home, user))


def b04(imagery=None):
    return call("filter_bands", imagery or leaf(), bands="B04")


def ref_values(reference, geom, func, band=0):
    """Per date: (value or None, valid pixel count), centre-inside rule, plain numpy."""
    days, stack = reference
    inside = rasterize([(mapping(geom), 1)], out_shape=(512, 512), transform=TRANSFORM,
                       fill=0, all_touched=False, dtype="uint8").astype(bool)
    out = []
    for ti in range(len(days)):
        vals = stack[ti, band][inside]
        vals = vals[np.isfinite(vals)]
        out.append((float(REFERENCE[func](vals)) if len(vals) else None, len(vals)))
    return out


# -- values ------------------------------------------------------------------------------


@pytest.mark.parametrize("func", sorted(REFERENCE))
def test_values_match_rasterio_numpy_reference(engine, reference, home, tmp_path, func):
    geoms = [g for _, g in REGIONS]
    upload(home, "fields.geojson", write_vector(tmp_path / "f.geojson", geoms,
                                                props={"name": [n for n, _ in REGIONS]}))
    table = zonal(engine, home, b04(), func=func)
    assert [d.strftime("%Y-%m-%d") for d in table.dates] == reference[0]
    assert table.bands == ("B04",) and table.func == func
    assert table.regions.attributes["name"] == [n for n, _ in REGIONS]
    for ri, geom in enumerate(geoms):
        expected = ref_values(reference, geom, func)
        for ti, (value, count) in enumerate(expected):
            assert table.pixels[ri, ti, 0] == count, (REGIONS[ri][0], ti)
            assert count > 0
            # 2020-05-21 exists only in the other UTM zone: warped by GDAL's approximate
            # transformer, ~2 % of the pixels of a small view take a neighbour's value
            rtol = 0.05 if ti == WARPED_DATE and func != "count" else 1e-6
            assert_allclose(table.values[ri, ti, 0], value, rtol=rtol,
                            err_msg=f"{REGIONS[ri][0]} date {ti}")


def test_holes_and_multipolygon_parts_count_the_right_pixels(engine, home, tmp_path):
    geoms = [g for _, g in REGIONS]
    upload(home, "fields.geojson", write_vector(tmp_path / "f.geojson", geoms))
    table = zonal(engine, home, call("count_time", b04()), func="count")
    # the count of valid dates per pixel is >= 1 everywhere here; with func=count we get
    # the number of pixel centres: outer 40x40 minus the 20x20 hole, two parts 12x12 + tri
    donut = table.pixels[1, 0, 0]
    assert donut == 40 * 40 - 20 * 20
    assert table.pixels[2, 0, 0] == 12 * 12 + int(rasterize(
        [(mapping(REGIONS[2][1].geoms[1]), 1)], out_shape=(512, 512), transform=TRANSFORM,
        all_touched=False).sum())


def test_polygons_smaller_than_a_pixel(engine, reference, home, tmp_path):
    no_centre = poly((200.1, 200.1), (200.4, 200.1), (200.4, 200.4), (200.1, 200.4))
    one_centre = poly((210.3, 210.3), (210.7, 210.3), (210.7, 210.7), (210.3, 210.7))
    upload(home, "tiny.geojson", write_vector(tmp_path / "t.geojson", [no_centre, one_centre]))
    table = zonal(engine, home, b04())
    assert np.isnan(table.values[0]).all() and (table.pixels[0] == 0).all()
    _, stack = reference
    for ti in range(len(table.dates)):
        assert table.pixels[1, ti, 0] == (1 if np.isfinite(stack[ti, 0, 210, 210]) else 0)
        assert_allclose(table.values[1, ti, 0], stack[ti, 0, 210, 210])


def test_regions_partly_or_wholly_outside_the_data(engine, reference, home, tmp_path):
    straddling = Polygon([(X0 - 200.5, Y0 - 1000.5), (X0 + 200.5, Y0 - 1000.5),
                          (X0 + 200.5, Y0 - 1400.5), (X0 - 200.5, Y0 - 1400.5)])
    outside = box(X0 - 9000, Y0 - 9000, X0 - 8000, Y0 - 8000)
    inside = REGIONS[0][1]
    upload(home, "r.geojson", write_vector(tmp_path / "r.geojson",
                                           [straddling, outside, inside]))
    # cut the data with a bbox so that the straddling region is half outside for sure
    imagery = bbox(b04(), X0, X0 + 5120, Y0, Y0 - 5120)
    table = zonal(engine, home, imagery)
    for ti, (value, count) in enumerate(ref_values(reference, straddling, "avg")):
        assert table.pixels[0, ti, 0] == count and 0 < count <= 20 * 40
        rtol = 0.05 if ti == WARPED_DATE else 1e-6
        assert_allclose(table.values[0, ti, 0], value, rtol=rtol)
    assert np.isnan(table.values[1]).all() and (table.pixels[1] == 0).all()  # null, not 0
    assert np.isfinite(table.values[2]).all()
    doc = json.loads(_encode(table, "JSON"))
    assert doc["regions"][1]["values"]["B04"] == [None, None, None]


def test_regions_that_all_miss_the_data_are_a_400(engine, home, tmp_path):
    far = [box(X0 - 9000, Y0 - 9000, X0 - 8000, Y0 - 8000)]
    upload(home, "far.geojson", write_vector(tmp_path / "far.geojson", far))
    with pytest.raises(TileserverError) as err:
        zonal(engine, home, b04())
    assert err.value.status == 400 and err.value.code == "RegionsInvalid"
    assert "none of the 1 regions intersects the data" in err.value.message
    # inside the product, but outside the time range: no acquisition
    upload(home, "far.geojson", write_vector(tmp_path / "near.geojson", [REGIONS[0][1]]))
    with pytest.raises(TileserverError) as err:
        zonal(engine, home, daterange(b04(), "2019-01-01", "2019-02-01"))
    assert err.value.status == 400 and "no acquisition" in err.value.message


def test_reduced_time_axis_gives_one_value_per_region(engine, reference, home, tmp_path):
    geom = REGIONS[0][1]
    upload(home, "f.geojson", write_vector(tmp_path / "f.geojson", [geom]))
    table = zonal(engine, home, call("max_time", b04()), func="median")
    assert table.dates is None and table.values.shape == (1, 1, 1)
    days, stack = reference
    with np.errstate(all="ignore"):
        per_pixel = np.fmax.reduce(stack[:, 0], axis=0)
    inside = rasterize([(mapping(geom), 1)], out_shape=(512, 512), transform=TRANSFORM,
                       all_touched=False).astype(bool)
    vals = per_pixel[inside]
    assert_allclose(table.values[0, 0, 0], np.median(vals[np.isfinite(vals)]), rtol=1e-6)
    assert [c for c, _, _ in table.wide_columns()] == ["median"]
    path = tmp_path / "reduced.gpkg"
    path.write_bytes(_encode(table, "GPKG"))
    meta, _, _, fields = pyogrio.raw.read(path, layer="regions")
    assert list(meta["fields"])[-1] == "median"
    assert_allclose(fields[-1], table.values[:, 0, 0])
    _, _, _, (rid, date, band, value, pixels) = pyogrio.raw.read(path, layer="timeseries")
    assert list(rid) == [1] and np.isnat(date[0]) and value[0] == fields[-1][0]


def test_several_bands_give_one_column_per_band_and_date(engine, reference, home, tmp_path):
    geom = REGIONS[1][1]
    upload(home, "f.geojson", write_vector(tmp_path / "f.geojson", [geom]))
    table = zonal(engine, home, call("filter_bands", leaf(), bands=["B08", "B04"]), func="max")
    assert table.bands == ("B08", "B04")
    cols = [c for c, _, _ in table.wide_columns()]
    assert cols[:2] == ["max_B08_2020_05_01", "max_B04_2020_05_01"] and len(cols) == 6
    for bi, ref_band in ((0, 1), (1, 0)):
        expected = [v for v, _ in ref_values(reference, geom, "max", band=ref_band)]
        assert_allclose(table.values[0, :, bi], expected)


# -- region files ----------------------------------------------------------------------


def test_folder_of_geojson_gpkg_and_zipped_shapefile_in_any_crs(engine, home, tmp_path):
    geoms = [g for _, g in REGIONS]
    upload(home, "all/a.geojson", write_vector(tmp_path / "a.geojson", geoms))
    upload(home, "all/b.gpkg", write_vector(tmp_path / "b.gpkg", reproject_geoms(
        geoms, "EPSG:4326"), crs="EPSG:4326", driver="GPKG"))
    upload(home, "all/sub/c.zip", zipped_shapefile(tmp_path, "c", reproject_geoms(
        geoms, "EPSG:3857"), "EPSG:3857", inner="fields/"))  # zipped with its folder
    upload(home, "all/notes.txt", b"not a region file, ignored")
    table = zonal(engine, home, b04(), regions="/users/me/files/all/")
    assert table.regions.sources == ["all/a.geojson"] * 3 + ["all/b.gpkg"] * 3 + [
        "all/sub/c.zip"] * 3
    assert table.regions.crs.to_epsg() == 4326  # mixed CRSs: the output is WGS84
    values = table.values.reshape(3, 3, -1)
    assert np.isfinite(values).all()
    assert_allclose(values[1], values[0], rtol=1e-9)
    assert_allclose(values[2], values[0], rtol=1e-9)
    # a single file keeps its own CRS
    one = zonal(engine, home, b04(), regions="/users/me/files/all/sub/c.zip")
    assert one.regions.crs.to_epsg() == 3857 and len(one.regions) == 3


def _zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


BAD_FILES = {
    "garbage.geojson": (b"\x00\x01 this is not json", "not a vector file OGR can read"),
    "empty.geojson": (b'{"type": "FeatureCollection", "features": []}', "no polygon"),
    "points.geojson": (json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {
            "type": "Point", "coordinates": [9.0, 46.0]}}]}).encode(), "must be polygons"),
    "nogeom.geojson": (json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"a": 1}, "geometry": None}]}).encode(),
        "no geometry"),
    "broken.zip": (b"PK\x03\x04 truncated", "not a vector file OGR can read"),
    "docs.zip": (_zip_of({"readme.txt": b"no regions here"}), "holds no region file"),
    # an OGR VRT disguised as GeoJSON would make the server read its own files
    "sneaky.geojson": (b"""<OGRVRTDataSource><OGRVRTLayer name="p">
        <SrcDataSource>CSV:/etc/passwd</SrcDataSource>
        <SrcSQL dialect="SQLite">SELECT *, 'POLYGON((9 46,9.1 46,9.1 46.1,9 46))' AS wkt
            FROM passwd</SrcSQL>
        <GeometryField encoding="WKT" field="wkt"/></OGRVRTLayer></OGRVRTDataSource>""",
                       "OGR_VRT files are not accepted"),
    "table.csv": (b"id,WKT\n1,\"POLYGON((9 46,9.1 46,9.1 46.1,9 46))\"\n",
                  "CSV files are not accepted"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_or_empty_region_files_are_clear_400s(engine, home, name):
    content, words = BAD_FILES[name]
    upload(home, name, content)
    with pytest.raises(TileserverError) as err:
        zonal(engine, home, b04(), regions=f"/users/me/files/{name}")
    assert err.value.status == 400 and err.value.code == "RegionsInvalid"
    assert name in err.value.message and words in err.value.message
    assert str(home) not in err.value.message  # no server paths in messages
    assert err.value.path == "process_graph.args.regions"


@pytest.mark.parametrize("regions, words", [
    ("/users/me/files/missing.geojson", "no file or folder"),
    ("/users/other/files/theirs.geojson", "no file or folder"),
    ("/users/me/files/empty/", "holds no region file"),
])
def test_missing_foreign_or_empty_regions_are_400s(engine, home, regions, words):
    upload(home, "empty/readme.txt", b"nothing here")
    UserFiles(home / "files", "other", 100).write("theirs.geojson", [b"{}"])
    with pytest.raises(TileserverError) as err:
        zonal(engine, home, b04(), regions=regions)
    assert err.value.status == 400 and words in err.value.message


@pytest.mark.parametrize("args, where", [
    ({"func": "mean"}, "process_graph.args.func"),
    ({"regions": "fields.geojson"}, "process_graph.args.regions"),
    ({"regions": "/users/me/files/../../etc/passwd"}, "process_graph.args.regions"),
    ({"regions": 5}, "process_graph.args.regions"),
])
def test_graph_validation_of_func_and_regions(engine, args, where):
    base = {"imagery": b04(), "regions": "/users/me/files/", "func": "avg"}
    with pytest.raises(TileserverError) as err:
        engine.parse({"process_id": "zonal_statistics", "args": {**base, **args}})
    assert err.value.status == 400 and err.value.path == where


def test_without_a_calling_user_it_is_a_400(engine):
    graph = engine.parse({"process_id": "zonal_statistics", "args": {
        "imagery": b04(), "regions": "/users/me/files/", "func": "avg"}})
    with pytest.raises(TileserverError) as err:
        engine.evaluate(graph, engine.native_view(graph))
    assert err.value.status == 400 and "calling user" in err.value.message


# -- laziness ----------------------------------------------------------------------------


def test_only_pixels_under_the_region_envelopes_are_read(small_catalog, home, tmp_path):
    engine = make_engine(small_catalog)  # cold cache
    small = [poly((20.5, 20.5), (30.5, 20.5), (30.5, 30.5)),
             poly((480.5, 470.5), (490.5, 470.5), (490.5, 490.5))]
    upload(home, "f.geojson", write_vector(tmp_path / "f.geojson", small))
    before = pixels_read()
    table = zonal(engine, home, b04())
    read = pixels_read() - before
    assert np.isfinite(table.values[:, 0]).all()
    # 4 acquisitions x 1 band; each envelope is ~11x11 and ~11x21 px, plus the reader's
    # 2-pixel margin on each side (the other zone's files add a little more for warping)
    envelope = (11 + 6) * (11 + 6) + (11 + 6) * (21 + 6)
    assert read <= 4 * envelope * 1.5, read
    assert read < 0.01 * 4 * 512 * 512


# -- outputs ----------------------------------------------------------------------------


def _encode(table, fmt):
    from tileserver.render.formats import encode

    return encode(table, {"format": fmt}).content


def test_gpkg_read_back_with_pyogrio_and_gdal(engine, home, tmp_path):
    geoms = [g for _, g in REGIONS] + [box(X0 - 9000, Y0 - 9000, X0 - 8000, Y0 - 8000)]
    props = {"name": ["tri", "donut", "pair", "far"], "value": ["a", "b", "c", "d"],
             "area_ha": [1.5, 2.5, 3.5, 4.5]}
    upload(home, "f.gpkg", write_vector(tmp_path / "f.gpkg", geoms, props=props,
                                        driver="GPKG"))
    table = zonal(engine, home, b04())
    path = tmp_path / "out.gpkg"
    path.write_bytes(_encode(table, "GPKG"))
    layers = dict(pyogrio.list_layers(path))
    assert layers == {"regions": "MultiPolygon", "timeseries": None}

    meta, _, wkb, fields = pyogrio.raw.read(path, layer="regions")
    names = list(meta["fields"])
    assert names == ["region_id", "source", "name", "attr_value", "area_ha",
                     "avg_2020_05_01", "avg_2020_05_11", "avg_2020_05_21"]
    assert meta["crs"] == "EPSG:32632"
    got = shapely.from_wkb(wkb)
    for g, expected in zip(got, geoms, strict=True):
        assert g.symmetric_difference(expected).area < 1e-6
    cols = dict(zip(names, fields, strict=True))
    assert list(cols["name"]) == props["name"] and list(cols["area_ha"]) == props["area_ha"]
    for ti, col in enumerate(names[5:]):
        assert_allclose(cols[col][:3], table.values[:3, ti, 0])
        assert np.isnan(cols[col][3])  # the region outside the data: NULL

    meta, _, _, ts = pyogrio.raw.read(path, layer="timeseries")
    assert list(meta["fields"]) == ["region_id", "date", "band", "value", "pixels"]
    assert meta["ogr_types"][1] == "OFTDate"
    rid, date, band, value, pixels = ts
    assert len(rid) == 4 * 3 and set(band) == {"B04"}
    for r, d, v, n in zip(rid, date.astype(str), value, pixels, strict=True):
        ti = [x.strftime("%Y-%m-%d") for x in table.dates].index(d)
        assert_allclose(v, table.values[r - 1, ti, 0])
        assert n == table.pixels[r - 1, ti, 0]

    require("gdal-bin")
    ogrinfo = shutil.which("ogrinfo")
    out = subprocess.run([ogrinfo, "-ro", "-al", "-where", "region_id = 2", str(path)],
                         capture_output=True, text=True, check=True).stdout
    assert "Layer name: regions" in out and "Layer name: timeseries" in out
    assert "avg_2020_05_01 (Real) = " + f"{table.values[1, 0, 0]:.3f}"[:6] in out
    assert "date (Date) = 2020/05/11" in out


def test_geojson_csv_and_json_outputs(engine, home, tmp_path):
    geoms = [g for _, g in REGIONS]
    upload(home, "f.geojson", write_vector(tmp_path / "f.geojson", geoms))
    table = zonal(engine, home, b04(), func="q75")
    fc = json.loads(_encode(table, "GeoJSON"))
    assert len(fc["features"]) == 3
    first = fc["features"][0]
    assert first["geometry"]["type"] == "MultiPolygon"
    lon, lat = first["geometry"]["coordinates"][0][0][0]
    assert 8 < lon < 10 and 45 < lat < 47  # RFC 7946: WGS84
    assert first["properties"]["q75_2020_05_01"] == pytest.approx(table.values[0, 0, 0])
    assert [p["date"] for p in first["properties"]["timeseries"]] == [
        "2020-05-01", "2020-05-11", "2020-05-21"]

    rows = list(csv.DictReader(io.StringIO(_encode(table, "CSV").decode())))
    assert len(rows) == 9 and list(rows[0]) == ["region_id", "source", "name", "date", "band",
                                                "value", "pixels"]
    for row in rows:
        ri, ti = int(row["region_id"]) - 1, ["2020-05-01", "2020-05-11",
                                             "2020-05-21"].index(row["date"])
        assert float(row["value"]) == pytest.approx(table.values[ri, ti, 0])
        assert int(row["pixels"]) == table.pixels[ri, ti, 0]

    doc = json.loads(_encode(table, "JSON"))
    assert doc["func"] == "q75" and doc["dates"] == ["2020-05-01", "2020-05-11", "2020-05-21"]
    assert doc["regions"][2]["values"]["B04"] == pytest.approx(list(table.values[2, :, 0]))


def test_table_formats_refuse_images_and_image_formats_refuse_tables(engine, home, tmp_path):
    from tileserver.render.formats import encode

    upload(home, "f.geojson", write_vector(tmp_path / "f.geojson", [REGIONS[0][1]]))
    table = zonal(engine, home, b04())
    with pytest.raises(TileserverError) as err:
        encode(table, {"format": "GTiff"})
    assert err.value.status == 400 and "not an image" in err.value.message
    graph = engine.parse(b04())
    cube = engine.evaluate(graph, View("EPSG:32632", (X0, Y0 - 100, X0 + 100, Y0), 10, 10))
    with pytest.raises(TileserverError) as err:
        encode(cube, {"format": "GPKG"})
    assert err.value.status == 400 and "tables" in err.value.message
    with pytest.raises(TileserverError):
        encode(table, {"format": "CSV", "parameters": {"sep": ";"}})


# -- through HTTP ------------------------------------------------------------------------

#: The second /execute example of the issue, verbatim.
EXAMPLE = {"process_graph": {"process_id": "zonal_statistics", "args": {"imagery": {
    "process_id": "filter_daterange", "args": {"imagery": {
        "process_id": "filter_bbox", "args": {"imagery": {
            "process_id": "filter_bands", "args": {"imagery": {"product_id": "Sentinel2-L1C"},
                                                   "bands": 8}},
            "left": 16.1, "right": 16.6, "top": 48.6, "bottom": 47.2, "srs": "EPSG:4326"}},
        "from": "2017-01-01", "to": "2017-01-31"}},
    "regions": "/users/me/files/", "func": "avg"}},
    "output": {"format": "GPKG"}}

#: Fields around Vienna (lon/lat), one with a hole, one multipolygon, one off the data.
VIENNA = [
    Polygon([(16.30, 48.10), (16.32, 48.10), (16.32, 48.115), (16.30, 48.115)],
            [[(16.305, 48.104), (16.312, 48.104), (16.312, 48.110), (16.305, 48.110)]]),
    MultiPolygon([box(16.40, 48.20, 16.405, 48.204), box(16.45, 48.30, 16.452, 48.302)]),
    Polygon([(16.2, 48.0), (16.25, 48.0), (16.22, 48.03)]),
    box(16.0, 47.0, 16.01, 47.01),  # outside the bbox and the data
]


def _l1c_reference(demo_catalog, geoms_lonlat):
    """Mean B08 per region and date: rasterio reads of the files (the window around each
    polygon, from ``geometry_window``), polygons rasterised on that window, numpy means."""
    import pystac
    import rasterio
    from rasterio.errors import WindowError
    from rasterio.features import geometry_window

    col = next(c for c in pystac.read_file(str(demo_catalog)).get_all_collections()
               if c.id == "Sentinel2-L1C")
    items = sorted(col.get_items(recursive=True), key=lambda i: i.datetime)
    out = []
    for item in items:
        with rasterio.open(item.assets["B08"].get_absolute_href()) as src:
            geoms = reproject_geoms(geoms_lonlat, src.crs.to_string(), "EPSG:4326")
            row = []
            for g in geoms:
                try:
                    win = geometry_window(src, [mapping(g)], pad_x=1, pad_y=1)
                except WindowError:  # outside the file
                    row.append(np.nan)
                    continue
                arr = src.read(1, window=win).astype(np.float64)
                arr[arr == src.nodata] = np.nan
                inside = rasterize([(mapping(g), 1)], out_shape=arr.shape,
                                   transform=src.window_transform(win),
                                   all_touched=False).astype(bool)
                vals = arr[inside]
                vals = vals[np.isfinite(vals)]
                row.append(vals.mean() if len(vals) else np.nan)
        out.append((item.datetime.strftime("%Y-%m-%d"), row))
    return out


def test_the_issue_example_returns_a_geopackage(make_app, demo_catalog, tmp_path):
    app = make_app([demo_catalog])
    client = app.test_client()
    src = write_vector(tmp_path / "vienna.geojson", VIENNA, crs="EPSG:4326",
                       props={"field": ["a", "b", "c", "off"], "ha": [3, 1, 40, 1]})
    r = client.put("/users/me/files/vienna.geojson", data=src.read_bytes())
    assert r.status_code == 201
    r = client.post("/execute", json=EXAMPLE)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.mimetype == "application/geopackage+sqlite3"
    assert r.data[:16] == b"SQLite format 3\x00"
    path = tmp_path / "result.gpkg"
    path.write_bytes(r.data)
    meta, _, _, fields = pyogrio.raw.read(path, layer="regions")
    cols = dict(zip(meta["fields"], fields, strict=True))
    assert list(cols["field"]) == ["a", "b", "c", "off"] and list(cols["ha"]) == [3, 1, 40, 1]
    expected = _l1c_reference(demo_catalog, VIENNA)
    assert [f"avg_{d.replace('-', '_')}" for d, _ in expected] == [
        c for c in meta["fields"] if c.startswith("avg_")]
    for day, row in expected:
        got = cols[f"avg_{day.replace('-', '_')}"]
        assert np.isfinite(row[:3]).all() and np.isnan(got[3])
        assert_allclose(got[:3], row[:3], rtol=1e-9, err_msg=day)
    _, _, _, ts = pyogrio.raw.read(path, layer="timeseries")
    assert len(ts[0]) == 4 * 3


def test_execute_errors_are_json_400s(client, tmp_path):
    graph = {"process_id": "zonal_statistics", "args": {
        "imagery": b04(), "regions": "/users/me/files/nothing.geojson", "func": "avg"}}
    r = client.post("/execute", json={"process_graph": graph, "output": {"format": "GPKG"}})
    assert r.status_code == 400 and r.json["code"] == "RegionsInvalid"
    assert r.json["path"] == "process_graph.args.regions"
    graph["args"]["func"] = "mode"
    r = client.post("/execute", json={"process_graph": graph, "output": {"format": "GPKG"}})
    assert r.status_code == 400 and r.json["code"] == "ProcessGraphInvalid"
    assert "avg" in r.json["message"] and r.json["path"] == "process_graph.args.func"
    src = write_vector(tmp_path / "f.geojson", [REGIONS[0][1]])
    client.put("/users/me/files/f.geojson", data=src.read_bytes())
    graph["args"].update(func="avg", regions="/users/me/files/f.geojson")
    r = client.post("/execute", json={"process_graph": graph, "output": {"format": "PNG"}})
    assert r.status_code == 400 and r.json["code"] == "FormatUnsupported"
    r = client.post("/execute", json={"process_graph": graph, "output": {"format": "CSV"}})
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert r.data.decode().count("\n") == 1 + 3


def test_views_are_grouped_by_source_tile_and_cover_their_regions():
    from tileserver.zonal.stats import plan_views

    windows = {
        0: (10, 10, 20, 20), 1: (100, 90, 130, 120),  # same 128-px tile: one view
        2: (300, 10, 310, 20),  # another tile
        3: (0, 200, 400, 260),  # larger than a tile: its own view
        4: (130, 5, 140, 15), 5: (250, 120, 256, 126),  # tile (1, 0)
    }
    clusters = plan_views(windows, block=128)
    members = sorted(ri for c in clusters for ri, _ in c.members)
    assert members == sorted(windows)
    for c in clusters:
        for ri, w in c.members:
            assert w == windows[ri]
            assert c.window[0] <= w[0] and c.window[1] <= w[1]
            assert w[2] <= c.window[2] and w[3] <= c.window[3]
    by_members = {tuple(sorted(ri for ri, _ in c.members)): c.window for c in clusters}
    assert by_members[(0, 1)] == (10, 10, 130, 120)
    assert by_members[(3,)] == windows[3] and by_members[(2,)] == windows[2]
    assert by_members[(4, 5)] == (130, 5, 256, 126)
    # a view never spans more than 2 x 2 tiles
    assert all(c.window[2] - c.window[0] <= 256 and c.window[3] - c.window[1] <= 256
               for c in clusters if len(c.members) > 1)


def test_a_table_cannot_feed_an_image_process(engine):
    zonal_node = {"process_id": "zonal_statistics", "args": {
        "imagery": b04(), "regions": "/users/me/files/", "func": "avg"}}
    with pytest.raises(TileserverError) as err:
        engine.parse(call("min_time", zonal_node))
    assert err.value.status == 400 and err.value.path == "process_graph.args.imagery"
    assert "only be the root" in err.value.message


def test_batch_job_queue_poll_download_gpkg(small_catalog, reference, tmp_path):
    """openEO use case 3: queue a zonal job on a real Dask cluster, poll, download."""
    from distributed import LocalCluster

    from tests.support.batch import batch_settings, create_job, fetch, status_is, wait_job
    from tileserver.web.app import create_app

    geoms = [g for _, g in REGIONS]
    src = write_vector(tmp_path / "f.geojson", geoms, props={"name": [n for n, _ in REGIONS]})
    graph = {"process_id": "zonal_statistics", "args": {
        "imagery": b04(), "regions": "/users/me/files/fields/", "func": "median"}}
    # an in-process worker shares the test process's memory: a limit there would measure
    # pytest (over 1 GiB late in a full run) and pause the worker, so none is set
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      memory_limit=0, dashboard_address=":0") as cluster:
        app = create_app(batch_settings(tmp_path / "home", [small_catalog],
                                        cluster.scheduler_address))
        try:
            client = app.test_client()
            assert client.put("/users/me/files/fields/f.geojson",
                              data=src.read_bytes()).status_code == 201
            job_id = create_job(client, graph, {"format": "GPKG"})
            assert client.patch(f"/jobs/{job_id}/queue").status_code == 202
            job = wait_job(client, job_id, status_is("finished", "error"))
            assert job["status"] == "finished", client.get(f"/jobs/{job_id}/logs").get_json()
            urls = client.get(f"/jobs/{job_id}/download").get_json()
            gpkg = [u for u in urls if u.endswith(".gpkg")]
            assert len(gpkg) == 1
            path = tmp_path / "batch.gpkg"
            path.write_bytes(fetch(client, gpkg[0]))
        finally:
            app.extensions["tileserver"].close()
    meta, _, _, fields = pyogrio.raw.read(path, layer="regions")
    cols = dict(zip(meta["fields"], fields, strict=True))
    assert list(cols["name"]) == [n for n, _ in REGIONS]
    days = reference[0]
    for ti, day in enumerate(days):
        got = cols[f"median_{day.replace('-', '_')}"]
        for ri, geom in enumerate(geoms):
            value, _ = ref_values(reference, geom, "median")[ti]
            rtol = 0.05 if ti == WARPED_DATE else 1e-9
            assert_allclose(got[ri], value, rtol=rtol, err_msg=f"{REGIONS[ri][0]} {day}")
    assert len(pyogrio.raw.read(path, layer="timeseries")[3][0]) == 3 * len(days)


@requires("python3-qgis")
def test_qgis_opens_both_layers_and_reads_the_series(engine, home, tmp_path):
    import os

    geoms = [g for _, g in REGIONS] + [box(X0 - 9000, Y0 - 9000, X0 - 8000, Y0 - 8000)]
    upload(home, "f.geojson", write_vector(tmp_path / "f.geojson", geoms))
    table = zonal(engine, home, b04())
    path = tmp_path / "out.gpkg"
    path.write_bytes(_encode(table, "GPKG"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GDAL_", "PROJ_", "PYTHON", "VIRTUAL_ENV", "CPL_"))}
    proc = subprocess.run(["/usr/bin/python3", str(QGIS_SCRIPTS / "qgis_gpkg_read.py"),
                           str(path)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    regions, ts = doc["regions"], doc["timeseries"]
    assert regions["valid"] and regions["count"] == 4 and regions["crs"] == "EPSG:32632"
    assert regions["geometry"] == "MultiPolygon"
    assert regions["fields"]["avg_2020_05_01"].lower() in ("real", "double")
    assert ts["valid"] and ts["geometry"] in ("NoGeometry", "Unknown") and ts["count"] == 12
    assert ts["fields"]["date"].lower() == "date"
    labels = table.date_labels()
    for rid, series in doc["series"].items():
        ri = int(rid) - 1
        assert [d for d, _ in series] == labels
        for ti, (_, value) in enumerate(series):
            if np.isnan(table.values[ri, ti, 0]):
                assert value is None
            else:
                assert value == pytest.approx(table.values[ri, ti, 0])


def test_clashing_attribute_names_get_unique_columns(engine, home, tmp_path):
    # GeoPackage column names are case-insensitive: 'Name' and 'name' cannot both exist
    upload(home, "a.geojson", write_vector(tmp_path / "a.geojson", [REGIONS[0][1]], props={
        "Name": ["x"], "AVG_2020_05_01": [1.5], "REGION_ID": [7]}))
    upload(home, "b.geojson", write_vector(tmp_path / "b.geojson", [REGIONS[1][1]], props={
        "name": ["y"]}))
    table = zonal(engine, home, b04())
    path = tmp_path / "out.gpkg"
    path.write_bytes(_encode(table, "GPKG"))
    meta, _, _, fields = pyogrio.raw.read(path, layer="regions")
    names = list(meta["fields"])
    assert len({n.lower() for n in names}) == len(names)
    cols = dict(zip(names, fields, strict=True))
    assert list(cols["Name"]) == ["x", None] and list(cols["attr_name"]) == [None, "y"]
    assert cols["attr_AVG_2020_05_01"][0] == 1.5 and cols["attr_REGION_ID"][0] == 7
    assert_allclose(cols["avg_2020_05_01"], table.values[:, 0, 0])


def test_odd_but_usable_region_files(engine, home):
    """3-D coordinates, list/object/bool attributes, a bow-tie, a degenerate polygon and
    one on the other side of the globe: values or nulls, never a crash."""
    tr = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    (a, b), (c, d) = tr.transform(X0 + 1000, Y0 - 1000), tr.transform(X0 + 1500, Y0 - 1500)
    ring = [[a, b], [c, b], [c, d], [a, d], [a, b]]

    def feat(coords, **props):
        return {"type": "Feature", "properties": props,
                "geometry": {"type": "Polygon", "coordinates": [coords]}}

    fc = {"type": "FeatureCollection", "features": [
        feat([[x, y, 250.0] for x, y in ring], tags=[1, 2], meta={"k": "v"}, ok=True),
        feat([ring[0], ring[2], ring[1], ring[3], ring[0]]),  # bow-tie
        feat([ring[0], ring[1], ring[0], ring[0]]),  # no area
        feat([[170, 10], [171, 10], [171, 11], [170, 10]]),  # outside the UTM zone
    ]}
    upload(home, "odd.geojson", json.dumps(fc).encode())
    table = zonal(engine, home, b04())
    assert np.isfinite(table.values[0]).all() and np.isfinite(table.values[1]).all()
    assert np.isnan(table.values[2:]).all()
    assert table.regions.attributes["tags"][0] == [1, 2]
    for fmt in ("GPKG", "GeoJSON", "CSV", "JSON"):
        assert _encode(table, fmt)
    doc = json.loads(_encode(table, "JSON"))
    assert doc["regions"][0]["properties"]["tags"] == [1, 2]


@pytest.mark.parametrize("func", sorted(REFERENCE))
def test_statistic_null_for_empty_slices_without_warnings(func):
    from tileserver.zonal.stats import statistic

    values = np.array([[[np.nan, np.nan, np.nan]], [[3.0, np.nan, 5.0]], [[7.0, 7.0, 1.0]]])
    out, count = statistic(values, func)
    assert out.shape == count.shape == (3, 1) and list(count[:, 0]) == [0, 2, 3]
    assert np.isnan(out[0, 0])
    assert out[1, 0] == pytest.approx(REFERENCE[func](np.array([3.0, 5.0])))
    assert out[2, 0] == pytest.approx(REFERENCE[func](np.array([7.0, 7.0, 1.0])))
    empty, zero = statistic(np.empty((2, 1, 0)), func)
    assert np.isnan(empty).all() and (zero == 0).all()


def test_overlapping_touching_and_nested_regions_each_get_their_own_pixels(
        engine, reference, home, tmp_path):
    """Regions are rasterised in layers of non-touching polygons: the result must equal
    one rasterisation per polygon, even where they overlap, nest, or share an edge that
    runs through pixel centres."""
    a = poly((200.5, 200.5), (230.5, 200.5), (230.5, 230.5), (200.5, 230.5))
    geoms = [
        a,
        poly((220.2, 220.2), (250.2, 220.2), (250.2, 250.2), (220.2, 250.2)),  # overlaps a
        poly((230.5, 200.5), (260.5, 200.5), (245.5, 215.5)),  # shares a's edge x=230.5
        poly((190.3, 190.3), (240.3, 190.3), (240.3, 240.3), (190.3, 240.3)),  # contains a
        a,  # the same polygon twice
    ]
    upload(home, "f.geojson", write_vector(tmp_path / "f.geojson", geoms))
    table = zonal(engine, home, b04(), func="sum")
    for ri, geom in enumerate(geoms):
        for ti, (value, count) in enumerate(ref_values(reference, geom, "sum")):
            assert table.pixels[ri, ti, 0] == count, (ri, ti)
            rtol = 0.05 if ti == WARPED_DATE else 1e-9
            assert_allclose(table.values[ri, ti, 0], value, rtol=rtol)
    assert_allclose(table.values[4], table.values[0])


def test_dense_regions_are_read_as_one_view_within_the_pixel_budget():
    from tileserver.zonal.stats import plan_views

    # a 4 x 4 grid of 100-px regions covering a 400 x 400 area, 128-px tiles
    dense = {i: (100 * (i % 4), 100 * (i // 4), 100 * (i % 4) + 90, 100 * (i // 4) + 90)
             for i in range(16)}
    one = plan_views(dense, block=128, max_view_pixels=400 * 400)
    assert len(one) == 1 and one[0].window == (0, 0, 390, 390)
    assert sorted(ri for ri, _ in one[0].members) == list(range(16))
    assert len(plan_views(dense, block=128, max_view_pixels=390 * 390 - 1)) > 1  # budget
    sparse = {0: (0, 0, 10, 10), 1: (5000, 5000, 5010, 5010)}
    assert len(plan_views(sparse, block=128, max_view_pixels=10**9)) == 2
