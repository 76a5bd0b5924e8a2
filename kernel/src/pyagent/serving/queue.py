"""Runs taken off a shared store's queue: what lets several ``pyagent serve`` replicas share one store.

With a store that is a run queue (:func:`pyagent.durability.store.supports_queue`), a host never
starts the runs its triggers record: :meth:`TriggerHost.submit` records the run (``pending``)
and wakes the :class:`Dispatcher`, which claims ready runs in batches with ``dequeue_runs``, as
many as the host has free slots (``max_running``, ``pyagent serve --concurrency``), within each
workflow's ``max_active_runs`` across every replica. Each claim comes with the run's lease,
which the run keeps (renewed, fencing its writes) until it ends.

The dispatcher polls every ``poll_interval`` seconds, so it also takes runs that other replicas
recorded and runs whose owner died (their lease expired: resumed from their checkpoints), and
polls again at once when a run ends here (a slot is free). Once a second it asks the store
which of its runs someone asked to cancel (``pyagent runs cancel``) and stops them at their next
task boundary, and follows the runs submitted here that another replica took, so that their
``on_finish`` is called when they end.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from pyagent.durability.store import Claim, QueueStore
    from pyagent.engine.run import WorkflowRun
    from pyagent.serving.host import OnFinish, TriggerHost

log = logging.getLogger("pyagent.serve")

#: How often the store is asked which runs executing here were asked to cancel (seconds).
CANCEL_SECONDS = 1.0
#: How often runs whose owner died while a cancel was asked are marked cancelled (seconds).
SWEEP_SECONDS = 10.0
#: Ended statuses: a run submitted here that another replica took is over once it has one.
_OVER = frozenset({"completed", "failed", "cancelled", "skipped", "waiting"})


class Dispatcher:
    """Claims queued runs for one host and starts them; see the module docstring."""

    def __init__(self, host: TriggerHost, store: QueueStore, poll_interval: float) -> None:
        self.host = host
        self.store = store
        self.poll_interval = poll_interval
        self.owner = _owner()
        self._wake = anyio.Event()
        #: Runs submitted here that another replica took: followed until they end, for on_finish.
        self.elsewhere: dict[str, OnFinish] = {}

    def wake(self) -> None:
        """A run was queued here or a slot came free: poll now rather than at the next interval."""
        self._wake.set()

    def ttl(self) -> float:
        """How long a claim lasts before its run's keeper renews it with the workflow's own lease."""
        from pyagent.durability.ownership import LeaseSettings

        return max(LeaseSettings.of(wf.checkpointing).ttl for wf in self.host.orchestrator.workflows.values())

    # -- claiming --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled: claim as many ready runs as there are free slots, then wait."""
        while True:
            full = False
            if self.host.accepting:
                try:
                    full = await self.take()
                except Exception as exc:  # the store may be back at the next poll
                    log.warning("taking runs off the queue in %s failed: %s", self.host.store, exc)
            if full:
                await anyio.lowlevel.checkpoint()
                continue
            with anyio.move_on_after(self.poll_interval):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def take(self) -> bool:
        """Claim up to the free slots' worth of runs and start them; True if the batch was full."""
        host = self.host
        workflows = host.orchestrator.workflows
        tickets = host.reserve_slots()
        if not tickets or not workflows:
            host.free_slots(tickets)
            return False
        try:
            claims = await self.store.dequeue_runs(
                self.owner, now=host.clock.time(), ttl=self.ttl(), limit=len(tickets),
                workflows={name: wf.max_active_runs for name, wf in workflows.items()})
        except BaseException:
            host.free_slots(tickets)
            raise
        host.free_slots(tickets[len(claims):])
        for claim, ticket in zip(claims, tickets, strict=False):
            self.start(claim, ticket)
        return len(claims) == len(tickets)

    def start(self, claim: Claim, ticket: object) -> None:
        workflow = self.host.orchestrator.workflows.get(claim.header.workflow)
        if workflow is None:  # removed since the call: give the run back at once
            self.host.free_slots([ticket])
            self.host.start_soon(self.store.release_run, claim.header.run_id, claim.lease.token)
            return
        log.info("claimed run %s of %r (%s)", claim.header.run_id, workflow.name, claim.header.status)
        self.host.start_claim(workflow, claim, ticket)

    async def take_over_dead(self) -> None:
        """Claim at once the runs a dead process of this machine held (a serve that was killed and
        restarted): they need not wait for their lease to expire. Done once, at start."""
        from pyagent.durability.ownership import _dead_here
        from pyagent.durability.store import Claim, Lease

        host = self.host
        now = host.clock.time()
        for lease in await self.store.list_leases():
            if lease.expired(now) or not _dead_here(lease.owner):
                continue
            stored = await self.store.load(lease.run_id)
            if (stored is None or stored.header.status not in ("pending", "running")
                    or stored.header.workflow not in host.orchestrator.workflows):
                continue  # waiting runs are adopted by WaitingRuns; ended ones hold no lease for long
            tickets = host.reserve_slots(1)
            if not tickets:
                return  # no free slot: their leases expire, then any replica takes them
            token = secrets.token_hex(16)
            got: Lease = await self.store.claim_run(lease.run_id, self.owner, token, now=now, ttl=self.ttl(),
                                                    replace=lease.token)
            if got.token != token:
                host.free_slots(tickets)
                continue
            log.info("run %s: its owner %s is no longer running; taking it over", lease.run_id, lease.owner)
            self.start(Claim(stored.header, got), tickets[0])

    # -- cancels and runs taken elsewhere -----------------------------------------------------------

    async def watch(self) -> None:
        """Until cancelled: stop runs asked to cancel, follow runs submitted here that ran elsewhere."""
        swept = time.monotonic()
        while True:
            await anyio.sleep(CANCEL_SECONDS)
            for step in (self.stop_cancelled, self.follow):
                try:
                    await step()
                except Exception as exc:
                    log.warning("polling %s failed (%s: %s); trying again", self.host.store, type(exc).__name__, exc)
            if time.monotonic() - swept >= SWEEP_SECONDS:
                swept = time.monotonic()
                try:
                    await self.sweep()
                except Exception as exc:
                    log.warning("looking for runs to cancel in %s failed: %s", self.host.store, exc)

    async def stop_cancelled(self) -> None:
        """One query: which runs executing here were asked to cancel; each stops at its next task boundary."""
        running = list(self.host._running)
        if not running:
            return
        asked = await self.store.cancel_requests(running)
        for run_id, reason in asked.items():
            run = self._engine_run(run_id)
            if run is not None and run.stop_requested is None:
                log.info("run %s: cancel requested (%s); it stops at its next task boundary", run_id, reason)
                run.stop_at_boundary(reason)

    def _engine_run(self, run_id: str) -> WorkflowRun | None:
        entry = self.host._running.get(run_id)
        wf = self.host.orchestrator.workflows.get(entry.workflow) if entry is not None else None
        if wf is None:
            return None
        found: WorkflowRun | None = next((r for r in list(wf._active) if r.run_id == run_id), None)
        return found

    async def follow(self) -> None:
        """Runs submitted here that no longer wait in the queue were taken by another replica:
        they stop counting as waiting here, and their ``on_finish`` is called once they end."""
        host = self.host
        queued = {run_id: e for run_id, e in host._queued.items() if not e.started}
        if queued:
            since = min(e.queued_at for e in queued.values())
            pending = {h.run_id for h in await self.store.list_runs(status="pending", since=since)}
            for run_id, entry in queued.items():
                if run_id in pending or host._queued.get(run_id) is not entry or entry.started:
                    continue
                del host._queued[run_id]
                if entry.on_finish is not None:
                    self.elsewhere[run_id] = entry.on_finish
        for run_id, on_finish in list(self.elsewhere.items()):
            stored = await self.store.load(run_id)
            if stored is None or stored.header.status in _OVER:
                del self.elsewhere[run_id]
                host.finished(run_id, None, on_finish)

    async def sweep(self) -> None:
        """Runs whose owner died while a cancel was asked are not taken again: mark them cancelled."""
        now = self.host.clock.time()
        expired = await self.store.list_leases(expired_at=now, limit=1000)
        if not expired:
            return
        asked = await self.store.cancel_requests([lease.run_id for lease in expired])
        for run_id, reason in asked.items():
            if await self.store.request_cancel(run_id, reason=reason, now=now) == "cancelled":
                log.info("run %s: cancelled (%s); the process that ran it had stopped", run_id, reason)

    async def drop_queued(self) -> None:
        """At shutdown: runs submitted here and not started stay queued for the other replicas."""
        host = self.host
        for run_id, entry in list(host._queued.items()):
            if not entry.started:
                del host._queued[run_id]
                host.finished(run_id, None, entry.on_finish)
        for run_id, on_finish in list(self.elsewhere.items()):
            del self.elsewhere[run_id]
            host.finished(run_id, None, on_finish)


def _owner() -> str:
    from pyagent.durability.ownership import owner_id

    return owner_id()
