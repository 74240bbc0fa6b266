"""Per-tile cost of the openEO 1.x process library (``arraylib``) against
``openeo-processes-dask``'s implementations of the same processes. Prints medians; no
assertions.

    .venv/bin/python bench/bench_arraylib.py [-n 200] [--opd-python /tmp/opd/bin/python]

One 256x256 tile: a ``(4, 256, 256)`` float32 stack (4 dates, ~10 % NaN no-data) and two
``(256, 256)`` float32 bands. openeo-processes-dask is NOT a dependency of tileserver: give
the python of a scratch venv where it is installed (``python -m venv /tmp/opd && /tmp/opd/bin/pip
install openeo-processes-dask xarray dask``); the script re-runs itself there on the same
seeded data and prints both columns. Each process is timed as its function called on numpy
arrays (axis 0); for ``reduce min over t`` openeo-processes-dask is also timed through its
``reduce_dimension`` on an xarray DataArray (its real code path for a cube).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CASES = [
    "reduce min over t",
    "reduce median over t",
    "reduce mean over t",
    "reduce sd over t",
    "normalized_difference",
    "band math (nir-red)/(nir+red)",
    "linear_scale_range",
    "gt + if (mask)",
]


def tile():
    rng = np.random.default_rng(7)
    stack = rng.uniform(0.0, 0.6, size=(4, 256, 256)).astype(np.float32)
    stack[rng.random(stack.shape) < 0.1] = np.nan
    red = rng.uniform(0.01, 0.3, size=(256, 256)).astype(np.float32)
    nir = rng.uniform(0.1, 0.6, size=(256, 256)).astype(np.float32)
    return stack, red, nir


def ours():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tileserver.processes import ARRAY_PROCESSES as P

    stack, red, nir = tile()
    f = {k: v.fn for k, v in P.items()}
    return {
        "reduce min over t": lambda: f["min"](data=stack),
        "reduce median over t": lambda: f["median"](data=stack),
        "reduce mean over t": lambda: f["mean"](data=stack),
        "reduce sd over t": lambda: f["sd"](data=stack),
        "normalized_difference": lambda: f["normalized_difference"](x=nir, y=red),
        "band math (nir-red)/(nir+red)": lambda: f["divide"](
            x=f["subtract"](x=nir, y=red), y=f["add"](x=nir, y=red)),
        "linear_scale_range": lambda: f["linear_scale_range"](
            x=nir, inputMin=0, inputMax=0.6, outputMin=0, outputMax=255),
        "gt + if (mask)": lambda: f["if"](value=f["gt"](x=nir, y=0.3), accept=nir),
    }


def theirs():
    import warnings

    import xarray as xr
    from openeo_processes_dask.process_implementations import comparison, logic
    from openeo_processes_dask.process_implementations import math as m
    from openeo_processes_dask.process_implementations.cubes.reduce import reduce_dimension

    warnings.simplefilter("ignore")  # nanmedian & co. warn on all-NaN pixels
    stack, red, nir = tile()
    cube = xr.DataArray(stack, dims=("t", "y", "x"))

    def reducer(data, axis=None, **_):
        return m._min(data, axis=axis)

    return {
        "reduce min over t": lambda: m._min(stack, axis=0),
        "reduce min over t (reduce_dimension, xarray)": lambda: reduce_dimension(
            cube, reducer, "t").values,
        "reduce median over t": lambda: m.median(stack, axis=0),
        "reduce mean over t": lambda: m.mean(stack, axis=0),
        "reduce sd over t": lambda: m.sd(stack, axis=0),
        "normalized_difference": lambda: m.normalized_difference(nir, red),
        "band math (nir-red)/(nir+red)": lambda: m.divide(
            m.subtract(nir, red), m.add(nir, red)),
        "linear_scale_range": lambda: m.linear_scale_range(nir, 0, 0.6, 0, 255),
        "gt + if (mask)": lambda: logic._if(comparison.gt(nir, 0.3), nir),
    }


def measure(funcs: dict, n: int) -> dict[str, list[float]]:
    """``n`` timings (ms) of each function, after a warm-up call."""
    out = {}
    for name, fn in funcs.items():
        fn()  # warm-up
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        out[name] = times
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--opd-python", help="python of a venv with openeo-processes-dask")
    ap.add_argument("--side", choices=["ours", "theirs"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        print(json.dumps(measure(ours() if args.side == "ours" else theirs(), args.n)))
        return 0
    # alternate the two sides in rounds so that a busy machine hurts both alike
    mine: dict[str, list[float]] = {}
    other: dict[str, list[float]] = {}
    rounds = 3 if args.opd_python else 1
    for _ in range(rounds):
        for name, times in measure(ours(), args.n // rounds).items():
            mine.setdefault(name, []).extend(times)
        if not args.opd_python:
            continue
        proc = subprocess.run([args.opd_python, __file__, "--side", "theirs",
                               "-n", str(args.n // rounds)],
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            print(proc.stderr[-2000:], file=sys.stderr)
            break
        for name, times in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            other.setdefault(name, []).extend(times)
    print(f"per 256x256 tile, median of {args.n} calls in {rounds} alternating round(s) (ms); "
          "(4, 256, 256) float32 stacks")
    print(f"{'process':48s} {'arraylib':>9s} {'opd':>9s} {'opd/ours':>9s}")
    for name in CASES + [k for k in other if k not in CASES]:
        a = statistics.median(mine[name]) if name in mine else None
        b = statistics.median(other[name]) if name in other else None
        ratio = f"{b / a:9.2f}" if a and b else f"{'':9s}"
        a_s = f"{a:9.3f}" if a is not None else f"{'-':>9s}"
        b_s = f"{b:9.3f}" if b is not None else f"{'-':>9s}"
        print(f"{name:48s} {a_s} {b_s} {ratio}")
    if not other:
        print("(openeo-processes-dask not measured: pass --opd-python)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
