"""Cloud-Optimized GeoTIFF writing: the one module that writes COGs.

- :func:`cog_options`: the COG creation options of an openEO ``output`` (its GTiff options,
  checked by :func:`~tileserver.render.encoders.gtiff_profile`);
- :func:`overview_factors`: the overview levels GDAL's COG driver makes by default;
- :func:`write_cog`: one array as a COG file, atomically (the demo data);
- :func:`copy_to_cog`: any GDAL dataset (a batch job's mosaic VRT) as a COG;
- :func:`compress_part`, :func:`write_template`, :func:`assemble`: a COG assembled from
  tiles compressed elsewhere (the block tasks of a batch job), described below.

A Cloud-Optimized GeoTIFF assembled from tiles compressed elsewhere:

GDAL's COG driver compresses every tile of a result in the one process that writes the
file. Here each part of the result (a block of a batch job, a strip of a small overview
level) is compressed on its own by GDAL's COG driver itself (:func:`compress_part`, same
creation options, no overviews), in parallel on every worker; the final step only
*assembles* the file (:func:`assemble`):

1. GDAL's COG driver writes the whole file *structure* from a source with no data: the
   header and its ghost area, every IFD (full resolution and overviews, georeferencing,
   nodata, creation options), with ``SPARSE_OK`` so that no tile is written (their
   ``TileOffsets``/``TileByteCounts`` are zeros). This is what GDAL writes before the
   tile data of a real COG, byte for byte.
2. The compressed tiles are appended in GDAL's COG order (smallest overview first, each
   level row by row), with the block leader and trailer the ghost area announces
   (``BLOCK_LEADER=SIZE_AS_UINT4``, ``BLOCK_TRAILER=LAST_4_BYTES_REPEATED``).
3. The ``TileOffsets`` and ``TileByteCounts`` arrays are filled in, in place (libtiff
   reserved them at their full size and type; tifffile tells where they are).

The result is the file GDAL's COG driver writes from the same values and options (the
tests compare the bytes), at the cost of copying compressed bytes.
"""

from __future__ import annotations

import io
import struct
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import rasterio
import rasterio.shutil
import tifffile
from lxml import etree
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import MemoryFile

from tileserver.render.encoders import gtiff_profile
from tileserver.storage import atomic_file

#: Media type of a Cloud-Optimized GeoTIFF (STAC assets, batch results).
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

def cog_options(output: dict) -> dict:
    """GDAL COG creation options for the ``/execute`` GTiff options of ``output`` (an openEO
    ``output`` object: ``format``, options and/or ``parameters``)."""
    params = {k: v for k, v in output.items() if k not in ("format", "parameters")}
    params.update(output.get("parameters") or {})
    profile, _styled = gtiff_profile(params, float_data=True)
    opts: dict[str, Any] = {"compress": profile.get("compress", "deflate").upper(),
                            "overview_resampling": "nearest", "num_threads": "ALL_CPUS"}
    if "blockxsize" in profile:
        opts["blocksize"] = profile["blockxsize"]
    if "jpeg_quality" in profile:
        opts["quality"] = profile["jpeg_quality"]
    for key in ("zlevel", "zstd_level"):
        if key in profile:
            opts["level"] = profile[key]
    if "predictor" in profile:
        opts["predictor"] = {1: "NO", 2: "STANDARD", 3: "FLOATING_POINT"}[profile["predictor"]]
    if "bigtiff" in profile:
        opts["bigtiff"] = profile["bigtiff"]
    else:
        opts["bigtiff"] = "IF_SAFER"
    return opts


def tile_size(output: dict) -> int:
    """The tile side of the COG written for ``output`` (``blockxsize``, 512 by default)."""
    return int(cog_options(output).get("blocksize", 512))


