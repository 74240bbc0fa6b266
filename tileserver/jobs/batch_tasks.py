"""What the Dask workers of a batch job run: one block, one strip of an overview level (the
final files and the STAC item are :mod:`tileserver.jobs.results`).

Everything here takes a picklable :class:`JobSpec` and plain numbers. A task writes its files
in the job's work directory on its own disk and puts them in the job's store
(:mod:`tileserver.storage`, :meth:`JobSpec.publish`): with the default store that directory
*is* the store's folder under ``$TILESERVER_HOME/results/.work`` and nothing moves; with an
object store the parts are uploaded (no host needs a shared mount) and a task that needs
another task's parts downloads them (:meth:`JobSpec.fetch`). Each worker
process builds its own :class:`~tileserver.engine.evaluator.Engine` once per catalog and
keeps it (:func:`worker_engine`).

Each block task evaluates the graph on its window of the native view with the same core
as tiles and coverages, and writes ``blocks/r{row}_c{col}.tif`` atomically (the store's
rule: temp file, then rename or upload), so a block file exists only when it is complete:
pausing or restarting a job keeps them, and the next run skips them. A block task also
decimates its values into the COG's overview levels while they are in memory (nearest
neighbour, GDAL's rule: pixel ``j`` of the level of factor ``f`` is pixel ``j * f`` of the
full grid), so nothing has to read the full-resolution result again to build them. The mosaic task
(:func:`tileserver.jobs.results.mosaic`) assembles the blocks
and their overviews through VRTs into one Cloud-Optimized GeoTIFF per date, compressed
once, on every core of its worker (GDAL streams the VRT swath by swath, so memory stays
bounded by the block size and GDAL's cache), and writes a STAC item describing the files.
"""

from __future__ import annotations

import ctypes
import functools
import json
import resource
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from tileserver.cache.memory import NodeCache
from tileserver.data.catalog import Catalog
from tileserver.data.stored import quiet_env
from tileserver.datacube.cube import Cube
from tileserver.datacube.view import View
from tileserver.engine.evaluator import Engine, day_key
from tileserver.render import cog, formats
from tileserver.render.formats import OutputFormat
from tileserver.render.statistics import summaries
from tileserver.render.styles import Style, render_rgba
from tileserver.storage import Store, atomic_file, join, store_for

#: Layer name of a result without a time axis.
SINGLE = "result"
#: Tags of an uncompressed block file: its values' statistics per layer, its band names.
STATS_TAG, BANDS_TAG = "TILESERVER_STATS", "TILESERVER_BANDS"

#: Media type of the STAC item of a result (the result files have their format's,
#: :class:`~tileserver.render.formats.BatchWriter`).
ITEM_MEDIA_TYPE = "application/geo+json"


#: Tiles of one strip of a level that no block covers whole tiles of (the memory of a
#: strip task: its values, one layer at a time, and their compressed copy).
STRIP_TILES = 16


