"""Hostile values and the parameters they are thrown at (shared by the fuzz tests).

:data:`EDGES` are the values every parameter of every route gets in the deterministic
suite (``tests/api/web/test_hostile_params.py``); ``make fuzz`` searches randomly for more, and
what it finds is added here. :func:`examples` scales Hypothesis example counts for
``make fuzz`` (``TILESERVER_FUZZ_SCALE``), the CI run uses the counts as written.
"""

from __future__ import annotations

import os

from lxml import etree

#: Hostile texts for any query parameter or path segment (numbers and otherwise).
EDGES = [
    "NaN", "nan", "-nan", "inf", "-inf", "Infinity", "1e309", "-1e309", "-0", "0", "-1",
    "0.5", "1e-400", "5e-324", "9" * 400, "1" * 5000, "0x10", "1_000", "²", "١٢", "𝟙",
    "", " ", "1,2", "[1]", "null", "true", "1e3", "\u202e1", "a\x00b", "é" * 3000,
    "E(1,2)", "../../etc/passwd", "%00", "2020-13-45", "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
]
#: Hostile JSON values for JSON fields.
JSON_EDGES = [
    None, True, 0, -0.0, -1, 0.5, 10**400, -(10**400), 1e308, -1e308, float("nan"),
    float("inf"), float("-inf"), "", "NaN", "x" * 5000, "²", [], [1, 2], {}, {"a": 1},
    [float("nan"), 1], [0, float("inf")],
]


def examples(n: int) -> int:
    """``n`` Hypothesis examples, times ``TILESERVER_FUZZ_SCALE`` under ``make fuzz``."""
    return n * max(1, int(os.environ.get("TILESERVER_FUZZ_SCALE", "1")))


def exception_of(resp) -> tuple[str, str | None]:
    """``(exceptionCode, locator)`` of an OWS 1.1/2.0 or WCS 1.0 exception report."""
    doc = etree.fromstring(resp.data)
    assert doc.tag.endswith("ExceptionReport"), resp.data[:300]
    exc = next(e for e in doc.iter() if isinstance(e.tag, str)
               and e.tag.rsplit("}", 1)[-1] in ("Exception", "ServiceException"))
    return exc.get("exceptionCode") or exc.get("code"), exc.get("locator")


#: Where query parameters are read (the web layer and the WCS request parser).
QUERY_SOURCES = ("tileserver/web", "tileserver/web/ogc/wcs_request.py")
_QUERY_READS = [
    r"request\.args\.get(?:list)?\(\s*[\"']([^\"']+)[\"']",
    r"request\.args\[\s*[\"']([^\"']+)[\"']",
    r"kvp\.(?:get|require|getall)\(\s*[\"']([^\"']+)[\"']",
    r"[\"']([A-Z_]+)[\"']\s+in\s+kvp\b",
    r"_required\(params,\s*[\"'](\w+)[\"']",
    r"\bparams\.get\(\s*[\"'](\w+)[\"']",
    r"_float_arg\(\s*[\"'](\w+)[\"']",
    # OGC API (tileserver/web/ogc/ogcapi): arg("name", "alias"...)
    r"\barg\(\s*[\"']([^\"']+)[\"']",
]


def query_parameters_in_source(root) -> dict[str, set[str]]:
    """``{PARAMETER: {files reading it}}`` found by reading the source (upper-case names)."""
    import re
    from pathlib import Path

    root = Path(root)
    files: list[Path] = []
    for source in QUERY_SOURCES:
        path = root / source
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    found: dict[str, set[str]] = {}
    for file in files:
        code = file.read_text()
        for pattern in _QUERY_READS:
            for name in re.findall(pattern, code):
                found.setdefault(name.upper(), set()).add(str(file.relative_to(root)))
    return found
