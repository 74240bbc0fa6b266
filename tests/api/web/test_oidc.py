"""OpenID Connect against a real provider (node oidc-provider, started by the tests): the
providers list, the official Python client's client-credentials, device-code (PKCE) and
refresh-token flows, 1.2 (``oidc/<provider>/<token>``) and 1.3 (plain JWT) bearer tokens, user
isolation, key rotation, and the tokens that must be refused with ``403 TokenInvalid``:
expired, for another audience, forged."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import openeo
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.hardening import basic, bearer, users_file, with_users
from tests.support.oidc import (
    AUDIENCE,
    DEVICE_GRANT,
    DeviceUser,
    start_provider,
)
from tests.support.wmts import LiveServer
from tileserver.settings import SettingsError, load_settings
from tileserver.web.auth import add_user
from tileserver.web.oidc import OidcVerifier

V1 = "/openeo/1.2"
PG = {"process_graph": {"one": {"process_id": "add", "arguments": {"x": 1, "y": 2},
                                "result": True}}}
PARAMS = [{"name": "x", "description": "a number", "schema": {"type": "number"}}]


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    """One oidc-provider for the module."""
    running = start_provider(tmp_path_factory.mktemp("oidc"))
    yield running
    running.close()


@pytest.fixture
def oidc_app(make_app, small_catalog, provider, tmp_path_factory):
    """An app with alice and bob (passwords) and the test provider."""
    app = make_app([small_catalog], oidc_providers=[provider.config()], oidc_leeway=0,
                   oidc_jwks_cooldown=0)
    return with_users(app, users_file(tmp_path_factory))


@pytest.fixture
def client(oidc_app):
    return oidc_app.test_client()


@pytest.fixture
def live(oidc_app, tmp_path, monkeypatch):
    """The app over HTTP, for the Python client (its token store in ``tmp_path``)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    server = LiveServer(oidc_app)
    yield server
    server.close()


def oidc(token: str) -> dict:
    """The openEO 1.2 bearer header of an access token."""
    return bearer(f"oidc/testidp/{token}")


def assert_token_invalid(resp, words: str = ""):
    assert resp.status_code == 403, resp.get_data(as_text=True)
    assert resp.json["code"] == "TokenInvalid"
    assert words in resp.json["message"]


# -- GET /credentials/oidc --------------------------------------------------------------


def test_credentials_oidc_lists_the_providers(client, provider):
    resp = client.get(f"{V1}/credentials/oidc")
    assert resp.status_code == 200
    (listed,) = resp.json["providers"]
    assert listed["id"] == "testidp"
    assert listed["issuer"] == provider.issuer
    assert listed["title"] == "Test provider"
    assert listed["scopes"] == ["openid"]
    assert listed["default_clients"] == [
        {"id": "tileserver-public", "grant_types": [f"{DEVICE_GRANT}+pkce", "refresh_token"]}]
    endpoints = {e["path"]: e["methods"] for e in client.get(f"{V1}/").json["endpoints"]}
    assert endpoints["/credentials/oidc"] == ["GET"]


def test_authorization_parameters_only_from_1_3(make_app, small_catalog, provider):
    conf = provider.config(authorization_parameters={"prompt": "consent"})
    app = make_app([small_catalog], oidc_providers=[conf])
    client = app.test_client()
    assert "authorization_parameters" not in \
        client.get(f"{V1}/credentials/oidc").json["providers"][0]
    resp = client.get("/openeo/1.3/credentials/oidc")
    if resp.status_code == 404:
        pytest.skip("openEO 1.3 is not served by this build")
    assert resp.json["providers"][0]["authorization_parameters"] == {"prompt": "consent"}


def test_no_providers_no_endpoint(make_app, small_catalog):
    client = make_app([small_catalog]).test_client()
    assert client.get(f"{V1}/credentials/oidc").status_code == 404
    paths = {e["path"] for e in client.get(f"{V1}/").json["endpoints"]}
    assert "/credentials/oidc" not in paths


def test_providers_from_a_file_and_checked(tmp_path, provider):
    path = tmp_path / "oidc.yaml"
    path.write_text(json.dumps({"providers": [provider.config()]}))
    settings = load_settings(home=str(tmp_path), oidc_providers=str(path))
    assert list(OidcVerifier(settings).providers) == ["testidp"]
    for bad in ({"audience": None}, {"id": "has space"}, {"scopes": ["email"]},
                {"default_clients": [{"id": "x", "grant_types": ["password"]}]},
                {"unknown_key": 1}):
        with pytest.raises(SettingsError):
            OidcVerifier(load_settings(home=str(tmp_path),
                                       oidc_providers=[provider.config(**bad)]))


