"""The process registries. Each process is one function registered with its description.

- ``REGISTRY``: the openEO 0.0.2 processes (nested graphs, ``GET /processes`` of 0.0.2).
- ``V1_REGISTRY``: the openEO 1.x processes that work on data cubes (``load_collection``,
  ``reduce_dimension``…), in :mod:`tileserver.processes.cube.cubes`.
- :func:`array_processes`: the 1.x processes on arrays and numbers that run inside
  callbacks (``min``, ``add``, ``array_element``…), in :mod:`.arraylib`.

Adding a process is one place: write a module here with ``@register(...)`` /
``@register_v1(...)`` functions and import it at the bottom of this file.
"""

from collections.abc import Mapping
from typing import Any

from tileserver.processes.registry import (
    REGISTRY,
    V1_REGISTRY,
    Param,
    Process,
    V1Param,
    register,
    register_v1,
)


def array_processes() -> Mapping[str, Any]:
    """The array/number processes usable inside 1.x callbacks (id -> process)."""
    try:
        from tileserver.processes.array.lib import ARRAY_PROCESSES  # noqa: PLC0415
    except ImportError:  # pragma: no cover - the library is part of the package
        return {}
    return ARRAY_PROCESSES


def is_predefined(process_id: str) -> bool:
    """Whether a 1.x process id is one of the back-end's own processes."""
    return process_id in V1_REGISTRY or process_id in array_processes()


def supported_v1() -> list[str]:
    """Sorted ids of every openEO 1.x process this back-end runs."""
    return sorted(set(V1_REGISTRY) | set(array_processes()))


from tileserver.processes.v002 import filters


from tileserver.processes.v002 import spectral


from tileserver.processes.v002 import temporal  # noqa: E402,F401  isort: skip
from tileserver.processes.v002 import zonal  # noqa: E402,F401  isort: skip
from tileserver.processes.cube import cubes  # noqa: E402,F401  isort: skip
from tileserver.processes.v002 import udf  # noqa: E402,F401  isort: skip
from tileserver.processes.cube import udf as udf_v1  # noqa: E402,F401  isort: skip

__all__ = ["REGISTRY", "V1_REGISTRY", "Param", "Process", "V1Param", "register",
           "register_v1", "array_processes", "supported_v1", "is_predefined"]
