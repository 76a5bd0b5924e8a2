"""Durable interrupts with the kernel alone: ctx.interrupt, ApprovalTask, answers, timeouts, branches.

Runs use the kernel's memory store (``memory://``) where a store is needed; SQLite and
PostgreSQL, and real processes, are in the SQL plugin's tests and the integration tests.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from pyagent import (
    AnswerValidationError,
    ApprovalRejectedError,
    ApprovalTask,
    ConfigurationError,
    Escalation,
    InterruptAnsweredError,
    InterruptNotFoundError,
    Orchestrator,
    RetryConfig,
    Task,
    TaskStatus,
    Workflow,
)
from pyagent.model import events as ev
from pyagent.testing import ManualClock

pytestmark = pytest.mark.anyio


class Refund(BaseModel):
    approved: bool
    note: str = ""


def store_url() -> str:
    return f"memory://interrupts-{uuid.uuid4().hex}"


async def wait_for(predicate: Any, what: str, timeout: float = 10.0) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy."""
    with anyio.fail_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            await anyio.sleep(0.01)
    raise AssertionError(what)  # pragma: no cover


class Calls(Counter[str]):
    """How often each agent ran."""


def refund_workflow(calls: Calls, *, storage: str | None = None, **ask: Any) -> Workflow:
    def assess(order: dict[str, Any]) -> dict[str, Any]:
        calls["assess"] += 1
        return {**order, "amount": 120}

    async def approve(claim: dict[str, Any], ctx: Any) -> str:
        calls["approve"] += 1
        answer = await ctx.interrupt(f"Approve refund of ${claim['amount']}?", schema=Refund, **ask)
        calls["approve answered"] += 1
        return "refunded" if answer.approved else f"refused: {answer.note}"

    def notify(outcome: str) -> str:
        calls["notify"] += 1
        return f"customer told: {outcome}"

    checkpointing = {"storage": storage} if storage else None
    return Workflow(name="Refund", steps=[Task(name="Assess", agent=assess), Task(name="Approve", agent=approve),
                                          Task(name="Notify", agent=notify)], checkpointing=checkpointing)


async def test_a_question_pauses_the_run_until_answered_then_the_task_runs_again_with_the_answer(
        mini_runtime: Any) -> None:
    calls = Calls()
    wf = refund_workflow(calls)
    orch = Orchestrator()
    orch.add_workflow(wf)
    seen: list[Any] = []
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await wf.run({"order": 7}, on_event=seen.append)

        tg.start_soon(run)
        (question,) = await wait_for(orch.apending, "a pending question")
        assert question.task == "Approve" and question.question == "Approve refund of $120?"
        assert question.schema["required"] == ["approved"]
        assert len(question.id) == 32 and question.run_id == wf.get_state().run_id
        await wait_for(lambda: wf.get_state().status is TaskStatus.WAITING, "the run waits")
        state = wf.get_state()
        assert state.waiting == ["Approve"] and state.completed == ["Assess"] and state.pending == ["Notify"]
        assert state.tasks["Approve"].status is TaskStatus.WAITING
        assert await orch.resume(question.run_id, {question.id: {"approved": True}}, answered_by="alice") is None
    result = box["result"]
    assert result.ok and result.output == "customer told: refunded"
    # Completed tasks never run again; the interrupted one ran again from its start.
    assert calls == {"assess": 1, "approve": 2, "approve answered": 1, "notify": 1}
    kinds = [e.kind for e in seen]
    assert kinds.index(ev.TASK_WAITING) < kinds.index(ev.WORKFLOW_WAITING) < kinds.index(ev.WORKFLOW_COMPLETED)
    assert ev.TASK_FAILED not in kinds
    (record,) = orch.get_history()
    trail = {a.kind: a for a in record.audit}
    asked, answered = trail[ev.INTERRUPT_ASKED], trail[ev.INTERRUPT_ANSWERED]
    assert asked.task == "Approve" and asked.data["question"] == "Approve refund of $120?"
    assert asked.data["interrupt"] == answered.data["interrupt"] == question.id
    assert answered.data["answered_by"] == "alice" and json.loads(answered.data["answer"]) == {"approved": True}
    assert answered.timestamp == answered.data["answered_at"] >= asked.timestamp
    assert await orch.apending() == []


