"""The catalog model: products (STAC collections), items (acquisitions) and bands (assets),
the STAC fields they are read from, and the cut of items to a window and dates. Loading a
static catalog or a STAC API is :mod:`tileserver.data.catalog` and
:mod:`tileserver.data.stac_api`."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import rasterio
import shapely
from rasterio.crs import CRS
from shapely.geometry.base import BaseGeometry

from tileserver.data.remote import gdal_path
from tileserver.errors import TileserverError

#: Well-known Sentinel-2 centre wavelengths (nm) used when the catalog does not say.
S2_WAVELENGTHS_NM = {
    "B01": 443, "B02": 490, "B03": 560, "B04": 665, "B05": 705, "B06": 740, "B07": 783,
    "B08": 842, "B8A": 865, "B09": 945, "B10": 1375, "B11": 1610, "B12": 2190,
}  # fmt: skip


#: STAC ``eo`` common band names by centre wavelength range (nm), for bands whose catalog
#: names none (so that ``ndvi`` and the clients find ``red`` and ``nir`` by themselves).
COMMON_NAMES = (
    ("coastal", 400, 450), ("blue", 450, 530), ("green", 530, 600), ("red", 620, 690),
    ("rededge", 690, 790), ("nir", 790, 1000), ("cirrus", 1350, 1410),
    ("swir16", 1550, 1750), ("swir22", 2080, 2350), ("lwir11", 10500, 11500),
    ("lwir12", 11500, 12500),
)  # fmt: skip


def common_name_for(wavelength_nm: float | None) -> str | None:
    """The STAC common name of a centre wavelength, if it falls in one of the ranges."""
    if wavelength_nm is None:
        return None
    return next((name for name, lo, hi in COMMON_NAMES if lo <= wavelength_nm < hi), None)


class CatalogError(TileserverError):
    """A catalog that cannot be loaded."""

    status = 500
    code = "CatalogError"


@dataclass(frozen=True)
class Band:
    """One band of a product, as the graphs name it."""

    id: str
    dtype: str
    nodata: float | None
    res_m: float
    wavelength_nm: float | None = None
    common_name: str | None = None
    scale: float = 1.0
    offset: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The 0.0.2 band description."""
        out: dict[str, Any] = {
            "band_id": self.id,
            "type": self.dtype,
            "nodata": "nan" if self.nodata is not None and self.nodata != self.nodata
            else self.nodata,
            "res_m": self.res_m,
        }
        if self.wavelength_nm is not None:
            out["wavelength_nm"] = self.wavelength_nm
        if self.common_name:
            out["name"] = self.common_name
        if self.scale != 1.0 or self.offset != 0.0:
            out["scale"], out["offset"] = self.scale, self.offset
        return out


@dataclass
class Item:
    """One acquisition: a datetime, a footprint and one file per band."""

    id: str
    datetime: datetime
    geometry: BaseGeometry  # WGS84
    assets: dict[str, str]  # band id -> absolute href
    epsg: int | None = None
    _crs: CRS | None = field(default=None, repr=False)
    #: the item's STAC properties (``eo:cloud_cover``…), for ``load_collection``'s filters
    properties: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: the files' pixel grids the catalog gives (STAC ``proj:transform`` and ``proj:shape``):
    #: band id -> ``(transform coefficients a, b, c, d, e, f, (height, width))``; the key
    #: ``""`` holds the item-level fields (every asset's, unless an asset says otherwise).
    #: :func:`tileserver.data.grid.file_grid` reads the file's header for a band not here.
    grids: dict[str, tuple] = field(default_factory=dict, repr=False, compare=False)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """WGS84 bounds of the footprint."""
        return tuple(self.geometry.bounds)  # type: ignore[return-value]

    @property
    def crs(self) -> CRS:
        """CRS of the files (``proj:epsg`` or read from the first file)."""
        if self._crs is None:
            if self.epsg:
                self._crs = CRS.from_epsg(self.epsg)
            else:
                with rasterio.open(gdal_path(next(iter(self.assets.values())))) as src:
                    self._crs = src.crs
        return self._crs


