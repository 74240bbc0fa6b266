"""Encoders: cubes to GeoTIFF (with checked GDAL creation options), NetCDF, PNG and JPEG bytes.

The formats they serve (names, options, batch and tile support) are listed in
:mod:`tileserver.render.formats`."""

from __future__ import annotations

import io
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from PIL import Image
from rasterio.io import MemoryFile

from tileserver.datacube.cube import Cube
from tileserver.errors import OutputFormatError
from tileserver.render.statistics import summaries
from tileserver.render.styles import Style, render_indexed, render_rgba, style_from_args

COMPRESS = {"none", "deflate", "lzw", "zstd", "jpeg", "packbits", "lzma", "webp", "lerc"}
LOSSY_8BIT = {"jpeg", "webp"}
PHOTOMETRIC = {"minisblack", "rgb", "ycbcr"}
STYLE_OPTIONS = {"colormap", "range"}
GTIFF_OPTIONS = {
    "tiled", "compress", "photometric", "jpeg_quality", "predictor", "zlevel", "zstd_level",
    "blockxsize", "blockysize", "bigtiff", "interleave", "webp_level", "max_z_error",
} | STYLE_OPTIONS  # fmt: skip
IMAGE_OPTIONS = {"jpeg_quality", "quality", "zlevel"} | STYLE_OPTIONS


@dataclass(frozen=True)
class Encoded:
    """Bytes with their media type and a file extension."""

    content: bytes
    media_type: str
    extension: str


def int_option(opts: dict, key: str, lo: int, hi: int) -> int | None:
    """The integer option ``key`` in ``[lo, hi]`` (``None`` when not given)."""
    if key not in opts:
        return None
    value = opts[key]
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,9}\s*", value, re.ASCII):
        value = int(value)  # (str.isdigit() also accepts '²', which int() does not)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise OutputFormatError(f"option {key!r} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def bool_option(opts: dict, key: str) -> bool | None:
    """The boolean option ``key`` (``None`` when not given)."""
    if key not in opts:
        return None
    value = opts[key]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("yes", "true", "1", "no", "false", "0"):
        return value.lower() in ("yes", "true", "1")
    raise OutputFormatError(f"option {key!r} must be a boolean, got {value!r}")


#: Compression levels: option -> (lowest, highest, the compression it belongs to).
_LEVELS = {"jpeg_quality": (1, 100, "jpeg"), "zlevel": (1, 12, "deflate"),
           "zstd_level": (1, 22, "zstd"), "webp_level": (1, 100, "webp")}


def gtiff_profile(opts: dict, float_data: bool) -> tuple[dict, bool]:
    """GDAL creation options for ``opts`` and whether the output must be styled 8-bit RGB.

    Raises :class:`OutputFormatError` naming the option for unknown or impossible options.
    """
    unknown = sorted(set(opts) - GTIFF_OPTIONS)
    if unknown:
        raise OutputFormatError(
            f"unknown GTiff option(s) {unknown}; supported: {', '.join(sorted(GTIFF_OPTIONS))}"
        )
    profile: dict[str, Any] = {}
    compress = str(opts.get("compress", "deflate")).lower()
    if compress not in COMPRESS:
        raise OutputFormatError(
            f"option 'compress': {opts.get('compress')!r} is not one of {sorted(COMPRESS)}"
        )
    photometric = opts.get("photometric")
    if photometric is not None:
        photometric = str(photometric).lower()
        if photometric not in PHOTOMETRIC:
            raise OutputFormatError(
                f"option 'photometric': {opts['photometric']!r} is not one of "
                f"{sorted(p.upper() for p in PHOTOMETRIC)}"
            )
    styled = compress in LOSSY_8BIT or photometric in ("rgb", "ycbcr")
    if photometric == "ycbcr" and compress != "jpeg":
        raise OutputFormatError(
            "option 'photometric': YCBCR requires compress=jpeg (GDAL writes YCbCr only "
            "as JPEG-compressed 8-bit RGB)"
        )
    tiled = bool_option(opts, "tiled")
    bx = int_option(opts, "blockxsize", 16, 4096)
    by = int_option(opts, "blockysize", 16, 4096)
    for key, val in (("blockxsize", bx), ("blockysize", by)):
        if val is not None and val % 16:
            raise OutputFormatError(f"option {key!r} must be a multiple of 16, got {val}")
    if (bx or by) and tiled is False:
        raise OutputFormatError("options 'blockxsize'/'blockysize' need tiled=true")
    if tiled or bx or by:
        profile["tiled"] = True
        profile["blockxsize"] = bx or by or 256
        profile["blockysize"] = by or bx or 256
    profile["compress"] = compress
    for key, (lowest, highest, needs) in _LEVELS.items():
        level = int_option(opts, key, lowest, highest)
        if level is not None:
            if compress != needs:
                raise OutputFormatError(f"option {key!r} needs compress={needs}")
            profile[key] = level
    predictor = int_option(opts, "predictor", 1, 3)
    if predictor is not None:
        if compress not in ("deflate", "lzw", "zstd", "lzma"):
            raise OutputFormatError(
                "option 'predictor' needs a compress of deflate, lzw, zstd or lzma"
            )
        if predictor == 3 and (styled or not float_data):
            raise OutputFormatError("option 'predictor': 3 (floating point) needs float data")
        profile["predictor"] = predictor
    if "max_z_error" in opts:
        mze = opts["max_z_error"]
        if compress != "lerc":
            raise OutputFormatError("option 'max_z_error' needs compress=lerc")
        if isinstance(mze, bool) or not isinstance(mze, int | float) or not 0 <= mze < 1e30:
            raise OutputFormatError(f"option 'max_z_error' must be a number >= 0, got {mze!r}")
        profile["max_z_error"] = float(mze)
    if "bigtiff" in opts:
        val = str(opts["bigtiff"]).upper()
        if val in ("TRUE", "1"):
            val = "YES"
        if val in ("FALSE", "0"):
            val = "NO"
        if val not in ("YES", "NO", "IF_NEEDED", "IF_SAFER"):
            raise OutputFormatError("option 'bigtiff' must be YES, NO, IF_NEEDED or IF_SAFER")
        profile["bigtiff"] = val
    if "interleave" in opts:
        val = str(opts["interleave"]).lower()
        if val not in ("band", "pixel"):
            raise OutputFormatError("option 'interleave' must be BAND or PIXEL")
        profile["interleave"] = val
    if photometric:
        profile["photometric"] = photometric
    if compress == "jpeg" and not photometric:
        profile["photometric"] = "ycbcr"
    return profile, styled


