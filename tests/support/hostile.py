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
    from tileserver.processes import REGISTRY

    return [(pid, p.name) for pid, proc in sorted(REGISTRY.items()) for p in proc.params]


#: Files whose query parameters have their own tables (KVP_PARAMS, TILE_SEGMENTS).
OGC_SOURCES = {"tileserver/web/ogc/wmts.py", "tileserver/web/ogc/wcs.py",
               "tileserver/web/ogc/xyz.py", "tileserver/web/ogc/tms.py",
               "tileserver/web/ogc/wcs_request.py", "tileserver/web/ogc/wms.py"}


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
