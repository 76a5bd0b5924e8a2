"""A run's life around the pattern: circuit breaker, checkpoints, history and metrics.

``drive`` is what the runner calls instead of running the pattern directly. A workflow with
no breaker, no checkpointing and no history store pays for two attribute checks and one
append to the in-memory history plus the metrics fold: nothing else runs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from pyagent.durability.history import history_log
from pyagent.durability.metrics import metrics_for
from pyagent.engine.resilience import Transition, breaker_for
from pyagent.engine.run import execute
from pyagent.engine.slots import run_slot
from pyagent.errors import CircuitOpenError, ConfigurationError, RunCancelledError
from pyagent.model import events as ev
from pyagent.model.tasks import TaskStatus

if TYPE_CHECKING:
    from pyagent.durability.checkpoint import RunRecorder
    from pyagent.durability.ownership import Ownership
    from pyagent.durability.store import Store
    from pyagent.engine.run import WorkflowRun
    from pyagent.model.results import WorkflowResult
    from pyagent.workflow import Workflow

log = logging.getLogger("pyagent.durable")

def _announce(run: WorkflowRun, changes: list[Transition]) -> None:
    for before, after, why in changes:
        log.info("circuit breaker of %r: %s -> %s (%s)", run.workflow.name, before, after, why)
        run.emit(ev.CIRCUIT_CHANGED, status=after, **{"from": before, "to": after, "reason": why})


def _remember(run: WorkflowRun, result: WorkflowResult) -> None:
    history_log(run.runtime).add(result, run.workflow.task_count, run.handoffs, run.audit_trail,
                                 first_started_at=run.first_started_at, resumes=run.resumes,
                                 trigger=run.trigger)


@dataclass
class Claimed:
    """A store opened and a run claimed before ``drive`` (a resume claims before it loads)."""

    store: Store
    ownership: Ownership
    next_seq: int


async def drive(run: WorkflowRun, pattern: Any, *, checkpoint_url: str | None = None,
                history_url: str | None = None, next_seq: int | None = None,
                claimed: Claimed | None = None, wait: bool = False,
                wait_timeout: float | None = None) -> WorkflowResult:
    """Run ``pattern`` over ``run`` with the workflow's breaker, checkpointing and history.

    A run recorded in a store is claimed there first (``claimed``, or here: RunOwnedError if
    another process owns it, unless ``wait``) and its lease is kept alive until it ends (also
    while it waits for answers in this process). The run's questions are kept in its
    checkpoint store, or, without one, in this process only.
    """
    # A run waits for one of its workflow's max_active_runs slots in this process before
    # anything else; a run claimed already keeps its lease alive meanwhile.
    keep = claimed.ownership.keep_alive if claimed is not None else None
    async with run_slot(run.workflow, keep):
        if claimed is not None and claimed.ownership.lost is not None:
            await claimed.ownership.release()
            await _close_store(claimed.store)
            raise claimed.ownership.lost
        return await _drive(run, pattern, checkpoint_url=checkpoint_url, history_url=history_url,
                            next_seq=next_seq, claimed=claimed, wait=wait, wait_timeout=wait_timeout)


async def _drive(run: WorkflowRun, pattern: Any, *, checkpoint_url: str | None, history_url: str | None,
                 next_seq: int | None, claimed: Claimed | None, wait: bool,
                 wait_timeout: float | None) -> WorkflowResult:
    wf = run.workflow
    if not run.hold_waiting and claimed is None and _checkpoint_url(wf, checkpoint_url) is None:
        raise ConfigurationError(
            f"workflow {wf.name!r}: wait_for_answers=False returns while the run waits for people, so the run "
            "must be saved to go on later: give the workflow checkpointing={'storage': 'sqlite://runs.db'} (or "
            "'memory://' for this process only), or leave wait_for_answers=True")
    breaker = None
    shared = None
    ticket = None
    if wf.circuit_breaker is not None:
        if wf.circuit_breaker.shared:
            from pyagent.durability.breakers import shared_breaker

            shared = shared_breaker(wf, run.runtime.clock, checkpoint_url, _checkpoint_url(wf, None),
                                    None if claimed is None else claimed.store.url, history_url,
                                    wf._runtime_data.get("history_store"))
            ticket, changes, refusal = await shared.admit()
        else:
            breaker = breaker_for(wf, run.runtime.clock.monotonic)
            assert breaker is not None
            ticket, changes, refusal = breaker.admit()
        _announce(run, changes)
        if refusal is not None:
            if claimed is not None:
                await claimed.ownership.release()
                await _close_store(claimed.store)
            return await _refuse(run, refusal, _checkpoint_url(wf, checkpoint_url)
                                 or history_url or wf._runtime_data.get("history_store"))

    recorder = None
    own = None
    url = _checkpoint_url(wf, checkpoint_url)
    if history_url is None:
        history_url = wf._runtime_data.get("history_store")
    try:
        if claimed is not None or url is not None or history_url is not None:
            recorder, own = await _start(run, url, history_url, next_seq, claimed, wait, wait_timeout)
        _install_desk(run, recorder)
        if run.resumes:
            await _load_questions(run, recorder)
    except BaseException:
        _release_desk(run)
        if ticket is not None and breaker is not None:
            breaker.release(ticket, None)
        if ticket is not None and shared is not None:
            with anyio.CancelScope(shield=True):
                await shared.release(ticket, None)
        if own is not None and recorder is not None:  # started, then reading its questions failed
            await own.release()
            await _close_store(recorder.store)
        raise

    wf._active.append(run)
    result: WorkflowResult | None = None
    released = False

    def release(status: TaskStatus | None) -> None:
        # Inside the run, before its last event: "this failure opened the circuit".
        nonlocal released
        if ticket is not None and breaker is not None and not released:
            released = True
            _announce(run, breaker.release(ticket, _outcome(status)))

    async def release_shared(status: TaskStatus | None) -> None:
        nonlocal released
        if ticket is not None and shared is not None and not released:
            released = True
            _announce(run, await shared.release(ticket, _outcome(status)))

    stop = run.stop_scope = anyio.CancelScope()
    run._loop = (anyio.lowlevel.current_token(), threading.get_ident())
    try:
        # Pruning old checkpoints (retention) is background work the run starts.
        background = getattr(recorder, "retention", None) is not None
        async with own.held(background=background) if own is not None else contextlib.nullcontext():
            try:
                with own.scope if own is not None else contextlib.nullcontext(), stop:
                    result = await execute(run, pattern, None if ticket is None else
                                           release_shared if shared is not None else release)
                if result is None and stop.cancel_called and (own is None or own.lost is None):
                    # Cancelled on request (workflow.cancel, a cancel request), also while it waited.
                    result = run.result(None, TaskStatus.CANCELLED, RunCancelledError(run.cancel_reason or ""))
                if result is None and run.status is TaskStatus.WAITING and own is not None and own.lost is None:
                    # Suspended (wait_for_answers=False): every unfinished task waits, so this
                    # execution ends here and the run goes on once answered.
                    result = run.result(None, TaskStatus.WAITING)
                if result is None and own is not None and own.lost is not None:
                    result = run.result(None, TaskStatus.CANCELLED, own.lost)
            finally:
                run.stop_scope = None
                _release_desk(run)
                wf._active.remove(run)
                wf._last = run
                if shared is not None and not released:
                    with anyio.CancelScope(shield=True):  # a cancelled trial gives its slot back
                        await release_shared(None if result is None else result.status)
                release(None if result is None else result.status)
                ended = result
                if ended is None and run.status is TaskStatus.WAITING:
                    # Stopped while it waited for answers (Ctrl-C, a shutdown): it still waits.
                    ended = run.result(None, TaskStatus.WAITING)
                    _remember(run, ended)
                if ended is None and run.status is TaskStatus.CANCELLED:
                    # Cancelled: nothing is returned, but the run happened and belongs in the
                    # history and the metrics (as it does in a store's history).
                    ended = run.result(None, TaskStatus.CANCELLED)
                    metrics_for(wf).record(ended)
                    _remember(run, ended)
                if recorder is not None:
                    await recorder.finish(ended)
    finally:
        if own is not None:
            await own.release()
        if recorder is not None:
            await _close_store(recorder.store)
            # The run and its recorder refer to each other: parted now, the pair (and the
            # store and lease they hold) is freed at once rather than by the cyclic collector.
            run.on_waiting = None
            installed: object = recorder  # as one of the run's after_task hooks (a Checkpointer)
            run.after_task = [hook for hook in run.after_task if hook is not installed]
    assert result is not None  # execute() returns or raises
    if result.status is not TaskStatus.WAITING:  # not finished: counted when it ends
        metrics_for(wf).record(result)
    _remember(run, result)
    return result


def _outcome(status: TaskStatus | None) -> bool | None:
    """How a run ended, for the breaker: a run that waits for people has neither succeeded nor failed yet."""
    return None if status in (None, TaskStatus.WAITING) else status is TaskStatus.COMPLETED


def _install_desk(run: WorkflowRun, recorder: RunRecorder | None) -> None:
    """Where the run keeps its questions: its checkpoint store, or (without one) this process."""
    from pyagent.durability.checkpoint import Checkpointer

    runtime = run.runtime
    # The desk's factory names the run by its id, not by a reference to it (no cycle).
    run_id, name = run.run_id, run.workflow.name
    if recorder is not None:
        run.on_waiting = recorder.on_waiting
        own = recorder.ownership
        if own is not None:
            # Ending an execution whose tasks all wait: cancel the run's body, as a lost lease does.
            run.suspend = lambda: own.scope.cancel()
    # A run this process holds while it waits (workflow.run()) counts as held here from its first
    # question to its end, not only while a task is parked: an answer recorded between a question
    # being written and its task parking must still find the run (see _release_desk).
    hold = run.hold_waiting
    build: Any
    if isinstance(recorder, Checkpointer):
        store, fence = recorder.store, recorder.fence

        def build() -> Any:
            from pyagent.durability.interrupts import Desk

            return Desk(store, run_id, name, clock=runtime.clock, fence=fence, where=_display(store))
    else:
        def build() -> Any:
            from pyagent.durability.interrupts import Desk, local_url

            store = runtime.driver("stores", "memory")(local_url(runtime))
            return Desk(store, run_id, name, clock=runtime.clock, where="this process", local=True)

    def make() -> Any:
        desk = build()
        if hold:
            desk.hold(1)
        return desk
    run.desk_factory = make


def _release_desk(run: WorkflowRun) -> None:
    """The run's execution in this process ends: it no longer holds the run here (see _install_desk)."""
    desk = run._desk
    if desk is not None and run.hold_waiting:
        desk.hold(-1)


