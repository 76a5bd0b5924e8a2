"""Handoffs in the kernel: explicit handoff, routing through a router plugin, chains, the hop limit."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pyagent_handoffs import RouteResult

from pyagent import HandoffLoopError, agent, handoff, hookimpl
from pyagent.errors import ConfigurationError, PluginNotInstalledError
from pyagent.model.events import HANDOFF
from pyagent.model.tasks import TaskStatus
from pyagent.plugins import Runtime
from pyagent.testing import ScriptedModel


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
    with pytest.raises(PluginNotInstalledError, match="router 'embedding' is not installed: pip install pyagent-embedding-router"):
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


