"""Styles: values to RGBA. Colormap names are matplotlib's."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tileserver import params
from tileserver.errors import OutputFormatError

_lock = threading.Lock()


@dataclass(frozen=True)
class Style:
    """A colormap (None: grey or RGB composite) and the value range mapped onto it."""

    colormap: str | None
    vmin: float
    vmax: float
    name: str = "default"

    def to_json(self) -> dict:
        """As service args/identifiers show it."""
        return {"colormap": self.colormap or "gray", "range": [self.vmin, self.vmax]}


def default_style(kind: str, nbands: int = 1, ndates: int = 1) -> Style:
    """A diverging ramp over -1..1 for NDVI-like results, a grey stretch otherwise."""
    if kind == "ndvi":
        return Style("RdYlGn", -1.0, 1.0)
    if kind == "count":
        return Style("viridis", 0.0, float(max(ndates, 1)))
    if nbands >= 3:
        return Style(None, 0.0, 3000.0)
    return Style("gray", 0.0, 3000.0)


@lru_cache(maxsize=64)
def colormap_lut(name: str) -> np.ndarray:
    """A 256x4 uint8 lookup table of a matplotlib colormap."""
    import matplotlib  # noqa: PLC0415 - heavy, import on first use

    with _lock:
        try:
            cmap = matplotlib.colormaps[name]
        except KeyError:
            raise OutputFormatError(
                f"unknown colormap {name!r}; use a matplotlib name such as 'viridis', "
                "'RdYlGn', 'gray', 'magma'"
            ) from None
        return (cmap(np.linspace(0.0, 1.0, 256)) * 255).round().astype(np.uint8)


def check_colormap(name: str) -> str:
    """Validate a colormap name (raises :class:`OutputFormatError`)."""
    colormap_lut(name)
    return name


#: The options that choose a style: of a service's args, of a job's output, of a tile.
STYLE_ARGS = ("colormap", "range")


def style_args(options: dict | None) -> dict:
    """The style options (:data:`STYLE_ARGS`) among ``options``."""
    return {k: options[k] for k in STYLE_ARGS if k in options} if options else {}


def style_from_args(args: dict | None, kind: str, nbands: int = 1, ndates: int = 1) -> Style:
    """The default style overridden by ``colormap`` and ``range: [min, max]`` options."""
    style = default_style(kind, nbands, ndates)
    if not args:
        return style
    cmap = args.get("colormap", style.colormap)
    if cmap is not None and not isinstance(cmap, str):
        raise OutputFormatError("'colormap' must be a string (a matplotlib colormap name)")
    if cmap is not None:
        check_colormap(cmap)
    vmin, vmax = style.vmin, style.vmax
    rng = args.get("range")
    if rng is not None:
        if not isinstance(rng, list | tuple) or len(rng) != 2 or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in rng):
            raise OutputFormatError("'range' must be [min, max] with min < max")
        vmin, vmax = (params.number(v, "range", error=OutputFormatError,
                                    name="'range' values") for v in rng)
        if not vmin < vmax or not math.isfinite(vmax - vmin):
            raise OutputFormatError("'range' must be [min, max] with min < max")
    return Style(cmap, vmin, vmax, "custom")


def _scale(values: np.ndarray, style: Style) -> np.ndarray:
    span = style.vmax - style.vmin
    with np.errstate(invalid="ignore"):
        scaled = values - style.vmin  # the only new array: the same steps, in place
        scaled /= span
        scaled *= 255.0
    np.nan_to_num(scaled, copy=False, nan=0.0)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


def render_rgba(image: np.ndarray, style: Style) -> np.ndarray:
    """``(b, y, x)`` float values to ``(y, x, 4)`` uint8; nodata is transparent."""
    if image.shape[0] >= 3 and style.colormap is None:
        valid = np.isfinite(image[:3]).all(axis=0)
        rgba = np.empty((*image.shape[1:], 4), dtype=np.uint8)
        for i in range(3):
            rgba[..., i] = _scale(image[i], style)
    else:
        band = image[0]
        valid = np.isfinite(band)
        lut = colormap_lut(style.colormap or "gray")
        rgba = np.take(lut, _scale(band, style), axis=0)  # one gather, (y, x, 4)
    rgba[..., 3] = valid
    rgba[..., 3] *= 255
    rgba[~valid] = 0
    return rgba


def render_indexed(image: np.ndarray, style: Style) -> tuple[np.ndarray, np.ndarray] | None:
    """The colours of :func:`render_rgba` as a palette image: ``(indices (y, x) uint8,
    palette (256, 4) uint8)`` whose palette colours are exactly the RGBA rendering's, or
    ``None`` when the style is an RGB composite or the tile has nodata and uses all 256
    colours (no index is left for transparent nodata)."""
    if image.shape[0] >= 3 and style.colormap is None:
        return None
    band = image[0]
    valid = np.isfinite(band)
    indices = _scale(band, style)
    palette = colormap_lut(style.colormap or "gray").copy()
    palette[:, 3] = 255
    if not valid.all():
        used = np.bincount(indices[valid], minlength=256)
        free = np.flatnonzero(used == 0)
        if not free.size:
            return None
        indices[~valid] = free[0]
        palette[free[0]] = 0  # nodata: transparent black, as in the RGBA rendering
    return indices, palette
