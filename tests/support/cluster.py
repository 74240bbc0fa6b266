"""A tileserver cluster on one machine (:mod:`tests.support.netns`): PostgreSQL, Redis, an S3
server (moto's, the stand-in for a real store), a Dask scheduler, worker hosts and servers,
each host in its own namespace with its own disk.

The tileserver and Dask processes run the commands of ``deploy/Procfile`` with the settings
of ``deploy/tileserver.env`` (read by :mod:`tests.support.deploy`), whose host names (``db``,
``redis``, ``s3``, ``scheduler``) every host resolves through its own ``/etc/hosts``. The only
settings changed are :data:`TEST_SETTINGS` and the catalog (the test's synthetic one) --
listed where they are made so that what runs is what the deploy files say.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import requests

from tests.support.deploy import PROGRAMS, REPO, argv, read_env
from tests.support.netns import Network, wait_until
from tests.support.pg import pg_bindir

#: Settings the test changes from deploy/tileserver.env, and why: one web worker per server
#: (the machine has few cores), batch timings of seconds instead of tens of seconds (a
#: killed server's jobs are taken over quickly), small blocks (a small job has many), and
#: short timeouts towards a store that does not answer.
TEST_SETTINGS = {
    "TILESERVER_WORKERS": "1",
    "TILESERVER_BATCH_BLOCK_SIZE": "128",
    "TILESERVER_BATCH_INFLIGHT": "2",
    "TILESERVER_BATCH_POLL_SECONDS": "0.2",
    "TILESERVER_BATCH_HEARTBEAT_SECONDS": "0.5",
    "TILESERVER_BATCH_STALE_SECONDS": "4",
    "TILESERVER_BATCH_WATCHDOG_SECONDS": "0.5",
    "TILESERVER_REMOTE_TIMEOUT": "5",
    "TILESERVER_REMOTE_CONNECT_TIMEOUT": "2",
    "TILESERVER_REMOTE_RETRIES": "1",
    "TILESERVER_STORAGE_TIMEOUT": "3",
    "TILESERVER_STORAGE_RETRIES": "1",
}

#: The users of the cluster: ``tileserver users add`` on the first server, the file copied
#: to the others (deploy/README.md).
USER, PASSWORD = "alice", "cluster-pass-1"

PG_PORT, REDIS_PORT, S3_PORT, SCHEDULER_PORT, SERVER_PORT = 5432, 6379, 9000, 8786, 8080


def spread_cores(n: int) -> list[str]:
    """One core for each of ``n`` worker hosts, round robin over this process's cores."""
    cores = sorted(os.sched_getaffinity(0))
    return [str(cores[i % len(cores)]) for i in range(n)]


