"""What the cube processes share: the names of the dimensions, the argument helpers
(extents, bands, dimensions, labels, errors) and the bbox checks, masking and normalised
difference that the 0.0.2 translations use too."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.features import geometry_mask
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape

from tileserver.datacube.bounds import transform_bounds
from tileserver.datacube.cube import Cube
from tileserver.datacube.query import CubeMeta
from tileserver.errors import BandNotFound, ProcessArgumentInvalid, ProcessGraphError
from tileserver.graph.nodes import Node
from tileserver.params import parse_iso_date as parse_date
from tileserver.processes.array.common import LabeledArray
from tileserver.processes.registry import Param

#: The names of the temporal and band dimensions, as ``GET /collections`` describes them.
TIME_DIMS = ("t",)
BAND_DIMS = ("bands",)
WGS84 = CRS.from_epsg(4326)

DATA_PARAM = Param("data", "cube")
CONTEXT_PARAM = Param("context", required=False)


def invalid_argument(node: Node, name: str, why: str, code: str | None = None
                     ) -> ProcessArgumentInvalid:
    """The error of an argument; ``code``: the exception the process description names
    for it (``DimensionNotAvailable``…), else ``ProcessArgumentInvalid``."""
    return ProcessArgumentInvalid(
        f"node '{node.path}': argument {name!r} of {node.process_id}: {why}",
        path=node.arg_path(name), code=code)


def context_value(value: Any) -> Any:
    """A ``context`` argument as the callback receives it (``None`` for a node)."""
    return value if not isinstance(value, Node) else None


def crs_argument(node: Node, name: str, value: Any) -> CRS:
    """The CRS of an extent (an EPSG code or any CRS text; ``None``: WGS84)."""
    if value is None:
        return WGS84
    if isinstance(value, bool):
        raise invalid_argument(node, name, f"crs {value!r} is not a CRS")
    try:
        return CRS.from_epsg(value) if isinstance(value, int) else CRS.from_user_input(value)
    except (CRSError, TypeError, ValueError):
        raise invalid_argument(
            node, name, f"crs {value!r} is not a known CRS (an EPSG code such as "
            "32632)") from None


def spatial_extent(node: Node, name: str, value: Any):
    """``(bounds, crs, geometry)`` of a bounding box object or a GeoJSON geometry."""
    if not isinstance(value, dict):
        raise invalid_argument(
            node, name, "expected a bounding box {west, south, east, north, crs} "
            "or a GeoJSON object")
    if "type" in value:
        geoms = geojson_geometries(node, name, value)
        union = shape(geoms[0])
        for g in geoms[1:]:
            union = union.union(shape(g))
        if union.is_empty:
            raise invalid_argument(node, name, "the geometry is empty")
        geometry = {"type": "GeometryCollection", "geometries": geoms} if len(geoms) > 1 \
            else geoms[0]
        return tuple(union.bounds), WGS84, geometry
    missing = [k for k in ("west", "south", "east", "north") if k not in value]
    if missing:
        raise invalid_argument(node, name, f"missing {', '.join(missing)}")
    nums = []
    for key in ("west", "south", "east", "north"):
        v = value[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise invalid_argument(node, name, f"{key} must be a finite number, got {v!r}")
        nums.append(float(v))
    west, south, east, north = nums
    if west >= east or south >= north:
        raise invalid_argument(node, name, f"empty or inverted extent: west {west} must be < east "
                               f"{east} and south {south} < north {north}")
    return (west, south, east, north), crs_argument(node, name, value.get("crs")), None


def geojson_geometries(node: Node, name: str, obj: dict, points: bool = False
                       ) -> list[dict]:
    """The GeoJSON polygons of ``obj`` (and points, when ``points``), validated."""
    kind = obj.get("type")
    if kind == "FeatureCollection":
        out = []
        for f in obj.get("features") or []:
            out += geojson_geometries(node, name, f, points)
        if not out:
            raise invalid_argument(node, name, "the FeatureCollection has no features")
        return out
    if kind == "Feature":
        return geojson_geometries(node, name, obj.get("geometry") or {}, points)
    if points and kind in ("Point", "MultiPoint"):
        try:
            geom = shape(obj)
        except Exception:  # noqa: BLE001 - shapely's errors vary with the input
            raise invalid_argument(node, name, f"not a valid GeoJSON {kind}") from None
        if geom.is_empty or not all(math.isfinite(v) for v in geom.bounds):
            raise invalid_argument(node, name, f"not a valid GeoJSON {kind}")
        return [obj]
    if kind in ("Polygon", "MultiPolygon"):
        try:
            geom = shape(obj)
        except Exception:  # noqa: BLE001 - shapely's errors vary with the input
            raise invalid_argument(node, name, "not a valid GeoJSON polygon") from None
        if not geom.is_valid or geom.is_empty:
            raise invalid_argument(node, name, "not a valid GeoJSON polygon")
        return [obj]
    raise invalid_argument(node, name, f"GeoJSON type {kind!r} is not supported (Polygon, "
                           "MultiPolygon" + (", Point, MultiPoint" if points else "") +
                           ", Feature or FeatureCollection of them)")


def temporal_extent(node: Node, name: str, value: Any) -> tuple[datetime, datetime] | None:
    """An inclusive ``(start, end)`` for a 1.x ``[start, end)`` interval (``None`` = open)."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise invalid_argument(node, name, "expected an interval [start, end] (either may be null)")
    start, end = value
    if start is None and end is None:
        raise invalid_argument(node, name, "start and end cannot both be null")
    try:
        t0 = parse_date(start) if start is not None else datetime(1, 1, 1, tzinfo=UTC)
        t1 = (parse_date(end) - timedelta(microseconds=1)) if end is not None else datetime(
            9999, 12, 31, tzinfo=UTC)
    except (ValueError, AttributeError, TypeError):
        raise invalid_argument(
            node, name, f"{value!r} is not an interval of ISO 8601 dates") from None
    if t0 > t1:
        raise invalid_argument(node, name, f"start {start} is not before end {end} (the end is "
                               "excluded)", "TemporalExtentEmpty" if node.process_id ==
                               "filter_temporal" else None)
    return t0, t1


