"""OGC API - Coverages: ``/collections/{id}/coverage`` with ``bbox`` (+ ``bbox-crs``),
``subset`` (+ ``subset-crs``), ``scale-size``/``scale-factor``/``scale-axes``, ``properties``,
``datetime`` and ``crs``; its domain set and range type.

A request is translated into the WCS 2.0 grammar and resolved by the same parser as a WCS
GetCoverage (:func:`tileserver.web.ogc.wcs_request.request_20`): the same native-grid
snapping, budget and errors, and the same cached answer (GeoTIFF float32). PNG is the
styled rendering of the same grid (the latest date), NetCDF its values (one variable per
date and field).
"""

from __future__ import annotations

import re

from flask import g, request

from tileserver import params
from tileserver.errors import InvalidParameterValue, InvalidSubsetting
from tileserver.maps.coverage import Coverage, CoverageRequest, axes_of
from tileserver.maps.served import ServedJob
from tileserver.web.common import runtime
from tileserver.web.conditional import PRIVATE_CACHE, conditional
from tileserver.web.ogc.kvp import Kvp
from tileserver.web.ogc.ogcapi.base import (
    CRS84,
    GREGORIAN,
    arg,
    bp,
    crs_uri,
    document,
    find_collection,
    is_crs84,
    iso,
    pick_format,
    request_crs,
    root,
    self_links,
)
from tileserver.web.ogc.wcs import QUANTITY
from tileserver.web.ogc.wcs_request import request_20

#: ``f`` values of coverages -> media type.
COVERAGE_FORMATS = {"tiff": "image/tiff", "tif": "image/tiff", "geotiff": "image/tiff",
                    "png": "image/png", "netcdf": "application/netcdf",
                    "nc": "application/netcdf", "application/x-netcdf": "application/netcdf"}
#: Locators of the WCS parser -> OGC API parameters.
_LOCATORS = {"subsettingcrs": "subset-crs", "outputcrs": "crs", "scalesize": "scale-size",
             "scalefactor": "scale-factor", "scaleaxes": "scale-axes",
             "rangesubset": "properties", "time": "datetime", "format": "f"}
_QUOTED = re.compile(r'"([^"]*)"')


