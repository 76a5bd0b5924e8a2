"""A serving host renews the leases of its runs from one keeper task, not one task per run.

The leases themselves behave as before: renewed while the run goes on (so no other host
sharing the store takes the run), lost to a takeover (the run stops), released when the run
ends. Real time where a lease must outlive its first expiry; the memory store, shared by
several hosts in this process as replicas share a store.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from pyagent import RunOwnedError
from pyagent._defaults.memory_store import MemoryStore
from pyagent.durability.ownership import (
    LeaseKeeper,
    LeaseSettings,
    Ownership,
    current_keeper,
    kept_by,
)
from pyagent.model.tasks import TaskStatus
from pyagent.orchestrator import Orchestrator, Task, Workflow
from pyagent.testing import ManualClock

pytestmark = pytest.mark.anyio

POLL = 0.02


async def until(check: Any, timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.005)


def slow_workflow(calls: Counter[str], started: anyio.Event, seconds: float, **cp: Any) -> Workflow:
    async def slow(x: Any) -> str:
        calls[str(x)] += 1
        started.set()
        await anyio.sleep(seconds)
        return f"{x}>slow"

    return Workflow(name="slow", steps=[Task(name="slow", agent=slow)], checkpointing=cp or None)


async def test_a_hosted_run_outlives_its_first_lease_expiry_and_no_other_host_takes_it(
        serving_runtime: Any, store_url: str) -> None:
    """Two hosts share a queue store; a 0.6 s lease renewed every 0.1 s (by the host's keeper)
    outlives a task of 1.2 s, and the other host, polling every 20 ms, never runs it."""
    calls: Counter[str] = Counter()
    started = anyio.Event()
    store = MemoryStore(store_url)
    orchestrators = []
    for _ in range(2):
        orch = Orchestrator(store=store_url)
        orch.add_workflow(slow_workflow(calls, started, 1.2, lease_seconds=0.6, lease_renew_seconds=0.1))
        orchestrators.append(orch)
    async with (orchestrators[0].serving(port=None, poll_interval=POLL) as first,
                orchestrators[1].serving(port=None, poll_interval=POLL) as second):
        wf = first.orchestrator.workflows["slow"]
        sub = await first.submit(wf, "x", trigger="test", source="t")
        with anyio.fail_after(5):
            await started.wait()
        lease = await store.get_lease(sub.run_id)
        assert lease is not None
        runner = first if first.in_flight else second
        assert runner._keeper is not None and len(runner._keeper._due) == 1  # held by the keeper
        await anyio.sleep(0.9)  # past the first expiry
        renewed = await store.get_lease(sub.run_id)
        assert renewed is not None and renewed.token == lease.token
        assert renewed.expires_at > lease.expires_at + 0.5
        await until(lambda: not first.in_flight and not second.in_flight and not first.waiting)
        assert runner._keeper is not None and not runner._keeper._due
    stored = await store.load(sub.run_id)
    assert stored is not None and stored.header.status == "completed"
    assert calls == {"x": 1}
    assert await store.get_lease(sub.run_id) is None  # released when it ended


async def test_a_hosted_run_whose_lease_was_taken_over_stops(serving_runtime: Any, store_url: str) -> None:
    """The host froze past the lease (a manual clock jumps); a resume elsewhere took the run over.
    The keeper's next renewal finds the lease gone and stops the run, cancelled with RunOwnedError."""
    clock = ManualClock()
    serving_runtime.clock = clock
    started, release = anyio.Event(), anyio.Event()
    calls: Counter[str] = Counter()

    async def held(x: Any) -> str:
        calls["held"] += 1
        started.set()
        await release.wait()
        return f"{x}>held"

    async def after(x: Any) -> str:
        calls["after"] += 1
        return f"{x}>after"

    def workflow() -> Workflow:
        return Workflow(name="frozen", steps=[Task(name="held", agent=held), Task(name="after", agent=after)],
                        checkpointing={"lease_seconds": 15, "lease_renew_seconds": 0.05})

    results: list[Any] = []
    orch = Orchestrator(store=store_url)
    orch.add_workflow(workflow())
    async with orch.serving(port=None, poll_interval=POLL) as host:
        sub = await host.submit(orch.workflows["frozen"], "in", trigger="test", source="t",
                                on_finish=lambda run_id, result: results.append(result))
        with anyio.fail_after(5):
            await started.wait()
        store = MemoryStore(store_url)
        clock.advance(16)  # past the lease: as if this host froze
        taken = await store.claim_run(sub.run_id, "someone-else", "their-token", now=clock.time(), ttl=60)
        assert taken.token == "their-token"
        await until(lambda: bool(results))
        release.set()
    stopped = results[0]
    assert stopped is not None and stopped.status is TaskStatus.CANCELLED
    assert isinstance(stopped.exception, RunOwnedError) and "was taken over" in (stopped.error or "")
    assert calls == {"held": 1}  # nothing more ran here
    lease = await MemoryStore(store_url).get_lease(sub.run_id)
    assert lease is not None and lease.token == "their-token"  # not released by the run that lost it


class SlowRenewals(MemoryStore):
    """A memory store whose renewal of one run hangs until let go."""

    def __init__(self, url: str, stuck: str) -> None:
        super().__init__(url)
        self.stuck = stuck
        self.go = anyio.Event()
        self.renewed: Counter[str] = Counter()

    async def renew_lease(self, run_id: str, token: str, *, now: float, ttl: float) -> bool:
        if run_id == self.stuck:
            await self.go.wait()
        self.renewed[run_id] += 1
        return await super().renew_lease(run_id, token, now=now, ttl=ttl)


async def claimed(store: MemoryStore, run_id: str, settings: LeaseSettings, clock: Any) -> Ownership:
    own = Ownership(store, run_id, clock=clock, settings=settings)
    await own.claim()
    return own


async def test_one_keeper_renews_each_lease_on_its_own_schedule_and_a_hanging_store_holds_up_no_other(
        mini_runtime: Any, store_url: str) -> None:
    clock = mini_runtime.clock
    store = SlowRenewals(store_url, stuck="stuck")
    keeper = LeaseKeeper()
    async with anyio.create_task_group() as tg:
        await tg.start(keeper.run)
        fast = await claimed(store, "fast", LeaseSettings(10, 0.05), clock)
        slow = await claimed(store, "slow", LeaseSettings(10, 0.4), clock)
        stuck = await claimed(store, "stuck", LeaseSettings(10, 0.05), clock)
        with kept_by(keeper):
            assert current_keeper() is keeper
            async with fast.held(), slow.held(), stuck.held():
                await anyio.sleep(0.5)
                assert store.renewed["fast"] >= 3  # not held up by "stuck", whose renewal hangs
                assert 1 <= store.renewed["slow"] <= 2
                assert store.renewed["stuck"] == 0
                store.go.set()
                await until(lambda: store.renewed["stuck"] >= 1)
        assert not keeper._due
        for own in (fast, slow, stuck):
            assert own.lost is None
            await own.release()
        tg.cancel_scope.cancel()


async def test_a_renewal_that_ends_after_the_run_gave_its_lease_back_reports_nothing_lost(
        mini_runtime: Any, store_url: str) -> None:
    store = SlowRenewals(store_url, stuck="r1")
    keeper = LeaseKeeper()
    async with anyio.create_task_group() as tg:
        await tg.start(keeper.run)
        own = await claimed(store, "r1", LeaseSettings(10, 0.02), mini_runtime.clock)
        with kept_by(keeper):
            async with own.held():
                await anyio.sleep(0.1)  # a renewal is under way, hanging
        await own.release()  # the run ended and gave its lease back
        store.go.set()  # the renewal ends now: it finds no lease, which is no loss
        await until(lambda: store.renewed["r1"] >= 1)
        await anyio.sleep(0.05)
        assert own.lost is None
        tg.cancel_scope.cancel()


async def test_a_keeper_is_only_used_on_its_own_event_loop_thread(mini_runtime: Any) -> None:
    keeper = LeaseKeeper()
    with kept_by(keeper):
        assert current_keeper() is None  # not running: runs keep their own leases
    async with anyio.create_task_group() as tg:
        await tg.start(keeper.run)
        with kept_by(keeper):
            assert current_keeper() is keeper
            assert await anyio.to_thread.run_sync(current_keeper) is None  # another thread
        tg.cancel_scope.cancel()
