"""Settings: one immutable, typed object read from ``config/default.yaml`` and ``TILESERVER_*``.

The fields are declared in groups (:data:`GROUPS`: the server, its state, cache, limits,
auth, OpenID Connect, batch, UDF, viewer, remote sources); :class:`Settings` is all of them at
once, so ``settings.cache_bytes`` is read as before, and a subsystem may ask for its group alone
(``def from_settings(s: UdfSettings)`` accepts the whole :class:`Settings`). pydantic checks
the types; ``config/default.yaml`` is the one source of the defaults (what each setting
means is written there too), so no field has a default here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict

#: The defaults shipped with the package (``config/default.yaml`` at the repository root,
#: also installed as package data).
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.yaml"
_PACKAGED_CONFIG = Path(sys.prefix) / "share" / "tileserver" / "config" / "default.yaml"
#: Environment variables are ``TILESERVER_<KEY upper-case>``.
ENV_PREFIX = "TILESERVER_"


class SettingsError(ValueError):
    """A setting (YAML key or ``TILESERVER_*`` variable) with an impossible value."""


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


def _flag(value: Any) -> Any:
    """Booleans as YAML writes them, or 1/0, yes/no, on/off; an empty variable is false."""
    if isinstance(value, str):
        value = value.strip().lower() or "false"
    return value


def _path(value: Any) -> Any:
    return value if value is None or isinstance(value, Path) else str(value)


def _paths(value: Any) -> tuple[str, ...]:
    """A list, or a comma-separated string (blank entries dropped)."""
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return tuple(p.strip() for p in str(value).split(",") if p.strip())


Text = Annotated[str, BeforeValidator(_blank_is_none)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_is_none)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Folder = Annotated[Path, BeforeValidator(_path)]
Paths = Annotated[tuple[str, ...], BeforeValidator(_paths), NoDecode]


class StateSettings(BaseModel):
    """Where the server keeps its state and finds its data."""

    home: Folder
    catalog: Paths
    database_url: OptionalText

    @property
    def db_url(self) -> str:
        """SQLAlchemy URL of the job registry."""
        return self.database_url or f"sqlite:///{(self.home / 'tileserver.db').resolve()}"

    @property
    def demo_dir(self) -> Path:
        """Where the demo catalog lives when no catalog is configured."""
        return self.home / "demo"


class ServerSettings(BaseModel):
    """The HTTP server (``tileserver serve``)."""

    host: Text
    port: int
    workers: int
    threads: int
    worker_class: Text
    public_url: OptionalText


class CacheSettings(BaseModel):
    """The intermediate-result cache and its shared tier."""

    cache_bytes: int
    cache_url: OptionalText
    cache_shared_bytes: int
    cache_shared_max_entry: int
    cache_shared_min_ms: int
    cache_shared_ttl: int
    dataset_handles: int


class LimitSettings(BaseModel):
    """What one request or evaluation may cost."""

    max_pixels: int
    max_graph_nodes: int
    max_graph_depth: int
    max_body_bytes: int
    max_upload_bytes: int
    max_output_pixels: int
    resampling: Text
    max_evaluations: int
    evaluation_queue_timeout: int
    evaluation_timeout: int
    memory_budget: int
    admission_wait: int
    max_user_evaluations: int
    max_user_batch_jobs: int


class EstimateSettings(BaseModel):
    """Estimates of batch jobs (``GET /jobs/{id}/estimate``) and their costs."""

    estimate_pixels_per_second: int
    estimate_overhead_seconds: float
    cost_per_megapixel: float
    cost_currency: Text
    billing_plan: Text
    billing_plan_url: OptionalText


class AuthSettings(BaseModel):
    """Users and their tokens."""

    users_file: OptionalText
    allow_remote: Flag
    token_ttl: int


def _providers(value: Any) -> Any:
    """OpenID Connect providers: a list of mappings, or the path of a YAML/JSON file holding
    one (or ``{"providers": [...]}``), or such a list as JSON text."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text[0] not in "[{":
            try:
                text = Path(text).expanduser().read_text()
            except OSError as exc:
                raise ValueError(f"cannot read the OpenID Connect providers file: {exc}") from exc
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"OpenID Connect providers are no valid YAML/JSON: {exc}") from exc
    if isinstance(value, dict):
        value = value.get("providers")
    if not isinstance(value, list | tuple) or not all(isinstance(v, dict) for v in value):
        raise ValueError("OpenID Connect providers must be a list of mappings")
    return list(value)


Providers = Annotated[list[dict[str, Any]], BeforeValidator(_providers), NoDecode]


class OidcSettings(BaseModel):
    """OpenID Connect providers whose access tokens the server accepts (README: OIDC)."""

    oidc_providers: Providers
    oidc_auto_users: Flag
    oidc_user_claim: Text
    oidc_leeway: int
    oidc_jwks_ttl: int
    oidc_jwks_cooldown: int
    oidc_timeout: int


class BatchSettings(BaseModel):
    """Batch jobs on dask.distributed."""

    dask_scheduler: OptionalText
    batch_block_size: int
    batch_workers: int
    batch_worker_memory: Text
    batch_stale_seconds: int
    batch_cluster_at_start: Flag
    batch_inflight: int
    batch_poll_seconds: float
    batch_heartbeat_seconds: float
    batch_watchdog_seconds: float


class UdfSettings(BaseModel):
    """The sandbox of user-defined functions."""

    udf_allowed_users: Text
    udf_workers: int
    udf_user_workers: int
    udf_timeout: int
    udf_memory: Text
    udf_max_output: Text
    udf_nproc: int
    udf_isolation: Text
    udf_user: Text


class ViewerSettings(BaseModel):
    """The job viewer page, and the openEO Web Editor that links to this server."""

    viewer_basemap_url: OptionalText
    viewer_basemap_attribution: OptionalText
    web_editor_url: Text


class RemoteSettings(BaseModel):
    """Remote sources: COGs over HTTP/S3 and STAC API searches."""

    remote_timeout: int
    remote_connect_timeout: int
    remote_retries: int
    remote_retry_delay: int
    remote_cache_bytes: int
    stac_page_size: int
    stac_max_pages: int
    stac_search_ttl: int


class RemoteProcessSettings(BaseModel):
    """Remote process definitions: graph nodes whose ``namespace`` is the URL of a process
    (openEO 1.3 Remote Process Definition extension), fetched by the server."""

    remote_processes: Flag
    remote_process_allow: Paths
    remote_process_timeout: float
    remote_process_max_bytes: int
    remote_process_max_redirects: int
    remote_process_cache_ttl: int
    remote_process_cache_entries: int


class StorageSettings(BaseModel):
    """Where batch results and user files are kept: ``$TILESERVER_HOME`` or an S3 store."""

    storage_url: OptionalText
    storage_public: Flag
    storage_presign_seconds: int
    storage_timeout: int
    storage_retries: int
    storage_multipart_bytes: int
    workspaces_per_user: int


#: The groups of settings, in the order of ``config/default.yaml``.
GROUPS: tuple[type[BaseModel], ...] = (
    StateSettings, ServerSettings, CacheSettings, LimitSettings, EstimateSettings,
    AuthSettings, OidcSettings, BatchSettings, UdfSettings, ViewerSettings, RemoteSettings,
    RemoteProcessSettings, StorageSettings)


class Settings(StorageSettings, RemoteProcessSettings, RemoteSettings, ViewerSettings,
               UdfSettings, BatchSettings, OidcSettings, AuthSettings, EstimateSettings,
               LimitSettings, CacheSettings, ServerSettings, StateSettings,
               BaseSettings):
    """Every setting of the server (all :data:`GROUPS`); build it with :func:`load_settings`.

    ``extra`` holds the keys of the configuration files that are no setting (kept, so
    that a configuration file written for a later version still loads).
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid",
                                      coerce_numbers_to_str=True)

    extra: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        """Only the keyword arguments: :func:`load_settings` layers the files and the
        environment itself, and :meth:`replace` must not read the environment again."""
        return (init_settings,)

    @classmethod
    def names(cls) -> list[str]:
        """The settings' names (the YAML keys; ``extra`` excluded)."""
        return [name for name in cls.model_fields if name != "extra"]

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (checked like the rest)."""
        unknown = sorted(set(changes) - set(type(self).model_fields))
        if unknown:
            raise TypeError(f"no such setting: {', '.join(unknown)}")
        return _build({**self.model_dump(), **changes}, "")


def _env_name(name: str) -> str:
    return f"{ENV_PREFIX}{name.upper()}"


def _message(error: dict) -> str:
    name, value = str(error["loc"][0]), error.get("input")
    if error["type"].startswith("int_"):
        expected = "an integer"
    elif error["type"].startswith("bool_"):
        expected = "a boolean (true/false)"
    else:
        expected = error["msg"].removeprefix("Input should be ")
    return f"setting {name} ({_env_name(name)}): expected {expected}, got {value!r}"


def _build(values: dict[str, Any], shipped: Path | str) -> Settings:
    """:class:`Settings` of ``values``; pydantic's errors said as :class:`SettingsError`."""
    try:
        return Settings(**values)
    except ValidationError as exc:
        errors = exc.errors()
        unset = sorted({str(e["loc"][0]) for e in errors if e.get("input", "") is None})
        if unset:
            where = f" (null in {shipped})" if shipped else ""
            raise SettingsError(f"settings without a value: {', '.join(unset)}{where}") from None
        raise SettingsError("; ".join(_message(e) for e in errors)) from None


def _read(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SettingsError(f"configuration file {path} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict | None):
        raise SettingsError(f"configuration file {path} must be a mapping of settings")
    return loaded or {}


def _environment() -> dict[str, Any]:
    """The ``TILESERVER_*`` variables that name a setting, read by pydantic-settings."""
    return {k: v for k, v in EnvSettingsSource(Settings)().items() if k != "extra"}


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
    names = Settings.names()
    values = _read(shipped)
    missing = sorted(set(names) - set(values))
    if missing:
        raise SettingsError(f"{shipped} has no default for {', '.join(missing)}")
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise TypeError(f"no such setting: {', '.join(unknown)}")
    layers = [_read(path)] if path is not None and path != shipped else []
    layers += [_environment(), overrides]
    for layer in layers:
        values.update({k: v for k, v in layer.items() if v is not None})
    extra = {k: v for k, v in values.items() if k not in names}
    return _build({k: values[k] for k in names} | {"extra": extra}, shipped)
