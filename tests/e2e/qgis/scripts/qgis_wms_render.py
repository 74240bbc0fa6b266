"""Run by Debian's ``/usr/bin/python3`` (python3-qgis) from ``tests/e2e/qgis/test_wms_qgis.py``:
add a WMS layer the way QGIS's data source manager does (a WMS-T layer when it has a time
dimension), render it, render it again at given dates through the layer's temporal
properties (as the Temporal Controller does), run Identify at a point; print JSON.

Argument: JSON ``{url, layer, crs, extent: [xmin, ymin, xmax, ymax], png, dates: [...],
time_extent, point: [x, y]}`` (``png`` has ``{}`` where the date goes).
"""

import json
import sys

from qgis_boot import start_qgis  # beside this script

app = start_qgis()

from qgis.core import (  # noqa: E402
    QgsCoordinateReferenceSystem,
    QgsDataSourceUri,
    QgsDateTimeRange,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsPointXY,
    QgsRaster,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QDateTime, QSize, Qt  # noqa: E402
from qgis.PyQt.QtGui import QColor  # noqa: E402

SIZE = 256


def render(lyr, crs, extent, png, date=None):
    """Render ``extent`` to ``png`` (at ``date``'s day when given); the render errors."""
    ms = QgsMapSettings()
    ms.setLayers([lyr])
    ms.setDestinationCrs(QgsCoordinateReferenceSystem(crs))
    ms.setExtent(QgsRectangle(*extent))
    ms.setOutputSize(QSize(SIZE, SIZE))
    ms.setBackgroundColor(QColor(0, 0, 0, 0))
    if date:
        start = QDateTime.fromString(f"{date}T00:00:00Z", Qt.ISODate)
        ms.setIsTemporal(True)
        ms.setTemporalRange(QgsDateTimeRange(start, start.addSecs(86399)))
    job = QgsMapRendererParallelJob(ms)
    job.start()
    job.waitForFinished()
    job.renderedImage().save(png)
    return [e.message for e in job.errors()]


def main(spec):
    uri = QgsDataSourceUri()
    params = [("contextualWMSLegend", "0"), ("crs", spec["crs"]), ("dpiMode", "7"),
              ("format", "image/png"), ("layers", spec["layer"]), ("styles", ""),
              ("url", spec["url"])]
    if spec.get("time_extent"):  # what the dialog adds for a layer with a TIME dimension
        params += [("allowTemporalUpdates", "true"), ("temporalSource", "provider"),
                   ("timeDimensionExtent", spec["time_extent"]), ("type", "wmst")]
    for k, v in params:
        uri.setParam(k, v)
    lyr = QgsRasterLayer(bytes(uri.encodedUri()).decode(), "wms", "wms")
    out = {"valid": lyr.isValid(), "error": "" if lyr.isValid() else lyr.error().summary()}
    if not lyr.isValid():
        return out
    caps = lyr.dataProvider().temporalCapabilities()
    out["temporal"] = bool(caps and caps.hasTemporalCapabilities())
    if out["temporal"]:
        lyr.temporalProperties().setIsActive(True)
    out["errors"] = render(lyr, spec["crs"], spec["extent"], spec["png"].format("default"))
    for date in spec.get("dates", []):
        out["errors"] += render(lyr, spec["crs"], spec["extent"], spec["png"].format(date),
                                date)
    # Identify, as the map tool does with the text format (INFO_FORMAT=text/plain)
    x, y = spec["point"]
    ident = lyr.dataProvider().identify(QgsPointXY(x, y), QgsRaster.IdentifyFormatText,
                                        QgsRectangle(*spec["extent"]), SIZE, SIZE)
    out["identify_valid"] = ident.isValid()
    out["identify"] = [str(v) for v in ident.results().values()]
    out["identify_formats"] = int(lyr.dataProvider().capabilities())
    return out


print(json.dumps(main(json.loads(sys.argv[1]))))
app.exitQgis()