class Product:
    """A STAC collection: bands shared by its items, an extent, and the items of a window.

    The interface every protocol relies on: ``id``, ``bands``, ``crs``, ``bbox``,
    ``time_range`` and ``items_for(bbox, time)``. :class:`StaticProduct` holds its items
    in memory; :class:`tileserver.data.stac_api.ApiProduct` searches a STAC API.
    """

    id: str
    description: str
    title: str | None
    bands: dict[str, Band]  # in catalog order
    license: str | None = None

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """WGS84 bounds of all items."""
        raise NotImplementedError

    @property
    def crs(self) -> CRS:
        """The product's native CRS."""
        raise NotImplementedError

    @property
    def time_range(self) -> tuple[datetime, datetime]:
        """First and last acquisition."""
        raise NotImplementedError

    def items_for(
        self,
        bbox_wgs84: tuple[float, float, float, float] | None,
        time: tuple[datetime, datetime] | None,
    ) -> list[Item]:
        """Items whose footprint intersects ``bbox_wgs84`` and whose date is in ``time``,
        sorted by datetime (then id)."""
        raise NotImplementedError

    def band_ids(self) -> list[str]:
        """Band ids in catalog order."""
        return list(self.bands)

    def some_items(self) -> list[Item]:
        """A few items (all of a static catalog, one search page of an API), for facts
        that any file of the product gives (its grid)."""
        return self.items_for(None, None)

    def item_count(self) -> int | None:
        """Number of items when known without asking anyone."""
        return None

    def version_key(
        self,
        bbox_wgs84: tuple[float, float, float, float] | None = None,
        time: tuple[datetime, datetime] | None = None,
    ) -> str:
        """A token of what a read over ``bbox_wgs84`` and ``time`` depends on: the band
        definitions, and each matching item's id, date and files (href, size, mtime).

        It changes when an item is added, removed or moved in time, or a file is rewritten,
        so cache keys that include it never serve bytes of an older catalog. Files that are
        not local (URLs) count by their href only (STAC APIs: as of the cached search).
        """
        h = hashlib.sha256(f"{self.id}\x1f{sorted(self.bands.items())!r}".encode())
        for item in self.items_for(bbox_wgs84, time):
            h.update(f"\x1e{item.id}\x1f{item.datetime.isoformat()}".encode())
            for band, href in sorted(item.assets.items()):
                try:
                    st = os.stat(href)
                    stamp = f"{st.st_size}:{st.st_mtime_ns}"
                except (OSError, ValueError):
                    stamp = ""
                h.update(f"\x1f{band}={href}@{stamp}".encode())
        return h.hexdigest()[:24]

    def to_json(self, full: bool = False) -> dict[str, Any]:
        """The 0.0.2 ``/data`` entry (``full`` adds extent, time and bands)."""
        out: dict[str, Any] = {"product_id": self.id, "description": self.description}
        if self.title:
            out["title"] = self.title
        if full:
            west, south, east, north = self.bbox
            t0, t1 = self.time_range
            out["extent"] = {
                "srs": "EPSG:4326",
                "left": west,
                "right": east,
                "bottom": south,
                "top": north,
            }
            out["time"] = {"from": _iso(t0), "to": _iso(t1)}
            out["bands"] = [b.to_json() for b in self.bands.values()]
            out["crs"] = self.crs.to_string()
            count = self.item_count()
            if count is not None:
                out["items"] = count
        return out


