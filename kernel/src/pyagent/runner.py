"""From a workflow to a result: resolve the pattern and executor, check, run, record."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pyagent.durability.lifecycle import drive
from pyagent.engine.run import WorkflowRun, check_runnable
from pyagent.errors import StateError
from pyagent.model.events import sync_listener
from pyagent.monitors import configured_listeners
from pyagent.plugins import get_runtime

if TYPE_CHECKING:
    from pyagent.durability.lifecycle import Claimed
    from pyagent.durability.ownership import LeaseSettings
    from pyagent.durability.state import WorkflowState
    from pyagent.durability.store import Lease
    from pyagent.model.results import TaskResult, WorkflowResult
    from pyagent.model.tasks import Task
    from pyagent.plugins import Runtime
    from pyagent.workflow import Workflow


def resolve_pattern(workflow: Workflow, _checked: set[int] | None = None) -> Any:
    """The pattern object for ``workflow``, validated against it; raises before anything runs.

    Workflows used as agents inside it are checked too (pattern installed, tasks runnable),
    so a bad sub-workflow fails the run before its first task rather than halfway through.
    """
    runtime = get_runtime()
    pattern = runtime.lookup("pattern", workflow.pattern_name)
    if not hasattr(pattern, "execute"):
        from pyagent.errors import ConfigurationError

        raise ConfigurationError(
            f"pattern '{workflow.pattern_name}' is a team pattern (use AgentPatterns), "
            "not a workflow pattern: pick sequential, parallel or graph for a Workflow"
        )
    validate = getattr(pattern, "validate", None)
    if validate is not None:
        validate(workflow)
    nested = check_runnable(workflow)
    if nested:
        checked = _checked if _checked is not None else {id(workflow)}
        for sub in nested:
            if id(sub) not in checked:
                checked.add(id(sub))
                resolve_pattern(sub, checked)
    return pattern


async def run_workflow(
    workflow: Workflow,
    input: Any = None,
    *,
    on_task_complete: Callable[[TaskResult], Any] | None = None,
    on_event: Callable[[Any], Any] | None = None,
    listeners: Iterable[Callable[[Any], Any]] = (),
    run_id: str | None = None,
    resumed: dict[str, TaskResult] | None = None,
    shared_state: dict[str, Any] | None = None,
    checkpoint_url: str | None = None,
    history_url: str | None = None,
    next_seq: int | None = None,
    claimed: Claimed | None = None,
    wait: bool = False,
    wait_timeout: float | None = None,
    first_started_at: float | None = None,
    earlier_resumes: Iterable[float] = (),
    wait_for_answers: bool = True,
    earlier_audit: Iterable[dict[str, Any]] = (),
    earlier_handoffs: Iterable[dict[str, Any]] = (),
    trigger: dict[str, Any] | None = None,
    lease: Lease | None = None,
) -> WorkflowResult:
    """Run ``workflow`` once. Configuration errors raise; a failure while running is returned.

    ``resumed`` (completed tasks to reuse) and ``shared_state`` (the saved ``ctx.state``)
    continue an earlier run; ``checkpoint_url`` overrides the workflow's checkpoint storage
    (a run resumed from a store keeps checkpointing there); ``history_url`` saves the run's
    audit record in a store even without checkpointing. A run recorded in a store is claimed
    there before any agent runs (``claimed``: already claimed by a resume): RunOwnedError if
    another process owns it, unless ``wait`` (up to ``wait_timeout`` seconds).
    ``first_started_at`` and ``earlier_resumes`` carry a resumed run's history (when it first
    started, when it was resumed before), so it stays one run in history, and so do
    ``earlier_audit`` and ``earlier_handoffs`` (its audit trail so far).

    ``wait_for_answers``: a run whose tasks all wait for people (``ctx.interrupt``) stays here,
    holding its lease, and goes on as soon as it is answered (True); or this call returns a
    result with status ``waiting`` and the run goes on when resumed (False; needs a checkpoint
    store).
    ``trigger`` is how the run started, as history shows it (``{"kind": "webhook", "source":
    "/hooks/ci"}``; default ``{"kind": "manual"}``, or ``{"kind": "resume"}`` for a resumed run
    whose origin was not saved).
    ``lease``: the run's lease, held already (a run taken off a store's queue): the run is
    recorded under it in ``checkpoint_url``'s store, which renews it and releases it at the end,
    as for a claim made here. It must be ``run_id``'s.
    """
    try:
        if run_id is not None:
            check_run_id(run_id)
        if lease is not None:
            claimed = await hold_lease(workflow, lease, run_id, checkpoint_url, next_seq)
        runtime = get_runtime()
        pattern = resolve_pattern(workflow)
        executor, task_executors = resolve_executors(runtime, workflow)
        await start_executors([executor, *task_executors.values()])
    except BaseException:
        if claimed is not None:  # refused before it could run: give the claim back
            await abandon(claimed)
        raise
    all_listeners = [*runtime.monitor_hooks_as_listeners(), *configured_listeners(runtime), *listeners]
    if on_event is not None:
        all_listeners.append(sync_listener(on_event, "on_event"))
    run = WorkflowRun(workflow, runtime=runtime, input=input, run_id=run_id,
                      listeners=all_listeners, on_task_complete=on_task_complete,
                      executor=executor, resumed=resumed, task_executors=task_executors,
                      first_started_at=first_started_at, earlier_resumes=earlier_resumes,
                      hold_waiting=wait_for_answers, earlier_audit=earlier_audit,
                      earlier_handoffs=earlier_handoffs,
                      trigger=trigger)
    if shared_state:
        run.state.update(shared_state)
    return await drive(run, pattern, checkpoint_url=checkpoint_url, history_url=history_url,
                       next_seq=next_seq, claimed=claimed, wait=wait, wait_timeout=wait_timeout)


def check_run_id(run_id: Any) -> None:
    """ConfigurationError for a run id no store can keep (the same rule for every store)."""
    from pyagent.durability.store import unstorable
    from pyagent.errors import ConfigurationError

    if not isinstance(run_id, str) or not run_id:
        raise ConfigurationError(f"run_id must be a non-empty string, got {run_id!r}")
    problem = unstorable(run_id)
    if problem:
        raise ConfigurationError(f"run_id {run_id!r} {problem}: choose another run id")


# -- executors --------------------------------------------------------------------------------


def executor_spec(workflow: Workflow, name: str | None = None) -> tuple[str, dict[str, Any]]:
    """The executor name and options for ``workflow``'s tasks, or for a task naming ``name``.

    The workflow's executor is ``Workflow(executor=)``, else the ``executor`` setting, else
    ``local``. Options are the configured ones (``[tool.pyagent.executors.NAME]``,
    ``dask_address``), overridden by ``Workflow(executor_options=)`` for the workflow's own.
    """
    from pyagent.config import get_settings

    settings = get_settings()
    default = workflow.executor or settings.executor or "local"
    chosen = name or default
    options = settings.executor_options(chosen)
    if chosen == default:
        options.update(workflow.executor_options)
    return chosen, options


def executor_specs(workflow: Workflow) -> list[tuple[str, dict[str, Any]]]:
    """Every executor a run of ``workflow`` uses: its own first, then those its tasks name."""
    specs = [executor_spec(workflow)]
    for task in _placed_tasks(workflow):
        name = task.__dict__["executor"]
        if name is not None:
            spec = executor_spec(workflow, name)
            if spec not in specs:
                specs.append(spec)
    return specs


def _placed_tasks(workflow: Workflow) -> list[Task]:
    """The tasks that name an executor or ask for resources (run once per run: kept tight)."""
    found: list[Task] = []
    for step in workflow.steps:
        fields = step.__dict__
        if "condition" in fields:  # a ConditionalTask: its branches are the tasks
            found.extend(b for b in step.branches  # type: ignore[union-attr]
                         if b.__dict__["executor"] is not None or b.__dict__["resources"] is not None)
        elif fields["executor"] is not None or fields["resources"] is not None:
            found.append(step)  # type: ignore[arg-type]
    return found


def resolve_executors(runtime: Runtime, workflow: Workflow) -> tuple[Any, dict[str, Any]]:
    """The workflow's executor and, by task name, the executors of tasks that name another one.

    A task asking for ``resources`` on an executor that cannot place work by resources (it
    lacks ``supports_resources = True``) is refused here, before anything runs.
    """
    from pyagent.errors import ConfigurationError

    name, options = executor_spec(workflow)
    executor = runtime.executor(name, options)
    task_executors: dict[str, Any] = {}
    for task in _placed_tasks(workflow):
        fields = task.__dict__
        own, resources = fields["executor"], fields["resources"]
        chosen, task_executor = name, executor
        if own is not None and own != name:
            chosen, task_options = executor_spec(workflow, own)
            task_executor = runtime.executor(chosen, task_options)
            task_executors[task.name] = task_executor
        if resources is not None and getattr(task_executor, "supports_resources", False) is not True:
            raise ConfigurationError(
                f"task '{task.name}' of workflow '{workflow.name}' asks for resources {resources} but "
                f"its executor '{chosen}' cannot place work by resources, so they would be ignored: "
                "run the task on an executor that can, e.g. Task(..., executor='dask') with pyagent-dask "
                "installed, or remove resources="
            )
    return executor, task_executors


async def start_executors(executors: Iterable[Any]) -> None:
    """Await each executor's ``start()`` (connect, start a cluster); it must be cheap once started."""
    seen: set[int] = set()
    for executor in executors:
        start = getattr(executor, "start", None)
        if start is not None and id(executor) not in seen:
            seen.add(id(executor))
            await start()