def overview_factors(width: int, height: int, tile: int = 512) -> tuple[int, ...]:
    """The overview factors GDAL's COG driver makes by default: halve until the level
    fits in one tile (``[2]`` for 512 px in 256 px tiles, ``[2, 4, 8, 16]`` for 8192 in
    512)."""
    factors: list[int] = []
    f = 1
    while -(-width // f) > tile or -(-height // f) > tile:
        f *= 2
        factors.append(f)
    return tuple(factors)


def write_cog(path: Path, data: np.ndarray, *, crs: Any, transform: Any,
              nodata: float | None = None, dtype: str | None = None,
              descriptions: Sequence[str] = (), tags: dict[str, str] | None = None,
              resampling: str | None = "nearest", blocksize: int = 512,
              **options: Any) -> None:
    """Write ``data`` (``(rows, cols)`` or ``(bands, rows, cols)``) as a COG at ``path``,
    atomically (a temporary name in the same folder, then a rename).

    The values go first into an uncompressed GeoTIFF in memory (``dtype``: the file's
    type, the array's by default; band ``descriptions``; dataset ``tags``). With a
    ``resampling`` (``nearest``, ``average``...), the overviews GDAL's COG driver would
    make (:func:`overview_factors`) are computed there and the driver reuses them
    (``OVERVIEWS=AUTO``): cheaper than letting the COG driver build them through a
    temporary compressed file. ``resampling=None`` leaves the overviews to the driver.
    ``options`` are further COG creation options (``compress``, ``level``, ``predictor``,
    ``bigtiff``...).
    """
    values = data if data.ndim == 3 else data[None]
    count, height, width = values.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count,
               "dtype": dtype or str(values.dtype), "crs": crs, "transform": transform,
               "nodata": nodata}
    copy_options: dict[str, Any] = {"blocksize": blocksize, **options}
    with atomic_file(path) as tmp, MemoryFile() as mem, mem.open(**profile) as src:
        src.write(values)
        for band, text in enumerate(descriptions, start=1):
            src.set_band_description(band, text)
        if tags:
            src.update_tags(**tags)
        if resampling is not None:
            factors = overview_factors(width, height, blocksize)
            if factors:
                src.build_overviews(list(factors), Resampling[resampling.lower()])
            copy_options.update(overviews="AUTO", overview_resampling=resampling.upper())
        copy_to_cog(src, tmp, copy_options)


def copy_to_cog(source: Any, target: Path, options: dict[str, Any]) -> None:
    """Write the GDAL dataset ``source`` (a path, e.g. a VRT, or an open dataset) as a COG
    at ``target`` with the creation ``options`` (e.g. :func:`cog_options`)."""
    rasterio.shutil.copy(source, str(target), driver="COG", **options)


#: ``struct`` codes of the TIFF types an offset or byte count array may have.
_TYPES = {3: "H", 4: "I", 16: "Q"}


