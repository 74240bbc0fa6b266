"""XYZ tiles: the GoogleMapsCompatible WMTS tiles of the job, same bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from tests.support.wmts import create_job, create_service, ndvi_graph

Z, ROW, COL = 14, 5826, 8602


def test_xyz_url_template_and_tiles_equal_wmts(client):
    job = create_job(client, ndvi_graph())  # latest date: has nodata
    xyz = create_service(client, job, "xyz", args={"colormap": "magma"})
    wmts = create_service(client, job, "wmts", args={"colormap": "magma"})
    assert xyz["service_url"].endswith(f"/service/xyz/{xyz['service_id']}/{{z}}/{{x}}/{{y}}.png")
    url = xyz["service_url"].replace("http://localhost", "").format(z=Z, x=COL, y=ROW)
    tile = client.get(url)
    assert tile.status_code == 200 and tile.mimetype == "image/png"
    same = client.get(wmts["service_url"].replace("http://localhost", "")
                      + f"/1.0.0/{job}/default/GoogleMapsCompatible/{Z}/{ROW}/{COL}.png")
    assert tile.data == same.data
    assert tile.headers["ETag"] == same.headers["ETag"]
    rgba = np.asarray(Image.open(io.BytesIO(tile.data)).convert("RGBA"))  # palette PNG
    assert (rgba[..., 3] == 255).any() and (rgba[..., 3] == 0).any()  # data and nodata
    assert client.get(url, headers={"If-None-Match": tile.headers["ETag"]}).status_code == 304


def test_xyz_errors_and_404_after_delete(client):
    job = create_job(client, ndvi_graph(reduce="min_time"))
    xyz = create_service(client, job, "xyz")
    base = f"/service/xyz/{xyz['service_id']}"
    assert client.get(f"{base}/{Z}/{COL}/{ROW}.gif").status_code == 400
    resp = client.get(f"{base}/2/9/0.png")
    assert resp.status_code == 400 and resp.json["code"] == "TileOutOfRange"
    wmts = create_service(client, job, "wmts")
    # a wmts service id is not an xyz service
    assert client.get(f"/service/xyz/{wmts['service_id']}/{Z}/{COL}/{ROW}.png"
                      ).status_code == 404
    assert client.delete(f"/services/{xyz['service_id']}").status_code == 204
    assert client.get(f"{base}/{Z}/{COL}/{ROW}.png").status_code == 404
