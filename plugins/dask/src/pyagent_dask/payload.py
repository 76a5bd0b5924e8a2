"""The caller's side of a remote call: what is sent for one agent call, and what is done with the answer.

Large values (the input, a previous result, a state value at or above the executor's
``scatter_threshold``) are not put in the call: they travel as separate Dask arguments,
scattered to the cluster once per run and reused by key by every later call of that run.
"""

from __future__ import annotations

from typing import Any

import cloudpickle

from pyagent.plugin import RunContext
from pyagent_dask.errors import PayloadError, RemoteTraceback
from pyagent_dask.remote import REPLAYABLE, Call, Outcome, Ref, WorkflowInfo, dumps

# Values that are never large, checked before asking dask.sizeof.
_SMALL = (type(None), bool, int, float, complex)


class RunCache:
    """What the executor keeps per workflow run: the caller's own copies, and the scattered values.

    ``local`` is used on the caller's thread only; ``remote`` (id of a value -> the value and
    its scatter) on the Dask client's loop thread only, so neither needs a lock.
    """

    __slots__ = ("__weakref__", "local", "remote")

    def __init__(self) -> None:
        self.local: dict[Any, Any] = {}
        self.remote: dict[Any, Any] = {}


class Sizer:
    """Finds the values worth scattering: at least ``threshold`` bytes by ``dask.sizeof``."""

    def __init__(self, threshold: int) -> None:
        from dask.sizeof import sizeof

        self.threshold = threshold
        self._sizeof = sizeof
        self.large: list[Any] = []
        self._index: dict[int, int] = {}

    def place(self, value: Any) -> Any:
        """``value`` itself, or a :class:`Ref` to it when it is large."""
        if isinstance(value, _SMALL):
            return value
        if isinstance(value, (str, bytes, bytearray)) and len(value) < self.threshold:
            return value
        index = self._index.get(id(value))
        if index is not None:
            return Ref(index)
        if self._sizeof(value) < self.threshold:
            return value
        self._index[id(value)] = len(self.large)
        self.large.append(value)
        return Ref(len(self.large) - 1)


def build_call(agent: Any, input: Any, ctx: RunContext, cache: RunCache | None,
               threshold: int) -> tuple[list[Any], list[Any]]:
    """The arguments of the remote call (the pickled agent, task and call), and the large
    values that go with them as separate arguments."""
    sizer = Sizer(threshold)
    placed_input = sizer.place(input)
    result = ctx.result
    placed_result = placed_input if result is input else sizer.place(result)
    results = {name: sizer.place(value) for name, value in ctx.results.items()}
    state = ctx.state
    state_blob = None
    if state:
        try:
            state_blob = dumps({k: sizer.place(v) for k, v in state.items()})
        except Exception as exc:
            raise _unpicklable(agent, ctx, "ctx.state", exc) from exc
    agent_blob = _pickled_once(("agent", id(agent)), agent, cache, lambda: _agent_bytes(agent, ctx))
    task = ctx.task
    task_blob = None if task is None else _pickled_once(("task", id(task)), task, cache,
                                                       lambda: _task_bytes(agent, ctx))
    snapshot = RunContext(
        workflow=_workflow_info(ctx, cache), task=None, results=results,
        result=placed_result, state={}, transcript=list(ctx.transcript), round=ctx.round,
        attempt=ctx.attempt, run_id=ctx.run_id, phase=ctx.phase, step=ctx.step,
        error=_sendable_error(ctx.error), partial_output=ctx.partial_output, extra=dict(ctx.extra),
    )
    try:
        blob = dumps(Call(placed_input, snapshot, state_blob))
    except Exception as exc:
        raise _diagnose(agent, placed_input, snapshot, ctx, exc) from exc
    return [agent_blob, task_blob, blob], sizer.large


