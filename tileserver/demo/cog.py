"""The demo's one COG writer: every raster of the demo catalog is written by
:func:`write_cog` (atomically: a temporary name, then a rename)."""

from __future__ import annotations

import contextlib
import os
import pathlib
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from affine import Affine


def overview_factors(width: int, height: int, blocksize: int = 512) -> list[int]:
    """Overview decimation factors GDAL's COG driver would choose (down to one tile)."""
    factors: list[int] = []
    f = 1
    while max(-(-width // f), -(-height // f)) > blocksize:
        f *= 2
        factors.append(f)
    return factors


def write_cog(path: pathlib.Path, arr: np.ndarray, *, crs: str, transform: Affine,
              nodata: float, overviews: str | None = None, description: str | None = None,
              tags: dict[str, str] | None = None, **creation: Any) -> None:
    """Write a single-band ``arr`` to ``path`` as a Cloud-Optimized GeoTIFF.

    ``overviews`` names the resampling (``"average"``, ``"nearest"``) of overviews built
    here, on an uncompressed in-memory copy, and reused by the COG driver (cheaper than
    letting it build them through a temporary compressed file); ``None`` leaves them to the
    driver's defaults. ``creation`` holds the COG driver's creation options (``blocksize``,
    ``compress``...). A failed write leaves neither ``path`` nor a temporary file.
    """
    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling
    from rasterio.io import MemoryFile

    height, width = arr.shape
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1,
               "dtype": arr.dtype.name, "crs": crs, "transform": transform, "nodata": nodata}
    try:
        with MemoryFile() as mem, mem.open(**profile) as src:
            src.write(arr, 1)
            if description is not None:
                src.set_band_description(1, description)
            if tags:
                src.update_tags(**tags)
            if overviews is not None:
                resampling = Resampling[overviews]
                factors = overview_factors(width, height, creation.get("blocksize", 512))
                if factors:
                    src.build_overviews(factors, resampling)
                creation = {**creation, "overviews": "AUTO",
                            "overview_resampling": resampling.name.upper()}
            rasterio.shutil.copy(src, str(tmp), driver="COG", **creation)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