# -- resuming ---------------------------------------------------------------------------------


async def resume_state(workflow: Workflow, state: WorkflowState, *, checkpoint_url: str | None = None,
                       next_seq: int | None = None, **kwargs: Any) -> WorkflowResult:
    """Continue the run saved in ``state``: completed tasks are reused, the rest run."""
    try:
        state.check_workflow(workflow, f"the saved state of run {state.run_id!r}")
    except BaseException:
        claimed = kwargs.get("claimed")
        if claimed is not None:
            await abandon(claimed)
        raise
    kwargs.setdefault("trigger", state.trigger)  # a resumed run keeps how it first started
    return await run_workflow(
        workflow, state.input, run_id=state.run_id, resumed=state.completed_results(),
        shared_state=state.shared, checkpoint_url=checkpoint_url, next_seq=next_seq,
        first_started_at=state.started_at, earlier_resumes=state.resumes,
        earlier_audit=state.audit, earlier_handoffs=state.handoffs, **kwargs,
    )


async def hold_lease(workflow: Workflow, lease: Lease, run_id: str | None, url: str | None,
                     next_seq: int | None) -> Claimed:
    """A fresh run's claim from a lease held already: its store opened, the lease kept by an Ownership."""
    from pyagent.durability.lifecycle import Claimed
    from pyagent.durability.ownership import Ownership
    from pyagent.durability.replay import next_seq as find_next_seq
    from pyagent.durability.stores import _close, open_store, safe_url
    from pyagent.errors import ConfigurationError

    cp = workflow.checkpointing
    url = url or (cp.storage if cp is not None and cp.enabled else None)
    if url is None or run_id != lease.run_id:
        raise ConfigurationError(
            f"lease of run {lease.run_id!r}: a run started under a lease held already needs that run id "
            f"(got {run_id!r}) and the store the lease is in (checkpoint_url=...)")
    store = await open_store(url)
    try:
        seq = next_seq if next_seq is not None else await find_next_seq(store, lease.run_id)
    except BaseException:
        await _close(store)
        raise
    return Claimed(store, Ownership.holding(store, lease, clock=get_runtime().clock, where=safe_url(url)), seq)


