"""The running side of an orchestrator: record, start, bound, resume and drain triggered runs.

Triggers (cron schedules, event subscriptions, webhook servers) never run a workflow
themselves: they call :meth:`TriggerHost.submit`, which with a store records the run
(``Store.create_run``, status ``pending``, the input in its payload) before it starts, so
an accepted request or a fired tick survives a crash, and a run id that is already recorded
(a replayed idempotency key, a tick another process fired) starts nothing. Runs then wait
for one of ``max_running`` slots; triggered runs are checkpointed to the store so the next
start resumes them. With a store that is a run queue, recorded runs wait in the store and
are taken off it by whichever replica sharing the store has a free slot (see
:mod:`pyagent.serving.queue`). A run that waits for people (``ctx.interrupt``) gives its slot back: with
a store its execution ends and the host continues it once it is answered (see
:mod:`pyagent.serving.waiting`); without one it waits in memory.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

import pyagent.serving.records as records
from pyagent.durability.ownership import LeaseKeeper, kept_by
from pyagent.durability.store import supports_queue
from pyagent.durability.stores import close_store
from pyagent.errors import ConfigurationError, NotAcceptingError, PyAgentError, RunOwnedError
from pyagent.model import events as ev
from pyagent.model.events import Event
from pyagent.serving.waiting import WaitingRuns

if TYPE_CHECKING:
    from anyio.abc import TaskGroup, TaskStatus

    from pyagent.clock import Clock
    from pyagent.controller import Orchestrator
    from pyagent.durability.store import Claim, Store
    from pyagent.model.interrupts import Interrupt
    from pyagent.model.results import WorkflowResult
    from pyagent.serving.queue import Dispatcher
    from pyagent.serving.web import WebApp, WebApps
    from pyagent.workflow import Workflow

log = logging.getLogger("pyagent.serve")

#: Finished runs whose status is answered from memory (``run_status``), newest kept.
RECENT = 10_000

OnFinish = Callable[[str, "WorkflowResult | None"], Any]


@dataclass(frozen=True)
class Submission:
    """What :meth:`TriggerHost.submit` did: ``created`` is False when ``run_id`` was already
    recorded (a replayed idempotency key, a tick fired before), and then nothing started."""

    run_id: str
    created: bool


@dataclass
class HostedRun:
    """A run this host knows of: accepted and not started yet (``_queued``), or executing
    here (``_running``, with the scope that stops it)."""

    workflow: str
    on_finish: OnFinish | None = None
    origin: dict[str, Any] | None = None
    queued_at: float = 0.0
    started: bool = False  # claimed or started here (no longer only waiting in the store)
    scope: anyio.CancelScope | None = None  # made when it starts executing


class TriggerHost:
    """Serves an orchestrator's triggers and runs what they start; see the module docstring.

    Trigger plugins get one in ``serve(host)``. It is also ``orchestrator.host`` while the
    orchestrator serves (None otherwise).
    """

    def __init__(self, orchestrator: Orchestrator, *, store: str | None = None,
                 http_host: str = "127.0.0.1", http_port: int | None = 8000, grace: float = 30.0,
                 max_running: int = 100, web_token: str | None = None, poll_interval: float = 0.5) -> None:
        if not isinstance(grace, (int, float)) or isinstance(grace, bool) or grace < 0:
            raise ConfigurationError(f"grace={grace!r}: give the seconds in-flight runs may take to finish (>= 0)")
        if not isinstance(max_running, int) or isinstance(max_running, bool) or max_running < 1:
            raise ConfigurationError(f"max_running={max_running!r}: give how many runs may run at once (>= 1)")
        if not isinstance(poll_interval, (int, float)) or isinstance(poll_interval, bool) or poll_interval <= 0:
            raise ConfigurationError(f"poll_interval={poll_interval!r}: give the seconds between two looks at the "
                                     "store's queue (> 0, e.g. 0.5)")
        self.orchestrator = orchestrator
        self.store = store
        self.http_host = http_host
        self.http_port = http_port
        self.grace = float(grace)
        self.max_running = max_running
        #: Seconds between two looks at a queue store for runs to take (other replicas', orphans).
        self.poll_interval = float(poll_interval)
        self.accepting = False
        #: What is served where, e.g. the webhook server's base URL (filled in by servers).
        self.urls: list[str] = []
        #: What web apps served with the triggers (the dashboard) ask of every request, if set.
        self.web_token = web_token or None
        #: The plugins' web apps mounted in the HTTP server while serving (``pyagent_register_web_apps``).
        self.web_apps: list[WebApp] = []
        self._web: WebApps | None = None
        self.token: Any = None
        self._thread: int | None = None
        self._store: Store | None = None
        self._tg: TaskGroup | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._queued: dict[str, HostedRun] = {}  # accepted here (or claimed), not executing yet
        self._running: dict[str, HostedRun] = {}  # executing here
        self._queue: Dispatcher | None = None  # with a store that is a run queue
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()  # run ids submitted here (no store)
        self._trigger_scopes: dict[int, anyio.CancelScope] = {}
        self._server_scopes: dict[str, anyio.CancelScope] = {}
        self._draining = False
        self._stop: anyio.Event | None = None
        self._changed: anyio.Event | None = None
        self._grace_scope: anyio.CancelScope | None = None
        self._answers = WaitingRuns(self)
        self._keeper: LeaseKeeper | None = None  # renews the leases of the runs executing here

    # -- what triggers use ------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The runtime clock (a ManualClock in tests): schedules wait on it."""
        from pyagent.plugins import get_runtime

        return get_runtime().clock

    @property
    def waiting(self) -> int:
        """Runs accepted (recorded) here and waiting for a slot to start (with a queue store:
        until some replica takes them)."""
        return len(self._queued)

    @property
    def in_flight(self) -> int:
        """Runs executing now."""
        return len(self._running)

    @property
    def waiting_for_answers(self) -> int:
        """Runs waiting for people that this host continues once they are answered."""
        return len(self._answers)

    def triggers(self, kind: str) -> list[Any]:
        """The orchestrator's triggers of one kind (``"webhook"``, ``"cron"``, ...), live."""
        orch = self.orchestrator
        return [t for t in orch.triggers if orch.trigger_kind(t) == kind]

    async def submit(self, workflow: Workflow, input: Any = None, *, run_id: str | None = None,
                     trigger: str, source: str, on_finish: OnFinish | None = None,
                     data: dict[str, Any] | None = None) -> Submission:
        """Record (with a store) and start a run of ``workflow``; returns at once, the run goes on.

        With a store the run is recorded before this returns, so it is never lost. A
        ``run_id`` that is already recorded starts nothing (``created`` is False).
        ``on_finish(run_id, result)`` is called when the run ends (``result`` None if it was
        suspended or could not start). Raises NotAcceptingError while shutting down.
        """
        from pyagent.engine.run import new_run_id

        if not self.accepting:
            raise NotAcceptingError("the orchestrator is shutting down and starts no new runs")
        run_id = run_id or new_run_id()
        origin = {"kind": trigger, "source": source}
        if self._queue is not None and workflow.name not in self.orchestrator.workflows:
            # Replicas take off the queue the runs of the workflows they serve (by name): this
            # one too, from now on, or its runs would stay queued with nobody to take them.
            self.orchestrator.add_workflow(workflow)
        if self._store is not None:
            header = records.pending_header(workflow, run_id, input, trigger=trigger, source=source)
            if not await self._store.create_run(header):
                return Submission(run_id, False)
            if self._queue is not None:  # queued in the store: whichever replica has a slot takes it
                self._queued[run_id] = HostedRun(workflow.name, on_finish, origin, queued_at=header.started_at)
                self._queue.wake()
                self.announce(ev.TRIGGER_FIRED, workflow.name, run_id, trigger=trigger, source=source,
                              **(data or {}))
                return Submission(run_id, True)
        else:
            if run_id in self._seen:
                return Submission(run_id, False)
            self._remember(self._seen, run_id, None)
        if not self.accepting:  # shut down while recording: recorded, so the next start runs it
            raise NotAcceptingError("the orchestrator is shutting down and starts no new runs")
        self._start(workflow, run_id, input, resume=False, on_finish=on_finish, origin=origin)
        self.announce(ev.TRIGGER_FIRED, workflow.name, run_id, trigger=trigger, source=source, **(data or {}))
        return Submission(run_id, True)

    def resume(self, workflow: Workflow, run_id: str, *, on_finish: OnFinish | None = None) -> None:
        """Resume run ``run_id`` of ``workflow`` from the host's store, in the background, as one
        of the host's runs: it waits for a slot, and at shutdown it is checkpointed and resumed on
        the next start like the others. It keeps the trigger it first started with.

        ``on_finish(run_id, result)`` as for :meth:`submit` (``result`` None when it could not
        go on: another process owns it, or its checkpoints cannot be read; the log says why).
        Raises NotAcceptingError while shutting down, ConfigurationError without a store.
        """
        if not self.accepting:
            raise NotAcceptingError("the orchestrator is shutting down and resumes no runs")
        if self._store is None:
            raise ConfigurationError("resuming a run needs the store it is recorded in: serve with a store")
        if run_id in self._queued or run_id in self._running:
            raise ConfigurationError(f"run {run_id!r} is already going on here")
        self._start(workflow, run_id, None, resume=True, on_finish=on_finish)

    async def record_skipped(self, workflow: Workflow, run_id: str, *, at: float, reason: str,
                             trigger: str, source: str, data: dict[str, Any] | None = None) -> bool:
        """Record that run ``run_id`` (a cron tick) was not run and why; False if it was
        recorded before. Announced as a ``trigger.skipped`` event either way it is new."""
        if self._store is not None:
            header = records.skipped_header(workflow, run_id, at=at, reason=reason, trigger=trigger, source=source)
            if not await self._store.create_run(header):
                return False
        else:
            if run_id in self._seen:
                return False
            self._remember(self._seen, run_id, None)
        self.announce(ev.TRIGGER_SKIPPED, workflow.name, run_id, trigger=trigger, source=source,
                      reason=reason, **(data or {}))
        return True

    async def recorded(self, run_id: str) -> bool:
        """Whether ``run_id`` is recorded (in the store, or submitted in this process without one)."""
        if self._store is not None:
            return await self._store.load(run_id) is not None
        return run_id in self._seen

    async def recorded_runs(self, workflow: str) -> list[str]:
        """The run ids the store holds for ``workflow`` (none without a store): a cron schedule
        finds its last tick there when it starts."""
        if self._store is None:
            return []
        return [h.run_id for h in await self._store.list_runs(workflow=workflow)]

    def announce(self, kind: str, workflow: str, run_id: str = "", **data: Any) -> None:
        """Deliver a trigger event to every monitor (plugins' and the orchestrator's)."""
        from pyagent.plugins import get_runtime

        runtime = get_runtime()
        if not self.orchestrator._listeners and not runtime.monitor_hooks():
            return  # nobody listens: no event to build (one per accepted request otherwise)
        runtime.broadcast(Event(kind, workflow=workflow, run_id=run_id, data=data),
                          extra=self.orchestrator._listeners)

    def start_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the host's task group (call from the event loop's thread)."""
        if self._tg is None:
            raise NotAcceptingError("the orchestrator is not serving")
        self._tg.start_soon(fn, *args)

    def in_loop_thread(self) -> bool:
        return self._thread == threading.get_ident()

    # -- questions for people ------------------------------------------------------------------

    def _question_store(self) -> Store:
        from pyagent.durability.interrupts import local_url
        from pyagent.plugins import get_runtime

        if self._store is not None:
            return self._store
        runtime = get_runtime()
        store: Store = runtime.driver("stores", "memory")(local_url(runtime))
        return store

    def _where(self) -> str:
        from pyagent.durability.stores import safe_url

        return "this process" if self._store is None else safe_url(self.store or "")

    async def question(self, run_id: str, interrupt_id: str) -> Interrupt | None:
        """Question ``interrupt_id`` of run ``run_id`` (answered or not), or None if the run has no such question."""
        from pyagent.durability.interrupts import decode

        row = await self._question_store().get_interrupt(interrupt_id)
        if row is None or row.run_id != run_id:
            return None
        return decode(row, self._where())

    async def questions(self, run_id: str) -> list[Interrupt]:
        """The open questions of run ``run_id``."""
        from pyagent.durability.interrupts import list_questions, supports_interrupts

        store = self._question_store()
        if not supports_interrupts(store):
            return []
        return await list_questions(store, run_id=run_id, where=self._where())

    async def answer(self, run_id: str, interrupt_id: str, value: Any, *, answered_by: str | None = None) -> Interrupt:
        """Record an answer (refused as ``orchestrator.resume`` refuses one: unknown id, answered
        already, schema mismatch) and continue the run: it is in the store when this returns,
        and the run goes on within a poll interval."""
        from pyagent.durability.interrupts import record_answer

        answered = await record_answer(self._question_store(), run_id, interrupt_id, value,
                                       answered_by=answered_by, clock=self.clock, where=self._where())
        self.wake(run_id)
        return answered

    def wake(self, run_id: str | None = None) -> None:
        """An answer was recorded: look for runs to continue now rather than at the next poll."""
        self._answers.wake()

    async def run_status(self, run_id: str) -> dict[str, Any] | None:
        """Status of a run as JSON-able data (status, tasks completed/total, output, error), or None.

        A run that waits for people lists the questions it waits on under ``interrupts``
        (id, task, question, schema, asked_at, deadline, metadata): what an answer names.
        """
        found = await self._run_status(run_id)
        if found is not None and found.get("status") == "waiting":
            try:
                asked = await self.questions(run_id)
            except Exception as exc:
                log.warning("reading the questions of run %s failed: %s", run_id, exc)
                asked = []
            found = {**found, "interrupts": [
                {"id": q.id, "task": q.task, "question": q.question, "schema": q.schema, "asked_at": q.asked_at,
                 "deadline": q.deadline, "metadata": q.metadata} for q in asked]}
        return found

    async def _run_status(self, run_id: str) -> dict[str, Any] | None:
        done = self._recent.get(run_id)
        if done is not None:
            if self._queue is None or done.get("status") == "completed" or self._store is None:
                return done
            # Ended here, but a replica may have resumed (or continued) it since: the store says.
            stored = await _stored_status(self._store, self.store or "", run_id)
            if stored is None or stored.get("status") == done.get("status"):
                return done
            self._recent.pop(run_id, None)
            return stored
        queued = self._queued.get(run_id)
        if queued is not None:
            wf = self.orchestrator.workflows.get(queued.workflow)
            return _status(run_id, queued.workflow, "pending", 0, wf.task_count if wf else 0)
        for wf in self.orchestrator.workflows.values():
            for run in list(wf._active):
                if run.run_id == run_id:
                    completed = sum(1 for r in run.records.values() if r.status.value == "completed")
                    return _status(run_id, wf.name, run.status.value, completed, wf.task_count,
                                   started_at=run.started_at)
        running = self._running.get(run_id)
        if running is not None:
            name = running.workflow
            # Its run has just ended and its result is being recorded here: the store may already
            # say how it ended, but not with its output. Still running, for a moment more.
            wf = self.orchestrator.workflows.get(name)
            return _status(run_id, name, "running", 0, wf.task_count if wf else 0)
        if self._store is not None:
            return await _stored_status(self._store, self.store or "", run_id)
        return None

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``serve()`` to shut down (from the event loop's thread); a second call skips the grace."""
        if self._stop is None:
            return
        if self._stop.is_set():
            self.grace = 0.0
            if self._grace_scope is not None:
                self._grace_scope.cancel()
        self._stop.set()

    async def wait_stopped(self) -> None:
        """Wait until :meth:`stop` is called."""
        assert self._stop is not None, "wait_stopped() is for a running host"
        await self._stop.wait()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TriggerHost]:
        """Serve until the block exits, then drain: what ``orchestrator.serving()`` does."""
        from pyagent.durability.stores import _close, open_store

        if self.orchestrator._host is not None:
            raise ConfigurationError("this orchestrator is already serving: serve it once per process")
        self._limiter = anyio.CapacityLimiter(self.max_running)
        self._stop = anyio.Event()
        self._changed = anyio.Event()
        self._thread = threading.get_ident()
        self.token = anyio.lowlevel.current_token()
        if self.store is not None:
            self._store = await open_store(self.store, setting="store")
            if not callable(getattr(self._store, "create_run", None)):
                await _close(self._store)
                raise ConfigurationError(
                    f"the store {self.store!r} has no create_run(): serving needs a store that records a "
                    "run atomically before it starts (upgrade its plugin, or serve without a store)")
        if self._store is not None and supports_queue(self._store):
            from pyagent.serving.queue import Dispatcher

            self._queue = Dispatcher(self, self._store, self.poll_interval)
        self.orchestrator._host = self
        try:
            async with one_error(), anyio.create_task_group() as tg:
                self._tg = tg
                self.accepting = True
                try:
                    if self._store is not None:
                        self._keeper = LeaseKeeper()
                        await tg.start(self._keeper.run)
                        await self._recover()
                        tg.start_soon(self._answers.watch)
                    if self._queue is not None:
                        tg.start_soon(self._queue.run)
                        tg.start_soon(self._queue.watch)
                    if self.http_port is not None:
                        await self._start_web_apps(tg)
                    for trigger in list(self.orchestrator.triggers):
                        await self.attach(trigger)
                    await self._serve_http()
                    self._log_served()
                    yield self
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._drain()
                        if self._web is not None:
                            await self._web.stop()
                    tg.cancel_scope.cancel()
        finally:
            self.accepting = False
            self._tg = None
            self._web = None
            self.web_apps = []
            self.orchestrator._host = None
            self._queue = None
            self._keeper = None
            if self._store is not None:
                with anyio.CancelScope(shield=True):
                    await _close(self._store)
                self._store = None

    async def attach(self, trigger: Any) -> None:
        """Start serving one trigger: its kind's shared server, or its own ``serve(host)``."""
        from pyagent.plugins import get_runtime

        kind = self.orchestrator._trigger_kinds.get(id(trigger), "")
        reg = get_runtime().registry("triggers").get(kind)
        shared = reg.options.get("serve") if reg is not None else None
        assert self._tg is not None
        if shared is not None:
            if kind not in self._server_scopes:
                self._server_scopes[kind] = anyio.CancelScope()
                await self._tg.start(self._run_server, kind, shared)
            return
        if callable(getattr(trigger, "serve", None)) and id(trigger) not in self._trigger_scopes:
            scope = self._trigger_scopes[id(trigger)] = anyio.CancelScope()
            self._tg.start_soon(self._run_trigger, trigger, scope)

    @staticmethod
    def _http_kinds() -> dict[str, Callable[..., Any]]:
        """Trigger kinds whose shared server serves HTTP (``http=True``): their serve functions."""
        from pyagent.plugins import get_runtime

        regs = get_runtime().registry("triggers")
        return {k: r.options["serve"] for k, r in regs.items()
                if r.options.get("http") and callable(r.options.get("serve"))}

    async def _start_web_apps(self, tg: TaskGroup) -> None:
        from pyagent.plugins import get_runtime
        from pyagent.serving.web import WebApps

        registered = get_runtime().registry("web_apps")
        if not registered:
            return
        if not self._http_kinds():
            log.warning("web apps at %s are not served: no installed plugin serves HTTP "
                        "(install pyagent-webhooks)", ", ".join(sorted(registered)))
            return
        self._web = WebApps()
        await self._web.start(self, tg)
        self.web_apps = self._web.apps

    async def _serve_http(self) -> None:
        """Open the HTTP server for the web apps when no trigger opened it (no webhooks).

        The server is the shared server of a trigger kind registered with ``http=True``. Web
        apps are extras: when they cannot be served (the port is taken, not asyncio) that is
        logged, and the triggers are served all the same.
        """
        if not self.web_apps or self.http_port is None:
            return
        kinds = self._http_kinds()
        if not kinds or any(k in self._server_scopes for k in kinds):
            return
        paths = ", ".join(w.path for w in self.web_apps)
        kind = next(iter(kinds))
        self._server_scopes[kind] = anyio.CancelScope()
        assert self._tg is not None
        try:
            await self._tg.start(self._run_server, kind, kinds[kind])
        except Exception as exc:
            self._server_scopes.pop(kind, None)
            log.error("web apps at %s are not served: %s", paths, exc)

    def detach(self, trigger: Any) -> None:
        """Stop serving one trigger (it was removed)."""
        scope = self._trigger_scopes.pop(id(trigger), None)
        if scope is not None:
            scope.cancel()

    async def _run_server(self, kind: str, serve: Callable[..., Any], *,
                          task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with self._server_scopes[kind]:
            await serve(self, task_status=task_status)

    async def _run_trigger(self, trigger: Any, scope: anyio.CancelScope) -> None:
        with scope:
            try:
                await trigger.serve(self)
            except Exception:
                log.exception("trigger %r stopped on an error; the others go on", trigger)
        self._trigger_scopes.pop(id(trigger), None)

    def _log_served(self) -> None:
        orch = self.orchestrator
        kinds = orch._trigger_kinds
        for trigger in orch.triggers:
            log.info("serving %s trigger %s", kinds.get(id(trigger), "?"), _describe(trigger))
        if not orch.triggers:
            log.info("serving no triggers (add schedules, on_event or on_webhook to the orchestrator)")
        if self.store is not None:
            from pyagent.durability.stores import safe_url

            log.info("runs are recorded in %s%s", safe_url(self.store),
                     f" and taken off its queue, {self.max_running} at a time" if self._queue is not None else "")
        else:
            log.info("no store: runs are not recorded, and runs in flight at shutdown are lost")

    # -- runs ----------------------------------------------------------------------------------

    def _start(self, workflow: Workflow, run_id: str, input: Any, *, resume: bool,
               on_finish: OnFinish | None = None, origin: dict[str, Any] | None = None,
               answered: bool = False) -> None:
        """Start a run in the background once a slot is free (``answered``: a waiting run to continue)."""
        assert self._tg is not None
        entry = self._queued[run_id] = HostedRun(workflow.name, on_finish, origin, started=True)
        self._recent.pop(run_id, None)  # a waiting run continued: no longer what it was
        self._answers.untrack(run_id)

        async def body() -> WorkflowResult | None:
            if answered:
                return await self._continue_answered(workflow, run_id)
            return await self._run(workflow, run_id, input, resume, origin)

        self._tg.start_soon(self._execute, workflow, run_id, entry, body, None)

    def start_claim(self, workflow: Workflow, claim: Claim, ticket: object) -> None:
        """Start a run the dispatcher took off the queue, in the slot ``ticket`` reserved."""
        assert self._tg is not None
        run_id = claim.header.run_id
        entry = self._queued.get(run_id) or HostedRun(workflow.name)  # submitted here: keeps its on_finish
        entry.started = True
        self._queued[run_id] = entry
        self._recent.pop(run_id, None)
        self._answers.untrack(run_id)
        self._tg.start_soon(self._execute, workflow, run_id, entry, lambda: self._run_claim(workflow, claim), ticket)

    def reserve_slots(self, most: int | None = None) -> list[object]:
        """Take every free slot (at most ``most``) for runs about to be claimed: one ticket each."""
        assert self._limiter is not None
        tickets: list[object] = []
        while self._limiter.available_tokens >= 1 and (most is None or len(tickets) < most):
            ticket = object()
            self._limiter.acquire_on_behalf_of_nowait(ticket)
            tickets.append(ticket)
        return tickets

    def free_slots(self, tickets: list[object]) -> None:
        assert self._limiter is not None
        for ticket in tickets:
            self._limiter.release_on_behalf_of(ticket)

    async def _execute(self, workflow: Workflow, run_id: str, entry: HostedRun,
                       body: Callable[[], Any], ticket: object | None) -> None:
        result: WorkflowResult | None = None
        limiter = self._limiter
        assert limiter is not None
        try:
            # One of max_running slots: reserved already (ticket), or waited for here.
            if ticket is None:
                await limiter.acquire()
            try:
                if self._draining and ticket is None:
                    return  # recorded as pending (with a store): the next start runs it
                if self._queued.get(run_id) is entry:
                    del self._queued[run_id]
                entry.scope = scope = anyio.CancelScope()
                self._running[run_id] = entry
                try:
                    with scope, kept_by(self._keeper):
                        try:
                            result = await body()
                        except RunOwnedError as exc:
                            # Continued by another process (a replica, a pyagent resume) first.
                            log.info("run %s of %r is held by another process, which continues it: %s",
                                     run_id, workflow.name, exc)
                        except Exception as exc:  # refused before any agent ran, or the store failed
                            log.error("run %s of %r could not start: %s", run_id, workflow.name, exc,
                                      exc_info=not isinstance(exc, PyAgentError))
                            try:
                                await self._record_failure(workflow, run_id, exc, entry.origin)
                            except Exception as again:
                                log.error("recording that run %s failed did not work either: %s", run_id, again)
                    if scope.cancelled_caught:
                        with anyio.CancelScope(shield=True):
                            await self._suspended(workflow, run_id)
                finally:
                    if result is not None:
                        self._remember(self._recent, run_id, _status_of(result, workflow.task_count))
                        if result.status.value == "waiting" and self._store is not None:
                            self._answers.track(run_id, workflow.name, list(result.interrupts))
                    del self._running[run_id]
                    assert self._changed is not None
                    self._changed.set()
                    if self._queue is not None:
                        self._queue.wake()  # a slot is free
            finally:
                if ticket is None:
                    limiter.release()
                else:
                    limiter.release_on_behalf_of(ticket)
        finally:
            if self._queued.get(run_id) is entry:
                del self._queued[run_id]
            self.finished(run_id, result, entry.on_finish)

    def finished(self, run_id: str, result: WorkflowResult | None, on_finish: OnFinish | None) -> None:
        """Call a run's ``on_finish`` (its failure is logged, never raised)."""
        if on_finish is None:
            return
        try:
            on_finish(run_id, result)
        except Exception:
            log.exception("on_finish callback of run %s failed", run_id)

    async def _run(self, workflow: Workflow, run_id: str, input: Any, resume: bool,
                   origin: dict[str, Any] | None = None) -> WorkflowResult:
        from pyagent.runner import resume_run, run_workflow

        listeners = self.orchestrator._listeners
        # With a store a run that waits for people ends its execution here (its slot and lease
        # are given back) and is continued once answered; without one it can only wait here.
        hold = self.store is None
        if resume:
            assert self.store is not None
            # The saved state knows how the run first started: that stays its trigger.
            return await resume_run(workflow, run_id, self.store, listeners=listeners, wait_for_answers=hold)
        # A run recorded by create_run has no checkpoint yet: its first one is seq 0 (saves a read).
        return await run_workflow(workflow, input, run_id=run_id, listeners=listeners,
                                  checkpoint_url=self.store, next_seq=0 if self.store is not None else None,
                                  wait_for_answers=hold, trigger=origin)

    async def _run_claim(self, workflow: Workflow, claim: Claim) -> WorkflowResult | None:
        """Run a claim from the queue under its lease: resumed from its checkpoints when it has
        some (an orphan, a run suspended at a shutdown), else started with its recorded input."""
        from pyagent.durability.stores import safe_url
        from pyagent.runner import resume_run, run_workflow

        store, url = self._store, self.store
        assert store is not None and url is not None
        run_id, lease = claim.header.run_id, claim.lease
        listeners = self.orchestrator._listeners
        what = f"run {run_id!r} in {safe_url(url)}"
        try:
            if self._draining:  # claimed as the shutdown began: give it back to the others at once
                await store.release_run(run_id, lease.token)
                return None
            stored = await store.load(run_id)
            if stored is not None and stored.checkpoints:
                log.info("resuming run %s of %r (left %s)", run_id, workflow.name, claim.header.status)
                return await resume_run(workflow, run_id, url, lease=lease, listeners=listeners,
                                        wait_for_answers=False)
            header = claim.header if stored is None else stored.header
            found, value, origin = records.queued_run(header, what)
        except BaseException:  # given back (a no-op when resume_run gave it back already)
            with anyio.CancelScope(shield=True):
                await store.release_run(run_id, lease.token)
            raise
        if not found:
            why = (f"{what} was left {header.status} with no checkpoint and no recorded input: "
                   "its process stopped before the run's first checkpoint, so it cannot be resumed")
            log.warning("%s", why)
            await store.save_run(records.failed_header(workflow, run_id, why, at=header.started_at),
                                 fence=lease.token)
            await store.release_run(run_id, lease.token)
            return None
        return await run_workflow(workflow, value, run_id=run_id, listeners=listeners, checkpoint_url=url,
                                  next_seq=0, wait_for_answers=False, trigger=origin, lease=lease)

    async def _continue_answered(self, workflow: Workflow, run_id: str) -> WorkflowResult | None:
        """Continue a waiting run that was answered: claimed first, so of several replicas that saw
        the answer exactly one goes on, and only if it still waits (not ended or cancelled since)."""
        from pyagent.durability.ownership import LeaseSettings
        from pyagent.model.tasks import TaskStatus
        from pyagent.runner import abandon, claim_stored_run, resume_state

        assert self.store is not None
        state, claimed = await claim_stored_run(self.store, run_id,
                                                settings=LeaseSettings.of(workflow.checkpointing))
        try:
            reason = None
            queue = claimed.store if supports_queue(claimed.store) else None
            if queue is not None:
                reason = (await queue.cancel_requests([run_id])).get(run_id)
        except BaseException:
            await abandon(claimed)
            raise
        if reason is not None or state.status is not TaskStatus.WAITING or state.workflow != workflow.name:
            store = claimed.store
            await claimed.ownership.release()
            try:
                if queue is not None and reason is not None:  # asked to cancel while it waited: it ends so
                    await queue.request_cancel(run_id, reason=reason, now=self.clock.time())
                    log.info("run %s of %r was cancelled while it waited (%s)", run_id, workflow.name, reason)
                else:
                    log.info("run %s of %r no longer waits (%s): another process continued it",
                             run_id, workflow.name, state.status.value)
            finally:
                await close_store(store)
            return None
        return await resume_state(workflow, state, checkpoint_url=self.store, claimed=claimed,
                                  listeners=self.orchestrator._listeners, wait_for_answers=False)

    async def _record_failure(self, workflow: Workflow, run_id: str, exc: BaseException,
                              origin: dict[str, Any] | None = None) -> None:
        if self._store is None:
            return
        stored = await self._store.load(run_id)
        # With a queue a run left "running" would be taken again and again: it failed.
        statuses = (records.PENDING, "running") if self._queue is not None else (records.PENDING,)
        if stored is not None and stored.header.status in statuses:
            lease = await self._store.get_lease(run_id)
            if lease is not None and not lease.expired(self.clock.time()):
                return  # held by someone else now (refused because another process runs it)
            await self._store.save_run(records.failed_header(
                workflow, run_id, f"{type(exc).__name__}: {exc}", at=stored.header.started_at, trigger=origin))

    async def _suspended(self, workflow: Workflow, run_id: str) -> None:
        """A run stopped at shutdown: with a store, mark it pending so the next start (or another
        replica, at once) resumes it."""
        if self._store is None:
            log.warning("run %s of %r was cancelled at shutdown; without a store it cannot resume",
                        run_id, workflow.name)
            return
        stored = await self._store.load(run_id)
        if stored is None:
            return
        if stored.header.status in ("cancelled", "running"):
            await self._store.save_run(records.with_status(stored.header, records.PENDING))
        if self._queue is not None:
            queue = self._queue.store
            asked = (await queue.cancel_requests([run_id])).get(run_id)
            if asked is not None:  # a cancel came as it stopped: nobody may take it again
                await queue.request_cancel(run_id, reason=asked, now=self.clock.time())
                return
            log.info("run %s of %r checkpointed at shutdown: another replica or the next start resumes it",
                     run_id, workflow.name)
            return
        log.info("run %s of %r checkpointed at shutdown: it resumes on the next start", run_id, workflow.name)

    async def _recover(self) -> None:
        """Start the runs a stopped or dead serve process left: pending ones and running ones.

        With a queue store the dispatcher takes them (after their lease expired); only the
        runs a dead process of this machine held are claimed here at once.
        """
        from pyagent.durability.stores import safe_url

        assert self._store is not None
        if self._queue is not None:
            await self._queue.take_over_dead()
            await self._answers.adopt_stored()
            return
        workflows = self.orchestrator.workflows
        left = [h for status in ("running", records.PENDING)
                for h in await self._store.list_runs(status=status) if h.workflow in workflows]
        for header in sorted(left, key=lambda h: h.started_at):
            wf = workflows[header.workflow]
            stored = await self._store.load(header.run_id)
            if stored is None:
                continue
            if stored.checkpoints:
                log.info("resuming run %s of %r (left %s)", header.run_id, wf.name, header.status)
                self._start(wf, header.run_id, None, resume=True)
                continue
            what = f"run {header.run_id!r} in {safe_url(self.store or '')}"
            try:
                found, value, origin = records.queued_run(header, what)
            except PyAgentError as exc:
                log.error("%s cannot be started: %s", what, exc)
                continue
            if found:
                log.info("starting run %s of %r (recorded, never started)", header.run_id, wf.name)
                self._start(wf, header.run_id, value, resume=False, origin=origin)
            else:
                log.warning("%s was left %s with no checkpoint and no recorded input: it cannot be "
                            "resumed", what, header.status)
        await self._answers.adopt_stored()

    async def _drain(self) -> None:
        self.accepting = False
        self._draining = True
        for scope in list(self._trigger_scopes.values()):
            scope.cancel()
        if self._queue is not None:
            await self._queue.drop_queued()
        if self._running:
            log.info("shutting down: waiting up to %gs for %d run(s) in flight", self.grace, len(self._running))
        with anyio.CancelScope() as self._grace_scope:
            if self.grace > 0:
                with anyio.move_on_after(self.grace):
                    await self._until_idle()
        if self._running:
            log.warning("checkpointing %d run(s) still in flight; %s", len(self._running),
                        "other replicas or the next start resume them" if self._queue is not None
                        else "they resume on the next start")
            for entry in list(self._running.values()):
                if entry.scope is not None:
                    entry.scope.cancel()
            with anyio.move_on_after(60):
                await self._until_idle()
        if self._queued:
            if self._store is not None:
                log.info("%d accepted run(s) not started yet: they start on the next start", len(self._queued))
            else:
                log.warning("%d accepted run(s) not started are dropped: serve with a store to keep them",
                            len(self._queued))
        for scope in list(self._server_scopes.values()):
            scope.cancel()
        self._server_scopes.clear()

    async def _until_idle(self) -> None:
        while self._running:
            self._changed = anyio.Event()
            await self._changed.wait()

    @staticmethod
    def _remember(table: OrderedDict[str, Any], key: str, value: Any) -> None:
        table[key] = value
        if len(table) > RECENT:
            table.popitem(last=False)


@asynccontextmanager
async def one_error() -> AsyncIterator[None]:
    """Raise a task group's sole error as itself, not wrapped in an exception group: a port
    that is taken, or an error in the block under ``serving()``, reads as what it is."""
    try:
        yield
    except BaseExceptionGroup as group:
        errors = _leaves(group)
        if len(errors) == 1:
            raise errors[0] from None
        raise


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return [e for e in out if not isinstance(e, anyio.get_cancelled_exc_class())] or out


def _describe(trigger: Any) -> str:
    describe = getattr(trigger, "describe", None)
    if callable(describe):
        return str(describe())
    wf = getattr(trigger, "workflow", None)
    return f"{trigger!r} -> {getattr(wf, 'name', wf)!r}"


def _status(run_id: str, workflow: str, status: str, completed: int, total: int, *,
            output: Any = None, error: str | None = None, started_at: float | None = None,
            finished_at: float | None = None) -> dict[str, Any]:
    return {"run_id": run_id, "workflow": workflow, "status": status, "tasks_completed": completed,
            "tasks_total": total, "output": output, "error": error, "started_at": started_at,
            "finished_at": finished_at}


def _status_of(result: WorkflowResult, total: int) -> dict[str, Any]:
    return _status(result.run_id, result.workflow, result.status.value, result.tasks_completed, total,
                   output=result.output, error=result.error, started_at=result.started_at,
                   finished_at=result.finished_at)


async def _stored_status(store: Store, url: str, run_id: str) -> dict[str, Any] | None:
    from pyagent.durability.history import ExecutionRecord, _progress_from_checkpoints
    from pyagent.durability.stores import safe_url

    stored = await store.load(run_id)
    if stored is None:
        return None
    h = stored.header
    what = f"run {run_id!r} in {safe_url(url)}"
    try:
        rec = ExecutionRecord.from_payload(h.payload, what) if h.payload else None
    except PyAgentError:
        rec = None
    if rec is None:
        return _status(run_id, h.workflow, h.status, 0, 0, started_at=h.started_at, finished_at=h.finished_at)
    if h.status == "running":
        await _progress_from_checkpoints(store, rec, what)
    return _status(run_id, h.workflow, h.status, rec.tasks_completed, rec.tasks_total, error=rec.error,
                   started_at=h.started_at, finished_at=h.finished_at)

