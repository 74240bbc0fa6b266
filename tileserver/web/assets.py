"""Third-party web assets (Leaflet) installed from the npm registry at install time.

``python -m tileserver.web.assets install`` runs ``npm install leaflet`` into
``$VENV/share/tileserver/npm`` (nothing is copied into the repository); the viewer serves
the files from there, so the page works with no internet access.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

LEAFLET_VERSION = "1.9.4"


def npm_root() -> Path:
    """Where the npm packages live."""
    return Path(sys.prefix) / "share" / "tileserver" / "npm"


def leaflet_dir() -> Path:
    """``dist/`` of the installed Leaflet package."""
    return npm_root() / "node_modules" / "leaflet" / "dist"


def install() -> Path:
    """Install Leaflet with npm (no-op when already there)."""
    target = leaflet_dir()
    if (target / "leaflet.js").exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to install Leaflet (apt-get install npm)")
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