def _clean_environ() -> dict[str, str]:
    """This process's environment without settings of its own (tileserver, AWS, Dask)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("TILESERVER_", "AWS_", "DASK_", "GDAL_", "CPL_"))}


class Cluster:
    """Start with :meth:`start`; always :meth:`close` (kills every host's processes)."""

    def __init__(self, root: Path, catalog: str, workers: int = 2, servers: int = 2,
                 worker_cpus: list[str] | None = None, settings: dict | None = None):
        """``settings``: the variables changed from deploy/tileserver.env (default
        :data:`TEST_SETTINGS`)."""
        self.workers = [f"worker{i + 1}" for i in range(workers)]
        self.servers = [f"server-{'abcdefgh'[i]}" for i in range(servers)]
        self.worker_cpus = worker_cpus or spread_cores(workers)
        self.net = Network(root, ["db", "redis", "s3", "scheduler", *self.workers,
                                  *self.servers])
        self.deploy_env = read_env()
        self.settings = TEST_SETTINGS if settings is None else settings
        self.env = {**_clean_environ(), **self.deploy_env, **self.settings,
                    "TILESERVER_CATALOG": catalog,
                    "PYTHONPATH": str(REPO)}
        self.secret = secrets.token_hex(32)

    def __getitem__(self, name: str):
        return self.net[name]

    @property
    def logs(self) -> Path:
        """The folder of every process's output (``<host>-<what>.log``)."""
        return self.net.logs

    def log(self, host: str, what: str) -> str:
        """The output of ``what`` on ``host`` so far."""
        path = self.logs / f"{host}-{what}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def server_url(self, name: str, path: str = "") -> str:
        """A server's base URL (the test reaches every host from outside, over the bridge)."""
        return self.net[name].url(SERVER_PORT, path)

    @property
    def scheduler_address(self) -> str:
        """The scheduler's address as the test reaches it."""
        return f"tcp://{self.net['scheduler'].ip}:{SCHEDULER_PORT}"

    @property
    def s3_url(self) -> str:
        """The S3 server's endpoint as the test reaches it."""
        return self.net["s3"].url(S3_PORT)

    # -- starting ---------------------------------------------------------------------------

    def start(self) -> Cluster:
        """Every host, in the order an operator starts them; returns once all answer."""
        db, redis, s3 = self._start_db(), self._start_redis(), self._start_s3()
        scheduler = self.start_scheduler()
        self._wait_db(db)
        wait_until(lambda: self._redis_ping(), "redis answers", 60, alive=[redis])
        wait_until(lambda: requests.get(self.s3_url, timeout=2).ok, "the S3 server answers",
                   60, alive=[s3])
        self._create_bucket()
        self._add_user()
        wait_until(lambda: self._scheduler_up(), "the Dask scheduler answers", 60,
                   alive=[scheduler])
        for name in self.servers:
            self.start_server(name)
        for name in self.workers:
            self.start_worker(name)
        for name in self.servers:
            self.wait_server(name)
        self.wait_workers(len(self.workers))
        return self

    def _start_db(self) -> subprocess.Popen:
        host = self.net["db"]
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed")
        pw = pwd.getpwnam("postgres")
        os.chown(host.home, pw.pw_uid, pw.pw_gid)
        data = "/var/lib/tileserver/pgdata"
        out = host.run(["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", data,
                        "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
                       self.env, timeout=120)
        if out.returncode:
            raise RuntimeError(f"initdb failed: {out.stdout}\n{out.stderr}")
        with open(host.home / "pgdata" / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.net.subnet} trust\n")
        return host.start(["runuser", "-u", "postgres", "--", str(bindir / "postgres"), "-D",
                           data, "-c", "listen_addresses=*", "-c", f"port={PG_PORT}", "-c",
                           "unix_socket_directories=/var/lib/tileserver", "-c", "fsync=off",
                           "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                           "-c", "max_connections=200"], self.env, "postgres")

    def _wait_db(self, proc: subprocess.Popen) -> None:
        import psycopg  # noqa: PLC0415

        url = f"postgresql://postgres@{self.net['db'].ip}:{PG_PORT}/postgres"
        wait_until(lambda: psycopg.connect(url, connect_timeout=2).close() or True,
                   "PostgreSQL answers", 60, alive=[proc])
        # the role and database of the environment file's TILESERVER_DATABASE_URL
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE ROLE tileserver LOGIN")
            conn.execute("CREATE DATABASE tileserver OWNER tileserver")

    def _start_redis(self) -> subprocess.Popen:
        return self.net["redis"].start(
            ["redis-server", "--bind", "0.0.0.0", "--port", str(REDIS_PORT), "--save", "",
             "--appendonly", "no", "--protected-mode", "no"], self.env, "redis")

    def _redis_ping(self) -> bool:
        with socket.create_connection((self.net["redis"].ip, REDIS_PORT), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def _start_s3(self) -> subprocess.Popen:
        return self.net["s3"].start([sys.executable, "-m", "moto.server", "-H", "0.0.0.0",
                                     "-p", str(S3_PORT)], self.env, "moto")

    def _create_bucket(self) -> None:
        """The bucket of TILESERVER_STORAGE_URL (an operator makes it once)."""
        bucket = self.deploy_env["TILESERVER_STORAGE_URL"].removeprefix("s3://").split("/")[0]
        resp = requests.put(f"{self.s3_url}/{bucket}", timeout=10)
        assert resp.ok, resp.text

    def _add_user(self) -> None:
        """``tileserver users add`` on the first server; the users file and the signing key
        copied to every server (deploy/README.md)."""
        first = self.net[self.servers[0]]
        out = first.run([*PROGRAMS["tileserver"], "users", "add", USER,
                         "--password-stdin"], self.env, input=PASSWORD + "\n", timeout=120)
        if out.returncode:
            raise RuntimeError(f"tileserver users add failed: {out.stdout}\n{out.stderr}")
        for name in self.servers:
            host = self.net[name]
            if host is not first:
                shutil.copy(first.etc / "users.yaml", host.etc / "users.yaml")
            (host.home / "secret.key").write_text(self.secret + "\n")
            (host.home / "secret.key").chmod(0o600)

    def _scheduler_up(self) -> bool:
        with socket.create_connection((self.net["scheduler"].ip, SCHEDULER_PORT), timeout=2):
            return True

    def start_scheduler(self) -> subprocess.Popen:
        """The Procfile's ``scheduler``."""
        return self.net["scheduler"].start(argv("scheduler", self.env), self.env, "scheduler")

    def start_server(self, name: str) -> subprocess.Popen:
        """The Procfile's ``server`` on host ``name``."""
        return self.net[name].start(argv("server", self.env), self.env, "server")

    def start_worker(self, name: str) -> subprocess.Popen:
        """The Procfile's ``worker`` on host ``name`` (pinned to its cores, if given)."""
        cpus = self.worker_cpus[self.workers.index(name)]
        return self.net[name].start(argv("worker", self.env), self.env, "worker", cpus=cpus)

    def wait_server(self, name: str, timeout: float = 120) -> None:
        """Until the server answers ``GET /``."""
        wait_until(lambda: requests.get(self.server_url(name, "/"), timeout=5).ok,
                   f"server {name} answers", timeout, interval=0.3,
                   alive=self.net[name].procs[-1:])

    def wait_workers(self, n: int, timeout: float = 120) -> None:
        """Until the scheduler has ``n`` workers."""
        from distributed import Client  # noqa: PLC0415

        with Client(self.scheduler_address, timeout=30) as client:
            client.wait_for_workers(n, timeout=timeout)

    def store_link(self, up: bool) -> None:
        """Take the S3 host's link down (the store stops answering: no reply, not even a
        refusal) or up again (with its objects)."""
        host = self.net["s3"]
        subprocess.run(["ip", "-n", host.ns, "link", "set", "eth0", "up" if up else "down"],
                       check=True, timeout=30)
        if up:
            wait_until(lambda: requests.get(self.s3_url, timeout=2).ok,
                       "the S3 server answers again", 30)

    def close(self) -> None:
        """Kill every process of every host and remove the namespaces (idempotent)."""
        self.net.close()

