"""Run headers a trigger writes before any run exists: a queued run, a skipped tick.

A queued run's header has status ``pending`` and carries the run's input in its payload (the
run has no checkpoint yet to hold it), so a process that dies before starting the run lets
the next one start it. Both payloads are ordinary history records (``pyagent history`` lists
them); the extra fields are ignored there.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pyagent.durability import codec
from pyagent.durability.history import to_payload
from pyagent.durability.store import RunHeader

if TYPE_CHECKING:
    from pyagent.workflow import Workflow

PENDING = "pending"
SKIPPED = "skipped"


def _summary(workflow: Workflow, run_id: str, status: str, at: float, **extra: Any) -> dict[str, Any]:
    return {"run_id": run_id, "workflow": workflow.name, "status": status, "tasks_completed": 0,
            "tasks_total": workflow.task_count, "error": None, "duration": None, "started_at": at,
            "finished_at": None, "resumed": False, "tasks": [], "handoffs": [], **extra}


def pending_header(workflow: Workflow, run_id: str, input: Any, *, trigger: str, source: str,
                   at: float | None = None) -> RunHeader:
    """The header of a run that is recorded and waits to start, with its input.

    Raises StateError (naming the input) if the input cannot be saved, before anything is written.
    """
    at = time.time() if at is None else at
    summary = _summary(workflow, run_id, PENDING, at, trigger={"kind": trigger, "source": source},
                       input=codec.to_jsonable(input, f"the input of run {run_id!r}"))
    return RunHeader(run_id=run_id, workflow=workflow.name, status=PENDING, started_at=at,
                     payload=to_payload(summary))


def skipped_header(workflow: Workflow, run_id: str, *, at: float, reason: str, trigger: str,
                   source: str) -> RunHeader:
    """The header of a tick that was not run (missed while nothing served it, or an overlap)."""
    summary = _summary(workflow, run_id, SKIPPED, at, finished_at=at, error=reason,
                       trigger={"kind": trigger, "source": source})
    return RunHeader(run_id=run_id, workflow=workflow.name, status=SKIPPED, started_at=at,
                     finished_at=at, payload=to_payload(summary))


def failed_header(workflow: Workflow, run_id: str, error: str, *, at: float,
                  trigger: dict[str, Any] | None = None) -> RunHeader:
    """The header of a recorded run that could not start (its workflow is misconfigured)."""
    summary = _summary(workflow, run_id, "failed", at, finished_at=time.time(), error=error, trigger=trigger)
    return RunHeader(run_id=run_id, workflow=workflow.name, status="failed", started_at=at,
                     finished_at=summary["finished_at"], payload=to_payload(summary))


def queued_input(header: RunHeader, what: str) -> tuple[bool, Any]:
    """``(True, input)`` when the header records a queued run's input, else ``(False, None)``."""
    found, value, _ = queued_run(header, what)
    return found, value


def queued_trigger(header: RunHeader, what: str) -> dict[str, Any] | None:
    """The trigger a queued run's header records (``{"kind", "source"}``), or None."""
    data = codec.loads(codec.unseal(header.payload, what), what) if header.payload else None
    return _trigger(data)


def queued_run(header: RunHeader, what: str) -> tuple[bool, Any, dict[str, Any] | None]:
    """``(True, input, trigger)`` when the header records a queued run's input, else
    ``(False, None, None)``: :func:`queued_input` and :func:`queued_trigger` in one decoding."""
    if not header.payload:
        return False, None, None
    data = codec.loads(codec.unseal(header.payload, what), what)
    if not isinstance(data, dict) or "input" not in data:
        return False, None, None
    return True, data["input"], _trigger(data)


def _trigger(data: Any) -> dict[str, Any] | None:
    trigger = data.get("trigger") if isinstance(data, dict) else None
    return trigger if isinstance(trigger, dict) and isinstance(trigger.get("kind"), str) else None


def with_status(header: RunHeader, status: str) -> RunHeader:
    """``header`` with another status column (the payload, its history record, is kept)."""
    return RunHeader(run_id=header.run_id, workflow=header.workflow, status=status,
                     started_at=header.started_at, finished_at=None, payload=header.payload)

