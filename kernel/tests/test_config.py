"""Settings: keyword arguments, then pyagent.toml / [tool.pyagent], then environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pyagent import ConfigurationError, config
from pyagent.plugins import Runtime


def test_precedence_kwargs_then_file_then_env(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("PYAGENT_MODEL", "env:model")
    monkeypatch.setenv("PYAGENT_ROUTER", "env-router")
    monkeypatch.setenv("PYAGENT_STORAGE", "sqlite://env.db")
    (tmp_path / "pyproject.toml").write_text('[tool.pyagent]\nmodel = "file:model"\nrouter = "file-router"\n')
    s = config.load_settings(tmp_path, model="kw:model")
    assert (s.model, s.router, s.storage) == ("kw:model", "file-router", "sqlite://env.db")
    assert s.source == str(tmp_path / "pyproject.toml")


def test_pyagent_toml_is_found_from_a_subfolder(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("PYAGENT_DISABLE_PLUGINS", raising=False)
    (tmp_path / "pyagent.toml").write_text('disable_plugins = ["debate", "consensus"]\nstrict_plugins = true\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    s = config.load_settings(sub)
    assert s.disable_plugins == ["debate", "consensus"] and s.strict_plugins is True


def test_env_values_are_parsed(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.setenv("PYAGENT_DISABLE_PLUGINS", " a, b ,")
    monkeypatch.setenv("PYAGENT_STRICT_PLUGINS", "yes")
    s = config.load_settings(tmp_path)
    assert s.disable_plugins == ["a", "b"] and s.strict_plugins is True


def test_bad_settings_are_clear(tmp_path: Path) -> None:
    (tmp_path / "pyagent.toml").write_text('modle = "x"\n')
    with pytest.raises(ConfigurationError, match=r"invalid pyagent settings from .*pyagent.toml: modle: Extra inputs.*valid keys: model, router"):
        config.load_settings(tmp_path)
    (tmp_path / "pyagent.toml").write_text('strict_plugins = "perhaps"\n')
    with pytest.raises(ConfigurationError, match="strict_plugins"):
        config.load_settings(tmp_path)
    (tmp_path / "pyagent.toml").write_text('model = \n')
    with pytest.raises(ConfigurationError, match="is not valid TOML"):
        config.load_settings(tmp_path)


def test_configured_router_and_model_are_used(bare_runtime: Runtime, monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    config.configure(router="mine", model="fake:tiny")
    assert bare_runtime.default_router_name() == "mine"
    import anyio

    from pyagent import ModelNotConfiguredError, RunContext, agent

    with pytest.raises(ModelNotConfiguredError, match="asked for 'fake:tiny'"):
        anyio.run(agent("You answer").run, "hi", RunContext())


def test_runtime_honours_disabled_plugins_from_a_file(tmp_path: Path, monkeypatch: Any, distribution: Any) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYAGENT_DISABLE_PLUGINS", raising=False)
    distribution(tmp_path, "pyagent-cfgplug", "cfg_plugin", "from pyagent import hookimpl\n"
                 "@hookimpl\ndef pyagent_register_patterns(register):\n    register('cfg', object())\n",
                 "[pyagent]\ncfgplug = cfg_plugin\n")
    (tmp_path / "pyagent.toml").write_text('disable_plugins = ["cfgplug"]\n')
    rt = Runtime()
    rt.ensure_loaded()
    assert "cfgplug" not in rt.plugins


def test_a_bad_value_names_where_it_came_from(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("PYAGENT_STRICT_PLUGINS", "maybe")
    with pytest.raises(ConfigurationError, match=r"strict_plugins \(from environment variable "
                                                 r"PYAGENT_STRICT_PLUGINS\): Input should be a valid boolean"):
        config.load_settings(tmp_path)
    monkeypatch.delenv("PYAGENT_STRICT_PLUGINS")
    (tmp_path / "pyagent.toml").write_text("disable_plugins = 5\n")
    with pytest.raises(ConfigurationError, match=r"settings from .*pyagent.toml: disable_plugins: Input should be a valid list"):
        config.load_settings(tmp_path)
    with pytest.raises(ConfigurationError, match=r"strict_plugins \(from configure\(\)\)"):
        config.load_settings(tmp_path, disable_plugins=[], strict_plugins="perhaps")
