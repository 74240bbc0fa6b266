"""Hosts on one machine: a Linux bridge and one network namespace per host, each with its own
address, its own ``/etc/hosts`` and its own disk.

Every host sees its own folder at the paths of ``deploy/tileserver.env`` (``/var/lib/tileserver``,
``/etc/tileserver``): each process starts in a private mount namespace where the host's disk
(a folder under the test's temporary directory) is bound onto those paths and the folder
holding every host's disk is hidden under an empty tmpfs. So no host can read or write
another's files; only the catalog and the source tree (read by path) are common, as an
installed package and a catalog mount would be.

Needs root and iproute2 (``tests/support/requirements.py``: part ``netns``). Everything made
here is undone by :meth:`Network.close`, which kills every process of every namespace (also
those forked by the ones started here: PostgreSQL, gunicorn and Dask children), but for the
two empty folders :data:`HOST_PATHS` (mount points, perhaps in use by another run).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

#: The paths a host sees as its own (bound to its disk), as deploy/tileserver.env names them.
HOST_PATHS = {"home": Path("/var/lib/tileserver"), "etc": Path("/etc/tileserver")}

#: Mount the host's disk at HOST_PATHS, hide every host's disk, then run the command.
_WRAP = r"""set -e
mount --make-rprivate /
mount --bind "$TS_DISK/home" /var/lib/tileserver
mount --bind "$TS_DISK/etc" /etc/tileserver
mount -t tmpfs -o size=1m,mode=0755 tileserver-hidden "$TS_DISKS"
unset TS_DISK TS_DISKS
exec "$@"
"""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=60)
    if check and out.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


def _free_subnet() -> ipaddress.IPv4Network:
    routes = _ip("-4", "route", "show", "table", "all").stdout
    used = [ipaddress.ip_network(w, strict=False) for w in routes.split()
            if "/" in w and w[0].isdigit()]
    rng = random.Random()
    for _ in range(100):
        net = ipaddress.ip_network(f"10.{rng.randint(160, 250)}.{rng.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free 10.x.y.0/24 subnet")


@dataclass
class Host:
    """One namespace: its name, address, disk and the processes started in it."""

    network: Network
    name: str
    ns: str
    ip: str
    disk: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def home(self) -> Path:
        """The host's ``/var/lib/tileserver`` as the test (outside) sees it."""
        return self.disk / "home"

    @property
    def etc(self) -> Path:
        """The host's ``/etc/tileserver`` as the test sees it."""
        return self.disk / "etc"

    def command(self, argv: list[str], cpus: str | None = None) -> list[str]:
        """``argv`` as run in this host (namespace, private mounts, optionally pinned)."""
        pin = ["taskset", "-c", cpus] if cpus else []
        return ["ip", "netns", "exec", self.ns, *pin, "unshare", "--mount",
                "--propagation", "private", "sh", "-c", _WRAP, "sh", *argv]

    def start(self, argv: list[str], env: dict[str, str], log: str,
              cpus: str | None = None) -> subprocess.Popen:
        """Start ``argv`` in this host, its output appended to ``<disk>/<log>.log``."""
        env = {**env, "TS_DISK": str(self.disk), "TS_DISKS": str(self.network.disks)}
        with open(self.network.logs / f"{self.name}-{log}.log", "ab") as out:
            proc = subprocess.Popen(self.command(argv, cpus), env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def run(self, argv: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
        """Run ``argv`` in this host to the end."""
        env = {**env, "TS_DISK": str(self.disk), "TS_DISKS": str(self.network.disks)}
        return subprocess.run(self.command(argv), env=env, capture_output=True, text=True,
                              **kwargs)

    def pids(self) -> list[int]:
        """Every process in the namespace (forked children too)."""
        out = _ip("netns", "pids", self.ns, check=False).stdout
        return [int(p) for p in out.split()]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to every process of the host (SIGKILL: the host is gone)."""
        for _ in range(20):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if sig != signal.SIGKILL:
                return
            time.sleep(0.1)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.procs.clear()

    def url(self, port: int, path: str = "") -> str:
        """``http://<address>:<port><path>``."""
        return f"http://{self.ip}:{port}{path}"


class Network:
    """A bridge with an address for the test (the machine outside) and named hosts on it."""

    def __init__(self, root: Path, names: list[str]):
        self.root = root
        self.disks = root / "disks"
        self.logs = root / "logs"
        self.disks.mkdir(parents=True)
        self.logs.mkdir()
        tag = f"{os.getpid() % 10000:04d}{random.randint(0, 35 ** 2):03x}"
        self.bridge = f"tsbr{tag}"
        self.subnet = _free_subnet()
        addresses = list(self.subnet.hosts())
        self.gateway = str(addresses[0])
        self.hosts: dict[str, Host] = {}
        self._netns_dirs: list[Path] = []
        try:
            for path in HOST_PATHS.values():  # empty mount points, left in place (another
                path.mkdir(parents=True, exist_ok=True)  # run may be using them)
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, name in enumerate(names, start=1):
                self._add(name, f"ts{tag}-{name}", str(addresses[i]), f"tsv{tag}{i}")
            hosts = "127.0.0.1 localhost\n" + "".join(
                f"{h.ip} {h.name}\n" for h in self.hosts.values())
            for host in self.hosts.values():
                folder = Path("/etc/netns") / host.ns
                folder.mkdir(parents=True, exist_ok=True)
                self._netns_dirs.append(folder)
                (folder / "hosts").write_text(hosts)
        except BaseException:
            self.close()
            raise

    def _add(self, name: str, ns: str, ip: str, veth: str) -> None:
        _ip("netns", "add", ns)
        disk = self.disks / name
        for sub in ("home", "etc"):
            (disk / sub).mkdir(parents=True)
        self.hosts[name] = Host(self, name, ns, ip, disk)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")
        _ip("-n", ns, "addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def close(self) -> None:
        """Kill every process of every host, delete the namespaces, links and files."""
        for host in reversed(list(self.hosts.values())):  # the clients before the services
            with contextlib.suppress(Exception):
                host.kill()
        for host in self.hosts.values():
            _ip("netns", "delete", host.ns, check=False)
        _ip("link", "delete", self.bridge, check=False)
        for folder in self._netns_dirs:
            shutil.rmtree(folder, ignore_errors=True)


def wait_until(check, what: str, timeout: float = 60.0, interval: float = 0.2,
               alive: list[subprocess.Popen] | None = None):
    """Call ``check()`` until it returns something true (exceptions count as false); fails
    after ``timeout`` or when one of ``alive`` exited."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - not ready yet
            last = exc
        for proc in alive or ():
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: the process exited ({proc.returncode})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s (last error: {last!r})")
        time.sleep(interval)