async def test_an_answer_that_does_not_match_the_schema_is_refused_and_the_run_keeps_waiting(
        mini_runtime: Any) -> None:
    calls = Calls()
    wf = refund_workflow(calls)
    orch = Orchestrator()
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await wf.run({})

        tg.start_soon(run)
        (question,) = await wait_for(orch.apending, "a pending question")
        with pytest.raises(AnswerValidationError) as refused:
            await orch.resume(question.run_id, {question.id: {"approved": "maybe", "note": 3}})
        assert refused.value.errors == ["answer.approved: must be a boolean, got a string",
                                        "answer.note: must be a string, got a number"]
        assert refused.value.interrupt_id == question.id
        with pytest.raises(AnswerValidationError, match=r"answer\.approved: is required"):
            await orch.resume(question.run_id, {question.id: {}})
        await anyio.sleep(0.1)
        assert [q.id for q in await orch.apending()] == [question.id]  # still waiting
        assert calls["approve"] == 1 and not box
        await orch.resume(question.run_id, {question.id: Refund(approved=False, note="no receipt")})
    assert box["result"].output == "customer told: refused: no receipt"


async def test_forged_replayed_and_foreign_question_ids_are_refused(mini_runtime: Any) -> None:
    calls = Calls()
    one, two = refund_workflow(calls), refund_workflow(calls)
    two.name = "Refund 2"
    orch = Orchestrator()
    results: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        for wf in (one, two):
            async def run(wf: Workflow = wf) -> None:
                results[wf.name] = await wf.run({})

            tg.start_soon(run)
        first, second = await wait_for(lambda: _two(orch), "two questions")
        with pytest.raises(InterruptNotFoundError):
            await orch.resume(first.run_id, {"0" * 32: {"approved": True}})
        with pytest.raises(InterruptNotFoundError):  # a real id, of another run
            await orch.resume(first.run_id, {second.id: {"approved": True}})
        await orch.resume(first.run_id, {first.id: {"approved": True}}, answered_by="alice")
        with pytest.raises(InterruptAnsweredError, match="already answered by alice"):
            await orch.resume(first.run_id, {first.id: {"approved": False}}, answered_by="mallory")
        await orch.resume(second.run_id, {second.id: {"approved": True}})
    assert results["Refund"].output == results["Refund 2"].output == "customer told: refunded"


