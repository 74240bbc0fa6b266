"""OGC API over lazy jobs: Tiles, Maps and Coverages of each job (a collection), and
Processes with openEO process graphs, under ``/ogcapi/``. One module per API; they share
the blueprint, negotiation and collection lookup of :mod:`.base`."""

from __future__ import annotations

from tileserver.web.ogc.ogcapi import api, collections, coverages, maps, processes, tiles
from tileserver.web.ogc.ogcapi.base import bp

__all__ = ["api", "bp", "collections", "coverages", "maps", "processes", "tiles"]
