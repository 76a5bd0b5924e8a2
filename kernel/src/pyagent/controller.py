"""The Orchestrator: a registry of workflows, their monitors, triggers and history."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from pyagent.errors import ConfigurationError
from pyagent.monitors import listener_of, resolve

if TYPE_CHECKING:
    from pyagent.durability.history import ExecutionRecord
    from pyagent.model.interrupts import Interrupt
    from pyagent.model.results import TaskResult, WorkflowResult
    from pyagent.serving.host import TriggerHost
    from pyagent.workflow import Workflow

_log = logging.getLogger("pyagent.serve")


class Orchestrator:
    """Manages workflows: runs them by name, delivers their events to monitors, starts triggers."""

    def __init__(self, *, monitors: Iterable[Any] = (), store: str | None = None) -> None:
        """``store``: a store URL (``sqlite://runs.db``, ``memory://``) where every run of this
        orchestrator's workflows is recorded, so ``get_history`` survives the process.
        ``monitors``: as for :meth:`set_monitors`."""
        self.workflows: dict[str, Workflow] = {}
        self.store = store
        self.monitors: list[Any] = []
        self.triggers: list[Any] = []
        #: Emitted events that no subscription names, by event name.
        self.unhandled_events: Counter[str] = Counter()
        self._trigger_kinds: dict[int, str] = {}
        self._host: TriggerHost | None = None
        self._listeners: list[Callable[[Any], Any]] = []
        self._ran: dict[int, Workflow] = {}  # workflows run through this orchestrator, for aclose()
        self.set_monitors(list(monitors))

    # -- workflows -------------------------------------------------------------------------

    def add_workflow(self, workflow: Workflow) -> Workflow:
        """Register a workflow under its name; a second workflow with the same name is an error."""
        from pyagent.workflow import Workflow

        if not isinstance(workflow, Workflow):
            raise ConfigurationError(f"add_workflow() takes a Workflow, got {type(workflow).__name__}")
        existing = self.workflows.get(workflow.name)
        if existing is not None and existing is not workflow:
            raise ConfigurationError(
                f"a different workflow named {workflow.name!r} is already added: names must be unique"
            )
        self.workflows[workflow.name] = workflow
        if self.store is not None:
            workflow._runtime_data["history_store"] = self.store
        return workflow

    def get_workflow(self, name: str | Workflow) -> Workflow:
        from pyagent.workflow import Workflow

        if isinstance(name, Workflow):
            return name
        try:
            return self.workflows[name]
        except KeyError:
            have = ", ".join(sorted(self.workflows)) or "none"
            raise ConfigurationError(
                f"no workflow named {name!r}: add it with orchestrator.add_workflow(...) (added: {have})"
            ) from None

    async def run_workflow(
        self,
        workflow: str | Workflow,
        input: Any = None,
        *,
        on_task_complete: Callable[[TaskResult], Any] | None = None,
        on_event: Callable[[Any], Any] | None = None,
        run_id: str | None = None,
        wait_for_answers: bool = True,
        trigger: dict[str, Any] | None = None,
    ) -> WorkflowResult:
        """Run a workflow by name (or object); ``on_task_complete(task_result)`` is called per completed task.

        ``wait_for_answers``: as for ``Workflow.run`` (False returns a ``waiting`` result when the
        run waits for people; continue it with :meth:`resume`). ``trigger``: how this run started,
        as history and the dashboard show it, e.g. ``{"kind": "event", "source": "order.created"}``
        (default ``{"kind": "manual"}``).
        """
        from pyagent.runner import run_workflow

        wf = self.get_workflow(workflow)
        self._ran.setdefault(id(wf), wf)
        # A workflow object that was never added is still this orchestrator's run: its store
        # records it (its history, handoffs and denials), as for an added one.
        return await run_workflow(wf, input, on_task_complete=on_task_complete, on_event=on_event,
                                  listeners=self._listeners, run_id=run_id, history_url=self.store,
                                  wait_for_answers=wait_for_answers, trigger=_trigger(trigger))

    # -- people ------------------------------------------------------------------------------

    def pending(self, workflow: str | Workflow | None = None, *, run_id: str | None = None) -> list[Interrupt]:
        """Questions runs wait to have answered, oldest first: each with ``.id``, ``.run_id``, ``.task``,
        ``.question``, ``.schema`` (the JSON schema of the answer) and ``.asked_at``.

        Looks in this process (runs without a store) and in the orchestrator's store and its
        workflows' checkpoint stores. Inside async code prefer ``await orchestrator.apending()``.
        """
        from pyagent.answering import pending_sync
        from pyagent.durability.history import workflow_name
        from pyagent.plugins import get_runtime

        return pending_sync(get_runtime(), self._question_urls(), workflow=workflow_name(workflow), run_id=run_id)

    async def apending(self, workflow: str | Workflow | None = None, *, run_id: str | None = None) -> list[Interrupt]:
        """:meth:`pending` for async code."""
        from pyagent.answering import pending_questions
        from pyagent.durability.history import workflow_name
        from pyagent.plugins import get_runtime

        return await pending_questions(get_runtime(), self._question_urls(), workflow=workflow_name(workflow),
                                       run_id=run_id)

    async def resume(self, run_id: str, answers: dict[str, Any] | None = None, *, answered_by: str | None = None,
                     wait_for_answers: bool = False) -> WorkflowResult | None:
        """Answer a waiting run's questions and continue it.

        ``answers`` maps question ids (``orchestrator.pending()``) to answers. They are checked
        against each question's schema (AnswerValidationError, nothing recorded, the run keeps
        waiting), refused for ids not pending in that run (InterruptNotFoundError,
        InterruptAnsweredError), and recorded in the run's store before anything else, with
        ``answered_by`` and the time.

        Then the run goes on: where a process holds it (the one still waiting in
        ``workflow.run()``, or this orchestrator while it serves) it continues there and this
        returns None; where none does, it is continued here and its result returned (with
        ``wait_for_answers=False``, a run that waits again returns a ``waiting`` result). Without
        answers this continues a run that was answered, or killed, while nobody held it.
        """
        from pyagent.answering import resume

        return await resume(self, run_id, answers, answered_by=answered_by, wait_for_answers=wait_for_answers)

    def _question_urls(self) -> list[str]:
        urls = self._history_urls()
        host = self._host
        if host is not None and host.store is not None and host.store not in urls:
            urls.append(host.store)
        return urls

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the executors this orchestrator's workflows use (a local Dask cluster the
        ``dask`` executor started, a client's connection); a later run opens them again.

        Executors are shared per process by name and options, so one still used by workflows
        of another orchestrator is closed too. What is left open is closed at process exit.
        """
        from pyagent.plugins import get_runtime
        from pyagent.runner import executor_specs

        specs: list[tuple[str, dict[str, Any]]] = []
        for wf in [*self.workflows.values(), *self._ran.values()]:
            specs.extend(s for s in executor_specs(wf) if s not in specs)
        await get_runtime().close_executors(specs)

    def close(self) -> None:
        """:meth:`aclose` from synchronous code (starts an event loop)."""
        import anyio

        from pyagent._sync import in_event_loop

        if in_event_loop():
            raise ConfigurationError(
                "Orchestrator.close() starts its own event loop, so it cannot be called inside a "
                "running one: use `await orchestrator.aclose()` or `async with Orchestrator() as orchestrator:`"
            )
        anyio.run(self.aclose)

    async def __aenter__(self) -> Orchestrator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- history ---------------------------------------------------------------------------

    def _history_urls(self) -> list[str]:
        urls = [self.store] if self.store is not None else []
        for wf in self.workflows.values():
            cp = wf.checkpointing
            if cp is not None and cp.enabled:
                urls.append(cp.storage)
        return list(dict.fromkeys(urls))

    def get_history(self, workflow: str | Workflow | None = None, since: Any = None,
                    status: Any = None, *, limit: int | None = None) -> list[ExecutionRecord]:
        """Past executions, newest first, each with timestamp, status, tasks_completed/tasks_total,
        error, task attempts and handoffs.

        ``since``: an ISO date/datetime string (naive means local time), a datetime, or epoch
        seconds; ``status``: ``"completed"``, ``"failed"``, ... Reads this process's memory plus
        the orchestrator's store and its workflows' checkpoint stores. Works from synchronous
        code; inside async code prefer ``await orchestrator.aget_history(...)``.
        """
        from pyagent.durability.history import get_history_sync
        from pyagent.plugins import get_runtime

        return get_history_sync(get_runtime(), self._history_urls(), workflow=workflow,
                                since=since, status=status, limit=limit)

    async def aget_history(self, workflow: str | Workflow | None = None, since: Any = None,
                           status: Any = None, *, limit: int | None = None) -> list[ExecutionRecord]:
        """``get_history`` for async code."""
        from pyagent.durability.history import gather_history
        from pyagent.plugins import get_runtime

        return await gather_history(get_runtime(), self._history_urls(), workflow=workflow,
                                    since=since, status=status, limit=limit)

    # -- monitors --------------------------------------------------------------------------

    def set_monitors(self, monitors: list[Any]) -> None:
        """Replace the monitors that receive every event of this orchestrator's runs.

        Each is a monitor object (``ConsoleMonitor()``), a function taking one event, a
        monitor name (``"console"``) or a table with a name and options
        (``{"name": "prometheus", "port": 9464}``); names are built by their plugins.
        """
        objects = [resolve(m, source="Orchestrator monitors") for m in monitors]
        listeners = [listener_of(m) for m in objects]
        self.monitors = objects
        self._listeners = listeners

    def add_monitor(self, monitor: Any) -> None:
        """Add one monitor (an object, a function, a name or a table, as for set_monitors)."""
        obj = resolve(monitor, source="Orchestrator monitors")
        self._listeners.append(listener_of(obj))
        self.monitors.append(obj)

    # -- triggers --------------------------------------------------------------------------

    def schedule(self, workflow: str | Workflow, cron: str, **options: Any) -> Any:
        """Run ``workflow`` on a cron schedule (needs the cron trigger plugin, pyagent-cron).

        Options of pyagent-cron: ``timezone`` (default UTC), ``input``, ``misfire``
        (``"run_once"``, ``"skip"``, ``"all"``), ``jitter``, ``max_instances``, ``name``.
        Returns the Schedule (``next_runs(n)``, ``pause()``, ``resume()``, ``remove()``).
        """
        return self._add_trigger("cron", workflow, cron=cron, **options)

    def on_webhook(self, path: str, workflow: str | Workflow, **options: Any) -> Any:
        """Run ``workflow`` when an HTTP POST reaches ``path`` (needs the webhook trigger plugin,
        pyagent-webhooks); the JSON body is the run's input."""
        return self._add_trigger("webhook", workflow, path=path, **options)

    def on_event(self, name: str, workflow: str | Workflow, *, filter: Callable[[Any], Any] | None = None,
                 **options: Any) -> Any:
        """Run ``workflow`` for every ``emit(name, ...)`` that ``filter(event)`` accepts.

        The event is the run's input; its fields read as attributes (``e.priority``) and as
        keys. A filter that raises starts nothing and is reported as an
        ``event.filter_failed`` event. Returns the subscription (``remove()``, ``pause()``).
        """
        return self._add_trigger("event", workflow, name=name, filter=filter, **options)

    async def emit(self, name: str, payload: Any = None, /, **fields: Any) -> list[str]:
        """Start every workflow subscribed to ``name`` whose filter accepts the event.

        ``payload`` is a dict (or any value); keyword ``fields`` are added to a dict payload.
        Returns the started runs' ids. While serving, the runs are recorded (with a store)
        and started in the background and this returns at once; otherwise they run here,
        concurrently, and this returns when they have finished. An event nobody subscribes
        to is counted in ``unhandled_events`` and announced as ``event.unhandled``.
        """
        from pyagent.serving.events import emit

        return await emit(self, name, payload, **fields)

    def emit_sync(self, name: str, payload: Any = None, /, **fields: Any) -> list[str]:
        """``emit`` from plain (synchronous) code, including a thread other than the serving one."""
        from pyagent.serving.events import emit_sync

        return emit_sync(self, name, payload, **fields)

    def add_trigger(self, kind: str, workflow: str | Workflow, **options: Any) -> Any:
        """Run ``workflow`` from a trigger of any installed kind: what ``schedule``, ``on_webhook``
        and ``on_event`` do for theirs, for kinds that other plugins register.

        The kind's factory (``pyagent_register_triggers``) is called now, with this orchestrator,
        the workflow and ``options``, so bad options are refused here; the trigger acts while
        the orchestrator serves (added while serving, it starts at once). Returns the trigger.
        """
        return self._add_trigger(kind, workflow, **options)

    def trigger_kind(self, trigger: Any) -> str | None:
        """The kind a trigger of this orchestrator was added as (``"cron"``, ``"webhook"``,
        ``"event"``, ...), or None for an object that is not one of its triggers."""
        if not any(t is trigger for t in self.triggers):
            return None
        return self._trigger_kinds.get(id(trigger))

    def remove_trigger(self, trigger: Any) -> None:
        """Stop and forget one trigger (what ``schedule.remove()`` and friends call)."""
        if trigger in self.triggers:
            self.triggers.remove(trigger)
        self._trigger_kinds.pop(id(trigger), None)
        if self._host is not None:
            self._host.detach(trigger)

    def _add_trigger(self, kind: str, workflow: str | Workflow, **options: Any) -> Any:
        from pyagent.plugins import get_runtime
        from pyagent.workflow import Workflow

        factory = get_runtime().lookup("trigger", kind)
        wf = workflow if isinstance(workflow, Workflow) else self.get_workflow(workflow)
        taken = self.workflows.get(wf.name)
        if taken is not None and taken is not wf:
            self.add_workflow(wf)  # raises: a different workflow has that name
        trigger = factory(self, wf, **options)  # refuses bad options before anything is added
        self.add_workflow(wf)
        self.triggers.append(trigger)
        self._trigger_kinds[id(trigger)] = kind
        host = self._host
        if host is not None and host.in_loop_thread():
            host.start_soon(host.attach, trigger)  # added while serving: serve it too
        return trigger

    # -- serving ---------------------------------------------------------------------------

    @property
    def host(self) -> TriggerHost | None:
        """The running TriggerHost while this orchestrator serves, else None."""
        return self._host

    @asynccontextmanager
    async def serving(self, *, host: str = "127.0.0.1", port: int | None = 8000, store: str | None = None,
                      grace: float = 30.0, max_running: int = 100,
                      web_token: str | None = None, poll_interval: float = 0.5) -> AsyncIterator[TriggerHost]:
        """Serve this orchestrator's triggers while the block runs; drain when it exits.

        On entry, with a store, runs a previous serve process left (recorded but never
        started, or still running when it died) are started or resumed. On exit it stops
        accepting, lets runs in flight finish within ``grace`` seconds and checkpoints the
        rest (with a store) so the next start resumes them. ``host``/``port`` are where HTTP
        triggers listen; ``store`` overrides ``Orchestrator(store=...)``; at most
        ``max_running`` runs execute at once, the others wait their turn.

        With a store that is a run queue (pyagent-sql's, ``memory://``), recorded runs wait in
        the store and any process serving it takes them when it has a free slot: several
        replicas share the work, within each workflow's ``max_active_runs``, and take over the
        runs of one that died. ``poll_interval`` is how often (seconds) each looks at the queue.

        Web apps that plugins register (``pyagent_register_web_apps``: the dashboard at
        ``/ui``) are served on the same ``host``/``port``, which then opens even with no
        webhooks; ``web_token`` is the token they ask of every request (default: their own
        setting, e.g. ``PYAGENT_DASHBOARD_TOKEN``). ``port=None`` serves no HTTP at all.
        """
        from pyagent.serving.host import TriggerHost

        if store is not None:
            self._use_store(store)
        server = TriggerHost(self, store=self.store, http_host=host, http_port=port, grace=grace,
                             max_running=max_running, web_token=web_token, poll_interval=poll_interval)
        async with server.running():
            yield server

    async def serve(self, *, host: str = "127.0.0.1", port: int | None = 8000, store: str | None = None,
                    grace: float = 30.0, max_running: int = 100, handle_signals: bool = True,
                    web_token: str | None = None, poll_interval: float = 0.5) -> None:
        """Serve schedules, event subscriptions and webhooks until stopped (``pyagent serve``).

        Stops on ``stop()`` or, with ``handle_signals`` in the main thread, on SIGTERM/SIGINT
        (a second signal skips the grace period), then drains as ``serving`` describes and
        returns.
        """
        import threading

        import anyio

        serving = self.serving(host=host, port=port, store=store, grace=grace, max_running=max_running,
                               web_token=web_token, poll_interval=poll_interval)
        if not handle_signals or threading.current_thread() is not threading.main_thread():
            async with serving as server:
                await server.wait_stopped()
            return
        import signal

        signalled = anyio.Event()

        async def watch(signals: Any) -> None:
            # Active for the whole serve, drain included, so a second signal skips the grace.
            async for signum in signals:
                server = self._host
                stopping = server is not None and server._stop is not None and server._stop.is_set()
                _log.info("received %s: %s", signal.Signals(signum).name,
                          "skipping the grace period" if stopping
                          else "shutting down gracefully (send it again to skip the grace period)")
                signalled.set()
                if server is not None:
                    server.stop()

        from pyagent.serving.host import one_error

        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            # A store that cannot open, a port that is taken: raised as itself, not as a group.
            async with one_error(), anyio.create_task_group() as tg:
                tg.start_soon(watch, signals)
                async with serving as server:
                    if signalled.is_set():  # a signal came while starting up
                        server.stop()
                    await server.wait_stopped()
                tg.cancel_scope.cancel()

    def stop(self) -> None:
        """Ask a running ``serve()`` to shut down gracefully; callable from any thread."""
        server = self._host
        if server is None:
            return
        if server.in_loop_thread():
            server.stop()
        else:
            import anyio.from_thread

            anyio.from_thread.run_sync(server.stop, token=server.token)

    def _use_store(self, url: str) -> None:
        self.store = url
        for wf in self.workflows.values():
            wf._runtime_data["history_store"] = url


def _trigger(value: Any) -> dict[str, Any] | None:
    """``run_workflow(trigger=...)`` checked: it is saved with the run's history, as JSON."""
    if value is None:
        return None
    plain = (str, int, float, bool, type(None))
    if (not isinstance(value, dict) or not isinstance(value.get("kind"), str) or not value["kind"]
            or not all(isinstance(k, str) and isinstance(v, plain) for k, v in value.items())):
        raise ConfigurationError(
            f"trigger={value!r}: give how the run started as a dict with a 'kind' and plain values "
            "(text, numbers), e.g. {'kind': 'event', 'source': 'order.created'}")
    return dict(value)