async def _two(orch: Orchestrator) -> list[Any] | None:
    found = await orch.apending()
    return found if len(found) == 2 else None


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_timeout_fail_fails_the_task_clearly_and_is_neither_retried_nor_handed_to_the_fallback(
        mini_runtime: Any) -> None:
    clock = ManualClock()
    mini_runtime.clock = clock
    asked = Calls()

    async def approve(x: Any, ctx: Any) -> Any:
        asked["approve"] += 1
        return await ctx.interrupt("Ship it?", schema=bool, timeout=3600)

    def fallback(x: Any) -> str:
        asked["fallback"] += 1
        return "fallback"

    wf = Workflow(name="Ship", steps=[Task(name="Ask", agent=approve, fallback_agent=fallback,
                                           retry_config=RetryConfig(max_retries=3, initial_delay=0))])
    orch = Orchestrator()
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await wf.run()

        tg.start_soon(run)
        (question,) = await wait_for(orch.apending, "a pending question")
        assert question.deadline == question.asked_at + 3600
        await clock.run_for(3599)
        assert not box
        await clock.run_for(2)
    result = box["result"]
    assert result.status is TaskStatus.FAILED
    assert "nobody answered 'Ship it?'" in result.error and "within 3600 s" in result.error
    assert type(result.tasks["Ask"].error).__name__ == "InterruptTimeoutError"
    assert asked == {"approve": 2}  # asked, then ran again to meet the expiry: no retry, no fallback
    kinds = [a["kind"] for a in wf._last.audit_trail]
    assert kinds == [ev.INTERRUPT_ASKED, ev.INTERRUPT_EXPIRED]
    with pytest.raises(InterruptAnsweredError, match="expired"):
        await orch.resume(question.run_id, {question.id: True})


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_timeout_default_answers_with_the_default_recorded_as_given_by_the_timeout(mini_runtime: Any) -> None:
    clock = ManualClock()
    mini_runtime.clock = clock

    async def approve(x: Any, ctx: Any) -> Any:
        return await ctx.interrupt("Ship it?", schema=Refund, timeout=60, on_timeout="default",
                                   default=Refund(approved=False, note="nobody answered"))

    wf = Workflow(name="Ship", steps=[Task(name="Ask", agent=approve)])
    orch = Orchestrator()
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await wf.run()

        tg.start_soon(run)
        await wait_for(orch.apending, "a pending question")
        await clock.run_for(61)
    assert box["result"].output == Refund(approved=False, note="nobody answered")
    answered = [a for a in wf._last.audit_trail if a["kind"] == ev.INTERRUPT_ANSWERED]
    assert answered[0]["answered_by"] == "timeout"
    assert json.loads(answered[0]["answer"]) == {"approved": False, "note": "nobody answered"}


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_escalation_asks_a_second_question_with_its_own_id_and_timeout(mini_runtime: Any) -> None:
    clock = ManualClock()
    mini_runtime.clock = clock

    async def approve(x: Any, ctx: Any) -> Any:
        return await ctx.interrupt("Approve $5,000?", schema=bool, timeout=3600,
                                   escalate_to=Escalation(question="Manager: approve $5,000?", timeout=600,
                                                          metadata={"assignee": "manager"}))

    wf = Workflow(name="Spend", steps=[Task(name="Ask", agent=approve)])
    orch = Orchestrator()
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await wf.run()

        tg.start_soon(run)
        (first,) = await wait_for(orch.apending, "the first question")
        await clock.run_for(3601)
        (second,) = await wait_for(lambda: _other(orch, first.id), "the escalation")
        assert second.question == "Manager: approve $5,000?" and second.level == 1 and second.escalates == first.id
        assert second.id != first.id and second.metadata == {"assignee": "manager"}
        assert second.deadline == second.asked_at + 600 and second.schema == {"type": "boolean"}
        with pytest.raises(InterruptAnsweredError, match="escalated"):
            await orch.resume(first.run_id, {first.id: True})
        await orch.resume(second.run_id, {second.id: True}, answered_by="manager")
    assert box["result"].output is True
    kinds = [a["kind"] for a in wf._last.audit_trail]
    assert kinds == [ev.INTERRUPT_ASKED, ev.INTERRUPT_ESCALATED, ev.INTERRUPT_ASKED, ev.INTERRUPT_ANSWERED]


async def _other(orch: Orchestrator, not_id: str) -> list[Any] | None:
    found = [q for q in await orch.apending() if q.id != not_id]
    return found or None


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_escalation_that_times_out_too_fails_the_task(mini_runtime: Any) -> None:
    clock = ManualClock()
    mini_runtime.clock = clock

    async def approve(x: Any, ctx: Any) -> Any:
        return await ctx.interrupt("Approve?", schema=bool, timeout=100, escalate_to="Anyone: approve?")

    wf = Workflow(name="Spend", steps=[Task(name="Ask", agent=approve)])
    orch = Orchestrator()
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await wf.run()

        tg.start_soon(run)
        (first,) = await wait_for(orch.apending, "the first question")
        await clock.run_for(101)
        await wait_for(lambda: _other(orch, first.id), "the escalation")
        await clock.run_for(101)  # the escalation has the same timeout
    assert box["result"].status is TaskStatus.FAILED
    assert "'Anyone: approve?'" in box["result"].error


