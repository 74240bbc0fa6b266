"""Secondary services (WMTS layers, XYZ tiles, WCS coverages) of lazy jobs."""

from __future__ import annotations

from typing import Any

from tileserver.errors import TileserverError


def check_service_args(args: Any, locator: str = "args") -> dict:
    """A service's styling arguments (``colormap``, ``range``…), checked before storing."""
    from tileserver.render.styles import style_from_args  # noqa: PLC0415

    if args is None:
        return {}
    if not isinstance(args, dict):
        raise TileserverError(f"'{locator}' must be an object", locator=locator)
    style_args = {k: args[k] for k in ("colormap", "range") if k in args}
    if style_args:
        try:
            style_from_args(style_args, "reflectance")
        except TileserverError as exc:
            raise TileserverError(exc.message, locator=locator) from None
    return args
