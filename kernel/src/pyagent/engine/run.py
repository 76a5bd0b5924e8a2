"""The run engine: runs one task with its policies and emits events; patterns decide the order.

A pattern plugin receives a :class:`WorkflowRun` and calls ``run.run_step(step, input)``
for each step it schedules. ``run_step`` returns the step's :class:`TaskResult`, or raises
:class:`TaskFailedError` when the step failed for good (after retries and fallback) and does
not say ``continue_on_error``; the pattern lets that propagate to fail the run, or catches
it to collect partial results.
"""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from pyagent.engine.concurrency import first_error
from pyagent.engine.waiting import waiting_in
from pyagent.errors import (
    CapabilityError,
    ConfigurationError,
    GuardrailError,
    InterruptTimeoutError,
    TaskFailedError,
)
from pyagent.model import events as ev
from pyagent.model.agents import FunctionAgent, InstructionAgent, WorkflowAgent
from pyagent.model.context import (
    Message,
    RunContext,
    _current_run,
    _current_task,
    _step_of,
    current_run,
)
from pyagent.model.events import Event, wanted_kinds
from pyagent.model.guardrails import apply_guardrails
from pyagent.model.language import Usage
from pyagent.model.results import Attempt, TaskResult, WorkflowResult
from pyagent.model.tasks import ConditionalTask, Task, TaskStatus
from pyagent.model.tracebacks import format_traceback
from pyagent.plugins import set_run_lookup

if TYPE_CHECKING:
    from pyagent.engine.waiting import Waits
    from pyagent.model.interrupts import Question, WaitingForAnswer
    from pyagent.model.toolsource import ToolScope
    from pyagent.plugins import Runtime
    from pyagent.workflow import Workflow

log = logging.getLogger("pyagent.engine")

_COMPLETED = TaskStatus.COMPLETED
_RUNNING = TaskStatus.RUNNING

Listener = Callable[[Event], Any]




def new_run_id() -> str:
    return uuid.uuid4().hex


