"""The QGIS helper scripts: they run under Debian's ``/usr/bin/python3`` (python3-qgis), not
the venv, so they are plain scripts in ``tests/e2e/qgis/scripts/``, not modules of a package."""

from __future__ import annotations

from pathlib import Path

#: The folder of ``qgis_boot.py``, ``qgis_wmts_render.py`` and ``qgis_gpkg_read.py``.
SCRIPTS = Path(__file__).resolve().parents[1] / "e2e" / "qgis" / "scripts"
