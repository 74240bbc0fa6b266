"""Band statistics of results, as GDAL writes them and as STAC ``raster:bands`` holds them.

Viewers (the openEO Web Editor, QGIS) stretch a float GeoTIFF by its
``STATISTICS_MINIMUM``/``STATISTICS_MAXIMUM``; without them a result looks empty until
the user types a range. Every float GeoTIFF of a result carries per band GDAL's
``STATISTICS_MINIMUM``, ``_MAXIMUM``, ``_MEAN``, ``_STDDEV`` (population) and
``_VALID_PERCENT`` metadata items, the values GDAL's own ``ComputeStatistics`` gives
(exact, not approximated), formatted like GDAL (``%.14g``; the valid percentage
``%.4g``).

Batch results are written in parts: :class:`Summary` is what one part knows (count,
sum, sum of squares, extremes per band), merged with ``+`` into the whole result's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Summary:
    """Mergeable statistics of one band: ``pixels`` in all, ``valid`` of them finite."""

    pixels: int = 0
    valid: int = 0
    total: float = 0.0
    squares: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")

    @classmethod
    def of(cls, values: np.ndarray) -> Summary:
        """The summary of an array of one band (NaN and infinities are nodata)."""
        flat = np.asarray(values).ravel()
        finite = flat[np.isfinite(flat)].astype(np.float64)
        if not finite.size:
            return cls(pixels=int(flat.size))
        return cls(int(flat.size), int(finite.size), float(finite.sum()),
                   float(np.square(finite).sum()), float(finite.min()), float(finite.max()))

    def __add__(self, other: Summary) -> Summary:
        return Summary(self.pixels + other.pixels, self.valid + other.valid,
                       self.total + other.total, self.squares + other.squares,
                       min(self.minimum, other.minimum), max(self.maximum, other.maximum))

    def to_json(self) -> list:
        """A compact JSON form (for the manifests of batch blocks)."""
        return [self.pixels, self.valid, self.total, self.squares,
                None if self.valid == 0 else self.minimum,
                None if self.valid == 0 else self.maximum]

    @classmethod
    def from_json(cls, value: Sequence) -> Summary:
        """The inverse of :meth:`to_json`."""
        pixels, valid, total, squares, lo, hi = value
        if not valid:
            return cls(pixels=int(pixels))
        return cls(int(pixels), int(valid), float(total), float(squares), float(lo), float(hi))

    @property
    def mean(self) -> float | None:
        """The mean of the valid values (``None`` when there are none)."""
        return self.total / self.valid if self.valid else None

    @property
    def stddev(self) -> float | None:
        """The population standard deviation (GDAL's)."""
        if not self.valid:
            return None
        mean = self.total / self.valid
        return float(np.sqrt(max(0.0, self.squares / self.valid - mean * mean)))

    @property
    def valid_percent(self) -> float:
        """The share of valid pixels, in percent (GDAL's ``STATISTICS_VALID_PERCENT``)."""
        return 100.0 * self.valid / self.pixels if self.pixels else 0.0

    def gdal_metadata(self) -> dict[str, str]:
        """GDAL's band metadata items (only ``STATISTICS_VALID_PERCENT`` without any value:
        GDAL computes no statistics of an all-nodata band either)."""
        out = {"STATISTICS_VALID_PERCENT": "%.4g" % self.valid_percent}  # noqa: UP031 - GDAL's
        if self.valid:
            out.update(STATISTICS_MINIMUM=_g(self.minimum), STATISTICS_MAXIMUM=_g(self.maximum),
                       STATISTICS_MEAN=_g(self.mean), STATISTICS_STDDEV=_g(self.stddev))
        return out

    def stac(self) -> dict[str, Any]:
        """The ``statistics`` object of a STAC ``raster:bands`` entry."""
        out: dict[str, Any] = {"valid_percent": round(self.valid_percent, 6)}
        if self.valid:
            out.update(minimum=self.minimum, maximum=self.maximum, mean=self.mean,
                       stddev=self.stddev)
        return out


def _g(value: float | None) -> str:
    return "%.14g" % value  # noqa: UP031 - GDAL's own format of these items


def summaries(data: np.ndarray) -> list[Summary]:
    """One summary per band of ``data`` (bands, rows, cols)."""
    return [Summary.of(band) for band in data]


def merged(parts: Iterable[Sequence[Summary]]) -> list[Summary]:
    """Band by band, the sum of the parts' summaries."""
    out: list[Summary] = []
    for part in parts:
        if not out:
            out = list(part)
        else:
            out = [a + b for a, b in zip(out, part, strict=True)]
    return out


def raster_band(summary: Summary, name: str | None = None) -> dict[str, Any]:
    """A STAC ``raster:bands`` entry of a float32 band with NaN nodata."""
    band: dict[str, Any] = {"data_type": "float32", "nodata": "nan",
                            "statistics": summary.stac()}
    if name:
        band["name"] = name
    return band
