"""Third-party web assets (Leaflet), taken from its npm package, never from the repository.

Two ways to get them, both from npm's registry (so the viewer works with no internet):

- a built wheel (``pip install .``, ``python -m build``) carries Leaflet's ``dist/`` files
  under ``tileserver/web/static/leaflet/``: ``setup.py`` calls :func:`build_into` at build
  time (``npm pack`` when npm is there, else the tarball straight from the registry, checked
  against :data:`LEAFLET_INTEGRITY`);
- a source checkout (``make install``) runs ``python -m tileserver.web.assets install``:
  ``npm install leaflet`` into ``$VENV/share/tileserver/npm``.

This module only uses the standard library: ``setup.py`` loads it before any dependency is
installed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

LEAFLET_VERSION = "1.9.4"
#: ``dist.integrity`` of leaflet@1.9.4 in the npm registry (``npm view leaflet@1.9.4 dist``).
LEAFLET_INTEGRITY = ("sha512-nxS1ynzJOmOlHp+iL3FyWqK89GtNL8U8rvlMOsQdTTssxZwCXh8N2NB3GDQOL+YR3"
                     "XnWyZAxwQixURb+FA74PA==")
REGISTRY = os.environ.get("npm_config_registry", "https://registry.npmjs.org").rstrip("/")
#: Members of the npm tarball the viewer needs (``package/`` prefix removed).
_KEEP = ("dist/leaflet.js", "dist/leaflet.css", "LICENSE")
_KEEP_DIRS = ("dist/images/",)
#: How the viewer explains a missing Leaflet.
MISSING = ("Leaflet (the map library of this page) is not installed on this server. Install "
           "tileserver from a wheel (pip install ., which bundles it) or run "
           "'python -m tileserver.web.assets install' (needs npm) in its environment.")


def packaged_dir() -> Path:
    """Leaflet's files inside the installed package (wheels)."""
    return Path(__file__).resolve().parent / "static" / "leaflet"


def npm_root() -> Path:
    """Where ``install`` puts the npm packages of a source checkout."""
    return Path(sys.prefix) / "share" / "tileserver" / "npm"


def leaflet_dir() -> Path:
    """The folder holding ``leaflet.js``: the wheel's copy, else the npm install."""
    packaged = packaged_dir()
    if (packaged / "leaflet.js").is_file():
        return packaged
    return npm_root() / "node_modules" / "leaflet" / "dist"


def leaflet_available() -> bool:
    """Whether the viewer can serve Leaflet."""
    return (leaflet_dir() / "leaflet.js").is_file()


def _check_integrity(data: bytes) -> None:
    algo, _, expected = LEAFLET_INTEGRITY.partition("-")
    digest = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if digest != expected:
        raise RuntimeError(f"leaflet-{LEAFLET_VERSION}.tgz does not match its npm integrity "
                           f"{LEAFLET_INTEGRITY}")


def fetch_tarball(cache: Path | None = None) -> bytes:
    """leaflet's npm tarball: from ``cache``, else ``npm pack``, else the registry."""
    name = f"leaflet-{LEAFLET_VERSION}.tgz"
    cached = cache / name if cache else None
    if cached and cached.is_file():
        data = cached.read_bytes()
        _check_integrity(data)
        return data
    npm = shutil.which("npm")
    data = b""
    if npm:
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run([npm, "pack", f"leaflet@{LEAFLET_VERSION}",
                                   "--pack-destination", tmp], capture_output=True, check=False)
            if done.returncode == 0 and (Path(tmp) / name).is_file():
                data = (Path(tmp) / name).read_bytes()
    if not data:
        url = f"{REGISTRY}/leaflet/-/{name}"
        with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - fixed https URL
            data = resp.read()
    _check_integrity(data)
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(data)
    return data


def extract(data: bytes, target: Path) -> list[Path]:
    """Leaflet's ``dist/`` files (and licence) from the tarball into ``target``."""
    written = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("package/")
            wanted = name in _KEEP or name.startswith(_KEEP_DIRS)
            if not member.isfile() or not wanted or ".." in name:
                continue
            out = target / name.removeprefix("dist/")
            out.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            out.write_bytes(source.read())
            written.append(out)
    if not (target / "leaflet.js").is_file():
        raise RuntimeError("the leaflet tarball has no dist/leaflet.js")
    return written


def build_into(target: Path, cache: Path | None = None) -> list[Path]:
    """Put Leaflet's files into ``target`` (used by ``setup.py`` when building a wheel)."""
    return extract(fetch_tarball(cache), target)


def install() -> Path:
    """Install Leaflet with npm into the environment (no-op when already there)."""
    target = npm_root() / "node_modules" / "leaflet" / "dist"
    if (target / "leaflet.js").exists():
        return target
    npm = shutil.which("npm")
    if npm is None:  # no npm: the same files from the registry's tarball
        build_into(target)
        return target
    root = npm_root()
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(root),
         f"leaflet@{LEAFLET_VERSION}"],
        check=True,
    )
    return target


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        raise SystemExit("usage: python -m tileserver.web.assets install")
    print(install())
