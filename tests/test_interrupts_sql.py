"""Durable interrupts on SQLite and PostgreSQL in one process, with the real pattern plugins.

Parallel branches waiting at once (fail_fast and collect), answered separately; timeouts with
each policy, driven by a manual clock; forged ids; a serving orchestrator continuing a run the
moment it is answered, over its webhook endpoint.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from pyagent import (
    Escalation,
    InterruptAnsweredError,
    InterruptNotFoundError,
    Orchestrator,
    Task,
    TaskStatus,
    Workflow,
)
from pyagent.orchestrator import ExecutionPattern
from pyagent.testing import ManualClock

pytest.importorskip("pyagent_sql")
pytest.importorskip("pyagent_parallel")
pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Any, own_schema: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
        return
    import os

    base = os.environ.get("PYAGENT_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("PYAGENT_TEST_POSTGRES_URL is not set: no PostgreSQL server to run against")
    yield own_schema(base)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def wait_for(predicate: Any, timeout: float = 15.0) -> Any:
    with anyio.fail_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            await anyio.sleep(0.02)


def fan(url: str, calls: Counter[str], policy: str) -> Workflow:
    def ask(name: str) -> Any:
        async def agent(x: Any, ctx: Any) -> str:
            calls[name] += 1
            answer = await ctx.interrupt(f"Sign off {name}?", schema=bool)
            return f"{name}:{answer}"
        return agent

    def broken(x: Any) -> str:
        calls["broken"] += 1
        raise RuntimeError("the ledger is down")

    steps = [Task(name="Legal", agent=ask("legal")), Task(name="Finance", agent=ask("finance")),
             Task(name="Quick", agent=lambda x: calls.update(["quick"]) or "quick")]
    if policy == "collect":
        steps.append(Task(name="Broken", agent=broken))
    return Workflow(name=f"Fan {policy}", pattern=ExecutionPattern.PARALLEL, steps=steps,
                    failure_policy=policy, checkpointing={"storage": url})


@pytest.mark.parametrize("policy", ["fail_fast", "collect"])
async def test_parallel_branches_wait_together_and_each_answer_continues_its_branch_only(
        runtime: Any, url: str, policy: str) -> None:
    calls: Counter[str] = Counter()
    wf = fan(url, calls, policy)
    orch = Orchestrator()
    orch.add_workflow(wf)
    first = await wf.run("go", wait_for_answers=False)
    assert first.status is TaskStatus.WAITING
    questions = {q.task: q for q in await orch.apending()}
    assert set(questions) == {"Legal", "Finance"} and questions["Legal"].id != questions["Finance"].id
    if policy == "collect":  # a failing sibling does not stop the branches that wait
        assert first.tasks["Broken"].status is TaskStatus.FAILED

    with pytest.raises(InterruptNotFoundError):
        await orch.resume(first.run_id, {uuid.uuid4().hex: True})
    second = await orch.resume(first.run_id, {questions["Finance"].id: True}, answered_by="cfo")
    assert second is not None and second.status is TaskStatus.WAITING
    assert [i.task for i in second.interrupts] == ["Legal"]
    assert calls["finance"] == 2 and calls["legal"] == 1 and calls["quick"] == 1  # Legal was not re-run

    done = await orch.resume(first.run_id, {questions["Legal"].id: False}, answered_by="counsel")
    assert done is not None
    assert calls["legal"] == 2 and calls["finance"] == 2 and calls["quick"] == 1
    if policy == "collect":
        assert done.ok and done.output == {"Legal": "legal:False", "Finance": "finance:True", "Quick": "quick"}
        assert "the ledger is down" in done.errors["Broken"]
        assert calls["broken"] == 3  # a failed task is not completed: it runs again in each execution
    else:
        assert done.ok and done.output == {"Legal": "legal:False", "Finance": "finance:True", "Quick": "quick"}
    with pytest.raises(InterruptAnsweredError):
        await orch.resume(first.run_id, {questions["Legal"].id: True})
    (record,) = await orch.aget_history()
    by = sorted(a.data["answered_by"] for a in record.audit if a.kind == "interrupt.answered")
    assert by == ["cfo", "counsel"]


async def test_timeouts_apply_their_policy_on_the_next_start_when_nothing_served_the_run(
        runtime: Any, url: str) -> None:
    clock = ManualClock(start=1_700_000_000.0)
    runtime.clock = clock

    def asking(**options: Any) -> Any:
        async def agent(x: Any, ctx: Any) -> Any:
            return await ctx.interrupt("Go?", schema=bool, **options)
        return agent

    wf = Workflow(name="Timeouts", pattern=ExecutionPattern.PARALLEL, failure_policy="collect", steps=[
        Task(name="Fails", agent=asking(timeout=60)),
        Task(name="Defaults", agent=asking(timeout=60, on_timeout="default", default=False)),
        Task(name="Escalates", agent=asking(timeout=60, escalate_to=Escalation(question="Boss: go?", timeout=30,
                                                                             on_timeout="default", default=True))),
    ], checkpointing={"storage": url})
    orch = Orchestrator()
    orch.add_workflow(wf)
    waiting = await wf.run(None, wait_for_answers=False)
    assert len(waiting.interrupts) == 3
    clock.advance(61)  # every deadline passes while no process runs the run
    again = await orch.resume(waiting.run_id)
    assert again is not None and again.status is TaskStatus.WAITING  # only the escalation is open now
    (boss,) = await orch.apending()
    assert boss.question == "Boss: go?" and boss.level == 1 and boss.deadline == clock.now + 30 - 0
    assert again.tasks["Fails"].status is TaskStatus.FAILED
    assert "nobody answered 'Go?'" in again.errors["Fails"]
    assert again.tasks["Defaults"].output is False
    clock.advance(31)
    done = await orch.resume(waiting.run_id)
    assert done is not None and done.ok
    assert done.output == {"Defaults": False, "Escalates": True}
    (record,) = await orch.aget_history()
    kinds = Counter(a.kind for a in record.audit)
    assert kinds == {"interrupt.asked": 4, "interrupt.expired": 1, "interrupt.answered": 2,
                     "interrupt.escalated": 1}
    assert {a.data["answered_by"] for a in record.audit if a.kind == "interrupt.answered"} == {"timeout"}


async def test_a_serving_orchestrator_continues_a_run_answered_over_its_webhook(runtime: Any, url: str) -> None:
    pytest.importorskip("pyagent_webhooks")
    calls: Counter[str] = Counter()

    async def approve(x: Any, ctx: Any) -> str:
        calls["approve"] += 1
        answer = await ctx.interrupt("Deploy to production?", schema=bool)
        return "deployed" if answer else "held"

    wf = Workflow(name="Deploy", steps=[Task(name="Build", agent=lambda x: calls.update(["build"]) or x),
                                       Task(name="Approve", agent=approve)])
    orch = Orchestrator(store=url)
    orch.on_webhook("/deploys", workflow=wf, auth="bearer", secret="t0ken")
    auth = {"Authorization": "Bearer t0ken"}
    async with orch.serving(port=0) as host, httpx.AsyncClient(base_url=host.urls[0]) as http:
        started = await http.post("/deploys", json={"ref": "main"}, headers=auth)
        run_id = started.json()["run_id"]
        status = await wait_for(lambda: _waiting(http, run_id, auth))
        (question,) = status["interrupts"]
        assert question["question"] == "Deploy to production?" and question["schema"] == {"type": "boolean"}
        assert host.waiting_for_answers == 1 and host.in_flight == 0  # no slot, no lease while it waits
        where = f"/runs/{run_id}/interrupts/{question['id']}"
        assert (await http.post(where, json={"answer": True})).status_code == 401
        bad = await http.post(where, json={"answer": "yes"}, headers=auth)
        assert bad.status_code == 422 and bad.json()["errors"] == ["answer: must be a boolean, got a string"]
        missing = await http.post(f"/runs/{run_id}/interrupts/{'0' * 32}", json={"answer": True}, headers=auth)
        assert missing.status_code == 404
        ok = await http.post(where, json={"answer": True, "answered_by": "ops"}, headers=auth)
        assert ok.status_code == 200 and ok.json()["answered_by"] == "ops" and ok.json()["answer"] is True
        again = await http.post(where, json={"answer": False}, headers=auth)
        assert again.status_code == 409 and "already answered by ops" in again.json()["error"]
        done = await wait_for(lambda: _status(http, run_id, auth, "completed"), timeout=10)
        assert done["tasks_completed"] == 2
    assert calls == {"build": 1, "approve": 2}
    (record,) = await orch.aget_history()
    answered = next(a for a in record.audit if a.kind == "interrupt.answered")
    assert answered.data["answered_by"] == "ops" and json.loads(answered.data["answer"]) is True


async def _waiting(http: httpx.AsyncClient, run_id: str, auth: dict[str, str]) -> dict[str, Any] | None:
    return await _status(http, run_id, auth, "waiting")


async def _status(http: httpx.AsyncClient, run_id: str, auth: dict[str, str], want: str) -> dict[str, Any] | None:
    got = await http.get(f"/runs/{run_id}", headers=auth)
    body = got.json()
    return body if got.status_code == 200 and body["status"] == want else None
