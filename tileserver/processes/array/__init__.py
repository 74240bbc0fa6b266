"""openEO 1.x processes on arrays and numbers, run inside callbacks on whole numpy arrays.

Importing this package registers them (:mod:`tileserver.processes.registry`)."""

from tileserver.processes.array import lib  # noqa: F401  isort: skip
