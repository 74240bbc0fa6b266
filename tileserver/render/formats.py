"""The output formats: ONE table that every use of a format reads.

Each :class:`OutputFormat` holds its name and aliases (the ``output.format`` values), media
type and file extension, its documented options and their check, its encoder, and what it
serves beyond a synchronous result (``/execute``, ``/result``): how a batch job writes it
(:class:`BatchWriter`) and whether it is a map-tile format (:class:`TileFormat`).

Read by: the openEO output checks and encoding (:func:`validate_output`, :func:`encode`),
batch jobs (:func:`get`, ``batch``), WMTS/XYZ (:func:`tile_formats`), the capabilities
documents (:func:`output_formats` for 0.0.2, the 1.x ``/file_formats``) and the OpenAPI
document (:func:`names`).

Adding a raster format is one :func:`register_format` call below, plus its encoder in
:mod:`~tileserver.render.encoders`. Other packages register theirs the same way (the zonal
statistics tables in :mod:`tileserver.zonal.tables`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import rasterio
import rasterio.shutil

from tileserver.datacube.cube import Cube
from tileserver.errors import OutputFormatError
from tileserver.render import cog
from tileserver.render.encoders import (
    COMPRESS,
    IMAGE_OPTIONS,
    STYLE_OPTIONS,
    Encoded,
    encode_gtiff,
    encode_image,
    encode_netcdf,
    gtiff_profile,
    int_option,
)
from tileserver.render.styles import Style, style_from_args

RASTER, TABLE = "raster", "table"
#: The format of a result whose ``output`` names none (tables: :func:`default_output`).
DEFAULT = "GTiff"


@dataclass(frozen=True)
class TileFormat:
    """A format of map tiles (WMTS GetTile, its RESTful URLs, XYZ)."""

    media_type: str
    #: accepted in RESTful tile URLs; the first one is advertised
    extensions: tuple[str, ...]
    #: ``(cube, style) -> Encoded``
    encode: Callable[[Cube, Style], Encoded]
    #: a styled picture (listed first: what map clients take), not raw values
    styled: bool = True


@dataclass(frozen=True)
class BatchWriter:
    """How a batch job writes a raster format: GDAL copies the mosaic of the blocks (a VRT
    of float32 values, or of the styled RGBA rendering) into the result file."""

    media_type: str
    #: ``(source, target, params)``: write the VRT ``source`` as ``target``
    write: Callable[[Path, Path, dict], None]
    #: written as a COG whose tiles the block tasks compress (values only)
    cog: bool = False
    #: bands of a styled result file (3: RGB, the alpha dropped); ``None``: all of them
    styled_bands: int | None = None
    #: the STAC item gives the file's ``proj:`` fields
    proj: bool = True


@dataclass(frozen=True)
class OutputFormat:
    """One output format (see the module docstring)."""

    name: str
    aliases: tuple[str, ...]
    #: ``(result, options) -> Encoded``
    encode: Callable[[Any, dict], Encoded]
    #: ``(options) -> None``; raises :class:`OutputFormatError` naming the option
    validate: Callable[[dict], None]
    #: the capabilities entry: ``media_type``, ``description``, ``parameters``
    description: dict
    #: what it encodes: ``raster`` (data cubes) or ``table`` (aggregate_spatial results)
    kind: str = TABLE
    extension: str = ""
    #: whether the options make the raster a styled 8-bit picture (batch renders it so)
    styled: Callable[[dict], bool] = field(default=lambda params: False)
    batch: BatchWriter | None = None
    tiles: TileFormat | None = None
    #: openEO ``gis_data_types`` (1.x ``/file_formats``) when not those of its ``kind``
    gis_types: tuple[str, ...] | None = None

    @property
    def media_type(self) -> str:
        """Media type of a synchronous result."""
        return self.description.get("media_type", "application/octet-stream")

    @property
    def gis_data_types(self) -> list[str]:
        """openEO ``gis_data_types`` (1.x ``/file_formats``): ``raster`` for raster
        formats, ``vector`` and ``table`` for tables, unless the entry says otherwise."""
        if self.gis_types is not None:
            return list(self.gis_types)
        return ["raster"] if self.kind == RASTER else ["vector", "table"]


#: Every output format, in the order the capabilities list them: name -> format.
FORMATS: dict[str, OutputFormat] = {}
#: Every accepted ``output.format`` value, lower case -> format name.
_ALIASES: dict[str, str] = {}


def register_format(fmt: OutputFormat) -> None:
    """Add an output format (its name and aliases become valid ``output.format`` values)."""
    FORMATS[fmt.name] = fmt
    for alias in (fmt.name, *fmt.aliases):
        _ALIASES[alias.lower()] = fmt.name


def names(kind: str | None = None) -> list[str]:
    """The format names (of one ``kind``), in table order."""
    return [f.name for f in FORMATS.values() if kind is None or f.kind == kind]


def normalise_format(name: Any) -> str:
    """Canonical format name (``GTiff``, ``PNG``...) or :class:`OutputFormatError`."""
    if not isinstance(name, str) or name.lower() not in _ALIASES:
        known = ", ".join(sorted(set(_ALIASES.values())))
        raise OutputFormatError(f"unknown output format {name!r}; supported: {known}")
    return _ALIASES[name.lower()]


def get(name: Any) -> OutputFormat:
    """The format of a name or alias (:class:`OutputFormatError` when there is none)."""
    return FORMATS[normalise_format(name)]


def output_params(output: dict) -> dict:
    """The options of an ``output`` object: its own keys besides ``format`` and the
    ``parameters`` object (which win)."""
    return {**{k: v for k, v in output.items() if k not in ("format", "parameters")},
            **(output.get("parameters") or {})}


def _split_output(output: dict | None) -> tuple[OutputFormat, dict]:
    output = dict(output or {"format": DEFAULT})
    fmt = get(output.pop("format", DEFAULT))
    opts = output.pop("parameters", None)
    opts = {} if opts is None else opts
    if not isinstance(opts, dict):  # 0, "" and [] too: not a missing object
        raise OutputFormatError("'output.parameters' must be an object")
    return fmt, {**output, **opts}


def encode(result: Any, output: dict | None) -> Encoded:
    """Encode according to an openEO ``output`` object (``format`` plus options)."""
    fmt, opts = _split_output(output)
    if fmt.kind == RASTER and not isinstance(result, Cube):
        raise OutputFormatError(
            f"this result is not an image; {fmt.name} cannot encode it (try "
            f"{', '.join(names(TABLE)) or 'another format'})"
        )
    return fmt.encode(result, opts)


def validate_output(output: Any) -> dict:
    """Check an ``output`` object before any work is done; returns it normalised."""
    if output is None:
        return {"format": DEFAULT}
    if not isinstance(output, dict):
        raise OutputFormatError("'output' must be an object such as "
                                + json.dumps({"format": DEFAULT}))
    output = dict(output)
    fmt, opts = _split_output(output)
    fmt.validate(opts)
    output["format"] = fmt.name
    return output


def default_output(raster: bool) -> dict:
    """The output of a result that names none: GTiff for cubes, JSON for tables."""
    return validate_output({"format": DEFAULT if raster else "JSON"})


def check_output_kind(output: dict, raster: bool) -> None:
    """Refuse a validated ``output`` whose format cannot encode the result's kind (a cube
    in a table format, a table in an image format) before any work is done."""
    fmt = FORMATS[output["format"]]
    if raster and fmt.kind != RASTER:
        *first, last = names(RASTER)
        raise OutputFormatError(f"{fmt.name} encodes tables (aggregate_spatial results); "
                                f"for data cubes use {', '.join(first)} or {last}")
    if not raster and fmt.kind == RASTER:
        raise OutputFormatError(f"this result is a table (aggregate_spatial); {fmt.name} "
                                "cannot encode it (use "
                                f"{', '.join(names(TABLE)) or 'another format'})")


def output_formats() -> dict:
    """The ``/capabilities/output_formats`` document."""
    return {"default": DEFAULT,
            "formats": {f.name: f.description for f in FORMATS.values()}}


def tile_formats() -> list[OutputFormat]:
    """The formats of map tiles: styled pictures first, then raw values."""
    tiled = [f for f in FORMATS.values() if f.tiles is not None]
    return sorted(tiled, key=lambda f: not f.tiles.styled)  # type: ignore[union-attr]


def tile_format(media_type: str) -> OutputFormat | None:
    """The tile format of a media type (``None``: not a tile format)."""
    for fmt in tile_formats():
        if fmt.tiles is not None and fmt.tiles.media_type == media_type:
            return fmt
    return None


# -- the raster formats --------------------------------------------------------------------


def _style_check(opts: dict) -> None:
    style_opts = {k: opts[k] for k in STYLE_OPTIONS if k in opts}
    if style_opts:
        style_from_args(style_opts, "reflectance")


def _validate_gtiff(opts: dict) -> None:
    gtiff_profile(opts, float_data=True)
    _style_check(opts)


def _validate_image(fmt: str, opts: dict) -> None:
    unknown = sorted(set(opts) - IMAGE_OPTIONS)
    if unknown:
        raise OutputFormatError(f"unknown {fmt} option(s) {unknown}")
    int_option(opts, "jpeg_quality", 1, 100)
    int_option(opts, "quality", 1, 100)
    _style_check(opts)


def _no_options(fmt: str, opts: dict) -> None:
    if opts:
        raise OutputFormatError(f"{fmt} takes no options, got {sorted(opts)}")


def _encode_netcdf(cube: Cube, opts: dict) -> Encoded:
    _no_options("NetCDF", opts)
    return encode_netcdf(cube)


def _gdal_copy(driver: str, options: Callable[[dict], dict] | dict
               ) -> Callable[[Path, Path, dict], None]:
    """A batch writer that copies the mosaic with GDAL's ``driver``."""
    def write(source: Path, target: Path, params: dict) -> None:
        opts = options(params) if callable(options) else options
        rasterio.shutil.copy(source, target, driver=driver, **opts)

    return write


