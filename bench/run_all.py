"""Run every benchmark of ``bench/`` one after the other (``make bench``), then print every
figure they saved in one table.

Each script prints its own table; this runner sequences them so that they do not compete
for the two cores. Pass script names to run a subset:
``.venv/bin/python bench/run_all.py bench_core bench_wcs``; ``--table`` only prints the
table of the figures saved so far.

The table: the scripts that keep figures for it write ``bench/results/<name>.json``
(git-ignored; :func:`common.save_figures`): per label (``before``, ``after``, a checkout)
a list of ``{figure, ours, theirs, peer, unit, target}``. Each row shows our value, the
peer's (measured in the same run) and their ratio under every label, and the target.
``bench_profile_tile`` adds where the milliseconds of a cold tile go, per label.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ORDER = ["bench_core", "bench_wmts", "bench_tile", "bench_profile_tile", "bench_warp",
         "bench_cache", "bench_wcs", "bench_batch", "bench_zonal", "bench_load",
         "bench_arraylib", "bench_udf"]
#: Results files in the table's order (issue 23's figures first).
TABLE = ["tile", "cache", "batch"]


def run(names: list[str]) -> int:
    """Run the named benchmarks; returns the number that failed."""
    failed = 0
    for name in names:
        script = HERE / f"{name.removesuffix('.py')}.py"
        print(f"\n=== {script.name} ===", flush=True)
        started = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script)])
        print(f"=== {script.name}: exit {rc} after {time.perf_counter() - started:.0f} s ===")
        failed += rc != 0
    return failed


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1000 \
        else f"{value:.0f}"


def figures_table() -> list[str]:
    """Every saved figure, one row each: ours / peer's = ratio under each label."""
    lines = []
    rows: dict[tuple[str, str], dict[str, dict]] = {}
    labels: list[str] = []
    names = TABLE + sorted(p.stem for p in RESULTS.glob("*.json")
                           if p.stem not in TABLE and p.stem != "profile_tile")
    for name in names:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        for label, saved in json.loads(path.read_text()).items():
            if label not in labels:
                labels.append(label)
            figs = saved.get("figures") if isinstance(saved, dict) else None
            for fig in figs if isinstance(figs, list) else []:
                rows.setdefault((name, fig["figure"]), {})[label] = fig
    if not rows:
        return ["(no figures saved yet: run bench_tile, bench_cache, bench_batch)"]
    labels.sort(key=lambda lb: (lb != "before", lb != "after", lb))
    width = max(len(fig) for _, fig in rows) + 2
    head = f"{'figure':<{width}}{'peer':<26}" + "".join(
        f"{label + ': ours / peer = ratio':>36}" for label in labels) + f"{'target':>9}"
    lines += [head, "-" * len(head)]
    for (_, name), by_label in rows.items():
        first = next(iter(by_label.values()))
        cells = []
        for label in labels:
            fig = by_label.get(label)
            if fig is None:
                cells.append(f"{'':>36}")
                continue
            ours, theirs = fig["ours"], fig["theirs"]
            ratio = f"{ours / theirs:.2f}" if ours and theirs else "-"
            cells.append(f"{_num(ours) + ' / ' + _num(theirs) + ' ' + fig['unit']:>27} = "
                         f"{ratio:>5}")
        lines.append(f"{name:<{width}}{first['peer'][:25]:<26}" + "".join(cells)
                     + f"{first['target']:>9}")
    return lines


def profile_table() -> list[str]:
    """Where the milliseconds of a cold tile go (``bench_profile_tile``), per label."""
    path = RESULTS / "profile_tile.json"
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    columns = [(label, col) for label, run in saved.items() for col in run["stages"]
               if col.endswith("1 client")]
    if not columns:
        return []
    stages = list(dict.fromkeys(s for label, col in columns for s in saved[label]["stages"][col]))
    width = max(len(s) for s in stages) + 2
    lines = ["", "ms per cold tile by stage (bench_profile_tile, in-process, one client)",
             f"{'stage':<{width}}" + "".join(f"{(label + ': ' + col)[:30]:>32}"
                                            for label, col in columns)]
    for stage in stages:
        lines.append(f"{stage:<{width}}" + "".join(
            f"{saved[label]['stages'][col].get(stage, 0.0):>32.2f}" for label, col in columns))
    return lines


def main(argv: list[str]) -> int:
    """Run the named benchmarks (all by default), then print the table of figures."""
    table_only = "--table" in argv
    names = [a for a in argv if a != "--table"]
    failed = 0 if table_only else run(names or ORDER)
    print("\n=== every figure (bench/results/*.json) ===")
    print("\n".join(figures_table() + profile_table()))
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
