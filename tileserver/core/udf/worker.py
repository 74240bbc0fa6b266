"""The UDF worker: runs INSIDE the sandbox, never in the server process.

Started by :mod:`tileserver.core.udf.sandbox` as ``python -I -B /udf/worker.py`` with a
scrubbed environment, as an unprivileged user, in its own mount/pid/network namespaces
(bubblewrap) that show only Python, its libraries and this folder. It imports numpy,
pandas, xarray (and the ``openeo`` client's UDF library when installed) once, says it is
ready, then serves requests read from stdin. Each request runs in a **fresh forked child**
with resource limits (CPU seconds, address space, processes, open files, file size), so a
script never runs in the worker itself and no state leaks from one user's script to the
next. The worker relays the child's result (at most ``max_output`` bytes) or its error, and
exits (to be replaced by the server) when a child left processes behind.

Only the standard library, numpy and the data libraries are imported here: the sandbox has
no tileserver package, no settings, no files of the server.
"""

from __future__ import annotations

import gc
import linecache
import os
import resource
import selectors
import signal
import sys
import time
import traceback
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402  (the sandbox sees this folder only)

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402

openeo_udf: Any
try:  # the openEO client's UDF library (openeo.udf), for the 1.x run_udf signatures
    import openeo.udf as openeo_udf  # noqa: E402
    from openeo.udf.run_code import run_udf_code as _openeo_run_udf_code  # noqa: E402,F401
except Exception:  # noqa: BLE001
    openeo_udf = None

#: Bytes of the script's own output (print) kept for error messages.
LOG_BYTES = 4096
#: True only under bubblewrap (``--pidns``): then every other process in /proc is ours.
#: Without a pid namespace /proc shows the whole machine, so it is never scanned.
OWN_PID_NAMESPACE = "--pidns" in sys.argv[1:] and os.getpid() <= 3
#: File name user scripts are compiled under (tracebacks name it).
SCRIPT = "<udf>"


class ScriptError(Exception):
    """A fault of the user's script, reported with its line."""

    def __init__(self, message: str, line: int | None = None, kind: str = "script"):
        super().__init__(message)
        self.message, self.line, self.kind = message, line, kind


# --- in the forked child --------------------------------------------------------------


def _limit(which: int, value: int) -> None:
    soft_hard = (value, value)
    try:
        resource.setrlimit(which, soft_hard)
    except (ValueError, OSError):
        hard = resource.getrlimit(which)[1]
        resource.setrlimit(which, (min(value, hard), hard))


