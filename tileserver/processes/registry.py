"""The one registry of the processes the engine runs, and the decorator that fills it.

Every executable process is one :class:`Process` in :data:`REGISTRY`, whatever it works on:

- ``kind="cube"``: a process on data cubes (``load_collection``, ``reduce_dimension``…):
  ``fn`` is ``evaluate(ctx, node, query)`` and ``meta(ctx, node)`` says what the result is
  (from the graph and the catalog alone, with the errors a client should get before any
  read);
- ``kind="array"``: a process on arrays and numbers that runs inside callbacks (``add``,
  ``mean``, ``array_element``…): ``fn`` is called as ``fn(**arguments)``.

Adding a process is one decorated function in one module of :mod:`tileserver.processes`
(``cube/`` or ``array/``)::

    @process("ndvi", [Param("data", "cube"), Param("nir", required=False, default="nir")],
             meta=_ndvi_meta)
    def ndvi(ctx, node, query): ...

    @process("add", ["x", "y"], kind=ARRAY)
    def add(x, y): ...

The graph parsers receive the registry (:class:`tileserver.graph.v1.FlatGraphParser`); the
openEO 0.0.2 processes are a translation table into these processes
(:mod:`tileserver.processes.v002`), not a registry of their own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tileserver.errors import ProcessArgumentInvalid

CUBE = "cube"
ARRAY = "array"


@dataclass(frozen=True)
class Param:
    """One parameter of a process.

    ``kind`` is ``cube`` (a data cube from another node), ``callback`` (a child process
    graph receiving ``callback_params``) or ``value`` (anything else, checked by the process).
    """

    name: str
    kind: str = "value"
    required: bool = True
    default: Any = None
    callback_params: tuple[str, ...] = ()


@dataclass
class Process:
    """A registered process: its parameters (in specification order) and function.

    ``fn`` is ``evaluate(ctx, node, query)`` for a cube process, ``fn(**arguments)`` for an
    array process.
    """

    id: str
    params: tuple[Param, ...]
    fn: Callable[..., Any]
    #: ``meta(ctx, node)`` of a cube process (``None`` for array processes).
    meta: Callable | None = None
    kind: str = CUBE
    #: ``imagery`` (a cube), ``table`` or ``value`` (an array process's result).
    returns: str = "imagery"
    #: ``cache_token(ctx, node) -> hashable``: what besides the graph decides the node's
    #: result (a UDF's script content and owner); added to the cache keys of the node and
    #: of every node above it. ``None``: the graph alone decides.
    cache_token: Callable | None = None
    #: ``False``: reached only through the 0.0.2 translation table, neither listed by
    #: ``GET /processes`` of 1.x nor callable by id from a 1.x graph.
    public: bool = True


#: Every executable process, by id.
REGISTRY: dict[str, Process] = {}

#: Boolean switches of array processes: anything but true/false is a client error.
_FLAGS = {"ignore_nodata", "return_nodata", "exclude_max", "reverse", "case_sensitive"}


def _param(spec: Param | str | tuple[str, Any]) -> Param:
    """A :class:`Param`; a plain name is a required value, ``(name, default)`` an optional
    one (the shorthand of array processes)."""
    if isinstance(spec, Param):
        return spec
    if isinstance(spec, str):
        return Param(spec)
    return Param(spec[0], required=False, default=spec[1])


def _checking_flags(process_id: str, params: tuple[Param, ...], fn: Callable) -> Callable:
    flags = tuple(p.name for p in params if p.name in _FLAGS)
    if not flags:
        return fn

    @functools.wraps(fn)
    def call(**kwargs):
        for name in flags:
            if name in kwargs and not isinstance(kwargs[name], (bool, np.bool_)):
                raise ProcessArgumentInvalid(
                    f"The argument '{name}' in process '{process_id}' is invalid: expected "
                    "true or false", process=process_id, argument=name)
        return fn(**kwargs)

    return call


def process(
    process_id: str,
    params: list[Param | str | tuple[str, Any]] | tuple = (),
    *,
    kind: str = CUBE,
    meta: Callable | None = None,
    returns: str | None = None,
    cache_token: Callable | None = None,
    public: bool = True,
) -> Callable[[Callable], Callable]:
    """Register the decorated function as process ``process_id`` (see the module)."""
    spec = tuple(_param(p) for p in params)

    def deco(fn: Callable) -> Callable:
        call = _checking_flags(process_id, spec, fn) if kind == ARRAY else fn
        REGISTRY[process_id] = Process(
            process_id, spec, call, meta, kind,
            returns or ("value" if kind == ARRAY else "imagery"), cache_token, public)
        return fn

    return deco


class _Kind(Mapping[str, Process]):
    """The processes of one kind, as a live read-only view of :data:`REGISTRY`."""

    def __init__(self, kind: str):
        self.kind = kind

    def __getitem__(self, process_id: str) -> Process:
        proc = REGISTRY[process_id]
        if proc.kind != self.kind:
            raise KeyError(process_id)
        return proc

    def get(self, process_id: str, default: Any = None) -> Any:
        proc = REGISTRY.get(process_id)
        return proc if proc is not None and proc.kind == self.kind else default

    def __contains__(self, process_id: object) -> bool:
        proc = REGISTRY.get(process_id)  # type: ignore[call-overload]
        return proc is not None and proc.kind == self.kind

    def __iter__(self) -> Iterator[str]:
        return (pid for pid, p in list(REGISTRY.items()) if p.kind == self.kind)

    def __len__(self) -> int:
        return sum(1 for p in list(REGISTRY.values()) if p.kind == self.kind)


#: The cube processes (a view of :data:`REGISTRY`).
CUBE_PROCESSES: Mapping[str, Process] = _Kind(CUBE)
#: The array processes, run inside callbacks (a view of :data:`REGISTRY`).
ARRAY_PROCESSES: Mapping[str, Process] = _Kind(ARRAY)


def is_predefined(process_id: str) -> bool:
    """Whether a 1.x process id is one of the back-end's own processes."""
    proc = REGISTRY.get(process_id)
    return proc is not None and proc.public


def supported_v1() -> list[str]:
    """Sorted ids of every openEO 1.x process this back-end runs."""
    return sorted(pid for pid, proc in REGISTRY.items() if proc.public)
