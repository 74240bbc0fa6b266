"""openEO 1.2 JSON of our objects: collections, jobs, services, logs, files."""

from __future__ import annotations

from typing import Any

from tileserver.datacube.bounds import transform_bounds
from tileserver.jobs import lifecycle
from tileserver.jobs.store import STACKTRACE, iso, job_times

#: STAC version of the collections and of the API's catalog fields.
STAC_VERSION = "1.0.0"
DATACUBE_EXT = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
EO_EXT = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"

#: 1.x log levels of the job log's levels.
LOG_LEVELS = {"warn": "warning", "critical": "error"}


def collection_json(product, links: list[dict]) -> dict[str, Any]:
    """A STAC collection with ``cube:dimensions`` (x, y, t, bands) and ``eo:bands``."""
    west, south, east, north = product.bbox
    t0, t1 = product.time_range
    crs = product.crs
    epsg = crs.to_epsg()
    left, bottom, right, top = transform_bounds("EPSG:4326", crs, west, south, east, north,
                                                densify_pts=21)
    eo_bands = []
    for band in product.bands.values():
        entry: dict[str, Any] = {"name": band.id}
        if band.common_name:
            entry["common_name"] = band.common_name
        if band.wavelength_nm is not None:
            entry["center_wavelength"] = round(band.wavelength_nm / 1000.0, 4)
        eo_bands.append(entry)
    step = min(b.res_m for b in product.bands.values())
    reference = epsg if epsg else crs.to_wkt()
    return {
        "stac_version": STAC_VERSION,
        "stac_extensions": [DATACUBE_EXT, EO_EXT],
        "type": "Collection",
        "id": product.id,
        "title": product.title or product.id,
        "description": product.description,
        "license": product.license or "proprietary",
        "extent": {
            "spatial": {"bbox": [[west, south, east, north]]},
            "temporal": {"interval": [[iso(t0), iso(t1)]]},
        },
        "cube:dimensions": {
            "x": {"type": "spatial", "axis": "x", "extent": [left, right], "step": step,
                  "reference_system": reference},
            "y": {"type": "spatial", "axis": "y", "extent": [bottom, top], "step": step,
                  "reference_system": reference},
            "t": {"type": "temporal", "extent": [iso(t0), iso(t1)], "step": None},
            "bands": {"type": "bands", "values": list(product.bands)},
        },
        "summaries": {"eo:bands": eo_bands, "constellation": [], "platform": []},
        "links": links,
    }


def job_json(job: dict, full: bool = True, times: bool = False) -> dict[str, Any]:
    """A batch job (``GET /jobs/{id}`` with ``full``, an entry of ``GET /jobs`` without);
    ``times``: with the openEO 1.3 timestamps ``queued``, ``started`` and ``unpublished``
    (``null`` until they happen)."""
    out: dict[str, Any] = {
        "id": job["job_id"],
        "title": job.get("title"),
        "description": job.get("description"),
        "status": lifecycle.to_v1(job["status"]),
        "created": iso(job["submitted"]),
        "updated": iso(job["updated"]),
    }
    if times:
        out.update(job_times(job))
    if job["status"] in lifecycle.V1_WITH_PROGRESS:
        out["progress"] = round(float(job.get("progress") or 0.0), 1)
    if full:
        out["process"] = {"process_graph": job["process_graph"]}
    return out


def log_json(entries: list[dict], job: dict | None = None) -> list[dict]:
    """Job log entries with ids (their position) and 1.x levels. With the ``job`` (openEO
    1.3), the entry of its failure carries the ``stacktrace`` of that failure; the others
    have none (the field is left out)."""
    out = [{"id": str(i), "level": LOG_LEVELS.get(e["level"], e["level"]),
            "message": e["message"], "time": e["time"]} for i, e in enumerate(entries)]
    trace = ((job or {}).get("extra") or {}).get(STACKTRACE)
    if trace and job is not None and job.get("error"):
        failure = next((e for e in reversed(out)
                        if e["level"] == "error" and e["message"] == job["error"]), None)
        if failure is not None:
            failure["stacktrace"] = trace
    return out


def file_json(info) -> dict[str, Any]:
    """A user file (``path``, ``size``, ``modified``)."""
    entry = info.to_json()
    return {k: entry[k] for k in ("path", "size", "modified")}