class WorkflowRun:
    """One run of a workflow: its results so far, shared state and transcript, and its events."""

    def __init__(
        self,
        workflow: Workflow,
        *,
        runtime: Runtime,
        input: Any = None,
        run_id: str | None = None,
        listeners: Iterable[Listener] = (),
        on_task_complete: Callable[[TaskResult], Any] | None = None,
        executor: Any = None,
        resumed: dict[str, TaskResult] | None = None,
        first_started_at: float | None = None,
        earlier_resumes: Iterable[float] = (),
        task_executors: dict[str, Any] | None = None,
        hold_waiting: bool = True,
        earlier_audit: Iterable[dict[str, Any]] = (),
        earlier_handoffs: Iterable[dict[str, Any]] = (),
        trigger: dict[str, Any] | None = None,
    ) -> None:
        self.workflow = workflow
        self.runtime = runtime
        self.input = input
        self.run_id = run_id or new_run_id()
        self.results: dict[str, Any] = {}
        self.records: dict[str, TaskResult] = {}
        self.state: dict[str, Any] = {}
        self.transcript: list[Message] = []
        self.status = TaskStatus.PENDING
        self.current_task: str | None = None
        self.started_at = time.time()
        # A resumed run is one run to history: it keeps when it first started, and lists when it
        # was resumed (this execution's start included). ``started_at`` is this execution's.
        self.first_started_at = self.started_at if first_started_at is None else first_started_at
        self.resumes: list[float] = [] if first_started_at is None else [*earlier_resumes, self.started_at]
        # How the run first started, kept across resumes: {"kind": "webhook", "source": "/hooks/ci"}.
        # A resumed run whose origin was not saved (older checkpoints) is known only as resumed.
        self.trigger: dict[str, Any] = dict(trigger) if trigger else {
            "kind": "manual" if first_started_at is None else "resume"}
        self.finished_at: float | None = None
        self.errors: dict[str, str] = {}
        self._listeners = list(listeners)
        self._kinds = [(listener, wanted_kinds(listener)) for listener in self._listeners]
        self._routes: dict[str, list[Listener]] = {}  # event kind -> the listeners that want it
        self._announce_start = bool(self._route(ev.TASK_STARTED))
        self._on_task_complete = on_task_complete
        self._emitting = bool(self._listeners) or on_task_complete is not None
        self._invoke: Callable[..., Any] = executor.call
        # An inline executor calls agent.run on this loop, so the hot path may call a function
        # agent directly; any other executor (a process pool, a cluster) always gets the call.
        self._local = getattr(executor, "inline", False) is True
        # Tasks that name their own executor (Task(executor="dask")): task name -> its call.
        self._task_invoke: dict[str, Callable[..., Any]] = {
            name: ex.call for name, ex in (task_executors or {}).items()}
        self._resumed = resumed or {}
        self._cancelled_exc = anyio.get_cancelled_exc_class()
        self.after_task: list[Callable[[WorkflowRun, TaskResult], Any]] = []
        self.handoffs: list[dict[str, Any]] = list(earlier_handoffs)
        self.usage: Usage | None = None  # tokens of every model call in the run
        # A resumed run's trail goes on from where its earlier executions left it.
        self.audit_trail: list[dict[str, Any]] = list(earlier_audit)
        # What the run's tool sources opened (an MCP server's session), closed when it ends.
        self.tool_scope: ToolScope | None = None
        # Waiting for people (see pyagent.engine.waiting). A workflow used as a step of another
        # run asks its questions as that run's task.
        outer = _step_of.get()
        self.parent: WorkflowRun | None = None if outer is None else outer[0]
        self.parent_task: str | None = None if outer is None else outer[1]
        #: Keep the run here while it waits (True), or end this execution (False: resumed later).
        self.hold_waiting = hold_waiting
        #: Called with True when the run starts waiting and False when it runs again (saves it).
        self.on_waiting: Callable[[bool], Any] | None = None
        #: Ends this execution when the run waits and does not hold (cancels its body).
        self.suspend: Callable[[], Any] | None = None
        #: Makes the run's desk (its questions, kept in its store): set by the durability layer.
        self.desk_factory: Callable[[], Any] | None = None
        self._desk: Any = None
        self._questions = False  # set once the run asks (or reads) questions: the hot path checks it
        self._waits: Waits | None = None
        # task -> (how often it asked each question in its current execution, the places matched)
        self._asked: dict[str, tuple[dict[str, int], set[int]]] = {}
        self.active_tasks = 0  # tasks running now (not waiting)
        self.audited: set[tuple[str, str]] = {
            (e["kind"], e["interrupt"]) for e in self.audit_trail
            if str(e.get("kind", "")).startswith("interrupt.") and "interrupt" in e}
        # Set while the run goes on (by the durability layer): what cancel() stops, and from where.
        self.stop_scope: anyio.CancelScope | None = None
        self.cancel_reason: str | None = None
        self._loop: tuple[Any, int] | None = None
        #: Set by stop_at_boundary(): the reason the run ends at its next task boundary.
        self.stop_requested: str | None = None
        self._task_ended: anyio.Event | None = None


    def cancel(self, reason: str | None = None) -> bool:
        """Stop this run from outside it: its tasks are cancelled and it ends ``cancelled``.

        Safe to call from another thread. False when the run is not going on (any more).
        """
        import threading

        scope, where = self.stop_scope, self._loop
        if scope is None or where is None or self.status.finished:
            return False
        self.cancel_reason = reason or "cancelled on request"
        token, thread = where
        if thread == threading.get_ident():
            scope.cancel()
        else:
            anyio.from_thread.run_sync(scope.cancel, token=token)
        return True

    def stop_at_boundary(self, reason: str) -> None:
        """Stop this run at its next task boundary (a cancel asked of the process running it).

        No task starts after this: the task that would start waits until the tasks running now
        have finished (and were checkpointed), then the run is cancelled as :meth:`cancel`
        does, with ``reason``. Tasks running now are not interrupted; a run whose last task is
        running ends as that task makes it end. Call it from the run's event loop.
        """
        if self.stop_requested is None:
            self.stop_requested = reason or "cancelled on request"

    async def _stop_here(self) -> None:
        """A task is about to start after stop_at_boundary(): wait for the running ones, then stop."""
        while self.active_tasks > 0:
            if self._task_ended is None or self._task_ended.is_set():
                self._task_ended = anyio.Event()  # one event for every task waiting here
            await self._task_ended.wait()
        self.cancel_reason = self.stop_requested
        scope = self.stop_scope
        if scope is None:  # not started by the durability layer: nothing outside to stop
            from pyagent.errors import RunCancelledError

            raise RunCancelledError(self.stop_requested or "")
        scope.cancel()
        await anyio.lowlevel.checkpoint()  # the cancellation is delivered here

    # -- events --------------------------------------------------------------------------

    def _route(self, kind: str) -> list[Listener]:
        """The listeners that want events of ``kind`` (computed once per kind and run)."""
        targets = self._routes.get(kind)
        if targets is None:
            targets = [listener for listener, kinds in self._kinds if kinds is None or kind in kinds]
            self._routes[kind] = targets
        return targets

    def emit(self, kind: str, task: str | None = None, status: str | None = None, **data: Any) -> None:
        """Deliver an event to every listener that wants its kind; one that raises is logged and skipped."""
        targets = self._routes.get(kind)
        if targets is None:
            targets = self._route(kind)
        if not targets:
            return
        event = Event(kind, workflow=self.workflow.name, run_id=self.run_id, task=task,
                      status=status, data=data)
        for listener in targets:
            try:
                listener(event)
            except Exception as exc:
                self.runtime.monitor_errors += 1
                log.warning("monitor %r failed on %s: %s", listener, kind, exc)

    def deliver(self, event: Event) -> None:
        """Deliver an event built elsewhere (a team pattern's, inside one of this run's tasks)."""
        for listener in self._route(event.kind):
            try:
                listener(event)
            except Exception as exc:
                self.runtime.monitor_errors += 1
                log.warning("monitor %r failed on %s: %s", listener, event.kind, exc)

    @property
    def listening(self) -> bool:
        return bool(self._listeners)

    @property
    def event_kinds(self) -> frozenset[str] | None:
        """What ``forward`` delivers: the kinds this run's own (not process-wide) listeners want."""
        union: set[str] = set()
        for listener, kinds in self._kinds:
            if getattr(listener, "process_wide", False):
                continue
            if kinds is None:
                return None
            union |= kinds
        return frozenset(union)

    def forward(self, event: Event) -> None:
        """Deliver an event from elsewhere (a sub-workflow's) to this run's own listeners.

        The process-wide monitor hooks are left out: the sub-workflow's run delivered to them.
        """
        for listener in self._route(event.kind):
            if getattr(listener, "process_wide", False):
                continue
            try:
                listener(event)
            except Exception as exc:
                self.runtime.monitor_errors += 1
                log.warning("monitor %r failed on %s: %s", listener, event.kind, exc)

    def record_handoff(self, from_agent: Any, to_agent: Any, reason: str | None = None,
                       **data: Any) -> None:
        """Note a handoff between agents in this run's audit trail and announce it as an event.

        A handoff refused by the agent's ``can_handoff_to`` (``denied=True``, ``denial=`` why) is
        kept in the same trail and announced as ``capability.denied`` instead of ``handoff``.
        """
        entry = {"from_agent": getattr(from_agent, "name", from_agent),
                 "to_agent": getattr(to_agent, "name", to_agent), "reason": reason,
                 "timestamp": time.time(), **data}
        self.handoffs.append(entry)
        if data.get("denied"):
            self.emit(ev.CAPABILITY_DENIED, self.current_task, capability="handoff",
                      agent=entry["from_agent"], target=entry["to_agent"], **entry)
            return
        self.emit(ev.HANDOFF, self.current_task, **entry)

    def record_usage(self, task: str | None, usage: Usage) -> None:
        """Add one model call's usage to the run's total and to ``task``'s record."""
        if self.usage is None:
            self.usage = Usage()
        self.usage.add(usage)
        rec = self.records.get(task) if task is not None else None
        if rec is not None:
            if rec.usage is None:
                rec.usage = Usage()
            rec.usage.add(usage)

    def record_tool_call(self, task: str | None, entry: dict[str, Any]) -> None:
        """Keep one tool call in ``task``'s record, which the run's history shows.

        A call made outside any task (by a pattern itself) has no record to go to: its
        ``tool.*`` events are all that is kept of it.
        """
        rec = self.records.get(task) if task is not None else None
        if rec is None:
            return
        if rec.tool_calls is None:
            rec.tool_calls = []
        rec.tool_calls.append(entry)

    # -- waiting for people ------------------------------------------------------------------

    async def ask_person(self, task: str | None, question: Question) -> Any:
        """What ``ctx.interrupt`` calls: the answer, or WaitingForAnswer (see :mod:`pyagent.engine.waiting`)."""
        from pyagent.engine.waiting import ask

        return await ask(self, task, question)

    def desk(self) -> Any:
        """Where this run's questions are kept (made on first use)."""
        if self._desk is None:
            if self.desk_factory is None:
                raise ConfigurationError(
                    f"run {self.run_id!r} cannot ask questions: it was not started by workflow.run() or an "
                    "orchestrator, which give a run the place its questions are kept")
            self._desk = self.desk_factory()
            self._questions = True
        return self._desk

    def waits(self) -> Waits:
        if self._waits is None:
            from pyagent.engine.waiting import Waits

            self._waits = Waits(self)
        return self._waits

    def next_question(self, task: str, identity: str) -> tuple[int, set[int]]:
        """How often ``task`` asked question ``identity`` before in its current execution (0, 1,
        ...), and the places (positions) its questions in this execution were matched to."""
        self._questions = True
        entry = self._asked.get(task)
        if entry is None:
            entry = self._asked[task] = ({}, set())
        counts, used = entry
        n = counts.get(identity, 0)
        counts[identity] = n + 1
        return n, used

    def _forget_questions(self, task: str) -> None:
        """``task`` starts again: its questions count from 0 (so each finds its recorded answer)."""
        self._asked.pop(task, None)
        nested = f"{task}/"
        for key in [k for k in self._asked if k.startswith(nested)]:
            del self._asked[key]

    @property
    def waiting_interrupts(self) -> list[Any]:
        """The questions the run waits on (when it waits), for its result."""
        waits = self._waits
        if waits is None:
            return []
        return list(waits.parked.values()) or list(waits.at_settle)

    def audit(self, kind: str, task: str | None = None, **data: Any) -> dict[str, Any]:
        """Keep ``kind`` (a guardrail block or replacement, a denied tool call, ...) in this run's
        audit trail, which its history saves, and deliver it to the run's listeners as an event.

        ``data`` should be plain JSON-able values; others are saved as their repr.
        """
        entry = {"kind": kind, "task": task, "timestamp": self.runtime.clock.time(), **data}
        if entry["timestamp"] is None:
            entry["timestamp"] = self.runtime.clock.time()
        self.audit_trail.append(entry)
        if self._listeners:
            self.emit(kind, task, **{k: v for k, v in entry.items() if k not in ("kind", "task")})
        return entry

    def _task_done(self, rec: TaskResult, kind: str) -> None:
        targets = self._routes.get(kind)
        if targets is None:
            targets = self._route(kind)
        if targets:
            self.emit(kind, rec.name, rec.status.value, output=rec.output, error=rec.error_message,
                      duration=rec.duration, attempts=rec.attempt_count, agent=rec.agent)

    async def _completed_callback(self, run: WorkflowRun, rec: TaskResult) -> None:
        """Call ``on_task_complete`` for a completed task; its failure is logged, never the run's."""
        callback = self._on_task_complete
        assert callback is not None
        try:
            out = callback(rec)
            if inspect.isawaitable(out):
                await out
        except Exception as exc:
            self.runtime.monitor_errors += 1
            log.warning("on_task_complete callback failed for %s: %s", rec.name, exc)

    # -- steps ---------------------------------------------------------------------------

    async def run_step(self, step: Task | ConditionalTask, input: Any, *, previous: Any = None) -> TaskResult:
        """Run a task, or evaluate a conditional and run the branch it picks (the other is SKIPPED).

        ``previous`` is what ``ctx.result`` shows; it defaults to ``input``.
        """
        if type(step) is Task:
            return await self.run_task(step, input, previous=previous)
        if isinstance(step, ConditionalTask):
            return await self._run_conditional(step, input, previous)
        if isinstance(step, Task):
            return await self.run_task(step, input, previous=previous)
        raise ConfigurationError(f"step {step!r} is not a Task or ConditionalTask")

    async def _run_conditional(self, step: ConditionalTask, input: Any, previous: Any) -> TaskResult:
        ctx = self.context(None, result=input if previous is None else previous)
        try:
            verdict = step.condition(ctx)
            if hasattr(verdict, "__await__"):
                verdict = await verdict
        except Exception as exc:
            rec = self._record(step.name, "condition")
            rec.status = TaskStatus.FAILED
            rec.error = exc
            rec.traceback = format_traceback(exc)
            rec.finished_at = time.time()
            self._task_done(rec, ev.TASK_FAILED)
            err = TaskFailedError(step.name, exc)
            self.errors[step.name] = str(err)
            if step.continue_on_error:
                return rec
            raise err from exc
        chosen, other = (step.if_true, step.if_false) if verdict else (step.if_false, step.if_true)
        if other is not None:
            self.skip(other, f"condition of {step.name!r} was {bool(verdict)}")
        if chosen is None:
            rec = self._record(step.name, "condition")
            self.skip_record(rec, f"condition was {bool(verdict)} and that branch is empty")
            return rec
        return await self.run_task(chosen, input, previous=previous)

    def _record(self, name: str, agent: str) -> TaskResult:
        rec = TaskResult(name, _RUNNING, agent)
        rec.started_at = time.time()
        self.records[name] = rec
        return rec

    def skip(self, step: Task | ConditionalTask, reason: str) -> TaskResult:
        """Mark a task (and a conditional's branches) SKIPPED without running it."""
        names = [step.name] if isinstance(step, Task) else [step.name, *(b.name for b in step.branches)]
        rec = TaskResult(names[0], TaskStatus.SKIPPED)
        for name in names:
            r = TaskResult(name, TaskStatus.SKIPPED)
            r.reason = reason
            self.records[name] = r
            if name == names[0]:
                rec = r
            self._task_done(r, ev.TASK_SKIPPED)
        return rec

    def skip_record(self, rec: TaskResult, reason: str) -> None:
        rec.status = TaskStatus.SKIPPED
        rec.reason = reason
        rec.finished_at = time.time()
        self._task_done(rec, ev.TASK_SKIPPED)

    def context(self, task: Task | None, *, result: Any = None, **fields: Any) -> RunContext:
        """A run context for ``task`` sharing this run's results, state and transcript."""
        return RunContext(workflow=self.workflow, task=task, results=self.results, result=result,
                          state=self.state, transcript=self.transcript, run_id=self.run_id, run=self, **fields)

    async def run_task(self, task: Task, input: Any, *, previous: Any = None) -> TaskResult:
        """Run one task with its timeout, retries, fallback and guardrails; record and announce every transition."""
        # The task's name is visible to what its agent calls (a model agent inside a team
        # pattern reports its usage to this task), through a context variable.
        if self.stop_requested is not None:  # the task boundary a cancel from elsewhere stops at
            await self._stop_here()
        token = _current_task.set(task.name)
        self.active_tasks += 1
        try:
            return await self._run_task(task, input, previous)
        finally:
            self.active_tasks -= 1
            _current_task.reset(token)
            if self._waits is not None:
                self._waits.changed()
            if self._task_ended is not None:
                self._task_ended.set()

    async def _run_task(self, task: Task, input: Any, previous: Any) -> TaskResult:
        # Fields are read from the instance dict, where pydantic keeps them: an attribute read
        # on a model costs ~25 ns (its __getattr__ hook defeats attribute caching) and these
        # six run on every task.
        fields = task.__dict__
        name = fields["name"]
        if self._resumed:
            done = self._resumed.get(name)
            if done is not None and done.status is _COMPLETED:
                return self._reuse(done)
        agent = fields["agent"]
        rec = TaskResult(name, _RUNNING, agent.name)
        rec.started_at = time.time()
        self.records[name] = rec
        if self._questions:  # the run asked people questions (or read those it asked before)
            if self._asked:
                self._forget_questions(name)
            desk = self._desk
            if desk is not None and self.parent is None:
                # A task whose question is still open waits again, without running.
                open_question = desk.waiting_on(name)
                if open_question is not None:
                    from pyagent.engine.waiting import park

                    return await park(self, name, rec, open_question,
                                      lambda: self._run_task(task, input, previous))
        self.current_task = name
        ctx: RunContext | None = None
        try:
            if self._announce_start:  # inside the try: whatever a monitor raises, the record still ends
                self.emit(ev.TASK_STARTED, name, "running", input=input, agent=agent.name)
            if (fields["retry_config"] is None and fields["timeout"] is None
                    and not fields["input_guardrails"] and not fields["output_guardrails"]):
                if (self._local and type(agent) is FunctionAgent and not agent.thread
                        and agent._guardrails is None
                        and (not self._task_invoke or name not in self._task_invoke)):
                    # Hot path: call the function directly; a context only if it takes one.
                    fn = agent._call
                    if agent.wants_context:
                        ctx = self._context(task, input, previous)
                        output = fn(input, ctx)
                    else:
                        output = fn(input)
                    if agent.is_async or inspect.isawaitable(output):
                        output = await output
                else:
                    ctx = self._context(task, input, previous)
                    output = await self._invoker(name)(agent, input, ctx)
            else:
                rec.attempts = []
                ctx = self._context(task, input, previous)
                output = await self._with_policies(task, agent, input, ctx, rec)
        except self._cancelled_exc:
            rec.status = TaskStatus.CANCELLED
            rec.finished_at = time.time()
            self._task_done(rec, ev.TASK_CANCELLED)
            raise
        except Exception as exc:
            if rec._attempts is None:  # the single fast-path attempt failed: record it now
                att = Attempt(1, agent.name, rec.started_at)
                att.error = f"{type(exc).__name__}: {exc}"
                att.traceback = format_traceback(exc)
                att.finished_at = time.time()
                rec.attempts = [att]
            if (task.fallback_agent is not None and _blocked(exc) is None
                    and not isinstance(exc, InterruptTimeoutError)):
                # A block is final: the fallback would get the same refused input, or be asked
                # to replace an answer the guardrail refused rather than the agent failing.
                # A question nobody answered in time is the task's outcome too.
                if ctx is None:
                    ctx = self._context(task, input, previous)
                try:
                    return await self._fallback(task, input, ctx, rec, exc)
                except BaseException as again:
                    waiting = waiting_in(again)
                    if waiting is None:
                        raise
                    return await self._wait(task, rec, waiting, again, input, previous)
            return self._fail(task, rec, exc)
        except BaseException as exc:
            waiting = waiting_in(exc)
            if waiting is None:
                self._interrupted(rec, exc)
                raise
            return await self._wait(task, rec, waiting, exc, input, previous)
        rec.output = output
        rec.status = _COMPLETED
        rec.finished_at = time.time()
        self.results[name] = output
        self._task_done(rec, ev.TASK_COMPLETED)
        if self.after_task:
            await self._after(rec)
        return rec

    async def _wait(self, task: Task, rec: TaskResult, waiting: WaitingForAnswer, exc: BaseException,
                    input: Any, previous: Any) -> TaskResult:
        """The task's agent asked a question with no answer yet: it waits (never a failure, never retried)."""
        if self.parent is not None:
            # A workflow run as a step: the outer run's task waits, and runs this one again.
            rec.status = TaskStatus.WAITING
            rec.reason = f"waiting for an answer to question {waiting.interrupt.id} (asked by the outer run)"
            self.emit(ev.TASK_WAITING, task.name, "waiting", interrupt=waiting.interrupt.id,
                      question=waiting.interrupt.question, agent=rec.agent)
            raise exc
        from pyagent.engine.waiting import park

        return await park(self, task.name, rec, waiting.interrupt,
                          lambda: self._run_task(task, input, previous))

    def _context(self, task: Task, input: Any, previous: Any) -> RunContext:
        return RunContext(workflow=self.workflow, task=task, results=self.results,
                          result=input if previous is None else previous, state=self.state,
                          transcript=self.transcript, run_id=self.run_id, run=self)

    def _reuse(self, done: TaskResult) -> TaskResult:
        rec = TaskResult(done.name, _COMPLETED, done.agent)
        rec.output = done.output
        rec.started_at, rec.finished_at = done.started_at, done.finished_at
        rec.attempts = list(done.attempts)
        rec.reused = True
        self.records[done.name] = rec
        self.results[done.name] = done.output
        self.emit(ev.TASK_REUSED, done.name, "completed", output=done.output)
        return rec

    def _fail(self, task: Task, rec: TaskResult, exc: BaseException) -> TaskResult:
        rec.status = TaskStatus.FAILED
        rec.error = exc
        rec.traceback = _traceback_of(rec, exc)
        rec.finished_at = time.time()
        err = TaskFailedError(task.name, exc)
        self.errors[task.name] = str(err)
        self._task_done(rec, ev.TASK_FAILED)
        if task.continue_on_error:
            return rec
        raise err from exc

    def _interrupted(self, rec: TaskResult, exc: BaseException) -> None:
        """End the record of a task that a BaseException (not an Exception) went through.

        KeyboardInterrupt, SystemExit or a framework's own BaseException is not the task's
        failure to handle: it propagates. The record still ends, so no task stays RUNNING:
        CANCELLED for an interrupt or exit, FAILED for anything else.
        """
        rec.error = exc
        rec.finished_at = time.time()
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            rec.status = TaskStatus.CANCELLED
            self._task_done(rec, ev.TASK_CANCELLED)
        else:
            rec.status = TaskStatus.FAILED
            rec.traceback = _traceback_of(rec, exc)
            self.errors[rec.name] = str(TaskFailedError(rec.name, exc))
            self._task_done(rec, ev.TASK_FAILED)

    def _invoker(self, task: str) -> Callable[..., Any]:
        """The call of the executor that runs ``task``'s agent: its own, else the run's."""
        if self._task_invoke:
            return self._task_invoke.get(task, self._invoke)
        return self._invoke

    async def _call_once(self, task: Task, agent: Any, input: Any, ctx: RunContext) -> Any:
        invoke = self._invoker(task.name)
        if task.timeout is None:
            return await invoke(agent, input, ctx)
        # move_on_after rather than fail_after: a TimeoutError the agent raises itself is its
        # own error and must not be reported as this task's timeout.
        with anyio.move_on_after(task.timeout):
            return await invoke(agent, input, ctx)
        raise TimeoutError(f"task '{task.name}' ({agent.name}) timed out after {task.timeout:g}s")

    async def _guarded_call(self, task: Task, agent: Any, input: Any, ctx: RunContext) -> Any:
        """One call of ``agent`` with the task's guardrails around it (and its timeout inside)."""
        if not (task.input_guardrails or task.output_guardrails):
            return await self._call_once(task, agent, input, ctx)
        name = task.name

        def report(kind: str, data: dict[str, Any]) -> None:
            self.audit(kind, name, attempt=ctx.attempt, **data)

        if task.input_guardrails:
            input = await apply_guardrails(task.input_guardrails, input, side="input", report=report,
                                           agent=agent.name, task=name)
        output = await self._call_once(task, agent, input, ctx)
        if task.output_guardrails:
            output = await apply_guardrails(task.output_guardrails, output, side="output",
                                            report=report, agent=agent.name, task=name)
        return output

    async def _with_policies(self, task: Task, agent: Any, input: Any, ctx: RunContext,
                             rec: TaskResult) -> Any:
        cfg = task.retry_config
        if cfg is None:
            return await self._attempt(task, agent, input, ctx, rec, 1)
        import tenacity

        retry_on = cfg.retry_on

        def retryable(exc: BaseException) -> bool:
            # A pause for a person is not a failure: never retried (nor is an expired question,
            # whose error says retryable=False).
            if waiting_in(exc) is not None:
                return False
            # A guardrail's block is retried only when the guardrail says it may be; a denied
            # capability never is: asking again is denied again. Either may come wrapped (a
            # nested workflow's failed task, a handoff's error), so the causes are looked at too.
            if _blocked(exc, denials=True) is not None:
                return False
            # An error that says trying again cannot help (a model's bad key) fails at once.
            if any(getattr(e, "retryable", True) is False for e in _causes(exc)):
                return False
            return isinstance(exc, retry_on)

        clock = self.runtime.clock

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            self.emit(ev.TASK_RETRYING, task.name, "running", attempt=state.attempt_number,
                      error=f"{type(exc).__name__}: {exc}", delay=delay)

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(cfg.max_retries + 1),
            wait=cfg.wait_strategy(),
            retry=tenacity.retry_if_exception(retryable),
            sleep=clock.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(task, agent, input, ctx, rec,
                                           attempt.retry_state.attempt_number)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _attempt(self, task: Task, agent: Any, input: Any, ctx: RunContext, rec: TaskResult,
                       number: int) -> Any:
        ctx.attempt = number
        if number > 1 and self._questions and self._asked:
            self._forget_questions(task.name)  # a retry runs the agent from its start again
        att = Attempt(number, agent.name, time.time())
        rec.attempts.append(att)
        try:
            out = await self._guarded_call(task, agent, input, ctx)
        except Exception as exc:
            att.error = f"{type(exc).__name__}: {exc}"
            att.traceback = format_traceback(exc)
            raise
        finally:
            att.finished_at = time.time()
        return out

    async def _fallback(self, task: Task, input: Any, ctx: RunContext, rec: TaskResult,
                        primary: BaseException) -> TaskResult:
        fallback = task.fallback_agent
        strategy = task.fallback_strategy
        partial = getattr(primary, "partial_output", None)
        rec.fallback_strategy = strategy
        rec.primary_error = f"{type(primary).__name__}: {primary}"
        rec.primary_output = partial
        rec.agent = fallback.name
        self.emit(ev.TASK_FALLBACK, task.name, "running", strategy=strategy,
                  error=rec.primary_error, fallback=fallback.name)
        fctx = RunContext(workflow=self.workflow, task=task, results=self.results, result=ctx.result,
                          state=self.state, transcript=self.transcript, run_id=self.run_id, run=self,
                          attempt=len(rec.attempts) + 1,
                          error=primary if strategy == "supplement" else None,
                          partial_output=partial if strategy == "supplement" else None)
        att = Attempt(len(rec.attempts) + 1, fallback.name, time.time())
        rec.attempts.append(att)
        try:
            output = await self._guarded_call(task, fallback, input, fctx)
        except self._cancelled_exc:
            rec.status = TaskStatus.CANCELLED
            rec.finished_at = att.finished_at = time.time()
            self._task_done(rec, ev.TASK_CANCELLED)
            raise
        except Exception as exc:
            att.error = f"{type(exc).__name__}: {exc}"
            att.traceback = format_traceback(exc)
            att.finished_at = time.time()
            exc.__context__ = primary
            return self._fail(task, rec, exc)
        except BaseException as exc:
            att.finished_at = time.time()
            if waiting_in(exc) is None:
                att.error = f"{type(exc).__name__}: {exc}"
                self._interrupted(rec, exc)
            raise
        att.finished_at = time.time()
        rec.output = output
        rec.status = _COMPLETED
        rec.finished_at = att.finished_at
        self.results[task.name] = output
        self._task_done(rec, ev.TASK_COMPLETED)
        if self.after_task:
            await self._after(rec)
        return rec

    async def _after(self, rec: TaskResult) -> None:
        for fn in self.after_task:
            out = fn(self, rec)
            if hasattr(out, "__await__"):
                await out

    # -- outcome -------------------------------------------------------------------------

    def result(self, output: Any, status: TaskStatus, exc: BaseException | None = None) -> WorkflowResult:
        outputs = {n: r.output for n, r in self.records.items() if r.status is _COMPLETED}
        return WorkflowResult.model_construct(
            workflow=self.workflow.name, run_id=self.run_id, status=status, output=output,
            outputs=outputs, tasks=self._every_task(status),
            error=None if exc is None else _describe(exc), exception=exc,
            traceback=_run_traceback(status, exc),
            errors=dict(self.errors), transcript=list(self.transcript),
            started_at=self.started_at, finished_at=self.finished_at, usage=self.usage,
            interrupts=self.waiting_interrupts if status is TaskStatus.WAITING else [],
        )


    def _every_task(self, status: TaskStatus) -> dict[str, TaskResult]:
        """A record for every task of the workflow, in workflow order where it never started.

        A task the run never started is PENDING when the run failed or was cancelled (resuming
        the run would run it) and SKIPPED when the run completed without it.
        """
        records = dict(self.records)
        names = self.workflow.task_names
        if len(records) >= len(names):
            return records
        if status is _COMPLETED:
            state, reason = TaskStatus.SKIPPED, "not run: the pattern completed the run without it"
        elif status is TaskStatus.WAITING:
            state, reason = TaskStatus.PENDING, "not started yet: the run waits for an answer first"
        else:
            state, reason = TaskStatus.PENDING, f"not started: the run {status.value} before reaching it"
        for name in names:
            if name not in records:
                rec = TaskResult(name, state)
                rec.reason = reason
                records[name] = rec
        return records