# -- the official Python client's flows -------------------------------------------------


def test_client_credentials_flow(live):
    conn = openeo.connect(f"{live.url}{V1}")
    conn.authenticate_oidc_client_credentials(client_id="service",
                                              client_secret="service-secret-0123456789")
    assert conn.describe_account()["user_id"] == "oidc-testidp-service"
    conn.save_user_defined_process("plus", PG["process_graph"], parameters=PARAMS)
    assert [p["id"] for p in conn.list_user_defined_processes()] == ["plus"]
    # the bearer the client sent is the 1.2 form
    assert conn.auth.bearer.startswith("oidc/testidp/")


@pytest.mark.slow
def test_device_code_flow_then_refresh_token(live):
    conn = openeo.connect(f"{live.url}{V1}")
    user = DeviceUser("carol")
    conn.authenticate_oidc_device(display=user, store_refresh_token=True, max_poll_time=60)
    assert user.error is None
    assert user.thread is not None  # the client showed the URL, the "user" logged in
    assert conn.describe_account()["user_id"] == "oidc-testidp-carol"
    conn.save_user_defined_process("carols", PG["process_graph"], parameters=PARAMS)

    # later: a new session from the stored refresh token, with the default client
    again = openeo.connect(f"{live.url}{V1}")
    again.authenticate_oidc_refresh_token()
    assert again.describe_account()["user_id"] == "oidc-testidp-carol"
    assert [p["id"] for p in again.list_user_defined_processes()] == ["carols"]
    assert again.auth.bearer != conn.auth.bearer  # a fresh access token


# -- tokens --------------------------------------------------------------------------------


def test_plain_jwt_of_openeo_1_3(client, provider):
    token = provider.client_credentials()["access_token"]
    resp = client.get(f"{V1}/me", headers=bearer(token))
    assert resp.status_code == 200
    assert resp.json["user_id"] == "oidc-testidp-service"
    resp = client.get(f"{V1}/me", headers=oidc(token))
    assert resp.json["user_id"] == "oidc-testidp-service"
    # the 0.0.2 API at the root takes the same tokens, and says 401 to bad ones
    files = "/users/oidc-testidp-service/files"
    assert client.get(files, headers=oidc(token)).status_code == 200
    assert client.get(files, headers=oidc(token[:-4] + "AAAA")).status_code == 401


def test_oidc_users_are_isolated_like_basic_users(client, provider):
    token = provider.client_credentials()["access_token"]
    assert client.put(f"{V1}/process_graphs/alices", json=PG,
                      headers=basic("alice")).status_code in (200, 201, 204)
    assert client.get(f"{V1}/process_graphs/alices", headers=oidc(token)).status_code == 404
    assert client.get(f"{V1}/process_graphs", headers=oidc(token)).json["processes"] == []
    assert client.put(f"{V1}/process_graphs/mine", json=PG,
                      headers=oidc(token)).status_code in (200, 201, 204)
    assert client.get(f"{V1}/process_graphs/mine", headers=basic("alice")).status_code == 404
    # no password gets in as an OpenID Connect user
    with pytest.raises(ValueError, match="OpenID Connect"):
        add_user(load_settings(home="/tmp/unused-home"), "oidc-testidp-service", "x" * 12)
    assert client.get(f"{V1}/me", headers=basic("oidc-testidp-service", "x" * 12)) \
        .status_code == 403


@pytest.mark.slow
def test_expired_token(client, provider):
    token = provider.client_credentials(client=("shortlived", "shortlived-secret-0123456789"))
    assert client.get(f"{V1}/me", headers=oidc(token["access_token"])).status_code == 200
    time.sleep(token["expires_in"] + 1.1)
    assert_token_invalid(client.get(f"{V1}/me", headers=oidc(token["access_token"])),
                         "expired")