@dataclass(frozen=True)
class Part:
    """Compressed tiles of a tile-aligned rectangle of one level of the result.

    ``tiles`` are ``(offset, size)`` in the file ``path``, row by row; the rectangle
    starts at tile ``(row, col)`` of its level and is ``cols`` tiles wide.
    """

    row: int
    col: int
    cols: int
    tiles: tuple[tuple[int, int], ...]
    path: str

    def tile_index(self) -> Iterable[tuple[tuple[int, int], tuple[int, int]]]:
        """``((level row, level col), (offset, size))`` of each tile."""
        for i, entry in enumerate(self.tiles):
            yield (self.row + i // self.cols, self.col + i % self.cols), entry


def part_options(cog_options: dict[str, Any]) -> dict[str, Any]:
    """The COG creation options of one part: those of the result, without overviews and
    without threads (the parts are compressed in parallel by the workers)."""
    opts = {k: v for k, v in cog_options.items()
            if k not in ("num_threads", "overview_resampling", "bigtiff")}
    return {**opts, "overviews": "NONE"}


def compress_part(data: np.ndarray, dtype: str, nodata: float | None,
                  cog_options: dict[str, Any], threads: bool = False) -> tuple[bytes, list, int]:
    """``(file bytes, [(offset, size)] of its tiles row by row, tiles per row)`` of the
    COG GDAL writes for ``data`` (bands, height, width) with ``cog_options`` (no
    overviews): its tiles are those of the same pixels in a COG of the whole result."""
    count, height, width = data.shape
    opts = part_options(cog_options)
    if threads:
        opts["num_threads"] = "ALL_CPUS"
    with MemoryFile() as mem:
        with mem.open(driver="COG", width=width, height=height, count=count, dtype=dtype,
                      nodata=nodata, **opts) as dst:
            dst.write(data)
        body = mem.read()
    with tifffile.TiffFile(io.BytesIO(body)) as tif:
        page = tif.pages[0]
        tiles = list(zip(page.dataoffsets, page.databytecounts, strict=True))
        per_row = -(-width // page.tilewidth)
    return body, tiles, per_row


@dataclass(frozen=True)
class _Array:
    """Where the ``TileOffsets`` or ``TileByteCounts`` array of an IFD lies."""

    at: int  # file offset of its values
    code: str  # struct code of one value
    count: int


def _structure(path: Path) -> tuple[str, bool, bool, bool, list[tuple[_Array, _Array, tuple]]]:
    """Byte order, BigTIFF, leader and trailer, and per IFD (full resolution first) the
    offset and count arrays and the ``(height, width)`` of a COG template."""
    with tifffile.TiffFile(path) as tif:
        order, big = tif.byteorder, tif.is_bigtiff
        ifds = []
        for page in tif.pages:
            arrays = []
            for name in ("TileOffsets", "TileByteCounts"):
                tag = page.tags[name]
                if tag.dtype not in _TYPES:
                    raise ValueError(f"unexpected TIFF type {tag.dtype} of {name}")
                at = tag.valueoffset
                arrays.append(_Array(at, _TYPES[tag.dtype], tag.count))
            ifds.append((arrays[0], arrays[1], (page.imagelength, page.imagewidth)))
    with open(path, "rb") as fh:
        head = fh.read(16 + 512)
    ghost = _ghost(head[16 if big else 8:])
    leader = ghost.get("BLOCK_LEADER") == "SIZE_AS_UINT4"
    trailer = ghost.get("BLOCK_TRAILER") == "LAST_4_BYTES_REPEATED"
    return order, big, leader, trailer, ifds


def _ghost(data: bytes) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of GDAL's ghost area (the COG's structural metadata)."""
    key = b"GDAL_STRUCTURAL_METADATA_SIZE="
    if not data.startswith(key):
        return {}
    size = int(data[len(key):len(key) + 6])
    text = data[len(key) + 6:].split(b"\n", 1)[1][:size].decode("ascii", "replace")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def write_template(target: Path, *, crs, transform, width: int, height: int, count: int,
                   dtype: str, nodata: float | None, factors: tuple[int, ...],
                   cog_options: dict[str, Any], descriptions: Sequence[str] = (),
                   band_metadata: Sequence[dict[str, str]] = ()) -> None:
    """The COG structure (every IFD, no tile data) of a ``count`` x ``height`` x ``width``
    result with overview levels of decimation ``factors`` (``ceil(size / factor)`` each),
    written by GDAL's COG driver from VRTs that have no sources; the full resolution
    bands with their ``descriptions`` and ``band_metadata`` (e.g. the ``STATISTICS_*``
    of the values the tiles will hold: GDAL keeps a source's statistics)."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".template-") as tmp:
        overviews = []
        for factor in (*factors, 1):
            path = Path(tmp) / f"o{factor}.vrt"
            path.write_bytes(_empty_vrt(
                crs, transform * transform.scale(factor), -(-width // factor),
                -(-height // factor), count, dtype, nodata, overviews if factor == 1 else [],
                descriptions if factor == 1 else (), band_metadata if factor == 1 else ()))
            overviews.append(path)
        rasterio.shutil.copy(overviews[-1], target, driver="COG", sparse_ok=True,
                             **cog_options)


def _empty_vrt(crs, transform, width: int, height: int, count: int, dtype: str,
               nodata: float | None, overviews: list[Path], descriptions: Sequence[str] = (),
               band_metadata: Sequence[dict[str, str]] = ()) -> bytes:
    root = etree.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    etree.SubElement(root, "SRS").text = CRS.from_user_input(crs).to_wkt()
    etree.SubElement(root, "GeoTransform").text = ", ".join(
        repr(v) for v in transform.to_gdal())
    gdal_type = _gdal_dtype_name(dtype)
    for b in range(count):
        band = etree.SubElement(root, "VRTRasterBand", dataType=gdal_type, band=str(b + 1))
        if b < len(descriptions):
            etree.SubElement(band, "Description").text = descriptions[b]
        if b < len(band_metadata) and band_metadata[b]:
            items = etree.SubElement(band, "Metadata")
            for key, value in sorted(band_metadata[b].items()):
                etree.SubElement(items, "MDI", key=key).text = value
        if nodata is not None:
            etree.SubElement(band, "NoDataValue").text = repr(float(nodata)).lower()
        for level in overviews:
            ovr = etree.SubElement(band, "Overview")
            etree.SubElement(ovr, "SourceFilename", relativeToVRT="0").text = str(level)
            etree.SubElement(ovr, "SourceBand").text = str(b + 1)
    return etree.tostring(root)


def _gdal_dtype_name(dtype: str) -> str:
    from rasterio.dtypes import _gdal_typename  # noqa: PLC0415

    return _gdal_typename(dtype)


def assemble(target: Path, levels: list[list[Part]],
             progress: Callable[[int, int], None] | None = None) -> None:
    """Fill the template COG ``target`` with the tiles of ``levels`` (full resolution
    first, then each overview, like its IFDs). Every tile of every level must be given
    once. ``progress(done, total)`` is called as tiles are copied."""
    order, big, leader, trailer, ifds = _structure(target)
    if len(ifds) != len(levels):
        raise ValueError(f"the COG template has {len(ifds)} levels, {len(levels)} are given")
    total = sum(a.count for a, _, _ in ifds)
    done = 0
    limit = 2**64 if big else 2**32
    with open(target, "r+b") as out:
        pos = out.seek(0, io.SEEK_END)
        tables: list[tuple[list[int], list[int]]] = []
        for (offsets, _counts, _), parts in reversed(list(zip(ifds, levels, strict=True))):
            index = {}
            for part in parts:
                for key, entry in part.tile_index():
                    index[key] = (part.path, entry)
            if len(index) != offsets.count:
                raise ValueError(f"{len(index)} tiles given for a level of {offsets.count}")
            offs, sizes = [], []
            files: dict[str, BinaryIO] = {}
            try:
                for key in sorted(index):
                    path, (src_off, size) = index[key]
                    src = files.get(path)
                    if src is None:
                        if len(files) >= 64:
                            for fh in files.values():
                                fh.close()
                            files.clear()
                        src = files[path] = open(path, "rb")  # noqa: SIM115
                    src.seek(src_off)
                    data = src.read(size)
                    if len(data) != size:
                        raise OSError(f"{path} is truncated")
                    if leader:
                        pos += out.write(struct.pack(order + "I", size))
                    offs.append(pos)
                    sizes.append(size)
                    pos += out.write(data)
                    if trailer and size >= 4:
                        pos += out.write(data[-4:])
                    done += 1
                    if progress is not None:
                        progress(done, total)
            finally:
                for fh in files.values():
                    fh.close()
            if pos >= limit:
                raise OSError("the result exceeds 4 GiB in a classic TIFF: "
                              "ask for bigtiff=YES")
            tables.append((offs, sizes))
        for (offsets, counts, _), (offs, sizes) in zip(reversed(ifds), tables, strict=True):
            for array, values in ((offsets, offs), (counts, sizes)):
                if array.code == "H" and max(values, default=0) > 0xFFFF:
                    raise ValueError("a tile is too large for the template's byte counts")
                out.seek(array.at)
                out.write(struct.pack(f"{order}{len(values)}{array.code}", *values))
