"""The Orchestrator: a registry of workflows, their monitors, triggers and history."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pyagent.errors import ConfigurationError
from pyagent.monitors import listener_of, resolve

if TYPE_CHECKING:
    from pyagent.durability.history import ExecutionRecord
    from pyagent.model.results import TaskResult, WorkflowResult
    from pyagent.workflow import Workflow


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
        self._listeners: list[Callable[[Any], Any]] = []
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
    ) -> WorkflowResult:
        """Run a workflow by name (or object); ``on_task_complete(task_result)`` is called per completed task."""
        from pyagent.runner import run_workflow

        wf = self.get_workflow(workflow)
        # A workflow object that was never added is still this orchestrator's run: its store
        # records it (its history, handoffs and denials), as for an added one.
        return await run_workflow(wf, input, on_task_complete=on_task_complete, on_event=on_event,
                                  listeners=self._listeners, run_id=run_id, history_url=self.store)

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
        """Run ``workflow`` on a cron schedule (needs the cron trigger plugin)."""
        return self._add_trigger("cron", workflow, cron=cron, **options)

    def on_webhook(self, path: str, workflow: str | Workflow, **options: Any) -> Any:
        """Run ``workflow`` when an HTTP POST reaches ``path`` (needs the webhook trigger plugin)."""
        return self._add_trigger("webhook", workflow, path=path, **options)

    def _add_trigger(self, kind: str, workflow: str | Workflow, **options: Any) -> Any:
        from pyagent.plugins import get_runtime
        from pyagent.workflow import Workflow

        factory = get_runtime().lookup("trigger", kind)
        if isinstance(workflow, Workflow):
            self.add_workflow(workflow)
        wf = self.get_workflow(workflow)
        trigger = factory(self, wf, **options)
        self.triggers.append(trigger)
        return trigger
