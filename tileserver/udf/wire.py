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
#: Bytes of a frame's length prefix.
LEN_SIZE = _LEN.size
#: Largest JSON header accepted (a header with a traceback and a bounded log).
MAX_HEADER = 1 << 20


class WireError(Exception):
    """A broken or oversized message (the peer is killed and replaced)."""


def _read_exact(stream, n: int) -> bytearray:
    """``n`` bytes into one buffer (no joined copies; arrays are made on it, writable)."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            raise WireError("peer closed the pipe")
        got += k
    return buf


def unpack_length(data) -> int:
    """The length in the first :data:`LEN_SIZE` bytes of ``data``."""
    return _LEN.unpack_from(data)[0]


class Reader:
    """A stream over bytes in memory (``readinto`` without copying them first)."""

    def __init__(self, data):
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def readinto(self, buf) -> int:
        """Copy the next bytes into ``buf``; how many (0 at the end)."""
        n = min(len(buf), len(self._view) - self._pos)
        buf[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n


def length(n: int) -> bytes:
    """The length prefix of a frame of ``n`` bytes."""
    return _LEN.pack(n)


def read_frame(stream, limit: int) -> bytearray:
    """One frame; more than ``limit`` bytes raises :class:`WireError` before reading it."""
    (n,) = _LEN.unpack(_read_exact(stream, _LEN.size))
    if n > limit:
        raise WireError(f"frame of {n} bytes exceeds the limit of {limit}")
    return _read_exact(stream, n)


def _npy_header(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(arr))
    return buf.getvalue()


def array_frames(arr: np.ndarray) -> list:
    """The frame of one array as buffers (length, ``.npy`` header, the data itself: no copy
    of a contiguous array)."""
    arr = np.asarray(arr)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    if arr.dtype == object:
        raise WireError("object arrays are not sent")
    head = _npy_header(arr)
    raw = arr.reshape(-1).view(np.uint8)
    data = memoryview(raw) if arr.size else b""  # type: ignore[arg-type]
    return [_LEN.pack(len(head) + arr.nbytes), head, data]


def array_bytes(arr: np.ndarray) -> bytes:
    """``.npy`` bytes of a plain numeric array."""
    return b"".join(bytes(b) for b in array_frames(arr)[1:])


def parse_array(data) -> np.ndarray:
    """An array on ``.npy`` bytes (a writable one on a bytearray, without copying);
    object arrays (pickles) are refused."""
    try:
        stream = io.BytesIO(memoryview(data)[:1 << 17])
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"npy version {version}")
        if dtype.hasobject:
            raise ValueError("object arrays are not accepted")
        count = int(np.prod(shape, dtype=np.int64))
        if len(data) - stream.tell() != count * dtype.itemsize:
            raise ValueError(f"{len(data) - stream.tell()} bytes of data for shape {shape}")
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=stream.tell())
        return arr.reshape(shape, order="F" if fortran else "C")
    except ValueError as exc:
        raise WireError(f"not a plain .npy array: {exc}") from None


def header_frame(header: dict, count: int) -> bytes:
    """The length-prefixed JSON header of a message with ``count`` arrays."""
    data = json.dumps(dict(header, arrays=count)).encode()
    return _LEN.pack(len(data)) + data


def buffers(header: dict, arrays: list[np.ndarray] | tuple = ()) -> list:
    """A whole message as a list of buffers (written one after the other)."""
    out = [header_frame(header, len(arrays))]
    for arr in arrays:
        out += array_frames(arr)
    return out


def encode(header: dict, arrays: list[np.ndarray] | tuple = ()) -> bytes:
    """A whole message as bytes."""
    return b"".join(bytes(b) for b in buffers(header, arrays))


def write_message(stream, header: dict, arrays: list[np.ndarray] | tuple = ()) -> None:
    """Send a message and flush."""
    for buf in buffers(header, arrays):
        stream.write(buf)
    stream.flush()


def read_header(stream) -> dict:
    """The JSON header frame of a message."""
    try:
        header = json.loads(read_frame(stream, MAX_HEADER))
    except ValueError as exc:
        raise WireError(f"bad header: {exc}") from None
    if not isinstance(header, dict):
        raise WireError("bad header: not an object")
    count = header.get("arrays", 0)
    if not isinstance(count, int) or not 0 <= count <= 64:
        raise WireError("bad header: array count")
    return header


def read_raw(stream, limit: int) -> tuple[dict, list[bytearray]]:
    """``(header, frames)``: a message whose array frames are not parsed yet."""
    header = read_header(stream)
    frames, budget = [], limit
    for _ in range(header["arrays"]):
        data = read_frame(stream, budget)
        budget -= len(data)
        frames.append(data)
    return header, frames


def read_message(stream, limit: int) -> tuple[dict, list[np.ndarray]]:
    """``(header, arrays)``; at most ``limit`` bytes of arrays in all."""
    header, frames = read_raw(stream, limit)
    return header, [parse_array(data) for data in frames]
