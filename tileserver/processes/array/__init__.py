"""openEO 1.x processes on arrays and numbers (``add``, ``mean``, ``array_element``...), in
numpy, run inside callbacks on whole arrays.

These are the processes that run inside callbacks (``reduce_dimension``'s reducer,
``apply``'s process...). Each is a process of kind ``array`` in the registry
(:mod:`tileserver.processes.registry`), called as ``REGISTRY[pid].fn(**kwargs)`` with the
process's parameter names.

Values
    Arguments are numpy arrays, Python scalars (``int``, ``float``, ``bool``, ``str``),
    ``None`` (the no-data value), JSON lists/dicts (openEO array and object literals) or a
    :class:`LabeledArray`. Inside float arrays no-data is NaN (as in the cubes of
    ``tileserver.datacube.cube``), so an array cannot tell NaN from no-data.

Elementwise processes (``add``, ``gt``, ``linear_scale_range``...)
    broadcast their arguments; a ``float32`` array stays ``float32`` (scalars are applied
    as Python numbers, which numpy treats as "weak"); only Python scalars in means a
    Python scalar out, with ``None`` for no-data.

Array processes (a ``data`` parameter: ``mean``, ``array_element``, ``quantiles``...)
    work along axis 0 of ``data``: a ``(n,)`` array gives a scalar and a ``(n, y, x)`` cube
    slice gives a ``(y, x)`` array (``quantiles``/``extrema`` put their several results
    on a new axis 0). ``ignore_nodata`` is honoured as the specifications say.

Callbacks
    A parameter that takes a child process (``count``'s ``condition``) receives a Python
    callable invoked with the callback's parameters as keywords (``condition(x=..,
    context=..)``).

Invalid arguments raise :class:`tileserver.errors.ProcessArgumentInvalid`, whose ``code``
is the exception name of the process specification where it names one
(``ArrayElementNotAvailable``, ``MinMaxSwapped``...).
"""

from tileserver.processes.array import arithmetic  # noqa: F401  isort: skip
from tileserver.processes.array import compare  # noqa: F401  isort: skip
from tileserver.processes.array import logic  # noqa: F401  isort: skip
from tileserver.processes.array import reduce  # noqa: F401  isort: skip
from tileserver.processes.array import arrays  # noqa: F401  isort: skip
from tileserver.processes.array import text  # noqa: F401  isort: skip
from tileserver.processes.array.common import LabeledArray

__all__ = ["LabeledArray"]
