"""Secondary services (WMTS layers, XYZ tiles, WCS coverages, WMS layers, TMS tiles) of lazy
jobs: the one table of service types, and the check of a service's styling arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tileserver.errors import TileserverError
from tileserver.render.styles import style_args, style_from_args


@dataclass(frozen=True)
class ServiceType:
    """A kind of service: its public URLs are ``/service/<name>/<service id>...``."""

    name: str
    #: its description in openEO 1.x ``/service_types`` (``None``: the 0.0.2 API only)
    openeo_v1: str | None = None
    #: appended to the service's root in its public URL (XYZ: the tile template)
    url_template: str = ""
    #: appended to the public URL for the capabilities document (links for GIS clients)
    capabilities: str = ""
    #: whether 1.x ``attributes.layers`` names the job (the WMTS layer)
    layers: bool = False

    @property
    def openeo_v1_type(self) -> str:
        """The 1.x ``type`` (upper case)."""
        return self.name.upper()


#: Every service type, in the order the 0.0.2 API lists them.
SERVICE_TYPES: dict[str, ServiceType] = {t.name: t for t in (
    ServiceType("wmts", "OGC WMTS 1.0.0 with one layer (GoogleMapsCompatible and "
                "WorldCRS84Quad tile matrix sets; PNG, JPEG and GeoTIFF tiles), evaluated "
                "lazily per tile.", capabilities="/1.0.0/WMTSCapabilities.xml", layers=True),
    ServiceType("xyz", "Web map tiles {z}/{x}/{y}.png (GoogleMapsCompatible), evaluated "
                "lazily per tile.", url_template="/{z}/{x}/{y}.png"),
    ServiceType("wcs", "OGC WCS 1.0.0 and 2.0.1 with one coverage (GeoTIFF), evaluated for "
                "the request.", capabilities="?SERVICE=WCS&REQUEST=GetCapabilities"),
    ServiceType("wms", "OGC WMS 1.3.0 and 1.1.1 with one layer: GetMap of any window, size "
                "and CRS (PNG, JPEG, float32 GeoTIFF) with TIME, GetFeatureInfo with the "
                "pixel's time series, GetLegendGraphic; evaluated lazily for each map.",
                capabilities="?SERVICE=WMS&REQUEST=GetCapabilities", layers=True),
    ServiceType("tms"),  # {root}/{date}/{z}/{x}/{y}.png: not an openEO 1.x service type
)}

#: The 1.x service types in the order ``/service_types`` lists them: 1.x type -> description.
OPENEO_V1_SERVICES: dict[str, str] = {
    SERVICE_TYPES[name].openeo_v1_type: SERVICE_TYPES[name].openeo_v1 or ""
    for name in ("xyz", "wmts", "wcs", "wms")}


#: The key of a job's ``extra`` that names the 1.x service which created it (a service's
#: lazy job, not a batch job the user made: deleted with its service, absent from 1.x
#: ``GET /jobs``).
SERVICE_OWNER_KEY = "service_of"


def service_owner(job: dict) -> str | None:
    """The id of the 1.x service that created ``job``, or ``None`` for the user's own job."""
    return (job.get("extra") or {}).get(SERVICE_OWNER_KEY)


def service_type(value: Any, locator: str = "type") -> ServiceType:
    """The service type named ``value`` (0.0.2: lower case), or a 400."""
    if not isinstance(value, str) or value not in SERVICE_TYPES:
        raise TileserverError(f"'{locator}' must be one of {list(SERVICE_TYPES)}, got "
                              f"{value!r}", locator=locator)
    return SERVICE_TYPES[value]


def openeo_v1_service_type(value: Any, locator: str = "type") -> ServiceType:
    """The service type of a 1.x ``type`` (any case), or a 400."""
    if not isinstance(value, str) or value.upper() not in OPENEO_V1_SERVICES:
        raise TileserverError(f"'{locator}' must be one of {list(OPENEO_V1_SERVICES)}, got "
                              f"{value!r}", locator=locator)
    return SERVICE_TYPES[value.lower()]


def check_service_args(args: Any, locator: str = "args") -> dict:
    """A service's styling arguments (``colormap``, ``range``…), checked before storing."""
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise TileserverError(f"'{locator}' must be an object", locator=locator)
    chosen = style_args(args)
    if chosen:
        try:
            style_from_args(chosen, "reflectance")
        except TileserverError as exc:
            raise TileserverError(exc.message, locator=locator) from None
    return args
