"""A finished batch job's stored result as a source: its Cloud-Optimized GeoTIFFs read like
any catalog file (the window of the view, from the overview level that fits, warped to the
view's grid), so that tiles and coverages of a finished job do not recompute the graph.

The files live in the job's store (:mod:`tileserver.storage`): on the server's disk, or in an
object store that GDAL reads through ``/vsis3/`` (HTTP range reads of the window, the
header and block cache of remote catalog files, the ``remote_*`` timeouts). A store that
fails while a finished job is read is a :class:`~tileserver.errors.StoreUnavailable` (503)
naming it, never a hang nor a silent recomputation.

A result is used only when its ``item.json`` says it was computed from the job's current
graph and output (:func:`fingerprint`) and holds values (float32), not a styled rendering.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.session import DummySession

from tileserver.data.catalog import Band
from tileserver.data.reader import read_window, warp_many
from tileserver.datacube.bounds import wgs84_bounds
from tileserver.datacube.cube import Cube, first_of_each_day
from tileserver.datacube.view import View
from tileserver.errors import StoreUnavailable, TileserverError
from tileserver.storage import Store, join

log = logging.getLogger(__name__)

#: The layer key of a result without a time axis (the batch runner's ``SINGLE``).
SINGLE = "result"
#: ``item.json`` properties written by the batch runner.
FINGERPRINT = "tileserver:fingerprint"
VALUES = "tileserver:values"


def fingerprint(process_graph: dict, output: dict | None,
                processes: dict | None = None) -> str:
    """What a stored result was computed from: the graph, the output options and the
    stored processes the graph calls (their definitions when the result was made)."""
    parts: list = [process_graph, output or {"format": "GTiff"}]
    if processes:
        parts.append(processes)
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class StoredResult:
    """The value files of a finished job: one COG per layer (a date, or ``result``)."""

    files: dict[str, str]  # layer -> href (a local path, or s3://bucket/key)
    bands: tuple[str, ...]
    #: Changes when the files are rewritten (part of cache keys and ETags).
    version: str
    #: What messages call the store (``local disk``, ``s3://bucket``).
    store_name: str = "local disk"

    @classmethod
    def find(cls, store: Store, prefix: str, process_graph: dict, output: dict | None,
             bands: tuple[str, ...], processes: dict | None = None) -> StoredResult | None:
        """The stored result under ``prefix`` of ``store`` if it matches the graph, output
        and stored processes (:class:`StoreUnavailable` when the store fails)."""
        try:
            item = json.loads(store.get(join(prefix, "item.json")))
        except (OSError, ValueError):
            return None
        props = item.get("properties") or {}
        if props.get(FINGERPRINT) != fingerprint(process_graph, output, processes) \
                or props.get(VALUES) != "float":
            return None
        files: dict[str, str] = {}
        stamps = []
        for asset in (item.get("assets") or {}).values():
            name = str(asset.get("href", ""))
            if not name.endswith(".tif") or "/" in name:
                continue
            stem = name[:-4]
            layer = SINGLE if stem == SINGLE else stem.removeprefix(SINGLE + "_")
            info = store.info(join(prefix, name))
            if info is None:
                return None
            files[layer] = store.href(info.key)
            stamps.append(f"{name}:{info.version}")
        if not files:
            return None
        version = hashlib.sha256("|".join(sorted(stamps)).encode()).hexdigest()[:24]
        return cls(files, bands, version, store.name)

    def layer_for(self, day: str | None) -> str | None:
        """The file of a date (``None``: the result without a time axis)."""
        return self.files.get(SINGLE if day is None else day)

    def read(self, view: View, day: str | None, when: datetime | None, kind: str,
             resampling: Resampling) -> Cube | None:
        """The values on ``view`` (``None`` when the result has no file for ``day``)."""
        path = self.layer_for(day)
        if path is None:
            return None
        data = np.full((1, len(self.bands), view.height, view.width), np.nan, np.float32)
        with quiet_env():
            self._read_into(data, path, view, resampling)
        times = None if day is None else (when,)
        return Cube(data, times, self.bands, view, kind)  # type: ignore[arg-type]

    def _read_into(self, data: np.ndarray, path: str, view: View,
                   resampling: Resampling) -> None:
        """The bands of ``path`` on ``view`` into ``data`` (one warp for all of them)."""
        read: list = []
        for i, name in enumerate(self.bands):
            band = Band(name, "float32", float("nan"), 0.0)
            try:
                read.append(read_window(path, band, view, index=i + 1,
                                        resampling=resampling))
            except TileserverError as exc:
                if self.store_name == "local disk" or isinstance(exc, StoreUnavailable):
                    raise
                raise StoreUnavailable(f"the object store {self.store_name} holding the "
                                       f"job's result cannot deliver it: {exc.message}") \
                    from exc
        for i, values in enumerate(warp_many(read, view, resampling)):
            if values is not None:
                data[0, i] = values


def quiet_env() -> rasterio.Env:
    """A rasterio environment without a boto3 session. When ``AWS_ACCESS_KEY_ID`` is set
    (an object store's credentials), rasterio builds a boto3 session for every call made
    outside an environment (60-130 ms each, several per tile); GDAL reads the same
    variables itself for ``/vsis3/``."""
    return rasterio.Env(session=DummySession())


def _overlap(a, b):
    if a is None:
        return b
    if b is None:
        return a
    start, end = max(a[0], b[0]), min(a[1], b[1])
    return (start, end) if start <= end else None


def evaluate_stored(stored: StoredResult, meta, view: View,
                    time_range: tuple[datetime, datetime] | None,
                    resampling: Resampling) -> Cube | None:
    """What the lazy evaluation of a graph (``meta``: its :class:`CubeMeta`) on ``view``
    would give, read from its stored result; ``None`` when the result cannot answer (a
    date it has no file for, or no acquisition in the view: the lazy path then answers).
    """

    with quiet_env():
        return _evaluate_stored(stored, meta, view, time_range, resampling)


def _evaluate_stored(stored: StoredResult, meta, view: View,
                     time_range: tuple[datetime, datetime] | None,
                     resampling: Resampling) -> Cube | None:
    if meta.reduced:
        return stored.read(view, None, None, meta.kind, resampling)
    bbox = wgs84_bounds(view)
    if bbox is None:  # no extent in degrees: the lazy path answers
        return None
    span = _overlap(meta.time_range, time_range)
    if time_range is not None and span is None:
        return None
    days = first_of_each_day(item.datetime for item in meta.product.items_for(bbox, span))
    if not days:
        return None
    cubes = []
    for day in sorted(days):
        cube = stored.read(view, day, days[day], meta.kind, resampling)
        if cube is None:
            return None
        cubes.append(cube)
    if len(cubes) == 1:
        return cubes[0]
    data = np.concatenate([c.data for c in cubes], axis=0)
    return cubes[0].with_data(data, times=tuple(c.times[0] for c in cubes))  # type: ignore
