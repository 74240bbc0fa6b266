"""openEO API 1.3 beside 1.2, through the Flask test client: what 1.3 answers differently
(the ``web-editor`` link, ``version`` of the processes, ``OpenEO-Identifier`` of ``POST
/result``, job timestamps, JSON Web Tokens of ``/credentials/basic``) and what 1.2 keeps;
the small fixes of issue 20 (the login path of a 401, the field a ``PUT /process_graphs``
error names, process specifications installed on first use). Batch timestamps and the
stacktrace of a failed job: ``tests/unit/jobs/test_batch.py``; the official client on
both versions: ``tests/e2e/clients/test_openeo_client.py``."""

from __future__ import annotations

import time
from urllib.parse import quote

import jwt
import pytest

from tests.support.hardening import BBOX, basic, bearer, users_file, with_users
from tileserver.graph import specs
from tileserver.web.auth import BASIC_ISSUER, add_user

V12, V13 = "/openeo/1.2", "/openeo/1.3"
GRAPH = {
    "load": {"process_id": "load_collection", "arguments": {
        "id": "TEST", "spatial_extent": {"west": BBOX["left"], "east": BBOX["right"],
                                         "south": BBOX["bottom"], "north": BBOX["top"],
                                         "crs": "EPSG:32632"},
        "temporal_extent": ["2020-05-01", "2020-06-01"], "bands": ["B04"]}},
    "save": {"process_id": "save_result", "arguments": {
        "data": {"from_node": "load"}, "format": "GTiff"}, "result": True}}


@pytest.fixture
def users_app(make_app, small_catalog, tmp_path_factory):
    return with_users(make_app([small_catalog]), users_file(tmp_path_factory))


def token(client, user: str, base: str = V13) -> str:
    resp = client.get(f"{base}/credentials/basic", headers=basic(user))
    assert resp.status_code == 200, resp.json
    return resp.json["access_token"]


def test_well_known_lists_1_3_first_and_1_2_unchanged(client):
    versions = client.get("/.well-known/openeo").json["versions"]
    assert [(v["api_version"], v["url"], v["production"]) for v in versions] == [
        ("1.3.0", "http://localhost/openeo/1.3/", True),
        ("1.2.0", "http://localhost/openeo/1.2/", True),
        ("0.0.2", "http://localhost/", True)]


def test_capabilities_of_1_3_have_the_web_editor_link(client):
    new, old = client.get(f"{V13}/").json, client.get(f"{V12}/").json
    assert new["api_version"] == "1.3.0" and old["api_version"] == "1.2.0"
    assert new["type"] == "Catalog" and new["conformsTo"][0] == "https://api.openeo.org/1.3.0"
    (editor,) = [link for link in new["links"] if link["rel"] == "web-editor"]
    assert editor["href"] == ("https://editor.openeo.org/?server="
                              + quote("http://localhost/openeo/1.3/", safe=""))
    assert editor["type"] == "text/html"
    assert "web-editor" not in {link["rel"] for link in old["links"]}
    # apart from the version and the link, the same document
    assert [link for link in new["links"] if link["rel"] != "web-editor"] == [
        {**link, "href": link["href"].replace("/openeo/1.2/", "/openeo/1.3/")}
        for link in old["links"]]
    only_13 = [{"path": path, "methods": methods} for path, methods in (
        ("/processing_parameters", ["GET"]), ("/workspace_providers", ["GET"]),
        ("/workspaces", ["GET", "POST"]),
        ("/workspaces/{workspace_id}", ["DELETE", "GET", "PATCH"]),
        ("/workspaces/{workspace_id}/files", ["GET"]),
        ("/workspaces/{workspace_id}/files/{path}", ["GET"]))]
    assert [e for e in new["endpoints"] if e not in only_13] == old["endpoints"]
    assert [e for e in new["endpoints"] if e in only_13] == only_13
    assert client.get(f"{V13}/conformance").json["conformsTo"] == new["conformsTo"]
    assert client.get(f"{V12}/conformance").json["conformsTo"] == old["conformsTo"]


