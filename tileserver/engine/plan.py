"""The planner: what an evaluation of a graph on a view will read, produce and hold in
memory, known from the graph and the catalog alone (no pixel is read, no HTTP).

One :class:`Plan` serves three users: batch jobs (block sizes), estimates of a job before it
runs (``GET /jobs/{id}/estimate``: pixels read, output size) and admission control of the
synchronous requests (the memory an evaluation needs, :mod:`tileserver.limits`).

The memory model follows what :meth:`Engine._load <tileserver.engine.evaluator.Engine.load>`
and the processes allocate: every data leaf reads a float32 cube of ``dates x bands x
height x width`` (plus as much again for the warping buffers and the mosaic of several
files), and each cube process above it makes at most one result the size of the output
(plus temporaries of numpy expressions, :data:`TEMPORARIES`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from tileserver.datacube.bounds import wgs84_bounds
from tileserver.datacube.cube import day_key
from tileserver.datacube.query import CubeMeta
from tileserver.datacube.view import View
from tileserver.graph.nodes import Node
from tileserver.graph.v1 import V1

#: Bytes of one value of an evaluation (the engine computes in float32).
VALUE_BYTES = 4
#: Copies of the read cube alive while it is read (the cube, warped blocks, mosaics).
READ_COPIES = 2
#: Output-sized temporaries of a process's numpy expression beyond its result.
TEMPORARIES = 2
#: Cube processes counted at most (a long chain frees its intermediates as it goes; the
#: cache keeps only what fits its own bound).
MAX_NODES = 8
#: Fixed memory of any evaluation (encoders, GDAL handles, Python objects).
BASE_BYTES = 8 * 1024 * 1024
#: Processes that load data (the 1.x names; 0.0.2 leaves are ``product_id`` nodes).
LOADERS = ("load_collection", "load_stac")


@dataclass(frozen=True)
class Read:
    """What one data leaf reads: ``bands`` x ``dates`` rasters of the view's size."""

    product: str
    bands: int
    dates: int
    pixels: int

    @property
    def values(self) -> int:
        """Values read (pixels x bands x dates)."""
        return self.pixels * self.bands * max(1, self.dates)


@dataclass(frozen=True)
class Plan:
    """What an evaluation on ``view`` costs."""

    view: View
    reads: tuple[Read, ...]
    #: Bands and dates of the result (1 date when the time axis is reduced).
    out_bands: int
    out_dates: int
    #: Cube processes above the leaves (intermediate results).
    nodes: int
    reduced: bool

    @property
    def pixels_read(self) -> int:
        """Values read from the sources (pixels x bands x dates over every leaf)."""
        return sum(r.values for r in self.reads)

    @property
    def dates(self) -> int:
        """Dates read (the most of any leaf)."""
        return max((r.dates for r in self.reads), default=0)

    @property
    def bands(self) -> int:
        """Bands read (over every leaf)."""
        return sum(r.bands for r in self.reads)

    @property
    def output_pixels(self) -> int:
        """Pixels of the result's grid (width x height)."""
        return self.view.pixels

    @property
    def output_values(self) -> int:
        """Values of the result (pixels x bands x dates)."""
        return self.view.pixels * self.out_bands * self.out_dates

    @property
    def memory_bytes(self) -> int:
        """Peak memory of the evaluation (bytes): the reads, and the intermediate results
        and temporaries of the cube processes."""
        read = self.pixels_read * VALUE_BYTES * READ_COPIES
        steps = min(self.nodes, MAX_NODES) + TEMPORARIES
        return BASE_BYTES + read + self.output_values * VALUE_BYTES * steps

    @property
    def stored_memory_bytes(self) -> int:
        """Peak memory of reading the result from a finished job's stored files instead:
        each date read, and the dates joined into one cube."""
        return BASE_BYTES + self.output_values * VALUE_BYTES * (READ_COPIES + 1)

    def shrink_hint(self, budget: int) -> str:
        """What to shrink so that the evaluation fits ``budget`` bytes, for a 413."""
        return (f"the evaluation needs about {mib(self.memory_bytes)} MiB of memory "
                f"({self.view.width}x{self.view.height} pixels x {self.bands} band(s) x "
                f"{self.dates} date(s) read), more than the budget of {mib(budget)} MiB; "
                "request a smaller bbox or window, a coarser resolution, fewer bands or "
                "fewer dates, or use a batch job")

    def to_json(self) -> dict:
        """The plan's figures (for estimates and logs)."""
        return {"width": self.view.width, "height": self.view.height,
                "bands_read": self.bands, "dates_read": self.dates,
                "pixels_read": self.pixels_read, "output_pixels": self.output_pixels,
                "output_values": self.output_values, "memory_bytes": self.memory_bytes}


def mib(n: int) -> int:
    """Bytes in MiB, rounded up."""
    return -(-int(n) // (1024 * 1024))


def is_leaf(node: Node) -> bool:
    """Whether the node reads a product (a 0.0.2 data leaf or a 1.x load process)."""
    return node.is_product or (node.dialect == V1 and node.process_id in LOADERS)


def plan(root: Node, meta: CubeMeta, leaf_meta: Callable[[Node], CubeMeta], view: View,
         time_range: tuple[datetime, datetime] | None = None) -> Plan:
    """The plan of the graph under ``root`` (its result ``meta``) on ``view``
    (``time_range``: one date of a tile or coverage); ``leaf_meta`` says what a data leaf
    loads (the engine's :meth:`~tileserver.engine.evaluator.Engine.meta`).

    Dates are counted like the engine reads them: the days of the items under the view
    within the leaf's (or the graph's) dates. Bands are the leaf's, narrowed to the bands
    the graph reads of that product.
    """
    bbox = wgs84_bounds(view)
    reads: list[Read] = []
    nodes = 0
    seen: set[int] = set()
    for node in root.walk():
        if id(node) in seen:
            continue
        seen.add(id(node))
        if not is_leaf(node):
            nodes += 1
            continue
        leaf = leaf_meta(node)
        product = leaf.product
        bands = tuple(leaf.source_bands or product.bands)
        if product.id == meta.product.id and meta.source_bands:
            bands = tuple(b for b in bands if b in meta.source_bands) or bands
        span = time_range or leaf.time_range or (
            meta.time_range if product.id == meta.product.id else None)
        days = {day_key(i.datetime) for i in product.items_for(bbox, span)}
        reads.append(Read(product.id, len(bands), len(days), view.pixels))
    out_dates = 1 if meta.reduced else max((r.dates for r in reads), default=1)
    out_bands = len(meta.bands) if meta.has_bands else 1
    return Plan(view, tuple(reads), max(1, out_bands), max(1, out_dates), nodes,
                meta.reduced)
