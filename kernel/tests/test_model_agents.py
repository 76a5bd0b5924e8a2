"""Language-model agents offline: tools, structured output, streaming, usage, limits and errors.

Everything here runs against ``ScriptedModel``; the same behaviour over a real HTTP protocol is
tested by the openai plugin against its loopback server.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import anyio
import pytest
from pydantic import BaseModel

from pyagent import (
    ConfigurationError,
    ModelError,
    ModelNotConfiguredError,
    RunContext,
    StructuredOutputError,
    agent,
    config,
    hookimpl,
)
from pyagent.model import events as ev
from pyagent.model.tools import Tool, parse_docstring
from pyagent.orchestrator import Orchestrator, RetryConfig, Task, TaskStatus, Workflow
from pyagent.testing import ManualClock, Reply, ScriptedModel, tool_call

pytestmark = pytest.mark.anyio


class Recorder:
    """A monitor plugin keeping every event."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def pyagent_on_event(self, event: Any) -> None:
        self.events.append(event)

    def kinds(self, prefix: str) -> list[str]:
        return [e.kind for e in self.events if e.kind.startswith(prefix)]


def get_invoice(invoice_id: int, currency: Literal["EUR", "USD"] = "EUR") -> dict[str, Any]:
    """Fetch one invoice.

    Args:
        invoice_id: The invoice number printed on the invoice.
        currency: Currency to show the amount in.
    """
    return {"id": invoice_id, "amount": 120, "currency": currency, "paid": True}


# -- tool schemas ---------------------------------------------------------------------------------


def test_tool_schema_comes_from_type_hints_and_docstring() -> None:
    spec = Tool(get_invoice).spec
    assert spec.name == "get_invoice" and spec.description == "Fetch one invoice."
    props = spec.parameters["properties"]
    assert props["invoice_id"]["type"] == "integer"
    assert props["invoice_id"]["description"] == "The invoice number printed on the invoice."
    assert props["currency"]["enum"] == ["EUR", "USD"] and props["currency"]["default"] == "EUR"
    assert spec.parameters["required"] == ["invoice_id"]


def test_docstring_styles() -> None:
    assert parse_docstring("Refund.\n\n:param amount: in cents\n:param str reason: why\n:returns: ok") == (
        "Refund.", {"amount": "in cents", "reason": "why"})
    numpy = "Numpy style.\n\nParameters\n----------\nx : int\n    The first\n    value.\n"
    assert parse_docstring(numpy) == ("Numpy style.", {"x": "The first value."})


def test_bad_tools_are_refused_when_the_agent_is_built() -> None:
    def takes_any(*args: Any) -> None: ...

    with pytest.raises(ConfigurationError, match=r"takes \*args"):
        agent("x", tools=[takes_any])
    with pytest.raises(ConfigurationError, match="two tools are named get_invoice"):
        agent("x", tools=[get_invoice, get_invoice])
    with pytest.raises(ConfigurationError, match="instruction"):
        agent(lambda x: x, tools=[get_invoice])


def test_tool_arguments_are_validated() -> None:
    t = Tool(get_invoice)
    assert t.parse('{"invoice_id": "7"}') == {"invoice_id": 7, "currency": "EUR"}
    with pytest.raises(ValueError, match="invoice_id"):
        t.parse('{"invoice_id": "seven"}')
    with pytest.raises(ValueError, match="not valid JSON"):
        t.parse("{oops")


# -- the tool-call loop ---------------------------------------------------------------------------


async def test_tool_call_loop_sends_results_back(mini_runtime: Any) -> None:
    recorder = Recorder()
    mini_runtime.register(recorder, "recorder")
    model = ScriptedModel([tool_call("get_invoice", invoice_id=42), "Invoice 42 is paid."])
    billing = agent("You handle billing", name="billing", model=model, tools=[get_invoice])

    assert await billing.run("Is invoice 42 paid?", RunContext()) == "Invoice 42 is paid."

    first, second = model.requests
    assert [t.name for t in first.tools] == ["get_invoice"]
    assert first.tools[0].parameters["properties"]["invoice_id"]["type"] == "integer"
    assistant, tool_msg = second.messages[-2:]
    assert assistant["tool_calls"][0]["function"] == {"name": "get_invoice", "arguments": '{"invoice_id": 42}'}
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == assistant["tool_calls"][0]["id"]
    assert '"paid": true' in tool_msg["content"]
    started, called = [e for e in recorder.events if e.kind.startswith("tool.")]
    assert (started.kind, called.kind) == (ev.TOOL_STARTED, ev.TOOL_CALLED)
    assert started.data["arguments"] == {"invoice_id": 42} and started.data["agent"] == "billing"
    assert called.data["call_id"] == started.data["call_id"] and called.data["result"]["paid"] is True