NIR_FALLBACKS = {"nir": ("nir08", "nir09")}


def resolve_band(product, available: tuple[str, ...], name: Any, node: Node, arg: str) -> str:
    """A band id from a band name or a common name (``red``, ``nir``)."""
    if isinstance(name, str):
        if name in available:
            return name
        def common(b):
            return product.bands[b].common_name if b in product.bands else None

        # "nir" is also the narrow NIR bands (nir08, nir09) when there is no broad one, as
        # on a 20 m Sentinel-2 product without B08: the client's ndvi() asks for "nir"
        for wanted in (name, *NIR_FALLBACKS.get(name, ())):
            matches = [b for b in available if common(b) == wanted]
            if matches:
                return matches[0]
    names = [f"{b} ({product.bands[b].common_name})" if b in product.bands and
             product.bands[b].common_name else b for b in available]
    raise BandNotFound(f"node '{node.path}': argument {arg!r}: band {name!r} is not in the "
                       f"data; available: {', '.join(names)}", path=node.arg_path(arg))


def dimension_argument(node: Node, meta: CubeMeta, name: str = "dimension") -> str:
    """The axis (``t`` or ``bands``) of the dimension an argument names."""
    dim = node.args.get(name)
    if dim in TIME_DIMS:
        if meta.reduced:
            raise invalid_argument(node, name, "the temporal dimension was already reduced",
                                   "DimensionNotAvailable")
        return "t"
    if dim == meta.band_dim:
        if not meta.has_bands:
            raise invalid_argument(node, name, f"the {dim} dimension was already reduced",
                                   "DimensionNotAvailable")
        return "bands"
    if dim in ("x", "y"):
        raise invalid_argument(node, name, f"dimension {dim!r} cannot be used here (spatial "
                               "dimensions are kept for tiles and coverages)")
    dims = [d for d, present in (("t", not meta.reduced), (meta.band_dim, meta.has_bands))
            if present]
    raise invalid_argument(
        node, name, f"the data cube has no dimension {dim!r}; its dimensions are "
        f"x, y{''.join(', ' + d for d in dims)}", "DimensionNotAvailable")


def labels_of(cube: Cube, dim: str) -> tuple:
    """The labels of a cube's dimension (dates as ISO 8601 texts, or band names)."""
    if dim == "t":
        return tuple(t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in (cube.times or ()))
    return tuple(cube.bands)


def labeled(values: np.ndarray, labels: tuple):
    """Values along a dimension with its labels, as callbacks receive them."""
    return LabeledArray(values, labels)


