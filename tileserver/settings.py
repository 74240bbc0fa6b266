"""Settings: one immutable object read from ``config/default.yaml`` and ``TILESERVER_*``."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: The defaults shipped with the package (``config/default.yaml`` at the repository root,
#: also installed as package data).
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.yaml"
_PACKAGED_CONFIG = Path(sys.prefix) / "share" / "tileserver" / "config" / "default.yaml"


@dataclass(frozen=True)
class Settings:
    """Every setting of the server; build it with :func:`load_settings`."""

    home: Path = Path("./var")
    catalog: tuple[str, ...] = ()
    dask_scheduler: str | None = None
    cache_bytes: int = 512 * 1024 * 1024
    cache_url: str | None = None  # shared tier: None = disk under $home/cache, redis://…, none
    cache_shared_bytes: int = 2 * 1024 * 1024 * 1024  # size of the disk tier
    cache_shared_max_entry: int = 32 * 1024 * 1024  # larger answers are not shared
    cache_shared_min_ms: int = 30  # node results cheaper than this are not shared
    cache_shared_ttl: int = 7 * 86400  # Redis entries expire after this (0: never)
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    threads: int = 8
    public_url: str | None = None
    max_pixels: int = 64 * 1024 * 1024
    max_graph_nodes: int = 200
    max_graph_depth: int = 50
    max_body_bytes: int = 10 * 1024 * 1024
    max_upload_bytes: int = 100 * 1024 * 1024
    max_output_pixels: int = 25_000_000
    resampling: str = "nearest"
    users_file: str | None = None  # None: $home/users.yaml
    allow_remote: bool = False
    token_ttl: int = 86400
    max_evaluations: int = 4
    evaluation_queue_timeout: int = 30
    evaluation_timeout: int = 120
    batch_block_size: int = 1024  # batch jobs: pixels per block side
    batch_workers: int = 2  # workers of the embedded LocalCluster
    batch_worker_memory: str = "2GiB"  # memory limit per embedded worker
    batch_stale_seconds: int = 30  # a job whose driver stopped beating is taken over
    udf_allowed_users: str = "*"  # "*": every authenticated user; else "alice,bob"
    udf_workers: int = 2  # pre-started sandbox processes per server process
    udf_user_workers: int = 0  # workers one user may hold at once; 0: udf_workers - 1
    udf_timeout: int = 10  # seconds of wall and CPU time per UDF call
    udf_memory: str = "1GiB"  # address space a UDF call may add
    udf_max_output: str = "64MiB"  # bytes of one UDF result
    udf_nproc: int = 64  # RLIMIT_NPROC of a UDF call (processes and threads of its uid)
    udf_isolation: str = "bwrap"  # bwrap (namespaces) | process (uid + rlimits only)
    udf_user: str = "nobody"  # user the sandbox runs as when the server is root
    # the viewer's optional base map: an XYZ template such as
    # https://tile.openstreetmap.org/{z}/{x}/{y}.png (None: no base map, works offline)
    viewer_basemap_url: str | None = None
    viewer_basemap_attribution: str | None = None
    remote_timeout: int = 30  # seconds of one HTTP request to a STAC API or a remote file
    remote_connect_timeout: int = 10  # seconds to connect to a remote file's host
    remote_retries: int = 2  # retries of a failed remote request
    remote_retry_delay: int = 1  # seconds before the first retry (then doubling)
    remote_cache_bytes: int = 64 * 1024 * 1024  # GDAL's /vsicurl/ cache of fetched ranges
    stac_page_size: int = 100  # items per page of a STAC API search
    stac_max_pages: int = 20  # pages of one search at most (the result is then partial)
    stac_search_ttl: int = 300  # seconds a STAC API search result is reused
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        """SQLAlchemy URL of the job registry."""
        return self.database_url or f"sqlite:///{(self.home / 'tileserver.db').resolve()}"

    @property
    def demo_dir(self) -> Path:
        """Where the demo catalog lives when no catalog is configured."""
        return self.home / "demo"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


class SettingsError(ValueError):
    """A setting (YAML key or ``TILESERVER_*`` variable) with an impossible value."""


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _coerce(name: str, value: Any) -> Any:
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    if name not in fields or value is None:
        return value
    default = getattr(Settings(), name)
    if name == "home":
        return Path(str(value))
    if name == "catalog":
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        return tuple(p.strip() for p in str(value).split(",") if p.strip())
    if isinstance(default, bool):
        text = str(value).strip().lower()
        if text not in _TRUE + _FALSE:
            raise SettingsError(f"setting {name} (TILESERVER_{name.upper()}): expected a "
                                f"boolean (true/false), got {value!r}")
        return text in _TRUE
    if isinstance(default, int):
        try:
            return int(str(value).strip().replace("_", ""))
        except ValueError:
            raise SettingsError(f"setting {name} (TILESERVER_{name.upper()}): expected an "
                                f"integer, got {value!r}") from None
    return str(value) if value != "" else None


def load_settings(config_file: str | os.PathLike | None = None, **overrides: Any) -> Settings:
    """Read the YAML defaults, then ``TILESERVER_*`` variables, then ``overrides``."""
    values: dict[str, Any] = {}
    path = Path(config_file) if config_file else None
    if path is None and os.environ.get("TILESERVER_CONFIG"):
        path = Path(os.environ["TILESERVER_CONFIG"])
    if path is not None and not path.is_file():
        raise SettingsError(f"configuration file {path} does not exist")
    if path is None:
        path = DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else _PACKAGED_CONFIG
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SettingsError(f"configuration file {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict | None):
            raise SettingsError(f"configuration file {path} must be a mapping of settings")
        values.update(loaded or {})
    known = {f.name for f in dataclasses.fields(Settings)} - {"extra"}
    extra = {k: v for k, v in values.items() if k not in known}
    values = {k: v for k, v in values.items() if k in known}
    for name in known:
        env = os.environ.get(f"TILESERVER_{name.upper()}")
        if env is not None:
            values[name] = env
    values.update(overrides)
    kwargs = {k: _coerce(k, v) for k, v in values.items() if v is not None or k in ("catalog",)}
    if kwargs.get("catalog") is None:
        kwargs.pop("catalog", None)
    return Settings(extra=extra, **kwargs)