def _split_axes(text: str) -> list[str]:
    """``Lat(1:2),Lon(3:4)`` -> ``['Lat(1:2)', 'Lon(3:4)']`` (commas outside brackets)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [p.strip() for p in out if p.strip()]


def wcs_subset(item: str) -> str:
    """One OGC API subset ``axis(low:high)``/``axis(point)`` (values may be quoted; ``*``
    or ``..`` for an open end) in the WCS form ``axis(low,high)``."""
    match = re.fullmatch(r"\s*([^(),\s]+)\s*\((.*)\)\s*", item, re.S)
    if not match:
        raise InvalidSubsetting(f"subset {item[:80]!r} is not of the form axis(low:high) or "
                                "axis(value)", locator="subset")
    axis, inner = match.groups()
    quoted = _QUOTED.findall(inner)
    parts = quoted if quoted else inner.split(":")
    if not 1 <= len(parts) <= 2:
        raise InvalidSubsetting(f"subset {item[:80]!r}: give one value or low:high (quote "
                                "date-times: time(\"2020-05-01T00:00:00Z\":\"...\"))",
                                locator="subset")
    if any(not p.strip() for p in parts):  # the grammar's low and high: a point or *
        raise InvalidSubsetting(f"subset {item[:80]!r}: an empty bound; give a value, or * "
                                "for an unbounded end", locator="subset")
    parts = ["*" if p.strip() in ("..", "*") and len(parts) == 2 else p.strip()
             for p in parts]
    return f"{axis}({','.join(parts)})"


def _datetime_subset(text: str) -> str:
    """``datetime`` (an instant or ``a/b``, ``..`` open) as a WCS time subset."""
    # (an empty start or end is unbounded, like ``..``; a blank one is not a date-time)
    parts = params.text(text, "datetime").split("/")
    if len(parts) > 2:
        raise InvalidParameterValue(f"datetime {text[:64]!r} is not an instant or an "
                                    "interval a/b", locator="datetime")
    for i, part in enumerate(parts):
        if part not in ("", ".."):
            params.date(part, "datetime", end=i == 1)
    if len(parts) == 1:
        return f'time("{parts[0]}")'
    lo, hi = ("*" if p in ("", "..") else f'"{p.strip()}"' for p in parts)
    return f"time({lo},{hi})"


def coverage_request(served: ServedJob, cov: Coverage) -> CoverageRequest:
    """The request's parameters resolved into a coverage request (WCS 2.0 rules)."""
    locators = dict(_LOCATORS)
    g.ogcapi_locators = locators
    pairs: list[tuple[str, str]] = []
    subsets = [params.text(s, "subset") for s in request.args.getlist("subset")]
    if any(not s.strip() for s in subsets):
        raise InvalidSubsetting("subset is empty; give axis(low:high) or leave it out",
                                locator="subset")
    bbox = arg("bbox")
    if bbox is not None and subsets:
        raise InvalidParameterValue("give bbox or subset, not both", locator="bbox")
    for text in subsets:
        pairs += [("SUBSET", wcs_subset(item)) for item in _split_axes(text)]
    subset_crs = arg("subset-crs")
    if subset_crs is not None:
        pairs.append(("SUBSETTINGCRS", subset_crs))
    out_crs = arg("crs")
    # (checked also without a bbox: an invalid CRS is an error wherever it is given)
    given = request_crs(arg("bbox-crs") or CRS84, "bbox-crs")
    if bbox is not None:
        box = params.bbox(bbox, "bbox")
        if axes_of(given)[1]:  # northing first
            box = (box[1], box[0], box[3], box[2])
        pairs += [("SUBSETTINGCRS", "EPSG:4326" if is_crs84(given) else arg("bbox-crs")),
                  ("SUBSET", f"X({box[0]!r},{box[2]!r})"),
                  ("SUBSET", f"Y({box[1]!r},{box[3]!r})")]
        if out_crs is None:  # the coverage stays in its own CRS
            out_crs = crs_uri(cov.view.crs)
        labels = cov.axes[0]
        locators.update({"subset": "bbox", "X": "bbox", "Y": "bbox", "subsettingcrs":
                         "bbox-crs", labels[0]: "bbox", labels[1]: "bbox"})
    if out_crs is not None:
        pairs.append(("OUTPUTCRS", out_crs))
    # (and the older camel-case names, which GDAL sends)
    scaling = {"SCALESIZE": arg("scale-size", "scaleSize"),
               "SCALEFACTOR": arg("scale-factor", "scaleFactor"),
               "SCALEAXES": arg("scale-axes", "scaleAxes")}
    pairs += [(key, value) for key, value in scaling.items() if value is not None]
    for key, name in (("SCALEAXES", "scale-axes"), ("SCALESIZE", "scale-size")):
        if scaling[key] is not None:  # the WCS parser names the axis of a bad size
            locators.update({"x": name, "y": name})
    properties = arg("properties")
    if properties is not None:
        pairs.append(("RANGESUBSET", properties))
    when = arg("datetime")
    if when is not None:
        subset = _datetime_subset(when)
        if cov.times is not None:
            pairs.append(("SUBSET", subset))
    settings = runtime().settings
    return request_20(cov, Kvp(pairs), (settings.max_output_pixels, settings.max_pixels))


@bp.get("/ogcapi/collections/<collection_id>/coverage")
def coverage(collection_id: str):
    """The coverage of a job, evaluated lazily for the requested grid, dates and fields."""
    served = find_collection(collection_id)
    media_type = pick_format(COVERAGE_FORMATS, "image/tiff")
    cov = served.describe(served.identifier, served.title)
    req = coverage_request(served, cov)
    key = served.coverage_key(req, media_type)
    resp = conditional(key, lambda: served.coverage(req, key, media_type, "collectionId"),
                       PRIVATE_CACHE, stored=served.stored is not None)
    ext = {"image/tiff": "tif", "image/png": "png"}.get(media_type, "nc")
    resp.headers["Content-Disposition"] = f'inline; filename="{served.identifier}.{ext}"'
    resp.headers["Content-Crs"] = f"<{crs_uri(req.view.crs)}>"
    return resp


