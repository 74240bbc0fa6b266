"""The openEO REST API: the 0.0.2 dialect (frozen) and the 1.x dialect."""
