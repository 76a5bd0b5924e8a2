"""The dask executor on a real LocalCluster (2 worker processes on 127.0.0.1, started once here)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import anyio
import cloudpickle
import pytest
from pyagent_dask import PayloadError, RemoteTraceback

from pyagent import GuardrailError, RetryConfig, Task, TaskStatus, Workflow, agent
from pyagent.guardrails import Replace
from pyagent.testing import Reply, ScriptedModel

# The agents below live in this test module, which workers cannot import: send them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the trio test below asks for trio itself


def dask_workflow(address: str, steps: list[Task], pattern: str | None = None, **options: Any) -> Workflow:
    return Workflow(name="remote", steps=steps, pattern=pattern, executor="dask",
                    executor_options={"address": address, **options})


def executor_of(runtime: Any, address: str, **options: Any) -> Any:
    return runtime.executor("dask", {"address": address, **options})


async def await_until(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    with anyio.fail_after(timeout):
        while True:
            value = check()
            if value:
                return value
            await anyio.sleep(0.05)


def where() -> dict[str, Any]:
    from distributed import get_worker

    return {"pid": os.getpid(), "worker": get_worker().address}


# -- agents: sync, async, class ------------------------------------------------------------------


def double(x: int) -> dict[str, Any]:
    return {"value": x * 2, **where()}


async def increment(data: dict[str, Any]) -> dict[str, Any]:
    from distributed import get_worker

    await asyncio.sleep(0)
    on_worker_loop = asyncio.get_running_loop() is get_worker().loop.asyncio_loop
    return {"value": data["value"] + 1, "on_worker_loop": on_worker_loop, **where()}


class Squarer:
    name = "squarer"
    description = "squares the value"

    async def run(self, input: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {"value": input["value"] ** 2, "task": ctx.task.name, **where()}


async def test_sync_async_and_class_agents_run_on_workers(dask_runtime: Any, address: str, client: Any) -> None:
    wf = dask_workflow(address, [Task(name="double", agent=double), Task(name="increment", agent=increment),
                                 Task(name="square", agent=Squarer())])
    result = await wf.run(3)
    assert result.status is TaskStatus.COMPLETED, result.error
    worker_pids = set(client.run(os.getpid).values())
    outs = result.outputs
    assert outs["double"]["value"] == 6 and outs["increment"]["value"] == 7 and outs["square"]["value"] == 49
    assert {outs[t]["pid"] for t in outs} <= worker_pids and os.getpid() not in worker_pids
    assert outs["increment"]["on_worker_loop"] is True  # async agents run on the worker's event loop
    assert outs["square"]["task"] == "square"
    assert executor_of(dask_runtime, address).stats["submitted"] == 3


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_runs_from_trio(dask_runtime: Any, address: str) -> None:
    wf = dask_workflow(address, [Task(name="double", agent=double), Task(name="increment", agent=increment)])
    result = await wf.run(20)
    assert result.status is TaskStatus.COMPLETED, result.error
    assert result.output["value"] == 41


# -- the run context on a worker -------------------------------------------------------------------


def reader(x: Any, ctx: Any) -> dict[str, Any]:
    seen = {"task": ctx.task.name, "results": dict(ctx.results), "state": dict(ctx.state),
            "transcript": [m.content for m in ctx.transcript], "run_id": ctx.run_id, "attempt": ctx.attempt,
            "workflow": ctx.workflow.name, "result": ctx.result, "phase": ctx.phase, "round": ctx.round}
    ctx.state["written_remotely"] = x * 10
    ctx.state["counter"] = ctx.state.get("counter", 0) + 1
    del ctx.state["scratch"]
    from pyagent import Message

    ctx.transcript.append(Message("reader", "noted on a worker", round=2))
    return seen


def setup(x: int, ctx: Any) -> int:
    from pyagent import Message

    ctx.state.update({"counter": 1, "scratch": "to delete", "untouched": [1, 2, 3]})
    ctx.transcript.append(Message("setup", "hello", round=1))
    return x + 1


def check_state(x: Any, ctx: Any) -> dict[str, Any]:
    return {"state": dict(ctx.state), "transcript": [(m.agent, m.content) for m in ctx.transcript]}


async def test_the_context_snapshot_and_what_comes_back(dask_runtime: Any, address: str) -> None:
    wf = dask_workflow(address, [
        Task(name="setup", agent=setup, executor="local"),
        Task(name="read", agent=reader),
        Task(name="check", agent=check_state, executor="local"),
    ])
    result = await wf.run(4, run_id="run-ctx-1")
    assert result.status is TaskStatus.COMPLETED, result.error
    seen = result.outputs["read"]
    assert seen["task"] == "read" and seen["workflow"] == "remote" and seen["run_id"] == "run-ctx-1"
    assert seen["results"] == {"setup": 5} and seen["result"] == 5 and seen["attempt"] == 1
    assert seen["state"] == {"counter": 1, "scratch": "to delete", "untouched": [1, 2, 3]}
    assert seen["transcript"] == ["hello"]
    # Writes to ctx.state and transcript messages appended on the worker come back to the run.
    after = result.outputs["check"]
    assert after["state"] == {"counter": 2, "untouched": [1, 2, 3], "written_remotely": 50}
    assert after["transcript"] == [("setup", "hello"), ("reader", "noted on a worker")]
    assert [m.round for m in result.transcript] == [1, 2]


def counts(x: Any, ctx: Any) -> int:
    ctx.state["hits"] = ctx.state.get("hits", 0) + 1
    return x


async def test_parallel_state_writes_to_other_keys_do_not_overwrite_each_other(dask_runtime: Any, address: str) -> None:
    def writer(key: str) -> Any:
        def write(x: Any, ctx: Any) -> str:
            ctx.state[key] = x
            return key

        return agent(write, name=f"write_{key}")

    wf = dask_workflow(address, [Task(name=f"w{i}", agent=writer(f"k{i}")) for i in range(6)], pattern="fanout")
    result = await wf.run("v")
    assert result.status is TaskStatus.COMPLETED, result.error
    assert wf.get_state().shared == {f"k{i}": "v" for i in range(6)}


# -- errors, retries, fallback ---------------------------------------------------------------------


def deep_failure(x: Any) -> None:
    raise ValueError(f"bad value {x!r} on the worker")


def fails(x: Any) -> None:
    deep_failure(x)


async def test_an_exception_comes_back_with_its_remote_traceback(dask_runtime: Any, address: str) -> None:
    result = await dask_workflow(address, [Task(name="boom", agent=fails)]).run(7)
    assert result.status is TaskStatus.FAILED
    error = result.tasks["boom"].error
    assert isinstance(error, ValueError) and str(error) == "bad value 7 on the worker"
    assert isinstance(error.__cause__, RemoteTraceback)
    text = "".join(traceback.format_exception(error))
    assert "deep_failure" in text and "raised on Dask worker tcp://127.0.0.1:" in text
    assert "task 'boom' failed: ValueError: bad value 7 on the worker" in result.error


def flaky(x: int, ctx: Any) -> dict[str, Any]:
    if ctx.attempt < 3:
        raise ConnectionError(f"attempt {ctx.attempt} failed")
    return {"value": x, "attempt": ctx.attempt}


async def test_retries_are_the_kernels_and_recorded_as_locally(dask_runtime: Any, address: str) -> None:
    def build(executor: str) -> Workflow:
        return Workflow(name=f"flaky-{executor}", executor=executor,
                        executor_options={"address": address} if executor == "dask" else {},
                        steps=[Task(name="flaky", agent=flaky,
                                    retry_config=RetryConfig(max_retries=3, initial_delay=0.01, backoff="constant"))])

    remote, local = await build("dask").run(1), await build("local").run(1)
    assert remote.status is TaskStatus.COMPLETED and remote.output == {"value": 1, "attempt": 3}
    summary = [[(a.number, a.agent, a.error) for a in r.tasks["flaky"].attempts] for r in (remote, local)]
    assert summary[0] == summary[1] == [(1, "flaky", "ConnectionError: attempt 1 failed"),
                                        (2, "flaky", "ConnectionError: attempt 2 failed"), (3, "flaky", None)]
    assert executor_of(dask_runtime, address).stats["submitted"] == 3


def helper(x: Any, ctx: Any) -> str:
    return f"fallback saw {type(ctx.error).__name__}: {ctx.error} and input {x}"


async def test_fallback_supplement_gets_the_primary_error_on_a_worker(dask_runtime: Any, address: str) -> None:
    wf = dask_workflow(address, [Task(name="t", agent=fails, fallback_agent=helper, fallback_strategy="supplement")])
    result = await wf.run(3)
    assert result.status is TaskStatus.COMPLETED, result.error
    assert result.output == "fallback saw ValueError: bad value 3 on the worker and input 3"
    rec = result.tasks["t"]
    assert rec.agent == "helper" and rec.primary_error == "ValueError: bad value 3 on the worker"


class HoldsALock:
    name = "locked"
    description = ""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    async def run(self, input: Any, ctx: Any) -> Any:
        return input


async def test_an_agent_that_cannot_be_pickled_fails_at_once_naming_the_problem(dask_runtime: Any, address: str) -> None:
    wf = dask_workflow(address, [Task(name="t", agent=HoldsALock(), retry_config=RetryConfig(max_retries=3, initial_delay=0))])
    result = await wf.run(1)
    error = result.tasks["t"].error
    assert isinstance(error, PayloadError)
    assert "task 't': the agent itself of agent 'locked' cannot be sent to a Dask worker" in str(error)
    assert "lock" in str(error) and len(result.tasks["t"].attempts) == 1  # not retried: it cannot help


# -- timeouts and cancellation cancel the Dask future ----------------------------------------------


def scheduler_keys(client: Any, prefix: str) -> dict[str, str]:
    def keys(dask_scheduler: Any = None, prefix: str = prefix) -> dict[str, str]:
        return {str(k): ts.state for k, ts in dask_scheduler.tasks.items() if str(k).startswith(prefix)}

    return client.run_on_scheduler(keys)  # type: ignore[no-any-return]


async def sleeper(path: str) -> None:
    Path(path, "started").write_text(str(os.getpid()))
    try:
        await asyncio.sleep(120)
    except asyncio.CancelledError:
        Path(path, "cancelled").write_text("yes")
        raise


async def test_a_timeout_cancels_the_dask_future(dask_runtime: Any, address: str, client: Any, tmp_path: Path) -> None:
    wf = dask_workflow(address, [Task(name="slow", agent=sleeper, timeout=3)])
    seen: dict[str, str] = {}

    async def watch() -> None:
        seen.update(await await_until(lambda: scheduler_keys(client, "pyagent-slow-"), what="the task on the scheduler"))

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        result = await wf.run(str(tmp_path))
    assert result.status is TaskStatus.FAILED and "timed out after 3s" in result.error
    (key,) = seen
    assert key in executor_of(dask_runtime, address).cancelled_keys
    await await_until(lambda: key not in scheduler_keys(client, "pyagent-slow-"), what="the key to leave the scheduler")
    await await_until(lambda: (tmp_path / "cancelled").exists(), what="the agent to be cancelled on the worker")


async def test_a_cancelled_run_cancels_the_dask_future(dask_runtime: Any, address: str, client: Any, tmp_path: Path) -> None:
    wf = dask_workflow(address, [Task(name="slow", agent=sleeper)])
    async with anyio.create_task_group() as group:
        group.start_soon(wf.run, str(tmp_path))
        keys = await await_until(lambda: scheduler_keys(client, "pyagent-slow-"), what="the task on the scheduler")
        await await_until(lambda: (tmp_path / "started").exists(), what="the agent to start")
        group.cancel_scope.cancel()
    (key,) = keys
    await await_until(lambda: key not in scheduler_keys(client, "pyagent-slow-"), what="the key to leave the scheduler")
    await await_until(lambda: (tmp_path / "cancelled").exists(), what="the agent to be cancelled on the worker")
    assert key in executor_of(dask_runtime, address).cancelled_keys
    assert wf.get_state().status == "cancelled"


# -- a worker that dies -------------------------------------------------------------------------


async def dies_first(path: str, ctx: Any) -> dict[str, Any]:
    here = where()
    with open(Path(path, "calls"), "a") as f:
        f.write(f"{ctx.attempt} {here['pid']} {here['worker']}\n")
    if ctx.attempt == 1:
        Path(path, "pid").write_text(str(here["pid"]))
        await asyncio.sleep(120)  # killed here
    return {"attempt": ctx.attempt, **here}


async def test_a_worker_killed_mid_task_fails_the_attempt_and_the_retry_runs_elsewhere(
        dask_runtime: Any, address: str, client: Any, tmp_path: Path) -> None:
    wf = dask_workflow(address, [Task(name="fragile", agent=dies_first,
                                      retry_config=RetryConfig(max_retries=2, initial_delay=0.01))])

    async def kill() -> None:
        pid = int(await await_until(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(),
                                    what="the first attempt to start"))
        os.kill(pid, signal.SIGKILL)

    async with anyio.create_task_group() as group:
        group.start_soon(kill)
        with anyio.fail_after(90):
            result = await wf.run(str(tmp_path))
    assert result.status is TaskStatus.COMPLETED, result.error
    attempts = result.tasks["fragile"].attempts
    assert [a.number for a in attempts] == [1, 2]
    assert attempts[0].error.startswith("WorkerLostError: task 'fragile': the Dask worker tcp://127.0.0.1:")
    assert "died" in attempts[0].error and attempts[1].error is None
    calls = (tmp_path / "calls").read_text().split("\n")[:-1]
    assert [c.split()[0] for c in calls] == ["1", "2"]  # Dask did not re-run the attempt itself
    assert calls[0].split()[2] != result.output["worker"] and result.output["attempt"] == 2
    assert executor_of(dask_runtime, address).stats["workers_lost"] == 1


# -- resources -------------------------------------------------------------------------------------


def gpu_worker(client: Any) -> str:
    """Give the first worker a GPU (and only it: a restarted worker has no resources)."""
    first = sorted(client.scheduler_info()["workers"])[0]

    async def give(dask_worker: Any = None) -> None:
        await dask_worker.set_resources(GPU=1)

    client.run(give, workers=[first])
    wait_for = lambda: client.scheduler_info()["workers"][first]["resources"].get("GPU") == 1  # noqa: E731
    import time

    deadline = time.monotonic() + 30
    while not wait_for():
        assert time.monotonic() < deadline, "the GPU resource never reached the scheduler"
        time.sleep(0.05)
    return first


def on_which_worker(x: Any) -> str:
    return str(where()["worker"])


async def test_resources_pin_tasks_to_workers_that_have_them(dask_runtime: Any, address: str, client: Any) -> None:
    gpu = gpu_worker(client)
    steps = [Task(name=f"gpu{i}", agent=on_which_worker, resources={"GPU": 1}) for i in range(6)]
    steps += [Task(name=f"any{i}", agent=on_which_worker) for i in range(6)]
    result = await dask_workflow(address, steps, pattern="fanout").run(0)
    assert result.status is TaskStatus.COMPLETED, result.error
    assert {result.output[f"gpu{i}"] for i in range(6)} == {gpu}


async def test_resources_no_worker_has_are_a_clear_error(dask_runtime: Any, address: str) -> None:
    result = await dask_workflow(address, [Task(name="tpu", agent=on_which_worker, resources={"TPU": 2})]).run(0)
    assert result.status is TaskStatus.FAILED
    assert "task 'tpu' asks for resources {'TPU': 2.0} but none of the 2 worker(s)" in result.error
    assert "--resources" in result.error


# -- large inputs and fan-outs -----------------------------------------------------------------------


def measure(data: bytes, ctx: Any) -> int:
    return len(data) + len(ctx.result)


async def test_a_large_input_is_scattered_once_for_a_fan_out(dask_runtime: Any, address: str, client: Any) -> None:
    big = os.urandom(2_000_000)
    wf = dask_workflow(address, [Task(name=f"m{i}", agent=measure) for i in range(20)], pattern="fanout")
    result = await wf.run(big)
    assert result.status is TaskStatus.COMPLETED, result.error
    assert set(result.output.values()) == {4_000_000}
    stats = executor_of(dask_runtime, address).stats
    assert stats["scattered"] == 1 and stats["submitted"] == 20
    assert stats["sent_bytes"] < 20 * 20_000  # the calls themselves: the input is not in them


def branch(x: int, ctx: Any) -> int:
    return x + int(ctx.task.name.removeprefix("b"))


async def test_a_200_branch_fan_out(dask_runtime: Any, address: str) -> None:
    wf = dask_workflow(address, [Task(name=f"b{i}", agent=branch) for i in range(200)], pattern="fanout")
    with anyio.fail_after(120):
        result = await wf.run(1000)
    assert result.status is TaskStatus.COMPLETED, result.error
    assert result.output == {f"b{i}": 1000 + i for i in range(200)}


# -- guardrails, events and model agents ------------------------------------------------------------


def no_secrets(text: str) -> bool:
    return "secret" not in text


def mask_digits(text: str) -> Any:
    return Replace("".join("#" if c.isdigit() else c for c in text), note="masked digits")


async def test_agent_guardrails_run_on_the_worker_and_are_reported_to_the_run(dask_runtime: Any, address: str) -> None:
    talker = agent(lambda x: f"the secret is {x}", name="talker", guardrails=[no_secrets])
    masker = agent(lambda x: f"call {x}", name="masker", guardrails=[mask_digits])
    events: list[Any] = []
    wf = dask_workflow(address, [Task(name="masked", agent=masker), Task(name="talk", agent=talker)])
    result = await wf.run("555-1234", on_event=events.append)
    assert result.outputs["masked"] == "call ###-####"
    error = result.tasks["talk"].error
    assert isinstance(error, GuardrailError) and error.guardrail == "no_secrets" and error.side == "output"
    kinds = [(e.kind, e.task) for e in events if e.kind.startswith("guardrail.")]
    assert kinds == [("guardrail.replaced", "masked"), ("guardrail.blocked", "talk")]
    blocked = next(e for e in events if e.kind == "guardrail.blocked")
    assert blocked.data["agent"] == "talker" and blocked.data["reason"] == "the check returned False"
    assert [e.kind for e in events if e.task == "talk"] == ["task.started", "guardrail.blocked", "task.failed"]


async def test_task_guardrails_stay_local_and_block_before_anything_is_sent(dask_runtime: Any, address: str) -> None:
    wf = dask_workflow(address, [Task(name="t", agent=double, input_guardrails=[lambda x: x < 100])])
    result = await wf.run(500)
    assert isinstance(result.tasks["t"].error, GuardrailError)
    assert executor_of(dask_runtime, address).stats["submitted"] == 0


async def test_a_model_agent_runs_on_a_worker_and_its_usage_comes_back(dask_runtime: Any, address: str) -> None:
    model = ScriptedModel([Reply("Paris", usage=(12, 3))])
    geo = agent("Answer with the capital city", name="geo", model=model)
    events: list[Any] = []
    result = await dask_workflow(address, [Task(name="capital", agent=geo)]).run("France?", on_event=events.append)
    assert result.status is TaskStatus.COMPLETED, result.error
    assert result.output == "Paris"
    assert result.usage is not None and (result.usage.input_tokens, result.usage.output_tokens) == (12, 3)
    assert result.tasks["capital"].usage.requests == 1
    assert [e.data["model"] for e in events if e.kind == "model.usage"] == ["scripted"]
    assert model.prompts == []  # the model object on the worker was a copy; this one was never asked


# -- configuration by name -------------------------------------------------------------------------


async def test_configuration_alone_moves_a_workflow_to_the_cluster(
        dask_runtime: Any, address: str, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text(f'[tool.pyagent]\nexecutor = "dask"\ndask_address = "{address}"\n')
    monkeypatch.chdir(tmp_path)
    wf = Workflow(name="plain", steps=[Task(name="double", agent=double)])  # no executor named
    result = await wf.run(2)
    assert result.status is TaskStatus.COMPLETED, result.error
    assert result.output["pid"] in set(client.run(os.getpid).values())


async def test_environment_variables_select_the_executor_too(
        dask_runtime: Any, address: str, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYAGENT_EXECUTOR", "dask")
    monkeypatch.setenv("PYAGENT_DASK_ADDRESS", address)
    wf = Workflow(name="plain", steps=[Task(name="double", agent=double)])
    assert (await wf.run(2)).output["pid"] in set(client.run(os.getpid).values())
    local = Workflow(name="local", executor="local", steps=[Task(name="double", agent=lambda x: os.getpid())])
    assert (await local.run(2)).output == os.getpid()  # a workflow that names one keeps it


async def asks_a_person(x: Any, ctx: Any) -> Any:
    return await ctx.interrupt("Approve?", schema=bool)


def doubles(x: int) -> int:
    return x * 2


async def test_asking_a_person_from_a_worker_is_a_clear_error(dask_runtime: Any, address: str) -> None:
    from pyagent import ConfigurationError

    result = await dask_workflow(address, [Task(name="ask", agent=asks_a_person)]).run(1)
    assert result.status is TaskStatus.FAILED
    error = result.tasks["ask"].error
    assert isinstance(error, ConfigurationError)
    assert "ctx.interrupt is not available where this agent runs" in str(error) and "ApprovalTask" in str(error)


async def test_an_approval_task_in_a_dask_workflow_asks_in_the_runs_own_process(dask_runtime: Any,
                                                                                  address: str) -> None:
    from pyagent import ApprovalTask, Orchestrator

    wf = dask_workflow(address, [Task(name="double", agent=doubles),
                                 ApprovalTask(name="approve", question=lambda x: f"Keep {x}?", schema=bool)])
    orch = Orchestrator()
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await wf.run(21)

        tg.start_soon(run)
        with anyio.fail_after(60):
            while not (pending := await orch.apending()):
                await anyio.sleep(0.02)
        (question,) = pending
        assert question.question == "Keep 42?"
        await orch.resume(question.run_id, {question.id: True}, answered_by="tester")
    assert box["result"].ok and box["result"].output is True


async def test_agents_defined_in_a_served_file_run_on_workers(dask_runtime: Any, address: str, client: Any,
                                                               tmp_path: Path) -> None:
    # `pyagent serve flows.py` / `pyagent run flows.py` load the file under a module name no
    # worker can import: its agents must travel by value, or the same file that runs on a
    # laptop would fail on a cluster.
    from pyagent.plugin import load_target

    flows = tmp_path / "served_flows.py"
    flows.write_text(
        "import os\n"
        "from pyagent.orchestrator import Task, Workflow\n\n"
        "class Shout:\n"
        "    def __init__(self, text):\n"
        "        self.text = text\n\n"
        "def work(x):\n"
        "    return {'pid': os.getpid(), 'shout': Shout(str(x).upper()).text}\n\n"
        f"wf = Workflow(name='served', executor='dask', executor_options={{'address': {address!r}}},\n"
        "              steps=[Task(name='work', agent=work)])\n")
    target = load_target(f"{flows}:wf")
    result = await target.run(next(iter(target.workflows.values())), "hi")
    assert result.status is TaskStatus.COMPLETED, result.error
    assert result.output["shout"] == "HI"
    assert result.output["pid"] in set(client.run(os.getpid).values())
