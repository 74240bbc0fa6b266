"""A COG assembled from tiles compressed part by part is the file GDAL's COG driver writes
from the same values: same bytes, for several sizes, band counts, types and compressions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from tileserver.render import cog

TRANSFORM = from_origin(600_000.0, 5_200_000.0, 10.0, 10.0)


def _values(count: int, height: int, width: int, dtype: str) -> np.ndarray:
    y = np.arange(height)[:, None]
    x = np.arange(width)[None, :]
    bands = []
    for b in range(count):
        v = np.sin(x / (37.0 + b)) * np.cos(y / 23.0) + ((x * 7 + y * 13 + b) % 17) / 40.0
        if dtype == "float32":
            v = v.astype(np.float32)
            v[(x + y + 50 * b) % 211 < 9] = np.nan
        else:
            v = (1000 + 900 * v).astype(dtype)
        bands.append(v)
    return np.stack(bands)


def _assembled(tmp: Path, data: np.ndarray, nodata, options: dict, block: int) -> Path:
    """The COG of ``data`` assembled from ``block`` px parts of the levels blocks cover
    whole tiles of, the other levels compressed whole (as the batch final step does)."""
    count, height, width = data.shape
    tile = options["blocksize"]
    factors = cog.overview_factors(width, height, tile)
    levels = []
    for level, factor in enumerate((1, *factors)):
        full = np.ascontiguousarray(data[:, ::factor, ::factor])
        step = block // factor if block % (factor * tile) == 0 else full.shape[1] + full.shape[2]
        parts = []
        for y in range(0, full.shape[1], step):
            for x in range(0, full.shape[2], step):
                body, tiles, cols = cog.compress_part(
                    np.ascontiguousarray(full[:, y:y + step, x:x + step]), str(data.dtype),
                    nodata, options)
                path = tmp / f"part_{level}_{y}_{x}.bin"
                path.write_bytes(body)  # the tile offsets are those of the part's file
                parts.append(cog.Part(y // tile, x // tile, cols, tuple(tiles), str(path)))
        levels.append(parts)
    target = tmp / "assembled.tif"
    cog.write_template(target, crs="EPSG:32632", transform=TRANSFORM, width=width,
                            height=height, count=count, dtype=str(data.dtype), nodata=nodata,
                            factors=factors, cog_options=options)
    seen = []
    cog.assemble(target, levels, lambda done, total: seen.append((done, total)))
    total = sum(len(p.tiles) for parts in levels for p in parts)
    assert seen[-1] == (total, total) and len(seen) == total
    return target


@pytest.mark.parametrize(("shape", "dtype", "options", "block"), [
    ((1, 2048, 2048), "float32", {"compress": "DEFLATE"}, 1024),
    ((1, 1200, 1800), "float32", {"compress": "DEFLATE"}, 1024),  # partial tiles
    ((3, 700, 900), "uint16", {"compress": "LZW", "predictor": "STANDARD"}, 512),
    ((2, 1280, 1000), "float32", {"compress": "ZSTD", "level": 9,
                                  "predictor": "FLOATING_POINT"}, 256),  # block < tile
    ((1, 600, 600), "float32", {"compress": "NONE"}, 512),
], ids=["deflate", "partial-tiles", "lzw-3-bands", "zstd-small-blocks", "uncompressed"])
def test_assembled_cog_is_byte_identical_to_gdal(tmp_path, shape, dtype, options, block):
    # (sizes that halve exactly: GDAL's own overviews are then the decimation by 2, 4...)
    options = {"blocksize": 512 if shape[1] > 1000 else 256, "overview_resampling": "nearest",
               "bigtiff": "IF_SAFER", **options}
    data = _values(*shape, dtype)
    nodata = float("nan") if dtype == "float32" else 0
    ours = _assembled(tmp_path, data, nodata, options, block)
    gdal = tmp_path / "gdal.tif"
    with rasterio.open(gdal, "w", driver="COG", width=shape[2], height=shape[1],
                       count=shape[0], dtype=dtype, crs="EPSG:32632", transform=TRANSFORM,
                       nodata=nodata, num_threads="ALL_CPUS", **options) as dst:
        dst.write(data)
    assert ours.read_bytes() == gdal.read_bytes()
    with rasterio.open(ours) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(src.read(), data)
        overviews = src.overviews(1)
    for level, factor in enumerate(overviews):
        with rasterio.open(ours, overview_level=level) as src:
            np.testing.assert_array_equal(src.read(), data[:, ::factor, ::factor])


def test_missing_tiles_are_refused(tmp_path):
    options = {"blocksize": 256, "compress": "DEFLATE"}
    data = _values(1, 512, 512, "float32")
    body, tiles, cols = cog.compress_part(data[:, :256], "float32", float("nan"), options)
    part = tmp_path / "part.bin"
    part.write_bytes(body)
    target = tmp_path / "t.tif"
    cog.write_template(target, crs="EPSG:32632", transform=TRANSFORM, width=512,
                            height=512, count=1, dtype="float32", nodata=float("nan"),
                            factors=(2,), cog_options=options)
    with pytest.raises(ValueError, match="tiles given for a level of"):
        cog.assemble(target, [[cog.Part(0, 0, cols, tuple(tiles), str(part))],
                                   []])