def _causes(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and what it wraps: a TaskFailedError's error, an exception's ``__cause__``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.error if isinstance(current, TaskFailedError) else current.__cause__


def _blocked(exc: BaseException, *, denials: bool = False) -> BaseException | None:
    """The final refusal in ``exc`` or its causes: a guardrail's block that allows no retry
    (and, with ``denials``, a capability denial), or None."""
    for error in _causes(exc):
        if isinstance(error, GuardrailError) and not error.retry:
            return error
        if denials and isinstance(error, CapabilityError):
            return error
    return None


def _run_traceback(status: TaskStatus, exc: BaseException | None) -> str | None:
    """A failed run's traceback; None for an error that was never raised (a cancellation, an
    open breaker's refusal), whose traceback would only repeat its message."""
    if exc is None or status is not TaskStatus.FAILED or exc.__traceback__ is None:
        return None
    return format_traceback(exc)


def _traceback_of(rec: TaskResult, exc: BaseException) -> str:
    """The traceback of a task's failure: its last attempt's when that attempt raised ``exc``
    (formatted then, as the error left the agent), else ``exc``'s formatted now."""
    attempts = rec._attempts
    if attempts:
        last = attempts[-1]
        if last.traceback is not None and last.error == f"{type(exc).__name__}: {exc}":
            return last.traceback
    return format_traceback(exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TaskFailedError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _task_failure(exc: BaseException) -> BaseException:
    """Prefer the TaskFailedError inside an exception group; otherwise the first error."""
    if isinstance(exc, BaseExceptionGroup):
        match, _ = exc.split(TaskFailedError)
        if match is not None:
            return first_error(match)
    return first_error(exc)


def _suspend(run: WorkflowRun) -> WorkflowResult:
    """End this execution of a run that waits for answers: it goes on later, here or elsewhere."""
    run.status = TaskStatus.WAITING
    run.current_task = None
    run.finished_at = None
    result = run.result(None, TaskStatus.WAITING)
    run.emit(ev.WORKFLOW_SUSPENDED, status="waiting",
             interrupts=[{"interrupt": i.id, "task": i.task, "question": i.question} for i in result.interrupts])
    return result


def _settled(run: WorkflowRun) -> bool:
    """Whether every unfinished task of the run waits for an answer (stopping it now loses nothing)."""
    waits = run._waits
    return waits is not None and waits.settled and run.active_tasks == 0


def _stopped(run: WorkflowRun, error: BaseException) -> None:
    """End a run that a BaseException went through: CANCELLED if it is an interrupt, else FAILED.

    A run that was waiting for answers when it was stopped (Ctrl-C, a shutdown) still waits:
    it stays WAITING, to be answered and resumed later.
    """
    stopping = (KeyboardInterrupt, SystemExit, run._cancelled_exc)
    if waiting_in(error) is not None:
        # A workflow run as a step of another stopped at a question of the outer run's task.
        _suspend(run)
        return
    if isinstance(error, BaseExceptionGroup):
        cancelled = error.split(stopping)[1] is None
    else:
        cancelled = isinstance(error, stopping)
    run.current_task = None
    run.finished_at = time.time()
    if cancelled and _settled(run):
        _suspend(run)
    elif cancelled:
        run.status = TaskStatus.CANCELLED
        run.emit(ev.WORKFLOW_CANCELLED, status="cancelled")
    else:
        run.status = TaskStatus.FAILED
        run.emit(ev.WORKFLOW_FAILED, status="failed", error=_describe(_task_failure(error)))


def check_runnable(workflow: Workflow) -> list[Workflow]:
    """Programming errors found before anything runs: no steps, a task without an agent.

    Returns the workflows used as agents (or fallbacks) by its tasks, to be checked in turn.
    """
    if not workflow.steps:
        raise ConfigurationError(
            f"workflow '{workflow.name}' has no steps: pass steps=[Task(name=..., agent=...), ...]"
        )
    nested: list[Workflow] = []
    for step in workflow.steps:
        for task in (step.branches if isinstance(step, ConditionalTask) else [step]):
            agent = task.agent
            if agent is None:
                raise ConfigurationError(
                    f"task '{task.name}' in workflow '{workflow.name}' has no agent: "
                    f"give it one, e.g. Task(name={task.name!r}, agent=my_function)"
                )
            if type(agent) is WorkflowAgent:
                nested.append(agent.workflow)
            elif isinstance(agent, InstructionAgent):
                agent.resolve_model()  # no model configured: refused now, before any agent runs
            fallback = task.fallback_agent
            if fallback is not None and type(fallback) is WorkflowAgent:
                nested.append(fallback.workflow)
            elif isinstance(fallback, InstructionAgent):
                fallback.resolve_model()
    return nested


async def execute(run: WorkflowRun, pattern: Any,
                  before_end: Callable[[TaskStatus], Any] | None = None) -> WorkflowResult:
    """Run ``pattern`` over ``run`` and turn its outcome into a WorkflowResult (failures included).

    While it runs, ``current_run()`` is ``run`` for everything the pattern and its agents call.
    ``before_end(status)`` is called (and awaited, if it returns an awaitable) once the outcome
    is known, before the run's last event (the circuit breaker announces what the outcome
    changed inside the run).
    """
    token = _current_run.set(run)
    step = _step_of.set(None)
    try:
        return await _execute(run, pattern, before_end)
    finally:
        _step_of.reset(step)
        _current_run.reset(token)
        if run.tool_scope is not None:
            await run.tool_scope.aclose()


set_run_lookup(current_run)


async def _execute(run: WorkflowRun, pattern: Any,
                   before_end: Callable[[TaskStatus], Any] | None) -> WorkflowResult:
    run.status = _RUNNING
    if run._on_task_complete is not None:
        # The last after-task hook, so a completed task is checkpointed before user code runs;
        # a hook rather than a call in _task_done so that an async callback is awaited.
        run.after_task.append(run._completed_callback)
    run.emit(ev.WORKFLOW_STARTED, status="running", input=run.input)
    output: Any = None
    exc: BaseException | None = None
    try:
        output = await pattern.execute(run)
        status = _COMPLETED
    except run._cancelled_exc:
        if _settled(run):  # stopped while it waited for answers: it still waits
            _suspend(run)
            raise
        run.status = TaskStatus.CANCELLED
        run.finished_at = time.time()
        run.emit(ev.WORKFLOW_CANCELLED, status="cancelled")
        raise
    except Exception as error:  # the run failed: returned as a result, not raised
        exc = _task_failure(error)
        status = TaskStatus.FAILED
    except BaseException as error:  # KeyboardInterrupt, SystemExit, ...: recorded, then raised
        _stopped(run, error)
        raise
    run.status = status
    run.current_task = None
    run.finished_at = time.time()
    result = run.result(output, status, exc)
    if before_end is not None:
        ended = before_end(status)
        if ended is not None:  # a coroutine: a breaker shared through a store records the outcome there
            await ended
    if status is _COMPLETED:
        run.emit(ev.WORKFLOW_COMPLETED, status="completed", output=output,
                 duration=result.duration)
    else:
        run.emit(ev.WORKFLOW_FAILED, status="failed", error=result.error, duration=result.duration)
    return result
