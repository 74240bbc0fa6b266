"""``/openapi.json``: a valid OpenAPI 3.1 document that lists exactly the REST routes the app
has, whose response schemas match what the server really answers."""

from __future__ import annotations

import jsonschema_rs
import pytest
from openapi_spec_validator import validate

from tests.support.hardening import ndvi_graph
from tileserver.web.apidoc import is_declared
from tileserver.web.openapi import NOT_REST, openapi_path


@pytest.fixture
def doc(client):
    resp = client.get("/openapi.json")
    assert resp.status_code == 200 and resp.is_json
    return resp.json


def test_document_is_valid_openapi(doc):
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema
    assert doc["openapi"].startswith("3.")


def test_every_rest_route_is_documented_and_nothing_else(small_app, doc):
    # the openEO 1.2 and 1.3 dialects are described by the official openEO API documents
    other_versions = small_app.extensions["tileserver.versioned_blueprints"]
    assert {"openeo_v1", "openeo_v1_3"} <= other_versions
    routes: dict[str, set[str]] = {}
    for rule in small_app.url_map.iter_rules():
        if rule.endpoint == "static" or NOT_REST.match(rule.rule):
            continue
        if rule.endpoint.split(".")[0] in other_versions:
            assert rule.rule.startswith(("/openeo/1.2/", "/openeo/1.3/", "/.well-known/")), \
                rule.rule
            continue
        methods = {m.lower() for m in rule.methods} - {"head", "options"}
        routes.setdefault(openapi_path(rule.rule), set()).update(methods)
    documented = {path: {m for m in item if m != "parameters"}
                  for path, item in doc["paths"].items()}
    assert documented == routes
    for contract in ("/jobs", "/jobs/{job_id}", "/execute", "/services",
                     "/services/{service_id}", "/auth/login", "/users/{user_id}/jobs"):
        assert contract in documented, contract


def test_every_rest_view_declares_its_operation(small_app, doc):
    """The document is assembled from the views' own declarations (``@operation`` under the
    route), so a route cannot be added without its documentation."""
    other_versions = small_app.extensions["tileserver.versioned_blueprints"]
    undeclared = sorted(
        rule.endpoint for rule in small_app.url_map.iter_rules()
        if rule.endpoint != "static" and not NOT_REST.match(rule.rule)
        and rule.endpoint.split(".")[0] not in other_versions
        and not is_declared(small_app.view_functions[rule.endpoint]))
    assert undeclared == []
    assert doc["paths"]["/jobs"]["post"]["summary"] == "Register a lazy job"


def _validator(doc, name):
    return jsonschema_rs.validator_for({"$ref": f"#/components/schemas/{name}",
                                        "components": doc["components"]})


def test_responses_match_the_documented_schemas(client, doc):
    job = client.post("/jobs", json={"process_graph": ndvi_graph(), "title": "t"})
    assert job.status_code == 201
    _validator(doc, "Job").validate(job.json)
    _validator(doc, "Job").validate(client.get(f"/jobs/{job.json['job_id']}").json)
    service = client.post("/services", json={"job_id": job.json["job_id"], "type": "wmts"})
    _validator(doc, "Service").validate(service.json)
    _validator(doc, "Login").validate(client.get("/auth/login").json)
    error = client.get("/jobs/nope")
    _validator(doc, "Error").validate(error.json)
    with pytest.raises(jsonschema_rs.ValidationError):
        _validator(doc, "Job").validate({"status": "flying"})  # the schemas do constrain


def test_documented_status_codes_are_the_real_ones(client, doc):
    ops = doc["paths"]
    job = client.post("/jobs", json={"process_graph": ndvi_graph()})
    assert str(job.status_code) in ops["/jobs"]["post"]["responses"]
    bad = client.post("/jobs", json={"process_graph": {"process_id": "nope"}})
    assert str(bad.status_code) in ops["/jobs"]["post"]["responses"]
    gone = client.delete(f"/jobs/{job.json['job_id']}")
    assert str(gone.status_code) in ops["/jobs/{job_id}"]["delete"]["responses"]
    missing = client.get(f"/jobs/{job.json['job_id']}")
    assert str(missing.status_code) in ops["/jobs/{job_id}"]["get"]["responses"]
