"""Conditional responses, the same for every protocol: an ``ETag`` from the answer's cache
key, ``304 Not Modified`` when ``If-None-Match`` holds it, and ``Cache-Control``."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, request

from tileserver.render.encoders import Encoded

#: Answers of public service URLs may sit in shared caches; per-user endpoints may not.
#: A lazy job's answers change when its catalog grows: short, revalidated by ETag.
PUBLIC_CACHE = "public, max-age=60"
PRIVATE_CACHE = "private, max-age=60"
#: Answers read from a finished job's stored result do not change (a PATCH of the job
#: discards the result, and its answers get other ETags).
STORED_MAX_AGE = "max-age=86400, immutable"
#: Answers that are never cached (no ETag either).
NO_CACHE = "no-cache"
#: Response header naming where an answer came from (memory, disk, redis, stored, computed).
CACHE_HEADER = "X-Tileserver-Cache"


def cache_control(resp: Response, policy: str, *, stored: bool = False) -> Response:
    """Set ``Cache-Control`` to ``policy``; an answer read from a stored result keeps the
    policy's scope (``public``/``private``) and becomes immutable for a day."""
    if stored:
        policy = f"{policy.split(',')[0]}, {STORED_MAX_AGE}"
    resp.headers["Cache-Control"] = policy
    return resp


def conditional(key: str, produce: Callable[[], tuple[Encoded, str]], policy: str, *,
                stored: bool = False) -> Response:
    """The answer under the cache ``key`` (hex; its first 32 characters are the ETag), or a
    304 when the client already holds it (``produce`` is then not called). ``produce()``
    gives the encoded answer and where it came from (the ``X-Tileserver-Cache`` header)."""
    etag = key[:32]
    if request.if_none_match.contains_weak(etag):
        resp = Response(status=304)
    else:
        encoded, origin = produce()
        resp = Response(encoded.content, mimetype=encoded.media_type)
        resp.headers[CACHE_HEADER] = origin
    resp.set_etag(etag)
    return cache_control(resp, policy, stored=stored)