async def test_parallel_tool_calls_run_concurrently(mini_runtime: Any) -> None:
    both_running = anyio.Event()
    running = 0

    async def slow_lookup(key: str) -> str:
        """Look a key up slowly."""
        nonlocal running
        running += 1
        if running == 2:
            both_running.set()
        with anyio.fail_after(5):
            await both_running.wait()  # only returns if the other call runs at the same time
        return key.upper()

    model = ScriptedModel([[tool_call("slow_lookup", key="a"), tool_call("slow_lookup", key="b")], "done"])
    a = agent("You look things up", model=model, tools=[slow_lookup])
    assert await a.run("go", RunContext()) == "done"
    results = [m["content"] for m in model.requests[1].messages if m["role"] == "tool"]
    assert results == ["A", "B"]  # in the order the model asked, whatever order they finished in


async def test_sync_tools_run_in_threads_concurrently() -> None:
    def blocking(seconds: float) -> str:
        """Block the calling thread."""
        time.sleep(seconds)
        return "slept"

    model = ScriptedModel([[tool_call("blocking", seconds=0.3)] * 4, "done"])
    a = agent("x", model=model, tools=[blocking])
    started = time.perf_counter()
    assert await a.run("go", RunContext()) == "done"
    assert time.perf_counter() - started < 1.0  # 4 x 0.3 s one after another would be 1.2 s


async def test_a_tools_exception_goes_back_to_the_model(mini_runtime: Any) -> None:
    recorder = Recorder()
    mini_runtime.register(recorder, "recorder")

    def refund(invoice_id: int) -> str:
        """Refund an invoice."""
        raise PermissionError("refunds above 100 EUR need approval")

    model = ScriptedModel([tool_call("refund", invoice_id=1), tool_call("nosuch"), "I could not refund it."])
    a = agent("x", name="billing", model=model, tools=[refund])
    assert await a.run("refund 1", RunContext()) == "I could not refund it."
    first_error = model.requests[1].messages[-1]["content"]
    assert first_error == "Error: PermissionError: refunds above 100 EUR need approval"
    # A tool outside the agent's grant is refused, not run, and the refusal is audited.
    assert model.requests[2].messages[-1]["content"] == (
        "Error: refused: Refused: you may not call the tool 'nosuch'. Tools you may call: refund.")
    failed = [e for e in recorder.events if e.kind == ev.TOOL_FAILED]
    assert [e.data["tool"] for e in failed] == ["refund", "nosuch"]
    assert failed[1].data.get("refused") is True
    (denied,) = [e for e in recorder.events if e.kind == ev.CAPABILITY_DENIED]
    assert (denied.data["agent"], denied.data["target"], denied.data["capability"]) == ("billing", "nosuch", "tool")
    assert "approval" in failed[0].data["error"] and failed[0].data["duration"] >= 0


async def test_max_tool_calls_bounds_the_loop() -> None:
    def ping() -> str:
        """Ping."""
        return "pong"

    # The model keeps asking: two calls run, the third is refused, then tools are withdrawn.
    model = ScriptedModel([[tool_call("ping"), tool_call("ping"), tool_call("ping")], "final answer"])
    a = agent("x", model=model, tools=[ping], max_tool_calls=2)
    assert await a.run("go", RunContext()) == "final answer"
    results = [m["content"] for m in model.requests[1].messages if m["role"] == "tool"]
    assert results[:2] == ["pong", "pong"] and "at most 2 tool calls" in results[2]
    assert model.requests[1].tools == []  # the model must answer now

    stubborn = ScriptedModel([tool_call("ping"), tool_call("ping")])
    b = agent("x", model=stubborn, tools=[ping], max_tool_calls=1)
    with pytest.raises(ModelError, match="kept calling tools after its limit of max_tool_calls=1"):
        await b.run("go", RunContext())


