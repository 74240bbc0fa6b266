"""tileserver: openEO process graphs over STAC imagery, served lazily as WMTS and WCS."""

__version__ = "0.1.0"