class StaticProduct(Product):
    """A collection of a static catalog: every item in memory."""

    def __init__(self, id: str, description: str, title: str | None,  # noqa: A002
                 bands: dict[str, Band], items: list[Item], license: str | None = None):
        self.id, self.description, self.title = id, description, title
        self.bands, self.license = bands, license
        self.items = items  # sorted by datetime

    @cached_property
    def bbox(self) -> tuple[float, float, float, float]:  # type: ignore[override]
        """WGS84 bounds of all items."""
        xs0, ys0, xs1, ys1 = zip(*(i.bbox for i in self.items), strict=True)
        return (min(xs0), min(ys0), max(xs1), max(ys1))

    @cached_property
    def crs(self) -> CRS:  # type: ignore[override]
        """The most common CRS of the items (the product's native CRS)."""
        counts = Counter(i.crs.to_string() for i in self.items)
        return CRS.from_user_input(counts.most_common(1)[0][0])

    @property
    def time_range(self) -> tuple[datetime, datetime]:
        """First and last acquisition."""
        return self.items[0].datetime, self.items[-1].datetime

    def item_count(self) -> int | None:
        """Number of items."""
        return len(self.items)

    def items_for(
        self,
        bbox_wgs84: tuple[float, float, float, float] | None,
        time: tuple[datetime, datetime] | None,
    ) -> list[Item]:
        """Items whose footprint intersects ``bbox_wgs84`` and whose date is in ``time``."""
        return filter_items(self.items, bbox_wgs84, time)


class FilteredProduct(Product):
    """A product seen through a predicate on its items (``load_collection``'s
    ``properties`` filters): the same collection, bands and grid, fewer items."""

    def __init__(self, inner: Product, keep):
        self.inner, self.keep = inner, keep
        self.id, self.description, self.title = inner.id, inner.description, inner.title
        self.bands, self.license = inner.bands, inner.license

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """The collection's bounds."""
        return self.inner.bbox

    @property
    def crs(self) -> CRS:
        """The collection's CRS."""
        return self.inner.crs

    @property
    def time_range(self) -> tuple[datetime, datetime]:
        """The collection's first and last acquisition."""
        return self.inner.time_range

    def items_for(self, bbox_wgs84, time) -> list[Item]:
        """The inner product's items that the predicate keeps."""
        return [i for i in self.inner.items_for(bbox_wgs84, time) if self.keep(i)]

    def some_items(self) -> list[Item]:
        """Items for facts of the grid: any item of the collection tells them."""
        return self.inner.some_items()

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.inner, name)


