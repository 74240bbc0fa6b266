"""Cost of OpenID Connect token validation per request, with the provider's keys cached.
Prints JSON; no assertions.

    .venv/bin/python bench/bench_oidc.py [-n 2000]

A real provider (node oidc-provider, as the tests start it: ``tests/support/oidc.py``) issues
an RS256 JWT access token (client credentials). Timed, median and 95th percentile of ``-n``
runs after a warm-up that fetches the keys once:

- ``verify``: :meth:`tileserver.web.oidc.OidcVerifier.authenticate` alone (header and claims
  parsing, key lookup in the cached JWKS, RSA signature, issuer/audience/expiry checks);
- ``GET /me`` through the Flask test client with the OIDC token (``oidc/<id>/<token>`` and
  the plain JWT), with a tileserver Bearer token (``basic//…``, an HMAC) and, as the floor,
  in single-user mode (no credential check at all).

The difference between the OIDC and the floor rows is what validation adds to a request.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.oidc import start_provider  # noqa: E402
from tests.support.synthetic import make_catalog  # noqa: E402
from tileserver.settings import load_settings  # noqa: E402
from tileserver.web.app import create_app  # noqa: E402
from tileserver.web.auth import add_user  # noqa: E402


def timed(fn, n: int) -> dict:
    """Median and p95 of ``n`` calls of ``fn``, in microseconds."""
    for _ in range(min(50, n)):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    samples.sort()
    return {"median_us": round(statistics.median(samples), 1),
            "p95_us": round(samples[int(0.95 * (len(samples) - 1))], 1), "n": n}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        provider = start_provider(tmp)
        try:
            catalog = make_catalog(tmp / "catalog")
            base = {"catalog": str(catalog), "oidc_providers": [provider.config()]}
            app = create_app(load_settings(home=str(tmp / "home"), **base))
            add_user(app.extensions["tileserver"].settings, "alice", "alice-secret-1")
            floor_app = create_app(load_settings(home=str(tmp / "floor"), catalog=str(catalog)))
            token = provider.client_credentials()["access_token"]
            auth = app.extensions["tileserver.authenticator"]
            client, floor = app.test_client(), floor_app.test_client()
            basic_token = auth.issue_token("alice")

            def get(c, headers=None):
                def call():
                    resp = c.get("/openeo/1.2/me", headers=headers or {})
                    assert resp.status_code == 200, resp.get_data(as_text=True)
                return call

            rows = {
                "verify (OidcVerifier.authenticate)":
                    timed(lambda: auth.oidc.authenticate(f"oidc/testidp/{token}"), args.n),
                "GET /me, Bearer oidc/<id>/<jwt>":
                    timed(get(client, {"Authorization": f"Bearer oidc/testidp/{token}"}), args.n),
                "GET /me, Bearer <jwt> (1.3)":
                    timed(get(client, {"Authorization": f"Bearer {token}"}), args.n),
                "GET /me, Bearer basic//<tileserver token>":
                    timed(get(client, {"Authorization": f"Bearer basic//{basic_token}"}),
                          args.n),
                "GET /me, single-user (no check)": timed(get(floor), args.n),
            }
            for each in (app, floor_app):
                each.extensions["tileserver"].close()
        finally:
            provider.close()
    floor_us = rows["GET /me, single-user (no check)"]["median_us"]
    print(json.dumps({"token_alg": "RS256 (2048-bit)", "rows": rows,
                      "oidc_overhead_us": round(
                          rows["GET /me, Bearer oidc/<id>/<jwt>"]["median_us"] - floor_us, 1)},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
