"""The llm router with a scripted model: a valid choice, invalid answers and failures falling back."""

from __future__ import annotations

from typing import Any

import pytest
from pyagent_llm_router import LLMRouter, router

from pyagent import ModelError, agent, handoff, hookimpl
from pyagent.testing import ScriptedModel

pytestmark = pytest.mark.anyio


def team_members() -> list[Any]:
    return [agent(lambda q: "sales answer", name="sales", description="Prices, quotes and new contracts"),
            agent(lambda q: "support answer", name="support", description="Technical problems, errors, crashes"),
            agent(lambda q: "billing answer", name="billing", description="Invoices, payments and refunds")]


class StandIn:
    """A stand-in router registered as 'keyword' (the real one is another plugin, not installed here)."""

    name = "keyword"

    def __init__(self) -> None:
        self.queries: list[str] = []

    def score(self, query: Any, agents: Any) -> list[tuple[str, float]]:
        self.queries.append(query)
        return [(a.name, 0.9 if a.name == "support" else 0.1) for a in agents]


class StandInPlugin:
    def __init__(self, stand_in: StandIn) -> None:
        self.stand_in = stand_in

    @hookimpl
    def pyagent_register_routers(self, register: Any) -> None:
        register("keyword", self.stand_in, default=True)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def pyagent_on_event(self, event: Any) -> None:
        self.events.append(event)


@pytest.fixture
def keyword(runtime: Any) -> StandIn:
    runtime.ensure_loaded()  # installed plugins first, so this registration wins over a real 'keyword'
    stand_in = StandIn()
    runtime.register(StandInPlugin(stand_in), "stand-in-keyword")
    return stand_in


def test_hook_registers_the_llm_router(runtime: Any) -> None:
    assert runtime.registry("routers")["llm"].obj is router
    assert not runtime.registry("routers")["llm"].options.get("default")


async def test_the_model_chooses_with_structured_output(runtime: Any) -> None:
    model = ScriptedModel([{"agent": "billing", "confidence": 0.9, "reason": "It is about a charge."}])
    r = LLMRouter(model=model)
    result = await handoff.team(team_members(), router=r).run("Why was I charged twice?")
    assert result.ok and result.agent == "billing" and result.output == "billing answer"
    assert result.scores is not None and result.scores.ranking[0] == ("billing", 0.9)
    (request,) = model.requests
    assert request.output is not None
    assert request.output.schema["properties"]["agent"]["enum"] == ["sales", "support", "billing"]
    assert "Why was I charged twice?" in request.prompt and "- billing: Invoices, payments and refunds" in request.prompt
    (decision,) = r.decisions
    assert (decision.by, decision.chosen, decision.reason) == ("llm", "billing", "It is about a charge.")


async def test_an_invalid_answer_falls_back_to_keyword_scoring(runtime: Any, keyword: StandIn) -> None:
    recorder = Recorder()
    runtime.register(recorder, "recorder")
    r = LLMRouter(model=ScriptedModel(["I think the finance team should take this."]))
    result = await handoff.team(team_members(), router=r).run("My app crashes on start")
    assert result.agent == "support" and keyword.queries == ["My app crashes on start"]
    (decision,) = r.decisions
    assert decision.by == "keyword" and "names no agent of the team" in (decision.fallback_reason or "")
    (event,) = [e for e in recorder.events if e.kind == "router.fallback"]
    assert event.data["fallback"] == "keyword" and event.data["chosen"] == "support"


async def test_an_unknown_name_falls_back(runtime: Any, keyword: StandIn) -> None:
    r = LLMRouter(model=ScriptedModel([{"agent": "finance", "confidence": 1, "reason": "money"}]))
    result = await handoff.team(team_members(), router=r).run("refund please")
    assert result.agent == "support"  # the stand-in's choice, not the invented "finance"
    assert "finance" in (r.decisions[-1].fallback_reason or "")


async def test_a_model_error_falls_back(runtime: Any, keyword: StandIn) -> None:
    r = LLMRouter(model=ScriptedModel([ModelError("rate limited", retryable=True)]))
    result = await handoff.team(team_members(), router=r).run("crash")
    assert result.ok and result.agent == "support"
    assert "the model failed: ModelError: rate limited" in (r.decisions[-1].fallback_reason or "")


async def test_without_the_fallback_router_the_route_fails_saying_why(monkeypatch: Any, runtime: Any) -> None:
    monkeypatch.setenv("PYAGENT_DISABLE_PLUGINS", "keyword")  # in case the keyword router is installed
    from pyagent import config

    config.reset()
    r = LLMRouter(model=ScriptedModel(["no idea"]))
    result = await handoff.team(team_members(), router=r).run("crash")
    assert not result.ok
    assert "fallback router 'keyword' is not installed" in (result.error or "")
    assert "names no agent of the team" in (result.error or "")


async def test_fallback_none_fails_the_route(runtime: Any, keyword: StandIn) -> None:
    r = LLMRouter(model=ScriptedModel(["no idea"]), fallback=None)
    result = await handoff.team(team_members(), router=r).run("crash")
    assert not result.ok and "no fallback router is set" in (result.error or "") and keyword.queries == []


async def test_confidence_is_clamped(runtime: Any) -> None:
    r = LLMRouter(model=ScriptedModel([{"agent": "sales", "confidence": 7, "reason": "quote"}]))
    scores = await handoff.team(team_members(), router=r).rank("a quote for 10 seats")
    assert scores.ranking[0] == ("sales", 1.0)


async def test_router_model_from_the_environment(runtime: Any, monkeypatch: Any) -> None:
    class Provider:
        @hookimpl
        def pyagent_register_models(self, register: Any) -> None:
            register("fake", lambda model_id: ScriptedModel(
                [{"agent": "support", "confidence": 0.8, "reason": model_id}]))

    runtime.register(Provider(), "fake-models")
    monkeypatch.setenv("PYAGENT_ROUTER_MODEL", "fake:router-small")
    result = await handoff.team(team_members(), router="llm").run("error 500 on login")
    assert result.agent == "support" and router.decisions[-1].reason == "router-small"
