"""A real OpenID Connect provider for the tests: node ``oidc-provider`` (OpenID Certified).

The npm package is installed on first use into a cache folder (``TILESERVER_TEST_NPM_CACHE``,
default ``~/.cache/tileserver-tests/npm``), never into the repository; without node/npm, or
offline with an empty cache, the tests that need it are skipped (they fail under CI).
:func:`complete_device_login` plays the user of the device flow: it opens the verification
URL and submits the provider's own forms (code confirmation, login, consent) over HTTP.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import requests

from tests.support.npm import npm_modules

#: The major version of oidc-provider the script is written for.
OIDC_PROVIDER = "oidc-provider@9"
SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
#: The audience of the tokens meant for the tileserver under test.
AUDIENCE = "https://tileserver.test/openeo"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: The clients of the test provider (``resources`` and ``ttl`` below give some of them
#: another audience or a short token lifetime).
SERVICE = ("service", "service-secret-0123456789")
CLIENTS = [
    {"client_id": SERVICE[0], "client_secret": SERVICE[1],
     "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": []},
    {"client_id": "elsewhere", "client_secret": "elsewhere-secret-0123456789",
     "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": []},
    {"client_id": "shortlived", "client_secret": "shortlived-secret-0123456789",
     "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": []},
    {"client_id": "tileserver-public", "token_endpoint_auth_method": "none",
     "application_type": "native", "grant_types": [DEVICE_GRANT, "refresh_token"],
     "response_types": [], "redirect_uris": []},
]


def provider_modules() -> Path:
    """The ``node_modules`` folder holding oidc-provider (installed on first use)."""
    return npm_modules(OIDC_PROVIDER, "oidc-provider")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class OidcProvider:
    """A running oidc-provider on a loopback port."""

    issuer: str
    process: subprocess.Popen
    output: list[str] = field(default_factory=list)

    def config(self, provider_id: str = "testidp", **extra) -> dict:
        """The tileserver ``oidc_providers`` entry of this provider."""
        return {"id": provider_id, "issuer": self.issuer, "title": "Test provider",
                "audience": AUDIENCE, "scopes": ["openid"],
                "default_clients": [{"id": "tileserver-public",
                                     "grant_types": [f"{DEVICE_GRANT}+pkce", "refresh_token"]}],
                **extra}

    def client_credentials(self, client: tuple[str, str] = SERVICE, **data) -> dict:
        """A token answer of the client credentials grant."""
        resp = requests.post(f"{self.issuer}/token", auth=client, timeout=10,
                             data={"grant_type": "client_credentials", "scope": "openid",
                                   **data})
        resp.raise_for_status()
        return resp.json()

    def jwks(self) -> dict:
        """The provider's public keys."""
        return requests.get(f"{self.issuer}/jwks", timeout=10).json()

    def close(self) -> None:
        """Stop the provider."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_provider(tmp: Path, kids=("k1",), port: int | None = None) -> OidcProvider:
    """Start oidc-provider (signing with fresh keys named ``kids``, the first one in use),
    on ``port`` (a free one by default; the same port again: a restarted provider)."""
    modules = provider_modules()
    port = port or _free_port()
    conf = {"port": port, "audience": AUDIENCE, "clients": CLIENTS, "kids": list(kids),
            "resources": {"elsewhere": "https://elsewhere.test/api"},
            "ttl": {"shortlived": 2}}
    path = tmp / f"oidc-provider-{port}.json"
    path.write_text(json.dumps(conf))
    env = {**os.environ, "OIDC_PROVIDER_MODULES": str(modules), "NODE_ENV": "test"}
    proc = subprocess.Popen(["node", str(SCRIPT), str(path)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    provider = OidcProvider(f"http://127.0.0.1:{port}", proc)

    ready = threading.Event()

    def read():
        for line in proc.stdout:
            provider.output.append(line.rstrip())
            if line.startswith("ready "):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(60):
        provider.close()
        raise RuntimeError("oidc-provider did not start:\n" + "\n".join(provider.output))
    return provider


class _Forms(HTMLParser):
    """The forms of a page: action, method and the values they would submit (the
    ``abort`` button left out: the user confirms)."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "method": a.get("method") or
                               "get", "fields": {}})
        elif tag in ("input", "button") and self.forms and a.get("name") \
                and a.get("name") != "abort":
            self.forms[-1]["fields"].setdefault(a["name"], a.get("value") or "")


def complete_device_login(verification_uri: str, user_code: str, login: str,
                          timeout: float = 60) -> str:
    """Act as the user of the device flow: confirm ``user_code``, log in as ``login`` and
    consent, by submitting the provider's pages; the final page's text."""
    session = requests.Session()
    resp = session.get(verification_uri, params={"user_code": user_code}, timeout=timeout)
    for _ in range(10):
        resp.raise_for_status()
        parser = _Forms()
        parser.feed(resp.text)
        if not parser.forms:
            break
        form = parser.forms[0]
        fields = form["fields"]
        if "login" in fields:
            fields.update(login=login, password="any password")
        if "user_code" in fields and not fields["user_code"]:
            fields["user_code"] = user_code
        resp = session.request(form["method"].upper(), urljoin(resp.url, form["action"]),
                               data=fields, timeout=timeout)
    text = re.sub(r"<[^>]+>", " ", resp.text)
    if "Success" not in text:
        raise AssertionError(f"the device login did not succeed: {text[-500:]}")
    return text


class DeviceUser:
    """A ``display`` for the client's device flow: when it shows the verification URL and
    code, a thread logs in as ``login`` through the provider's pages (as a person would in
    a browser)."""

    def __init__(self, login: str):
        self.login = login
        self.shown: list[str] = []
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def __call__(self, text: str = "", *args, **kwargs) -> None:
        self.shown.append(str(text))
        found = (re.search(r"(https?://[^\s?]+)\?user_code=([A-Za-z0-9-]+)", str(text))
                 or re.search(r"(https?://\S+) and enter user code '([^']+)'", str(text)))
        if found and self.thread is None:
            self.thread = threading.Thread(target=self._run, args=found.groups(), daemon=True)
            self.thread.start()

    def _run(self, uri: str, code: str) -> None:
        try:
            time.sleep(0.2)
            complete_device_login(uri, code, self.login)
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            self.error = exc
