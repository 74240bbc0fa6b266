"""The OGC protocols (WMTS, XYZ/TMS, WCS): request grammar and documents; one module per
protocol.
"""