def _apply_limits(req: dict) -> None:
    os.nice(10)  # the server's own threads (reads, encoding) come first on a busy CPU
    cpu = max(1, int(req["timeout"] + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    _limit(resource.RLIMIT_AS, _vsz() + int(req["memory"]))
    _limit(resource.RLIMIT_NPROC, int(req.get("nproc", 0)))
    _limit(resource.RLIMIT_NOFILE, 64)
    _limit(resource.RLIMIT_FSIZE, 0)
    _limit(resource.RLIMIT_CORE, 0)


def _script_line(tb_or_exc) -> int | None:
    """The deepest line of the user's script in a traceback."""
    line = None
    for frame in traceback.extract_tb(tb_or_exc):
        if frame.filename in (SCRIPT, "<string>"):  # ours, or openeo.udf's exec
            line = frame.lineno
    return line


def _load(code: str, func: str):
    linecache.cache[SCRIPT] = (len(code), None, code.splitlines(True), SCRIPT)
    try:
        compiled = compile(code, SCRIPT, "exec")
    except SyntaxError as exc:
        raise ScriptError(f"SyntaxError: {exc.msg}", exc.lineno) from None
    namespace: dict = {"__name__": "udf", "__builtins__": __builtins__}
    try:
        exec(compiled, namespace)  # noqa: S102  the sandbox is the point of this module
    except MemoryError as exc:
        raise ScriptError("the script exceeded the memory limit",
                          _script_line(exc.__traceback__), "memory") from None
    except BaseException as exc:  # noqa: BLE001
        raise ScriptError(f"{type(exc).__name__}: {exc}", _script_line(exc.__traceback__)) \
            from None
    fn = namespace.get(func)
    if not callable(fn):
        raise ScriptError(f"the script defines no function {func}(...)")
    return fn


def _cube(req: dict, arrays: list) -> xr.DataArray:
    data, ys, xs = arrays
    # UTC ISO strings without offset (the server's _iso): numpy parses them ~10x faster
    # than pandas
    times = np.array(req["times"], dtype="datetime64[ns]")
    return xr.DataArray(data, dims=("t", "bands", "y", "x"),
                        coords={"t": times, "bands": list(req["bands"]), "y": ys, "x": xs},
                        name="data")


def _numeric(value, what: str) -> np.ndarray:
    if isinstance(value, xr.DataArray):
        value = value.values
    elif isinstance(value, pd.DataFrame | pd.Series):
        value = value.to_numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001
        raise ScriptError(f"{what} returned {type(value).__name__}, not an array: {exc}") \
            from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                   or arr.dtype == np.bool_):
        raise ScriptError(f"{what} returned an array of {arr.dtype}, not numbers")
    return arr


def _shape_error(what: str, got, expected) -> ScriptError:
    return ScriptError(f"{what} returned shape {tuple(got)}, expected {tuple(expected)}")


def _run_apply_pixel(fn, req, arrays):
    cube = _cube(req, arrays)
    out = fn(cube)
    if isinstance(out, xr.DataArray) and set(out.dims) == set(cube.dims):
        out = out.transpose(*cube.dims)
    arr = _numeric(out, "apply_pixel")
    if arr.shape != cube.shape:
        raise _shape_error("apply_pixel", arr.shape, cube.shape)
    return {"times": req["times"]}, arr


def _run_reduce_time(fn, req, arrays):
    cube = _cube(req, arrays)
    out = fn(cube)
    if isinstance(out, xr.DataArray) and set(out.dims) == {"bands", "y", "x"}:
        out = out.transpose("bands", "y", "x")
    arr = _numeric(out, "reduce_time")
    expected = cube.shape[1:]
    if arr.shape == expected[1:] and expected[0] == 1:
        arr = arr[None]
    if arr.shape != expected:
        raise _shape_error("reduce_time", arr.shape, expected)
    return {"times": None}, arr[None]


def _run_aggregate_time(fn, req, arrays):
    data = arrays[0]
    t, b, h, w = data.shape
    index = pd.DatetimeIndex(np.array(req["times"], dtype="datetime64[ns]"), name="t")
    columns = pd.MultiIndex.from_product([list(req["bands"]), range(h * w)],
                                         names=["band", "pixel"])
    frame = pd.DataFrame(data.reshape(t, b * h * w), index=index, columns=columns,
                         copy=False)
    out = fn(frame)
    if not isinstance(out, pd.DataFrame):
        raise ScriptError(f"aggregate_time returned {type(out).__name__}, expected a "
                          "pandas.DataFrame (rows: dates, columns: as given)")
    if out.shape[1] != frame.shape[1]:
        raise _shape_error("aggregate_time", out.shape, (len(out.index), frame.shape[1]))
    if not out.columns.equals(columns):
        try:
            out = out.reindex(columns=columns)
        except Exception as exc:  # noqa: BLE001
            raise ScriptError(f"aggregate_time returned other columns: {exc}") from None
    try:
        dates = pd.DatetimeIndex(out.index)
    except Exception:  # noqa: BLE001
        raise ScriptError("aggregate_time must return rows indexed by dates") from None
    if dates.tz is not None:
        dates = dates.tz_convert("UTC").tz_localize(None)
    if len(dates) > 1000:
        raise ScriptError(f"aggregate_time returned {len(dates)} dates (at most 1000)")
    arr = _numeric(out, "aggregate_time").reshape(len(dates), b, h, w)
    return {"times": [d.isoformat() for d in dates]}, arr


def _run_openeo(fn_name, req, arrays):
    """1.x ``run_udf``: the openEO client's own UDF runner on an XarrayDataCube."""
    if openeo_udf is None:
        raise ScriptError("the openeo package (openeo.udf) is not installed in the sandbox")
    from openeo.udf import UdfData, XarrayDataCube  # noqa: PLC0415
    from openeo.udf.run_code import run_udf_code  # noqa: PLC0415

    try:
        compile(req["code"], SCRIPT, "exec")
    except SyntaxError as exc:
        raise ScriptError(f"SyntaxError: {exc.msg}", exc.lineno) from None
    cube = _cube(req, arrays)
    dims = req.get("dims") or ["t", "bands", "y", "x"]
    cube = cube.rename({"t": dims[0], "bands": dims[1], "y": dims[2], "x": dims[3]}) \
        if dims != ["t", "bands", "y", "x"] else cube
    data = UdfData(datacube_list=[XarrayDataCube(cube)], user_context=req.get("context") or {})
    result = run_udf_code(code=req["code"], data=data)
    cubes = result.get_datacube_list() if result is not None else None
    if not cubes:
        raise ScriptError("the UDF returned no data cube")
    out = cubes[0].get_array()
    return _shape_cube(out, dims, req)


def _shape_cube(out, dims, req):
    if not isinstance(out, xr.DataArray):
        raise ScriptError(f"the UDF returned {type(out).__name__}, not an xarray.DataArray")
    tname, bname, yname, xname = dims
    for d in (yname, xname):
        if d not in out.dims:
            raise ScriptError(f"the UDF result has dimensions {list(out.dims)}; "
                              f"it must keep {yname!r} and {xname!r}")
    extra = [d for d in out.dims if d not in dims]
    if extra:
        raise ScriptError(f"the UDF result has unknown dimensions {extra}")
    if tname not in out.dims:
        out = out.expand_dims(tname)
        times = None
    else:
        times = [pd.Timestamp(v).isoformat() for v in out[tname].values] \
            if tname in out.coords else req["times"]
    if bname not in out.dims:
        out = out.expand_dims(bname)
        bands = None
    else:
        bands = [str(v) for v in out[bname].values] if bname in out.coords else None
    out = out.transpose(tname, bname, yname, xname)
    arr = _numeric(out, "the UDF")
    shape = tuple(req["shape"])
    if arr.shape[2:] != shape[2:]:
        raise _shape_error("the UDF", arr.shape, (arr.shape[0], arr.shape[1], *shape[2:]))
    return {"times": times, "bands": bands}, arr


RUNNERS = {
    "apply_pixel": _run_apply_pixel,
    "reduce_time": _run_reduce_time,
    "aggregate_time": _run_aggregate_time,
}


def child_main(req: dict, arrays: list, res_fd: int) -> int:
    """Run one request; write the result message to ``res_fd``; return the exit status."""
    out = os.fdopen(res_fd, "wb")
    try:
        _apply_limits(req)
        udf_type = req["udf_type"]
        if udf_type.startswith("openeo:"):
            header, arr = _run_openeo(udf_type, req, arrays)
        else:
            fn = _load(req["code"], udf_type)
            header, arr = RUNNERS[udf_type](fn, req, arrays)
        arr = np.asarray(arr)
        if arr.size * 4 > req["max_output"]:
            raise ScriptError(f"the result has {arr.size} values ({arr.size * 4} bytes as "
                              f"float32), more than the output limit of {req['max_output']} "
                              "bytes", None, "output")
        with np.errstate(over="ignore", invalid="ignore"):
            arr32 = arr.astype(np.float32)
        wire.write_message(out, dict(header, ok=True), [arr32])
        return 0
    except ScriptError as exc:
        wire.write_message(out, {"ok": False, "kind": exc.kind, "message": exc.message,
                                 "line": exc.line})
        return 0
    except MemoryError as exc:
        wire.write_message(out, {"ok": False, "kind": "memory",
                                 "message": "the script exceeded the memory limit",
                                 "line": _script_line(exc.__traceback__)})
        return 0
    except RecursionError as exc:
        wire.write_message(out, {"ok": False, "kind": "script", "message": f"RecursionError: "
                                 f"{exc}", "line": _script_line(exc.__traceback__)})
        return 0
    except BaseException as exc:  # noqa: BLE001  anything the script raised while running
        kind = "memory" if isinstance(exc, MemoryError) else "script"
        wire.write_message(out, {"ok": False, "kind": kind,
                                 "message": f"{type(exc).__name__}: {exc}"[:2000],
                                 "line": _script_line(exc.__traceback__)})
        return 0


# --- in the worker (the parent of every child) --------------------------------------------


def _vsz() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def _strays() -> list[int]:
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in (1, me):
            out.append(int(name))
    return out


class _Spare:
    """A child forked ahead of time (fork is off the request's path), waiting on its pipe
    for one request."""

    def __init__(self):
        req_r, self.req_w = os.pipe()
        self.res_r, res_w = os.pipe()
        self.log_r, log_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: stdin/stdout/stderr away from the server's pipes
            try:
                os.setsid()
                os.dup2(req_r, 0)
                os.dup2(log_w, 1)
                os.dup2(log_w, 2)
                os.dup2(res_w, 3)
                os.closerange(4, 1 << 16)
                sys.stdout = os.fdopen(1, "w", buffering=1)
                sys.stderr = os.fdopen(2, "w", buffering=1)
                req, arrays = wire.read_message(os.fdopen(0, "rb"), 1 << 34)
                code = child_main(req, arrays, 3)
            except BaseException:  # noqa: BLE001
                code = 70
            os._exit(code)
        self.pid = pid
        for fd in (req_r, res_w, log_w):
            os.close(fd)


#: The next child (forked right after the previous call was answered).
_SPARE: _Spare | None = None


def _run(req: dict, arrays: list) -> tuple[dict, list]:
    global _SPARE
    spare, _SPARE = _SPARE or _Spare(), None
    pid, res_r, log_r = spare.pid, spare.res_r, spare.log_r
    with os.fdopen(spare.req_w, "wb") as feed:
        try:
            wire.write_message(feed, req, arrays)
        except OSError:
            pass  # the child died before reading: reported below
    deadline = time.monotonic() + float(req["timeout"])
    limit = int(req["max_output"]) + wire.MAX_HEADER
    result, log = bytearray(), bytearray()
    sel = selectors.DefaultSelector()
    sel.register(res_r, selectors.EVENT_READ, "res")
    sel.register(log_r, selectors.EVENT_READ, "log")
    timed_out = too_big = False
    while sel.get_map():
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        for key, _ in sel.select(timeout=min(left, 1.0)):
            chunk = os.read(key.fd, 1 << 20)
            if not chunk:
                sel.unregister(key.fd)
                continue
            if key.data == "res":
                result += chunk
                if len(result) > limit:
                    too_big = True
            else:
                log += chunk
                del log[:-LOG_BYTES]
        if too_big:
            break
    if timed_out or too_big:
        _kill(pid)
    sel.close()
    os.close(res_r)
    os.close(log_r)
    _, status = os.waitpid(pid, 0)
    text = log.decode("utf-8", "replace")
    if timed_out:
        return {"ok": False, "kind": "timeout", "message": f"the script ran longer than the "
                f"time limit of {req['timeout']} s", "log": text}, []
    if too_big:
        return {"ok": False, "kind": "output", "message": "the result exceeded the output "
                f"limit of {req['max_output']} bytes", "log": text}, []
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and not result):
            kind, why = "timeout", "it used up its CPU time limit"
            if sig == signal.SIGKILL:
                kind, why = "crash", "it was killed (CPU or memory limit)"
        else:
            kind, why = "crash", f"it died with signal {signal.Signals(sig).name}"
        return {"ok": False, "kind": kind, "message": f"the script process stopped: {why}",
                "log": text}, []
    try:
        import io  # noqa: PLC0415

        header, out_arrays = wire.read_message(io.BytesIO(bytes(result)),
                                               int(req["max_output"]))
    except wire.WireError as exc:
        return {"ok": False, "kind": "crash", "message": f"the script process ended without a "
                f"result ({exc}; exit status {os.WEXITSTATUS(status)})", "log": text}, []
    header["log"] = text
    return header, out_arrays


