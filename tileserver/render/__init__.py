"""From cubes to bytes: the output formats, their encoders, styles, legends and Cloud-Optimized
GeoTIFF writing.
"""
