"""Where pixels come from: the STAC catalog (static or an API), windowed reads at the needed
overview level, remote files, finished results as a source, user files.
"""
