"""Admission control (tileserver.limits.Limiter): the memory budget (413 for what can never
fit, 429 with a retry hint for what must wait), the per-user bound, bounded waiting. Threads
are coordinated through the limiter's own counters, never through sleeps."""

from __future__ import annotations

import threading

import pytest

from tileserver.errors import MemoryBusy, MemoryTooLarge, TooManyRequests, UserBusy
from tileserver.limits import Limiter

MiB = 1024 * 1024


def _until(predicate, what: str) -> None:
    """Wait (bounded by the test run, not asserted on) until another thread got somewhere."""
    event = threading.Event()
    for _ in range(100_000):
        if predicate():
            return
        event.wait(0.001)
    raise AssertionError(what)


def _run(limiter: Limiter, out: list, **kwargs) -> threading.Thread:
    def body():
        try:
            with limiter.slot("execute", **kwargs):
                out.append("ran")
        except TooManyRequests as exc:
            out.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    return thread


def test_more_than_the_budget_is_413_with_what_to_shrink():
    limiter = Limiter(4, 1, 60, memory_budget=100 * MiB)
    with pytest.raises(MemoryTooLarge) as err:
        with limiter.slot("execute", memory=101 * MiB, explain=lambda b: f"shrink to {b}"):
            pass
    assert err.value.status == 413 and err.value.message == f"shrink to {100 * MiB}"
    with pytest.raises(MemoryTooLarge, match="smaller window"):
        with limiter.slot("tile", memory=200 * MiB):
            pass
    assert limiter.inflight == 0 and limiter.memory_held == 0
    assert limiter.refused == {"budget": 2}


def test_memory_held_by_others_is_429_with_retry_after():
    limiter = Limiter(4, 1, 60, memory_budget=100 * MiB, memory_wait=0)
    out: list = []
    with limiter.slot("execute", memory=60 * MiB):
        assert limiter.memory_held == 60 * MiB
        _run(limiter, out, memory=50 * MiB).join()
        _run(limiter, out, memory=40 * MiB).join()  # fits beside it
    assert isinstance(out[0], MemoryBusy) and out[0].status == 429
    assert out[0].retry_after >= 1 and "100 MiB" in out[0].message
    assert out[1] == "ran"
    assert limiter.memory_held == 0 and limiter.inflight == 0


def test_a_request_waits_a_bounded_time_for_memory():
    limiter = Limiter(4, 1, 60, memory_budget=100 * MiB, memory_wait=3600)
    out: list = []
    with limiter.slot("execute", memory=80 * MiB):
        thread = _run(limiter, out, memory=80 * MiB)
        _until(lambda: limiter.waiting == 1, "the second request waits")
        assert out == []
    thread.join()  # admitted once the first one let its memory go
    assert out == ["ran"]


def test_one_request_alone_always_runs_if_it_fits_the_budget():
    limiter = Limiter(4, 1, 60, memory_budget=100 * MiB, memory_wait=0)
    with limiter.slot("execute", memory=100 * MiB):
        assert limiter.memory_held == 100 * MiB


def test_per_user_bound():
    limiter = Limiter(4, 1, 60, user_inflight=1, memory_wait=0)
    out: list = []
    with limiter.slot("tile", user="alice"):
        _run(limiter, out, user="alice").join()
        _run(limiter, out, user="bob").join()
        _run(limiter, out).join()  # no user: not bounded per user
    assert isinstance(out[0], UserBusy) and out[0].status == 429
    assert out[1:] == ["ran", "ran"]


def test_slots_are_still_503_and_batch_and_nested_evaluations_are_not_limited():
    limiter = Limiter(1, 0, 60, memory_budget=10 * MiB, memory_wait=0)
    out: list = []
    with limiter.slot("execute", memory=MiB):
        _run(limiter, out).join()
        with limiter.slot("execute", memory=100 * MiB):  # nested: its caller was admitted
            pass
    assert type(out[0]) is TooManyRequests and out[0].status == 503
    with limiter.slot("batch", memory=100 * MiB):
        assert limiter.inflight == 0