def _band_descriptions(cube: Cube) -> list[str]:
    if cube.times is None:
        return list(cube.bands)
    return [f"{t:%Y-%m-%d} {b}" for t in cube.times for b in cube.bands]


def encode_gtiff(cube: Cube, opts: dict | None = None, style: Style | None = None) -> Encoded:
    """A GeoTIFF of the cube: float32 values with NaN nodata (one band per date x band),
    or, when the options call for 8-bit (JPEG/YCbCr/RGB), the styled RGB rendering with an
    internal nodata mask."""
    opts = dict(opts or {})
    profile, styled = gtiff_profile(opts, float_data=True)
    view = cube.view
    base = {
        "driver": "GTiff",
        "width": view.width,
        "height": view.height,
        "crs": view.crs,
        "transform": view.transform,
    }
    if styled:
        style = style or style_from_args(
            {k: opts[k] for k in STYLE_OPTIONS if k in opts}, cube.kind, len(cube.bands),
            len(cube.times or ()))
        rgba = render_rgba(_image(cube), style)
        data = np.moveaxis(rgba[..., :3], -1, 0)
        mask = rgba[..., 3]
        base.update(count=3, dtype="uint8")
    else:
        t, b = cube.data.shape[:2]
        data = cube.data.reshape(t * b, view.height, view.width)
        if data.shape[0] == 0:
            data = np.full((1, view.height, view.width), np.nan, np.float32)
        mask = None
        base.update(count=data.shape[0], dtype="float32", nodata=float("nan"))
    base.update(profile)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), MemoryFile() as mem:
        try:
            with mem.open(**base) as dst:
                dst.write(data)
                if mask is not None:
                    dst.write_mask(mask)
                if not styled:
                    for i, desc in enumerate(_band_descriptions(cube), start=1):
                        if i <= dst.count:
                            dst.set_band_description(i, desc)
                    # what viewers stretch the values by (GDAL's STATISTICS_* items)
                    for i, summary in enumerate(summaries(data), start=1):
                        dst.update_tags(i, **summary.gdal_metadata())
                dst.update_tags(TILESERVER_KIND=cube.kind)
        except rasterio.errors.RasterioError as exc:
            raise OutputFormatError(f"GDAL refused the GTiff options: {exc}") from exc
        return Encoded(mem.read(), "image/tiff", "tif")


