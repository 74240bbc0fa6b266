"""Run by Debian's ``/usr/bin/python3`` (python3-qgis) from ``tests/e2e/qgis/test_wmts_qgis.py``:
add WMTS layers the way QGIS's data source manager does, render them headless, print JSON.

Argument: a JSON list of ``{caps, layer, tms, crs, extent: [xmin, ymin, xmax, ymax], png}``
(optionally ``legend``: a PNG path for the legend graphic QGIS shows in its layer tree).
"""

import json
import sys

from qgis_boot import start_qgis  # beside this script

app = start_qgis()

from qgis.core import (  # noqa: E402
    QgsCoordinateReferenceSystem,
    QgsDataSourceUri,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QSize  # noqa: E402
from qgis.PyQt.QtGui import QColor  # noqa: E402


def legend_graphic(lyr, ms, path):
    """Fetch the layer's legend graphic as the layer tree does; ``(supported, w, h)``."""
    from qgis.PyQt.QtCore import QEventLoop, QTimer  # noqa: PLC0415

    prov = lyr.dataProvider()
    if not prov.supportsLegendGraphic():
        return False, 0, 0
    fetcher = prov.getLegendGraphicFetcher(ms)
    images = []
    loop = QEventLoop()
    fetcher.finish.connect(lambda image: (images.append(image), loop.quit()))
    fetcher.error.connect(lambda message: loop.quit())
    QTimer.singleShot(30000, loop.quit)
    fetcher.start()
    if not images:
        loop.exec_()
    if not images or images[0].isNull():
        return True, 0, 0
    images[0].save(path)
    return True, images[0].width(), images[0].height()


def render(caps, layer, tms, crs, extent, png, legend=None):
    """Add the layer, render ``extent`` to ``png``; a JSON-able result."""
    uri = QgsDataSourceUri()
    for k, v in (("contextualWMSLegend", "0"), ("crs", crs), ("dpiMode", "7"),
                 ("format", "image/png"), ("layers", layer), ("styles", "default"),
                 ("tileMatrixSet", tms), ("url", caps)):
        uri.setParam(k, v)
    lyr = QgsRasterLayer(bytes(uri.encodedUri()).decode(), "wmts", "wms")
    # (error().summary() of a valid layer crashes QGIS 3.22)
    result = {"valid": lyr.isValid(), "error": "" if lyr.isValid() else lyr.error().summary()}
    if lyr.isValid():
        ms = QgsMapSettings()
        ms.setLayers([lyr])
        ms.setDestinationCrs(QgsCoordinateReferenceSystem(crs))
        ms.setExtent(QgsRectangle(*extent))
        ms.setOutputSize(QSize(256, 256))
        ms.setBackgroundColor(QColor(0, 0, 0, 0))
        job = QgsMapRendererParallelJob(ms)
        job.start()
        job.waitForFinished()
        job.renderedImage().save(png)
        result["errors"] = [e.message for e in job.errors()]
        if legend:
            result["legend"] = legend_graphic(lyr, ms, legend)
    return result


print(json.dumps([render(**spec) for spec in json.loads(sys.argv[1])]))
app.exitQgis()
