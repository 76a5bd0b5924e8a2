"""Handoffs in the kernel: explicit handoff, routing through a router plugin, chains, the hop limit."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from pyagent import HandoffLoopError, Task, Workflow, agent, handoff, hookimpl
from pyagent.errors import PluginNotInstalledError
from pyagent.model.events import HANDOFF
from pyagent.model.tasks import TaskStatus
from pyagent.plugin import HandoffResult
from pyagent.plugins import Runtime
from pyagent.testing import ManualClock, ScriptedModel


class WordRouter:
    """A throwaway router: the share of query words found in an agent's name or description."""

    name = "words"

    def score(self, query: str, agents: list[Any]) -> list[tuple[str, float]]:
        words = set(query.lower().split())
        out = []
        for a in agents:
            known = set(f"{a.name} {a.description}".lower().replace(",", " ").split())
            out.append((a.name, len(words & known) / max(1, len(words))))
        return sorted(out, key=lambda kv: -kv[1])


class RouterPlugin:
    def __init__(self, router: Any, name: str = "words", default: bool = True) -> None:
        self.router, self.name, self.default = router, name, default

    @hookimpl
    def pyagent_register_routers(self, register: Any) -> None:
        register(self.name, self.router, default=self.default)


class Monitor:
    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def pyagent_on_event(self, event: Any) -> None:
        self.events.append(event)


@pytest.fixture
def monitor(bare_runtime: Runtime) -> Monitor:
    m = Monitor()
    bare_runtime.register(m, "monitor")
    return m


@pytest.fixture
def router(bare_runtime: Runtime) -> WordRouter:
    r = WordRouter()
    bare_runtime.register(RouterPlugin(r), "words-router")
    return r


def test_handoff_runs_to_agent_with_context_and_what_from_agent_produced(bare_runtime: Runtime) -> None:
    bare_runtime.clock = ManualClock(start=500.0)
    calls: list[str] = []
    sales = agent(lambda x: calls.append("sales") or "sold", name="sales")

    @agent(name="support")
    def support(request: str, ctx: Any) -> str:
        calls.append("support")
        return f"support handles {request!r} after {ctx.result!r}"

    result = handoff(from_agent=sales, to_agent=support, context="Customer needs technical help",
                     from_output="quote 42")
    assert isinstance(result, HandoffResult)
    assert result.ok and result.agent == "support"
    assert result.output == "support handles 'Customer needs technical help' after 'quote 42'"
    assert calls == ["support"]  # the from agent has already done its part: it is not run again
    rec = result.handoff
    assert rec is not None
    assert (rec.from_agent, rec.to_agent, rec.reason, rec.timestamp) == (
        "sales", "support", "Customer needs technical help", 500.0)
    assert [(m.agent, m.content) for m in result.transcript] == [("sales", "quote 42")]


def test_llm_agent_sees_context_and_from_output_in_its_prompt(bare_runtime: Runtime) -> None:
    model = ScriptedModel(["On it."])
    support = agent("You handle technical support", name="support", model=model)
    result = handoff(from_agent="sales", to_agent=support, context="Printer is on fire",
                     from_output="Customer bought printer X")
    assert result.output == "On it."
    prompt = model.prompts[0]
    assert "Printer is on fire" in prompt and "Customer bought printer X" in prompt


def test_scripted_model_may_answer_with_an_async_function(bare_runtime: Runtime) -> None:
    # A scripted reply computed by a coroutine function (say, one that awaits a fake service)
    # is the awaited text, never the repr of a coroutine object.
    async def reply(prompt: str) -> str:
        await anyio.sleep(0)
        return f"re: {prompt.splitlines()[0]}"

    support = agent("You handle technical support", name="support", model=ScriptedModel(reply))
    result = handoff(from_agent="sales", to_agent=support, context="Printer is on fire")
    assert result.output == "re: Printer is on fire"


def test_agents_transfer_within_the_limit(bare_runtime: Runtime, monitor: Monitor) -> None:
    billing = agent(lambda x: f"billing answers {x}", name="billing")
    triage = agent(lambda x: handoff.to(billing, reason="about money", input=x.upper()), name="triage")
    result = handoff(from_agent="caller", to_agent=triage, context="refund please")
    assert result.ok and result.agent == "billing" and result.output == "billing answers REFUND PLEASE"
    assert [(r.mode, r.from_agent, r.to_agent, r.reason) for r in result.handoffs] == [
        ("handoff", "caller", "triage", "refund please"),
        ("transfer", "triage", "billing", "about money"),
    ]
    assert result.transfers == 1
    assert [e.data["mode"] for e in monitor.events if e.kind == HANDOFF] == ["handoff", "transfer"]
    blocked = handoff(from_agent="caller", to_agent=triage, context="x", max_hops=0)
    assert isinstance(blocked.exception, HandoffLoopError)


def _nested_ping_pong() -> tuple[Any, Any]:
    """Two agents that answer by calling handoff() themselves, each passing to the other."""
    agents: dict[str, Any] = {}

    def make(name: str, other: str) -> Any:
        async def run(x: str) -> Any:
            result = await handoff(from_agent=name, to_agent=agents[other], context=x)
            return result.raise_for_status().output
        return agent(run, name=name)

    agents["A"], agents["B"] = make("A", "B"), make("B", "A")
    return agents["A"], agents["B"]


