"""Run by Debian's ``/usr/bin/python3`` (python3-qgis) from ``tests/unit/zonal/test_zonal.py``:
open a zonal statistics GeoPackage the way QGIS's browser does and read what a plot would use.

Argument: the GeoPackage path. Prints JSON: per layer its validity, geometry type, feature
count and field types, and per ``region_id`` the series ``[[date, value], ...]`` read from
``timeseries`` with a QGIS filter expression, ordered by date (DataPlotly's input).
"""

import json
import sys

from qgis_boot import start_qgis  # beside this script

app = start_qgis()

from qgis.core import (  # noqa: E402
    QgsFeatureRequest,
    QgsVectorLayer,
    QgsWkbTypes,
)

path = sys.argv[1]
out = {}
for name in ("regions", "timeseries"):
    lyr = QgsVectorLayer(f"{path}|layername={name}", name, "ogr")
    out[name] = {
        "valid": lyr.isValid(),
        "geometry": QgsWkbTypes.displayString(lyr.wkbType()),
        "count": lyr.featureCount(),
        "crs": lyr.crs().authid(),
        "fields": {f.name(): f.typeName() for f in lyr.fields()},
    }
    if name == "timeseries":
        series = {}
        for rid in sorted({f["region_id"] for f in lyr.getFeatures()}):
            req = QgsFeatureRequest().setFilterExpression(f'"region_id" = {rid}')
            req.addOrderBy('"date"')
            # a NULL is a null QVariant, not a float
            series[rid] = [[f["date"].toString("yyyy-MM-dd"),
                            f["value"] if isinstance(f["value"], float) else None]
                           for f in lyr.getFeatures(req)]
        out["series"] = series
print(json.dumps(out, default=str))
