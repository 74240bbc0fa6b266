"""The result files of a batch job, written by its last task on a worker: one
Cloud-Optimized GeoTIFF per date assembled from the blocks' parts (or another format's file
from the blocks through VRTs), a non-raster result encoded once, and the STAC item that
describes them.

The last task writes the files on its worker's disk (the job's work directory), then puts
them in the job's store (:mod:`tileserver.storage`) under ``<work>/out-<run>/``: on the
server's disk that is where they already are; on an object store each file is uploaded,
multipart when big. The job's driver then publishes the folder as ``results/<job_id>/``.
How far the assembly is goes to the store too (:class:`Progress`), where the driver reads it.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pystac
import rasterio
from lxml import etree
from rasterio.windows import Window
from shapely.geometry import box, mapping

from tileserver.data import stored
from tileserver.datacube.bounds import transform_bounds
from tileserver.jobs.batch_tasks import (
    BANDS_TAG,
    SINGLE,
    STATS_TAG,
    JobSpec,
    _gdal_message,
    _room,
    quiet_task,
    worker_engine,
)
from tileserver.jobs.empty import empty_result, empty_statistics
from tileserver.render import cog, formats
from tileserver.render.formats import encode
from tileserver.render.statistics import Summary, merged, raster_band
from tileserver.storage import Store

# -- mosaic ------------------------------------------------------------------------------


def _vrt(spec: JobSpec, sources: list[tuple[Path, int, Window]], nbands: int, dtype: str,
         factor: int = 1, overviews: tuple[Path, ...] = ()) -> bytes:
    """A VRT of one layer from the block files (``sources``: file, first band, window), at
    the overview level ``factor``, listing the VRTs of its ``overviews`` levels."""
    view = spec.view
    width, height = -(-view.width // factor), -(-view.height // factor)
    root = etree.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    etree.SubElement(root, "SRS").text = view.crs.to_wkt()
    etree.SubElement(root, "GeoTransform").text = ", ".join(
        repr(v) for v in (view.transform * view.transform.scale(factor)).to_gdal())
    gdal_type = {"float32": "Float32", "uint8": "Byte"}[dtype]
    for b in range(nbands):
        band = etree.SubElement(root, "VRTRasterBand", dataType=gdal_type, band=str(b + 1))
        if dtype == "float32":
            etree.SubElement(band, "NoDataValue").text = "nan"
        elif nbands == 4:
            etree.SubElement(band, "ColorInterp").text = ("Red", "Green", "Blue", "Alpha")[b]
        for path, first, win in sources:
            src = etree.SubElement(band, "SimpleSource")
            etree.SubElement(src, "SourceFilename", relativeToVRT="0").text = str(path)
            etree.SubElement(src, "SourceBand").text = str(first + b)
            rect = {"xOff": "0", "yOff": "0", "xSize": str(int(win.width)),
                    "ySize": str(int(win.height))}
            etree.SubElement(src, "SrcRect", **rect)
            etree.SubElement(src, "DstRect", **{**rect, "xOff": str(int(win.col_off)),
                                                "yOff": str(int(win.row_off))})
        for level in overviews:
            ovr = etree.SubElement(band, "Overview")
            etree.SubElement(ovr, "SourceFilename", relativeToVRT="0").text = str(level)
            etree.SubElement(ovr, "SourceBand").text = str(b + 1)
    return etree.tostring(root, pretty_print=True)


def _layer_sources(spec: JobSpec) -> tuple[dict[str, list], int, dict[str, list], list]:
    """Per layer, the ``(block file, first band, window)`` of every block; the bands per
    layer; per layer the band statistics of the values (empty for styled results); the
    band names."""
    sources: dict[str, list] = {layer: [] for layer in spec.layers}
    stats: dict[str, list] = {layer: [] for layer in spec.layers}
    per_layer = 0
    bands: list = []
    for row, col in spec.all_blocks():
        path = spec.block_path(row, col)
        with rasterio.open(path) as src:
            tags = src.tags()
        layers = json.loads(tags["TILESERVER_LAYERS"])
        per_layer = int(tags["TILESERVER_PER_LAYER"])
        bands = json.loads(tags.get(BANDS_TAG, "[]")) or bands
        block_stats = json.loads(tags.get(STATS_TAG, "{}"))
        for i, layer in enumerate(layers):
            if layer in sources:
                sources[layer].append((row, col, 1 + i * per_layer))
        if STATS_TAG in tags:
            win = spec.block_window(row, col)
            for layer in stats:
                # a layer the block has no date of is nodata there
                stats[layer].append([Summary.from_json(v) for v in block_stats[layer]]
                                    if layer in block_stats else
                                    [Summary(pixels=int(win.width * win.height))] * per_layer)
    return sources, per_layer, {k: merged(v) for k, v in stats.items()}, bands


#: GDAL's block cache (MB) while a result is written: a few tile rows of the widest
#: result in flight between the reading and the compressing threads, whatever the extent.
MOSAIC_CACHE_MB = 256


@quiet_task
def mosaic(spec: JobSpec, out_dir: str, times: dict[str, str] | None = None,
           span: tuple[str, str] | None = None) -> list[dict]:
    """Assemble the finished blocks into the result files and a STAC item in ``out_dir``.

    Returns the assets: ``[{"name", "type", "layer"}]``. ``times`` maps layer keys to
    ISO datetimes and ``span`` is the time range of the data (for the STAC item). A
    failure (a full disk...) removes ``out_dir`` and raises.
    """
    out = spec.writable(Path(out_dir))
    try:
        _fetch_parts(spec)
        if spec.cog_parts:
            assets = _assemble_results(spec, out, Progress(spec.store, progress_key(spec, out)))
        else:
            assets = _write_results(spec, out)
        write_item(spec, out, assets, times or {}, span)
        _put_results(spec, out)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    # the statistics and band names are in the files and the STAC item, not the job's row;
    # a result without any valid value says so (the job's log warns)
    why = empty_statistics([Summary.from_json(v).valid for a in assets
                            for v in a.get("stats") or ()] if all(
                                a.get("stats") for a in assets) else [])
    return [{**{k: v for k, v in a.items() if k not in ("stats", "bands")},
             **({"warning": why} if why else {})} for a in assets]


def _fetch_parts(spec: JobSpec) -> None:
    """Every part the blocks and strips put in the store, on this worker's disk."""
    if spec.shared:
        return
    spec.blocks_dir.mkdir(parents=True, exist_ok=True)
    for key in sorted(spec.finished("blocks")):
        spec.fetch(Path(spec.work_dir) / key[len(spec.work_key) + 1:])


