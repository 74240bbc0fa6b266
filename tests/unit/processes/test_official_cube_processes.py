"""The 1.x cube processes against the OFFICIAL per-process tests.

Every case of ``../shared/openeo/processes/tests/<id>.json5`` (Open-EO/openeo-processes
2.0.0-rc.2) runs for every cube process of :data:`CUBE_PROCESSES`, through the real parser
and the real evaluator:

- each datacube argument (a ``$ref`` asset or an inline ``"type": "datacube"``) becomes a
  :class:`~tileserver.datacube.cube.Cube` on the :class:`~tileserver.datacube.view.View` its x/y
  pixel centres and ``reference_system`` describe (values reordered to ``(t, bands, y, x)``,
  the cube's ``nodata`` value as NaN); it enters the graph through a test-only data leaf
  (:data:`LEAF`, registered for the test alone) that answers a query as ``load_collection``
  does: only the dates of the query's time range and the bands it asks for, on its view;
- the case's arguments become a 1.x flat graph (the datacubes as ``from_node`` references
  to leaves), parsed with ``engine.parse(..., dialect="1.x")`` and evaluated on the view of
  the first data cube;
- a case that ``throws`` must raise a :class:`~tileserver.errors.TileserverError` whose
  ``code`` is the exception name; a case that ``returns`` a datacube is compared dimension
  by dimension (names, labels) and value by value (NaN where the expected value is its
  ``nodata``, numbers within the case's ``delta`` or float32 precision).

Representation (our model, :class:`Cube`): dimensions x, y, ``t`` and ``bands`` only, in the
fixed order ``(t, bands, y, x)`` (the order of a test's ``data`` nesting is only how the
values are written, the comparison goes by dimension name). A cube without ``t`` is a
reduced cube (``times`` None); a cube without ``bands`` holds one band with
``has_bands=False`` (as after a band reducer). Band labels are strings (enumerated labels
0, 1, 2 become "0", "1", "2"). A spatial filter keeps the grid of the view and sets the
pixels outside to nodata: the expected x/y labels are found in our grid and every other
pixel must be nodata. ``aggregate_temporal_period`` labels a period by its start date;
the comparison writes that date in the specification's label scheme (``YYYY-MM``,
``YYYY-djf``…).

Cases not run are listed below with the reason: what the model cannot represent
(``UNREPRESENTABLE``), errors of the test cases themselves (``CASE_ERRORS``), and
deliberate deviations (``DEVIATIONS``, run as strict xfails so that they are noticed when
they start passing). Corrections of evident slips are in ``CORRECTIONS``.
"""

from __future__ import annotations

import copy
import functools
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from shapely.geometry import box

from tests.support.openeo import shared_openeo
from tests.support.requirements import NOT_APPLICABLE, require, requires
from tileserver.cache.memory import NodeCache
from tileserver.data.catalog import Band, Catalog, Item, StaticProduct
from tileserver.datacube.cube import Cube
from tileserver.datacube.query import CubeMeta
from tileserver.datacube.view import View
from tileserver.engine.evaluator import Engine
from tileserver.errors import TileserverError
from tileserver.processes import REGISTRY as V1_REGISTRY
from tileserver.processes.registry import Param as V1Param
from tileserver.processes.registry import Process as V1Process

json5 = pytest.importorskip("json5")

#: The 1.x cube processes (cubes.py) whose official test files run here.
CUBE_PROCESSES = (
    "reduce_dimension", "apply", "apply_dimension", "filter_bands", "filter_bbox",
    "filter_temporal", "filter_spatial", "mask", "merge_cubes", "rename_labels", "ndvi",
    "aggregate_temporal_period", "resample_spatial", "load_collection", "save_result",
    "load_stac", "aggregate_spatial",
)

#: The test-only data leaf: ``{"process_id": LEAF, "arguments": {"name": <argument>}}``.
LEAF = "tests_datacube"

# --- cases not run, with the reason ------------------------------------------------------

UNREPRESENTABLE: dict[tuple[str, int], str] = {
    ("aggregate_temporal_period", 0): "the data (xytt-no-data) has two temporal dimensions "
        "(t2, t); our cubes have at most one (t)",
}

