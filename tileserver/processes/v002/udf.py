"""openEO 0.0.2 user-defined functions: ``/udf/Python/{apply_pixel,reduce_time,aggregate_time}``.

The script is a Python file among the caller's user files (``/users/<me>/files/...``;
``/users/me/files/...`` names the caller's own files in multi-user mode too). It runs in
the UDF sandbox (:mod:`tileserver.udf`) on the requested window only, once per window
(vectorised: the whole window at once, never a call per pixel). Results are cached like any
node, under keys that include the script's content hash and its owner: editing the file
invalidates them.

These 0.0.2 processes have no 1.x equivalent: each translates into a node of the same id,
an executable cube process that the 1.x API does not list (``public=False``).
"""

from __future__ import annotations

import platform
import threading
from datetime import UTC, datetime
from pathlib import Path

from tileserver.data.userfiles import (
    InvalidPath,
    files_root,
    parse_graph_path,
    resolve_graph_path,
)
from tileserver.datacube.query import Query
from tileserver.errors import FileNotFound, ProcessGraphError, UdfError, UdfUnavailable
from tileserver.graph.nodes import IMAGERY
from tileserver.graph.v1 import v1_node
from tileserver.processes.registry import REGISTRY, Param, process
from tileserver.processes.v002.table import Arg, translation
from tileserver.udf import Script

LANGUAGE = "Python"
#: Largest script accepted (bytes).
MAX_SCRIPT_BYTES = 1 << 20

CONTRACTS = {
    "apply_pixel": (
        "Applies the script's function to every pixel, vectorised over the requested window.",
        "The script defines `apply_pixel(data)`. `data` is an `xarray.DataArray` of float32 "
        "with dimensions (`t`, `bands`, `y`, `x`) holding the requested window only: `t` "
        "dates (numpy datetime64, UTC), `bands` band ids, `y`/`x` pixel-centre coordinates "
        "in the window's CRS; nodata is NaN. It returns an array of the same shape (an "
        "`xarray.DataArray` with these dimensions in any order, or a numpy array in this "
        "order): one value per pixel, band and date. Write it with whole-array operations "
        "(numpy, xarray), e.g. `return 10 * np.log10(data)`."),
    "reduce_time": (
        "Reduces the time series of every pixel to one value, vectorised over the window.",
        "The script defines `reduce_time(data)`. `data` is an `xarray.DataArray` of float32 "
        "with dimensions (`t`, `bands`, `y`, `x`) for the requested window (nodata NaN). It "
        "returns an array of shape (`bands`, `y`, `x`) (a DataArray with these dimensions, "
        "or a numpy array; `(y, x)` when there is one band), e.g. "
        "`return data.median('t')`. The result has no time axis."),
    "aggregate_time": (
        "Runs a Python script for each time series of the input dataset, as one pandas "
        "DataFrame per window.",
        "The script defines `aggregate_time(series)`. `series` is a `pandas.DataFrame`: one "
        "row per date (a `DatetimeIndex` named `t`, UTC) and one column per band and pixel of "
        "the requested window (a `MultiIndex` of (`band`, `pixel`), pixel = row-major index "
        "in the window); nodata is NaN. It returns a DataFrame with the same columns and one "
        "row per new date (a `DatetimeIndex`), e.g. `return series.resample('MS').mean()` "
        "for monthly means. The result's dates are the returned index; a tile or coverage "
        "request for a date selects that row. The input is read for the whole time range of "
        "the filters below this node, whatever date the request asks for."),
}

_SCRIPT_DOC = ("A Python file among your user files, '/users/<your id>/files/<path>' "
               "(or '/users/me/files/<path>').")


class _Digests:
    """(path, size, mtime) -> Script, so that a tile request does not re-read the file."""

    def __init__(self):
        self._memo: dict[tuple, Script] = {}
        self._lock = threading.Lock()

    def load(self, path: Path, label: str) -> Script:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            hit = self._memo.get(key)
        if hit is not None:
            return hit
        if st.st_size > MAX_SCRIPT_BYTES:
            raise UdfError(f"UDF {label}: the script is larger than {MAX_SCRIPT_BYTES} bytes")
        raw = path.read_bytes()
        try:
            code = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UdfError(f"UDF {label}: the script is not UTF-8 text ({exc})") from None
        script = Script(code, label)
        with self._lock:
            if len(self._memo) > 1024:
                self._memo.clear()
            self._memo[key] = script
        return script


_DIGESTS = _Digests()


def _user(ctx) -> str | None:
    return (getattr(ctx, "context", None) or {}).get("user_id")


def _runner(ctx):
    runner = getattr(ctx.engine, "udf", None)
    if runner is None:
        raise UdfUnavailable("UDFs cannot run here (no UDF sandbox in this process)")
    return runner


