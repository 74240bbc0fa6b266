"""QGIS 3.22 (Debian's python3-qgis) adds a WMS layer of a lazy job, renders it, renders it
at two dates through the layer's temporal properties (WMS-T ``TIME``), and runs Identify
(GetFeatureInfo) at a pixel, headless."""

from __future__ import annotations

import json
import os
import re
import subprocess

import numpy as np
import pytest
from PIL import Image
from pyproj import Transformer

from tests.support.qgis import SCRIPTS as QGIS_SCRIPTS
from tests.support.wmts import create_job, create_service, ndvi_graph

SYSTEM_PYTHON = "/usr/bin/python3"
#: The synthetic square (EPSG:32632) with a margin around it.
AROUND = ((499000, 5093880), (506120, 5101000))


def _has_qgis() -> bool:
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _system_env() -> dict[str, str]:
    """The environment without what the venv's GDAL/PROJ/Python put there."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("GDAL_", "PROJ_", "PYTHON", "VIRTUAL_ENV", "CPL_"))}


@pytest.mark.skipif(not _has_qgis(), reason="python3-qgis is not installed")
def test_qgis_adds_renders_animates_and_identifies_the_wms_layer(live, small_app, tmp_path):
    client = small_app.test_client()
    job = create_job(client, ndvi_graph(), title="NDVI in May")  # three dates, nodata
    service = create_service(client, job, kind="wms")
    url = service["service_url"].replace("http://localhost", live.url)
    to = Transformer.from_crs("EPSG:32632", "EPSG:3857", always_xy=True)
    (x0, x1), (y0, y1) = zip(*(to.transform(x, y) for x, y in AROUND), strict=True)
    # a point with data on every date (native pixel (300, 200) of the square)
    px, py = to.transform(500_000 + 300.5 * 10, 5_100_000 - 200.5 * 10)
    spec = {"url": url, "layer": job, "crs": "EPSG:3857", "extent": [x0, y0, x1, y1],
            "png": str(tmp_path / "map-{}.png"), "dates": ["2020-05-01", "2020-05-21"],
            "time_extent": "2020-05-01,2020-05-11,2020-05-21", "point": [px, py]}
    proc = subprocess.run(
        [SYSTEM_PYTHON, str(QGIS_SCRIPTS / "qgis_wms_render.py"), json.dumps(spec)],
        capture_output=True, text=True, timeout=240, check=False, env=_system_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["valid"], result
    assert result["temporal"], result
    assert result["errors"] == [], result
    alpha = {name: np.asarray(Image.open(tmp_path / f"map-{name}.png").convert("RGBA"))[..., 3]
             for name in ("default", "2020-05-01", "2020-05-21")}
    for name, a in alpha.items():
        assert 0.2 < (a > 0).mean() < 0.9, name  # data; the margin and nodata are clear
    # the nodata stripes move with the date: QGIS asked for each date
    assert not np.array_equal(alpha["2020-05-01"], alpha["2020-05-21"])
    assert result["identify_valid"], result
    text = "\n".join(result["identify"])
    # the text names the native pixel it read; the server's JSON for that pixel agrees
    crs, x, y = re.search(r"(EPSG:\d+): x=([-\d.]+) y=([-\d.]+)", text).groups()
    x, y = float(x), float(y)
    info = client.get(f"/service/wms/{service['service_id']}", query_string={
        "SERVICE": "WMS", "REQUEST": "GetFeatureInfo", "VERSION": "1.1.1", "LAYERS": job,
        "QUERY_LAYERS": job, "STYLES": "", "SRS": crs, "WIDTH": "1", "HEIGHT": "1",
        "BBOX": f"{x - 1},{y - 1},{x + 1},{y + 1}", "X": "0", "Y": "0",
        "INFO_FORMAT": "application/json"}).json["features"][0]["properties"]
    assert (info["x"], info["y"]) == (x, y)
    assert [s["time"] for s in info["series"]] == ["2020-05-01", "2020-05-11", "2020-05-21"]
    for step in info["series"]:  # the whole time series, each date with its value
        assert step["bands"]["ndvi"] is not None
        assert f"{step['time']}: ndvi={step['bands']['ndvi']:.6g}" in text, text
