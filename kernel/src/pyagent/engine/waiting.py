"""Tasks that wait for a person: asking (``ctx.interrupt``), pausing, and going on once answered.

A task whose agent asks a question with no answer yet *parks*: its record says ``waiting``,
and the coroutine that ran it waits where the pattern called it, so the pattern needs to know
nothing (a parallel sibling is not cancelled, a sequential chain goes no further). Once the
question is answered (or timed out) the task runs again from its start and the same
``ctx.interrupt`` call returns the answer; completed tasks are never run again.

When no task of the run can make progress any more (every unfinished one waits) the run
*settles*: its status becomes ``waiting`` and ``workflow.waiting`` is announced. Then either
this process holds the run (``hold_waiting``, the default of ``workflow.run()``: the run keeps
its lease and its waiting tasks poll for answers) or the run is *suspended*: its body is
cancelled (``run.suspend``, as a lost lease cancels it; the waiting tasks' records stay
``waiting``), the execution ends with status ``waiting`` and a process that is told of an
answer (``pyagent serve``, ``pyagent resume``, ``orchestrator.resume``) resumes it from its
checkpoints. A resumed run's tasks that still wait
park at once, without running their agents again.

Questions and answers are kept by a *desk* (the durability layer's ``Desk``, reached through
``run.desk()``): this module only uses its methods, so the engine stays below the store.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from pyagent.errors import AnswerValidationError, ConfigurationError, InterruptTimeoutError
from pyagent.model import events as ev
from pyagent.model.interrupts import (
    ANSWERED,
    ESCALATED,
    EXPIRED,
    PENDING,
    Interrupt,
    Question,
    WaitingForAnswer,
    convert,
)
from pyagent.model.tasks import TaskStatus

if TYPE_CHECKING:
    from pyagent.engine.run import WorkflowRun
    from pyagent.model.results import TaskResult

log = logging.getLogger("pyagent.engine")

#: Loop turns a settling run lets pass before it decides that nothing can make progress: a
#: graph starts a task's dependents one turn after the task ends.
_SETTLE_TURNS = 3


# -- asking ------------------------------------------------------------------------------------


async def ask(run: WorkflowRun, task: str | None, question: Question) -> Any:
    """What ``ctx.interrupt`` does: the answer if there is one, else WaitingForAnswer (the task pauses)."""
    if task is None:
        raise ConfigurationError(
            "ctx.interrupt was called outside a task (by a pattern itself): questions pause tasks, so ask "
            "from a task's agent")
    while run.parent is not None:
        # A workflow run as a step of another: its question belongs to the outer run's task,
        # which runs the inner workflow again from its start once answered.
        if getattr(run.parent, "ask_person", None) is None or run.parent_task is None:
            raise ConfigurationError(
                "ctx.interrupt is not available where this agent runs (inside a run on a remote executor "
                "such as a Dask worker): ask in a task that runs on the local executor")
        task = f"{run.parent_task}/{task}"
        run = run.parent
    identity = question.identity
    occurrence, used = run.next_question(task, identity)
    desk = run.desk()
    position, found = place(desk, task, identity, occurrence, used)
    used.add(position)  # reserved before any await: a concurrent question of the task takes another
    if found is None:
        found, asked = await desk.ask(task, position, {**question.describe(), "occurrence": occurrence})
        if asked:
            audit_asked(run, found)
    if found.status == ESCALATED:  # its successor was never asked: the run stopped in between
        found = await desk.escalate(found)
        audit_asked(run, found)
    if found.status == ANSWERED:
        audit_answered(run, found)
        try:
            return convert(found.answer, question.schema)
        except Exception as exc:
            raise AnswerValidationError(
                f"the answer to {found.question!r} (question {found.id}) matched the stored JSON schema but "
                f"not {question.schema!r}: {exc}", run_id=run.run_id, interrupt_id=found.id) from exc
    if found.status == EXPIRED:
        audit_expired(run, found)
        raise InterruptTimeoutError(
            f"nobody answered {found.question!r} (question {found.id} of task {task!r}) within "
            f"{found.timeout:g} s: it expired (on_timeout='fail')", run_id=run.run_id, interrupt_id=found.id)
    if not found.pending:  # pragma: no cover - a status this pyagent does not know
        raise ConfigurationError(f"question {found.id} has an unknown status {found.status!r}")
    raise WaitingForAnswer(found)


def place(desk: Any, task: str, identity: str, occurrence: int, used: set[int]) -> tuple[int, Interrupt | None]:
    """Where in ``task`` this question was (or is to be) asked, and its latest record if any.

    The task runs again from its start once answered, so each call must find its own recorded
    question. A question is identified by its ``key=`` or, without one, its text, and by how
    often the task asked it before in this execution: not by the order of all its questions,
    which changes when questions are asked concurrently (parallel tool calls of a model agent,
    which LangGraph misroutes by order). A new question goes to the first free position.
    """
    recorded = desk.places(task)  # position -> (identity, occurrence, latest record)
    for position in sorted(recorded):
        ident, n, latest = recorded[position]
        if ident == identity and n == occurrence and position not in used:
            return position, latest
    position = 0
    while position in recorded or position in used:
        position += 1
    return position, None


def _audit_once(run: WorkflowRun, kind: str, interrupt: Interrupt, **data: Any) -> None:
    key = (kind, interrupt.id)
    if key in run.audited:
        return
    run.audited.add(key)
    run.audit(kind, interrupt.task, interrupt=interrupt.id, **data)


def audit_asked(run: WorkflowRun, interrupt: Interrupt) -> None:
    _audit_once(run, ev.INTERRUPT_ASKED, interrupt, question=interrupt.question, level=interrupt.level,
                escalates=interrupt.escalates, deadline=interrupt.deadline, timestamp=interrupt.asked_at)


def audit_answered(run: WorkflowRun, interrupt: Interrupt) -> None:
    import json

    try:
        text = json.dumps(interrupt.answer, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(interrupt.answer)
    _audit_once(run, ev.INTERRUPT_ANSWERED, interrupt, question=interrupt.question, answer=text,
                answered_by=interrupt.answered_by, answered_at=interrupt.answered_at,
                timestamp=interrupt.answered_at)


def audit_expired(run: WorkflowRun, interrupt: Interrupt) -> None:
    _audit_once(run, ev.INTERRUPT_EXPIRED, interrupt, question=interrupt.question,
                answered_at=interrupt.answered_at, timestamp=interrupt.answered_at)


def audit_escalated(run: WorkflowRun, interrupt: Interrupt, to: Interrupt) -> None:
    _audit_once(run, ev.INTERRUPT_ESCALATED, interrupt, question=interrupt.question, to=to.id,
                answered_at=interrupt.answered_at, timestamp=interrupt.answered_at)


# -- parking -----------------------------------------------------------------------------------


class Waits:
    """The run's parked tasks, and whether the run as a whole waits (settled) or is being suspended."""

    def __init__(self, run: WorkflowRun) -> None:
        self.run = run
        self.parked: dict[str, Interrupt] = {}
        self.settled = False
        self.suspending = False
        self.at_settle: list[Interrupt] = []  # what the run waited on when it last settled
        self._changed = anyio.Event()

    def changed(self) -> None:
        """Wake every parked task to look again (a task started, ended or parked)."""
        self._changed.set()
        self._changed = anyio.Event()

    async def settle(self) -> None:
        """Nothing can make progress: the run waits. Hold it, or suspend it."""
        run = self.run
        self.settled = True
        self.at_settle = list(self.parked.values())
        run.status = TaskStatus.WAITING
        run.current_task = None
        run.emit(ev.WORKFLOW_WAITING, status="waiting", interrupts=self.summary(), held=run.hold_waiting)
        if not run.hold_waiting:
            if run.suspend is None:  # pragma: no cover - the runner refuses this before the run starts
                raise ConfigurationError("this run cannot be suspended: it has no store to go on from")
            self.suspending = True
            run.suspend()
            return
        if run.on_waiting is not None:
            try:
                await run.on_waiting(True)
            except Exception as exc:  # the run still waits here; its final checkpoint tries again
                log.warning("run %s: saving that it waits failed: %s", run.run_id, exc)

    async def unsettle(self) -> None:
        """A waiting task goes on: the run runs again."""
        run = self.run
        self.settled = False
        run.status = TaskStatus.RUNNING
        if run.hold_waiting and run.on_waiting is not None:
            try:
                await run.on_waiting(False)
            except Exception as exc:
                log.warning("run %s: saving that it runs again failed: %s", run.run_id, exc)

    def summary(self) -> list[dict[str, Any]]:
        return [{"interrupt": i.id, "task": name, "question": i.question, "deadline": i.deadline}
                for name, i in self.parked.items()]

    async def wait(self, name: str) -> None:
        """Until the question ``name`` waits on is resolved (a suspended run's body is cancelled meanwhile)."""
        run = self.run
        desk = run.desk()
        clock = run.runtime.clock
        while True:
            if self.suspending:
                await anyio.sleep_forever()  # the run's body is being cancelled
            interrupt = self.parked[name]
            if interrupt.deadline is not None and clock.time() >= interrupt.deadline:
                what, now_on = await desk.time_out(interrupt)
                if what == ESCALATED:
                    audit_escalated(run, interrupt, now_on)
                    audit_asked(run, now_on)
                if now_on.pending:
                    self.parked[name] = now_on
                    run.emit(ev.TASK_WAITING, name, "waiting", interrupt=now_on.id, question=now_on.question,
                             escalates=interrupt.id)
                    continue
                return
            if not self.settled and run.active_tasks == 0:
                for _ in range(_SETTLE_TURNS):
                    await anyio.lowlevel.checkpoint()
                if not self.settled and not self.suspending and run.active_tasks == 0 and not run.hold_waiting:
                    # About to suspend: an answer recorded after the question was written but
                    # before this task parked was taken as "the process holding the run goes
                    # on with it", so look once more before giving the run up.
                    fresh = await desk.refresh(interrupt)
                    if fresh.status != PENDING:
                        return
                if not self.settled and not self.suspending and run.active_tasks == 0:
                    await self.settle()
                continue
            await self._sleep(desk, interrupt.deadline)
            if self.suspending:
                continue
            fresh = await desk.refresh(interrupt)
            if fresh.status != PENDING:
                return

    async def _sleep(self, desk: Any, deadline: float | None) -> None:
        """Until something changes in the run, an answer is recorded here, a poll is due or the deadline."""
        changed = self._changed
        signal = desk.signal()
        clock = self.run.runtime.clock
        try:
            with anyio.move_on_after(desk.poll_seconds):
                async with anyio.create_task_group() as tg:
                    async def wake(wait: Callable[[], Awaitable[Any]]) -> None:
                        await wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(wake, changed.wait)
                    tg.start_soon(wake, signal.wait)
                    if deadline is not None:
                        tg.start_soon(wake, lambda: clock.sleep_until(deadline))
        finally:
            desk.unsignal(signal)


