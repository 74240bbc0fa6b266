"""Limits of evaluations: how many run at once, and how long one may take (read by the
engine, the UDF sandbox and the runtime: a foundation module).

A :class:`Limiter` is a semaphore of evaluation slots plus a per-evaluation deadline. The
deadline lives in a context variable, so the engine checks it between node evaluations and
block reads (:func:`check_deadline`, :func:`remaining`) without passing it around. No HTTP.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tileserver.errors import EvaluationTimeout, TooManyRequests

#: Monotonic time after which the current evaluation must stop (``None``: no deadline).
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "tileserver_deadline", default=None)

#: The limiter whose slot the current evaluation holds (``None``: none).
_HELD: contextvars.ContextVar[Limiter | None] = contextvars.ContextVar(
    "tileserver_slot_held", default=None)

#: Purposes that run inside a request and are therefore limited (batch runs are not).
LIMITED_PURPOSES = ("tile", "coverage", "execute")


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
    """At most ``max_inflight`` evaluations at once, each at most ``timeout`` seconds.

    A caller waits up to ``queue_timeout`` seconds for a slot, then gets
    :class:`TooManyRequests` (503) with a retry hint in ``retry_after``.
    """

    def __init__(self, max_inflight: int, queue_timeout: float, timeout: float):
        self.max_inflight = max(1, int(max_inflight))
        self.queue_timeout = max(0.0, float(queue_timeout))
        self.timeout = float(timeout)
        self._slots = threading.BoundedSemaphore(self.max_inflight)
        self._lock = threading.Lock()
        self.inflight = 0

    @classmethod
    def from_settings(cls, settings) -> Limiter:
        """The limiter configured by ``max_evaluations`` and the evaluation timeouts."""
        return cls(settings.max_evaluations, settings.evaluation_queue_timeout,
                   settings.evaluation_timeout)

    @contextmanager
    def slot(self, purpose: str = "execute") -> Iterator[None]:
        """Hold one evaluation slot with a deadline (no-op for unlimited purposes or nested
        evaluations, which already hold a slot)."""
        if purpose not in LIMITED_PURPOSES or _DEADLINE.get() is not None:
            yield
            return
        if not self._slots.acquire(timeout=self.queue_timeout):
            exc = TooManyRequests(
                f"{self.max_inflight} evaluations are already running; retry in a moment")
            exc.retry_after = max(1, math.ceil(self.queue_timeout) or 1)
            raise exc
        with self._lock:
            self.inflight += 1
        token = _DEADLINE.set(
            time.monotonic() + self.timeout if self.timeout > 0 else math.inf)
        held = _HELD.set(self)
        try:
            yield
        finally:
            _HELD.reset(held)
            _DEADLINE.reset(token)
            with self._lock:
                self.inflight -= 1
            self._slots.release()


@contextmanager
def slot_released() -> Iterator[None]:
    """Give the current evaluation's slot back while it waits for something that is not
    computing (a UDF worker held by someone else), so that waiting requests do not keep
    other users' evaluations out; the slot is taken again afterwards (503 as usual when
    none frees in time). A no-op outside a limited evaluation."""
    limiter = _HELD.get()
    if limiter is None:
        yield
        return
    with limiter._lock:
        limiter.inflight -= 1
    limiter._slots.release()
    try:
        yield
    finally:
        if not limiter._slots.acquire(timeout=limiter.queue_timeout):
            exc = TooManyRequests(f"{limiter.max_inflight} evaluations are already running; "
                                  "retry in a moment")
            exc.retry_after = max(1, math.ceil(limiter.queue_timeout) or 1)
            raise exc
        with limiter._lock:
            limiter.inflight += 1
