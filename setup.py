"""Build hook: the wheel carries Leaflet's files, taken from its npm package at build time
(see ``tileserver/web/assets.py``); they are never part of the repository.

``TILESERVER_BUILD_WITHOUT_LEAFLET=1`` builds without them (e.g. offline); the viewer page
then says what is missing. ``TILESERVER_BUILD_CACHE`` keeps the checked npm tarball between
builds.
"""

import importlib.util
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _load(relative: str):
    """A module of the source tree, loaded on its own (the package is not installed in the
    build environment; the few package modules it imports, such as ``tileserver.errors``,
    have no dependencies and are found in the source tree)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    spec = importlib.util.spec_from_file_location(
        "_tileserver_" + Path(relative).stem, HERE / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assets():
    return _load("tileserver/web/assets.py")


class BuildWithLeaflet(build_py):
    """``build_py`` plus Leaflet's ``dist/`` files under ``tileserver/web/static/leaflet``."""

    def run(self):
        """Build the package, then add the process descriptions and Leaflet (not for editable
        installs)."""
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install uses `python -m tileserver.web.assets install`
        # the official openEO process descriptions, from a PyPI wheel (see specs.py)
        specs = Path(self.build_lib) / "tileserver" / "graph" / "openeo_processes"
        _load("tileserver/graph/specs.py").build_into(specs)
        self.announce(f"openEO process specifications into {specs}", 2)
        if os.environ.get("TILESERVER_BUILD_WITHOUT_LEAFLET"):
            self.announce("building without Leaflet: the viewer will say it is missing", 2)
            return
        target = Path(self.build_lib) / "tileserver" / "web" / "static" / "leaflet"
        cache = os.environ.get("TILESERVER_BUILD_CACHE")
        files = _assets().build_into(target, Path(cache) if cache else None)
        self.announce(f"Leaflet: {len(files)} files into {target}", 2)


setup(cmdclass={"build_py": BuildWithLeaflet})