async def test_parallel_branches_wait_at_once_and_are_answered_separately(drt: Any) -> None:
    calls = Calls()

    def branch(name: str) -> Any:
        async def ask(x: Any, ctx: Any) -> str:
            calls[name] += 1
            answer = await ctx.interrupt(f"{name}?", schema=str)
            return f"{name}={answer}"
        return ask

    def quick(x: Any) -> str:
        calls["quick"] += 1
        return "quick"

    url = store_url()
    wf = Workflow(name="Fan", pattern="fan", steps=[Task(name="Legal", agent=branch("legal")),
                                                   Task(name="Finance", agent=branch("finance")),
                                                   Task(name="Quick", agent=quick)],
                  checkpointing={"storage": url})
    orch = Orchestrator()
    orch.add_workflow(wf)
    result = await wf.run(None, wait_for_answers=False)
    assert result.status is TaskStatus.WAITING and result.output is None and not result.ok
    assert {i.task for i in result.interrupts} == {"Legal", "Finance"}
    by_task = {q.task: q for q in await orch.apending()}
    assert by_task["Legal"].id != by_task["Finance"].id
    assert {i.id for i in result.interrupts} == {q.id for q in by_task.values()}
    # Nothing holds a suspended run: no lease, no process.
    store = mini_runtime_store(drt, url)
    assert await store.get_lease(result.run_id) is None
    assert (await store.load(result.run_id)).header.status == "waiting"

    again = await orch.resume(result.run_id, {by_task["Legal"].id: "yes"}, answered_by="legal team")
    assert again is not None and again.status is TaskStatus.WAITING
    assert [i.task for i in again.interrupts] == ["Finance"]
    # Only the answered branch ran again: the other waited without running, Quick was reused.
    assert calls == {"legal": 2, "finance": 1, "quick": 1}
    assert again.tasks["Legal"].status is TaskStatus.COMPLETED and again.tasks["Quick"].reused

    done = await orch.resume(result.run_id, {by_task["Finance"].id: "ok"}, answered_by="cfo")
    assert done is not None and done.ok
    assert done.output == {"Legal": "legal=yes", "Finance": "finance=ok", "Quick": "quick"}
    assert calls == {"legal": 2, "finance": 2, "quick": 1}
    (record,) = await orch.aget_history()
    answers = {a.data["answered_by"] for a in record.audit if a.kind == ev.INTERRUPT_ANSWERED}
    assert answers == {"legal team", "cfo"} and record.status is TaskStatus.COMPLETED
    assert len(record.resumes) == 2


def mini_runtime_store(runtime: Any, url: str) -> Any:
    return runtime.driver("stores", "memory")(url)


async def test_in_a_held_run_answering_one_branch_runs_that_branch_only(drt: Any) -> None:
    calls = Calls()

    def branch(name: str) -> Any:
        async def ask(x: Any, ctx: Any) -> str:
            calls[name] += 1
            return f"{name}={await ctx.interrupt(f'{name}?')}"
        return ask

    wf = Workflow(name="Fan", pattern="fan", steps=[Task(name="A", agent=branch("a")),
                                                   Task(name="B", agent=branch("b"))])
    orch = Orchestrator()
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await wf.run()

        tg.start_soon(run)
        questions = await wait_for(lambda: _two(orch), "two questions")
        a = next(q for q in questions if q.task == "A")
        await orch.resume(a.run_id, {a.id: 1})
        await wait_for(lambda: wf.get_state().tasks["A"].status is TaskStatus.COMPLETED, "A completes")
        await wait_for(lambda: wf.get_state().status is TaskStatus.WAITING, "the run waits again")
        assert calls == {"a": 2, "b": 1}
        (b,) = await orch.apending()
        await orch.resume(b.run_id, {b.id: 2})
    assert box["result"].output == {"A": "a=1", "B": "b=2"}
    assert calls == {"a": 2, "b": 2}


async def test_a_checkpointed_run_holds_its_lease_while_it_waits_here_and_says_so_in_the_store(drt: Any) -> None:
    calls = Calls()
    url = store_url()
    wf = refund_workflow(calls, storage=url)
    orch = Orchestrator()
    orch.add_workflow(wf)
    store = mini_runtime_store(drt, url)
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await wf.run({})

        tg.start_soon(run)
        (question,) = await wait_for(orch.apending, "a question")
        stored = await wait_for(lambda: _status_is(store, question.run_id, "waiting"), "a waiting header")
        assert stored.header.status == "waiting"
        assert await store.get_lease(question.run_id) is not None  # this process holds it
        # Resuming elsewhere would be refused; here the holder is told and goes on.
        assert await orch.resume(question.run_id, {question.id: {"approved": True}}) is None
    assert box["result"].ok
    assert await store.get_lease(question.run_id) is None
    assert (await store.load(question.run_id)).header.status == "completed"


