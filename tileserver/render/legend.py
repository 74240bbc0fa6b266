"""Legends of styled layers: what a colour means (no HTTP).

A legend is the style's colour ramp (the same lookup table that colours the tiles) with its
value range, a few labelled values and the quantity with its unit. It is served as a PNG
(the WMTS ``LegendURL`` of each style, shown by QGIS in its layer tree) and described as
JSON for the viewer.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tileserver.render.styles import Style, colormap_lut

#: What the values of a result kind are: (quantity, unit).
QUANTITIES = {
    "ndvi": ("NDVI", "unitless"),
    "count": ("valid acquisitions", "number of dates"),
    "reflectance": ("reflectance", "digital numbers"),
}
#: Size of the PNG (pixels).
WIDTH, HEIGHT = 300, 74
_MARGIN, _BAR_TOP, _BAR_HEIGHT = 14, 24, 18


@dataclass(frozen=True)
class Legend:
    """A style and what its values are."""

    style: Style
    quantity: str
    unit: str

    @property
    def ticks(self) -> list[float]:
        """Labelled values: the ends of the range and its middle."""
        lo, hi = self.style.vmin, self.style.vmax
        return [lo, (lo + hi) / 2, hi]

    @property
    def colormap(self) -> str:
        """The ramp's matplotlib name (``gray`` for RGB composites, shown per band)."""
        return self.style.colormap or "gray"

    def to_json(self) -> dict:
        """For the viewer: ramp colours (CSS hex, low to high), range, ticks, unit."""
        lut = colormap_lut(self.colormap)
        stops = [lut[i] for i in np.linspace(0, 255, 11).round().astype(int)]
        return {
            "title": self.title, "quantity": self.quantity, "unit": self.unit,
            "colormap": self.colormap, "range": [self.style.vmin, self.style.vmax],
            "ticks": self.ticks, "colors": ["#{:02x}{:02x}{:02x}".format(*c[:3]) for c in stops],
            "rgb": self.style.colormap is None,
        }

    @property
    def title(self) -> str:
        """``quantity (unit)``; RGB composites say that each band is stretched so."""
        title = f"{self.quantity} ({self.unit})" if self.unit else self.quantity
        return f"RGB composite: {title} per band" if self.style.colormap is None else title


def legend_of(style: Style, kind: str) -> Legend:
    """The legend of a style for a result ``kind`` (``ndvi``, ``count``, ``reflectance``…)."""
    quantity, unit = QUANTITIES.get(kind, (kind, ""))
    return Legend(style, quantity, unit)


def _label(value: float) -> str:
    return f"{value:.4g}"


@lru_cache(maxsize=128)
def legend_png(legend: Legend) -> bytes:
    """The legend as a PNG: title, colour ramp, range ticks with values."""
    img = Image.new("RGBA", (WIDTH, HEIGHT), (255, 255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=12)
    draw.text((_MARGIN, 4), legend.title, fill=(0, 0, 0, 255), font=font)
    lut = colormap_lut(legend.colormap)
    width = WIDTH - 2 * _MARGIN
    ramp = lut[np.linspace(0, 255, width).round().astype(int)]
    bar = np.broadcast_to(ramp[None], (_BAR_HEIGHT, width, 4))
    img.paste(Image.fromarray(np.ascontiguousarray(bar), "RGBA"), (_MARGIN, _BAR_TOP))
    draw.rectangle((_MARGIN - 1, _BAR_TOP - 1, _MARGIN + width, _BAR_TOP + _BAR_HEIGHT),
                   outline=(0, 0, 0, 255))
    lo, hi = legend.style.vmin, legend.style.vmax
    for value in legend.ticks:
        x = _MARGIN + round((value - lo) / (hi - lo) * (width - 1))
        y = _BAR_TOP + _BAR_HEIGHT
        draw.line((x, y, x, y + 4), fill=(0, 0, 0, 255))
        text = _label(value)
        w = draw.textlength(text, font=font)
        left = min(max(x - w / 2, 2), WIDTH - w - 2)
        draw.text((left, y + 6), text, fill=(0, 0, 0, 255), font=font)
    out = io.BytesIO()
    img.save(out, "PNG", optimize=True)
    return out.getvalue()


def ramp_pixels(png: bytes) -> np.ndarray:
    """The colours of the ramp row of a legend PNG (for tests and checks), ``(n, 3)``."""
    with Image.open(io.BytesIO(png)) as img:
        rgb = np.asarray(img.convert("RGB"))
    return rgb[_BAR_TOP + _BAR_HEIGHT // 2, _MARGIN:WIDTH - _MARGIN]
