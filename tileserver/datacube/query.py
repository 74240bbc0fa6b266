"""What is pushed down a graph (:class:`Query`) and what is known without reading
(:class:`CubeMeta`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from rasterio.crs import CRS

from tileserver.datacube.view import View

if TYPE_CHECKING:  # the catalog sits above: a CubeMeta only carries its Product
    from tileserver.data.catalog import Product


@dataclass(frozen=True)
class Query:
    """The view plus the constraints that ancestors push down to the data leaves.

    ``time`` is an inclusive ``(start, end)`` range, ``bands`` the band labels needed from
    the node (``None``: all of them).
    """

    view: View
    time: tuple[datetime, datetime] | None = None
    bands: tuple[str, ...] | None = None
    #: How the reads warp the files onto the view (a ``rasterio.enums.Resampling`` name,
    #: set by a 1.x ``resample_spatial`` ``method``; ``None``: the engine's setting).
    resampling: str | None = None

    @property
    def key(self) -> tuple:
        """Hashable identity, part of the cache key."""
        t = None if self.time is None else (self.time[0].isoformat(), self.time[1].isoformat())
        if self.resampling is None:
            return (self.view.key, t, self.bands)
        return (self.view.key, t, self.bands, self.resampling)

    def narrow_time(self, start: datetime, end: datetime) -> Query:
        """The intersection of the current time range with ``[start, end]``."""
        if self.time is not None:
            start, end = max(start, self.time[0]), min(end, self.time[1])
        return replace(self, time=(start, end))

    def with_bands(self, bands: tuple[str, ...] | None) -> Query:
        """The same query asking for other bands."""
        return replace(self, bands=bands)

    def with_resampling(self, resampling: str | None) -> Query:
        """The same query read with another resampling method."""
        return replace(self, resampling=resampling)


@dataclass(frozen=True)
class CubeMeta:
    """What a node's result is, known from the graph and the catalog alone.

    ``bands`` are the labels of the result; ``source_bands`` the product bands that must be
    read; ``bbox``/``srs`` the spatial filter (``None``: the product's extent);
    ``time_range`` the temporal filter; ``reduced`` whether the time axis is gone.
    """

    product: Product
    bands: tuple[str, ...]
    source_bands: tuple[str, ...]
    bbox: tuple[float, float, float, float] | None = None
    srs: CRS | None = None
    time_range: tuple[datetime, datetime] | None = None
    reduced: bool = False
    kind: str = "reflectance"
    dtype: str = "float32"
    notes: tuple[str, ...] = ()
    #: False once a 1.x process dropped the bands dimension (``ndvi``, a band reducer).
    has_bands: bool = True
    #: A 1.x ``resample_spatial``: the native resolution (in ``native_crs`` units) and CRS.
    native_res: float | None = None
    native_crs: CRS | None = None
    #: The name of the dimension on the band axis: ``bands``, or the dimension of type
    #: ``other`` that a 1.x ``apply_dimension`` put there (``target_dimension``).
    band_dim: str = "bands"
    #: The dates are the labels a UDF returns (``aggregate_time``): known only by running
    #: it (:meth:`tileserver.engine.evaluator.Engine.times` with the owner's context).
    scripted_times: bool = False

    def but(self, **changes) -> CubeMeta:
        """A copy with some fields changed."""
        return replace(self, **changes)

    @property
    def product_bands(self) -> tuple[str, ...]:
        """The bands read of ``product`` (whose grid the result is on): ``source_bands``
        without those of another collection (``merge_cubes``), all of the product's when
        none is."""
        own = tuple(b for b in self.source_bands if b in self.product.bands)
        return own or tuple(self.product.bands)