def _files_root(ctx, runner) -> str:
    root = (getattr(ctx, "context", None) or {}).get("files_root")
    return root or str(files_root(runner.home))


def _check_script(node) -> str:
    value = node.args["script"]
    where = f"{node.path}.args.script"
    try:
        parse_graph_path(value)
    except InvalidPath as exc:
        raise ProcessGraphError(f"{where}: {exc.message}", path=where) from None
    if value.endswith("/"):
        raise ProcessGraphError(f"{where}: a script file is needed, not a folder", path=where)
    return value


def _check_version(node) -> None:
    version = node.args.get("version") or "latest"
    here = platform.python_version()
    if version != "latest" and not (here == version or here.startswith(version + ".")):
        where = f"{node.path}.args.version"
        raise ProcessGraphError(f"{where}: Python {version!r} is not available; this "
                                f"server runs Python {here} ('latest')", path=where)


def load_script(ctx, node) -> Script:
    """The node's script, read from the calling user's files."""
    value = _check_script(node)
    user = _user(ctx)
    runner = _runner(ctx)
    runner.check_allowed(user, value)
    assert user is not None
    owner, rel = parse_graph_path(value)
    if owner == "me":  # the documentation's /users/me/files/...: the caller's own files
        value = f"/users/{user}/files/{rel}"
    where = f"{node.path}.args.script"
    try:
        path = resolve_graph_path(value, _files_root(ctx, runner), user)
    except (FileNotFound, InvalidPath) as exc:
        raise UdfError(f"UDF {node.args['script']}: {exc.message}", path=where) from None
    if not path.is_file():
        raise UdfError(f"UDF {node.args['script']}: is a folder, not a script", path=where)
    return _DIGESTS.load(path, node.args["script"])


def _token(ctx, node):
    return (_user(ctx), load_script(ctx, node).digest)


def _meta_for(udf_type):
    def meta(ctx, node):
        _check_script(node)
        _check_version(node)
        child = ctx.meta(node.args[IMAGERY])
        if udf_type == "reduce_time":
            return child.but(reduced=True, kind="udf")
        if udf_type == "aggregate_time":  # the script's index gives the dates
            return child.but(kind="udf", scripted_times=True)
        return child.but(kind="udf")

    return meta


def _in_range(t: datetime, rng) -> bool:
    return rng is None or rng[0] <= t.astimezone(UTC) <= rng[1]


def _evaluate_for(udf_type):
    def evaluate(ctx, node, query: Query):
        script = load_script(ctx, node)
        runner = _runner(ctx)
        imagery = node.args[IMAGERY]
        if udf_type == "aggregate_time":  # the script decides the dates: read them all
            cube = ctx.eval(imagery, Query(query.view, None, query.bands, query.resampling))
        else:
            cube = ctx.eval(imagery, query)
        out = runner.apply(_user(ctx), script, udf_type, cube)
        if udf_type == "aggregate_time" and query.time is not None and out.times is not None:
            keep = [i for i, t in enumerate(out.times) if _in_range(t, query.time)]
            out = out.with_data(out.data[keep], times=tuple(out.times[i] for i in keep))
        return out

    return evaluate


def _translate(ctx, node, data):
    """The executable process of the same id, on the translated input."""
    args = {k: v for k, v in node.args.items() if k != IMAGERY}
    return v1_node(node.process_id, node.path, REGISTRY, **{IMAGERY: data}, **args)


def _register(udf_type: str) -> None:
    summary, contract = CONTRACTS[udf_type]
    process_id = f"/udf/{LANGUAGE}/{udf_type}"
    translation(
        process_id,
        summary,
        f"{summary} {contract} The script runs in a sandbox: no network, no files but "
        "Python's libraries, limited CPU time, memory and output (GET /udf_runtimes).",
        [
            Arg(IMAGERY, "imagery", "array of input collections with one element"),
            Arg("script", "path", _SCRIPT_DOC),
            Arg("version", "string", "Python version to use, defaults to the latest "
                "available version.", required=False, default="latest"),
        ],
        meta=_meta_for(udf_type),
        udf_type=udf_type,
        language=LANGUAGE,
    )(_translate)
    process(process_id, [Param(IMAGERY, "cube"), Param("script"),
                         Param("version", required=False, default="latest")],
            meta=_meta_for(udf_type), cache_token=_token, public=False)(
        _evaluate_for(udf_type))


for _type in CONTRACTS:
    _register(_type)

UDF_TYPES = tuple(CONTRACTS)

__all__ = ["CONTRACTS", "LANGUAGE", "UDF_TYPES", "load_script"]
