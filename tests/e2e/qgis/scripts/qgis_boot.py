"""Shared start-up of the QGIS helper scripts (``tests/e2e/qgis/scripts/qgis_*.py``), which
run under Debian's ``/usr/bin/python3`` (python3-qgis): offscreen Qt and a throw-away QGIS
profile, so that a test run neither reads nor writes the user's QGIS settings."""

import os
import tempfile

_scratch = tempfile.TemporaryDirectory(prefix="ts-qgis-")


def start_qgis():
    """An initialised headless ``QgsApplication`` with a private profile."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for var in ("XDG_RUNTIME_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
                "QGIS_CUSTOM_CONFIG_PATH"):
        os.environ[var] = os.path.join(_scratch.name, var.lower())
        os.makedirs(os.environ[var], mode=0o700, exist_ok=True)
    from qgis.core import QgsApplication  # noqa: PLC0415 - after the environment is set

    app = QgsApplication([], False)
    app.setPrefixPath("/usr", True)
    app.initQgis()
    return app
