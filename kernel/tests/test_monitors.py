"""Monitors by name and by configuration, event routing by kind, and monitors that misbehave."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pyagent import ConfigurationError, Event, PluginNotInstalledError, config, hookimpl
from pyagent.orchestrator import Orchestrator, Task, Workflow

pytestmark = pytest.mark.anyio


class Recorder:
    made: list[Recorder] = []

    def __init__(self, level: int = 1, kinds: list[str] | None = None) -> None:
        self.level = level
        self.events: list[Event] = []
        self.closed = False
        if kinds is not None:
            self.event_kinds = frozenset(kinds)
        Recorder.made.append(self)

    def on_event(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed = True


class RecorderPlugin:
    @hookimpl
    def pyagent_register_monitors(self, register: Any) -> None:
        register("recorder", Recorder)
        register("console", Recorder)  # stands in for pyagent-console's kind


@pytest.fixture
def mrt(mini_runtime: Any) -> Any:
    Recorder.made.clear()
    mini_runtime.register(RecorderPlugin(), "recorder-plugin")
    return mini_runtime


def test_a_missing_monitor_plugin_names_the_distribution_and_the_clone_path(bare_runtime: Any) -> None:
    import pyagent.monitors as monitors

    with pytest.raises(PluginNotInstalledError, match=r"monitor 'slack' \(SlackMonitor\) is not installed: "
                       r"pip install pyagent-slack \(from a clone of pyagent: pip install \./plugins/slack"):
        from pyagent.monitors import SlackMonitor  # noqa: F401
    with pytest.raises(PluginNotInstalledError, match=r"pip install \./plugins/otel"):
        monitors.OpenTelemetryMonitor  # noqa: B018
    with pytest.raises(PluginNotInstalledError, match="unknown monitor 'consle'; did you mean 'console'"):
        Orchestrator(monitors=["consle"])
    with pytest.raises(AttributeError):
        monitors.NoSuchMonitor  # noqa: B018


def test_options_are_checked_and_name_where_they_came_from(mrt: Any) -> None:
    from pyagent.monitors import create

    with pytest.raises(ConfigurationError, match="monitor 'recorder' has no option 'levl': did you mean 'level'"):
        create("recorder", levl=2)
    with pytest.raises(ConfigurationError, match=r"monitor 'recorder' \(from my.toml\) has no option"):
        create({"name": "recorder", "colour": "red"}, source="my.toml")
    with pytest.raises(ConfigurationError, match="no on_event"):
        Orchestrator(monitors=[object()])


@pytest.mark.parametrize(("text", "expected"), [
    ('monitors = ["recorder", "console"]', [("recorder", {}), ("console", {})]),
    ('[monitors.recorder]\nlevel = 3\n[monitors.console]\n', [("recorder", {"level": 3}), ("console", {})]),
    ('[monitors]\nrecorder = true\nconsole = false\n', [("recorder", {})]),
    ('[[monitors]]\nname = "recorder"\nlevel = 2\n[[monitors]]\nname = "recorder"\nlevel = 5\n',
     [("recorder", {"level": 2}), ("recorder", {"level": 5})]),
    ('monitors = ["console", {name = "recorder", level = 4}]', [("console", {}), ("recorder", {"level": 4})]),
])
def test_every_configuration_shape(tmp_path: Path, text: str, expected: list[Any]) -> None:
    (tmp_path / "pyagent.toml").write_text(text)
    specs = config.load_settings(tmp_path).monitors
    assert [(s.name, s.options) for s in specs] == expected


@pytest.mark.parametrize(("text", "message"), [
    ('monitors = [{level = 1}]', "monitor 0 is a table without a name"),
    ('monitors = ["bad name"]', "monitor name 'bad name' is not a monitor kind"),
    ('monitors = [3]', "monitor 0 is 3"),
    ('[monitors]\nrecorder = 3\n', "the options of monitor 'recorder' must be a table"),
    ('monitors = 3', "monitors must be a list of names or tables"),
])
def test_bad_monitor_settings_are_clear(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "pyagent.toml").write_text(text)
    with pytest.raises(ConfigurationError, match=rf"invalid pyagent settings from .*pyagent.toml: monitors.*{message}"):
        config.load_settings(tmp_path)


def test_the_environment_names_monitors(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("PYAGENT_MONITORS", "recorder, console")
    assert [s.name for s in config.load_settings(tmp_path).monitors] == ["recorder", "console"]


async def test_configured_monitors_see_every_run_once_nested_runs_included(mrt: Any, tmp_path: Path,
                                                                          monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyagent.toml").write_text('[monitors.recorder]\nlevel = 7\n')
    inner = Workflow(name="inner", steps=[Task(name="i", agent=lambda x: x)])
    outer = Workflow(name="outer", steps=[Task(name="sub", agent=inner)])
    await outer.run(1)  # no orchestrator: configured monitors report on every run in the process
    await outer.run(2)
    (monitor,) = Recorder.made  # built once
    assert monitor.level == 7
    kinds = [(e.workflow, e.kind) for e in monitor.events]
    assert kinds.count(("inner", "task.completed")) == 2  # a sub-workflow's events arrive once
    assert kinds.count(("outer", "workflow.completed")) == 2
    config.configure(monitors=["recorder"])  # settings changed: rebuilt, the old one closed
    await outer.run(3)
    assert len(Recorder.made) == 2 and Recorder.made[0].closed
    assert ("outer", "workflow.completed") in [(e.workflow, e.kind) for e in Recorder.made[1].events]


async def test_configuration_errors_surface_before_the_run(mrt: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyagent.toml").write_text('[monitors.recorder]\nlevl = 7\n')
    calls: list[int] = []
    wf = Workflow(name="w", steps=[Task(name="t", agent=lambda x: calls.append(1))])
    with pytest.raises(ConfigurationError, match=r"monitor 'recorder' \(from the monitors setting in .*pyagent.toml\) "
                                                 "has no option 'levl'"):
        await wf.run()
    assert calls == []


async def test_a_monitor_gets_only_the_kinds_it_wants(mrt: Any) -> None:
    picky = Recorder(kinds=["workflow.completed", "task.failed"])
    everything = Recorder()
    orch = Orchestrator(monitors=[picky, everything])
    orch.add_workflow(Workflow(name="w", steps=[Task(name=f"t{i}", agent=lambda x: x) for i in range(5)]))
    await orch.run_workflow("w")
    assert [e.kind for e in picky.events] == ["workflow.completed"]
    assert len(everything.events) == 12


async def test_no_event_is_built_when_no_listener_wants_its_kind(mrt: Any, monkeypatch: Any) -> None:
    from pyagent.model import events

    built: list[str] = []
    real = events.Event.__init__

    def counting(self: Any, kind: str, **kw: Any) -> None:
        built.append(kind)
        real(self, kind, **kw)

    monkeypatch.setattr(events.Event, "__init__", counting)
    orch = Orchestrator(monitors=[Recorder(kinds=["workflow.failed"])])
    orch.add_workflow(Workflow(name="w", steps=[Task(name=f"t{i}", agent=lambda x: x) for i in range(20)]))
    await orch.run_workflow("w")
    assert built == []


async def test_a_raising_or_slow_monitor_changes_neither_result_nor_timing_beyond_its_own_cost(mrt: Any) -> None:
    wf = Workflow(name="w", steps=[Task(name=f"t{i}", agent=lambda x: x + 1) for i in range(50)])
    baseline = await wf.run(0)

    class Raising:
        def on_event(self, event: Event) -> None:
            raise RuntimeError("monitor bug")

    class Slow:
        delay = 0.002

        def on_event(self, event: Event) -> None:
            time.sleep(self.delay)

    errors = mrt.monitor_errors
    orch = Orchestrator(monitors=[Raising()])
    orch.add_workflow(wf)
    result = await orch.run_workflow("w", 0)
    assert (result.status, result.output, list(result.outputs)) == (baseline.status, 50, list(baseline.outputs))
    assert mrt.monitor_errors - errors == 102  # every event, each logged and counted

    slow = Slow()
    orch.set_monitors([slow])
    started = time.perf_counter()
    result = await orch.run_workflow("w", 0)
    took = time.perf_counter() - started
    assert result.output == 50
    events_delivered = 102
    assert took < events_delivered * slow.delay * 3 + 0.5  # its own cost, nothing more


async def test_a_monitor_whose_event_kinds_cannot_be_read_never_breaks_a_run(mrt: Any) -> None:
    class NotKinds:
        event_kinds = 5

        def on_event(self, event: Event) -> None: ...

    with pytest.raises(ConfigurationError, match="event_kinds"):
        Orchestrator(monitors=[NotKinds()])  # found when it is set, with what to write instead

    class Flaky:
        """Its event_kinds reads fine once, then raises (a property with a bug)."""

        reads = 0

        def __init__(self) -> None:
            self.events: list[Event] = []

        @property
        def event_kinds(self) -> frozenset[str]:
            Flaky.reads += 1
            if Flaky.reads > 1:
                raise RuntimeError("property bug")
            return frozenset({"workflow.completed"})

        def on_event(self, event: Event) -> None:
            self.events.append(event)

    flaky = Flaky()
    orch = Orchestrator(monitors=[flaky])
    wf = orch.add_workflow(Workflow(name="w", steps=[Task(name="t", agent=lambda x: x + 1)]))
    result = await orch.run_workflow(wf, 1)
    assert result.ok and result.output == 2  # the run is unchanged; the monitor gets every event
    assert "workflow.completed" in [e.kind for e in flaky.events]


async def test_team_events_inside_a_run_reach_the_runs_own_listeners(mrt: Any) -> None:
    from pyagent.plugins import get_runtime

    hook_events: list[str] = []

    class Hook:
        @hookimpl
        def pyagent_on_event(self, event: Event) -> None:
            if event.kind.startswith("team."):
                hook_events.append(event.kind)

    mrt.register(Hook(), "hook")

    def team_agent(x: Any, ctx: Any) -> str:
        get_runtime().broadcast(Event("team.started", workflow="consensus", run_id=ctx.run_id))
        return "done"

    seen: list[Event] = []
    wf = Workflow(name="w", steps=[Task(name="t", agent=team_agent)])
    result = await wf.run(on_event=seen.append)
    team = [e for e in seen if e.kind == "team.started"]
    assert len(team) == 1 and team[0].run_id == result.run_id
    assert hook_events == ["team.started"]  # process-wide hooks once, through the run
    get_runtime().broadcast(Event("team.started", workflow="consensus", run_id="outside"))
    assert hook_events == ["team.started", "team.started"]


async def test_a_circuit_change_is_announced_before_the_run_ends(mrt: Any) -> None:
    def boom(x: Any) -> Any:
        raise RuntimeError("down")

    wf = Workflow(name="w", steps=[Task(name="t", agent=boom)], circuit_breaker={"failure_threshold": 1})
    seen: list[str] = []
    await wf.run(on_event=lambda e: seen.append(e.kind))
    assert seen[-2:] == ["circuit.changed", "workflow.failed"]


def test_the_progress_choice_for_run_and_serve(mrt: Any, tmp_path: Path, monkeypatch: Any) -> None:
    from pyagent.cli.progress import progress_monitor

    monkeypatch.chdir(tmp_path)
    assert isinstance(progress_monitor("w"), Recorder)  # the console kind when installed
    config.configure(monitors=["console"])
    assert progress_monitor("w") is None  # configured: it reports on every run already


def test_plain_progress_without_a_console_plugin(mini_runtime: Any) -> None:
    from pyagent.cli.progress import PlainProgress, progress_monitor

    monitor = progress_monitor("w")
    assert isinstance(monitor, PlainProgress)
    monitor.close()


def test_seed_monitor_names_import_from_pyagent_monitors(mrt: Any) -> None:
    from pyagent.monitors import CLASSES, ConsoleMonitor

    assert ConsoleMonitor is Recorder  # whatever the installed plugin registered as "console"
    assert set(CLASSES) == {"ConsoleMonitor", "SlackMonitor", "PrometheusMonitor", "OpenTelemetryMonitor"}