CASE_ERRORS: dict[tuple[str, int], str] = {
    ("apply_dimension", 2): "applies over 'bands' of a cube that has none "
        "(xyt-more-timestamps: x, y, t) and expects min, mean and max of each pixel's time "
        "series: it runs over 't' in ADAPTED",
    ("aggregate_temporal_period", 3): "period 'hour' over 00:00, 00:59:59, 01:00, 01:30 and "
        "04:00 of 2020-06-01: expects the labels 2020-06-01-00, 2020-06-02-00, "
        "2020-06-03-00, 2020-06-04-00 (days, not hours) and four periods, one of them "
        "empty, where the complete hours are five (00, 01, 02, 03, 04; 02 and 03 empty)",
    ("filter_bands", 4): "same arguments as case 3 (bands red, blue) but expects the bands "
        "blue and green with their values: the case contradicts case 3 and the process "
        "description (bands are returned in the order given)",
    ("mask", 0): "expects the pixels where the mask is 0 to be replaced and those where it "
        "is 1 kept, but mask.json replaces the pixels 'whose pixels in mask are non-zero'",
    ("mask", 1): "its data asset assets/xyb-minimal-float.json5 does not exist in the "
        "release (and its result has a t dimension that the named asset would not have)",
    ("mask", 2): "same inverted mask as case 0: replaces where the mask is 0, while mask.json "
        "replaces where it is non-zero",
    ("rename_labels", 5): "omits the argument 'target', which rename_labels.json requires "
        "(only 'source' is optional): the graph is invalid (ProcessArgumentRequired)",
    ("rename_labels", 7): "omits the argument 'target', which rename_labels.json requires "
        "(only 'source' is optional): the graph is invalid (ProcessArgumentRequired)",
}

DEVIATIONS: dict[tuple[str, int], str] = {
    ("filter_bands", 2): "deliberate: a band name the data does not have is a 400 "
        "BandNotFound naming the available bands (a typo gets a clear error) instead of an "
        "empty bands dimension",
    ("rename_labels", 0): "deliberate leniency: with target and no source the bands are "
        "renamed in order (tests/unit/graph/test_graph_v1.py relies on it) instead of "
        "LabelsNotEnumerated",
}

#: Evident slips of a case, corrected before it runs: ``(reason, function(case))``.
def _day_labels(case):
    case["returns"]["dimensions"]["t"]["values"] = ["2020-153", "2020-154", "2020-155",
                                                    "2020-156"]


def _nodata_at_0_3(case):
    case["returns"]["data"][0][3] = None


def _blue_nodata_at_0_3(case):
    case["returns"]["data"][2][0][3] = 255


def _quantiles_at_nodata_pixel(case):
    for q, value in enumerate((204.0, 210.0, 213.6)):
        case["returns"]["data"][q][0][3] = value


CORRECTIONS = {
    ("apply_dimension", 1): (
        "at y=5757495, x=404865 blue is 255, the asset's nodata: the quantiles (type 7, as "
        "quantiles.json says) of red 192 and green 216 are 204, 210 and 213.6, where the "
        "case expects 192, 204 and 211.2 (another interpolation, for this pixel only)",
        _quantiles_at_nodata_pixel),
    ("reduce_dimension", 1): (
        "expects red/blue = 192/165 at y=5757495, x=404865, but blue is 255 there, the "
        "asset's nodata (165 is that pixel in xyb-enumerated-bands): the result is nodata",
        _nodata_at_0_3),
    ("apply", 2): (
        "expects 10 x 165 = 1650 for blue at y=5757495, x=404865, but blue is 255 there, the "
        "asset's nodata (165 is that pixel in xyb-enumerated-bands): the result is nodata "
        "(255 in the expected cube)", _blue_nodata_at_0_3),
    ("aggregate_temporal_period", 4): (
        "its expected labels use the hour scheme ('2020-06-01-00'), the day labels of "
        "aggregate_temporal_period.json are YYYY-DDD: 2020-153 … 2020-156", _day_labels),
}


