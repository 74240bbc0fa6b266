"""The Sentinel-1 GRD-like product of the openEO documentation's use case 2 (synthetic
backscatter, EPSG:4326), a self-contained STAC collection of its own."""

from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib
import zlib
from typing import TYPE_CHECKING

import numpy as np

from tileserver.demo.files import atomic_stac_io, dir_lock
from tileserver.demo.products import PROJ_SCHEMA, RASTER_SCHEMA
from tileserver.demo.synth import _value_noise

if TYPE_CHECKING:  # pragma: no cover
    from affine import Affine

#: The Sentinel-1 GRD-like product of the openEO documentation's use case 2.
S1_PRODUCT_ID = "Sentinel1-L1-IW-GRD"
S1_BANDS = ("VV", "VH")
#: WGS84 grid of the S1 product: (west, south, east, north) and pixel size in degrees.
S1_BOUNDS = (16.0, 47.1, 16.7, 48.7)
S1_PIXEL = 0.002
#: Acquisitions (a 6-day repeat cycle) in January 2017, 05:00 UTC.
S1_DATES = tuple(_dt.datetime(2017, 1, d, 5, 0, 0, tzinfo=_dt.UTC) for d in (1, 7, 13, 19, 25, 31))
S1_VERSION = "1"
S1_MARKER = ".tileserver-demo-s1.json"


def s1_grid() -> tuple[Affine, int, int]:
    """``(transform, width, height)`` of the S1 rasters (EPSG:4326)."""
    from rasterio.transform import from_origin

    west, south, east, north = S1_BOUNDS
    width = round((east - west) / S1_PIXEL)
    height = round((north - south) / S1_PIXEL)
    return from_origin(west, north, S1_PIXEL, S1_PIXEL), width, height


def generate_s1_band(date_index: int, band: str) -> np.ndarray:
    """Linear backscatter (sigma0) of one date and band: float32, NaN outside the swath.

    Smooth land-cover-like patterns (fields brighter in VV than VH, dark water), a slow
    change between dates and multiplicative speckle; deterministic.
    """
    _, width, height = s1_grid()
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(zlib.crc32(f"s1|{date_index}|{band}".encode()))
    noise = _value_noise(np.random.default_rng(1701), (height, width), 40.0)
    base = np.clip(0.5 + 0.25 * noise, 0.0, 1.0)
    parcels = (np.sin(xx / 9.0) * np.cos(yy / 13.0) > 0.2).astype(np.float32)
    water = noise < -1.0
    season = 1.0 + 0.08 * date_index
    if band == "VV":
        value = (0.05 + 0.15 * base + 0.06 * parcels) * season
    else:
        value = (0.01 + 0.04 * base + 0.015 * parcels) * season
    value = np.where(water, value * 0.1, value)
    speckle = rng.gamma(4.0, 0.25, size=(height, width)).astype(np.float32)
    out = (value * speckle).astype(np.float32)
    out[:, : 5 + 3 * date_index] = np.nan  # a swath edge that moves between dates
    return out


def write_s1_product(directory: str | os.PathLike[str]) -> pathlib.Path:
    """Write the Sentinel-1-like product (6 dates x VV/VH COGs, ~350 x 800 px, EPSG:4326)
    as a self-contained STAC collection; returns its ``collection.json``. Idempotent
    (a marker names the generator version)."""
    import pystac

    from tileserver.render.cog import COG_MEDIA_TYPE, write_cog  # rasterio: when writing

    root = pathlib.Path(directory).absolute()
    path = root / "collection.json"
    try:
        done = json.loads((root / S1_MARKER).read_text())["version"] == S1_VERSION
    except (OSError, ValueError, KeyError, TypeError):
        done = False
    if done and path.is_file():
        return path
    root.mkdir(parents=True, exist_ok=True)
    with dir_lock(root):
        transform, _, _ = s1_grid()
        west, south, east, north = S1_BOUNDS
        geom = {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north],
                                                    [west, north], [west, south]]]}
        res_m = round(S1_PIXEL * 111_320.0, 1)
        raster = {"nodata": "nan", "data_type": "float32", "spatial_resolution": res_m,
                  "unit": "linear power (sigma0)"}
        coll = pystac.Collection(
            id=S1_PRODUCT_ID,
            title="Sentinel-1 IW GRD-like backscatter (synthetic)",
            description="Sentinel 1 C-band Synthetic Aperture Radar (SAR) Ground Range Data "
            "(SYNTHETIC demo data: linear sigma0 in VV and VH, EPSG:4326).",
            extent=pystac.Extent(pystac.SpatialExtent([list(S1_BOUNDS)]),
                                 pystac.TemporalExtent([[S1_DATES[0], S1_DATES[-1]]])),
            license="CC0-1.0", stac_extensions=[RASTER_SCHEMA, PROJ_SCHEMA],
        )
        for i, when in enumerate(S1_DATES):
            item_id = f"S1A_IW_GRDH_1SDV_{when:%Y%m%dT%H%M%S}"
            item = pystac.Item(id=item_id, geometry=geom, bbox=list(S1_BOUNDS), datetime=when,
                               properties={"platform": "sentinel-1a", "proj:epsg": 4326,
                                           "sar:polarizations": list(S1_BANDS)},
                               stac_extensions=[RASTER_SCHEMA, PROJ_SCHEMA])
            folder = root / S1_PRODUCT_ID / item_id
            folder.mkdir(parents=True, exist_ok=True)
            for band in S1_BANDS:
                target = folder / f"{band}.tif"
                write_cog(target, generate_s1_band(i, band), crs="EPSG:4326",
                          transform=transform, nodata=float("nan"), dtype="float32",
                          resampling=None, blocksize=256, compress="DEFLATE")
                item.add_asset(band, pystac.Asset(
                    href=str(target), media_type=COG_MEDIA_TYPE, roles=["data"],
                    title=f"{band} backscatter", extra_fields={"raster:bands": [raster]}))
            coll.add_item(item)
        coll.normalize_hrefs(str(root))
        coll.save(pystac.CatalogType.SELF_CONTAINED, stac_io=atomic_stac_io())
        (root / S1_MARKER).write_text(json.dumps({"version": S1_VERSION}))
    return path