# -- domain set and range type -----------------------------------------------------------


def domain_set(cov: Coverage) -> dict:
    """The CIS 1.1 JSON domain set: the native grid, in the CRS's axis order, and the
    dates (an irregular time axis)."""
    v = cov.view
    left, bottom, right, top = v.bounds
    rx, ry = v.res
    labels, north_first, uoms = cov.axes
    x_axis = {"type": "RegularAxis", "axisLabel": labels[1 if north_first else 0],
              "lowerBound": left, "upperBound": right, "uomLabel": uoms[1 if north_first
                                                                         else 0],
              "resolution": rx}
    y_axis = {"type": "RegularAxis", "axisLabel": labels[0 if north_first else 1],
              "lowerBound": bottom, "upperBound": top, "uomLabel": uoms[0 if north_first
                                                                        else 1],
              "resolution": -ry}
    axes = [y_axis, x_axis] if north_first else [x_axis, y_axis]
    grid_axes = [{"type": "IndexAxis", "axisLabel": "i", "lowerBound": 0,
                  "upperBound": v.width - 1},
                 {"type": "IndexAxis", "axisLabel": "j", "lowerBound": 0,
                  "upperBound": v.height - 1}]
    axis_labels = [a["axisLabel"] for a in axes]
    if cov.times is not None:
        axes.append({"type": "IrregularAxis", "axisLabel": "time", "uomLabel": "d",
                     "coordinate": [iso(t) for t in cov.times]})
        axis_labels.append("time")
        grid_axes.append({"type": "IndexAxis", "axisLabel": "k", "lowerBound": 0,
                          "upperBound": max(0, len(cov.times) - 1)})
    return {
        "type": "DomainSet",
        "generalGrid": {
            "type": "GeneralGridCoverage",
            "srsName": crs_uri(v.crs),
            "axisLabels": axis_labels,
            "axis": axes,
            "gridLimits": {"type": "GridLimits",
                           "srsName": "http://www.opengis.net/def/crs/OGC/0/Index"
                                      f"{len(grid_axes)}D",
                           "axisLabels": [a["axisLabel"] for a in grid_axes],
                           "axis": grid_axes},
        },
        **({"temporalReference": GREGORIAN} if cov.times is not None else {}),
    }


def range_type(cov: Coverage) -> dict:
    """The CIS 1.1 JSON range type: one float32 quantity per band (NaN: no data)."""
    return {"type": "DataRecord", "field": [
        {"type": "Quantity", "id": band, "name": band, "definition": QUANTITY,
         "encodingInfo": {"dataType": QUANTITY},
         "nilValues": [{"value": "NaN", "reason": "no data"}],
         "uom": {"type": "UnitReference", "code": "1"}} for band in cov.bands]}


@bp.get("/ogcapi/collections/<collection_id>/coverage/domainset")
def domainset(collection_id: str):
    """The coverage's domain set."""
    served = find_collection(collection_id)
    doc = domain_set(served.describe(served.identifier, served.title))
    doc["links"] = self_links(f"{root()}/collections/{served.identifier}/coverage/domainset",
                              "Domain set")
    return document(doc, "generic.html", f"{served.title}: domain set")


@bp.get("/ogcapi/collections/<collection_id>/coverage/rangetype")
def rangetype(collection_id: str):
    """The coverage's range type (its fields, the ``properties`` it can select)."""
    served = find_collection(collection_id)
    doc = range_type(served.describe(served.identifier, served.title))
    doc["links"] = self_links(f"{root()}/collections/{served.identifier}/coverage/rangetype",
                              "Range type")
    return document(doc, "generic.html", f"{served.title}: range type")
