"""``config/default.yaml`` is the one place of the defaults (issue 25, item 6).

- every setting (a field of :class:`~tileserver.settings.Settings`) has a key there, and
  every key there is a setting of one group;
- every setting can be set through ``TILESERVER_<KEY>``;
- no module of ``tileserver/`` repeats a default: no keyword default of a parameter, no
  dataclass field and no ``{"key": value}`` entry named like a setting holds a literal equal
  to that setting's value in ``config/default.yaml``.
"""

from __future__ import annotations

import ast
import operator
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tileserver.settings import DEFAULT_CONFIG, ENV_PREFIX, GROUPS, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "tileserver"
SHIPPED: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG.read_text())


def test_the_shipped_file_is_the_repository_file():
    assert DEFAULT_CONFIG == REPO / "config" / "default.yaml"


def test_every_setting_has_a_default_and_every_default_is_a_setting():
    names = set(Settings.names())
    assert sorted(names - set(SHIPPED)) == [], "settings without a key in default.yaml"
    assert sorted(set(SHIPPED) - names) == [], "keys of default.yaml that are no setting"
    grouped = [name for group in GROUPS for name in group.model_fields]
    assert len(grouped) == len(set(grouped)), "a setting in two groups"
    assert set(grouped) == names


def test_no_setting_has_a_default_in_python():
    """pydantic fields without a default: a missing key fails instead of a second default."""
    for name in Settings.names():
        assert Settings.model_fields[name].is_required(), name


def _other_value(name: str, default: Any) -> tuple[str, Any]:
    """A variable's text for ``name`` that differs from its default, and its value."""
    if name == "home":
        return "/tmp/elsewhere", Path("/tmp/elsewhere")
    if name == "catalog":
        return "a.json, b.json", ("a.json", "b.json")
    if name == "oidc_providers":
        return '[{"id": "x", "issuer": "https://x.example"}]', [
            {"id": "x", "issuer": "https://x.example"}]
    if name == "remote_process_allow":
        return "10.0.0.0/8, 127.0.0.1", ("10.0.0.0/8", "127.0.0.1")
    if isinstance(default, bool):
        return ("false", False) if default else ("true", True)
    if isinstance(default, int):
        return str(default + 3), default + 3
    if isinstance(default, float):
        return str(default + 0.25), default + 0.25
    if default is None:
        return "something", "something"
    return f"{default}x", f"{default}x"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_setting_can_be_set_as_a_variable(name, monkeypatch):
    for var in [v for v in os.environ if v.startswith(ENV_PREFIX)] + ["TILESERVER_CONFIG"]:
        monkeypatch.delenv(var, raising=False)
    text, value = _other_value(name, SHIPPED[name])
    assert getattr(load_settings(), name) != value
    monkeypatch.setenv(f"{ENV_PREFIX}{name.upper()}", text)
    assert getattr(load_settings(), name) == value


# --- no second default in the code ------------------------------------------------------

_OPS = {ast.Mult: operator.mul, ast.Add: operator.add, ast.Sub: operator.sub,
        ast.Pow: operator.pow, ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv,
        ast.LShift: operator.lshift}


class _NotLiteral(Exception):
    pass


def _literal(node: ast.AST) -> Any:
    """The value of a literal (``64 * 1024 * 1024`` too); :class:`_NotLiteral` otherwise."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_literal(node.left), _literal(node.right))
    raise _NotLiteral


def _settings_named(name: str) -> list[str]:
    """The settings a name in the code stands for: the setting itself, or one with a group
    prefix (``timeout`` of ``remote_timeout``, ``page_size`` of ``stac_page_size``)."""
    return [key for key in SHIPPED if key == name or key.endswith(f"_{name}")]


def _same(value: Any, default: Any) -> bool:
    if default is None or isinstance(default, list | dict) or value is None:
        return False
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool) and value == default
    if isinstance(default, int | float):
        return isinstance(value, int | float) and value == default
    return isinstance(value, str) and value == default


#: Parameters named like a setting that are another thing (path, name): why.
NOT_SETTINGS = {
    ("render/cog.py", "resampling"): "the resampling of a COG's overviews, not of the view",
}


def _named_defaults(tree: ast.AST):
    """(name, default node, line, exact) of every keyword default of a function, every
    class attribute with a value (dataclass and pydantic fields), every ``"name": value``
    entry of a dict display and every ``f(name=value)``; ``exact``: only the setting of
    that very name counts (a dict's ``"timeout"`` may be anything's)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            args = node.args
            positional = args.posonlyargs + args.args
            for arg, default in zip(positional[len(positional) - len(args.defaults):],
                                    args.defaults, strict=True):
                yield arg.arg, default, default.lineno, False
            for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
                if default is not None:
                    yield arg.arg, default, default.lineno, False
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if (isinstance(stmt, ast.AnnAssign) and stmt.value is not None
                        and isinstance(stmt.target, ast.Name)):
                    yield stmt.target.id, stmt.value, stmt.lineno, False
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    yield key.value, value, value.lineno, True
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg is not None and kw.arg in SHIPPED:
                    yield kw.arg, kw.value, kw.value.lineno, True


def repeated_defaults(root: Path = PACKAGE) -> list[str]:
    """``path:line: name = value (default.yaml: key)`` of each default the code repeats."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        where = path.relative_to(root).as_posix()
        for name, node, line, exact in _named_defaults(tree):
            keys = [name] if exact and name in SHIPPED else [] if exact else _settings_named(name)
            if not keys or (where, name) in NOT_SETTINGS:
                continue
            try:
                value = _literal(node)
            except (_NotLiteral, TypeError, ZeroDivisionError):
                continue
            for key in keys:
                if _same(value, SHIPPED[key]):
                    found.append(f"{path.relative_to(root.parent)}:{line}: {name} = {value!r} "
                                 f"(default.yaml: {key}: {SHIPPED[key]!r})")
    return found


def test_no_module_repeats_a_default_of_default_yaml():
    assert repeated_defaults() == []


def test_a_repeated_default_is_found(tmp_path):
    """The walk above can fail: each kind of repetition it looks for is reported."""
    (tmp_path / "sneaky.py").write_text(
        "from dataclasses import dataclass\n"
        "def read(url, remote_timeout=30):\n    pass\n"
        "def search(*, page_size=100):\n    pass\n"
        "@dataclass\nclass Options:\n    cache_bytes: int = 64 * 1024 * 1024\n"
        "DEFAULTS = {'batch_block_size': 1024, 'batch_poll_seconds': 0.5}\n"
        "def other(timeout=31, batch_inflight=True, port=None):\n    pass\n")
    found = repeated_defaults(tmp_path)
    names = sorted(line.split(": ", 1)[1].split(" =")[0] for line in found)
    assert names == ["batch_block_size", "batch_poll_seconds", "cache_bytes", "page_size",
                     "remote_timeout"], found
