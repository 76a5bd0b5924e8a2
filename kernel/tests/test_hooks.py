"""One behavioural test per hook: a throwaway plugin implements it and the kernel uses it."""

from __future__ import annotations

from typing import Any

import pytest

from pyagent import Event, RunContext, agent, hookimpl
from pyagent.orchestrator import Orchestrator, Task, Workflow
from pyagent.testing import ScriptedModel

pytestmark = pytest.mark.anyio


async def test_hook_pyagent_register_executors(mini_runtime: Any) -> None:
    calls: list[str] = []

    class CountingExecutor:
        def __init__(self, **options: Any) -> None:
            self.options = options

        def call(self, agent: Any, input: Any, ctx: RunContext) -> Any:
            calls.append(agent.name)
            return agent.run(input, ctx)

    class Plugin:
        @hookimpl
        def pyagent_register_executors(self, register: Any) -> None:
            register("counting", CountingExecutor)

    mini_runtime.register(Plugin(), "counting-executor")
    wf = Workflow(name="w", executor="counting", executor_options={"tag": 1},
                  steps=[Task(name="a", agent=agent(lambda x: 1, name="one")), Task(name="b", agent=agent(lambda x: x + 1, name="two"))])
    result = await wf.run()
    assert result.output == 2 and calls == ["one", "two"]
    assert mini_runtime.executor("counting", {"tag": 1}).options == {"tag": 1}


async def test_hook_pyagent_register_patterns(bare_runtime: Any) -> None:
    class Reverse:
        async def execute(self, run: Any) -> Any:
            value = run.input
            for step in reversed(run.workflow.steps):
                value = (await run.run_step(step, value)).output
            return value

    class Plugin:
        @hookimpl
        def pyagent_register_patterns(self, register: Any) -> None:
            register("reverse", Reverse())

    bare_runtime.register(Plugin(), "reverse")
    wf = Workflow(name="w", pattern="reverse", steps=[Task(name="a", agent=lambda x: x + "a"), Task(name="b", agent=lambda x: x + "b")])
    assert (await wf.run("")).output == "ba"
    assert bare_runtime.plugins["reverse"].provides == {"patterns": ["reverse"]}


def test_hook_pyagent_register_routers(bare_runtime: Any) -> None:
    class FirstRouter:
        def score(self, query: str, agents: list[Any]) -> list[tuple[str, float]]:
            return [(a.name, 1.0) for a in agents]

    class Plugin:
        @hookimpl
        def pyagent_register_routers(self, register: Any) -> None:
            register("first", FirstRouter())
            register("best", FirstRouter(), default=True)

    bare_runtime.register(Plugin(), "routers")
    assert bare_runtime.default_router_name() == "best"
    router = bare_runtime.lookup("router", "first")
    assert router.score("q", [agent(lambda x: x, name="a")]) == [("a", 1.0)]


def test_hook_pyagent_register_stores(bare_runtime: Any) -> None:
    class DictStore:
        def __init__(self, url: str) -> None:
            self.url = url

    class Plugin:
        @hookimpl
        def pyagent_register_stores(self, register: Any) -> None:
            register("dict", DictStore)

    bare_runtime.register(Plugin(), "dict-store")
    factory = bare_runtime.driver("stores", "dict")
    assert factory("dict://x").url == "dict://x"


async def test_hook_pyagent_on_event(mini_runtime: Any) -> None:
    kinds: list[str] = []

    class Plugin:
        @hookimpl
        def pyagent_on_event(self, event: Event) -> None:
            kinds.append(event.kind)

    mini_runtime.register(Plugin(), "recorder")
    await Workflow(name="w", steps=[Task(name="a", agent=lambda x: 1 / 0)]).run()
    assert kinds == ["workflow.started", "task.started", "task.failed", "workflow.failed"]


async def test_hook_pyagent_register_monitors(mini_runtime: Any) -> None:
    from pyagent.monitors import create, monitor_class

    kinds: list[str] = []

    class Recorder:
        def __init__(self, prefix: str = "") -> None:
            self.prefix = prefix

        def on_event(self, event: Event) -> None:
            kinds.append(self.prefix + event.kind)

    class Plugin:
        @hookimpl
        def pyagent_register_monitors(self, register: Any) -> None:
            register("recorder", Recorder)

    mini_runtime.register(Plugin(), "recorder-plugin")
    assert monitor_class("recorder") is Recorder
    assert create("recorder", prefix="x:").prefix == "x:"
    orch = Orchestrator(monitors=[{"name": "recorder", "prefix": "by name:"}])
    orch.add_workflow(Workflow(name="w", steps=[Task(name="a", agent=lambda x: 1)]))
    await orch.run_workflow("w")
    assert kinds == ["by name:workflow.started", "by name:task.started", "by name:task.completed",
                     "by name:workflow.completed"]
    assert mini_runtime.plugins["recorder-plugin"].provides == {"monitors": ["recorder"]}


