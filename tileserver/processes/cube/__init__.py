"""openEO 1.x processes on data cubes.

Each process has a ``meta`` (what the result is, from the graph and the catalog alone, with
the errors a client should get before any read) and an ``evaluate`` that pushes its
constraints (time, bands, the view) down to the reads: ``load_collection`` reads only the
window, dates and bands that the processes above it need, from the overview level that fits
the view. Callbacks run vectorised through :mod:`tileserver.processes.callbacks`.

Dimensions are named as ``GET /collections`` describes them: ``x``, ``y``, ``t`` and
``bands``.

Importing this package registers the processes (:mod:`tileserver.processes.registry`);
``udf`` comes last: it wraps the callbacks of ``apply``, ``apply_dimension`` and
``reduce_dimension``.
"""

from tileserver.processes.cube import load  # noqa: F401  isort: skip
from tileserver.processes.cube import filter  # noqa: F401,A004  isort: skip
from tileserver.processes.cube import spectral  # noqa: F401  isort: skip
from tileserver.processes.cube import apply  # noqa: F401  isort: skip
from tileserver.processes.cube import combine  # noqa: F401  isort: skip
from tileserver.processes.cube import dimension  # noqa: F401  isort: skip
from tileserver.processes.cube import resample  # noqa: F401  isort: skip
from tileserver.processes.cube import temporal  # noqa: F401  isort: skip
from tileserver.processes.cube import aggregate  # noqa: F401  isort: skip
from tileserver.processes.cube import udf  # noqa: F401  isort: skip
