"""Run every benchmark of ``bench/`` one after the other (``make bench``).

Each script prints its own table; this runner only sequences them so that they do not
compete for the two cores. Pass script names to run a subset:
``.venv/bin/python bench/run_all.py bench_core bench_wcs``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["bench_core", "bench_wmts", "bench_wcs", "bench_batch", "bench_zonal", "bench_load",
         "bench_arraylib", "bench_udf"]


def main(argv: list[str]) -> int:
    """Run the named benchmarks (all by default); returns the number that failed."""
    names = argv or ORDER
    failed = 0
    for name in names:
        script = HERE / f"{name.removesuffix('.py')}.py"
        print(f"\n=== {script.name} ===", flush=True)
        started = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script)])
        print(f"=== {script.name}: exit {rc} after {time.perf_counter() - started:.0f} s ===")
        failed += rc != 0
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
