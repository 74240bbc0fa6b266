"""Band statistics of results: the summaries of parts merge into GDAL's statistics of the
whole, and a COG assembled from parts carries them (and the band names) as GDAL's COG driver
writes its own."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from tileserver.render import cog
from tileserver.render.statistics import Summary, merged, summaries

TRANSFORM = from_origin(600_000.0, 5_200_000.0, 10.0, 10.0)


def _values(count: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    data = rng.normal(100.0, 25.0, (count, height, width)).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    data[:, (xx + 2 * yy) % 61 < 5] = np.nan
    data[-1] = np.nan  # an all-nodata band
    return data


def _gdal_statistics(data: np.ndarray) -> list:
    """GDAL's own exact statistics of each band (None for an all-nodata band)."""
    count, height, width = data.shape
    out = []
    with MemoryFile() as mem, mem.open(driver="GTiff", width=width, height=height, count=count,
                                       dtype="float32", nodata=float("nan")) as ds:
        ds.write(data)
        for band in ds.indexes:
            out.append(ds.stats(indexes=[band], approx=False)[0]
                       if np.isfinite(data[band - 1]).any() else None)
    return out


def test_merged_summaries_of_parts_are_gdals_statistics_of_the_whole():
    data = _values(3, 300, 500)
    parts = [summaries(np.ascontiguousarray(data[:, :, x:x + 128])) for x in range(0, 500, 128)]
    # through their JSON form, as the batch blocks hand them on
    whole = merged([[Summary.from_json(s.to_json()) for s in part] for part in parts])
    for summary, gdal, band in zip(whole, _gdal_statistics(data), data, strict=True):
        items = summary.gdal_metadata()
        assert summary.pixels == 300 * 500
        assert float(items["STATISTICS_VALID_PERCENT"]) == pytest.approx(
            100 * np.isfinite(band).mean(), abs=0.01)
        if gdal is None:
            assert items == {"STATISTICS_VALID_PERCENT": "0"}
            continue
        # (GDAL writes them with 14 significant digits, as these items are)
        assert float(items["STATISTICS_MINIMUM"]) == pytest.approx(gdal.min, rel=1e-13)
        assert float(items["STATISTICS_MAXIMUM"]) == pytest.approx(gdal.max, rel=1e-13)
        assert float(items["STATISTICS_MEAN"]) == pytest.approx(gdal.mean, rel=1e-12)
        assert float(items["STATISTICS_STDDEV"]) == pytest.approx(gdal.std, rel=1e-9)


def test_assembled_cog_carries_names_and_statistics_like_gdals_cog(tmp_path):
    data = _values(2, 600, 600)
    options = {"blocksize": 256, "compress": "DEFLATE", "overview_resampling": "nearest",
               "bigtiff": "IF_SAFER"}
    names = ["2020-05-01 B04", "2020-05-01 B08"]
    items = [s.gdal_metadata() for s in summaries(data)]
    # ours: the template with the names and statistics, then the tiles of the parts
    factors = cog.overview_factors(600, 600, 256)
    levels = []
    for level, factor in enumerate((1, *factors)):
        full = np.ascontiguousarray(data[:, ::factor, ::factor])
        body, tiles, cols = cog.compress_part(full, "float32", float("nan"), options)
        path = tmp_path / f"level{level}.bin"
        path.write_bytes(body)
        levels.append([cog.Part(0, 0, cols, tuple(tiles), str(path))])
    ours = tmp_path / "ours.tif"
    cog.write_template(ours, crs="EPSG:32632", transform=TRANSFORM, width=600, height=600,
                       count=2, dtype="float32", nodata=float("nan"), factors=factors,
                       cog_options=options, descriptions=names, band_metadata=items)
    cog.assemble(ours, levels)
    # GDAL's COG driver from a source with the same names and statistics
    gdal = tmp_path / "gdal.tif"
    with MemoryFile() as mem, mem.open(driver="GTiff", width=600, height=600, count=2,
                                       dtype="float32", crs="EPSG:32632", transform=TRANSFORM,
                                       nodata=float("nan")) as src:
        src.write(data)
        for band, (name, tags) in enumerate(zip(names, items, strict=True), start=1):
            src.set_band_description(band, name)
            src.update_tags(band, **tags)
        rasterio.shutil.copy(src, gdal, driver="COG", num_threads="ALL_CPUS", **options)
    assert ours.read_bytes() == gdal.read_bytes()
    with rasterio.open(ours) as src:
        assert src.descriptions == tuple(names)
        assert src.tags(1) == items[0] and src.tags(2) == items[1]
        np.testing.assert_array_equal(src.read(), data)