async def _status_is(store: Any, run_id: str, status: str) -> Any:
    stored = await store.load(run_id)
    return stored if stored is not None and stored.header.status == status else None


async def test_stopping_a_run_that_waits_here_leaves_it_waiting_and_resumable(drt: Any) -> None:
    calls = Calls()
    url = store_url()
    wf = refund_workflow(calls, storage=url)
    orch = Orchestrator()
    orch.add_workflow(wf)
    store = mini_runtime_store(drt, url)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(wf.run, {})
            (question,) = await wait_for(orch.apending, "a question")
            await wait_for(lambda: wf.get_state().status is TaskStatus.WAITING, "the run waits")
            scope.cancel()
    stored = await store.load(question.run_id)
    assert stored.header.status == "waiting"  # not cancelled: it still waits for the answer
    assert await store.get_lease(question.run_id) is None  # and nobody holds it now
    result = await orch.resume(question.run_id, {question.id: {"approved": True}}, answered_by="bob")
    assert result is not None and result.ok and result.output == "customer told: refunded"
    assert calls == {"assess": 1, "approve": 2, "approve answered": 1, "notify": 1}


async def test_cancelling_a_checkpointed_run_that_waits_ends_it_cancelled_and_a_resume_waits_on_the_same_question(
        drt: Any) -> None:
    """workflow.cancel() while the run waits: cancelled, as promised (it used to stay waiting), and
    answers to its open question are refused; resumed from its checkpoints later, the task waits
    on that question again without running, and takes its answer."""
    calls = Calls()
    url = store_url()
    wf = refund_workflow(calls, storage=url)
    orch = Orchestrator()
    orch.add_workflow(wf)
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await wf.run({})

        tg.start_soon(run)
        (question,) = await wait_for(orch.apending, "a question")
        await wait_for(lambda: wf.get_state().status is TaskStatus.WAITING, "the run waits")
        assert wf.cancel(question.run_id, reason="refund withdrawn")
    assert box["result"].status is TaskStatus.CANCELLED and "refund withdrawn" in box["result"].error
    store = mini_runtime_store(drt, url)
    assert (await store.load(question.run_id)).header.status == "cancelled"
    assert await store.get_lease(question.run_id) is None
    # Its question is still open, but an answer would continue a cancelled run: refused.
    with pytest.raises(InterruptAnsweredError, match=r"its run ended \(cancelled\).*resume the run"):
        await orch.resume(question.run_id, {question.id: {"approved": True}})
    assert (await store.get_interrupt(question.id)).status == "pending"  # nothing recorded
    assert (await store.load(question.run_id)).header.status == "cancelled"

    again = await wf.resume_from(question.run_id, wait_for_answers=False)
    assert again.status is TaskStatus.WAITING and [i.id for i in again.interrupts] == [question.id]
    done = await orch.resume(question.run_id, {question.id: {"approved": True}})
    assert done is not None and done.ok and done.output == "customer told: refunded"
    # Resumed, the task waited on its open question without running; answered, it ran once more.
    assert calls == {"assess": 1, "approve": 2, "approve answered": 1, "notify": 1}


async def test_waiting_runs_are_not_counted_as_executions_until_they_end(drt: Any) -> None:
    wf = refund_workflow(Calls(), storage=store_url())
    orch = Orchestrator()
    orch.add_workflow(wf)
    waiting = await wf.run({}, wait_for_answers=False)
    assert wf.get_metrics().total_executions == 0
    (q,) = await orch.apending()
    done = await orch.resume(waiting.run_id, {q.id: {"approved": True}})
    assert done is not None and done.ok
    metrics = wf.get_metrics()
    assert metrics.total_executions == 1 and metrics.successful == 1 and metrics.failed == 0


async def test_wait_for_answers_false_needs_a_store(mini_runtime: Any) -> None:
    wf = refund_workflow(Calls())
    with pytest.raises(ConfigurationError, match="must be saved to go on later"):
        await wf.run({}, wait_for_answers=False)


