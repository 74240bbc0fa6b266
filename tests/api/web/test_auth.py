"""Users, Basic and Bearer authentication, tokens, single-user mode and the CLI."""

from __future__ import annotations

import base64
import subprocess
import sys
import time

import itsdangerous
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from tests.support.hardening import (
    PASSWORDS,
    basic,
    bearer,
    fill_rule,
    ndvi_graph,
)
from tileserver.cli import main as cli_main
from tileserver.settings import load_settings
from tileserver.web.auth import add_user, configured_users, remove_user, users_path

PUBLIC = ["/", "/capabilities", "/capabilities/output_formats", "/capabilities/services",
          "/data", "/data/TEST", "/processes", "/processes/NDVI", "/openapi.json"]


@pytest.fixture
def client(app):
    return app.test_client()


def login(client, user):
    resp = client.get("/auth/login", headers=basic(user))
    assert resp.status_code == 200, resp.json
    assert resp.json["user_id"] == user
    return resp.json["token"]


def test_single_user_mode_needs_no_credentials(small_app):
    c = small_app.test_client()
    resp = c.post("/jobs", json={"process_graph": ndvi_graph()})
    assert resp.status_code == 201
    assert resp.json["user_id"] == "me"
    assert [j["job_id"] for j in c.get("/users/me/jobs").json] == [resp.json["job_id"]]
    login = c.get("/auth/login")
    assert login.status_code == 200 and login.json["user_id"] == "me"
    # a token of single-user mode works too (clients that always log in)
    assert c.get("/users/me/jobs", headers=bearer(login.json["token"])).status_code == 200


def test_password_hashes_not_plaintext(app):
    text = users_path(app.extensions["tileserver"].settings).read_text()
    for password in PASSWORDS.values():
        assert password not in text
    users = yaml.safe_load(text)["users"]
    assert set(users) == {"alice", "bob"}
    assert all(u["password"].startswith("scrypt:") for u in users.values())


@pytest.mark.parametrize("path", PUBLIC)
def test_public_endpoints_answer_without_credentials(client, path):
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("method,path", [
    ("POST", "/jobs"), ("POST", "/execute"), ("GET", "/jobs/123"),
    ("GET", "/users/alice/jobs"), ("GET", "/users/alice/services"),
    ("GET", "/services/abc"), ("POST", "/services"), ("GET", "/users/alice/files"),
])
def test_private_endpoints_need_credentials(client, method, path):
    resp = client.open(path, method=method, json={"process_graph": ndvi_graph()})
    assert resp.status_code == 401
    assert resp.json["code"] == "AuthenticationRequired"
    assert resp.headers["WWW-Authenticate"].startswith("Basic ")


def test_login_basic_and_bearer(client):
    token = login(client, "alice")
    created = client.post("/jobs", json={"process_graph": ndvi_graph()}, headers=bearer(token))
    assert created.status_code == 201 and created.json["user_id"] == "alice"
    job_id = created.json["job_id"]
    # the same user with Basic sees the job
    assert client.get(f"/jobs/{job_id}", headers=basic("alice")).status_code == 200
    # openEO 1.x style "Bearer basic//<token>" is accepted too
    assert client.get(f"/jobs/{job_id}",
                      headers=bearer(f"basic//{token}")).status_code == 200
    assert [j["job_id"] for j in client.get(
        "/users/alice/jobs", headers=bearer(token)).json] == [job_id]


@pytest.mark.parametrize("headers", [
    basic("alice", "wrong-password"),
    basic("mallory", "alice-secret-1"),
    {"Authorization": "Basic !!!notbase64"},
    {"Authorization": "Bearer not-a-token"},
    {"Authorization": "Bearer "},
    {"Authorization": "Digest username=alice"},
])
def test_bad_credentials_are_401(client, headers):
    resp = client.get("/users/alice/jobs", headers=headers)
    assert resp.status_code == 401
    assert resp.json["code"] == "AuthenticationRequired"
    assert client.get("/auth/login", headers=headers).status_code == 401


def test_tampered_token_is_rejected(client):
    token = login(client, "alice")
    payload, ts, sig = token.split(".")
    forged = itsdangerous.encoding.base64_encode(b'{"u":"bob","p":"x"}').decode()
    assert client.get("/users/bob/jobs", headers=bearer(f"{forged}.{ts}.{sig}")).status_code \
        == 401
    assert client.get("/users/alice/jobs", headers=bearer(token[:-2] + "xx")).status_code \
        == 401


def test_expired_token_is_rejected(client, monkeypatch):
    real = itsdangerous.timed.TimestampSigner.get_timestamp
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp",
                        lambda self: int(time.time()) - 2 * 86400)
    old = login(client, "alice")
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", real)
    resp = client.get("/users/alice/jobs", headers=bearer(old))
    assert resp.status_code == 401
    assert client.get("/users/alice/jobs", headers=bearer(login(client, "alice"))) \
        .status_code == 200


def test_password_change_and_removal_revoke_tokens(app, client):
    settings = app.extensions["tileserver"].settings
    token = login(client, "alice")
    bob = login(client, "bob")
    add_user(settings, "alice", "a-new-password")
    assert client.get("/users/alice/jobs", headers=bearer(token)).status_code == 401
    assert client.get("/users/alice/jobs", headers=basic("alice")).status_code == 401
    assert client.get("/users/alice/jobs",
                      headers=basic("alice", "a-new-password")).status_code == 200
    assert remove_user(settings, "bob")
    assert client.get("/users/bob/jobs", headers=bearer(bob)).status_code == 401


