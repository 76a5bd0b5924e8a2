"""Several serving hosts sharing one queue store (the memory store, in one process): each run is
executed by one of them, max_active_runs holds across them, orphans are taken over, a cancel
asked through the store stops a run at its next task boundary, a shutdown hands runs over.

Real processes sharing SQLite and PostgreSQL: plugins/sql/tests/test_serve_replicas.py.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from pyagent.durability.stores import open_store
from pyagent.orchestrator import Orchestrator, Task, Workflow
from pyagent.serving import records

pytestmark = pytest.mark.anyio

POLL = 0.02


async def until(check: Any, timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.005)


async def header(url: str, run_id: str) -> Any:
    store = await open_store(url)
    stored = await store.load(run_id)
    assert stored is not None
    return stored.header


class Work:
    """Agents that count their calls by (task, input) and can be held at a gate."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, Any]] = Counter()
        self.active = 0
        self.peak = 0
        self.gate: anyio.Event | None = None
        self.by_host: Counter[str] = Counter()

    def agent(self, task: str, hold: bool = False) -> Any:
        async def run(x: Any, ctx: Any) -> Any:
            self.calls[(task, str(x).split(">")[0])] += 1
            if hold:
                self.active += 1
                self.peak = max(self.peak, self.active)
                try:
                    if self.gate is not None:
                        await self.gate.wait()
                    else:
                        await anyio.sleep(0.01)
                finally:
                    self.active -= 1
            return f"{x}>{task}"

        return run

    def workflow(self, name: str = "job", **kw: Any) -> Workflow:
        return Workflow(name=name, steps=[Task(name="First", agent=self.agent("First")),
                                          Task(name="Hold", agent=self.agent("Hold", hold=True)),
                                          Task(name="Last", agent=self.agent("Last"))], **kw)


@contextlib.asynccontextmanager
async def replicas(url: str, work: Work, n: int, *, max_running: int = 2, grace: float = 10,
                   **wf: Any) -> AsyncIterator[list[Any]]:
    """``n`` orchestrators serving the same workflow from one store, as replicas would."""
    async with contextlib.AsyncExitStack() as stack:
        hosts = []
        for _ in range(n):
            orch = Orchestrator(store=url)
            orch.add_workflow(work.workflow(**wf))
            hosts.append(await stack.enter_async_context(
                orch.serving(port=None, grace=grace, max_running=max_running, poll_interval=POLL)))
        yield hosts


async def finished(url: str, run_ids: list[str], want: str = "completed") -> None:
    store = await open_store(url)

    async def done() -> bool:
        for run_id in run_ids:
            stored = await store.load(run_id)
            if stored is None or stored.header.status != want:
                return False
        return True

    with anyio.fail_after(15):
        while not await done():
            await anyio.sleep(0.01)


async def test_replicas_share_queued_runs_and_run_each_once(serving_runtime: Any, store_url: str) -> None:
    work = Work()
    work.gate = anyio.Event()
    async with replicas(store_url, work, 3, max_running=2) as hosts:
        wf = hosts[0].orchestrator.workflows["job"]
        subs = [await hosts[i % 3].submit(wf, i, trigger="test", source="t") for i in range(12)]
        # every replica fills its two slots: six runs at once, the rest stay queued in the store
        await until(lambda: work.active == 6)
        await anyio.sleep(5 * POLL)
        assert [h.in_flight for h in hosts] == [2, 2, 2] and work.active == 6
        work.gate.set()
        await finished(store_url, [s.run_id for s in subs])
    assert all(work.calls[(task, str(i))] == 1 for i in range(12) for task in ("First", "Hold", "Last"))
    assert sum(work.calls.values()) == 36


