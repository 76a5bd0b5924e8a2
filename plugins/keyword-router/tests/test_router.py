"""Routing decisions of the keyword router, through the plugin hook (teams that route with it: tests/test_keyword_router_teams.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pyagent_keyword_router import KeywordRouter, similarity

from pyagent import agent
from pyagent.plugins import Runtime


def _echo(name: str) -> Any:
    return lambda q: f"{name}: {q}"


@pytest.fixture
def desk() -> list[Any]:
    """A help desk of six agents, described the way the seed describes agents."""
    return [
        agent("You handle sales inquiries: pricing, quotes, plans and new purchases", name="sales"),
        agent("You handle technical support: bugs, errors, crashes, installation, login and "
              "password problems", name="support"),
        agent("You handle billing, invoices and payments, refunds and charges", name="billing"),
        agent(_echo("shipping"), name="shipping",
              description="Tracks orders, shipping, delivery and returns"),
        agent(_echo("hr"), name="hr",
              description="Answers employee questions about vacation, payroll, benefits and hiring"),
        agent(_echo("legal"), name="legal",
              description="Reviews contracts, privacy policies, GDPR and compliance"),
    ]


@pytest.mark.parametrize(("query", "expected"), [
    ("I have a question about my invoice", "billing"),
    ("Can I get a refund for last month?", "billing"),
    ("Why was I charged twice?", "billing"),
    ("My payment did not go through", "billing"),
    ("How much does the enterprise plan cost?", "sales"),
    ("Could you send me a quote for 50 seats?", "sales"),
    ("The app crashes every time I open it", "support"),
    ("I get an error while installing the package", "support"),
    ("I forgot my password and can't log in", "support"),
    ("Where is my order? It still hasn't been delivered", "shipping"),
    ("How do I return these shoes?", "shipping"),
    ("How many vacation days do I have left?", "hr"),
    ("When is payroll processed this month?", "hr"),
    ("Is this contract GDPR compliant?", "legal"),
    ("Please review our privacy policy", "legal"),
])
def test_routes_queries_to_the_agent_that_fits(runtime: Runtime, desk: list[Any], query: str,
                                               expected: str) -> None:
    ranking = KeywordRouter().score(query, desk)
    assert ranking[0][0] == expected, ranking
    assert ranking[0][1] > ranking[1][1]


def test_registered_as_the_default_router(runtime: Runtime) -> None:
    assert runtime.default_router_name() == "keyword"
    assert callable(runtime.lookup("router", "keyword").similarity)


def test_scores_are_between_zero_and_one_and_zero_without_a_match(desk: list[Any]) -> None:
    for query in ("invoice refund charges payments billing", "what's the weather on Mars", ""):
        for _, score in KeywordRouter().score(query, desk):
            assert 0.0 <= score <= 1.0
    assert all(s == 0.0 for _, s in KeywordRouter().score("what's the weather on Mars", desk))


def test_a_word_every_agent_mentions_decides_less_than_a_rare_one() -> None:
    agents = [
        agent(_echo("a"), name="a", description="customer accounts and customer onboarding"),
        agent(_echo("b"), name="b", description="customer refunds"),
    ]
    ranking = KeywordRouter().score("customer wants a refund", agents)
    assert ranking[0][0] == "b"


def test_focused_agent_beats_a_catch_all_description() -> None:
    generalist = agent(_echo("g"), name="generalist", description=(
        "Everything: sales, support, shipping, returns, refunds, contracts, hiring, invoices, "
        "security, onboarding, marketing, partnerships, events"))
    billing = agent(_echo("billing"), name="billing", description="invoices and billing")
    ranking = KeywordRouter().score("invoice", [generalist, billing])
    assert ranking[0][0] == "billing"


def test_agent_name_counts_when_there_is_no_description() -> None:
    agents = [agent(_echo(n), name=n, description="") for n in ("billing", "shipping", "legal")]
    assert KeywordRouter().score("my bill is wrong", agents)[0][0] == "billing"


def test_matches_explain_a_score(desk: list[Any]) -> None:
    router = KeywordRouter()
    billing = next(a for a in desk if a.name == "billing")
    assert router.matches("Refund my invoices please", billing) == ["invoic", "refund"]


def test_non_text_queries_are_rendered() -> None:
    agents = [agent(_echo("billing"), name="billing", description="invoices"),
              agent(_echo("sales"), name="sales", description="quotes")]
    assert KeywordRouter().score({"subject": "invoice 42"}, agents)[0][0] == "billing"


@pytest.mark.parametrize(("a", "b", "low", "high"), [
    ("We should adopt it", "We should adopt it", 1.0, 1.0),
    ("We should adopt it.", "Adopting it is what we should do", 1.0, 1.0),
    ("Yes, invest now", "yes -- INVEST now!", 1.0, 1.0),
    ("adopt the technology", "reject the proposal", 0.0, 0.0),
    ("adopt it", "do not adopt it", 0.1, 0.9),
    ("...", "...", 1.0, 1.0),
    ("...", "!!!", 0.0, 0.0),
])
def test_similarity(a: str, b: str, low: float, high: float) -> None:
    assert low <= similarity(a, b) <= high
    assert similarity(a, b) == pytest.approx(similarity(b, a))


@pytest.fixture
def company() -> list[Any]:
    """Five departments described as a company would brief its agents."""
    return [
        agent("You handle billing, invoices and payments", name="billing"),
        agent("You handle technical support: bugs, errors, crashes, login, signup and password "
              "problems", name="support"),
        agent("You handle sales inquiries: pricing, quotes, plans, demos and discounts", name="sales"),
        agent("You handle legal matters: contracts, terms of service, privacy, GDPR and compliance",
              name="legal"),
        agent("You are the engineering team: API integration, SDKs, webhooks, deployment and "
              "infrastructure", name="engineering"),
    ]


@pytest.mark.parametrize(("query", "expected"), [
    ("I have a question about my invoice", "billing"),
    ("I need a refund for my last payment", "billing"),
    ("Can you send me a copy of last month's invoices?", "billing"),
    ("My credit card payment failed", "billing"),
    ("My payments are not going through", "billing"),
    ("I was billed for a plan I cancelled", "billing"),
    ("The app crashes when I open settings", "support"),
    ("I can't log in to my account", "support"),
    ("I cannot sign up with my work email", "support"),
    ("I forgot my password", "support"),
    ("I'm getting an error 500 when saving", "support"),
    ("There's a bug in the export feature", "support"),
    ("How much does the enterprise plan cost?", "sales"),
    ("Can I get a quote for 50 seats?", "sales"),
    ("I'd like to schedule a demo", "sales"),
    ("Do you offer discounts for nonprofits?", "sales"),
    ("What is your pricing for startups?", "sales"),
    ("Can our lawyer review the contract?", "legal"),
    ("Are you GDPR compliant?", "legal"),
    ("Where is your privacy policy?", "legal"),
    ("I want to terminate the agreement per the terms of service", "legal"),
    ("How do I integrate your API with our backend?", "engineering"),
    ("The webhook isn't firing after we deployed", "engineering"),
    ("We deploy on Kubernetes: what infrastructure do you need?", "engineering"),
    ("Which SDK should I use for Python?", "engineering"),
])
def test_routes_a_company_help_desk(company: list[Any], query: str, expected: str) -> None:
    ranking = KeywordRouter().score(query, company)
    assert ranking[0][0] == expected, ranking
    assert ranking[0][1] > ranking[1][1], ranking


@pytest.mark.parametrize(("query", "joined"), [
    ("I can't log in", "login"),
    ("how do I sign up", "signup"),
])
def test_words_written_apart_meet_a_word_written_together(company: list[Any], query: str,
                                                           joined: str) -> None:
    support = next(a for a in company if a.name == "support")
    assert joined in KeywordRouter().matches(query, support)


def test_a_description_that_writes_words_apart_meets_a_query_that_joins_them() -> None:
    agents = [agent(_echo("shop"), name="shop", description="Sells shoes"),
              agent(_echo("account"), name="accounts", description="Helps people who cannot log in")]
    ranking = KeywordRouter().score("login broken", agents)
    assert ranking[0][0] == "accounts" and ranking[0][1] > 0, ranking


def test_contractions_leave_no_fragments() -> None:
    agents = [agent(_echo("x"), name="x", description="ca wo sha")]
    assert KeywordRouter().score("I can't, I won't, I shan't", agents)[0][1] == 0.0
