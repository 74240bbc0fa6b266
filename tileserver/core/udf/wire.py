"""The wire format between the server and a UDF worker (both sides use this module).

A message is one JSON header plus numpy arrays, each a length-prefixed frame:
``>Q`` length, then the bytes. Arrays travel as ``.npy`` bytes read with
``allow_pickle=False``: nothing the sandbox sends can run code in the server, and a header
is plain JSON. This module imports only the standard library and numpy, because the
sandbox sees this folder and not the rest of tileserver.
"""

from __future__ import annotations

import io
import json
import struct

import numpy as np

_LEN = struct.Struct(">Q")
#: Largest JSON header accepted (a header with a traceback and a bounded log).
MAX_HEADER = 1 << 20


class WireError(Exception):
    """A broken or oversized message (the peer is killed and replaced)."""


def _read_exact(stream, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise WireError("peer closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(stream, limit: int) -> bytes:
    """One frame; more than ``limit`` bytes raises :class:`WireError` before reading it."""
    (n,) = _LEN.unpack(_read_exact(stream, _LEN.size))
    if n > limit:
        raise WireError(f"frame of {n} bytes exceeds the limit of {limit}")
    return _read_exact(stream, n)


def array_bytes(arr: np.ndarray) -> bytes:
    """``.npy`` bytes of a plain numeric array."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def parse_array(data: bytes) -> np.ndarray:
    """An array from ``.npy`` bytes; object arrays (pickles) are refused."""
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise WireError(f"not a plain .npy array: {exc}") from None


def encode(header: dict, arrays: list[np.ndarray] | tuple = ()) -> bytes:
    """A whole message as bytes."""
    parts = [json.dumps(dict(header, arrays=len(arrays))).encode()]
    parts += [array_bytes(a) for a in arrays]
    return b"".join(_LEN.pack(len(p)) + p for p in parts)


def write_message(stream, header: dict, arrays: list[np.ndarray] | tuple = ()) -> None:
    """Send a message and flush."""
    stream.write(encode(header, arrays))
    stream.flush()


def read_message(stream, limit: int) -> tuple[dict, list[np.ndarray]]:
    """``(header, arrays)``; at most ``limit`` bytes of arrays in all."""
    try:
        header = json.loads(read_frame(stream, MAX_HEADER))
    except ValueError as exc:
        raise WireError(f"bad header: {exc}") from None
    if not isinstance(header, dict):
        raise WireError("bad header: not an object")
    count = header.get("arrays", 0)
    if not isinstance(count, int) or not 0 <= count <= 64:
        raise WireError("bad header: array count")
    arrays, budget = [], limit
    for _ in range(count):
        data = read_frame(stream, budget)
        budget -= len(data)
        arrays.append(parse_array(data))
    return header, arrays