def _put_results(spec: JobSpec, out: Path) -> None:
    """The result files in the store under the key of ``out`` (uploaded, multipart when
    big, from a worker that does not share the store's disk; then its work directory goes)."""
    if spec.shared:
        return
    store = spec.store
    try:
        for path in sorted(out.iterdir()):
            store.put_file(spec.key_of(path), path)
    except BaseException:
        store.delete_prefix(spec.key_of(out))
        raise
    finally:
        shutil.rmtree(spec.work_dir, ignore_errors=True)


def progress_key(spec: JobSpec, out_dir: str | Path) -> str:
    """Where the final task of a job says how far it is (a fraction, read by the driver):
    ``<out_dir>.progress`` in the job's store."""
    return spec.key_of(f"{out_dir}.progress")


class Progress:
    """Writes the fraction of the work done to the store, at most every ``every`` seconds
    (the driver of the job reads it)."""

    def __init__(self, store: Store, key: str, every: float = 0.25):
        self.store = store
        self.key = key
        # a request to an object store each time: less often there
        self.every = every if store.local_path(key) is not None else 4 * every
        self._last = 0.0

    def __call__(self, done: float, total: float) -> None:
        """``done`` of ``total`` units of work are done."""
        clock = time.monotonic()
        if clock - self._last < self.every and done < total:
            return
        self._last = clock
        self.store.put(self.key, f"{done / max(total, 1):.4f}".encode())


def read_progress(store: Store, key: str) -> float:
    """The fraction a :class:`Progress` wrote (0 when there is none yet, or the store
    cannot say now)."""
    try:
        return min(1.0, max(0.0, float(store.get(key).decode())))
    except Exception:  # noqa: BLE001 - a progress figure is never worth failing a job
        return 0.0