async def test_max_active_runs_holds_across_replicas(serving_runtime: Any, store_url: str) -> None:
    work = Work()
    samples: list[int] = []
    async with replicas(store_url, work, 3, max_running=3, max_active_runs=2) as hosts:
        wf = hosts[0].orchestrator.workflows["job"]
        subs = [await hosts[i % 3].submit(wf, i, trigger="test", source="t") for i in range(10)]
        store = await open_store(store_url)

        async def sample() -> bool:
            now = hosts[0].clock.time()
            samples.append(sum(1 for lease in await store.list_leases() if not lease.expired(now)))
            stored = [await store.load(s.run_id) for s in subs]
            return all(s is not None and s.header.status == "completed" for s in stored)

        with anyio.fail_after(20):
            while not await sample():
                await anyio.sleep(0.002)
    assert max(samples) == 2 and work.peak <= 2
    assert sum(work.calls.values()) == 30


async def test_a_run_submitted_here_and_run_by_another_replica_calls_on_finish(serving_runtime: Any,
                                                                                 store_url: str) -> None:
    work = Work()
    work.gate = anyio.Event()
    ended: list[tuple[str, Any]] = []
    async with replicas(store_url, work, 1, max_running=1) as (busy,):
        wf = busy.orchestrator.workflows["job"]
        await busy.submit(wf, "block", trigger="test", source="t")
        await until(lambda: work.active == 1)
        sub = await busy.submit(wf, "other", trigger="test", source="t",
                                on_finish=lambda run_id, result: ended.append((run_id, result)))
        assert busy.waiting == 1
        async with replicas(store_url, work, 1, max_running=1) as (idle,):
            await until(lambda: idle.in_flight == 1)
            work.gate.set()
            await finished(store_url, [sub.run_id])
            with anyio.fail_after(5):
                while not ended:
                    await anyio.sleep(0.01)
    assert ended == [(sub.run_id, None)]  # its result is the other replica's: read it from the store


async def test_a_cancel_through_the_store_stops_a_run_at_its_next_task_boundary(serving_runtime: Any,
                                                                               store_url: str) -> None:
    work = Work()
    work.gate = anyio.Event()
    async with replicas(store_url, work, 2, max_running=1) as hosts:
        wf = hosts[0].orchestrator.workflows["job"]
        sub = await hosts[0].submit(wf, "x", trigger="test", source="t")
        await until(lambda: work.active == 1)
        store = await open_store(store_url)
        assert await store.request_cancel(sub.run_id, reason="no longer needed", now=hosts[0].clock.time()) == "requested"
        await anyio.sleep(1.5)  # the holder polls once a second; the running task goes on
        assert work.active == 1
        work.gate.set()  # it finishes; the next task never starts
        await finished(store_url, [sub.run_id], "cancelled")
        await anyio.sleep(10 * POLL)  # nobody takes it again
        assert [h.in_flight for h in hosts] == [0, 0]
        stored = await store.load(sub.run_id)
        assert stored is not None and stored.header.status == "cancelled"
        assert await store.get_lease(sub.run_id) is None
    assert work.calls[("First", "x")] == 1 and work.calls[("Hold", "x")] == 1 and ("Last", "x") not in work.calls
    from pyagent.durability.history import ExecutionRecord

    record = ExecutionRecord.from_payload(stored.header.payload, "run")
    assert "no longer needed" in (record.error or "") and record.tasks_completed == 2


async def test_a_queued_run_cancelled_through_the_store_never_starts(serving_runtime: Any, store_url: str) -> None:
    work = Work()
    work.gate = anyio.Event()
    async with replicas(store_url, work, 1, max_running=1) as (host,):
        wf = host.orchestrator.workflows["job"]
        await host.submit(wf, "first", trigger="test", source="t")
        await until(lambda: work.active == 1)
        sub = await host.submit(wf, "queued", trigger="test", source="t")
        store = await open_store(store_url)
        assert await store.request_cancel(sub.run_id, reason="changed my mind", now=host.clock.time()) == "cancelled"
        work.gate.set()
        await anyio.sleep(10 * POLL)
    assert not any(x == "queued" for _, x in work.calls)
    assert (await header(store_url, sub.run_id)).status == "cancelled"


