"""What a tile is: one tile of a tile matrix set's matrix, in one of the tile formats, on
one date. A request's words (matrix set, matrix, row, column, format) are resolved ONCE into
a :class:`TileAddress`; the cache key, the view and the rendering all read that value.
No HTTP here: the protocol modules (WMTS, XYZ, TMS) pass the words they parsed."""

from __future__ import annotations

from dataclasses import dataclass

from tileserver import params
from tileserver.datacube.view import View
from tileserver.errors import InvalidParameterValue, TileOutOfRange
from tileserver.maps.tilematrix import (
    TileMatrix,
    TileMatrixSet,
    get_tms,
    tile_bounds,
    tile_in_matrix,
    tile_view,
)
from tileserver.render import formats

#: Tile formats (the tile formats of :mod:`tileserver.render.formats`): media type ->
#: (format name, file extension).
FORMATS = {f.tiles.media_type: (f.name, f.tiles.extensions[0])
           for f in formats.tile_formats() if f.tiles is not None}
#: Extensions accepted in tile URLs -> media type.
EXTENSIONS = {ext: f.tiles.media_type for f in formats.tile_formats() if f.tiles is not None
              for ext in f.tiles.extensions}
#: The one style of a served job (its look is set by the service args).
STYLE_ID = "default"


@dataclass(frozen=True)
class TileAddress:
    """A tile, resolved: its matrix set and matrix, row and column, format and date
    (``time``: the selected day ``YYYY-MM-DD``, ``None`` without a time axis)."""

    tms: TileMatrixSet
    matrix: TileMatrix
    row: int
    col: int
    media_type: str = "image/png"
    time: str | None = None

    @property
    def z(self) -> str:
        """The matrix identifier (the zoom level as written in URLs)."""
        return self.matrix.identifier

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in the matrix set's CRS."""
        return tile_bounds(self.tms, self.matrix, self.row, self.col)

    @property
    def view(self) -> View:
        """The view the tile is evaluated on: its bounds at its resolution."""
        return tile_view(self.tms, self.matrix, self.row, self.col)

    @property
    def encoder(self) -> str:
        """The encoder name of the tile's format (``PNG``, ``JPEG``, ``GTiff``)."""
        return FORMATS[self.media_type][0]


def tile_address(tms_id: str, z: str, row: str, col: str,
                 media_type: str = "image/png") -> TileAddress:
    """The address of a tile given by its words; raises the OGC errors with their
    locators (``tilematrixset``, ``tilematrix``, ``tilerow``, ``tilecol``)."""
    tms = get_tms(params.text(tms_id, "tilematrixset", max_length=100))
    if tms is None:
        raise InvalidParameterValue(
            f"unknown TileMatrixSet {tms_id!r}; use GoogleMapsCompatible or WorldCRS84Quad",
            locator="tilematrixset")
    matrix = tms.matrix(params.text(z, "tilematrix", max_length=100))
    if matrix is None:
        raise InvalidParameterValue(
            f"TileMatrix {z!r} is not in {tms_id} (0..{len(tms.matrices) - 1})",
            locator="tilematrix")
    r, c = (params.integer(value, name) for name, value in (("tilerow", row),
                                                              ("tilecol", col)))
    if not tile_in_matrix(matrix, r, c):
        locator = "tilerow" if not 0 <= r < matrix.matrix_height else "tilecol"
        raise TileOutOfRange(
            f"tile row {r} col {c} is outside TileMatrix {z} of {tms_id} "
            f"({matrix.matrix_height} rows x {matrix.matrix_width} cols)", locator=locator)
    return TileAddress(tms, matrix, r, c, media_type)


def check_format(media_type: str | None, locator: str = "format") -> str:
    """A supported tile media type."""
    if media_type not in FORMATS:
        raise InvalidParameterValue(
            f"FORMAT {media_type!r} is not supported; use one of {', '.join(FORMATS)}",
            locator=locator)
    return media_type


def check_style(style: str | None) -> None:
    """Only the ``default`` style exists (its look is set by the service args)."""
    if style not in (None, "", STYLE_ID):
        raise InvalidParameterValue(f"STYLE {style!r} does not exist; use '{STYLE_ID}'",
                                    locator="style")