async def park(run: WorkflowRun, name: str, rec: TaskResult, interrupt: Interrupt,
               rerun: Callable[[], Awaitable[TaskResult]]) -> TaskResult:
    """Pause task ``name`` on ``interrupt`` until it is resolved, then run it again (see the module)."""
    waits = run.waits()
    desk = run.desk()
    rec.status = TaskStatus.WAITING
    rec.reason = f"waiting for an answer to {interrupt.question!r} (question {interrupt.id})"
    run.records[name] = rec
    run.emit(ev.TASK_WAITING, name, "waiting", interrupt=interrupt.id, question=interrupt.question,
             agent=rec.agent, deadline=interrupt.deadline)
    waits.parked[name] = interrupt
    run.active_tasks -= 1
    if run.hold_waiting:
        desk.hold(1)
    waits.changed()
    try:
        await waits.wait(name)
    finally:
        waits.parked.pop(name, None)
        if run.hold_waiting:
            desk.hold(-1)
        run.active_tasks += 1
    if waits.settled:
        await waits.unsettle()
    waits.changed()
    return await rerun()


def waiting_in(exc: BaseException) -> WaitingForAnswer | None:
    """The WaitingForAnswer in ``exc`` (itself, or inside exception groups), or None."""
    if isinstance(exc, WaitingForAnswer):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = waiting_in(inner)
            if found is not None:
                return found
    return None

