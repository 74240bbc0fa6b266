"""The process registry. Each process is one function registered with its description.

Adding a process is one place: write a module here with ``@register(...)`` functions and
import it at the bottom of this file.
"""

from tileserver.core.processes.base import REGISTRY, Param, Process, register

from tileserver.core.processes import filters, spectral, temporal  # noqa: E402,F401  isort: skip
from tileserver.core.processes import zonal  # noqa: E402,F401  isort: skip

__all__ = ["REGISTRY", "Param", "Process", "register"]
