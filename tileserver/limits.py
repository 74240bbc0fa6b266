"""Limits of evaluations: how many run at once, how much memory they hold together, how
many one user runs, and how long one may take (read by the engine, the UDF sandbox and the
runtime: a foundation module).

A :class:`Limiter` is the admission control of synchronous evaluations (tiles, coverages,
``/execute`` and ``/result``): evaluation slots, a memory budget shared by the evaluations
in flight (each brings its estimate from the planner, :mod:`tileserver.engine.plan`), a
per-user bound, and a per-evaluation deadline. The deadline lives in a context variable,
so the engine checks it between node evaluations and block reads (:func:`check_deadline`,
:func:`remaining`) without passing it around. No HTTP.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tileserver.errors import (
    EvaluationTimeout,
    MemoryBusy,
    MemoryTooLarge,
    TooManyRequests,
    UserBusy,
)

#: Monotonic time after which the current evaluation must stop (``None``: no deadline).
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "tileserver_deadline", default=None)

#: The limiter whose slot the current evaluation holds (``None``: none).
_HELD: contextvars.ContextVar[Limiter | None] = contextvars.ContextVar(
    "tileserver_slot_held", default=None)

#: Purposes that run inside a request and are therefore limited (batch runs are not).
LIMITED_PURPOSES = ("tile", "coverage", "execute")


def mib(n: int) -> int:
    """Bytes in MiB, rounded up."""
    return -(-int(n) // (1024 * 1024))


def remaining() -> float | None:
    """Seconds left for the current evaluation (``None`` when there is no deadline)."""
    deadline = _DEADLINE.get()
    if deadline is None or deadline == math.inf:
        return None
    return deadline - time.monotonic()


def check_deadline() -> None:
    """Raise :class:`EvaluationTimeout` when the current evaluation is past its deadline."""
    left = remaining()
    if left is not None and left <= 0:
        raise EvaluationTimeout(
            "the evaluation took longer than the configured limit; request a smaller "
            "window, a coarser resolution or fewer dates, or use a batch job")


class Limiter:
    """At most ``max_inflight`` evaluations at once, each at most ``timeout`` seconds, their
    estimated memory together within ``memory_budget`` bytes (0: unbounded), and at most
    ``user_inflight`` of them for one user (0: no per-user bound).

    A caller that asks for more memory than the whole budget gets :class:`MemoryTooLarge`
    (413, with what to shrink). A caller waits up to ``queue_timeout`` seconds for a slot,
    then gets :class:`TooManyRequests` (503); up to ``memory_wait`` seconds for memory held
    by others or for one of its own user's slots, then :class:`MemoryBusy` /
    :class:`UserBusy` (429). Both carry a retry hint in ``retry_after``: the typical
    duration of an evaluation here.
    """

    def __init__(self, max_inflight: int, queue_timeout: float, timeout: float, *,
                 memory_budget: int = 0, memory_wait: float = 0.0, user_inflight: int = 0):
        self.max_inflight = max(1, int(max_inflight))
        self.queue_timeout = max(0.0, float(queue_timeout))
        self.timeout = float(timeout)
        self.memory_budget = max(0, int(memory_budget))
        self.memory_wait = max(0.0, float(memory_wait))
        self.user_inflight = max(0, int(user_inflight))
        self._cond = threading.Condition()
        self.inflight = 0
        #: Requests waiting for a slot, memory or their user's turn.
        self.waiting = 0
        #: Estimated bytes held by the evaluations in flight.
        self.memory_held = 0
        self._users: dict[str, int] = {}
        #: Moving average of an evaluation's seconds (the retry hint).
        self.typical_seconds = 1.0
        #: Requests refused so far, by reason (``memory``, ``user``, ``slots``, ``budget``).
        self.refused: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings) -> Limiter:
        """The limiter configured by ``max_evaluations``, the evaluation timeouts,
        ``memory_budget``, ``admission_wait`` and ``max_user_evaluations``."""
        return cls(settings.max_evaluations, settings.evaluation_queue_timeout,
                   settings.evaluation_timeout, memory_budget=settings.memory_budget,
                   memory_wait=settings.admission_wait,
                   user_inflight=settings.max_user_evaluations)

    def applies(self, purpose: str) -> bool:
        """Whether an evaluation for ``purpose`` starting here takes a slot (a request's,
        not a batch block's, and not nested in an evaluation that holds one)."""
        return purpose in LIMITED_PURPOSES and _DEADLINE.get() is None

    def retry_after(self) -> int:
        """Seconds after which a refused request may try again."""
        return max(1, math.ceil(self.typical_seconds))

    def _blocked(self, memory: int, user: str | None) -> str | None:
        """Why a request cannot start now (``None``: it can)."""
        if self.inflight >= self.max_inflight:
            return "slots"
        if self.memory_budget and self.memory_held and \
                self.memory_held + memory > self.memory_budget:
            return "memory"
        if self.user_inflight and user is not None and \
                self._users.get(user, 0) >= self.user_inflight:
            return "user"
        return None

    def _count(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def _refuse(self, reason: str) -> TooManyRequests:
        self._count(reason)
        if reason == "memory":
            exc: TooManyRequests = MemoryBusy(
                f"the evaluations in flight hold {mib(self.memory_held)} MiB of the memory "
                f"budget of {mib(self.memory_budget)} MiB; retry in a moment")
        elif reason == "user":
            exc = UserBusy(f"you already have {self.user_inflight} evaluations running, the "
                           "most one user may have at once; retry when one has finished")
        else:
            exc = TooManyRequests(
                f"{self.max_inflight} evaluations are already running; retry in a moment")
        exc.retry_after = self.retry_after() if reason != "slots" else \
            max(1, math.ceil(self.queue_timeout) or 1)
        return exc

    def _acquire(self, memory: int, user: str | None, slots_only: bool = False) -> None:
        """Wait for a slot (and ``memory`` bytes and a slot of ``user``) within the bounds."""
        start = time.monotonic()
        with self._cond:
            self.waiting += 1
            try:
                while True:
                    reason = "slots" if slots_only and self.inflight >= self.max_inflight \
                        else (None if slots_only else self._blocked(memory, user))
                    if reason is None:
                        break
                    bound = self.queue_timeout if reason == "slots" else self.memory_wait
                    left = start + bound - time.monotonic()
                    if left <= 0:
                        raise self._refuse(reason)
                    self._cond.wait(left)
            finally:
                self.waiting -= 1
            self.inflight += 1
            if not slots_only:
                self.memory_held += memory
                if user is not None:
                    self._users[user] = self._users.get(user, 0) + 1

    def _release(self, memory: int, user: str | None, slots_only: bool = False) -> None:
        with self._cond:
            self.inflight -= 1
            if not slots_only:
                self.memory_held -= memory
                if user is not None:
                    left = self._users.get(user, 0) - 1
                    if left > 0:
                        self._users[user] = left
                    else:
                        self._users.pop(user, None)
            self._cond.notify_all()

    def admit(self, memory: int, explain: Callable[[int], str] | None = None) -> None:
        """Raise :class:`MemoryTooLarge` when ``memory`` bytes can never fit the budget
        (``explain(budget)``: the message, saying what to shrink)."""
        if self.memory_budget and memory > self.memory_budget:
            self._count("budget")
            raise MemoryTooLarge(explain(self.memory_budget) if explain else (
                f"the evaluation needs about {mib(memory)} MiB of memory, more than the "
                f"budget of {mib(self.memory_budget)} MiB; request a smaller window, a "
                "coarser resolution or fewer dates, or use a batch job"))

    @contextmanager
    def slot(self, purpose: str = "execute", *, memory: int = 0, user: str | None = None,
             explain: Callable[[int], str] | None = None) -> Iterator[None]:
        """Hold one evaluation slot with a deadline and ``memory`` bytes of the budget for
        ``user`` (no-op for unlimited purposes or nested evaluations, which already hold a
        slot). ``explain(budget)`` says what to shrink when ``memory`` can never fit."""
        if not self.applies(purpose):
            yield
            return
        memory = max(0, int(memory))
        self.admit(memory, explain)
        self._acquire(memory, user)
        started = time.monotonic()
        token = _DEADLINE.set(
            time.monotonic() + self.timeout if self.timeout > 0 else math.inf)
        held = _HELD.set(self)
        try:
            yield
        finally:
            _HELD.reset(held)
            _DEADLINE.reset(token)
            with self._cond:
                self.typical_seconds += 0.2 * (time.monotonic() - started -
                                               self.typical_seconds)
            self._release(memory, user)


@contextmanager
def slot_released() -> Iterator[None]:
    """Give the current evaluation's slot back while it waits for something that is not
    computing (a UDF worker held by someone else), so that waiting requests do not keep
    other users' evaluations out; the slot is taken again afterwards (503 as usual when
    none frees in time). Its memory stays held (its data is still alive). A no-op outside
    a limited evaluation."""
    limiter = _HELD.get()
    if limiter is None:
        yield
        return
    limiter._release(0, None, slots_only=True)
    try:
        yield
    finally:
        limiter._acquire(0, None, slots_only=True)
