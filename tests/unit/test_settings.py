"""Settings: the YAML defaults, ``TILESERVER_*`` overrides, keyword overrides, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from tileserver.settings import DEFAULT_CONFIG, Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("TILESERVER_"):
            monkeypatch.delenv(name)


def test_yaml_defaults():
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    s = load_settings()
    for name in Settings.names():
        if name in raw and raw[name] is not None and name not in ("home", "catalog"):
            assert getattr(s, name) == raw[name], name
    assert s.home == Path(raw["home"])
    assert s.catalog == ()
    assert s.cache_bytes == raw["cache_bytes"] == 512 * 1024 * 1024
    assert s.dask_scheduler is None and s.database_url is None
    assert s.db_url == f"sqlite:///{(Path(raw['home']) / 'tileserver.db').resolve()}"
    assert s.demo_dir == Path(raw["home"]) / "demo"


def test_every_setting_has_a_yaml_default():
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    missing = set(Settings.model_fields) - set(raw) - {"extra"}
    assert not missing and set(Settings.names()) == set(Settings.model_fields) - {"extra"}
    # the YAML file is the one source of the defaults: the model repeats none
    assert [name for name, f in Settings.model_fields.items()
            if not f.is_required() and name != "extra"] == []


@pytest.mark.parametrize("edit, match", [
    (lambda raw: raw.pop("threads"), "has no default for threads"),
    (lambda raw: raw.update(port=None), "settings without a value: port"),
])
def test_the_shipped_defaults_must_be_complete(monkeypatch, tmp_path, edit, match):
    import tileserver.settings

    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    edit(raw)
    shipped = tmp_path / "default.yaml"
    shipped.write_text(yaml.safe_dump(raw))
    monkeypatch.setattr(tileserver.settings, "DEFAULT_CONFIG", shipped)
    with pytest.raises(SettingsError, match=match):
        load_settings()


def test_an_unknown_keyword_is_refused():
    with pytest.raises(TypeError, match="no such setting: colour"):
        load_settings(colour="blue")


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("TILESERVER_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("TILESERVER_CATALOG", f" {tmp_path}/a.json, {tmp_path}/b.json ,")
    monkeypatch.setenv("TILESERVER_DASK_SCHEDULER", "tcp://10.0.0.5:8786")
    monkeypatch.setenv("TILESERVER_CACHE_BYTES", "1048576")
    monkeypatch.setenv("TILESERVER_DATABASE_URL", "sqlite:////tmp/x.db")
    monkeypatch.setenv("TILESERVER_PORT", "9000")
    monkeypatch.setenv("TILESERVER_ALLOW_REMOTE", "yes")
    s = load_settings()
    assert s.home == tmp_path / "state"
    assert s.catalog == (f"{tmp_path}/a.json", f"{tmp_path}/b.json")
    assert s.dask_scheduler == "tcp://10.0.0.5:8786"
    assert s.cache_bytes == 1048576 and isinstance(s.cache_bytes, int)
    assert s.db_url == "sqlite:////tmp/x.db"
    assert s.port == 9000 and s.allow_remote is True


def test_keyword_overrides_beat_environment(monkeypatch):
    monkeypatch.setenv("TILESERVER_CACHE_BYTES", "1000")
    assert load_settings(cache_bytes=2000).cache_bytes == 2000
    assert load_settings().cache_bytes == 1000


def test_cache_size_reaches_the_runtime(monkeypatch, tmp_path, small_catalog):
    from tileserver.runtime import Runtime

    monkeypatch.setenv("TILESERVER_CACHE_BYTES", "12345")
    monkeypatch.setenv("TILESERVER_CATALOG", str(small_catalog))
    monkeypatch.setenv("TILESERVER_HOME", str(tmp_path))
    rt = Runtime(load_settings())
    try:
        assert rt.cache.max_bytes == 12345
        assert rt.engine.cache is rt.cache
        assert set(rt.catalog.products) == {"TEST", "FLOATS"}
    finally:
        rt.close()


def test_config_file_and_unknown_keys(monkeypatch, tmp_path):
    cfg = tmp_path / "site.yaml"
    cfg.write_text("cache_bytes: 777\nport: 8181\ncolour: blue\n")
    monkeypatch.setenv("TILESERVER_CONFIG", str(cfg))
    monkeypatch.setenv("TILESERVER_PORT", "8282")
    s = load_settings()
    assert s.cache_bytes == 777 and s.port == 8282
    assert s.extra == {"colour": "blue"}
    assert load_settings(tmp_path / "site.yaml").cache_bytes == 777
    # what the file does not set comes from the shipped defaults (null too)
    cfg.write_text("threads: 3\ncache_shared_ttl: null\n")
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    s = load_settings()
    assert s.threads == 3 and s.cache_shared_ttl == raw["cache_shared_ttl"]
    assert s.udf_memory == raw["udf_memory"] and s.extra == {}


def test_settings_are_immutable():
    s = load_settings()
    with pytest.raises(ValidationError, match="frozen"):
        s.cache_bytes = 1  # type: ignore[misc]
    assert s.replace(cache_bytes=5).cache_bytes == 5 and s.cache_bytes != 5


@pytest.mark.parametrize("name, value, match", [
    ("TILESERVER_CACHE_BYTES", "lots", "cache_bytes .*expected an integer, got 'lots'"),
    ("TILESERVER_PORT", "80.5", "port .*expected an integer"),
    ("TILESERVER_ALLOW_REMOTE", "maybe", "allow_remote .*expected a boolean"),
    ("TILESERVER_CONFIG", "/nonexistent/tileserver.yaml", "does not exist"),
])
def test_bad_values_are_clear_errors(monkeypatch, name, value, match):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=match):
        load_settings()


@pytest.mark.parametrize("text, match", [("- a\n- b\n", "must be a mapping"),
                                         ("a: [1,\n", "not valid YAML")])
def test_bad_config_files(tmp_path, text, match):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(SettingsError, match=match):
        load_settings(cfg)
