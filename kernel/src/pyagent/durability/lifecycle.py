"""A run's life around the pattern: circuit breaker, checkpoints, history and metrics.

``drive`` is what the runner calls instead of running the pattern directly. A workflow with
no breaker, no checkpointing and no history store pays for two attribute checks and one
append to the in-memory history plus the metrics fold: nothing else runs.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from pyagent.durability.history import history_log
from pyagent.durability.metrics import metrics_for
from pyagent.engine.resilience import Transition, breaker_for
from pyagent.engine.run import execute
from pyagent.errors import CircuitOpenError
from pyagent.model import events as ev
from pyagent.model.tasks import TaskStatus

if TYPE_CHECKING:
    from pyagent.durability.checkpoint import RunRecorder
    from pyagent.engine.run import WorkflowRun
    from pyagent.model.results import WorkflowResult
    from pyagent.workflow import Workflow

log = logging.getLogger("pyagent.durable")

def _announce(run: WorkflowRun, changes: list[Transition]) -> None:
    for before, after, why in changes:
        log.info("circuit breaker of %r: %s -> %s (%s)", run.workflow.name, before, after, why)
        run.emit(ev.CIRCUIT_CHANGED, status=after, **{"from": before, "to": after, "reason": why})


def _remember(run: WorkflowRun, result: WorkflowResult) -> None:
    history_log(run.runtime).add(result, run.workflow.task_count, run.handoffs, run.audit_trail)


async def drive(run: WorkflowRun, pattern: Any, *, checkpoint_url: str | None = None,
                history_url: str | None = None, next_seq: int | None = None) -> WorkflowResult:
    """Run ``pattern`` over ``run`` with the workflow's breaker, checkpointing and history."""
    wf = run.workflow
    breaker = None
    ticket = None
    if wf.circuit_breaker is not None:
        breaker = breaker_for(wf, run.runtime.clock.monotonic)
        assert breaker is not None
        ticket, changes, refusal = breaker.admit()
        _announce(run, changes)
        if refusal is not None:
            return await _refuse(run, refusal, _checkpoint_url(wf, checkpoint_url)
                                 or history_url or wf._runtime_data.get("history_store"))

    recorder = None
    url = _checkpoint_url(wf, checkpoint_url)
    if history_url is None:
        history_url = wf._runtime_data.get("history_store")
    try:
        if url is not None:
            recorder = await _start_checkpointer(run, url, next_seq)
        elif history_url is not None:
            recorder = await _start_recorder(run, history_url)
    except BaseException:
        if ticket is not None and breaker is not None:
            breaker.release(ticket, None)
        raise

    wf._active.append(run)
    result: WorkflowResult | None = None
    released = False

    def release(status: TaskStatus | None) -> None:
        # Inside the run, before its last event: "this failure opened the circuit".
        nonlocal released
        if ticket is not None and breaker is not None and not released:
            released = True
            outcome = None if status is None else status is TaskStatus.COMPLETED
            _announce(run, breaker.release(ticket, outcome))

    try:
        result = await execute(run, pattern, release if ticket is not None else None)
    finally:
        wf._active.remove(run)
        wf._last = run
        release(None if result is None else result.status)
        ended = result
        if ended is None and run.status is TaskStatus.CANCELLED:
            # Cancelled: nothing is returned, but the run happened and belongs in the
            # history and the metrics (as it does in a store's history).
            ended = run.result(None, TaskStatus.CANCELLED)
            metrics_for(wf).record(ended)
            _remember(run, ended)
        if recorder is not None:
            await recorder.finish(ended)
    assert result is not None  # execute() returns or raises
    metrics_for(wf).record(result)
    _remember(run, result)
    return result


def _checkpoint_url(wf: Workflow, override: str | None) -> str | None:
    if override is not None:
        return override
    cp = wf.checkpointing
    if cp is not None and cp.enabled:
        return cp.storage
    return None


async def _start_checkpointer(run: WorkflowRun, url: str, next_seq: int | None) -> RunRecorder:
    from pyagent.durability.checkpoint import Checkpointer, _close, open_store
    from pyagent.durability.checkpoint import next_seq as find_next_seq

    store = await open_store(url)
    try:
        if next_seq is None:
            # Not only when tasks are reused: a run resumed from a state file saved before any
            # task completed (or run again under its run id) already has checkpoints here.
            next_seq = await find_next_seq(store, run.run_id)
        cp = Checkpointer(run, store, run.workflow.checkpointing, next_seq=next_seq)
        await cp.begin()
    except BaseException:
        await _close(store)
        raise
    run.after_task.append(cp)
    return cp


async def _start_recorder(run: WorkflowRun, url: str) -> RunRecorder:
    from pyagent.durability.checkpoint import RunRecorder, _close, open_store

    store = await open_store(url, setting="store")
    rec = RunRecorder(run, store)
    try:
        await rec.begin()
    except BaseException:
        await _close(store)
        raise
    return rec


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
            from pyagent.durability.checkpoint import RunRecorder, open_store

            store = await open_store(url)
            await RunRecorder(run, store).finish(result)
        except Exception as exc:  # the audit copy is best effort; the refusal stands
            log.warning("could not record refused run %s: %s", run.run_id, exc)
    return result