def test_hook_pyagent_register_triggers(bare_runtime: Any) -> None:
    made: list[dict[str, Any]] = []

    class FakeCron:
        def __init__(self, orchestrator: Any, workflow: Any, **options: Any) -> None:
            made.append({"workflow": workflow.name, **options})

        async def serve(self, host: Any) -> None:
            return None

    class Plugin:
        @hookimpl
        def pyagent_register_triggers(self, register: Any) -> None:
            register("cron", FakeCron)

    bare_runtime.register(Plugin(), "cron")
    orch = Orchestrator()
    wf = Workflow(name="daily_report", steps=[Task(name="t", agent=lambda x: x)])
    trigger = orch.schedule(wf, cron="0 9 * * MON-FRI")
    assert isinstance(trigger, FakeCron) and orch.triggers == [trigger]
    assert made == [{"workflow": "daily_report", "cron": "0 9 * * MON-FRI"}]


async def test_hook_pyagent_register_web_apps(mini_runtime: Any) -> None:
    import anyio

    seen: list[Any] = []
    lifespan: list[str] = []

    async def ui(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                lifespan.append("startup")
                await send({"type": "lifespan.startup.complete"})
            lifespan.append("shutdown")
            await send({"type": "lifespan.shutdown.complete"})

    async def http_server(host: Any, *, task_status: Any) -> None:
        seen.append([(w.path, w.app, w.plugin) for w in host.web_apps])  # what it mounts
        task_status.started()
        await anyio.sleep_forever()

    class Plugin:
        @hookimpl
        def pyagent_register_web_apps(self, register: Any) -> None:
            register("/ui", lambda orchestrator, host: seen.append((orchestrator, host)) or ui)

        @hookimpl
        def pyagent_register_triggers(self, register: Any) -> None:
            register("http", lambda orch, wf, **o: object(), serve=http_server, http=True)

    mini_runtime.register(Plugin(), "ui-plugin")
    orch = Orchestrator()
    async with orch.serving(port=0) as host:
        assert lifespan == ["startup"]
        assert seen == [(orch, host), [("/ui", ui, "ui-plugin")]]  # built, then mounted with no trigger of its kind
    assert lifespan == ["startup", "shutdown"]
    assert mini_runtime.plugins["ui-plugin"].provides["web_apps"] == ["/ui"]


async def test_hook_pyagent_register_models(bare_runtime: Any) -> None:
    class Plugin:
        @hookimpl
        def pyagent_register_models(self, register: Any) -> None:
            register("fake", lambda model_id: ScriptedModel(lambda prompt: f"[{model_id}] {prompt}"))

    bare_runtime.register(Plugin(), "fake-models")
    named = agent("You answer", model="fake:small")
    assert await named.run("hi", RunContext()) == "[small] hi"
    only = agent("You answer")  # no model given: the only provider is used
    assert await only.run("yo", RunContext()) == "[None] yo"


def test_hook_pyagent_register_commands(bare_runtime: Any) -> None:
    import click
    from click.testing import CliRunner

    from pyagent.cli import main

    loaded: list[str] = []

    @click.group()
    def tools() -> None:
        """Tools a plugin adds."""

    @tools.command()
    @click.argument("who")
    def greet(who: str) -> None:
        click.echo(f"hello {who}")

    def load() -> click.Group:
        loaded.append("tools")
        return tools

    class Plugin:
        @hookimpl
        def pyagent_register_commands(self, register: Any) -> None:
            register("tools", load)
            register("run", tools)  # the kernel's own command keeps its name

    bare_runtime.register(Plugin(), "tool-commands")
    assert loaded == []  # nothing imported until the command is used
    out = CliRunner().invoke(main, ["tools", "greet", "ada"])
    assert out.exit_code == 0, out.output
    assert out.output == "hello ada\n" and loaded == ["tools"]
    assert "tools" in CliRunner().invoke(main, ["--help"]).output
    assert "Run a workflow" in CliRunner().invoke(main, ["run", "--help"]).output
    assert bare_runtime.plugins["tool-commands"].provides == {"commands": ["tools", "run"]}
    # A command this project's plugins provide, not installed here: how to get it.
    missing = CliRunner().invoke(main, ["mcp", "serve", "x.py"])
    assert missing.exit_code == 2 and "pip install pyagent-mcp" in missing.output
    missing = CliRunner().invoke(main, ["dashboard", "--storage", "sqlite://runs.db"])
    assert missing.exit_code == 2 and "pip install pyagent-dashboard" in missing.output