def _rename_dimension(doc: dict, old: str, new: str) -> None:
    """A dimension of an expected datacube renamed (both encodings of the release)."""
    dims = doc["dimensions"]
    if isinstance(dims, list):
        for d in dims:
            if d["name"] == old:
                d["name"] = new
    else:
        doc["dimensions"] = {new if k == old else k: v for k, v in dims.items()}
    if "order" in doc:
        doc["order"] = [new if d == old else d for d in doc["order"]]


def _stats_over_t(case):
    case["arguments"]["dimension"] = "t"


#: Cases that cannot run as written but test what the model can hold when adapted:
#: ``(what changes, function(case))``; run by ``test_official_case_adapted``.
ADAPTED = {
    ("apply_dimension", 2): (
        "the min, mean and max of each pixel's time series over dimension 't', which the "
        "data has, instead of 'bands', which it has not", _stats_over_t),
}
# Also corrected everywhere: ``{"from_argument": name}`` (not part of openEO 1.x graphs; in
# apply#1, reduce_dimension#1, merge_cubes#3) is read as the evident ``from_node`` when a
# node of that graph has that id, else ``from_parameter``; a temporal dimension named
# ``t2`` (aggregate_temporal_period#7-9) is renamed ``t`` in the data, the arguments and the
# expected result (our cubes' temporal dimension is ``t``, as /collections describes it).


# --- the cases ---------------------------------------------------------------------------


def _tests_dir() -> Path | None:
    try:
        return shared_openeo() / "processes" / "tests"
    except pytest.skip.Exception:
        return None


def _cases():
    folder = _tests_dir()
    if folder is None:
        return [pytest.param(None, None, None, marks=requires("openeo-shared"))]
    out = []
    for pid in CUBE_PROCESSES:
        doc = json5.loads((folder / f"{pid}.json5").read_text(encoding="utf-8"))
        if not doc["tests"]:
            reason = f"{NOT_APPLICABLE}the official {pid}.json5 of the release has no test cases"
            out.append(pytest.param(pid, None, None, id=f"{pid}-none",
                                    marks=pytest.mark.skip(reason=reason)))
        for i, case in enumerate(doc["tests"]):
            key = (pid, i)
            marks = ()
            if key in UNREPRESENTABLE:
                why = f"not representable: {UNREPRESENTABLE[key]}"
                marks = (pytest.mark.skip(reason=f"{NOT_APPLICABLE}{why}"),)
            elif key in CASE_ERRORS:
                why = f"error of the test case: {CASE_ERRORS[key]}"
                marks = (pytest.mark.skip(reason=f"{NOT_APPLICABLE}{why}"),)
            elif key in DEVIATIONS:
                marks = (pytest.mark.xfail(strict=True, reason=DEVIATIONS[key]),)
            out.append(pytest.param(pid, i, case, id=f"{pid}-{i}", marks=marks))
    return out


# --- test datacubes -> our cubes ---------------------------------------------------------

TEMPORAL_NAMES = {"t2": "t"}


@functools.cache
def _read_asset(path: Path):
    """An asset file, parsed once (the json5 parser is slow on the larger cubes)."""
    text = path.read_text(encoding="utf-8")
    return json5.loads(text) if path.suffix == ".json5" else text.strip()


def _resolve(value, folder: Path):
    """``{"$ref": "assets/..."}`` -> the asset (a datacube for .json5, else the text)."""
    if isinstance(value, dict) and set(value) == {"$ref"}:
        return copy.deepcopy(_read_asset(folder / value["$ref"]))
    if isinstance(value, dict):
        return {k: _resolve(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, folder) for v in value]
    return value


def _is_cube(value) -> bool:
    return isinstance(value, dict) and value.get("type") == "datacube"


def _dims(doc: dict) -> dict[str, dict]:
    """The dimensions of a test datacube by name (both encodings of the release)."""
    dims = doc["dimensions"]
    if isinstance(dims, list):
        dims = {d["name"]: d for d in dims}
    return {TEMPORAL_NAMES.get(name, name): d for name, d in dims.items()}


def _order(doc: dict) -> list[str]:
    order = doc.get("order") or list(_dims(doc))
    return [TEMPORAL_NAMES.get(name, name) for name in order]