def test_processing_parameters_extension_in_1_3_only(users_app):
    c = users_app.test_client()  # public, as the capabilities are
    assert c.get(f"{V13}/processing_parameters").json == {
        "create_job_parameters": [], "create_synchronous_parameters": [],
        "create_service_parameters": [], "links": []}
    assert c.get(f"{V12}/processing_parameters").status_code == 404
    conforms = c.get(f"{V13}/").json["conformsTo"]
    assert "https://api.openeo.org/extensions/processing-parameters/0.1.0" in conforms
    assert not any("extensions" in cls for cls in c.get(f"{V12}/").json["conformsTo"])
    # plain JSON Web Tokens as bearer tokens (the JS client then drops the basic// prefix)
    assert "https://api.openeo.org/1.3.0/authentication/jwt" in conforms
    assert not any("jwt" in cls for cls in c.get(f"{V12}/").json["conformsTo"])


def test_processes_have_a_version_in_1_3_only(client):
    new, old = client.get(f"{V13}/processes").json, client.get(f"{V12}/processes").json
    assert new["version"] == specs.PROCESSES_VERSION and "version" not in old
    assert new["processes"] == old["processes"] and len(new["processes"]) > 100


def test_udf_runtimes_list_one_runtime_at_least(client):
    runtimes = client.get(f"{V13}/udf_runtimes").json
    assert len(runtimes) >= 1
    for runtime in runtimes.values():
        assert runtime["type"] == "language" and runtime["default"] in runtime["versions"]


def test_result_has_an_identifier_in_1_3_only(client):
    body = {"process": {"process_graph": GRAPH}}
    new, old = client.post(f"{V13}/result", json=body), client.post(f"{V12}/result", json=body)
    assert new.status_code == old.status_code == 200
    assert len(new.headers["OpenEO-Identifier"]) == 32
    assert "OpenEO-Identifier" not in old.headers
    assert new.data == old.data
    again = client.post(f"{V13}/result", json=body)
    assert again.headers["OpenEO-Identifier"] != new.headers["OpenEO-Identifier"]


def test_jobs_of_1_3_carry_the_new_timestamps(client):
    body = {"process": {"process_graph": GRAPH}}
    job_id = client.post(f"{V13}/jobs", json=body).headers["OpenEO-Identifier"]
    new, old = client.get(f"{V13}/jobs/{job_id}").json, client.get(f"{V12}/jobs/{job_id}").json
    assert (new["queued"], new["started"], new["unpublished"]) == (None, None, None)
    assert not {"queued", "started", "unpublished"} & set(old)
    assert {k: v for k, v in new.items() if k not in ("queued", "started", "unpublished")} \
        == old
    (listed,) = client.get(f"{V13}/jobs").json["jobs"]
    assert listed["queued"] is None and "queued" not in client.get(f"{V12}/jobs").json["jobs"][0]


def test_basic_login_of_1_3_is_a_json_web_token(users_app):
    c = users_app.test_client()
    access = token(c, "alice")
    claims = jwt.decode(access, options={"verify_signature": False})
    assert claims["sub"] == "alice" and claims["iss"] == BASIC_ISSUER
    assert claims["exp"] - claims["iat"] == users_app.extensions["tileserver"].settings.token_ttl
    assert jwt.get_unverified_header(access)["alg"] == "HS256"
    # a plain Bearer token (1.3), the basic// form (1.2 clients), on every base
    for base in (V13, V12, ""):
        for header in (bearer(access), bearer(f"basic//{access}")):
            me = c.get(f"{base}/me" if base else "/users/alice/jobs", headers=header)
            assert me.status_code == 200, (base, header, me.json)
    assert c.get(f"{V13}/me", headers=bearer(access)).json["user_id"] == "alice"
    # the 1.2 token is unchanged (not a JWT) and works on 1.3 too
    old = token(c, "bob", V12)
    with pytest.raises(jwt.DecodeError):
        jwt.decode(old, options={"verify_signature": False})
    assert c.get(f"{V13}/me", headers=bearer(old)).json["user_id"] == "bob"
    assert c.get(f"{V13}/me", headers=bearer(f"basic//{old}")).json["user_id"] == "bob"


