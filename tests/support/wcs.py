"""Helpers of the WCS tests: official OGC schemas (GML 3.2.1, OWS 2.0) from pycsw's wheel
on PyPI, fragment validation, GDAL's WCS driver with a fresh cache, XPath namespaces.

No package on PyPI ships the WCS 2.0 / GMLCOV / SWE Common schemas, so the WCS documents
are checked three ways: every GML 3.2.1 and OWS 2.0 element they contain is validated
against the official XSDs (pycsw 2.6.2 ships them), the WCS elements GDAL and QGIS read are
checked with XPath, and the documents are parsed by OWSLib and GDAL.
"""

from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from pathlib import Path

import rasterio
from lxml import etree

from tests.support.wmts import CACHE, unpack_wheel

PYCSW = "pycsw==2.6.2"
NS = {
    "wcs": "http://www.opengis.net/wcs/2.0",
    "wcs10": "http://www.opengis.net/wcs",
    "gml": "http://www.opengis.net/gml/3.2",
    "gml10": "http://www.opengis.net/gml",
    "gmlcov": "http://www.opengis.net/gmlcov/1.0",
    "swe": "http://www.opengis.net/swe/2.0",
    "ows": "http://www.opengis.net/ows/2.0",
    "ogc": "http://www.opengis.net/ogc",
    "xlink": "http://www.w3.org/1999/xlink",
    "wcsgs": "http://www.geoserver.org/wcsgs/2.0",
}
_lock = threading.Lock()
_schema: list[etree.XMLSchema] = []


def pycsw_schemas() -> Path:
    """``pycsw/`` with ``core/schemas`` (OGC XSDs) unpacked from pycsw's wheel."""
    target = CACHE / "pycsw-schemas"
    root = target / "pycsw"
    if not (root / "core" / "schemas" / "ogc" / "gml" / "3.2.1" / "gml.xsd").exists():
        unpack_wheel(PYCSW, "pycsw-2.6.2-*.whl",
                     lambda name: name.endswith(".xsd") and "/schemas/" in name, target, "pycsw")
    return root


def ogc_schema() -> etree.XMLSchema:
    """One schema importing GML 3.2.1 and OWS 2.0: validates their global elements."""
    with _lock:
        if not _schema:
            base = pycsw_schemas() / "core" / "schemas" / "ogc"
            wrapper = f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
                targetNamespace="urn:tileserver:tests" elementFormDefault="qualified">
              <xs:import namespace="{NS['gml']}"
                         schemaLocation="{(base / 'gml/3.2.1/gml.xsd').as_uri()}"/>
              <xs:import namespace="{NS['ows']}"
                         schemaLocation="{(base / 'ows/2.0/owsAll.xsd').as_uri()}"/>
            </xs:schema>"""
            _schema.append(etree.XMLSchema(etree.fromstring(wrapper.encode())))
        return _schema[0]


def assert_fragments_valid(doc: etree._Element, xpath: str) -> int:
    """Validate every element matching ``xpath`` as a document of its own; returns how
    many there were (so that a test can insist there was something to validate)."""
    schema = ogc_schema()
    found = doc.xpath(xpath, namespaces=NS)
    for elem in found:
        fragment = etree.ElementTree(copy.deepcopy(elem))
        if not schema.validate(fragment):
            raise AssertionError(f"{etree.QName(elem).localname} is invalid: "
                                 f"{schema.error_log}")
    return len(found)


def assert_ows20_exception(resp, code: str, status: int, locator: str | None = None):
    """A schema-valid OWS 2.0 ExceptionReport with this code (and locator)."""
    assert resp.status_code == status, resp.data[:600]
    assert resp.mimetype == "application/xml"
    doc = etree.fromstring(resp.data)
    assert assert_fragments_valid(doc, "/ows:ExceptionReport") == 1
    exc = doc.find("ows:Exception", NS)
    assert exc.get("exceptionCode") == code, resp.data
    if locator is not None:
        assert exc.get("locator") == locator
    return exc.findtext("ows:ExceptionText", namespaces=NS)


def assert_wcs10_exception(resp, code: str, status: int) -> str:
    """A WCS 1.0.0 ``ServiceExceptionReport`` with this code."""
    assert resp.status_code == status, resp.data[:600]
    doc = etree.fromstring(resp.data)
    assert doc.tag == f"{{{NS['ogc']}}}ServiceExceptionReport"
    exc = doc.find("ogc:ServiceException", NS)
    assert exc.get("code") == code
    return exc.text


@contextmanager
def gdal_wcs(name: str, cache: Path):
    """GDAL's WCS driver on ``WCS:<name>`` with its own cache directory ``cache``.

    The driver's open option is ``CACHE``. It ignores unknown options silently (this helper
    once passed ``CACHE_DIR``), and then keeps capabilities in ``~/.gdal/wcs_cache`` keyed
    by URL, across runs: a test server on a port reused from an earlier run was answered
    with that run's coverages, without being asked. The cache must be the test's own.
    """
    with rasterio.open(f"WCS:{name}", CACHE=str(cache)) as ds:
        assert (cache / "db").is_file(), f"GDAL did not use the cache {cache}"
        yield ds


def gdal_open(url: str, coverage: str, version: str, cache: Path, extra: str = ""):
    """The coverage through GDAL's WCS driver, with its own cache directory."""
    return gdal_wcs(f"{url}?version={version}&coverage={coverage}{extra}", cache)
