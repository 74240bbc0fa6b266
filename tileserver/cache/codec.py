"""Bytes for the shared cache tier, without pickle: a JSON header and a payload.

A cube is its labels (times, bands, kind, view) as JSON and its values as ``.npy`` bytes
read back with ``allow_pickle=False``; an encoded answer is its media type and extension
as JSON and its bytes. Anything that does not parse is ``None`` (a miss), never an error.
"""

from __future__ import annotations

import io
import json
import struct
from datetime import datetime

import numpy as np

from tileserver.datacube.cube import Cube
from tileserver.datacube.view import View
from tileserver.render.encoders import Encoded

_LEN = struct.Struct(">I")


def _pack(header: dict, payload: bytes) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return _LEN.pack(len(head)) + head + payload


def _unpack(blob: bytes) -> tuple[dict, bytes] | None:
    if len(blob) < _LEN.size:
        return None
    (n,) = _LEN.unpack_from(blob)
    if n > len(blob) - _LEN.size:
        return None
    try:
        header = json.loads(blob[_LEN.size:_LEN.size + n])
    except ValueError:
        return None
    if not isinstance(header, dict):
        return None
    return header, blob[_LEN.size + n:]


def dump_cube(cube: Cube) -> bytes:
    """A cube as bytes."""
    v = cube.view
    header = {
        "type": "cube",
        "times": None if cube.times is None else [t.isoformat() for t in cube.times],
        "bands": list(cube.bands),
        "kind": cube.kind,
        "view": {"crs": v.crs_key, "bounds": list(v.bounds), "width": v.width,
                 "height": v.height},
    }
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(cube.data), allow_pickle=False)
    return _pack(header, buf.getvalue())


def load_cube(blob: bytes) -> Cube | None:
    """The cube of :func:`dump_cube`, or ``None`` for bytes that are not one."""
    parsed = _unpack(blob)
    if parsed is None or parsed[0].get("type") != "cube":
        return None
    header, payload = parsed
    try:
        data = np.load(io.BytesIO(payload), allow_pickle=False)
        v = header["view"]
        view = View(v["crs"], tuple(v["bounds"]), v["width"], v["height"])
        times = header["times"]
        return Cube(data, None if times is None else tuple(datetime.fromisoformat(t)
                                                           for t in times),
                    tuple(header["bands"]), view, header["kind"])
    except (ValueError, KeyError, TypeError, AssertionError, OSError, EOFError):
        return None


def dump_encoded(encoded: Encoded) -> bytes:
    """An encoded answer (tile, coverage) as bytes."""
    return _pack({"type": "encoded", "media_type": encoded.media_type,
                  "extension": encoded.extension}, encoded.content)


def load_encoded(blob: bytes) -> Encoded | None:
    """The answer of :func:`dump_encoded`, or ``None``."""
    parsed = _unpack(blob)
    if parsed is None or parsed[0].get("type") != "encoded":
        return None
    header, payload = parsed
    try:
        return Encoded(payload, str(header["media_type"]), str(header["extension"]))
    except KeyError:
        return None