def test_tokens_shared_between_apps_of_one_home(app, make_app, small_catalog):
    """Gunicorn workers are separate apps over the same home: a token from one works in
    the other (the signing key is stored under the home)."""
    token = login(app.test_client(), "alice")
    other = make_app([small_catalog])  # make_app gives every app of a test the same home
    assert other.extensions["tileserver"].settings.home == app.extensions["tileserver"] \
        .settings.home
    assert other.test_client().get("/users/alice/jobs", headers=bearer(token)).status_code \
        == 200


GLOBAL_KVP = {"/wmts": "SERVICE=WMTS&REQUEST=GetCapabilities",
              "/wcs": "SERVICE=WCS&REQUEST=GetCapabilities&VERSION=2.0.1",
              "/wms": "SERVICE=WMS&REQUEST=GetCapabilities"}


def test_global_ogc_endpoints_take_basic_and_list_the_callers_jobs(app, client):
    rules = {r.rule for r in app.url_map.iter_rules()}
    present = [p for p in GLOBAL_KVP if p in rules]
    assert present == list(GLOBAL_KVP), rules
    jobs = {u: client.post("/jobs", json={"process_graph": ndvi_graph(), "title": u},
                           headers=basic(u)).json["job_id"] for u in ("alice", "bob")}
    for path in present:
        url = f"{path}?{GLOBAL_KVP[path]}"
        anon = client.get(url)
        assert anon.status_code == 401, url
        assert anon.headers["WWW-Authenticate"].startswith("Basic ")
        assert etree.QName(etree.fromstring(anon.data)).localname.endswith("ExceptionReport")
        for user, other in (("alice", "bob"), ("bob", "alice")):
            resp = client.get(url, headers=basic(user))
            assert resp.status_code == 200, url
            text = resp.data.decode()
            assert jobs[user] in text and jobs[other] not in text, url


def test_every_global_ogc_route_needs_credentials(app, client):
    """The global OGC views ask for the user themselves: every route of theirs is tried."""
    job = client.post("/jobs", json={"process_graph": ndvi_graph()},
                      headers=basic("alice")).json["job_id"]
    values = {"layer": job, "style": "default", "tms": "WebMercatorQuad", "z": "14",
              "row": "5000", "last": "8000.png", "time": "2020-05-01"}
    tried = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/wmts", "/wcs", "/wms")):
            continue
        url = fill_rule(rule.rule, values)
        assert url, f"cannot fill {rule.rule}"
        url += "?" + GLOBAL_KVP.get(rule.rule, "")
        anon = client.get(url)
        assert anon.status_code == 401, (rule.rule, anon.status_code)
        assert anon.headers["WWW-Authenticate"].startswith("Basic ")
        tried += 1
    assert tried >= len(GLOBAL_KVP), "no global OGC route found"


def test_cli_users_add_list_remove(tmp_path, monkeypatch):
    env = {"TILESERVER_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "tileserver.cli", "users"]
    out = subprocess.run(run + ["add", "carol", "--password-stdin"], input="carol-password\n",
                         env=env, capture_output=True, text=True, check=True)
    assert "carol" in out.stdout
    text = (tmp_path / "users.yaml").read_text()
    assert "carol-password" not in text
    listed = subprocess.run(run + ["list"], env=env, capture_output=True, text=True,
                            check=True)
    assert listed.stdout.split() == ["carol"]
    short = subprocess.run(run + ["add", "dave", "--password-stdin"], input="short\n",
                           env=env, capture_output=True, text=True)
    assert short.returncode == 2 and "8 characters" in short.stderr
    monkeypatch.setenv("TILESERVER_HOME", str(tmp_path))
    assert set(configured_users(load_settings())) == {"carol"}
    subprocess.run(run + ["remove", "carol"], env=env, check=True)
    assert configured_users(load_settings()) == {}


def test_serve_refuses_remote_bind_in_single_user_mode(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TILESERVER_HOME", str(tmp_path))
    monkeypatch.delenv("TILESERVER_ALLOW_REMOTE", raising=False)
    assert cli_main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "loopback" in capsys.readouterr().err


@given(scheme=st.sampled_from(["Basic", "Bearer", "basic", "BEARER", "Digest", ""]),
       value=st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=80)
       | st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()))
@settings(max_examples=60)
def test_random_authorization_headers_are_401(client, scheme, value):
    resp = client.get("/users/alice/jobs", headers={"Authorization": f"{scheme} {value}"})
    assert resp.status_code == 401
    assert resp.json["code"] == "AuthenticationRequired"


def test_unreadable_users_file_fails_closed(app, client, caplog):
    path = users_path(app.extensions["tileserver"].settings)
    path.write_text("users: [not: a mapping")  # broken YAML
    assert client.get("/users/me/jobs").status_code == 401  # not single-user mode
    assert client.get("/users/alice/jobs", headers=basic("alice")).status_code == 401
    assert "cannot read the users file" in caplog.text


@pytest.mark.parametrize("path", ["/openeo/1.2/no-such-route", "/no-such-route",
                                  "/openeo/1.2/jobs/x/y/z"])
def test_unknown_routes_are_404_without_credentials(client, path):
    # a path no route serves says so to anyone (the routes are public in /openapi.json)
    # instead of asking for credentials it could not use; real routes stay private
    resp = client.get(path)
    assert resp.status_code == 404
    if path.startswith("/openeo/1.2/"):
        assert resp.json["code"] == "NotFound"
    assert client.get("/openeo/1.2/jobs").status_code == 401