def test_nested_handoff_calls_that_loop_end_at_the_hop_limit(bare_runtime: Runtime) -> None:
    # Each handoff() starts its own call; nested inside another call's agent, it is one more
    # hop of the same path, so A -> B -> A -> ... ends with the loop error, not a RecursionError.
    first, _ = _nested_ping_pong()
    result = handoff(from_agent="user", to_agent=first, context="hi", max_hops=4)
    assert result.status is TaskStatus.FAILED
    assert isinstance(result.exception, HandoffLoopError), result.error
    assert "max_hops=4" in (result.error or "")
    assert "A → B → A" in (result.error or "")


def test_nested_handoffs_within_the_limit_and_in_parallel_run(bare_runtime: Runtime) -> None:
    leaf = agent(lambda x: f"leaf({x})", name="leaf")

    async def fan_out(x: str) -> list[Any]:
        results: list[Any] = [None] * 6

        async def one(i: int) -> None:
            results[i] = (await handoff(from_agent="hub", to_agent=leaf, context=f"{x}{i}")).output

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(one, i)
        return results

    hub = agent(fan_out, name="hub")

    async def front(x: str) -> Any:
        return (await handoff(from_agent="front", to_agent=hub, context=x)).raise_for_status().output

    result = handoff(from_agent="user", to_agent=agent(front, name="front"), context="q", max_hops=2)
    # Six parallel handoffs from one agent are six paths of depth 2, not a path of depth 6.
    assert result.ok, result.error
    assert result.output == [f"leaf(q{i})" for i in range(6)]


@pytest.mark.anyio
async def test_a_handoff_inside_a_workflow_run_joins_its_audit_trail(mini_runtime: Runtime) -> None:
    from pyagent import Orchestrator

    monitor = Monitor()
    mini_runtime.register(monitor, "monitor")
    billing = agent(lambda x: f"billing: {x}", name="billing")

    async def triage(message: str) -> Any:
        passed = await handoff(from_agent="triage", to_agent=billing, context=message, reason="invoice")
        return passed.output

    wf = Workflow(name="Support", steps=[Task(name="triage", agent=triage)])
    result = await wf.run("my invoice")
    assert result.output == "billing: my invoice"
    events = [e for e in monitor.events if e.kind == HANDOFF]
    assert len(events) == 1  # delivered once, through the run
    assert events[0].run_id == result.run_id and events[0].workflow == "Support"
    assert (events[0].data["from_agent"], events[0].data["to_agent"]) == ("triage", "billing")
    record = Orchestrator().get_history(workflow="Support")[0]
    assert [(h.from_agent, h.to_agent, h.reason) for h in record.handoffs] == [
        ("triage", "billing", "invoice")]


def test_importing_the_module_leaves_pyagent_handoff_callable() -> None:
    import pyagent
    import pyagent.handoffs
    from pyagent import handoff as imported

    assert imported is pyagent.handoff is pyagent.handoffs.handoff
    assert callable(imported) and callable(imported.team) and callable(imported.chain)


def test_team_results_have_a_bounded_repr() -> None:
    from pyagent.model.context import Message
    from pyagent.patterns import TeamResult

    big = "y" * 1_000_000
    result = TeamResult(pattern="consensus", output=big, transcript=[Message("a", big, 1)] * 50)
    text = repr(result)
    assert len(text) < 500 and "messages=50" in text and text.startswith("TeamResult(pattern='consensus'")


def test_team_and_chain_without_the_plugin_name_it(bare_runtime: Runtime) -> None:
    a = agent(lambda x: x, name="a")
    with pytest.raises(PluginNotInstalledError, match="pyagent-handoffs"):
        handoff.team([a])
    with pytest.raises(PluginNotInstalledError, match="pyagent-handoffs"):
        handoff.chain(agents=[a], task="t")


def test_a_handoff_to_a_remote_agent_is_audited_with_where_it_went(bare_runtime: Runtime,
                                                                  monitor: Monitor) -> None:
    class Remote:
        """Stands for an agent in another process (an A2A agent): it says where it runs."""

        name = "far"
        description = "answers from elsewhere"
        remote_url = "http://127.0.0.1:9999"

        async def run(self, input: Any, ctx: Any) -> Any:
            return f"far: {input}"

    desk = agent(lambda x: handoff.to("far", reason="not mine"), name="desk")
    result = handoff(from_agent="front", to_agent=desk, context="q")
    assert result.status == TaskStatus.FAILED  # "far" is not known to this call by name
    result = handoff(from_agent="front", to_agent=Remote(), context="q")
    assert result.output == "far: q"
    assert result.handoff is not None and result.handoff.remote == "http://127.0.0.1:9999"
    [event] = [e for e in monitor.events if e.kind == HANDOFF and e.data["to_agent"] == "far"]
    assert event.data["remote"] == "http://127.0.0.1:9999"
    local = handoff(from_agent="front", to_agent=desk, context="q")
    assert local.handoffs[0].remote is None
