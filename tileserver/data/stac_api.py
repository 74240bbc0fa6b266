"""STAC API catalogs: collections read at start-up, items searched per request.

``TILESERVER_CATALOG=https://host/stac/v1#collections=a,b`` serves the collections ``a``
and ``b`` of that API (all of them without ``#collections``). Items are never loaded whole:
each evaluation searches the items of its window (``pystac-client`` item search by bbox and
datetime, paged, at most ``stac_max_pages`` pages). Searches are cached in memory for
``stac_search_ttl`` seconds, keyed by (collection, bbox snapped outward to a power-of-two
grid of degrees at least as large as the window and never finer than ``search_cell``,
datetime range, see :func:`snap_bbox`); a window inside the area of any cached search of the
same collection and dates is served by it. So the tiles of a map view, at every zoom level
where a tile is smaller than the cell, share one or two searches of a larger area, whose
items are then cut to each window by their own footprints; identical searches in flight are
sent once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pystac_client
import requests
from cachetools import TTLCache
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from shapely.geometry import box, shape
from urllib3.util.retry import Retry

from tileserver import metrics
from tileserver.data.model import (
    Band,
    CatalogError,
    Item,
    Product,
    band_fields,
    band_order,
    filter_items,
    is_band_asset,
    item_datetime,
    item_epsg,
    item_grids,
    make_band,
    summary_bands,
)
from tileserver.data.remote import host_of, redact
from tileserver.errors import UpstreamError, UpstreamTimeout
from tileserver.settings import RemoteSettings, load_settings

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ApiOptions:
    """How STAC APIs are searched (the ``stac_*`` and ``remote_*`` settings; their defaults
    are in ``config/default.yaml``)."""

    page_size: int  # items per page (``limit``)
    max_pages: int  # pages of one search at most: an API that pages forever stops
    search_ttl: int  # seconds a search result is reused
    timeout: int  # seconds of one request
    retries: int  # retries of a failed request (connection errors, 502/503/504)
    retry_delay: int  # backoff factor of the retries, seconds
    search_cache_entries: int = 1024
    #: degrees: the finest grid of search areas (a window smaller than half a cell searches
    #: the two-cell-wide area around its cell: 0.25 degrees, ~20-28 km, for every tile of
    #: zoom 13 and more, so panning and zooming in reuse one search)
    search_cell: float = 0.125

    @classmethod
    def from_settings(cls, settings: RemoteSettings | None = None, **changes) -> ApiOptions:
        """From :class:`~tileserver.settings.Settings` (by default :func:`load_settings`),
        with ``changes`` (fields of these options)."""
        s = settings if settings is not None else load_settings()
        return cls(**{**dict(page_size=s.stac_page_size, max_pages=s.stac_max_pages,
                                search_ttl=s.stac_search_ttl, timeout=s.remote_timeout,
                                retries=s.remote_retries, retry_delay=s.remote_retry_delay),
                      **changes})


def parse_root(root: str) -> tuple[str, list[str] | None]:
    """``https://host/api#collections=a,b`` -> ``("https://host/api", ["a", "b"])``."""
    url, _, fragment = root.partition("#")
    wanted = None
    if fragment:
        query = parse_qs(fragment)
        unknown = set(query) - {"collections"}
        if unknown:
            raise CatalogError(f"STAC API {redact(url)}: unknown option(s) "
                               f"{', '.join(sorted(unknown))} after '#' (known: collections)")
        wanted = [c.strip() for v in query.get("collections", []) for c in v.split(",")
                  if c.strip()]
    return url, wanted