def _write_cog(source: Path, target: Path, params: dict) -> None:
    cog.copy_to_cog(source, target, cog.cog_options(params))


def _jpeg_quality(params: dict) -> dict:
    return {"quality": int(params.get("jpeg_quality") or params.get("quality") or 85)}


register_format(OutputFormat(
    "GTiff", ("geotiff", "tiff", "tif", "cog"), encode_gtiff, _validate_gtiff,
    {"media_type": "image/tiff",
     "description": "GeoTIFF. Float32 values with NaN nodata, one band per date x "
     "band; with compress=jpeg or photometric=RGB/YCBCR, the styled 8-bit RGB "
     "rendering with an internal nodata mask.",
     "parameters": {
         "tiled": "boolean", "compress": sorted(COMPRESS),
         "photometric": ["MINISBLACK", "RGB", "YCBCR"], "jpeg_quality": "1-100",
         "predictor": "1-3", "zlevel": "1-12", "zstd_level": "1-22",
         "webp_level": "1-100", "max_z_error": "number >= 0 (lerc)",
         "blockxsize": "multiple of 16", "blockysize": "multiple of 16",
         "bigtiff": ["YES", "NO", "IF_NEEDED", "IF_SAFER"],
         "interleave": ["BAND", "PIXEL"],
         "colormap": "matplotlib name (styled output)", "range": "[min, max]",
     }},
    kind=RASTER, extension="tif",
    styled=lambda params: gtiff_profile(params, True)[1],
    batch=BatchWriter(cog.COG_MEDIA_TYPE, _write_cog, cog=True),
    tiles=TileFormat("image/tiff", ("tif", "tiff"), lambda cube, style: encode_gtiff(cube),
                     styled=False),
))  # fmt: skip

