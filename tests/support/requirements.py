"""The system parts some tests need, how to install each, and what a run does without one.

Outside CI a test whose part is missing is skipped, and ``make test`` ends with a one-line
summary of those skips (``tests/conftest.py``). Under CI (``CI=true``) every skip is a
failure that names the install command: a green CI run has run every test. The only
skips CI accepts are cases that cannot apply at all; their reason starts with
:data:`NOT_APPLICABLE` (e.g. an official process test whose datacube our model cannot hold).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: The start of a skip reason that CI accepts: the test case cannot apply, nothing is missing.
NOT_APPLICABLE = "not applicable: "


def in_ci() -> bool:
    """``CI`` is set to something true (GitHub Actions, GitLab and ``.ci/run`` set it)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _which(*names: str):
    return lambda: any(shutil.which(n) for n in names)


def _system_qgis() -> bool:
    try:
        return subprocess.run(["/usr/bin/python3", "-c", "import qgis.core"],
                              capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _netns() -> bool:
    """Root, ``ip`` (iproute2) and a network namespace that can be made and removed."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    name = f"tileserver-probe-{os.getpid()}"
    try:
        made = subprocess.run(["ip", "netns", "add", name], capture_output=True, timeout=30)
        if made.returncode:
            return False
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
        return True
    except (OSError, subprocess.TimeoutExpired):
        return False


def _leaflet() -> bool:
    from tileserver.web.assets import leaflet_available  # noqa: PLC0415

    return leaflet_available()


def openeo_shared_dir() -> Path:
    """``../shared/openeo`` beside the checkout, or ``TILESERVER_OPENEO_SHARED``."""
    env = os.environ.get("TILESERVER_OPENEO_SHARED")
    return Path(env) if env else REPO.parent / "shared" / "openeo"


def qgis_tool() -> Path:
    """The QGIS render tool of ``../shared/tools`` (the WCS client test runs it), or
    ``TILESERVER_QGIS_TOOL``."""
    env = os.environ.get("TILESERVER_QGIS_TOOL")
    return Path(env) if env else REPO.parent / "shared" / "tools" / "qgis_render.py"


@dataclass(frozen=True)
class Part:
    """A system part: what needs it, how to check for it, how to install it."""

    name: str
    needed_by: str
    install: str
    present: object  # () -> bool


PARTS = {p.name: p for p in [
    Part("bubblewrap", "the UDF sandbox (run_udf, /udf/Python/*)",
         "apt-get install bubblewrap", _which("bwrap")),
    Part("redis-server", "the shared cache tier", "apt-get install redis-server",
         _which("redis-server")),
    Part("chromium", "the viewer and cross-origin browser tests",
         "apt-get install chromium", _which("chromium", "chromium-browser")),
    Part("python3-qgis", "the QGIS client tests (WMTS, WCS, GeoPackage)",
         "apt-get install python3-qgis", _system_qgis),
    Part("gdal-bin", "the ogrinfo check of written GeoPackages", "apt-get install gdal-bin",
         _which("ogrinfo")),
    Part("node", "the openEO JavaScript client tests and the OpenID Connect provider",
         "apt-get install nodejs npm",
         lambda: bool(shutil.which("node") and shutil.which("npm"))),
    Part("systemd-analyze", "the check of deploy/'s systemd units", "apt-get install systemd",
         _which("systemd-analyze")),
    Part("netns", "the multi-host cluster test (tests/e2e/cluster: hosts in network namespaces)",
         "run the tests as root with iproute2: apt-get install iproute2", _netns),
    Part("leaflet", "the viewer", "python -m tileserver.web.assets install", _leaflet),
    Part("openeo-shared", "the official openEO process tests and the compliance suite",
         "lay the shared/openeo folder beside the checkout or set TILESERVER_OPENEO_SHARED",
         lambda: (openeo_shared_dir() / "processes" / "tests").is_dir()),
    Part("qgis-tool", "the QGIS WCS client test",
         "lay shared/tools/qgis_render.py beside the checkout", lambda: qgis_tool().is_file()),
]}


@functools.cache
def missing(name: str) -> str | None:
    """Why the tests that need part ``name`` cannot run here, or None when it is present."""
    part = PARTS[name]
    if part.present():
        return None
    return (f"{part.name} is missing; untested without it: {part.needed_by} "
            f"(install: {part.install}; .ci/run does)")


def requires(*names: str) -> pytest.MarkDecorator:
    """A mark: skip (fail under CI, see tests/conftest.py) when one of the parts is missing."""
    reasons = [r for r in map(missing, names) if r]
    return pytest.mark.skipif(bool(reasons), reason="; ".join(reasons) or "present")


def require(*names: str) -> None:
    """Inside a test or fixture: skip (fail under CI) when one of the parts is missing."""
    reasons = [r for r in map(missing, names) if r]
    if reasons:
        pytest.skip("; ".join(reasons))