async def test_a_tool_guard_refuses_a_call_before_it_runs(mini_runtime: Any) -> None:
    recorder = Recorder()
    mini_runtime.register(recorder, "recorder")
    ran: list[int] = []

    def refund(invoice_id: int) -> str:
        """Refund an invoice."""
        ran.append(invoice_id)
        return "refunded"

    def no_refunds(agent: Any, call: Any, ctx: Any) -> str | None:
        return "this agent may not issue refunds" if call.name == "refund" else None

    from pyagent.model.agents import InstructionAgent

    model = ScriptedModel([tool_call("refund", invoice_id=9), "I am not allowed to refund."])
    a = InstructionAgent("x", name="clerk", model=model, tools=[refund], tool_guards=[no_refunds])
    assert await a.run("refund 9", RunContext()) == "I am not allowed to refund."
    assert ran == []
    assert model.requests[1].messages[-1]["content"] == "Error: refused: this agent may not issue refunds"
    (failed,) = [e for e in recorder.events if e.kind == ev.TOOL_FAILED]
    assert failed.data["refused"] is True


async def test_tool_calls_are_in_the_tasks_record_and_the_history(mini_runtime: Any) -> None:
    model = ScriptedModel([tool_call("get_invoice", invoice_id=5), "paid"], usage=(100, 10))
    billing = agent("You handle billing", name="billing", model=model, tools=[get_invoice])
    wf = Workflow(name="billing-run", steps=[Task(name="Answer", agent=billing)])
    result = await wf.run("is 5 paid?")
    assert result.ok and result.output == "paid"
    (call,) = result.tasks["Answer"].tool_calls or []
    assert call["tool"] == "get_invoice" and call["arguments"] == {"invoice_id": 5} and call["status"] == "ok"
    (execution,) = Orchestrator().get_history(workflow="billing-run")
    (task,) = execution.tasks
    assert task.tool_calls[0].tool == "get_invoice" and task.tool_calls[0].status == "ok"
    assert '"paid": true' in (task.tool_calls[0].result or "")
    assert task.usage is not None and task.usage.input_tokens == 200 and task.usage.requests == 2


# -- structured output ----------------------------------------------------------------------------


class Invoice(BaseModel):
    number: int
    total: float
    paid: bool


async def test_structured_output_is_a_validated_object() -> None:
    model = ScriptedModel([{"number": 7, "total": 99.5, "paid": False}])
    a = agent("You read invoices", model=model, output_type=Invoice)
    out = await a.run("the text of invoice 7", RunContext())
    assert out == Invoice(number=7, total=99.5, paid=False)
    spec = model.requests[0].output
    assert spec is not None and spec.name == "Invoice" and spec.strict
    assert spec.schema["additionalProperties"] is False and set(spec.schema["required"]) == {"number", "total", "paid"}


async def test_an_invalid_answer_is_asked_again_once_with_the_error() -> None:
    model = ScriptedModel(['Sure! ```json\n{"number": 7, "total": "lots"}\n```', '{"number": 7, "total": 1, "paid": true}'])
    a = agent("You read invoices", model=model, output_type=Invoice)
    assert await a.run("invoice", RunContext()) == Invoice(number=7, total=1, paid=True)
    reask = model.requests[1].messages[-1]["content"]
    assert "does not match the required JSON schema" in reask and "total" in reask and "paid" in reask

    never = ScriptedModel(["no JSON here", "still none"])
    b = agent("You read invoices", model=never, output_type=Invoice)
    with pytest.raises(StructuredOutputError, match="even after being asked again") as info:
        await b.run("invoice", RunContext())
    assert info.value.text == "still none" and len(never.requests) == 2


async def test_non_object_output_types_are_wrapped() -> None:
    model = ScriptedModel([{"result": ["research", "write"]}, '["a", "b"]'])
    a = agent("You plan", model=model, output_type=list[str])
    assert await a.run("plan", RunContext()) == ["research", "write"]
    assert await a.run("plan", RunContext()) == ["a", "b"]  # a bare array is accepted too
    spec = model.requests[0].output
    assert spec is not None and spec.schema["properties"]["result"]["type"] == "array"


