"""Encoded answers (tiles, coverages) through the cache tiers: the process's LRU, then the
shared tier, else computed. No HTTP here: the protocol modules call :func:`cached_answer`
with a key that holds everything the bytes depend on."""

from __future__ import annotations

from collections.abc import Callable

from tileserver.cache import codec as serial
from tileserver.cache.shared import digest_key
from tileserver.engine.evaluator import Engine
from tileserver.render.encoders import Encoded


def cached_answer(engine: Engine, key: tuple[str, str],
                  produce: Callable[[], tuple[Encoded, str]]) -> tuple[Encoded, str]:
    """The answer under ``key`` and where it came from: ``memory``, the shared tier's
    name (``disk``, ``redis``), or what ``produce()`` says (``computed``, ``stored``).

    A shared hit is copied into the LRU; a computed answer is stored in both, unless it is
    larger than ``engine.shared_max_bytes`` (large coverages are not kept)."""
    blob = engine.cache.get(key)
    if blob is not None:
        encoded = serial.load_encoded(blob)
        if encoded is not None:
            return encoded, "memory"
    shared = engine.shared
    skey = digest_key(*key)
    if shared is not None:
        blob = shared.get(skey)
        encoded = serial.load_encoded(blob) if blob is not None else None
        if encoded is not None:
            engine.cache.put(key, blob)
            return encoded, shared.name
    encoded, source = produce()
    blob = serial.dump_encoded(encoded)
    if len(blob) <= engine.shared_max_bytes:
        engine.cache.put(key, blob)
        if shared is not None:
            shared.put(skey, blob)
    return encoded, source
