"""Users and authentication: HTTP Basic, signed Bearer tokens, OpenID Connect access tokens
(:mod:`tileserver.web.oidc`), single-user mode.

Bearer tokens are signed by the server's key: ``GET /auth/login`` (0.0.2) and ``GET
/openeo/1.2/credentials/basic`` issue an itsdangerous token, sent as ``Bearer <token>`` or
``Bearer basic//<token>``; from openEO 1.3 on ``/credentials/basic`` issues a standard JSON
Web Token (HS256, ``iss`` :data:`BASIC_ISSUER`, ``sub`` the user, ``exp``), sent as a plain
``Bearer <token>`` (the ``basic//`` form is still accepted). Both kinds are accepted on
every path and expire after ``token_ttl`` or when the user's password changes.

Users live in a YAML file (``users_file``, default ``$TILESERVER_HOME/users.yaml``) with
scrypt password hashes, written by ``tileserver users add NAME``. With no users and no
OpenID Connect provider the server runs in single-user mode as ``me`` (and ``tileserver serve``
binds only to loopback). The user of an OpenID Connect token is ``oidc-<provider>-<subject>``;
with ``oidc_auto_users`` off, only such ids listed in the users file (without a password) may
come in. No password user may take an ``oidc-`` id.

With users, every request needs credentials except the public parts: capabilities, data,
processes, the OpenAPI document, metrics, static files, the public service URLs
``/service/...`` and batch result files ``/jobs/<id>/results/<token>/...`` (capability URLs
with unguessable ids, so GIS clients need no password).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import yaml
from cachetools import TTLCache
from flask import Blueprint, Flask, current_app, g, jsonify, make_response, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.security import check_password_hash, generate_password_hash

from tileserver.errors import (
    InvalidCredentials,
    TileserverError,
    TokenInvalid,
    Unauthorized,
    WrongPassword,
)
from tileserver.settings import Settings, load_settings
from tileserver.storage import atomic_file
from tileserver.web.apidoc import json_response, operation, ref
from tileserver.web.errors import handle_tileserver_error
from tileserver.web.oidc import OidcVerifier

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

#: The user of single-user mode.
SINGLE_USER = "me"
#: Stands for the users while the users file cannot be read: nobody can log in.
LOCKED = "\0locked"
USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
#: The prefix of the users of OpenID Connect tokens (no password user may have it).
OIDC_PREFIX = "oidc-"
#: Paths anyone may call (exact, or prefixes ending with ``/``).
PUBLIC_EXACT = ("/", "/openapi.json", "/metrics", "/auth/login", "/capabilities", "/data",
                "/processes", "/udf_runtimes")
PUBLIC_PREFIXES = ("/capabilities/", "/data/", "/processes/", "/service/", "/static/",
                   "/udf_runtimes/")
#: Batch result files carry an unguessable token in their URL (for GDAL's /vsicurl/).
PUBLIC_PATTERN = re.compile(r"^/jobs/[^/]+/results/[^/]+/.+")
#: Paths of the global OGC endpoints (their errors are ``ows:ExceptionReport``).
OGC_PREFIXES = ("/wmts", "/wcs", "/wms")
#: ``iss`` of the JSON Web Tokens of ``GET /credentials/basic`` (openEO 1.3 and later).
BASIC_ISSUER = "urn:tileserver:basic"
#: Key of ``app.extensions`` holding the openEO 1.x versions by blueprint name (kept by
#: :mod:`tileserver.web.openeo.v1`, read here for the login path of a 401 message).
OPENEO_VERSIONS = "tileserver.openeo_versions"


def users_path(settings: Settings) -> Path:
    """The users file: ``users_file`` or ``$TILESERVER_HOME/users.yaml``."""
    configured = settings.users_file or settings.extra.get("users_file")
    return Path(configured) if configured else settings.home / "users.yaml"


def read_users(path: Path) -> dict[str, dict[str, Any]]:
    """``{user_id: {"password": hash}}`` from a users file (empty when it is missing)."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return {}
    users = doc.get("users") or {}
    if not isinstance(users, dict):
        raise ValueError(f"{path}: 'users' must be a mapping of user ids")
    return {str(k): dict(v or {}) for k, v in users.items()}


def configured_users(settings: Settings) -> dict[str, dict[str, Any]]:
    """The configured users (empty: single-user mode)."""
    return read_users(users_path(settings))