def test_wrong_audience(client, provider):
    token = provider.client_credentials(client=("elsewhere", "elsewhere-secret-0123456789"))
    assert jwt.decode(token["access_token"], options={"verify_signature": False})["aud"] \
        == "https://elsewhere.test/api"
    assert_token_invalid(client.get(f"{V1}/me", headers=oidc(token["access_token"])),
                         "audience")
    # as a plain JWT too (1.3 style: the issuer picks the provider)
    assert_token_invalid(client.get(f"{V1}/me", headers=bearer(token["access_token"])),
                         "audience")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _hs256(header: dict, claims: dict, secret: bytes) -> str:
    signed = f"{_b64(header)}.{_b64(claims)}"
    mac = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_forged_tokens(client, provider):
    real = provider.client_credentials()["access_token"]
    header = jwt.get_unverified_header(real)
    claims = jwt.decode(real, options={"verify_signature": False})
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forgeries = {
        # the provider's key id, someone else's key
        "other key": jwt.encode({**claims, "sub": "admin"}, forger, algorithm="RS256",
                                headers={"kid": header["kid"]}),
        # the real signature over changed claims
        "changed claims": ".".join([real.split(".")[0], _b64({**claims, "sub": "admin"}),
                                    real.split(".")[2]]),
        # no signature at all
        "alg none": jwt.encode({**claims, "sub": "admin"}, None, algorithm="none",
                               headers={"kid": header["kid"]}),
        # the provider's public key used as an HMAC secret (the classic algorithm confusion)
        "hmac with the public key": _hs256({"alg": "HS256", "kid": header["kid"]},
                                           {**claims, "sub": "admin"},
                                           json.dumps(provider.jwks()["keys"][0]).encode()),
        # an unknown key id
        "unknown kid": jwt.encode(claims, forger, algorithm="RS256", headers={"kid": "nope"}),
    }
    for name, token in forgeries.items():
        for headers in (oidc(token), bearer(token)):
            resp = client.get(f"{V1}/me", headers=headers)
            assert resp.status_code == 403, (name, resp.get_data(as_text=True))
            assert resp.json["code"] == "TokenInvalid", name
    assert_token_invalid(client.get(f"{V1}/me", headers=bearer(f"oidc/nobody/{real}")),
                         "unknown OpenID Connect provider")
    # and the real one works
    assert client.get(f"{V1}/me", headers=oidc(real)).status_code == 200


@pytest.mark.slow
def test_key_rotation_is_followed(make_app, small_catalog, tmp_path):
    first = start_provider(tmp_path, kids=("k1",))
    port = int(first.issuer.rsplit(":", 1)[1])
    try:
        app = make_app([small_catalog], oidc_providers=[first.config()], oidc_jwks_cooldown=0)
        client = app.test_client()
        token = first.client_credentials()["access_token"]
        assert client.get(f"{V1}/me", headers=oidc(token)).status_code == 200
    finally:
        first.close()
    # the provider comes back with a new signing key: one refetch of its keys
    second = start_provider(tmp_path, kids=("k2",), port=port)
    try:
        rotated = second.client_credentials()["access_token"]
        assert jwt.get_unverified_header(rotated)["kid"] == "k2"
        assert client.get(f"{V1}/me", headers=oidc(rotated)).status_code == 200
        # the old key is gone from the provider's keys: its tokens no longer verify
        assert_token_invalid(client.get(f"{V1}/me", headers=oidc(token)))
    finally:
        second.close()


def test_keys_are_cached(client, provider, monkeypatch):
    fetches = []
    original = jwt.PyJWKClient.fetch_data

    def counting(self):
        fetches.append(self.uri)
        return original(self)

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", counting)
    token = provider.client_credentials()["access_token"]
    for _ in range(5):
        assert client.get(f"{V1}/me", headers=oidc(token)).status_code == 200
    assert len(fetches) == 1


def test_unknown_subjects_need_listing_without_auto_users(make_app, small_catalog, provider,
                                                          tmp_path_factory):
    app = with_users(make_app([small_catalog], oidc_providers=[provider.config()],
                              oidc_auto_users=False), users_file(tmp_path_factory))
    client = app.test_client()
    token = provider.client_credentials()["access_token"]
    assert_token_invalid(client.get(f"{V1}/me", headers=oidc(token)), "no user")
    settings = app.extensions["tileserver"].settings
    path = settings.home / "users.yaml"
    path.write_text(path.read_text() + "  oidc-testidp-service: {}\n")
    assert client.get(f"{V1}/me", headers=oidc(token)).json["user_id"] \
        == "oidc-testidp-service"


def test_provider_down_is_a_503(make_app, small_catalog, provider):
    down = provider.config(issuer="http://127.0.0.1:9")  # the discard port: nobody there
    client = make_app([small_catalog], oidc_providers=[down]).test_client()
    token = provider.client_credentials()["access_token"]
    resp = client.get(f"{V1}/me", headers=oidc(token))
    assert resp.status_code == 503
    assert resp.json["code"] == "ServiceUnavailable"
    assert "cannot be reached" in resp.json["message"]


def test_oidc_only_is_no_single_user_mode(make_app, small_catalog, provider):
    client = make_app([small_catalog], oidc_providers=[provider.config()]).test_client()
    assert client.get(f"{V1}/me").status_code == 401
    token = provider.client_credentials()["access_token"]
    assert client.get(f"{V1}/me", headers=oidc(token)).json["user_id"] \
        == "oidc-testidp-service"
    assert client.get(f"{V1}/me", headers=bearer("basic//garbage")).status_code == 403
    assert requests is not None and AUDIENCE
