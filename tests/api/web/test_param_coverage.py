"""Every input of every route has been fuzzed: this test lists them (from the URL map, the
source, ``/openapi.json``, the process registry and the output formats) and checks each
against the deterministic hostile-value tables of ``tests/api/web/test_hostile_params.py`` and the
schemathesis run of ``tests/api/web/test_fuzz.py``. A new parameter, field, process argument or
OGC route fails here until it is added to those tables.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.fuzz import query_parameters_in_source
from tests.support.hostile import (
    JSON_FIELDS,
    KVP_PARAMS,
    OGC_SOURCES,
    OUTPUT_OPTIONS_FLAT,
    TILE_SEGMENTS,
    VIEWER_PARAMS,
    process_cases,
    rest_query_cases,
    versioned_body_fields,
    versioned_rules,
)
from tileserver.web.openapi import NOT_REST

ROOT = Path(__file__).resolve().parents[3]

#: OGC and asset routes and the deterministic tests that send hostile values to them.
OGC_ROUTES = {
    "/service/wmts/<service_id>": "KVP_PARAMS (wmts)",
    "/wmts": "KVP_PARAMS (wmts, GLOBAL_EDGES)",
    "/service/wmts/<service_id>/1.0.0/<layer>/<style>/<tms>/<z>/<row>/<last>":
        "TILE_SEGMENTS (wmts-rest)",
    "/service/wmts/<service_id>/1.0.0/<layer>/<style>/<time>/<tms>/<z>/<row>/<last>":
        "TILE_SEGMENTS (wmts-rest)",
    "/wmts/1.0.0/<layer>/<style>/<tms>/<z>/<row>/<last>": "test_fuzz (OGC routes)",
    "/wmts/1.0.0/<layer>/<style>/<time>/<tms>/<z>/<row>/<last>": "test_fuzz (OGC routes)",
    "/service/wmts/<service_id>/1.0.0/WMTSCapabilities.xml": "no parameters",
    "/wmts/1.0.0/WMTSCapabilities.xml": "no parameters",
    "/service/wcs/<service_id>": "KVP_PARAMS (wcs20, wcs10)",
    "/wcs": "KVP_PARAMS (wcs20, wcs10, GLOBAL_EDGES)",
    "/service/wms/<service_id>": "KVP_PARAMS (wms13, wms13fi, wms11, wms11fi, wmslegend)",
    "/wms": "KVP_PARAMS (wms*, GLOBAL_EDGES)",
    "/service/xyz/<service_id>/<z>/<x>/<last>": "TILE_SEGMENTS (xyz)",
    "/service/tms/<service_id>/<date>/<z>/<x>/<y>": "TILE_SEGMENTS (tms), test_tms_bands_...",
    "/service/tms/<service_id>/<date>/<z>/<x>/<y>/": "TILE_SEGMENTS (tms), test_tms_bands_...",
    "/static/leaflet/<path:filename>": "test_viewer (path traversal)",
    "/service/wmts/<service_id>/1.0.0/<layer>/<style>/legend.png": "TILE_SEGMENTS (legend)",
    "/wmts/1.0.0/<layer>/<style>/legend.png": "test_wmts (legend errors)",
    "/ogcapi": "no parameters but f (KVP_PARAMS ogcapi-*: the same parser)",
    "/ogcapi/": "no parameters but f",
    "/ogcapi/conformance": "no parameters but f",
    "/ogcapi/api": "no parameters",
    "/ogcapi/collections": "no parameters but f",
    "/ogcapi/collections/<collection_id>": "TILE_SEGMENTS (ogcapi-tile collection)",
    "/ogcapi/collections/<collection_id>/tiles": "TILE_SEGMENTS (ogcapi-tile collection)",
    "/ogcapi/collections/<collection_id>/tiles/<tms_id>": "TILE_SEGMENTS (ogcapi-tile tms)",
    "/ogcapi/collections/<collection_id>/tiles/<tms_id>/<z>/<row>/<col>":
        "TILE_SEGMENTS (ogcapi-tile), KVP_PARAMS (ogcapi-tiles)",
    "/ogcapi/collections/<collection_id>/map": "KVP_PARAMS (ogcapi-map)",
    "/ogcapi/collections/<collection_id>/coverage": "KVP_PARAMS (ogcapi-coverage)",
    "/ogcapi/collections/<collection_id>/coverage/domainset": "no parameters but f",
    "/ogcapi/collections/<collection_id>/coverage/rangetype": "no parameters but f",
    "/ogcapi/tileMatrixSets": "no parameters but f",
    "/ogcapi/tileMatrixSets/<tms_id>": "TILE_SEGMENTS (ogcapi-tile tms: the same check)",
    "/ogcapi/processes": "no parameters but f",
    "/ogcapi/processes/<process_id>": "test_ogcapi (unknown process: 404)",
    "/ogcapi/processes/<process_id>/execution":
        "KVP_PARAMS (ogcapi-execute), test_ogcapi (bodies)",
}


def _app(tmp_path, small_catalog):
    from tileserver.settings import load_settings
    from tileserver.web.app import create_app

    return create_app(load_settings(home=str(tmp_path / "home"), catalog=str(small_catalog)))


def _json_fields(doc: dict) -> set[tuple[str, str, str]]:
    """``(METHOD, path, dotted field)`` of every JSON request body property in the doc."""
    schemas = doc["components"]["schemas"]

    def resolve(schema: dict) -> dict:
        while "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def walk(schema: dict, prefix: str):
        for name, sub in (resolve(schema).get("properties") or {}).items():
            yield f"{prefix}{name}"
            sub = resolve(sub)
            if sub.get("properties") and name != "process_graph":  # graphs: per process
                yield from walk(sub, f"{prefix}{name}.")

    out = set()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}) if isinstance(op, dict) else {}
            schema = body.get("content", {}).get("application/json", {}).get("schema")
            if schema:
                out |= {(method.upper(), path, f) for f in walk(schema, "")}
    return out


def _table_route(path: str) -> str:
    return re.sub(r"\{(\w+)_id\}", lambda m: "{" + m.group(1) + "}", path)


def test_every_input_of_every_route_is_fuzzed(tmp_path, small_catalog):
    app = _app(tmp_path, small_catalog)
    try:
        with app.test_request_context():
            client = app.test_client()
            doc = client.get("/openapi.json").json
            rules = {r.rule for r in app.url_map.iter_rules() if r.endpoint != "static"}
            app.ids = {"job": "j", "wmts": "s"}
            rest_cases = rest_query_cases(app)
            versioned = {r.rule for r in versioned_rules(app)}
    finally:
        app.extensions["tileserver"].close()

    # 1. routes: REST routes are in /openapi.json (schemathesis fuzzes every operation of
    #    it, and tests/api/web/test_fuzz.py checks that each one was called); OGC routes are listed
    openapi_paths = set(doc["paths"])
    missing_routes = []
    for rule in sorted(rules - versioned):  # versioned APIs: test_versioned_api_...
        if NOT_REST.match(rule):
            if rule not in OGC_ROUTES:
                missing_routes.append(rule)
        elif re.sub(r"<(?:[a-z]+:)?(\w+)>", r"{\1}", rule) not in openapi_paths:
            missing_routes.append(rule)
    assert not missing_routes, f"routes nobody fuzzes: {missing_routes}"

    # 2. query parameters read in the source: the OGC ones have hostile-value tables; the
    #    REST ones are swept on the routes of their module (rest_query_cases)
    found = query_parameters_in_source(ROOT)
    ogc_fuzzed = {key for _, key, _, _ in KVP_PARAMS} | {"TIME", "BANDS"}  # BANDS: tms
    rest_fuzzed = {name for name, _ in rest_cases}
    missing = {name for name, files in found.items()
               if (files & OGC_SOURCES and name not in ogc_fuzzed)
               or (files - OGC_SOURCES and name not in rest_fuzzed)}
    assert not missing, f"query parameters without hostile values: {sorted(missing)}"
    assert len(found) >= 20  # the source scan itself works

    # 3. JSON fields of the request bodies, process arguments, output options
    fuzzed_fields = {(m, _table_route(r), f) for m, r, f in JSON_FIELDS}
    fields = _json_fields(doc)
    missing_fields = sorted(f for f in fields if (f[0], _table_route(f[1]), f[2])
                            not in fuzzed_fields)
    assert not missing_fields, f"JSON fields without hostile values: {missing_fields}"
    from tileserver.render.formats import output_formats

    options = {opt for spec in output_formats()["formats"].values() if isinstance(spec, dict)
               for opt in spec.get("parameters") or {}}
    assert options <= set(OUTPUT_OPTIONS_FLAT), sorted(options - set(OUTPUT_OPTIONS_FLAT))
    process_args = process_cases()
    assert len(process_args) >= 10

    total = (len({(p, k) for p, k, _, _ in KVP_PARAMS}) + len(TILE_SEGMENTS) + 2
             + len(VIEWER_PARAMS) + len(rest_fuzzed) + len(fields) + len(options)
             + len(process_args) + len(versioned_body_fields()))
    print(f"\nparameters covered by the deterministic fuzz: {total} "
          f"({len(rules)} routes, {len(versioned)} of them in versioned APIs)")