async def test_approval_task_asks_declaratively_and_a_rejection_fails_the_task(mini_runtime: Any) -> None:
    wf = Workflow(name="Publish", steps=[
        Task(name="Draft", agent=lambda topic: f"post about {topic}"),
        ApprovalTask(name="Review", question=lambda draft: f"Publish {draft!r}?"),
        Task(name="Publish", agent=lambda approval, ctx: f"published {ctx.results['Draft']}"),
    ])
    orch = Orchestrator()
    for answer, expected in (({"approved": True}, "published post about cats"), ({"approved": False,
                                                                                   "comment": "tone"}, None)):
        box: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            async def run(box: dict[str, Any] = box) -> None:
                box["result"] = await wf.run("cats")

            tg.start_soon(run)
            (question,) = await wait_for(orch.apending, "the review question")
            assert question.question == "Publish 'post about cats'?" and question.task == "Review"
            await orch.resume(question.run_id, {question.id: answer})
        result = box["result"]
        if expected is not None:
            assert result.output == expected
        else:
            assert result.status is TaskStatus.FAILED
            assert isinstance(result.tasks["Review"].error, ApprovalRejectedError)
            assert "'Review' was not approved: tone" in result.error


def test_approval_task_is_checked_when_built() -> None:
    with pytest.raises(ValueError, match="not agent="):
        ApprovalTask(name="A", question="ok?", agent=lambda x: x)
    with pytest.raises(ValueError, match="does not match"):
        ApprovalTask(name="A", question="ok?", timeout=5, on_timeout="default", default={"approved": "x"})
    with pytest.raises(ValueError, match="need timeout"):
        ApprovalTask(name="A", question="ok?", on_timeout="default", default={"approved": True})
    task = ApprovalTask(name="A", question="ok?", timeout=60)
    assert task.answer_timeout == 60 and task.timeout is None and task.executor == "local"


async def test_interrupt_outside_a_run_and_on_a_stand_in_run_are_clear_errors() -> None:
    from pyagent import RunContext

    with pytest.raises(ConfigurationError, match="needs a workflow run"):
        await RunContext().interrupt("ok?")

    class StandIn:  # what a remote executor gives an agent instead of its run
        run_id = "r"

    with pytest.raises(ConfigurationError, match="remote executor"):
        await RunContext(run=StandIn()).interrupt("ok?")


async def test_a_question_asked_inside_a_workflow_used_as_a_step_belongs_to_the_outer_task(
        mini_runtime: Any) -> None:
    calls = Calls()

    async def inner_ask(x: Any, ctx: Any) -> str:
        calls["inner"] += 1
        return f"{x}+{await ctx.interrupt('inner ok?', schema=str)}"

    inner = Workflow(name="Inner", steps=[Task(name="Prep", agent=lambda x: f"{x}>prep"),
                                          Task(name="Check", agent=inner_ask)])
    outer = Workflow(name="Outer", steps=[Task(name="First", agent=lambda x: "a"), Task(name="Sub", agent=inner)])
    orch = Orchestrator()
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await outer.run()

        tg.start_soon(run)
        (question,) = await wait_for(orch.apending, "the inner question")
        assert question.task == "Sub/Check" and question.workflow == "Outer"
        await wait_for(lambda: outer.get_state().waiting == ["Sub"], "the outer task waits")
        await orch.resume(question.run_id, {question.id: "yes"})
    assert box["result"].output == "a>prep+yes"
    assert calls["inner"] == 2


async def test_questions_and_answers_survive_in_the_store_history(drt: Any) -> None:
    url = store_url()
    wf = refund_workflow(Calls(), storage=url)
    orch = Orchestrator()
    orch.add_workflow(wf)
    waiting = await wf.run({}, wait_for_answers=False)
    (q,) = await orch.apending()
    from pyagent.durability.history import query_store

    # Answered while nobody runs it: the waiting run's history shows the answer already.
    from pyagent.durability.interrupts import record_answer

    await record_answer(mini_runtime_store(drt, url), waiting.run_id, q.id, {"approved": True},
                        answered_by="dana", clock=drt.clock)
    (record,) = await query_store(url, workflow=None, since=None, status=None)
    assert record.status is TaskStatus.WAITING
    answered = [a for a in record.audit if a.kind == ev.INTERRUPT_ANSWERED]
    assert answered[0].data["answered_by"] == "dana"
    done = await orch.resume(waiting.run_id)
    assert done is not None and done.ok
    (record,) = await query_store(url, workflow=None, since=None, status=None)
    kinds = [a.kind for a in record.audit]
    assert kinds == [ev.INTERRUPT_ASKED, ev.INTERRUPT_ANSWERED]  # each once, across both executions


