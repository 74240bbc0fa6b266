"""One parser per parameter type, shared by every protocol (WMTS, WCS, XYZ, REST).

Each function takes the raw text of one parameter (or a JSON value), the ``locator`` that
names the parameter in the error, and the error class of the protocol's answer (an OGC
exception code for WMTS/WCS, a plain :class:`~tileserver.errors.TileserverError` for the
openEO JSON errors). What they reject, everywhere in the same way:

- numbers: anything but plain ASCII decimal notation (no ``NaN``, ``inf``, ``1_000``,
  hexadecimal or non-ASCII digits), values that overflow to infinity (``1e309``), texts
  longer than :data:`MAX_NUMBER_TEXT`;
- sizes: zero, negative, fractional, or larger than :data:`MAX_SIZE` pixels per axis
  (sizes computed from a request, such as extent / resolution, too);
- bounding boxes: not four finite numbers, or empty/inverted;
- CRS: anything but the EPSG and CRS84 identifier forms;
- dates: anything ``datetime.fromisoformat`` does not read, or out of its range;
- lists: more than ``max_items`` items; any value: more than :data:`MAX_TEXT` characters
  or control characters.

No HTTP in here: :mod:`tileserver.web.errors` turns the raised errors into responses.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, time
from typing import Any

from rasterio.crs import CRS
from rasterio.errors import CRSError

from tileserver.errors import InvalidParameterValue, LimitExceeded, TileserverError

ErrorClass = type[TileserverError]

#: Longest accepted text of one parameter value (characters).
MAX_TEXT = 2000
#: Longest accepted text of one number (``-1.2345678901234567e+308`` has 24).
MAX_NUMBER_TEXT = 64
#: Largest size of an output along one axis (pixels); the pixel budgets apply below it.
MAX_SIZE = 1 << 20
#: Longest list of values in one parameter.
MAX_ITEMS = 100

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def text(value: Any, locator: str, *, error: ErrorClass = InvalidParameterValue,
         max_length: int = MAX_TEXT, name: str | None = None) -> str:
    """A string of at most ``max_length`` characters without control characters."""
    label = name or locator.upper()
    if not isinstance(value, str):
        raise error(f"{label} must be a string, got {type(value).__name__}", locator=locator)
    if len(value) > max_length:
        raise error(f"{label} is {len(value)} characters long; at most {max_length} are "
                    "accepted", locator=locator)
    if _CONTROL.search(value):
        raise error(f"{label} contains control characters", locator=locator)
    return value


def number(value: Any, locator: str, *, error: ErrorClass = InvalidParameterValue,
           minimum: float | None = None, maximum: float | None = None,
           positive: bool = False, name: str | None = None) -> float:
    """A finite number from a decimal text (or a JSON number), optionally bounded."""
    label = name or locator.upper()
    if isinstance(value, bool):
        raise error(f"{label} must be a number, got {value!r}", locator=locator)
    if isinstance(value, int | float):
        try:
            result = float(value)
        except OverflowError:  # a JSON integer beyond the float range
            raise error(f"{label} is too large", locator=locator) from None
    else:
        raw = text(value, locator, error=error, max_length=MAX_TEXT, name=label).strip()
        if len(raw) > MAX_NUMBER_TEXT:
            raise error(f"{label} has {len(raw)} characters; a number has at most "
                        f"{MAX_NUMBER_TEXT}", locator=locator)
        if not _NUMBER.fullmatch(raw):
            raise error(f"{label} must be a number, got {raw!r}", locator=locator)
        result = float(raw)
    if not math.isfinite(result):
        raise error(f"{label} must be a finite number, got {value!r}", locator=locator)
    if positive and result <= 0:
        raise error(f"{label} must be positive, got {value!r}", locator=locator)
    if (minimum is not None and result < minimum) or (maximum is not None and result > maximum):
        raise error(f"{label} must be in [{minimum}, {maximum}], got {value!r}",
                    locator=locator)
    return result


def integer(value: Any, locator: str, *, error: ErrorClass = InvalidParameterValue,
            minimum: int | None = None, maximum: int | None = None,
            name: str | None = None) -> int:
    """An integer from plain ASCII digits (or a JSON integer), optionally bounded."""
    label = name or locator.upper()
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise error(f"{label} must be an integer, got {value!r}", locator=locator)
    if isinstance(value, str):
        raw = text(value, locator, error=error, name=label).strip()
        if len(raw) > MAX_NUMBER_TEXT or not _INTEGER.fullmatch(raw):
            raise error(f"{label} must be an integer, got {raw[:MAX_NUMBER_TEXT]!r}",
                        locator=locator)
        value = int(raw)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        shown = value if abs(value) < 10**20 else f"{str(value)[:20]}…"
        raise error(f"{label} must be in [{minimum}, {maximum}], got {shown}",
                    locator=locator)
    return value


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def boolean(value: Any, locator: str, *, error: ErrorClass = InvalidParameterValue,
            name: str | None = None) -> bool:
    """``true/false``, ``1/0``, ``yes/no``, ``on/off`` (any case; empty is false), or a
    JSON boolean."""
    label = name or locator.upper()
    if isinstance(value, bool):
        return value
    raw = text(value, locator, error=error, max_length=10, name=label).strip().lower()
    if raw in _TRUE or raw in _FALSE:
        return raw in _TRUE
    raise error(f"{label} must be true or false, got {value!r}", locator=locator)


def size(value: Any, locator: str, *, error: ErrorClass = InvalidParameterValue,
         maximum: int = MAX_SIZE, name: str | None = None) -> int:
    """A number of pixels: a positive integer (``10`` or ``10.0``) of at most ``maximum``."""
    label = name or locator.upper()
    n = number(value, locator, error=error, name=label)
    if n != math.floor(n) or n < 1:
        raise error(f"{label} must be a positive integer, got {value!r}", locator=locator)
    if n > maximum:
        raise error(f"{label} {value!r} is larger than the maximum of {maximum} pixels",
                    locator=locator)
    return int(n)


def computed_size(value: float, locator: str, *, maximum: int = MAX_SIZE) -> int:
    """A size computed from other parameters (extent / resolution / factor), rounded.

    Too large (or not finite, e.g. from a tiny resolution): :class:`LimitExceeded` (413),
    because each input was valid and only the combination asks for too much.
    """
    if not math.isfinite(value) or value > maximum:
        raise LimitExceeded(f"the requested output would be more than {maximum} pixels "
                            "along one axis; request a coarser resolution or a smaller area",
                            locator=locator)
    return max(1, round(value))


def bbox(value: str, locator: str = "bbox", *, error: ErrorClass = InvalidParameterValue,
         name: str | None = None) -> tuple[float, float, float, float]:
    """``minx,miny,maxx,maxy`` (a fifth item must be a CRS, not used here) with min < max."""
    label = name or locator.upper()
    parts = items(value, locator, error=error, max_items=5, name=label)
    if len(parts) < 4:
        raise error(f"{label} must be minx,miny,maxx,maxy, got {value!r}", locator=locator)
    if len(parts) == 5:  # not a number taken for a CRS: "1,2,3,4,5" is no bounding box
        crs(parts[4], locator, error=error)
    box = tuple(number(p, locator, error=error, name=label) for p in parts[:4])
    if not (box[0] < box[2] and box[1] < box[3]):
        raise error(f"{label} {value!r} is empty or inverted (min must be below max)",
                    locator=locator)
    return box  # type: ignore[return-value]


_CRS_CODE = re.compile(r"(?:/EPSG/[^/]*/|EPSG::?|EPSG:[\d.]*:)(\d{1,9})$", re.IGNORECASE)
_CRS84 = re.compile(r"CRS:?84$", re.IGNORECASE)


def crs(value: str, locator: str, *, error: ErrorClass = InvalidParameterValue) -> CRS:
    """``EPSG:n``, ``urn:ogc:def:crs:EPSG::n``, ``http://www.opengis.net/def/crs/EPSG/0/n``
    or CRS84 forms; anything else raises ``error``."""
    raw = text(value, locator, error=error).strip()
    match = _CRS_CODE.search(raw)
    try:
        if match:
            return CRS.from_epsg(int(match.group(1)))
        if _CRS84.search(raw):
            return CRS.from_user_input("OGC:CRS84")
    except CRSError:
        pass
    raise error(f"unsupported CRS {raw[:100]!r}; use e.g. "
                "http://www.opengis.net/def/crs/EPSG/0/4326", locator=locator)


def parse_iso_date(value: str, *, end: bool = False) -> datetime:
    """An ISO date or date-time in UTC; a plain date is its first (or last, ``end``)
    instant. ``ValueError`` for anything else (including dates that overflow in UTC)."""
    raw = value.strip()
    if len(raw) > 64:
        raise ValueError(f"{value[:64]!r}… is not an ISO 8601 date")
    try:
        if len(raw) == 10:
            day = datetime.fromisoformat(raw).date()
            return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)
        parsed = datetime.fromisoformat(raw.replace("z", "Z"))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None \
            else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"{value!r} is not an ISO 8601 date") from None


def date(value: str, locator: str, *, end: bool = False,
         error: ErrorClass = InvalidParameterValue, name: str | None = None) -> datetime:
    """An ISO 8601 date or date-time (UTC), see :func:`parse_iso_date`."""
    label = name or locator.upper()
    raw = text(value, locator, error=error, name=label)
    try:
        return parse_iso_date(raw, end=end)
    except ValueError:
        raise error(f"{label} {raw[:64]!r} is not an ISO 8601 date such as 2020-05-11",
                    locator=locator) from None


def items(value: str, locator: str, *, sep: str = ",", max_items: int = MAX_ITEMS,
          error: ErrorClass = InvalidParameterValue, name: str | None = None) -> list[str]:
    """The stripped items of a ``sep``-separated list, at most ``max_items`` of them."""
    label = name or locator.upper()
    parts = [p.strip() for p in text(value, locator, error=error, name=label).split(sep)]
    if len(parts) > max_items:
        raise error(f"{label} has {len(parts)} items; at most {max_items} are accepted",
                    locator=locator)
    return parts
