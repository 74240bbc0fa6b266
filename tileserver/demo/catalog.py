"""Writing the Sentinel-2-like demo catalog: its COGs (in parallel threads, with progress),
its STAC JSON (footprints, projection and raster fields) and the completeness marker;
:func:`demo_catalog_paths` adds the Sentinel-1-like collection."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from tileserver.demo.files import atomic_stac_io, dir_lock, is_complete
from tileserver.demo.products import (
    CATALOG_ID,
    EO_SCHEMA,
    GENERATOR_VERSION,
    MARKER_NAME,
    PRODUCTS,
    PROJ_SCHEMA,
    RASTER_SCHEMA,
    BandSpec,
    ItemSpec,
    ProductSpec,
    band_grid,
)
from tileserver.demo.progress import Progress
from tileserver.demo.s1 import write_s1_product
from tileserver.demo.synth import _band_array, _Cache
from tileserver.storage import atomic_file

log = logging.getLogger(__name__)


def write_band(path: pathlib.Path, arr: np.ndarray, p: ProductSpec, spec: BandSpec) -> None:
    """Write one band of a Sentinel-2-like item as its COG (512 px tiles, internal overviews:
    average, nearest for SCL; ZSTD with the horizontal predictor)."""
    transform, width, height = band_grid(p, spec.name)
    if arr.shape != (height, width):
        raise ValueError(f"{spec.name}: array shape {arr.shape} != grid {(height, width)}")
    from tileserver.render.cog import write_cog  # rasterio: imported when writing

    write_cog(path, arr.astype(spec.dtype, copy=False), crs=f"EPSG:{p.epsg}",
              transform=transform, nodata=0, dtype=spec.dtype, descriptions=[spec.name],
              tags={"PRODUCT": p.id, "SYNTHETIC": "yes",
                    "GENERATOR": f"tileserver.demo {GENERATOR_VERSION}"},
              resampling="nearest" if spec.name == "SCL" else "average",
              blocksize=512, compress="ZSTD", level=1, predictor=2, bigtiff="IF_SAFER")


def _footprint(p: ProductSpec, d: int) -> tuple[dict[str, Any], list[float]]:
    """WGS84 GeoJSON polygon and bbox of the valid data of an acquisition."""
    from rasterio.warp import transform as warp_transform

    xmin, ymin, xmax, ymax = p.bounds
    x_top = x_bottom = float(xmax)
    if d in p.nodata_strip:  # same slanted edge as in _make_state
        edge = 1.0 - p.nodata_strip[d]
        width = xmax - xmin
        x_top = xmin + width * (edge - 0.03)
        x_bottom = xmin + width * (edge + 0.03)
    corners = [(xmin, ymax), (xmin, ymin), (x_bottom, ymin), (x_top, ymax), (xmin, ymax)]
    xs: list[float] = []
    ys: list[float] = []
    n = 4
    for (x0, y0), (x1, y1) in zip(corners[:-1], corners[1:], strict=True):
        for k in range(n):
            xs.append(x0 + (x1 - x0) * k / n)
            ys.append(y0 + (y1 - y0) * k / n)
    lon, lat = warp_transform(f"EPSG:{p.epsg}", "EPSG:4326", xs, ys)
    ring = [[round(a, 7), round(b, 7)] for a, b in zip(lon, lat, strict=True)]
    ring.append(ring[0])
    bbox = [min(lon), min(lat), max(lon), max(lat)]
    bbox = [round(bbox[0], 7), round(bbox[1], 7), round(bbox[2], 7), round(bbox[3], 7)]
    return {"type": "Polygon", "coordinates": [ring]}, bbox


def _proj_fields(p: ProductSpec, res: int) -> dict[str, Any]:
    transform, width, height = band_grid(p, res)
    return {
        "proj:shape": [height, width],
        "proj:transform": [transform.a, transform.b, transform.c,
                           transform.d, transform.e, transform.f],
    }


def _build_catalog(root: pathlib.Path, cloud_covers: dict[tuple[str, int], float]) -> Any:
    import pystac

    from tileserver.render.cog import COG_MEDIA_TYPE  # rasterio: imported when writing

    catalog = pystac.Catalog(
        id=CATALOG_ID,
        title="tileserver demo catalog (synthetic)",
        description="SYNTHETIC demo data resembling Sentinel-2, written by tileserver.demo "
        f"(generator version {GENERATOR_VERSION}). Not real satellite imagery.",
    )
    for p in PRODUCTS.values():
        items = []
        bboxes = []
        for it in p.items:
            geom, bbox = _footprint(p, it.index)
            bboxes.append(bbox)
            finest = p.resolutions[0]
            props: dict[str, Any] = {
                "platform": "sentinel-2a",
                "constellation": "sentinel-2",
                "instruments": ["msi"],
                "gsd": finest,
                "eo:cloud_cover": cloud_covers[(p.id, it.index)],
                "proj:epsg": p.epsg,
                "proj:code": f"EPSG:{p.epsg}",
                **_proj_fields(p, finest),
            }
            item = pystac.Item(
                id=it.id, geometry=geom, bbox=bbox, datetime=it.datetime,
                properties=props, stac_extensions=[EO_SCHEMA, RASTER_SCHEMA, PROJ_SCHEMA],
            )
            item_dir = root / p.id / it.id
            for b in p.bands:
                extra: dict[str, Any] = {
                    "gsd": b.resolution,
                    "eo:bands": [b.eo_band()],
                    "raster:bands": [b.raster_band()],
                    "proj:epsg": p.epsg,
                    "proj:code": f"EPSG:{p.epsg}",
                    **_proj_fields(p, b.resolution),
                }
                item.add_asset(b.name, pystac.Asset(
                    href=str(item_dir / f"{b.name}.tif"), title=f"{b.name} - {b.description}",
                    media_type=COG_MEDIA_TYPE, roles=["data"], extra_fields=extra))
            items.append(item)
        extent = pystac.Extent(
            pystac.SpatialExtent([[min(b[0] for b in bboxes), min(b[1] for b in bboxes),
                                   max(b[2] for b in bboxes), max(b[3] for b in bboxes)]]),
            pystac.TemporalExtent([[p.datetimes[0], p.datetimes[-1]]]),
        )
        covers = [cloud_covers[(p.id, i.index)] for i in p.items]
        summaries = pystac.Summaries({
            "eo:bands": [b.eo_band() for b in p.bands],
            "platform": ["sentinel-2a"],
            "constellation": ["sentinel-2"],
            "instruments": ["msi"],
            "gsd": list(p.resolutions),
            "proj:epsg": [p.epsg],
            "eo:cloud_cover": {"minimum": min(covers), "maximum": max(covers)},
        })
        item_assets = {
            b.name: {"title": f"{b.name} - {b.description}", "type": COG_MEDIA_TYPE,
                     "roles": ["data"], "gsd": b.resolution, "eo:bands": [b.eo_band()],
                     "raster:bands": [b.raster_band()]}
            for b in p.bands
        }
        coll = pystac.Collection(
            id=p.id, title=p.title, description=p.description, extent=extent,
            license="CC0-1.0", keywords=["sentinel-2", "synthetic", "demo", "openeo"],
            providers=[pystac.Provider(name="tileserver demo generator (synthetic data)",
                                       roles=[pystac.ProviderRole.PRODUCER,
                                              pystac.ProviderRole.PROCESSOR])],
            summaries=summaries,
            stac_extensions=[EO_SCHEMA, RASTER_SCHEMA, PROJ_SCHEMA],
            extra_fields={"item_assets": item_assets},
        )
        for item in items:
            coll.add_item(item)
        catalog.add_child(coll)
    catalog.normalize_hrefs(str(root))
    for item in catalog.get_items(recursive=True):
        item.make_asset_hrefs_relative()
    return catalog


def _tasks() -> list[tuple[ProductSpec, ItemSpec, BandSpec]]:
    tasks = [(p, it, b) for p in PRODUCTS.values() for it in p.items for b in p.bands]
    return tasks


def write_demo_catalog(directory: str | os.PathLike[str], *, workers: int | None = None,
                       progress: Progress | None = None) -> pathlib.Path:
    """Write the synthetic Sentinel-2-like STAC catalog into ``directory``.

    Layout: ``DIR/catalog.json``, ``DIR/<collection>/collection.json``,
    ``DIR/<collection>/<item_id>/<item_id>.json`` and
    ``DIR/<collection>/<item_id>/<band>.tif`` (COGs); all hrefs are relative
    (a self-contained catalog), so the directory can be moved.

    The call is idempotent: if ``DIR/catalog.json`` and the marker file
    ``DIR/.tileserver-demo.json`` of the current :data:`GENERATOR_VERSION`
    exist, it returns at once.  Otherwise the marker and ``catalog.json`` are
    removed, previous product folders are deleted and everything is
    regenerated; every file is written to a temporary name and renamed, the
    ``catalog.json`` and then the marker come last, so an interrupted run never
    leaves a catalog that looks complete.  Concurrent calls on the same
    directory are serialised with a lock file.

    ``workers`` is the number of threads (default: number of CPUs, at most 4);
    ``progress`` hears of every file written (see :mod:`tileserver.demo.progress`).
    Returns the path of ``catalog.json``.
    """
    root = pathlib.Path(directory).absolute()
    catalog_path = root / "catalog.json"
    if is_complete(root):
        return catalog_path
    root.mkdir(parents=True, exist_ok=True)
    with dir_lock(root):
        if is_complete(root):
            return catalog_path
        t0 = time.perf_counter()
        for name in (MARKER_NAME, "catalog.json"):
            with contextlib.suppress(FileNotFoundError):
                (root / name).unlink()
        for p in PRODUCTS.values():
            if (root / p.id).is_dir():
                shutil.rmtree(root / p.id)
            for it in p.items:
                (root / p.id / it.id).mkdir(parents=True, exist_ok=True)

        progress = progress or Progress()
        cache = _Cache()
        tasks = _tasks()
        remaining = {(p.id, it.index): len(p.bands) for p in PRODUCTS.values() for it in p.items}
        cloud_covers: dict[tuple[str, int], float] = {}
        count_lock = threading.Lock()

        def prepare(p: ProductSpec, it: ItemSpec) -> None:
            st = cache.state(p, it.index)
            cloudy = (st.cloud > 0.08) | (st.cirrus > 0.25)
            if st.valid is not None:
                cover = float(np.count_nonzero(cloudy & st.valid)) / max(
                    int(np.count_nonzero(st.valid)), 1)
            else:
                cover = float(np.count_nonzero(cloudy)) / cloudy.size
            with count_lock:
                cloud_covers[(p.id, it.index)] = round(100 * cover, 2)

        def run(p: ProductSpec, it: ItemSpec, b: BandSpec) -> None:
            arr = _band_array(p, it, b.name, cache)
            path = root / p.id / it.id / f"{b.name}.tif"
            write_band(path, arr, p, b)
            progress.advance(arr.size, path.stat().st_size)
            del arr
            with count_lock:
                remaining[(p.id, it.index)] -= 1
                done = remaining[(p.id, it.index)] == 0
            if done:
                cache.drop_state(p, it.index)

        n = workers or min(os.cpu_count() or 1, 4)
        # States first (alternating products so both scenes are built in parallel),
        # then the bands, biggest files first.
        preps = [(p, it) for i in range(max(len(q.items) for q in PRODUCTS.values()))
                 for p in PRODUCTS.values() for it in p.items[i:i + 1]]
        tasks.sort(key=lambda t: -(t[0].bounds[2] - t[0].bounds[0])
                   * (t[0].bounds[3] - t[0].bounds[1]) / t[2].resolution**2)
        progress.start(len(tasks), sum(_band_pixels(t[0], t[2]) for t in tasks))
        with contextlib.ExitStack() as stack:
            stack.callback(progress.finish)
            pool = stack.enter_context(ThreadPoolExecutor(max_workers=n,
                                                          thread_name_prefix="demo"))

            def run_all(futures: list[Any]) -> None:
                try:
                    for f in futures:
                        f.result()
                except BaseException:
                    for f in futures:  # fail fast: drop the queued work
                        f.cancel()
                    raise

            run_all([pool.submit(prepare, p, it) for p, it in preps])
            run_all([pool.submit(run, *t) for t in tasks])
        t1 = time.perf_counter()

        catalog = _build_catalog(root, cloud_covers)
        import pystac

        catalog.save(pystac.CatalogType.SELF_CONTAINED, stac_io=atomic_stac_io())
        marker = {"generator_version": GENERATOR_VERSION, "products": sorted(PRODUCTS)}
        with atomic_file(root / MARKER_NAME) as tmp:
            tmp.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        log.info("demo catalog written to %s in %.1f s (rasters %.1f s)", root,
                 time.perf_counter() - t0, t1 - t0)
    return catalog_path


def _band_pixels(p: ProductSpec, b: BandSpec) -> int:
    _, width, height = band_grid(p, b.name)
    return width * height


def demo_catalog_paths(directory: str | os.PathLike[str], progress: Progress | None = None
                       ) -> list[pathlib.Path]:
    """Every demo catalog under ``directory`` (written if missing): the Sentinel-2-like
    catalog and the Sentinel-1-like collection (in ``DIR/sentinel1``)."""
    main = write_demo_catalog(directory, progress=progress)
    return [main, write_s1_product(pathlib.Path(directory) / "sentinel1")]
