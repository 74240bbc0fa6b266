"""Coverages: a graph's result described as a WCS coverage (its native grid, fields and
dates), the CRS helpers of the WCS protocols, a resolved coverage request (the output
view, dates and fields) and its budget. No HTTP here: the request grammar (KVP,
:mod:`tileserver.web.ogc.kvp`) and its translation into a :class:`CoverageRequest`
(:mod:`tileserver.web.ogc.wcs_request`) live in the web layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from pyproj import CRS as ProjCRS
from rasterio.crs import CRS

from tileserver import params
from tileserver.datacube.bounds import transform_bounds
from tileserver.datacube.view import View
from tileserver.engine.evaluator import Engine, Graph, day_key
from tileserver.errors import (
    InvalidParameterValue,
    LimitExceeded,
    TileserverError,
)

WGS84 = CRS.from_epsg(4326)


# -- CRS helpers -----------------------------------------------------------------------


def parse_crs(text: str, *, locator: str, error=InvalidParameterValue) -> CRS:
    """``EPSG:n``, ``urn:ogc:def:crs:EPSG::n``, ``http://www.opengis.net/def/crs/EPSG/0/n``
    or CRS84 forms (:func:`tileserver.params.crs`); anything else raises ``error``."""
    return params.crs(text, locator, error=error)


def crs_uri(crs: CRS) -> str:
    """The OGC http URI of a CRS."""
    epsg = crs.to_epsg()
    if epsg == 4326 and "CRS84" in crs.to_string():
        return "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
    return f"http://www.opengis.net/def/crs/EPSG/0/{epsg}"


def crs_code(crs: CRS) -> str:
    """``EPSG:n`` (WCS 1.0 form)."""
    return f"EPSG:{crs.to_epsg()}"


def axes_of(crs: CRS) -> tuple[tuple[str, str], bool, tuple[str, str]]:
    """``((label1, label2), northing_first, (uom1, uom2))`` in the CRS's own axis order."""
    info = ProjCRS.from_user_input(crs.to_wkt()).axis_info[:2]
    if crs.to_epsg():
        info = ProjCRS.from_epsg(crs.to_epsg()).axis_info[:2]
    labels = tuple("Long" if a.abbrev.lower() == "lon" else a.abbrev for a in info)
    uoms = tuple("deg" if "degree" in a.unit_name else "m" for a in info)
    north_first = info[0].direction in ("north", "south")
    return labels, north_first, uoms  # type: ignore[return-value]


def _fmt(value: float) -> str:
    return repr(float(value))


# -- the coverage ----------------------------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    """A graph's result as a coverage: the native grid, its fields and dates."""

    id: str
    title: str
    view: View
    bands: tuple[str, ...]
    source_bands: int
    times: tuple[datetime, ...] | None
    kind: str
    source_dates: int = 1  # acquisition days read to compute one answer (all, if reduced)

    @cached_property
    def axes(self) -> tuple[tuple[str, str], bool, tuple[str, str]]:
        """See :func:`axes_of`."""
        return axes_of(self.view.crs)

    def ordered(self, x: float, y: float) -> str:
        """``"x y"`` or ``"y x"`` in the CRS's axis order (GML positions)."""
        return f"{_fmt(y)} {_fmt(x)}" if self.axes[1] else f"{_fmt(x)} {_fmt(y)}"

    @cached_property
    def wgs84_bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north)."""
        return transform_bounds(self.view.crs, WGS84, *self.view.bounds, densify_pts=21)

    def gml(self) -> dict:
        """Values of the GML envelope and rectified grid (WCS 2.0: CRS axis order)."""
        v = self.view
        left, bottom, right, top = v.bounds
        rx, ry = v.res
        labels, north_first, uoms = self.axes
        return {
            "srs": crs_uri(v.crs),
            "labels": " ".join(labels),
            "uoms": " ".join(uoms),
            "lower": self.ordered(left, bottom),
            "upper": self.ordered(right, top),
            "origin": self.ordered(left + rx / 2, top - ry / 2),
            "offset_i": self.ordered(rx, 0.0),
            "offset_j": self.ordered(0.0, -ry),
            "high": f"{v.width - 1} {v.height - 1}",
        }

    def gml_xy(self) -> dict:
        """The same in x/y order (WCS 1.0)."""
        v = self.view
        left, bottom, right, top = v.bounds
        rx, ry = v.res
        return {
            "srs": crs_code(v.crs),
            "lower": f"{_fmt(left)} {_fmt(bottom)}",
            "upper": f"{_fmt(right)} {_fmt(top)}",
            "origin": f"{_fmt(left + rx / 2)} {_fmt(top - ry / 2)}",
            "offset_i": f"{_fmt(rx)} 0",
            "offset_j": f"0 {_fmt(-ry)}",
            "high": f"{v.width - 1} {v.height - 1}",
        }


def describe(engine: Engine, graph: Graph, coverage_id: str, title: str,
             context: dict | None = None) -> Coverage:
    """The coverage of a parsed graph (no data is read, but for the dates a UDF returns:
    ``context`` names the owner whose script runs, see :meth:`Engine.times`)."""
    view = engine.native_view(graph)
    try:
        times = engine.times(graph, context=context)
    except TileserverError:  # a broken script: its tiles and coverage say why
        times = engine.times(graph)
    meta = graph.meta
    wgs84 = transform_bounds(view.crs, WGS84, *view.bounds, densify_pts=21)
    days = {day_key(i.datetime) for i in meta.product.items_for(wgs84, meta.time_range)}
    return Coverage(coverage_id, title, view, tuple(meta.bands), len(meta.source_bands),
                    None if times is None else tuple(times), meta.kind, max(1, len(days)))


# -- requests --------------------------------------------------------------------------


@dataclass(frozen=True)
class CoverageRequest:
    """What to evaluate and return: the output grid, dates and fields."""

    view: View
    time_range: tuple[datetime, datetime] | None
    dates: int
    fields: tuple[int, ...] | None  # indices into Coverage.bands; None = all


def check_budget(cov: Coverage, req: CoverageRequest, max_output_pixels: int,
                 max_pixels: int) -> None:
    """:class:`LimitExceeded` for an answer larger than the configured budget."""
    v = req.view
    if v.pixels > max_output_pixels:
        raise LimitExceeded(
            f"the coverage would be {v.width}x{v.height} = {v.pixels} pixels, more than the "
            f"limit of {max_output_pixels}; request a smaller area or scale it down",
            locator="scalesize")
    dates = req.dates if cov.times is not None else cov.source_dates
    total = v.pixels * max(1, cov.source_bands) * dates
    if total > max_pixels:
        raise LimitExceeded(
            f"the evaluation would read {v.width}x{v.height} pixels x {cov.source_bands} "
            f"bands x {dates} dates = {total}, more than the budget of {max_pixels}; request "
            "a smaller area, a coarser scale or fewer dates", locator="subset")