async def claim_stored_run(url: str, run_id: str, *, wait: bool = False, wait_timeout: float | None = None,
                           allow_plaintext: bool | None = None, settings: LeaseSettings | None = None,
                           lease: Lease | None = None) -> tuple[WorkflowState, Claimed]:
    """Claim ``run_id`` in the store at ``url``, then load its saved state.

    In that order: state loaded before the claim could be overtaken by the owner that held it.
    The caller runs the returned claim (``run_workflow(claimed=...)``), which releases it.
    ``lease``: the run's lease, held already (taken off the store's queue): no claim is made.
    """
    from pyagent.durability.history import earlier_trail
    from pyagent.durability.lifecycle import Claimed
    from pyagent.durability.ownership import Ownership
    from pyagent.durability.replay import _load, state_of
    from pyagent.durability.stores import _close, open_store, safe_url

    check_run_id(run_id)
    store = await open_store(url)
    clock = get_runtime().clock
    if lease is not None:
        own = Ownership.holding(store, lease, clock=clock, where=safe_url(url))
    else:
        own = Ownership(store, run_id, clock=clock, settings=settings, where=safe_url(url))
    try:
        if lease is None:
            await own.claim(wait=wait, timeout=wait_timeout)
        try:
            stored = await _load(store, run_id)
            state, seq = state_of(stored, run_id, url, allow_plaintext=allow_plaintext)
            assert stored is not None  # state_of raised otherwise
            state.audit, state.handoffs = earlier_trail(stored.header.payload, f"history of run {run_id!r}",
                                                        allow_plaintext=allow_plaintext)
        except BaseException:
            await own.release()
            raise
    except BaseException:
        await _close(store)
        raise
    return state, Claimed(store, own, seq)


async def resume_run(workflow: Workflow, run_id: str, url: str, *, wait: bool = False,
                     wait_timeout: float | None = None, allow_plaintext: bool | None = None,
                     lease: Lease | None = None, **kwargs: Any) -> WorkflowResult:
    """Claim ``run_id`` in the store at ``url``, load it and continue it there.

    ``lease``: the run's lease, held already (taken off the store's queue): it is used instead
    of a claim, renewed while the run goes on and released when it ends.
    """
    from pyagent.durability.ownership import LeaseSettings

    if lease is not None and lease.run_id != run_id:
        raise StateError(f"the lease given to resume run {run_id!r} is run {lease.run_id!r}'s")
    state, claimed = await claim_stored_run(url, run_id, wait=wait, wait_timeout=wait_timeout,
                                            allow_plaintext=allow_plaintext,
                                            settings=LeaseSettings.of(workflow.checkpointing), lease=lease)
    try:
        if state.workflow != workflow.name:
            raise StateError(
                f"run {run_id!r} belongs to workflow {state.workflow!r}, not {workflow.name!r}: "
                "resume it with the workflow it was started from"
            )
        state.check_workflow(workflow, f"the saved state of run {state.run_id!r}")
    except BaseException:
        await abandon(claimed)
        raise
    return await resume_state(workflow, state, checkpoint_url=url, claimed=claimed, **kwargs)


async def abandon(claimed: Claimed) -> None:
    """Release a claim that will not be run, and close its store."""
    from pyagent.durability.stores import _close

    await claimed.ownership.release()
    await _close(claimed.store)