async def test_a_run_whose_owner_died_is_taken_over_without_rerunning_completed_tasks(
        serving_runtime: Any, store_url: str) -> None:
    work = Work()
    work.gate = anyio.Event()
    wf = work.workflow(checkpointing={"storage": store_url})
    # A process runs it directly and "dies" in its second task: its lease stays, unrenewed.
    async with anyio.create_task_group() as tg:
        tg.start_soon(wf.run, "x")
        await until(lambda: work.active == 1)
        tg.cancel_scope.cancel()
    [run_id] = [h.run_id for h in await (await open_store(store_url)).list_runs(workflow="job")]
    store = await open_store(store_url)
    stored = await store.load(run_id)
    assert stored is not None
    await store.save_run(records.with_status(stored.header, "running"))  # as a killed process leaves it
    now = serving_runtime.clock.time()
    await store.claim_run(run_id, "elsewhere:1:dead", "dead-token", now=now, ttl=0.5)
    work.gate.set()
    async with replicas(store_url, work, 2) as hosts:
        assert all(h.in_flight == 0 for h in hosts)  # its lease is still live: nobody takes it yet
        await finished(store_url, [run_id])
    assert work.calls[("First", "x")] == 1  # completed before the death: reused
    assert work.calls[("Hold", "x")] == 2 and work.calls[("Last", "x")] == 1


async def test_a_shutdown_hands_runs_in_flight_to_another_replica_at_once(serving_runtime: Any,
                                                                          store_url: str) -> None:
    work = Work()
    work.gate = anyio.Event()
    orch = Orchestrator(store=store_url)
    orch.add_workflow(work.workflow())
    async with replicas(store_url, work, 1, max_running=1) as (other,):
        wf = other.orchestrator.workflows["job"]
        await other.submit(wf, "busy", trigger="test", source="t")
        await until(lambda: work.active == 1)
        async with orch.serving(port=None, grace=0, max_running=1, poll_interval=POLL) as leaving:
            # the other replica is busy, so the leaving one takes the second run
            sub = await leaving.submit(wf, "moves", trigger="test", source="t")
            await until(lambda: work.active == 2)
            assert leaving.in_flight == 1
        # checkpointed, pending again, lease released: taken as soon as the other has a slot
        assert (await header(store_url, sub.run_id)).status in ("pending", "running")
        work.gate.set()
        await finished(store_url, [sub.run_id])
    assert work.calls[("First", "moves")] == 1 and work.calls[("Last", "moves")] == 1
    assert work.calls[("Hold", "moves")] == 2  # interrupted by the shutdown, run again from its start


async def test_an_answered_waiting_run_is_continued_by_exactly_one_replica(serving_runtime: Any,
                                                                           store_url: str) -> None:
    asked: Counter[str] = Counter()

    def build() -> Workflow:
        async def approve(x: Any, ctx: Any) -> Any:
            asked["approve"] += 1
            ok = await ctx.interrupt("ship it?", schema={"type": "boolean"})
            return f"{x}:{ok}"

        async def after(x: Any) -> Any:
            asked["after"] += 1
            return f"{x}>after"

        return Workflow(name="review", steps=[Task(name="Approve", agent=approve), Task(name="After", agent=after)])

    orchs = []
    for _ in range(3):
        orch = Orchestrator(store=store_url)
        orch.add_workflow(build())
        orchs.append(orch)
    async with contextlib.AsyncExitStack() as stack:
        hosts = [await stack.enter_async_context(o.serving(port=None, poll_interval=POLL)) for o in orchs]
        sub = await hosts[0].submit(orchs[0].workflows["review"], "pr", trigger="test", source="t")
        await finished(store_url, [sub.run_id], "waiting")
        with anyio.fail_after(10):  # every replica follows it (as after a restart), once its lease is given back
            while not all(h.waiting_for_answers == 1 for h in hosts):
                for host in hosts:
                    await host._answers.adopt_stored()
                await anyio.sleep(0.01)
        [question] = await hosts[1].questions(sub.run_id)
        await hosts[1].answer(sub.run_id, question.id, True)
        for host in hosts:
            host.wake(sub.run_id)
        await finished(store_url, [sub.run_id])
        await anyio.sleep(0.6)  # every replica has polled the answer by now
        status = await hosts[2].run_status(sub.run_id)
        assert status is not None and status["status"] == "completed"
    assert asked == {"approve": 2, "after": 1}  # asked once, answered once: After ran once


