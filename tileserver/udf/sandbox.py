"""A pool of pre-started, sandboxed UDF worker processes (server side, no HTTP).

Each worker is ``python -I -B worker.py`` started through **bubblewrap** (``bwrap``) in new
mount, pid, network, IPC and UTS namespaces, seeing read-only only what a UDF needs: the
Python installation, the virtual environment's libraries, ``/usr`` (shared libraries) and
the folder of ``worker.py``/``wire.py``; no ``/etc``, ``/home``, ``/root``, ``/tmp``, no
``$TILESERVER_HOME`` (job database, users file, secret key, user files, results), no
catalog credentials, no writable file system, and no network (an empty network namespace
has only a down loopback). When the server runs as root, the worker then drops to an
unprivileged user (``udf_user``, default ``nobody``) with no capabilities and
``no_new_privs``; otherwise it keeps the server's uid inside a user namespace. The
environment is empty but for a few fixed variables. Every request runs in a child forked
ahead of time by the worker (a zygote, see ``worker.py``) with rlimits; the server writes
the request straight into the child's pipe and reads its answer from it (the worker hands
the pipes over through ``SCM_RIGHTS`` and never sees a request or an answer, so no child
can inherit another user's data). The server bounds the answer's size and time and kills
the worker at ``udf_timeout`` + a grace period if it stops answering. A worker that dies,
answers garbage, overruns, or whose child left processes behind is killed and replaced in
the background.

``udf_isolation: process`` (for machines without bubblewrap or user namespaces) keeps the
separate process, the unprivileged uid (as root), rlimits and the scrubbed environment but
has **no** file system or network isolation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import queue
import selectors
import shutil
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tileserver.errors import UdfUnavailable
from tileserver.limits import slot_released
from tileserver.settings import load_settings
from tileserver.udf import wire

log = logging.getLogger(__name__)

WORKER_DIR = Path(__file__).resolve().parent
#: Where the worker's folder appears inside the sandbox.
SANDBOX_DIR = "/udf"
#: Seconds a worker may take to start (imports numpy, pandas, xarray, openeo).
START_TIMEOUT = 60.0
#: Seconds the server waits beyond ``udf_timeout`` before killing a silent worker.
GRACE = 5.0
#: Variables of the worker's environment (nothing else of the server's).
WORKER_ENV = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/nonexistent",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
}


@dataclass(frozen=True)
class UdfConfig:
    """The UDF settings (see ``config/default.yaml``)."""

    workers: int
    timeout: float
    memory: int
    max_output: int
    isolation: str
    user: str
    user_workers: int  # 0: workers - 1 (at least 1)
    nproc: int
    queue_timeout: float
    #: Paths the sandbox must never show (home, database, users file…), checked at start.
    forbidden: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings=None, **changes) -> UdfConfig:
        """From :class:`tileserver.settings.Settings` (by default :func:`load_settings`),
        with ``changes`` (fields of this config)."""
        if settings is None:
            settings = load_settings()
        forbidden = [str(settings.home.resolve())]
        if settings.users_file:
            forbidden.append(str(Path(settings.users_file).resolve()))
        url = settings.db_url
        if url.startswith("sqlite:///"):
            forbidden.append(str(Path(url[len("sqlite:///"):]).resolve()))
        config = cls(
            workers=max(1, int(settings.udf_workers)),
            timeout=float(settings.udf_timeout),
            memory=parse_bytes(settings.udf_memory),
            max_output=parse_bytes(settings.udf_max_output),
            isolation=str(settings.udf_isolation),
            user=str(settings.udf_user),
            user_workers=int(settings.udf_user_workers),
            nproc=int(settings.udf_nproc),
            queue_timeout=float(settings.evaluation_queue_timeout),
            forbidden=tuple(forbidden),
        )
        return replace(config, **changes)

    @property
    def per_user(self) -> int:
        """Workers one user may occupy at once."""
        if self.user_workers > 0:
            return min(self.user_workers, self.workers)
        return max(1, self.workers - 1)


def parse_bytes(value) -> int:
    """``1073741824``, ``"1GiB"``, ``"512MiB"``, ``"2G"`` -> bytes."""
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip().replace("_", "")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    low = text.lower().removesuffix("ib").removesuffix("b")
    if low and low[-1] in units:
        return int(float(low[:-1]) * units[low[-1]])
    return int(float(low))


# --- the command ------------------------------------------------------------------------


def _python_paths() -> list[str]:
    """Folders the interpreter and its libraries live in (no project checkout)."""
    paths = {sys.base_prefix, sys.prefix, sysconfig.get_paths()["stdlib"],
             sysconfig.get_paths()["platstdlib"], sysconfig.get_paths()["purelib"],
             sysconfig.get_paths()["platlib"]}
    real = {os.path.realpath(sys.executable)}
    out = sorted({os.path.realpath(p) for p in paths if p and os.path.isdir(p)} | {
        os.path.dirname(p) for p in real})
    # keep only the outermost folders
    keep: list[str] = []
    for p in out:
        if not any(p == k or p.startswith(k + "/") for k in keep):
            keep.append(p)
    return keep


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def bwrap_command(config: UdfConfig) -> list[str]:
    """The bubblewrap command line of one worker."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise UdfUnavailable("UDFs need bubblewrap (Debian package 'bubblewrap') for their "
                             "sandbox; install it or set udf_isolation: process")
    binds = _python_paths()
    for path in binds:
        for secret in config.forbidden:
            if _inside(secret, path) or _inside(path, secret):
                raise UdfUnavailable(
                    f"the UDF sandbox would show {path}, which contains or is inside "
                    f"{secret} (server state); install Python outside $TILESERVER_HOME")
    cmd = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try", "--die-with-parent", "--new-session",
           "--hostname", "udf", "--clearenv"]
    root = os.geteuid() == 0
    if not root:
        cmd += ["--unshare-user"]
    for key, value in WORKER_ENV.items():
        cmd += ["--setenv", key, value]
    cmd += ["--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "lib32", "sbin"):
        target = Path("/") / link
        if target.is_symlink():
            cmd += ["--symlink", os.readlink(target), f"/{link}"]
        elif target.is_dir():
            cmd += ["--ro-bind", str(target), f"/{link}"]
    made: set[str] = set()
    for path in binds:
        if _inside(path, "/usr"):
            continue
        for parent in reversed(Path(path).parents[:-1]):  # readable folders down to it
            if str(parent) not in made:
                made.add(str(parent))
                cmd += ["--perms", "0755", "--dir", str(parent)]
        cmd += ["--ro-bind", path, path]
    if Path("/etc/ld.so.cache").exists():
        cmd += ["--perms", "0755", "--dir", "/etc",
                "--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    cmd += ["--ro-bind", str(WORKER_DIR), SANDBOX_DIR, "--proc", "/proc", "--dev", "/dev",
            "--chdir", "/", "--remount-ro", "/"]
    cmd += ["--"]
    if root:
        uid, gid = _unprivileged(config.user)
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise UdfUnavailable("running as root, UDFs need setpriv (util-linux) to drop "
                                 "to an unprivileged user")
        cmd += [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    cmd += [os.path.realpath(sys.executable) if not _venv() else sys.executable,
            "-I", "-B", f"{SANDBOX_DIR}/worker.py", "--pidns"]
    return cmd


def _venv() -> bool:
    return sys.prefix != sys.base_prefix


def _unprivileged(user: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        uid, gid = entry.pw_uid, entry.pw_gid
    except (KeyError, ValueError):
        if not user.isdigit():
            raise UdfUnavailable(f"udf_user {user!r} does not exist") from None
        uid = gid = int(user)
    if uid == 0:
        raise UdfUnavailable("udf_user must not be root")
    return uid, gid


def process_command(config: UdfConfig) -> tuple[list[str], dict]:
    """``udf_isolation: process``: a plain separate process (uid drop when root)."""
    extra: dict = {"cwd": "/"}
    if os.geteuid() == 0:
        uid, gid = _unprivileged(config.user)
        extra.update(user=uid, group=gid, extra_groups=[])
    return [sys.executable, "-I", "-B", str(WORKER_DIR / "worker.py")], extra


# --- one worker ---------------------------------------------------------------------------


class WorkerDied(Exception):
    """The worker process broke the protocol, died or was killed."""


class WorkerRetired(WorkerDied):
    """The worker exited (or is retiring) before a request went to its child: the request
    never ran and goes to another worker."""


#: The exit status of a retired worker (``worker.RETIRED``).
RETIRED = 75
#: Largest control message of a worker (``worker.CONTROL_SIZE``).
CONTROL_SIZE = 1 << 16
#: Bytes of the script's own output (print) kept for error messages.
LOG_BYTES = 4096


class Worker:
    """One running sandbox process: a zygote that forks spare children.

    The server talks to the worker over a Unix ``SOCK_SEQPACKET`` socket (the worker's
    stdin) about children only: the worker hands over a spare child's pipes (request,
    result, output) as file descriptors, the server writes the request into the child and
    reads its answer directly, then says "done"; the worker kills the child, clears what it
    left and forks the next spare. No request or answer byte passes through the worker, so
    no child (another user's script) can find one in the memory it inherits.
    """

    def __init__(self, config: UdfConfig, handshake: bool = True):
        self.config = config
        extra: dict = {}
        if config.isolation == "bwrap":
            cmd = bwrap_command(config)
        elif config.isolation == "process":
            cmd, extra = process_command(config)
        else:
            raise UdfUnavailable(f"udf_isolation must be 'bwrap' or 'process', got "
                                 f"{config.isolation!r}")
        self.ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(  # noqa: S603
                cmd, stdin=theirs.fileno(), stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, env=dict(WORKER_ENV), start_new_session=True,
                close_fds=True, **extra)
        except BaseException:
            self.ctl.close()
            raise
        finally:
            theirs.close()
        self._killed = False
        self.retiring = False
        self.stderr: list[str] = []
        self.pid = self.proc.pid
        self.uses = 0
        self._spare: tuple[int, list[int]] | None = None
        self._spare_lock = threading.Lock()  # kill() may run in the timer's thread
        self._ended: dict | None = None
        threading.Thread(target=self._drain, daemon=True, name="udf-stderr").start()
        if handshake:
            self.handshake()

    def handshake(self) -> None:
        """Wait for the worker's hello (its imports done); :class:`WorkerDied` if none."""
        timer = threading.Timer(START_TIMEOUT, self.kill)
        timer.start()
        try:
            self.hello = self._receive()
            if not self.hello.get("ready"):
                raise wire.WireError(f"unexpected hello {self.hello!r:.200}")
        except (wire.WireError, OSError, EOFError, ValueError) as exc:
            self.kill()
            raise WorkerDied(f"the UDF worker did not start ({exc!r}): "
                             f"{' | '.join(self.stderr[-5:])}") from None
        finally:
            timer.cancel()

    def _drain(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                self.stderr.append(line[:500])
                del self.stderr[:-20]
                log.debug("udf worker %s: %s", self.proc.pid, line)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                stream.close()

    # -- the control socket ---------------------------------------------------------------

    def _receive(self) -> dict:
        """The worker's next control message (a spare's pipes are kept in ``_spare``, an
        ended child's report in ``_ended``); EOFError when the worker is gone."""
        data, fds, _, _ = socket.recv_fds(self.ctl, CONTROL_SIZE, 3)
        for fd in fds:
            os.set_inheritable(fd, False)
        if not data:
            raise EOFError("the worker closed its control socket")
        msg = json.loads(data)
        if not isinstance(msg, dict):
            raise wire.WireError("bad control message")
        if "spare" in msg:
            if len(fds) != 3:
                for fd in fds:
                    os.close(fd)
                raise wire.WireError("a spare without its three pipes")
            with self._spare_lock:
                if self._killed:
                    for fd in fds:
                        os.close(fd)
                    raise EOFError("the worker was killed")
                self._spare = (int(msg["spare"]), list(fds))
        else:
            for fd in fds:
                os.close(fd)
            if "ended" in msg:
                self._ended = msg
                self.retiring = self.retiring or bool(msg.get("retiring"))
        return msg

    def _send(self, msg: dict) -> None:
        self.ctl.send(json.dumps(msg).encode())

    def _take_spare(self) -> tuple[int, list[int]]:
        while self._spare is None and not self.retiring:
            self._receive()
        if self.retiring:
            raise EOFError("the worker is retiring")
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is None:
            raise EOFError("the worker was killed")
        return spare

    @property
    def alive(self) -> bool:
        """Whether the process still runs."""
        return not self._killed and not self.retiring and self.proc.poll() is None

    def kill(self) -> None:
        """Stop the whole sandbox (its pid namespace dies with it)."""
        self._killed = True
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, 9)
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        with contextlib.suppress(Exception):
            self.ctl.close()
        with self._spare_lock:
            spare, self._spare = self._spare, None
        for fd in spare[1] if spare else ():
            with contextlib.suppress(OSError):
                os.close(fd)

    def call(self, header: dict, arrays: list[np.ndarray], timeout: float
             ) -> tuple[dict, list[np.ndarray]]:
        """One request/answer through the worker's spare child; kills the worker when the
        call takes longer than ``timeout`` in all."""
        self.uses += 1
        timer = threading.Timer(timeout, self.kill)
        timer.start()
        try:
            try:
                pid, fds = self._take_spare()
            except (wire.WireError, OSError, EOFError, ValueError) as exc:
                killed = self._killed
                self.kill()
                if killed:
                    raise WorkerDied("timeout") from None
                raise WorkerRetired(f"retired ({exc})") from None
            try:
                return self._talk(header, arrays, fds)
            except (wire.WireError, OSError, EOFError, ValueError) as exc:
                killed = self._killed
                self.kill()
                if killed:
                    raise WorkerDied("timeout") from None
                time.sleep(0.05)  # let the stderr thread catch the last lines
                log.warning("UDF worker %s died: %s; stderr: %s", self.pid, exc,
                            " | ".join(self.stderr[-5:]))
                raise WorkerDied(str(exc)) from None
            finally:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        finally:
            timer.cancel()

    def _talk(self, req: dict, arrays: list[np.ndarray], fds: list[int]
              ) -> tuple[dict, list[np.ndarray]]:
        """Send the request to the child, read its answer (bounded in time and size)."""
        req_w, res_r, log_r = fds
        self._send({"op": "start"})
        try:
            for buf in wire.buffers(req, arrays):
                view = memoryview(buf).cast("B")
                while view:
                    view = view[os.write(req_w, view):]
        except OSError:
            pass  # the child died before reading: reported below
        os.close(req_w)
        fds[0] = -1
        deadline = time.monotonic() + float(req["timeout"])
        limit = int(req["max_output"]) + wire.MAX_HEADER
        result, text = bytearray(), bytearray()
        need: int | None = None  # the result's length with its prefix, once known
        sel = selectors.DefaultSelector()
        sel.register(res_r, selectors.EVENT_READ, "res")
        sel.register(log_r, selectors.EVENT_READ, "log")
        timed_out = too_big = complete = False
        try:
            while sel.get_map() and not (too_big or complete):
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
                        if need is None and len(result) >= wire.LEN_SIZE:
                            need = wire.LEN_SIZE + wire.unpack_length(result)
                            too_big = need > limit + wire.LEN_SIZE
                        complete = need is not None and len(result) >= need and not too_big
                    else:
                        text += chunk
                        del text[:-LOG_BYTES]
            if complete:  # what the script printed (flushed before its result)
                for key, _ in sel.select(timeout=0):
                    if key.data == "log":
                        text += os.read(key.fd, 1 << 20)
                        del text[:-LOG_BYTES]
        finally:
            sel.close()
        log_text = text.decode("utf-8", "replace")
        if complete:
            try:
                self._send({"op": "done", "complete": True})  # it reports on it later
            except OSError:
                pass  # the worker is gone: the answer is whole; the next call retires it
            try:
                header, out = wire.read_message(
                    wire.Reader(memoryview(result)[wire.LEN_SIZE:need]),
                    int(req["max_output"]))
            except wire.WireError as exc:
                return {"ok": False, "kind": "crash", "message": f"the script process sent "
                        f"a broken result ({exc})", "log": log_text}, []
            header["log"] = log_text
            return header, out
        # the child is killed now; wait for the worker's report (failures only)
        self._send({"op": "done", "complete": False, "result": bool(result)})
        self._ended = None
        while self._ended is None:
            self._receive()
        if timed_out:
            answer = {"ok": False, "kind": "timeout", "message": f"the script ran longer "
                      f"than the time limit of {req['timeout']} s"}
        elif too_big:
            answer = {"ok": False, "kind": "output", "message": "the result exceeded the "
                      f"output limit of {req['max_output']} bytes"}
        else:
            answer = dict(self._ended.get("status") or {
                "ok": False, "kind": "crash", "message": "the script process ended "
                "without a result"})
        answer["log"] = log_text
        return answer, []


# --- the pool -----------------------------------------------------------------------------


class UdfPool:
    """``workers`` pre-started workers; a user holds at most ``per_user`` of them at once."""

    def __init__(self, config: UdfConfig, handshake: bool = True):
        self.config = config
        self._lock = threading.Condition()
        self._idle: list[Worker] = []
        self._starting = 0
        self._users: dict[str, int] = {}
        self._closed = False
        self._created = time.monotonic()
        self.started = 0
        self.replaced = 0
        self.last_error: str | None = None
        self.hello: dict | None = None
        self._spawns: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._spawner, daemon=True, name="udf-spawner").start()
        for _ in range(config.workers):
            self._spawn()

    # -- life cycle --------------------------------------------------------------------

    def _spawn(self) -> None:
        with self._lock:
            self._starting += 1
        self._spawns.put(1)

    def _spawner(self) -> None:
        # one long-lived thread launches every worker: bubblewrap's --die-with-parent is
        # tied to the thread that started it, so a short-lived thread would kill it; the
        # handshakes (imports in the worker) run in parallel in short-lived threads
        while True:
            if self._spawns.get() is None:
                return
            try:
                worker = Worker(self.config, handshake=False)
            except (UdfUnavailable, OSError) as exc:
                self._started(None, getattr(exc, "message", None) or str(exc))
                continue
            threading.Thread(target=self._handshake, args=(worker,), daemon=True,
                             name="udf-hello").start()

    def _handshake(self, worker: Worker) -> None:
        try:
            worker.handshake()
        except WorkerDied as exc:
            self._started(None, str(exc))
            return
        self._started(worker, None)

    def _started(self, worker: Worker | None, error: str | None) -> None:
        if error is not None:
            log.error("UDF worker failed to start: %s", error)
            self.last_error = error
        with self._lock:
            self._starting -= 1
            if worker is not None:
                self.started += 1
                self.hello = worker.hello
                if self._closed:
                    worker.kill()
                else:
                    self._idle.append(worker)
            self._lock.notify_all()

    def close(self) -> None:
        """Stop every worker."""
        self._spawns.put(None)
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> dict:
        """The hello of a started worker (raises :class:`UdfUnavailable` when none starts)."""
        end = time.monotonic() + timeout
        with self._lock:
            while self.hello is None:
                if not self._starting and not self._idle:
                    raise UdfUnavailable(f"the UDF sandbox cannot start: {self.last_error}")
                left = end - time.monotonic()
                if left <= 0:
                    raise UdfUnavailable("the UDF sandbox did not start in time")
                self._lock.wait(left)
            return self.hello

    def _free_for(self, user: str) -> bool:
        return bool(self._idle) and self._users.get(user, 0) < self.config.per_user

    @contextlib.contextmanager
    def _checkout(self, user: str, wait: float) -> Iterator[Worker]:
        end = time.monotonic() + wait
        with self._lock:
            free = self._free_for(user)
        # waiting for a worker is not computing: give the evaluation slot back meanwhile
        waiting = contextlib.nullcontext() if free else slot_released()
        worker: Worker | None = None
        try:
            with waiting, self._lock:
                while True:
                    if self._closed:
                        raise UdfUnavailable("the UDF pool is closed")
                    if self._free_for(user):
                        # the longest idle first: its next child is most likely ready
                        worker = self._idle.pop(0)
                        if not worker.alive:  # exited while idle (retired): replace it
                            self._discard(worker)
                            worker = None
                            continue
                        self._users[user] = self._users.get(user, 0) + 1
                        break
                    if not self._idle and not self._starting and self.last_error \
                            and self.started == 0:
                        raise UdfUnavailable(
                            f"the UDF sandbox cannot start: {self.last_error}")
                    # the first workers may take long to start on a busy machine
                    limit = end if self.started else max(end, self._created + START_TIMEOUT)
                    left = limit - time.monotonic()
                    if left <= 0:
                        raise UdfUnavailable(
                            f"no UDF worker free within {wait:.0f} s (udf_workers="
                            f"{self.config.workers}, at most {self.config.per_user} per "
                            "user); retry later")
                    self._lock.wait(min(left, 1.0))
        except BaseException:
            if worker is not None:  # e.g. no evaluation slot back: return the worker
                with self._lock:
                    self._users[user] -= 1
                    if not self._users[user]:
                        del self._users[user]
                    self._idle.append(worker)
                    self._lock.notify_all()
            raise
        assert worker is not None
        healthy = True
        try:
            yield worker
        except WorkerDied:
            healthy = False
            raise
        finally:
            with self._lock:
                self._users[user] -= 1
                if not self._users[user]:
                    del self._users[user]
                if healthy and worker.alive and not self._closed:
                    self._idle.append(worker)
                    self._lock.notify_all()
                else:
                    healthy = False
            if not healthy:
                self._discard(worker)

    def _discard(self, worker: Worker) -> None:
        """Kill a worker and start another."""
        worker.kill()
        self.replaced += 1
        if not self._closed:
            self._spawn()

    def run(self, user: str, header: dict, arrays: list[np.ndarray],
            wait: float | None = None) -> tuple[dict, list[np.ndarray]]:
        """Send one request to a free worker; ``header`` gets the limits filled in.

        Returns the worker's answer ``(header, arrays)``; ``header["ok"]`` is False with
        ``kind`` (script, memory, output, timeout, crash) when the script failed. Raises
        :class:`WorkerDied` (turned into a timeout/crash answer here) never: a dead worker
        becomes ``{"ok": False, "kind": "timeout"|"crash"}`` and is replaced.
        """
        cfg = self.config
        header = dict(header, op="run", timeout=cfg.timeout, memory=cfg.memory,
                      max_output=cfg.max_output, nproc=cfg.nproc)
        for _ in range(3):
            try:
                return self._run_once(user, header, arrays, wait)
            except WorkerRetired:
                continue  # the request did not run: another worker takes it
        raise _Answer({"ok": False, "kind": "crash", "message": "the UDF workers kept "
                       "exiting; retry later"}, [])

    def _run_once(self, user: str, header: dict, arrays: list[np.ndarray],
                  wait: float | None) -> tuple[dict, list[np.ndarray]]:
        cfg = self.config
        with self._checkout(user, cfg.queue_timeout if wait is None else wait) as worker:
            try:
                answer, out = worker.call(header, arrays, cfg.timeout + GRACE)
            except WorkerRetired:
                raise
            except WorkerDied as exc:
                kind = "timeout" if str(exc) == "timeout" else "crash"
                answer = {"ok": False, "kind": kind, "message": (
                    f"the script ran longer than the time limit of {cfg.timeout:g} s"
                    if kind == "timeout" else f"the UDF worker died ({exc})")}
                out = []
                self._after_death(worker)
                raise _Answer(answer, out) from None
            if worker.retiring:
                log.warning("UDF worker %s: a script left processes behind; replaced",
                            worker.pid)
                worker.kill()
        return answer, out

    def _after_death(self, worker: Worker) -> None:
        worker.kill()

    def call(self, user: str, header: dict, arrays: list[np.ndarray],
             wait: float | None = None) -> tuple[dict, list[np.ndarray]]:
        """:meth:`run` with a dead worker turned into an error answer."""
        try:
            return self.run(user, header, arrays, wait)
        except _Answer as ans:
            return ans.answer, ans.arrays


class _Answer(WorkerDied):
    def __init__(self, answer: dict, arrays: list):
        super().__init__(answer.get("message", ""))
        self.answer, self.arrays = answer, arrays
