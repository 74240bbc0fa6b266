"""Estimates of a batch job before it runs (``GET /jobs/{id}/estimate``), and costs.

The planner (:mod:`tileserver.engine.plan`) says how many values a job reads and writes;
what those cost on this machine is learnt from the jobs that finished here (the
``measurements`` of the job store, recorded by the batch runner with :func:`record`):

- duration: ``overhead + values read / throughput``, a line fitted (least squares) through
  the newest measurements of ``(values read, seconds)``; with fewer than two distinct sizes
  measured, the configured ``estimate_overhead_seconds`` and (until one job finished)
  ``estimate_pixels_per_second`` stand in;
- size: the planned uncompressed bytes of the result (values x bytes per value and the COG
  overviews, or RGBA bytes for styled pictures) times the ratio of written to planned bytes
  of the format's newest finished jobs (compression, metadata); 1 until one finished;
- costs: values read x ``cost_per_megapixel`` / 10^6 (only when that is set).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from tileserver.engine.plan import Plan
from tileserver.jobs.store import JobStore, iso, now
from tileserver.jobs.usecases import Backend, parse_job
from tileserver.render import cog, formats
from tileserver.settings import Settings

#: Kind of the batch measurements in the job store.
BATCH = "batch"
#: Measurements a fit uses (newest first).
FIT_SAMPLES = 20
#: Bytes of one value of a batch result (float32) and of one styled pixel (RGBA).
VALUE_BYTES = 4
STYLED_PIXEL_BYTES = 4
#: How long an estimate is offered for.
VALID_FOR = timedelta(hours=1)


@dataclass(frozen=True)
class Throughput:
    """``seconds = overhead + values / pixels_per_second`` and how it was learnt."""

    overhead: float
    pixels_per_second: float
    samples: int

    def seconds(self, values: int) -> float:
        """Estimated seconds of a job reading ``values``."""
        return self.overhead + values / self.pixels_per_second


def throughput(store: JobStore, settings: Settings) -> Throughput:
    """The throughput learnt from the newest finished jobs (see the module docstring)."""
    rows = [r for r in store.measurements(BATCH) if r["seconds"] > 0][:FIT_SAMPLES]
    overhead = float(settings.estimate_overhead_seconds)
    rate = float(settings.estimate_pixels_per_second)
    if len({r["pixels"] for r in rows}) >= 2:
        x = np.array([r["pixels"] for r in rows])
        y = np.array([r["seconds"] for r in rows])
        slope, intercept = np.polyfit(x, y, 1)
        if slope > 0 and intercept >= 0:
            return Throughput(float(intercept), 1.0 / float(slope), len(rows))
        if slope > 0:  # a negative intercept: a line through the origin
            return Throughput(0.0, float((x * x).sum() / (x * y).sum()), len(rows))
    if rows:  # one size measured: the configured overhead, the rest at the measured rate
        rates = [r["pixels"] / max(r["seconds"] - overhead, 0.25 * r["seconds"])
                 for r in rows]
        rate = statistics.median(rates)
    return Throughput(overhead, rate, len(rows))


def raw_bytes(plan: Plan, output: dict) -> int | None:
    """Uncompressed bytes of a batch result of ``output`` (``None`` for tables)."""
    fmt = formats.get(output.get("format", "GTiff"))
    if fmt.kind != formats.RASTER:
        return None
    if fmt.styled(formats.output_params(output)):
        bands = (fmt.batch.styled_bands if fmt.batch and fmt.batch.styled_bands else
                 STYLED_PIXEL_BYTES)
        return plan.output_pixels * plan.out_dates * bands
    raw = plan.output_values * VALUE_BYTES
    if fmt.batch is not None and fmt.batch.cog:  # and its overviews, as the COG writer makes
        factors = cog.overview_factors(plan.view.width, plan.view.height, cog.tile_size(output))
        raw = int(raw * (1 + sum(1 / (f * f) for f in factors)))
    return raw


def size_ratio(store: JobStore, fmt: str) -> tuple[float, int]:
    """``(written / planned bytes, samples)`` of the newest finished jobs writing ``fmt``."""
    ratios = [r["bytes"] / r["raw_bytes"] for r in store.measurements(BATCH)
              if r["format"] == fmt and r["raw_bytes"] and r["bytes"]][:FIT_SAMPLES]
    return (statistics.median(ratios), len(ratios)) if ratios else (1.0, 0)


def costs(plan: Plan, settings: Settings) -> float | None:
    """The costs of reading what ``plan`` reads (``None`` when no cost is configured)."""
    if not settings.cost_per_megapixel or settings.cost_per_megapixel <= 0:
        return None
    return round(plan.pixels_read / 1e6 * settings.cost_per_megapixel, 4)


def iso_duration(seconds: float) -> str:
    """An ISO 8601 duration (``PT1H2M3S``), whole seconds, at least one."""
    total = max(1, math.ceil(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = "P" + (f"{days}D" if days else "") + "T"
    out += (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return out + (f"{secs}S" if secs or out.endswith("T") else "")


def estimate(store: JobStore, settings: Settings, plan: Plan, output: dict) -> dict[str, Any]:
    """The openEO estimate of a batch job with ``plan`` writing ``output``: ``duration``,
    ``size`` (rasters), ``costs`` (when configured), ``expires``,
    and the planner's figures: ``pixels_read`` and ``tileserver:plan``."""
    model = throughput(store, settings)
    seconds = model.seconds(plan.pixels_read)
    out: dict[str, Any] = {"duration": iso_duration(seconds)}
    fmt = formats.get(output.get("format", "GTiff")).name
    raw = raw_bytes(plan, output)
    ratio, size_samples = size_ratio(store, fmt)
    if raw is not None:
        out["size"] = int(raw * ratio)
    cost = costs(plan, settings)
    if cost is not None:
        out["costs"] = cost
    # downloads_included is left out: its default (null) means unlimited downloads, and
    # validators with OpenAPI 3.1 semantics refuse the null the 1.2 document allows
    out.update({
        "expires": iso(now() + VALID_FOR),
        "pixels_read": plan.pixels_read,
        "tileserver:plan": {**plan.to_json(), "seconds": round(seconds, 1),
                            "pixels_per_second": round(model.pixels_per_second),
                            "overhead_seconds": round(model.overhead, 1),
                            "duration_samples": model.samples,
                            "size_ratio": round(ratio, 4), "size_samples": size_samples},
    })
    return out


def record(store: JobStore, plan: Plan, output: dict, seconds: float,
           written: int) -> None:
    """Measure a finished batch job (its values read, seconds and written bytes) for the
    estimates of the next ones."""
    store.record_measurement(BATCH, plan.pixels_read, seconds,
                             fmt=formats.get(output.get("format", "GTiff")).name,
                             raw_bytes=raw_bytes(plan, output), nbytes=written or None)


def job_estimate(rt: Backend, user: str, job_id: str) -> dict[str, Any]:
    """The estimate of the user's job (:func:`estimate`) on its native view."""
    job = rt.store.get_job(job_id, user)
    graph = parse_job(rt, job)
    output = dict(job.get("output") or {"format": "GTiff"})
    return estimate(rt.store, rt.settings, rt.engine.plan(graph), output)


def result_costs(rt: Backend, graph) -> float | None:
    """The costs of a synchronous evaluation of ``graph`` on its native view (``None``
    when no cost is configured: then nothing is planned)."""
    if not rt.settings.cost_per_megapixel or not graph.is_raster:
        return None
    return costs(rt.engine.plan(graph), rt.settings)
