"""Empty results, reported rather than silent.

A spatial extent outside the data, or dates without acquisitions, give a result with no
date or with no valid value: a file of nodata that users take for a processing bug. The
result is still answered (it is what was asked), with a warning the client shows: a job log
entry (level ``warning``) for batch jobs, a ``Warning`` header and a ``monitor`` log link
for synchronous results (see :mod:`tileserver.web.openeo.v1.processing`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tileserver.datacube.cube import Cube
from tileserver.zonal.tables import ZonalTable

#: No acquisition in the extent and dates (a cube without dates).
NO_DATES = ("the result is empty: no acquisition lies in the spatial extent and dates asked "
            "(check the bbox against the collection's extent, and the dates)")
#: Dates, but no valid value anywhere (all nodata).
NO_VALUES = ("the result holds no valid value (all nodata): the data has no valid pixel in "
             "the spatial extent and dates asked (check the bbox against the collection's "
             "extent, the dates and the filters)")


def empty_result(result: Any) -> str | None:
    """Why ``result`` (a cube or a zonal table) is empty, or ``None`` when it is not."""
    if isinstance(result, Cube):
        if result.times is not None and len(result.times) == 0 or result.data.size == 0:
            return NO_DATES
        return None if np.isfinite(result.data).any() else NO_VALUES
    if isinstance(result, ZonalTable):
        if result.dates is not None and len(result.dates) == 0:
            return NO_DATES
        return None if np.isfinite(result.values).any() else NO_VALUES
    return None


def empty_statistics(valid_counts: list[int]) -> str | None:
    """:data:`NO_VALUES` when the valid pixels counted in the result files are none."""
    return NO_VALUES if valid_counts and not any(valid_counts) else None
