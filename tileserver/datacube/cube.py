"""A small labelled cube: ``(time, band, y, x)`` float32 with NaN as nodata."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from tileserver.datacube.view import View


def day_key(t: datetime) -> str:
    """Acquisitions of the same UTC day form one time step (a mosaic): the one place that
    says so, for the reads, the 1.x processes that align dates, coverages and batch."""
    return t.strftime("%Y-%m-%d")


def first_of_each_day(times) -> dict[str, datetime]:
    """``{day_key: the first of ``times`` on that day}``: the time steps of acquisitions."""
    days: dict[str, datetime] = {}
    for t in times:
        days.setdefault(day_key(t), t)
    return days


@dataclass(frozen=True)
class Cube:
    """Values of a graph node on a view.

    ``data`` is always 4-D ``(t, b, y, x)``; ``times`` is ``None`` once the time axis has
    been reduced (then ``t == 1``). ``kind`` says what the values are (``reflectance``,
    ``ndvi``, ``count``…) so that encoders can pick a default style.
    """

    data: np.ndarray
    times: tuple[datetime, ...] | None
    bands: tuple[str, ...]
    view: View
    kind: str = "reflectance"

    def __post_init__(self) -> None:
        t, b, h, w = self.data.shape
        assert b == len(self.bands), (b, self.bands)
        assert (h, w) == (self.view.height, self.view.width), (self.data.shape, self.view)
        if self.times is not None:
            assert t == len(self.times), (t, self.times)
        else:
            assert t == 1

    @property
    def nbytes(self) -> int:
        """Bytes held by the values."""
        return int(self.data.nbytes)

    def with_data(self, data: np.ndarray, **changes) -> Cube:
        """A copy with other values (and labels)."""
        return replace(self, data=data, **changes)

    def select_time(self, index: int) -> Cube:
        """One time slice, keeping a time axis of length one."""
        assert self.times is not None
        return replace(self, data=self.data[index : index + 1], times=(self.times[index],))

    def image(self) -> np.ndarray:
        """``(b, y, x)`` of the last date (or of the reduced cube)."""
        return self.data[-1]


def empty(view: View, bands: tuple[str, ...], times: tuple[datetime, ...] | None) -> Cube:
    """A cube of NaN."""
    t = 1 if times is None else len(times)
    data = np.full((t, len(bands), view.height, view.width), np.nan, dtype=np.float32)
    return Cube(data, times, bands, view)