async def _load_questions(run: WorkflowRun, recorder: RunRecorder | None) -> None:
    """A resumed run reads the questions it asked before: answered ones are returned, open ones waited on."""
    from pyagent.durability.checkpoint import Checkpointer
    from pyagent.durability.interrupts import supports_interrupts

    if isinstance(recorder, Checkpointer) and not supports_interrupts(recorder.store):
        return  # a store from before questions existed: this run cannot have asked any there
    await run.desk().load()


def _checkpoint_url(wf: Workflow, override: str | None) -> str | None:
    if override is not None:
        return override
    cp = wf.checkpointing
    if cp is not None and cp.enabled:
        return cp.storage
    return None


async def _start(run: WorkflowRun, url: str | None, history_url: str | None, next_seq: int | None,
                 claimed: Claimed | None, wait: bool, wait_timeout: float | None,
                 ) -> tuple[RunRecorder, Ownership]:
    """Open the store, claim the run, and write its header (and first checkpoint)."""
    from pyagent.durability.checkpoint import Checkpointer, RunRecorder
    from pyagent.durability.ownership import LeaseSettings, Ownership
    from pyagent.durability.replay import next_seq as find_next_seq
    from pyagent.durability.stores import open_store

    cfg = run.workflow.checkpointing
    if claimed is not None:
        store, own = claimed.store, claimed.ownership
    else:
        store = await open_store(url) if url is not None else await open_store(history_url or "", setting="store")
        own = Ownership(store, run.run_id, clock=run.runtime.clock, settings=LeaseSettings.of(cfg),
                        where=_display(store))
    checkpointed = claimed is not None or url is not None
    try:
        rec: RunRecorder
        if checkpointed:
            rec = Checkpointer(run, store, cfg, ownership=own, spawn=_spawner(own))
        else:
            rec = RunRecorder(run, store, own)
        rec.prepare()  # an input that cannot be saved fails here: nothing claimed or written
        if claimed is None:
            await own.claim(wait=wait, timeout=wait_timeout)
        else:
            await own.adopt(LeaseSettings.of(cfg))
        if isinstance(rec, Checkpointer):
            if claimed is not None:
                rec.seq = claimed.next_seq
            elif next_seq is not None:
                rec.seq = next_seq
            else:
                # Not only when tasks are reused: a run resumed from a state file saved before any
                # task completed (or run again under its run id) already has checkpoints here.
                rec.seq = await find_next_seq(store, run.run_id)
        await rec.begin()
    except BaseException:
        await own.release()
        await _close_store(store)
        raise
    if isinstance(rec, Checkpointer):
        run.after_task.append(rec)
    return rec, own


