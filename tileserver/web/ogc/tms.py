"""TMS tiles with the date in the path, as openEO 0.0.2's use case 2 asks for them:
``{service_url}/{date}/{z}/{x}/{y}[/]?bands=…`` of a ``tms`` service.

Tiles are the GoogleMapsCompatible (EPSG:3857) grid with the TMS row order (``y`` counted
from the south, as in the OSGeo Tile Map Service specification), 256 px PNG. ``date``
(``YYYY-MM-DD``) selects the result's date (ignored when the time axis is reduced);
``bands`` (comma separated 1-based indexes or band ids, one or three) selects the bands
shown; the style is the service's ``colormap``/``range`` args.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, request

from tileserver import params
from tileserver.datacube.cube import empty
from tileserver.errors import InvalidParameterValue, NotFound
from tileserver.maps.tilematrix import get_tms
from tileserver.maps.tiles import TileAddress
from tileserver.render.encoders import encode_image
from tileserver.render.styles import style_from_args
from tileserver.web.common import live_service
from tileserver.web.conditional import NO_CACHE, cache_control
from tileserver.web.served import served_job

bp = Blueprint("tms", __name__)

TMS_ID = "GoogleMapsCompatible"


def _bands(value: str | None, bands: tuple[str, ...]) -> list[int] | None:
    if not value:
        return None
    out = []
    for part in params.items(value, "bands", max_items=3):
        part = part.strip()
        if part.isascii() and part.isdigit():
            index = params.integer(part, "bands", minimum=1, maximum=len(bands),
                                   name="a band index")
            out.append(index - 1)
        elif part in bands:
            out.append(bands.index(part))
        else:
            raise InvalidParameterValue(f"bands: {part!r} is neither a 1-based index nor "
                                        f"one of {', '.join(bands)}", locator="bands")
    if len(out) not in (1, 3):
        raise InvalidParameterValue("bands: give one band (grey/colormap) or three (RGB)",
                                    locator="bands")
    return out


@bp.get("/service/tms/<service_id>/<date>/<z>/<x>/<y>")
@bp.get("/service/tms/<service_id>/<date>/<z>/<x>/<y>/")
def tile(service_id: str, date: str, z: str, x: str, y: str):
    """One PNG tile of one date."""
    service, job = live_service(service_id, "tms")
    layer = served_job(job, service.get("service_args"))
    try:
        day = datetime.strptime(date, "%Y-%m-%d").date().isoformat()  # 0001: 4 digits
    except ValueError:
        raise InvalidParameterValue(f"date {date!r} is not YYYY-MM-DD", locator="date") \
            from None
    tms = get_tms(TMS_ID)
    assert tms is not None
    zoom = params.integer(z, "z", minimum=0, maximum=len(tms.matrices) - 1)
    matrix = tms.matrix(str(zoom))
    assert matrix is not None
    top = matrix.matrix_height - 1
    north_row = params.integer(y.removesuffix(".png"), "y", minimum=0, maximum=top)
    col = params.integer(x, "x", minimum=0, maximum=matrix.matrix_width - 1)
    address = TileAddress(tms, matrix, top - north_row, col)  # TMS rows count from the south
    meta = layer.graph.meta
    selected = _bands(request.args.get("bands"), meta.bands)
    if layer.outside(address):
        cube = empty(address.view, meta.bands, None)
    else:
        cube = layer.evaluate(address.view, None if meta.reduced else day)
        if cube.times is not None and not cube.times:
            raise NotFound(f"the result has no data on {day}"
                           + (f"; dates: {', '.join(layer.time_values[:20])}"
                              if layer.time_values else ""), locator="date")
        if cube.times is not None:
            cube = cube.select_time(len(cube.times) - 1)
    cube = cube.with_data(cube.data, kind=meta.kind)
    if selected is not None:
        cube = cube.with_data(cube.data[:, selected],
                              bands=tuple(cube.bands[i] for i in selected))
    style = style_from_args(layer.style_args, meta.kind, len(cube.bands))
    encoded = encode_image(cube, "PNG", style=style)
    return cache_control(Response(encoded.content, mimetype=encoded.media_type), NO_CACHE)

