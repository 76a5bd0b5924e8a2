"""Every pattern with language-model agents, end to end over HTTP (everything installed).

The agents are ``agent("instructions")`` with ``PYAGENT_MODEL=openai:test-model`` and
``OPENAI_BASE_URL`` pointing at the loopback chat-completions server, so each call goes through
the real ``openai`` SDK and the real protocol. The server answers as a function of what it was
sent (who is asking, and with which response format), and the tests assert what was sent as
well as what the pattern made of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pyagent_openai.testing import ChatServer, reply

from pyagent import agent, config, handoff
from pyagent.orchestrator import AgentPatterns, ExecutionPattern, Task, Workflow


def system(body: dict[str, Any]) -> str:
    return str(body["messages"][0]["content"])


def user(body: dict[str, Any]) -> str:
    return str([m for m in body["messages"] if m["role"] == "user"][-1]["content"])


def schema_name(body: dict[str, Any]) -> str | None:
    fmt = body.get("response_format")
    return fmt["json_schema"]["name"] if fmt else None


@pytest.fixture
def serve(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Start a server answering with ``handler`` and point PYAGENT_MODEL at it."""
    servers: list[ChatServer] = []

    def start(handler: Any) -> ChatServer:
        server = ChatServer(handler=handler)
        server.start()
        servers.append(server)
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
        monkeypatch.setenv("PYAGENT_MODEL", "openai:test-model")
        config.reset()
        return server

    yield start
    for server in servers:
        server.stop()


def test_supervisor(serve: Any) -> None:
    def answer(body: dict[str, Any]) -> Any:
        who = system(body)
        if who.startswith("You manage"):
            if schema_name(body) == "list":
                return reply({"result": ["Collect AI adoption figures", "Summarise the risks"]})
            return reply("REPORT: adoption is up 40%; main risk is cost.")
        if who.startswith("You research"):
            return reply("adoption is up 40%")
        return reply("main risk is cost")

    server = serve(answer)
    manager = agent("You manage a research team", name="manager")
    workers = [agent("You research facts", name="researcher"), agent("You analyse risks", name="analyst")]
    team = AgentPatterns.supervisor(supervisor=manager, workers=workers, strategy="round_robin")
    import anyio

    result = anyio.run(team.run, "Build a feature report on AI")
    assert result.ok and result.output == "REPORT: adoption is up 40%; main risk is cost."
    assert result.assignments == {"Collect AI adoption figures": "researcher", "Summarise the risks": "analyst"}
    plan = server.requests[0]
    assert plan["response_format"]["json_schema"]["schema"]["properties"]["result"]["type"] == "array"
    assert "researcher: You research facts" in user(plan)
    work = [b for b in server.requests if system(b) != "You manage a research team"]
    assert sorted(user(b).split("\n")[0] for b in work) == ["Collect AI adoption figures", "Summarise the risks"]
    synth = server.requests[-1]
    assert "response_format" not in synth and "adoption is up 40%" in user(synth) and "main risk is cost" in user(synth)


def test_consensus(serve: Any) -> None:
    def answer(body: dict[str, Any]) -> Any:
        assert schema_name(body) == "Vote"
        if "finance" in system(body) and "Round 2" not in user(body):
            return reply({"answer": "No", "reasoning": "Too expensive this year."})
        return reply({"answer": "Yes", "reasoning": f"{system(body)} sees a clear benefit."})

    server = serve(answer)
    experts = [agent(f"You are the {role} lead.", name=role) for role in ("architecture", "security", "finance")]
    result = AgentPatterns.consensus(agents=experts, task="Should we adopt this technology?", max_rounds=3,
                                     agreement_threshold=0.8)
    assert result.ok and result.reached and result.rounds == 2 and result.output == "Yes"
    assert result.agreement_by_round == [pytest.approx(2 / 3), 1.0]
    revision = [b for b in server.requests if "finance" in system(b)][-1]
    assert "Round 2 of 3" in user(revision) and "Too expensive this year." in user(revision)
    assert "architecture: You are the architecture lead. sees a clear benefit." in user(revision)