class WorkGone(RuntimeError):
    """The job's work directory on the shared disk is gone: the job was deleted or canceled
    while the task waited or ran (its future is cancelled; nobody reads this error)."""


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to compute a job (picklable, no open handles)."""

    job_id: str
    catalogs: tuple[str, ...]
    engine_opts: tuple[tuple[str, Any], ...]
    graph: dict
    output: dict
    crs: str  # WKT or EPSG code of the native view
    bounds: tuple[float, float, float, float]
    width: int
    height: int
    block: int
    work_dir: str
    fmt: str  # a format name of :mod:`tileserver.render.formats`
    mode: str  # "float" (values), "rgba" (styled 8-bit)
    style: Style | None = None
    layers: tuple[str, ...] = (SINGLE,)  # day keys of the result, or (SINGLE,) when reduced
    context: dict | None = None  # caller facts for processes (user_id, files_root)
    tile: int = 512  # tile side of the result COG (and of the scratch block files)
    overviews: tuple[int, ...] = ()  # decimation factors of the COG overviews made by blocks
    #: the owner's stored processes the graph calls (as read when the job started)
    processes: dict = field(default_factory=dict)
    #: the exact pixel size of a view on the files' grid (:attr:`View.pixel`)
    pixel: tuple[float, float] | None = None
    #: the job's store (:func:`tileserver.storage.store_for` arguments) and the key of the
    #: work directory in it; ``""``: the work directory is all there is
    store_url: str = ""
    store_opts: tuple[tuple[str, Any], ...] = ()
    work_key: str = ""

    @property
    def store(self) -> Store:
        """The job's store, as this process opens it."""
        return store_for(self.store_url, **dict(self.store_opts))

    @property
    def shared(self) -> bool:
        """Whether the work directory is the store's own folder (the default store on the
        disk every worker shares): nothing to upload or download then."""
        return not self.store_url or self.store.local_path(self.work_key) is not None

    def key_of(self, path: str | Path) -> str:
        """The store key of a file of the work directory."""
        return join(self.work_key, Path(path).relative_to(self.work_dir).as_posix())

    def publish(self, *paths: Path) -> None:
        """Put finished files of this worker in the store, in order (the last one says
        that the others are there), and drop the local copies."""
        if self.shared:
            return
        store = self.store
        for path in paths:
            if path.exists():
                store.put_file(self.key_of(path), path)
                path.unlink()

    def fetch(self, path: Path) -> Path:
        """A file of the work directory on this worker's disk (downloaded from the store
        when another worker wrote it)."""
        if self.shared or path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            self.store.download(self.key_of(path), tmp)
        return path

    def finished(self, prefix: str = "blocks") -> set[str]:
        """The keys of the files in the work directory's folder ``prefix`` (one listing)."""
        if not self.store_url:
            folder = Path(self.work_dir) / prefix
            return {self.key_of(p) for p in folder.iterdir()} if folder.is_dir() else set()
        return {o.key for o in self.store.list(join(self.work_key, prefix))}

    def done(self, path: Path, finished: set[str]) -> bool:
        """Whether the work file ``path`` is in the store (``finished``: :meth:`finished`)."""
        return self.key_of(path) in finished

    @property
    def view(self) -> View:
        """The native view of the whole job."""
        return View(self.crs, self.bounds, self.width, self.height, self.pixel)

    @property
    def blocks_dir(self) -> Path:
        """Where finished blocks are kept."""
        return Path(self.work_dir) / "blocks"

    def writable(self, folder: Path) -> Path:
        """``folder`` of the work directory, for a task to write into. On the shared disk
        the driver makes the work directory before it submits tasks: a task never brings
        back one that a delete or cancel removed meanwhile (its files would stay forever),
        it raises :class:`WorkGone`. A worker's own scratch folder is made as needed."""
        if self.shared:
            if not Path(self.work_dir).is_dir():
                raise WorkGone(f"the work directory of job {self.job_id} is gone "
                               "(deleted or canceled)")
            folder.mkdir(exist_ok=True)
        else:
            folder.mkdir(parents=True, exist_ok=True)
        return folder

    def grid(self) -> tuple[int, int]:
        """``(rows, cols)`` of blocks."""
        return -(-self.height // self.block), -(-self.width // self.block)

    def all_blocks(self) -> list[tuple[int, int]]:
        """Every block index, row-major."""
        rows, cols = self.grid()
        return [(r, c) for r in range(rows) for c in range(cols)]

    @property
    def format(self) -> OutputFormat:
        """The output format of the result."""
        return formats.FORMATS[self.fmt]

    @property
    def cog_parts(self) -> bool:
        """Whether the blocks compress their own tiles of the result COG (values written
        as a COG); styled and other formats are mosaicked from uncompressed blocks."""
        writer = self.format.batch if self.mode == "float" else None
        return writer is not None and writer.cog

    @property
    def levels(self) -> tuple[int, ...]:
        """Decimation factors of the result's levels: 1 (full resolution), then overviews."""
        return (1, *self.overviews)

    def tiled_by_blocks(self, factor: int) -> bool:
        """Whether every block covers whole tiles of the level ``factor`` (then the block
        compresses them; otherwise the final step compresses the level)."""
        return self.cog_parts and self.block % (factor * self.tile) == 0

    def block_path(self, row: int, col: int) -> Path:
        """The file whose existence says that a block is finished (written last)."""
        if self.cog_parts:
            return self.blocks_dir / f"r{row:05d}_c{col:05d}.json"
        return self.scratch_path(row, col)

    def scratch_path(self, row: int, col: int, factor: int = 1) -> Path:
        """Uncompressed values of a block (``factor`` > 1: its part of that overview
        level), when the final step assembles them."""
        suffix = "" if factor == 1 else f"_o{factor}"
        return self.blocks_dir / f"r{row:05d}_c{col:05d}{suffix}.tif"

    def values_path(self, row: int, col: int) -> Path:
        """The raw values of a block in the levels it does not cover whole tiles of."""
        return self.blocks_dir / f"r{row:05d}_c{col:05d}.values"

    def tiles_path(self, row: int, col: int) -> Path:
        """The compressed COG tiles of a block (every layer and level tiled by blocks)."""
        return self.blocks_dir / f"r{row:05d}_c{col:05d}.tiles"

    def strips(self, factor: int) -> list[Window]:
        """Tile-aligned windows (one tile row, at most :data:`STRIP_TILES` tiles) that
        cover the level ``factor``: the parts of a level that no block covers whole
        tiles of, each compressed by a task of its own (:func:`run_strip`)."""
        tile = self.tile
        width, height = -(-self.width // factor), -(-self.height // factor)
        span = STRIP_TILES * tile
        return [Window(x, y, min(span, width - x), min(tile, height - y))
                for y in range(0, height, tile) for x in range(0, width, span)]

    def all_strips(self) -> list[tuple[int, int]]:
        """``(factor, index)`` of every strip of the levels the blocks do not tile."""
        if not self.cog_parts:
            return []
        return [(f, i) for f in self.levels if not self.tiled_by_blocks(f)
                for i in range(len(self.strips(f)))]

    def strip_blocks(self, factor: int, index: int) -> list[tuple[int, int]]:
        """The blocks whose values a strip needs (pixel ``j`` of the level is pixel
        ``j * factor`` of the full grid)."""
        win = self.strips(factor)[index]
        rows, cols = self.grid()
        r0, r1 = int(win.row_off) * factor // self.block, \
            (int(win.row_off + win.height) - 1) * factor // self.block
        c0, c1 = int(win.col_off) * factor // self.block, \
            (int(win.col_off + win.width) - 1) * factor // self.block
        return [(r, c) for r in range(r0, min(r1, rows - 1) + 1)
                for c in range(c0, min(c1, cols - 1) + 1)]

    def strip_path(self, factor: int, index: int, suffix: str = ".json") -> Path:
        """The file that says a strip is finished (``.tiles``: its compressed tiles)."""
        return self.blocks_dir / f"o{factor:03d}_s{index:05d}{suffix}"

    def level_window(self, row: int, col: int, factor: int) -> Window:
        """The pixels of a block in the level ``factor`` (the block itself at 1)."""
        return self.block_window(row, col) if factor == 1 else \
            self.overview_window(row, col, factor)

    def overview_window(self, row: int, col: int, factor: int) -> Window:
        """The pixels of the overview level ``factor`` that a block provides: pixel ``j``
        of the level is pixel ``j * factor`` of the full grid (GDAL's nearest rule)."""
        win = self.block_window(row, col)
        x0, y0 = -(-int(win.col_off) // factor), -(-int(win.row_off) // factor)
        x1 = -(-int(win.col_off + win.width) // factor)
        y1 = -(-int(win.row_off + win.height) // factor)
        return Window(x0, y0, x1 - x0, y1 - y0)

    def block_window(self, row: int, col: int) -> Window:
        """Pixel window of a block in the native view."""
        x0, y0 = col * self.block, row * self.block
        return Window(x0, y0, min(self.block, self.width - x0), min(self.block, self.height - y0))

    def block_view(self, row: int, col: int) -> View:
        """The view a block is evaluated on: its window of the native grid."""
        win = self.block_window(row, col)
        return self.view.window(int(win.col_off), int(win.row_off), int(win.width),
                                int(win.height))


_ENGINES: dict[tuple, Engine] = {}
_ENGINES_LOCK = threading.Lock()


#: Arrays up to this size come from the heap (glibc's default maps anything above 128 KiB
#: to 32 MiB, adaptively, straight from the kernel and back); 32 MiB is glibc's maximum.
HEAP_ARRAYS = 32 * 1024 * 1024
#: Free heap memory a worker keeps for the next block instead of returning it at once
#: (Dask's nanny sets 64 KiB, made for long-lived Dask arrays, not for block buffers).
HEAP_KEEP = 512 * 1024 * 1024


def reuse_block_memory() -> bool:
    """Let a worker reuse the buffers of its previous block (reads, cube, NDVI...) rather
    than get fresh pages from the kernel for each block: on 2 cores the page faults of
    fresh pages cost as much system time as the block's computation (measured: 4.8 s of
    system time for 6.7 s of user time on 64 blocks, 1.6 s once reused). glibc only;
    returns whether it applied. The heap stays bounded by the largest block."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(libc.mallopt(m_mmap_threshold, HEAP_ARRAYS)
                and libc.mallopt(m_trim_threshold, HEAP_KEEP))


def worker_engine(spec: JobSpec) -> Engine:
    """The engine of this worker process for the job's catalogs (built once, then reused)."""
    key = (spec.catalogs, spec.engine_opts)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            if not _ENGINES:
                reuse_block_memory()
            opts = dict(spec.engine_opts)
            udf = opts.pop("udf", None)
            if udf is not None:
                # this worker's own sandbox, the same isolation as in the server; its
                # processes start with the first UDF call of a block
                from tileserver.udf import UdfRunner  # noqa: PLC0415

                opts["udf"] = UdfRunner(*udf)
            engine = Engine(Catalog.load(list(spec.catalogs)), NodeCache(0), **opts)
            _ENGINES[key] = engine
        return engine


def _write_atomic(target: Path, data: np.ndarray, profile: dict, tags: dict) -> None:
    with atomic_file(target) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            dst.update_tags(**tags)


def quiet_task(task):
    """Run a task inside one rasterio environment without a boto3 session
    (:func:`~tileserver.data.stored.quiet_env`: with an object store's ``AWS_*`` variables
    set, rasterio would otherwise build a boto3 session for each of its calls)."""

    @functools.wraps(task)
    def run(*args, **kwargs):
        with quiet_env():
            return task(*args, **kwargs)

    return run


@quiet_task
def run_block(spec: JobSpec, row: int, col: int) -> str:
    """Evaluate one block and write its files; returns the name of the last one.

    Values written as a COG (``spec.cog_parts``): see :func:`_write_parts`. Otherwise
    the block file holds one layer per date of the block (float32 bands, NaN nodata, or
    the styled RGBA rendering); its ``TILESERVER_LAYERS`` tag lists the layers in order.
    Its parts of the overview levels (``spec.overviews``) are written first, so that the
    block file exists only when everything of the block is there.
    """
    engine = worker_engine(spec)
    graph = engine.parse(spec.graph, processes=spec.processes)
    view = spec.block_view(row, col)
    spec.writable(spec.blocks_dir)
    cube = engine.evaluate(graph, view, purpose="batch", context=spec.context)
    if not isinstance(cube, Cube):
        raise TypeError("the graph did not return an image for a block")
    layers = [SINGLE] if cube.times is None else [day_key(t) for t in cube.times]
    if spec.cog_parts:
        values = dict(zip(layers, cube.data, strict=True))
        return _write_parts(spec, row, col, values, len(cube.bands), cube.bands)
    if spec.mode == "rgba":
        assert spec.style is not None
        stacks = [np.moveaxis(render_rgba(cube.data[i], spec.style), -1, 0)
                  for i in range(len(layers))]
        dtype, nodata = "uint8", None
    else:
        stacks = [cube.data[i] for i in range(len(layers))]
        dtype, nodata = "float32", float("nan")
    per_layer = 4 if spec.mode == "rgba" else len(cube.bands)
    data = np.concatenate(stacks) if stacks else np.zeros((per_layer, 1, 1), dtype)
    count = data.shape[0]
    target = spec.block_path(row, col)
    tags = {"TILESERVER_LAYERS": json.dumps(layers if stacks else []),
            "TILESERVER_PER_LAYER": str(per_layer)}
    if spec.mode != "rgba":  # the values' statistics and band names, for the STAC item
        tags[STATS_TAG] = json.dumps({layer: [s.to_json() for s in summaries(stack)]
                                      for layer, stack in zip(layers, stacks, strict=True)})
        tags[BANDS_TAG] = json.dumps(list(cube.bands))
    if not stacks:
        profile = dict(driver="GTiff", width=1, height=1, count=count, dtype=dtype,
                       nodata=nodata)
        _write_atomic(target, data.astype(dtype, copy=False), profile, tags)
        spec.publish(target)
        return target.name
    data = data.astype(dtype, copy=False)
    for factor in spec.overviews:
        win = spec.overview_window(row, col, factor)
        if win.width <= 0 or win.height <= 0:
            continue
        part = _decimate(spec, row, col, data, factor)
        _write_atomic(spec.scratch_path(row, col, factor), part,
                      _scratch_profile(part, dtype, nodata, spec.tile), {})
    # uncompressed, tiled like the COG: cheap to write, and read once by the mosaic
    _write_atomic(target, data, {**_scratch_profile(data, dtype, nodata, spec.tile),
                                 "crs": view.crs, "transform": view.transform}, tags)
    spec.publish(*(spec.scratch_path(row, col, f) for f in spec.overviews), target)
    return target.name


def _decimate(spec: JobSpec, row: int, col: int, data: np.ndarray, factor: int) -> np.ndarray:
    """A block's values (bands, rows, cols) in the level ``factor``: pixel ``j`` of the level
    is pixel ``j * factor`` of the full grid (GDAL's nearest rule)."""
    if factor == 1:
        return data
    win, block = spec.overview_window(row, col, factor), spec.block_window(row, col)
    dy = int(win.row_off) * factor - int(block.row_off)
    dx = int(win.col_off) * factor - int(block.col_off)
    return np.ascontiguousarray(data[:, dy::factor, dx::factor])


def _write_parts(spec: JobSpec, row: int, col: int, values: dict[str, np.ndarray],
                 per_layer: int, bands: tuple[str, ...] = ()) -> str:
    """The files of a block whose values become COGs, one per layer of the job:

    - ``.tiles``: its compressed tiles of every level it covers whole tiles of
      (:meth:`JobSpec.tiled_by_blocks`: the full resolution and the first overviews when
      blocks are a multiple of the tile size), compressed by GDAL's COG driver with the
      result's options, as they will be in the result (:mod:`~tileserver.render.cog`);
    - ``.values``: the raw float32 values of the other levels (level by level, layer by
      layer: ``per_layer`` x rows x cols each), that the strip tasks compress;
    - ``.json``, last: what is where (the block is finished when it exists), with the
      band names and each layer's band statistics of the block (:mod:`~tileserver.render.
      statistics`: merged into the result's GDAL ``STATISTICS_*`` and STAC statistics).

    A layer of the job that the block has no date of is all nodata.
    """
    options = cog.cog_options(spec.output)
    block = spec.block_window(row, col)
    shape = (per_layer, int(block.height), int(block.width))
    body = bytearray()
    tiles: dict[str, list] = {}
    scratch: dict[int, list[np.ndarray]] = {f: [] for f in spec.levels
                                            if not spec.tiled_by_blocks(f)}
    stats: dict[str, list] = {}
    for layer in spec.layers:
        data = values.get(layer)
        if data is None:
            data = np.full(shape, np.nan, np.float32)
        data = data.astype(np.float32, copy=False)
        stats[layer] = [summary.to_json() for summary in summaries(data)]
        for factor in spec.levels:
            win = spec.level_window(row, col, factor)
            if win.width <= 0 or win.height <= 0:
                continue
            part = _decimate(spec, row, col, data, factor)
            if factor in scratch:
                scratch[factor].append(part)
                continue
            tiles[f"{layer}/{factor}"], _ = _append_tiles(body, part, options)
    if tiles:
        _write_bytes_atomic(spec.tiles_path(row, col), body)
    offsets: dict[str, int] = {}
    if any(scratch.values()):
        with atomic_file(spec.values_path(row, col)) as tmp, open(tmp, "wb") as fh:
            for factor, parts in scratch.items():
                if parts:
                    offsets[str(factor)] = fh.tell()
                    for part in parts:
                        fh.write(memoryview(np.ascontiguousarray(part)).cast("B"))
    target = spec.block_path(row, col)
    _write_bytes_atomic(target, json.dumps({"per_layer": per_layer, "tiles": tiles,
                                            "values": offsets, "bands": list(bands),
                                            "stats": stats}).encode())
    spec.publish(spec.tiles_path(row, col), spec.values_path(row, col), target)
    return target.name


def _append_tiles(body: bytearray, data: np.ndarray, options: dict
                  ) -> tuple[list[tuple[int, int]], int]:
    """Compress ``data``'s COG tiles (float32, NaN nodata) and append them to ``body``:
    ``([(offset in body, size)] per tile, tile columns)``."""
    encoded, entries, cols = cog.compress_part(data, "float32", float("nan"), options)
    table = []
    for offset, size in entries:
        table.append((len(body), size))
        body += encoded[offset:offset + size]
    return table, cols


def _write_bytes_atomic(target: Path, data: bytes | bytearray) -> None:
    with atomic_file(target) as tmp:
        tmp.write_bytes(data)


def _scratch_profile(data: np.ndarray, dtype: str, nodata, tile: int) -> dict:
    count, height, width = data.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=dtype,
                   nodata=nodata)
    if width > tile or height > tile:
        profile.update(tiled=True, blockxsize=tile, blockysize=tile)
    return profile


@quiet_task
def run_strip(spec: JobSpec, factor: int, index: int) -> str:
    """Compress the tiles of one strip of a level that no block covers whole tiles of,
    from the blocks' uncompressed values of that level, for every layer; writes
    ``.tiles`` then ``.json`` (the strip is finished when it exists)."""
    win = spec.strips(factor)[index]
    spec.writable(spec.blocks_dir)
    blocks = {b: json.loads(spec.fetch(spec.block_path(*b)).read_text())
              for b in spec.strip_blocks(factor, index)}
    per_layer = next(iter(blocks.values()))["per_layer"]
    options = cog.cog_options(spec.output)
    body = bytearray()
    tiles: dict[str, list] = {}
    cols = 0
    x0, y0 = int(win.col_off), int(win.row_off)
    target = spec.strip_path(factor, index)
    try:
        for li, layer in enumerate(spec.layers):
            data = np.full((per_layer, int(win.height), int(win.width)), np.nan, np.float32)
            for (row, col), manifest in blocks.items():
                part = spec.level_window(row, col, factor)
                left, top = max(x0, int(part.col_off)), max(y0, int(part.row_off))
                right = min(x0 + int(win.width), int(part.col_off + part.width))
                bottom = min(y0 + int(win.height), int(part.row_off + part.height))
                if right <= left or bottom <= top:
                    continue
                shape = (per_layer, int(part.height), int(part.width))
                size = shape[0] * shape[1] * shape[2]
                values = np.fromfile(spec.fetch(spec.values_path(row, col)), np.float32, size,
                                     offset=manifest["values"][str(factor)] + li * size * 4)
                if values.size != size:
                    raise OSError(f"{spec.values_path(row, col).name} is truncated")
                values = values.reshape(shape)
                data[:, top - y0:bottom - y0, left - x0:right - x0] = values[
                    :, top - int(part.row_off):bottom - int(part.row_off),
                    left - int(part.col_off):right - int(part.col_off)]
            tiles[layer], cols = _append_tiles(body, data, options)
        _write_bytes_atomic(spec.strip_path(factor, index, ".tiles"), body)
        _write_bytes_atomic(target, json.dumps({"cols": cols, "tiles": tiles}).encode())
        spec.publish(spec.strip_path(factor, index, ".tiles"), target)
        if not spec.shared:  # the blocks' files this worker downloaded
            for row, col in blocks:
                spec.block_path(row, col).unlink(missing_ok=True)
                spec.values_path(row, col).unlink(missing_ok=True)
    except OSError as exc:
        raise OSError(f"cannot write the tiles of level 1/{factor} of the result (strip "
                      f"{index}): {_gdal_message(exc)}; {_room(target.parent)}") from exc
    return target.name


def _gdal_message(exc: Exception) -> str:
    """The text of a GDAL error raised by rasterio (``CPLE_...Error(code, n, text)``)."""
    args: tuple = getattr(exc, "args", ())
    return str(args[2]) if len(args) == 3 else str(exc)


def _room(folder: Path) -> str:
    """What a writer may still write in ``folder``: free space of its file system, and
    this process's file size limit when there is one (GDAL's write errors do not say)."""
    free = shutil.disk_usage(folder).free
    words = f"{free / 2**20:.1f} MiB free on the file system of {folder}"
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if soft != resource.RLIM_INFINITY:
        words += f"; files larger than {soft} bytes are refused (file size limit)"
    return words
