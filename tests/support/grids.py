"""A synthetic catalog on the files' own grids, and its plain rasterio + numpy reference
(tests of the native grid: ``tests/unit/data/test_grid.py``, ``tests/unit/jobs/test_grid_jobs.py``).

Products (uint16 bands ``B04``/``B08``, nodata 0, DEFLATE COGs with 64-px blocks and
overviews), each on a lattice whose origin is not a round number:

- ``TILES`` (EPSG:32631, 10 m): two adjacent tiles of one lattice per date (3 dates), the
  items carrying ``proj:transform``/``proj:shape`` per asset;
- ``LAEA`` (EPSG:3035, 20 m): one file per date (3 dates), only ``proj:epsg`` (the grid
  comes from the headers);
- ``GEO`` (EPSG:4326, 0.0005 deg): one file per date (2 dates), no ``proj:`` fields.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pystac
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

#: product -> (crs, origin x, origin y, res, tile width, height, tiles, dates, proj fields)
PRODUCTS = {
    "TILES": ("EPSG:32631", 600_003.0, 5_300_007.0, 10.0, 200, 160, 2, 3, True),
    "LAEA": ("EPSG:3035", 4_321_017.0, 3_210_050.0, 20.0, 150, 130, 1, 3, False),
    "GEO": ("EPSG:4326", 9.10012, 46.20007, 0.0005, 120, 100, 1, 2, False),
}
BANDS = ("B04", "B08")
START = datetime(2021, 6, 1, 10, tzinfo=UTC)


def values(product: str, tile: int, date: int, band: str, shape) -> np.ndarray:
    """Deterministic uint16 values with nodata (0) holes that differ per date."""
    rng = np.random.default_rng([sum(map(ord, product)), tile, date, sum(map(ord, band))])
    base = 900 if band == "B04" else 3100
    vals = rng.integers(base - 400, base + 400, shape, dtype=np.uint16)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    vals[(xx + 2 * yy + 37 * date + 11 * tile) % 97 < 9] = 0
    if tile == 0:
        vals[:6, :9] = 0  # no data on any date: nodata in a reduction too
    return vals


def tile_transform(product: str, tile: int):
    """The transform of a tile (tiles side by side, west to east)."""
    crs, x0, y0, res, width, *_ = PRODUCTS[product]
    return from_origin(x0 + tile * width * res, y0, res, res)


def source_grid(product: str):
    """``(crs, transform, (height, width))`` of the whole product on its lattice."""
    crs, _, _, _, width, height, tiles, *_ = PRODUCTS[product]
    return crs, tile_transform(product, 0), (height, width * tiles)


def _write(path: Path, arr: np.ndarray, crs: str, transform) -> None:
    profile = dict(driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1,
                   dtype="uint16", crs=crs, transform=transform, nodata=0, tiled=True,
                   blockxsize=64, blockysize=64, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr, 1)
        dst.build_overviews([2, 4], Resampling.nearest)


def make_grid_catalog(root: Path) -> Path:
    """Write the catalog; returns the path of its catalog.json."""
    root = Path(root)
    catalog = pystac.Catalog("grid-catalog", "synthetic data on the files' own grids")
    for pid, (crs, _, _, res, width, height, tiles, dates, proj) in PRODUCTS.items():
        col = pystac.Collection(pid, f"{pid} on its own grid", pystac.Extent(
            pystac.SpatialExtent([[-180, -90, 180, 90]]),
            pystac.TemporalExtent([[START, START + timedelta(days=10 * dates)]])))
        col.summaries.add("eo:bands", [{"name": b} for b in BANDS])
        for d in range(dates):
            for t in range(tiles):
                transform = tile_transform(pid, t)
                item_dir = root / pid / f"{pid}_{d}_{t}"
                item_dir.mkdir(parents=True, exist_ok=True)
                props: dict = {} if pid == "GEO" else {"proj:epsg": int(crs.split(":")[1])}
                item_assets = {}
                for band in BANDS:
                    path = item_dir / f"{band}.tif"
                    _write(path, values(pid, t, d, band, (height, width)), crs, transform)
                    extra = {"proj:shape": [height, width],
                             "proj:transform": list(transform)[:6]} if proj else {}
                    item_assets[band] = pystac.Asset(str(path), media_type=pystac.MediaType.COG,
                                                     roles=["data"], extra_fields=extra)
                bounds = (transform.c, transform.f - height * res,
                          transform.c + width * res, transform.f)
                geo = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
                item = pystac.Item(f"{pid}_{d}_{t}", mapping(box(*geo)), list(geo),
                                   START + timedelta(days=10 * d), props)
                for k, a in item_assets.items():
                    item.add_asset(k, a)
                col.add_item(item)
        catalog.add_child(col)
    catalog.normalize_hrefs(str(root))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


def plain_stack(root: Path, product: str) -> np.ndarray:
    """``(date, band, y, x)`` float32 with NaN for nodata: each date's tiles read with
    rasterio and concatenated west to east (what a user's script does)."""
    *_, tiles, dates, _ = PRODUCTS[product]
    out = []
    for d in range(dates):
        bands = []
        for band in BANDS:
            parts = []
            for t in range(tiles):
                with rasterio.open(root / product / f"{product}_{d}_{t}" / f"{band}.tif") as src:
                    arr = src.read(1).astype(np.float32)
                    arr[arr == 0] = np.nan
                parts.append(arr)
            bands.append(np.concatenate(parts, axis=1))
        out.append(bands)
    return np.asarray(out, dtype=np.float32)


def plain_ndvi(root: Path, product: str, reduce: bool = True) -> np.ndarray:
    """NDVI (float32) of every date, or its minimum over the dates: ``(t, y, x)``."""
    stack = plain_stack(root, product)
    red, nir = stack[:, 0], stack[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (nir - red) / (nir + red)
    if not reduce:
        return ndvi
    with warnings.catch_warnings():  # pixels without data on every date: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmin(ndvi, axis=0)[None]


def ndvi_graph(product: str, extent: dict | None = None, reduce: bool = True,
               fmt: str = "GTiff") -> dict:
    """A 1.x graph: NDVI of ``product`` (the whole collection without ``extent``),
    its minimum over time when ``reduce``."""
    args: dict = {"id": product, "spatial_extent": extent, "temporal_extent": None,
                  "bands": list(BANDS)}
    graph: dict = {
        "load": {"process_id": "load_collection", "arguments": args},
        "ndvi": {"process_id": "ndvi", "arguments": {"data": {"from_node": "load"}}},
    }
    last = "ndvi"
    if reduce:
        graph["reduce"] = {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "ndvi"}, "dimension": "t", "reducer": {"process_graph": {
                "r": {"process_id": "min", "arguments": {"data": {"from_parameter": "data"}},
                      "result": True}}}}}
        last = "reduce"
    graph["save"] = {"process_id": "save_result", "arguments": {
        "data": {"from_node": last}, "format": fmt}, "result": True}
    return graph