register_format(OutputFormat(
    "PNG", ("png",), lambda cube, opts: encode_image(cube, "PNG", opts),
    partial(_validate_image, "PNG"),
    {"media_type": "image/png",
     "description": "Styled RGBA, nodata transparent (last date if not reduced).",
     "parameters": {"colormap": "matplotlib name", "range": "[min, max]"}},
    kind=RASTER, extension="png", styled=lambda params: True,
    batch=BatchWriter("image/png", _gdal_copy("PNG", {"zlevel": 6})),
    tiles=TileFormat("image/png", ("png",),
                     lambda cube, style: encode_image(cube, "PNG", style=style,
                                                      paletted=True)),
))  # fmt: skip

register_format(OutputFormat(
    "NetCDF", ("netcdf", "netcdf4", "nc"), _encode_netcdf, partial(_no_options, "NetCDF"),
    {"media_type": "application/netcdf",
     "description": "CF netCDF-4 (deflate). Float32 values with NaN nodata, one "
     "variable per date x band.",
     "parameters": {}},
    kind=RASTER, extension="nc",
    batch=BatchWriter("application/netcdf",
                      _gdal_copy("netCDF", {"FORMAT": "NC4", "COMPRESS": "DEFLATE"}),
                      proj=False),
))  # fmt: skip

register_format(OutputFormat(
    "JPEG", ("jpeg", "jpg"), lambda cube, opts: encode_image(cube, "JPEG", opts),
    partial(_validate_image, "JPEG"),
    {"media_type": "image/jpeg",
     "description": "Styled RGB, nodata black (last date if not reduced).",
     "parameters": {"colormap": "matplotlib name", "range": "[min, max]",
                    "jpeg_quality": "1-100"}},
    kind=RASTER, extension="jpg", styled=lambda params: True,
    batch=BatchWriter("image/jpeg", _gdal_copy("JPEG", _jpeg_quality), styled_bands=3),
    tiles=TileFormat("image/jpeg", ("jpg", "jpeg"),
                     lambda cube, style: encode_image(cube, "JPEG", style=style)),
))  # fmt: skip

__all__ = ["FORMATS", "BatchWriter", "OutputFormat", "TileFormat",
           "check_output_kind", "default_output", "encode", "get", "names",
           "normalise_format", "output_formats", "register_format", "tile_format",
           "tile_formats", "validate_output"]
