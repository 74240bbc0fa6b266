"""Use cases shared by the openEO dialects (0.0.2 and 1.x), without Flask.

The web modules parse requests and serialise answers; these functions do the work on the
:class:`tileserver.runtime.Runtime` and raise :mod:`tileserver.errors` classes.
"""
