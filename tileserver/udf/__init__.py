"""User-defined functions (UDF): users' Python scripts run on the requested window, in a
sandbox of pre-started worker processes (:mod:`.sandbox`, :mod:`.worker`). No HTTP.

:class:`UdfRunner` is what the processes use: it checks that the user may run UDFs, sends
the cube of the window to a free worker, turns the worker's answer into a
:class:`~tileserver.datacube.cube.Cube` (checking shape and values again on this side) or into
one of our errors, each naming the UDF and quoting the script's line where there is one:
:class:`~tileserver.errors.UdfError` (400), :class:`~tileserver.errors.UdfLimitExceeded`
(413), :class:`~tileserver.errors.UdfTimeout` (504),
:class:`~tileserver.errors.UdfUnavailable` (503), :class:`~tileserver.errors.Forbidden`
(403).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tileserver.datacube.cube import Cube
from tileserver.errors import (
    Forbidden,
    UdfError,
    UdfLimitExceeded,
    UdfTimeout,
)
from tileserver.udf.sandbox import UdfConfig, UdfPool

__all__ = ["UdfConfig", "UdfPool", "UdfRunner", "Script"]


@dataclass(frozen=True)
class Script:
    """A UDF's code and how it is named in messages."""

    code: str
    label: str  # e.g. "/users/me/files/s1_aggregate.py"

    @property
    def digest(self) -> str:
        """Content hash (part of cache keys: editing the file invalidates results)."""
        return hashlib.sha256(self.code.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def quote(self, line: int | None) -> str:
        """`` (line N: <text>)`` or ``""``."""
        lines = self.code.splitlines()
        if not line or not 1 <= line <= len(lines):
            return ""
        return f" (line {line}: {lines[line - 1].strip()[:200]})"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).replace(tzinfo=None).isoformat()


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class UdfRunner:
    """The server side of UDFs for one server process (the pool starts on first use)."""

    def __init__(self, config: UdfConfig, allowed_users: tuple[str, ...] | None = None,
                 home: str | None = None):
        self.config = config
        #: ``$TILESERVER_HOME`` (where user files are), when not given by the context.
        self.home = home
        #: ``None``: every authenticated user; else only these user ids.
        self.allowed_users = allowed_users
        self._pool: UdfPool | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> UdfRunner:
        """From :class:`tileserver.settings.Settings`."""
        allowed = settings.udf_allowed_users
        if allowed is None or (isinstance(allowed, str) and allowed.strip() in ("", "*")):
            users = None
        else:
            items = allowed if isinstance(allowed, list | tuple) else str(allowed).split(",")
            users = tuple(str(u).strip() for u in items if str(u).strip())
        return cls(UdfConfig.from_settings(settings), users, str(settings.home.resolve()))

    @property
    def pool(self) -> UdfPool:
        """The worker pool (started on first use)."""
        with self._lock:
            if self._pool is None:
                self._pool = UdfPool(self.config)
            return self._pool

    def start(self) -> None:
        """Start the workers now (else with the first UDF)."""
        _ = self.pool

    def describe(self) -> dict:
        """Python version and packages of the sandbox (waits for a worker to start)."""
        return self.pool.wait_ready()

    def close(self) -> None:
        """Stop the workers."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def check_allowed(self, user: str | None, label: str = "") -> None:
        """:class:`Forbidden` unless ``user`` may run UDFs."""
        if not user:
            raise Forbidden(f"UDF {label}: UDFs run only for an identified user "
                            "(they read the script from the user's files)")
        if self.allowed_users is not None and user not in self.allowed_users:
            raise Forbidden(f"user {user} may not run UDFs on this server "
                            "(setting udf_allowed_users)")

    # -- running ---------------------------------------------------------------------

    def call(self, user: str, script: Script, udf_type: str, cube: Cube,
             extra: dict[str, Any] | None = None) -> tuple[dict, np.ndarray]:
        """Run ``udf_type`` of ``script`` on ``cube``; ``(answer header, float32 array)``."""
        self.check_allowed(user, script.label)
        view = cube.view
        xs = view.transform.c + (np.arange(view.width) + 0.5) * view.transform.a
        ys = view.transform.f + (np.arange(view.height) + 0.5) * view.transform.e
        header = {
            "udf_type": udf_type,
            "code": script.code,
            "times": [_iso(t) for t in cube.times] if cube.times is not None else [],
            "bands": list(cube.bands),
            "shape": list(cube.data.shape),
            "crs": view.crs_key,
            **(extra or {}),
        }
        data = np.ascontiguousarray(cube.data, dtype=np.float32)
        answer, arrays = self.pool.call(user, header, [data, ys, xs])
        if not answer.get("ok"):
            raise self._error(script, udf_type, answer)
        if len(arrays) != 1:
            raise UdfError(f"UDF {script.label} ({udf_type}): the sandbox returned no result")
        out = arrays[0]
        if out.ndim != 4 or out.shape[2:] != cube.data.shape[2:]:
            raise UdfError(f"UDF {script.label} ({udf_type}): result of shape {out.shape}, "
                           f"expected (dates, bands, {cube.data.shape[2]}, "
                           f"{cube.data.shape[3]})")
        out = out.astype(np.float32, copy=False)
        bad = np.isinf(out)
        if bad.any():
            raise UdfError(f"UDF {script.label} ({udf_type}): the result has {int(bad.sum())} "
                           "infinite values (or values beyond the float32 range); return "
                           "NaN for nodata")
        return answer, out

    def _error(self, script: Script, udf_type: str, answer: dict) -> Exception:
        kind = answer.get("kind")
        where = f"UDF {script.label} ({udf_type})"
        message = str(answer.get("message") or "failed")
        cfg = self.config
        if kind == "timeout":
            return UdfTimeout(f"{where}: {message} (udf_timeout = {cfg.timeout:g} s)")
        if kind == "memory":
            return UdfLimitExceeded(f"{where}: {message} (udf_memory = {cfg.memory} bytes)"
                                    f"{script.quote(answer.get('line'))}")
        if kind == "output":
            return UdfLimitExceeded(f"{where}: {message} (udf_max_output = "
                                    f"{cfg.max_output} bytes)")
        text = f"{where}: {message}{script.quote(answer.get('line'))}"
        log = (answer.get("log") or "").strip()
        if log:
            text += f"; script output: {log[-500:]}"
        return UdfError(text)

    def apply(self, user: str, script: Script, udf_type: str, cube: Cube,
              kind: str = "udf", extra: dict | None = None) -> Cube:
        """The result as a cube on the same view (times/bands from the answer)."""
        answer, out = self.call(user, script, udf_type, cube, extra)
        times = answer.get("times", "same")
        if times == "same":
            new_times = cube.times
        elif times is None:
            new_times = None
        else:
            new_times = tuple(_parse_time(t) for t in times)
        if new_times is None and out.shape[0] != 1:
            raise UdfError(f"UDF {script.label} ({udf_type}): the result keeps "
                           f"{out.shape[0]} dates where one was expected")
        if new_times is not None and len(new_times) != out.shape[0]:
            raise UdfError(f"UDF {script.label} ({udf_type}): {out.shape[0]} dates of data "
                           f"for {len(new_times)} date labels")
        bands = answer.get("bands") or None
        if bands is None:
            if out.shape[1] == len(cube.bands):
                bands = cube.bands
            else:
                bands = tuple(f"band{i + 1}" for i in range(out.shape[1]))
        return Cube(out, new_times, tuple(bands), cube.view, kind)
