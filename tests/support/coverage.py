"""Coverages with known grids for the core WCS tests."""

from __future__ import annotations

from datetime import UTC, datetime

from tileserver.datacube.view import View
from tileserver.maps.coverage import Coverage

LIMITS = (25_000_000, 64 * 1024 * 1024)
UTM = View("EPSG:32632", (500_000.0, 5_090_000.0, 504_000.0, 5_100_000.0), 400, 1000)
GEO = View("EPSG:4326", (9.0, 46.0, 9.5, 46.25), 500, 250)
DAYS = tuple(datetime(2020, 5, d, 10, tzinfo=UTC) for d in (1, 11, 21))


def cov(view=UTM, bands=("ndvi",), times=None, source_bands=2) -> Coverage:
    """A coverage with a known grid."""
    return Coverage("c1", "test", view, bands, source_bands, times, "ndvi")
