"""Small synthetic STAC catalogs made by code for the tests (no checked-in data).

``make_catalog(dir)`` writes product ``TEST`` with items in two UTM zones (EPSG:32632 and
EPSG:32633, the same place seen from both), four dates (two on the same day in different
zones), bands B04/B08 at 10 m and B11 at 20 m (uint16, nodata 0, internal overviews), and
product ``FLOATS`` (float32, NaN nodata, ``raster:bands`` scale/offset, no overviews).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

# An area around E 9 deg N 46 deg: x 500000..505120 (32632), 512 px at 10 m
ORIGIN_32632 = (500_000.0, 5_100_000.0)
SIZE = 512
RES = 10.0
DATES = [
    (datetime(2020, 5, 1, 10, 0, tzinfo=UTC), "EPSG:32632"),
    (datetime(2020, 5, 11, 10, 0, tzinfo=UTC), "EPSG:32632"),
    (datetime(2020, 5, 11, 10, 0, 5, tzinfo=UTC), "EPSG:32633"),  # same day, other zone
    (datetime(2020, 5, 21, 10, 0, tzinfo=UTC), "EPSG:32633"),
]
BANDS = {"B04": 10.0, "B08": 10.0, "B11": 20.0}
#: ``eo:cloud_cover`` of the items of DATES (for ``load_collection``'s property filters)
CLOUD_COVER = [5.0, 40.0, 12.5, 60.0]


def band_values(date_index: int, band: str, shape: tuple[int, int]) -> np.ndarray:
    """Deterministic uint16 values with nodata holes, different per date and band."""
    rng = np.random.default_rng(1000 * date_index + sum(map(ord, band)))
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = {"B04": 800, "B08": 3000, "B11": 1800}[band]
    wave = np.sin(xx / 37.0 + date_index) * np.cos(yy / 23.0 - date_index)
    vals = base + 600 * wave + rng.normal(0, 50, shape) + 150 * date_index
    vals = np.clip(vals, 1, 10000).astype(np.uint16)
    # nodata: a diagonal band that moves with the date, and a corner hole on date 1
    vals[(xx + yy + 40 * date_index) % 200 < 15] = 0
    if date_index == 1:
        vals[: shape[0] // 4, : shape[1] // 4] = 0
    return vals


def _write(path: Path, arr: np.ndarray, crs: str, transform, nodata, overviews=True) -> None:
    profile = dict(driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1,
                   dtype=arr.dtype.name, crs=crs, transform=transform, nodata=nodata,
                   tiled=True, blockxsize=128, blockysize=128, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr, 1)
        if overviews:
            dst.build_overviews([2, 4, 8], Resampling.nearest)


def grid_for(crs: str, res: float):
    """(transform, width, height) of the test area in ``crs`` at ``res``."""
    x0, y0 = ORIGIN_32632
    left, bottom, right, top = x0, y0 - SIZE * RES, x0 + SIZE * RES, y0
    if crs != "EPSG:32632":
        left, bottom, right, top = transform_bounds("EPSG:32632", crs, left, bottom, right, top)
        left, top = np.floor(left / res) * res, np.ceil(top / res) * res
    n = int(round(SIZE * RES / res))
    return from_origin(left, top, res, res), n, n


def make_catalog(root: Path) -> Path:
    """Write the catalog; returns the path of catalog.json."""
    root = Path(root)
    catalog = pystac.Catalog("test-catalog", "synthetic test data")
    col = pystac.Collection(
        "TEST", "Synthetic two-zone product for tests",
        pystac.Extent(pystac.SpatialExtent([[-180, -90, 180, 90]]),
                      pystac.TemporalExtent([[DATES[0][0], DATES[-1][0]]])))
    col.summaries.add("eo:bands", [{"name": b} for b in BANDS])
    for i, (when, crs) in enumerate(DATES):
        item_id = f"test_{i}"
        d = root / "TEST" / item_id
        d.mkdir(parents=True, exist_ok=True)
        geom_bounds = None
        assets = {}
        for band, res in BANDS.items():
            transform, w, h = grid_for(crs, res)
            arr = band_values(i, band, (h, w))
            path = d / f"{band}.tif"
            _write(path, arr, crs, transform, 0)
            with rasterio.open(path) as src:
                geom_bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
            assets[band] = pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF,
                                        roles=["data"])
        item = pystac.Item(item_id, mapping(box(*geom_bounds)), list(geom_bounds), when,
                           {"eo:cloud_cover": CLOUD_COVER[i]})
        for k, a in assets.items():
            item.add_asset(k, a)
        col.add_item(item)
    catalog.add_child(col)

    fcol = pystac.Collection(
        "FLOATS", "float32 data with scale/offset and no overviews",
        pystac.Extent(pystac.SpatialExtent([[-180, -90, 180, 90]]),
                      pystac.TemporalExtent([[DATES[0][0], DATES[0][0]]])))
    d = root / "FLOATS" / "f0"
    d.mkdir(parents=True, exist_ok=True)
    transform, w, h = grid_for("EPSG:32632", 20.0)
    arr = (np.arange(w * h, dtype=np.float32).reshape(h, w) % 1000)
    arr[10:20, 10:20] = np.nan
    _write(d / "T.tif", arr, "EPSG:32632", transform, float("nan"), overviews=False)
    with rasterio.open(d / "T.tif") as src:
        gb = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    item = pystac.Item("f0", mapping(box(*gb)), list(gb), DATES[0][0], {})
    item.add_asset("T", pystac.Asset(str(d / "T.tif"), media_type=pystac.MediaType.GEOTIFF,
                                     roles=["data"],
                                     extra_fields={"raster:bands": [{"scale": 0.5,
                                                                     "offset": 10.0}]}))
    fcol.add_item(item)
    catalog.add_child(fcol)
    catalog.normalize_hrefs(str(root))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"
