"""STAC catalogs: static catalogs and collections (every item in memory) and STAC API roots
(items searched per window, :mod:`tileserver.data.stac_api`) gathered in one
:class:`Catalog`; collections are products, items are acquisitions, assets are bands (the
model is :mod:`tileserver.data.model`, whose names are importable from here too)."""

from __future__ import annotations

import threading
from pathlib import Path

import pystac
from shapely.geometry import box, shape

from tileserver.data.model import (
    COMMON_NAMES,
    S2_WAVELENGTHS_NM,
    Band,
    CatalogError,
    FilteredProduct,
    Item,
    Product,
    StaticProduct,
    as_utc,
    band_fields,
    band_order,
    common_name_for,
    filter_items,
    is_band_asset,
    item_datetime,
    item_epsg,
    item_grids,
    make_band,
    summary_bands,
)
from tileserver.data.stac_api import ApiOptions, load_api
from tileserver.errors import ProductNotFound

__all__ = [
    "COMMON_NAMES", "S2_WAVELENGTHS_NM", "ApiOptions", "Band", "Catalog", "CatalogError",
    "FilteredProduct", "Item", "Product", "StaticProduct", "as_utc", "band_fields",
    "band_order", "common_name_for", "filter_items", "is_api_root", "is_band_asset",
    "item_datetime", "item_epsg", "item_grids", "make_band", "summary_bands",
]


def _load_collection(collection: pystac.Collection) -> StaticProduct:
    summaries = summary_bands(collection.to_dict(include_self_link=False,
                                                 transform_hrefs=False))
    items: list[Item] = []
    bands: dict[str, Band] = {}
    for stac_item in collection.get_items(recursive=True):
        if stac_item.datetime is None:
            start = stac_item.common_metadata.start_datetime
            if start is None:
                raise CatalogError(f"item {stac_item.id} has no datetime")
            when = start
        else:
            when = stac_item.datetime
        assets, asset_fields = {}, {}
        for key, asset in stac_item.assets.items():
            fields = {**asset.extra_fields, "roles": asset.roles, "type": asset.media_type}
            if not is_band_asset(fields):
                continue
            href = asset.get_absolute_href() or asset.href
            assets[key] = href
            asset_fields[key] = fields
            if key not in bands:
                bands[key] = make_band(key, fields, summaries, href)
        geom = shape(stac_item.geometry) if stac_item.geometry else box(*stac_item.bbox)
        items.append(Item(stac_item.id, as_utc(when), geom, assets,
                          item_epsg(stac_item.properties),
                          properties=dict(stac_item.properties),
                          grids=item_grids(stac_item.properties, asset_fields)))
    if not items:
        raise CatalogError(f"collection {collection.id} has no items")
    items.sort(key=lambda i: (i.datetime, i.id))
    return StaticProduct(
        id=collection.id,
        description=collection.description or collection.id,
        title=collection.title,
        bands=band_order(bands, summaries),
        items=items,
        license=collection.license,
    )


def is_api_root(path: str) -> bool:
    """An ``http(s)://`` root that is not a JSON file: a STAC API (``…#collections=a,b``)."""
    if not path.startswith(("http://", "https://")):
        return False
    return not path.split("#", 1)[0].split("?", 1)[0].endswith(".json")


def _load_static(path: str) -> dict[str, Product]:
    if not Path(path).exists() and "://" not in path:
        raise CatalogError(f"catalog file {path} does not exist")
    obj = pystac.read_file(path)
    if isinstance(obj, pystac.Collection):
        collections = [obj]
    elif isinstance(obj, pystac.Catalog):
        collections = list(obj.get_all_collections())
    else:
        raise CatalogError(f"{path} is neither a STAC catalog nor a collection")
    return {col.id: _load_collection(col) for col in collections}


class Catalog:
    """All products of one or several STAC catalogs, collections or STAC APIs."""

    def __init__(self, products: dict[str, Product]):
        self.products = products
        self._lock = threading.Lock()

    @classmethod
    def load(cls, paths: list[str] | tuple[str, ...], options: ApiOptions | None = None
             ) -> Catalog:
        """Read each ``catalog.json`` or ``collection.json`` (every item, in memory) and
        the collections of each STAC API root (their items are searched per request).

        ``options``: :class:`~tileserver.data.stac_api.ApiOptions` of the STAC APIs. An API
        that cannot be reached is logged and left out; the other catalogs are served.
        """
        products: dict[str, Product] = {}
        for path in paths:
            if is_api_root(path):
                products.update(load_api(path, options))
            else:
                products.update(_load_static(path))
        return cls(products)

    def get(self, product_id: str, path: str | None = None) -> Product:
        """The product or :class:`ProductNotFound` (``path``: where the graph names it)."""
        try:
            return self.products[product_id]
        except (KeyError, TypeError):
            where = f"{path}: " if path else ""
            raise ProductNotFound(
                f"{where}unknown product_id {product_id!r}; available: "
                f"{', '.join(sorted(self.products))}", path=path) from None

    def __iter__(self):
        return iter(self.products.values())
