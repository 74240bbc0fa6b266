"""The openEO 0.0.2 processes, as translations into the 1.x processes of the registry.

:data:`TRANSLATIONS` (id -> :class:`~tileserver.processes.v002.table.Translation`) is what
the 0.0.2 parser and ``GET /processes`` of 0.0.2 read; importing this package fills it, in
the order ``GET /processes`` lists them.
"""

from tileserver.processes.v002 import filters  # noqa: F401  isort: skip
from tileserver.processes.v002 import spectral  # noqa: F401  isort: skip
from tileserver.processes.v002 import temporal  # noqa: F401  isort: skip
from tileserver.processes.v002 import zonal  # noqa: F401  isort: skip
from tileserver.processes.v002 import udf  # noqa: F401  isort: skip
from tileserver.processes.v002.table import TRANSLATIONS, Arg, Translation, translation

__all__ = ["TRANSLATIONS", "Arg", "Translation", "translation"]
