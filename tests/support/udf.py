"""The synthetic Sentinel-1 product the UDF tests run on, read directly with rasterio (the
0.0.2 tests in ``tests/unit/udf/test_udf.py``, the 1.x client's in
``tests/e2e/clients/test_udf_v1.py``)."""

from __future__ import annotations

import numpy as np
import rasterio

from tileserver.demo import S1_PRODUCT_ID, s1_grid

#: 20 x 20 source pixels of the S1 grid (0.002 degrees), aligned to pixel edges.
SMALL = {"left": 16.2, "right": 16.24, "bottom": 48.0, "top": 48.04, "srs": "EPSG:4326"}


def source(s1_catalog, bbox=SMALL, dates=range(6)) -> np.ndarray:
    """(dates, bands, y, x) of the S1 COGs under ``bbox`` (pixel-aligned), read directly."""
    transform, _, _ = s1_grid()
    col0 = round((bbox["left"] - transform.c) / transform.a)
    row0 = round((bbox["top"] - transform.f) / transform.e)
    w = round((bbox["right"] - bbox["left"]) / transform.a)
    h = round((bbox["top"] - bbox["bottom"]) / -transform.e)
    items = sorted((s1_catalog.parent / S1_PRODUCT_ID).iterdir())
    out = []
    for i in dates:
        bands = []
        for band in ("VV", "VH"):
            with rasterio.open(items[i] / f"{band}.tif") as src:
                bands.append(src.read(1, window=((row0, row0 + h), (col0, col0 + w))))
        out.append(bands)
    return np.array(out, dtype=np.float32)