def write_users(path: Path, users: dict[str, dict[str, Any]]) -> None:
    """Replace the users file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump({"users": users}, fh, sort_keys=True)


def add_user(settings: Settings, user_id: str, password: str) -> None:
    """Add a user or change their password."""
    if not USER_ID.match(user_id):
        raise ValueError(f"invalid user id {user_id!r}: letters, digits and _.@- only")
    if user_id.startswith(OIDC_PREFIX):
        raise ValueError(f"user ids starting with {OIDC_PREFIX!r} are OpenID Connect users")
    if len(password) < 8:
        raise ValueError("the password needs at least 8 characters")
    path = users_path(settings)
    users = read_users(path)
    users[user_id] = {**users.get(user_id, {}), "password": generate_password_hash(password)}
    write_users(path, users)


def remove_user(settings: Settings, user_id: str) -> bool:
    """Remove a user (their tokens stop working); whether they existed."""
    path = users_path(settings)
    users = read_users(path)
    if users.pop(user_id, None) is None:
        return False
    write_users(path, users)
    return True


def load_secret(home: Path) -> bytes:
    """The token signing key under ``home`` (created once, shared by all workers)."""
    path = home / "secret.key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / f".secret.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic: the first worker wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


class Authenticator:
    """Checks Basic credentials and Bearer tokens against the users file, and OpenID Connect
    access tokens against their providers."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.path = users_path(settings)
        self.ttl = settings.token_ttl
        self._lock = threading.Lock()
        self._users: dict[str, dict[str, Any]] = {}
        self._stamp: tuple | None = None
        self._serializer: URLSafeTimedSerializer | None = None
        self._jwt_key: bytes | None = None
        # verified (user, password digest, hash) -> True: scrypt costs ~0.1 s per check
        self._verified: TTLCache = TTLCache(maxsize=1024, ttl=300)
        self._dummy: str | None = None
        self.oidc = OidcVerifier(settings)
        self.oidc_auto_users = settings.oidc_auto_users

    def single_user(self) -> bool:
        """Whether the server runs in single-user mode (no users, no OIDC provider)."""
        return not self.users() and not self.oidc

    @property
    def dummy_hash(self) -> str:
        """A hash checked for unknown users, so that they cost as much as known ones."""
        if self._dummy is None:
            self._dummy = generate_password_hash(secrets.token_hex(8))
        return self._dummy

    def users(self) -> dict[str, dict[str, Any]]:
        """Current users (the file is re-read when it changes)."""
        try:
            st = self.path.stat()
            stamp: tuple | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._users = read_users(self.path) if stamp else {}
                except (OSError, ValueError, yaml.YAMLError) as exc:
                    # fail closed: keep the last good users, or let nobody in
                    log.error("cannot read the users file %s: %s", self.path, exc)
                    self._users = self._users or {LOCKED: {}}
                self._stamp = stamp
            return self._users

    @property
    def serializer(self) -> URLSafeTimedSerializer:
        """The token signer (its key is created on first use)."""
        if self._serializer is None:
            self._serializer = URLSafeTimedSerializer(
                load_secret(self.settings.home), salt="tileserver-token")
        return self._serializer

    def check_password(self, user_id: str, password: str) -> bool:
        """Whether the password is the user's (constant work for unknown users)."""
        user = self.users().get(user_id)
        if user_id.startswith(OIDC_PREFIX):
            user = None  # OpenID Connect users come in with their provider's tokens only
        stored = (user or {}).get("password") or self.dummy_hash
        key = (user_id, hashlib.sha256(password.encode()).hexdigest(), stored)
        if key in self._verified:
            return True
        ok = check_password_hash(stored, password) and user is not None
        if ok:
            self._verified[key] = True
        return ok

    def _fingerprint(self, user_id: str) -> str:
        stored = (self.users().get(user_id) or {}).get("password", "")
        return hashlib.sha256(stored.encode()).hexdigest()[:16]

    def issue_token(self, user_id: str) -> str:
        """A signed token; it expires after ``token_ttl`` or when the password changes."""
        return self.serializer.dumps({"u": user_id, "p": self._fingerprint(user_id)})

    @property
    def jwt_key(self) -> bytes:
        """The HS256 key of the JSON Web Tokens (derived from the signing key, once)."""
        if self._jwt_key is None:
            secret = load_secret(self.settings.home)
            self._jwt_key = hmac.new(secret, b"tileserver-jwt", hashlib.sha256).digest()
        return self._jwt_key

    def issue_jwt(self, user_id: str) -> str:
        """A JSON Web Token for ``user_id`` (openEO 1.3 ``/credentials/basic``): HS256,
        expiring after ``token_ttl`` or when the password changes, like :meth:`issue_token`."""
        issued = int(time.time())
        claims = {"iss": BASIC_ISSUER, "sub": user_id, "iat": issued,
                  "exp": issued + int(self.ttl), "fp": self._fingerprint(user_id)}
        return jwt.encode(claims, self.jwt_key, algorithm="HS256")

    def _jwt_user(self, token: str) -> str | None:
        try:
            data = jwt.decode(token, self.jwt_key, algorithms=["HS256"], issuer=BASIC_ISSUER,
                              options={"require": ["exp", "iss", "sub"]})
        except jwt.PyJWTError:
            return None
        return self._current(data.get("sub"), data.get("fp"))

    def _current(self, user_id: Any, fingerprint: Any) -> str | None:
        """``user_id`` if that user exists and their password is the token's."""
        if not isinstance(user_id, str) or user_id not in self.users():
            return None
        if not hmac.compare_digest(str(fingerprint), self._fingerprint(user_id)):
            return None
        return user_id

    def verify_token(self, token: str) -> str | None:
        """The user of a valid token (itsdangerous or JSON Web Token), else ``None``."""
        if _is_jwt(token):
            return self._jwt_user(token)
        try:
            data = self.serializer.loads(token, max_age=self.ttl)
        except (BadSignature, SignatureExpired, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        return self._current(data.get("u"), data.get("p"))

    def from_request(self) -> str | None:
        """The user of the request's ``Authorization`` header, or ``None``."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            basic = basic_credentials(header)
            if basic is None or not basic[0]:
                return None
            return basic[0] if self.check_password(*basic) else None
        if scheme == "bearer" and value.strip():
            token = value.strip()
            if self.oidc and not token.startswith("basic//"):
                found = self.oidc.authenticate(token)
                if found is not None:
                    return self.oidc_user(found[0])
            # openEO 1.x clients send "basic//<token>"; accept that form too (and, from 1.3
            # on, the plain token)
            return self.verify_token(token.rsplit("/", 1)[-1])
        return None

    def oidc_user(self, user_id: str) -> str:
        """The user of a verified OpenID Connect token: anyone with ``oidc_auto_users``, else
        only the ids listed in the users file."""
        if self.oidc_auto_users or user_id in self.users():
            return user_id
        raise TokenInvalid(f"the token is valid, but {user_id} is no user of this server "
                           "(ask its operator to add the id to the users file)")


def _is_jwt(token: str) -> bool:
    """Whether ``token`` has the form of a JSON Web Token (a header naming its ``alg``; an
    itsdangerous token's first part is its payload)."""
    try:
        return "alg" in jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return False


def basic_credentials(header: str) -> tuple[str, str] | None:
    """``(user, password)`` of an ``Authorization: Basic`` header, or ``None`` when it is
    another scheme or malformed (werkzeug's parser raises on non-ASCII values)."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(value.strip().encode("ascii"), validate=True).decode("utf-8")
    except (ValueError, UnicodeError):  # binascii.Error is a ValueError
        return None
    user, sep, password = raw.partition(":")
    return (user, password) if sep else None


def _auth() -> Authenticator:
    return current_app.extensions["tileserver.authenticator"]


def request_user() -> str:
    """The authenticated user of this request (``me`` with no users configured).

    Raises :class:`Unauthorized` when users are configured and the request has no valid
    Basic credentials or Bearer token. Installed as ``app.extensions["tileserver.auth"]``.
    """
    if "tileserver_user" in g:
        return g.tileserver_user
    auth = _auth()
    if auth.single_user():
        user = SINGLE_USER
    else:
        user = auth.from_request()
        if user is None and "Authorization" not in request.headers:
            raise Unauthorized(f"this request needs credentials: {login_hint()}")
        if user is None:
            raise InvalidCredentials("invalid credentials or expired token")
    g.tileserver_user = user
    return user


def login_hint() -> str:
    """How to log in, in the API version of the request: under an openEO 1.x base its
    ``GET /credentials/basic`` (with the token form of that version), else 0.0.2's
    ``GET /auth/login``."""
    version = current_app.extensions.get(OPENEO_VERSIONS, {}).get(request.blueprint or "")
    if version is None:
        return "HTTP Basic, or the Bearer token of GET /auth/login"
    login = f"GET {version.base}/credentials/basic"
    if version.at_least("1.3.0"):
        return (f"HTTP Basic, or a Bearer token: the access_token of {login} "
                "(with HTTP Basic), sent as 'Authorization: Bearer <access_token>'")
    return (f"HTTP Basic, or a Bearer token: the access_token of {login} "
            "(with HTTP Basic), sent as 'Authorization: Bearer basic//<access_token>'")


def issue_jwt(user_id: str) -> str:
    """A JSON Web Token for ``user_id`` (see :meth:`Authenticator.issue_jwt`)."""
    return _auth().issue_jwt(user_id)


def is_public(path: str) -> bool:
    """Whether ``path`` answers without credentials."""
    return (path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES)
            or PUBLIC_PATTERN.match(path) is not None)


def _require_credentials():
    """Default deny: every non-public request needs a user before its view runs.

    The global OGC endpoints are the exception: their views ask for the user themselves
    (after their blueprint has chosen the exception report format of the protocol version);
    ``tests/api/web/test_auth.py`` checks that each of their routes answers 401 without credentials.
    """
    if request.method == "OPTIONS" or is_public(request.path):
        return None
    if request.endpoint is None:  # no such route (or method): the 404/405 says so, as it
        return None  # would to anyone (every route is listed in the public OpenAPI document)
    if request.endpoint in current_app.extensions.get("tileserver.public_endpoints", ()):
        return None
    if request.path.startswith(OGC_PREFIXES):
        return None
    request_user()
    return None


def _unauthorized(exc: Unauthorized):
    resp = make_response(handle_tileserver_error(exc))
    resp.headers["WWW-Authenticate"] = 'Basic realm="tileserver", charset="UTF-8"'
    return resp


@bp.get("/auth/login")
@operation("HTTP Basic in, a Bearer token out", json_response(ref("Login")), "Unauthorized",
           security=[{"Basic": []}])
def login():
    """HTTP Basic in, ``{user_id, token}`` out (0.0.2 ``GET /auth/login``)."""
    user, token = basic_login()
    return jsonify({"user_id": user, "token": token, "expires_in": _auth().ttl})


def basic_login() -> tuple[str, str]:
    """``(user, token)`` for the request's HTTP Basic credentials (``me`` with no users)."""
    auth = _auth()
    if auth.single_user():
        user = SINGLE_USER
    else:
        basic = basic_credentials(request.headers.get("Authorization", ""))
        if basic is None:
            raise Unauthorized(f"GET {request.path} needs HTTP Basic credentials")
        if not basic[0] or not auth.check_password(*basic):
            raise WrongPassword("wrong user id or password")
        user = basic[0]
    return user, auth.issue_token(user)


def init_app(app: Flask) -> None:
    """Install the authenticator, the ``current_user`` hook and the credential check."""
    settings = app.extensions["tileserver"].settings
    app.extensions["tileserver.authenticator"] = Authenticator(settings)
    app.extensions["tileserver.auth"] = request_user
    app.before_request(_require_credentials)
    app.register_error_handler(Unauthorized, _unauthorized)


# -- command line ----------------------------------------------------------------------


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the passwords differ")
    return first


def _users_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        if args.action == "add":
            add_user(settings, args.name, _read_password(args))
            print(f"user {args.name} saved in {users_path(settings)}")
        elif args.action == "remove":
            if not remove_user(settings, args.name):
                print(f"no user {args.name}", file=sys.stderr)
                return 1
        else:
            for name in sorted(configured_users(settings)):
                print(name)
    except (ValueError, TileserverError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_cli(subparsers) -> None:
    """``tileserver users add|remove NAME`` and ``tileserver users list``."""
    users = subparsers.add_parser("users", help="manage the users of the server")
    actions = users.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a user or change a password (asks for it, "
                                         "or reads one line from standard input)")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input")
    remove = actions.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    actions.add_parser("list", help="list the users")
    users.set_defaults(func=_users_command)
