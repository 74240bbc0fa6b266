"""The KVP grammar of the OGC requests: case-insensitive keys, several values per key
(no HTTP here: built from the request's query pairs)."""

from __future__ import annotations

import re

from tileserver import params
from tileserver.errors import InvalidParameterValue, MissingParameterValue


class Kvp:
    """Case-insensitive keys, several values per key (``SUBSET`` repeats)."""

    def __init__(self, pairs):
        self._data: dict[str, list[str]] = {}
        for key, value in pairs:
            key = params.text(key, "request", max_length=100, name="a parameter name").upper()
            if re.fullmatch(r"SUBSET\d+", key):  # GDAL numbers extra subsets
                key = "SUBSET"
            values = self._data.setdefault(key, [])
            values.append(params.text(value, key.lower()))
            if len(values) > params.MAX_ITEMS:
                raise InvalidParameterValue(f"{key} is given {len(values)} times",
                                            locator=key.lower())

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of ``key`` (or ``default``)."""
        values = self._data.get(key.upper())
        return values[0] if values else default

    def getall(self, key: str) -> list[str]:
        """Every value of ``key``."""
        return list(self._data.get(key.upper(), []))

    def require(self, key: str) -> str:
        """The value of ``key`` or :class:`MissingParameterValue`."""
        value = self.get(key)
        if value is None or value == "":
            raise MissingParameterValue(f"parameter {key.upper()} is required",
                                        locator=key.lower())
        return value

    def __contains__(self, key: str) -> bool:
        return key.upper() in self._data