def _pickled_once(key: Any, value: Any, cache: RunCache | None, pickled: Any) -> bytes:
    """``value`` pickled, once per run (an agent or a task is sent with each of its calls)."""
    if cache is None:
        return pickled()  # type: ignore[no-any-return]
    entry = cache.local.get(key)
    if entry is None:
        entry = cache.local[key] = (value, pickled())  # the value is kept so its id is not reused
    return entry[1]  # type: ignore[no-any-return]


def _agent_bytes(agent: Any, ctx: RunContext) -> bytes:
    try:
        return dumps(agent)
    except Exception as exc:
        raise _unpicklable(agent, ctx, "the agent itself", exc) from exc


def _task_bytes(agent: Any, ctx: RunContext) -> bytes:
    task = ctx.task
    assert task is not None
    # Without the agents (the one called travels on its own and is put back as ctx.task.agent
    # on the worker) and the guardrails, which stay with the engine: the rest pickles fast.
    copy = task.model_copy(update={"agent": None, "fallback_agent": None, "input_guardrails": (),
                                   "output_guardrails": ()})
    try:
        return dumps(copy)
    except Exception as exc:
        raise _unpicklable(agent, ctx, "ctx.task", exc) from exc


def _workflow_info(ctx: RunContext, cache: RunCache | None) -> WorkflowInfo | None:
    workflow = ctx.workflow
    if workflow is None:
        return None
    if cache is not None:
        info = cache.local.get("workflow")
        if info is not None:
            return info  # type: ignore[no-any-return]
    info = WorkflowInfo(workflow.name, workflow.description, dict(workflow.metadata))
    if cache is not None:
        cache.local["workflow"] = info
    return info


def _sendable_error(error: BaseException | None) -> BaseException | None:
    """The primary's error for a ``supplement`` fallback, or a stand-in when it cannot be pickled."""
    if error is None:
        return None
    try:
        cloudpickle.dumps(error)
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def _unpicklable(agent: Any, ctx: RunContext, what: str, exc: Exception) -> PayloadError:
    task = ctx.task.name if ctx.task is not None else "?"
    return PayloadError(
        f"task '{task}': {what} of agent '{getattr(agent, 'name', agent)}' cannot be sent to a Dask "
        f"worker: {type(exc).__name__}: {exc}. What an agent gets must be picklable by cloudpickle "
        "(no open files, sockets, locks or live clients: create those inside the agent)"
    )


def _diagnose(agent: Any, input: Any, snapshot: RunContext, ctx: RunContext, exc: Exception) -> PayloadError:
    """Name the part of the call that cannot be pickled: the agent, its input or a context field."""
    parts: list[tuple[str, Any]] = [("the input", input)]
    parts += [(f"ctx.{name}", getattr(snapshot, name))
              for name in ("results", "result", "transcript", "partial_output", "extra")]
    for what, value in parts:
        try:
            cloudpickle.dumps(value)
        except Exception as error:
            return _unpicklable(agent, ctx, what, error)
    return _unpicklable(agent, ctx, "the call", exc)


def settle(outcome: Outcome, ctx: RunContext) -> Any:
    """Apply what came back to the run (reports, state, transcript); return the output or raise the error."""
    run = ctx.run
    if run is not None:
        for method, args, kwargs in outcome.journal:
            replay = getattr(run, method, None) if method in REPLAYABLE else None
            if replay is not None:
                replay(*args, **kwargs)
    state = ctx.state
    if outcome.state_set:
        state.update(outcome.state_set)
    if outcome.state_deleted:
        for key in outcome.state_deleted:
            state.pop(key, None)
    if outcome.transcript_added:
        ctx.transcript.extend(outcome.transcript_added)
    if outcome.ok:
        return outcome.value
    error = outcome.error
    assert error is not None
    if outcome.traceback:
        where = f"on Dask worker {outcome.worker}" if outcome.worker else "on a Dask worker"
        error.__cause__ = RemoteTraceback(f"raised {where}:\n{outcome.traceback}")
        try:
            error.remote_traceback = outcome.traceback  # type: ignore[attr-defined]
            error.worker = outcome.worker  # type: ignore[attr-defined]
        except AttributeError:  # an exception class with __slots__
            pass
    raise error

