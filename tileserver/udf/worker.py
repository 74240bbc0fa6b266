"""The UDF worker: runs INSIDE the sandbox, never in the server process.

Started by :mod:`tileserver.udf.sandbox` as ``python -I -B /udf/worker.py`` with a
scrubbed environment, as an unprivileged user, in its own mount/pid/network namespaces
(bubblewrap) that show only Python, its libraries and this folder. It imports numpy,
pandas, xarray (and the ``openeo`` client's UDF library when installed) once, says it is
ready, then acts as a **zygote**: it forks a spare child, hands the server the child's
pipes (file descriptors over the control socket on stdin) and waits to hear that the
server is done with it. Each request runs in a **fresh forked child** with resource limits
(CPU seconds, address space, processes, open files, file size); the server writes the
request into the child and reads the answer from it directly. The worker never reads a
request, a script or a result, so a child (user B's script reading its own memory) cannot
inherit fragments of user A's call; it only renices long scripts, kills the answered child,
clears what it left behind, and exits (to be replaced by the server) when that fails.

Only the standard library, numpy and the data libraries are imported here: the sandbox has
no tileserver package, no settings, no files of the server.
"""

from __future__ import annotations

import gc
import json
import linecache
import os
import resource
import select
import signal
import socket
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

try:  # libseccomp's Python binding, or the same API through ctypes (PyPI pyseccomp)
    import seccomp  # type: ignore[import-not-found]  # noqa: E402
except ImportError:
    try:
        import pyseccomp as seccomp  # type: ignore[import-untyped]  # noqa: E402
    except Exception:  # noqa: BLE001  no libseccomp on this machine
        seccomp = None

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
    dims = req.get("dims") or ["t", "bands", "y", "x"]
    if req.get("reduced"):  # no time dimension (reduced): the UDF sees none either
        data, ys, xs = arrays
        cube = xr.DataArray(data[0], dims=("bands", "y", "x"), name="data", coords={
            "bands": list(req["bands"]), "y": ys, "x": xs})
    else:
        cube = _cube(req, arrays)
    if req.get("bands_dim") is False:  # no bands dimension (ndvi, a band reduction)
        cube = cube.isel(bands=0, drop=True)
    cube = cube.rename({d: n for d, n in zip(("t", "bands", "y", "x"), dims, strict=True)
                        if d in cube.dims and d != n})
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
        out = out.drop_vars(tname, errors="ignore")
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


