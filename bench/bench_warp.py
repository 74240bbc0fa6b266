"""The warp of a cold tile (issue 23): ``read_band``'s warp stage before and after the fixed
area of interest, alternating in one process. Prints a table; no assertions.

    .venv/bin/python bench/bench_warp.py [--size 8192] [--data-dir DIR] [--per-zoom 16]
        [--rounds 5]

The tiles of ``bench_profile_tile.py`` (WebMercatorQuad zooms 10-15 inside B04 of the
synthetic ``SYN`` product, UTM 32N uint16 COGs with overviews). "before" is the reader
with GDAL choosing the area of interest of each window (``_area_of_interest`` answering
None: the earlier call), "after" the reader as it is; each tile is read by both, in
alternating order, ``--rounds`` times (the reads' blocks are warm after the first
round: what differs is the warp). The results are checked equal bit for bit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_cache import synthetic_catalog  # noqa: E402
from bench_profile_tile import tiles_inside  # noqa: E402
from common import save_figures  # noqa: E402

from tileserver.data import reader  # noqa: E402
from tileserver.data.model import Band  # noqa: E402
from tileserver.datacube.view import View  # noqa: E402


def views(cog: Path, per_zoom: int) -> list[View]:
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    out = []
    for z, x, y in tiles_inside(cog, per_zoom):
        b = tms.xy_bounds(morecantile.Tile(x, y, z))
        out.append(View("EPSG:3857", (b.left, b.bottom, b.right, b.top), 256, 256))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--data-dir", default=str(Path.home() / ".cache" / "tileserver-bench"))
    ap.add_argument("--per-zoom", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    catalog = synthetic_catalog(Path(args.data_dir), args.size)
    cog = str(catalog.parent / "d0" / "B04.tif")
    band = Band("B04", "uint16", 0, 10)
    tiles = views(Path(cog), args.per_zoom)

    warp_s = {"before": [], "after": []}
    read_s = {"before": [], "after": []}
    original_reproject, original_aoi = reader.reproject, reader._area_of_interest
    clock = {"warp": 0.0}

    def timed_reproject(*a, **k):
        t0 = time.perf_counter()
        try:
            return original_reproject(*a, **k)
        finally:
            clock["warp"] += time.perf_counter() - t0

    def read(mode: str, view: View):
        reader._area_of_interest = original_aoi if mode == "after" else (lambda *a: None)
        clock["warp"] = 0.0
        t0 = time.perf_counter()
        out = reader.read_band(cog, band, view)
        read_s[mode].append(time.perf_counter() - t0)
        warp_s[mode].append(clock["warp"])
        return out

    reader.reproject = timed_reproject
    try:
        kept = []
        for view in tiles:  # untimed: headers, blocks, identity
            a, b = read("before", view), read("after", view)
            assert (a is None) == (b is None)
            if a is not None:
                assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
                kept.append(view)  # (a tile at the files' edge may miss the file)
        tiles = kept
        for mode in warp_s:
            warp_s[mode].clear()
            read_s[mode].clear()
        for r in range(args.rounds):
            for i, view in enumerate(tiles):
                order = ("before", "after") if (i + r) % 2 == 0 else ("after", "before")
                for mode in order:
                    read(mode, view)
    finally:
        reader.reproject, reader._area_of_interest = original_reproject, original_aoi

    def ms(xs):
        return 1000 * statistics.median(xs)

    rows = [("warp (reproject), median ms", ms(warp_s["after"]), ms(warp_s["before"])),
            ("read_band (warm blocks), median ms", ms(read_s["after"]), ms(read_s["before"]))]
    print(f"\n{len(tiles)} tiles x {args.rounds} rounds, zooms 10-15, {args.size}² COG, "
          f"bit-identical: yes")
    print(f"{'figure':<38}{'after':>10}{'before':>10}{'after/before':>14}")
    for name, after, before in rows:
        print(f"{name:<38}{after:>10.2f}{before:>10.2f}{after / before:>14.2f}")
    save_figures("warp", "this checkout", [
        {"figure": name, "ours": after, "theirs": before, "peer": "reader before (AOI per window)",
         "unit": "ms", "target": "-"} for name, after, before in rows])


if __name__ == "__main__":
    main()
