"""WMTS 1.0.0: one layer per ``wmts`` service at ``/service/wmts/<id>``, and every job of the
user at the global ``/wmts``. KVP and RESTful GetCapabilities/GetTile, byte-identical."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, g, render_template, request

from tileserver import params
from tileserver.errors import (
    InvalidParameterValue,
    MissingParameterValue,
    NotFound,
    OperationNotSupported,
    TileserverError,
    VersionNegotiationFailed,
)
from tileserver.maps.served import ServedJob
from tileserver.maps.tilematrix import tile_matrix_sets
from tileserver.maps.tiles import EXTENSIONS, FORMATS, STYLE_ID, check_style
from tileserver.render import legend
from tileserver.web.common import (
    REVOKED_STATUSES,
    base_url,
    current_user,
    live_service,
    runtime,
)
from tileserver.web.conditional import PRIVATE_CACHE, PUBLIC_CACHE, cache_control, conditional
from tileserver.web.served import served_job, served_or_none

log = logging.getLogger(__name__)
bp = Blueprint("wmts", __name__)

@bp.before_request
def _ogc() -> None:
    g.ogc = True
    g.ogc_version = "1.0.0"


# -- where layers come from ------------------------------------------------------------


class ServiceLayers:
    """The one layer of a ``wmts`` service (404 when the service or its job is gone)."""

    def __init__(self, service_id: str):
        self.service_id = service_id
        # looked up once per request, before any parameter is checked (404 comes first)
        self.service, self.job = live_service(service_id, "wmts")
        self.root = f"{base_url()}/service/wmts/{service_id}"
        self.title = "tileserver WMTS service"
        self.cache_control = PUBLIC_CACHE

    def layers(self) -> list[ServedJob]:
        """The service's job as a layer, styled by the service args."""
        return [served_job(self.job, self.service.get("service_args"),
                           self.service.get("title"))]

    def layer(self, layer_id: str) -> ServedJob:
        """The layer called ``layer_id`` (InvalidParameterValue otherwise)."""
        for layer in self.layers():
            if layer.identifier == layer_id:
                return layer
        raise InvalidParameterValue(f"LAYER {layer_id!r} does not exist", locator="layer")


class UserLayers:
    """Every job of the current user (the global ``/wmts``)."""

    def __init__(self):
        self.root = f"{base_url()}/wmts"
        self.title = f"tileserver: jobs of {current_user()}"
        self.cache_control = PRIVATE_CACHE

    def layers(self) -> list[ServedJob]:
        """The jobs whose graph still validates and gives images, newest first (a job left
        out is logged: one bad job does not take the others' capabilities down)."""
        layers = []
        for job in runtime().store.list_jobs(current_user()):
            if job["status"] in REVOKED_STATUSES:
                continue
            layer = served_or_none(job)
            if layer is None:
                continue
            if not layer.graph.is_raster:
                log.info("job %s computes a %s (e.g. zonal statistics), not a map: not listed",
                         job["job_id"], layer.graph.meta.kind)
                continue
            try:
                _ = (layer.wgs84, layer.time_values)  # computed here, where a failure is caught
            except TileserverError as exc:
                log.warning("job %s is not listed as a layer: %s", job["job_id"], exc.message)
                continue
            layers.append(layer)
        return layers

    def layer(self, layer_id: str) -> ServedJob:
        """One job of the user (InvalidParameterValue when unknown)."""
        try:
            job = runtime().store.get_job(layer_id, current_user())
        except NotFound:
            job = None
        if job is None or job["status"] in REVOKED_STATUSES:
            raise InvalidParameterValue(f"LAYER {layer_id!r} does not exist", locator="layer")
        return served_job(job)


# -- capabilities ----------------------------------------------------------------------