def _reply(out, header: dict, arrays=()) -> None:
    """The child's result: one frame holding a whole message, so that the worker knows when
    it is complete (and answers without waiting for the child to exit)."""
    for stream in (sys.stdout, sys.stderr):  # the script's output first (the log pipe)
        try:
            stream.flush()
        except Exception:  # noqa: BLE001  the script may have replaced or closed them
            pass
    bufs = wire.buffers(header, arrays)
    out.write(wire.length(sum(memoryview(b).nbytes for b in bufs)))
    for buf in bufs:
        out.write(buf)
    out.flush()


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
        _reply(out, dict(header, ok=True), [arr32])
        return 0
    except ScriptError as exc:
        _reply(out, {"ok": False, "kind": exc.kind, "message": exc.message, "line": exc.line})
        return 0
    except MemoryError as exc:
        _reply(out, {"ok": False, "kind": "memory",
                     "message": "the script exceeded the memory limit",
                     "line": _script_line(exc.__traceback__)})
        return 0
    except RecursionError as exc:
        _reply(out, {"ok": False, "kind": "script", "message": f"RecursionError: {exc}",
                     "line": _script_line(exc.__traceback__)})
        return 0
    except BaseException as exc:  # noqa: BLE001  anything the script raised while running
        kind = "memory" if isinstance(exc, MemoryError) else "script"
        _reply(out, {"ok": False, "kind": kind,
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


#: The worker's exit status when a child left processes it could not stop: the server
#: replaces it and sends the next request elsewhere (this worker never read it).
RETIRED = 75


def _prefault() -> None:
    """A forked child shares the worker's memory copy-on-write: the first write to each page
    (Python's reference counts write everywhere) copies it, a few thousand page faults per
    call. The spare child does that here, on a tiny request through the same code (read,
    cube, script, result), before its real request arrives: off the request's path."""
    code = "def reduce_time(data):\n    return data.mean('t')\n"
    req = {"udf_type": "reduce_time", "code": code, "bands": ["a", "b"],
           "times": ["2017-01-01T00:00:00", "2017-01-02T00:00:00"], "shape": [2, 2, 3, 3]}
    msg = wire.encode(req, [np.ones((2, 2, 3, 3), np.float32), np.arange(3.0),
                            np.arange(3.0)])
    req, arrays = wire.read_message(wire.Reader(msg), 1 << 20)
    header, arr = _run_reduce_time(_load(code, "reduce_time"), req, arrays)
    with np.errstate(over="ignore", invalid="ignore"):
        wire.encode(dict(header, ok=True), [np.asarray(arr).astype(np.float32)])
    linecache.cache.pop(SCRIPT, None)


#: System calls a script never needs and that would attack the kernel, the other processes
#: of the sandbox or its isolation: they fail with EPERM in the script's process (seccomp).
DENIED_SYSCALLS = (
    # other processes' memory (the worker forks every user's script processes)
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    # file systems and namespaces (bubblewrap's view is the isolation)
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "mount_setattr",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
    "open_by_handle_at", "name_to_handle_at",
    # the kernel's larger attack surfaces and machine-wide state
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "keyctl", "add_key", "request_key", "init_module",
    "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon",
    "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "iopl", "ioperm", "quotactl", "syslog", "vhangup",
)
#: clone() flags that make new namespaces: mount, cgroup, UTS, IPC, user, pid, network,
#: time (clone3 hides its flags: it gets ENOSYS, and the
#: C library falls back to clone).
CLONE_NAMESPACES = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                    0x20000000, 0x40000000, 0x00000080)


def _filter():
    """The seccomp filter of the script's process (built once in the worker, loaded in each
    child), or None without libseccomp. Everything is allowed but: sockets other than
    AF_UNIX (no network even without a network namespace), :data:`DENIED_SYSCALLS`, and
    new namespaces; a foreign architecture's system calls kill the process."""
    if seccomp is None:
        return None
    import errno  # noqa: PLC0415
    import socket  # noqa: PLC0415

    eperm = seccomp.ERRNO(errno.EPERM)
    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    flt.add_rule(eperm, "socket", seccomp.Arg(0, seccomp.NE, socket.AF_UNIX))
    flt.add_rule(eperm, "socketpair", seccomp.Arg(0, seccomp.NE, socket.AF_UNIX))
    for name in DENIED_SYSCALLS:
        try:
            flt.add_rule(eperm, name)
        except Exception:  # noqa: BLE001  not a system call of this kernel/architecture
            pass
    for flag in CLONE_NAMESPACES:
        flt.add_rule(eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    try:
        flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    except Exception:  # noqa: BLE001  a kernel before clone3
        pass
    return flt


#: Built in the worker (see :func:`main`).
_FILTER = None


def _usable(flt):
    """``flt`` if a child can load it (tried once in a throwaway child), else None (logged):
    a kernel without seccomp must not turn every call into a crash."""
    if flt is None:
        return None
    pid = os.fork()
    if pid == 0:
        try:
            flt.load()
            code = 0
        except BaseException:  # noqa: BLE001
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return flt
    print("the seccomp filter cannot be loaded here; scripts run without it",
          file=sys.stderr, flush=True)
    return None


def _no_ptrace() -> bool:
    """Make this process non-dumpable: processes of the same uid (the scripts' children)
    can then neither ptrace it nor read its memory through /proc. Inherited by fork."""
    import ctypes  # noqa: PLC0415

    pr_set_dumpable = 4
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(pr_set_dumpable, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class _Spare:
    """A child forked ahead of time (fork is off the request's path), waiting on its pipe
    for one request. The server gets the other ends of its pipes (request, result, the
    script's output) and talks to it directly: the request and the answer never pass
    through the worker, which forks every child and so must never hold any user's data."""

    def __init__(self):
        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        log_r, log_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: stdin/stdout/stderr away from the control socket
            try:
                os.setsid()
                os.dup2(req_r, 0)
                os.dup2(log_w, 1)
                os.dup2(log_w, 2)
                os.dup2(res_w, 3)
                os.closerange(4, 1 << 16)
                sys.stdout = os.fdopen(1, "w", buffering=1)
                sys.stderr = os.fdopen(2, "w", buffering=1)
                try:
                    _prefault()
                except Exception:  # noqa: BLE001  only a speed-up
                    pass
                if _FILTER is not None:
                    _FILTER.load()  # from here on, for good (kept across fork and exec)
                req, arrays = wire.read_message(os.fdopen(0, "rb"), 1 << 34)
                code = child_main(req, arrays, 3)
                if OWN_PID_NAMESPACE:
                    # answered: stop here (with any thread of the script) until the worker
                    # kills us once the server has the answer; the exit (unmapping of the
                    # libraries, milliseconds) then does not compete with the server
                    os.kill(os.getpid(), signal.SIGSTOP)
            except BaseException:  # noqa: BLE001
                code = 70
            os._exit(code)
        self.pid = pid
        self.fds = [req_w, res_r, log_r]  # for the server
        for fd in (req_r, res_w, log_w):
            os.close(fd)


#: Seconds a script runs at the worker's priority; then it (and every process it started)
#: goes to nice 10, so that a long script yields to the server's own work and to other
#: users' short scripts; a short call (most tiles) is not slowed on a busy CPU.
RENICE_AFTER = 0.05
#: The nice value of scripts past :data:`RENICE_AFTER` (a process cannot lower it again).
NICE = 10


def _renice(pid: int) -> None:
    """Lower the priority of the script's processes (its group; in our own pid namespace,
    every process but us and init, which catches those it started in other sessions; done
    again every :data:`RENICE_AFTER` seconds for those started since)."""
    targets = [(os.PRIO_PGRP, pid)]
    if OWN_PID_NAMESPACE:
        targets += [(os.PRIO_PROCESS, p) for p in _strays()]
    for which, who in targets:
        try:
            if os.getpriority(which, who) < NICE:
                os.setpriority(which, who, NICE)
        except OSError:
            pass  # gone already


def _kill(pid: int) -> None:
    for fn, target in ((os.killpg, pid), (os.kill, pid)):  # its group (setsid), then itself
        try:
            fn(target, signal.SIGKILL)
        except OSError:
            pass


def _ended(status: int, got_result: bool) -> dict:
    """What became of a child that gave no complete result (its wait status)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and not got_result):
            kind, why = "timeout", "it used up its CPU time limit"
            if sig == signal.SIGKILL:
                kind, why = "crash", "it was killed (CPU or memory limit)"
        else:
            kind, why = "crash", f"it died with signal {signal.Signals(sig).name}"
        return {"ok": False, "kind": kind, "message": f"the script process stopped: {why}"}
    return {"ok": False, "kind": "crash", "message": f"the script process ended without a "
            f"result (exit status {os.WEXITSTATUS(status)})"}


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


def _send(ctl, header: dict, fds=()) -> None:
    """One control message (a JSON packet of the SOCK_SEQPACKET socket, with file
    descriptors)."""
    data = json.dumps(header).encode()
    if fds:
        socket.send_fds(ctl, [data], list(fds))
    else:
        ctl.send(data)


def _receive(ctl, timeout: float | None) -> dict | None:
    """The server's next control message; None at ``timeout``; EOFError when it is gone."""
    if timeout is not None and not select.select([ctl], [], [], max(0.0, timeout))[0]:
        return None
    data = ctl.recv(CONTROL_SIZE)
    if not data:
        raise EOFError
    return json.loads(data)


#: Largest control message.
CONTROL_SIZE = 1 << 16


def main() -> int:
    """The zygote: warm up, then fork spare children and hand their pipes to the server.

    It talks to the server only through the control socket on stdin (a Unix
    ``SOCK_SEQPACKET`` socket) and only about children: "here is a spare (its pipes)", "the
    server started it" (the worker then lowers its priority after :data:`RENICE_AFTER`),
    "the server is done with it" (the worker kills it, reports how it ended, clears what it
    left behind and forks the next spare). It never reads a request, a script or a result:
    every child it forks starts from memory that no user's data ever touched.
    """
    ctl = socket.socket(fileno=os.dup(0))
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)  # stray prints of this process go to the server's log, not the protocol
    _warm_up()
    # the forked children must not walk (and so copy, page by page) every object of the
    # imported libraries in their garbage collections: freeze them into the permanent
    # generation first
    gc.collect()
    gc.freeze()
    global _FILTER
    dumpable = not _no_ptrace()
    _FILTER = _usable(_filter())
    base_vsz = _vsz()
    _send(ctl, {"ok": True, "ready": True, "pid": os.getpid(), "uid": os.getuid(),
                "python": sys.version.split()[0], "packages": versions(), "vsz": base_vsz,
                "seccomp": _FILTER is not None, "ptrace_guard": not dumpable})
    try:
        while True:
            spare = _Spare()
            _send(ctl, {"spare": spare.pid}, spare.fds)
            for fd in spare.fds:  # the server's ends: not ours, never the next child's
                os.close(fd)
            msg = _receive(ctl, None) or {}
            if msg.get("op") == "start":
                msg = _watch(ctl, spare.pid)
            _kill(spare.pid)  # stopped after its answer, or still running (done early)
            _, status = os.waitpid(spare.pid, 0)
            if msg.get("complete"):
                ended, cleared = {}, _clear(spare.pid)
            else:  # a fork bomb, a timeout...: a new worker rather than a clean-up
                ended, cleared = _ended(status, bool(msg.get("result"))), not _strays()
            _send(ctl, {"ended": spare.pid, "status": ended, "retiring": not cleared})
            if not cleared:
                print("a script left processes behind; retiring", file=sys.stderr,
                      flush=True)
                return RETIRED
    except (EOFError, OSError):
        return 0


def _watch(ctl, pid: int) -> dict:
    """While the server talks to the child: lower its priority after RENICE_AFTER (and
    every RENICE_AFTER again, for the processes it starts); the server's "done" ends it."""
    renice_at = time.monotonic() + RENICE_AFTER
    while True:
        msg = _receive(ctl, renice_at - time.monotonic())
        if msg is not None:
            return msg
        _renice(pid)
        renice_at = time.monotonic() + RENICE_AFTER


def _clear(pid: int) -> bool:
    """After a call: no process of the script (``pid``, reaped) may survive into the next
    call. Anything else in this pid namespace but us and its init is killed; False when
    something remains."""
    if not OWN_PID_NAMESPACE:
        return True  # no namespace of our own: /proc shows the machine (see the docs)
    if not _strays():
        return True
    os.kill(-1, signal.SIGKILL)  # every process we may signal in this pid namespace
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        if not _strays():  # the namespace's init reaps the orphans
            return True
        time.sleep(0.01)
    return False


if __name__ == "__main__":
    sys.exit(main())
