"""The processes the engine runs: one registry (:mod:`.registry`) of cube processes
(:mod:`.cube`) and array processes (:mod:`.array`, run inside callbacks), and the openEO
0.0.2 processes as a translation table into them (:mod:`.v002`).

Adding a process is one decorated function (``@process(...)``, see :mod:`.registry`) in a
module of ``cube/`` or ``array/``, imported by that package's ``__init__``. Importing this
package fills the registry.
"""

from tileserver.processes import array, cube, v002  # noqa: F401  (they fill the registry)
from tileserver.processes.registry import (
    ARRAY,
    ARRAY_PROCESSES,
    CUBE,
    CUBE_PROCESSES,
    REGISTRY,
    Param,
    Process,
    is_predefined,
    process,
    supported_v1,
)
from tileserver.processes.v002 import TRANSLATIONS

__all__ = ["ARRAY", "ARRAY_PROCESSES", "CUBE", "CUBE_PROCESSES", "REGISTRY", "TRANSLATIONS",
           "Param", "Process", "is_predefined", "process", "supported_v1"]