def _nodata(doc: dict) -> float | None:
    nd = doc.get("nodata")
    if isinstance(nd, list):
        nd = nd[0] if nd else None
    return None if nd is None else float(nd)


def _as_array(values) -> np.ndarray:
    """A nested list of numbers, booleans and nulls as float64 (null: NaN)."""
    def num(v):
        if v is None or (isinstance(v, dict) and v.get("type") == "nodata"):
            return math.nan
        return float(v)

    def walk(v):
        return [walk(x) for x in v] if isinstance(v, list) else num(v)

    return np.array(walk(values), dtype=np.float64)


def _time(label: str) -> datetime:
    return datetime.fromisoformat(label.replace("Z", "+00:00")).astimezone(UTC)


def _view(dims: dict[str, dict]) -> View:
    xs, ys = dims["x"]["values"], dims["y"]["values"]
    crs = dims["x"].get("reference_system") or dims["y"].get("reference_system")
    rx = abs(xs[1] - xs[0]) if len(xs) > 1 else 10.0
    ry = abs(ys[1] - ys[0]) if len(ys) > 1 else rx
    assert list(xs) == sorted(xs) and list(ys) == sorted(ys, reverse=True), "north-up grid"
    return View(CRS.from_user_input(crs), (xs[0] - rx / 2, ys[-1] - ry / 2, xs[-1] + rx / 2,
                                           ys[0] + ry / 2), len(xs), len(ys))


def _tbyx(doc: dict, dims: dict, order: list[str]) -> np.ndarray:
    """A test datacube's values (in ``order``) as (t, bands, y, x), nodata as NaN."""
    values = _as_array(doc["data"])
    nodata = _nodata(doc)
    if nodata is not None and not math.isnan(nodata):
        values[values == nodata] = np.nan
    full = ["t", "bands", "y", "x"]
    values = values.reshape([len(dims[d]["values"]) for d in order])
    for d in full:
        if d not in order:
            values = values[None]
            order = [d, *order]
    return np.transpose(values, [order.index(d) for d in full])


def to_cube(doc: dict) -> tuple[Cube, bool]:
    """A test datacube as ``(Cube, has_bands)``; skips what the model cannot hold."""
    dims, order = _dims(doc), _order(doc)
    extra = sorted(set(dims) - {"x", "y", "t", "bands"})
    if extra or not {"x", "y"} <= set(dims):
        pytest.skip(f"{NOT_APPLICABLE}not representable: a datacube with the dimensions "
                    f"{sorted(dims)} (our cubes have x, y and optionally t and bands)")
    view = _view(dims)
    times = tuple(_time(v) for v in dims["t"]["values"]) if "t" in dims else None
    has_bands = "bands" in dims
    bands = tuple(str(v) for v in dims["bands"]["values"]) if has_bands else ("value",)
    values = _tbyx(doc, dims, order)
    return Cube(values.astype(np.float32), times, bands, view), has_bands


def _product(name: str, cube: Cube) -> StaticProduct:
    """What the catalog would say about the test cube (bands, CRS, footprint, dates)."""
    res = cube.view.res[0]
    bands = {b: Band(b, "float32", math.nan, res, common_name=b if b in (
        "blue", "green", "red", "nir") else None) for b in cube.bands}
    footprint = box(*transform_bounds(cube.view.crs, CRS.from_epsg(4326), *cube.view.bounds))
    dates = cube.times or (datetime(2000, 1, 1, tzinfo=UTC),)
    items = [Item(f"{name}-{i}", t, footprint, {}, _crs=cube.view.crs)
             for i, t in enumerate(dates)]
    return StaticProduct(name, f"test datacube {name}", None, bands, items)


