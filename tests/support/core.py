"""Helpers of the core tests: references computed another way (pystac + plain rasterio).

The references here never use :mod:`tileserver.core`: they read the STAC JSON with pystac,
open every asset with rasterio, warp the *whole* file at full resolution into the view
(nearest neighbour) and mosaic the acquisitions of one UTM day first-come-first-served.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np
import pystac
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import from_bounds
from rasterio.warp import reproject

from tileserver.datacube.view import View
from tileserver.engine.evaluator import Engine

#: The 32632 grid of the synthetic ``TEST`` product (tests/support/synthetic.py): 512 x 512 at 10 m.
TEST_BOUNDS_32632 = (500_000.0, 5_094_880.0, 505_120.0, 5_100_000.0)


def stac_items(catalog_json: Path | str, product_id: str) -> list[pystac.Item]:
    """Items of a collection, read with pystac only, sorted by datetime."""
    cat = pystac.read_file(str(catalog_json))
    col = cat if isinstance(cat, pystac.Collection) else next(
        c for c in cat.get_all_collections() if c.id == product_id)
    return sorted(col.get_items(recursive=True), key=lambda i: (when(i), i.id))


def when(item: pystac.Item) -> datetime:
    """``datetime`` or, when null, ``start_datetime``."""
    return item.datetime or item.common_metadata.start_datetime


def warp_file(href: str, view: View, band_meta: dict | None = None,
              resampling: Resampling = Resampling.nearest,
              overview_level: int | None = None) -> np.ndarray:
    """The whole file warped to ``view`` (nearest unless ``resampling`` says otherwise,
    full resolution unless ``overview_level`` names one), float64, NaN nodata,
    ``raster:bands`` scale/offset applied."""
    opts = {} if overview_level is None else {"overview_level": overview_level}
    with rasterio.open(href, **opts) as src:
        arr = src.read(1).astype(np.float64)
        nodata = src.nodata
        if nodata is not None and not np.isnan(nodata):
            arr[arr == nodata] = np.nan
        out = np.full((view.height, view.width), np.nan)
        reproject(arr, out, src_transform=src.transform, src_crs=src.crs, src_nodata=np.nan,
                  dst_transform=from_bounds(*view.bounds, view.width, view.height),
                  dst_crs=CRS.from_user_input(view.crs), dst_nodata=np.nan,
                  resampling=resampling)
    meta = band_meta or {}
    return out * meta.get("scale", 1.0) + meta.get("offset", 0.0)


def reference_stack(catalog_json, product_id: str, view: View, bands: list[str],
                    start: datetime | None = None, end: datetime | None = None,
                    resampling: Resampling = Resampling.nearest,
                    keep=None, overview_level: int | None = None,
                    ) -> tuple[list[str], np.ndarray]:
    """``(days, array (t, b, y, x))``: the mosaic per UTC day, first acquisition wins
    (of the items for which ``keep(item)`` is true, when given)."""
    by_day: dict[str, list[pystac.Item]] = defaultdict(list)
    for item in stac_items(catalog_json, product_id):
        if (start and when(item) < start) or (end and when(item) > end):
            continue
        if keep is not None and not keep(item):
            continue
        by_day[when(item).strftime("%Y-%m-%d")].append(item)
    days = sorted(by_day)
    out = np.full((len(days), len(bands), view.height, view.width), np.nan)
    for ti, day in enumerate(days):
        for bi, band in enumerate(bands):
            for item in by_day[day]:
                asset = item.assets[band]
                meta = (asset.extra_fields.get("raster:bands") or [{}])[0]
                layer = warp_file(asset.get_absolute_href(), view, meta, resampling,
                                  overview_level)
                target = out[ti, bi]
                hole = np.isnan(target)
                target[hole] = layer[hole]
    return days, out


def ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """NDVI with NaN where undefined, silently."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (nir - red) / (nir + red)
    out[~np.isfinite(out)] = np.nan
    return out


def make_engine(catalog_json, **kwargs) -> Engine:
    """An engine over one catalog with its own cache."""
    from tileserver.cache.memory import NodeCache
    from tileserver.data.catalog import Catalog

    kwargs.setdefault("cache", NodeCache(512 * 1024 * 1024))
    return Engine(Catalog.load([str(catalog_json)]), **kwargs)


def pixels_read() -> float:
    """Current value of the ``tileserver_source_pixels_read`` counter."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("tileserver_source_pixels_read_total") or 0.0


def leaf(product: str = "TEST") -> dict:
    """A data leaf."""
    return {"product_id": product}


def bbox(imagery: dict, left, right, top, bottom, srs="EPSG:32632") -> dict:
    """A filter_bbox node."""
    return {"process_id": "filter_bbox", "args": {"imagery": imagery, "left": left,
            "right": right, "top": top, "bottom": bottom, "srs": srs}}


def daterange(imagery: dict, start, end) -> dict:
    """A filter_daterange node."""
    return {"process_id": "filter_daterange",
            "args": {"imagery": imagery, "from": start, "to": end}}


def call(process_id: str, imagery: dict, **args) -> dict:
    """Any process node."""
    return {"process_id": process_id, "args": {"imagery": imagery, **args}}
