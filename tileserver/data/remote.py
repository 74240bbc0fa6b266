"""Remote sources: GDAL paths of ``http(s)://`` and ``s3://`` hrefs, GDAL's network
settings, and what a failed read means (a broken href to skip, or a failing host: 502/504).

Messages name the host only: never the user info, path parameters or the query string of
an href (signed URLs carry their credentials there).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from tileserver.errors import TileserverError, UpstreamError, UpstreamTimeout
from tileserver.settings import RemoteSettings, load_settings

log = logging.getLogger(__name__)


class SourceReadError(UpstreamError):
    """A file that exists but cannot be read (not a raster, damaged): an error, not a
    skipped item."""

    code = "SourceReadError"


class BrokenSource(TileserverError):
    """An href that does not lead to a raster (404, missing file, not a raster): the
    evaluator skips the item with a log line."""

    status = 502
    code = "UpstreamError"
    ogc_code = "NoApplicableCode"


@dataclass(frozen=True)
class RemoteOptions:
    """Network settings of remote reads (the ``remote_*`` settings; their defaults are in
    ``config/default.yaml``)."""

    timeout: int  # seconds of one HTTP request (GDAL_HTTP_TIMEOUT, STAC searches)
    connect_timeout: int  # seconds to connect (GDAL_HTTP_CONNECTTIMEOUT)
    retries: int  # retries of a failed request (GDAL_HTTP_MAX_RETRY, STAC searches)
    retry_delay: int  # seconds before the first retry (GDAL_HTTP_RETRY_DELAY)
    cache_bytes: int  # GDAL's /vsicurl/ block cache (CPL_VSIL_CURL_CACHE_SIZE)

    @classmethod
    def from_settings(cls, settings: RemoteSettings) -> RemoteOptions:
        """The ``remote_*`` fields of :class:`~tileserver.settings.Settings`."""
        return cls(settings.remote_timeout, settings.remote_connect_timeout,
                   settings.remote_retries, settings.remote_retry_delay,
                   settings.remote_cache_bytes)

    def gdal_config(self) -> dict[str, str]:
        """GDAL configuration options of remote reads."""
        return {
            # a COG's header says everything: never list the "directory" of a URL
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            # the blocks of one window in one request (multipart/byteranges), adjacent
            # blocks merged into one range
            "GDAL_HTTP_MULTIRANGE": "YES",
            "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
            "GDAL_HTTP_MULTIPLEX": "YES",
            "GDAL_HTTP_VERSION": "2TLS",
            # file sizes, headers and fetched ranges stay in GDAL's process-wide cache
            "CPL_VSIL_CURL_CACHE_SIZE": str(self.cache_bytes),
            "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
            "GDAL_HTTP_TIMEOUT": str(self.timeout),
            "GDAL_HTTP_CONNECTTIMEOUT": str(self.connect_timeout),
            "GDAL_HTTP_MAX_RETRY": str(self.retries),
            "GDAL_HTTP_RETRY_DELAY": str(self.retry_delay),
        }


_options: RemoteOptions | None = None  # of configure(), or of the settings at first use
_lock = threading.Lock()
_configured = False


_ours: set[str] = set()  # the variables set here (the others were set by the user)


def configure(options: RemoteOptions) -> None:
    """Set GDAL's options for remote reads, process-wide, as environment variables (GDAL
    reads them at each use, from any thread; ``rasterio.env.set_gdal_config`` would only
    reach the calling thread's environment). A variable already set in the environment by
    the user (``GDAL_HTTP_TIMEOUT=…``) wins over the setting."""
    global _options, _configured
    with _lock:
        _options = options
        for key, value in options.gdal_config().items():
            if key not in os.environ or key in _ours:
                os.environ[key] = value
                _ours.add(key)
        _configured = True


def _ensure_configured() -> None:
    """The options of this process's settings (``config/default.yaml``, ``TILESERVER_*``), in
    a process that reads a remote file before any :func:`configure` (a batch worker, a
    script using the core directly)."""
    if not _configured:
        configure(RemoteOptions.from_settings(load_settings()))


def options() -> RemoteOptions:
    """The options of this process."""
    _ensure_configured()
    assert _options is not None
    return _options


def is_remote(href: str) -> bool:
    """Whether ``href`` is read over the network."""
    return href.startswith(("http://", "https://", "s3://", "/vsicurl/", "/vsis3/"))


def gdal_path(href: str) -> str:
    """The path GDAL opens: ``/vsicurl/`` for HTTP(S), ``/vsis3/`` for S3 (AWS_* variables
    of the environment apply), the href itself otherwise."""
    if href.startswith(("http://", "https://")):
        _ensure_configured()
        return "/vsicurl/" + href
    if href.startswith("s3://"):
        _ensure_configured()
        return "/vsis3/" + href.removeprefix("s3://")
    return href


def host_of(href: str) -> str:
    """The host an href points to, without credentials (``s3://bucket``, ``example.com``)."""
    href = href.removeprefix("/vsicurl/")
    if href.startswith("/vsis3/"):
        return "s3://" + href.removeprefix("/vsis3/").split("/", 1)[0]
    parts = urlsplit(href)
    if parts.scheme == "s3":
        return f"s3://{parts.hostname or ''}"
    if parts.scheme in ("http", "https"):
        return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname \
            else "?"
    return "local file"


def redact(href: str) -> str:
    """An href fit for messages and logs: no user info, no query string."""
    href = href.removeprefix("/vsicurl/")
    parts = urlsplit(href)
    if parts.scheme in ("http", "https", "s3"):
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return f"{parts.scheme}://{netloc}{parts.path}"
    return href


_MISSING = re.compile(r"No such file|does not exist|HTTP response code: 40[34]|"
                      r"HTTP response code: 410", re.I)
_TIMEOUT = re.compile(r"time(d)? ?out|Timeout was reached", re.I)


def classify(href: str, exc: Exception) -> TileserverError:
    """What a failed GDAL open or read of ``href`` means.

    A missing local file is a broken href (the item is skipped); a file that exists but is
    no raster is a :class:`SourceReadError`. Remote files: GDAL's last message does not
    tell a 404 from an unreachable host, so one light request (a GET of byte 0, which URLs
    signed for GET accept, bounded by the timeouts) asks the server: 404/410 is a broken
    href, no answer in time a 504, anything else a 502 naming the host.
    """
    text = str(exc)
    if not is_remote(href):
        if not os.path.exists(href):
            return BrokenSource(f"no file at {href}")
        return SourceReadError(f"cannot read {href}: {text}")
    host = host_of(href)
    url = href.removeprefix("/vsicurl/")
    if not url.startswith(("http://", "https://")):  # s3: GDAL's message is all we have
        if _TIMEOUT.search(text):
            return UpstreamTimeout(f"remote source {host} did not answer in time")
        if _MISSING.search(text):
            return BrokenSource(f"no raster at {redact(href)}")
        return UpstreamError(f"remote source {host} failed to deliver {redact(href)}")
    opts = options()
    try:
        with requests.get(url, headers={"Range": "bytes=0-0"}, stream=True,
                          timeout=(opts.connect_timeout, opts.timeout)) as resp:
            pass
    except requests.Timeout:
        return UpstreamTimeout(f"remote source {host} did not answer within "
                               f"{opts.timeout} s")
    except requests.RequestException:
        return UpstreamError(f"remote source {host} cannot be reached")
    if resp.status_code in (404, 410):
        return BrokenSource(f"no file at {redact(href)} (HTTP {resp.status_code})")
    if resp.status_code in (502, 503, 504) or resp.status_code >= 500:
        return UpstreamError(f"remote source {host} answered HTTP {resp.status_code}")
    if resp.status_code in (401, 403):
        return UpstreamError(f"remote source {host} refused access (HTTP "
                             f"{resp.status_code}); are the credentials or the signature "
                             "of the href valid?")
    if _TIMEOUT.search(text):
        return UpstreamTimeout(f"remote source {host} did not answer in time")
    if resp.ok:  # the server has the file, GDAL cannot read it
        return SourceReadError(f"cannot read {redact(href)} from {host}: not a raster GDAL "
                               "reads, or a damaged one")
    return UpstreamError(f"remote source {host} failed to deliver {redact(href)}")
