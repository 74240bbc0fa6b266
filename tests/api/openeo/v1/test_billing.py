"""The ``billing`` block of GET / (1.2 and 1.3) when costs are configured, absent otherwise;
the capabilities validated against the openEO 1.2.0 API document (../shared/openeo); the
``plan`` of processing requests checked against the plans listed."""

from __future__ import annotations

import pytest
import yaml

from tests.support.hardening import BBOX
from tests.support.openeo import shared_openeo

V12, V13 = "/openeo/1.2", "/openeo/1.3"
CAPABILITIES = "#/paths/~1/get/responses/200/content/application~1json/schema"


@pytest.fixture(scope="module")
def capabilities_validator():
    """A validator of ``GET /`` answers from the openEO 1.2.0 OpenAPI document."""
    from openapi_schema_validator import OAS30Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    doc = yaml.safe_load((shared_openeo() / "openapi-1.2.0.yaml").read_text())
    registry = Registry().with_resource(
        "urn:openeo-1.2.0", Resource.from_contents(doc, default_specification=DRAFT4))
    return OAS30Validator({"$ref": "urn:openeo-1.2.0" + CAPABILITIES}, registry=registry)


def errors_of(validator, document: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)]


def graph() -> dict:
    extent = {"west": BBOX["left"], "east": BBOX["right"], "south": BBOX["bottom"],
              "north": BBOX["top"], "crs": "EPSG:32632"}
    return {"process_graph": {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "TEST", "spatial_extent": extent,
            "temporal_extent": ["2020-05-01", "2020-05-02"], "bands": ["B04"]}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "load"}, "format": "GTiff"}, "result": True}}}


def test_billing_when_costs_are_configured(make_app, small_catalog, capabilities_validator):
    c = make_app([small_catalog], cost_per_megapixel=2.5, cost_currency="credits",
                 billing_plan="Standard",
                 billing_plan_url="https://example.org/plans/standard").test_client()
    for base in (V12, V13):
        billing = c.get(f"{base}/").json["billing"]
        assert billing["currency"] == "credits" and billing["default_plan"] == "Standard"
        (plan,) = billing["plans"]
        assert plan["name"] == "Standard" and plan["paid"] is True
        assert plan["url"] == "https://example.org/plans/standard"
        assert "2.5 credits per million pixels read" in plan["description"]
    document = c.get(f"{V12}/").json
    assert errors_of(capabilities_validator, document) == []
    # the block is checked by the schema: a wrong one would be reported
    assert errors_of(capabilities_validator, {**document, "billing": {"plans": [{}]}})


def test_no_billing_without_costs(make_app, small_catalog, capabilities_validator):
    c = make_app([small_catalog]).test_client()
    for base in (V12, V13):
        assert "billing" not in c.get(f"{base}/").json
    assert errors_of(capabilities_validator, c.get(f"{V12}/").json) == []
    # a plan is not checked where no plans are offered
    body = {"process": graph(), "plan": "anything"}
    assert c.post(f"{V12}/result", json=body).status_code == 200


def test_the_plan_of_a_request_is_one_of_the_plans(make_app, small_catalog):
    c = make_app([small_catalog], cost_per_megapixel=1.0,
                 billing_plan="Standard").test_client()
    for plan in ("standard", "STANDARD", None):  # case-insensitive; none: the default
        body = {"process": graph(), **({"plan": plan} if plan else {})}
        assert c.post(f"{V13}/result", json=body).status_code == 200, plan
        assert c.post(f"{V13}/jobs", json=body).status_code == 201, plan
    for plan in ("premium", 3):
        body = {"process": graph(), "plan": plan}
        for path, status in (("result", 400), ("jobs", 400)):
            resp = c.post(f"{V13}/{path}", json=body)
            assert resp.status_code == status, (path, plan, resp.json)
            assert resp.json["code"] == "BillingPlanInvalid"
            assert "the plans are Standard" in resp.json["message"]
    resp = c.post(f"{V13}/services", json={"process": graph(), "type": "XYZ",
                                          "plan": "premium"})
    assert resp.status_code == 400 and resp.json["code"] == "BillingPlanInvalid"
