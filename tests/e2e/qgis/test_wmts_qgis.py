"""QGIS 3.22 (Debian's python3-qgis) adds our WMTS layers and renders them, headless."""

from __future__ import annotations

import io
import json
import os
import subprocess

import numpy as np
from PIL import Image
from pyproj import Transformer

from tests.support.qgis import SCRIPTS as QGIS_SCRIPTS
from tests.support.requirements import requires
from tests.support.wmts import create_job, create_service, ndvi_graph

SYSTEM_PYTHON = "/usr/bin/python3"


def _system_env() -> dict[str, str]:
    """The environment without what the venv's GDAL/PROJ/Python put there."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("GDAL_", "PROJ_", "PYTHON", "VIRTUAL_ENV", "CPL_"))}


@requires("python3-qgis")
def test_qgis_renders_the_layers_with_nodata_transparent(live, small_app, tmp_path):
    client = small_app.test_client()
    job = create_job(client, ndvi_graph())  # latest date: NDVI with diagonal nodata stripes
    service = create_service(client, job)
    caps = service["service_url"].replace("http://localhost", live.url) \
        + "/1.0.0/WMTSCapabilities.xml"
    specs = []
    for tms, crs in (("GoogleMapsCompatible", "EPSG:3857"), ("WorldCRS84Quad", "EPSG:4326")):
        # the synthetic square (EPSG:32632 500000..505120, 5094880..5100000), a margin around
        to = Transformer.from_crs("EPSG:32632", crs, always_xy=True)
        (x0, x1), (y0, y1) = zip(*(to.transform(x, y) for x, y in
                                   ((499000, 5093880), (506120, 5101000))), strict=True)
        specs.append({"caps": caps, "layer": job, "tms": tms, "crs": crs,
                      "extent": [x0, y0, x1, y1], "png": str(tmp_path / f"{tms}.png")})
    proc = subprocess.run(
        [SYSTEM_PYTHON, str(QGIS_SCRIPTS / "qgis_wmts_render.py"), json.dumps(specs)],
        capture_output=True, text=True, timeout=240, check=False, env=_system_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    for spec, result in zip(specs, json.loads(proc.stdout.strip().splitlines()[-1]),
                            strict=True):
        assert result["valid"], result
        assert result["errors"] == []
        alpha = np.asarray(Image.open(spec["png"]).convert("RGBA"))[..., 3]
        opaque = (alpha > 0).mean()
        assert 0.2 < opaque < 0.9, (spec["tms"], opaque)  # data; margin + nodata clear


@requires("python3-qgis")
def test_qgis_shows_the_legend_of_the_style(live, small_app, tmp_path):
    """QGIS takes the style's LegendURL for its layer tree: the image it fetches is our
    legend PNG, ramp colours included."""
    import matplotlib

    from tileserver.render.legend import ramp_pixels

    client = small_app.test_client()
    job = create_job(client, ndvi_graph(reduce="min_time"))
    service = create_service(client, job, args={"colormap": "viridis", "range": [0, 1]})
    caps = service["service_url"].replace("http://localhost", live.url) \
        + "/1.0.0/WMTSCapabilities.xml"
    to = Transformer.from_crs("EPSG:32632", "EPSG:3857", always_xy=True)
    (x0, x1), (y0, y1) = zip(*(to.transform(x, y) for x, y in
                               ((499000, 5093880), (506120, 5101000))), strict=True)
    spec = {"caps": caps, "layer": job, "tms": "GoogleMapsCompatible", "crs": "EPSG:3857",
            "extent": [x0, y0, x1, y1], "png": str(tmp_path / "map.png"),
            "legend": str(tmp_path / "legend.png")}
    proc = subprocess.run(
        [SYSTEM_PYTHON, str(QGIS_SCRIPTS / "qgis_wmts_render.py"), json.dumps([spec])],
        capture_output=True, text=True, timeout=240, check=False, env=_system_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    (result,) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["valid"] and result["legend"][0] is True, result
    path = service["service_url"].replace("http://localhost", "")
    ours = client.get(f"{path}/1.0.0/{job}/default/legend.png").data
    assert result["legend"][1:] == list(Image.open(io.BytesIO(ours)).size)
    ramp = ramp_pixels((tmp_path / "legend.png").read_bytes()).astype(int)
    expected = matplotlib.colormaps["viridis"](np.linspace(0, 1, len(ramp)))[:, :3] * 255
    assert np.abs(ramp - expected).max() <= 6
