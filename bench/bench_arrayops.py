"""Per-tile cost of the array processes that map, filter and order (``arrayops``) on a
cube slice, against the plain numpy call that computes the same values. Prints medians; no
assertions.

    .venv/bin/python bench/bench_arrayops.py [-n 50]

One 256x256 tile with 12 dates: a ``(12, 256, 256)`` float32 stack with ~10 % NaN
no-data, labelled with dates (for ``apply_dimension`` over t) or band names. The child
processes are parsed by the engine's parser, as in a graph. ``array_apply`` is timed both
ways the library can run a child process: once on the whole array (it reads neither
``index`` nor ``label``) and once per element along the dimension; the interpolation is
also timed against ``numpy.interp`` called pixel by pixel (what a per-pixel
implementation costs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tileserver.processes import ARRAY_PROCESSES, REGISTRY  # noqa: E402  isort: skip
from tileserver.graph.nodes import Callback  # noqa: E402
from tileserver.graph.v1 import FlatGraphParser  # noqa: E402
from tileserver.processes.array import LabeledArray  # noqa: E402
from tileserver.processes.callbacks import ChildProcess  # noqa: E402

DATES = tuple(f"2020-05-{d:02d}T10:00:00Z" for d in range(1, 13))
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")


def child(nodes: dict) -> ChildProcess:
    parser = FlatGraphParser(REGISTRY)
    params = ("x", "index", "label", "context")
    return ChildProcess(Callback(parser._graph(nodes, "cb.", params, 1), params, "cb"))


def tile() -> np.ndarray:
    rng = np.random.default_rng(7)
    stack = rng.uniform(0.0, 0.6, size=(12, 256, 256)).astype(np.float32)
    stack[rng.random(stack.shape) < 0.1] = np.nan
    return stack


def per_pixel_interp(stack: np.ndarray) -> np.ndarray:
    out = stack.copy()
    x = np.arange(len(stack), dtype=np.float64)
    flat = out.reshape(len(stack), -1)
    for col in range(flat.shape[1]):
        column = flat[:, col]
        known = ~np.isnan(column)
        if known.sum() >= 2 and not known.all():
            first, last = np.flatnonzero(known)[[0, -1]]
            inside = ~known & (x > first) & (x < last)
            column[inside] = np.interp(x[inside], x[known], column[known])
    return out


def cases():
    stack = tile()
    f = {k: v.fn for k, v in ARRAY_PROCESSES.items()}
    scale = child({"m": {"process_id": "multiply", "arguments": {
        "x": {"from_parameter": "x"}, "y": 2.5}, "result": True}})
    by_name = child({"t": {"process_id": "text_begins", "arguments": {
        "data": {"from_parameter": "label"}, "pattern": "B0"}, "result": True}})
    over = child({"g": {"process_id": "gt", "arguments": {
        "x": {"from_parameter": "x"}, "y": 0.3}, "result": True}})
    keep = [i for i, b in enumerate(BANDS) if b.startswith("B0")]
    dated = LabeledArray(stack, DATES)
    return [
        ("sort over t (no-data last)", lambda: f["sort"](data=stack, nodata=True),
         lambda: np.sort(stack, axis=0)),
        ("order over t (no-data last)", lambda: f["order"](data=stack, nodata=True),
         lambda: np.argsort(stack, axis=0, kind="stable")),
        ("array_apply x*2.5, whole array", lambda: f["array_apply"](data=stack,
                                                                    process=scale),
         lambda: stack * 2.5),
        ("array_apply x*2.5, per element", lambda: f["array_apply"](
            data=stack, process=lambda **kw: scale(**kw)), lambda: stack * 2.5),
        ("array_filter by band name", lambda: f["array_filter"](
            data=LabeledArray(stack, BANDS), condition=by_name), lambda: stack[keep]),
        ("array_filter x > 0.3 (compacted)", lambda: f["array_filter"](
            data=stack, condition=over), None),
        ("array_interpolate_linear over dates", lambda: f["array_interpolate_linear"](
            data=dated), lambda: per_pixel_interp(stack)),
    ]


def median_ms(fn, n: int) -> float:
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=50, help="repetitions per case")
    args = ap.parse_args()
    print(f"{'case (12 x 256 x 256 float32)':42} {'ours ms':>9} {'numpy ms':>9} {'ratio':>7}")
    for name, ours, ref in cases():
        a = median_ms(ours, args.n)
        b = median_ms(ref, max(3, args.n // 10)) if ref is not None else None
        ratio = f"{a / b:6.2f}x" if b else "      -"
        print(f"{name:42} {a:9.2f} {b if b is not None else float('nan'):9.2f} {ratio:>7}")


if __name__ == "__main__":
    main()
