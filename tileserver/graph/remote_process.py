"""Remote process definitions (openEO 1.3 Remote Process Definition extension, 0.1.0).

A graph node may name a process by URL: ``{"process_id": "ndvi_scaled", "namespace":
"https://example.org/processes/ndvi_scaled.json", ...}``. The URL answers either one process
(as ``GET /process_graphs/{id}`` does; its ``id`` must be the node's ``process_id``) or a
list of processes (as ``GET /process_graphs``, the named process in it with its
``process_graph``). The definition is then called like a user-defined process
(:mod:`tileserver.graph.udp`): its nodes are expanded into the graph, so they hash and cache
by content.

The server fetches these URLs, so it guards what it fetches (server-side request forgery):

- only ``http`` and ``https``, no credentials of the user sent anywhere;
- the host is resolved once per connection and every address it resolves to is checked
  *before* connecting, on the socket actually used (no second lookup an attacker's DNS
  could answer differently): private, loopback, link-local, multicast, reserved and
  unspecified addresses (IPv4, IPv6 and IPv4-mapped IPv6) are refused unless an entry of
  ``remote_process_allow`` (addresses or networks) contains them;
- redirects are followed by hand, at most ``remote_process_max_redirects``, each target
  checked as the first URL;
- no proxy from the environment; one deadline (``remote_process_timeout``) for the whole
  fetch (connect, redirects, body); at most ``remote_process_max_bytes`` read;
- the answer must be a JSON object.

Each failure is a :class:`~tileserver.errors.ProcessNamespaceInvalid` (400) that says why.
Fetched documents are kept in a TTL cache (``remote_process_cache_ttl`` seconds,
``remote_process_cache_entries`` documents), failures are not. Name resolution itself is the
system resolver's (its own timeout), the rest is bounded by the deadline.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin, urlsplit

from cachetools import TTLCache
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError

from tileserver.errors import ProcessNamespaceInvalid

#: ``scheme:`` at the start of a namespace: the namespace is a URL, not a name.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
#: The schemes the extension allows.
SCHEMES = ("http", "https")
#: Status codes that redirect (with a ``Location``).
_REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 65536


def is_remote_namespace(namespace: Any) -> bool:
    """Whether a node's ``namespace`` is a URL (``scheme:...``) rather than a name."""
    return isinstance(namespace, str) and bool(_SCHEME.match(namespace))


def remote_key(process_id: str, namespace: str) -> str:
    """The key of a remote definition among a graph's processes (``id@url``: a stored
    user-defined process's id has no ``@`` nor ``:``, so the two never collide)."""
    return f"{process_id}@{namespace}"


