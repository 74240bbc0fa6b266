"""The hostile-value tables: which query parameter, path segment, JSON field, process
argument and output option of which route gets the hostile values of :mod:`tests.support.fuzz`.
``tests/api/web/test_hostile_params.py`` sends them; ``tests/api/web/test_param_coverage.py``
checks that every input of every route is in them."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from tests.support.fuzz import query_parameters_in_source

#: (protocol, key, value template, accepted locators) -- ``{}`` is the hostile value.
KVP_PARAMS = [
    ("wmts", "SERVICE", "{}", {"service"}),
    ("wmts", "REQUEST", "{}", {"request"}),
    ("wmts", "VERSION", "{}", {"version"}),
    ("wmts", "LAYER", "{}", {"layer"}),
    ("wmts", "STYLE", "{}", {"style"}),
    ("wmts", "FORMAT", "{}", {"format"}),
    ("wmts", "TILEMATRIXSET", "{}", {"tilematrixset"}),
    ("wmts", "TILEMATRIX", "{}", {"tilematrix", "tilerow", "tilecol"}),
    ("wmts", "TILEROW", "{}", {"tilerow"}),
    ("wmts", "TILECOL", "{}", {"tilecol"}),
    ("wmts", "TIME", "{}", {"time"}),
    ("wmts", "ACCEPTVERSIONS", "{}", {"acceptversions", "request"}),
    ("wcs20", "SERVICE", "{}", {"service"}),
    ("wcs20", "REQUEST", "{}", {"request"}),
    ("wcs20", "VERSION", "{}", {"version"}),
    ("wcs20", "COVERAGEID", "{}", {"coverageid"}),
    ("wcs20", "FORMAT", "{}", {"format"}),
    ("wcs20", "SUBSET", "E({},500640)", {"subset", "E"}),
    ("wcs20", "SUBSET", "N(5099360,{})", {"subset", "N"}),
    ("wcs20", "SUBSET", "E({})", {"subset", "E"}),
    ("wcs20", "SUBSET", 'time("{}")', {"subset", "time"}),
    ("wcs20", "SUBSET", "time({},2020-05-21)", {"subset", "time"}),
    ("wcs20", "SUBSET", "{}(1,2)", {"subset"}),
    ("wcs20", "SUBSET", "{}", {"subset", "E"}),
    ("wcs20", "SUBSETTINGCRS", "{}", {"subsettingcrs"}),
    ("wcs20", "OUTPUTCRS", "{}", {"outputcrs"}),
    ("wcs20", "SCALESIZE", "i({}),j(8)", {"scalesize", "x"}),
    ("wcs20", "SCALESIZE", "{}", {"scalesize", "x"}),
    ("wcs20", "SIZE", "x({})", {"scalesize", "size", "x"}),
    ("wcs20", "SCALEFACTOR", "{}", {"scalefactor"}),
    ("wcs20", "SCALEAXES", "i({}),j(2)", {"scaleaxes", "x", "scalefactor"}),
    ("wcs20", "SCALEEXTENT", "i(0:{}),j(0:7)", {"scaleextent", "x"}),
    ("wcs20", "SCALEEXTENT", "i({}:7),j(0:7)", {"scaleextent", "x"}),
    ("wcs20", "RANGESUBSET", "{}", {"rangesubset"}),
    ("wcs20", "RANGESUBSET", "ndvi:{}", {"rangesubset"}),
    ("wcs20", "ACCEPTVERSIONS", "{}", {"acceptversions"}),
    ("wcs10", "COVERAGE", "{}", {"coverage"}),
    ("wcs10", "FORMAT", "{}", {"format"}),
    ("wcs10", "CRS", "{}", {"crs"}),
    ("wcs10", "RESPONSE_CRS", "{}", {"response_crs"}),
    ("wcs10", "BBOX", "{},5099360,500640,5100000", {"bbox"}),
    ("wcs10", "BBOX", "500000,5099360,500640,{}", {"bbox"}),
    ("wcs10", "BBOX", "{}", {"bbox"}),
    ("wcs10", "WIDTH", "{}", {"width"}),
    ("wcs10", "HEIGHT", "{}", {"height"}),
    ("wcs10", "RESX", "{}", {"resx"}),
    ("wcs10", "RESY", "{}", {"resy"}),
    ("wcs10", "TIME", "{}", {"time"}),
    ("wcs10", "TIME", "2020-05-01/{}", {"time"}),
    ("wcs10", "BAND", "{}", {"band", "rangesubset"}),
    ("wcs10", "PARAMETER", "{}", {"parameter", "rangesubset"}),
    # OGC API (/ogcapi/collections/{id}/map, /coverage, /tiles/..., /processes/.../execution)
    ("ogcapi-map", "BBOX", "{},5099360,500640,5100000", {"bbox"}),
    ("ogcapi-map", "BBOX", "500000,5099360,500640,{}", {"bbox"}),
    ("ogcapi-map", "BBOX", "{}", {"bbox"}),
    ("ogcapi-map", "BBOX-CRS", "{}", {"bbox-crs", "bbox"}),
    ("ogcapi-map", "CRS", "{}", {"crs"}),
    ("ogcapi-map", "WIDTH", "{}", {"width"}),
    ("ogcapi-map", "HEIGHT", "{}", {"height"}),
    ("ogcapi-map", "DATETIME", "{}", {"datetime"}),
    ("ogcapi-map", "DATETIME", "2020-05-01/{}", {"datetime"}),
    ("ogcapi-map", "TRANSPARENT", "{}", {"transparent"}),
    ("ogcapi-map", "BGCOLOR", "{}", {"bgcolor"}),
    ("ogcapi-map", "F", "{}", {"f"}),
    ("ogcapi-coverage", "SUBSET", "E({}:500640)", {"subset", "E"}),
    ("ogcapi-coverage", "SUBSET", "N(5099360:{}),E(500000:500640)", {"subset", "N"}),
    ("ogcapi-coverage", "SUBSET", "{}", {"subset", "E"}),
    ("ogcapi-coverage", "SUBSET-CRS", "{}", {"subset-crs"}),
    ("ogcapi-coverage", "BBOX", "{},46.04,9.01,46.05", {"bbox"}),
    ("ogcapi-coverage", "BBOX", "{}", {"bbox"}),
    ("ogcapi-coverage", "BBOX-CRS", "{}", {"bbox-crs", "bbox"}),
    ("ogcapi-coverage", "CRS", "{}", {"crs"}),
    ("ogcapi-coverage", "SCALE-SIZE", "E({}),N(8)", {"scale-size", "x"}),
    ("ogcapi-coverage", "SCALE-SIZE", "{}", {"scale-size", "x"}),
    ("ogcapi-coverage", "SCALE-FACTOR", "{}", {"scale-factor"}),
    ("ogcapi-coverage", "SCALE-AXES", "E({}),N(2)", {"scale-axes", "x", "scale-factor"}),
    ("ogcapi-coverage", "PROPERTIES", "{}", {"properties"}),
    ("ogcapi-coverage", "DATETIME", "{}", {"datetime"}),
    ("ogcapi-coverage", "DATETIME", "{}/2020-05-21", {"datetime"}),
    ("ogcapi-coverage", "F", "{}", {"f"}),
    ("ogcapi-tiles", "DATETIME", "{}", {"datetime"}),
    ("ogcapi-tiles", "F", "{}", {"f"}),
    ("ogcapi-execute", "RESPONSE", "{}", {"response"}),
    # WMS 1.3.0 GetMap (wms13), GetFeatureInfo (wms13fi), 1.1.1 (wms11, wms11fi), legends
    ("wms13", "SERVICE", "{}", {"service"}),
    ("wms13", "REQUEST", "{}", {"request"}),
    ("wms13", "VERSION", "{}", {"version"}),
    ("wms13", "WMTVER", "{}", {"version", "wmtver"}),
    ("wms13", "LAYERS", "{}", {"layers"}),
    ("wms13", "STYLES", "{}", {"styles"}),
    ("wms13", "CRS", "{}", {"crs"}),
    ("wms13", "BBOX", "{},500000,5100000,500640", {"bbox"}),
    ("wms13", "BBOX", "5099360,500000,5100000,{}", {"bbox"}),
    ("wms13", "BBOX", "{}", {"bbox"}),
    ("wms13", "WIDTH", "{}", {"width"}),
    ("wms13", "HEIGHT", "{}", {"height"}),
    ("wms13", "FORMAT", "{}", {"format"}),
    ("wms13", "TIME", "{}", {"time"}),
    ("wms13", "TIME", "2020-05-01/{}", {"time"}),
    ("wms13", "TIME", "2020-05-11,{}", {"time"}),
    ("wms13", "TRANSPARENT", "{}", {"transparent"}),
    ("wms13", "BGCOLOR", "{}", {"bgcolor"}),
    ("wms13fi", "QUERY_LAYERS", "{}", {"query_layers"}),
    ("wms13fi", "I", "{}", {"i"}),
    ("wms13fi", "J", "{}", {"j"}),
    ("wms13fi", "INFO_FORMAT", "{}", {"info_format"}),
    ("wms13fi", "TIME", "{}", {"time"}),
    ("wms11", "SRS", "{}", {"srs"}),
    ("wms11", "BBOX", "{},5099360,500640,5100000", {"bbox"}),
    ("wms11", "VERSION", "{}", {"version"}),
    ("wms11fi", "X", "{}", {"x"}),
    ("wms11fi", "Y", "{}", {"y"}),
    ("wmslegend", "LAYER", "{}", {"layer"}),
    ("wmslegend", "STYLE", "{}", {"style"}),
    ("wmslegend", "FORMAT", "{}", {"format"}),
]


#: RESTful WMTS tile URL segments, XYZ path segments: (route, segment index, locators).
TILE_SEGMENTS = [
    ("wmts-rest", "style", {"style"}),
    ("wmts-rest", "time", {"time"}),
    ("wmts-rest", "tms", {"tilematrixset"}),
    ("wmts-rest", "z", {"tilematrix", "tilerow", "tilecol"}),
    ("wmts-rest", "row", {"tilerow"}),
    ("wmts-rest", "col", {"tilecol", "format"}),
    ("wmts-legend", "layer", {"layer"}),
    ("wmts-legend", "style", {"style"}),
    ("xyz", "z", {"tilematrix", "tilerow", "tilecol"}),
    ("xyz", "x", {"tilecol"}),
    ("xyz", "y", {"tilerow", "y"}),
    ("tms", "time", {"date"}),
    ("tms", "z", {"z", "y", "tilematrix", "tilerow", "tilecol"}),
    ("tms", "x", {"x", "tilecol"}),
    ("tms", "y", {"y", "tilerow"}),
    ("ogcapi-tile", "collection", {"collectionId"}),
    ("ogcapi-tile", "tms", {"tileMatrixSetId"}),
    ("ogcapi-tile", "z", {"tileMatrix", "tileRow", "tileCol"}),
    ("ogcapi-tile", "row", {"tileRow"}),
    ("ogcapi-tile", "col", {"tileCol"}),
]


VIEWER_PARAMS = [("point", "lon"), ("point", "lat"), ("point", "time"), ("viewer", "time")]


#: (method, route, dotted field). ``process_graph.<process>.<arg>`` is an argument of a
#: process node; ``output.parameters.<option>`` an output option.
JSON_FIELDS = [
    *[(method, route, field) for method, route in (("POST", "/jobs"), ("PATCH", "/jobs/{job}"))
      for field in ("process_graph", "output", "output.format", "output.parameters", "title",
                    "description")],
    *[("POST", "/execute", field) for field in ("process_graph", "output", "output.format",
                                                "output.parameters", "title", "description")],
    *[("POST", "/services", field) for field in ("job_id", "type", "args", "args.colormap",
                                                 "args.range", "title")],
    *[("PATCH", "/services/{service}", field) for field in ("args", "args.colormap",
                                                             "args.range", "title")],
]


def process_cases():
    """``(process id, argument)`` of every 0.0.2 process."""
    from tileserver.processes import TRANSLATIONS

    return [(pid, p.name) for pid, proc in sorted(TRANSLATIONS.items()) for p in proc.params]


#: Files whose query parameters have their own tables (KVP_PARAMS, TILE_SEGMENTS).
OGC_SOURCES = {"tileserver/web/ogc/wmts.py", "tileserver/web/ogc/wcs.py",
               "tileserver/web/ogc/xyz.py", "tileserver/web/ogc/tms.py",
               "tileserver/web/ogc/wcs_request.py", "tileserver/web/ogc/wms.py",
               *(f"tileserver/web/ogc/ogcapi/{name}.py" for name in (
                   "__init__", "api", "base", "collections", "coverages", "maps", "processes",
                   "tiles"))}


def rest_query_cases(app) -> list[tuple[str, str]]:
    """``(parameter, rule)``: each query parameter read by a REST module, with the GET
    routes of that module (or of its package, for a helper module without routes)."""
    root = Path(__file__).resolve().parents[2]
    by_file: dict[str, list[str]] = {}
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.endpoint == "static":
            continue
        source = inspect.getsourcefile(app.view_functions[rule.endpoint])
        by_file.setdefault(str(Path(source).resolve().relative_to(root)), []).append(rule.rule)
    cases = []
    for name, files in sorted(query_parameters_in_source(root).items()):
        for file in sorted(files - OGC_SOURCES):
            rules = by_file.get(file) or [r for f, rs in by_file.items()
                                          if Path(f).parent == Path(file).parent for r in rs]
            cases += [(name, rule) for rule in sorted(set(rules))]
    return cases


#: Output options of every format (``output.parameters``), validated when a job is posted.
OUTPUT_OPTIONS = {
    "GTiff": ["tiled", "compress", "photometric", "jpeg_quality", "predictor", "zlevel",
              "zstd_level", "webp_level", "max_z_error", "blockxsize", "blockysize", "bigtiff",
              "interleave", "colormap", "range"],
    "PNG": ["colormap", "range"],
    "JPEG": ["colormap", "range", "jpeg_quality"],
}
OUTPUT_OPTIONS_FLAT = sorted({o for opts in OUTPUT_OPTIONS.values() for o in opts})


_BODY_READS = [r"body\.get\(\s*[\"'](\w+)[\"']", r"body\[\s*[\"'](\w+)[\"']\s*\]",
               r"text_fields\(body,\s*\(([^)]*)\)"]


def versioned_rules(app) -> list:
    """URL rules of the blueprints of other API versions (not in /openapi.json)."""
    versioned = app.extensions.get("tileserver.versioned_blueprints", ())
    return sorted((r for r in app.url_map.iter_rules()
                   if r.endpoint.split(".")[0] in versioned), key=lambda r: r.rule)


def versioned_body_fields() -> list[str]:
    """JSON body fields read by the versioned APIs and their use cases (from the source)."""
    root = Path(__file__).resolve().parents[2] / "tileserver"
    fields: set[str] = {"process", "type", "configuration", "title", "description"}
    # the 1.x routes and the use cases they call (before the packages were named after the
    # subsystems: web/openeo_v1/ and services/)
    for where in ("web/openeo/v1/*.py", "jobs/usecases.py", "jobs/services.py"):
        for file in sorted(root.glob(where)):
            code = file.read_text()
            for pattern in _BODY_READS:
                for found in re.findall(pattern, code):
                    fields |= set(re.findall(r"\w+", found))
    return sorted(fields)


# -- which hostile values are valid values of which parameter ------------------------------
#
# A hostile value must be refused with a 4xx in the protocol's form, except where it is a
# valid value of that very parameter (a number for a coordinate, an empty optional value):
# only then may the answer be a success. Everything not listed here must be a 4xx.

#: Numbers among the edges (valid as coordinates; 1e-400 is 0 after rounding).
NUMBERS = frozenset({"-0", "0", "-1", "0.5", "1e-400", "5e-324", "1e3"})
#: An empty value of an optional parameter is the parameter left out (OGC KVP).
EMPTY = frozenset({""})
BLANK = frozenset({"", " "})
#: Zero with or without a sign: a valid tile index.
ZERO = frozenset({"-0", "0"})

#: ``(key, template) -> the edges that are valid values`` of :data:`KVP_PARAMS`.
VALID_KVP: dict[tuple[str, str], frozenset] = {
    ("VERSION", "{}"): EMPTY,          # no version: the one this service speaks
    ("STYLE", "{}"): EMPTY,            # the default style
    ("TILEROW", "{}"): ZERO,
    ("TILECOL", "{}"): ZERO,
    ("TIME", "{}"): BLANK,             # no time: the latest date (WMTS), all dates (WCS 1.0)
    ("ACCEPTVERSIONS", "{}"): EMPTY,   # (sent with GetCapabilities) no preference
    ("FORMAT", "{}"): EMPTY,           # WCS 2.0: the coverage's native format
    ("SUBSET", "E({},500640)"): NUMBERS,
    ("SUBSET", "N(5099360,{})"): frozenset(),
    ("SUBSET", "E({})"): NUMBERS,      # a slice point: the coverage at that easting
    ("SUBSETTINGCRS", "{}"): EMPTY,
    ("OUTPUTCRS", "{}"): EMPTY,
    ("SCALESIZE", "i({}),j(8)"): frozenset({"1e3"}),  # 1000 written with an exponent
    ("SCALESIZE", "{}"): BLANK,
    ("SIZE", "x({})"): frozenset({"1e3"}),
    ("SCALEFACTOR", "{}"): frozenset({"0.5", "1e3"}),
    ("SCALEAXES", "i({}),j(2)"): frozenset({"0.5", "1e3"}),
    ("SCALEEXTENT", "i(0:{}),j(0:7)"): NUMBERS - {"-1", "0.5"},
    ("SCALEEXTENT", "i({}:7),j(0:7)"): NUMBERS - {"0.5", "1e3"},
    ("RANGESUBSET", "{}"): EMPTY,      # all fields
    ("RESPONSE_CRS", "{}"): EMPTY,     # the request CRS
    ("BBOX", "{},5099360,500640,5100000"): NUMBERS,
    ("BBOX", "500000,5099360,500640,{}"): frozenset(),
    ("WIDTH", "{}"): frozenset({"1e3"}),
    ("HEIGHT", "{}"): frozenset({"1e3"}),
    ("RESX", "{}"): frozenset({"0.5", "1e3"}),
    ("RESY", "{}"): frozenset({"0.5", "1e3"}),
    ("BAND", "{}"): EMPTY,
    ("PARAMETER", "{}"): EMPTY,
    # OGC API (an OpenAPI query parameter takes no empty value unless it says so; none here)
    ("TRANSPARENT", "{}"): frozenset({"true"}),  # a boolean: true or false, not 0/1
    # a half-bounded interval: ".." or an empty string for the unbounded end (OGC API -
    # Features 1.0 / Common ``datetime``)
    ("DATETIME", "2020-05-01/{}"): EMPTY,
    ("DATETIME", "{}/2020-05-21"): EMPTY,
    ("SUBSET", "E({}:500640)"): NUMBERS,
    ("SUBSET", "N(5099360:{}),E(500000:500640)"): frozenset(),
    ("BBOX", "{},46.04,9.01,46.05"): NUMBERS - {"1e3"},  # a longitude (CRS84)
    ("SCALE-SIZE", "E({}),N(8)"): frozenset({"1e3"}),  # 1000 written with an exponent
    ("SCALE-FACTOR", "{}"): frozenset({"0.5", "1e3"}),
    ("SCALE-AXES", "E({}),N(2)"): frozenset({"0.5", "1e3"}),
    # WMS 1.3.0 / 1.1.1 (TRANSPARENT: the row above, TRUE|FALSE in any case, not 0/1;
    # SERVICE, BGCOLOR, INFO_FORMAT and a blank legend STYLE have no valid edge)
    ("WMTVER", "{}"): EMPTY,          # the WMS 1.0 name of VERSION: empty like VERSION
    ("STYLES", "{}"): EMPTY,          # STYLES= : the default styles (WMS 1.3.0 7.3.3.4)
    # minx, a coordinate below maxx 5100000 (EPSG:32632 is easting first)
    ("BBOX", "{},500000,5100000,500640"): NUMBERS,
    # a pixel column/row: an integer, 0 also written -0 (xs:integer)
    ("I", "{}"): ZERO, ("J", "{}"): ZERO, ("X", "{}"): ZERO, ("Y", "{}"): ZERO,
}

#: ``segment -> valid edges`` of :data:`TILE_SEGMENTS` (and the XYZ/TMS query parameters).
VALID_SEGMENTS: dict[str, frozenset] = {
    "row": ZERO, "col": ZERO, "x": ZERO, "y": ZERO,
    "time": BLANK,                      # no time: the latest date
    "TIME": BLANK,
    "bands": EMPTY,                     # all bands
}

#: ``key -> valid edges`` of :data:`VIEWER_PARAMS`.
VALID_VIEWER: dict[str, frozenset] = {
    "lon": NUMBERS - {"1e3"}, "lat": NUMBERS - {"1e3"}, "time": BLANK,
}


def _one_of(value, *valid) -> bool:
    """``value`` is one of ``valid``, type included (JSON's 0 is not false, nor -0.0)."""
    return any(type(value) is type(v) and value == v for v in valid)


def valid_json(field: str, value) -> bool:
    """Whether ``value`` is a valid value of a JSON field of :data:`JSON_FIELDS` (or of a
    process argument, or of an output option): only then may the answer be a success."""
    if field in ("title", "description"):  # a text, or null (none)
        return value is None or isinstance(value, str)
    if field in ("output", "output.parameters"):  # {} or null: the defaults
        return _one_of(value, None, {})
    if field == "args":                     # service arguments: an object (unknown keys kept)
        return value is None or isinstance(value, dict)
    if field in ("args.colormap", "colormap", "compress", "photometric"):
        return value is None                # null: the default
    if field in ("args.range", "range"):
        return _one_of(value, None, [1, 2])
    if field == "tiled":                    # a boolean, also as GDAL's "0"/"1"
        return _one_of(value, True, False, "0", "1")
    if field == "bigtiff":                  # YES/NO, also as a boolean, 0/1 or "0"/"1"
        return _one_of(value, True, False, 0, 1, "0", "1")
    if field == "imagery":                  # a collection leaf is valid imagery
        return value == {"product_id": "TEST"}
    if field in ("left", "right", "bottom", "top"):  # finite coordinates
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and abs(value) < 1e300)  # False for NaN, infinities and 10**400
    return False
