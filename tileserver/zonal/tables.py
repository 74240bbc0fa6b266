"""Tables of zonal statistics and their encoders (GeoPackage, GeoJSON, CSV, JSON).

A :class:`ZonalTable` holds the regions (geometry, source file, attributes) and one value
per region, date and band, with ``NaN`` for "no value" (written as null, never as zero).

GeoPackage layout (written by pyogrio/OGR), chosen so that a QGIS user can both map and
plot the series without any reshaping:

* layer ``regions``: one feature per region with its geometry, ``region_id``, ``source``
  (file and layer it came from), the original attributes, and one column per date (wide
  form, ``avg_2017_01_08``…; ``avg_B04_2017_01_08`` when there are several bands). This is
  what the attribute table, labels and graduated styles use directly.
* table ``timeseries`` (no geometry): one row per region, date and band with
  ``region_id`` (= the ``fid`` and ``region_id`` of ``regions``), ``date`` (a real Date
  field), ``band``, ``value`` and ``pixels`` (valid pixels that made the value). Plotting
  tools (DataPlotly, the Temporal Controller on a join) want this long form: X = date,
  Y = value, one trace per region_id. Wide columns alone cannot be plotted as a line
  without pivoting, long rows alone cannot be styled on the map; so both are written.

CSV is the long form (one row per region, date and band, with the region attributes);
GeoJSON holds the regions in WGS84 with the wide columns and a ``timeseries`` array;
JSON is a compact document of the whole table.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from shapely.geometry import mapping

from tileserver.errors import OutputFormatError
from tileserver.render.encoders import Encoded
from tileserver.render.formats import OutputFormat, register_format

#: Column names the table itself uses; attributes with these names get an ``attr_`` prefix.
RESERVED = {"fid", "geom", "geometry", "region_id", "source", "date", "band", "value",
            "pixels", "timeseries"}


@dataclass
class Regions:
    """Polygons read from user files, all in one ``crs`` (a pyproj CRS)."""

    geoms: list  # shapely (multi)polygons
    crs: ProjCRS
    sources: list[str]
    attributes: dict[str, list] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.geoms)


@dataclass
class ZonalTable:
    """Statistics of ``func`` per region, date and band.

    ``values`` and ``pixels`` have the shape ``(regions, dates, bands)``; ``dates`` is
    ``None`` when the time axis was reduced (then there is one "date" slot).
    """

    regions: Regions
    func: str
    bands: tuple[str, ...]
    dates: tuple[datetime, ...] | None
    values: np.ndarray
    pixels: np.ndarray
    kind: str = "reflectance"
    notes: tuple[str, ...] = ()
    #: the JSON document: ``table`` (0.0.2 ``zonal_statistics``: dates, bands, regions) or
    #: ``timeseries`` (1.x ``aggregate_spatial``: what openEO clients read, see
    #: :func:`encode_json`)
    json_shape: str = "table"

    @property
    def nbytes(self) -> int:
        """Approximate memory held (for caches)."""
        return int(self.values.nbytes + self.pixels.nbytes + 512 * len(self.regions))

    def date_labels(self) -> list[str | None]:
        """``YYYY-MM-DD`` of each date slot (``[None]`` when reduced)."""
        if self.dates is None:
            return [None]
        return [d.strftime("%Y-%m-%d") for d in self.dates]

    def wide_columns(self) -> list[tuple[str, int, int]]:
        """``(column name, date index, band index)`` of the wide form."""
        out = []
        for ti, label in enumerate(self.date_labels()):
            for bi, band in enumerate(self.bands):
                parts = [self.func]
                if len(self.bands) > 1:
                    parts.append(band)
                if label is not None:
                    parts.append(label.replace("-", "_"))
                out.append(("_".join(parts), ti, bi))
        return out

    def attribute_columns(self) -> list[tuple[str, str]]:
        """``(output name, attribute name)``, renaming those that clash with ours or with
        each other (GeoPackage column names are case-insensitive)."""
        taken = RESERVED | {c.lower() for c, _, _ in self.wide_columns()}
        out = []
        for name in self.regions.attributes:
            out_name = f"attr_{name}" if name.lower() in taken else name
            n = 2
            while out_name.lower() in taken:
                out_name = f"attr_{name}_{n}"
                n += 1
            taken.add(out_name.lower())
            out.append((out_name, name))
        return out


def _value(v: float) -> float | None:
    return None if not math.isfinite(v) else float(v)


def _column_array(values: list) -> tuple[np.ndarray, np.ndarray | None]:
    """A numpy array OGR can write for a list of Python values, and its null mask."""
    present = [v for v in values if v is not None]
    nulls = np.array([v is None for v in values])
    mask = nulls if nulls.any() else None
    if present and all(isinstance(v, bool | np.bool_) for v in present):
        return np.array([int(bool(v)) if v is not None else 0 for v in values]), mask
    if present and all(isinstance(v, int | np.integer) and not isinstance(v, bool)
                       for v in present):
        return np.array([int(v) if v is not None else 0 for v in values], np.int64), mask
    if present and all(isinstance(v, int | float | np.number) for v in present):
        return np.array([float(v) if v is not None else np.nan for v in values]), mask
    text = [v if v is None or isinstance(v, str) else json.dumps(v, default=str)
            for v in values]
    return np.array(text, dtype=object), mask


def _geometry_type(geoms: list) -> str:
    types = {g.geom_type for g in geoms}
    return "Polygon" if types == {"Polygon"} else "MultiPolygon"


def _long_rows(table: ZonalTable):
    labels = table.date_labels()
    for ri in range(len(table.regions)):
        for ti, label in enumerate(labels):
            for bi, band in enumerate(table.bands):
                yield ri, label, band, table.values[ri, ti, bi], int(table.pixels[ri, ti, bi])


# -- GeoPackage ------------------------------------------------------------------------


def encode_gpkg(table: ZonalTable, opts: dict) -> Encoded:
    """Layers ``regions`` (geometry, attributes, wide columns) and ``timeseries`` (long)."""
    import pyogrio.raw  # noqa: PLC0415 - heavy, only when writing

    _no_options("GPKG", opts)
    n = len(table.regions)
    names = ["region_id", "source"]
    data: list[np.ndarray] = [np.arange(1, n + 1, dtype=np.int64),
                              np.array(table.regions.sources, dtype=object)]
    masks: list[np.ndarray | None] = [None, None]
    for out_name, name in table.attribute_columns():
        arr, mask = _column_array(table.regions.attributes[name])
        names.append(out_name)
        data.append(arr)
        masks.append(mask)
    for col, ti, bi in table.wide_columns():
        names.append(col)
        data.append(table.values[:, ti, bi].astype(np.float64))
        masks.append(None)  # NaN is written as NULL (nan_as_null)
    multi = _geometry_type(table.regions.geoms) == "MultiPolygon"
    geoms = [shapely.multipolygons([g]) if multi and g.geom_type == "Polygon" else g
             for g in table.regions.geoms]
    wkb = np.array(shapely.to_wkb(geoms), dtype=object) if n else np.array([], dtype=object)

    rows = list(_long_rows(table))
    reduced = table.dates is None
    ts_names = ["region_id", "date", "band", "value", "pixels"]
    ts_data = [
        np.array([r[0] + 1 for r in rows], dtype=np.int64),
        np.array(["NaT" if reduced else r[1] for r in rows], dtype="datetime64[D]"),
        np.array([r[2] for r in rows], dtype=object),
        np.array([r[3] for r in rows], dtype=np.float64),
        np.array([r[4] for r in rows], dtype=np.int64),
    ]
    ts_masks = [None, np.full(len(rows), True) if reduced else None, None, None, None]

    with tempfile.TemporaryDirectory(prefix="tileserver-gpkg-") as tmp:
        path = str(Path(tmp) / "result.gpkg")
        field_mask = masks if any(m is not None for m in masks) else None
        pyogrio.raw.write(path, wkb, data, names, field_mask=field_mask, layer="regions",
                          driver="GPKG", geometry_type="MultiPolygon" if multi else "Polygon",
                          crs=_crs_text(table.regions.crs),
                          layer_options={"DESCRIPTION": f"zonal statistics ({table.func})"})
        pyogrio.raw.write(path, None, ts_data, ts_names,
                          field_mask=ts_masks if reduced else None, layer="timeseries",
                          driver="GPKG", geometry_type=None,
                          layer_options={"DESCRIPTION": f"{table.func} per region_id, date "
                                         "and band (long form, for plots)"})
        content = Path(path).read_bytes()
    return Encoded(content, "application/geopackage+sqlite3", "gpkg")


# -- GeoJSON, CSV, JSON ------------------------------------------------------------------


def _to_wgs84(table: ZonalTable) -> list:
    crs = table.regions.crs
    wgs84 = ProjCRS.from_epsg(4326)
    if crs.equals(wgs84, ignore_axis_order=True):
        return list(table.regions.geoms)
    tr = Transformer.from_crs(crs, wgs84, always_xy=True)
    return list(shapely.transform(
        np.array(table.regions.geoms, dtype=object),
        lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))))


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _region_properties(table: ZonalTable, ri: int) -> dict[str, Any]:
    props: dict[str, Any] = {"region_id": ri + 1, "source": table.regions.sources[ri]}
    for out_name, name in table.attribute_columns():
        props[out_name] = _plain(table.regions.attributes[name][ri])
    for col, ti, bi in table.wide_columns():
        props[col] = _value(table.values[ri, ti, bi])
    return props


def encode_geojson(table: ZonalTable, opts: dict) -> Encoded:
    """A FeatureCollection in WGS84: wide columns plus a ``timeseries`` array per region."""
    _no_options("GeoJSON", opts)
    geoms = _to_wgs84(table)
    labels = table.date_labels()
    features = []
    for ri, geom in enumerate(geoms):
        props = _region_properties(table, ri)
        props["timeseries"] = [
            {"date": labels[ti], "band": band, "value": _value(table.values[ri, ti, bi]),
             "pixels": int(table.pixels[ri, ti, bi])}
            for ti in range(len(labels)) for bi, band in enumerate(table.bands)
        ]
        features.append({"type": "Feature", "id": ri + 1,
                         "geometry": mapping(geom), "properties": props})
    doc = {"type": "FeatureCollection", "features": features}
    return Encoded(json.dumps(doc).encode(), "application/geo+json", "geojson")


def encode_csv(table: ZonalTable, opts: dict) -> Encoded:
    """Long form: ``region_id, source, <attributes>, date, band, value, pixels``."""
    _no_options("CSV", opts)
    attrs = table.attribute_columns()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["region_id", "source", *[a for a, _ in attrs], "date", "band", "value",
                     "pixels"])
    for ri, label, band, value, pixels in _long_rows(table):
        attr_values = [_plain(table.regions.attributes[name][ri]) for _, name in attrs]
        writer.writerow([ri + 1, table.regions.sources[ri],
                         *["" if v is None else v for v in attr_values],
                         label or "", band, "" if _value(value) is None else repr(float(value)),
                         pixels])
    return Encoded(buf.getvalue().encode("utf-8"), "text/csv; charset=utf-8", "csv")


def timeseries_json(table: ZonalTable) -> dict | list:
    """The openEO JSON of ``aggregate_spatial`` that the official clients read
    (``openeo.rest.conversions.timeseries_json_to_pandas`` of the Python client, the
    back-ends' ``execute()`` answers): ``{date: [[value per band] per region]}``, dates as
    RFC 3339 date-times, ``null`` for no value; ``[[value per band] per region]`` once time
    is reduced (there is no date to key by). The regions keep the input's order."""
    def per_region(ti: int) -> list:
        return [[_value(table.values[ri, ti, bi]) for bi in range(len(table.bands))]
                for ri in range(len(table.regions))]

    if table.dates is None:
        return per_region(0)
    return {f"{label}T00:00:00Z": per_region(ti)
            for ti, label in enumerate(table.date_labels())}


def encode_json(table: ZonalTable, opts: dict) -> Encoded:
    """1.x (``json_shape`` ``timeseries``): :func:`timeseries_json`. 0.0.2: the whole
    table: dates, bands and per region its properties, values and pixels."""
    _no_options("JSON", opts)
    if table.json_shape == "timeseries":
        return Encoded(json.dumps(timeseries_json(table)).encode(), "application/json",
                       "json")
    labels = table.date_labels()
    regions = []
    for ri in range(len(table.regions)):
        props = {out: _plain(table.regions.attributes[name][ri])
                 for out, name in table.attribute_columns()}
        regions.append({
            "region_id": ri + 1,
            "source": table.regions.sources[ri],
            "properties": props,
            "values": {b: [_value(table.values[ri, ti, bi]) for ti in range(len(labels))]
                       for bi, b in enumerate(table.bands)},
            "pixels": {b: [int(table.pixels[ri, ti, bi]) for ti in range(len(labels))]
                       for bi, b in enumerate(table.bands)},
        })
    doc = {"func": table.func, "bands": list(table.bands),
           "dates": None if table.dates is None else labels,
           "notes": list(table.notes), "regions": regions}
    return Encoded(json.dumps(doc).encode(), "application/json", "json")


def _crs_text(crs: ProjCRS) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _no_options(fmt: str, opts: dict) -> None:
    if opts:
        raise OutputFormatError(f"{fmt} output takes no options, got {sorted(opts)}")


def _table_encoder(fmt: str, fn):
    def encode(result, opts):
        if not isinstance(result, ZonalTable):
            raise OutputFormatError(
                f"{fmt} encodes tables (zonal_statistics results); for images use GTiff, "
                "PNG or JPEG")
        return fn(result, opts)

    return encode


def _register() -> None:
    formats = [
        ("GPKG", ("geopackage",), "application/geopackage+sqlite3", encode_gpkg,
         "GeoPackage: layer 'regions' (geometry, attributes, one column per date) and table "
         "'timeseries' (region_id, date, band, value, pixels) for plots."),
        ("GeoJSON", ("geo+json",), "application/geo+json", encode_geojson,
         "GeoJSON FeatureCollection (WGS84): one column per date and a 'timeseries' array."),
        ("CSV", (), "text/csv", encode_csv,
         "Long form: region_id, source, attributes, date, band, value, pixels."),
        ("JSON", (), "application/json", encode_json,
         "Dates, bands and per region its properties, values and valid pixel counts."),
    ]
    for name, aliases, media, fn, text in formats:
        register_format(OutputFormat(
            name, aliases, _table_encoder(name, fn),
            lambda opts, name=name: _no_options(name, opts),
            {"media_type": media, "description": text + " Only for zonal_statistics results.",
             "parameters": {}}))


_register()
