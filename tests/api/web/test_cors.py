"""CORS as openEO 0.0.2 writes it: the request's Origin echoed with credentials allowed,
preflight answered without credentials, headers exposed; and tiles fetched cross-origin by
a real headless Chromium."""

from __future__ import annotations

import json
import threading

import pytest
from werkzeug.serving import make_server

from tests.support.browser import REPORT_JS, run_page
from tests.support.hardening import (
    PASSWORDS,
    basic,
    ndvi_graph,
)
from tests.support.requirements import requires

ORIGIN = "http://viewer.example.org:8000"


def _cors_ok(resp, origin=ORIGIN):
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in resp.headers.get("Vary", "")


@pytest.mark.parametrize("path,method", [("/jobs", "POST"), ("/execute", "POST"),
                                         ("/services/abc", "PATCH"), ("/jobs/x", "DELETE")])
def test_preflight_needs_no_credentials(app, path, method):
    resp = app.test_client().options(path, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert resp.status_code == 204
    _cors_ok(resp)
    assert method in resp.headers["Access-Control-Allow-Methods"]
    allowed = resp.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert int(resp.headers["Access-Control-Max-Age"]) > 0


def test_plain_options_is_204_with_the_methods(app):
    """The openEO compliance tests send OPTIONS with only an Origin."""
    c = app.test_client()
    resp = c.options("/jobs/abc", headers={"Origin": ORIGIN})
    assert resp.status_code == 204
    _cors_ok(resp)
    assert set(resp.headers["Access-Control-Allow-Methods"].split(", ")) >= {
        "GET", "PATCH", "DELETE", "OPTIONS"}
    assert resp.headers["Content-Type"] == "application/json"
    bare = c.options("/processes")
    assert bare.status_code == 204 and "GET" in bare.headers["Allow"]
    assert "Access-Control-Allow-Origin" not in bare.headers


def test_preflight_of_unknown_path_is_404(app):
    resp = app.test_client().options("/nothing-here", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert resp.status_code == 404


def test_responses_echo_the_origin_and_expose_headers(app):
    c = app.test_client()
    resp = c.post("/jobs", json={"process_graph": ndvi_graph()},
                  headers={"Origin": ORIGIN, **basic("alice")})
    assert resp.status_code == 201
    _cors_ok(resp)
    exposed = {h.strip() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Location", "OpenEO-Identifier", "Content-Disposition"} <= exposed
    other = "https://another.example"
    _cors_ok(c.get("/data", headers={"Origin": other}), other)
    # errors carry the headers too, so browser scripts can read them
    denied = c.get("/users/alice/jobs", headers={"Origin": ORIGIN})
    assert denied.status_code == 401
    _cors_ok(denied)
    assert "WWW-Authenticate" in denied.headers["Access-Control-Expose-Headers"]


def test_no_origin_no_cors_headers(app):
    resp = app.test_client().get("/data")
    assert "Access-Control-Allow-Origin" not in resp.headers


@pytest.fixture
def live_app(app):
    """The app on a loopback port (werkzeug's threaded server), with alice's xyz service."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


PAGE = """<!doctype html><html><body><script>
const api = %(api)s, user = %(user)s, password = %(password)s;
async function run() {
  const out = {};
  const login = await fetch(api + "/auth/login", {
    headers: {Authorization: "Basic " + btoa(user + ":" + password)}});
  out.login = login.status;
  const token = (await login.json()).token;
  const job = await fetch(api + "/jobs", {method: "POST", headers: {
      Authorization: "Bearer " + token, "Content-Type": "application/json"},
    body: JSON.stringify({process_graph: %(graph)s})});
  out.job = job.status;
  out.location = job.headers.get("Location");
  const jobId = job.headers.get("OpenEO-Identifier");
  const service = await fetch(api + "/services", {method: "POST", headers: {
      Authorization: "Bearer " + token, "Content-Type": "application/json"},
    body: JSON.stringify({job_id: jobId, type: "xyz"})});
  out.service = service.status;
  const url = (await service.json()).service_url;
  const tile = await fetch(url.replace("{z}/{x}/{y}", "%(tile)s"), {mode: "cors"});
  out.tile = tile.status;
  out.tileType = tile.headers.get("Content-Type");
  out.tileBytes = (await tile.arrayBuffer()).byteLength;
  const img = new Image();
  img.crossOrigin = "anonymous";
  img.src = url.replace("{z}/{x}/{y}", "%(tile)s");
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 256;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  ctx.getImageData(0, 0, 1, 1);  // throws on a tainted (non-CORS) canvas
  out.canvas = "readable";
  return out;
}
%(report)s
report(run());
</script></body></html>"""


@pytest.mark.slow
@requires("chromium")
def test_browser_on_another_origin_uses_api_and_tiles(live_app, tmp_path):
    app, api = live_app
    import morecantile
    from pyproj import Transformer

    lon, lat = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True).transform(
        501_000, 5_099_000)
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 13)
    (tmp_path / "index.html").write_text(PAGE % {
        "api": json.dumps(api), "user": json.dumps("alice"),
        "password": json.dumps(PASSWORDS["alice"]), "graph": json.dumps(ndvi_graph()),
        "tile": f"{t.z}/{t.x}/{t.y}", "report": REPORT_JS})
    outcome = run_page(tmp_path)
    assert "error" not in outcome, outcome["error"]
    out = outcome["result"]
    assert out["login"] == 200 and out["job"] == 201 and out["service"] == 201
    assert out["location"].startswith("/jobs/")  # 0.0.2: the path, as it always was
    assert out["tile"] == 200 and out["tileType"] == "image/png" and out["tileBytes"] > 100
    assert out["canvas"] == "readable"