def _layer_context(root: str, layer: ServedJob) -> dict:
    links = []
    for tms in tile_matrix_sets().values():
        lim = layer.limits(tms)
        if lim is not None:
            # the WMTS 1.0.0 schema types the indices as xs:positiveInteger: a matrix whose
            # limits would contain index 0 is listed without limits (its whole matrix)
            links.append({"tms": tms.identifier,
                          "limits": [row for row in lim if min(row[1:]) > 0]})
    dim = None
    rest = f"{root}/1.0.0/{layer.identifier}/{{Style}}/"
    if layer.time_values is not None:
        dim = {"default": layer.time_values[-1] if layer.time_values else "",
               "values": layer.time_values or [""]}
        rest += "{Time}/"
    rest += "{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}"
    w, s, e, n = layer.wgs84
    return {
        "identifier": layer.identifier,
        "title": layer.title,
        "abstract": layer.job.get("description") or "",
        "lower": f"{max(w, -180.0)!r} {max(s, -90.0)!r}",
        "upper": f"{min(e, 180.0)!r} {min(n, 90.0)!r}",
        "style": STYLE_ID,
        "style_title": _style_title(layer),
        "legend": {"url": f"{root}/1.0.0/{layer.identifier}/{STYLE_ID}/legend.png",
                   "width": legend.WIDTH, "height": legend.HEIGHT},
        "formats": list(FORMATS),
        "dimension": dim,
        "links": links,
        "resource_urls": [(fmt, f"{rest}.{ext}") for fmt, (_, ext) in FORMATS.items()],
    }


def _style_title(layer: ServedJob) -> str:
    style = layer.style
    return f"{style.colormap or 'RGB'} {style.vmin:g} to {style.vmax:g}"


def capabilities(source) -> Response:
    """The capabilities document of a layer source (:class:`ServiceLayers`/:class:`UserLayers`)."""
    root = source.root
    xml = render_template(
        "wmts_capabilities.xml",
        title=source.title,
        kvp_url=f"{root}?",
        capabilities_url=f"{root}/1.0.0/WMTSCapabilities.xml",
        layers=[_layer_context(root, layer) for layer in source.layers()],
        tile_matrix_sets=list(tile_matrix_sets().values()),
    )
    return Response(xml, mimetype="application/xml")


# -- tiles -----------------------------------------------------------------------------


def tile_response(layer: ServedJob, style: str | None, media_type: str, tms_id: str, z: str,
                  row: str, col: str, time: str | None,
                  policy: str = PUBLIC_CACHE) -> Response:
    """A tile with ETag/Cache-Control, or 304 when the client has it."""
    address = layer.tile_address(tms_id, z, row, col, media_type=media_type, time=time,
                                 style=style)
    key = layer.tile_key(address)
    return conditional(key, lambda: layer.tile(address, key), policy,
                       stored=layer.stored is not None)


def _kvp() -> dict[str, str]:
    """The query parameters, lower-case keys, first value of repeated keys; every name and
    value checked by :func:`tileserver.params.text` (length, control characters)."""
    return {params.text(k, "request", max_length=100, name="a parameter name").lower():
            params.text(v, k.lower()) for k, v in request.args.items()}


