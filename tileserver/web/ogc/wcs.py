"""WCS 2.0.1 and 1.0.0 (KVP): a ``wcs`` service's job at ``/service/wcs/<id>``, and every
job of the user at ``/wcs``. Each GetCoverage is evaluated lazily for its own view.

The request grammar lives in :mod:`tileserver.web.ogc.kvp` and
:mod:`tileserver.web.ogc.wcs_request`, the coverage description and its grid math in
:mod:`tileserver.maps.coverage`, the answer in :class:`tileserver.maps.served.ServedJob`;
this module finds the coverages and renders the templates under ``templates/wcs/``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Blueprint, Response, g, render_template, request

from tileserver.errors import (
    InvalidParameterValue,
    MissingParameterValue,
    NoSuchCoverage,
    OperationNotSupported,
    StoreUnavailable,
    TileserverError,
    VersionNegotiationFailed,
)
from tileserver.jobs.store import iso
from tileserver.maps.coverage import Coverage, CoverageRequest, crs_code, crs_uri
from tileserver.maps.served import ServedJob
from tileserver.web.common import REVOKED_STATUSES, base_url, current_user, live_service, runtime
from tileserver.web.conditional import PRIVATE_CACHE, PUBLIC_CACHE, conditional
from tileserver.web.ogc.kvp import Kvp
from tileserver.web.ogc.wcs_request import request_10, request_20
from tileserver.web.served import served_job

log = logging.getLogger(__name__)
bp = Blueprint("wcs", __name__)

VERSIONS = ("2.0.1", "1.0.0")
PROFILES = (
    "http://www.opengis.net/spec/WCS/2.0/conf/core",
    "http://www.opengis.net/spec/WCS_protocol-binding_get-kvp/1.0/conf/get-kvp",
    "http://www.opengis.net/spec/GMLCOV_geotiff-coverages/1.0/conf/geotiff-coverage",
    "http://www.opengis.net/spec/WCS_service-extension_crs/1.0/conf/crs",
    "http://www.opengis.net/spec/WCS_service-extension_scaling/1.0/conf/scaling",
    "http://www.opengis.net/spec/WCS_service-extension_range-subsetting/1.0/conf/"
    "record-subsetting",
)
EXTRA_CRS = (4326, 3857)
QUANTITY = "http://www.opengis.net/def/dataType/OGC/0/float32"
#: Result kinds that are not rasters (their jobs are no coverages).
NOT_RASTERS = ("table",)


@dataclass
class Entry:
    """A job offered as a coverage: its description and the served job that answers."""

    coverage: Coverage
    served: ServedJob

    @property
    def job(self) -> dict:
        """The job."""
        return self.served.job


def coverage_id(job: dict) -> str:
    """The coverage id of a job (an NCName: ``job_<job id>``)."""
    return f"job_{job['job_id']}"


def _entry(job: dict) -> Entry:
    served = served_job(job)
    kind = served.graph.meta.kind
    if kind in NOT_RASTERS:
        raise NoSuchCoverage(f"job {job['job_id']} computes a {kind} (e.g. zonal "
                             "statistics), not a coverage", locator="coverageid")
    title = job.get("title") or f"job {job['job_id']}"
    return Entry(served.describe(coverage_id(job), title), served)


def _version_for(kvp: Kvp) -> str:
    """The version of a request: negotiated for GetCapabilities, given otherwise."""
    accept = kvp.get("ACCEPTVERSIONS")
    if accept:
        for offered in (v.strip() for v in accept.split(",")):
            if offered in VERSIONS:
                return offered
        raise VersionNegotiationFailed(
            f"none of the versions {accept} is supported; this server speaks "
            f"{', '.join(VERSIONS)}", locator="acceptversions")
    version = kvp.get("VERSION")
    if not version:
        return VERSIONS[0]
    if version in VERSIONS:
        return version
    if version.startswith("2.0"):
        return "2.0.1"
    lower = [v for v in VERSIONS if _key(v) < _key(version)]
    return lower[0] if lower else VERSIONS[-1]


def _key(version: str) -> tuple:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (0,)


@bp.before_request
def _ogc_errors() -> None:
    g.ogc = True
    version = Kvp(request.args.items(multi=True)).get("VERSION") or ""
    if version.startswith("1.0"):
        g.ogc_version, g.ogc_exception_template = "1.2.0", "wcs/exception_100.xml"
    else:
        g.ogc_version, g.ogc_exception_template = "2.0.1", "wcs/exception_20.xml"


@bp.get("/service/wcs/<service_id>")
def service_endpoint(service_id: str):
    """The WCS of one ``wcs`` service: its job as one coverage."""
    _, job = live_service(service_id, "wcs")
    href = f"{base_url()}/service/wcs/{service_id}"
    return dispatch(lambda: [_entry(job)], href, title=job.get("title") or "tileserver job")


@bp.get("/wcs")
def global_endpoint():
    """Every job of the current user as a coverage."""
    user = current_user()

    def entries() -> list[Entry]:
        out = []
        for job in runtime().store.list_jobs(user):
            if job.get("status") in REVOKED_STATUSES:
                continue
            try:
                full = runtime().store.get_job(job["job_id"], user)
                out.append(_entry(full))
            except StoreUnavailable:  # its result is there, the store does not answer: 503
                raise
            except TileserverError as exc:  # a graph the catalog no longer supports
                log.warning("job %s is not offered as a coverage: %s", job["job_id"], exc)
        return out

    return dispatch(entries, f"{base_url()}/wcs", title=f"tileserver jobs of {user}")


def dispatch(entries, href: str, title: str):
    """Answer one KVP request over the coverages that ``entries()`` lists."""
    kvp = Kvp(request.args.items(multi=True))
    service = kvp.get("SERVICE")
    if not service:
        raise MissingParameterValue("parameter SERVICE=WCS is required", locator="service")
    if service.upper() != "WCS":
        raise InvalidParameterValue(f"SERVICE must be WCS, got {service!r}", locator="service")
    operation = kvp.require("REQUEST").lower()
    if operation == "getcapabilities":
        version = _version_for(kvp)
        _set_error_version(version)
        return _xml(f"wcs/capabilities_{_tag(version)}.xml", entries(), href=href + "?",
                    title=title)
    if operation not in ("describecoverage", "getcoverage"):
        raise OperationNotSupported(f"REQUEST {kvp.get('REQUEST')!r} is not supported; use "
                                    "GetCapabilities, DescribeCoverage or GetCoverage",
                                    locator="request")
    version = kvp.require("VERSION")
    if version not in VERSIONS and version != "2.0.0":
        raise InvalidParameterValue(f"VERSION {version} is not supported; use "
                                    f"{' or '.join(VERSIONS)}", locator="version")
    version = "2.0.1" if version.startswith("2.0") else version
    ids_key = "COVERAGEID" if version.startswith("2") else "COVERAGE"
    wanted = [i.strip() for i in kvp.require(ids_key).split(",") if i.strip()]
    by_id = {e.coverage.id: e for e in entries()}
    for e in list(by_id.values()):
        by_id.setdefault(e.job["job_id"], e)
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise NoSuchCoverage(f"no coverage {', '.join(missing)} here; available: "
                             f"{', '.join(e.coverage.id for e in set_of(by_id))}",
                             locator=ids_key.lower())
    if operation == "describecoverage":
        return _xml(f"wcs/describe_{_tag(version)}.xml", [by_id[i] for i in wanted])
    if len(wanted) != 1:
        raise InvalidParameterValue("GetCoverage takes exactly one coverage",
                                    locator=ids_key.lower())
    return get_coverage(by_id[wanted[0]], kvp, version)


def set_of(by_id: dict) -> list[Entry]:
    """Distinct entries (each is listed under its coverage id and its job id)."""
    return list({id(e): e for e in by_id.values()}.values())


def _tag(version: str) -> str:
    return "20" if version.startswith("2") else "100"


def _set_error_version(version: str) -> None:
    if version.startswith("1.0"):
        g.ogc_version, g.ogc_exception_template = "1.2.0", "wcs/exception_100.xml"


def _crs_codes(cov: Coverage) -> list[str]:
    codes = [crs_code(cov.view.crs)]
    codes += [f"EPSG:{c}" for c in EXTRA_CRS if f"EPSG:{c}" not in codes]
    return codes


def _xml(template: str, entries: list[Entry], **context) -> Response:
    covs = [e.coverage for e in entries]
    crs = sorted({crs_uri(c.view.crs) for c in covs}
                 | {f"http://www.opengis.net/def/crs/EPSG/0/{c}" for c in EXTRA_CRS})
    body = render_template(template, coverages=covs, iso=iso, crs_codes=_crs_codes,
                           crs_supported=crs, profiles=PROFILES, definition=QUANTITY,
                           abstract="Lazy openEO jobs evaluated on request for each "
                           "window, CRS and size.", **context)
    return Response(body, mimetype="application/xml")


def get_coverage(entry: Entry, kvp: Kvp, version: str) -> Response:
    """Evaluate the graph on the requested grid only and return a float32 GeoTIFF."""
    rt = runtime()
    limits = (rt.settings.max_output_pixels, rt.settings.max_pixels)
    parse = request_20 if version.startswith("2") else request_10
    req: CoverageRequest = parse(entry.coverage, kvp, limits)
    served = entry.served
    key = served.coverage_key(req)
    resp = conditional(key, lambda: served.coverage(req, key),
                       PRIVATE_CACHE if request.authorization else PUBLIC_CACHE,
                       stored=served.stored is not None)
    resp.headers["Content-Disposition"] = f'inline; filename="{entry.coverage.id}.tif"'
    return resp