class Leaves:
    """The test datacubes of one case, served to the engine by the :data:`LEAF` process."""

    def __init__(self):
        self.cubes: dict[str, tuple[Cube, bool, StaticProduct]] = {}
        self.queries: list = []

    def add(self, name: str, doc: dict) -> Cube:
        cube, has_bands = to_cube(doc)
        self.cubes[name] = (cube, has_bands, _product(name, cube))
        return cube

    def meta(self, ctx, node) -> CubeMeta:
        cube, has_bands, product = self.cubes[node.args["name"]]
        return CubeMeta(product, cube.bands, cube.bands, reduced=cube.times is None,
                        has_bands=has_bands)

    def evaluate(self, ctx, node, query) -> Cube:
        """As ``load_collection`` reads: the query's dates and bands, on its view."""
        cube, _, _ = self.cubes[node.args["name"]]
        self.queries.append(query)
        assert query.view == cube.view, "the case is evaluated on the cube's own grid"
        data, times = cube.data, cube.times
        if times is not None and query.time is not None:
            keep = [i for i, t in enumerate(times) if query.time[0] <= t <= query.time[1]]
            data, times = data[keep], tuple(times[i] for i in keep)
        bands = cube.bands
        if query.bands is not None:
            pick = [cube.bands.index(b) for b in query.bands if b in cube.bands]
            if pick:
                data, bands = data[:, pick], tuple(cube.bands[i] for i in pick)
        return Cube(np.array(data, dtype=np.float32), times, bands, cube.view)


# --- the graph ---------------------------------------------------------------------------


def _fix_refs(graph: dict) -> dict:
    """``from_argument`` (a slip of some cases) as ``from_node``/``from_parameter``."""
    nodes = graph.get("process_graph", {})

    def walk(v):
        if isinstance(v, dict):
            if set(v) == {"from_argument"}:
                name = v["from_argument"]
                return {"from_node": name} if name in nodes else {"from_parameter": name}
            if "process_graph" in v and len(v) == 1:
                return {"process_graph": _fix_refs(v)["process_graph"]}
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return {"process_graph": {nid: {**n, "arguments": walk(n.get("arguments", {}))}
                              for nid, n in nodes.items()}}


def build(pid: str, case: dict, folder: Path, leaves: Leaves) -> tuple[dict, View]:
    """The case as a 1.x flat graph over test leaves, and the view to evaluate it on."""
    nodes: dict[str, dict] = {}
    args: dict = {}
    view = None
    for name, value in case["arguments"].items():
        value = _resolve(value, folder)
        if _is_cube(value):
            cube = leaves.add(name, value)
            view = view or cube.view
            nodes[f"leaf_{name}"] = {"process_id": LEAF, "arguments": {"name": name}}
            args[name] = {"from_node": f"leaf_{name}"}
        elif isinstance(value, dict) and "process_graph" in value:
            args[name] = _fix_refs(value)
        elif name == "dimension" and value in TEMPORAL_NAMES:
            args[name] = TEMPORAL_NAMES[value]
        else:
            args[name] = value
    nodes["under_test"] = {"process_id": pid, "arguments": args, "result": True}
    assert view is not None, "every case here has a datacube argument"
    return nodes, view


# --- the comparison ----------------------------------------------------------------------

_SEASONS = {12: "djf", 3: "mam", 6: "jja", 9: "son"}


def period_label(t: datetime, period: str) -> str:
    """A period's start date in the label scheme of aggregate_temporal_period.json."""
    if period == "hour":
        return t.strftime("%Y-%m-%d-%H")
    if period == "day":
        return f"{t.year:04d}-{t.timetuple().tm_yday:03d}"
    if period == "week":
        year, week, _ = t.isocalendar()
        return f"{year:04d}-{week:02d}"
    if period == "dekad":
        return f"{t.year:04d}-{(t.month - 1) * 3 + (t.day - 1) // 10 + 1:02d}"
    if period == "month":
        return t.strftime("%Y-%m")
    if period == "season":
        return f"{t.year:04d}-{_SEASONS[t.month]}"
    if period == "tropical-season":
        return f"{t.year:04d}-{'ndjfma' if t.month == 11 else 'mjjaso'}"
    if period in ("year", "decade", "decade-ad"):
        return f"{t.year:04d}"
    raise AssertionError(period)


def _time_labels(cube: Cube, pid: str, case: dict) -> list[str]:
    if pid == "aggregate_temporal_period":
        return [period_label(t, case["arguments"]["period"]) for t in cube.times]
    return [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in cube.times]


def _expected_time(label: str) -> str:
    """A date-time label written as ours are (period labels are compared as they are)."""
    return _time(label).strftime("%Y-%m-%dT%H:%M:%SZ") if "T" in label else label