def _assemble_results(spec: JobSpec, out: Path, progress: Progress) -> list[dict]:
    """Each layer's COG from the compressed tiles of the blocks and of the strips (see
    :mod:`~tileserver.render.cog`)."""
    manifests = {(r, c): json.loads(spec.block_path(r, c).read_text())
                 for r, c in spec.all_blocks()}
    strips = {s: json.loads(spec.strip_path(*s).read_text()) for s in spec.all_strips()}
    per_layer = next(iter(manifests.values()))["per_layer"] if manifests else 1
    options = cog.cog_options(spec.output)
    tile = spec.tile
    tiles = sum(-(-spec.width // (f * tile)) * -(-spec.height // (f * tile))
                for f in spec.levels)
    total = len(spec.layers) * tiles
    assets = []
    for index, layer in enumerate(spec.layers):
        stem = "result" if layer == SINGLE else f"result_{layer}"
        target = out / f"{stem}.tif"
        levels: list[list[cog.Part]] = []
        for factor in spec.levels:
            if spec.tiled_by_blocks(factor):
                levels.append([
                    cog.Part(int(win.row_off) // tile, int(win.col_off) // tile,
                                  -(-int(win.width) // tile),
                                  tuple(map(tuple, m["tiles"][f"{layer}/{factor}"])),
                                  str(spec.tiles_path(r, c)))
                    for (r, c), m in manifests.items()
                    if (win := spec.level_window(r, c, factor)).width > 0 and win.height > 0])
            else:
                levels.append([
                    cog.Part(int(win.row_off) // tile, int(win.col_off) // tile,
                                  strips[(factor, i)]["cols"],
                                  tuple(map(tuple, strips[(factor, i)]["tiles"][layer])),
                                  str(spec.strip_path(factor, i, ".tiles")))
                    for i, win in enumerate(spec.strips(factor))])
        layer_stats = merged([Summary.from_json(v) for v in m["stats"][layer]]
                             for m in manifests.values())
        bands = next((m["bands"] for m in manifests.values() if m.get("bands")), [])
        try:
            # the COG structure: the same grid, levels and options, without any data, but
            # with the band names and the statistics of the values its tiles will hold
            view = spec.view
            cog.write_template(
                target, crs=view.crs, transform=view.transform, width=view.width,
                height=view.height, count=per_layer, dtype="float32", nodata=float("nan"),
                factors=spec.overviews, cog_options=options,
                descriptions=[str(b) for b in bands][:per_layer],
                band_metadata=[s.gdal_metadata() for s in layer_stats])
            base = index * tiles
            cog.assemble(target, levels,
                              lambda n, _total, base=base: progress(base + n, total))
        except Exception as exc:
            raise OSError(f"cannot write {target.name}: {_gdal_message(exc)}; "
                          f"{_room(out)}") from exc
        for aux in out.glob(f"{target.name}.aux.xml"):
            aux.unlink()
        assets.append({"name": target.name, "type": cog.COG_MEDIA_TYPE, "layer": layer,
                       "bands": list(bands), "stats": [s.to_json() for s in layer_stats]})
    return assets


def _write_results(spec: JobSpec, out: Path) -> list[dict]:
    sources, per_layer, stats, bands = _layer_sources(spec)
    if not per_layer:
        per_layer = 4 if spec.mode == "rgba" else 1
    dtype = "uint8" if spec.mode == "rgba" else "float32"
    writer = spec.format.batch
    if writer is None:
        raise ValueError(f"batch jobs do not write {spec.fmt}")
    nbands = per_layer
    if spec.mode == "rgba" and writer.styled_bands:
        nbands = writer.styled_bands
    assets = []
    for layer, blocks in sources.items():
        stem = "result" if layer == SINGLE else f"result_{layer}"
        vrts: list[Path] = []
        for factor in spec.overviews:  # the levels the blocks decimated in memory
            srcs = [(spec.scratch_path(r, c, factor), first, spec.overview_window(r, c, factor))
                    for r, c, first in blocks
                    if spec.scratch_path(r, c, factor).exists()]
            vrts.append(Path(spec.work_dir) / f"{stem}_o{factor}.vrt")
            vrts[-1].write_bytes(_vrt(spec, srcs, nbands, dtype, factor))
        srcs = [(spec.scratch_path(r, c), first, spec.block_window(r, c))
                for r, c, first in blocks]
        vrt_path = Path(spec.work_dir) / f"{stem}.vrt"
        vrt_path.write_bytes(_vrt(spec, srcs, nbands, dtype, overviews=tuple(vrts)))
        vrts.append(vrt_path)
        target = out / f"{stem}.{spec.format.extension}"
        try:
            with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_CACHEMAX=MOSAIC_CACHE_MB):
                writer.write(vrt_path, target, formats.output_params(spec.output))
        except Exception as exc:
            raise OSError(f"cannot write {target.name}: {_gdal_message(exc)}; "
                          f"{_room(out)}") from exc
        finally:
            for path in vrts:
                path.unlink(missing_ok=True)
        for aux in out.glob(f"{target.name}.aux.xml"):
            aux.unlink()
        asset = {"name": target.name, "type": writer.media_type, "layer": layer}
        if stats.get(layer):
            asset.update(bands=bands, stats=[s.to_json() for s in stats[layer]])
        assets.append(asset)
    return assets


@quiet_task
def run_whole(spec: JobSpec, out_dir: str) -> list[dict]:
    """A graph whose result is not an image (e.g. a table): evaluate once, encode, store."""
    engine = worker_engine(spec)
    graph = engine.parse(spec.graph, processes=spec.processes)
    result = engine.evaluate(graph, engine.native_view(graph), purpose="batch",
                             context=spec.context)
    encoded = encode(result, spec.output)
    why = empty_result(result)
    out = spec.writable(Path(out_dir))
    name = f"result.{encoded.extension}"
    (out / name).write_bytes(encoded.content)
    assets = [{"name": name, "type": encoded.media_type, "layer": SINGLE}]
    write_item(spec, out, assets, {})
    _put_results(spec, out)
    return [{**a, "warning": why} for a in assets] if why else assets


# -- STAC ----------------------------------------------------------------------------------


def write_item(spec: JobSpec, out: Path, assets: list[dict], times: dict[str, str],
               span: tuple[str, str] | None = None) -> Path:
    """``item.json``: a STAC item with one asset per result file (relative hrefs)."""
    view = spec.view
    bbox = list(transform_bounds(view.crs, "EPSG:4326", *view.bounds, densify_pts=21))
    dates = sorted(datetime.fromisoformat(t) for t in (*times.values(), *(span or ())))
    props: dict[str, Any] = {"title": f"Result of batch job {spec.job_id}",
                             "tileserver:block_size": spec.block,
                             # what tiles and coverages check before serving these files
                             stored.FINGERPRINT: stored.fingerprint(spec.graph, spec.output,
                                                                   spec.processes),
                             stored.VALUES: spec.mode}
    when = None
    if len(dates) == 1:
        when = dates[0]
    elif dates:
        props["start_datetime"] = dates[0].isoformat()
        props["end_datetime"] = dates[-1].isoformat()
    else:
        when = datetime.now().astimezone()
    item = pystac.Item(spec.job_id, mapping(box(*bbox)), bbox, when, props)
    epsg = view.crs.to_epsg()
    writer = spec.format.batch if spec.mode != "whole" else None
    for a in assets:
        extra: dict[str, Any] = {}
        if writer is not None and writer.proj:
            extra = {"proj:shape": [view.height, view.width],
                     "proj:transform": list(view.transform)[:6]}
            if epsg:
                extra["proj:code"] = f"EPSG:{epsg}"
            else:
                extra["proj:wkt2"] = view.crs.to_wkt()
        if a["layer"] in times:
            extra["datetime"] = times[a["layer"]]
        if writer is not None and writer.proj:
            extra["proj:bbox"] = list(view.bounds)
        if a.get("stats"):  # what viewers stretch the values by
            names = a.get("bands") or []
            extra["raster:bands"] = [
                raster_band(Summary.from_json(v), names[i] if i < len(names) else None)
                for i, v in enumerate(a["stats"])]
        extra["file:size"] = (out / a["name"]).stat().st_size
        item.add_asset(a["name"].rsplit(".", 1)[0], pystac.Asset(
            a["name"], media_type=a["type"], roles=["data"], extra_fields=extra))
    item.stac_extensions += [
        "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
        "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        "https://stac-extensions.github.io/file/v2.1.0/schema.json"]
    path = out / "item.json"
    path.write_text(json.dumps(item.to_dict(include_self_link=False), indent=2))
    return path
