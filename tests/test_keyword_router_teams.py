"""Handoff teams (pyagent-handoffs) routing with the keyword router (pyagent-keyword-router)."""

from __future__ import annotations

from typing import Any

import pytest

from pyagent import agent, handoff
from pyagent.plugin import Runtime


def _echo(name: str) -> Any:
    return lambda q: f"{name}: {q}"


@pytest.fixture
def desk() -> list[Any]:
    return [
        agent(_echo("sales"), name="sales", description="pricing, quotes, plans and new purchases"),
        agent(_echo("support"), name="support", description="bugs, errors, crashes and login problems"),
        agent(_echo("billing"), name="billing", description="invoices and payments, refunds and charges"),
    ]


def test_seed_team_routes_the_invoice_question_to_billing(runtime: Runtime) -> None:
    sales_agent = agent(_echo("sales"), name="sales", description="You handle sales inquiries")
    support_agent = agent(_echo("support"), name="support", description="You handle technical support")
    billing_agent = agent(_echo("billing"), name="billing",
                          description="You handle billing, invoices and payments")
    team = handoff.team([sales_agent, support_agent, billing_agent])
    result = team.route("I have a question about my invoice")
    assert result.agent == "billing"
    assert result.output == "billing: I have a question about my invoice"
    assert result.scores.router == "keyword"
    assert result.scores.confident and not result.scores.tie


def test_unmatched_query_is_reported_as_not_confident(runtime: Runtime, desk: list[Any]) -> None:
    result = handoff.team(desk).route("what's the weather on Mars")
    assert not result.scores.confident and result.scores.tie


def test_equal_descriptions_are_a_tie_in_team_order(runtime: Runtime) -> None:
    first = agent(_echo("a"), name="agent-a", description="orders and returns")
    second = agent(_echo("b"), name="agent-b", description="orders and returns")
    result = handoff.team([first, second]).route("where are my orders")
    assert result.scores.tie and result.scores.tied == ["agent-a", "agent-b"]
    assert result.agent == "agent-a"
