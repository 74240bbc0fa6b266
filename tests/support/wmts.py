"""Helpers of the WMTS/XYZ/viewer/jobs tests: official XSDs fetched from PyPI, a real HTTP
server in a thread, jobs and services, and reference tiles computed with plain rasterio."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from lxml import etree
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject

CACHE = Path(os.environ.get("TILESERVER_TEST_CACHE", Path.home() / ".cache" / "tileserver-tests"))
OWS = "http://www.opengis.net/ows/1.1"
WMTS = "http://www.opengis.net/wmts/1.0"
NS = {"ows": OWS, "wmts": WMTS, "xlink": "http://www.w3.org/1999/xlink"}
_schemas: dict[str, etree.XMLSchema] = {}
_lock = threading.Lock()


def unpack_wheel(requirement: str, wheel_glob: str, keep, target: Path, what: str) -> None:
    """Download ``requirement``'s wheel from PyPI into ``CACHE`` (once) and extract the
    members for which ``keep(name)`` is true under ``target``; skips the test when PyPI
    cannot be reached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = sorted(CACHE.glob(wheel_glob))
    if not wheels:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             requirement, "-d", str(CACHE)], capture_output=True, text=True, check=False)
        wheels = sorted(CACHE.glob(wheel_glob))
        if not wheels:
            pytest.skip(f"cannot download {what}'s wheel for the XSDs: {proc.stderr[-300:]}")
    with zipfile.ZipFile(wheels[-1]) as zf:
        for name in zf.namelist():
            if keep(name):
                zf.extract(name, target)


def schema_dir() -> Path:
    """``mapproxy/test/schemas`` unpacked from MapProxy's wheel (downloaded from PyPI once)."""
    target = CACHE / "mapproxy-schemas"
    done = target / "mapproxy" / "test" / "schemas"
    if not (done / "wmts" / "1.0" / "wmtsGetCapabilities_response.xsd").exists():
        unpack_wheel("mapproxy", "mapproxy-*.whl",
                     lambda name: name.startswith("mapproxy/test/schemas/"), target, "MapProxy")
    return done


def xsd(relative: str) -> etree.XMLSchema:
    """A compiled schema, e.g. ``wmts/1.0/wmtsGetCapabilities_response.xsd``."""
    with _lock:
        if relative not in _schemas:
            path = schema_dir() / relative
            _schemas[relative] = etree.XMLSchema(etree.parse(str(path)))
        return _schemas[relative]


def assert_valid(xml: bytes, relative: str) -> etree._Element:
    """Validate a document against an official schema; returns its root."""
    doc = etree.fromstring(xml)
    schema = xsd(relative)
    if not schema.validate(doc):
        raise AssertionError(f"invalid against {relative}: {schema.error_log}")
    return doc


def assert_ows_exception(resp, code: str, locator: str | None, status: int = 400) -> None:
    """A valid OWS 1.1 ExceptionReport with this code and locator."""
    assert resp.status_code == status, resp.data[:500]
    assert resp.mimetype == "application/xml"
    doc = assert_valid(resp.data, "ows/1.1.0/owsExceptionReport.xsd")
    exc = doc.find("ows:Exception", NS)
    assert exc.get("exceptionCode") == code
    assert exc.get("locator") == locator


class LiveServer:
    """A WSGI app on a real loopback port (werkzeug, threaded) for real clients."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def ndvi_graph(product="TEST", red="B04", nir="B08", reduce=None, bbox=None, dates=None):
    """An NDVI graph, optionally filtered and reduced over time."""
    node: dict = {"product_id": product}
    if bbox:
        node = {"process_id": "filter_bbox", "args": {"imagery": node, **bbox}}
    if dates:
        node = {"process_id": "filter_daterange",
                "args": {"imagery": node, "from": dates[0], "to": dates[1]}}
    node = {"process_id": "NDVI", "args": {"imagery": node, "red": red, "nir": nir}}
    if reduce:
        node = {"process_id": reduce, "args": {"imagery": node}}
    return node


def create_job(client, graph, title=None, output=None) -> str:
    """POST /jobs; returns the job id."""
    body = {"process_graph": graph}
    if title:
        body["title"] = title
    if output:
        body["output"] = output
    resp = client.post("/jobs", json=body)
    assert resp.status_code == 201, resp.json
    return resp.json["job_id"]


def create_service(client, job_id, kind="wmts", args=None) -> dict:
    """POST /services; returns the service description."""
    body = {"job_id": job_id, "type": kind}
    if args is not None:
        body["args"] = args
    resp = client.post("/services", json=body)
    assert resp.status_code == 201, resp.json
    return resp.json


def warp_band(path, dst_crs, dst_transform, shape) -> np.ndarray:
    """A source file warped to a grid with nearest neighbour (NaN where nodata)."""
    import rasterio

    with rasterio.open(path) as src:
        dst = np.full(shape, np.nan, np.float32)
        reproject(rasterio.band(src, 1), dst, dst_transform=dst_transform,
                  dst_crs=CRS.from_user_input(dst_crs), dst_nodata=np.nan,
                  resampling=Resampling.nearest)
        return dst


def reference_ndvi(catalog_dir: Path, items, red, nir, dst_crs, dst_transform, shape,
                   reduce=None) -> np.ndarray:
    """NDVI per acquisition day (items of one day mosaicked first-wins), then the reduction
    (``min_time``) or the last day, on a given grid — plain rasterio + numpy."""
    days: dict[str, list] = {}
    for day, folder in items:
        days.setdefault(day, []).append(folder)
    out = []
    for day in sorted(days):
        bands = []
        for band in (red, nir):
            acc = np.full(shape, np.nan, np.float32)
            for folder in days[day]:
                arr = warp_band(catalog_dir / folder / f"{band}.tif", dst_crs, dst_transform,
                                shape)
                fill = np.isnan(acc)
                acc[fill] = arr[fill]
            bands.append(acc)
        r, n = bands
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append((n - r) / (n + r))
    stack = np.stack(out)
    if reduce == "min_time":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmin(stack, axis=0)
    return stack[-1]