def _spawner(own: Ownership) -> Any:
    """Start background work (pruning) next to the lease keeper, inside the run's lifetime."""

    def spawn(fn: Any) -> None:
        tg = own.task_group
        if tg is None:
            raise RuntimeError("background work started outside the run's lifetime")
        tg.start_soon(fn)

    return spawn


def _display(store: Store) -> str:
    from pyagent.durability.stores import safe_url

    return safe_url(store.url)


async def _close_store(store: Store) -> None:
    from pyagent.durability.stores import _close

    await _close(store)


async def _refuse(run: WorkflowRun, refusal: CircuitOpenError, url: str | None) -> WorkflowResult:
    """A failed result for a run the open breaker refused: no agent is called."""
    run.status = TaskStatus.FAILED
    run.finished_at = time.time()
    result = run.result(None, TaskStatus.FAILED, refusal)
    run.emit(ev.WORKFLOW_FAILED, status="failed", error=result.error, duration=result.duration,
             circuit="open")
    metrics_for(run.workflow).record_rejected()
    _remember(run, result)
    run.workflow._last = run
    if url is not None:
        try:
            from pyagent.durability.checkpoint import RunRecorder
            from pyagent.durability.stores import open_store

            store = await open_store(url)
            try:
                await RunRecorder(run, store).finish(result)
            finally:
                await _close_store(store)
        except Exception as exc:  # the audit copy is best effort; the refusal stands
            log.warning("could not record refused run %s: %s", run.run_id, exc)
    return result