def snap_bbox(bbox: tuple[float, float, float, float], min_cell: float = 0.0
              ) -> tuple[float, float, float, float]:
    """The search area of ``bbox``: a cell of a grid of 2**k degrees (twice the
    power of two at least as large as the bbox, at least ``min_cell``) holding the bbox's
    centre, grown by half a cell on each side, which contains the bbox. Every window of
    similar size or smaller whose centre lies in the same cell (the neighbouring tiles of a
    map, and with ``min_cell`` the tiles of every zoom level above it) gets the same
    search."""
    x0, y0, x1, y1 = bbox
    size = max(x1 - x0, y1 - y0, 1e-9)
    cell = max(2.0 ** (math.ceil(math.log2(size)) + 1), min_cell)
    i = math.floor((x0 + x1) / 2 / cell)
    j = math.floor((y0 + y1) / 2 / cell)
    return (max(-180.0, (i - 0.5) * cell), max(-90.0, (j - 0.5) * cell),
            min(180.0, (i + 1.5) * cell), min(90.0, (j + 1.5) * cell))


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _upstream(host: str, exc: Exception, what: str) -> UpstreamError:
    if isinstance(exc, requests.Timeout) or "timed out" in str(exc).lower():
        return UpstreamTimeout(f"STAC API {host} did not answer in time ({what})")
    return UpstreamError(f"STAC API {host} failed ({what}): {type(exc).__name__}")


class ApiSource:
    """One STAC API: its client, its search cache."""

    def __init__(self, url: str, options: ApiOptions):
        self.url = url
        self.host = host_of(url)
        self.options = options
        retry = Retry(total=options.retries, backoff_factor=options.retry_delay,
                      status_forcelist=(502, 503, 504), allowed_methods=None)
        self.client = pystac_client.Client.open(
            url, stac_io=StacApiIO(timeout=options.timeout, max_retries=retry),
            timeout=options.timeout)
        self._cache: TTLCache = TTLCache(options.search_cache_entries, options.search_ttl)
        self._lock = threading.Lock()
        self._inflight: dict[tuple, threading.Lock] = {}

    def collections(self, wanted: list[str] | None) -> list[dict]:
        """The collections' JSON (all of them, or ``wanted`` in that order)."""
        if wanted is None:
            return [c.to_dict(transform_hrefs=False) for c in self.client.get_collections()]
        out = []
        for cid in wanted:
            try:
                col = self.client.get_collection(cid)
            except APIError as exc:
                log.error("STAC API %s has no collection %r (%s): left out", self.host, cid,
                          str(exc)[:200])
                continue
            if col is not None:
                out.append(col.to_dict(transform_hrefs=False))
        return out

    def search_pages(self, collection: str, bbox, datetime_: str | None,
                     max_items: int | None = None):
        """Pages (dicts) of an item search, at most ``max_pages`` of them."""
        search = self.client.search(collections=[collection], bbox=bbox, datetime=datetime_,
                                    limit=min(self.options.page_size, max_items or 10**9),
                                    max_items=max_items)
        for n, page in enumerate(search.pages_as_dicts()):
            if n >= self.options.max_pages:
                metrics.STAC_SEARCH_TRUNCATED.labels(collection).inc()
                log.warning("STAC API %s, collection %s: search of bbox %s, datetime %s "
                            "stopped after %d pages of %d items (stac_max_pages); the "
                            "result is partial", self.host, collection, bbox, datetime_,
                            self.options.max_pages, self.options.page_size)
                return
            metrics.STAC_SEARCH_PAGES.labels(collection).inc()
            yield page

    def search(self, collection: str, bbox, time: tuple[datetime, datetime] | None,
               parse) -> list[Item]:
        """Items of ``collection`` in the snapped ``bbox`` and ``time``, through the cache."""
        snapped = snap_bbox(bbox, self.options.search_cell) if bbox is not None else None
        dt = f"{_iso(time[0])}/{_iso(time[1])}" if time else None
        key = (collection, snapped, dt)
        with self._lock:
            hit = self._cache.get(key)
            if hit is None and bbox is not None:
                hit = self._covering(collection, bbox, dt)
            if hit is None:
                gate = self._inflight.setdefault(key, threading.Lock())
        if hit is not None:
            metrics.STAC_SEARCH_CACHE_HITS.labels(collection).inc()
            return hit
        with gate:  # one search per key in flight; the others wait for its result
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None:
                metrics.STAC_SEARCH_CACHE_HITS.labels(collection).inc()
                return hit
            started = time_now()
            metrics.STAC_SEARCHES.labels(collection).inc()
            try:
                items = [it for page in self.search_pages(collection, snapped, dt)
                         for feature in page.get("features", [])
                         if (it := parse(feature)) is not None]
            except (requests.RequestException, APIError) as exc:
                raise _upstream(self.host, exc, f"search of {collection}") from exc
            finally:
                metrics.STAC_SEARCH_SECONDS.labels(collection).observe(time_now() - started)
                with self._lock:
                    self._inflight.pop(key, None)
            items.sort(key=lambda i: (i.datetime, i.id))
            with self._lock:
                self._cache[key] = items
            return items


    def _covering(self, collection: str, bbox, dt: str | None) -> list[Item] | None:
        """The items of a cached search of the same collection and dates whose area holds
        ``bbox`` (a larger window's search, of another zoom level), else None. Under the
        lock."""
        x0, y0, x1, y1 = bbox
        for key in list(self._cache.keys()):
            cid, area, when = key
            if cid == collection and when == dt and area is not None and (
                    area[0] <= x0 and area[1] <= y0 and x1 <= area[2] and y1 <= area[3]):
                items = self._cache.get(key)  # None if it expired meanwhile
                if items is not None:
                    return items
        return None