async def test_metric_folds_count_a_waiting_run_as_in_progress_once_and_as_ended_once(drt: Any) -> None:
    from pyagent.telemetry import MetricFold

    fold = MetricFold()
    wf = refund_workflow(Calls(), storage=store_url())
    orch = Orchestrator(monitors=[fold.on_event])
    orch.add_workflow(wf)
    waiting = await orch.run_workflow(wf, {}, wait_for_answers=False)
    assert fold.values["pyagent_runs_in_progress"] == {("Refund",): 0}  # suspended: not in progress here
    assert fold.values["pyagent_runs"] == {}  # and it has not ended
    (q,) = await orch.apending()
    await orch.resume(waiting.run_id, {q.id: {"approved": True}})
    assert fold.values["pyagent_runs_in_progress"] == {("Refund",): 0}
    assert fold.values["pyagent_runs"] == {("Refund", "completed"): 1}


async def test_a_run_an_agent_starts_by_itself_asks_its_own_questions(mini_runtime: Any) -> None:
    async def inner_ask(x: Any, ctx: Any) -> Any:
        return await ctx.interrupt("inner?", schema=int)

    inner = Workflow(name="Inner", steps=[Task(name="Ask", agent=inner_ask)])

    async def starts_inner(x: Any) -> Any:  # not a step: a run of its own, started from an agent
        return (await inner.run(x)).output

    outer = Workflow(name="Outer", steps=[Task(name="Start", agent=starts_inner)])
    orch = Orchestrator()
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await outer.run(1)

        tg.start_soon(run)
        (question,) = await wait_for(orch.apending, "the inner run's question")
        assert question.workflow == "Inner" and question.task == "Ask"
        assert question.run_id != outer.get_state().run_id
        await orch.resume(question.run_id, {question.id: 5})
    assert box["result"].output == 5


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_serving_orchestrator_applies_a_deadline_while_it_serves_the_waiting_run(drt: Any) -> None:
    clock = drt.clock
    url = store_url()

    async def approve(x: Any, ctx: Any) -> Any:
        return await ctx.interrupt("Ship?", schema=bool, timeout=600, on_timeout="default", default=False)

    wf = Workflow(name="Ship", steps=[Task(name="Approve", agent=approve)])
    orch = Orchestrator(store=url)
    orch.add_workflow(wf)
    async with orch.serving(port=None) as host:
        submitted = await host.submit(wf, None, trigger="test", source="test")
        status = await wait_for(lambda: _host_status(host, submitted.run_id, "waiting"), "the run waits")
        assert [q["question"] for q in status["interrupts"]] == ["Ship?"]
        assert host.in_flight == 0 and host.waiting_for_answers == 1  # no slot held while it waits
        store = mini_runtime_store(drt, url)
        assert await store.get_lease(submitted.run_id) is None
        await clock.run_for(601)  # the deadline passes while the orchestrator serves the run
        done = await wait_for(lambda: _host_status(host, submitted.run_id, "completed"), "the default applies")
    assert done["output"] is False
    (record,) = await orch.aget_history()
    answered = next(a for a in record.audit if a.kind == ev.INTERRUPT_ANSWERED)
    assert answered.data["answered_by"] == "timeout"


async def _host_status(host: Any, run_id: str, want: str) -> dict[str, Any] | None:
    found = await host.run_status(run_id)
    return found if found is not None and found["status"] == want else None


