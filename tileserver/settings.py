"""Settings: one immutable object read from ``config/default.yaml`` and ``TILESERVER_*``."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_type_hints

import yaml

#: The defaults shipped with the package (``config/default.yaml`` at the repository root,
#: also installed as package data).
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.yaml"
_PACKAGED_CONFIG = Path(sys.prefix) / "share" / "tileserver" / "config" / "default.yaml"


@dataclass(frozen=True)
class Settings:
    """Every setting of the server; build it with :func:`load_settings`.

    The fields have no defaults here: ``config/default.yaml`` is their one source (what each
    one means is written there too), and :func:`load_settings` requires every field in it.
    """

    home: Path
    catalog: tuple[str, ...]
    dask_scheduler: str | None
    cache_bytes: int
    cache_url: str | None
    cache_shared_bytes: int
    cache_shared_max_entry: int
    cache_shared_min_ms: int
    cache_shared_ttl: int
    database_url: str | None
    host: str
    port: int
    workers: int
    threads: int
    public_url: str | None
    max_pixels: int
    max_graph_nodes: int
    max_graph_depth: int
    max_body_bytes: int
    max_upload_bytes: int
    max_output_pixels: int
    resampling: str
    users_file: str | None
    allow_remote: bool
    token_ttl: int
    max_evaluations: int
    evaluation_queue_timeout: int
    evaluation_timeout: int
    batch_block_size: int
    batch_workers: int
    batch_worker_memory: str
    batch_stale_seconds: int
    batch_cluster_at_start: bool
    udf_allowed_users: str
    udf_workers: int
    udf_user_workers: int
    udf_timeout: int
    udf_memory: str
    udf_max_output: str
    udf_nproc: int
    udf_isolation: str
    udf_user: str
    viewer_basemap_url: str | None
    viewer_basemap_attribution: str | None
    remote_timeout: int
    remote_connect_timeout: int
    remote_retries: int
    remote_retry_delay: int
    remote_cache_bytes: int
    stac_page_size: int
    stac_max_pages: int
    stac_search_ttl: int
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


def _fields() -> dict[str, Any]:
    """``{name: type}`` of the settings (``extra`` excluded)."""
    hints = get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings) if f.name != "extra"}


def _coerce(name: str, kind: Any, value: Any) -> Any:
    if name == "home":
        return Path(str(value))
    if name == "catalog":
        if value is None:
            return ()
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        return tuple(p.strip() for p in str(value).split(",") if p.strip())
    if value is None:
        return None
    if kind is bool:
        text = str(value).strip().lower()
        if text not in _TRUE + _FALSE:
            raise SettingsError(f"setting {name} (TILESERVER_{name.upper()}): expected a "
                                f"boolean (true/false), got {value!r}")
        return text in _TRUE
    if kind is int:
        try:
            return int(str(value).strip().replace("_", ""))
        except ValueError:
            raise SettingsError(f"setting {name} (TILESERVER_{name.upper()}): expected an "
                                f"integer, got {value!r}") from None
    return str(value) if value != "" else None


def _read(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SettingsError(f"configuration file {path} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict | None):
        raise SettingsError(f"configuration file {path} must be a mapping of settings")
    return loaded or {}


def load_settings(config_file: str | os.PathLike | None = None, **overrides: Any) -> Settings:
    """The defaults of ``config/default.yaml``, then the keys of ``config_file`` (or
    ``$TILESERVER_CONFIG``), then ``TILESERVER_*`` variables, then ``overrides``.

    A ``None`` (YAML ``null``) in a later layer leaves the value before it; keys that are no
    setting are kept in ``extra``.
    """
    path = Path(config_file) if config_file else None
    if path is None and os.environ.get("TILESERVER_CONFIG"):
        path = Path(os.environ["TILESERVER_CONFIG"])
    if path is not None and not path.is_file():
        raise SettingsError(f"configuration file {path} does not exist")
    shipped = DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else _PACKAGED_CONFIG
    if not shipped.exists():
        raise SettingsError(f"the default settings are missing: neither {DEFAULT_CONFIG} nor "
                            f"{_PACKAGED_CONFIG} exists (reinstall tileserver)")
    kinds = _fields()
    values = _read(shipped)
    missing = sorted(set(kinds) - set(values))
    if missing:
        raise SettingsError(f"{shipped} has no default for {', '.join(missing)}")
    unknown = sorted(set(overrides) - set(kinds))
    if unknown:
        raise TypeError(f"no such setting: {', '.join(unknown)}")
    layers = [_read(path)] if path is not None and path != shipped else []
    layers.append({name: os.environ.get(f"TILESERVER_{name.upper()}") for name in kinds})
    layers.append(overrides)
    for layer in layers:
        values.update({k: v for k, v in layer.items() if v is not None})
    extra = {k: v for k, v in values.items() if k not in kinds}
    out = {k: _coerce(k, kind, values[k]) for k, kind in kinds.items()}
    unset = [k for k, v in out.items() if v is None and type(None) not in get_args(kinds[k])]
    if unset:
        raise SettingsError(f"settings without a value: {', '.join(unset)} (null in {shipped})")
    return Settings(extra=extra, **out)
