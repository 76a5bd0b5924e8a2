"""Served runs that wait for people: continued as soon as they are answered or a question times out.

A serving orchestrator with a store does not keep a waiting run in memory (nor a lease on it,
nor one of its ``max_running`` slots): the run's execution ends with status ``waiting`` and the
host *tracks* it, which costs a table entry. Every ``POLL_SECONDS`` (at once for an answer
given in this process) it reads the store's open questions in one query; a tracked run whose
questions are no longer all open (answered, by anyone, from anywhere), or one of whose
questions is past its deadline, is resumed: claimed in the store (so of several replicas
exactly one continues it) and run from its checkpoints, where the answered task runs again
and a timed-out question gets its policy. Runs that started waiting elsewhere (a replica that
died, a ``pyagent run`` that was stopped or killed) are adopted when the host starts and every
``ADOPT_SECONDS`` after, unless a live lease says another process holds them (a lease of a
process of this machine that no longer exists does not count; elsewhere it expires first).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from pyagent.model.interrupts import Interrupt
    from pyagent.serving.host import TriggerHost

log = logging.getLogger("pyagent.serve")

#: How often waiting runs' questions are looked up in the store (seconds).
POLL_SECONDS = 0.5
#: How often runs that started waiting in another process are looked for (seconds).
ADOPT_SECONDS = 10.0


class WaitingRuns:
    """The runs a host continues once they are answered: run id -> (workflow, {question id: deadline})."""

    def __init__(self, host: TriggerHost) -> None:
        self.host = host
        self.tracked: dict[str, tuple[str, dict[str, float | None]]] = {}
        self._wake: anyio.Event | None = None

    def __len__(self) -> int:
        return len(self.tracked)

    def track(self, run_id: str, workflow: str, questions: list[Interrupt]) -> None:
        self.tracked[run_id] = (workflow, {q.id: q.deadline for q in questions})
        self.wake()

    def untrack(self, run_id: str) -> None:
        self.tracked.pop(run_id, None)

    def wake(self) -> None:
        """Look at the store now (an answer was recorded in this process)."""
        if self._wake is not None:
            self._wake.set()

    async def adopt_stored(self) -> None:
        """Track the stored runs of served workflows that wait and that no live process holds."""
        from pyagent.durability.interrupts import list_questions, supports_interrupts
        from pyagent.durability.ownership import _dead_here

        host = self.host
        store = host._store
        if store is None or not supports_interrupts(store):
            return
        workflows = host.orchestrator.workflows
        now = host.clock.time()
        waiting = await store.list_runs(status="waiting")
        still = {header.run_id for header in waiting}
        for run_id in [r for r in self.tracked if r not in still]:
            # No longer waits (cancelled while it waited, or another process went on with it).
            log.info("run %s no longer waits in %s: not tracked any more", run_id, host.store)
            del self.tracked[run_id]
        for header in waiting:
            run_id = header.run_id
            if (header.workflow not in workflows or run_id in self.tracked or run_id in host._running
                    or run_id in host._queued):
                continue
            lease = await store.get_lease(run_id)
            if lease is not None and not lease.expired(now) and not _dead_here(lease.owner):
                continue  # held by the process that waits for it: it goes on there
            questions = await list_questions(store, run_id=run_id)
            log.info("run %s of %r waits for %d answer(s): continued here once answered", run_id,
                     header.workflow, len(questions))
            self.tracked[run_id] = (header.workflow, {q.id: q.deadline for q in questions})

    async def watch(self) -> None:
        """Until cancelled: resume tracked runs once they are answered or a question times out."""
        from pyagent.durability.interrupts import supports_interrupts

        host = self.host
        store = host._store
        if store is None or not supports_interrupts(store):
            return
        adopted = time.monotonic()
        while True:
            self._wake = anyio.Event()
            await self._sleep()
            if time.monotonic() - adopted >= ADOPT_SECONDS:
                adopted = time.monotonic()
                try:
                    await self.adopt_stored()
                except Exception as exc:
                    log.warning("looking for waiting runs in %s failed: %s", host.store, exc)
            if not self.tracked or not host.accepting:
                continue
            try:
                rows = await store.list_interrupts(status="pending")
            except Exception as exc:  # the store may be back at the next poll
                log.warning("reading the open questions in %s failed: %s", host.store, exc)
                continue
            open_now = {row.id: row for row in rows}
            now = host.clock.time()
            for run_id, (name, questions) in list(self.tracked.items()):
                for row in rows:  # a question asked since (an escalation by another process)
                    if row.run_id == run_id and row.id not in questions:
                        questions[row.id] = row.deadline
                answered = not questions or any(q not in open_now for q in questions)
                due = any(d is not None and d <= now for q, d in questions.items() if q in open_now)
                if not (answered or due):
                    continue
                workflow = host.orchestrator.workflows.get(name)
                del self.tracked[run_id]
                if workflow is None:
                    continue
                log.info("run %s of %r %s: continuing it", run_id, name,
                         "was answered" if answered else "has a question past its deadline")
                host._start(workflow, run_id, None, resume=True, answered=True)

    async def _sleep(self) -> None:
        """One poll interval, cut short by a wake-up or by the earliest deadline (on the runtime clock)."""
        assert self._wake is not None
        wake = self._wake
        clock = self.host.clock
        now = clock.time()
        deadlines = [d for _, qs in self.tracked.values() for d in qs.values() if d is not None and d > now]
        with anyio.move_on_after(POLL_SECONDS):
            async with anyio.create_task_group() as tg:
                async def until(wait: Any) -> None:
                    await wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(until, wake.wait)
                if deadlines:
                    first = min(deadlines)
                    tg.start_soon(until, lambda: clock.sleep_until(first))