@dataclass(frozen=True)
class FetchPolicy:
    """What the server may fetch: the allowed non-public networks, the limits (the
    ``remote_process_*`` settings, :meth:`from_settings`)."""

    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    timeout: float
    max_bytes: int
    max_redirects: int
    cache_ttl: int
    cache_entries: int

    @classmethod
    def from_settings(cls, settings: Any) -> FetchPolicy:
        """The policy of the ``remote_process_*`` settings
        (:class:`~tileserver.settings.RemoteProcessSettings`)."""
        return cls(allow=parse_networks(settings.remote_process_allow),
                   timeout=float(settings.remote_process_timeout),
                   max_bytes=int(settings.remote_process_max_bytes),
                   max_redirects=int(settings.remote_process_max_redirects),
                   cache_ttl=int(settings.remote_process_cache_ttl),
                   cache_entries=max(1, int(settings.remote_process_cache_entries)))

    def refusal(self, address: str) -> str | None:
        """Why ``address`` may not be connected to (``None``: it may)."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:10.0.0.1 is 10.0.0.1
        checked = mapped or ip
        if any(checked in net or ip in net for net in self.allow):
            return None
        for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved",
                     "private"):
            if getattr(checked, f"is_{kind}"):
                return f"{address} is a {kind.replace('_', '-')} address"
        if not checked.is_global:
            return f"{address} is not a public address"
        return None


def parse_networks(entries: Iterable[str]) -> tuple:
    """Addresses or networks (``10.0.0.0/8``, ``127.0.0.1``, ``::1``) as networks."""
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"remote_process_allow: {entry!r} is no address or network "
                             f"({exc})") from None
    return tuple(out)


class _Invalid(Exception):
    """Why a namespace URL cannot be used (made a :class:`ProcessNamespaceInvalid` with the
    node's process id by :meth:`RemoteProcesses.document`)."""


class _Refused(_Invalid):
    """A connection the policy does not allow (raised where the socket is made)."""


def _connect(host: str, port: int, timeout: Any, policy: FetchPolicy) -> socket.socket:
    """A socket to the first address of ``host`` the policy allows, every address checked
    before any connection; :class:`_Refused` when none may be used."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _Refused(f"the host {host!r} does not resolve ({exc})") from None
    reasons = [policy.refusal(info[4][0]) for info in infos]
    if any(reasons):  # one refused address refuses the host: no round-robin lottery
        raise _Refused(f"the host {host!r} resolves to a refused address "
                       f"({next(r for r in reasons if r)}; remote_process_allow lists "
                       "the networks allowed anyway)")
    last: OSError | None = None
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout if isinstance(timeout, int | float) else None)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise OSError(f"cannot connect to {host!r}: {last}")


class _GuardedHTTP(HTTPConnection):
    def __init__(self, *args: Any, policy: FetchPolicy, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.policy = policy

    def _new_conn(self) -> socket.socket:
        return _connect(self._dns_host, self.port, self.timeout, self.policy)


class _GuardedHTTPS(HTTPSConnection):
    def __init__(self, *args: Any, policy: FetchPolicy, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.policy = policy

    def _new_conn(self) -> socket.socket:
        return _connect(self._dns_host, self.port, self.timeout, self.policy)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTP


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPS


class RemoteProcesses:
    """Fetches, checks and caches remote process definitions under one policy."""

    def __init__(self, policy: FetchPolicy):
        self.policy = policy
        self._cache: TTLCache = TTLCache(policy.cache_entries, policy.cache_ttl)
        self._lock = threading.Lock()
        #: documents fetched over the network (not from the cache), for tests and logs
        self.fetches = 0

    def definition(self, process_id: str, namespace: str) -> dict:
        """The definition of ``process_id`` at ``namespace`` (a process object with a
        ``process_graph``); :class:`ProcessNamespaceInvalid` when it cannot be had."""
        doc = self.document(namespace, process_id)
        if isinstance(doc.get("processes"), list):
            found = [p for p in doc["processes"]
                     if isinstance(p, dict) and p.get("id") == process_id]
            if not found:
                raise ProcessNamespaceInvalid(
                    namespace, process_id, f"the process list at this URL has no process "
                    f"{process_id!r}")
            spec = found[0]
        elif "process_graph" in doc:
            spec = doc
            if spec.get("id") != process_id:
                raise ProcessNamespaceInvalid(
                    namespace, process_id, f"the process at this URL is "
                    f"{str(spec.get('id'))[:64]!r}, not {process_id!r}")
        else:
            raise ProcessNamespaceInvalid(
                namespace, process_id, "the document at this URL is neither a process "
                "(with 'process_graph') nor a list of processes ('processes')")
        if not isinstance(spec.get("process_graph"), dict) or not spec["process_graph"]:
            raise ProcessNamespaceInvalid(namespace, process_id,
                                          "the process has no 'process_graph' object")
        if not isinstance(spec.get("parameters", []), list | type(None)):
            raise ProcessNamespaceInvalid(namespace, process_id,
                                          "the process's 'parameters' is not a list")
        return spec

    def document(self, url: str, process_id: str = "") -> dict:
        """The JSON object at ``url`` (from the cache while it is fresh)."""
        with self._lock:
            cached = self._cache.get(url)
        if cached is not None:
            return cached
        try:
            doc = self._fetch(url)
        except _Invalid as exc:
            raise ProcessNamespaceInvalid(url, process_id, str(exc)) from None
        except (HTTPError, OSError) as exc:
            raise ProcessNamespaceInvalid(url, process_id, _describe(exc)) from None
        with self._lock:
            self._cache[url] = doc
            self.fetches += 1
        return doc

    def _fetch(self, url: str) -> dict:
        policy = self.policy
        deadline = time.monotonic() + policy.timeout
        current = url
        for hop in range(policy.max_redirects + 1):
            parts = _check_url(current, url)
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Invalid(_too_slow(policy))
            pool_cls = _HTTPSPool if parts.scheme == "https" else _HTTPPool
            port = parts.port or (443 if parts.scheme == "https" else 80)  # ::1 needs one
            pool = pool_cls(parts.hostname, port, maxsize=1, retries=False,
                            timeout=Timeout(connect=left, read=left), policy=policy)
            try:
                path = parts.path or "/"
                if parts.query:
                    path += "?" + parts.query
                resp = pool.urlopen("GET", path, redirect=False, retries=False,
                                    preload_content=False, assert_same_host=False,
                                    headers={"Accept": "application/json",
                                             "User-Agent": "tileserver (openEO remote "
                                                           "process definition)"})
                try:
                    if resp.status in _REDIRECTS and resp.headers.get("Location"):
                        if hop == policy.max_redirects:
                            raise _Invalid(f"more than {policy.max_redirects} redirects")
                        current = urljoin(current, resp.headers["Location"])
                        continue
                    if resp.status != 200:
                        raise _Invalid(f"the URL answered HTTP {resp.status}, not 200")
                    body = _read(resp, policy, deadline, url)
                finally:
                    resp.close()  # the body's file too (else the socket stays open)
            finally:
                pool.close()
            try:
                doc = json.loads(body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise _Invalid(f"the answer is no JSON ({exc})"
                                              ) from None
            if not isinstance(doc, dict):
                raise _Invalid("the answer is no JSON object")
            return doc
        raise _Invalid(f"more than {policy.max_redirects} redirects")


def _check_url(current: str, original: str):
    """The parts of an http(s) URL with a host, or :class:`ProcessNamespaceInvalid`."""
    try:
        parts = urlsplit(current)
        parts.port  # noqa: B018 - raises on a port that is no number
    except ValueError as exc:
        raise _Invalid(f"not a valid URL ({exc})") from None
    where = "" if current == original else f" (redirected to {current[:300]})"
    if parts.scheme.lower() not in SCHEMES:
        raise _Invalid(f"only http and https URLs name remote processes, not "
            f"{parts.scheme or 'a relative URL'}:{where}")
    if not parts.hostname:
        raise _Invalid(f"the URL has no host{where}")
    return parts


def _read(resp: Any, policy: FetchPolicy, deadline: float, url: str) -> bytes:
    """The body, at most ``max_bytes``, before the deadline."""
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise _Invalid(_too_big(policy))
    chunks, size = [], 0
    while True:
        if time.monotonic() > deadline:
            raise _Invalid(_too_slow(policy))
        chunk = resp.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > policy.max_bytes:
            raise _Invalid(_too_big(policy))
        chunks.append(chunk)


def _too_big(policy: FetchPolicy) -> str:
    return f"the definition is larger than {policy.max_bytes} bytes"


def _too_slow(policy: FetchPolicy) -> str:
    return f"the definition did not arrive within {policy.timeout:g} seconds"


def _describe(exc: BaseException) -> str:
    """A fetch failure in words (urllib3 wraps the cause)."""
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, _Refused):
        return str(reason)
    if "timed out" in str(reason).lower():
        return f"the request timed out ({reason})"
    return f"the URL cannot be fetched ({reason})"


@lru_cache(maxsize=8)
def _fetcher(policy: FetchPolicy) -> RemoteProcesses:
    return RemoteProcesses(policy)


def fetcher(settings: Any) -> RemoteProcesses | None:
    """The fetcher of these settings (one per distinct policy, so its cache is shared by
    every request of a server process), or ``None`` when ``remote_processes`` is off."""
    if not settings.remote_processes:
        return None
    return _fetcher(FetchPolicy.from_settings(settings))