#: The epoch of the netCDF time coordinate (CF units ``days since ...``).
_NC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_netcdf(cube: Cube) -> Encoded:
    """A CF-1.8 netCDF-4 data cube as openEO back-ends write them (and xarray reads them):
    one float32 variable per band (NaN nodata, deflate) over ``(t, y, x)``, or ``(y, x)``
    once time is reduced; ``t`` in days since 1970, ``x``/``y`` the pixel centres, the CRS
    as a CF grid mapping ``crs`` (with its WKT and GDAL's GeoTransform)."""
    import netCDF4  # noqa: PLC0415 - only for this format
    from pyproj import CRS as ProjCRS  # noqa: PLC0415

    view = cube.view
    crs = ProjCRS.from_user_input(view.crs.to_wkt() if hasattr(view.crs, "to_wkt")
                                  else view.crs)
    tr = view.transform
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.nc"
        with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
            nc.Conventions = "CF-1.8"
            nc.source = "tileserver (openEO)"
            dims: tuple[str, ...] = ("y", "x")
            if cube.times is not None:
                nc.createDimension("t", len(cube.times))
                t = nc.createVariable("t", "f8", ("t",))
                t.standard_name, t.long_name, t.axis = "time", "t", "T"
                t.units, t.calendar = "days since 1970-01-01 00:00:00", "standard"
                t[:] = [(v - _NC_EPOCH).total_seconds() / 86400.0 for v in cube.times]
                dims = ("t", "y", "x")
            nc.createDimension("y", view.height)
            nc.createDimension("x", view.width)
            geographic = crs.is_geographic
            for name, size, origin, step in (("x", view.width, tr.c, tr.a),
                                             ("y", view.height, tr.f, tr.e)):
                var = nc.createVariable(name, "f8", (name,))
                var[:] = origin + (np.arange(size) + 0.5) * step
                var.axis = name.upper()
                if geographic:
                    var.standard_name = "longitude" if name == "x" else "latitude"
                    var.units = "degrees_east" if name == "x" else "degrees_north"
                else:
                    var.standard_name = f"projection_{name}_coordinate"
                    var.units = "m"
            gm = nc.createVariable("crs", "i4")
            for key, value in crs.to_cf().items():
                setattr(gm, key, value)
            gm.spatial_ref = crs.to_wkt()
            gm.GeoTransform = " ".join(str(v) for v in tr.to_gdal())
            for bi, band in enumerate(cube.bands):
                var = nc.createVariable(str(band).replace("/", "_") or f"band_{bi}", "f4",
                                        dims, zlib=True, complevel=4,
                                        fill_value=np.float32(np.nan))
                var.grid_mapping = "crs"
                var.long_name = str(band)
                values = cube.data[:, bi].astype(np.float32, copy=False)
                var[:] = values if cube.times is not None else values[0]
        return Encoded(path.read_bytes(), "application/netcdf", "nc")


def _image(cube: Cube) -> np.ndarray:
    if cube.data.shape[0] == 0:
        return np.full(cube.data.shape[1:], np.nan, np.float32)
    return cube.data[-1]


def encode_image(cube: Cube, fmt: str, opts: dict | None = None, style: Style | None = None,
                 paletted: bool = False) -> Encoded:
    """PNG (RGBA, nodata transparent) or JPEG (RGB, nodata black) of the last date.

    ``paletted``: a single-band PNG is written as a palette image (``P`` with a ``tRNS``
    chunk for nodata) of exactly the same colours: a quarter of the bytes to compress, so
    about 3x faster to encode (map tiles)."""
    opts = dict(opts or {})
    unknown = sorted(set(opts) - IMAGE_OPTIONS)
    if unknown:
        raise OutputFormatError(
            f"unknown {fmt} option(s) {unknown}; supported: {', '.join(sorted(IMAGE_OPTIONS))}"
        )
    if style is None:
        style = style_from_args(
            {k: opts[k] for k in STYLE_OPTIONS if k in opts}, cube.kind, len(cube.bands),
            len(cube.times or ()))
    zlevel = int_option(opts, "zlevel", 1, 12) or 1
    if paletted and fmt == "PNG":
        indexed = render_indexed(_image(cube), style)
        if indexed is not None:
            return encode_indexed(*indexed, zlevel=zlevel)
    rgba = render_rgba(_image(cube), style)
    return encode_rgba(rgba, fmt, quality=int_option(opts, "jpeg_quality", 1, 100)
                       or int_option(opts, "quality", 1, 100) or 85,
                       zlevel=zlevel)


def encode_rgba(rgba: np.ndarray, fmt: str, quality: int = 85, zlevel: int = 1) -> Encoded:
    """RGBA uint8 to PNG or JPEG bytes (PNG: zlib level 1 by default, 4-5x faster than 6
    on map tiles for about 6 % more bytes)."""
    buf = io.BytesIO()
    if fmt == "PNG":
        Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=min(9, zlevel))
        return Encoded(buf.getvalue(), "image/png", "png")
    Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB").save(
        buf, format="JPEG", quality=quality)
    return Encoded(buf.getvalue(), "image/jpeg", "jpg")


def encode_indexed(indices: np.ndarray, palette: np.ndarray, zlevel: int = 1) -> Encoded:
    """A palette PNG: ``indices`` (y, x) uint8 into ``palette`` (n, 4) RGBA uint8 (alpha in
    a ``tRNS`` chunk when some colour is not opaque)."""
    height, width = indices.shape
    img = Image.frombuffer("P", (width, height), np.ascontiguousarray(indices), "raw", "P",
                           0, 1)
    img.putpalette(np.ascontiguousarray(palette[:, :3]).tobytes(), rawmode="RGB")
    extra = {}
    alpha = palette[:, 3]
    if (alpha != 255).any():
        extra["transparency"] = alpha[: int(np.flatnonzero(alpha != 255)[-1]) + 1].tobytes()
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=min(9, zlevel), **extra)
    return Encoded(buf.getvalue(), "image/png", "png")