def compare(result: Cube, has_bands: bool, expected: dict, pid: str, case: dict,
            band_dim: str = "bands") -> None:
    """Our cube equals the expected datacube (dimensions, labels, values); ``band_dim``:
    the name of the dimension on our band axis."""
    dims = _dims(expected)
    ours = {"x", "y"} | ({"t"} if result.times is not None else set()) | (
        {band_dim} if has_bands else set())
    assert ours == set(dims), f"dimensions: ours {sorted(ours)}, expected {sorted(dims)}"
    if band_dim != "bands" and has_bands:
        expected = copy.deepcopy(expected)
        _rename_dimension(expected, band_dim, "bands")
    dims, order = _dims(expected), _order(expected)
    if "t" in dims:
        assert _time_labels(result, pid, case) == [_expected_time(v) for v in
                                                   dims["t"]["values"]], "t labels"
    if "bands" in dims:
        assert list(result.bands) == [str(v) for v in dims["bands"]["values"]], "band labels"
    view = result.view
    crs = dims["x"].get("reference_system") or dims["y"].get("reference_system")
    if crs:
        assert view.crs == CRS.from_user_input(crs), "reference system"
    # x/y: the expected pixel centres in our grid; every other pixel must be nodata
    inv = ~view.transform
    cols = [int(math.floor((inv * (x, view.bounds[3]))[0])) for x in dims["x"]["values"]]
    rows = [int(math.floor((inv * (view.bounds[0], y))[1])) for y in dims["y"]["values"]]
    for x, c in zip(dims["x"]["values"], cols, strict=True):
        assert 0 <= c < view.width and abs((view.transform * (c + 0.5, 0))[0] - x) < 1e-6, \
            f"x {x} is not a pixel centre of the result"
    for y, r in zip(dims["y"]["values"], rows, strict=True):
        assert 0 <= r < view.height and abs((view.transform * (0, r + 0.5))[1] - y) < 1e-6, \
            f"y {y} is not a pixel centre of the result"
    outside = np.ones((view.height, view.width), dtype=bool)
    outside[np.ix_(rows, cols)] = False
    assert np.isnan(result.data[:, :, outside]).all(), \
        "pixels outside the expected x/y labels must be nodata"
    if expected.get("data") is None:
        return  # the case checks labels only
    values = _tbyx(expected, dims, order)
    actual = result.data[:, :, rows][:, :, :, cols].astype(np.float64)
    assert actual.shape == values.shape, f"shape: ours {actual.shape}, expected {values.shape}"
    delta = case.get("delta", 1e-10)
    tol = np.maximum(delta, 1e-5 * np.maximum(1.0, np.abs(np.nan_to_num(values))))
    same_nan = np.isnan(actual) == np.isnan(values)
    close = np.isnan(values) | (np.abs(actual - values) <= tol)
    bad = ~(same_nan & close)
    assert not bad.any(), (
        f"{int(bad.sum())} values differ, e.g. at (t, b, y, x) {tuple(np.argwhere(bad)[0])}: "
        f"ours {actual[tuple(np.argwhere(bad)[0])]!r}, expected "
        f"{values[tuple(np.argwhere(bad)[0])]!r}")


# --- the test ----------------------------------------------------------------------------


@pytest.fixture
def leaves(monkeypatch) -> Leaves:
    out = Leaves()
    monkeypatch.setitem(V1_REGISTRY, LEAF, V1Process(
        LEAF, (V1Param("name"),), out.evaluate, out.meta))
    return out


@pytest.mark.parametrize(("pid", "index", "case"), _cases())
def test_official_case(pid, index, case, leaves):
    folder = _tests_dir()
    case = copy.deepcopy(case)
    if (pid, index) in CORRECTIONS:
        CORRECTIONS[(pid, index)][1](case)
    for value in case["arguments"].values():
        ref = value.get("$ref") if isinstance(value, dict) else None
        if ref and not (folder / ref).is_file():
            pytest.fail(f"asset {ref} is missing")
    graph, view = build(pid, case, folder, leaves)
    engine = Engine(Catalog({}), NodeCache(64 * 1024 * 1024))
    throws = case.get("throws")
    if throws and "returns" not in case:
        with pytest.raises(TileserverError) as info:
            g = engine.parse(graph, dialect="1.x")
            engine.evaluate(g, view)
        if isinstance(throws, str):
            assert info.value.code == throws, info.value.message
        return
    g = engine.parse(graph, dialect="1.x")
    result = engine.evaluate(g, view)
    assert isinstance(result, Cube)
    expected = _resolve(case["returns"], folder)
    compare(result, g.meta.has_bands, expected, pid, case, g.meta.band_dim)