def as_float32(value: Any, shape: tuple[int, ...], node: Node) -> np.ndarray:
    """A callback's result as float32 of ``shape`` (broadcast), else a 400."""
    out = np.asarray(value.values if hasattr(value, "values") and not isinstance(
        value, np.ndarray) else value)
    if out.dtype == object:
        raise invalid_argument(node, "process", "the callback returned something that is not a "
                               "number or an array of numbers")
    try:
        return np.broadcast_to(out.astype(np.float32, copy=False), shape)
    except ValueError:
        raise invalid_argument(node, "process", f"the callback returned an array of shape "
                               f"{out.shape}, expected {shape}") from None


def check_bbox_area(node, bounds, crs: CRS, product_crs: CRS) -> None:
    """A 400 when the bbox is outside its CRS's valid range or cannot reach the data's CRS
    (e.g. UTM metres given with ``srs`` EPSG:4326)."""
    path = f"{node.path}.args"
    if crs.is_geographic and not (-360 <= bounds[0] and bounds[2] <= 360
                                  and -90 <= bounds[1] and bounds[3] <= 90):
        raise ProcessGraphError(
            f"{path}: bbox {bounds} is outside the longitude/latitude range of "
            f"{node.args.get('srs') or 'EPSG:4326'} (are these projected coordinates? "
            "then set 'srs')", path=f"{path}.srs")
    try:
        moved = transform_bounds(crs, product_crs, *bounds, densify_pts=21)
    except Exception:  # noqa: BLE001 - PROJ refuses
        moved = (float("nan"),) * 4
    if not all(np.isfinite(moved)):
        raise ProcessGraphError(
            f"{path}: bbox {bounds} in {node.args.get('srs') or 'EPSG:4326'} cannot be "
            f"transformed to the data's CRS {product_crs.to_string()}", path=f"{path}.srs")


def intersect_inner(node, bounds, crs: CRS, child) -> tuple[float, float, float, float]:
    """A filter_bbox below this one narrows the extent: the native extent is the overlap."""
    if child.bbox is None or child.srs is None:
        return bounds
    inner = child.bbox
    if child.srs != crs:
        try:
            inner = transform_bounds(child.srs, crs, *inner, densify_pts=21)
        except Exception:  # noqa: BLE001 - not representable: keep this bbox
            return bounds
        if not all(np.isfinite(inner)):
            return bounds
    out = (max(bounds[0], inner[0]), max(bounds[1], inner[1]),
           min(bounds[2], inner[2]), min(bounds[3], inner[3]))
    if out[0] >= out[2] or out[1] >= out[3]:
        raise ProcessGraphError(
            f"{node.path}.args: the bbox does not overlap the bbox of the filter_bbox below it "
            "(the result would be empty)", path=f"{node.path}.args")
    return out


def mask_outside(cube, bounds, crs: CRS, geometry: dict | None = None):
    """Pixels whose centre lies outside ``bounds`` (or ``geometry``, GeoJSON in ``crs``)
    become nodata; a view entirely inside is returned untouched (no copy)."""
    view = cube.view
    try:
        vb = transform_bounds(view.crs, crs, *view.bounds, densify_pts=21)
        inside = (vb[0] >= bounds[0] and vb[1] >= bounds[1]
                  and vb[2] <= bounds[2] and vb[3] <= bounds[3])
    except Exception:  # noqa: BLE001 - view not representable in the bbox CRS
        inside = False
    if inside and geometry is None:
        return cube
    if geometry is None:
        geometry = mapping(box(*bounds).segmentize(
            max(bounds[2] - bounds[0], bounds[3] - bounds[1]) / 64))
    try:
        geom = transform_geom(crs, view.crs, geometry)
        outside = geometry_mask([geom], (view.height, view.width), view.transform)
    except Exception:  # noqa: BLE001
        outside = np.ones((view.height, view.width), dtype=bool)
    if not outside.any():
        return cube
    data = cube.data.copy()
    data[:, :, outside] = np.nan
    return cube.with_data(data)


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)`` as float32; nodata where either is nodata or both are 0."""
    den = np.add(a, b, dtype=np.float32)
    out = np.subtract(a, b, dtype=np.float32)  # divided in place: no other full-size copy
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(out, den, out=out)
    out[~np.isfinite(den) | (den == 0)] = np.nan  # nodata, or both 0
    return out
