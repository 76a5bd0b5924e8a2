"""Discovery through real entry points: failures isolated, blocking, strict mode, drivers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from pyagent import PluginNotInstalledError
from pyagent.errors import DriverLoadFailure, PluginLoadError
from pyagent.plugins import Runtime

GOOD = '''
from pyagent import hookimpl

class Zig:
    async def execute(self, run):
        return "zig"

@hookimpl
def pyagent_register_patterns(register):
    register("zigzag", Zig())
'''


@pytest.fixture
def site(tmp_path: Path, monkeypatch: Any) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("PYAGENT_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("PYAGENT_STRICT_PLUGINS", raising=False)
    yield tmp_path
    for mod in ("zig_plugin", "broken_plugin"):
        sys.modules.pop(mod, None)


def _install_two(site: Path, distribution: Any) -> None:
    distribution(site, "pyagent-zigzag", "zig_plugin", GOOD, "[pyagent]\nzigzag = zig_plugin\n")
    distribution(site, "pyagent-broken", "broken_plugin", "raise ImportError('needs libfoo')\n",
                      "[pyagent]\nbroken = broken_plugin\n")


def test_a_broken_plugin_never_stops_the_others(site: Path, distribution: Any) -> None:
    _install_two(site, distribution)
    rt = Runtime()
    assert rt.lookup("pattern", "zigzag").__class__.__name__ == "Zig"
    failure = next(f for f in rt.failures if f.name == "broken")
    assert failure.distribution == "pyagent-broken"
    assert "ImportError: needs libfoo" in failure.error
    info = rt.plugins["zigzag"]
    assert (info.distribution, info.version) == ("pyagent-zigzag", "1.0")
    assert info.provides == {"patterns": ["zigzag"]}


def test_strict_mode_reraises_with_the_plugin_name(site: Path, monkeypatch: Any, distribution: Any) -> None:
    _install_two(site, distribution)
    monkeypatch.setenv("PYAGENT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match='Error importing plugin "broken": needs libfoo'):
        Runtime().ensure_loaded()


def test_disable_plugins_by_entry_point_or_distribution(site: Path, monkeypatch: Any, distribution: Any) -> None:
    _install_two(site, distribution)
    monkeypatch.setenv("PYAGENT_DISABLE_PLUGINS", "zigzag, pyagent-broken")
    rt = Runtime()
    rt.ensure_loaded()
    assert "zigzag" not in rt.plugins and not [f for f in rt.failures if f.name == "broken"]
    with pytest.raises(PluginNotInstalledError):
        rt.lookup("pattern", "zigzag")


def test_registration_errors_are_reported_not_raised(bare_runtime: Any) -> None:
    from pyagent import hookimpl

    class Faulty:
        @hookimpl
        def pyagent_register_patterns(self, register: Any) -> None:
            raise RuntimeError("oops")

    bare_runtime.register(Faulty(), "faulty")
    assert bare_runtime.registry("patterns") == {}
    assert any("pyagent_register_patterns raised RuntimeError: oops" in f.error for f in bare_runtime.failures)


def test_later_registration_wins_and_unregister_rebuilds(bare_runtime: Any) -> None:
    from pyagent import hookimpl

    def plugin(value: str) -> Any:
        class P:
            @hookimpl
            def pyagent_register_patterns(self, register: Any) -> None:
                register("p", value)

        return P()

    bare_runtime.register(plugin("first"), "one")
    bare_runtime.register(plugin("second"), "two")
    assert bare_runtime.lookup("pattern", "p") == "second"
    bare_runtime.unregister("two")
    assert bare_runtime.lookup("pattern", "p") == "first"


def test_drivers_are_found_by_entry_point_name(bare_runtime: Any, monkeypatch: Any) -> None:
    from pyagent._defaults.local_executor import LocalExecutor
    from pyagent._defaults.memory_store import MemoryStore

    assert bare_runtime.driver("stores", "memory") is MemoryStore
    assert bare_runtime.driver("executors", "local") is LocalExecutor
    assert isinstance(bare_runtime.executor("local"), LocalExecutor)
    from pyagent import plugins

    monkeypatch.setitem(plugins.KNOWN_DISTRIBUTIONS["store"], "nosuchdb", "pyagent-nosuchdb")
    monkeypatch.setitem(plugins.KNOWN_DISTRIBUTIONS["executor"], "nosuchexec", "pyagent-nosuchexec")
    with pytest.raises(PluginNotInstalledError, match="store 'nosuchdb' is not installed: pip install pyagent-nosuchdb"):
        bare_runtime.driver("stores", "nosuchdb")
    with pytest.raises(PluginNotInstalledError, match="executor 'nosuchexec' is not installed: pip install pyagent-nosuchexec"):
        bare_runtime.driver("executors", "nosuchexec")
    assert plugins.KNOWN_DISTRIBUTIONS["store"]["sqlite"] == "pyagent-sql"
    with pytest.raises(DriverLoadFailure, match="takes no options"):
        bare_runtime.executor("local", {"workers": 3})


def test_broken_driver_entry_point_is_wrapped(site: Path, distribution: Any) -> None:
    distribution(site, "pyagent-badstore", "broken_plugin", "raise ImportError('no driver lib')\n",
                      "[pyagent.stores]\nbadstore = broken_plugin:Store\n")
    with pytest.raises(DriverLoadFailure, match=r"driver 'badstore' .* failed to load: ImportError: no driver lib"):
        Runtime(discover=False).driver("stores", "badstore")


def test_hook_registered_driver_wins(bare_runtime: Any) -> None:
    from pyagent import hookimpl

    class Custom:
        def __init__(self, url: str) -> None:
            self.url = url

    class P:
        @hookimpl
        def pyagent_register_stores(self, register: Any) -> None:
            register("memory", Custom)

    bare_runtime.register(P(), "p")
    assert bare_runtime.driver("stores", "memory") is Custom


def test_import_pyagent_does_not_discover_plugins() -> None:
    import subprocess

    code = (
        "import sys, pyagent, pyagent.orchestrator\n"
        "from pyagent.plugins import get_runtime\n"
        "assert not get_runtime()._discovered\n"
        "heavy = [m for m in ('stevedore', 'tenacity', 'sqlalchemy', 'click', 'asyncio', 'pyagent.handoffs', 'pyagent.durability.history', 'pyagent.patterns') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


HALF = '''
from pyagent import hookimpl

class Pat:
    async def execute(self, run):
        return "half"

@hookimpl
def pyagent_register_patterns(register):
    register("halfpat", Pat())

@hookimpl
def pyagent_register_routers(regster):  # misspelt argument: pluggy refuses this hook
    pass
'''


@pytest.fixture
def more_site(site: Path) -> Path:
    yield site
    for mod in ("exit_plugin", "half_plugin", "typo_plugin", "value_plugin", "async_monitor_plugin"):
        sys.modules.pop(mod, None)


def test_a_plugin_that_exits_on_import_never_stops_the_others(more_site: Path, distribution: Any) -> None:
    distribution(more_site, "pyagent-exit", "exit_plugin", "import sys\nsys.exit('bye')\n", "[pyagent]\nexit = exit_plugin\n")
    distribution(more_site, "pyagent-zigzag", "zig_plugin", GOOD, "[pyagent]\nzigzag = zig_plugin\n")
    rt = Runtime()
    assert rt.lookup("pattern", "zigzag").__class__.__name__ == "Zig"
    failure = next(f for f in rt.failures if f.name == "exit")
    assert "SystemExit: bye" in failure.error


def test_a_plugin_refused_by_pluggy_contributes_nothing(more_site: Path, distribution: Any) -> None:
    distribution(more_site, "pyagent-half", "half_plugin", HALF, "[pyagent]\nhalf = half_plugin\n")
    rt = Runtime()
    rt.ensure_loaded()
    failure = next(f for f in rt.failures if f.name == "half")
    assert "regster" in failure.error
    assert "halfpat" not in rt.registry("patterns")
    assert "half" not in rt.plugins and not rt.pm.has_plugin("half")


def test_unknown_hooks_and_hookless_objects_are_reported(more_site: Path, distribution: Any) -> None:
    typo = "from pyagent import hookimpl\n\n@hookimpl\ndef pyagent_register_pattern(register):\n    pass\n"
    distribution(more_site, "pyagent-typo", "typo_plugin", typo, "[pyagent]\ntypo = typo_plugin\n")
    distribution(more_site, "pyagent-value", "value_plugin", "VALUE = 42\n", "[pyagent]\nvalue = value_plugin:VALUE\n")
    rt = Runtime()
    rt.ensure_loaded()
    errors = {f.name: f.error for f in rt.failures}
    assert "unknown hook pyagent_register_pattern" in errors["typo"]
    assert "did you mean pyagent_register_patterns" in errors["typo"]
    assert "no pyagent hook implementations" in errors["value"]
    assert "typo" not in rt.plugins and "value" not in rt.plugins


def test_async_event_hook_is_reported_not_silently_dropped(more_site: Path, distribution: Any) -> None:
    source = "from pyagent import hookimpl\n\n@hookimpl\nasync def pyagent_on_event(event):\n    pass\n"
    distribution(more_site, "pyagent-amon", "async_monitor_plugin", source, "[pyagent]\namon = async_monitor_plugin\n")
    rt = Runtime()
    assert rt.monitor_hooks() == []
    failure = next(f for f in rt.failures if f.name == "amon")
    assert "pyagent_on_event is a coroutine function" in failure.error


def test_configure_disable_plugins_applies_to_discovery(site: Path, distribution: Any) -> None:
    from pyagent import config

    _install_two(site, distribution)
    config.configure(disable_plugins=["zigzag"])
    rt = Runtime()
    with pytest.raises(PluginNotInstalledError):
        rt.lookup("pattern", "zigzag")


def test_registration_failures_are_reported_once(bare_runtime: Any) -> None:
    from pyagent import hookimpl

    class Faulty:
        @hookimpl
        def pyagent_register_patterns(self, register: Any) -> None:
            register("half-done", object())
            raise RuntimeError("oops")

    class Other:
        @hookimpl
        def pyagent_register_routers(self, register: Any) -> None:
            register("r", object())

    bare_runtime.register(Faulty(), "faulty")
    bare_runtime.registry("patterns")
    bare_runtime.register(Other(), "other")  # rebuilds the registries
    bare_runtime.registry("patterns")
    assert [f.name for f in bare_runtime.failures] == ["faulty"]
    assert "half-done" not in bare_runtime.registry("patterns")  # a failed hook contributes nothing


def test_strict_mode_keeps_raising_instead_of_running_with_half_the_plugins(
        site: Path, monkeypatch: Any, distribution: Any) -> None:
    _install_two(site, distribution)
    monkeypatch.setenv("PYAGENT_STRICT_PLUGINS", "1")
    rt = Runtime()
    for _ in range(2):
        with pytest.raises(PluginLoadError, match='Error importing plugin "broken"'):
            rt.lookup("pattern", "zigzag")
    assert [f.name for f in rt.failures].count("broken") == 1


def test_in_strict_mode_the_command_line_reports_a_broken_plugin_as_a_configuration_error(
        site: Path, distribution: Any) -> None:
    import os
    import subprocess
    import sys

    _install_two(site, distribution)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "PYAGENT_STRICT_PLUGINS": "1"}
    out = subprocess.run([sys.executable, "-m", "pyagent.cli", "plugins"], capture_output=True, text=True,
                         env=env, cwd=site, timeout=120)
    assert out.returncode == 2, out.stderr  # nothing ran: the installation is wrong, as for a missing plugin
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ['Error: Error importing plugin "broken": needs libfoo'], out.stderr