async def test_a_workflow_submitted_without_being_added_is_served_all_the_same(serving_runtime: Any,
                                                                                store_url: str) -> None:
    # A trigger may submit a workflow it was never registered with: the queue must still hand
    # its runs to this replica, not keep them queued for a workflow nobody serves.
    work = Work()
    orch = Orchestrator(store=store_url)
    async with orch.serving(port=None, poll_interval=POLL) as host:
        wf = work.workflow("unlisted")
        subs = [await host.submit(wf, i, trigger="test", source="t") for i in range(3)]
        assert orch.workflows["unlisted"] is wf
        await finished(store_url, [s.run_id for s in subs])
    assert sum(work.calls.values()) == 9


async def test_a_run_that_failed_here_and_was_resumed_by_another_replica_is_reported_as_it_ended(
        serving_runtime: Any, store_url: str) -> None:
    down = {"ledger": True}

    def post(x: Any) -> str:
        if down["ledger"]:
            raise ConnectionError("ledger service is down")
        return f"posted {x}"

    def ledger() -> Workflow:
        return Workflow(name="ledger", steps=[Task(name="post", agent=post)])

    async def status_of(host: Any, run_id: str, want: str) -> dict[str, Any]:
        with anyio.fail_after(5):
            while (status := await host.run_status(run_id)) is None or status["status"] != want:
                await anyio.sleep(0.01)
        return dict(status)

    async with contextlib.AsyncExitStack() as stack:
        hosts = []
        for _ in range(2):  # the second starts once the first ran the run: the first holds its result
            orch = Orchestrator(store=store_url)
            orch.add_workflow(ledger())
            hosts.append(await stack.enter_async_context(
                orch.serving(port=None, grace=10, max_running=1, poll_interval=POLL)))
            if len(hosts) == 1:
                sub = await hosts[0].submit(orch.workflows["ledger"], 7, trigger="test", source="t")
                await status_of(hosts[0], sub.run_id, "failed")
        first, second = hosts
        down["ledger"] = False
        second.resume(second.orchestrator.workflows["ledger"], sub.run_id)
        await finished(store_url, [sub.run_id], "completed")
        # The replica that saw it fail does not keep saying so.
        assert (await status_of(first, sub.run_id, "completed"))["tasks_completed"] == 1
        assert (await status_of(second, sub.run_id, "completed"))["output"] == "posted 7"


async def test_a_waiting_run_cancelled_through_the_store_takes_no_answer_and_is_not_tracked_any_more(
        serving_runtime: Any, store_url: str) -> None:
    """A served run that waits holds no lease, so a cancel request cancels it at once: answering
    its open question must not continue it, and the server stops tracking it."""
    from pyagent.errors import InterruptAnsweredError

    async def approve(x: Any, ctx: Any) -> Any:
        return await ctx.interrupt("Ship it?", schema=bool)

    orch = Orchestrator(store=store_url)
    wf = Workflow(name="Review", steps=[Task(name="Approve", agent=approve)])
    orch.add_workflow(wf)
    async with orch.serving(port=None, poll_interval=POLL) as host:
        sub = await host.submit(wf, "pr-7", trigger="test", source="t")
        await finished(store_url, [sub.run_id], "waiting")
        with anyio.fail_after(5):
            while host.waiting_for_answers != 1:
                await anyio.sleep(0.01)
        store = await open_store(store_url)
        assert await store.request_cancel(sub.run_id, reason="withdrawn", now=host.clock.time()) == "cancelled"
        (row,) = await store.list_interrupts(run_id=sub.run_id)
        with pytest.raises(InterruptAnsweredError, match=r"its run ended \(cancelled\)"):
            await host.answer(sub.run_id, row.id, True)
        assert (await store.get_interrupt(row.id)).status == "pending"  # nothing recorded
        await host._answers.adopt_stored()  # what the server does every ADOPT_SECONDS
        assert host.waiting_for_answers == 0
        assert (await store.load(sub.run_id)).header.status == "cancelled"