def test_json_web_tokens_that_are_not_ours_are_refused(users_app):
    c = users_app.test_client()
    auth = users_app.extensions["tileserver.authenticator"]
    claims = jwt.decode(token(c, "alice"), options={"verify_signature": False})
    forged = jwt.encode(claims, b"another key of at least thirty-two bytes", algorithm="HS256")
    expired = jwt.encode({**claims, "exp": int(time.time()) - 10}, auth.jwt_key,
                         algorithm="HS256")
    other_issuer = jwt.encode({**claims, "iss": "https://idp.example"}, auth.jwt_key,
                              algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")
    as_bob = jwt.encode({**claims, "sub": "bob"}, auth.jwt_key, algorithm="HS256")
    for bad in (forged, expired, other_issuer, unsigned, as_bob, "a.b.c"):
        resp = c.get(f"{V13}/me", headers=bearer(bad))
        assert resp.status_code == 403 and resp.json["code"] == "TokenInvalid", bad


def test_a_password_change_ends_the_json_web_tokens(users_app):
    c = users_app.test_client()
    access = token(c, "alice")
    assert c.get(f"{V13}/me", headers=bearer(access)).status_code == 200
    add_user(users_app.extensions["tileserver"].settings, "alice", "a-new-password-1")
    assert c.get(f"{V13}/me", headers=bearer(access)).status_code == 403


@pytest.mark.parametrize("base,login,form", [
    (V12, "GET /openeo/1.2/credentials/basic", "Bearer basic//<access_token>"),
    (V13, "GET /openeo/1.3/credentials/basic", "Bearer <access_token>")])
def test_401_names_the_login_of_the_version_asked(users_app, base, login, form):
    resp = users_app.test_client().get(f"{base}/jobs")
    assert resp.status_code == 401 and resp.json["code"] == "AuthenticationRequired"
    assert login in resp.json["message"] and form in resp.json["message"]
    assert "/auth/login" not in resp.json["message"]


def test_401_of_0_0_2_still_names_its_login(users_app):
    resp = users_app.test_client().get("/users/alice/jobs")
    assert resp.status_code == 401 and "GET /auth/login" in resp.json["message"]


@pytest.mark.parametrize("base", [V12, V13])
def test_put_process_graph_error_names_the_top_level_field(client, base):
    node = {"process_id": "save_result", "arguments": {"data": 1, "format": "GTiff"},
            "result": True}  # what the JS client's setUserProcess(id, builderNode) sends
    resp = client.put(f"{base}/process_graphs/mine", json=node)
    assert resp.status_code == 400 and resp.json["code"] == "ProcessGraphMissing"
    message = resp.json["message"]
    assert "'process_graph'" in message and "top level" in message and "one node" in message
    assert "'process': {" not in message
    wrapped = client.put(f"{base}/process_graphs/mine",
                         json={"process": {"process_graph": GRAPH}})
    assert wrapped.status_code == 400 and "not inside 'process'" in wrapped.json["message"]
    empty = client.post(f"{base}/validation", json={"summary": "nothing"})
    assert empty.status_code == 200
    assert "'process_graph'" in empty.json["errors"][0]["message"]


@pytest.fixture
def no_specs(tmp_path, monkeypatch):
    """No process specifications anywhere: neither packaged nor installed."""
    monkeypatch.setattr(specs, "packaged_dir", lambda: tmp_path / "packaged")
    monkeypatch.setattr(specs, "specs_dir", lambda: tmp_path / "prefix" / "openeo-processes")
    monkeypatch.setattr(specs, "user_specs_dir", lambda: tmp_path / "cache" / "openeo-processes")
    monkeypatch.setattr(specs, "_failed", [])
    specs._index.cache_clear()
    specs._load.cache_clear()
    yield tmp_path
    specs._index.cache_clear()
    specs._load.cache_clear()


def test_missing_specs_are_installed_on_first_use(no_specs, client):
    """After a plain ``pip install -e .`` (no ``make install``): the first ``GET
    /processes`` installs them (pip takes the wheel from its cache)."""
    resp = client.get(f"{V13}/processes")
    assert resp.status_code == 200, resp.json
    assert len(resp.json["processes"]) > 100
    assert (no_specs / "prefix" / "openeo-processes" / "add.json").exists()


def test_specs_that_cannot_be_installed_are_a_json_503(no_specs, client, monkeypatch):
    calls = []

    def offline(target):
        calls.append(target)
        raise SystemExit("pip download failed: no network")

    monkeypatch.setattr(specs, "build_into", offline)
    for base in (V12, V13):
        resp = client.get(f"{base}/processes")
        assert resp.status_code == 503 and resp.json["code"] == "ServiceUnavailable"
        assert "python -m tileserver.graph.specs install" in resp.json["message"]
    assert len(calls) == 2  # the environment, then the user's cache; then no retry for a while
    assert client.get("/processes").status_code == 200  # 0.0.2 lists its own descriptions
