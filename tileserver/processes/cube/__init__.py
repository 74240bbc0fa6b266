"""openEO 1.x processes on data cubes.

Importing this package registers them (:mod:`tileserver.processes.registry`); ``udf`` comes
last: it wraps the callbacks of ``apply``, ``apply_dimension`` and ``reduce_dimension``."""

from tileserver.processes.cube import cubes  # noqa: F401  isort: skip
from tileserver.processes.cube import udf  # noqa: F401  isort: skip
