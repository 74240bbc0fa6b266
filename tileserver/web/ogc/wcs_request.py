"""WCS GetCoverage parameters turned into a :class:`CoverageRequest` (no HTTP).

The coverage's *native grid* is the engine's native view of the graph. A GetCoverage
(2.0.1 ``SUBSET``/``SUBSETTINGCRS``/``OUTPUTCRS``/``SCALESIZE``/``SCALEFACTOR``/
``SCALEAXES``/``RANGESUBSET``, the openEO form ``SUBSET=x,<crs>(a,b)&SIZE=x(n)``, or
1.0.0 ``BBOX``/``CRS``/``RESPONSE_CRS``/``WIDTH``/``HEIGHT``/``RESX``/``RESY``/``TIME``)
becomes a :class:`CoverageRequest`: the output :class:`View`, the time range and the
fields to return. Rules:

- trims in the native CRS keep the native pixels whose centres lie in the interval (the
  grid is never shifted); trims in another CRS are taken as given;
- the output CRS is ``OUTPUTCRS``, else ``SUBSETTINGCRS``, else the native CRS;
- with no scaling, the output has the native resolution (estimated in another CRS);
- a slice on x or y gives one pixel; a slice on time picks the date of that UTC day;
- a coverage with dates answers its latest date unless the request subsets time (the
  default value of its time dimension, as GeoServer does; a GeoTIFF is two-dimensional),
  a trim over several dates answers one band per date and field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from rasterio.crs import CRS

from tileserver import params
from tileserver.datacube.bounds import transform_bounds
from tileserver.datacube.view import View
from tileserver.engine.evaluator import day_key
from tileserver.errors import (
    InvalidAxisLabel,
    InvalidExtent,
    InvalidParameterValue,
    InvalidScaleFactor,
    InvalidSubsetting,
    MissingParameterValue,
    NoSuchField,
    OutputCrsNotSupported,
    SubsettingCrsNotSupported,
)
from tileserver.maps.coverage import (
    Coverage,
    CoverageRequest,
    check_budget,
    crs_code,
    parse_crs,
)
from tileserver.web.ogc.kvp import Kvp

TIME_LABELS = ("time", "t", "ansi", "date")
_X_ALIASES = {"x", "e", "east", "easting", "lon", "long", "longitude", "i"}
_Y_ALIASES = {"y", "n", "north", "northing", "lat", "latitude", "j"}
#: Pixel fraction tolerated when snapping trims to the native grid.
_EPS = 1e-6


@dataclass
class _Subset:
    axis: str
    crs: str | None
    low: str | None
    high: str | None
    point: str | None


_SUBSET_RE = re.compile(r"^\s*([^,()\s]+)\s*(?:,\s*([^()]*?))?\s*\((.*)\)\s*$")


def parse_subset(text: str) -> _Subset:
    """``axis[,crs](low,high)`` or ``axis[,crs](point)``."""
    match = _SUBSET_RE.match(text)
    if not match:
        raise InvalidSubsetting(f"SUBSET {text!r} is not of the form axis(low,high) or "
                                "axis(point)", locator="subset")
    axis, crs, inner = match.groups()
    parts = [p.strip().strip('"').strip("'") for p in inner.split(",")]
    if len(parts) == 1:
        return _Subset(axis, crs or None, None, None, parts[0])
    if len(parts) == 2:
        return _Subset(axis, crs or None, parts[0], parts[1], None)
    raise InvalidSubsetting(f"SUBSET {text!r} has {len(parts)} values", locator="subset")


def _axis_kind(cov: Coverage, label: str, locator: str) -> str:
    """``x``, ``y`` or ``time`` for an axis label (native labels, x/y, E/N, Long/Lat)."""
    low = label.lower()
    labels, north_first, _ = cov.axes
    native = {labels[0].lower(): "y" if north_first else "x",
              labels[1].lower(): "x" if north_first else "y"}
    if low in native:
        return native[low]
    if low in _X_ALIASES:
        return "x"
    if low in _Y_ALIASES:
        return "y"
    if low in TIME_LABELS:
        if cov.times is None:
            raise InvalidAxisLabel(f"coverage {cov.id} has no time axis (its time axis "
                                   "was reduced)", locator=locator)
        return "time"
    known = [*labels, *(["time"] if cov.times is not None else [])]
    raise InvalidAxisLabel(f"axis {label!r} is not an axis of coverage {cov.id}; its axes "
                           f"are {', '.join(known)}", locator=locator)


def _number(text: str, locator: str, error=InvalidSubsetting) -> float:
    return params.number(text, locator, error=error)


def _day_range(day: datetime) -> tuple[datetime, datetime]:
    start = datetime.combine(day.date(), time.min, tzinfo=UTC)
    return start, start + timedelta(days=1) - timedelta(microseconds=1)


def select_times(cov: Coverage, subset: _Subset | list[str]) -> tuple[datetime, ...]:
    """The dates a time subset (2.0) or a ``TIME`` list (1.0) keeps."""
    times = cov.times or ()

    def date(text: str, end: bool = False) -> datetime:
        return params.date(text, "time", end=end, error=InvalidSubsetting)

    if isinstance(subset, list):
        days = {day_key(date(t)) for t in subset}
        keep = tuple(t for t in times if day_key(t) in days)
    elif subset.point is not None:
        day = day_key(date(subset.point))
        keep = tuple(t for t in times if day_key(t) == day)
    else:
        lo = date(subset.low) if subset.low not in (None, "*") else None
        hi = date(subset.high, end=True) if subset.high not in (None, "*") else None
        if lo and hi and lo > hi:
            raise InvalidSubsetting(f"time subset low {subset.low} is after high "
                                    f"{subset.high}", locator="time")
        keep = tuple(t for t in times if (lo is None or t >= lo) and (hi is None or t <= hi))
    if not keep:
        available = ", ".join(day_key(t) for t in times) or "none"
        raise InvalidSubsetting(f"the time subset selects no date of coverage {cov.id}; "
                                f"its dates are {available}", locator="time")
    return keep


def reproject_bounds(bounds, src: CRS, dst: CRS, error=InvalidSubsetting,
                     locator: str = "subsettingcrs") -> tuple[float, float, float, float]:
    """``bounds`` from ``src`` to ``dst``, or ``error`` when ``dst`` cannot express them."""
    if src == dst:
        return tuple(bounds)  # type: ignore[return-value]
    try:
        out = transform_bounds(src, dst, *bounds, densify_pts=21)
    except Exception as exc:  # noqa: BLE001 - outside the CRS's area of use
        raise error(f"the area cannot be expressed in {crs_code(dst)}: {exc}",
                    locator=locator) from None
    if not all(math.isfinite(v) for v in out) or out[0] >= out[2] or out[1] >= out[3]:
        raise error(f"the area cannot be expressed in {crs_code(dst)}", locator=locator)
    return out


def _extent_in(cov: Coverage, crs: CRS) -> tuple[float, float, float, float]:
    return reproject_bounds(cov.view.bounds, cov.view.crs, crs)


def _trim(axis: str, full: tuple[float, float], sub: _Subset) -> tuple[float, float, bool]:
    """``(low, high, sliced)`` of a spatial subset, clipped to the coverage."""
    lo_full, hi_full = full
    if sub.point is not None:
        p = _number(sub.point, axis)
        if not lo_full <= p <= hi_full:
            raise InvalidSubsetting(f"slice point {p} on {sub.axis} is outside the coverage "
                                    f"[{lo_full}, {hi_full}]", locator=sub.axis)
        return p, p, True
    lo = lo_full if sub.low in (None, "*") else _number(sub.low, sub.axis)
    hi = hi_full if sub.high in (None, "*") else _number(sub.high, sub.axis)
    if lo > hi:
        raise InvalidSubsetting(f"subset on {sub.axis}: low {lo} is greater than high {hi}",
                                locator=sub.axis)
    if hi < lo_full or lo > hi_full or (lo == hi):
        raise InvalidSubsetting(f"subset on {sub.axis} [{lo}, {hi}] does not intersect the "
                                f"coverage [{lo_full}, {hi_full}]", locator=sub.axis)
    return max(lo, lo_full), min(hi, hi_full), False


def _snap(lo: float, hi: float, origin: float, res: float, sliced: bool, n: int
          ) -> tuple[float, float]:
    """Native pixels (along one axis, origin at the low edge) whose centres are in
    ``[lo, hi]``; a slice keeps the pixel containing the point."""
    if sliced:
        k = min(n - 1, max(0, math.floor((lo - origin) / res)))
        return origin + k * res, origin + (k + 1) * res
    first = max(0, math.ceil((lo - origin) / res - 0.5 - _EPS))
    last = min(n - 1, math.floor((hi - origin) / res - 0.5 + _EPS))
    if last < first:
        raise InvalidSubsetting(f"the subset [{lo}, {hi}] contains no pixel centre",
                                locator="subset")
    return origin + first * res, origin + (last + 1) * res


@dataclass
class _Sizes:
    width: int | None = None
    height: int | None = None
    fx: float | None = None
    fy: float | None = None


def _positive_int(value: str | float, locator: str, name: str | None = None) -> int:
    return params.size(value, locator, error=InvalidExtent,
                       name=name or f"size on {locator}")


def _factor(text: str, locator: str, name: str = "SCALEFACTOR") -> float:
    return params.number(text, locator, error=InvalidScaleFactor, positive=True, name=name)


_AXIS_VALUE = re.compile(r"\s*([^,()\s]+)\s*\(\s*([^()]*)\s*\)\s*")


def _axis_values(cov: Coverage, text: str, key: str) -> list[tuple[str, str, str]]:
    """``E(1),N(2)`` -> ``[('x', 'E', '1'), ('y', 'N', '2')]`` (axis kind, label, value)."""
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _AXIS_VALUE.match(text, pos)
        if not match:
            raise InvalidParameterValue(f"{key}={text!r} is not of the form axis(value),...",
                                        locator=key.lower())
        axis = _axis_kind(cov, match.group(1), key.lower())
        if axis == "time":
            raise InvalidAxisLabel(f"{key}: the time axis cannot be scaled",
                                   locator=key.lower())
        out.append((axis, match.group(1), match.group(2)))
        pos = match.end()
        if pos < len(text) and text[pos] == ",":
            pos += 1
    return out


def _scaling(cov: Coverage, kvp: Kvp) -> _Sizes:
    sizes = _Sizes()
    given = [k for k in ("SCALESIZE", "SCALEFACTOR", "SCALEAXES", "SCALEEXTENT") if k in kvp]
    given += ["SIZE"] if "SIZE" in kvp else []
    if len(given) > 1:
        raise InvalidParameterValue(f"give only one of {', '.join(given)}",
                                    locator=given[1].lower())
    for text in kvp.getall("SCALESIZE") + kvp.getall("SIZE"):
        for axis, label, value in _axis_values(cov, text, "SCALESIZE"):
            n = _positive_int(value, axis, name=f"SCALESIZE on {label}")
            setattr(sizes, "width" if axis == "x" else "height", n)
    if "SCALEFACTOR" in kvp:
        sizes.fx = sizes.fy = _factor(kvp.require("SCALEFACTOR"), "scalefactor")
    for text in kvp.getall("SCALEAXES"):
        for axis, label, value in _axis_values(cov, text, "SCALEAXES"):
            factor = _factor(value, axis, f"SCALEAXES on {label}")
            setattr(sizes, "fx" if axis == "x" else "fy", factor)
    if "SCALEEXTENT" in kvp:
        for axis, label, value in _axis_values(cov, kvp.require("SCALEEXTENT"), "SCALEEXTENT"):
            lo, _, hi = value.partition(":")
            n = _positive_int(_number(hi, axis, InvalidExtent)
                              - _number(lo, axis, InvalidExtent) + 1, axis,
                              name=f"SCALEEXTENT on {label}")
            setattr(sizes, "width" if axis == "x" else "height", n)
    return sizes


def fields_of(cov: Coverage, text: str | None) -> tuple[int, ...] | None:
    """``RANGESUBSET``: field names (or 1-based indices) and ``a:b`` intervals."""
    if not text:
        return None
    names = list(cov.bands)

    def index(name: str) -> int:
        name = name.strip()
        if name in names:
            return names.index(name)
        if re.fullmatch(r"\d{1,9}", name, re.ASCII) and 1 <= int(name) <= len(names):
            return int(name) - 1
        raise NoSuchField(f"field {name!r} is not in coverage {cov.id}; its fields are "
                          f"{', '.join(names)}", locator="rangesubset")

    out: list[int] = []
    for part in params.items(text, "rangesubset", error=NoSuchField):
        if part.strip() == "*":
            out.extend(range(len(names)))
        elif ":" in part:
            a, b = (index(p) for p in part.split(":", 1))
            if a > b:
                raise NoSuchField(f"field interval {part!r} is not in the fields' order",
                                  locator="rangesubset")
            out.extend(range(a, b + 1))
        else:
            out.append(index(part))
    return tuple(out)


def _native_size(cov: Coverage, crs: CRS, bounds) -> tuple[float, float]:
    """Pixel size of the native grid expressed in ``crs`` (per axis)."""
    if crs == cov.view.crs:
        return cov.view.res
    full = _extent_in(cov, crs)
    return ((full[2] - full[0]) / cov.view.width, (full[3] - full[1]) / cov.view.height)


def _finish(cov: Coverage, out_crs: CRS, bounds, sizes: _Sizes, sliced: tuple[bool, bool],
            times, fields, limits: tuple[int, int]) -> CoverageRequest:
    left, bottom, right, top = bounds
    rx, ry = _native_size(cov, out_crs, bounds)
    nx, ny = (right - left) / rx, (top - bottom) / ry
    width = sizes.width or (1 if sliced[0] else
                            params.computed_size(nx / (sizes.fx or 1.0), "scalefactor"))
    height = sizes.height or (1 if sliced[1] else
                              params.computed_size(ny / (sizes.fy or 1.0), "scalefactor"))
    view = View(out_crs, bounds, width, height)
    time_range = None
    if times is not None:
        time_range = (_day_range(times[0])[0], _day_range(times[-1])[1])
    req = CoverageRequest(view, time_range, len(times) if times else 1, fields)
    check_budget(cov, req, *limits)
    return req


def request_20(cov: Coverage, kvp: Kvp, limits: tuple[int, int]) -> CoverageRequest:
    """A WCS 2.0.1 GetCoverage (with the CRS, scaling and range-subsetting extensions)."""
    fmt = kvp.get("FORMAT") or "image/tiff"
    if fmt.lower() not in ("image/tiff", "image/geotiff", "geotiff", "gtiff", "tiff"):
        raise InvalidParameterValue(f"FORMAT {fmt!r} is not supported; use image/tiff",
                                    locator="format")
    subsets = [parse_subset(s) for s in kvp.getall("SUBSET")]
    sub_crs_text = kvp.get("SUBSETTINGCRS") or next((s.crs for s in subsets if s.crs), None)
    sub_crs_locator = "subsettingcrs" if kvp.get("SUBSETTINGCRS") else "subset"
    sub_crs = (parse_crs(sub_crs_text, locator=sub_crs_locator,
                         error=SubsettingCrsNotSupported) if sub_crs_text else cov.view.crs)
    out_text = kvp.get("OUTPUTCRS")
    out_crs = (parse_crs(out_text, locator="outputcrs", error=OutputCrsNotSupported)
               if out_text else sub_crs)
    full = _extent_in(cov, sub_crs)
    spatial: dict[str, _Subset] = {}
    times = cov.times[-1:] if cov.times else None
    seen: set[str] = set()
    for sub in subsets:
        if sub.crs and parse_crs(sub.crs, locator="subset",
                                 error=SubsettingCrsNotSupported) != sub_crs:
            raise SubsettingCrsNotSupported("all SUBSETs must use the same CRS",
                                            locator="subset")
        axis = _axis_kind(cov, sub.axis, "subset")
        if axis in seen:
            raise InvalidSubsetting(f"axis {sub.axis} is subset twice", locator=sub.axis)
        seen.add(axis)
        if axis == "time":
            times = select_times(cov, sub)
        else:
            spatial[axis] = sub
    xs = _trim(spatial["x"].axis, (full[0], full[2]), spatial["x"]) if "x" in spatial \
        else (full[0], full[2], False)
    ys = _trim(spatial["y"].axis, (full[1], full[3]), spatial["y"]) if "y" in spatial \
        else (full[1], full[3], False)
    native = cov.view
    if sub_crs == native.crs and out_crs == native.crs:
        rx, ry = native.res
        x0, x1 = _snap(xs[0], xs[1], full[0], rx, xs[2], native.width)
        # rows count from the top; mirror y so that the same snapping applies
        t0, t1 = _snap(full[3] - ys[1], full[3] - ys[0], 0.0, ry, ys[2], native.height)
        bounds = (x0, full[3] - t1, x1, full[3] - t0)
    else:
        bounds = _sliced_bounds(xs, ys, full, native)
        if out_crs != sub_crs:
            bounds = reproject_bounds(bounds, sub_crs, out_crs, OutputCrsNotSupported,
                                      "outputcrs")
    sizes = _scaling(cov, kvp)
    fields = fields_of(cov, kvp.get("RANGESUBSET"))
    return _finish(cov, out_crs, bounds, sizes, (xs[2], ys[2]), times, fields, limits)


def _sliced_bounds(xs, ys, full, native: View):
    """Bounds in the subsetting CRS; a slice becomes one native-sized pixel around it."""
    px = (full[2] - full[0]) / native.width
    py = (full[3] - full[1]) / native.height
    x0, x1 = (xs[0] - px / 2, xs[0] + px / 2) if xs[2] else xs[:2]
    y0, y1 = (ys[0] - py / 2, ys[0] + py / 2) if ys[2] else ys[:2]
    return x0, y0, x1, y1


def request_10(cov: Coverage, kvp: Kvp, limits: tuple[int, int]) -> CoverageRequest:
    """A WCS 1.0.0 GetCoverage: the answer has exactly the BBOX and size asked for."""
    fmt = kvp.require("FORMAT")
    if fmt.lower() not in ("geotiff", "gtiff", "image/tiff", "tiff", "image/geotiff"):
        raise InvalidParameterValue(f"FORMAT {fmt!r} is not supported; use GeoTIFF",
                                    locator="format")
    crs = parse_crs(kvp.require("CRS"), locator="crs")
    out_text = kvp.get("RESPONSE_CRS")
    out_crs = parse_crs(out_text, locator="response_crs") if out_text else crs
    times = cov.times[-1:] if cov.times else None
    text = kvp.get("TIME")
    if text:
        if cov.times is None:
            raise InvalidParameterValue(f"coverage {cov.id} has no time axis",
                                        locator="time")
        if "/" in text:
            lo, hi = (params.items(text, "time", sep="/", max_items=3) + [""])[:2]
            times = select_times(cov, _Subset("time", None, lo, hi, None))
        else:
            times = select_times(cov, params.items(text, "time"))
    if "BBOX" in kvp:
        bounds = params.bbox(kvp.require("BBOX"), "bbox")
    else:
        bounds = _extent_in(cov, crs)
    if out_crs != crs:
        bounds = reproject_bounds(bounds, crs, out_crs, InvalidParameterValue, "response_crs")
    sizes = _Sizes()
    if "WIDTH" in kvp or "HEIGHT" in kvp:
        sizes.width = params.size(kvp.require("WIDTH"), "width")
        sizes.height = params.size(kvp.require("HEIGHT"), "height")
    elif "RESX" in kvp or "RESY" in kvp:
        resx = params.number(kvp.require("RESX"), "resx", positive=True)
        resy = params.number(kvp.require("RESY"), "resy", positive=True)
        sizes.width = params.computed_size((bounds[2] - bounds[0]) / resx, "resx")
        sizes.height = params.computed_size((bounds[3] - bounds[1]) / resy, "resy")
    else:
        raise MissingParameterValue("WIDTH and HEIGHT (or RESX and RESY) are required",
                                    locator="width")
    fields = None
    band = kvp.get("BAND") or kvp.get("PARAMETER")
    if band:
        fields = fields_of(cov, band.split("=", 1)[-1].replace("/", ","))
    return _finish(cov, out_crs, bounds, sizes, (False, False), times, fields, limits)