async def test_questions_asked_concurrently_in_one_task_each_get_their_own_answer_in_any_order(
        mini_runtime: Any) -> None:
    """Two tools of one model turn asking at once (LangGraph's #6542): the next time the task
    runs they may ask in the other order, and each must still get its own answer."""
    order = [["refund", "discount"], ["discount", "refund"], ["discount", "refund"]]
    runs = Calls()

    async def tools(x: Any, ctx: Any) -> dict[str, Any]:
        this = order[runs["task"]]
        runs["task"] += 1
        answers: dict[str, Any] = {}

        async def tool(name: str, delay: float) -> None:
            await anyio.sleep(delay)
            answers[name] = await ctx.interrupt(f"Allow {name}?", schema=str)

        async with anyio.create_task_group() as tg:
            for i, name in enumerate(this):
                tg.start_soon(tool, name, 0.01 * i)
        return answers

    wf = Workflow(name="Tools", steps=[Task(name="Turn", agent=tools)])
    orch = Orchestrator()
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await wf.run()

        tg.start_soon(run)
        (first,) = await wait_for(orch.apending, "the first question")
        assert first.question == "Allow refund?"
        await orch.resume(first.run_id, {first.id: "refund ok"})
        # Run again in the other order: "Allow discount?" is new, "Allow refund?" keeps its answer.
        second = await wait_for(lambda: _other(orch, first.id), "the second question")
        assert [q.question for q in second] == ["Allow discount?"]
        await orch.resume(first.run_id, {second[0].id: "discount ok"})
    assert box["result"].output == {"refund": "refund ok", "discount": "discount ok"}
    assert runs["task"] == 3


@pytest.mark.parametrize("suspends", [False, True], ids=["held", "suspends"])
async def test_an_answer_recorded_before_its_task_parks_still_reaches_the_run(mini_runtime: Any, suspends: bool) -> None:
    """The question is in the store before its task parks (here a sibling takes 0.3 s to stop):
    an answer given in between must not be refused as if no process held the run, nor (for a
    run that suspends when it waits) be left to nobody."""
    runs = Calls()

    async def agent_(x: Any, ctx: Any) -> Any:
        runs["task"] += 1

        async def slow_to_stop() -> None:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.3)

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_to_stop)
            answer = await ctx.interrupt("Go ahead?", schema=bool)
        return answer

    wf = Workflow(name="Window", steps=[Task(name="Ask", agent=agent_)],
                  checkpointing={"storage": store_url()} if suspends else None)
    orch = Orchestrator()
    orch.add_workflow(wf)
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await wf.run(wait_for_answers=not suspends)

        tg.start_soon(run)
        (question,) = await wait_for(orch.apending, "the question")
        assert "Ask" not in [q.task for q in (await wf_waiting(wf))]  # not parked yet
        await orch.resume(question.run_id, {question.id: True})
    assert box["result"].status == TaskStatus.COMPLETED
    assert box["result"].output is True
    assert runs["task"] == 2


async def wf_waiting(wf: Workflow) -> list[Any]:
    """The questions ``wf``'s live run waits on with its task parked."""
    return [q for run in wf._active for q in run.waiting_interrupts]


async def test_a_question_asked_twice_gets_two_answers_and_a_key_names_a_question_whose_text_changes(
        mini_runtime: Any) -> None:
    runs = Calls()

    async def agent_(x: Any, ctx: Any) -> list[Any]:
        runs["task"] += 1
        first = await ctx.interrupt("Continue?", schema=bool)
        second = await ctx.interrupt("Continue?", schema=bool)  # the same text again: its own question
        stamped = await ctx.interrupt(f"Sign off (run {runs['task']})?", key="sign-off", schema=str)
        return [first, second, stamped]

    wf = Workflow(name="Loop", steps=[Task(name="Ask", agent=agent_)])
    orch = Orchestrator()
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            box["result"] = await wf.run()

        tg.start_soon(run)
        seen: list[str] = []
        for answer in (True, False, "signed"):
            (q,) = await wait_for(lambda: _open_except(orch, seen), "the next question")
            seen.append(q.id)
            await orch.resume(q.run_id, {q.id: answer})
    assert box["result"].output == [True, False, "signed"]
    assert runs["task"] == 4  # asked three times, then ran once more with every answer


async def _open_except(orch: Orchestrator, seen: list[str]) -> list[Any] | None:
    found = [q for q in await orch.apending() if q.id not in seen]
    return found or None