@pytest.mark.parametrize("key", sorted(ADAPTED), ids=lambda k: f"{k[0]}-{k[1]}")
def test_official_case_adapted(key, leaves):
    """The cases of ADAPTED, changed as their entry says, run as the others."""
    folder = _tests_dir()
    if folder is None:
        require("openeo-shared")
    pid, index = key
    doc = json5.loads((folder / f"{pid}.json5").read_text(encoding="utf-8"))
    case = copy.deepcopy(doc["tests"][index])
    ADAPTED[key][1](case)
    graph, view = build(pid, case, folder, leaves)
    engine = Engine(Catalog({}), NodeCache(64 * 1024 * 1024))
    g = engine.parse(graph, dialect="1.x")
    result = engine.evaluate(g, view)
    compare(result, g.meta.has_bands, _resolve(case["returns"], folder), pid, case,
            g.meta.band_dim)


def test_the_leaf_answers_queries_like_load_collection(leaves):
    """The harness's data leaf: only the dates and bands a query asks for."""
    folder = _tests_dir()
    if folder is None:
        require("openeo-shared")
    graph = {"a": {"process_id": LEAF, "arguments": {"name": "data"}},
             "f": {"process_id": "filter_temporal", "arguments": {
                 "data": {"from_node": "a"}, "extent": ["2020-06-02", "2020-06-06"]}},
             "b": {"process_id": "filter_bands", "arguments": {
                 "data": {"from_node": "f"}, "bands": ["nir"]}, "result": True}}
    leaves.add("data", _resolve({"$ref": "assets/xytb-s2-small.json5"}, folder))
    engine = Engine(Catalog({}))
    cube = engine.evaluate(engine.parse(graph, dialect="1.x"),
                           leaves.cubes["data"][0].view)
    assert cube.bands == ("nir",)
    assert [t.day for t in cube.times] == [3]
    assert leaves.queries[-1].bands == ("nir",)


def test_the_comparison_catches_wrong_values_labels_and_pixels():
    """``compare`` fails on a changed value, label or nodata pixel (the harness can fail)."""
    folder = _tests_dir()
    if folder is None:
        require("openeo-shared")
    doc = _resolve({"$ref": "assets/xyt-minimal-float.json5"}, folder)
    cube, has_bands = to_cube(doc)
    case = {"arguments": {}}
    compare(cube, has_bands, doc, "apply", case)  # itself: equal
    wrong = copy.deepcopy(doc)
    wrong["data"][1][0][0] += 0.01
    with pytest.raises(AssertionError, match="values differ"):
        compare(cube, has_bands, wrong, "apply", case)
    wrong = copy.deepcopy(doc)
    wrong["data"][0][0][0] = None
    with pytest.raises(AssertionError, match="values differ"):
        compare(cube, has_bands, wrong, "apply", case)
    wrong = copy.deepcopy(doc)
    wrong["dimensions"]["t"]["values"][1] = "2020-06-04T00:00:00Z"
    with pytest.raises(AssertionError, match="t labels"):
        compare(cube, has_bands, wrong, "apply", case)
    cropped = copy.deepcopy(doc)  # a spatial filter's result: one column less
    cropped["dimensions"]["x"]["values"] = cropped["dimensions"]["x"]["values"][1:]
    cropped["data"] = [[row[1:] for row in plane] for plane in cropped["data"]]
    with pytest.raises(AssertionError, match="outside the expected x/y labels"):
        compare(cube, has_bands, cropped, "apply", case)
    with pytest.raises(AssertionError, match="dimensions"):
        compare(cube, True, doc, "apply", case)