async def test_lenient_structured_output_returns_prose_without_asking_again() -> None:
    model = ScriptedModel(["Winner: pro. Costs fall."])
    judge = agent("You judge", model=model)
    out = await judge.run("judge", RunContext(), output_type=Invoice, lenient=True)
    assert out == "Winner: pro. Costs fall." and len(model.requests) == 1


def test_output_type_without_schema_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="has no JSON schema"):
        agent("x", output_type=object())


# -- streaming and usage --------------------------------------------------------------------------


async def test_streaming_emits_deltas_and_returns_the_same_text(mini_runtime: Any) -> None:
    recorder = Recorder()
    mini_runtime.register(recorder, "recorder")
    text = "Paris is the capital of France."
    streamed = agent("x", name="geo", model=ScriptedModel([text]), stream=True)
    wf = Workflow(name="geo", steps=[Task(name="Ask", agent=streamed)])
    result = await wf.run("capital?")
    assert result.output == text
    deltas = [e for e in recorder.events if e.kind == ev.AGENT_DELTA]
    assert len(deltas) > 3 and "".join(e.data["delta"] for e in deltas) == text
    assert {e.task for e in deltas} == {"Ask"} and {e.data["agent"] for e in deltas} == {"geo"}


async def test_usage_per_call_task_run_metrics_and_cost(mini_runtime: Any, monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyagent.toml").write_text('[prices]\nscripted = {input = 1.0, output = 2.0}\n')
    config.reset()
    recorder = Recorder()
    mini_runtime.register(recorder, "recorder")
    first = agent("x", name="a", model=ScriptedModel([Reply("one", usage=(1000, 100))]))
    second = agent("y", name="b", model=ScriptedModel(["two", "three"], usage=(500, 50)))
    wf = Workflow(name="usage", steps=[Task(name="A", agent=first), Task(name="B", agent=second)])
    result = await wf.run("go")
    assert result.ok
    a, b = result.tasks["A"].usage, result.tasks["B"].usage
    assert a is not None and (a.input_tokens, a.output_tokens, a.requests) == (1000, 100, 1)
    assert a.cost == pytest.approx((1000 * 1.0 + 100 * 2.0) / 1e6)
    assert b is not None and (b.input_tokens, b.output_tokens) == (500, 50)
    assert result.usage is not None and result.usage.total_tokens == 1650
    usage_events = [e for e in recorder.events if e.kind == ev.MODEL_USAGE]
    assert [(e.task, e.data["input_tokens"], e.data["output_tokens"]) for e in usage_events] == [
        ("A", 1000, 100), ("B", 500, 50)]
    assert usage_events[0].data["model"] == "scripted" and usage_events[0].data["cost"] > 0
    metrics = wf.get_metrics()
    assert (metrics.input_tokens, metrics.output_tokens, metrics.model_requests) == (1500, 150, 2)
    assert metrics.task_breakdown["A"].input_tokens == 1000
    assert metrics.cost == pytest.approx(((1000 + 500) * 1.0 + (100 + 50) * 2.0) / 1e6)
    (execution,) = Orchestrator().get_history(workflow="usage")
    assert execution.usage is not None and execution.usage.input_tokens == 1500


async def test_events_outside_a_run_are_broadcast(mini_runtime: Any) -> None:
    recorder = Recorder()
    mini_runtime.register(recorder, "recorder")
    a = agent("x", name="solo", model=ScriptedModel(["hi"], usage=(3, 1)), stream=True)
    assert await a.run("hello", RunContext(run_id="r1")) == "hi"
    kinds = [e.kind for e in recorder.events]
    assert kinds == [ev.AGENT_DELTA, ev.MODEL_USAGE]
    assert all(e.run_id == "r1" and e.data["agent"] == "solo" for e in recorder.events)


async def test_a_team_inside_a_task_reports_usage_to_that_task(mini_runtime: Any) -> None:
    inner = agent("x", name="inner", model=ScriptedModel(["deep"], usage=(7, 3)))

    async def team(task: Any) -> Any:
        return await inner.run(task, RunContext())  # a pattern builds its own context, without the run

    wf = Workflow(name="nested", steps=[Task(name="Team", agent=team)])
    result = await wf.run("x")
    usage = result.tasks["Team"].usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (7, 3)


# -- configuration and errors ---------------------------------------------------------------------


async def test_a_workflow_without_a_model_is_refused_before_any_agent_runs(mini_runtime: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("PYAGENT_MODEL", raising=False)
    ran: list[str] = []
    wf = Workflow(name="w", steps=[Task(name="first", agent=lambda x: ran.append("first")),
                                   Task(name="llm", agent=agent("You write"))])
    with pytest.raises(ModelNotConfiguredError, match="agent 'you-write' needs a language model"):
        await wf.run("x")
    assert ran == []


async def test_named_endpoints_from_configuration(bare_runtime: Any, monkeypatch: Any, tmp_path: Any) -> None:
    made: list[tuple[Any, dict[str, Any]]] = []

    class Provider:
        @hookimpl
        def pyagent_register_models(self, register: Any) -> None:
            def factory(model_id: Any, **options: Any) -> Any:
                made.append((model_id, options))
                return ScriptedModel(lambda p: f"{options.get('endpoint')}/{model_id}", cycle=False)

            register("openai", factory)

    bare_runtime.register(Provider(), "provider")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pyagent.models.local]\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "LOCAL_KEY"\n')
    monkeypatch.setenv("PYAGENT_MODEL", "local:qwen2.5-7b")
    config.reset()
    a, b = agent("x"), agent("y")
    assert await a.run("hi", RunContext()) == "local/qwen2.5-7b"
    assert await b.run("hi", RunContext()) == "local/qwen2.5-7b"
    # One model object for one model string: agents share its limits.
    assert made == [("qwen2.5-7b", {"endpoint": "local", "config": {
        "base_url": "http://127.0.0.1:9/v1", "api_key_env": "LOCAL_KEY"}})]


def test_a_model_string_without_provider_or_endpoint_says_how_to_write_it(bare_runtime: Any, monkeypatch: Any,
                                                                         tmp_path: Any) -> None:
    from pyagent import PluginNotInstalledError

    class Provider:
        @hookimpl
        def pyagent_register_models(self, register: Any) -> None:
            register("openai", lambda model_id, **options: ScriptedModel(["ok"]))

    bare_runtime.register(Provider(), "provider")
    monkeypatch.chdir(tmp_path)
    config.reset()
    # As the OpenAI SDK writes it, without the provider: say how pyagent writes it.
    with pytest.raises(PluginNotInstalledError, match=r"write it as 'provider:model', e\.g\. 'openai:gpt-4o-mini'"):
        agent("x", model="gpt-4o-mini").resolve_model()
    # An endpoint that was never configured: say where to configure it.
    with pytest.raises(PluginNotInstalledError, match=r"\[tool\.pyagent\.models\.local\] base_url = "):
        agent("x", model="local:qwen2.5-7b").resolve_model()
    with pytest.raises(PluginNotInstalledError, match="did you mean 'openai'"):
        agent("x", model="opnai:gpt-4o").resolve_model()


async def test_retry_after_is_honoured_and_permanent_errors_are_not_retried(mini_runtime: Any) -> None:
    clock = mini_runtime.clock = ManualClock()
    limited = ModelError("rate limited", retryable=True, retry_after=7.0)
    model = ScriptedModel([limited, "ok"])
    task = Task(name="t", agent=agent("x", model=model),
                retry_config=RetryConfig(max_retries=2, initial_delay=1.0))
    result = await Workflow(name="w", steps=[task]).run("go")
    assert result.ok and clock.sleeps == [7.0]

    bad_key = ModelError("401: bad key", retryable=False)
    model = ScriptedModel([bad_key, "never"])
    task = Task(name="t", agent=agent("x", model=model), retry_config=RetryConfig(max_retries=3))
    result = await Workflow(name="w2", steps=[task]).run("go")
    assert result.status is TaskStatus.FAILED and len(model.requests) == 1
    assert len(result.tasks["t"].attempts) == 1


async def test_a_subclass_shaping_complete_still_works() -> None:
    class Shouting(ScriptedModel):
        async def complete(self, messages: list[dict[str, Any]]) -> str:
            return (await super().complete(messages)).upper()

    a = agent("x", model=Shouting(["quiet words"]))
    assert await a.run("hi", RunContext()) == "QUIET WORDS"


async def test_a_text_only_model_answers_but_cannot_call_tools() -> None:
    class TextOnly:
        name = "text-only"

        async def complete(self, messages: list[dict[str, Any]]) -> str:
            return f"echo {messages[-1]['content']}"

    assert await agent("x", model=TextOnly()).run("hi", RunContext()) == "echo hi"
    with pytest.raises(ConfigurationError, match="cannot call tools"):
        await agent("x", model=TextOnly(), tools=[get_invoice]).run("hi", RunContext())


async def test_request_timeout_is_the_time_left_of_the_task(mini_runtime: Any) -> None:
    model = ScriptedModel(["ok"])
    wf = Workflow(name="w", steps=[Task(name="t", agent=agent("x", model=model), timeout=30)])
    assert (await wf.run("go")).ok
    timeout = model.requests[0].timeout
    assert timeout is not None and 29 < timeout <= 30
    model = ScriptedModel(["ok"])
    await agent("x", model=model).run("go", RunContext())
    assert model.requests[0].timeout is None


async def test_a_tool_outside_the_grant_is_denied_and_in_the_runs_history(mini_runtime: Any) -> None:
    from pyagent import Task, Workflow
    from pyagent.orchestrator import Orchestrator

    calls: list[str] = []

    def lookup(invoice_id: int) -> str:
        """Look an invoice up."""
        calls.append("lookup")
        return "paid"

    model = ScriptedModel([tool_call("delete_all_invoices"), tool_call("lookup", invoice_id=7), "It is paid."])
    billing = agent("You handle billing", name="billing", model=model, tools=[lookup])
    result = await Workflow(name="desk", steps=[Task(name="answer", agent=billing)]).run("invoice 7?")
    assert result.ok and result.output == "It is paid."
    assert calls == ["lookup"]  # the denied tool never ran; the granted one did
    (record,) = Orchestrator().get_history(workflow="desk")
    denials = [a for a in record.audit if a.kind == ev.CAPABILITY_DENIED]
    assert len(denials) == 1 and denials[0].data["target"] == "delete_all_invoices"
    assert denials[0].task == "answer" and denials[0].data["denied"] is True


# -- tools past the task's timeout ----------------------------------------------------------------


async def test_a_blocking_sync_tool_does_not_outlive_the_task_timeout(mini_runtime: Any) -> None:
    release = __import__("threading").Event()

    def stuck(q: str) -> str:
        """A lookup whose backend never answers."""
        release.wait(10)
        return "too late"

    model = ScriptedModel([tool_call("stuck", q="x"), "answer"])
    wf = Workflow(name="w", steps=[Task(name="t", agent=agent("x", model=model, tools=[stuck]), timeout=0.3)])
    started = time.perf_counter()
    try:
        result = await wf.run("go")
    finally:
        release.set()
    assert time.perf_counter() - started < 3  # the task's timeout holds, not the tool's 10 s
    assert result.status is TaskStatus.FAILED and "timed out after 0.3s" in (result.error or "")


async def test_a_tool_cut_off_by_the_timeout_is_reported_and_recorded(mini_runtime: Any) -> None:
    recorder = Recorder()
    mini_runtime.register(recorder, "recorder")

    async def hangs(q: str) -> str:
        """A lookup that hangs."""
        await anyio.sleep(10)
        return "never"

    model = ScriptedModel([tool_call("hangs", q="x"), "answer"])
    wf = Workflow(name="hang", steps=[Task(name="t", agent=agent("x", name="a", model=model, tools=[hangs]),
                                           timeout=0.2)])
    result = await wf.run("go")
    assert result.status is TaskStatus.FAILED
    started = [e for e in recorder.events if e.kind == ev.TOOL_STARTED]
    ended = [e for e in recorder.events if e.kind in (ev.TOOL_CALLED, ev.TOOL_FAILED)]
    assert len(started) == 1 and [e.kind for e in ended] == [ev.TOOL_FAILED]
    assert ended[0].data["call_id"] == started[0].data["call_id"] and "cancelled" in ended[0].data["error"]
    (call,) = result.tasks["t"].tool_calls or []
    assert call["tool"] == "hangs" and call["status"] == "failed" and "cancelled" in call["error"]
    (execution,) = Orchestrator().get_history(workflow="hang")
    assert execution.tasks[0].tool_calls[0].status == "failed"