def time_now() -> float:
    """Monotonic seconds."""
    return time.perf_counter()


class ApiProduct(Product):
    """A collection of a STAC API; its items are searched per window, never held whole."""

    def __init__(self, source: ApiSource, collection: dict):
        self.source = source
        self.collection = collection
        self.id = collection["id"]
        self.description = collection.get("description") or self.id
        self.title = collection.get("title")
        self.license = collection.get("license")
        self.bands = self._bands()

    # -- what the collection says --------------------------------------------------------

    def _sample(self) -> Item | None:
        """One item (the first of a search), for what the collection does not say."""
        for page in self.source.search_pages(self.id, None, None, max_items=1):
            for feature in page.get("features", []):
                item = self.parse(feature)
                if item is not None:
                    return item
        return None

    @cached_property
    def sample(self) -> Item | None:
        """One item of the collection (searched once)."""
        return self._sample()

    def _bands(self) -> dict[str, Band]:
        summaries = summary_bands(self.collection)
        defs = self.collection.get("item_assets") or {}
        bands: dict[str, Band] = {}
        for key, asset in defs.items():
            if not is_band_asset(asset):
                continue
            known = band_fields(asset)
            href = None
            if any(k not in known for k in ("data_type", "spatial_resolution", "nodata")):
                href = self.sample.assets.get(key) if self.sample else None
            bands[key] = make_band(key, asset, summaries, href)
        if not defs:  # no item_assets: the assets of one item say it
            if self.sample is None:
                raise CatalogError(f"collection {self.id} has no item_assets and no items")
            feature = self._sample_feature()
            for key, asset in (feature.get("assets") or {}).items():
                if is_band_asset(asset) and key in self.sample.assets:
                    bands[key] = make_band(key, asset, summaries, self.sample.assets[key])
        if not bands:
            raise CatalogError(f"collection {self.id} has no band assets")
        return band_order(bands, summaries)

    def _sample_feature(self) -> dict:
        for page in self.source.search_pages(self.id, None, None, max_items=1):
            for feature in page.get("features", []):
                return feature
        return {}

    @cached_property
    def bbox(self) -> tuple[float, float, float, float]:  # type: ignore[override]
        """The collection's spatial extent."""
        try:
            west, south, east, north = self.collection["extent"]["spatial"]["bbox"][0][:4]
        except (KeyError, IndexError, TypeError, ValueError):
            return (-180.0, -90.0, 180.0, 90.0)
        return (float(west), float(south), float(east), float(north))

    @cached_property
    def time_range(self) -> tuple[datetime, datetime]:  # type: ignore[override]
        """The collection's temporal extent (an open end is now)."""
        try:
            t0, t1 = self.collection["extent"]["temporal"]["interval"][0][:2]
        except (KeyError, IndexError, TypeError, ValueError):
            t0 = t1 = None
        parse = item_datetime
        start = parse({"datetime": t0}) if t0 else EPOCH
        end = parse({"datetime": t1}) if t1 else datetime.now(UTC).replace(microsecond=0)
        return start or EPOCH, end or datetime.now(UTC)

    @cached_property
    def crs(self) -> CRS:  # type: ignore[override]
        """``summaries`` ``proj:code``/``proj:epsg`` (the most listed first), else the CRS of
        one item."""
        summaries = self.collection.get("summaries") or {}
        for key in ("proj:code", "proj:epsg"):
            values = summaries.get(key)
            if isinstance(values, list) and values:
                value = values[0]
                return CRS.from_user_input(f"EPSG:{value}" if key == "proj:epsg" else value)
        if self.sample is None:
            return CRS.from_epsg(4326)
        return self.sample.crs

    # -- items ---------------------------------------------------------------------------

    def parse(self, feature: dict) -> Item | None:
        """An :class:`Item` from a search result (None, with a log line, when unusable)."""
        fid = feature.get("id", "?")
        props = feature.get("properties") or {}
        when = item_datetime(props)
        if when is None:
            log.warning("collection %s: item %s has no datetime: skipped", self.id, fid)
            return None
        base = next((ln.get("href") for ln in feature.get("links", [])
                     if ln.get("rel") == "self"), None) or self.source.url
        assets, asset_fields = {}, {}
        for key, asset in (feature.get("assets") or {}).items():
            href = asset.get("href")
            if href and is_band_asset(asset):
                scheme = urlsplit(href).scheme
                assets[key] = href if scheme else urljoin(base, href)
                asset_fields[key] = asset
        if not assets:
            log.warning("collection %s: item %s has no band assets: skipped", self.id, fid)
            return None
        try:
            geom = shape(feature["geometry"]) if feature.get("geometry") \
                else box(*feature["bbox"][:4])
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("collection %s: item %s has no usable geometry: skipped", self.id, fid)
            return None
        return Item(str(fid), when, geom, assets, item_epsg(props), properties=dict(props),
                    grids=item_grids(props, asset_fields))

    def items_for(
        self,
        bbox_wgs84: tuple[float, float, float, float] | None,
        time: tuple[datetime, datetime] | None,
    ) -> list[Item]:
        """The items of a search (cached), cut to the exact bbox."""
        found = self.source.search(self.id, bbox_wgs84, time, self.parse)
        return filter_items(found, bbox_wgs84, time)

    def some_items(self) -> list[Item]:
        """The first page of a search of the whole collection."""
        return [it for page in self.source.search_pages(
            self.id, None, None, max_items=self.source.options.page_size)
            for f in page.get("features", []) if (it := self.parse(f)) is not None]

    def to_json(self, full: bool = False) -> dict[str, Any]:
        """The 0.0.2 ``/data`` entry, with the API it comes from."""
        out = super().to_json(full)
        if full:
            out["stac_api"] = redact(self.source.url)
        return out


def load_api(root: str, options: ApiOptions | None = None) -> dict[str, Product]:
    """The products of the STAC API at ``root``; an API that cannot be read is logged and
    gives none (the server starts with its other catalogs)."""
    url, wanted = parse_root(root)
    options = options or ApiOptions.from_settings()
    host = host_of(url)
    try:
        source = ApiSource(url, options)
        collections = source.collections(wanted)
    except (requests.RequestException, APIError, ValueError, OSError) as exc:
        log.error("STAC API %s cannot be read (%s: %s); its collections are not served",
                  redact(url), type(exc).__name__, str(exc)[:300])
        return {}
    products: dict[str, Product] = {}
    for col in collections:
        try:
            products[col["id"]] = ApiProduct(source, col)
        except (CatalogError, requests.RequestException, APIError, OSError,
                CPLE_BaseError) as exc:
            log.error("STAC API %s, collection %s cannot be served: %s", host,
                      col.get("id"), str(exc)[:300])
    log.info("STAC API %s: %d collection(s) %s", redact(url), len(products),
             ", ".join(products))
    return products
