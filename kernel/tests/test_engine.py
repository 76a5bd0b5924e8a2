"""The engine through a throwaway pattern: results, events, monitors, callbacks, cancellation."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from pyagent import Event, hookimpl
from pyagent.orchestrator import Orchestrator, Task, TaskStatus, Workflow

pytestmark = pytest.mark.anyio


@pytest.fixture
def rt(mini_runtime: Any) -> Any:
    return mini_runtime


async def test_result_fields(rt: Any) -> None:
    wf = Workflow(name="w", steps=[Task(name="a", agent=lambda x: x + 1), Task(name="b", agent=lambda x: x * 3)])
    result = await wf.run(1)
    assert result.ok and result.status == "completed"
    assert result.output == 6 and result.outputs == {"a": 2, "b": 6}
    assert len(result.run_id) == 32 and result.error is None
    assert result.duration is not None and result.duration >= 0
    a = result.tasks["a"]
    assert a.status is TaskStatus.COMPLETED and a.attempt_count == 1 and a.retries == 0
    assert [att.number for att in a.attempts] == [1] and a.attempts[0].error is None


async def test_failed_run_is_returned_not_raised(rt: Any) -> None:
    wf = Workflow(name="w", steps=[Task(name="a", agent=lambda x: {}["missing"])])
    result = await wf.run()
    assert result.status is TaskStatus.FAILED
    assert result.error == "task 'a' failed: KeyError: 'missing'"
    assert result.tasks["a"].attempts[0].error == "KeyError: 'missing'"
    with pytest.raises(Exception, match="missing"):
        result.raise_for_status()


async def test_monitor_hook_receives_every_event_and_failures_are_contained(rt: Any) -> None:
    received: list[Event] = []

    class Recorder:
        @hookimpl
        def pyagent_on_event(self, event: Event) -> None:
            received.append(event)

    class Broken:
        @hookimpl
        def pyagent_on_event(self, event: Event) -> None:
            raise ConnectionError("slack is down")

    rt.register(Broken(), "broken")
    rt.register(Recorder(), "recorder")
    result = await Workflow(name="w", steps=[Task(name="a", agent=lambda x: 1)]).run()
    assert result.ok
    assert [e.kind for e in received] == ["workflow.started", "task.started", "task.completed", "workflow.completed"]
    assert all(e.workflow == "w" and e.run_id == result.run_id for e in received)
    assert received[2].data["output"] == 1
    assert rt.monitor_errors == 4


async def test_orchestrator_monitors_and_callbacks(rt: Any) -> None:
    kinds: list[str] = []

    class Monitor:
        def on_event(self, event: Event) -> None:
            kinds.append(event.kind)

    orch = Orchestrator()
    orch.set_monitors([Monitor()])
    orch.add_workflow(Workflow(name="Research Report", steps=[Task(name="Research", agent=lambda x: "r")]))
    done: list[str] = []
    result = await orch.run_workflow("Research Report", on_task_complete=lambda t: done.append(t.name))
    assert result.output == "r" and done == ["Research"]
    assert "task.completed" in kinds


def test_orchestrator_errors() -> None:
    orch = Orchestrator()
    with pytest.raises(Exception, match="no workflow named 'x'"):
        orch.get_workflow("x")
    orch.add_workflow(Workflow(name="a", steps=[Task(name="t", agent=lambda x: x)]))
    with pytest.raises(Exception, match="already added"):
        orch.add_workflow(Workflow(name="a", steps=[Task(name="t", agent=lambda x: x)]))
    with pytest.raises(Exception, match="has no on_event"):
        orch.set_monitors([object()])


def test_schedule_without_cron_plugin_names_it(bare_runtime: Any) -> None:
    orch = Orchestrator()
    wf = orch.add_workflow(Workflow(name="daily", steps=[Task(name="t", agent=lambda x: x)]))
    with pytest.raises(Exception, match="trigger 'cron' is not installed: pip install pyagent-cron"):
        orch.schedule(wf, cron="0 9 * * MON-FRI")


async def test_cancelling_a_run_marks_the_task_cancelled(rt: Any) -> None:
    started = anyio.Event()

    async def hang(x: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    wf = Workflow(name="w", steps=[Task(name="hang", agent=hang)])
    seen: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: wf.run(on_event=lambda e: seen.append(e.kind)))
        with anyio.fail_after(5):
            await started.wait()
        tg.cancel_scope.cancel()
    assert seen[-2:] == ["task.cancelled", "workflow.cancelled"]


async def test_workflow_cancel_stops_one_run_and_returns_its_result(rt: Any, store_url: str) -> None:
    started = anyio.Event()

    async def hang(x: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    wf = Workflow(name="w", steps=[Task(name="first", agent=lambda x: f"did {x}"), Task(name="hang", agent=hang),
                                   Task(name="never", agent=lambda x: x)],
                  checkpointing={"storage": store_url})
    results: list[Any] = []

    async def go() -> None:
        results.append(await wf.run("x", run_id="to-stop"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(go)
        with anyio.fail_after(5):
            await started.wait()
        assert wf.cancel("someone-else") is False
        assert wf.cancel("to-stop", reason="stopped from the dashboard") is True
    (result,) = results
    assert result.status is TaskStatus.CANCELLED
    assert result.error == "RunCancelledError: stopped from the dashboard"
    assert result.tasks["first"].status is TaskStatus.COMPLETED
    assert result.tasks["hang"].status is TaskStatus.CANCELLED
    assert wf.cancel("to-stop") is False  # over: nothing left to cancel
    state = wf.get_state("to-stop")
    assert state.status is TaskStatus.CANCELLED and state.completed == ["first"]


async def test_workflow_cancel_works_from_another_thread(rt: Any) -> None:
    started = anyio.Event()

    async def hang(x: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    wf = Workflow(name="w", steps=[Task(name="hang", agent=hang)])
    box: list[Any] = []

    async def go() -> None:
        box.append(await wf.run(run_id="threaded"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(go)
        with anyio.fail_after(5):
            await started.wait()
        assert await anyio.to_thread.run_sync(lambda: wf.cancel("threaded")) is True
    assert box[0].status is TaskStatus.CANCELLED and box[0].error == "RunCancelledError: cancelled on request"


async def test_timeout_fails_the_task(rt: Any) -> None:
    async def slow(x: Any) -> None:
        await anyio.sleep(10)

    result = await Workflow(name="w", steps=[Task(name="slow", agent=slow, timeout=0.05)]).run()
    assert result.status is TaskStatus.FAILED
    assert "timed out after 0.05s" in (result.error or "")


async def test_state_is_shared_between_tasks(rt: Any) -> None:
    def first(x: Any, ctx: Any) -> None:
        ctx.state["token"] = "abc"

    def second(x: Any, ctx: Any) -> str:
        return str(ctx.state["token"])

    result = await Workflow(name="w", steps=[Task(name="a", agent=first), Task(name="b", agent=second)]).run()
    assert result.output == "abc"


class Abort(BaseException):
    """Not an Exception: what a framework or the interpreter raises to stop everything."""


async def test_base_exception_from_an_agent_is_recorded_then_propagates(rt: Any) -> None:
    def stop(x: Any) -> None:
        raise Abort("stop now")

    kinds: list[tuple[str, str | None]] = []
    wf = Workflow(name="w", steps=[Task(name="a", agent=lambda x: 1), Task(name="b", agent=stop),
                                   Task(name="c", agent=lambda x: 3)])
    with pytest.raises(Abort, match="stop now"):
        await wf.run(on_event=lambda e: kinds.append((e.kind, e.task)))
    state = wf.get_state()
    assert state.running == [] and state.status is TaskStatus.FAILED
    assert state.tasks["b"].status is TaskStatus.FAILED
    assert kinds[-2:] == [("task.failed", "b"), ("workflow.failed", None)]


async def test_base_exception_in_a_concurrent_step_cancels_siblings_and_leaves_nothing_running(drt: Any) -> None:
    started = anyio.Event()

    async def hang(x: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    async def stop(x: Any) -> None:
        await started.wait()
        raise Abort("stop now")

    wf = Workflow(name="w", pattern="fan", steps=[Task(name="hang", agent=hang), Task(name="stop", agent=stop)])
    with anyio.fail_after(5), pytest.raises(BaseException) as info:
        await wf.run()
    assert info.group_contains(Abort) if isinstance(info.value, BaseExceptionGroup) else info.type is Abort
    state = wf.get_state()
    assert state.running == [] and state.status is TaskStatus.FAILED
    assert state.tasks["hang"].status is TaskStatus.CANCELLED
    assert state.tasks["stop"].status is TaskStatus.FAILED


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_keyboard_interrupt_marks_the_task_and_run_cancelled(mini_runtime: Any, backend: str) -> None:
    def interrupted(x: Any) -> None:
        raise KeyboardInterrupt

    wf = Workflow(name="w", steps=[Task(name="a", agent=lambda x: 1), Task(name="ctrl-c", agent=interrupted)])
    with pytest.raises(KeyboardInterrupt):
        anyio.run(wf.run, backend=backend)
    state = wf.get_state()
    assert state.running == [] and state.status is TaskStatus.CANCELLED
    assert state.tasks["ctrl-c"].status is TaskStatus.CANCELLED
    assert state.tasks["a"].status is TaskStatus.COMPLETED


async def test_timeout_applies_to_a_blocking_thread_agent(rt: Any) -> None:
    import threading

    from pyagent import agent

    release = threading.Event()

    def blocking(x: Any) -> str:
        release.wait(3)
        return "late"

    wf = Workflow(name="w", steps=[Task(name="slow", agent=agent(blocking, thread=True), timeout=0.05)])
    try:
        result = await wf.run()
        blocked_meanwhile = not release.is_set()
    finally:
        release.set()
    assert blocked_meanwhile  # the run did not wait for the thread to give up
    assert result.status is TaskStatus.FAILED
    assert "timed out after 0.05s" in (result.error or "")


async def test_cancelling_a_run_does_not_wait_for_a_blocking_thread_agent(rt: Any) -> None:
    import threading

    from pyagent import agent

    release = threading.Event()
    entered = anyio.Event()

    def blocking(x: Any) -> str:
        anyio.from_thread.run_sync(entered.set)
        release.wait(3)
        return "late"

    wf = Workflow(name="w", steps=[Task(name="a", agent=agent(blocking, thread=True)),
                                   Task(name="b", agent=lambda x: x)])
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(wf.run)
            with anyio.fail_after(5):
                await entered.wait()
            tg.cancel_scope.cancel()
        state = wf.get_state()
        blocked_meanwhile = not release.is_set()
    finally:
        release.set()
    assert blocked_meanwhile
    assert state.status is TaskStatus.CANCELLED
    assert state.tasks["a"].status is TaskStatus.CANCELLED and "b" not in state.tasks


async def test_async_on_task_complete_is_awaited(rt: Any) -> None:
    done: list[str] = []

    async def notify(task: Any) -> None:
        await anyio.sleep(0)
        done.append(task.name)

    orch = Orchestrator()
    orch.add_workflow(Workflow(name="w", steps=[Task(name="a", agent=lambda x: 1), Task(name="b", agent=lambda x: 2)]))
    result = await orch.run_workflow("w", on_task_complete=notify)
    assert result.ok and done == ["a", "b"]
    # a plain function that hands back an awaitable is awaited too
    result = await orch.run_workflow("w", on_task_complete=lambda t: notify(t))
    assert result.ok and done == ["a", "b", "a", "b"]


async def test_failing_async_on_task_complete_never_fails_the_run(rt: Any) -> None:
    async def notify(task: Any) -> None:
        raise ConnectionError("webhook down")

    wf = Workflow(name="w", steps=[Task(name="a", agent=lambda x: 1), Task(name="b", agent=lambda x: 2)])
    result = await wf.run(on_task_complete=notify)
    assert result.ok and result.output == 2
    assert rt.monitor_errors == 2


async def test_async_event_listeners_are_rejected_before_anything_runs(rt: Any) -> None:
    from pyagent import ConfigurationError

    ran: list[str] = []

    async def listener(event: Event) -> None:
        ran.append(event.kind)

    wf = Workflow(name="w", steps=[Task(name="a", agent=lambda x: ran.append("agent"))])
    with pytest.raises(ConfigurationError, match=r"on_event listener\(\) is a coroutine function: .* calling it synchronously"):
        await wf.run(on_event=listener)
    assert ran == []

    class AsyncMonitor:
        async def on_event(self, event: Event) -> None:
            ran.append(event.kind)

    with pytest.raises(ConfigurationError, match=r"monitor on_event\(\) is a coroutine function"):
        Orchestrator(monitors=[AsyncMonitor()])


async def test_nested_workflow_events_reach_every_monitor_once(rt: Any) -> None:
    hooked: list[tuple[str, str, str | None]] = []
    direct: list[tuple[str, str, str | None]] = []

    class Recorder:
        @hookimpl
        def pyagent_on_event(self, event: Event) -> None:
            hooked.append((event.workflow, event.kind, event.task))

    rt.register(Recorder(), "recorder")
    inner = Workflow(name="inner", steps=[Task(name="i", agent=lambda x: x + 1)])
    outer = Workflow(name="outer", steps=[Task(name="sub", agent=inner), Task(name="after", agent=lambda x: x * 2)])
    result = await outer.run(1, on_event=lambda e: direct.append((e.workflow, e.kind, e.task)))
    assert result.ok and result.output == 4
    inner_events = [("inner", "workflow.started", None), ("inner", "task.started", "i"),
                    ("inner", "task.completed", "i"), ("inner", "workflow.completed", None)]
    for seen in (hooked, direct):
        assert [e for e in seen if e[0] == "inner"] == inner_events
        assert seen.index(("outer", "task.started", "sub")) < seen.index(inner_events[0])
        assert seen.index(inner_events[-1]) < seen.index(("outer", "task.completed", "sub"))


async def test_nested_workflow_failure_fails_its_step_with_the_inner_error(rt: Any) -> None:
    inner = Workflow(name="inner", steps=[Task(name="i1", agent=lambda x: x), Task(name="i2", agent=lambda x: 1 / 0)])
    outer = Workflow(name="outer", steps=[Task(name="sub", agent=inner), Task(name="after", agent=lambda x: x)])
    result = await outer.run(1)
    assert result.status is TaskStatus.FAILED
    assert result.error == "task 'sub' failed: TaskFailedError: task 'i2' failed: ZeroDivisionError: division by zero"
    assert result.tasks["sub"].status is TaskStatus.FAILED
    assert result.tasks["after"].status is TaskStatus.PENDING and result.tasks["after"].started_at is None
    assert inner.get_state().status is TaskStatus.FAILED


async def test_cancelling_a_run_cancels_its_nested_workflow(rt: Any) -> None:
    started = anyio.Event()

    async def hang(x: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    inner = Workflow(name="inner", steps=[Task(name="i", agent=hang)])
    outer = Workflow(name="outer", steps=[Task(name="sub", agent=inner)])
    async with anyio.create_task_group() as tg:
        tg.start_soon(outer.run)
        with anyio.fail_after(5):
            await started.wait()
        tg.cancel_scope.cancel()
    for wf, task in ((outer, "sub"), (inner, "i")):
        state = wf.get_state()
        assert state.status is TaskStatus.CANCELLED and state.running == []
        assert state.tasks[task].status is TaskStatus.CANCELLED


async def test_run_sync_inside_an_event_loop_says_to_await(rt: Any) -> None:
    from pyagent import ConfigurationError

    wf = Workflow(name="w", steps=[Task(name="a", agent=lambda x: 1)])
    with pytest.raises(ConfigurationError, match=r"run_sync\(\) .* inside a running event loop: use `await workflow\.run\(\.\.\.\)`"):
        wf.run_sync()


async def test_a_completed_task_is_checkpointed_before_an_async_callback_runs(rt: Any, store_url: str) -> None:
    from pyagent.durability.replay import load_run

    in_callback = anyio.Event()

    async def notify(task: Any) -> None:
        in_callback.set()
        await anyio.sleep_forever()  # cancelled here

    wf = Workflow(name="w", steps=[Task(name="a", agent=lambda x: "A"), Task(name="b", agent=lambda x: "B")],
                  checkpointing={"storage": store_url, "interval": "after_each_task"})
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: wf.run(on_task_complete=notify, run_id="r1"))
        with anyio.fail_after(5):
            await in_callback.wait()
        tg.cancel_scope.cancel()
    state, _ = await load_run(store_url, "r1")
    assert state.completed == ["a"] and state.results == {"a": "A"}


async def test_a_monitor_raising_a_base_exception_leaves_no_task_running(rt: Any) -> None:
    def stop_on_start(event: Event) -> None:
        if event.kind == "task.started":
            raise Abort("monitor pulled the plug")

    wf = Workflow(name="w", steps=[Task(name="a", agent=lambda x: 1)])
    with pytest.raises(Abort):
        await wf.run(on_event=stop_on_start)
    state = wf.get_state()
    assert state.running == [] and state.tasks["a"].status is TaskStatus.FAILED


async def test_reprs_stay_short_whatever_the_output_size(rt: Any) -> None:
    """asyncio, loggers, debuggers and pytest call repr(); a 10 MB output repeated per task in it
    made a 100-task run take seconds and gigabytes to return."""
    from pyagent.model.context import Message

    big = "x" * 2_000_000
    wf = Workflow(name="w", steps=[Task(name=f"t{i}", agent=lambda x: x) for i in range(20)])
    result = await wf.run(big)
    assert result.ok and result.output is big
    assert len(repr(result)) < 1_000
    assert len(repr(result.tasks["t0"])) < 300
    assert len(repr(Message("a", big))) < 300
    assert "workflow='w'" in repr(result) and "status=completed" in repr(result)


async def test_concurrent_runs_of_one_workflow_keep_their_own_state_and_results(drt: Any) -> None:
    async def note(x: Any, ctx: Any) -> list[Any]:
        ctx.state.setdefault("seen", []).append(x)
        await anyio.sleep(0)
        return [*ctx.state["seen"], sorted(ctx.results)]

    wf = Workflow(name="w", steps=[Task(name="a", agent=note), Task(name="b", agent=note)])
    outputs: dict[int, Any] = {}

    async def one(i: int) -> None:
        outputs[i] = (await wf.run(i)).output

    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(one, i)
    assert outputs == {i: [i, [i, []], ["a"]] for i in range(40)}
    assert wf.get_state().running == [] and not wf._active