def filter_items(items, bbox_wgs84, time) -> list[Item]:
    """The items (in their order) that intersect ``bbox_wgs84`` and lie in ``time``."""
    geom = shapely.box(*bbox_wgs84) if bbox_wgs84 else None  # 4x faster than geometry.box
    out = []
    for item in items:
        if time and not (time[0] <= item.datetime <= time[1]):
            continue
        if geom is not None and not item.geometry.intersects(geom):
            continue
        out.append(item)
    return out


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_utc(t: datetime) -> datetime:
    """``t`` as an aware UTC datetime (naive means UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def band_fields(asset: dict) -> dict[str, Any]:
    """What an asset (or an ``item_assets`` entry) says of its first band, from STAC 1.0's
    ``eo:bands``/``raster:bands`` or STAC 1.1's ``bands`` and asset-level fields:
    ``common_name``, ``center_wavelength``, ``data_type``, ``nodata``,
    ``spatial_resolution``, ``scale``, ``offset``."""
    eo = (asset.get("eo:bands") or [{}])[0]
    raster = (asset.get("raster:bands") or [{}])[0]
    v11 = {**asset, **((asset.get("bands") or [{}])[0])}
    out: dict[str, Any] = {}
    for name in ("common_name", "center_wavelength"):
        value = eo.get(name, v11.get(f"eo:{name}"))
        if value is not None:
            out[name] = value
    for name in ("data_type", "nodata", "spatial_resolution", "scale", "offset"):
        value = raster.get(name, v11.get(name, v11.get(f"raster:{name}")))
        if value is not None:
            out[name] = value
    if "spatial_resolution" not in out and asset.get("gsd") is not None:
        out["spatial_resolution"] = asset["gsd"]
    return out


def make_band(key: str, asset: dict, summaries: dict, href: str | None) -> Band:
    """The band of asset ``key``; what the STAC JSON does not say (data type, resolution,
    nodata) comes from the file at ``href``."""
    meta = band_fields(asset)
    eo = summaries.get(key, {})
    dtype = meta.get("data_type")
    res = meta.get("spatial_resolution")
    nodata = meta.get("nodata")
    if dtype is None or res is None or (nodata is None and href is not None):
        if href is None:
            raise CatalogError(f"band {key}: no data type or resolution in the catalog and no "
                               "file to read them from")
        with rasterio.open(gdal_path(href)) as src:
            dtype = dtype or src.dtypes[0]
            if src.crs and src.crs.is_geographic:
                res = res or abs(src.res[0]) * 111_320.0
            res = res or abs(src.res[0])
            nodata = src.nodata if nodata is None else nodata
    wl = meta.get("center_wavelength", eo.get("center_wavelength"))
    wavelength = round(float(wl) * 1000, 1) if wl else S2_WAVELENGTHS_NM.get(key)
    if isinstance(nodata, str):  # "nan", "inf"
        nodata = float(nodata)
    return Band(
        id=key,
        dtype=str(dtype),
        nodata=None if nodata is None else float(nodata),
        res_m=float(res),
        wavelength_nm=wavelength,
        common_name=meta.get("common_name") or eo.get("common_name")
        or common_name_for(wavelength),
        scale=float(meta.get("scale", 1.0)),
        offset=float(meta.get("offset", 0.0)),
    )


def is_band_asset(asset: dict) -> bool:
    """A data asset that GDAL reads (GeoTIFF, JPEG 2000…)."""
    roles = asset.get("roles") or ["data"]
    media = (asset.get("type") or "image/tiff").lower()
    return "data" in roles and ("tiff" in media or "jp2" in media or "image" in media)


def summary_bands(collection: dict) -> dict[str, dict]:
    """``summaries.eo:bands`` (or STAC 1.1 ``summaries.bands``) by band name, in order."""
    out = {}
    summaries = collection.get("summaries") or {}
    for b in (summaries.get("eo:bands") or summaries.get("bands") or []):
        if isinstance(b, dict) and "name" in b:
            out[b["name"]] = {"common_name": b.get("common_name", b.get("eo:common_name")),
                              "center_wavelength": b.get("center_wavelength",
                                                         b.get("eo:center_wavelength"))}
    return out


def band_order(bands: dict[str, Band], summaries: dict) -> dict[str, Band]:
    """Bands named by the summaries first (in their order), then the others."""
    order = [k for k in summaries if k in bands] + [k for k in bands if k not in summaries]
    return {k: bands[k] for k in order}


def item_epsg(properties: dict) -> int | None:
    """``proj:epsg`` or the EPSG code of ``proj:code``."""
    epsg = properties.get("proj:epsg")
    code = properties.get("proj:code")
    if epsg is None and isinstance(code, str) and code.upper().startswith("EPSG:"):
        epsg = int(code.split(":")[1])
    return int(epsg) if epsg is not None else None


def proj_grid(fields: dict) -> tuple | None:
    """``(a, b, c, d, e, f, (height, width))`` of STAC ``proj:transform`` and ``proj:shape``
    (item properties or asset fields), or None when either is missing or malformed."""
    transform, shape = fields.get("proj:transform"), fields.get("proj:shape")
    try:
        coeffs = tuple(float(v) for v in transform[:6])
        height, width = (int(v) for v in shape[:2])
    except (TypeError, ValueError, IndexError):
        return None
    if len(coeffs) != 6 or height <= 0 or width <= 0 or coeffs[0] == 0 or coeffs[4] == 0:
        return None
    return (*coeffs, (height, width))


def item_grids(properties: dict, assets: dict[str, dict]) -> dict[str, tuple]:
    """The :attr:`Item.grids` of an item's properties and its band assets' fields."""
    out = {}
    own = proj_grid(properties)
    if own is not None:
        out[""] = own
    for key, fields in assets.items():
        grid = proj_grid(fields)
        if grid is not None:
            out[key] = grid
    return out


def item_datetime(properties: dict) -> datetime | None:
    """``datetime``, or ``start_datetime`` when it is null."""
    value = properties.get("datetime") or properties.get("start_datetime")
    if value is None:
        return None
    return as_utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
