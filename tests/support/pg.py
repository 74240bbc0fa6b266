"""A real PostgreSQL (+ PostGIS) cluster for the tests: initdb in a temporary folder, run as
the ``postgres`` system user when the tests run as root (PostgreSQL refuses root), on a
free loopback port with trust authentication; pgSTAC loaded by ``pypgstac migrate`` and
served by ``stac-fastapi-pgstac`` under uvicorn.

``.ci/run`` installs the Debian packages (postgresql, postgresql-15-postgis-3). Without
them the tests that need PostgreSQL are skipped, except under CI (``CI`` set), where a
missing server is an error.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bindir() -> Path | None:
    """The folder of ``initdb``/``pg_ctl`` (Debian keeps them out of PATH)."""
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True)
        cand = Path(out.stdout.strip())
        if (cand / "initdb").exists():
            return cand
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(cand) / "initdb").exists():
            return Path(cand)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def has_postgis(bindir: Path) -> bool:
    out = subprocess.run([str(bindir / "pg_config"), "--sharedir"], capture_output=True,
                         text=True) if (bindir / "pg_config").exists() else None
    share = Path(out.stdout.strip()) if out and out.returncode == 0 else None
    if share is None:
        version = bindir.parent.name
        share = Path(f"/usr/share/postgresql/{version}")
    return (share / "extension" / "postgis.control").exists()


def require_postgres() -> Path:
    """The bin folder, or skip (fail under CI) with the reason."""
    bindir = pg_bindir()
    reason = None
    if bindir is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql)"
    elif not has_postgis(bindir):
        reason = "PostGIS is not installed (apt-get install postgresql-15-postgis-3)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: .ci/run should have installed it")
        pytest.skip(reason)
    return bindir


class PostgresCluster:
    """A throw-away cluster: ``dsn(db)`` gives a libpq URL of one of its databases."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="tileserver-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=self.dir)
        if out.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
        return out

    def start(self) -> PostgresCluster:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.dir} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
                "-c shared_buffers=64MB")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l",
                  str(self.dir / "server.log"), "-w", "-t", "60", "start")
        return self

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_db(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except RuntimeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class StacApi:
    """``stac-fastapi-pgstac`` under uvicorn on a loopback port, over database ``dsn``."""

    def __init__(self, cluster: PostgresCluster, db: str, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PGUSER": "postgres", "PGPASSWORD": "unused", "PGHOST": "127.0.0.1",
               "PGPORT": str(cluster.port), "PGDATABASE": db, "DB_MIN_CONN_SIZE": "1",
               "DB_MAX_CONN_SIZE": "4"}
        self.log = open(workdir / "stac-api.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app", "--factory",
             "--host",
             "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            env=env, cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"stac-fastapi-pgstac exited: see {workdir}/stac-api.log")
            try:
                if requests.get(self.url + "/", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("stac-fastapi-pgstac did not start")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def migrate(dsn: str) -> str:
    """Install pgSTAC in the database (``pypgstac migrate``); returns its version."""
    out = subprocess.run([sys.executable, "-m", "pypgstac.pypgstac", "migrate", "--dsn", dsn],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"pypgstac migrate failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout.strip()


def load(dsn: str, collections: list[dict], items) -> None:
    """Insert collections and items (an iterable of dicts) with pypgstac's loader."""
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    with PgstacDB(dsn=dsn) as db:
        loader = Loader(db=db)
        loader.load_collections(iter(collections), Methods.upsert)
        loader.load_items(iter(items), Methods.upsert)
