"""OpenID Connect: the configured providers and the verification of their access tokens.

The providers come from the ``oidc_providers`` setting (README: OpenID Connect). A request
carries a provider's access token as ``Authorization: Bearer oidc/<provider id>/<token>``
(openEO 1.0-1.2) or as the plain JWT (openEO 1.3); :class:`OidcVerifier` checks it against
the provider's published keys (JWKS, found through its discovery document): the signature,
the issuer, the audience and the expiry, with PyJWT. Keys are cached for ``oidc_jwks_ttl``
seconds, and a token signed with a key id not in the cache fetches the keys again (at most
once per ``oidc_jwks_cooldown`` seconds), so a provider's key rotation is followed without
letting forged key ids hammer it.

A valid token's subject (``oidc_user_claim``) becomes the tileserver user
``oidc-<provider id>-<subject>`` (a digest of the subject when it has characters a user id
may not have). No Flask here: the web layer's :mod:`tileserver.web.auth` asks this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import jwt

from tileserver.errors import IdentityProviderUnavailable, TokenInvalid
from tileserver.settings import OidcSettings, SettingsError

log = logging.getLogger(__name__)

#: Provider ids as openEO allows them (they prefix the 1.x bearer tokens).
PROVIDER_ID = re.compile(r"^[A-Za-z0-9_]{1,20}$")
#: Grant types a default client may list (openEO ``GET /credentials/oidc``).
GRANT_TYPES = ("implicit", "authorization_code", "authorization_code+pkce",
               "urn:ietf:params:oauth:grant-type:device_code",
               "urn:ietf:params:oauth:grant-type:device_code+pkce", "refresh_token")
#: Asymmetric signatures only: a provider's public key must never serve as an HMAC secret.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA")
#: A subject usable as is in a user id (the rest is replaced by a digest).
_PLAIN_SUBJECT = re.compile(r"^[A-Za-z0-9_.@-]{1,40}$")


@dataclass(frozen=True)
class OidcProvider:
    """One configured provider (an entry of ``oidc_providers``)."""

    id: str
    issuer: str
    title: str
    audience: tuple[str, ...]
    scopes: tuple[str, ...] = ("openid",)
    description: str | None = None
    default_clients: tuple[dict[str, Any], ...] = ()
    authorization_parameters: dict[str, Any] = field(default_factory=dict)
    jwks_uri: str | None = None

    @classmethod
    def from_config(cls, entry: dict[str, Any]) -> OidcProvider:
        """A provider from its configuration; :class:`SettingsError` says what is wrong."""
        known = {"id", "issuer", "title", "audience", "scopes", "description",
                 "default_clients", "authorization_parameters", "jwks_uri"}
        name = entry.get("id")
        where = f"OpenID Connect provider {name!r}"
        unknown = sorted(set(entry) - known)
        if unknown:
            raise SettingsError(f"{where}: unknown keys {', '.join(unknown)}")
        if not isinstance(name, str) or not PROVIDER_ID.match(name):
            raise SettingsError(f"{where}: 'id' must be 1-20 letters, digits or _")
        issuer = entry.get("issuer")
        if not isinstance(issuer, str) or not re.match(r"^https?://", issuer):
            raise SettingsError(f"{where}: 'issuer' must be an http(s) URL")
        audience = entry.get("audience")
        audience = [audience] if isinstance(audience, str) else audience
        if not audience or not all(isinstance(a, str) and a for a in audience):
            raise SettingsError(f"{where}: 'audience' (the 'aud' that tokens for this server "
                                "carry: a string or a list) is required")
        scopes = tuple(entry.get("scopes") or ("openid",))
        if "openid" not in scopes:
            raise SettingsError(f"{where}: 'scopes' must include openid")
        clients = []
        for client in entry.get("default_clients") or ():
            grants = client.get("grant_types") if isinstance(client, dict) else None
            if not isinstance(client.get("id"), str) or not grants:
                raise SettingsError(f"{where}: each default client needs 'id' and "
                                    "'grant_types'")
            bad = sorted(set(grants) - set(GRANT_TYPES))
            if bad:
                raise SettingsError(f"{where}: unknown grant types {', '.join(bad)} "
                                    f"(known: {', '.join(GRANT_TYPES)})")
            clients.append({k: v for k, v in client.items()
                            if k in ("id", "grant_types", "redirect_urls")})
        params = entry.get("authorization_parameters") or {}
        if not isinstance(params, dict):
            raise SettingsError(f"{where}: 'authorization_parameters' must be a mapping")
        return cls(id=name, issuer=issuer.rstrip("/"), title=str(entry.get("title") or name),
                   audience=tuple(audience), scopes=scopes,
                   description=entry.get("description"), default_clients=tuple(clients),
                   authorization_parameters=dict(params), jwks_uri=entry.get("jwks_uri"))

    def describe(self, authorization_parameters: bool) -> dict[str, Any]:
        """The provider as ``GET /credentials/oidc`` lists it (``authorization_parameters``
        since openEO 1.3)."""
        out: dict[str, Any] = {"id": self.id, "issuer": self.issuer, "title": self.title,
                               "scopes": list(self.scopes)}
        if self.description:
            out["description"] = self.description
        if self.default_clients:
            out["default_clients"] = [dict(c) for c in self.default_clients]
        if authorization_parameters and self.authorization_parameters:
            out["authorization_parameters"] = dict(self.authorization_parameters)
        out["links"] = [{"rel": "about", "href": f"{self.issuer}/.well-known/openid-configuration",
                         "type": "application/json", "title": "OpenID Connect discovery"}]
        return out


def configured_providers(settings: OidcSettings) -> tuple[OidcProvider, ...]:
    """The providers of ``oidc_providers`` (checked: unique ids and issuers)."""
    providers = tuple(OidcProvider.from_config(dict(e)) for e in settings.oidc_providers)
    for attr in ("id", "issuer"):
        values = [getattr(p, attr) for p in providers]
        if len(set(values)) != len(values):
            raise SettingsError(f"OpenID Connect providers: each needs its own {attr}")
    return providers


def _get_json(url: str, timeout: float) -> dict[str, Any]:
    req = urllib.request.Request(url, headers={"Accept": "application/json",
                                               "User-Agent": "tileserver"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http(s) only)
        doc = json.load(resp)
    if not isinstance(doc, dict):
        raise ValueError(f"{url} did not answer a JSON object")
    return doc


class OidcVerifier:
    """Verifies access tokens of the configured providers and names their users."""

    def __init__(self, settings: OidcSettings):
        self.providers = {p.id: p for p in configured_providers(settings)}
        self.by_issuer = {p.issuer: p for p in self.providers.values()}
        self.leeway = settings.oidc_leeway
        self.jwks_ttl = max(1, settings.oidc_jwks_ttl)
        self.cooldown = max(0, settings.oidc_jwks_cooldown)
        self.timeout = settings.oidc_timeout
        self.user_claim = settings.oidc_user_claim or "sub"
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWKClient] = {}

    def __bool__(self) -> bool:
        return bool(self.providers)

    def keys(self, provider: OidcProvider) -> jwt.PyJWKClient:
        """The provider's key client (its JWKS URL found once through discovery)."""
        with self._lock:
            client = self._keys.get(provider.id)
        if client is not None:
            return client
        uri = provider.jwks_uri
        if uri is None:
            url = f"{provider.issuer}/.well-known/openid-configuration"
            try:
                discovery = _get_json(url, self.timeout)
            except (OSError, ValueError) as exc:
                log.warning("OpenID Connect discovery of %s failed: %s", provider.id, exc)
                raise IdentityProviderUnavailable(
                    f"the OpenID Connect provider {provider.id} cannot be reached to check the "
                    "token; try again later") from None
            if str(discovery.get("issuer", "")).rstrip("/") != provider.issuer:
                raise TokenInvalid(f"the discovery document of {provider.id} names another "
                                   "issuer")
            uri = discovery.get("jwks_uri")
            if not isinstance(uri, str):
                raise TokenInvalid(f"the OpenID Connect provider {provider.id} publishes no "
                                   "keys (jwks_uri)")
        client = jwt.PyJWKClient(uri, cache_jwk_set=True, lifespan=self.jwks_ttl,
                                 timeout=self.timeout, cooldown_duration=self.cooldown)
        with self._lock:
            return self._keys.setdefault(provider.id, client)

    def provider_of(self, token: str) -> OidcProvider | None:
        """The provider whose issuer a plain (openEO 1.3) JWT names, unverified; ``None``
        when the token is no JWT or names no configured issuer."""
        if not self.providers or token.count(".") != 2:
            return None
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        issuer = claims.get("iss")
        return self.by_issuer.get(issuer.rstrip("/")) if isinstance(issuer, str) else None

    def verify(self, provider_id: str, token: str) -> dict[str, Any]:
        """The claims of ``token`` if ``provider_id`` signed it for us and it is current."""
        provider = self.providers.get(provider_id)
        if provider is None:
            raise TokenInvalid(f"unknown OpenID Connect provider {provider_id!r} (see GET "
                               "/credentials/oidc)")
        try:
            key = self.keys(provider).get_signing_key_from_jwt(token)
            return jwt.decode(
                token, key=key, algorithms=list(ALGORITHMS), audience=list(provider.audience),
                issuer=provider.issuer, leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", self.user_claim]})
        except jwt.ExpiredSignatureError:
            raise TokenInvalid("the access token has expired") from None
        except jwt.InvalidAudienceError:
            raise TokenInvalid("the access token is not meant for this server (audience)") \
                from None
        except jwt.PyJWKClientConnectionError as exc:
            log.warning("the keys of %s cannot be fetched: %s", provider.id, exc)
            raise IdentityProviderUnavailable(
                f"the keys of {provider.id} cannot be fetched to check the token; try again "
                "later") from None
        except jwt.PyJWKClientError:
            raise TokenInvalid(f"the access token is not signed by a key of {provider.id}") \
                from None
        except jwt.PyJWTError as exc:
            raise TokenInvalid(f"invalid access token: {exc}") from None

    def user_id(self, provider_id: str, claims: dict[str, Any]) -> str:
        """The tileserver user of verified ``claims``: ``oidc-<provider>-<subject>``."""
        subject = str(claims[self.user_claim])
        if not _PLAIN_SUBJECT.match(subject):
            subject = hashlib.sha256(subject.encode()).hexdigest()[:32]
        return f"oidc-{provider_id}-{subject}"

    def authenticate(self, bearer: str) -> tuple[str, dict[str, Any]] | None:
        """``(user id, claims)`` of an OpenID Connect bearer value (``oidc/<id>/<token>`` or
        a plain JWT of a configured issuer); ``None`` when it is no OIDC token at all.
        Raises :class:`TokenInvalid` when it is one but does not verify."""
        if bearer.startswith("oidc/"):
            provider_id, sep, token = bearer[5:].partition("/")
            if not sep or not token:
                raise TokenInvalid("an OpenID Connect token is sent as oidc/<provider>/<token>")
        else:
            provider = self.provider_of(bearer)
            if provider is None:
                return None
            provider_id, token = provider.id, bearer
        claims = self.verify(provider_id, token)
        return self.user_id(provider_id, claims), claims