def _required(params: dict, name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise MissingParameterValue(f"missing parameter {name.upper()}", locator=name)
    return value


def kvp(source) -> Response:
    """Dispatch a KVP request over a layer source."""
    params = _kvp()
    service = _required(params, "service")
    if service.upper() != "WMTS":
        raise InvalidParameterValue(f"SERVICE must be WMTS, got {service!r}", locator="service")
    req = _required(params, "request")
    if req.lower() == "getcapabilities":
        accept = params.get("acceptversions")
        if accept and "1.0.0" not in [v.strip() for v in accept.split(",")]:
            raise VersionNegotiationFailed(
                f"only version 1.0.0 is supported, not {accept!r}", locator="acceptversions")
        return capabilities(source)
    if req.lower() != "gettile":
        raise OperationNotSupported(
            f"REQUEST {req!r} is not supported; use GetCapabilities or GetTile",
            locator="request")
    version = params.get("version")
    if version and version != "1.0.0":
        raise InvalidParameterValue(f"VERSION must be 1.0.0, got {version!r}",
                                    locator="version")
    names = ("layer", "style", "format", "tilematrixset", "tilematrix", "tilerow", "tilecol")
    values = {n: _required(params, n) if n != "style" else params.get(n) for n in names}
    layer = source.layer(values["layer"])
    return tile_response(layer, values["style"], values["format"], values["tilematrixset"],
                         values["tilematrix"], values["tilerow"], values["tilecol"],
                         params.get("time"), source.cache_control)


def rest_tile(source, layer_id: str, style: str, tms_id: str, z: str, last: str,
              row: str, time: str | None = None) -> Response:
    """A RESTful GetTile (``last`` is ``{TileCol}.{ext}``)."""
    col, _, ext = last.rpartition(".")
    if not col or ext.lower() not in EXTENSIONS:
        raise InvalidParameterValue(
            f"tile URL must end in {{TileCol}}.{'|'.join(e for _, e in FORMATS.values())}, "
            f"got {last!r}", locator="format")
    layer = source.layer(layer_id)
    return tile_response(layer, style, EXTENSIONS[ext.lower()], tms_id, z, row, col, time,
                         source.cache_control)


def legend_response(source, layer_id: str, style: str) -> Response:
    """The legend of a layer's style: colour ramp, value range and unit (a PNG)."""
    layer = source.layer(layer_id)
    check_style(style)
    resp = Response(legend.legend_png(layer.legend), mimetype="image/png")
    return cache_control(resp, source.cache_control)


# -- routes: one service ---------------------------------------------------------------

_SERVICE = "/service/wmts/<service_id>"
_TILE = "/1.0.0/<layer>/<style>/<tms>/<z>/<row>/<last>"
_TIME_TILE = "/1.0.0/<layer>/<style>/<time>/<tms>/<z>/<row>/<last>"


@bp.get(_SERVICE)
def service_kvp(service_id: str):
    """KVP GetCapabilities / GetTile of one service."""
    return kvp(ServiceLayers(service_id))


@bp.get(f"{_SERVICE}/1.0.0/WMTSCapabilities.xml")
def service_capabilities(service_id: str):
    """RESTful capabilities of one service."""
    return capabilities(ServiceLayers(service_id))


@bp.get(f"{_SERVICE}/1.0.0/<layer>/<style>/legend.png")
def service_legend(service_id: str, layer: str, style: str):
    """The ``LegendURL`` of a style of the service's layer."""
    return legend_response(ServiceLayers(service_id), layer, style)


@bp.get(_SERVICE + _TILE)
@bp.get(_SERVICE + _TIME_TILE)
def service_tile(service_id: str, layer, style, tms, z, row, last, time=None):
    """RESTful tile of one service."""
    return rest_tile(ServiceLayers(service_id), layer, style, tms, z, last, row, time)


# -- routes: every job of the user -----------------------------------------------------


@bp.get("/wmts")
def global_kvp():
    """KVP GetCapabilities / GetTile over all the user's jobs."""
    return kvp(UserLayers())


@bp.get("/wmts/1.0.0/WMTSCapabilities.xml")
def global_capabilities():
    """RESTful capabilities over all the user's jobs."""
    return capabilities(UserLayers())


@bp.get("/wmts/1.0.0/<layer>/<style>/legend.png")
def global_legend(layer: str, style: str):
    """The ``LegendURL`` of a style of one of the user's jobs."""
    return legend_response(UserLayers(), layer, style)


@bp.get("/wmts" + _TILE)
@bp.get("/wmts" + _TIME_TILE)
def global_tile(layer, style, tms, z, row, last, time=None):
    """RESTful tile of one of the user's jobs."""
    return rest_tile(UserLayers(), layer, style, tms, z, last, row, time)