def test_debate(serve: Any) -> None:
    def answer(body: dict[str, Any]) -> Any:
        if schema_name(body) == "JudgeVerdict":
            return reply({"winner": "pro", "conclusion": "Invest in stages."})
        return reply("It pays back." if "optimist" in system(body) else "It is too early.")

    server = serve(answer)
    result = AgentPatterns.debate(pro_agent=agent("You are an optimist.", name="optimist"),
                                  con_agent=agent("You are a skeptic.", name="skeptic"),
                                  judge=agent("You weigh arguments.", name="analyst"),
                                  topic="Should we invest in this technology?", rounds=2)
    assert result.ok and result.verdict is not None and result.verdict.winner == "pro"
    assert result.output == "Invest in stages." and len(result.transcript) == 5
    judge = server.requests[-1]
    assert judge["response_format"]["json_schema"]["schema"]["properties"]["winner"]["enum"] == ["pro", "con", "balanced"]
    assert user(judge).count("It pays back.") == 2 and user(judge).count("It is too early.") == 2


def test_chain_of_thought(serve: Any) -> None:
    outputs = iter(["x must satisfy 2x + 3 = 11", "subtract 3 and halve", "2x = 8, x = 4", "x = 4 checks out"])
    server = serve(lambda body: reply(next(outputs)))
    steps = ["Understand the problem", "Identify key components", "Solve step by step", "Verify the solution"]
    result = AgentPatterns.chain_of_thought(agent=agent("You reason carefully.", name="reasoner"),
                                            task="Solve 2x + 3 = 11", steps=steps)
    assert result.ok and result.steps[-1] == "x = 4 checks out" and len(server.requests) == 4
    last = user(server.requests[3])
    assert "Reasoning step 4 of 4" in last and "- Solve step by step: 2x = 8, x = 4" in last


def test_handoff_chain(serve: Any) -> None:
    def answer(body: dict[str, Any]) -> Any:
        return reply({"You research markets": "FACTS", "You analyse data": "ANALYSIS of FACTS",
                      "You write reports": "REPORT from ANALYSIS"}[system(body)])

    server = serve(answer)
    result = handoff.chain(agents=[agent("You research markets", name="researcher"),
                                   agent("You analyse data", name="analyst"),
                                   agent("You write reports", name="writer")],
                           task="Create a market report", pass_output=True)
    assert result.ok and result.output == "REPORT from ANALYSIS" and len(result.handoffs) == 2
    writer = user(server.requests[2])
    assert writer.startswith("ANALYSIS of FACTS") and "Create a market report" in writer


@pytest.mark.parametrize("router", ["keyword", "embedding", "llm"])
def test_team_routing(serve: Any, router: str) -> None:
    def answer(body: dict[str, Any]) -> Any:
        if schema_name(body) == "RoutingChoice":
            return reply({"agent": "billing", "confidence": 0.9, "reason": "an invoice question"})
        return reply(f"[{system(body)}] on it")

    server = serve(answer)
    sales = agent("You handle sales inquiries", name="sales")
    support = agent("You handle technical support", name="support")
    billing = agent("You handle billing, invoices and payments", name="billing")
    result = handoff.team([sales, support, billing], router=router).route("I have a question about my invoice")
    assert result.ok and result.agent == "billing"
    assert result.output == "[You handle billing, invoices and payments] on it"
    answered = server.requests[-1]
    assert user(answered).startswith("I have a question about my invoice")
    if router == "llm":
        assert schema_name(server.requests[0]) == "RoutingChoice" and len(server.requests) == 2
    else:
        assert len(server.requests) == 1


def test_workflow_with_tools_usage_and_history(serve: Any) -> None:
    def get_invoice(invoice_id: int) -> dict[str, Any]:
        """Fetch an invoice."""
        return {"id": invoice_id, "paid": False}

    def answer(body: dict[str, Any]) -> Any:
        if body["messages"][-1]["role"] == "tool":
            return reply(f"Invoice is unpaid: {json.loads(body['messages'][-1]['content'])['id']}", usage=(50, 5))
        return reply(tool_calls=[("get_invoice", {"invoice_id": 77})], usage=(40, 10))

    server = serve(answer)
    billing = agent("You handle billing", name="billing", tools=[get_invoice])
    wf = Workflow(name="Billing", pattern=ExecutionPattern.SEQUENTIAL, steps=[Task(name="Answer", agent=billing)])
    import anyio

    result = anyio.run(wf.run, "Is invoice 77 paid?")
    assert result.ok and result.output == "Invoice is unpaid: 77"
    assert server.requests[0]["tools"][0]["function"]["name"] == "get_invoice"
    usage = result.tasks["Answer"].usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens, usage.requests) == (90, 15, 2)
    assert wf.get_metrics().input_tokens == 90
    from pyagent.orchestrator import Orchestrator

    (execution,) = Orchestrator().get_history(workflow="Billing")
    assert execution.tasks[0].tool_calls[0].arguments == {"invoice_id": 77}
    assert execution.usage is not None and execution.usage.output_tokens == 15
