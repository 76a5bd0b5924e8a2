"""Handoffs in the kernel: explicit handoff, routing through a router plugin, chains, the hop limit."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from pyagent import HandoffLoopError, Task, Workflow, agent, handoff, hookimpl
from pyagent.errors import ConfigurationError, PluginNotInstalledError
from pyagent.handoffs import HandoffResult, RouteResult
from pyagent.model.events import HANDOFF
from pyagent.model.tasks import TaskStatus
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


def test_every_handoff_is_an_event(bare_runtime: Runtime, monitor: Monitor) -> None:
    a = agent(lambda x: x + "a", name="a")
    b = agent(lambda x: x + "b", name="b")
    c = agent(lambda x: x + "c", name="c")
    result = handoff.chain(agents=[a, b, c], task="")
    events = [e for e in monitor.events if e.kind == HANDOFF]
    assert [(e.data["from_agent"], e.data["to_agent"]) for e in events] == [("a", "b"), ("b", "c")]
    assert all(e.run_id == result.run_id for e in events)
    assert [(r.from_agent, r.to_agent) for r in result.handoffs] == [("a", "b"), ("b", "c")]


@pytest.mark.anyio
async def test_one_call_helpers_are_awaitable_inside_a_loop(bare_runtime: Runtime, router: WordRouter) -> None:
    a = agent(lambda x: "A:" + x, name="alpha", description="alpha things")
    b = agent(lambda x: "B:" + x, name="beta", description="beta things")
    assert (await handoff(from_agent=a, to_agent=b, context="hi")).output == "B:hi"
    assert (await handoff.chain(agents=[a, b], task="t")).output == "B:A:t"
    routed = await handoff.team([a, b]).route("beta please")
    assert routed.agent == "beta"
    assert (await handoff.team([a, b]).run("alpha please")).agent == "alpha"


def test_chain_passes_output_or_the_task(bare_runtime: Runtime) -> None:
    seen: list[tuple[str, Any]] = []

    def make(name: str) -> Any:
        return agent(lambda x, n=name: seen.append((n, x)) or f"{n}({x})", name=name)

    researcher, analyst, writer = make("researcher"), make("analyst"), make("writer")
    built = handoff.chain(agents=[researcher, analyst, writer], task="report", pass_output=True)
    assert built.output == "writer(analyst(researcher(report)))"
    assert [s.agent for s in built.steps] == ["researcher", "analyst", "writer"]

    seen.clear()
    independent = handoff.chain(agents=[researcher, analyst, writer], task="report", pass_output=False)
    assert seen == [("researcher", "report"), ("analyst", "report"), ("writer", "report")]
    assert independent.output == "writer(report)"


def test_chain_agents_know_the_task_and_every_earlier_output(bare_runtime: Runtime) -> None:
    seen: dict[str, tuple[Any, dict[str, Any]]] = {}

    def make(name: str) -> Any:
        def run(x: str, ctx: Any) -> str:
            seen[name] = (ctx.extra.get("task"), dict(ctx.results))
            return f"{name}({x})"
        return agent(run, name=name)

    handoff.chain(agents=[make("researcher"), make("analyst"), make("writer")], task="report")
    assert seen["researcher"] == ("report", {})
    assert seen["analyst"] == ("report", {"researcher": "researcher(report)"})
    assert seen["writer"] == ("report", {"researcher": "researcher(report)",
                                         "analyst": "analyst(researcher(report))"})


def test_llm_agents_in_a_chain_read_the_task_and_the_earlier_outputs(bare_runtime: Runtime) -> None:
    # A writer that only saw the analyst's notes would not know it is writing a market report,
    # nor what the researcher found.
    models = [ScriptedModel(["FACTS: the market grew 12%"]), ScriptedModel(["ANALYSIS: strong growth"]),
              ScriptedModel(["REPORT"])]
    members = [agent(f"You are the {n}.", name=n, model=m)
               for n, m in zip(("researcher", "analyst", "writer"), models, strict=True)]
    result = handoff.chain(agents=members, task="Create a market report", pass_output=True)
    assert result.ok and result.output == "REPORT"
    prompt = models[2].prompts[0]
    assert prompt.startswith("ANALYSIS: strong growth")  # its input is still the previous output
    assert "Create a market report" in prompt and "FACTS: the market grew 12%" in prompt


def test_chain_stops_at_a_failing_agent_with_the_cause(bare_runtime: Runtime) -> None:
    ran: list[str] = []

    def boom(x: str) -> str:
        raise ValueError("no data")

    first = agent(lambda x: ran.append("first") or x, name="first")
    last = agent(lambda x: ran.append("last") or x, name="last")
    result = handoff.chain(agents=[first, agent(boom, name="broken"), last], task="t")
    assert result.status is TaskStatus.FAILED
    assert result.agent == "broken"
    assert "agent 'broken' failed: ValueError: no data" in (result.error or "")
    assert isinstance(result.exception, ValueError)
    assert ran == ["first"]
    with pytest.raises(ValueError):
        result.raise_for_status()


def test_bad_arguments_raise_before_anything_runs(bare_runtime: Runtime) -> None:
    a = agent(lambda x: x, name="a")
    with pytest.raises(ConfigurationError, match="empty"):
        handoff.chain(agents=[], task="t")
    with pytest.raises(ConfigurationError, match="empty"):
        handoff.team([])
    with pytest.raises(ConfigurationError, match="distinct names"):
        handoff.team([a, agent(lambda x: x, name="a")])
    with pytest.raises(ConfigurationError, match="to_agent"):
        handoff(from_agent=a, context="x")
    with pytest.raises(ConfigurationError, match="max_hops"):
        handoff.chain(agents=[a], task="t", max_hops=-1)
    with pytest.raises(ConfigurationError, match="agent or a callable"):
        handoff(from_agent=a, to_agent=42, context="x")


def _ping_pong() -> tuple[Any, Any]:
    ping = agent(lambda x: handoff.to("pong", reason="your turn"), name="ping")
    pong = agent(lambda x: handoff.to("ping", reason="no, yours"), name="pong")
    return ping, pong


@pytest.mark.anyio
async def test_hop_limit_ends_a_handoff_loop(bare_runtime: Runtime, router: WordRouter) -> None:
    ping, pong = _ping_pong()
    team = handoff.team([ping, pong], max_hops=5)
    with anyio.fail_after(5):
        result = await team.route("ping")
    assert result.status is TaskStatus.FAILED
    assert isinstance(result.exception, HandoffLoopError)
    assert "max_hops=5" in (result.error or "")
    assert result.transfers == 5
    with pytest.raises(HandoffLoopError):
        result.raise_for_status()


def test_hop_limit_default_and_environment(bare_runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    ping, pong = _ping_pong()
    result = handoff(from_agent="caller", to_agent=ping, context="go", reason="start")
    # ping's transfer to "pong" needs pong to be known: hand off inside a chain instead.
    assert result.status is TaskStatus.FAILED and "not known here" in (result.error or "")
    assert handoff.chain(agents=[ping, pong], task="go").transfers == 10
    monkeypatch.setenv("PYAGENT_HANDOFF_MAX_HOPS", "3")
    assert handoff.chain(agents=[ping, pong], task="go").transfers == 3
    monkeypatch.setenv("PYAGENT_HANDOFF_MAX_HOPS", "lots")
    with pytest.raises(ConfigurationError, match="PYAGENT_HANDOFF_MAX_HOPS"):
        handoff.chain(agents=[ping], task="go")


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


def test_router_picks_the_best_agent_and_reports_scores(bare_runtime: Runtime, router: WordRouter) -> None:
    sales = agent(lambda q: "sales: " + q, name="sales", description="new customers, pricing, quotes")
    billing = agent(lambda q: "billing: " + q, name="billing", description="invoice payments refunds")
    team = handoff.team([sales, billing])
    result = team.route("my invoice is wrong")
    assert isinstance(result, RouteResult)
    assert result.agent == "billing" and result.output == "billing: my invoice is wrong"
    assert result.scores is not None
    assert result.scores.router == "words" and result.scores.chosen == "billing"
    assert result.scores["billing"] > result.scores["sales"] == 0.0
    assert result.scores.confident and not result.scores.tie
    rec = result.handoff
    assert rec is not None and rec.mode == "route" and rec.to_agent == "billing"
    assert "words" in rec.from_agent and "0.25" in rec.reason


def test_ties_and_low_confidence_are_reported(bare_runtime: Runtime, router: WordRouter) -> None:
    a = agent(lambda q: "a", name="a", description="orders")
    b = agent(lambda q: "b", name="b", description="orders")
    tie = handoff.team([a, b]).route("orders")
    assert tie.scores is not None and tie.scores.tie and tie.scores.tied == ["a", "b"]
    assert tie.agent == "a"  # team order breaks ties

    unsure = handoff.team([a, b]).route("weather tomorrow")
    assert unsure.scores is not None and not unsure.scores.confident
    assert "low confidence" in (unsure.handoff.reason if unsure.handoff else "")

    human = agent(lambda q: "a human will call you", name="human")
    fell_back = handoff.team([a, b], fallback=human).route("weather tomorrow")
    assert fell_back.agent == "human" and fell_back.scores is not None and fell_back.scores.fallback_used


def test_team_can_name_its_router(bare_runtime: Runtime, router: WordRouter) -> None:
    class Contrarian:
        def score(self, query: str, agents: list[Any]) -> list[tuple[str, float]]:
            return [(agents[-1].name, 0.9)]

    bare_runtime.register(RouterPlugin(Contrarian(), name="contrarian", default=False), "contrarian")
    a = agent(lambda q: "a", name="a", description="apples")
    b = agent(lambda q: "b", name="b", description="bananas")
    assert handoff.team([a, b]).route("apples").agent == "a"
    assert handoff.team([a, b], router="contrarian").route("apples").agent == "b"
    assert handoff.team([a, b], router=Contrarian()).route("apples").agent == "b"
    with pytest.raises(PluginNotInstalledError, match="embedding-router"):
        handoff.team([a, b], router="embedding").route("apples")


def test_no_router_installed_names_the_plugin(bare_runtime: Runtime) -> None:
    team = handoff.team([agent(lambda q: q, name="a")])
    with pytest.raises(PluginNotInstalledError, match="pip install pyagent-keyword-router"):
        team.route("anything")


@pytest.mark.anyio
async def test_async_router_and_bad_router_output(bare_runtime: Runtime) -> None:
    class AsyncRouter:
        async def score(self, query: str, agents: list[Any]) -> list[tuple[str, float]]:
            await anyio.sleep(0)
            return [("b", 0.7), ("a", 0.2)]

    class Confused:
        def score(self, query: str, agents: list[Any]) -> list[tuple[str, float]]:
            return [("nobody", 1.0)]

    a, b = agent(lambda q: "a", name="a"), agent(lambda q: "b", name="b")
    routed = await handoff.team([a, b], router=AsyncRouter()).route("q")
    assert routed.agent == "b" and routed.scores is not None
    assert routed.scores.ranking == [("b", 0.7), ("a", 0.2)]
    ranked = await handoff.team([a, b], router=AsyncRouter()).rank("q")
    assert ranked.chosen == "b"
    bad = await handoff.team([a, b], router=Confused()).route("q")
    assert bad.status is TaskStatus.FAILED and "not in the team" in (bad.error or "")
    with pytest.raises(ConfigurationError, match="router="):
        handoff.team([a], router=42)


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