def _kill(pid: int) -> None:
    for fn, target in ((os.killpg, pid), (os.kill, pid)):  # its group (setsid), then itself
        try:
            fn(target, signal.SIGKILL)
        except OSError:
            pass


def versions() -> dict:
    """Installed package versions the runtime descriptions list."""
    import importlib.metadata as md  # noqa: PLC0415

    out = {}
    for name in ("numpy", "pandas", "xarray", "openeo"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _warm_up() -> None:
    """Do once here what every child would otherwise do: lazy imports and caches of
    xarray/pandas (a forked child starts from this state, so it starts warm)."""
    req = {"times": ["2017-01-01", "2017-01-02"], "bands": ["a", "b"]}
    arrays = [np.ones((2, 2, 3, 3), np.float32), np.arange(3.0), np.arange(3.0)]
    cube = _cube(req, arrays)
    for out in (cube.mean("t"), cube.max("t"), cube.median("t"), cube.sel(bands="a"),
                (cube - cube.mean("t")) / cube.std("t"), cube.where(cube > 0),
                cube.isel(t=0), cube.fillna(0), cube.sum(dim="t", skipna=True)):
        np.asarray(out)
    frame = pd.DataFrame(arrays[0].reshape(2, -1), index=pd.DatetimeIndex(
        pd.to_datetime(req["times"]), name="t"))
    frame.resample("MS").mean()
    frame.mean()
    frame.rolling(2).mean()
    if openeo_udf is not None:
        from openeo.udf import UdfData, XarrayDataCube  # noqa: PLC0415, F401
        from openeo.udf.run_code import run_udf_code  # noqa: PLC0415

        try:
            run_udf_code(code="def apply_datacube(cube, context):\n    return cube\n",
                         data=UdfData(datacube_list=[XarrayDataCube(cube.rename(
                             {"t": "t", "bands": "bands"}))]))
        except Exception:  # noqa: BLE001
            pass
    linecache.clearcache()


def main() -> int:
    """Serve requests on stdin/stdout until stdin closes."""
    inp = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)  # stray prints of this process go to the server's log, not the protocol
    _warm_up()
    # the forked children must not walk (and so copy, page by page) every object of the
    # imported libraries in their garbage collections: freeze them into the permanent
    # generation first
    gc.collect()
    gc.freeze()
    base_vsz = _vsz()
    global _SPARE
    _SPARE = _Spare()
    wire.write_message(out, {"ok": True, "ready": True, "pid": os.getpid(),
                             "uid": os.getuid(), "python": sys.version.split()[0],
                             "packages": versions(), "vsz": base_vsz})
    while True:
        try:
            req, arrays = wire.read_message(inp, 1 << 34)
        except wire.WireError:
            return 0
        if req.get("op") == "ping":
            wire.write_message(out, {"ok": True, "pong": True, "uid": os.getuid()})
            continue
        header, result = _run(req, arrays)
        strays = _strays() if OWN_PID_NAMESPACE else []
        if strays:  # a fork bomb or a daemon: let the server kill this whole pid namespace
            header["restart"] = True
            header["strays"] = len(strays)
        wire.write_message(out, header, result)
        if header.get("restart"):
            return 0
        _SPARE = _Spare()  # the next call's child, forked while the server works


if __name__ == "__main__":
    sys.exit(main())
