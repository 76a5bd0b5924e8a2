"""The openai plugin against a real HTTP server speaking the chat-completions protocol.

The ``openai`` SDK is not mocked: it talks to ``ChatServer`` on 127.0.0.1, and the tests
assert both what the SDK sent (the server keeps every request body) and what the agent made
of the answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from pyagent_openai import OpenAIModel
from pyagent_openai.errors import ContextLengthError, ModelTimeoutError, retry_after
from pyagent_openai.testing import ChatServer, cut, fail, reply, slow
from pydantic import BaseModel

from pyagent import ModelError, ModelNotConfiguredError, RunContext, agent, config, hookimpl
from pyagent.orchestrator import RetryConfig, Task, TaskStatus, Workflow
from pyagent.testing import ManualClock

pytestmark = pytest.mark.anyio


class Sequential:
    """A pass-forward pattern, so these tests need only the kernel and this plugin."""

    async def execute(self, run: Any) -> Any:
        value = run.input
        for step in run.workflow.steps:
            value = (await run.run_step(step, value)).output
        return value

    @hookimpl
    def pyagent_register_patterns(self, register: Any) -> None:
        register("sequential", self)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def pyagent_on_event(self, event: Any) -> None:
        self.events.append(event)


@pytest.fixture
def rt(runtime: Any) -> Any:
    runtime.register(Sequential(), "test-sequential")
    return runtime


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer() as s:
        yield s


def model(server: ChatServer, name: str = "test-model", **options: Any) -> OpenAIModel:
    return OpenAIModel(name, base_url=server.url, **options)


def get_invoice(invoice_id: int) -> dict[str, Any]:
    """Fetch one invoice by its number.

    Args:
        invoice_id: The number printed on the invoice.
    """
    return {"id": invoice_id, "amount": 120, "paid": invoice_id % 2 == 0}


# -- plain replies, what is sent ------------------------------------------------------------------


async def test_plain_reply_and_what_was_sent(rt: Any, server: ChatServer) -> None:
    server.script(reply("Invoices are due in 30 days.", usage=(21, 7)))
    billing = agent("You handle billing", name="billing", model=model(server))
    wf = Workflow(name="w", steps=[Task(name="Answer", agent=billing, description="answer the customer")])
    result = await wf.run("When is my invoice due?")
    assert result.ok and result.output == "Invoices are due in 30 days."
    (body,) = server.requests
    assert body["model"] == "test-model"
    system, user = body["messages"]
    assert system == {"role": "system", "content": "You handle billing"}
    assert user["role"] == "user" and user["content"].startswith("When is my invoice due?")
    assert "Task: Answer: answer the customer" in user["content"]
    assert "tools" not in body and "response_format" not in body and not body.get("stream")
    assert server.headers[0]["authorization"] == "Bearer no-key-needed"
    usage = result.tasks["Answer"].usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens, usage.requests) == (21, 7, 1)


async def test_usage_counts_come_from_the_server(rt: Any, server: ChatServer) -> None:
    server.script(reply("one two three"))
    recorder = Recorder()
    rt.register(recorder, "recorder")
    wf = Workflow(name="w", steps=[Task(name="t", agent=agent("Say it", model=model(server)))])
    result = await wf.run("count these four words")
    (event,) = [e for e in recorder.events if e.kind == "model.usage"]
    # The loopback server counts words: "Say it" + the rendered prompt, and three words back.
    prompt_words = sum(len(m["content"].split()) for m in server.requests[0]["messages"])
    assert (event.data["input_tokens"], event.data["output_tokens"]) == (prompt_words, 3)
    assert event.data["model"] == "openai:test-model" and event.task == "t"
    assert result.usage is not None and result.usage.output_tokens == 3


# -- streaming ------------------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_streaming_deltas_over_sse(rt: Any, server: ChatServer) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    server.script(reply(text), reply(text))
    recorder = Recorder()
    rt.register(recorder, "recorder")
    streamed = agent("Write", name="writer", model=model(server), stream=True)
    plain = agent("Write", name="writer", model=model(server))
    wf = Workflow(name="w", steps=[Task(name="s", agent=streamed), Task(name="p", agent=plain)])
    result = await wf.run("go")
    assert result.outputs == {"s": text, "p": text}  # the same output with and without streaming
    assert server.requests[0]["stream"] is True and server.requests[0]["stream_options"] == {"include_usage": True}
    deltas = [e.data["delta"] for e in recorder.events if e.kind == "agent.delta"]
    assert len(deltas) == 9 and "".join(deltas) == text
    usage = result.tasks["s"].usage
    assert usage is not None and usage.output_tokens == 9  # usage arrives in the stream's last chunk


@pytest.mark.parametrize("drop", [False, True], ids=["ended-early", "connection-dropped"])
async def test_a_stream_cut_mid_way_is_a_retryable_error_not_a_short_answer(rt: Any, server: ChatServer,
                                                                           drop: bool) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    server.script(cut(text, 3, drop=drop), reply(text), cut(text, 2, drop=drop))
    streamed = agent("Write", name="writer", model=model(server), stream=True)
    retried = Task(name="s", agent=streamed, retry_config=RetryConfig(max_retries=1, initial_delay=0))
    result = await Workflow(name="w", steps=[retried]).run("go")
    assert result.ok and result.output == text  # never the first three words as if they were the answer
    first = result.tasks["s"].attempts[0].error or ""
    assert "ModelError" in first and "stream" in first and "cannot reach" not in first

    once = await Workflow(name="w1", steps=[Task(name="s", agent=streamed)]).run("go")
    assert once.status is TaskStatus.FAILED
    error = once.error or ""
    assert "'openai:test-model'" in error and server.url in error and "retry_config" in error
    assert "Traceback" not in error and "\n" not in error


async def test_streamed_tool_calls_are_reassembled(server: ChatServer) -> None:
    server.script(reply(tool_calls=[("get_invoice", {"invoice_id": 12}), ("get_invoice", {"invoice_id": 13})]),
                  reply("12 is paid, 13 is not."))
    a = agent("You bill", model=model(server), tools=[get_invoice], stream=True)
    assert await a.run("12 and 13?", RunContext()) == "12 is paid, 13 is not."
    tool_messages = [m for m in server.requests[1]["messages"] if m["role"] == "tool"]
    assert [json.loads(m["content"])["id"] for m in tool_messages] == [12, 13]


# -- tools ----------------------------------------------------------------------------------------


async def test_tool_calls_including_parallel_ones(rt: Any, server: ChatServer) -> None:
    recorder = Recorder()
    rt.register(recorder, "recorder")
    started: list[float] = []

    async def slow_status(order_id: int) -> str:
        """The shipping status of an order."""
        started.append(time.perf_counter())
        await anyio.sleep(0.2)
        return f"order {order_id} shipped"

    server.script(
        reply(tool_calls=[("get_invoice", {"invoice_id": 7})]),
        reply(tool_calls=[("slow_status", {"order_id": 1}), ("slow_status", {"order_id": 2})]),
        reply("Invoice 7 is unpaid; orders 1 and 2 shipped."),
    )
    billing = agent("You handle billing", name="billing", model=model(server), tools=[get_invoice, slow_status])
    wf = Workflow(name="w", steps=[Task(name="Answer", agent=billing)])
    result = await wf.run("status?")
    assert result.output == "Invoice 7 is unpaid; orders 1 and 2 shipped."
    first, second, third = server.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["get_invoice", "slow_status"]
    params = first["tools"][0]["function"]["parameters"]
    assert params["properties"]["invoice_id"] == {
        "description": "The number printed on the invoice.", "title": "Invoice Id", "type": "integer"}
    assert first["tools"][0]["function"]["description"] == "Fetch one invoice by its number."
    assert second["messages"][-1]["role"] == "tool" and json.loads(second["messages"][-1]["content"])["paid"] is False
    assistant = third["messages"][-3]
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["slow_status", "slow_status"]
    assert [m["content"] for m in third["messages"][-2:]] == ["order 1 shipped", "order 2 shipped"]
    assert abs(started[0] - started[1]) < 0.15  # both started together: they ran concurrently
    calls = result.tasks["Answer"].tool_calls or []
    assert [(c["tool"], c["status"]) for c in calls] == [("get_invoice", "ok"), ("slow_status", "ok"), ("slow_status", "ok")]
    kinds = [e.kind for e in recorder.events if e.kind.startswith("tool.")]
    assert kinds.count("tool.started") == 3 and kinds.count("tool.called") == 3


async def test_a_failing_tool_is_reported_to_the_model(server: ChatServer) -> None:
    def refund(invoice_id: int) -> str:
        """Refund an invoice."""
        raise RuntimeError("payment provider unavailable")

    server.script(reply(tool_calls=[("refund", {"invoice_id": 3})]), reply("The refund failed; try later."))
    a = agent("You bill", model=model(server), tools=[refund])
    assert await a.run("refund 3", RunContext()) == "The refund failed; try later."
    assert server.requests[1]["messages"][-1]["content"] == "Error: RuntimeError: payment provider unavailable"


# -- structured output ----------------------------------------------------------------------------


class Invoice(BaseModel):
    number: int
    total: float
    paid: bool


async def test_json_schema_response_format(server: ChatServer) -> None:
    server.script(reply({"number": 42, "total": 99.5, "paid": True}))
    reader = agent("You read invoices", model=model(server), output_type=Invoice)
    assert await reader.run("INVOICE 42 ... TOTAL 99.50 ... PAID", RunContext()) == Invoice(number=42, total=99.5, paid=True)
    fmt = server.requests[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Invoice"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"]["total"]["type"] == "number"


async def test_structured_output_without_json_schema_support(server: ChatServer) -> None:
    # The server refuses response_format: the schema goes into the prompt instead, and an answer
    # that does not match is asked for once more, with the validation error.
    server.script(fail(400, "response_format json_schema is not supported by this server"),
                  reply('Here you go: {"number": 5, "total": "n/a", "paid": false}'),
                  reply('{"number": 5, "total": 0, "paid": false}'))
    reader = agent("You read invoices", model=model(server), output_type=Invoice)
    assert await reader.run("invoice 5", RunContext()) == Invoice(number=5, total=0, paid=False)
    refused, prompted, reasked = server.requests
    assert "response_format" in refused and "response_format" not in prompted
    assert prompted["messages"][-1]["role"] == "system" and '"total"' in prompted["messages"][-1]["content"]
    assert "does not match the required JSON schema" in reasked["messages"][-2]["content"]


# -- limits, retries, errors ----------------------------------------------------------------------


async def test_max_concurrency_bounds_requests_in_flight(rt: Any) -> None:
    with ChatServer(handler=lambda body: reply("ok"), delay=0.05) as server:
        shared = model(server, max_concurrency=5)
        tasks = [Task(name=f"t{i}", agent=agent("Answer", name=f"a{i}", model=shared)) for i in range(40)]

        async def fan_out() -> list[Any]:
            results: list[Any] = []

            async def one(task: Task) -> None:
                results.append(await Workflow(name=task.name, steps=[task]).run("q"))

            async with anyio.create_task_group() as tg:
                for task in tasks:
                    tg.start_soon(one, task)
            return results

        results = await fan_out()
        assert all(r.ok for r in results) and len(server.requests) == 40
        assert server.max_in_flight == 5


def test_max_concurrency_holds_across_event_loops() -> None:
    """Synchronous helpers called from a threaded web server run one event loop per thread:
    the bound is the model's, not each loop's."""
    import threading

    with ChatServer(handler=lambda body: reply("ok"), delay=0.1) as server:
        shared = model(server, max_concurrency=4)
        answers: list[Any] = []

        def worker(backend: str) -> None:
            async def fan_out() -> None:
                async def one() -> None:
                    answers.append(await agent("Answer", model=shared).run("q", RunContext()))

                async with anyio.create_task_group() as tg:
                    for _ in range(8):
                        tg.start_soon(one)

            anyio.run(fan_out, backend=backend)

        threads = [threading.Thread(target=worker, args=(b,)) for b in ("asyncio", "asyncio", "trio")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert answers == ["ok"] * 24
        assert server.max_in_flight == 4
        assert shared._limit is not None and shared._limit.in_use == 0  # every slot came back


async def test_a_request_that_gives_up_waiting_for_a_slot_leaves_none_taken() -> None:
    with ChatServer(handler=lambda body: reply("ok"), delay=0.3) as server:
        shared = model(server, max_concurrency=2)
        gave_up: list[bool] = []

        async def impatient() -> None:
            with anyio.move_on_after(0.05) as scope:  # both slots are busy for 0.3 s
                await agent("Answer", model=shared).run("q", RunContext())
            gave_up.append(scope.cancelled_caught)

        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(agent("Answer", model=shared).run, "q", RunContext())
            await anyio.sleep(0.01)
            tg.start_soon(impatient)
        assert gave_up == [True] and len(server.requests) == 2  # it never got to send its request
        assert shared._limit is not None and shared._limit.in_use == 0
        assert await agent("Answer", model=shared).run("q", RunContext()) == "ok"


async def test_429_is_retried_after_retry_after_under_the_tasks_policy(rt: Any, server: ChatServer) -> None:
    clock = rt.clock = ManualClock()
    server.script(fail(429, retry_after=4), fail(503), reply("finally"))
    task = Task(name="t", agent=agent("Answer", model=model(server)),
                retry_config=RetryConfig(max_retries=3, initial_delay=0.5, backoff="constant"))
    result = await Workflow(name="w", steps=[task]).run("q")
    assert result.ok and result.output == "finally" and len(server.requests) == 3
    assert clock.sleeps == [4.0, 0.5]  # Retry-After honoured, then the policy's own delay
    errors = [a.error for a in result.tasks["t"].attempts]
    assert "rate limited" in (errors[0] or "") and "server error (503" in (errors[1] or "")


async def test_without_a_retry_policy_a_429_fails_the_task_with_the_fix(rt: Any, server: ChatServer) -> None:
    server.script(fail(429, retry_after=2))
    result = await Workflow(name="w", steps=[Task(name="t", agent=agent("x", model=model(server)))]).run("q")
    assert result.status is TaskStatus.FAILED
    assert "is rate limited" in (result.error or "") and "retry_config" in (result.error or "")
    assert "Traceback" not in (result.error or "")


async def test_500_then_success(server: ChatServer, rt: Any) -> None:
    rt.clock = ManualClock()
    server.script(fail(500), reply("recovered"))
    task = Task(name="t", agent=agent("x", model=model(server)), retry_config=RetryConfig(max_retries=1))
    assert (await Workflow(name="w", steps=[task]).run("q")).output == "recovered"


async def test_401_names_the_key_setting_and_is_not_retried(rt: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("LOCAL_KEY", "wrong-key")
    with ChatServer([reply("never")], api_key="right-key") as server:
        bad = OpenAIModel("test-model", base_url=server.url, api_key=None)
        bad = OpenAIModel("test-model", bad.endpoint.model_copy(update={"api_key_env": "LOCAL_KEY"}))
        task = Task(name="t", agent=agent("x", model=bad), retry_config=RetryConfig(max_retries=3))
        result = await Workflow(name="w", steps=[task]).run("q")
        assert result.status is TaskStatus.FAILED and len(server.requests) == 1
        assert "refused the API key (401" in (result.error or "") and "set LOCAL_KEY" in (result.error or "")


async def test_404_unknown_model(server: ChatServer) -> None:
    with pytest.raises(ModelError, match=r"does not serve this model \(404.*GET .*/models lists them") as info:
        await agent("x", model=model(server, "gpt-nonexistent")).run("q", RunContext())
    assert info.value.model == "openai:gpt-nonexistent" and info.value.endpoint == server.url
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_context_length_exceeded(server: ChatServer) -> None:
    server.script(fail(400, "This model's maximum context length is 8192 tokens. However, your messages "
                            "resulted in 9000 tokens.", code="context_length_exceeded"))
    with pytest.raises(ContextLengthError, match="longer than the model's context window"):
        await agent("x", model=model(server)).run("q", RunContext())


async def test_a_slow_reply_past_the_task_timeout(rt: Any, server: ChatServer) -> None:
    server.script(slow(5.0))
    task = Task(name="t", agent=agent("x", model=model(server)), timeout=0.5)
    started = time.perf_counter()
    result = await Workflow(name="w", steps=[task]).run("q")
    assert time.perf_counter() - started < 3
    assert result.status is TaskStatus.FAILED and "timed out" in (result.error or "")
    assert server.requests and server.requests[0]["model"] == "test-model"


async def test_sdk_timeout_is_a_model_timeout_error(server: ChatServer) -> None:
    from pyagent.plugin import ModelRequest

    server.script(slow(5.0))
    with pytest.raises(ModelTimeoutError, match=r"did not answer within 0\.3s"):
        await model(server).respond(ModelRequest(messages=[{"role": "user", "content": "q"}], timeout=0.3))


async def test_unreachable_base_url(rt: Any) -> None:
    with ChatServer() as gone:
        url = gone.url
    result = await Workflow(name="w", steps=[Task(name="t", agent=agent("x", model=OpenAIModel("m", base_url=url)))]).run("q")
    assert result.status is TaskStatus.FAILED
    assert f"cannot reach endpoint 'openai' at {url}" in (result.error or "") and "start the server" in (result.error or "")


def test_openai_itself_needs_a_key_before_anything_runs(monkeypatch: Any) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ModelNotConfiguredError, match="needs an API key and OPENAI_API_KEY is not set"):
        OpenAIModel("gpt-4o-mini")


def test_retry_after_header_forms() -> None:
    assert retry_after({"retry-after": "7"}) == 7.0
    assert retry_after({"retry-after-ms": "1500"}) == 1.5
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past
    assert retry_after({}) is None


# -- configuration --------------------------------------------------------------------------------


async def test_pyagent_model_and_a_named_endpoint(rt: Any, monkeypatch: Any, tmp_path: Any) -> None:
    with ChatServer([reply("from the local server")], models=["qwen2.5-7b"], api_key="s3cret") as server:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "pyproject.toml").write_text(
            f'[tool.pyagent.models.local]\nbase_url = "{server.url}"\napi_key_env = "LOCAL_KEY"\nmax_concurrency = 2\n')
        monkeypatch.setenv("LOCAL_KEY", "s3cret")
        monkeypatch.setenv("PYAGENT_MODEL", "local:qwen2.5-7b")
        config.reset()
        helper = agent("You help")  # no model=: PYAGENT_MODEL
        result = await Workflow(name="w", steps=[Task(name="t", agent=helper)]).run("hi")
        assert result.output == "from the local server"
        assert server.requests[0]["model"] == "qwen2.5-7b"
        resolved = helper.resolve_model()
        assert resolved.name == "local:qwen2.5-7b" and resolved.endpoint.max_concurrency == 2


async def test_openai_base_url_and_key_from_the_environment(runtime: Any, monkeypatch: Any, server: ChatServer) -> None:
    server.script(reply("hello"))
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("PYAGENT_MODEL", "openai:test-model")
    config.reset()
    assert await agent("x").run("hi", RunContext()) == "hello"
    assert server.headers[0]["authorization"] == "Bearer sk-test"


def test_a_bad_endpoint_table_is_a_clear_error(monkeypatch: Any, tmp_path: Any, runtime: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyagent.toml").write_text('[models.local]\nbase_url = "http://127.0.0.1:1/v1"\nmax_concurency = 3\n')
    monkeypatch.setenv("PYAGENT_MODEL", "local:m")
    config.reset()
    from pyagent import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"model endpoint 'local'.*max_concurency.*valid keys"):
        agent("x").resolve_model()


def test_no_model_name_names_the_fix(monkeypatch: Any, runtime: Any) -> None:
    monkeypatch.delenv("PYAGENT_MODEL", raising=False)
    config.reset()
    with pytest.raises(ModelNotConfiguredError, match="PYAGENT_MODEL"):
        agent("x").resolve_model()


def test_the_plugin_registers_the_openai_provider(runtime: Any) -> None:
    assert "openai" in runtime.registry("models")
    assert runtime.plugins["openai"].provides["models"] == ["openai"]


def test_discovery_does_not_import_the_sdk() -> None:
    import subprocess
    import sys

    code = ("import sys; from pyagent.plugins import get_runtime; get_runtime().registry('models'); "
            "print('openai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_the_chat_server_without_its_extra_says_what_to_install(monkeypatch: Any) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if pyagent-openai[testing] were not installed
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"pip install 'pyagent-openai\[testing\]'"):
        ChatServer().start()
    assert time.perf_counter() - started < 5  # at once, not after the start timeout
